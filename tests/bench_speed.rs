//! `lossdiff bench speed` run as a user runs it: the real binary, tiny cases, and fake Pythons
//! standing in for the three situations the bench must handle: no torch, a working torch, and a
//! PyTorch cell that crashes. The timings themselves are not asserted (that would be a timed
//! test); what is asserted is that numbers are there, where they came from, and what the bench
//! says when PyTorch is missing or fails.
//
// See: issue #20, "Speed, round two" (a bench command that runs lossdiff and the PyTorch
// reference interleaved and prints the ratios; PyTorch optional).
#![cfg(unix)] // the fake Pythons are shell scripts

mod common;

use common::{lossdiff_in, stderr, stdout};
use std::path::{Path, PathBuf};

/// Writes an executable shell script standing in for a Python interpreter.
fn fake_python(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A Python without torch, as `python3 -c 'import torch'` fails on a machine without it.
const NO_TORCH: &str = "echo \"ModuleNotFoundError: No module named 'torch'\" >&2; exit 1";

/// A Python whose torch "imports" (version 9.9.9) and whose every cell takes 2 ms.
const FAKE_TORCH: &str = r#"if [ "$1" = "-c" ]; then echo 9.9.9; exit 0; fi
echo '{"median_s": 0.002, "q1_s": 0.0019, "q3_s": 0.0021, "samples": 3, "torch": "9.9.9"}'"#;

/// The quickest real run: one `gate` step cell on one thread, one tiny attention length.
const TINY: &[&str] = &[
    "bench",
    "speed",
    "--presets",
    "gate",
    "--threads",
    "1",
    "--steps",
    "3",
    "--warmup",
    "1",
    "--rounds",
    "1",
    "--seq-len",
    "64",
    "--attention-runs",
    "2",
];

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    TINY.iter().copied().chain(extra.iter().copied()).collect()
}

/// The tiny bench's arguments with `python` as the PyTorch side's interpreter and a stand-in
/// reference script in `dir`, measuring the `only` table.
fn with_pytorch(dir: &Path, python: &Path, only: &str) -> Vec<String> {
    let script = common::write(dir, "pytorch_reference.py", "# stand-in\n");
    let python = python.to_str().unwrap();
    let extra = [
        "--python",
        python,
        "--pytorch-script",
        &script,
        "--only",
        only,
    ];
    args(&extra).into_iter().map(String::from).collect()
}

/// Runs the tiny attention bench with `python`, writing its tables into `file` in `dir`.
fn bench_into(dir: &Path, python: &Path, file: &str) -> std::process::Output {
    let python = python.to_str().unwrap();
    let extra = ["--python", python, "--only", "attention", "--readme", file];
    lossdiff_in(dir, &args(&extra), &[])
}

/// Returns the cells of the Markdown row starting with `prefix`.
fn row(md: &str, prefix: &str) -> Vec<String> {
    common::line_starting(md, prefix)
        .trim_matches('|')
        .split('|')
        .map(|c| c.trim().to_string())
        .collect()
}

/// Parses `12.3 ms (…)` or `1.20 s (…)` into seconds.
fn secs(cell: &str) -> f64 {
    let mut words = cell.split_whitespace();
    let value: f64 = words.next().unwrap().parse().unwrap();
    match words.next() {
        Some("ms") => value / 1e3,
        Some("s") => value,
        other => panic!("no unit in {cell:?} ({other:?})"),
    }
}

#[test]
fn without_torch_the_bench_times_lossdiff_and_says_how_to_point_it_at_a_python_with_torch() {
    let dir = tempfile::tempdir().unwrap();
    let python = fake_python(dir.path(), "python-without-torch", NO_TORCH);
    let o = lossdiff_in(
        dir.path(),
        &args(&["--python", python.to_str().unwrap()]),
        &[],
    );
    let (out, err) = (stdout(&o), stderr(&o));
    assert_eq!(o.status.code(), Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    // lossdiff's columns hold real, positive times; PyTorch's say it is absent.
    let step = row(&out, "| `gate` | 1 |");
    assert!(secs(&step[2]) > 0.0, "{step:?}");
    assert_eq!(&step[3..], ["absent", "–"]);
    for dtype in ["f32", "bf16"] {
        let att = row(&out, &format!("| 64 | {dtype} |"));
        assert!(secs(&att[2]) > 0.0, "{att:?}");
        assert_eq!(&att[3..], ["absent", "–"]);
    }
    // Which Python lacks torch, and how to name another, in the header and on stderr first.
    let shown = format!("`{}` cannot `import torch`", python.display());
    assert!(out.contains(&shown), "{out}");
    assert!(out.contains("No module named 'torch'"), "{out}");
    assert!(
        out.contains("--python PATH` or `LOSSDIFF_PYTHON=PATH"),
        "{out}"
    );
    let first = err.lines().next().unwrap_or_default();
    assert!(first.starts_with("PyTorch absent: "), "{err}");
    // The header says what was measured and how.
    assert!(out.contains("- commit: `"), "{out}");
    assert!(out.contains("- CPU: "), "{out}");
    assert!(
        out.contains("- command: `lossdiff bench speed --presets gate"),
        "{out}"
    );
}

#[test]
fn with_torch_both_sides_alternate_order_by_round_and_the_ratio_is_filled() {
    let dir = tempfile::tempdir().unwrap();
    let python = fake_python(dir.path(), "python-with-torch", FAKE_TORCH);
    let mut a = with_pytorch(dir.path(), &python, "step");
    let rounds = a.iter().position(|w| w == "--rounds").unwrap();
    a[rounds + 1] = "2".into();
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let o = lossdiff_in(dir.path(), &a, &[]);
    let (out, err) = (stdout(&o), stderr(&o));
    assert_eq!(o.status.code(), Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("PyTorch: 9.9.9 CPU eager"), "{out}");
    let step = row(&out, "| `gate` | 1 |");
    assert_eq!(step[3], "2.00 ms (1.90 ms–2.10 ms)");
    // The ratio is lossdiff's time over PyTorch's, paired by round, with the range of rounds.
    let ratio: f64 = step[4].split_whitespace().next().unwrap().parse().unwrap();
    assert!(ratio > 0.0 && step[4].contains('–'), "{step:?}");
    assert!(
        !out.contains("| 64 |"),
        "--only step measured attention:\n{out}"
    );
    // Round 1 runs lossdiff first, round 2 PyTorch first.
    let order: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("round "))
        .map(|l| match l.contains(": lossdiff ") {
            true => "lossdiff",
            false => "PyTorch",
        })
        .collect();
    assert_eq!(
        order,
        ["lossdiff", "PyTorch", "PyTorch", "lossdiff"],
        "{err}"
    );
}

#[test]
fn a_failing_pytorch_cell_is_an_error_naming_the_command_and_its_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let body = "if [ \"$1\" = \"-c\" ]; then echo 9.9.9; exit 0; fi\necho 'RuntimeError: out of memory in sdpa' >&2; exit 1";
    let python = fake_python(dir.path(), "python-crashing", body);
    let a = with_pytorch(dir.path(), &python, "attention");
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let o = lossdiff_in(dir.path(), &a, &[]);
    let message = common::assert_refused(&o, &["bench cell `", "--attention-bench 64"]);
    let err = stderr(&o);
    assert!(
        err.contains("RuntimeError: out of memory in sdpa"),
        "{message}\n{err}"
    );
}

#[test]
fn a_hung_pytorch_cell_is_killed_at_the_cell_timeout_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let body = "if [ \"$1\" = \"-c\" ]; then echo 9.9.9; exit 0; fi\necho 'compiling kernels' >&2; sleep 600";
    let python = fake_python(dir.path(), "python-hanging", body);
    let mut a = with_pytorch(dir.path(), &python, "attention");
    a.extend(["--cell-timeout".to_string(), "2".to_string()]);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let o = lossdiff_in(dir.path(), &a, &[]);
    let message = common::assert_refused(&o, &["--attention-bench 64", "cell timeout"]);
    // What the cell had said by then comes with the error, as for a crash.
    assert!(stderr(&o).contains("compiling kernels"), "{message}");
}

#[test]
fn a_cell_timeout_that_is_not_a_positive_number_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["0", "-5", "soon"] {
        let flag = format!("--cell-timeout={bad}");
        let o = lossdiff_in(dir.path(), &args(&[&flag]), &[]);
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains("--cell-timeout") && err.contains("expected seconds"),
            "{err}"
        );
    }
}

#[test]
fn readme_tables_are_replaced_between_the_markers_and_missing_markers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let python = fake_python(dir.path(), "python-without-torch", NO_TORCH);
    let readme =
        "# Speed\n\nprose\n\n<!-- speed:begin -->\nold tables\n<!-- speed:end -->\n\nmore prose\n";
    common::write(dir.path(), "README.md", readme);
    let o = bench_into(dir.path(), &python, "README.md");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = std::fs::read_to_string(dir.path().join("README.md")).unwrap();
    assert!(
        text.starts_with(
            "# Speed\n\nprose\n\n<!-- speed:begin -->\nMeasured by `lossdiff bench speed`"
        ),
        "{text}"
    );
    assert!(
        text.ends_with("<!-- speed:end -->\n\nmore prose\n"),
        "{text}"
    );
    assert!(!text.contains("old tables"), "{text}");
    assert!(text.contains("| 64 | bf16 |"), "{text}");

    common::write(dir.path(), "NOTES.md", "# no markers\n");
    let o = bench_into(dir.path(), &python, "NOTES.md");
    common::assert_refused(&o, &["NOTES.md", "<!-- speed:begin -->"]);
    let notes = std::fs::read_to_string(dir.path().join("NOTES.md")).unwrap();
    assert_eq!(
        notes, "# no markers\n",
        "a refused --readme must leave the file alone"
    );
}

#[test]
fn the_repository_readme_has_the_markers_and_only_its_speed_tables_are_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let python = fake_python(dir.path(), "python-without-torch", NO_TORCH);
    let original =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    common::write(dir.path(), "README.md", &original);
    let o = bench_into(dir.path(), &python, "README.md");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = std::fs::read_to_string(dir.path().join("README.md")).unwrap();
    let outside = |t: &str| {
        let (before, rest) = t.split_once("<!-- speed:begin -->").unwrap();
        let (_, after) = rest.split_once("<!-- speed:end -->").unwrap();
        (before.to_string(), after.to_string())
    };
    assert_eq!(outside(&text), outside(&original));
    assert!(text.contains("| 64 | f32 |"), "tables not written");
}
