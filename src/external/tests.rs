//! Tests of external-command arms: templates, process control, trace import, and the
//! `external_toy` experiment end to end.

use super::*;
use crate::experiment::Experiment;
use crate::gate::{run_experiment, GateOptions};
use crate::golden::UpdateMode;
use crate::runner::RunnerOptions;

fn spec(command: &str, trace: TraceSource, workdir: &Path, timeout_s: f64) -> ExternalSpec {
    ExternalSpec {
        command: command.into(),
        trace,
        format: None,
        timeout_s,
        env: vec![],
        workdir: workdir.to_path_buf(),
    }
}

fn ctx<'a>(config: &'a Value) -> RunContext<'a> {
    RunContext {
        id: "t/default/a/seed-7",
        cell: "default",
        arm: "a",
        seed: 7,
        config,
    }
}

fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn placeholders_fill_words_without_a_shell() {
    let s = ExternalSpec {
        env: vec![("RUN".into(), "{arm}-{seed}".into())],
        ..spec(
            r#"train --name "{arm} x" --lr={train.lr} '{seed}' a\ b {{lit}} ; rm"#,
            TraceSource::Stdout,
            Path::new("."),
            1.0,
        )
    };
    let v = vars(&[("arm", "a; rm -rf /"), ("train.lr", "0.003"), ("seed", "7")]);
    let r = s.resolve("o", &v).unwrap();
    // A value with spaces and `;` stays inside its word; single quotes are literal; `;` is an
    // argument, not a command separator.
    assert_eq!(
        r.argv,
        [
            "train",
            "--name",
            "a; rm -rf / x",
            "--lr=0.003",
            "{seed}",
            "a b",
            "{lit}",
            ";",
            "rm"
        ]
    );
    assert_eq!(r.env, [("RUN".to_string(), "a; rm -rf /-7".to_string())]);
    assert_eq!(
        r.display(),
        "train --name 'a; rm -rf / x' --lr=0.003 {seed} 'a b' {lit} ';' rm"
    );
    assert_eq!(
        s.placeholders("o").unwrap(),
        ["arm", "train.lr", "seed"],
        "single-quoted text has no placeholders"
    );
}

#[test]
fn bad_templates_are_syntax_errors() {
    for (cmd, why) in [
        ("a 'b", "single quote"),
        ("a \"b", "double quote"),
        ("a {b", "placeholder"),
        ("a }", "unmatched"),
        ("a {}", "placeholder"),
    ] {
        let err = spec(cmd, TraceSource::Stdout, Path::new("."), 1.0)
            .placeholders("exp.toml [[arm]] a")
            .unwrap_err();
        assert!(
            matches!(&err, Error::CommandSyntax { reason, .. } if reason.contains(why)),
            "{cmd}: {err}"
        );
    }
}

fn write_spec(dir: &Path, arm_b: &str) -> PathBuf {
    let path = dir.join("e.toml");
    std::fs::write(
        &path,
        format!(
            r#"
            [experiment]
            name = "ext"
            seeds = 2
            [[arm]]
            name = "a"
            command = "python3 toy.py --seed {{seed}} --out {{out}}"
            [[arm]]
            name = "b"
            {arm_b}
            [sweep]
            lr_decay_iters = [50, 100]
            "#
        ),
    )
    .unwrap();
    path
}

#[test]
fn unknown_placeholder_is_a_load_error_naming_arm_and_suggestion() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_spec(
        dir.path(),
        r#"command = "python3 toy.py --iters {lr_decay_iter} --out {out}""#,
    );
    let err = Experiment::load(&path).unwrap_err();
    assert!(
        matches!(&err, Error::UnknownPlaceholder { placeholder, suggestion, .. }
            if placeholder == "lr_decay_iter" && suggestion.as_deref() == Some("lr_decay_iters")),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("[[arm]] b") && msg.contains("`{lr_decay_iters}`"),
        "{msg}"
    );
}

#[test]
fn spec_keys_are_checked_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        // A file trace needs `{out}` somewhere.
        (r#"command = "python3 toy.py""#, "{out}"),
        // An override the command never sees would be recorded as a difference it is not.
        (
            "command = \"python3 toy.py --out {out}\"\n            lr = 0.1",
            "train.lr",
        ),
        // External keys without a command are mistakes.
        (r#"timeout_s = 5"#, "only applies to arms with a `command`"),
        (
            "command = \"python3 toy.py\"\n            trace = \"stderr\"",
            "\"file\" or \"stdout\"",
        ),
    ];
    for (arm_b, want) in cases {
        let err = Experiment::load(&write_spec(dir.path(), arm_b))
            .unwrap_err()
            .to_string();
        assert!(err.contains(want) && err.contains("[[arm]] b"), "{err}");
    }
    let ok = Experiment::load(&write_spec(
        dir.path(),
        "command = \"python3 toy.py --iters {train.lr_decay_iters} --lr {lr}\"\n            trace = \"stdout\"\n            lr = 0.1\n            env = { TAG = \"{cell}\" }",
    ))
    .unwrap();
    let b = ok.arms[1].command.as_ref().unwrap();
    assert_eq!(
        (b.trace, b.workdir.as_path()),
        (TraceSource::Stdout, dir.path())
    );
    // Arms that set a command or env declare them by default.
    assert_eq!(
        ok.declared,
        ["external.command", "external.env", "train.lr"]
    );
}

#[test]
fn perturbations_are_refused_for_external_arms() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_spec(
        dir.path(),
        r#"command = "python3 toy.py --out {out} --bug""#,
    );
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("seeds = 2", "seeds = 2\n            perturbations = 2");
    std::fs::write(&path, text).unwrap();
    let err = Experiment::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("perturbations") && err.contains("`a`"),
        "{err}"
    );
}

#[test]
fn stdout_trace_is_imported_with_the_external_section() {
    let dir = tempfile::tempdir().unwrap();
    let s = ExternalSpec {
        env: vec![("LR".into(), "{train.lr}".into())],
        ..spec(
            r#"sh -c 'echo "{\"step\": 1, \"loss\": 2.5, \"lr\": $LR}"; echo "{\"step\": 2, \"loss\": 2.25, \"lr\": $LR}"' {seed}"#,
            TraceSource::Stdout,
            dir.path(),
            10.0,
        )
    };
    let config = json!({ "train": { "lr": 0.5 } });
    let t = run(&s, &ctx(&config)).unwrap();
    assert_eq!(t.steps, [1, 2]);
    assert_eq!(t.lm_loss().unwrap(), [2.5, 2.25]);
    assert_eq!(t.metric("lr").unwrap(), [0.5, 0.5]);
    assert_eq!(t.name, "t/default/a/seed-7");
    assert_eq!(t.seeds.get("seed"), Some(&7));
    let ext = &t.config["external"];
    // Run placeholders stay as written, so the command is constant across an arm's seeds.
    assert!(
        ext["command"].as_str().unwrap().ends_with(" {seed}"),
        "{ext}"
    );
    assert_eq!(ext["env"]["LR"], "0.5");
    assert_eq!(
        (ext["format"].as_str(), ext["trace"].as_str()),
        (Some("jsonl"), Some("stdout"))
    );
}

#[test]
fn failing_command_reports_its_status_and_the_tail_of_its_output() {
    let dir = tempfile::tempdir().unwrap();
    let s = spec(
        "sh -c 'i=1; while [ $i -le 30 ]; do echo line$i; i=$((i+1)); done; echo oops >&2; exit 3'",
        TraceSource::Stdout,
        dir.path(),
        10.0,
    );
    let err = run(&s, &ctx(&json!({}))).unwrap_err();
    let Error::CommandFailed { reason, tail, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(*reason, ExitReason::Code(3));
    assert!(tail.contains("oops") && tail.contains("line11\n") && tail.ends_with("line30"));
    assert!(!tail.contains("line10\n"), "only the last 20 lines: {tail}");
    assert!(err.to_string().contains("exited with status 3"), "{err}");
}

#[test]
fn missing_program_and_unreadable_trace_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let s = spec(
        "no-such-program-lossdiff",
        TraceSource::Stdout,
        dir.path(),
        5.0,
    );
    let err = run(&s, &ctx(&json!({}))).unwrap_err();
    assert!(matches!(err, Error::CommandSpawn { .. }), "{err}");
    let s = spec("echo not a trace", TraceSource::Stdout, dir.path(), 5.0);
    let err = run(&s, &ctx(&json!({}))).unwrap_err();
    let Error::ExternalTrace { tail, .. } = &err else {
        panic!("{err}");
    };
    assert!(tail.contains("not a trace"), "{tail}");
}

#[test]
fn timeout_kills_the_command_and_its_children() {
    let dir = tempfile::tempdir().unwrap();
    // The shell starts a background child, records its pid, and waits for it.
    let s = spec(
        "sh -c 'sleep 30 & echo $! > child.pid; echo started; wait'",
        TraceSource::Stdout,
        dir.path(),
        0.5,
    );
    let start = Instant::now();
    let err = run(&s, &ctx(&json!({}))).unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    let Error::CommandFailed { reason, tail, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(*reason, ExitReason::TimedOut(Duration::from_millis(500)));
    assert!(tail.contains("started"), "{tail}");
    assert!(err.to_string().contains("timed out after 0.5 s"), "{err}");
    let pid = std::fs::read_to_string(dir.path().join("child.pid")).unwrap();
    let stat = PathBuf::from(format!("/proc/{}/stat", pid.trim()));
    // The orphaned `sleep` is reaped by init shortly after the kill; give it a moment.
    let deadline = Instant::now() + Duration::from_secs(3);
    let alive =
        || std::fs::read_to_string(&stat).is_ok_and(|s| s.contains("sleep") && !s.contains(") Z "));
    while alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !alive(),
        "the background child of a timed-out command survived"
    );
}

#[test]
fn external_toy_experiment_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/external_toy.toml");
    let opts = GateOptions {
        golden_root: dir.path().join("golden"),
        runner: RunnerOptions {
            jobs: 2,
            cache: None,
            progress: false,
        },
        update: UpdateMode::No,
        ci: true,
        cells: None,
        shard: None,
        inject: None,
        kernels: None,
    };
    let (report, by_cell) = run_experiment(&spec, &opts).unwrap();
    assert_eq!(report.trained, 12);
    assert_eq!(report.comparisons.len(), 2);
    for c in &report.comparisons {
        // `--bug` drifts the loss up by 0.02 % per step: every cell must show it, as expected.
        assert!(
            matches!(
                c.comparison.verdict,
                crate::compare::Verdict::Diverged {
                    direction: crate::compare::Direction::Higher,
                    ..
                }
            ),
            "{:?}",
            c.comparison.verdict
        );
        assert!(c.passed, "{:?}", c.problems);
        let diff = &c.comparison.config;
        let keys: Vec<&str> = diff.declared.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(keys, ["external.command"], "{diff:?}");
        assert!(diff.undeclared.is_empty(), "{diff:?}");
        let b = diff.declared[0].b.as_ref().and_then(Value::as_str).unwrap();
        assert!(b.ends_with(" --bug") && b.contains("--seed {seed}"), "{b}");
        assert!(b.contains(&format!(
            "--lr-decay-iters {}",
            &c.cell["lr_decay_iters=".len()..]
        )));
    }
    // No goldens yet: missing, not blessed on CI, and nothing written to the golden root.
    assert!(report.goldens.iter().all(|g| !g.passed));
    let (_, arms) = &by_cell[0];
    assert_eq!(arms[0].1.seeds.len(), 3);
    assert_eq!(arms[0].1.seeds[2].seeds.get("seed"), Some(&3));
}

#[test]
fn spec_hash_does_not_depend_on_how_the_spec_path_is_spelled() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let abs = Experiment::load(&root.join("experiments/external_toy.toml")).unwrap();
    let rel = Experiment::load(&root.join("experiments/../experiments/external_toy.toml")).unwrap();
    let cell = &abs.cells()[0];
    assert_eq!(
        abs.spec_hash(cell, &abs.arms[1]).unwrap(),
        rel.spec_hash(cell, &rel.arms[1]).unwrap()
    );
    assert_ne!(
        abs.spec_hash(cell, &abs.arms[0]).unwrap(),
        abs.spec_hash(cell, &abs.arms[1]).unwrap()
    );
}

#[test]
fn external_runs_are_cached_by_command_and_seed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e.toml");
    std::fs::write(
        &path,
        r#"
        [experiment]
        name = "cached"
        seeds = 2
        [[arm]]
        name = "a"
        command = "sh -c 'echo \"{\\\"step\\\": 1, \\\"loss\\\": $0}\"; echo \"{\\\"step\\\": 2, \\\"loss\\\": 1}\"' {seed}"
        trace = "stdout"
        [[arm]]
        name = "b"
        command = "sh -c 'echo \"{\\\"step\\\": 1, \\\"loss\\\": $0}\"; echo \"{\\\"step\\\": 2, \\\"loss\\\": 2}\"' {seed}"
        trace = "stdout"
        "#,
    )
    .unwrap();
    let e = Experiment::load(&path).unwrap();
    let reqs = e.runs(None).unwrap();
    let opts = RunnerOptions {
        jobs: 2,
        cache: Some(dir.path().join("cache")),
        progress: false,
    };
    let (first, s1) = crate::runner::run_all(&e.name, &reqs, &opts).unwrap();
    let (second, s2) = crate::runner::run_all(&e.name, &reqs, &opts).unwrap();
    assert_eq!((s1.trained, s1.cached, s2.trained, s2.cached), (4, 0, 0, 4));
    assert_eq!(first, second);
    // Each run got its own seed and arm: four distinct (first, last) losses.
    let ends: Vec<(f64, f64)> = first
        .iter()
        .map(|t| (t.lm_loss().unwrap()[0], t.lm_loss().unwrap()[1]))
        .collect();
    assert_eq!(ends, [(1.0, 1.0), (2.0, 1.0), (1.0, 2.0), (2.0, 2.0)]);
}
