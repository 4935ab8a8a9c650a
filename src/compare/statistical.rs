//! Lane 3: the statistical comparison — noise band, yardstick test, drift test, TOST, onset and
//! the seeds-needed power calculation. The decision rule is documented on the `compare` module.

use super::align::Aligned;
use super::{CompareSettings, Direction, Margin, Verdict, MIN_WINDOW_STEPS};
use crate::error::{Error, Result};
use crate::stats::{
    hac_mean_test, std_normal, Alternative, Bandwidth, HacMeanOutcome, Prewhiten, TestOutcome,
    TostOutcome,
};
use serde::{Deserialize, Serialize};
use statrs::distribution::ContinuousCDF;

/// Cap on the seeds-needed answer: beyond it, "more seeds" is not a practical remedy.
const MAX_SEEDS_NEEDED: f64 = 1e6;

/// What the observed difference was measured against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Yardstick {
    /// Last-bit perturbations of A's initial weights; observed curves are seed-paired `b − a`.
    Perturbation {
        /// Perturbation traces.
        ensemble: usize,
        /// Observed A/B pairs.
        pairs: usize,
    },
    /// Seed ensembles of both arms.
    Seeds {
        /// Traces in A.
        a: usize,
        /// Traces in B.
        b: usize,
        /// Whether seeds were paired (paired t-test) or not (Welch).
        paired: bool,
    },
    /// One curve per arm: HAC variance of the difference curve.
    SingleCurve,
}

/// What the noise band was built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BandSource {
    /// Null difference curves `p_j − a`; observed points are the pairs' `b − a`.
    PerturbationDifferences,
    /// A's seed curves; observed points are B's curves.
    SeedsOfA,
}

/// Per-step prediction band `center ± t_{K−1,1−α/2} · sd · sqrt(1 + 1/K)` over the usable steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoiseBand {
    /// What the band is made of.
    pub source: BandSource,
    /// Ensemble size `K`.
    pub k: usize,
    /// Band centre per usable step.
    pub center: Vec<f64>,
    /// Band half-width per usable step.
    pub half_width: Vec<f64>,
    /// Observed points outside the band (≈ α of them under the null).
    pub observed_outside: usize,
    /// Observed points checked.
    pub observed_points: usize,
    /// First step with an observed point outside.
    pub first_outside_step: Option<u64>,
}

/// How the onset was located.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnsetMethod {
    /// The CUSUM alarmed; onset is the step after it was last zero.
    Cusum,
    /// The CUSUM did not alarm; the first PELT change point.
    Pelt,
    /// Neither located a change; the first step of the late window.
    WindowStart,
}

/// The estimated onset of a difference, with both detectors' findings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Onset {
    /// Estimated first step of the divergence.
    pub step: u64,
    /// Which detector gave `step`.
    pub method: OnsetMethod,
    /// Step at which the CUSUM alarmed, if it did.
    pub cusum_alarm_step: Option<u64>,
    /// PELT change points (first step of each new segment).
    pub pelt_steps: Vec<u64>,
}

/// What more seeds would show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Goal {
    /// Equivalence within the margin (TOST).
    Equivalence,
    /// A difference (two-sided test).
    Difference,
}

/// Seeds per arm (or pairs) needed to settle a comparison at the target power.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedsNeeded {
    /// Seeds per arm (pairs, for paired designs).
    pub per_arm: usize,
    /// What they would most cheaply show.
    pub goal: Goal,
}

/// Lane 3's findings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatLane {
    /// The yardstick used.
    pub yardstick: Yardstick,
    /// Usable (finite) common steps analysed.
    pub steps_used: usize,
    /// First step of the late window.
    pub window_start_step: u64,
    /// Steps in the late window.
    pub window_steps: usize,
    /// A's late-window mean (averaged over A's traces).
    pub late_mean_a: f64,
    /// Late-window mean difference `B − A`.
    pub late_difference: f64,
    /// `late_difference / |late_mean_a|` (None when A's mean is 0).
    pub relative_difference: Option<f64>,
    /// The equivalence margin in the metric's units.
    pub margin: f64,
    /// The per-step noise band (ensemble modes).
    pub band: Option<NoiseBand>,
    /// The calibrated test of the late-window difference against the yardstick (ensemble modes).
    pub yardstick_test: Option<TestOutcome>,
    /// HAC t-test of `H0: mean difference = 0` over all usable steps (None if degenerate).
    pub drift_test: Option<HacMeanOutcome>,
    /// The drift test's p-value (set by rule when the test is degenerate, see `notes`).
    pub drift_p_value: f64,
    /// TOST on the late-window mean difference (None if degenerate).
    pub tost: Option<TostOutcome>,
    /// TOST p-value (set by rule when degenerate).
    pub tost_p_value: f64,
    /// p-value of the divergence decision: `max(yardstick, drift)` with an ensemble, drift alone
    /// for a single curve.
    pub divergence_p_value: f64,
    /// Onset estimate (computed always; meaningful when diverged).
    pub onset: Onset,
    /// Seeds that would settle an inconclusive result.
    pub seeds_needed: Option<SeedsNeeded>,
    /// Fallbacks taken.
    pub notes: Vec<String>,
}

impl StatLane {
    /// Applies steps 3–5 of the decision rule.
    pub(crate) fn verdict(&self, alpha: f64) -> Verdict {
        // Without a yardstick (one curve per arm) nothing measures what benign noise looks like,
        // so the stated margin is the only notion of relevance: a systematic difference that TOST
        // shows to lie inside the margin is equivalent (the note records the drift). With an
        // ensemble, "diverged" means beyond *measured* noise, however small — that is how a
        // fault 20× below seed noise is caught — so the drift decides first.
        let single = self.yardstick == Yardstick::SingleCurve;
        if single && self.divergence_p_value < alpha && self.tost_p_value < alpha {
            return Verdict::Equivalent;
        }
        if self.divergence_p_value < alpha {
            Verdict::Diverged {
                onset_step: self.onset.step,
                direction: if self.late_difference >= 0.0 {
                    Direction::Higher
                } else {
                    Direction::Lower
                },
                effect_size: self.relative_difference,
                p_value: Some(self.divergence_p_value),
            }
        } else if self.tost_p_value < alpha {
            Verdict::Equivalent
        } else {
            Verdict::Inconclusive {
                seeds_needed: self.seeds_needed,
            }
        }
    }
}

pub(super) fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

pub(super) fn sd(x: &[f64]) -> f64 {
    if x.len() < 2 {
        return 0.0;
    }
    let m = mean(x);
    (x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (x.len() - 1) as f64).sqrt()
}

pub(super) fn column(curves: &[Vec<f64>], s: usize) -> Vec<f64> {
    curves.iter().map(|c| c[s]).collect()
}

/// Returns the number of seeds per arm (or pairs) for a test to settle at the given power.
///
/// Equivalence is feasible only when `|δ| < Δ`; a difference only when `δ ≠ 0`. The cheaper of
/// the feasible goals is returned. `two_sample` doubles the variance (independent arms).
///
/// # Formula
/// ```text
/// f = 2 (two-sample) or 1 (paired)
/// equivalence: n = f (z_{1−α} + z_{1−β'})² σ² / (Δ − |δ|)²,  β' = β/2 if δ = 0 else β
/// difference:  n = f (z_{1−α/2} + z_{1−β})² σ² / δ²
/// ```
///
/// # Errors
/// None; returns `None` when `σ` is not positive/finite or neither goal is feasible.
///
/// Reference: Chow, Shao & Wang (2008), *Sample Size Calculations in Clinical Research*, 2nd ed.,
/// §3.2 (one-sample/paired) and §3.3 (two-sample), normal approximation.
pub fn seeds_needed(
    sd: f64,
    delta: f64,
    margin: f64,
    alpha: f64,
    power: f64,
    two_sample: bool,
) -> Option<SeedsNeeded> {
    if !(sd > 0.0 && sd.is_finite()) {
        return None;
    }
    let f = if two_sample { 2.0 } else { 1.0 };
    let z = |p: f64| std_normal().inverse_cdf(p);
    let beta = 1.0 - power;
    let equivalence = (delta.abs() < margin).then(|| {
        let zb = if delta == 0.0 {
            z(1.0 - beta / 2.0)
        } else {
            z(1.0 - beta)
        };
        f * (z(1.0 - alpha) + zb).powi(2) * sd * sd / (margin - delta.abs()).powi(2)
    });
    let difference = (delta != 0.0)
        .then(|| f * (z(1.0 - alpha / 2.0) + z(1.0 - beta)).powi(2) * sd * sd / (delta * delta));
    let pick = |n: f64, goal| SeedsNeeded {
        per_arm: n.min(MAX_SEEDS_NEEDED).ceil().max(2.0) as usize,
        goal,
    };
    match (equivalence, difference) {
        (Some(e), Some(d)) if d < e => Some(pick(d, Goal::Difference)),
        (Some(e), _) => Some(pick(e, Goal::Equivalence)),
        (None, Some(d)) => Some(pick(d, Goal::Difference)),
        (None, None) => None,
    }
}

/// HAC drift test of `H0: mean(d) = 0`; a constant `d` gets p = 0 (if non-zero) or 1.
fn drift(
    d: &[f64],
    (bandwidth, prewhiten): (Bandwidth, Prewhiten),
    notes: &mut Vec<String>,
) -> Result<(Option<HacMeanOutcome>, f64)> {
    match hac_mean_test(d, 0.0, Alternative::TwoSided, bandwidth, prewhiten) {
        Ok(o) => Ok((Some(o), o.p_value)),
        Err(Error::ZeroVariance { .. }) => {
            let m = mean(d);
            notes.push(format!(
                "difference curve is constant ({m:e}): drift p-value set to {}",
                if m != 0.0 { 0 } else { 1 }
            ));
            Ok((None, if m != 0.0 { 0.0 } else { 1.0 }))
        }
        Err(e) => Err(e),
    }
}

/// Computes the statistical lane on the usable steps of `data`.
pub(crate) fn stat_lane(data: &Aligned, settings: &CompareSettings) -> Result<StatLane> {
    let u = data.usable;
    let steps = &data.steps[..u];
    let w = ((settings.window_fraction * u as f64).ceil() as usize)
        .max(MIN_WINDOW_STEPS)
        .min(u);
    let w0 = u - w;
    let late = |c: &Vec<f64>| mean(&c[w0..u]);
    let late_mean_a = mean(&data.a.iter().map(late).collect::<Vec<_>>());
    let margin = match settings.margin {
        Margin::Relative(r) => r * late_mean_a.abs(),
        Margin::Absolute(m) => m,
    };
    let mut notes = Vec::new();
    let m = if data.p.len() >= 2 {
        super::modes::perturbation_mode(data, settings, w0, margin, &mut notes)?
    } else if data.a.len() >= 2 && data.b.len() >= 2 {
        super::modes::seeds_mode(data, settings, w0, margin, &mut notes)?
    } else {
        if data.p.len() == 1 {
            notes.push("one perturbation trace cannot estimate spread: single-curve mode".into());
        }
        super::modes::single_mode(data, w0, margin, &mut notes)?
    };
    // With a yardstick, the drift test only has to reject zero-mean noise the yardstick does not
    // model (bf16-like), so the plain rule-of-thumb HAC suffices and keeps power against ramps;
    // alone, it must be calibrated itself: prewhitened, Andrews bandwidth.
    let hac = if m.yardstick_test.is_some() {
        (Bandwidth::NeweyWest1994, Prewhiten::No)
    } else {
        (Bandwidth::Andrews1991Ar1, Prewhiten::Ar1)
    };
    let (drift_test, drift_p) = drift(&m.dbar, hac, &mut notes)?;
    let divergence_p_value = match &m.yardstick_test {
        Some(t) => t.p_value.max(drift_p),
        None => drift_p,
    };
    let z: Vec<f64> = m
        .onset_curve
        .iter()
        .zip(&m.scale)
        .map(|(d, s)| d / s)
        .collect();
    Ok(StatLane {
        yardstick: m.yardstick,
        steps_used: u,
        window_start_step: steps[w0],
        window_steps: w,
        late_mean_a,
        late_difference: m.late_difference,
        relative_difference: (late_mean_a != 0.0).then(|| m.late_difference / late_mean_a.abs()),
        margin,
        band: m.band,
        yardstick_test: m.yardstick_test,
        drift_test,
        drift_p_value: drift_p,
        tost: m.tost.0,
        tost_p_value: m.tost.1,
        divergence_p_value,
        onset: super::modes::onset(&z, steps, w0, m.late_difference >= 0.0, settings)?,
        seeds_needed: m.seeds_needed,
        notes,
    })
}
