//! Lane 3: the statistical comparison — noise band, yardstick test, drift test, TOST, onset and
//! the seeds-needed power calculation. The decision rule is documented on the `compare` module.

use super::align::Aligned;
use super::evidence::Evidence;
use super::modes::{self, Estimator};
use super::onset;
use super::{CompareSettings, Direction, Margin, Verdict, MIN_WINDOW_STEPS};
use crate::error::{Error, Result};
use crate::stats::{
    hac_mean_test, std_normal, tost_from_estimate, Alternative, Bandwidth, HacMeanOutcome,
    Prewhiten, TestOutcome, TostOutcome,
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
    /// Every pair was bitwise identical before this step: the change acted here.
    FirstDifferingStep,
    /// The first steps already sat far outside the yardstick: the departure was there from the
    /// start.
    FromFirstStep,
    /// Every pair is bitwise equal: there is no departure to date.
    NoDeparture,
    /// A segmented regression found a level shift starting here.
    StepChange,
    /// A segmented regression found a ramp starting here.
    RampStart,
    /// No break could be fitted; the first step of the late window.
    WindowStart,
}

/// The estimated onset of a difference, and when a monitor would have raised the alarm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Onset {
    /// Estimated first step of the departure.
    pub step: u64,
    /// How `step` was found.
    pub method: OnsetMethod,
    /// First step at which a CUSUM monitor (from the search start) would have alarmed.
    pub cusum_alarm_step: Option<u64>,
    /// PELT change points (first step of each new segment), the offline multi-change view.
    pub pelt_steps: Vec<u64>,
}

impl Onset {
    /// The onset of bitwise-equal pairs: none, and no alarm (`step` is the first step, so that
    /// old readers of `summary.json` still find a number).
    pub fn none(first_step: u64) -> Onset {
        Onset {
            step: first_step,
            method: OnsetMethod::NoDeparture,
            cusum_alarm_step: None,
            pelt_steps: Vec::new(),
        }
    }
}

/// One stretch of the run judged against the margin ("whole-curve judgement").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowFinding {
    /// First step of the window.
    pub first_step: u64,
    /// Last step of the window.
    pub last_step: u64,
    /// The difference over the window (None when it cannot be estimated).
    pub evidence: Option<Evidence>,
    /// A's mean over the window (the level a relative margin and the effect are taken of).
    #[serde(default)]
    pub level_a: f64,
    /// The margin in the metric's units at this window (relative margins scale with A's level).
    pub margin: f64,
    /// Minimum-effect p-value (`|δ| > margin`), adjusted over the windows (weighted Bonferroni:
    /// the late window carries half of alpha, the others share the rest).
    pub p_beyond_adjusted: f64,
    /// Whether this window is shown to differ by more than the margin.
    pub beyond_margin: bool,
}

/// "Is B the same math as A up to rounding?", judged against the perturbation ensemble.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundingFinding {
    /// Perturbation traces in the yardstick.
    pub ensemble: usize,
    /// Paired A/B runs observed.
    pub pairs: usize,
    /// Whether the difference stays within what rounding alone produces.
    pub within: bool,
    /// p-value of "beyond rounding": the larger of the yardstick test and the drift test
    /// (an intersection–union test, valid if either is).
    pub p_value: f64,
    /// Late-window difference over the ensemble's late-window spread (how many "roundings" B is
    /// away from A; a same-math change sits near 1). Infinite when the ensemble has no spread.
    #[serde(with = "super::evidence::non_finite_as_text")]
    pub ratio: f64,
    /// Where the departure from rounding begins (when beyond).
    pub onset_step: Option<u64>,
    /// Pooled t-test of the observed late-window differences against the null ones.
    pub yardstick_test: TestOutcome,
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
    /// The calibrated test of the late-window difference against the yardstick: the rounding
    /// yardstick test with a perturbation ensemble, else the seeds' test of `δ = 0`.
    pub yardstick_test: Option<TestOutcome>,
    /// HAC t-test of `H0: mean difference = 0` over all usable steps (None if degenerate).
    pub drift_test: Option<HacMeanOutcome>,
    /// The drift test's p-value (set by rule when the test is degenerate, see `notes`).
    pub drift_p_value: f64,
    /// TOST on the late-window mean difference (None if degenerate).
    pub tost: Option<TostOutcome>,
    /// TOST p-value (set by rule when degenerate).
    pub tost_p_value: f64,
    /// p-value of "beyond the margin somewhere": the smallest adjusted window p.
    pub divergence_p_value: f64,
    /// Onset estimate (computed always; meaningful when diverged).
    pub onset: Onset,
    /// Seeds that would settle an inconclusive result.
    pub seeds_needed: Option<SeedsNeeded>,
    /// Fallbacks taken.
    pub notes: Vec<String>,
    /// The late-window difference with its standard error (None when it cannot be estimated).
    #[serde(default)]
    pub late: Option<Evidence>,
    /// The run cut into windows, each judged against the margin.
    #[serde(default)]
    pub windows: Vec<WindowFinding>,
    /// Where the curves come back inside the margin after a divergence that ended.
    #[serde(default)]
    pub rejoin_step: Option<u64>,
    /// The rounding finding (with a perturbation ensemble and paired runs).
    #[serde(default)]
    pub rounding: Option<RoundingFinding>,
}

impl StatLane {
    /// Applies the margin rule: `diverged` iff some window is shown beyond the margin,
    /// `equivalent` iff the late window is shown inside it, else `inconclusive`.
    pub(crate) fn verdict(&self, alpha: f64) -> Verdict {
        if self.divergence_p_value < alpha {
            let peak = self
                .windows
                .iter()
                .filter(|w| w.beyond_margin)
                .min_by(|x, y| x.p_beyond_adjusted.total_cmp(&y.p_beyond_adjusted));
            let (estimate, level) = match peak {
                Some(w) => (
                    w.evidence.map_or(self.late_difference, |e| e.estimate),
                    w.level_a,
                ),
                None => (self.late_difference, self.late_mean_a),
            };
            return Verdict::Diverged {
                onset_step: self.onset.step,
                direction: if estimate >= 0.0 {
                    Direction::Higher
                } else {
                    Direction::Lower
                },
                effect_size: (level != 0.0).then(|| estimate / level.abs()),
                p_value: Some(self.divergence_p_value),
            };
        }
        if self.late.is_some() && self.tost_p_value < alpha {
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

/// Cuts `0..u` into windows of `w` steps ending at `u` (the last is the late window); the first
/// absorbs the remainder.
fn windows(u: usize, w: usize) -> Vec<std::ops::Range<usize>> {
    let count = (u / w).max(1);
    (0..count)
        .map(|i| {
            let end = u - (count - 1 - i) * w;
            let start = if i == 0 { 0 } else { end - w };
            start..end
        })
        .collect()
}

/// Computes the statistical lane on the usable steps of `data`.
///
/// `identical_until`: for paired runs, the index of the first step at which some pair differs in
/// its bits (everything before it is bitwise equal); `None` when no usable step differs.
pub(crate) fn stat_lane(
    data: &Aligned,
    settings: &CompareSettings,
    identical_until: Option<usize>,
) -> Result<StatLane> {
    let u = data.usable;
    let steps = &data.steps[..u];
    let w = ((settings.window_fraction * u as f64).ceil() as usize)
        .max(MIN_WINDOW_STEPS)
        .min(u);
    let w0 = u - w;
    // The exact lane already compared every pair's bits: no differing usable step means equal.
    let bitwise_equal = data.pairing.is_paired() && identical_until.is_none();
    let a_mean = |r: std::ops::Range<usize>| {
        mean(
            &data
                .a
                .iter()
                .map(|c| mean(&c[r.clone()]))
                .collect::<Vec<_>>(),
        )
    };
    let late_mean_a = a_mean(w0..u);
    let margin_at = |level: f64| match settings.margin {
        Margin::Relative(r) => r * level.abs(),
        Margin::Absolute(m) => m,
    };
    let margin = margin_at(late_mean_a);
    let mut notes = Vec::new();
    if data.p.len() == 1 {
        notes.push("one perturbation trace cannot estimate spread: no rounding yardstick".into());
    }
    let est = Estimator::choose(data, identical_until);
    if let Estimator::Unresolvable = est {
        notes.push(
            "one run per arm with different seeds: seed-to-seed noise cannot be told apart from a change; run at least 3 seeds per arm (or pass --paired if the runs share a seed)"
                .into(),
        );
    }
    // Whole-curve judgement: every window against its own margin. The late window is the primary
    // endpoint and keeps half of alpha; the earlier windows share the other half (a weighted
    // Bonferroni correction, so the family-wise error stays ≤ alpha).
    let ranges = windows(u, w);
    let count = ranges.len();
    let weight = |i: usize| match (count, i + 1 == count) {
        (1, _) => 1.0,
        (_, true) => 2.0,
        (c, false) => 2.0 * (c - 1) as f64,
    };
    let windows: Vec<WindowFinding> = ranges
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let evidence = est.evidence(data, r.clone());
            let level_a = a_mean(r.clone());
            let m = margin_at(level_a);
            let p = evidence.map_or(1.0, |e| (e.p_beyond(m) * weight(i)).min(1.0));
            WindowFinding {
                first_step: steps[r.start],
                last_step: steps[r.end - 1],
                evidence,
                level_a,
                margin: m,
                p_beyond_adjusted: p,
                beyond_margin: p < settings.alpha,
            }
        })
        .collect();
    let late = windows.last().and_then(|x| x.evidence);
    let divergence_p_value = windows
        .iter()
        .map(|x| x.p_beyond_adjusted)
        .fold(1.0, f64::min);
    let tost = late.and_then(|e| tost_from_estimate(e.estimate, e.se, e.df.min(1e7), margin).ok());
    let tost_p_value = late.map_or(1.0, |e| e.p_equivalence(margin));
    let rounding_parts = rounding(data, settings, w0, &mut notes);
    let (dbar, scale, band, yardstick_test) = match &rounding_parts {
        Some(r) => (
            r.centred.clone(),
            r.scale.clone(),
            Some(r.band.clone()),
            Some(r.test),
        ),
        None => {
            let (d, s) = est.onset_curve(data);
            let band = (data.a.len() >= 2).then(|| {
                let observed: Vec<Vec<f64>> = data.b.iter().map(|c| c[..u].to_vec()).collect();
                let null: Vec<Vec<f64>> = data.a.iter().map(|c| c[..u].to_vec()).collect();
                modes::band(
                    BandSource::SeedsOfA,
                    &null,
                    &observed,
                    steps,
                    settings.alpha,
                )
            });
            (d, s, band, None)
        }
    };
    let raw_dbar: Vec<f64> = match &rounding_parts {
        Some(r) => r.dbar.clone(),
        None => dbar.clone(),
    };
    // Without an estimate (one run per arm, different seeds), the mean curve still describes it.
    let late_difference = late.map_or_else(|| mean(&raw_dbar[w0..u]), |e| e.estimate);
    let hac = if rounding_parts.is_some() {
        (Bandwidth::NeweyWest1994, Prewhiten::No)
    } else {
        (Bandwidth::Andrews1991Ar1, Prewhiten::Ar1)
    };
    let (drift_test, drift_p) = drift(&raw_dbar, hac, &mut notes)?;
    let z: Vec<f64> = dbar.iter().zip(&scale).map(|(d, s)| d / s).collect();
    let paired_start = identical_until.filter(|_| data.pairing.is_paired());
    let up = if divergence_p_value < settings.alpha {
        peak_sign(&windows).unwrap_or(late_difference >= 0.0)
    } else {
        mean(&raw_dbar) >= 0.0
    };
    let onset = if bitwise_equal {
        Onset::none(steps[0])
    } else {
        onset::onset(&z, steps, paired_start, w0, up, settings)?
    };
    let rounding = rounding_parts.map(|r| {
        let p_value = r.test.p_value.max(drift_p);
        let within = p_value >= settings.alpha;
        RoundingFinding {
            ensemble: r.ensemble,
            pairs: r.pairs,
            within,
            p_value,
            ratio: r.ratio,
            onset_step: (!within).then_some(onset.step),
            yardstick_test: r.test,
        }
    });
    let rejoin_step = rejoin(&windows);
    let seeds_needed = late.and_then(|l| {
        est.unit_spread(&l).and_then(|(spread, two_sample)| {
            seeds_needed(
                spread,
                l.estimate,
                margin,
                settings.alpha,
                settings.power,
                two_sample,
            )
        })
    });
    Ok(StatLane {
        yardstick: est.yardstick(data),
        steps_used: u,
        window_start_step: steps[w0],
        window_steps: w,
        late_mean_a,
        late_difference,
        relative_difference: (late_mean_a != 0.0).then(|| late_difference / late_mean_a.abs()),
        margin,
        band,
        yardstick_test,
        drift_test,
        drift_p_value: drift_p,
        tost,
        tost_p_value,
        divergence_p_value,
        onset,
        seeds_needed,
        notes,
        late,
        windows,
        rejoin_step,
        rounding,
    })
}

/// The sign of the most significant window beyond the margin.
fn peak_sign(windows: &[WindowFinding]) -> Option<bool> {
    windows
        .iter()
        .filter(|w| w.beyond_margin)
        .min_by(|x, y| x.p_beyond_adjusted.total_cmp(&y.p_beyond_adjusted))
        .and_then(|w| w.evidence.map(|e| e.estimate >= 0.0))
}

/// After a divergence that ended, the first step of the first window after the last one beyond
/// the margin whose estimate is back inside it.
fn rejoin(windows: &[WindowFinding]) -> Option<u64> {
    let last = windows.iter().rposition(|w| w.beyond_margin)?;
    windows[last + 1..]
        .iter()
        .find(|w| w.evidence.is_some_and(|e| e.estimate.abs() <= w.margin))
        .map(|w| w.first_step)
}

/// What the perturbation ensemble says, before the verdict is assembled.
struct RoundingParts {
    ensemble: usize,
    pairs: usize,
    test: TestOutcome,
    ratio: f64,
    band: NoiseBand,
    dbar: Vec<f64>,
    centred: Vec<f64>,
    scale: Vec<f64>,
}

/// Measures the observed `b − a` curves against the null `p − a` curves (paired runs only:
/// with different seeds, `b − a` carries seed noise the ensemble does not model).
fn rounding(
    data: &Aligned,
    settings: &CompareSettings,
    w0: usize,
    notes: &mut Vec<String>,
) -> Option<RoundingParts> {
    if data.p.len() < 2 {
        return None;
    }
    if !data.pairing.is_paired() {
        notes.push(
            "the perturbation ensemble needs runs that share seeds: no rounding finding for unpaired arms"
                .into(),
        );
        return None;
    }
    let u = data.usable;
    let obs: Vec<Vec<f64>> = (data.pairs.iter())
        .map(|&(i, j)| (0..u).map(|s| data.b[j][s] - data.a[i][s]).collect())
        .collect();
    let null = modes::null_curves(data);
    let late = |c: &Vec<f64>| mean(&c[w0..]);
    let (ms, es): (Vec<f64>, Vec<f64>) = (
        obs.iter().map(late).collect(),
        null.iter().map(late).collect(),
    );
    let test = modes::pooled_t(&ms, &es);
    let spread = sd(&es);
    // How far B sits from A, in roundings: measured from A itself (not from the ensemble's
    // centre, which a few members never put exactly at zero), so bitwise-equal pairs are 0×.
    let ratio = if spread > 0.0 {
        mean(&ms).abs() / spread
    } else if mean(&ms) == 0.0 {
        0.0
    } else {
        f64::INFINITY
    };
    let dbar: Vec<f64> = (0..u).map(|s| mean(&column(&obs, s))).collect();
    let (no, k) = (obs.len() as f64, null.len() as f64);
    let mut scale: Vec<f64> = (0..u)
        .map(|s| sd(&column(&null, s)) * (1.0 / no + 1.0 / k).sqrt())
        .collect();
    modes::floor_scale(&mut scale, &dbar);
    let centred: Vec<f64> = (0..u).map(|s| dbar[s] - mean(&column(&null, s))).collect();
    let band = modes::band(
        BandSource::PerturbationDifferences,
        &null,
        &obs,
        &data.steps[..u],
        settings.alpha,
    );
    Some(RoundingParts {
        ensemble: null.len(),
        pairs: obs.len(),
        test,
        ratio,
        band,
        dbar,
        centred,
        scale,
    })
}
