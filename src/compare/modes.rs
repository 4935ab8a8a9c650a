//! How the statistical lane estimates the difference `B − A` over a stretch of steps, for each
//! way the runs can be matched, and how it measures rounding.
//!
//! - **Paired runs** (recorded equal seeds, `--paired`, or one run per arm assumed to share its
//!   seed): the per-pair differences are the evidence. With ≥ 2 pairs, a paired t on the pairs'
//!   window means; with one pair, the perturbation ensemble's spread when there is one (how far
//!   rounding alone carries a same-seed pair), else the curve's own autocorrelated noise.
//! - **Independent runs**: Welch on the per-run window means, or, when one arm has a single run,
//!   that run against the other arm's prediction interval. With one run per arm and different
//!   seeds, seed-to-seed noise cannot be told apart from a change: no estimate at all.
//!
//! The rounding question (is B the same math as A up to rounding?) needs a perturbation ensemble
//! and paired runs: observed `b − a` curves against null `p − a` curves.

use super::align::Aligned;
use super::evidence::Evidence;
use super::statistical::{column, mean, sd, BandSource, NoiseBand, Yardstick};
use crate::stats::{
    median, one_sample_ttest, t_cdf, t_quantile, welch_ttest, Alternative, TestOutcome,
};
use std::ops::Range;

/// Standardising scales are floored at this fraction of their median, so steps where the
/// yardstick happens to be exactly zero (e.g. the first steps of a perturbation) do not explode.
const SCALE_FLOOR_OF_MEDIAN: f64 = 0.1;

/// Largest AR(1) coefficient the single-curve noise model uses: a unit root has no finite
/// variance; 0.98 means a memory of ~50 steps (the calibration's null families go to 0.97).
const AR1_MAX: f64 = 0.98;

/// Standard errors of the AR(1) coefficient added to its bias-corrected estimate before it enters
/// the variance of a window mean. Persistence is what a single curve estimates worst, and
/// under-estimating it is what makes a drift test liberal; erring upwards keeps the size.
const AR1_UPPER_SE: f64 = 2.0;

/// How the lane estimates a window's difference.
#[derive(Debug, Clone)]
pub(super) enum Estimator {
    /// Paired t on the per-pair window means of `d_i = b − a`.
    PairedSeeds(Vec<Vec<f64>>),
    /// One pair; the spread of the null curves' window means is its standard error.
    OnePairPerturbation { d: Vec<f64>, null: Vec<Vec<f64>> },
    /// One pair, no ensemble: the curve's own AR(1) noise.
    OnePairCurve { d: Vec<f64>, noise: ArNoise },
    /// Welch on independent runs' window means.
    Independent,
    /// One run against the other arm's seeds (prediction interval).
    OneAgainstEnsemble,
    /// One run per arm with different seeds: nothing separates a change from seed noise.
    Unresolvable,
}

impl Estimator {
    /// Chooses the estimator for aligned data.
    pub(super) fn choose(data: &Aligned, identical_until: Option<usize>) -> Estimator {
        let u = data.usable;
        let diffs: Vec<Vec<f64>> = (data.pairs.iter())
            .map(|&(i, j)| (0..u).map(|s| data.b[j][s] - data.a[i][s]).collect())
            .collect();
        if data.pairing.is_paired() {
            if diffs.len() >= 2 {
                return Estimator::PairedSeeds(diffs);
            }
            let d = diffs.into_iter().next().unwrap_or_default();
            if data.p.len() >= 2 {
                return Estimator::OnePairPerturbation {
                    d,
                    null: null_curves(data),
                };
            }
            let from = identical_until.unwrap_or(0).min(u);
            let noise = ArNoise::fit(&d[from..]);
            return Estimator::OnePairCurve { d, noise };
        }
        match (data.a.len(), data.b.len()) {
            (1, 1) => Estimator::Unresolvable,
            (1, _) | (_, 1) => Estimator::OneAgainstEnsemble,
            _ => Estimator::Independent,
        }
    }

    /// What the lane reports as its yardstick.
    pub(super) fn yardstick(&self, data: &Aligned) -> Yardstick {
        match self {
            Estimator::PairedSeeds(d) => Yardstick::Seeds {
                a: data.a.len(),
                b: data.b.len(),
                paired: d.len() >= 2,
            },
            Estimator::OnePairPerturbation { null, .. } => Yardstick::Perturbation {
                ensemble: null.len(),
                pairs: 1,
            },
            Estimator::Independent | Estimator::OneAgainstEnsemble => Yardstick::Seeds {
                a: data.a.len(),
                b: data.b.len(),
                paired: false,
            },
            Estimator::OnePairCurve { .. } | Estimator::Unresolvable => Yardstick::SingleCurve,
        }
    }

    /// The difference over the usable-step range `r`, or `None` when it cannot be estimated.
    pub(super) fn evidence(&self, data: &Aligned, r: Range<usize>) -> Option<Evidence> {
        let wmean = |c: &Vec<f64>| mean(&c[r.clone()]);
        match self {
            Estimator::PairedSeeds(d) => {
                let m: Vec<f64> = d.iter().map(wmean).collect();
                Some(evidence_of(
                    one_sample_ttest(&m, 0.0, Alternative::TwoSided),
                    mean(&m),
                ))
            }
            Estimator::OnePairPerturbation { d, null } => {
                let e: Vec<f64> = null.iter().map(wmean).collect();
                Some(Evidence {
                    estimate: mean(&d[r.clone()]),
                    se: sd(&e),
                    df: (e.len() - 1) as f64,
                })
            }
            Estimator::OnePairCurve { d, noise } => Some(noise.window_evidence(&d[r])),
            Estimator::Independent => {
                let (ma, mb): (Vec<f64>, Vec<f64>) = (
                    data.a.iter().map(wmean).collect(),
                    data.b.iter().map(wmean).collect(),
                );
                Some(evidence_of(
                    welch_ttest(&mb, &ma, Alternative::TwoSided),
                    mean(&mb) - mean(&ma),
                ))
            }
            Estimator::OneAgainstEnsemble => {
                let (ma, mb): (Vec<f64>, Vec<f64>) = (
                    data.a.iter().map(wmean).collect(),
                    data.b.iter().map(wmean).collect(),
                );
                let (one, many, sign) = if ma.len() == 1 {
                    (ma[0], &mb, -1.0)
                } else {
                    (mb[0], &ma, 1.0)
                };
                let k = many.len() as f64;
                Some(Evidence {
                    estimate: sign * (one - mean(many)),
                    se: sd(many) * (1.0 + 1.0 / k).sqrt(),
                    df: k - 1.0,
                })
            }
            Estimator::Unresolvable => None,
        }
    }

    /// The spread that seeds-needed calculations use, and whether the design is two-sample.
    pub(super) fn unit_spread(&self, late: &Evidence) -> Option<(f64, bool)> {
        match self {
            Estimator::PairedSeeds(d) => Some((late.se * (d.len() as f64).sqrt(), false)),
            Estimator::OnePairPerturbation { .. } => Some((late.se, false)),
            Estimator::Independent => Some((late.se, true)),
            Estimator::OneAgainstEnsemble => Some((late.se, true)),
            Estimator::OnePairCurve { .. } | Estimator::Unresolvable => None,
        }
    }

    /// The mean difference curve and the per-step scale the onset standardises it by.
    pub(super) fn onset_curve(&self, data: &Aligned) -> (Vec<f64>, Vec<f64>) {
        let u = data.usable;
        match self {
            Estimator::PairedSeeds(d) => {
                let dbar: Vec<f64> = (0..u).map(|s| mean(&column(d, s))).collect();
                let n = d.len() as f64;
                let mut scale: Vec<f64> = (0..u).map(|s| sd(&column(d, s)) / n.sqrt()).collect();
                floor_scale(&mut scale, &dbar);
                (dbar, scale)
            }
            Estimator::OnePairPerturbation { d, null } => {
                let mut scale: Vec<f64> = (0..u).map(|s| sd(&column(null, s))).collect();
                floor_scale(&mut scale, d);
                let centred = (0..u).map(|s| d[s] - mean(&column(null, s))).collect();
                (centred, scale)
            }
            Estimator::OnePairCurve { d, .. } => {
                let mut scale = vec![robust_scale(d); u];
                floor_scale(&mut scale, d);
                (d.clone(), scale)
            }
            Estimator::Independent | Estimator::OneAgainstEnsemble | Estimator::Unresolvable => {
                let dbar: Vec<f64> = (0..u)
                    .map(|s| mean(&column(&data.b, s)) - mean(&column(&data.a, s)))
                    .collect();
                let (ka, kb) = (data.a.len() as f64, data.b.len() as f64);
                let var = |arm: &[Vec<f64>], s: usize, k: f64| {
                    if arm.len() >= 2 {
                        sd(&column(arm, s)).powi(2) / k
                    } else {
                        0.0
                    }
                };
                let mut scale: Vec<f64> = (0..u)
                    .map(|s| (var(&data.a, s, ka) + var(&data.b, s, kb)).sqrt())
                    .collect();
                if data.a.len() < 2 && data.b.len() < 2 {
                    scale = vec![robust_scale(&dbar); u];
                }
                floor_scale(&mut scale, &dbar);
                (dbar, scale)
            }
        }
    }
}

/// The evidence of a t-test (its estimate, standard error and degrees of freedom); a test that
/// has no spread to work with leaves the difference known exactly.
fn evidence_of(test: crate::error::Result<TestOutcome>, estimate: f64) -> Evidence {
    match test {
        Ok(t) => Evidence {
            estimate: t.estimate,
            se: t.se,
            df: t.df,
        },
        Err(_) => Evidence {
            estimate,
            se: 0.0,
            df: f64::INFINITY,
        },
    }
}

/// The null curves `p_j − a_ref(j)`: how far a last-bit nudge of A's initial weights carries A.
pub(super) fn null_curves(data: &Aligned) -> Vec<Vec<f64>> {
    (data.p.iter().zip(&data.p_ref))
        .map(|(p, &r)| (0..data.usable).map(|s| p[s] - data.a[r][s]).collect())
        .collect()
}

/// An AR(1) model of a single difference curve's noise, fitted with its persistence erring high.
#[derive(Debug, Clone, Copy)]
pub(super) struct ArNoise {
    /// AR coefficient used (an upper confidence bound, capped at [`AR1_MAX`]).
    pub phi: f64,
    /// Marginal variance `γ₀` of the noise.
    pub gamma0: f64,
    /// Points the model was fitted on.
    pub n: usize,
}

impl ArNoise {
    /// Fits the noise model two ways and keeps the one with the smaller long-run variance.
    ///
    /// - **Levels**: `φ̂` from the demeaned curve, Kendall's bias correction
    ///   (`E φ̂ ≈ φ − (1 + 3φ)/n`), plus [`AR1_UPPER_SE`] standard errors `√((1 − φ²)/n)`;
    ///   `γ₀` the curve's variance. Precise under the null; a trend in the curve (signal) reads
    ///   as persistence and only makes it *more* conservative.
    /// - **First differences**: for an AR(1) `x`, `Δx` has lag-1 autocorrelation `−(1 − φ)/2`
    ///   and variance `2γ₀(1 − φ)`; a linear trend only shifts `Δx`'s mean, which is removed, so
    ///   a ramp (signal) is not read as noise. Less precise (`se ≈ 2/√n`).
    ///
    /// Each is an upper bound on the persistence with probability ≈ 97.5 % under the null, so the
    /// smaller of the two variances is an upper bound with probability ≥ 95 % (union bound),
    /// while either kind of signal is judged by the estimate it does not inflate.
    pub(super) fn fit(x: &[f64]) -> ArNoise {
        Self::fit_with(x, AR1_UPPER_SE, AR1_MAX)
    }

    /// [`ArNoise::fit`] with explicit constants (the calibration explores them).
    pub(super) fn fit_with(x: &[f64], upper_se: f64, max: f64) -> ArNoise {
        let n = x.len();
        if n < 4 {
            return ArNoise {
                phi: 0.0,
                gamma0: 0.0,
                n,
            };
        }
        let nf = n as f64;
        let demean = |v: &[f64]| {
            let m = mean(v);
            v.iter().map(|x| x - m).collect::<Vec<f64>>()
        };
        let lag1 = |c: &[f64]| {
            let den: f64 = c.iter().map(|v| v * v).sum();
            let num: f64 = c.windows(2).map(|w| w[0] * w[1]).sum();
            if den > 0.0 {
                num / den
            } else {
                0.0
            }
        };
        let var = |c: &[f64]| c.iter().map(|v| v * v).sum::<f64>() / (c.len() - 1) as f64;
        // Levels.
        let c = demean(x);
        let raw = lag1(&c);
        let corrected = (raw + (1.0 + 3.0 * raw) / nf).clamp(-0.9, max);
        let se = ((1.0 - corrected * corrected).max(0.0) / nf)
            .sqrt()
            .max(1.0 / nf);
        let levels = ArNoise {
            phi: (corrected + upper_se * se).clamp(-0.9, max),
            gamma0: var(&c),
            n,
        };
        // First differences.
        let dx: Vec<f64> = x.windows(2).map(|w| w[1] - w[0]).collect();
        let cd = demean(&dx);
        let phi = (1.0 + 2.0 * lag1(&cd) + upper_se * 2.0 / nf.sqrt()).clamp(-0.9, max);
        let diffs = ArNoise {
            phi,
            gamma0: var(&cd) / (2.0 * (1.0 - phi)),
            n,
        };
        if diffs.long_run_variance() < levels.long_run_variance() {
            diffs
        } else {
            levels
        }
    }

    /// `γ₀ (1 + φ)/(1 − φ)`: the variance of a long window's mean, times its length.
    fn long_run_variance(&self) -> f64 {
        self.gamma0 * (1.0 + self.phi) / (1.0 - self.phi)
    }

    /// The mean of `w` against the variance an AR(1) process gives a mean of `w.len()` points.
    ///
    /// # Formula
    /// ```text
    /// Var(x̄_L) = σ²/(1 − φ²) · [1 + 2φ/(1 − φ) − 2φ(1 − φᴸ)/(L(1 − φ)²)] / L
    /// ```
    pub(super) fn window_evidence(&self, w: &[f64]) -> Evidence {
        let l = w.len() as f64;
        let p = self.phi;
        let factor = if p.abs() < 1e-12 {
            1.0
        } else {
            1.0 + 2.0 * p / (1.0 - p) - 2.0 * p * (1.0 - p.powf(l)) / (l * (1.0 - p).powi(2))
        };
        let var = self.gamma0 * factor.max(1.0) / l;
        Evidence {
            estimate: mean(w),
            se: var.max(0.0).sqrt(),
            df: (self.n as f64 - 2.0).max(1.0),
        }
    }
}

/// Floors a per-step scale at a fraction of its median positive value (or of `|d|` if all zero).
pub(super) fn floor_scale(s: &mut [f64], d: &[f64]) {
    let mut pos: Vec<f64> = s.iter().copied().filter(|v| *v > 0.0).collect();
    pos.sort_by(f64::total_cmp);
    let floor = match pos.get(pos.len() / 2) {
        Some(med) => med * SCALE_FLOOR_OF_MEDIAN,
        None => d.iter().fold(0.0_f64, |a, v| a.max(v.abs())).max(1.0) * 1e-3,
    };
    for v in s.iter_mut() {
        *v = v.max(floor);
    }
}

/// Robust noise scale of a series from its first differences: MAD(Δd)/(0.6745·√2).
fn robust_scale(d: &[f64]) -> f64 {
    let mut dd: Vec<f64> = d.windows(2).map(|w| w[1] - w[0]).collect();
    if dd.is_empty() {
        return 0.0;
    }
    let med = median(&mut dd);
    let mut dev: Vec<f64> = dd.iter().map(|v| (v - med).abs()).collect();
    median(&mut dev) / (0.674_489_75 * std::f64::consts::SQRT_2)
}

/// Pooled two-sample t-test of observed vs null summaries (exact under exchangeability).
pub(super) fn pooled_t(obs: &[f64], null: &[f64]) -> TestOutcome {
    let (no, nn) = (obs.len() as f64, null.len() as f64);
    let df = (no + nn - 2.0).max(1.0);
    let ss = |x: &[f64]| {
        let m = mean(x);
        x.iter().map(|v| (v - m) * (v - m)).sum::<f64>()
    };
    let se = ((ss(obs) + ss(null)) / df).sqrt() * (1.0 / no + 1.0 / nn).sqrt();
    let estimate = mean(obs) - mean(null);
    let (statistic, p_value) = if se > 0.0 {
        let t = estimate / se;
        (t, (2.0 * t_cdf(-t.abs(), df)).min(1.0))
    } else {
        (0.0, if estimate != 0.0 { 0.0 } else { 1.0 })
    };
    TestOutcome {
        estimate,
        se,
        statistic,
        df,
        p_value,
    }
}

/// Per-step prediction band `center ± t_{K−1,1−α/2} · sd · sqrt(1 + 1/K)` over the usable steps.
pub(super) fn band(
    source: BandSource,
    null: &[Vec<f64>],
    observed: &[Vec<f64>],
    steps: &[u64],
    alpha: f64,
) -> NoiseBand {
    let k = null.len();
    let tq = t_quantile(1.0 - alpha / 2.0, (k.max(2) - 1) as f64);
    let (mut center, mut half) = (Vec::new(), Vec::new());
    let (mut outside, mut first) = (0, None);
    for (s, &step) in steps.iter().enumerate() {
        let col = column(null, s);
        let (c, h) = (mean(&col), tq * sd(&col) * (1.0 + 1.0 / k as f64).sqrt());
        for o in observed {
            if (o[s] - c).abs() > h {
                outside += 1;
                first.get_or_insert(step);
            }
        }
        center.push(c);
        half.push(h);
    }
    NoiseBand {
        source,
        k,
        center,
        half_width: half,
        observed_outside: outside,
        observed_points: observed.len() * steps.len(),
        first_outside_step: first,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn robust_scale_is_the_same_for_a_curve_and_its_negation() {
        // An even number of first differences: the upper middle value alone is not a median.
        let d = [0.0, 1.0, 3.0, 2.0, 7.0, 4.0, 4.5];
        let neg: Vec<f64> = d.iter().map(|v| -v).collect();
        assert_eq!(robust_scale(&d), robust_scale(&neg));
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
    }

    /// Explores the single-curve noise model's constants: null false positives at φ 0.97 and
    /// detection of a smooth transient. `cargo test explore_ar -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn explore_ar_constants() {
        use crate::rng::{hash_words, normal};
        let n = 300;
        let ar = |key: u64, phi: f64| {
            let mut x = normal(key, 0) / (1.0f64 - phi * phi).sqrt();
            (0..n as u64)
                .map(|i| {
                    if i > 0 {
                        x = phi * x + normal(key, i);
                    }
                    0.01 * x
                })
                .collect::<Vec<f64>>()
        };
        for (se, max) in [
            (1.0, 0.995),
            (2.0, 0.995),
            (2.0, 0.98),
            (1.0, 0.98),
            (3.0, 0.98),
        ] {
            let mut fp = [0usize; 3];
            for (k, phi) in [0.6, 0.9, 0.97].iter().enumerate() {
                for r in 0..400u64 {
                    let a = ar(hash_words(&[r, 1, k as u64]), *phi);
                    let b = ar(hash_words(&[r, 2, k as u64]), *phi);
                    let d: Vec<f64> = a.iter().zip(&b).map(|(x, y)| y - x).collect();
                    let noise = ArNoise::fit_with(&d, se, max);
                    let hit = (0..5).any(|w| {
                        let e = noise.window_evidence(&d[w * 60..(w + 1) * 60]);
                        e.p_beyond(1.5e-3) * 5.0 < 0.05
                    });
                    fp[k] += usize::from(hit);
                }
            }
            let mut det = 0;
            for r in 0..100u64 {
                let d: Vec<f64> = (0..n)
                    .map(|t| {
                        0.003 * normal(hash_words(&[r, 9]), t as u64)
                            + if (10..70).contains(&t) {
                                -0.3 * (std::f64::consts::PI * (t - 10) as f64 / 60.0).sin()
                            } else {
                                0.0
                            }
                    })
                    .collect();
                let noise = ArNoise::fit_with(&d, se, max);
                det += usize::from((0..5).any(|w| {
                    let e = noise.window_evidence(&d[w * 60..(w + 1) * 60]);
                    e.p_beyond(4e-3) * 5.0 < 0.05
                }));
            }
            eprintln!("se {se} max {max}: FP of 400 at φ 0.6/0.9/0.97 = {fp:?}; transient detected {det}/100");
        }
    }

    #[test]
    fn the_ar1_window_variance_matches_its_closed_form_for_white_noise() {
        let noise = ArNoise {
            phi: 0.0,
            gamma0: 4.0,
            n: 100,
        };
        let e = noise.window_evidence(&[1.0; 16]);
        assert!((e.se - 0.5).abs() < 1e-12, "{}", e.se);
    }
}
