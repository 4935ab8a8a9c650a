//! Shared by the bad-input and crash-safety tests: run the real binary in a temp dir, assert a
//! clean refusal, and build small traces and goldens without training.
#![allow(dead_code)] // each test file uses a different part

use lossdiff::compare::{compare, CompareSettings, Comparison};
use lossdiff::golden::{Golden, Provenance};
use lossdiff::trace::{Origin, Series, Trace, LM_LOSS, TRACE_SCHEMA_VERSION};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `lossdiff ARGS` in `dir` with `CI` unset unless `env` sets it.
pub fn lossdiff_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lossdiff"));
    cmd.current_dir(dir).args(args).env_remove("CI");
    cmd.env_remove("LOSSDIFF_UPDATE")
        .env_remove("LOSSDIFF_MAX_INPUT_BYTES");
    cmd.env("LOSSDIFF_CACHE", dir.join(".cache"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the binary runs")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Asserts the process refused its input cleanly: exit code 2 (not a verdict, not a panic's 101)
/// and an error line containing every one of `needles`. Returns the message.
#[track_caller]
pub fn assert_refused(o: &Output, needles: &[&str]) -> String {
    let err = stderr(o);
    assert!(!err.contains("panicked"), "panic:\n{err}");
    assert_eq!(
        o.status.code(),
        Some(2),
        "expected exit 2 (error)\nstdout:\n{}\nstderr:\n{err}",
        stdout(o)
    );
    let line = err
        .lines()
        .find(|l| l.starts_with("lossdiff: "))
        .unwrap_or_else(|| panic!("no `lossdiff: …` error line:\n{err}"));
    for n in needles {
        assert!(line.contains(n), "missing {n:?} in:\n{line}");
    }
    line.to_string()
}

/// Returns the first line of `text` starting with `prefix`; panics showing `text` when none does.
pub fn line_starting<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?} in:\n{text}"))
}

/// Writes `text` to `dir/name` and returns the file name (tests run in `dir`).
pub fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&path, text).unwrap();
    name.to_string()
}

/// A decaying loss curve with a deterministic wiggle, as JSONL.
pub fn jsonl(steps: impl Iterator<Item = u64>) -> String {
    steps
        .map(|s| format!("{{\"step\": {s}, \"loss\": {}}}\n", loss(s)))
        .collect()
}

pub fn loss(step: u64) -> f64 {
    let x = step as f64;
    3.0 * (-x / 40.0).exp() + 1.0 + 5e-3 * (x * 12.9898).sin()
}

/// A lossdiff trace of `n` steps whose losses are shifted by `shift`.
pub fn trace(n: u64, shift: f32) -> Trace {
    let values: Vec<f32> = (1..=n).map(|s| loss(s) as f32 + shift).collect();
    Trace {
        schema_version: TRACE_SCHEMA_VERSION,
        name: "t".into(),
        origin: Origin {
            format: "lossdiff".into(),
            path: None,
        },
        config: serde_json::json!({"train": {"train_iters": n}}),
        fingerprint: serde_json::json!({"lossdiff_version": env!("CARGO_PKG_VERSION")}),
        seeds: [("init".to_string(), 1)].into(),
        loss_floor: None,
        steps: (1..=n).collect(),
        series: [(LM_LOSS.to_string(), Series::from_f32(&values))].into(),
    }
}

/// A golden of experiment `exp`, cell `default`, arm `a`, whose identity is `spec_hash`, with
/// `seeds` traces of `steps` steps (large enough values make writes take a while).
pub fn golden(spec_hash: &str, seeds: usize, steps: u64) -> Golden {
    let prov = Provenance {
        spec_hash: spec_hash.into(),
        spec_path: "exp.toml".into(),
        lossdiff_version: env!("CARGO_PKG_VERSION").into(),
        fingerprint: serde_json::json!({}),
        blessed_at_unix: 0,
    };
    let traces = (0..seeds).map(|i| trace(steps, i as f32 * 1e-3)).collect();
    Golden::new("exp", "default", "a", prov, traces, vec![])
}

/// Where [`golden`] lives in a store rooted at `root`.
pub fn golden_path(root: &Path) -> PathBuf {
    root.join("exp/default/a.golden.json")
}

/// A two-arm experiment on the gate model, short enough to train in about a second.
pub fn tiny_experiment(name: &str) -> String {
    format!(
        "[experiment]\nname = \"{name}\"\nseeds = 1\n[base]\npreset = \"gate\"\n\
         [base.train]\ntrain_iters = 12\nlr_warmup_iters = 2\n\
         [[arm]]\nname = \"a\"\n[[arm]]\nname = \"b\"\n"
    )
}

/// Compares two arms' goldens as the gate compares two arms: `a`'s seeds against `b`'s, with `a`'s
/// perturbation ensemble as the rounding yardstick, default settings and `declared` differences.
pub fn compare_goldens(a: &Golden, b: &Golden, declared: &str) -> Comparison {
    compare(
        &a.seed_traces,
        &b.seed_traces,
        &a.perturbation_traces,
        &[declared.to_string()],
        &CompareSettings::default(),
    )
    .unwrap()
}
