//! Presenting gate results: the terminal summary and the report directory (index.md,
//! index.html, summary.json, junit.xml, figures, and experiments.json for `lossdiff merge`).

use super::{
    describe_verdict, verdict_label, ArmComparison, ArmTraces, CellTraces, ExperimentReport,
    ExperimentRun,
};
use crate::compare::{Comparison, Verdict};
use crate::error::Result;
use crate::experiment::Cell;
use crate::golden::Golden;
use crate::report::{
    comparison_figure, render_comparison, render_sweep_grid, render_sweep_heatmap, write_report,
    ArmCurves, FigureSource, GateDecision, KeyNumbers, NamedFigure, ReportEntry, ReportInput,
    ReportSummary, SweepAxis, SweepCell, SweepFigure,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The machine-readable summary of a report directory (`summary.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
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
pub fn write_report_dir(dir: &Path, results: &[ExperimentRun]) -> Result<Figures> {
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
) -> Result<Figures> {
    let experiments: Vec<ExperimentReport> = results.iter().map(|(r, _)| r.clone()).collect();
    let passed = experiments.iter().all(|r| r.passed);
    let summary = Summary {
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
        for c in &report.comparisons {
            let name = format!("{} [{}] {} vs {}", report.experiment, c.cell, c.a, c.b);
            let arms = cells
                .iter()
                .find(|(cell, _)| cell.id == c.cell)
                .map(|(_, a)| a);
            let figure = arms
                .and_then(|arms| Some((arm(arms, &c.a)?, arm(arms, &c.b)?)))
                .map(|(a, b)| {
                    let mut fig = comparison_figure(
                        &name,
                        &a.seeds,
                        &b.seeds,
                        &a.perturbations,
                        &c.comparison,
                    );
                    fig.arm_a.label = c.a.clone();
                    fig.arm_b.label = c.b.clone();
                    fig.passed = c.passed;
                    render_comparison(&fig).map(FigureSource::Png)
                })
                .transpose()?
                .or_else(|| reused.get(&name).cloned().map(FigureSource::Path));
            let summary_text = comparison_summary(c);
            entries.push(entry(&name, &c.comparison, c.passed, summary_text, figure));
            keys.push((c.cell.clone(), c.a.clone(), c.b.clone()));
        }
        for g in &report.goldens {
            let name = format!("{} [{}] {} vs golden", report.experiment, g.cell, g.arm);
            let needs_figure = g
                .comparison
                .as_ref()
                .is_some_and(|c| c.verdict != Verdict::Identical);
            let fresh = cells
                .iter()
                .find(|(cell, _)| cell.id == g.cell)
                .and_then(|(_, arms)| arm(arms, &g.arm));
            let figure = match (needs_figure, fresh, &g.comparison) {
                (true, Some(fresh), Some(c)) => match Golden::load(&g.golden_path) {
                    Ok(golden) => {
                        let mut fig = comparison_figure(
                            &name,
                            &golden.seed_traces,
                            &fresh.seeds,
                            &golden.perturbation_traces,
                            c,
                        );
                        fig.arm_a.label = "golden".into();
                        fig.arm_b.label = format!("{} (now)", g.arm);
                        fig.passed = g.passed;
                        Some(FigureSource::Png(render_comparison(&fig)?))
                    }
                    Err(_) => None,
                },
                _ => reused.get(&name).cloned().map(FigureSource::Path),
            };
            let text = g.message.clone();
            entries.push(match &g.comparison {
                Some(c) => entry(&name, c, g.passed, text, figure),
                None => ReportEntry {
                    name: name.clone(),
                    verdict: format!("{:?}", g.outcome).to_lowercase(),
                    passed: g.passed,
                    summary: text,
                    numbers: KeyNumbers::default(),
                    undeclared_differences: vec![],
                    environment_differences: vec![],
                    figure,
                },
            });
            keys.push((g.cell.clone(), g.arm.clone(), "golden".into()));
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
        timestamp: utc_now(),
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

/// Builds a report entry from a comparison: verdict, key numbers (late-window Δ and margin in the
/// metric's units), undeclared and environment differences.
pub fn entry(
    name: &str,
    c: &Comparison,
    passed: bool,
    summary: String,
    figure: Option<FigureSource>,
) -> ReportEntry {
    let lane = c.statistical.as_ref();
    ReportEntry {
        name: name.to_string(),
        verdict: verdict_label(&c.verdict).to_string(),
        passed,
        summary,
        numbers: KeyNumbers {
            onset_step: match c.verdict {
                Verdict::Diverged { onset_step, .. } => Some(onset_step),
                _ => None,
            },
            // In the metric's units, like the margin beside it.
            effect_size: lane
                .filter(|_| c.verdict != Verdict::Identical)
                .map(|l| l.late_difference),
            p_value: lane.map(|l| l.divergence_p_value),
            margin: lane.map(|l| l.margin),
        },
        undeclared_differences: c.config.undeclared.iter().map(field).collect(),
        environment_differences: c.config.environment.iter().map(field).collect(),
        figure,
    }
}

fn field(d: &crate::compare::FieldDiff) -> String {
    format!("{}: {} → {}", d.key, show(&d.a), show(&d.b))
}

/// One paragraph for a reader who never ran lossdiff: verdict, the three lanes, alignment.
fn comparison_summary(c: &ArmComparison) -> String {
    let cmp = &c.comparison;
    let mut s = format!("{} vs {}: {}", c.b, c.a, describe_verdict(&cmp.verdict));
    if c.expected_diverged {
        s += " (this cell is expected to diverge)";
    }
    s += &format!(
        ". Exact lane: {}. Megatron rtol {} rule: {} ({} failing steps, {} allowed).",
        match cmp.exact.first_differing_step {
            None => "bitwise identical".to_string(),
            Some(step) => format!(
                "first differing step {step}, max relative difference {:.2e}",
                cmp.exact.max_rel_diff
            ),
        },
        cmp.tolerance.rtol,
        if cmp.tolerance.pass { "pass" } else { "FAIL" },
        cmp.tolerance.failing_steps,
        cmp.tolerance.allowed_failures
    );
    if let Some(l) = &cmp.statistical {
        s += &format!(
            " Statistical lane ({:?} yardstick): late-window difference {:+.3e} against a margin of ±{:.3e}; divergence p = {:.2e}, TOST p = {:.2e}.",
            l.yardstick, l.late_difference, l.margin, l.divergence_p_value, l.tost_p_value
        );
    }
    for p in &c.problems {
        s += &format!(" Problem: {p}.");
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
            verdict: verdict_label(&c.comparison.verdict).to_string(),
            // A cell is marked when it diverged, expected or not: the grid shows where.
            passed: !matches!(c.comparison.verdict, Verdict::Diverged { .. }),
            onset: fig.onset,
            effect_size: c
                .comparison
                .statistical
                .as_ref()
                .and_then(|l| l.relative_difference),
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

/// Returns the current UTC time as `YYYY-MM-DD HH:MM:SS UTC` (civil-from-days, Hinnant 2013).
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Identifies a comparison's figure: `(cell, a, b)`; golden checks use `b = "golden"`.
pub type FigureKey = (String, String, String);

/// Figure paths by comparison.
pub type Figures = Vec<(FigureKey, PathBuf)>;

/// File name of the full gate reports in a report directory.
pub const EXPERIMENTS_JSON: &str = "experiments.json";

/// Renders the terminal summary: one line per comparison and golden check, verdict first.
pub fn render_summary(reports: &[&ExperimentReport]) -> String {
    let mut s = String::new();
    for r in reports {
        s += &format!(
            "{} {}\n",
            if r.passed { "PASS" } else { "FAIL" },
            r.experiment
        );
        for c in &r.comparisons {
            s += &format!(
                "  {} [{}] {} vs {}: {}{}\n",
                if c.passed { "ok  " } else { "FAIL" },
                c.cell,
                c.a,
                c.b,
                describe_verdict(&c.comparison.verdict),
                if c.expected_diverged {
                    " (expected to diverge)"
                } else {
                    ""
                }
            );
            let und: Vec<String> = c
                .comparison
                .config
                .undeclared
                .iter()
                .map(|d| format!("{} ({} → {})", d.key, show(&d.a), show(&d.b)))
                .collect();
            if !und.is_empty() {
                s += &format!("       undeclared: {}\n", und.join(", "));
            }
            for p in &c.problems {
                s += &format!("       problem: {p}\n");
            }
        }
        for g in &r.goldens {
            s += &format!(
                "  {} [{}] {} vs golden: {}\n",
                if g.passed { "ok  " } else { "FAIL" },
                g.cell,
                g.arm,
                g.message
            );
        }
        for m in &r.missing {
            s += &format!("  MISSING [{}] {}\n", m.cell, m.describe());
        }
    }
    s
}

pub(super) fn show(v: &Option<serde_json::Value>) -> String {
    v.as_ref()
        .map_or("absent".into(), crate::report::value_text)
}
