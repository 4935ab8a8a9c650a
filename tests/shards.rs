//! Scale-out: running a sweep as a job array (`--shard i/N`) and merging the shards must give the
//! same comparisons as one run, with Holm's correction applied across all cells again.

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
