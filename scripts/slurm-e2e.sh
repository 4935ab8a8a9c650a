#!/usr/bin/env bash
# End-to-end check of the nightly on a real Slurm: stands up a single-node cluster on this machine
# from Debian's packages (slurmctld, slurmd, munge; loopback; no cgroup requirement), submits the
# reduced nightly (experiments/nightly_reduced.toml) with `sbatch docs/slurm-nightly.sh`, one task
# per cell, cancels one task before it starts, checks the merge reports that task's cells missing
# and fails, resubmits only that task, and holds the completed merge against the same experiments
# run on one machine (scripts/compare_reports.py: verdicts, onsets, effects and p-values must be
# identical). Exits non-zero on any mismatch.
#
#   scripts/slurm-e2e.sh        # as root (CI); needs apt-get on a fresh machine, ~3-5 minutes
#
# Idempotent: installs only what is missing, writes its Slurm config and state under a temporary
# directory (SLURM_CONF points there; /etc/slurm is not touched), uses its own ports, and stops
# the daemons it started (their pids) on exit. LOSSDIFF_SLURM_KEEP=1 keeps the directory.
set -euo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)
step() { printf '[slurm-e2e %4ds] %s\n' $(($(date +%s) - START)) "$*"; }
fail() {
    step "FAILED: $*"
    exit 1
}
[[ $(id -u) -eq 0 ]] || fail "needs root (apt-get, slurmd); run it with sudo -E"

# --- Packages -------------------------------------------------------------------------------
need=()
for tool in slurmctld:slurm-wlm slurmd:slurm-wlm sbatch:slurm-client munged:munge python3:python3; do
    command -v "${tool%%:*}" >/dev/null || need+=("${tool#*:}")
done
if [[ ${#need[@]} -gt 0 ]]; then
    step "installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge python3 >/dev/null
fi
step "slurm $(slurmctld -V | cut -d' ' -f2), munge $(munged -V | cut -d' ' -f1 | cut -d- -f2)"

WORK=$(mktemp -d /tmp/lossdiff-slurm.XXXXXX)
MUNGE_PID=
cleanup() {
    local status=$? pids=() p alive
    for f in "$WORK/slurmd.pid" "$WORK/slurmctld.pid"; do
        [[ -f $f ]] && pids+=("$(cat "$f")") || true
    done
    [[ -n $MUNGE_PID ]] && pids+=("$MUNGE_PID") || true
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    # slurmctld saves its state into $WORK on the way out: removing $WORK before it has exited
    # failed once with "Directory not empty", and under `set -e` that turned a passed run into
    # exit 1. Wait up to 10 s for the daemons to go.
    for _ in $(seq 100); do
        alive=0
        for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1 || true; done
        [[ $alive -eq 0 ]] && break
        sleep 0.1
    done
    if [[ $status -eq 0 && -z ${LOSSDIFF_SLURM_KEEP:-} ]]; then
        rm -rf "$WORK" || echo "[slurm-e2e] passed, but could not remove $WORK" >&2
    else
        echo "[slurm-e2e] kept $WORK (daemon logs in $WORK/log, task logs in $WORK/sharded/logs)"
    fi
}
trap cleanup EXIT

# --- munge ----------------------------------------------------------------------------------
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    [[ -f /etc/munge/munge.key ]] || mungekey -c
    mkdir -p /run/munge && chown munge:munge /run/munge
    su -s /bin/sh munge -c /usr/sbin/munged
    MUNGE_PID=$(cat /run/munge/munged.pid)
    munge -n | unmunge >/dev/null || fail "munged does not answer"
    step "started munged (pid $MUNGE_PID)"
fi

# --- Slurm: one node on loopback ------------------------------------------------------------
H=$(hostname -s)
CPUS=$(nproc)
MEM=$(($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10))
mkdir -p "$WORK/etc" "$WORK/state" "$WORK/spool" "$WORK/log"
cat >"$WORK/etc/slurm.conf" <<EOF
ClusterName=lossdiffci
SlurmctldHost=$H(127.0.0.1)
SlurmctldPort=${LOSSDIFF_SLURMCTLD_PORT:-16817}
SlurmdPort=${LOSSDIFF_SLURMD_PORT:-16818}
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
ReturnToService=2
MinJobAge=600
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool
SlurmctldPidFile=$WORK/slurmctld.pid
SlurmdPidFile=$WORK/slurmd.pid
SlurmctldLogFile=$WORK/log/slurmctld.log
SlurmdLogFile=$WORK/log/slurmd.log
NodeName=$H NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=$H Default=YES MaxTime=INFINITE State=UP
EOF
# slurmd 22.05 fails with CgroupPlugin=disabled; cgroup/v1 with IgnoreSystemd starts anywhere and
# is never used (proctrack/linuxproc, task/none).
printf 'CgroupPlugin=cgroup/v1\nIgnoreSystemd=yes\n' >"$WORK/etc/cgroup.conf"
export SLURM_CONF=$WORK/etc/slurm.conf
slurmctld
slurmd -N "$H"
for _ in $(seq 60); do
    sinfo -h -N -o %T 2>/dev/null | grep -q idle && break
    sleep 1
done
sinfo -h -N -o %T | grep -q idle || fail "the node never became idle; see $WORK/log"
step "slurmctld (pid $(cat "$WORK/slurmctld.pid")) and slurmd (pid $(cat "$WORK/slurmd.pid")) up: node $H idle, $CPUS CPUs"

# --- The sharded nightly --------------------------------------------------------------------
[[ -x target/debug/lossdiff ]] || cargo build --quiet
export LOSSDIFF=$PWD/target/debug/lossdiff
export LOSSDIFF_SPEC=experiments/nightly_reduced.toml LOSSDIFF_CPUS=1 LOSSDIFF_TIME=00:20:00
OUT=$WORK/sharded

# Waits for job $1 to leave the queue; prints its final state and exit code (e.g. FAILED 2:0).
wait_job() {
    for _ in $(seq 900); do
        squeue -h -j "$1" 2>/dev/null | grep -q . || break
        sleep 1
    done
    scontrol show job "$1" | grep -oE '\<(JobState|ExitCode)=[^ ]+' | cut -d= -f2 | paste -sd' '
}
job_ids() { grep -E '^(ARRAY|MERGE)_JOB=' "$OUT/submission.env" | tail -2; }

# Submitted the way the script's users start it, `sbatch docs/slurm-nightly.sh`: a submitter job
# that submits the array and the merge. Those are held, so one task can be cancelled before it
# starts: a task that never ran, as after a node failure or a pre-emption.
LOSSDIFF_OUT=$OUT LOSSDIFF_CACHE=$WORK/cache-cluster LOSSDIFF_SBATCH_ARGS=--hold \
    sbatch --wait --quiet --output="$WORK/submit.out" docs/slurm-nightly.sh ||
    fail "the submitter job failed: $(cat "$WORK/submit.out")"
sed 's/^/    /' "$WORK/submit.out"
eval "$(job_ids)"
scancel "${ARRAY_JOB}_1"
scontrol release "$ARRAY_JOB"
scontrol release "$MERGE_JOB"
step "cancelled task 1 of array $ARRAY_JOB; waiting for merge job $MERGE_JOB"
state=$(wait_job "$MERGE_JOB")
step "merge job $MERGE_JOB: $state"
[[ $state == "FAILED 2:0" ]] || fail "a merge with a cancelled task must fail (exit 2), got: $state"
grep -q '^  MISSING \[' "$OUT/logs/merge.out" || fail "merge log names no missing cell"
grep -E '^  MISSING|incomplete' "$OUT/logs/merge.out" | sed 's/^/    /'
[[ ! -e $OUT/logs/task-1.out ]] || fail "the cancelled task left a log"

bash docs/slurm-nightly.sh --resubmit "$OUT" | sed 's/^/    /'
eval "$(job_ids)"
state=$(wait_job "$MERGE_JOB")
step "resubmitted task 1 as array $ARRAY_JOB; merge job $MERGE_JOB: $state"
[[ $state == "COMPLETED 0:0" ]] || fail "the merge after resubmission must pass, got: $state; see $OUT/logs/merge.out"
grep -h ' runs trained, ' "$OUT"/logs/task-*.out | sed 's/^/    task: /'
tail -n 1 "$OUT/logs/merge.out" | sed 's/^/    /'

# --- The same experiments on one machine, and the comparison --------------------------------
status=0
LOSSDIFF_CACHE=$WORK/cache-single "$LOSSDIFF" run "$LOSSDIFF_SPEC" --out "$WORK/single" \
    >"$WORK/single.log" 2>&1 || status=$?
step "single machine: exit $status, $(tail -n 1 "$WORK/single.log")"
[[ $status -eq 0 ]] || fail "the single-machine run must pass; see $WORK/single.log"
if ! python3 scripts/compare_reports.py "$WORK/single" "$OUT" | sed 's/^/    /'; then
    fail "the merged report differs from the single-machine one"
fi
step "PASSED: sharded over Slurm, one task cancelled and resubmitted, merged; identical to one machine"
