use super::render::draft_entries;
use super::*;
use crate::golden::UpdateMode;

/// A two-arm experiment on the gate model, short enough to train in about a second.
const SPEC: &str = r#"
[experiment]
name = "tiny_gate"
description = "for golden-check reporting"
seeds = 2
perturbations = 2
declared = ["model.attention"]

[base]
preset = "gate"

[base.train]
train_iters = 24

[[arm]]
name = "naive"
attention = "naive"

[[arm]]
name = "flash"
attention = "flash"
"#;

fn options(dir: &Path, update: UpdateMode) -> GateOptions {
    GateOptions {
        golden_root: dir.join("golden"),
        runner: RunnerOptions {
            jobs: 1,
            cache: None,
            progress: false,
        },
        update,
        ci: false,
        cells: None,
        shard: None,
        inject: None,
        kernels: None,
        bless_hint: Default::default(),
    }
}

// See: issue 17 — `LOSSDIFF_UPDATE=always lossdiff run <exp> --kernels composed` drew the golden
// figure from the golden re-read after the update had replaced it with the fresh runs, so the
// figure showed B − A ≡ 0 beside a comparison saying "first differing step 1".
#[test]
fn golden_figure_shows_the_golden_that_was_compared_even_after_an_update_rewrote_it() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("tiny_gate.toml");
    std::fs::write(&spec, SPEC).unwrap();
    // Bless goldens on the default (fused) kernels.
    let (blessed, _) = run_experiment(&spec, &options(dir.path(), UpdateMode::Always)).unwrap();
    assert_eq!(blessed.goldens[0].outcome, GoldenOutcome::Missing);

    // Re-run on candle's composed kernels, still updating in place.
    let mut opts = options(dir.path(), UpdateMode::Always);
    opts.kernels = Some(Kernels::Composed);
    let (report, cells) = run_experiment(&spec, &opts).unwrap();
    let check = &report.goldens[0];
    let c = check
        .comparison
        .as_ref()
        .expect("compared against the golden");
    assert!(
        c.exact.first_differing_step.is_some(),
        "composed kernels round differently"
    );
    assert!(check.written.is_some(), "the update rewrote the golden");

    let drafts = draft_entries(&report, &cells);
    let golden = drafts
        .iter()
        .find(|d| d.key.2 == "golden")
        .expect("a golden entry");
    let fig = golden
        .figure
        .as_ref()
        .expect("a non-identical check is drawn");
    assert!(
        fig.diff.values.iter().any(|d| *d != 0.0),
        "the figure must show the difference the comparison found, not B − A ≡ 0"
    );
    assert_eq!(fig.arm_a.label, "golden");
    assert_eq!(fig.passed, check.passed);
}
