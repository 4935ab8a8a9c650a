//! A reduced calibration that fits in CI (100 steps, 2 seeds): lossdiff must stay quiet on null
//! pairs and catch the strongest faults of the catalog every time. The full table in the README
//! comes from `lossdiff calibrate` (200 steps, 4 seeds).

use lossdiff::calibrate::{calibrate, CalibrationOptions};
use lossdiff::Fault;

/// Most false positives allowed among `n` null pairs at alpha = 0.05: the smallest `k` with
/// `P(X > k) < 2.5 %` for `X ~ Binomial(n, 0.05)` — a nominal-alpha procedure fails this rarely.
fn allowed_false_positives(n: usize) -> usize {
    let p: f64 = 0.05;
    let pmf = |k: usize| {
        let binom: f64 = (0..k).map(|i| (n - i) as f64 / (i + 1) as f64).product();
        binom * p.powi(k as i32) * (1.0 - p).powi((n - k) as i32)
    };
    let mut cdf = 0.0;
    (0..=n)
        .find(|&k| {
            cdf += pmf(k);
            1.0 - cdf < 0.025
        })
        .unwrap_or(n)
}

#[test]
fn binomial_allowance_matches_hand_values() {
    // Binomial(12, 0.05): P(X > 2) = 0.0196 < 0.025, P(X > 1) = 0.118.
    assert_eq!(allowed_false_positives(12), 2);
}

#[test]
fn reduced_calibration_is_quiet_on_nulls_and_catches_strong_faults() {
    let opts = CalibrationOptions::reduced();
    let c = calibrate(&opts).unwrap();
    eprintln!("{}", lossdiff::calibrate::to_markdown(&c));
    for row in &c.nulls {
        assert!(
            row.false_positives <= allowed_false_positives(row.pairs),
            "{}: {} false positives in {} null pairs",
            row.kind,
            row.false_positives,
            row.pairs
        );
        assert!(
            row.beyond_rounding <= allowed_false_positives(row.pairs),
            "{}: {} beyond rounding in {} null pairs",
            row.kind,
            row.beyond_rounding,
            row.pairs
        );
    }
    for strong in [
        Fault::LrDecayToZero,
        Fault::LrZeroAfterDecay,
        Fault::DropoutLeak,
    ] {
        let row = c.faults.iter().find(|r| r.fault == strong).unwrap();
        assert_eq!(
            row.detected,
            row.replicates,
            "{} detected {}/{}",
            strong.name(),
            row.detected,
            row.replicates
        );
    }
}
