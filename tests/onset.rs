//! Regression: onsets on real traces. A scheduler bug that zeroes the lr after a short decay
//! leaves the two arms bitwise identical until it acts; the reported onset once landed at step 5
//! for a bug that acts at step 102, because noise in the perturbation yardstick opened a CUSUM
//! excursion while the arms were still identical.

mod common;

use lossdiff::compare::Verdict;
use lossdiff::golden::Golden;
use std::path::Path;

#[test]
fn onset_is_never_before_the_first_differing_bit_on_real_traces() {
    let dir = Path::new("golden/lr_decay_sweep/lr_decay_iters=100");
    let clean = Golden::load(&dir.join("clean.golden.json")).unwrap();
    let buggy = Golden::load(&dir.join("buggy_scheduler.golden.json")).unwrap();
    let c = common::compare_goldens(&clean, &buggy, "train.inject");
    // lr_decay_iters = 100: 0-based optimiser step 101 is the first trained at lr 0, so the loss
    // of 0-based step 102 — logged as step 103 — is the first that can differ.
    let first = c.exact.first_differing_step.expect("the arms differ");
    assert_eq!(first, 103);
    match c.verdict {
        Verdict::Diverged { onset_step, .. } => {
            assert!(
                onset_step >= first,
                "onset {onset_step} before the first differing step {first}"
            )
        }
        v => panic!(
            "expected a divergence, got {v:?}: {:#?}",
            c.statistical.map(|s| (s.windows, s.late))
        ),
    }
}
