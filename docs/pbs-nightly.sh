#!/usr/bin/env bash
# The nightly as a PBS Pro job array: the same plan as docs/slurm-nightly.sh (one task per cell,
# one output directory per submission, a merge that runs after every task has ended and reports
# the cells of unfinished tasks as missing).
#
# NOT EXERCISED IN CI: there is no PBS server here. It follows the PBS Pro reference (qsub -J,
# PBS_ARRAY_INDEX, ^array_index^, -W depend=afterany) but has never run; try it on a small spec
# (LOSSDIFF_SPEC=experiments/nightly_reduced.toml) before relying on it.
#
# From the repository root, on a filesystem the compute nodes share:
#   qsub docs/pbs-nightly.sh                           # a short submitter job submits the rest
#   bash docs/pbs-nightly.sh                           # submits from the login node
#   bash docs/pbs-nightly.sh --resubmit reports/nightly-<stamp>   # only the unfinished tasks
#
# Settings (environment): LOSSDIFF, LOSSDIFF_SPEC, LOSSDIFF_OUT, LOSSDIFF_TASKS, LOSSDIFF_CPUS,
# LOSSDIFF_TIME, LOSSDIFF_CACHE as in docs/slurm-nightly.sh; LOSSDIFF_QSUB_ARGS for extra qsub
# flags (e.g. "-q workq -A ml").
#PBS -N lossdiff-nightly
#PBS -l select=1:ncpus=2
#PBS -l walltime=02:00:00
#PBS -j oe
set -euo pipefail
# PBS starts jobs in $HOME; the relative paths below are the repository's.
cd "${PBS_O_WORKDIR:-.}"

LOSSDIFF=${LOSSDIFF:-lossdiff}
SPEC=${LOSSDIFF_SPEC:-experiments/nightly.toml}
CPUS=${LOSSDIFF_CPUS:-2}
TIME=${LOSSDIFF_TIME:-02:00:00}
read -r -a QSUB_ARGS <<<"${LOSSDIFF_QSUB_ARGS:-}"
SCRIPT=$0

die() {
    echo "pbs-nightly: $*" >&2
    exit 2
}

vars() {
    echo "LOSSDIFF_ROLE=$1,LOSSDIFF=$LOSSDIFF,LOSSDIFF_SPEC=$SPEC,LOSSDIFF_OUT=$OUT,LOSSDIFF_SHARDS=$COUNT,LOSSDIFF_CACHE=$LOSSDIFF_CACHE${2:+,LOSSDIFF_TASK_INDEX=$2}"
}

# Submits the merge after jobs $1 (colon-separated ids) have ended, whatever their state.
submit_merge() {
    qsub "${QSUB_ARGS[@]}" -N lossdiff-merge -W depend="afterany:$1" \
        -l select=1:ncpus=1 -l walltime=00:30:00 -j oe -o "$OUT/logs/merge.out" \
        -v "$(vars merge)" "$SCRIPT"
}

record() {
    printf '%s\n' "$@" >>"$OUT/submission.env"
}

# Submits every task as one array (PBS Pro arrays need at least two subjobs, so one task is a
# plain job) and the merge.
launch_all() {
    local ids
    if [[ $COUNT -gt 1 ]]; then
        ids=$(qsub "${QSUB_ARGS[@]}" -N lossdiff-nightly -J "0-$((COUNT - 1))" \
            -l "select=1:ncpus=$CPUS" -l "walltime=$TIME" -j oe \
            -o "$OUT/logs/task-^array_index^.out" -v "$(vars task)" "$SCRIPT")
    else
        ids=$(qsub "${QSUB_ARGS[@]}" -N lossdiff-nightly -l "select=1:ncpus=$CPUS" \
            -l "walltime=$TIME" -j oe -o "$OUT/logs/task-0.out" -v "$(vars task 0)" "$SCRIPT")
    fi
    local merge
    merge=$(submit_merge "$ids")
    record "ARRAY_JOB=$ids" "MERGE_JOB=$merge"
    echo "submitted $ids ($COUNT tasks) and merge $merge; report: $OUT/index.md; logs: $OUT/logs/"
}

submit() {
    command -v "$LOSSDIFF" >/dev/null || die "no lossdiff binary '$LOSSDIFF'; set LOSSDIFF"
    LOSSDIFF=$(command -v "$LOSSDIFF")
    COUNT=$("$LOSSDIFF" cells "$SPEC" | wc -l)
    [[ $COUNT -gt 0 ]] || die "$SPEC has no cells"
    if [[ -n ${LOSSDIFF_TASKS:-} && $LOSSDIFF_TASKS -lt $COUNT ]]; then COUNT=$LOSSDIFF_TASKS; fi
    OUT=$(realpath -m "${LOSSDIFF_OUT:-reports/nightly-$(date -u +%Y%m%dT%H%M%SZ)}")
    LOSSDIFF_CACHE=$(realpath -m "${LOSSDIFF_CACHE:-.lossdiff-cache}")
    [[ ! -e $OUT/submission.env ]] || die "$OUT was submitted before; use --resubmit $OUT"
    mkdir -p "$OUT/logs"
    printf 'SPEC=%q\nCOUNT=%q\nLOSSDIFF=%q\nLOSSDIFF_CACHE=%q\n' \
        "$SPEC" "$COUNT" "$LOSSDIFF" "$LOSSDIFF_CACHE" >"$OUT/submission.env"
    launch_all
}

# PBS Pro arrays take ranges, not lists: each unfinished task goes back as a plain job.
resubmit() {
    OUT=$(realpath -m "$1")
    [[ -f $OUT/submission.env ]] || die "$OUT/submission.env not found: not a submission directory"
    # shellcheck disable=SC1091
    source "$OUT/submission.env"
    local ids=() i
    for ((i = 0; i < COUNT; i++)); do
        [[ -f $OUT/shard-$i/shard.json ]] && continue
        ids+=("$(qsub "${QSUB_ARGS[@]}" -N lossdiff-nightly -l "select=1:ncpus=$CPUS" \
            -l "walltime=$TIME" -j oe -o "$OUT/logs/task-$i.retry.out" \
            -v "$(vars task "$i")" "$SCRIPT")")
    done
    if [[ ${#ids[@]} -eq 0 ]]; then
        echo "every task of $OUT finished; nothing to resubmit"
        return
    fi
    local merge
    merge=$(submit_merge "$(IFS=:; echo "${ids[*]}")")
    record "MERGE_JOB=$merge"
    echo "resubmitted ${#ids[@]} task(s): ${ids[*]}; merge $merge"
}

task() {
    local i=${LOSSDIFF_TASK_INDEX:-$PBS_ARRAY_INDEX} status=0
    OUT=$LOSSDIFF_OUT
    export LOSSDIFF_CACHE
    echo "task $i of $LOSSDIFF_SHARDS on $(hostname), $(date -u +%FT%TZ): $OUT/shard-$i"
    "$LOSSDIFF" run "$SPEC" --shard "$i/$LOSSDIFF_SHARDS" --out "$OUT/shard-$i" \
        --jobs "${NCPUS:-1}" || status=$?
    # 1 is a divergence: the task did its job and the merge reports it. 2 is an error.
    [[ $status -le 1 ]] || exit "$status"
}

merge() {
    local dirs=() i status=0
    for ((i = 0; i < LOSSDIFF_SHARDS; i++)); do dirs+=("$LOSSDIFF_OUT/shard-$i"); done
    "$LOSSDIFF" merge "${dirs[@]}" --out "$LOSSDIFF_OUT" || status=$?
    case $status in
    0) echo "nightly PASSED: $LOSSDIFF_OUT/index.md" ;;
    1) echo "nightly FAILED (a regression): $LOSSDIFF_OUT/index.md" ;;
    *) echo "nightly INCOMPLETE or broken (exit $status): see $LOSSDIFF_OUT/logs/;" \
        "re-run the unfinished tasks with: bash docs/pbs-nightly.sh --resubmit $LOSSDIFF_OUT" ;;
    esac
    exit "$status"
}

case ${LOSSDIFF_ROLE:-} in
task) task ;;
merge) merge ;;
'')
    if [[ ${1:-} == --resubmit ]]; then
        [[ -n ${2:-} ]] || die "usage: $0 --resubmit <report directory>"
        resubmit "$2"
    elif [[ $# -eq 0 ]]; then
        submit
    else
        die "usage: $0 [--resubmit <report directory>]"
    fi
    ;;
*) die "LOSSDIFF_ROLE=$LOSSDIFF_ROLE: expected task or merge" ;;
esac
