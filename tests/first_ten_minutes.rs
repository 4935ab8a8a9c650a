//! What a new user sees on the terminal in their first ten minutes, run as they run it: the real
//! binary in a temp dir. `lossdiff report DIR` groups seeds into arms and prints the verdict table
//! with a documented exit code; `lossdiff run` prints effect and margin per comparison; no output
//! shows Rust's debug formatting; every bless hint names the caller's own command.
//
// See: issue #19, "The first ten minutes".

mod common;

use common::{lossdiff_in, stderr, stdout};
use std::path::{Path, PathBuf};
use std::process::Output;

/// A decaying loss with a seed-dependent, noise-like wiggle of amplitude ~5e-3, times `scale`.
fn loss(step: u64, seed: u64, scale: f64) -> f64 {
    let x = step as f64;
    (3.0 * (-x / 40.0).exp() + 1.0 + 5e-3 * (x * 12.9898 + seed as f64 * 7.31).sin()) * scale
}

fn write_jsonl(path: &Path, f: impl Fn(u64) -> f64) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let text: String = (1..=120)
        .map(|s| match f(s) {
            v if v.is_nan() => format!("{{\"step\": {s}, \"loss\": \"nan\"}}\n"),
            v => format!("{{\"step\": {s}, \"loss\": {v:.17e}}}\n"),
        })
        .collect();
    std::fs::write(path, text).unwrap();
}

/// Asserts that nothing printed looks like Rust's `{:?}` of a struct, an option or an enum.
#[track_caller]
fn assert_no_debug_text(o: &Output) {
    let all = format!("{}\n{}", stdout(o), stderr(o));
    for pattern in [
        " { ",
        "Some(",
        "None",
        "(NonFinite)",
        "NonFinite",
        "Perturbation {",
    ] {
        assert!(
            !all.contains(pattern),
            "debug formatting `{pattern}` in the output:\n{all}"
        );
    }
}

#[test]
fn report_dir_groups_seed_files_into_arms_and_prints_the_verdict_table() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    for seed in 1..=3 {
        write_jsonl(&runs.join(format!("base.seed{seed}.jsonl")), |s| {
            loss(s, seed, 1.0)
        });
        write_jsonl(&runs.join(format!("new.seed{seed}.jsonl")), |s| {
            loss(s, seed, 1.02)
        });
    }
    let o = lossdiff_in(dir.path(), &["report", "runs"], &[]);
    let out = stdout(&o);
    // Six files, two arms of three seeds: one comparison, not five.
    assert!(
        out.contains("base: 3 run(s): seed 1, seed 2, seed 3"),
        "{out}"
    );
    assert!(out.contains("new: 3 run(s)"), "{out}");
    assert!(
        out.contains("pairing of new vs base: paired by the seeds"),
        "{out}"
    );
    let header = common::line_starting(&out, "comparison");
    for column in [
        "verdict",
        "effect (late window)",
        "margin",
        "p (test)",
        "onset",
        "rounding",
    ] {
        assert!(header.contains(column), "{header}");
    }
    let row = common::line_starting(&out, "new vs base");
    assert!(row.contains("diverged"), "{row}");
    assert!(row.contains("+2.000%"), "{row}");
    assert!(row.contains("±0.1%"), "{row}");
    assert!(row.contains("p (beyond margin) = "), "{row}");
    assert_eq!(
        out.matches("\nnew vs base ").count(),
        1,
        "one comparison:\n{out}"
    );
    assert!(!out.contains("seed2 vs"), "{out}");
    // Exit 1 means a divergence, and says so.
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("exit 1: 1 of 1 comparisons diverged (new vs base)"),
        "{out}"
    );
    assert!(runs.join("report/index.md").is_file());
    assert_no_debug_text(&o);
}

#[test]
fn report_dir_reads_subdirectories_as_arms_and_exits_0_without_a_divergence() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    for seed in 1..=3 {
        for arm in ["naive", "flash"] {
            write_jsonl(&runs.join(format!("{arm}/seed{seed}.jsonl")), |s| {
                loss(s, seed, 1.0)
            });
        }
    }
    // `naive` is the reference although `flash` comes first in name order.
    let o = lossdiff_in(dir.path(), &["report", "runs", "--reference", "naive"], &[]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{}", stderr(&o));
    let row = common::line_starting(&out, "flash vs naive");
    assert!(row.contains("identical"), "{row}");
    // A second report does not read the first one's directory as an arm.
    let again = lossdiff_in(dir.path(), &["report", "runs"], &[]);
    assert_eq!(again.status.code(), Some(0), "{}", stdout(&again));
    assert!(!stdout(&again).contains("report:"), "{}", stdout(&again));
}

#[test]
fn compare_of_a_nan_trace_says_what_differs_without_debug_text() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.jsonl");
    let b = dir.path().join("b.jsonl");
    write_jsonl(&a, |s| loss(s, 1, 1.0));
    write_jsonl(&b, |s| if s == 40 { f64::NAN } else { loss(s, 1, 1.0) });
    let o = lossdiff_in(dir.path(), &["compare", "a.jsonl", "b.jsonl"], &[]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("diverged from step 40"), "{out}");
    // Not "max |B − A| = 0.000e0": the only difference is the NaN.
    assert!(!out.contains("max |B − A| = 0.000e0"), "{out}");
    assert!(out.contains("only where a value is non-finite"), "{out}");
    assert_no_debug_text(&o);
}

#[test]
fn compare_with_a_perturbation_ensemble_names_every_p_values_test() {
    let dir = tempfile::tempdir().unwrap();
    write_jsonl(&dir.path().join("a.jsonl"), |s| loss(s, 1, 1.0));
    write_jsonl(&dir.path().join("b.jsonl"), |s| loss(s, 1, 1.0 + 1e-7));
    let mut perturb = Vec::new();
    for k in 1..=4u64 {
        let name = format!("p{k}.jsonl");
        let nudge = 1.0 + (k as f64 - 2.5) * 1e-9;
        write_jsonl(&dir.path().join(&name), |s| loss(s, 1, nudge));
        perturb.push(name);
    }
    let p = perturb.join(",");
    let o = lossdiff_in(
        dir.path(),
        &["compare", "a.jsonl", "b.jsonl", "--perturb", &p],
        &[],
    );
    let out = stdout(&o);
    assert!(out.contains("p (beyond rounding) = "), "{out}");
    // Every p reads `p (its test, …) = …`, as in the report's files.
    for line in out.lines() {
        assert!(!line.contains("p = "), "unlabelled p-value: {line}");
    }
    assert_no_debug_text(&o);
}

/// Writes an experiment of one external arm running `wrapper`, a script the test can change
/// without changing the spec (so the golden is not stale, it fails).
fn toy_experiment(dir: &Path, perturbations: u32) -> PathBuf {
    let toy = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/toy_train.py");
    let mut text = format!(
        "[experiment]\nname = \"toy\"\nseeds = 1\nperturbations = {perturbations}\n\
         declared = [\"external.command\"]\n"
    );
    for arm in ["clean", "twin"] {
        let wrapper = dir.join(format!("{arm}.py"));
        write_wrapper(&wrapper, &toy, false);
        text += &format!(
            "\n[[arm]]\nname = \"{arm}\"\n\
             command = \"python3 {} --seed {{seed}} --perturb-seed {{perturb_seed}} --steps 100 --out {{out}}\"\n\
             timeout_s = 60\n",
            wrapper.display()
        );
    }
    let spec = dir.join("toy.toml");
    std::fs::write(&spec, text).unwrap();
    spec
}

fn write_wrapper(wrapper: &Path, toy: &Path, bug: bool) {
    let extra = if bug { " + ['--bug']" } else { "" };
    std::fs::write(
        wrapper,
        format!(
            "import os, sys\nos.execvp('python3', ['python3', {:?}] + sys.argv[1:]{extra})\n",
            toy.display().to_string()
        ),
    )
    .unwrap();
}

#[test]
fn run_prints_effect_margin_and_rounding_and_hints_its_own_bless_flag() {
    let dir = tempfile::tempdir().unwrap();
    let spec = toy_experiment(dir.path(), 4);
    let no_wrapper = [("LOSSDIFF_BLESS_COMMAND", "")];
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "toy.toml", "--no-cache"];
        args.extend_from_slice(extra);
        lossdiff_in(dir.path(), &args, &no_wrapper)
    };
    let first = run(&[]);
    let out = stdout(&first);
    assert_eq!(first.status.code(), Some(1), "{out}\n{}", stderr(&first));
    // The CLI's hint is the CLI's own flag, never `cargo test`.
    assert!(
        out.contains("bless it with `lossdiff run toy.toml --bless` or `lossdiff golden accept`"),
        "{out}"
    );
    assert!(!out.contains("cargo test"), "{out}");
    assert_no_debug_text(&first);

    let blessed = run(&["--bless"]);
    assert_eq!(blessed.status.code(), Some(0), "{}", stdout(&blessed));
    assert!(
        stdout(&blessed).contains("blessed "),
        "{}",
        stdout(&blessed)
    );
    assert!(
        stdout(&blessed).contains("(it was missing)"),
        "{}",
        stdout(&blessed)
    );

    // The script changes, the spec does not: the golden check fails, with numbers and a hint.
    let toy = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/toy_train.py");
    write_wrapper(&dir.path().join("clean.py"), &toy, true);
    let failed = run(&[]);
    let out = stdout(&failed);
    assert_eq!(failed.status.code(), Some(1), "{out}\n{}", stderr(&failed));
    let line = out
        .lines()
        .find(|l| l.contains("clean vs golden"))
        .unwrap_or_else(|| panic!("no golden line:\n{out}"));
    assert!(line.contains("FAIL"), "{line}");
    assert!(line.contains("late-window effect +"), "{line}");
    assert!(line.contains("vs margin ±0.1% (±"), "{line}");
    assert!(line.contains("rounding from step"), "{line}");
    assert!(line.contains("p (beyond rounding) = "), "{line}");
    assert!(
        line.contains("if the change is intended, bless it with `lossdiff run toy.toml --bless`"),
        "{line}"
    );
    assert_no_debug_text(&failed);
    let _ = spec;
}

#[test]
fn a_wrapper_names_its_own_bless_command_and_ci_refuses_bless() {
    let dir = tempfile::tempdir().unwrap();
    toy_experiment(dir.path(), 0);
    let py = "LOSSDIFF_UPDATE=always python3 -m pytest tests/test_gate.py::test_toy";
    let o = lossdiff_in(
        dir.path(),
        &["run", "toy.toml", "--no-cache"],
        &[("LOSSDIFF_BLESS_COMMAND", py)],
    );
    let out = stdout(&o);
    assert!(out.contains(&format!("bless it with `{py}`")), "{out}");
    assert!(!out.contains("--bless"), "{out}");

    // A binary under another name is still the CLI: its hint is the CLI's, not `cargo test`.
    let renamed = dir.path().join("ld-dev");
    std::fs::copy(env!("CARGO_BIN_EXE_lossdiff"), &renamed).unwrap();
    let o = std::process::Command::new(&renamed)
        .current_dir(dir.path())
        .args(["run", "toy.toml", "--no-cache"])
        .env_remove("CI")
        .env_remove("LOSSDIFF_UPDATE")
        .env_remove("LOSSDIFF_BLESS_COMMAND")
        .env("LOSSDIFF_CACHE", dir.path().join(".cache"))
        .output()
        .unwrap();
    let out = stdout(&o);
    assert!(out.contains("`lossdiff run toy.toml --bless`"), "{out}");
    assert!(!out.contains("cargo test"), "{out}");

    let ci = lossdiff_in(
        dir.path(),
        &["run", "toy.toml", "--no-cache", "--bless"],
        &[("CI", "true")],
    );
    assert_eq!(ci.status.code(), Some(2), "{}", stdout(&ci));
    assert!(
        stderr(&ci).contains("--bless: CI is set"),
        "{}",
        stderr(&ci)
    );
}

#[test]
fn help_points_to_the_glossary_and_the_glossary_explains_terms() {
    let dir = tempfile::tempdir().unwrap();
    for cmd in [
        &["run", "--help"][..],
        &["report", "--help"],
        &["compare", "--help"],
        &["--help"],
    ] {
        let o = lossdiff_in(dir.path(), cmd, &[]);
        assert!(
            stdout(&o).contains("lossdiff glossary"),
            "{cmd:?}:\n{}",
            stdout(&o)
        );
    }
    let o = lossdiff_in(dir.path(), &["glossary", "TOST"], &[]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).starts_with("**TOST**"), "{}", stdout(&o));
    let o = lossdiff_in(dir.path(), &["glossary", "zzz-not-a-term"], &[]);
    assert_eq!(o.status.code(), Some(2));
}
