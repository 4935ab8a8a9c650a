//! The gates `cargo test` runs against committed goldens: if a change to lossdiff, candle, the
//! compiler or the CPU changes the reference model's numerics beyond noise, these fail.
//!
//! Each runs a shipped experiment through the same library call `lossdiff run` uses. On CI
//! (`CI` set) nothing is written to `golden/`; locally a failing gate leaves a pending
//! `*.golden.json.new` to review (`lossdiff golden review`).

use lossdiff::gate::{check, GateOptions};
use lossdiff::golden::GoldenOutcome;
use lossdiff::Fault;
use lossdiff::Verdict;
use std::path::Path;

fn options() -> GateOptions {
    GateOptions::from_env().expect("LOSSDIFF_UPDATE is valid")
}

#[test]
fn flash_vs_noflash_is_equivalent_and_matches_goldens() {
    lossdiff::assert_gate!("experiments/flash_vs_noflash.toml");
    // Beyond passing: flash must be *equivalent* to naive, not identical (it really is a
    // different kernel) and not merely inconclusive.
    let out = check(Path::new("experiments/flash_vs_noflash.toml"), &options()).unwrap();
    let c = &out.report.comparisons[0].comparison;
    assert_eq!(c.verdict, Verdict::Equivalent, "{}", out.failure_message());
    assert!(!c.exact.identical);
}

#[test]
fn environment_pair_f32_vs_bf16_is_seen_and_matches_goldens() {
    lossdiff::assert_gate!("experiments/env_f32_vs_bf16.toml");
    // Seen: bf16 compute changes the loss from the first step on; sized: the late-window effect
    // is measured against the margin (here far inside it).
    let out = check(Path::new("experiments/env_f32_vs_bf16.toml"), &options()).unwrap();
    let c = &out.report.comparisons[0].comparison;
    assert!(!c.exact.identical, "bf16 compute left every bit unchanged");
    assert_eq!(
        c.exact.first_differing_step,
        Some(1),
        "{}",
        out.failure_message()
    );
}

#[test]
fn lr_decay_sweep_short_decay_cell_diverges_after_the_decay_ends() {
    let mut opts = options();
    opts.cells = Some(vec!["lr_decay_iters=20".into()]);
    lossdiff::assert_gate!("experiments/lr_decay_sweep.toml", opts.clone());
    let out = check(Path::new("experiments/lr_decay_sweep.toml"), &opts).unwrap();
    match out.report.comparisons[0].comparison.verdict {
        // The planted bug zeroes the lr after step 20 (1-based step 22 is the first to train
        // at lr 0): the onset must be after the decay ends, not before.
        Verdict::Diverged { onset_step, .. } => assert!(onset_step > 20, "onset {onset_step}"),
        ref v => panic!("expected a divergence, got {v:?}"),
    }
}

/// The gate must fail — with a message naming verdict, onset and figure — when numerics change.
/// The change is a fault injected behind a test-only switch, never an edited golden.
#[test]
fn an_injected_fault_fails_the_gate_with_a_clear_message() {
    let mut opts = options();
    opts.inject = Some(Fault::WarmupOffByOne);
    let out = check(Path::new("experiments/flash_vs_noflash.toml"), &opts).unwrap();
    assert!(
        !out.report.passed,
        "a warmup off-by-one bug passed the gate"
    );
    let failed: Vec<_> = out.report.goldens.iter().filter(|g| !g.passed).collect();
    assert!(!failed.is_empty());
    assert!(failed
        .iter()
        .all(|g| g.outcome == GoldenOutcome::Failed && g.written.is_none()));
    let msg = out.failure_message();
    for needle in [
        "lossdiff gate failed",
        "vs golden",
        "diverged from step",
        "report:",
    ] {
        assert!(msg.contains(needle), "missing {needle:?} in:\n{msg}");
    }
    // And the assertion macro itself panics with that message.
    let panic = std::panic::catch_unwind(|| {
        lossdiff::assert_gate!("experiments/flash_vs_noflash.toml", opts.clone())
    })
    .expect_err("the gate must fail");
    let text = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(text.contains("diverged from step"), "{text}");
}
