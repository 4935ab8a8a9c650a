//! Presenting gate results: the terminal summary and the report directory (index.md,
//! index.html, summary.json, junit.xml, figures, and experiments.json for `lossdiff merge`).

use super::{ArmComparison, ArmTraces, CellTraces, ExperimentReport, ExperimentRun, GoldenCheck};
use crate::compare::Verdict;
use crate::error::Result;
use crate::experiment::Cell;
use crate::report::{
    comparison_entry, comparison_figure, comparison_summary, render_comparison, render_sweep_grid,
    render_sweep_heatmap, write_report, ArmCurves, ComparisonFigure, FigureSource, GateDecision,
    KeyNumbers, NamedFigure, ReportEntry, ReportInput, ReportSummary, SweepAxis, SweepCell,
    SweepFigure,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The full gate results of a report directory (`experiments.json`), which `lossdiff merge` and
/// `lossdiff report DIR` read back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateResults {
    /// Whether every experiment passed.
    pub passed: bool,
    /// Every experiment's report.
    pub experiments: Vec<ExperimentReport>,
}

/// Writes a report directory for `results`: the `report` module's index.md, index.html,
/// summary.json, junit.xml and figures, plus `experiments.json` (the full reports, which
/// `lossdiff merge` reads). Returns each comparison's figure path, keyed `(cell, a, b)`.
///
/// # Errors
/// [`crate::Error::Io`] and report errors naming the file.
pub fn write_report_dir(dir: &Path, results: &[ExperimentRun]) -> Result<FigurePaths> {
    write_report_dir_reusing(dir, results, &[])
}

/// As [`write_report_dir`], but comparisons without traces (merged shards) reuse the figure of
/// the same name from one of `shard_dirs`.
///
/// # Errors
/// As [`write_report_dir`].
pub fn write_report_dir_reusing(
    dir: &Path,
    results: &[ExperimentRun],
    shard_dirs: &[PathBuf],
) -> Result<FigurePaths> {
    let experiments: Vec<ExperimentReport> = results.iter().map(|(r, _)| r.clone()).collect();
    let passed = experiments.iter().all(|r| r.passed);
    let summary = GateResults {
        passed,
        experiments,
    };
    let json = serde_json::to_string_pretty(&summary).expect("reports serialise");
    // Before anything is written: a shard naming a path outside itself stops the merge whole.
    let reused = reusable_figures(shard_dirs)?;
    crate::report::check_report_dir(dir)?;
    crate::fsutil::write_atomic(&dir.join(EXPERIMENTS_JSON), json.as_bytes())?;

    let mut entries = Vec::new();
    let mut keys = Vec::new();
    let mut sweep_figures = Vec::new();
    for (report, cells) in results {
        for draft in draft_entries(report, cells) {
            let figure = match &draft.figure {
                Some(fig) => Some(FigureSource::Png(render_comparison(fig)?)),
                // Merged shards have no traces: reuse the shard's rendering of the same figure.
                None => reused
                    .get(&draft.entry.name)
                    .cloned()
                    .map(FigureSource::Path),
            };
            entries.push(ReportEntry {
                figure,
                ..draft.entry
            });
            keys.push(draft.key);
        }
        for m in &report.missing {
            entries.push(ReportEntry {
                name: format!("{} [{}]", report.experiment, m.cell),
                verdict: "not run".into(),
                passed: false,
                summary: m.describe(),
                numbers: KeyNumbers::default(),
                undeclared_differences: vec![],
                environment_differences: vec![],
                figure: None,
            });
            keys.push((m.cell.clone(), "missing".into(), "missing".into()));
        }
        if report.cells.len() > 1 {
            let sweep = sweep_figure(report, cells);
            let kinds: [(&str, &str, SweepRenderer); 2] = [
                (
                    "sweep-grid",
                    "one panel per sweep cell (shared axes)",
                    render_sweep_grid,
                ),
                (
                    "effect-heatmap",
                    "relative late-window effect over the sweep",
                    render_sweep_heatmap,
                ),
            ];
            for (suffix, caption, render) in kinds {
                let name = format!("{}-{suffix}", report.experiment);
                // Merged shards have no traces: reuse the shard's rendering of the same figure.
                let figure = match &sweep {
                    Some(fig) => Some(FigureSource::Png(render(fig)?)),
                    None => reused.get(&name).cloned().map(FigureSource::Path),
                };
                if let Some(figure) = figure {
                    let caption = format!("{}: {caption}", report.experiment);
                    sweep_figures.push(NamedFigure {
                        name,
                        caption,
                        figure,
                    });
                }
            }
        }
    }
    let failing = entries.iter().filter(|e| !e.passed).count();
    let missing: usize = results.iter().map(|(r, _)| r.missing.len()).sum();
    let with_figure: Vec<bool> = entries.iter().map(|e| e.figure.is_some()).collect();
    let input = ReportInput {
        name: results
            .iter()
            .map(|(r, _)| r.experiment.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        timestamp: crate::clock::utc_seconds(crate::clock::now_secs()),
        entries,
        sweep_figures,
        gate: GateDecision {
            passed,
            reason: match (failing - missing, missing) {
                (0, 0) => {
                    "every comparison met its expectation and every arm matched its golden".into()
                }
                (n, 0) => format!("{n} comparison(s) failed"),
                (n, m) => format!(
                    "{m} cell(s) missing: their tasks did not finish; {n} comparison(s) failed"
                ),
            },
        },
    };
    let paths = write_report(dir, &input)?;
    let mut figs = paths.figures.into_iter();
    Ok(keys
        .into_iter()
        .zip(with_figure)
        .filter_map(|(k, has)| {
            if has {
                figs.next().map(|p| (k, p))
            } else {
                None
            }
        })
        .collect())
}

/// Renders a sweep figure to PNG bytes.
type SweepRenderer = fn(&SweepFigure) -> Result<Vec<u8>>;

fn arm<'a>(arms: &'a CellTraces, name: &str) -> Option<&'a ArmTraces> {
    arms.iter().find(|(n, _)| n == name).map(|(_, t)| t)
}

/// A report entry before its figure is drawn: the figure's data, when the traces compared are
/// at hand (merged shards have none).
pub(super) struct DraftEntry {
    /// Which comparison it is.
    pub(super) key: FigureKey,
    /// The entry, without its figure.
    pub(super) entry: ReportEntry,
    /// What its figure shows.
    pub(super) figure: Option<ComparisonFigure>,
}

/// Builds the entries of one experiment's report: its cross-arm comparisons, then its golden
/// checks, each drawn from the traces that were compared — for a golden check, the golden as it
/// was read before any update rewrote it.
pub(super) fn draft_entries(
    report: &ExperimentReport,
    cells: &[(Cell, CellTraces)],
) -> Vec<DraftEntry> {
    let mut out = Vec::new();
    for c in &report.comparisons {
        let name = format!("{} [{}] {} vs {}", report.experiment, c.cell, c.a, c.b);
        let arms = cells
            .iter()
            .find(|(cell, _)| cell.id == c.cell)
            .map(|(_, a)| a);
        let figure = arms
            .and_then(|arms| Some((arm(arms, &c.a)?, arm(arms, &c.b)?)))
            .map(|(a, b)| {
                let fig = comparison_figure(
                    &name,
                    &a.seeds,
                    &b.seeds,
                    &a.perturbations,
                    &c.comparison,
                    c.passed,
                );
                labelled(fig, &c.a, &c.b)
            });
        let text = arm_comparison_summary(c);
        out.push(DraftEntry {
            key: (c.cell.clone(), c.a.clone(), c.b.clone()),
            entry: comparison_entry(&name, &c.comparison, c.passed, text, None),
            figure,
        });
    }
    for g in &report.goldens {
        let name = format!("{} [{}] {} vs golden", report.experiment, g.cell, g.arm);
        let fresh = cells
            .iter()
            .find(|(cell, _)| cell.id == g.cell)
            .and_then(|(_, arms)| arm(arms, &g.arm));
        let entry = match &g.comparison {
            Some(c) => comparison_entry(&name, c, g.passed, g.message.clone(), None),
            None => ReportEntry {
                name: name.clone(),
                verdict: g.outcome.label().to_string(),
                passed: g.passed,
                summary: g.message.clone(),
                numbers: KeyNumbers::default(),
                undeclared_differences: vec![],
                environment_differences: vec![],
                figure: None,
            },
        };
        out.push(DraftEntry {
            key: (g.cell.clone(), g.arm.clone(), "golden".into()),
            entry,
            figure: fresh.and_then(|fresh| golden_figure(&name, g, fresh)),
        });
    }
    out
}

/// Draws a golden check from the golden traces it compared against; an identical check has no
/// figure (there is nothing to see).
fn golden_figure(name: &str, g: &GoldenCheck, fresh: &ArmTraces) -> Option<ComparisonFigure> {
    let (c, golden) = (g.comparison.as_ref()?, g.compared_golden.as_ref()?);
    if c.verdict == Verdict::Identical {
        return None;
    }
    let fig = comparison_figure(
        name,
        &golden.seeds,
        &fresh.seeds,
        &golden.perturbations,
        c,
        g.passed,
    );
    Some(labelled(fig, "golden", &format!("{} (now)", g.arm)))
}

/// Names a figure's arms as the gate does (arm names rather than trace names).
fn labelled(mut fig: ComparisonFigure, a: &str, b: &str) -> ComparisonFigure {
    fig.arm_a.label = a.to_string();
    fig.arm_b.label = b.to_string();
    fig
}

/// The comparison's paragraph, plus what the gate expected of it and why it fell short.
fn arm_comparison_summary(c: &ArmComparison) -> String {
    let mut s = comparison_summary(&c.a, &c.b, &c.comparison);
    if c.expected_diverged {
        s += "\nThis cell is expected to diverge.";
    }
    for p in &c.problems {
        s += &format!("\nProblem: {p}.");
    }
    s
}

fn sweep_figure(report: &ExperimentReport, cells: &[(Cell, CellTraces)]) -> Option<SweepFigure> {
    let keys: Vec<String> = cells
        .first()?
        .0
        .assignments
        .iter()
        .map(|(k, _)| k.clone())
        .collect();
    if keys.is_empty() || keys.len() > 2 {
        return None;
    }
    let axes: Vec<SweepAxis> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let mut values: Vec<String> = Vec::new();
            for (cell, _) in cells {
                let v = cell.assignments[i].1.clone();
                if !values.contains(&v) {
                    values.push(v);
                }
            }
            SweepAxis {
                key: k.clone(),
                values,
            }
        })
        .collect();
    let mut out = Vec::new();
    for (cell, arms) in cells {
        let c = report.comparisons.iter().find(|c| c.cell == cell.id)?;
        let (a, b) = (arm(arms, &c.a)?, arm(arms, &c.b)?);
        let fig = comparison_figure(
            &cell.id,
            &a.seeds,
            &b.seeds,
            &a.perturbations,
            &c.comparison,
            c.comparison.verdict.passes(),
        );
        out.push(SweepCell {
            label: cell.id.clone(),
            coordinates: cell.assignments.iter().map(|(_, v)| v.clone()).collect(),
            arm_a: ArmCurves {
                label: c.a.clone(),
                ..fig.arm_a
            },
            arm_b: ArmCurves {
                label: c.b.clone(),
                ..fig.arm_b
            },
            diff: fig.diff,
            verdict: c.comparison.verdict.label().to_string(),
            // A cell is marked when it diverged, expected or not: the grid shows where.
            passed: c.comparison.verdict.passes(),
            onset: fig.onset,
            effect_size: c
                .comparison
                .statistical
                .as_ref()
                .and_then(|l| l.relative_difference),
            relative_margin: crate::report::relative_margin(&c.comparison),
        });
    }
    Some(SweepFigure {
        // Short: the legend shares the header line (it names the arms) and each panel its cell.
        title: report.experiment.clone(),
        axes,
        cells: out,
    })
}

/// Returns figures of earlier report directories by entry name (from their summary.json).
///
/// # Errors
/// [`crate::Error::PathOutsideDir`] for a `figure_path`, or a file in `figures/`, that leads out
/// of its report directory: a shard's summary is data, and must not get `/etc/hostname` copied
/// into the merged report.
fn reusable_figures(dirs: &[PathBuf]) -> Result<std::collections::BTreeMap<String, PathBuf>> {
    let mut out = std::collections::BTreeMap::new();
    for dir in dirs {
        let summary_path = dir.join("summary.json");
        let Ok(text) = std::fs::read_to_string(&summary_path) else {
            continue;
        };
        let Ok(summary) = serde_json::from_str::<ReportSummary>(&text) else {
            continue;
        };
        for (i, e) in summary.entries.into_iter().enumerate() {
            if let Some(p) = e.figure_path {
                let key = format!("entries[{i}].figure_path");
                let path = crate::fsutil::resolve_inside(dir, &p, &summary_path, &key)?;
                out.insert(e.entry.name, path);
            }
        }
        let figures = dir.join("figures");
        if let Ok(rd) = std::fs::read_dir(&figures) {
            for f in rd.flatten() {
                let file_name = f.file_name().to_string_lossy().into_owned();
                let rel = format!("figures/{file_name}");
                let path = crate::fsutil::resolve_inside(dir, &rel, &figures, "file")?;
                let name = file_name.trim_end_matches(".png").to_string();
                out.entry(name).or_insert(path);
            }
        }
    }
    Ok(out)
}

/// Identifies a comparison's figure: `(cell, a, b)`; golden checks use `b = "golden"`.
pub type FigureKey = (String, String, String);

/// Figure paths by comparison.
pub type FigurePaths = Vec<(FigureKey, PathBuf)>;

/// File name of the full gate reports in a report directory.
pub const EXPERIMENTS_JSON: &str = "experiments.json";

pub(super) fn show(v: &Option<serde_json::Value>) -> String {
    v.as_ref()
        .map_or("absent".into(), crate::report::value_text)
}
