//! `lossdiff compare`, run as a user runs it: the real binary on small files written in a temp dir
//! (JSONL, CSV and Megatron golden JSON).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn lossdiff(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lossdiff"))
        .arg("compare")
        .args(args)
        .output()
        .expect("the binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A decaying loss with a deterministic, noise-like wiggle of amplitude ~5e-3.
fn loss(step: u64) -> f64 {
    let x = step as f64;
    3.0 * (-x / 40.0).exp() + 1.0 + 5e-3 * (x * 12.9898).sin()
}

fn write_jsonl(
    dir: &Path,
    name: &str,
    steps: impl Iterator<Item = u64>,
    f: impl Fn(u64) -> f64,
) -> PathBuf {
    let path = dir.join(name);
    let text: String = steps
        .map(|s| {
            format!(
                "{{\"step\": {s}, \"loss\": {:.17e}, \"lr\": 0.001}}\n",
                f(s)
            )
        })
        .collect();
    std::fs::write(&path, text).unwrap();
    path
}

fn write_csv(
    dir: &Path,
    name: &str,
    steps: impl Iterator<Item = u64>,
    f: impl Fn(u64) -> f64,
) -> PathBuf {
    let path = dir.join(name);
    let mut text = String::from("step,loss\n");
    for s in steps {
        text += &format!("{s},{:.17e}\n", f(s));
    }
    std::fs::write(&path, text).unwrap();
    path
}

fn write_megatron(
    dir: &Path,
    name: &str,
    steps: std::ops::RangeInclusive<u64>,
    f: impl Fn(u64) -> f64,
) -> PathBuf {
    let path = dir.join(name);
    let values: serde_json::Map<String, serde_json::Value> = steps
        .clone()
        .map(|s| (s.to_string(), serde_json::json!(f(s))))
        .collect();
    let golden = serde_json::json!({"lm loss": {
        "start_step": steps.start(), "end_step": steps.end(), "step_interval": 1, "values": values}});
    std::fs::write(&path, golden.to_string()).unwrap();
    path
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn identical_files_are_identical_and_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_jsonl(dir.path(), "a.jsonl", 1..=60, loss);
    let b = write_jsonl(dir.path(), "b.jsonl", 1..=60, loss);
    let o = lossdiff(&[s(&a), s(&b)]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(out.contains(": identical"), "{out}");
    assert!(out.contains("bitwise identical"), "{out}");
    assert!(out.contains("tolerance:   pass"), "{out}");
}

#[test]
fn a_drifted_copy_is_diverged_and_exits_1_across_formats() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_jsonl(dir.path(), "a.jsonl", 1..=80, loss);
    // The same curve plus 1 % of the loss from step 1 on: far above the 0.1 % margin.
    let b = write_csv(dir.path(), "b.csv", 1..=80, |s| loss(s) * 1.01);
    let json = dir.path().join("out.json");
    let o = lossdiff(&[s(&a), s(&b), "--json", s(&json)]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("diverged"), "{out}");
    assert!(out.contains("B higher"), "{out}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v[0]["comparison"]["verdict"]["kind"], "diverged");
    assert_eq!(v[0]["b"][0], s(&b));
}

#[test]
fn different_step_grids_align_on_common_steps() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_megatron(dir.path(), "golden.json", 1..=100, loss);
    // Logged every other step and only to step 60: 30 common steps, 70 only in A. A run that
    // stops at 60 of 100 is a failure unless the user asks for the common steps only.
    let b = write_jsonl(dir.path(), "run.jsonl", (2..=60).step_by(2), loss);
    let o = lossdiff(&[s(&a), s(&b)]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("a run stopped after step 60"),
        "{}",
        stdout(&o)
    );
    let o = lossdiff(&[s(&a), s(&b), "--common-steps"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("30 common steps; 70 only in A (1, 3, 5, 7, 9, 11, …, 59, 61..100)"),
        "{out}"
    );
    assert!(out.contains(": identical"), "{out}");
}

#[test]
fn a_missing_file_exits_2_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_jsonl(dir.path(), "a.jsonl", 1..=20, loss);
    let missing = dir.path().join("no_such_run.jsonl");
    let o = lossdiff(&[s(&a), s(&missing)]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.starts_with("lossdiff: "), "{err}");
    assert!(err.contains("no_such_run.jsonl"), "{err}");
}

#[test]
fn a_malformed_file_exits_2_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_jsonl(dir.path(), "a.jsonl", 1..=20, loss);
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"step\": 1, \"loss\": 2.0}\n{\"loss\": 1.9}\n").unwrap();
    let o = lossdiff(&[s(&a), s(&bad)]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("bad.jsonl") && err.contains("line 2"), "{err}");
}

#[test]
fn png_is_written_per_b_arm_with_an_index() {
    let dir = tempfile::tempdir().unwrap();
    let a1 = write_jsonl(dir.path(), "a1.jsonl", 1..=40, loss);
    let a2 = write_jsonl(dir.path(), "a2.jsonl", 1..=40, |s| {
        loss(s) + 1e-3 * (s as f64).cos()
    });
    let b = write_jsonl(dir.path(), "b.jsonl", 1..=40, |s| loss(s) + 0.02);
    let png = dir.path().join("fig.png");
    let arm_a = format!("{},{}", s(&a1), s(&a2));
    let o = lossdiff(&[&arm_a, s(&b), s(&a1), "--png", s(&png)]);
    assert!(o.status.code() == Some(1), "{}{}", stdout(&o), stderr(&o));
    for i in 1..=2 {
        let bytes = std::fs::read(dir.path().join(format!("fig-{i}.png"))).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        // IHDR: width and height, big-endian, right after the signature and chunk header.
        assert_eq!(&bytes[16..24], &[0, 0, 6, 64, 0, 0, 4, 176]);
    }
    assert!(!png.exists());
}

#[test]
fn a_bad_format_name_exits_2_listing_the_valid_ones() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_jsonl(dir.path(), "a.jsonl", 1..=20, loss);
    let o = lossdiff(&[s(&a), s(&a), "--format", "parquet"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("parquet") && err.contains("jsonl"), "{err}");
}

#[test]
fn perturbation_ensemble_is_the_yardstick_and_declared_keys_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let nudge = |k: f64| move |s: u64| loss(s) + 1e-6 * (s as f64 * k).sin();
    let a = write_jsonl(dir.path(), "a.jsonl", 1..=60, loss);
    let b = write_jsonl(dir.path(), "b.jsonl", 1..=60, nudge(3.1));
    let p1 = write_jsonl(dir.path(), "p1.jsonl", 1..=60, nudge(5.3));
    let p2 = write_jsonl(dir.path(), "p2.jsonl", 1..=60, nudge(7.7));
    let p3 = write_jsonl(dir.path(), "p3.jsonl", 1..=60, nudge(11.3));
    let perturb = format!("{},{},{}", s(&p1), s(&p2), s(&p3));
    let o = lossdiff(&[
        s(&a),
        s(&b),
        "--perturb",
        &perturb,
        "--declared",
        "model.attention",
    ]);
    let out = stdout(&o);
    assert!(out.contains("perturbation ensemble of 3"), "{out}");
    assert!(out.contains("noise band (3 members)"), "{out}");
    assert!(
        out.contains("model.attention is equal in both arms"),
        "{out}"
    );
    assert!(!out.contains(": diverged"), "{out}");
}

/// `lossdiff report DIR` on a directory of traces: each compared against the first, a report in
/// `DIR/report/`, exit 1 when one diverges.
#[test]
fn report_on_a_directory_of_traces_writes_a_ticket_ready_report() {
    let dir = tempfile::tempdir().unwrap();
    let curve = |shift: f64| -> String {
        (1..=60)
            .map(|s| {
                let x = s as f64;
                let wiggle = 2e-3 * (x * 12.9898).sin();
                format!(
                    "{{\"step\": {s}, \"loss\": {}}}\n",
                    4.0 - 0.02 * x + wiggle + shift
                )
            })
            .collect()
    };
    std::fs::write(dir.path().join("a_ref.jsonl"), curve(0.0)).unwrap();
    std::fs::write(dir.path().join("b_same.jsonl"), curve(0.0)).unwrap();
    std::fs::write(dir.path().join("c_shift.jsonl"), curve(0.05)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lossdiff"))
        .args(["report", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Markdown escapes `_` in names.
    let md = std::fs::read_to_string(dir.path().join("report/index.md"))
        .unwrap()
        .replace('\\', "");
    assert!(
        md.contains("b_same vs a_ref") && md.contains("identical"),
        "{md}"
    );
    assert!(
        md.contains("c_shift vs a_ref") && md.contains("diverged"),
        "{md}"
    );
    assert!(dir.path().join("report/junit.xml").exists());
}

/// `lossdiff compare a b | head -1`: the reader leaves early and the pipe closes. lossdiff stops
/// quietly, as `cat` would, instead of panicking with "failed printing to stdout".
#[test]
fn a_reader_that_leaves_early_gets_no_panic() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_jsonl(dir.path(), "a.jsonl", 1..=200, loss);
    let b = write_jsonl(dir.path(), "b.jsonl", 1..=200, |x| loss(x) * 1.02);
    let mut child = Command::new(env!("CARGO_BIN_EXE_lossdiff"))
        .args(["compare", s(&a), s(&b)])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Close the read end before lossdiff has printed anything.
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    assert!(!err.contains("panicked"), "{err}");
    assert!(!err.contains("Broken pipe"), "{err}");
}
