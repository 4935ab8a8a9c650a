//! `lossdiff report <dir>`: a ticket-ready report for a directory, ad hoc, with the verdicts on the
//! terminal too.
//!
//! - A report directory (it has `experiments.json`, written by `lossdiff run`): re-render
//!   index.md, index.html, summary.json and junit.xml, reusing its figures, and print the gate's
//!   summary. Exit 1 iff the gate failed, as `lossdiff run` does.
//! - Any other directory: its runs are grouped into arms (subdirectories, or seed tags in file
//!   names: the rule is [`crate::import::read_arms_dir`]'s), every arm is compared against the
//!   reference arm (the first in name order, or `--reference`), the verdict table is printed and
//!   the report is written to `<dir>/report/`. Exit 1 iff some comparison diverged (the reason is
//!   printed); inconclusive is not a failure.

use crate::compare::{compare, CompareSettings, Verdict};
use crate::gate::{
    render_summary, render_verdict_table, verdict_row, write_report_dir_reusing, GateResults,
    EXPERIMENTS_JSON,
};
use crate::import::{read_arms_dir, DirArm, ImportOptions, REPORT_SUBDIR};
use crate::report::{
    comparison_entry_with_figure, comparison_summary, write_report, GateDecision, ReportInput,
};
use anyhow::Context;
use std::path::Path;
use std::process::ExitCode;

pub(super) fn run(dir: &Path, reference: Option<&str>) -> anyhow::Result<ExitCode> {
    let summary_path = dir.join(EXPERIMENTS_JSON);
    if summary_path.exists() {
        return rerender(dir, &summary_path);
    }
    traces_report(dir, reference)
}

fn rerender(dir: &Path, summary_path: &Path) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(summary_path)
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
    let reports: Vec<_> = results.iter().map(|(r, _)| r).collect();
    print!("{}", render_summary(&reports));
    println!("re-rendered {}", dir.join("index.md").display());
    if !passed {
        println!("exit 1: the gate failed (the FAIL lines above)");
    }
    Ok(ExitCode::from(if passed { 0 } else { 1 }))
}

fn traces_report(dir: &Path, reference: Option<&str>) -> anyhow::Result<ExitCode> {
    let mut arms = read_arms_dir(dir, &ImportOptions::default())?;
    if arms.is_empty() {
        anyhow::bail!(
            "{} holds no runs: put each arm's runs in a subdirectory (`{0}/<arm>/seed1.jsonl`) or name them `<arm>.seed<N>.<ext>` (any format `lossdiff compare` reads)",
            dir.display()
        );
    }
    if let Some(name) = reference {
        let i = arms.iter().position(|a| a.name == name).with_context(|| {
            let names: Vec<&str> = arms.iter().map(|a| a.name.as_str()).collect();
            format!(
                "--reference {name}: no such arm in {}; its arms are {}",
                dir.display(),
                names.join(", ")
            )
        })?;
        let a = arms.remove(i);
        arms.insert(0, a);
    }
    if arms.len() < 2 {
        anyhow::bail!(
            "{} holds one arm ({}, {} runs); a report compares at least two: put each arm's runs in a subdirectory or name them `<arm>.seed<N>.<ext>`",
            dir.display(),
            arms[0].name,
            arms[0].runs.len()
        );
    }
    println!("{}", describe_arms(&arms));
    let (a, rest) = arms.split_first().expect("two arms at least");
    let settings = CompareSettings::default();
    let a_traces = a.traces();
    let mut entries = Vec::new();
    let mut rows = Vec::new();
    let mut diverged = Vec::new();
    for b in rest {
        let name = format!("{} vs {}", b.name, a.name);
        let b_traces = b.traces();
        let c = compare(&a_traces, &b_traces, &[], &[], &settings)
            .with_context(|| format!("comparing arm {} with arm {}", b.name, a.name))?;
        if matches!(c.verdict, Verdict::Diverged { .. }) {
            diverged.push(name.clone());
        }
        rows.push((name.clone(), verdict_row(&c)));
        let summary = comparison_summary(&a.name, &b.name, &c);
        let traces = (&a_traces[..], &b_traces[..], &[][..]);
        entries.push(comparison_entry_with_figure(&name, traces, &c, summary)?);
        println!("pairing of {name}: {}", c.pairing.describe());
    }
    let out = dir.join(REPORT_SUBDIR);
    let paths = write_report(
        &out,
        &ReportInput {
            name: dir.display().to_string(),
            timestamp: String::new(),
            entries,
            sweep_figures: vec![],
            gate: GateDecision {
                passed: diverged.is_empty(),
                reason: format!("{} of {} comparisons diverged", diverged.len(), rest.len()),
            },
        },
    )?;
    println!();
    print!("{}", render_verdict_table(&rows));
    println!("\nwrote {}", paths.index_md.display());
    if diverged.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "exit 1: {} of {} comparisons diverged ({})",
        diverged.len(),
        rest.len(),
        diverged.join(", ")
    );
    Ok(ExitCode::from(1))
}

/// Says how the directory was read: each arm with its runs, the reference first.
fn describe_arms(arms: &[DirArm]) -> String {
    let mut s = String::from("arms (the first is the reference, A):");
    for arm in arms {
        let runs: Vec<String> = arm
            .runs
            .iter()
            .map(|r| match r.name_seed {
                Some(seed) => format!("seed {seed}"),
                None => r
                    .path
                    .file_name()
                    .map_or_else(|| "?".into(), |n| n.to_string_lossy().into_owned()),
            })
            .collect();
        let from_names = (arm.runs.iter())
            .any(|r| (r.trace.config.pointer("/import/seed_from_file_name")).is_some());
        s += &format!(
            "\n  {}: {} run(s): {}{}",
            arm.name,
            arm.runs.len(),
            runs.join(", "),
            match from_names {
                true => " (seeds from the file names: the traces record none)",
                false => "",
            }
        );
    }
    s
}
