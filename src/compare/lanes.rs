//! The exact (bitwise) and tolerance (Megatron-LM) lanes.

use super::align::Aligned;
use serde::{Deserialize, Serialize};

/// Lane 1: bitwise comparison of every A/B pair on every common step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExactLane {
    /// Number of A/B pairs compared.
    pub pairs: usize,
    /// Every pair bitwise equal on every common step.
    pub identical: bool,
    /// The first step at which any pair differs in its bits.
    pub first_differing_step: Option<u64>,
    /// Steps at which at least one pair differs.
    pub differing_steps: usize,
    /// Largest `|b − a|` over finite pairs of values.
    pub max_abs_diff: f64,
    /// Largest `|b − a| / |a|` over finite pairs with `a ≠ 0`.
    pub max_rel_diff: f64,
}

/// Lane 2: Megatron-LM's approximate test, applied to every pair; the worst pair is reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToleranceLane {
    /// Relative tolerance.
    pub rtol: f64,
    /// Absolute tolerance.
    pub atol: f64,
    /// Failing steps allowed: `min(max(n/100, 1), 50)`.
    pub allowed_failures: usize,
    /// Failing steps of the worst pair (a non-finite value on one side fails).
    pub failing_steps: usize,
    /// First failing step of the worst pair.
    pub first_failing_step: Option<u64>,
    /// Whether every pair passes.
    pub pass: bool,
}

/// Returns Megatron-LM's allowance of failing steps for `n` compared steps.
///
/// # Formula
/// ```text
/// allowed = min(max(n // 100, 1), 50)
/// ```
///
/// Reference: Megatron-LM `tests/functional_tests/python_test_utils/common.py`, `pipeline()`
/// (`num_failing_steps_allowed`, with `np.isclose(actual, golden, rtol, atol)` per step).
pub fn megatron_allowed_failures(n: usize) -> usize {
    (n / 100).clamp(1, 50)
}

/// Computes the exact lane.
pub(crate) fn exact_lane(d: &Aligned) -> ExactLane {
    let mut lane = ExactLane {
        pairs: d.pairs.len(),
        identical: true,
        first_differing_step: None,
        differing_steps: 0,
        max_abs_diff: 0.0,
        max_rel_diff: 0.0,
    };
    for (s, &step) in d.steps.iter().enumerate() {
        let mut differs = false;
        for &(i, j) in &d.pairs {
            let (x, y) = (d.a[i][s], d.b[j][s]);
            differs |= x.to_bits() != y.to_bits();
            if x.is_finite() && y.is_finite() {
                let diff = (y - x).abs();
                lane.max_abs_diff = lane.max_abs_diff.max(diff);
                if x != 0.0 {
                    lane.max_rel_diff = lane.max_rel_diff.max(diff / x.abs());
                }
            }
        }
        if differs {
            lane.identical = false;
            lane.differing_steps += 1;
            lane.first_differing_step.get_or_insert(step);
        }
    }
    lane
}

/// Computes the tolerance lane: a step passes when `|b − a| ≤ atol + rtol·|a|` (A is the reference,
/// as `numpy.isclose(b, a)`); two non-finite values of the same kind (NaN/NaN, inf/inf) pass, as
/// in Megatron where both become `inf`; a non-finite value against a finite one fails.
pub(crate) fn tolerance_lane(d: &Aligned, rtol: f64, atol: f64) -> ToleranceLane {
    let allowed_failures = megatron_allowed_failures(d.steps.len());
    let mut worst = (0, None);
    for &(i, j) in &d.pairs {
        let mut failing = 0;
        let mut first = None;
        for (s, &step) in d.steps.iter().enumerate() {
            let (x, y) = (d.a[i][s], d.b[j][s]);
            let same_non_finite = (x.is_nan() && y.is_nan()) || (x.is_infinite() && x == y);
            let ok = same_non_finite || (y - x).abs() <= atol + rtol * x.abs();
            if !ok {
                failing += 1;
                first.get_or_insert(step);
            }
        }
        if failing > worst.0 {
            worst = (failing, first);
        }
    }
    ToleranceLane {
        rtol,
        atol,
        allowed_failures,
        failing_steps: worst.0,
        first_failing_step: worst.1,
        pass: worst.0 <= allowed_failures,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::align::Pairing;
    use crate::compare::Alignment;
    use approx::assert_relative_eq;

    fn aligned(a: Vec<f64>, b: Vec<f64>) -> Aligned {
        let n = a.len();
        Aligned {
            steps: (1..=n as u64).collect(),
            a: vec![a],
            b: vec![b],
            p: vec![],
            p_ref: vec![],
            pairs: vec![(0, 0)],
            pairing: Pairing::AssumedSameSeed,
            usable: n,
            alignment: Alignment {
                common: n,
                only_a: vec![],
                only_b: vec![],
                missing_in_perturbation: 0,
                usable: n,
            },
            notes: vec![],
            stopped: None,
        }
    }

    #[test]
    fn allowed_failures_follow_megatron() {
        // python: [min(max(n // 100, 1), 50) for n in (50, 100, 250, 6000)] -> [1, 1, 2, 50]
        let got: Vec<usize> = [50, 100, 250, 6000]
            .iter()
            .map(|&n| megatron_allowed_failures(n))
            .collect();
        assert_eq!(got, vec![1, 1, 2, 50]);
    }

    #[test]
    fn tolerance_lane_counts_failures_like_np_isclose() {
        // 250 steps at 2.0; b is 6 % off at 2 steps (fail), 4 % off elsewhere (pass): 2 ≤ 2 passes.
        let a = vec![2.0; 250];
        let mut b = vec![2.08; 250];
        b[10] = 2.12;
        b[20] = 1.88;
        let lane = tolerance_lane(&aligned(a.clone(), b.clone()), 0.05, 0.0);
        assert_eq!((lane.failing_steps, lane.allowed_failures), (2, 2));
        assert_eq!(lane.first_failing_step, Some(11));
        assert!(lane.pass);
        b[30] = f64::NAN;
        let lane = tolerance_lane(&aligned(a, b), 0.05, 0.0);
        assert_eq!(lane.failing_steps, 3);
        assert!(!lane.pass);
    }

    #[test]
    fn exact_lane_reports_first_difference_and_max_diffs() {
        let a = vec![1.0, 2.0, 4.0, f64::NAN];
        let b = vec![1.0, 2.5, 3.0, f64::NAN];
        let lane = exact_lane(&aligned(a, b));
        assert!(!lane.identical);
        assert_eq!(
            (lane.first_differing_step, lane.differing_steps),
            (Some(2), 2)
        );
        assert_relative_eq!(lane.max_abs_diff, 1.0, epsilon = 1e-15);
        assert_relative_eq!(lane.max_rel_diff, 0.25, epsilon = 1e-15);
    }
}
