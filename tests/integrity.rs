//! Stored results are checked before they are trusted, through the real binary: a hand-edited
//! golden stops the gate with exit 2; a cache entry copied over another run's is ignored with a
//! warning; runs served from the cache say which external inputs their key could not cover.
//! See: issues 21 (item 1) and 16.

mod common;

use common::{assert_refused, lossdiff_in, stderr, stdout, write};

/// Runs `lossdiff run exp.toml` in `dir` with `env`.
fn run(dir: &std::path::Path, env: &[(&str, &str)]) -> std::process::Output {
    lossdiff_in(dir, &["run", "exp.toml", "--out", "report"], env)
}

// Issue 21 item 1: one loss of a golden edited by hand (2.819663 -> 9.819663), then
// `CI=true lossdiff run`: exit 0.
#[test]
fn a_hand_edited_golden_stops_the_gate_naming_the_file_and_how_to_rebless() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "exp.toml", &common::tiny_experiment("x"));
    let o = run(dir.path(), &[("LOSSDIFF_UPDATE", "always")]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let golden = dir.path().join("golden/x/default/b.golden.json");
    let text = std::fs::read_to_string(&golden).unwrap();
    let first_loss = text
        .split("\"lm_loss\"")
        .nth(1)
        .and_then(|s| s.split("\"values\": [").nth(1))
        .and_then(|s| s.split(',').next())
        .unwrap()
        .trim()
        .to_string();
    let edited = format!("9{}", &first_loss[1..]);
    std::fs::write(&golden, text.replacen(&first_loss, &edited, 1)).unwrap();
    let o = run(dir.path(), &[("CI", "true")]);
    assert_refused(
        &o,
        &[
            "golden/x/default/b.golden.json: golden does not match its digest",
            "edited by hand",
            "LOSSDIFF_UPDATE=always",
        ],
    );
}

/// Two external arms printing a JSONL curve from `curve.sh` (a script the command names).
const EXTERNAL: &str = r#"
[experiment]
name = "ext"
seeds = 2
[[arm]]
name = "a"
command = "sh curve.sh {seed} 0"
trace = "stdout"
[[arm]]
name = "b"
command = "sh curve.sh {seed} 0 b"
trace = "stdout"
"#;

const CURVE: &str = r#"i=1; while [ $i -le 30 ]; do echo "{\"step\": $i, \"loss\": $((100 - i + $1 % 2)).$2}"; i=$((i+1)); done
"#;

// Issue 16: after blessing, an edited script passed from the cache ("0 runs trained, 4 from cache").
#[test]
fn an_edited_script_retrains_and_cached_runs_say_what_was_not_hashed() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "exp.toml", EXTERNAL);
    write(dir.path(), "curve.sh", CURVE);
    let o = run(dir.path(), &[("LOSSDIFF_UPDATE", "always")]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let o = run(dir.path(), &[("CI", "true")]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    assert!(out.contains("0 runs trained, 4 from cache"), "{out}");
    assert!(
        out.contains(
            "from cache: 4 runs, external inputs not hashed: \
             arm `a`: files the command reads without naming them (no `inputs`); \
             arm `a`: installed packages (no `probe`); arm `b`: "
        ),
        "{out}"
    );
    // Every loss moves up by 50: the same commands now compute something else.
    write(dir.path(), "curve.sh", &CURVE.replace("100 - i", "150 - i"));
    let o = run(dir.path(), &[("CI", "true")]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{}", stderr(&o));
    assert!(out.contains("4 runs trained, 0 from cache"), "{out}");
    assert!(!out.contains("from cache: "), "nothing was served: {out}");
}

// Issue 21 item 1: the cache entry of one run copied over another's passed with 0 trained.
#[test]
fn a_cache_entry_copied_over_another_runs_is_ignored_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "exp.toml", EXTERNAL);
    write(dir.path(), "curve.sh", CURVE);
    let o = run(dir.path(), &[("LOSSDIFF_UPDATE", "always")]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let mut entries: Vec<_> = walk(&dir.path().join(".cache"));
    entries.sort();
    assert_eq!(entries.len(), 4);
    std::fs::copy(&entries[0], &entries[1]).unwrap();
    let o = run(dir.path(), &[("CI", "true")]);
    let (out, err) = (stdout(&o), stderr(&o));
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(out.contains("1 runs trained, 3 from cache"), "{out}");
    assert!(
        err.contains(&format!(
            "lossdiff: warning: ignored cache entry {}: written for key",
            entries[1].display()
        )) && err.contains("ran it again"),
        "{err}"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
