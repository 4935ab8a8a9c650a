//! `lossdiff report <dir>`: a ticket-ready report for a directory, ad hoc.
//!
//! - A report directory (it has `experiments.json`, written by `lossdiff run`): re-render
//!   index.md, index.html, summary.json and junit.xml, reusing its figures.
//! - Any other directory: every trace file in it (any format `lossdiff compare` reads) is compared
//!   against the first one in name order, and the report is written to `<dir>/report/`.

use crate::compare::{compare, CompareSettings};
use crate::gate::{write_report_dir_reusing, GateResults, EXPERIMENTS_JSON};
use crate::report::{
    comparison_entry_with_figure, comparison_summary, write_report, GateDecision, ReportInput,
};
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub(super) fn run(dir: &Path) -> anyhow::Result<ExitCode> {
    let summary_path = dir.join(EXPERIMENTS_JSON);
    if summary_path.exists() {
        let text = std::fs::read_to_string(&summary_path)
            .with_context(|| format!("failed to read {}", summary_path.display()))?;
        let summary: GateResults = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a lossdiff report", summary_path.display()))?;
        let passed = summary.passed;
        let results: Vec<_> = summary
            .experiments
            .into_iter()
            .map(|r| (r, Vec::new()))
            .collect();
        write_report_dir_reusing(dir, &results, &[dir.to_path_buf()])?;
        println!("re-rendered {}", dir.join("index.md").display());
        return Ok(ExitCode::from(if passed { 0 } else { 1 }));
    }
    traces_report(dir)
}

fn traces_report(dir: &Path) -> anyhow::Result<ExitCode> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("failed to list {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let traces = files
        .iter()
        .map(|p| crate::import::import(p, None).map(|t| (p.clone(), t)))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(((a_path, a), rest)) = traces.split_first() else {
        anyhow::bail!("{} holds no trace files: put the runs to compare there (any format `lossdiff compare` reads), the reference first in name order", dir.display());
    };
    if rest.is_empty() {
        anyhow::bail!(
            "{} holds one trace ({}); a report needs at least two",
            dir.display(),
            a_path.display()
        );
    }
    let settings = CompareSettings::default();
    let mut entries = Vec::new();
    // The same labels as `lossdiff compare`: the shortest part telling the files apart.
    let labels = super::compare::short_labels(&files);
    for (i, (_, b)) in rest.iter().enumerate() {
        let (a_label, b_label) = (&labels[0], &labels[i + 1]);
        let name = format!("{b_label} vs {a_label}");
        let c = compare(
            std::slice::from_ref(a),
            std::slice::from_ref(b),
            &[],
            &[],
            &settings,
        )?;
        let summary = comparison_summary(a_label, b_label, &c);
        let traces = (std::slice::from_ref(a), std::slice::from_ref(b), &[][..]);
        entries.push(comparison_entry_with_figure(&name, traces, &c, summary)?);
    }
    let failing = entries.iter().filter(|e| !e.passed).count();
    let out = dir.join("report");
    let paths = write_report(
        &out,
        &ReportInput {
            name: dir.display().to_string(),
            timestamp: String::new(),
            entries,
            sweep_figures: vec![],
            gate: GateDecision {
                passed: failing == 0,
                reason: format!("{failing} of {} comparisons diverged", rest.len()),
            },
        },
    )?;
    println!("wrote {}", paths.index_md.display());
    Ok(ExitCode::from(if failing == 0 { 0 } else { 1 }))
}
