//! The `lossdiff train` / `show` commands, run as a user runs them: the real binary in a temp dir.

use lossdiff::trace::{Trace, LM_LOSS};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn lossdiff(args: &[&str], threads: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lossdiff"))
        .args(args)
        .env("RAYON_NUM_THREADS", threads)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the binary runs")
}

fn train(dir: &Path, name: &str, extra: &[&str], threads: &str) -> Trace {
    let out: PathBuf = dir.join(format!("{name}.json"));
    let mut args = vec![
        "train",
        "experiments/gate.toml",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = lossdiff(&args, threads);
    assert!(
        o.status.success(),
        "train failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    Trace::load(&out).unwrap()
}

/// The loss series as the bytes written in the file: what "byte-identical" means to a reader.
fn loss_json(t: &Trace) -> String {
    serde_json::to_string(&t.series[LM_LOSS]).unwrap()
}

const SHORT: [&str; 4] = ["--set", "train_iters=40", "--set", "lr_warmup_iters=4"];

#[test]
fn same_spec_twice_gives_byte_identical_loss_series() {
    let dir = tempfile::tempdir().unwrap();
    let a = train(dir.path(), "a", &SHORT, "1");
    let b = train(dir.path(), "b", &SHORT, "1");
    assert_eq!(a.steps.len(), 40);
    assert_eq!(loss_json(&a), loss_json(&b));
}

#[test]
fn one_and_two_threads_give_identical_series_with_dropout_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = SHORT.to_vec();
    args.extend([
        "--set",
        "attention_dropout=0.1",
        "--set",
        "hidden_dropout=0.1",
    ]);
    let one = train(dir.path(), "one", &args, "1");
    let two = train(dir.path(), "two", &args, "2");
    assert_eq!(one.fingerprint["threads"], 1);
    assert_eq!(two.fingerprint["threads"], 2);
    assert_eq!(loss_json(&one), loss_json(&two));
    assert_eq!(
        one.config["model"]["attention_dropout"],
        serde_json::json!(0.1f32)
    );
}

#[test]
fn unknown_override_fails_with_exit_2_and_a_suggestion() {
    let o = lossdiff(
        &[
            "train",
            "experiments/gate.toml",
            "--out",
            "/dev/null",
            "--set",
            "train_iter=5",
        ],
        "1",
    );
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("unknown key `train_iter`") && err.contains("train_iters"),
        "{err}"
    );
}

#[test]
fn missing_spec_names_the_file() {
    let o = lossdiff(
        &["train", "experiments/nope.toml", "--out", "/dev/null"],
        "1",
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("experiments/nope.toml"));
}

#[test]
fn show_prints_config_fingerprint_floor_and_losses() {
    let dir = tempfile::tempdir().unwrap();
    train(dir.path(), "s", &SHORT, "1");
    let path = dir.path().join("s.json");
    let o = lossdiff(&["show", path.to_str().unwrap()], "1");
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    for needle in [
        "model.attention_dropout = 0.0",
        "candle_version",
        "floor",
        "lm_loss",
        "      40  ",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}
