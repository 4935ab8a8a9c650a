//! Tests of external-command arms: templates, process control, trace import, and the
//! `external_toy` experiment end to end.

use super::*;
use crate::experiment::Experiment;
use crate::gate::{run_experiment, GateOptions};
use crate::golden::UpdateMode;
use crate::process::TAIL_BYTES;
use crate::runner::RunnerOptions;
use std::time::Instant;

fn spec(command: &str, trace: TraceSource, workdir: &Path, timeout_s: f64) -> ExternalSpec {
    ExternalSpec {
        command: command.into(),
        trace,
        format: None,
        timeout_s,
        env: vec![],
        workdir: workdir.to_path_buf(),
        inputs: vec![],
        probe: None,
    }
}

fn ctx<'a>(config: &'a Value) -> RunContext<'a> {
    RunContext {
        id: "t/default/a/seed-7",
        cell: "default",
        arm: "a",
        seed: 7,
        perturb_seed: 0,
        config,
    }
}

/// Runs `s` as run `ctx` would be run by the runner: inputs hashed (and probed) first.
fn run_ctx(s: &ExternalSpec, ctx: &RunContext) -> Result<Trace> {
    run(s, ctx, &inputs(s, ctx, &Probes::default())?)
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
fn perturbations_need_every_external_command_to_use_perturb_seed() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_spec(
        dir.path(),
        r#"command = "python3 toy.py --out {out} --perturb-seed {perturb_seed} --bug""#,
    );
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("seeds = 2", "seeds = 2\n            perturbations = 2");
    std::fs::write(&path, &text).unwrap();
    // Arm `a` never sees the perturbation seed: its perturbation runs would repeat seed 1.
    let err = Experiment::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("perturbations") && err.contains("`a`") && err.contains("{perturb_seed}"),
        "{err}"
    );
    std::fs::write(
        &path,
        text.replace(
            "--seed {seed} --out",
            "--seed {seed} --perturb-seed {perturb_seed} --out",
        ),
    )
    .unwrap();
    let e = Experiment::load(&path).unwrap();
    let perturbed: Vec<(u64, u64)> = e
        .runs(None)
        .unwrap()
        .iter()
        .filter(|r| r.role == crate::experiment::Role::Perturbation)
        .map(|r| (r.config.train.seed, r.config.train.perturb_seed))
        .collect();
    assert_eq!(perturbed.len(), 8, "2 cells x 2 arms x 2 perturbations");
    assert!(perturbed.iter().all(|&(seed, p)| seed == 1 && p != 0));
}

#[test]
fn stdout_trace_is_imported_with_the_external_section() {
    let dir = tempfile::tempdir().unwrap();
    let s = ExternalSpec {
        env: vec![("LR".into(), "{train.lr}".into())],
        ..spec(
            r#"sh -c 'echo "{\"step\": 1, \"loss\": 2.5, \"lr\": $LR}"; echo "{\"step\": 2, \"loss\": 2.25, \"lr\": $LR}"' {seed} {perturb_seed}"#,
            TraceSource::Stdout,
            dir.path(),
            10.0,
        )
    };
    let config = json!({ "train": { "lr": 0.5 } });
    let t = run_ctx(
        &s,
        &RunContext {
            perturb_seed: 3,
            ..ctx(&config)
        },
    )
    .unwrap();
    assert_eq!(t.steps, [1, 2]);
    assert_eq!(t.lm_loss().unwrap(), [2.5, 2.25]);
    assert_eq!(t.metric("lr").unwrap(), [0.5, 0.5]);
    assert_eq!(t.name, "t/default/a/seed-7");
    assert_eq!(t.seeds.get("seed"), Some(&7));
    assert_eq!(t.seeds.get("perturb"), Some(&3));
    let ext = &t.config["external"];
    // Run placeholders stay as written, so the command is constant across an arm's seeds and
    // perturbations.
    assert!(
        ext["command"]
            .as_str()
            .unwrap()
            .ends_with(" {seed} {perturb_seed}"),
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
    let err = run_ctx(&s, &ctx(&json!({}))).unwrap_err();
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
    let err = run_ctx(&s, &ctx(&json!({}))).unwrap_err();
    assert!(matches!(err, Error::CommandSpawn { .. }), "{err}");
    let s = spec("echo not a trace", TraceSource::Stdout, dir.path(), 5.0);
    let err = run_ctx(&s, &ctx(&json!({}))).unwrap_err();
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
    let err = run_ctx(&s, &ctx(&json!({}))).unwrap_err();
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
        bless_hint: Default::default(),
    };
    let (report, by_cell) = run_experiment(&spec, &opts).unwrap();
    assert_eq!(
        report.trained, 28,
        "2 cells x 2 arms x (3 seeds + 4 perturbations)"
    );
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
    // The perturbation ensemble: the first seed, nudged by each perturbation seed.
    let p = &arms[0].1.perturbations;
    assert_eq!(p.len(), 4);
    assert!(p
        .iter()
        .all(|t| t.seeds["seed"] == 1 && t.seeds["perturb"] != 0));
    // The probe's report is in every run's fingerprint, for the environment diff.
    let probe = &arms[0].1.seeds[0].fingerprint["external"]["probe"];
    assert!(
        probe["Python"].as_str().is_some_and(|v| v.starts_with('3')),
        "{probe}"
    );
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

/// What `runner::run_all` returns: the traces and how many were trained or cached.
type RunOutcome = (Vec<Trace>, crate::runner::RunStats);

/// Two external arms whose command prints a two-step trace on stdout: loss `seed` then `1` (arm
/// a) or `2` (arm b), after a `{"seed": N}` metadata line when `record_seed`. Runs it twice
/// through one cache and returns both results with their stats.
fn run_twice_through_one_cache(record_seed: bool) -> (RunOutcome, RunOutcome) {
    let dir = tempfile::tempdir().unwrap();
    let seed_line = if record_seed {
        r#"echo "{\"seed\": $0}"; "#
    } else {
        ""
    };
    let arm = |name: &str, last: u32| {
        let command = format!(
            r#"sh -c '{seed_line}echo "{{\"step\": 1, \"loss\": $0}}"; echo "{{\"step\": 2, \"loss\": {last}}}"' {{seed}}"#
        );
        let command = toml::Value::String(command);
        format!("[[arm]]\nname = \"{name}\"\ncommand = {command}\ntrace = \"stdout\"\n")
    };
    let path = dir.path().join("e.toml");
    let text = format!(
        "[experiment]\nname = \"cached\"\nseeds = 2\n{}{}",
        arm("a", 1),
        arm("b", 2)
    );
    std::fs::write(&path, text).unwrap();
    let e = Experiment::load(&path).unwrap();
    let reqs = e.runs(None).unwrap();
    let opts = RunnerOptions {
        jobs: 2,
        cache: Some(dir.path().join("cache")),
        progress: false,
    };
    let first = crate::runner::run_all(&e.name, &reqs, &opts).unwrap();
    let second = crate::runner::run_all(&e.name, &reqs, &opts).unwrap();
    (first, second)
}

#[test]
fn external_runs_are_cached_by_command_and_seed() {
    let ((first, s1), (second, s2)) = run_twice_through_one_cache(false);
    assert_eq!((s1.trained, s1.cached, s2.trained, s2.cached), (4, 0, 0, 4));
    assert_eq!(first, second);
    // Each run got its own seed and arm: four distinct (first, last) losses.
    let ends: Vec<(f64, f64)> = first
        .iter()
        .map(|t| (t.lm_loss().unwrap()[0], t.lm_loss().unwrap()[1]))
        .collect();
    assert_eq!(ends, [(1.0, 1.0), (2.0, 1.0), (1.0, 2.0), (2.0, 2.0)]);
}

/// A script that records its own seed (the Python logger's metadata line does) is read with that
/// seed as `seeds.init`; the cache must still serve it, not retrain every run every time.
#[test]
fn a_trace_that_records_its_seed_is_still_served_from_the_cache() {
    let ((first, s1), (second, s2)) = run_twice_through_one_cache(true);
    assert_eq!(first[1].seeds.get("init"), Some(&2), "{:?}", first[1].seeds);
    assert_eq!((s1.trained, s2.trained, s2.cached), (4, 0, 4));
    assert_eq!(first, second);
}

// Issue 21 item 6: a command that exits 0 but leaves a child holding stdout made every run wait
// the full `timeout_s`, and the child outlived lossdiff.
#[test]
fn a_child_left_holding_stdout_neither_delays_the_run_nor_outlives_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = spec(
        r#"sh -c 'sleep 60 & echo $! > child.pid; echo "{\"step\": 1, \"loss\": 2}"; echo "{\"step\": 2, \"loss\": 1}"'"#,
        TraceSource::Stdout,
        dir.path(),
        60.0,
    );
    let start = Instant::now();
    let t = run_ctx(&s, &ctx(&json!({}))).unwrap();
    assert_eq!(t.lm_loss().unwrap(), [2.0, 1.0]);
    // Far under the 60 s limit the old code waited out (PIPE_GRACE is 2 s at most).
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );
    let pid = std::fs::read_to_string(dir.path().join("child.pid")).unwrap();
    assert!(
        !survives(pid.trim()),
        "the left-behind child outlived its run"
    );
}

/// Returns whether process `pid` is alive (not gone, not a zombie) a few seconds from now.
fn survives(pid: &str) -> bool {
    let stat = PathBuf::from(format!("/proc/{pid}/stat"));
    let alive = || std::fs::read_to_string(&stat).is_ok_and(|s| !s.contains(") Z "));
    // A killed orphan is reaped by init shortly after; give it a moment.
    let deadline = Instant::now() + Duration::from_secs(3);
    while alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    alive()
}

// Issue 21 item 3: an external arm writing 1 GB to stderr cost 1.8 GB of memory.
#[test]
fn a_flood_on_stderr_is_kept_as_a_bounded_tail() {
    let dir = tempfile::tempdir().unwrap();
    let s = spec(
        "sh -c 'yes flood | head -c 20000000 >&2; echo last words >&2; exit 4'",
        TraceSource::Stdout,
        dir.path(),
        60.0,
    );
    let err = run_ctx(&s, &ctx(&json!({}))).unwrap_err();
    let Error::CommandFailed { reason, tail, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(*reason, ExitReason::Code(4));
    assert!(tail.ends_with("last words"), "{tail}");
    let total = 20_000_000 + "last words\n".len();
    assert!(
        tail.contains(&format!("({total} bytes in all)")),
        "{}",
        &tail[..200.min(tail.len())]
    );
}

#[test]
fn a_tail_capture_holds_at_most_twice_its_tail_whatever_passes_through() {
    let mut c = Captured::default();
    let chunk = vec![b'x'; 60_000];
    for _ in 0..1000 {
        c.push(&chunk, Keep::Tail);
        assert!(c.bytes.len() <= 2 * TAIL_BYTES);
    }
    assert_eq!(c.bytes.len() as u64 + c.dropped, 60_000_000);
    assert_eq!(c.tail().len(), TAIL_BYTES);
    let mut all = Captured::default();
    all.push(&chunk, Keep::All(100_000));
    all.push(&chunk, Keep::All(100_000));
    assert_eq!(
        (all.bytes.len(), all.dropped, all.over_limit),
        (100_000, 20_000, true)
    );
}

#[test]
fn globs_match_components_and_any_depth() {
    let dir = tempfile::tempdir().unwrap();
    for f in [
        "a.py",
        "b.py",
        "c.txt",
        "conf/x.yaml",
        "conf/deep/y.yaml",
        ".hidden.py",
    ] {
        let p = dir.path().join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, f).unwrap();
    }
    let names = |pat: &str| -> Vec<String> {
        inputs::glob(dir.path(), pat)
            .iter()
            .map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string())
            .collect()
    };
    assert_eq!(names("*.py"), ["a.py", "b.py"]);
    assert_eq!(names("?.txt"), ["c.txt"]);
    assert_eq!(names("conf/**/*.yaml"), ["conf/deep/y.yaml", "conf/x.yaml"]);
    assert_eq!(names("**/y.yaml"), ["conf/deep/y.yaml"]);
    assert_eq!(names("a.py"), ["a.py"]);
    assert!(names("*.rs").is_empty());
}

/// A two-arm experiment over a copy of `scripts/toy_train.py` in `dir`, with `extra` keys on
/// both arms; returns the spec path.
fn toy_experiment(dir: &Path, extra: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(root.join("scripts/toy_train.py"), dir.join("toy.py")).unwrap();
    let path = dir.join("toy.toml");
    let arm = |name: &str, flags: &str| {
        format!(
            "[[arm]]\nname = \"{name}\"\ncommand = \"python3 toy.py --seed {{seed}} --steps 40{flags} --out {{out}}\"\n{extra}\n"
        )
    };
    std::fs::write(
        &path,
        format!(
            "[experiment]\nname = \"toy\"\nseeds = 2\n{}{}",
            arm("a", ""),
            // The default warmup spelled out: another command, the same numbers.
            arm("b", " --warmup 10")
        ),
    )
    .unwrap();
    path
}

fn gate_options(dir: &Path, update: UpdateMode, ci: bool) -> GateOptions {
    GateOptions {
        golden_root: dir.join("golden"),
        runner: RunnerOptions {
            jobs: 2,
            cache: Some(dir.join("cache")),
            progress: false,
        },
        update,
        ci,
        cells: None,
        shard: None,
        inject: None,
        kernels: None,
        bless_hint: Default::default(),
    }
}

// Issue 16: two external arms were blessed, the script's lr changed, and `lossdiff run` printed
// PASS "bitwise identical to the golden", 0 runs trained, 4 from cache.
#[test]
fn a_changed_script_after_blessing_retrains_and_fails_never_a_cached_pass() {
    let dir = tempfile::tempdir().unwrap();
    let spec = toy_experiment(dir.path(), "");
    let (blessed, _) =
        run_experiment(&spec, &gate_options(dir.path(), UpdateMode::Always, false)).unwrap();
    assert_eq!(blessed.trained, 4);
    let ci = gate_options(dir.path(), UpdateMode::No, true);
    let (same, _) = run_experiment(&spec, &ci).unwrap();
    assert_eq!((same.trained, same.cached), (0, 4));
    assert!(same.passed, "{:?}", same.failures());
    // What it could not hash is said whenever the cache serves these runs.
    assert!(
        same.cache_unhashed
            .contains(&"arm `a`: installed packages (no `probe`)".to_string()),
        "{:?}",
        same.cache_unhashed
    );

    // The script's loss floor moves by 10 %: the same command now computes something else.
    let script = dir.path().join("toy.py");
    let text = std::fs::read_to_string(&script).unwrap();
    std::fs::write(
        &script,
        text.replace(
            "floor, start, progress = 2.0,",
            "floor, start, progress = 2.2,",
        ),
    )
    .unwrap();
    let (edited, _) = run_experiment(&spec, &ci).unwrap();
    assert_eq!((edited.trained, edited.cached), (4, 0), "retrained");
    assert!(!edited.passed);
    assert!(edited
        .goldens
        .iter()
        .all(|g| g.outcome == crate::golden::GoldenOutcome::Failed));
}

#[test]
fn a_changed_probe_report_or_declared_input_misses_the_cache_and_is_fingerprinted() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("versions.txt"),
        "torch 2.4.0\npython 3.12.1\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("conf")).unwrap();
    std::fs::write(dir.path().join("conf/model.yaml"), "width: 64\n").unwrap();
    let spec = toy_experiment(
        dir.path(),
        "probe = \"cat versions.txt\"\ninputs = [\"conf/*.yaml\"]",
    );
    let opts = gate_options(dir.path(), UpdateMode::No, true);
    let (first, by_cell) = run_experiment(&spec, &opts).unwrap();
    assert_eq!(first.trained, 4);
    let fp = &by_cell[0].1[0].1.seeds[0].fingerprint["external"];
    assert_eq!(fp["probe"]["torch"], "2.4.0");
    assert!(fp["program"].as_str().unwrap().contains("python"), "{fp}");
    let (again, _) = run_experiment(&spec, &opts).unwrap();
    assert_eq!(again.cached, 4);
    assert!(
        !again
            .cache_unhashed
            .iter()
            .any(|n| n.contains("probe") || n.contains("inputs")),
        "{:?}",
        again.cache_unhashed
    );

    // `pip install -U torch`, as the probe reports it.
    std::fs::write(
        dir.path().join("versions.txt"),
        "torch 2.5.0\npython 3.12.1\n",
    )
    .unwrap();
    let (upgraded, by_cell) = run_experiment(&spec, &opts).unwrap();
    assert_eq!(upgraded.trained, 4);
    let fp = &by_cell[0].1[0].1.seeds[0].fingerprint["external"];
    assert_eq!(fp["probe"]["torch"], "2.5.0");

    // A config file the script reads but the command does not name, declared in `inputs`.
    std::fs::write(dir.path().join("conf/model.yaml"), "width: 128\n").unwrap();
    let (reconfigured, _) = run_experiment(&spec, &opts).unwrap();
    assert_eq!(reconfigured.trained, 4);
}

#[test]
fn an_inputs_pattern_matching_nothing_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let spec = toy_experiment(dir.path(), "inputs = [\"conf/*.yaml\"]");
    let err = run_experiment(&spec, &gate_options(dir.path(), UpdateMode::No, true)).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("`inputs`") && msg.contains("\"conf/*.yaml\", which matches none"),
        "{msg}"
    );
}

#[test]
fn a_failing_probe_fails_the_run_loudly() {
    let dir = tempfile::tempdir().unwrap();
    let spec = toy_experiment(dir.path(), "probe = \"sh -c 'echo no torch >&2; exit 1'\"");
    let err = run_experiment(&spec, &gate_options(dir.path(), UpdateMode::No, true)).unwrap_err();
    assert!(
        matches!(&err, Error::CommandFailed { run, tail, .. } if run.contains("probe") && tail.contains("no torch")),
        "{err}"
    );
}
