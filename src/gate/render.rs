//! Presenting gate results: the terminal summary and the report directory (index.md,
//! index.html, summary.json, junit.xml, figures, and experiments.json for `lossdiff merge`).

use super::{describe_verdict, ExperimentReport, ExperimentRun};
use crate::error::Result;
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
/// [`Error::Io`] naming the file.
pub fn write_report_dir(dir: &Path, results: &[ExperimentRun]) -> Result<Figures> {
    let experiments: Vec<ExperimentReport> = results.iter().map(|(r, _)| r.clone()).collect();
    let summary = Summary {
        passed: experiments.iter().all(|r| r.passed),
        experiments,
    };
    let json = serde_json::to_string_pretty(&summary).expect("reports serialise");
    crate::fsutil::write_atomic(&dir.join(EXPERIMENTS_JSON), json.as_bytes())?;
    Ok(Vec::new())
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
    }
    s
}

pub(super) fn show(v: &Option<serde_json::Value>) -> String {
    v.as_ref().map_or("absent".into(), |v| v.to_string())
}
