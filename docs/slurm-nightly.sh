#!/usr/bin/env bash
# Nightly sweep as a Slurm job array: each task runs its share of the cells, then one dependent
# job merges the shards into a single report (Holm's correction is re-applied across all cells).
#
#   sbatch docs/slurm-nightly.sh                      # submits the array and the merge job
#
# PBS/Torque: replace SLURM_ARRAY_TASK_ID/COUNT by PBS_ARRAY_INDEX and your array size.
#SBATCH --job-name=lossdiff-nightly
#SBATCH --array=0-7
#SBATCH --cpus-per-task=2
#SBATCH --time=02:00:00
set -euo pipefail

STAMP=${STAMP:-$(date -u +%Y%m%dT%H%M%SZ)}
OUT=reports/nightly-$STAMP
COUNT=${SLURM_ARRAY_TASK_COUNT:-8}

if [[ -n "${SLURM_ARRAY_TASK_ID:-}" ]]; then
    # One task: its cells only. Exit status 1 (a divergence) must not fail the array.
    lossdiff run experiments/nightly.toml --shard "$SLURM_ARRAY_TASK_ID/$COUNT" \
        --out "$OUT/shard-$SLURM_ARRAY_TASK_ID" || [[ $? -eq 1 ]]
    exit 0
fi

# Submission: the array, then a merge that runs once every task has finished.
ARRAY=$(STAMP=$STAMP sbatch --parsable "$0")
sbatch --dependency=afterany:"$ARRAY" --job-name=lossdiff-merge --wrap \
    "lossdiff merge $OUT/shard-* --out $OUT"
echo "submitted array $ARRAY; report will be in $OUT/index.md"
