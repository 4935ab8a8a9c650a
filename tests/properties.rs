//! Properties of the comparison engine on synthetic curves (no training): which symmetries of the
//! input the verdict respects, and exactly how.
//!
//! - **Swapping A and B mirrors the result**: same verdict class, same onset, same p-values,
//!   direction and effect sign flipped — with an absolute margin and no perturbation ensemble
//!   (see [`swap`] for why those two conditions are part of the property).
//! - **Scaling every loss by a power of two changes nothing** (bit for bit, up to the scale of
//!   the differences themselves); by any other positive constant, the p-values agree to rounding
//!   and the verdict is the same unless a p-value lies within rounding of `alpha`.
//! - **Reordering the seeds within an arm changes nothing**, bit for bit.
//!
//! The cases are drawn from a fixed RNG seed so CI runs the same cases every time; set
//! `PROPTEST_CASES` to draw more locally.

use lossdiff::compare::{compare, CompareSettings, Comparison, Direction, Margin, Verdict};
use lossdiff::rng::{hash_words, normal};
use lossdiff::trace::{Origin, Series, Trace, LM_LOSS};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, RngSeed};
use std::collections::BTreeMap;

/// How the arms are built: one curve each, seed ensembles, or seeds plus a perturbation ensemble.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Single,
    Seeds,
    Perturbation,
}

/// One synthetic comparison: a decaying loss curve, per-seed noise, and an optional drift of B
/// that ramps in from `onset` (a fraction of the run).
#[derive(Debug, Clone)]
struct Scenario {
    key: u64,
    steps: usize,
    seeds: usize,
    perturbations: usize,
    noise_sd: f64,
    drift: f64,
    onset: f64,
}

fn scenario(modes: Vec<Mode>) -> impl Strategy<Value = Scenario> {
    (
        any::<u64>(),
        prop::sample::select(modes),
        40usize..120,
        2usize..5,
        2usize..5,
        prop_oneof![Just(1e-4), Just(1e-3), 1e-5f64..1e-2],
        prop_oneof![Just(0.0), -0.05f64..0.05, -1e-3f64..1e-3],
        0.1f64..0.9,
    )
        .prop_map(
            |(key, mode, steps, seeds, perturbations, noise_sd, drift, onset)| Scenario {
                key,
                steps,
                seeds: if mode == Mode::Single { 1 } else { seeds },
                perturbations: if mode == Mode::Perturbation {
                    perturbations
                } else {
                    0
                },
                noise_sd,
                drift,
                onset,
            },
        )
}

fn trace(name: String, seeds: BTreeMap<String, u64>, loss: Vec<f64>) -> Trace {
    Trace {
        schema_version: 1,
        name,
        origin: Origin {
            format: "lossdiff".into(),
            path: None,
        },
        config: serde_json::json!({"model": {"attention": "naive"}}),
        fingerprint: serde_json::json!({}),
        seeds,
        loss_floor: None,
        steps: (1..=loss.len() as u64).collect(),
        series: BTreeMap::from([(LM_LOSS.to_string(), Series::from_f64(loss))]),
    }
}

fn init(seed: u64) -> BTreeMap<String, u64> {
    BTreeMap::from([("init".to_string(), seed)])
}

/// The arms of a scenario: `(a, b, perturbations)`, seeds paired by `init`.
fn arms(s: &Scenario) -> (Vec<Trace>, Vec<Trace>, Vec<Trace>) {
    let n = s.steps;
    let base: Vec<f64> = (0..n)
        .map(|t| 2.5 + 3.0 * (-(t as f64) / 30.0).exp())
        .collect();
    let noisy = |tag: u64, seed: u64| -> Vec<f64> {
        let key = hash_words(&[s.key, tag, seed]);
        (0..n)
            .map(|t| base[t] + s.noise_sd * normal(key, t as u64))
            .collect()
    };
    let start = (s.onset * n as f64) as usize;
    let drift = |t: usize| s.drift * (t.saturating_sub(start) as f64 / n as f64);
    let a: Vec<Trace> = (0..s.seeds as u64)
        .map(|i| trace(format!("a{i}"), init(10 + i), noisy(1, i)))
        .collect();
    let b = (0..s.seeds as u64)
        .map(|i| {
            let loss = noisy(2, i)
                .into_iter()
                .enumerate()
                .map(|(t, v)| v + drift(t));
            trace(format!("b{i}"), init(10 + i), loss.collect())
        })
        .collect();
    // Perturbations of A's first seed: rounding-level random walks that grow with the run.
    let a0 = a[0].lm_loss().expect("built with a loss").to_vec();
    let p = (0..s.perturbations as u64)
        .map(|j| {
            let key = hash_words(&[s.key, 3, j]);
            let mut walk = 0.0;
            let loss = (0..n).map(|t| {
                walk += 1e-7 * normal(key, t as u64);
                a0[t] + walk
            });
            let seeds = BTreeMap::from([("init".to_string(), 10), ("perturb".to_string(), j + 1)]);
            trace(format!("p{j}"), seeds, loss.collect())
        })
        .collect();
    (a, b, p)
}

fn run(a: &[Trace], b: &[Trace], p: &[Trace], settings: &CompareSettings) -> Comparison {
    compare(a, b, p, &[], settings).expect("synthetic arms always compare")
}

fn class(v: &Verdict) -> &'static str {
    match v {
        Verdict::Identical => "identical",
        Verdict::Equivalent => "equivalent",
        Verdict::Inconclusive { .. } => "inconclusive",
        Verdict::Diverged { .. } => "diverged",
    }
}

fn config() -> Config {
    Config {
        cases: 256,
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: RngSeed::Fixed(0x1055_d1ff),
        failure_persistence: None,
        ..Config::default()
    }
}

/// Multiplies every loss of every trace by `c`.
fn scaled(traces: &[Trace], c: f64) -> Vec<Trace> {
    traces
        .iter()
        .map(|t| {
            let mut t = t.clone();
            for s in t.series.values_mut() {
                s.values.iter_mut().for_each(|v| *v *= c);
            }
            t
        })
        .collect()
}

/// Applies a permutation drawn from `key` (Fisher–Yates).
fn shuffled(traces: &[Trace], key: u64) -> Vec<Trace> {
    let mut out = traces.to_vec();
    for i in (1..out.len()).rev() {
        let j = (hash_words(&[key, i as u64]) % (i as u64 + 1)) as usize;
        out.swap(i, j);
    }
    out
}

proptest! {
    #![proptest_config(config())]

    /// Swapping A and B mirrors the result. Two conditions belong to the property, by design:
    /// the margin is absolute (a relative margin is a fraction of *A's* late-window mean, so
    /// swapping moves it), and there is no perturbation ensemble (it perturbs A, the reference:
    /// after a swap it no longer measures the reference's rounding noise).
    #[test]
    fn swap(s in scenario(vec![Mode::Single, Mode::Seeds])) {
        let settings = CompareSettings {
            margin: Margin::Absolute(3e-3),
            ..CompareSettings::default()
        };
        let (a, b, _) = arms(&s);
        let ab = run(&a, &b, &[], &settings);
        let ba = run(&b, &a, &[], &settings);
        prop_assert_eq!(class(&ab.verdict), class(&ba.verdict));
        match (&ab.verdict, &ba.verdict) {
            (
                Verdict::Diverged { onset_step: o1, direction: d1, effect_size: e1, p_value: p1 },
                Verdict::Diverged { onset_step: o2, direction: d2, effect_size: e2, p_value: p2 },
            ) => {
                prop_assert_eq!(o1, o2);
                let flipped = match d1 {
                    Direction::Higher => Direction::Lower,
                    Direction::Lower => Direction::Higher,
                    Direction::NonFinite => Direction::NonFinite,
                    Direction::Stopped => Direction::Stopped,
                };
                prop_assert_eq!(*d2, flipped);
                // The effect is relative to the reference arm's mean: only its sign mirrors.
                let (e1, e2) = (e1.unwrap_or(0.0), e2.unwrap_or(0.0));
                prop_assert!(e1 * e2 < 0.0 || (e1 == 0.0 && e2 == 0.0), "{} vs {}", e1, e2);
                prop_assert_eq!(p1, p2);
            }
            (v1, v2) => prop_assert_eq!(v1, v2),
        }
        if let (Some(l1), Some(l2)) = (&ab.statistical, &ba.statistical) {
            prop_assert_eq!(l1.late_difference, -l2.late_difference);
            prop_assert_eq!(l1.divergence_p_value, l2.divergence_p_value);
            prop_assert_eq!(l1.tost_p_value, l2.tost_p_value);
            prop_assert_eq!(&l1.onset, &l2.onset);
        }
    }

    /// Scaling every loss by a power of two is exact in floating point, so nothing may change
    /// but the scale of the differences: same verdict (effect sizes are relative), same p-values,
    /// same onset, bit for bit.
    #[test]
    fn power_of_two_scaling(
        s in scenario(vec![Mode::Single, Mode::Seeds, Mode::Perturbation]),
        k in -6i32..6,
    ) {
        let c = 2f64.powi(k);
        let settings = CompareSettings::default();
        let (a, b, p) = arms(&s);
        let one = run(&a, &b, &p, &settings);
        let two = run(&scaled(&a, c), &scaled(&b, c), &scaled(&p, c), &settings);
        prop_assert_eq!(&one.verdict, &two.verdict);
        prop_assert_eq!(one.exact.first_differing_step, two.exact.first_differing_step);
        if let (Some(l1), Some(l2)) = (&one.statistical, &two.statistical) {
            prop_assert_eq!(l1.late_difference * c, l2.late_difference);
            prop_assert_eq!(l1.divergence_p_value, l2.divergence_p_value);
            prop_assert_eq!(l1.tost_p_value, l2.tost_p_value);
            prop_assert_eq!(&l1.onset, &l2.onset);
        }
    }

    /// Any other positive constant rounds every loss, so the statistics agree only to rounding:
    /// p-values to a relative 1e-6, and the verdict class wherever no deciding p-value lies within
    /// that distance of `alpha` (a p-value sitting on the threshold may fall either way).
    #[test]
    fn general_scaling(
        s in scenario(vec![Mode::Single, Mode::Seeds, Mode::Perturbation]),
        c in prop_oneof![0.01f64..0.9, 1.1f64..100.0],
    ) {
        let settings = CompareSettings::default();
        let (a, b, p) = arms(&s);
        let one = run(&a, &b, &p, &settings);
        let two = run(&scaled(&a, c), &scaled(&b, c), &scaled(&p, c), &settings);
        let close = |x: f64, y: f64| (x - y).abs() <= 1e-6 * x.abs().max(y.abs()) + 1e-300;
        let (Some(l1), Some(l2)) = (&one.statistical, &two.statistical) else {
            return Err(TestCaseError::fail("both comparisons have a statistical lane"));
        };
        prop_assert!(close(l1.divergence_p_value, l2.divergence_p_value),
            "{} vs {}", l1.divergence_p_value, l2.divergence_p_value);
        prop_assert!(close(l1.tost_p_value, l2.tost_p_value),
            "{} vs {}", l1.tost_p_value, l2.tost_p_value);
        let alpha = settings.alpha;
        let on_threshold = [l1.divergence_p_value, l1.tost_p_value]
            .iter()
            .any(|p| (p - alpha).abs() <= 1e-6 * alpha);
        if !on_threshold {
            prop_assert_eq!(class(&one.verdict), class(&two.verdict));
        }
    }

    /// The order in which an arm's seeds (or the perturbations) are listed is not information:
    /// every result, p-values and onset included, is the same bit for bit.
    #[test]
    fn seed_order(
        s in scenario(vec![Mode::Seeds, Mode::Perturbation]),
        keys in any::<(u64, u64, u64)>(),
    ) {
        let settings = CompareSettings::default();
        let (a, b, p) = arms(&s);
        let one = run(&a, &b, &p, &settings);
        let two = run(&shuffled(&a, keys.0), &shuffled(&b, keys.1), &shuffled(&p, keys.2), &settings);
        prop_assert_eq!(&one.verdict, &two.verdict);
        prop_assert_eq!(one.pairing, two.pairing);
        let (Some(l1), Some(l2)) = (&one.statistical, &two.statistical) else {
            return Err(TestCaseError::fail("both comparisons have a statistical lane"));
        };
        prop_assert_eq!(l1.late_mean_a, l2.late_mean_a);
        prop_assert_eq!(l1.late_difference, l2.late_difference);
        prop_assert_eq!(l1.divergence_p_value, l2.divergence_p_value);
        prop_assert_eq!(l1.tost_p_value, l2.tost_p_value);
        prop_assert_eq!(&l1.onset, &l2.onset);
        prop_assert_eq!(&l1.seeds_needed, &l2.seeds_needed);
    }
}
