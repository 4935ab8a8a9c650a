//! `expect = "changed"`: an environment pair must show that its change took effect (some bit
//! differs) without diverging; arms that come out bitwise identical fail the gate.

use lossdiff::gate::{run_experiment, GateOptions};
use lossdiff::golden::UpdateMode;
use lossdiff::RunnerOptions;
use std::path::Path;

fn spec(b_lr: &str) -> String {
    format!(
        r#"
[experiment]
name = "changed_demo"
seeds = 2
perturbations = 2
declared = ["train.lr"]
expect = "changed"
[base]
preset = "gate"
[base.train]
train_iters = 10
lr_warmup_iters = 2
[[arm]]
name = "a"
lr = 0.003
[[arm]]
name = "b"
lr = {b_lr}
"#
    )
}

fn options(dir: &Path) -> GateOptions {
    GateOptions {
        golden_root: dir.join("golden"),
        runner: RunnerOptions {
            jobs: 2,
            cache: Some(dir.join("cache")),
            progress: false,
        },
        update: UpdateMode::Always,
        ci: false,
        cells: None,
        shard: None,
        inject: None,
        kernels: None,
        bless_hint: Default::default(),
    }
}

fn gate(b_lr: &str) -> lossdiff::gate::ExperimentReport {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("changed_demo.toml");
    std::fs::write(&path, spec(b_lr)).unwrap();
    run_experiment(&path, &options(dir.path())).unwrap().0
}

#[test]
fn a_change_that_leaves_every_bit_alone_fails_an_expect_changed_gate() {
    let same = gate("0.003");
    assert!(
        !same.passed,
        "identical arms passed an expect = \"changed\" gate"
    );
    assert!(
        same.comparisons[0].problems[0].contains("bitwise identical"),
        "{:?}",
        same.comparisons[0].problems
    );
}

#[test]
fn a_change_within_noise_passes_an_expect_changed_gate() {
    // The lr's last bits: every step differs, far inside the margin.
    let nudged = gate("0.0030000001");
    assert!(nudged.passed, "{:?}", nudged.failures());
    assert!(!nudged.comparisons[0].comparison.exact.identical);
}
