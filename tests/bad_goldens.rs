//! The bad-input catalog for goldens and output directories (issue #8): a golden from a newer
//! lossdiff, a truncated or foreign golden file, a missing golden directory, an unwritable report
//! directory. Refusals exit 2 naming the file, the place and what was expected; a missing golden
//! is a failed gate (exit 1) with insta's "bless it with …" message, never an I/O error.

mod common;

use common::{assert_refused, golden, golden_path, lossdiff_in, stderr, stdout, write};
use lossdiff::golden::{GoldenStore, UpdateAction};

/// A store in a temp dir holding one golden; returns the dir.
fn store_with_golden() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    GoldenStore::new(dir.path().join("golden"))
        .write(&golden("h1", 2, 20), UpdateAction::InPlace)
        .unwrap();
    dir
}

/// Rewrites the golden in `dir` through `edit` on its JSON.
fn edit_golden(dir: &std::path::Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = golden_path(&dir.join("golden"));
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&path, v.to_string()).unwrap();
}

const GOLDEN: &str = "golden/exp/default/a.golden.json";

#[test]
fn golden_from_a_newer_lossdiff_asks_for_an_upgrade() {
    let dir = store_with_golden();
    edit_golden(dir.path(), |g| {
        g["version"] = 3.into();
        g["provenance"]["lossdiff_version"] = "3.1.0".into();
    });
    let o = lossdiff_in(
        dir.path(),
        &["golden", "export", GOLDEN, "--out", "m.json"],
        &[],
    );
    assert_refused(
        &o,
        &[
            "a.golden.json: golden format version 3",
            "written by a newer lossdiff (v3.1.0)",
            concat!("this is v", env!("CARGO_PKG_VERSION")),
            "upgrade lossdiff",
        ],
    );
}

#[test]
fn golden_holding_a_trace_of_a_newer_schema_asks_for_an_upgrade() {
    let dir = store_with_golden();
    edit_golden(dir.path(), |g| {
        g["seed_traces"][1]["schema_version"] = 5.into()
    });
    let o = lossdiff_in(
        dir.path(),
        &["golden", "export", GOLDEN, "--out", "m.json"],
        &[],
    );
    assert_refused(
        &o,
        &["a.golden.json: trace schema version 5", "upgrade lossdiff"],
    );
}

#[test]
fn truncated_golden_names_line_and_column() {
    let dir = store_with_golden();
    let path = golden_path(&dir.path().join("golden"));
    let text = std::fs::read_to_string(&path).unwrap();
    // Cut at a line break, as an interrupted write of whole lines would (mid-number, serde_json
    // names the number instead of the end of file).
    let cut = text[..text.len() / 2].rfind('\n').unwrap();
    std::fs::write(&path, &text[..cut]).unwrap();
    let o = lossdiff_in(
        dir.path(),
        &["golden", "export", GOLDEN, "--out", "m.json"],
        &[],
    );
    assert_refused(&o, &["a.golden.json: invalid JSON at line", "EOF"]);
}

#[test]
fn file_that_is_not_a_golden_says_what_a_golden_is() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), GOLDEN, "{\"lm loss\": {}}");
    let o = lossdiff_in(
        dir.path(),
        &["golden", "export", GOLDEN, "--out", "m.json"],
        &[],
    );
    assert_refused(&o, &["a.golden.json", "missing `format: lossdiff-golden`"]);
}

#[test]
fn pending_golden_from_a_newer_lossdiff_is_not_accepted() {
    let dir = store_with_golden();
    let path = golden_path(&dir.path().join("golden"));
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    v["version"] = 9.into();
    std::fs::write(path.with_extension("json.new"), v.to_string()).unwrap();
    let o = lossdiff_in(dir.path(), &["golden", "accept"], &[]);
    assert_refused(&o, &["a.golden.json.new: golden format version 9"]);
    lossdiff::golden::Golden::load(&path).expect("the blessed golden is untouched");
}

#[test]
fn missing_golden_directory_fails_the_gate_with_how_to_bless() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "exp.toml", &common::tiny_experiment("x"));
    let o = lossdiff_in(
        dir.path(),
        &["run", "exp.toml", "--out", "report"],
        &[("CI", "true")],
    );
    let (out, err) = (stdout(&o), stderr(&o));
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(
        !err.contains("panicked") && !err.contains("No such file"),
        "{err}"
    );
    assert!(
        out.contains(
            "no golden at golden/x/default/a.golden.json; bless it with `lossdiff run exp.toml --bless`"
        ),
        "{out}"
    );
    assert!(
        !dir.path().join("golden").exists(),
        "nothing is written on CI"
    );
}

#[test]
fn report_directory_under_a_regular_file_is_refused_before_training() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "exp.toml", &common::tiny_experiment("x"));
    write(dir.path(), "taken", "a regular file");
    let o = lossdiff_in(
        dir.path(),
        &["run", "exp.toml", "--out", "taken/report"],
        &[("CI", "true")],
    );
    let line = assert_refused(
        &o,
        &[
            "cannot write report into taken/report",
            "taken is a regular file",
            "check that the directory is writable",
        ],
    );
    assert_eq!(line.matches("regular file").count(), 1, "said once: {line}");
    assert!(!stdout(&o).contains("runs trained"), "{}", stdout(&o));
    assert!(
        !dir.path().join(".cache").exists(),
        "refused before any run"
    );
}

#[test]
fn merge_into_an_unwritable_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "taken", "a regular file");
    write(
        dir.path(),
        "shard/experiments.json",
        "{\"passed\": true, \"experiments\": []}",
    );
    let o = lossdiff_in(
        dir.path(),
        &["merge", "shard", "--out", "taken/merged"],
        &[],
    );
    assert_refused(&o, &["cannot write report into taken/merged"]);
}

#[test]
fn golden_check_without_an_experiments_directory_names_it() {
    let dir = store_with_golden();
    let o = lossdiff_in(
        dir.path(),
        &["golden", "check", "--experiments", "nowhere"],
        &[],
    );
    assert_refused(
        &o,
        &["failed to list experiments in nowhere", "No such file"],
    );
}
