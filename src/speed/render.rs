//! The speed report as Markdown: a header saying where and how it was measured, the step table
//! and the attention table; and splicing that block into a README between its markers. Nothing
//! here measures or runs anything.

use super::cell::{Case, HEADS, HEAD_DIM};
use super::stats::{median, paired_ratio, Timing};
use super::{CaseResult, PyTorch, SpeedReport, PYTHON_VAR};
use crate::error::{Error, Result};
use std::fmt::Write as _;
use std::path::Path;

/// The line after which `--readme` writes the generated block.
pub const BEGIN_MARKER: &str = "<!-- speed:begin -->";
/// The line before which `--readme` stops replacing.
pub const END_MARKER: &str = "<!-- speed:end -->";

/// Formats a duration with three significant digits: `3.78 ms`, `49.8 ms`, `1.74 s`.
pub fn seconds(s: f64) -> String {
    match s {
        _ if s >= 1.0 => format!("{s:.2} s"),
        _ if s >= 0.1 => format!("{:.0} ms", s * 1e3),
        _ if s >= 0.01 => format!("{:.1} ms", s * 1e3),
        _ => format!("{:.2} ms", s * 1e3),
    }
}

/// Names a case in progress lines.
pub fn case_label(case: &Case) -> String {
    let threads = |n: usize| format!("{n} thread{}", if n == 1 { "" } else { "s" });
    match case {
        Case::Step { preset, threads: n } => format!("`{preset}` step, {}", threads(*n)),
        Case::Attention {
            seq_len,
            dtype,
            threads: n,
        } => format!("attention T={seq_len} {}, {}", dtype.name(), threads(*n)),
    }
}

/// Returns the line that says, before anything is measured, whether the PyTorch side will run.
pub fn pytorch_notice(pytorch: &PyTorch) -> String {
    match pytorch {
        PyTorch::Present { python, version } => {
            format!("PyTorch {version} (`{}`)", python.display())
        }
        PyTorch::Absent { python, reason } => format!(
            "PyTorch absent: `{}` cannot `import torch` ({reason}); timing lossdiff only. Point the bench at a Python that has torch with `--python PATH` or {PYTHON_VAR}=PATH",
            python.display()
        ),
    }
}

/// Renders the whole report: header, then the tables that have rows.
pub fn markdown(report: &SpeedReport) -> String {
    let mut md = header(report);
    let (steps, attention): (Vec<&CaseResult>, Vec<&CaseResult>) = report
        .cases
        .iter()
        .partition(|c| matches!(c.case, Case::Step { .. }));
    if !steps.is_empty() {
        let (n, warm) = report.steps;
        let _ = writeln!(
            md,
            "\nOne optimiser step, fused kernels (the default); median (quartiles) of {n} steps after {warm} warm-up.\n"
        );
        md += "| preset | threads | lossdiff | PyTorch | lossdiff / PyTorch |\n";
        md += "|---|---:|---:|---:|---:|\n";
        for c in &steps {
            if let Case::Step { preset, threads } = &c.case {
                let _ = writeln!(md, "| `{preset}` | {threads} | {} |", columns(c));
            }
        }
    }
    if !attention.is_empty() {
        let _ = writeln!(
            md,
            "\nCausal attention forward + backward of `sum(out)`, B=1, nh={HEADS}, hs={HEAD_DIM}, {} threads: lossdiff's flash kernel against PyTorch's `scaled_dot_product_attention(is_causal=True)`.\n",
            report.attention_threads
        );
        md += "| T | dtype | lossdiff | PyTorch | lossdiff / PyTorch |\n";
        md += "|---:|---|---:|---:|---:|\n";
        for c in &attention {
            if let Case::Attention { seq_len, dtype, .. } = &c.case {
                let _ = writeln!(md, "| {seq_len} | {} | {} |", dtype.name(), columns(c));
            }
        }
    }
    md
}

/// Renders the lines above the tables.
fn header(report: &SpeedReport) -> String {
    let m = &report.machine;
    let torch = match &report.pytorch {
        PyTorch::Present { python, version } => {
            format!("{version} CPU eager (`{}`)", python.display())
        }
        PyTorch::Absent { python, reason } => format!(
            "absent: `{}` cannot `import torch` ({reason}); the PyTorch columns are empty. Point the bench at a Python that has torch with `--python PATH` or `{PYTHON_VAR}=PATH`",
            python.display()
        ),
    };
    let rounds = report.rounds;
    format!(
        "Measured by `lossdiff bench speed` on {}.\n\n\
         - commit: `{}`\n\
         - CPU: {} ({}), {} cores\n\
         - PyTorch: {torch}\n\
         - command: `{}`\n\
         - method: {rounds} round{}; in each, every case ran on both sides back to back (order alternating by round), each cell in a process of its own. A time is the median over rounds of each round's median (quartiles likewise); the ratio is the median of the per-round ratios, with their range.\n",
        m.date,
        m.commit,
        m.cpu,
        m.simd,
        m.cores,
        m.command_line,
        if rounds == 1 { "" } else { "s" },
    )
}

/// Returns the `lossdiff | PyTorch | ratio` cells of one case.
fn columns(c: &CaseResult) -> String {
    let pytorch = match c.pytorch.is_empty() {
        true => "absent".to_string(),
        false => summary(&c.pytorch),
    };
    let medians = |t: &[Timing]| t.iter().map(|t| t.median_s).collect::<Vec<f64>>();
    let ratio = match paired_ratio(&medians(&c.lossdiff), &medians(&c.pytorch)) {
        Some(r) if r.rounds > 1 => format!("{:.2} ({:.2}–{:.2})", r.median, r.min, r.max),
        Some(r) => format!("{:.2}", r.median),
        None => "–".into(),
    };
    format!("{} | {pytorch} | {ratio}", summary(&c.lossdiff))
}

/// Formats rounds of one side as `median (q1–q3)`, each the median over rounds.
fn summary(rounds: &[Timing]) -> String {
    let over = |f: fn(&Timing) -> f64| median(&rounds.iter().map(f).collect::<Vec<f64>>());
    match (over(|t| t.median_s), over(|t| t.q1_s), over(|t| t.q3_s)) {
        (Some(m), Some(q1), Some(q3)) => {
            format!("{} ({}–{})", seconds(m), seconds(q1), seconds(q3))
        }
        _ => "–".into(),
    }
}

/// Returns `text` with everything between the [`BEGIN_MARKER`] and [`END_MARKER`] lines replaced
/// by `block` (the markers stay, so the next run finds them again).
///
/// # Errors
/// [`Error::SpeedMarkers`] naming `path` and the marker that is missing (or out of order).
pub fn replace_marked(text: &str, block: &str, path: &Path) -> Result<String> {
    let missing = |marker: &str| Error::SpeedMarkers {
        path: path.to_path_buf(),
        marker: marker.to_string(),
    };
    let begin = text
        .find(BEGIN_MARKER)
        .ok_or_else(|| missing(BEGIN_MARKER))?;
    let body = begin + BEGIN_MARKER.len();
    let end = text[body..]
        .find(END_MARKER)
        .map(|i| body + i)
        .ok_or_else(|| missing(END_MARKER))?;
    let block = block.trim_matches('\n');
    Ok(format!("{}\n{block}\n{}", &text[..body], &text[end..]))
}

#[cfg(test)]
mod tests {
    use super::super::cell::BenchDType;
    use super::super::machine::Machine;
    use super::*;
    use std::path::PathBuf;

    fn t(median_s: f64) -> Timing {
        Timing {
            median_s,
            q1_s: median_s * 0.9,
            q3_s: median_s * 1.1,
            samples: 10,
            minor_faults_per_run: None,
            torch: None,
        }
    }

    fn report(pytorch: bool) -> SpeedReport {
        let torch = |v: Vec<Timing>| if pytorch { v } else { Vec::new() };
        SpeedReport {
            machine: Machine {
                commit: "f3dfc5d-dirty".into(),
                cpu: "AMD EPYC 9B45".into(),
                simd: "avx512f".into(),
                cores: 2,
                date: "2026-12-05 19:30 UTC".into(),
                command_line: "lossdiff bench speed --rounds 3".into(),
            },
            pytorch: match pytorch {
                true => PyTorch::Present {
                    python: PathBuf::from("/venv/bin/python"),
                    version: "2.15.0".into(),
                },
                false => PyTorch::Absent {
                    python: PathBuf::from("python3"),
                    reason: "ModuleNotFoundError: No module named 'torch'".into(),
                },
            },
            rounds: 3,
            steps: (10, 3),
            attention_threads: 2,
            cases: vec![
                CaseResult {
                    case: Case::Step {
                        preset: "small".into(),
                        threads: 1,
                    },
                    lossdiff: vec![t(0.050), t(0.048), t(0.060)],
                    pytorch: torch(vec![t(0.080), t(0.070), t(0.075)]),
                },
                CaseResult {
                    case: Case::Attention {
                        seq_len: 16384,
                        dtype: BenchDType::Bf16,
                        threads: 2,
                    },
                    lossdiff: vec![t(1.74), t(1.70), t(1.80)],
                    pytorch: torch(vec![t(1.51), t(1.50), t(1.60)]),
                },
            ],
        }
    }

    #[test]
    fn tables_show_medians_quartiles_and_the_paired_ratio_with_its_range() {
        let md = markdown(&report(true));
        // Round ratios 50/80, 48/70, 60/75: median 0.686, range 0.625–0.800.
        assert!(
            md.contains("| `small` | 1 | 50.0 ms (45.0 ms–55.0 ms) | 75.0 ms (67.5 ms–82.5 ms) | 0.69 (0.62–0.80) |"),
            "{md}"
        );
        // 1.74/1.51, 1.70/1.50, 1.80/1.60: 1.152, 1.133, 1.125.
        assert!(
            md.contains("| 16384 | bf16 | 1.74 s (1.57 s–1.91 s) | 1.51 s (1.36 s–1.66 s) | 1.13 (1.12–1.15) |"),
            "{md}"
        );
        assert!(md.contains("| preset | threads | lossdiff | PyTorch | lossdiff / PyTorch |"));
        assert!(md.contains("| T | dtype | lossdiff | PyTorch | lossdiff / PyTorch |"));
    }

    #[test]
    fn the_header_names_commit_cpu_simd_cores_torch_date_and_command() {
        let md = markdown(&report(true));
        for needle in [
            "on 2026-12-05 19:30 UTC",
            "commit: `f3dfc5d-dirty`",
            "CPU: AMD EPYC 9B45 (avx512f), 2 cores",
            "PyTorch: 2.15.0 CPU eager (`/venv/bin/python`)",
            "command: `lossdiff bench speed --rounds 3`",
            "3 rounds",
        ] {
            assert!(md.contains(needle), "missing {needle:?} in\n{md}");
        }
    }

    #[test]
    fn without_pytorch_the_lossdiff_columns_stay_and_the_header_says_how_to_get_it() {
        let md = markdown(&report(false));
        assert!(
            md.contains("| `small` | 1 | 50.0 ms (45.0 ms–55.0 ms) | absent | – |"),
            "{md}"
        );
        assert!(
            md.contains(
                "`python3` cannot `import torch` (ModuleNotFoundError: No module named 'torch')"
            ),
            "{md}"
        );
        assert!(
            md.contains("`--python PATH` or `LOSSDIFF_PYTHON=PATH`"),
            "{md}"
        );
    }

    #[test]
    fn durations_keep_three_significant_digits() {
        assert_eq!(seconds(0.00378), "3.78 ms");
        assert_eq!(seconds(0.0498), "49.8 ms");
        assert_eq!(seconds(0.123), "123 ms");
        assert_eq!(seconds(1.744), "1.74 s");
    }

    #[test]
    fn the_block_between_the_markers_is_replaced_and_the_rest_kept() {
        let readme = "# Speed\n\nprose before\n<!-- speed:begin -->\nold table\n<!-- speed:end -->\nprose after\n";
        let out = replace_marked(readme, "new table\n", Path::new("README.md")).unwrap();
        assert_eq!(
            out,
            "# Speed\n\nprose before\n<!-- speed:begin -->\nnew table\n<!-- speed:end -->\nprose after\n"
        );
        // Running it again finds the markers again and gives the same file.
        assert_eq!(
            replace_marked(&out, "new table\n", Path::new("README.md")).unwrap(),
            out
        );
    }

    #[test]
    fn a_missing_marker_is_an_error_naming_the_file_and_the_marker() {
        let path = Path::new("docs/README.md");
        let err = replace_marked("no markers here\n", "x", path).unwrap_err();
        assert!(
            matches!(&err, Error::SpeedMarkers { path: p, marker } if p == path && marker == BEGIN_MARKER),
            "{err:?}"
        );
        assert!(err.to_string().contains("docs/README.md"), "{err}");
        let err = replace_marked("<!-- speed:begin -->\nx\n", "x", path).unwrap_err();
        assert!(
            matches!(&err, Error::SpeedMarkers { marker, .. } if marker == END_MARKER),
            "{err:?}"
        );
        // An end marker before the begin marker is no pair either.
        let err =
            replace_marked("<!-- speed:end -->\n<!-- speed:begin -->\n", "x", path).unwrap_err();
        assert!(matches!(&err, Error::SpeedMarkers { marker, .. } if marker == END_MARKER));
    }
}
