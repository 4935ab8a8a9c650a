//! Scale-out: nightly specs that include other experiments, job-array shards (`--shard i/N`),
//! and merging shard reports so Holm's correction sees every cell again.
//!
//! A job-array task can die (a node fails, the time limit hits, someone cancels it). So each task
//! writes its [`ShardPlan`] — which task of how many it was and the whole run's cell plan — last
//! into its report directory, and the merge lists every planned cell that no finished task
//! delivered: a merged report with a missing cell never passes. Scheduler scripts live in `docs/`.

use super::{run_experiment, ExperimentReport, ExperimentRun, GateOptions, MissingCell};
use crate::error::{Error, Result};
use crate::experiment::Experiment;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// File a finished shard task writes last into its report directory (see [`ShardPlan`]).
pub const SHARD_JSON: &str = "shard.json";

/// What one task of a sharded run was asked to do, and what the whole run was: written to
/// [`SHARD_JSON`] when the task finishes, so a merge can tell which cells no task delivered even
/// when a task left nothing behind.
///
/// Invariants: `index < count`; `cells` is the same list in every task of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardPlan {
    /// The spec the run was started with (a nightly or one experiment).
    pub spec: PathBuf,
    /// This task's 0-based index.
    pub index: usize,
    /// Number of tasks.
    pub count: usize,
    /// Every cell of the run, in spec order, with the task that runs it.
    pub cells: Vec<PlannedCell>,
}

/// One cell of a sharded run and the task that runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedCell {
    /// Experiment name.
    pub experiment: String,
    /// The experiment's spec file.
    pub spec: PathBuf,
    /// Cell id.
    pub cell: String,
    /// 0-based index of the task that runs it.
    pub task: usize,
}

/// Expands a nightly spec (one with `include = [...]`) into its experiments' spec paths; a plain
/// experiment spec expands to itself.
///
/// # Errors
/// As [`Experiment::expand`].
pub fn expand_specs(spec: &Path) -> Result<Vec<PathBuf>> {
    // Cycles and duplicate experiments are refused where specs are loaded.
    Experiment::expand(spec)
}

/// Each experiment of a spec with its cells and the task of each, out of `count`.
type Assignment = Vec<(PathBuf, Vec<(String, usize)>)>;

/// Numbers the cells of every experiment of `spec` in spec order and gives cell `g` to task
/// `g % count`, so single-cell experiments spread over the array too. The one place that decides
/// who runs what: both running a shard and planning the merge go through it.
fn assign(spec: &Path, count: usize) -> Result<Assignment> {
    let mut global = 0usize;
    let mut out = Vec::new();
    for path in expand_specs(spec)? {
        let exp = Experiment::load(&path)?;
        let cells = exp
            .cells()
            .into_iter()
            .map(|c| {
                let task = global % count;
                global += 1;
                (c.id, task)
            })
            .collect();
        out.push((path, cells));
    }
    Ok(out)
}

/// Returns every cell of `spec` (a nightly or one experiment) in spec order with the task that
/// runs it when the run is split into `count` tasks: the plan behind `--shard i/count`. With
/// `count` at least the number of cells, each task runs one cell.
///
/// # Errors
/// As [`expand_specs`]; [`Error::InvalidParameter`] for `count == 0`.
pub fn plan_cells(spec: &Path, count: usize) -> Result<Vec<PlannedCell>> {
    if count == 0 {
        return Err(Error::InvalidParameter {
            name: "shard count",
            expected: "at least 1",
            got: "0".into(),
        });
    }
    let mut out = Vec::new();
    for (path, cells) in assign(spec, count)? {
        let name = Experiment::load(&path)?.name;
        out.extend(cells.into_iter().map(|(cell, task)| PlannedCell {
            experiment: name.clone(),
            spec: path.clone(),
            cell,
            task,
        }));
    }
    Ok(out)
}

/// Returns the plan task `index` of `count` writes when it finishes (see [`write_shard_plan`]).
///
/// # Errors
/// As [`plan_cells`].
pub fn shard_plan(spec: &Path, index: usize, count: usize) -> Result<ShardPlan> {
    Ok(ShardPlan {
        spec: spec.to_path_buf(),
        index,
        count,
        cells: plan_cells(spec, count)?,
    })
}

/// Runs every experiment of `spec` (a nightly or a single experiment). With a shard, task `index`
/// of `count` runs its cells of [`plan_cells`].
///
/// # Errors
/// As [`run_experiment`].
pub fn run_all_experiments(spec: &Path, opts: &GateOptions) -> Result<Vec<ExperimentRun>> {
    let mut out = Vec::new();
    for (path, cells) in assign(spec, opts.shard.map_or(1, |(_, n)| n))? {
        let mut local = opts.clone();
        if let Some((k, _)) = opts.shard {
            let ids: Vec<String> = cells
                .into_iter()
                .filter(|(_, task)| *task == k)
                .map(|(id, _)| id)
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

/// Marks task `plan.index` finished: writes `plan` to `dir`/[`SHARD_JSON`] (atomically, after
/// the report, so a task killed while writing its report leaves no plan and counts as missing).
///
/// # Errors
/// [`Error::Io`] naming the file.
pub fn write_shard_plan(dir: &Path, plan: &ShardPlan) -> Result<()> {
    let json = serde_json::to_string_pretty(plan).expect("plans serialise");
    crate::fsutil::write_atomic(&dir.join(SHARD_JSON), json.as_bytes())
}

/// Removes a previous attempt's [`SHARD_JSON`] from `dir`, so a re-run task that dies counts as
/// missing rather than as the earlier attempt.
///
/// # Errors
/// [`Error::Io`] naming the file, unless it did not exist.
pub fn clear_shard_plan(dir: &Path) -> Result<()> {
    let path = dir.join(SHARD_JSON);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}

/// Shard directories joined into one set of reports.
#[derive(Debug, Clone, PartialEq)]
pub struct MergedShards {
    /// One report per experiment, in plan order; cells no finished task delivered are in each
    /// report's `missing`, and such a report does not pass.
    pub reports: Vec<ExperimentReport>,
    /// Number of tasks of the run (`None` when no directory was a shard of a planned run).
    pub count: Option<usize>,
    /// Directories that held no finished task, each with the reason.
    pub unfinished: Vec<(PathBuf, String)>,
}

impl MergedShards {
    /// Returns the tasks that delivered nothing or less than their plan, ascending.
    pub fn missing_tasks(&self) -> Vec<usize> {
        let mut t: Vec<usize> = self
            .reports
            .iter()
            .flat_map(|r| r.missing.iter().map(|m| m.task))
            .collect();
        t.sort_unstable();
        t.dedup();
        t
    }
}

/// One report directory as a task left it.
enum ShardDir {
    /// A finished task of a planned run.
    Finished(ShardPlan, Vec<ExperimentReport>),
    /// A report with no plan: an unsharded run, or a task that died before writing its plan.
    Unplanned(Vec<ExperimentReport>),
    /// Nothing usable, and why.
    Empty(String),
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::json(path, &e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

fn read_shard_dir(dir: &Path) -> Result<ShardDir> {
    if !dir.is_dir() {
        return Ok(ShardDir::Empty("no such directory".into()));
    }
    let summary: Option<super::GateResults> = read_json(&dir.join(super::EXPERIMENTS_JSON))?;
    let plan: Option<ShardPlan> = read_json(&dir.join(SHARD_JSON))?;
    Ok(match (summary, plan) {
        (Some(s), Some(p)) => ShardDir::Finished(p, s.experiments),
        (Some(s), None) => ShardDir::Unplanned(s.experiments),
        (None, _) => ShardDir::Empty(format!("no {}", super::EXPERIMENTS_JSON)),
    })
}

/// Reads shard report directories and joins them ([`merge_reports`]), checking them against the
/// run's plan: every planned cell that no finished task delivered — a task that failed, timed out,
/// was cancelled or never started — is listed in its experiment's `missing`, and that report
/// fails. Directories with no plan merge as before when no directory has one.
///
/// # Errors
/// [`Error::Json`] for an unreadable summary or plan; [`Error::ShardMismatch`] for shards of
/// different runs or a task given twice; [`Error::NoShardResults`] when no directory holds
/// results.
pub fn merge_shard_dirs(dirs: &[PathBuf]) -> Result<MergedShards> {
    let mut plan: Option<(PathBuf, ShardPlan)> = None;
    let mut tasks: Vec<(usize, PathBuf)> = Vec::new();
    let mut finished = Vec::new();
    let mut unplanned = Vec::new();
    let mut unfinished = Vec::new();
    for dir in dirs {
        match read_shard_dir(dir)? {
            ShardDir::Finished(p, reports) => {
                check_same_run(plan.as_ref(), dir, &p, &tasks)?;
                tasks.push((p.index, dir.clone()));
                plan.get_or_insert((dir.clone(), p));
                finished.push(reports);
            }
            ShardDir::Unplanned(reports) => unplanned.push((dir.clone(), reports)),
            ShardDir::Empty(why) => unfinished.push((dir.clone(), why)),
        }
    }
    let Some((_, plan)) = plan else {
        if unplanned.is_empty() {
            return Err(Error::NoShardResults {
                dirs: dirs.iter().map(|d| d.display().to_string()).collect(),
            });
        }
        let reports = merge_reports(unplanned.into_iter().map(|(_, r)| r).collect())?;
        return Ok(MergedShards {
            reports,
            count: None,
            unfinished,
        });
    };
    // In a planned run a report without a plan is a task that died before finishing.
    unfinished.extend(unplanned.into_iter().map(|(d, _)| {
        (
            d,
            format!("no {SHARD_JSON}: the task did not finish its report"),
        )
    }));
    let mut reports = merge_reports(finished)?;
    mark_missing(&mut reports, &plan)?;
    Ok(MergedShards {
        reports,
        count: Some(plan.count),
        unfinished,
    })
}

/// Refuses a shard whose plan differs from the first one read, or whose task was already read.
fn check_same_run(
    first: Option<&(PathBuf, ShardPlan)>,
    dir: &Path,
    plan: &ShardPlan,
    tasks: &[(usize, PathBuf)],
) -> Result<()> {
    let mismatch = |reason: String| Error::ShardMismatch {
        dir: dir.to_path_buf(),
        reason,
    };
    if plan.index >= plan.count {
        return Err(mismatch(format!(
            "task {} of {}: expected a task index below the count",
            plan.index, plan.count
        )));
    }
    if let Some((d, p)) = first {
        if p.count != plan.count || p.cells != plan.cells {
            return Err(mismatch(format!(
                "task {} of {} ({}) is from a different run than {} (task {} of {}, {}); merge the shards of one submission",
                plan.index,
                plan.count,
                plan.spec.display(),
                d.display(),
                p.index,
                p.count,
                p.spec.display()
            )));
        }
    }
    if let Some((_, d)) = tasks.iter().find(|(t, _)| *t == plan.index) {
        return Err(mismatch(format!(
            "task {} of {} is also in {}; give each task's directory once",
            plan.index,
            plan.count,
            d.display()
        )));
    }
    Ok(())
}

/// Lists every planned cell absent from the merged reports in its experiment's `missing` (adding
/// an empty report for an experiment no finished task ran), puts reports and their cells in plan
/// order, and re-finalises so a missing cell fails its report.
fn mark_missing(reports: &mut Vec<ExperimentReport>, plan: &ShardPlan) -> Result<()> {
    for pc in &plan.cells {
        let pos = match reports.iter().position(|r| r.experiment == pc.experiment) {
            Some(i) => i,
            None => {
                reports.push(ExperimentReport::empty(&pc.experiment, &pc.spec));
                reports.len() - 1
            }
        };
        let r = &mut reports[pos];
        if !r.cells.contains(&pc.cell) && !r.missing.iter().any(|m| m.cell == pc.cell) {
            r.missing.push(MissingCell {
                cell: pc.cell.clone(),
                task: pc.task,
                count: plan.count,
            });
        }
    }
    let order = |exp: &str, cell: &str| {
        plan.cells
            .iter()
            .position(|c| c.experiment == exp && c.cell == cell)
            .unwrap_or(usize::MAX)
    };
    reports.sort_by_key(|r| {
        plan.cells
            .iter()
            .position(|c| c.experiment == r.experiment)
            .unwrap_or(usize::MAX)
    });
    for r in reports.iter_mut() {
        let e = r.experiment.clone();
        r.cells.sort_by_key(|c| order(&e, c));
        r.comparisons.sort_by_key(|c| order(&e, &c.cell));
        r.goldens.sort_by_key(|g| order(&e, &g.cell));
        r.finalize()?;
    }
    Ok(())
}

/// Joins the reports of several shards: reports of the same experiment are concatenated and
/// re-finalised, so Holm's correction sees every cell of a sweep. It cannot know what is
/// missing; [`merge_shard_dirs`] checks the shards against their plan.
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
                m.missing.extend(report.missing);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::GateResults as Summary;

    /// A two-task plan over one experiment `e` with cells `c0` (task 0) and `c1` (task 1).
    fn plan(index: usize) -> ShardPlan {
        let cell = |c: &str, task| PlannedCell {
            experiment: "e".into(),
            spec: "e.toml".into(),
            cell: c.into(),
            task,
        };
        ShardPlan {
            spec: "nightly.toml".into(),
            index,
            count: 2,
            cells: vec![cell("c0", 0), cell("c1", 1)],
        }
    }

    /// Writes a finished task's directory: a passing report of its one cell, then its plan.
    fn finished_task(root: &Path, plan: &ShardPlan) -> PathBuf {
        let dir = root.join(format!("shard-{}", plan.index));
        std::fs::create_dir_all(&dir).unwrap();
        let mut report = ExperimentReport::empty("e", Path::new("e.toml"));
        report.cells = vec![format!("c{}", plan.index)];
        report.finalize().unwrap();
        let summary = Summary {
            passed: report.passed,
            experiments: vec![report],
        };
        std::fs::write(
            dir.join(crate::gate::EXPERIMENTS_JSON),
            serde_json::to_string(&summary).unwrap(),
        )
        .unwrap();
        write_shard_plan(&dir, plan).unwrap();
        dir
    }

    #[test]
    fn every_task_finished_merges_into_a_passing_report() {
        let root = tempfile::tempdir().unwrap();
        let dirs = [
            finished_task(root.path(), &plan(0)),
            finished_task(root.path(), &plan(1)),
        ];
        let m = merge_shard_dirs(&dirs).unwrap();
        assert_eq!(m.reports[0].cells, ["c0", "c1"]);
        assert!(m.reports[0].missing.is_empty());
        assert!(m.reports[0].passed);
        assert_eq!(m.missing_tasks(), Vec::<usize>::new());
    }

    #[test]
    fn a_task_that_left_nothing_has_its_cells_missing_and_the_report_fails() {
        let root = tempfile::tempdir().unwrap();
        let dirs = [
            finished_task(root.path(), &plan(0)),
            root.path().join("shard-1"),
        ];
        let m = merge_shard_dirs(&dirs).unwrap();
        let r = &m.reports[0];
        assert_eq!(
            r.missing,
            [MissingCell {
                cell: "c1".into(),
                task: 1,
                count: 2
            }]
        );
        assert!(!r.passed, "a missing cell must never pass");
        assert_eq!(m.missing_tasks(), [1]);
        assert_eq!(m.unfinished[0].0, dirs[1]);
    }

    #[test]
    fn a_task_that_wrote_its_report_but_not_its_plan_counts_as_missing() {
        let root = tempfile::tempdir().unwrap();
        let dirs = [
            finished_task(root.path(), &plan(0)),
            finished_task(root.path(), &plan(1)),
        ];
        clear_shard_plan(&dirs[1]).unwrap();
        let m = merge_shard_dirs(&dirs).unwrap();
        assert_eq!(m.missing_tasks(), [1]);
        assert!(m.unfinished[0].1.contains(SHARD_JSON));
    }

    #[test]
    fn a_task_given_twice_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let a = finished_task(root.path(), &plan(0));
        let copy = root.path().join("copy");
        std::fs::create_dir_all(&copy).unwrap();
        for f in [crate::gate::EXPERIMENTS_JSON, SHARD_JSON] {
            std::fs::copy(a.join(f), copy.join(f)).unwrap();
        }
        let err = merge_shard_dirs(&[a, copy.clone()]).unwrap_err();
        assert!(matches!(&err, Error::ShardMismatch { dir, .. } if *dir == copy));
        assert!(err.to_string().contains("task 0 of 2 is also in"), "{err}");
    }

    #[test]
    fn shards_of_different_runs_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let mut other = plan(1);
        other.count = 3;
        let dirs = [
            finished_task(root.path(), &plan(0)),
            finished_task(root.path(), &other),
        ];
        let err = merge_shard_dirs(&dirs).unwrap_err().to_string();
        assert!(err.contains("different run"), "{err}");
    }

    #[test]
    fn no_results_anywhere_is_an_error_not_an_empty_pass() {
        let root = tempfile::tempdir().unwrap();
        let err = merge_shard_dirs(&[root.path().join("shard-0")]).unwrap_err();
        assert!(matches!(err, Error::NoShardResults { .. }), "{err}");
    }
}
