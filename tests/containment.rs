//! Containment and bounded resources (issue 21, items 2, 3, 4 and 9): paths read from summaries
//! and specs stay inside their directory, corpora and model footprints are held to a budget before
//! anything is allocated, include cycles and duplicate cells are refused at load, and the store
//! walk, FIFOs, thread counts and optimiser values cannot hang, stall or poison a run. Each case
//! is refused with exit code 2 and a message naming the file, the key and the knob.
//!
// See: issue 21 ("Hardening, round two: … containment of what is read, bounded resources")

mod common;

use common::{assert_refused, lossdiff_in, stdout, write};
use std::path::Path;

/// Runs the tiny experiment into `dir/shard0` and returns the report's summary.json text.
fn shard(dir: &Path) -> String {
    write(dir, "exp.toml", &common::tiny_experiment("x"));
    let o = lossdiff_in(dir, &["run", "exp.toml", "--out", "shard0"], &[]);
    assert!(matches!(o.status.code(), Some(0 | 1)), "{o:?}");
    std::fs::read_to_string(dir.join("shard0/summary.json")).unwrap()
}

/// Points the shard's first figure at `path` and merges it.
fn merge_with_figure_path(dir: &Path, summary: &str, path: &str) -> std::process::Output {
    let start = summary.find("\"figures/").expect("the shard has a figure");
    let end = start + 1 + summary[start + 1..].find('"').unwrap();
    let tampered = format!("{}{path:?}{}", &summary[..start], &summary[end + 1..]);
    std::fs::write(dir.join("shard0/summary.json"), tampered).unwrap();
    lossdiff_in(dir, &["merge", "shard0", "--out", "merged"], &[])
}

#[test]
fn issue_21_item_2_merge_refuses_figure_paths_outside_the_shard() {
    let dir = tempfile::tempdir().unwrap();
    let summary = shard(dir.path());
    write(dir.path(), "secret.txt", "not for the report");

    for path in ["/etc/hostname", "../secret.txt", "../../../x"] {
        let o = merge_with_figure_path(dir.path(), &summary, path);
        assert_refused(
            &o,
            &[
                "shard0/summary.json",
                "entries[0].figure_path",
                &format!("{path:?} is outside shard0"),
            ],
        );
        assert!(
            !dir.path().join("merged/index.html").exists(),
            "a refused merge wrote a report"
        );
    }

    // A file in figures/ that is a symlink out of the shard is refused the same way.
    std::fs::write(dir.path().join("shard0/summary.json"), &summary).unwrap();
    std::os::unix::fs::symlink(
        dir.path().join("secret.txt"),
        dir.path().join("shard0/figures/leak.png"),
    )
    .unwrap();
    let o = lossdiff_in(dir.path(), &["merge", "shard0", "--out", "merged"], &[]);
    assert_refused(&o, &["\"figures/leak.png\" is outside shard0"]);
}

/// `lossdiff train spec.toml` (2 steps) on the gate preset with `extra` appended.
fn train_gate(extra: &str, env: &[(&str, &str)]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "spec.toml",
        &format!("preset = \"gate\"\n{extra}"),
    );
    let args = [
        "train",
        "spec.toml",
        "--out",
        "t.json",
        "--set",
        "train_iters=2",
    ];
    lossdiff_in(dir.path(), &args, env)
}

#[test]
fn issue_21_item_3_footprints_and_corpora_are_refused_before_anything_is_allocated() {
    // Each of these aborted in the allocator (exit 134) before the footprint was estimated.
    for (spec, part, knob) in [
        (
            "[train]\nmicro_batch_size = 100000000\n",
            "activations",
            "`micro_batch_size`",
        ),
        (
            "[model]\nhidden_size = 65536\n",
            "parameters",
            "`hidden_size`",
        ),
        (
            "[model]\nvocab_size = 1000000000\n",
            "logits",
            "`vocab_size`",
        ),
        (
            "[model]\nattention = \"flash\"\nseq_length = 100000000\n",
            "activations",
            "`seq_length`",
        ),
    ] {
        let o = train_gate(spec, &[]);
        let msg = assert_refused(
            &o,
            &[
                "spec.toml: training needs about",
                "over the limit of 8589934592 bytes",
                part,
                knob,
                "LOSSDIFF_MAX_TRAIN_BYTES",
            ],
        );
        assert!(!stdout(&o).contains("steps in"), "trained: {msg}");
    }
    // The budget is the knob: the gate model fits in 8 GiB but not in 1 MB.
    let o = train_gate("", &[("LOSSDIFF_MAX_TRAIN_BYTES", "1000000")]);
    assert_refused(&o, &["over the limit of 1000000 bytes"]);

    // A corpus that never ends is refused before it is opened; one over the input limit is
    // refused with the limit, not read whole.
    let corpus = "[train]\nlr_warmup_iters = 1\n[model]\nvocab_size = 256\n[data]\nsource = \"file\"\npath = ";
    let o = train_gate(&format!("{corpus}\"/dev/zero\"\n"), &[]);
    assert_refused(&o, &["/dev/zero: is a device, not a regular file"]);
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("corpus.txt");
    std::fs::write(&big, vec![b'a'; 5000]).unwrap();
    let o = train_gate(
        &format!("{corpus}{:?}\n", big.display().to_string()),
        &[("LOSSDIFF_MAX_INPUT_BYTES", "1000")],
    );
    assert_refused(
        &o,
        &["corpus.txt: 5000 bytes", "over the input limit of 1000"],
    );
}

#[test]
fn issue_21_item_4_include_cycles_and_duplicate_cells_are_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let nightly = |includes: &str| format!("[experiment]\nname = \"n\"\ninclude = [{includes}]\n");
    write(dir.path(), "a.toml", &nightly("\"b.toml\""));
    write(dir.path(), "b.toml", &nightly("\"a.toml\""));
    write(dir.path(), "self.toml", &nightly("\"self.toml\""));
    write(dir.path(), "one.toml", &common::tiny_experiment("one"));
    write(
        dir.path(),
        "twice.toml",
        &nightly("\"one.toml\", \"one.toml\""),
    );

    let o = lossdiff_in(dir.path(), &["run", "a.toml"], &[]);
    assert_refused(
        &o,
        &["include cycle: a.toml includes b.toml includes a.toml"],
    );
    let o = lossdiff_in(dir.path(), &["run", "self.toml"], &[]);
    assert_refused(&o, &["include cycle: self.toml includes self.toml"]);
    let o = lossdiff_in(dir.path(), &["run", "twice.toml"], &[]);
    assert_refused(
        &o,
        &["one.toml: `experiment.name` = one: expected a name no other experiment"],
    );

    // Two sweep values with one cell id: refused before training, naming both.
    let dup = format!(
        "{}[sweep]\nlr_decay_iters = [8, 12, 8]\n",
        common::tiny_experiment("dup")
    );
    write(dir.path(), "dup.toml", &dup);
    let o = lossdiff_in(dir.path(), &["run", "dup.toml"], &[]);
    assert_refused(
        &o,
        &["dup.toml: `sweep` = cell `lr_decay_iters=8` twice (train.lr_decay_iters = 8 and train.lr_decay_iters = 8)"],
    );
    assert!(
        !dir.path().join(".cache").exists(),
        "runs were trained before the refusal"
    );
}

#[test]
fn issue_21_item_9_store_walks_fifos_threads_and_optimiser_values() {
    // `golden check` does not follow a directory symlink out of the store, so it neither walks
    // what lies there nor deletes temp files in it.
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    // A temp-file name of `fsutil::write_atomic` whose writer (pid 4194305, above Linux's
    // largest pid_max) is not running: `golden check` removes these inside the store.
    let stray = outside.join(".x.golden.json.4194305.0.tmp");
    std::fs::write(&stray, "someone else's file").unwrap();
    std::fs::create_dir_all(dir.path().join("golden")).unwrap();
    std::fs::create_dir_all(dir.path().join("experiments")).unwrap();
    std::os::unix::fs::symlink(&outside, dir.path().join("golden/link")).unwrap();
    let o = lossdiff_in(dir.path(), &["golden", "check"], &[]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(
        stray.exists(),
        "golden check deleted a file outside the store"
    );

    // A FIFO nobody writes is refused, not opened (opening it would block forever).
    let fifo = dir.path().join("a.jsonl");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    write(dir.path(), "b.jsonl", &common::jsonl(1..=20));
    let o = lossdiff_in(dir.path(), &["compare", "a.jsonl", "b.jsonl"], &[]);
    assert_refused(&o, &["a.jsonl: is a FIFO (named pipe), not a regular file"]);

    // Far more threads than cores is refused, naming the flag.
    let o = lossdiff_in(
        dir.path(),
        &["train", "spec.toml", "--out", "t.json", "--threads", "1000"],
        &[],
    );
    assert_refused(&o, &["--threads: `threads` = 1000: expected 1..="]);

    // β₁ = 1 divides by zero in Adam's bias correction: refused at load, naming the key.
    for (key, value) in [
        ("adam_beta1", "1.0"),
        ("adam_beta2", "-0.1"),
        ("adam_eps", "0.0"),
        ("clip_grad", "-1.0"),
    ] {
        let o = train_gate(&format!("[train]\n{key} = {value}\n"), &[]);
        assert_refused(&o, &["spec.toml", &format!("`train.{key}` = ")]);
    }
}
