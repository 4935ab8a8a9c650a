//! Scale-out: nightly specs that include other experiments, job-array shards (`--shard i/N`),
//! and merging shard reports so Holm's correction sees every cell again.

use super::{run_experiment, ExperimentReport, ExperimentRun, GateOptions};
use crate::error::{Error, Result};
use crate::experiment::Experiment;
use std::path::{Path, PathBuf};

/// Expands a nightly spec (one with `include = [...]`) into its experiments' spec paths; a plain
/// experiment spec expands to itself.
///
/// # Errors
/// As [`Experiment::expand`].
pub fn expand_specs(spec: &Path) -> Result<Vec<PathBuf>> {
    // Cycles and duplicate experiments are refused where specs are loaded.
    Experiment::expand(spec)
}

/// Runs every experiment of `spec` (a nightly or a single experiment). With a shard, cells are
/// numbered across all experiments in spec order and task `index` of `count` takes every
/// `count`-th, so single-cell experiments spread over the array too.
///
/// # Errors
/// As [`run_experiment`].
pub fn run_all_experiments(spec: &Path, opts: &GateOptions) -> Result<Vec<ExperimentRun>> {
    let specs = expand_specs(spec)?;
    let mut global = 0usize;
    let mut out = Vec::new();
    for path in specs {
        let exp = Experiment::load(&path)?;
        let mut local = opts.clone();
        if let Some((k, n)) = opts.shard {
            let ids: Vec<String> = exp
                .cells()
                .into_iter()
                .filter(|_| {
                    let mine = global % n == k;
                    global += 1;
                    mine
                })
                .map(|c| c.id)
                .collect();
            if ids.is_empty() {
                continue;
            }
            local.shard = None;
            local.cells = Some(ids);
        }
        out.push(run_experiment(&path, &local)?);
    }
    Ok(out)
}

/// Joins the reports of several shards: reports of the same experiment are concatenated and
/// re-finalised, so Holm's correction sees every cell of a sweep.
///
/// # Errors
/// [`Error::InvalidParameter`] from [`ExperimentReport::finalize`].
pub fn merge_reports(shards: Vec<Vec<ExperimentReport>>) -> Result<Vec<ExperimentReport>> {
    let mut merged: Vec<ExperimentReport> = Vec::new();
    for report in shards.into_iter().flatten() {
        match merged
            .iter_mut()
            .find(|m| m.experiment == report.experiment)
        {
            Some(m) => {
                m.cells.extend(report.cells);
                m.comparisons.extend(report.comparisons);
                m.goldens.extend(report.goldens);
                m.trained += report.trained;
                m.cached += report.cached;
            }
            None => merged.push(report),
        }
    }
    for m in &mut merged {
        m.finalize()?;
    }
    Ok(merged)
}

/// Parses `i/N` (0-based task index of N).
///
/// # Errors
/// [`Error::InvalidValue`] naming `--shard` unless `0 <= i < N`.
pub fn parse_shard(s: &str) -> Result<(usize, usize)> {
    let bad = || Error::InvalidValue {
        origin: "--shard".into(),
        key: "shard".into(),
        expected:
            "i/N with 0 <= i < N, e.g. 0/4 (Slurm: $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)"
                .into(),
        got: s.into(),
    };
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if n == 0 || i >= n {
        return Err(bad());
    }
    Ok((i, n))
}
