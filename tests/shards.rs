//! Scale-out: running a sweep as a job array (`--shard i/N`) and merging the shards must give the
//! same comparisons as one run, with Holm's correction applied across all cells again.

mod common;

use common::{lossdiff_in, stderr, stdout};
use lossdiff::gate::{merge_reports, run_all_experiments, GateOptions};
use lossdiff::golden::UpdateMode;
use lossdiff::RunnerOptions;

const SPEC: &str = r#"
[experiment]
name = "shard_demo"
seeds = 2
perturbations = 2
declared = ["train.inject"]
expect_diverged = ["lr_decay_iters=6"]

[base]
preset = "gate"
[base.train]
train_iters = 16
lr_warmup_iters = 2

[[arm]]
name = "clean"
[[arm]]
name = "buggy"
inject = "lr_zero_after_decay"

[sweep]
lr_decay_iters = [6, 16, 12]
"#;

#[test]
fn shards_merge_into_the_single_run_report() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("shard_demo.toml");
    std::fs::write(&spec, SPEC).unwrap();
    let opts = GateOptions {
        golden_root: dir.path().join("golden"),
        runner: RunnerOptions {
            jobs: 2,
            cache: Some(dir.path().join("cache")),
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
    let whole = run_all_experiments(&spec, &opts).unwrap();
    let mut shards: Vec<Vec<lossdiff::gate::ExperimentReport>> = Vec::new();
    for k in 0..2 {
        let o = GateOptions {
            shard: Some((k, 2)),
            ..opts.clone()
        };
        shards.push(
            run_all_experiments(&spec, &o)
                .unwrap()
                .into_iter()
                .map(|(r, _)| r)
                .collect(),
        );
    }
    // Shard 0 takes cells 0 and 2, shard 1 cell 1.
    assert_eq!(
        shards[0][0].cells,
        ["lr_decay_iters=6", "lr_decay_iters=12"]
    );
    assert_eq!(shards[1][0].cells, ["lr_decay_iters=16"]);
    let merged = merge_reports(shards).unwrap();
    let (one, _) = &whole[0];
    let key = |c: &lossdiff::gate::ArmComparison| {
        (c.cell.clone(), c.comparison.verdict.clone(), c.passed)
    };
    let mut a: Vec<_> = one.comparisons.iter().map(key).collect();
    let mut b: Vec<_> = merged[0].comparisons.iter().map(key).collect();
    a.sort_by(|x, y| x.0.cmp(&y.0));
    b.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(a, b);
    let holm = |r: &lossdiff::gate::ExperimentReport| {
        let mut v = r.sweep_gate.as_ref().unwrap().holm.clone();
        v.sort_by(f64::total_cmp);
        v
    };
    assert_eq!(
        holm(one),
        holm(&merged[0]),
        "Holm must see all cells after the merge"
    );
}

#[test]
fn shard_syntax_is_checked() {
    assert_eq!(lossdiff::gate::parse_shard("1/4").unwrap(), (1, 4));
    for bad in ["4/4", "1", "a/2", "0/0"] {
        let err = lossdiff::gate::parse_shard(bad).unwrap_err().to_string();
        assert!(err.contains("i/N"), "{err}");
    }
}

/// A three-cell sweep whose arms are the same build: every cell passes, so any failure of a merge
/// comes from the merge.
const MATCHING_SPEC: &str = r#"
[experiment]
name = "shard_demo"
seeds = 2
perturbations = 2

[base]
preset = "gate"
[base.train]
train_iters = 16
lr_warmup_iters = 2

[[arm]]
name = "before"
[[arm]]
name = "after"

[sweep]
lr_decay_iters = [6, 16, 12]
"#;

/// Runs `lossdiff ARGS` in `dir`, blessing goldens as it goes (each task blesses its own cells).
fn run_in(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    lossdiff_in(dir, args, &[("LOSSDIFF_UPDATE", "always")])
}

fn merged_summary(dir: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("out/summary.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

// A job-array task that failed, timed out or was cancelled must show up in the merged report as
// missing cells, never as a silent partial pass; re-running only that task completes the merge.
// See: issue 18 (nightly sweeps on a real Slurm cluster)
#[test]
fn a_merge_without_a_tasks_results_reports_its_cells_missing_until_the_task_is_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(dir.join("shard_demo.toml"), MATCHING_SPEC).unwrap();
    let task = |k: &str| {
        let out = format!("out/shard-{k}");
        let o = run_in(
            dir,
            &[
                "run",
                "shard_demo.toml",
                "--shard",
                &format!("{k}/2"),
                "--out",
                &out,
            ],
        );
        assert_eq!(
            o.status.code(),
            Some(0),
            "task {k}:\n{}{}",
            stdout(&o),
            stderr(&o)
        );
    };
    task("0");

    // Task 1 never ran: its directory does not exist (as after a cancelled Slurm task), and a
    // shell glob over `out/shard-*` would not even name it.
    for dirs in [&["out/shard-0", "out/shard-1"][..], &["out/shard-0"][..]] {
        let mut args = vec!["merge"];
        args.extend(dirs);
        args.extend(["--out", "out"]);
        let o = run_in(dir, &args);
        assert_eq!(
            o.status.code(),
            Some(2),
            "merge {dirs:?} must be incomplete:\n{}{}",
            stdout(&o),
            stderr(&o)
        );
        assert!(
            stdout(&o).contains("MISSING [lr_decay_iters=16]"),
            "{}{}",
            stdout(&o),
            stderr(&o)
        );
        assert!(
            stderr(&o).contains("task(s) 1 of 2 did not finish"),
            "{}",
            stderr(&o)
        );
        let summary = merged_summary(dir);
        assert_eq!(summary["gate"]["passed"], false);
        let missing: Vec<&serde_json::Value> = summary["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["verdict"] == "not run")
            .collect();
        assert_eq!(missing.len(), 1, "{summary:#}");
        assert_eq!(missing[0]["name"], "shard_demo [lr_decay_iters=16]");
    }

    task("1");
    let o = run_in(
        dir,
        &["merge", "out/shard-0", "out/shard-1", "--out", "out"],
    );
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(!stdout(&o).contains("MISSING"), "{}", stdout(&o));
    assert_eq!(merged_summary(dir)["gate"]["passed"], true);
}

#[test]
fn cells_lists_one_task_per_cell_across_experiments() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("shard_demo.toml"), SPEC).unwrap();
    let o = lossdiff_in(dir.path(), &["cells", "shard_demo.toml"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "0\tshard_demo\tlr_decay_iters=6\n1\tshard_demo\tlr_decay_iters=16\n2\tshard_demo\tlr_decay_iters=12\n"
    );
    let o = lossdiff_in(
        dir.path(),
        &["cells", "shard_demo.toml", "--shards", "2"],
        &[],
    );
    assert!(
        stdout(&o).starts_with("0\tshard_demo\tlr_decay_iters=6\n1\t"),
        "{}",
        stdout(&o)
    );
}
