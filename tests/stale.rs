//! A golden is *stale* only when its experiment's spec changed since it was blessed — reported as
//! stale, never as a divergence — and nothing is written on CI.

use lossdiff::gate::{run_experiment, GateOptions};
use lossdiff::golden::{GoldenOutcome, UpdateMode};
use lossdiff::RunnerOptions;
use std::path::Path;

fn spec(lr: &str) -> String {
    format!(
        r#"
[experiment]
name = "stale_demo"
seeds = 2
perturbations = 2
[base]
preset = "gate"
[base.train]
train_iters = 12
lr_warmup_iters = 2
lr = {lr}
[[arm]]
name = "naive"
attention = "naive"
[[arm]]
name = "flash"
attention = "flash"
"#
    )
}

fn options(dir: &Path, update: UpdateMode, ci: bool) -> GateOptions {
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

#[test]
fn a_changed_spec_makes_goldens_stale_not_diverged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stale_demo.toml");
    std::fs::write(&path, spec("0.003")).unwrap();
    let (blessed, _) =
        run_experiment(&path, &options(dir.path(), UpdateMode::Always, false)).unwrap();
    assert!(blessed.passed && blessed.goldens.iter().all(|g| g.written.is_some()));

    // Same spec on CI: identical to the goldens, nothing written.
    let (again, _) = run_experiment(&path, &options(dir.path(), UpdateMode::Auto, true)).unwrap();
    assert!(again.passed);
    assert!(again
        .goldens
        .iter()
        .all(|g| g.outcome == GoldenOutcome::Identical && g.written.is_none()));

    // The spec changes: stale (and the message says what to do), never "diverged"; CI writes nothing.
    std::fs::write(&path, spec("0.002")).unwrap();
    let (changed, _) = run_experiment(&path, &options(dir.path(), UpdateMode::Auto, true)).unwrap();
    assert!(!changed.passed);
    for g in &changed.goldens {
        assert_eq!(g.outcome, GoldenOutcome::Stale);
        assert!(
            g.message.contains("stale") && !g.message.contains("diverged"),
            "{}",
            g.message
        );
        assert!(g.written.is_none(), "CI must never write goldens");
    }
    // Locally, the default mode leaves pending goldens to review.
    let (local, _) = run_experiment(&path, &options(dir.path(), UpdateMode::Auto, false)).unwrap();
    assert!(local.goldens.iter().all(|g| g
        .written
        .as_ref()
        .is_some_and(|p| p.to_string_lossy().ends_with(".new"))));
}
