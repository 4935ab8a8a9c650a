//! The gate: run an experiment, compare its arms, check every arm against its goldens, and
//! decide pass or fail — the one function behind `cargo test` gates, `lossdiff run` and the
//! nightly.
//!
//! Two kinds of comparison come out of one experiment:
//! - **cross-arm**: the baseline arm against every other arm in each cell (flash vs naive, f32 vs
//!   bf16, clean vs planted bug), judged against what the experiment expects;
//! - **golden**: each arm's fresh runs against its blessed golden — what fails when a framework
//!   upgrade changes numerics.
//!
//! A stale golden (spec changed since blessing) is reported as stale, never as diverged. Cells of
//! a sweep are gated together with Holm's correction; Benjamini–Hochberg ranks them for triage.

use crate::compare::{
    compare, gate_sweep, CompareSettings, Comparison, Margin, SweepGate, Verdict,
};
use crate::config::Kernels;
use crate::error::{Error, Result};
use crate::experiment::{Cell, CompareSpec, Experiment, Role, RunRequest};
use crate::faults::Fault;
use crate::golden::{is_ci, BlessHint, GoldenOutcome, GoldenStore, UpdateMode};
use crate::runner::{run_all, RunStats, RunnerOptions};
use crate::trace::Trace;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

mod goldens;
mod render;
use render::show;
mod scale;
mod terminal;

pub use render::{
    write_report_dir, write_report_dir_reusing, FigureKey, FigurePaths, GateResults,
    EXPERIMENTS_JSON,
};
pub use scale::{
    clear_shard_plan, expand_specs, merge_reports, merge_shard_dirs, parse_shard, plan_cells,
    run_all_experiments, shard_plan, write_shard_plan, MergedShards, PlannedCell, ShardPlan,
    SHARD_JSON,
};
pub use terminal::{numbers_clause, render_summary, render_verdict_table, verdict_row, VerdictRow};

/// How to run a gate.
#[derive(Debug, Clone)]
pub struct GateOptions {
    /// Root of the golden store (default `golden/`).
    pub golden_root: PathBuf,
    /// Parallelism and cache.
    pub runner: RunnerOptions,
    /// Golden update mode (default: from `LOSSDIFF_UPDATE`).
    pub update: UpdateMode,
    /// Whether this is CI (never writes goldens).
    pub ci: bool,
    /// Only these cells (all when `None`).
    pub cells: Option<Vec<String>>,
    /// `(index, count)`: run only cells whose position in the experiment's cell list is
    /// `index` modulo `count` (a Slurm/PBS job-array task's share).
    pub shard: Option<(usize, usize)>,
    /// Test-only switch: inject this fault into every run, to prove the gate fails when numerics
    /// change. Goldens are never written while it is set.
    pub inject: Option<Fault>,
    /// Run every trained arm with these kernels instead of the spec's: an environment switch
    /// (goldens are blessed on the default fused kernels; `Some(Kernels::Composed)` asks whether
    /// candle's composed ops agree with them). It is not part of the spec, so goldens do not go
    /// stale under it.
    pub kernels: Option<Kernels>,
    /// Who runs the gate: its hints name this caller's bless command (default: `cargo test`).
    pub bless_hint: BlessHint,
}

impl GateOptions {
    /// Defaults: `golden/`, all cores, the default cache, update mode from the environment.
    ///
    /// # Errors
    /// [`Error::InvalidValue`] for a bad `LOSSDIFF_UPDATE`.
    pub fn from_env() -> Result<GateOptions> {
        Ok(GateOptions {
            golden_root: PathBuf::from("golden"),
            runner: RunnerOptions::default(),
            update: UpdateMode::from_env()?,
            ci: is_ci(),
            cells: None,
            shard: None,
            inject: None,
            kernels: None,
            bless_hint: BlessHint::CargoTest,
        })
    }
}

/// One cross-arm comparison and whether it met the experiment's expectation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmComparison {
    /// Cell id.
    pub cell: String,
    /// Baseline arm.
    pub a: String,
    /// Other arm.
    pub b: String,
    /// Whether this cell was expected to diverge.
    pub expected_diverged: bool,
    /// The comparison.
    pub comparison: Comparison,
    /// Whether it met the expectation (after the sweep's Holm correction).
    pub passed: bool,
    /// Why it failed, one line each (empty when passed).
    pub problems: Vec<String>,
}

/// One arm's check against its golden.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GoldenCheck {
    /// Cell id.
    pub cell: String,
    /// Arm name.
    pub arm: String,
    /// What was found.
    pub outcome: GoldenOutcome,
    /// The comparison against the golden, when one was made.
    pub comparison: Option<Comparison>,
    /// The golden's path (which may not exist).
    pub golden_path: PathBuf,
    /// A golden or pending golden written by this run.
    pub written: Option<PathBuf>,
    /// Whether the check passes.
    pub passed: bool,
    /// One line for humans: what happened and what to do.
    pub message: String,
    /// The golden traces `comparison` was computed from, as read before any update rewrote the
    /// file: the report draws the check from these, not from what is on disk afterwards. Not
    /// serialised (a merged report reuses the shard's figure instead).
    #[serde(skip)]
    pub compared_golden: Option<ArmTraces>,
}

/// Everything a gate found for one experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentReport {
    /// Experiment name.
    pub experiment: String,
    /// The spec file.
    pub spec: PathBuf,
    /// The spec's description.
    pub description: String,
    /// Cells run (after `cells`/`shard` selection).
    pub cells: Vec<String>,
    /// Cross-arm comparisons.
    pub comparisons: Vec<ArmComparison>,
    /// Holm/BH over the cross-arm comparisons.
    pub sweep_gate: Option<SweepGate>,
    /// Golden checks.
    pub goldens: Vec<GoldenCheck>,
    /// Config keys the experiment expects to be reported as undeclared differences.
    pub expected_undeclared: Vec<String>,
    /// Whether the arms must differ in at least one bit (`expect = "changed"`).
    #[serde(default)]
    pub expected_changed: bool,
    /// Significance level of the sweep gate.
    pub alpha: f64,
    /// Runs trained and read from the cache.
    pub trained: usize,
    /// Runs read from the cache.
    pub cached: usize,
    /// Cells a sharded run planned but no finished task delivered (filled by `lossdiff merge`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<MissingCell>,
    /// Cache entries found but not used, `<path>: <why>` (each of those runs ran again).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cache_rejected: Vec<String>,
    /// What the keys of external runs served from the cache do not cover.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cache_unhashed: Vec<String>,
    /// Whether everything passed.
    pub passed: bool,
}

/// A cell of a sharded run whose task did not finish: it has no result, so its experiment fails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingCell {
    /// Cell id.
    pub cell: String,
    /// 0-based index of the task that was to run it.
    pub task: usize,
    /// Number of tasks of the run.
    pub count: usize,
}

impl ExperimentReport {
    /// Returns a report with no cells, for an experiment whose every cell is missing after a
    /// merge (its alpha is never used: there is nothing to gate).
    pub fn empty(experiment: &str, spec: &Path) -> ExperimentReport {
        ExperimentReport {
            experiment: experiment.to_string(),
            spec: spec.to_path_buf(),
            description: String::new(),
            cells: vec![],
            comparisons: vec![],
            sweep_gate: None,
            goldens: vec![],
            expected_undeclared: vec![],
            expected_changed: false,
            alpha: CompareSettings::default().alpha,
            trained: 0,
            cached: 0,
            missing: vec![],
            cache_rejected: vec![],
            cache_unhashed: vec![],
            passed: false,
        }
    }

    /// Gates the cross-arm comparisons together (Holm, with BH for triage), checks each against
    /// the expectation, and sets `passed`. Idempotent; `merge` re-runs it over joined shards.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for an alpha outside `(0, 1)`.
    pub fn finalize(&mut self) -> Result<()> {
        self.sweep_gate = match self.comparisons.len() {
            0 => None,
            _ => {
                let cs: Vec<Comparison> = self
                    .comparisons
                    .iter()
                    .map(|c| c.comparison.clone())
                    .collect();
                Some(gate_sweep(&cs, self.alpha)?)
            }
        };
        for (i, c) in self.comparisons.iter_mut().enumerate() {
            let holm_fail = self
                .sweep_gate
                .as_ref()
                .is_some_and(|g| g.failing.contains(&i));
            let rounding_fail = self
                .sweep_gate
                .as_ref()
                .is_some_and(|g| g.beyond_rounding.contains(&i));
            c.problems = expectation_problems(
                c,
                (holm_fail, rounding_fail),
                &self.expected_undeclared,
                self.expected_changed,
            );
            c.passed = c.problems.is_empty();
        }
        // A missing cell is never a pass: its task may have been the one that diverged.
        self.passed = self.missing.is_empty()
            && self.comparisons.iter().all(|c| c.passed)
            && self.goldens.iter().all(|g| g.passed);
        Ok(())
    }

    /// Returns what the run cache could not vouch for, one line each: entries it ignored (they
    /// ran again), then what the keys of the external runs it served do not cover. Printed by
    /// `lossdiff run` and `assert_gate!` whenever a run reads the cache.
    pub fn cache_notes(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .cache_rejected
            .iter()
            .map(|r| format!("warning: ignored cache entry {r}; ran it again"))
            .collect();
        if self.cached > 0 && !self.cache_unhashed.is_empty() {
            out.push(format!(
                "from cache: {} runs, external inputs not hashed: {}",
                self.cached,
                self.cache_unhashed.join("; ")
            ));
        }
        out
    }

    /// Returns one line per failure, for assertion messages and exit summaries.
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        for c in self.comparisons.iter().filter(|c| !c.passed) {
            out.push(format!(
                "{} [{}] {} vs {}: {}",
                self.experiment,
                c.cell,
                c.a,
                c.b,
                c.problems.join("; ")
            ));
        }
        for g in self.goldens.iter().filter(|g| !g.passed) {
            out.push(format!(
                "{} [{}] {} vs golden: {}",
                self.experiment, g.cell, g.arm, g.message
            ));
        }
        for m in &self.missing {
            out.push(format!(
                "{} [{}] missing: {}",
                self.experiment,
                m.cell,
                m.describe()
            ));
        }
        out
    }
}

impl MissingCell {
    /// Returns one line for humans: which task did not deliver the cell and what to do.
    pub fn describe(&self) -> String {
        format!(
            "task {} of {} did not finish, so this cell has no result; re-run that task (`--shard {}/{}`) into its directory and merge again",
            self.task, self.count, self.task, self.count
        )
    }
}

/// What every golden check of one cell shares.
#[derive(Clone, Copy)]
struct GateCheckInput<'a> {
    store: &'a GoldenStore,
    exp: &'a Experiment,
    cell: &'a Cell,
    settings: &'a CompareSettings,
}

/// The traces of one arm in one cell.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ArmTraces {
    /// Seed ensemble, in seed order.
    pub seeds: Vec<Trace>,
    /// Perturbation ensemble.
    pub perturbations: Vec<Trace>,
}

/// Traces of every arm of one cell, in arm order.
pub type CellTraces = Vec<(String, ArmTraces)>;

/// An experiment's report together with its traces by cell (for figures).
pub type ExperimentRun = (ExperimentReport, Vec<(Cell, CellTraces)>);

/// Runs `spec` against its goldens and returns the report, plus the traces by cell (for figures).
///
/// # Errors
/// Spec, training and golden I/O errors. A divergence is not an error: it is a failed report.
pub fn run_experiment(spec: &Path, opts: &GateOptions) -> Result<ExperimentRun> {
    let exp = Experiment::load(spec)?;
    let settings = settings_from_spec(&exp.compare);
    let cells = select_cells(&exp, opts)?;
    let requests: Vec<RunRequest> = exp
        .runs(opts.inject)?
        .into_iter()
        .filter(|r| cells.iter().any(|c| c.id == r.cell))
        .map(|mut r| {
            if let Some(k) = opts.kernels {
                r.config.model.kernels = k;
            }
            r
        })
        .collect();
    let (traces, stats) = run_all(&exp.name, &requests, &opts.runner)?;
    let by_cell = group(&exp, &cells, &requests, traces);

    let mut comparisons = Vec::new();
    for (cell, arms) in &by_cell {
        let (a_name, a) = &arms[0];
        for (b_name, b) in &arms[1..] {
            let comparison = compare(
                &a.seeds,
                &b.seeds,
                &a.perturbations,
                &exp.declared,
                &settings,
            )?;
            comparisons.push(ArmComparison {
                cell: cell.id.clone(),
                a: a_name.clone(),
                b: b_name.clone(),
                expected_diverged: exp.expect.diverges(&cell.id),
                comparison,
                passed: false,
                problems: vec![],
            });
        }
    }
    let store = GoldenStore::new(&opts.golden_root);
    let mut goldens = Vec::new();
    for (cell, arms) in &by_cell {
        for (arm_name, fresh) in arms {
            let arm = exp
                .arms
                .iter()
                .find(|a| &a.name == arm_name)
                .expect("arm exists");
            let hash = exp.spec_hash(cell, arm)?;
            let input = GateCheckInput {
                store: &store,
                exp: &exp,
                cell,
                settings: &settings,
            };
            goldens.push(goldens::check_golden(&input, arm_name, fresh, &hash, opts)?);
        }
    }
    let RunStats {
        trained,
        cached,
        rejected: cache_rejected,
        unhashed: cache_unhashed,
    } = stats;
    let mut report = ExperimentReport {
        experiment: exp.name.clone(),
        spec: spec.to_path_buf(),
        description: exp.description.clone(),
        cells: cells.iter().map(|c| c.id.clone()).collect(),
        comparisons,
        sweep_gate: None,
        goldens,
        expected_undeclared: exp.expect.undeclared.clone(),
        expected_changed: exp.expect.changed,
        alpha: settings.alpha,
        trained,
        cached,
        missing: vec![],
        cache_rejected,
        cache_unhashed,
        passed: false,
    };
    report.finalize()?;
    Ok((report, by_cell))
}

fn select_cells(exp: &Experiment, opts: &GateOptions) -> Result<Vec<Cell>> {
    let all = exp.cells();
    if let Some(wanted) = &opts.cells {
        if let Some(w) = wanted.iter().find(|w| !all.iter().any(|c| &&c.id == w)) {
            return Err(Error::InvalidValue {
                origin: exp.path.display().to_string(),
                key: "cell".into(),
                expected: format!(
                    "one of {}",
                    all.iter()
                        .map(|c| c.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                got: w.clone(),
            });
        }
    }
    Ok(all
        .into_iter()
        .enumerate()
        .filter(|(i, c)| {
            opts.cells.as_ref().is_none_or(|w| w.contains(&c.id))
                && opts.shard.is_none_or(|(k, n)| i % n == k)
        })
        .map(|(_, c)| c)
        .collect())
}

fn group(
    exp: &Experiment,
    cells: &[Cell],
    requests: &[RunRequest],
    traces: Vec<Trace>,
) -> Vec<(Cell, CellTraces)> {
    let mut out: Vec<(Cell, CellTraces)> = cells
        .iter()
        .map(|c| {
            (
                c.clone(),
                exp.arms
                    .iter()
                    .map(|a| (a.name.clone(), ArmTraces::default()))
                    .collect(),
            )
        })
        .collect();
    for (req, trace) in requests.iter().zip(traces) {
        let (_, arms) = out
            .iter_mut()
            .find(|(c, _)| c.id == req.cell)
            .expect("cell selected");
        let (_, arm) = arms
            .iter_mut()
            .find(|(n, _)| n == &req.arm)
            .expect("arm exists");
        match req.role {
            Role::Seed => arm.seeds.push(trace),
            Role::Perturbation => arm.perturbations.push(trace),
        }
    }
    out
}

/// Lists why a cross-arm comparison does not meet the expectation.
///
/// Expectations choose the question: a same-math pair (`match`, the default) must stay within
/// rounding when a perturbation ensemble can tell; an environment pair (`changed`) must differ in
/// some bit yet stay inside the margin; a canary must diverge beyond the margin.
fn expectation_problems(
    c: &ArmComparison,
    (holm_fail, rounding_fail): (bool, bool),
    expected_undeclared: &[String],
    expected_changed: bool,
) -> Vec<String> {
    let mut problems = Vec::new();
    let diverged = matches!(c.comparison.verdict, Verdict::Diverged { .. });
    let undeclared: Vec<&str> = c
        .comparison
        .config
        .undeclared
        .iter()
        .map(|d| d.key.as_str())
        .collect();
    if c.expected_diverged && !diverged {
        problems.push(format!(
            "expected a divergence but the verdict is {}: the harness did not see the planted change",
            c.comparison.verdict.label()
        ));
    }
    if expected_changed && c.comparison.verdict == Verdict::Identical {
        problems.push(
            "expected the arms' numerics to differ but they are bitwise identical: the planted change did not take effect"
                .to_string(),
        );
    }
    if !c.expected_diverged && diverged && (holm_fail || is_non_finite(&c.comparison.verdict)) {
        problems.push(c.comparison.describe());
    }
    if !c.expected_diverged && !expected_changed && !diverged && rounding_fail {
        if let Some(r) = c.comparison.rounding() {
            problems.push(format!(
                "beyond rounding from step {} ({:.0}× the perturbation spread, {}): expected the same math up to rounding (use expect = \"changed\" for a pair that may change numerics within the margin)",
                r.onset_step.unwrap_or_default(),
                r.ratio,
                crate::compare::named_p(
                    &format!("{}, Holm-adjusted", crate::compare::P_BEYOND_ROUNDING),
                    r.p_value
                )
            ));
        }
    }
    for key in expected_undeclared {
        if !undeclared.contains(&key.as_str()) {
            problems.push(format!(
                "expected `{key}` to be reported as an undeclared difference; it was not"
            ));
        }
    }
    let unexpected: Vec<&str> = undeclared
        .iter()
        .copied()
        .filter(|k| !expected_undeclared.iter().any(|e| e == k))
        .collect();
    if !unexpected.is_empty() {
        problems.push(format!(
            "undeclared config differences: {}",
            unexpected.join(", ")
        ));
    }
    problems
}

fn is_non_finite(v: &Verdict) -> bool {
    matches!(
        v,
        Verdict::Diverged {
            direction: crate::compare::Direction::NonFinite | crate::compare::Direction::Stopped,
            ..
        }
    )
}

/// Builds comparison settings from an experiment's `[compare]` section (checked when the spec
/// was loaded); what it leaves out keeps the engine's default.
pub fn settings_from_spec(spec: &CompareSpec) -> CompareSettings {
    let mut s = CompareSettings::default();
    if let Some(m) = spec.margin {
        s.margin = Margin::Relative(m);
    }
    if let Some(m) = spec.margin_abs {
        s.margin = Margin::Absolute(m);
    }
    s.alpha = spec.alpha.unwrap_or(s.alpha);
    s.window_fraction = spec.window_fraction.unwrap_or(s.window_fraction);
    s.rtol = spec.rtol.unwrap_or(s.rtol);
    s.atol = spec.atol.unwrap_or(s.atol);
    if let Some(m) = &spec.metric {
        s.metric = m.clone();
    }
    s
}

/// Formats a relative effect as a percentage with three significant digits (`-1.23e-4%` for tiny
/// effects rather than a misleading `-0.000%`).
pub fn percent(rel: f64) -> String {
    let p = rel * 100.0;
    if p == 0.0 || !p.is_finite() {
        format!("{p}%")
    } else if p.abs() >= 0.01 {
        format!("{p:+.3}%")
    } else {
        format!("{p:+.2e}%")
    }
}

/// What [`check`] returns: the report and where it was written.
#[derive(Debug, Clone)]
pub struct GateOutcome {
    /// The spec checked.
    pub spec: PathBuf,
    /// The experiment's report.
    pub report: ExperimentReport,
    /// The report directory (index.md, index.html, summary.json, junit.xml, figures/).
    pub report_dir: PathBuf,
    /// Figure path per comparison, keyed `(cell, a, b)`; golden checks use `b = "golden"`.
    pub figures: FigurePaths,
}

impl GateOutcome {
    /// Returns the figure of a comparison, if one was written.
    pub fn figure(&self, cell: &str, a: &str, b: &str) -> Option<&Path> {
        self.figures
            .iter()
            .find(|((c, x, y), _)| c == cell && x == a && y == b)
            .map(|(_, p)| p.as_path())
    }

    /// Returns the assertion message: one block per failure with verdict, onset, undeclared
    /// config differences and the figure's path, then where the full report is.
    pub fn failure_message(&self) -> String {
        let r = &self.report;
        let mut s = format!(
            "lossdiff gate failed: {} ({})\n",
            self.spec.display(),
            r.experiment
        );
        for c in r.comparisons.iter().filter(|c| !c.passed) {
            s += &format!(
                "  [{}] {} vs {}: {}\n",
                c.cell,
                c.a,
                c.b,
                c.comparison.verdict.describe()
            );
            for p in &c.problems {
                s += &format!("      {p}\n");
            }
            for d in &c.comparison.config.undeclared {
                s += &format!(
                    "      undeclared: {} ({} → {})\n",
                    d.key,
                    show(&d.a),
                    show(&d.b)
                );
            }
            if let Some(f) = self.figure(&c.cell, &c.a, &c.b) {
                s += &format!("      figure: {}\n", f.display());
            }
        }
        for g in r.goldens.iter().filter(|g| !g.passed) {
            s += &format!("  [{}] {} vs golden: {}\n", g.cell, g.arm, g.message);
            if let Some(f) = self.figure(&g.cell, &g.arm, "golden") {
                s += &format!("      figure: {}\n", f.display());
            }
        }
        s += &format!("  report: {}\n", self.report_dir.join("index.md").display());
        s
    }
}

/// Returns `$LOSSDIFF_REPORTS`, else `target/lossdiff-reports`: where gates run from `cargo test`
/// write their reports.
pub fn default_report_root() -> PathBuf {
    std::env::var_os("LOSSDIFF_REPORTS")
        .map_or_else(|| PathBuf::from("target/lossdiff-reports"), PathBuf::from)
}

/// Runs an experiment against its goldens, writes its report under [`default_report_root`], and
/// returns both: the library call behind [`crate::assert_gate!`].
///
/// # Errors
/// As [`run_experiment`], plus report I/O errors.
pub fn check(spec: &Path, opts: &GateOptions) -> Result<GateOutcome> {
    let run = run_experiment(spec, opts)?;
    let report_dir = default_report_root().join(&run.0.experiment);
    let figures = write_report_dir(&report_dir, std::slice::from_ref(&run))?;
    Ok(GateOutcome {
        spec: spec.to_path_buf(),
        report: run.0,
        report_dir,
        figures,
    })
}

#[cfg(test)]
mod tests;
