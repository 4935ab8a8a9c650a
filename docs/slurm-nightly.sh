#!/usr/bin/env bash
# The nightly as a Slurm job array: one task per cell, every task writing into one directory per
# submission, then a merge job that starts once every task has ended (afterany: also when one
# failed) and reports the cells of any task that did not finish as missing. Run from the
# repository root (on a filesystem the compute nodes share), either way:
#
#   sbatch docs/slurm-nightly.sh                       # a short submitter job submits the rest
#   bash docs/slurm-nightly.sh                         # submits from the login node
#   bash docs/slurm-nightly.sh --resubmit reports/nightly-<stamp>   # only the unfinished tasks
#
# A by-hand `sbatch --array=0-N docs/slurm-nightly.sh` works too: the tasks share
# reports/nightly-<array job id>, and the first task submits the merge.
#
# Settings (environment, all optional):
#   LOSSDIFF             the binary (default: `lossdiff` on PATH)
#   LOSSDIFF_SPEC        default experiments/nightly.toml
#   LOSSDIFF_OUT         default reports/nightly-<UTC stamp>
#   LOSSDIFF_TASKS       cap on the array size (default: one task per cell, `lossdiff cells`)
#   LOSSDIFF_CPUS        CPUs per task (default 2)      LOSSDIFF_TIME  per task (default 02:00:00)
#   LOSSDIFF_CACHE       run cache, shared by all tasks (default .lossdiff-cache here)
#   LOSSDIFF_SBATCH_ARGS extra flags for every sbatch, e.g. "--partition=cpu --account=ml"
#
# The submitter records these in <out>/submission.env, so a resubmission runs the same plan.
#SBATCH --job-name=lossdiff-nightly
#SBATCH --cpus-per-task=2
#SBATCH --time=02:00:00
set -euo pipefail

LOSSDIFF=${LOSSDIFF:-lossdiff}
SPEC=${LOSSDIFF_SPEC:-experiments/nightly.toml}
CPUS=${LOSSDIFF_CPUS:-2}
TIME=${LOSSDIFF_TIME:-02:00:00}
read -r -a SBATCH_ARGS <<<"${LOSSDIFF_SBATCH_ARGS:-}"
# Under sbatch, $0 is slurmd's copy of this script; sbatch reads it at submission, so it serves.
SCRIPT=$0

die() {
    echo "slurm-nightly: $*" >&2
    exit 2
}

# Everything a task or the merge needs, fixed once at submission: a task must never compute its
# own output directory, or the array's tasks write to different places.
exports() {
    local role=$1
    echo "ALL,LOSSDIFF_ROLE=$role,LOSSDIFF=$LOSSDIFF,LOSSDIFF_SPEC=$SPEC,LOSSDIFF_OUT=$OUT,LOSSDIFF_SHARDS=$COUNT,LOSSDIFF_CACHE=$LOSSDIFF_CACHE"
}

# Submits the merge, to start when every task of array job $1 has ended, whatever its state.
submit_merge() {
    local id
    id=$(sbatch --parsable "${SBATCH_ARGS[@]}" --job-name=lossdiff-merge \
        --dependency="afterany:$1" --cpus-per-task=1 --time=00:30:00 \
        --output="$OUT/logs/merge.out" --open-mode=append \
        --export="$(exports merge)" "$SCRIPT")
    echo "${id%%;*}"
}

# Submits array tasks $1 (Slurm's --array syntax: 0-11 or 3,7) and their merge.
launch() {
    local array merge
    array=$(sbatch --parsable "${SBATCH_ARGS[@]}" --job-name=lossdiff-nightly \
        --array="$1" --cpus-per-task="$CPUS" --time="$TIME" \
        --output="$OUT/logs/task-%a.out" --open-mode=append \
        --export="$(exports task)" "$SCRIPT")
    array=${array%%;*}
    merge=$(submit_merge "$array")
    printf 'ARRAY_JOB=%s\nMERGE_JOB=%s\n' "$array" "$merge" >>"$OUT/submission.env"
    echo "submitted array job $array (tasks $1 of $COUNT) and merge job $merge"
    echo "report: $OUT/index.md   task logs: $OUT/logs/task-<i>.out   merge log: $OUT/logs/merge.out"
}

submit() {
    command -v "$LOSSDIFF" >/dev/null || die "no lossdiff binary '$LOSSDIFF'; set LOSSDIFF"
    LOSSDIFF=$(command -v "$LOSSDIFF")
    local cells
    cells=$("$LOSSDIFF" cells "$SPEC" | wc -l)
    [[ $cells -gt 0 ]] || die "$SPEC has no cells"
    COUNT=$cells
    if [[ -n ${LOSSDIFF_TASKS:-} && ${LOSSDIFF_TASKS} -lt $COUNT ]]; then
        COUNT=$LOSSDIFF_TASKS
    fi
    OUT=$(realpath -m "${LOSSDIFF_OUT:-reports/nightly-$(date -u +%Y%m%dT%H%M%SZ)}")
    LOSSDIFF_CACHE=$(realpath -m "${LOSSDIFF_CACHE:-.lossdiff-cache}")
    [[ ! -e $OUT/submission.env ]] || die "$OUT was submitted before; use --resubmit $OUT"
    mkdir -p "$OUT/logs"
    printf 'SPEC=%q\nCOUNT=%q\nLOSSDIFF=%q\nLOSSDIFF_CACHE=%q\n' \
        "$SPEC" "$COUNT" "$LOSSDIFF" "$LOSSDIFF_CACHE" >"$OUT/submission.env"
    echo "$SPEC: $cells cells in $COUNT tasks"
    launch "0-$((COUNT - 1))"
}

# Re-runs only the tasks that left no finished shard (shard.json is written last), into the same
# directories and with the same cache, then merges everything again.
resubmit() {
    OUT=$(realpath -m "$1")
    [[ -f $OUT/submission.env ]] || die "$OUT/submission.env not found: not a submission directory"
    # shellcheck disable=SC1091
    source "$OUT/submission.env"
    if [[ -n ${ARRAY_JOB:-} ]] && squeue -h -j "$ARRAY_JOB,$MERGE_JOB" 2>/dev/null | grep -q .; then
        die "jobs $ARRAY_JOB and $MERGE_JOB of $OUT are still queued or running; resubmit after they end"
    fi
    local todo=() i
    for ((i = 0; i < COUNT; i++)); do
        [[ -f $OUT/shard-$i/shard.json ]] || todo+=("$i")
    done
    if [[ ${#todo[@]} -eq 0 ]]; then
        echo "every task of $OUT finished; nothing to resubmit"
        return
    fi
    echo "resubmitting task(s) ${todo[*]} of $COUNT"
    launch "$(IFS=,; echo "${todo[*]}")"
}

task() {
    local i=$SLURM_ARRAY_TASK_ID
    OUT=${LOSSDIFF_OUT:-$PWD/reports/nightly-$SLURM_ARRAY_JOB_ID}
    COUNT=${LOSSDIFF_SHARDS:-$((SLURM_ARRAY_TASK_MAX + 1))}
    LOSSDIFF_CACHE=${LOSSDIFF_CACHE:-$PWD/.lossdiff-cache}
    export LOSSDIFF_CACHE
    if [[ -z ${LOSSDIFF_ROLE:-} && $i == "${SLURM_ARRAY_TASK_MIN}" ]]; then
        # A by-hand `sbatch --array`: nobody submitted the merge, so the first task does.
        mkdir -p "$OUT/logs"
        printf 'SPEC=%q\nCOUNT=%q\nLOSSDIFF=%q\nLOSSDIFF_CACHE=%q\n' \
            "$SPEC" "$COUNT" "$(command -v "$LOSSDIFF")" "$LOSSDIFF_CACHE" >"$OUT/submission.env"
        echo "submitted merge job $(submit_merge "$SLURM_ARRAY_JOB_ID") for $OUT"
    fi
    echo "task $i of $COUNT on $(hostname), $(date -u +%FT%TZ): $OUT/shard-$i"
    local status=0
    "$LOSSDIFF" run "$SPEC" --shard "$i/$COUNT" --out "$OUT/shard-$i" \
        --jobs "${SLURM_CPUS_PER_TASK:-1}" || status=$?
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
    *) echo "nightly INCOMPLETE or broken (exit $status): see the task logs in $LOSSDIFF_OUT/logs/;" \
        "re-run the unfinished tasks with: bash docs/slurm-nightly.sh --resubmit $LOSSDIFF_OUT" ;;
    esac
    exit "$status"
}

case ${LOSSDIFF_ROLE:-} in
task) task ;;
merge) merge ;;
'')
    if [[ -n ${SLURM_ARRAY_TASK_ID:-} ]]; then
        task
    elif [[ ${1:-} == --resubmit ]]; then
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
