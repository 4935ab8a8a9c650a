//! Simulated operating characteristics of the decision rule (false-positive rates on null
//! pairs, detection power on small drifts) and a seeded never-panic test over random traces.

use super::tests::{add, ar1, cfg, curve, noise, perturbation_setup, rounding, run, trace};
use super::*;
use crate::rng::{hash_words, normal};

/// Fraction of null comparisons (single curve, AR(1) noise on both arms) called `Diverged`.
fn single_curve_fp_rate(phi: f64, pairs: u64, n: usize) -> f64 {
    let hits = (0..pairs)
        .filter(|&r| {
            let a = trace(
                "a",
                1,
                add(&curve(n), &ar1(hash_words(&[r, 1]), n, phi, 1e-4)),
                cfg("naive", 0.0),
            );
            let b = trace(
                "b",
                1,
                add(&curve(n), &ar1(hash_words(&[r, 2]), n, phi, 1e-4)),
                cfg("naive", 0.0),
            );
            matches!(run(&[a], &[b], &[], &[]).verdict, Verdict::Diverged { .. })
        })
        .count();
    hits as f64 / pairs as f64
}

#[test]
fn simulated_false_positive_rate_single_curve() {
    // 200 null pairs of AR(1) (φ = 0.5) noise series, 200 steps each. Binomial sd of the rate at
    // p = 0.05 is 0.0154; allow α + 2.6 sd.
    let rate = single_curve_fp_rate(0.5, 200, 200);
    eprintln!("single-curve FP rate (AR(1) φ=0.5, 200 pairs): {rate}");
    assert!(rate <= 0.05 + 0.04, "FP rate {rate}");
    // White noise too.
    let rate0 = single_curve_fp_rate(0.0, 200, 200);
    eprintln!("single-curve FP rate (white noise, 200 pairs): {rate0}");
    assert!(rate0 <= 0.05 + 0.04, "FP rate {rate0}");
}

#[test]
fn simulated_false_positive_rate_perturbation_mode() {
    // 100 null cells: B is one more rounding-level random walk, exchangeable with the 6
    // perturbation traces. The HAC drift test alone over-rejects on random walks; the
    // intersection with the yardstick test keeps the rate at or below α.
    let n = 150;
    let (a, _) = perturbation_setup(n, 0);
    let hits = (0..100u64)
        .filter(|&r| {
            let p: Vec<Trace> = (0..6u64)
                .map(|j| {
                    trace(
                        "p",
                        1,
                        add(&curve(n), &rounding(hash_words(&[r, j]), n)),
                        cfg("naive", 0.0),
                    )
                })
                .collect();
            let b = trace(
                "b",
                1,
                add(&curve(n), &rounding(hash_words(&[r, 99]), n)),
                cfg("naive", 0.0),
            );
            matches!(
                run(std::slice::from_ref(&a), &[b], &p, &[]).verdict,
                Verdict::Diverged { .. }
            )
        })
        .count();
    eprintln!(
        "perturbation-mode FP rate (100 null cells): {}",
        hits as f64 / 100.0
    );
    // Binomial sd at p = 0.05, n = 100 is 0.022: allow α + 2.7 sd.
    assert!(hits <= 11, "{hits} of 100 null cells diverged");
}

#[test]
fn random_traces_with_non_finite_values_never_panic() {
    // 300 seeded random cases: ragged steps, NaN/±inf anywhere, ensembles of 1-3, an optional
    // perturbation ensemble. Every outcome must be a value or a typed error.
    let pick = |r: u64, i: u64, m: u64| crate::rng::mix64(hash_words(&[r, i])) % m;
    let (mut ok, mut non_finite) = (0, 0);
    for r in 0..300u64 {
        let mk = |arm: u64, k: u64| -> Trace {
            let n = 1 + pick(r, arm * 10 + k, 40) as usize;
            let mut l = add(&curve(n), &noise(hash_words(&[r, arm, k]), n, 1e-4));
            for (i, v) in l.iter_mut().enumerate() {
                match pick(r, 1000 + arm * 100 + k * 50 + i as u64, 60) {
                    0 => *v = f64::NAN,
                    1 => *v = f64::INFINITY,
                    2 => *v = f64::NEG_INFINITY,
                    _ => {}
                }
            }
            let mut t = trace("t", k, l, cfg("naive", 0.0));
            t.steps = (1..=n as u64).map(|s| s + pick(r, 7 + arm, 3)).collect();
            t
        };
        let arm = |id: u64, k: u64| (0..k).map(|i| mk(id, i)).collect::<Vec<_>>();
        let a = arm(1, 1 + pick(r, 1, 3));
        let b = arm(2, 1 + pick(r, 2, 3));
        let p = arm(3, pick(r, 3, 4));
        match compare(&a, &b, &p, &[], &CompareSettings::default()) {
            Ok(c) => {
                let text = serde_json::to_string(&c).unwrap();
                let back: Comparison = serde_json::from_str(&text).unwrap();
                assert_eq!(back, c, "case {r}");
                ok += 1;
                if let Verdict::Diverged {
                    direction: Direction::NonFinite,
                    ..
                } = c.verdict
                {
                    non_finite += 1;
                }
            }
            Err(
                Error::ArmsShareNoStep { .. }
                | Error::SingleCommonStep { .. }
                | Error::NoFiniteCommonStep { .. }
                | Error::TooFewSteps { .. }
                | Error::ShortYardstick { .. }
                | Error::DuplicateTrace { .. }
                | Error::InvalidTrace { .. },
            ) => {}
            Err(e) => panic!("case {r}: unexpected error {e}"),
        }
    }
    eprintln!("{ok} of 300 random cases compared, {non_finite} diverged by non-finite value");
    // About half the random ensembles have a perturbation trace shorter than the arms, which is
    // now refused (`ShortYardstick`) instead of silently cutting the comparison.
    assert!(
        ok > 60 && non_finite > 20,
        "{ok} ok, {non_finite} non-finite"
    );
}

#[test]
fn simulated_power_and_false_positives_seed_mode_and_small_drift() {
    // (1) 100 null cells of 4 v 4 unpaired seeds (persistent seed offsets, AR(1) step noise).
    // (2) 50 perturbation-mode cells with a softmax-like drift (1e-6 per step from step 100,
    //     ~20x below seed noise at the end): the detection rate.
    let n = 150;
    let seeds = |r: u64, arm: u64| -> Vec<Trace> {
        (0..4u64)
            .map(|s| {
                let off = 0.005 * normal(hash_words(&[r, arm, s]), 0);
                let e = ar1(hash_words(&[r, arm, s, 1]), n, 0.5, 1e-3);
                let l = curve(n).iter().zip(e).map(|(c, e)| c + off + e).collect();
                trace("s", 1000 * arm + s, l, cfg("naive", 0.0))
            })
            .collect()
    };
    let fp = (0..100u64)
        .filter(|&r| {
            matches!(
                run(&seeds(r, 1), &seeds(r, 2), &[], &[]).verdict,
                Verdict::Diverged { .. }
            )
        })
        .count();
    eprintln!(
        "seed-mode FP rate (100 null cells, 4 v 4 seeds): {}",
        fp as f64 / 100.0
    );
    assert!(fp <= 11, "{fp} of 100 null seed cells diverged");
    let (a, p) = perturbation_setup(n, 6);
    let drift: Vec<f64> = (0..n).map(|t| 1e-6 * (t as f64 - 100.0).max(0.0)).collect();
    let hits = (0..50u64)
        .filter(|&r| {
            let l = add(&add(&curve(n), &rounding(hash_words(&[r, 5]), n)), &drift);
            let b = trace("b", 1, l, cfg("naive", 0.0));
            // 5e-5 is 50x inside the margin: it does not matter, but it is not rounding.
            let c = run(std::slice::from_ref(&a), &[b], &p, &[]);
            c.verdict == Verdict::Equivalent && c.beyond_rounding()
        })
        .count();
    eprintln!(
        "perturbation-mode beyond-rounding rate, drift to 5e-5 over 50 steps: {}",
        hits as f64 / 50.0
    );
    assert!(hits >= 45, "{hits} of 50 drifting cells detected");
}
