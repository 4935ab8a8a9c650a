//! Lane 3: the statistical comparison — noise band, yardstick test, drift test, TOST, onset and
//! the seeds-needed power calculation. The decision rule is documented on the `compare` module.

use super::align::{Aligned, Pairing};
use super::{CompareSettings, Direction, Margin, Verdict, MIN_WINDOW_STEPS};
use crate::error::{Error, Result};
use crate::stats::{
    cusum, hac_mean_test, one_sample_ttest, pelt_mean, sic_penalty, std_normal, t_cdf, t_quantile,
    tost_from_estimate, tost_mean_hac, welch_ttest, Alternative, Bandwidth, HacMeanOutcome,
    Prewhiten, TestOutcome, TostOutcome,
};
use serde::{Deserialize, Serialize};
use statrs::distribution::ContinuousCDF;

/// Shortest PELT segment, in steps: a mean shift shorter than this is noise for our purposes.
const PELT_MIN_SEGMENT: usize = 5;
/// Standardising scales are floored at this fraction of their median, so steps where the
/// yardstick happens to be exactly zero (e.g. the first steps of a perturbation) do not explode.
const SCALE_FLOOR_OF_MEDIAN: f64 = 0.1;
/// Cap on the seeds-needed answer: beyond it, "more seeds" is not a practical remedy.
const MAX_SEEDS_NEEDED: f64 = 1e6;
/// Largest AR(1) coefficient used to whiten the onset curve (as in `stats::hac`).
const AR1_CAP: f64 = 0.97;

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

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

fn sd(x: &[f64]) -> f64 {
    if x.len() < 2 {
        return 0.0;
    }
    let m = mean(x);
    (x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (x.len() - 1) as f64).sqrt()
}

fn column(curves: &[Vec<f64>], s: usize) -> Vec<f64> {
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

/// TOST with a fallback for zero spread: equivalent (p = 0) iff the estimate is inside the margin.
fn tost_or_exact(
    r: Result<TostOutcome>,
    est: f64,
    margin: f64,
    notes: &mut Vec<String>,
) -> Result<(Option<TostOutcome>, f64)> {
    match r {
        Ok(t) => Ok((Some(t), t.p_value)),
        Err(Error::ZeroVariance { .. }) | Err(Error::InvalidParameter { name: "se", .. }) => {
            let p = if est.abs() < margin { 0.0 } else { 1.0 };
            notes.push(format!(
                "late-window difference has no spread: TOST p-value set to {p} (|{est:e}| vs margin {margin:e})"
            ));
            Ok((None, p))
        }
        Err(e) => Err(e),
    }
}

fn tost_summaries(m: &[f64], margin: f64) -> Result<TostOutcome> {
    let n = m.len() as f64;
    let se = sd(m) / n.sqrt();
    if se == 0.0 {
        return Err(Error::ZeroVariance {
            statistic: "tost (summaries)",
        });
    }
    tost_from_estimate(mean(m), se, n - 1.0, margin)
}

/// Pooled two-sample t-test of observed vs null summaries (exact under exchangeability).
fn pooled_t(obs: &[f64], null: &[f64]) -> TestOutcome {
    let (no, nn) = (obs.len() as f64, null.len() as f64);
    let df = no + nn - 2.0;
    let ss = |x: &[f64]| {
        let m = mean(x);
        x.iter().map(|v| (v - m) * (v - m)).sum::<f64>()
    };
    let se = ((ss(obs) + ss(null)) / df).sqrt() * (1.0 / no + 1.0 / nn).sqrt();
    let estimate = mean(obs) - mean(null);
    let (statistic, p_value) = if se > 0.0 {
        let t = estimate / se;
        let cdf = t_cdf(-t.abs(), df);
        (t, (2.0 * cdf).min(1.0))
    } else {
        (f64::NAN, if estimate != 0.0 { 0.0 } else { 1.0 })
    };
    TestOutcome {
        estimate,
        se,
        statistic: if statistic.is_finite() {
            statistic
        } else {
            0.0
        },
        df,
        p_value,
    }
}

/// Floors a per-step scale at a fraction of its median positive value (or of `|d|` if all zero).
fn floor_scale(s: &mut [f64], d: &[f64]) {
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
    dd.sort_by(f64::total_cmp);
    let med = dd[dd.len() / 2];
    let mut dev: Vec<f64> = dd.iter().map(|v| (v - med).abs()).collect();
    dev.sort_by(f64::total_cmp);
    dev[dev.len() / 2] / (0.674_489_75 * std::f64::consts::SQRT_2)
}

/// Whitens a standardised curve with an AR(1) filter fitted on its first half (assumed mostly
/// in control), so the CUSUM sees roughly independent residuals (Harris & Ross 1991, "Statistical
/// process control procedures for correlated observations", Can. J. Chem. Eng. 69).
fn ar1_residuals(z: &[f64]) -> Vec<f64> {
    let head = &z[..(z.len() / 2).max(3).min(z.len())];
    let num: f64 = head.windows(2).map(|w| w[0] * w[1]).sum();
    let den: f64 = head[..head.len() - 1].iter().map(|v| v * v).sum();
    let rho = if den > 0.0 {
        (num / den).clamp(0.0, AR1_CAP)
    } else {
        0.0
    };
    let mut r: Vec<f64> = std::iter::once(z[0])
        .chain(z.windows(2).map(|w| w[1] - rho * w[0]))
        .collect();
    let mut dev: Vec<f64> = r[1..head.len()].iter().map(|v| v.abs()).collect();
    dev.sort_by(f64::total_cmp);
    let sigma = dev.get(dev.len() / 2).map_or(0.0, |m| m / 0.674_489_75);
    if sigma > 0.0 && sigma.is_finite() {
        r.iter_mut().for_each(|v| *v /= sigma);
    }
    r
}

/// Returns `(onset, alarm)` indices of the last excursion of a CUSUM path that crossed `h`.
fn last_excursion(path: &[f64], h: f64) -> Option<(usize, usize)> {
    let (mut found, mut start, mut crossed) = (None, 0, None);
    for (t, &v) in path.iter().enumerate() {
        if v == 0.0 {
            start = t + 1;
            crossed = None;
        } else if v > h && crossed.is_none() {
            crossed = Some(t);
            found = Some((start, t));
        }
    }
    found
}

fn onset(
    z: &[f64],
    steps: &[u64],
    window_start: usize,
    up: bool,
    settings: &CompareSettings,
) -> Result<Onset> {
    let r = ar1_residuals(z);
    let c = cusum(&r, settings.cusum)?;
    let path = if up { &c.upper } else { &c.lower };
    let excursion = last_excursion(path, settings.cusum.h);
    let pelt: Vec<u64> = pelt_mean(z, sic_penalty(z.len()), PELT_MIN_SEGMENT)?
        .into_iter()
        .map(|i| steps[i])
        .collect();
    let (step, method) = match (excursion, pelt.first()) {
        (Some((o, _)), _) => (steps[o.min(steps.len() - 1)], OnsetMethod::Cusum),
        (None, Some(&s)) => (s, OnsetMethod::Pelt),
        (None, None) => (steps[window_start], OnsetMethod::WindowStart),
    };
    Ok(Onset {
        step,
        method,
        cusum_alarm_step: excursion.map(|(_, a)| steps[a]),
        pelt_steps: pelt,
    })
}

fn band(
    source: BandSource,
    null: &[Vec<f64>],
    observed: &[Vec<f64>],
    steps: &[u64],
    alpha: f64,
) -> NoiseBand {
    let k = null.len();
    let tq = t_quantile(1.0 - alpha / 2.0, (k - 1) as f64);
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

/// Intermediate results of one mode, before the common assembly.
struct ModeResult {
    yardstick: Yardstick,
    band: Option<NoiseBand>,
    yardstick_test: Option<TestOutcome>,
    late_difference: f64,
    tost: (Option<TostOutcome>, f64),
    /// The mean difference curve, tested for drift (H0: mean 0).
    dbar: Vec<f64>,
    /// The curve the onset is dated on (the difference minus the yardstick's mean curve).
    onset_curve: Vec<f64>,
    /// Per-step standardisation scale of `onset_curve`.
    scale: Vec<f64>,
    seeds_needed: Option<SeedsNeeded>,
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
        perturbation_mode(data, settings, w0, margin, &mut notes)?
    } else if data.a.len() >= 2 && data.b.len() >= 2 {
        seeds_mode(data, settings, w0, margin, &mut notes)?
    } else {
        if data.p.len() == 1 {
            notes.push("one perturbation trace cannot estimate spread: single-curve mode".into());
        }
        single_mode(data, w0, margin, &mut notes)?
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
        onset: onset(&z, steps, w0, m.late_difference >= 0.0, settings)?,
        seeds_needed: m.seeds_needed,
        notes,
    })
}

fn perturbation_mode(
    data: &Aligned,
    settings: &CompareSettings,
    w0: usize,
    margin: f64,
    notes: &mut Vec<String>,
) -> Result<ModeResult> {
    let u = data.usable;
    let obs: Vec<Vec<f64>> = (data.pairs.iter())
        .map(|&(i, j)| (0..u).map(|s| data.b[j][s] - data.a[i][s]).collect())
        .collect();
    let null: Vec<Vec<f64>> = (data.p.iter().zip(&data.p_ref))
        .map(|(p, &r)| (0..u).map(|s| p[s] - data.a[r][s]).collect())
        .collect();
    let late = |c: &Vec<f64>| mean(&c[w0..]);
    let (ms, es): (Vec<f64>, Vec<f64>) = (
        obs.iter().map(late).collect(),
        null.iter().map(late).collect(),
    );
    let yt = pooled_t(&ms, &es);
    let dbar: Vec<f64> = (0..u).map(|s| mean(&column(&obs, s))).collect();
    let (no, k) = (obs.len() as f64, null.len() as f64);
    let mut scale: Vec<f64> = (0..u)
        .map(|s| sd(&column(&null, s)) * (1.0 / no + 1.0 / k).sqrt())
        .collect();
    floor_scale(&mut scale, &dbar);
    // The onset is measured against the null's mean curve, so subtract it before standardising.
    let centred: Vec<f64> = (0..u).map(|s| dbar[s] - mean(&column(&null, s))).collect();
    let est = mean(&ms);
    let tost = if ms.len() >= 2 {
        tost_or_exact(tost_summaries(&ms, margin), est, margin, notes)?
    } else {
        let r = tost_mean_hac(
            &dbar[w0..],
            margin,
            Bandwidth::Andrews1991Ar1,
            Prewhiten::Ar1,
        );
        tost_or_exact(r, mean(&dbar[w0..]), margin, notes)?
    };
    let spread = if ms.len() >= 2 { sd(&ms) } else { sd(&es) };
    Ok(ModeResult {
        yardstick: Yardstick::Perturbation {
            ensemble: null.len(),
            pairs: obs.len(),
        },
        band: Some(band(
            BandSource::PerturbationDifferences,
            &null,
            &obs,
            &data.steps[..u],
            settings.alpha,
        )),
        yardstick_test: Some(yt),
        late_difference: est,
        tost,
        dbar,
        onset_curve: centred,
        scale,
        seeds_needed: seeds_needed(spread, est, margin, settings.alpha, settings.power, false),
    })
}

fn seeds_mode(
    data: &Aligned,
    settings: &CompareSettings,
    w0: usize,
    margin: f64,
    notes: &mut Vec<String>,
) -> Result<ModeResult> {
    let u = data.usable;
    let late = |c: &Vec<f64>| mean(&c[w0..u]);
    let (sa, sb): (Vec<f64>, Vec<f64>) = (
        data.a.iter().map(late).collect(),
        data.b.iter().map(late).collect(),
    );
    let paired = data.pairing == Pairing::InitSeed && data.pairs.len() >= 2;
    let (test, tost, est, spread) = if paired {
        let m: Vec<f64> = data.pairs.iter().map(|&(i, j)| sb[j] - sa[i]).collect();
        let est = mean(&m);
        let t = one_sample_ttest(&m, 0.0, Alternative::TwoSided);
        (
            t,
            tost_or_exact(tost_summaries(&m, margin), est, margin, notes)?,
            est,
            sd(&m),
        )
    } else {
        let est = mean(&sb) - mean(&sa);
        let t = welch_ttest(&sb, &sa, Alternative::TwoSided);
        let r = t.and_then(|t| tost_from_estimate(t.estimate, t.se, t.df, margin));
        let t = welch_ttest(&sb, &sa, Alternative::TwoSided);
        let pooled = ((sd(&sa).powi(2) + sd(&sb).powi(2)) / 2.0).sqrt();
        (t, tost_or_exact(r, est, margin, notes)?, est, pooled)
    };
    let yardstick_test = match test {
        Ok(t) => t,
        Err(Error::ZeroVariance { .. }) => {
            notes.push("seed summaries have no spread: yardstick p-value set by rule".into());
            TestOutcome {
                estimate: est,
                se: 0.0,
                statistic: 0.0,
                df: 1.0,
                p_value: if est != 0.0 { 0.0 } else { 1.0 },
            }
        }
        Err(e) => return Err(e),
    };
    let (ka, kb) = (data.a.len() as f64, data.b.len() as f64);
    let dbar: Vec<f64> = (0..u)
        .map(|s| mean(&column(&data.b, s)) - mean(&column(&data.a, s)))
        .collect();
    let mut scale: Vec<f64> = (0..u)
        .map(|s| {
            (sd(&column(&data.a, s)).powi(2) / ka + sd(&column(&data.b, s)).powi(2) / kb).sqrt()
        })
        .collect();
    floor_scale(&mut scale, &dbar);
    let observed: Vec<Vec<f64>> = data.b.iter().map(|c| c[..u].to_vec()).collect();
    let null: Vec<Vec<f64>> = data.a.iter().map(|c| c[..u].to_vec()).collect();
    Ok(ModeResult {
        yardstick: Yardstick::Seeds {
            a: data.a.len(),
            b: data.b.len(),
            paired,
        },
        band: Some(band(
            BandSource::SeedsOfA,
            &null,
            &observed,
            &data.steps[..u],
            settings.alpha,
        )),
        yardstick_test: Some(yardstick_test),
        late_difference: est,
        tost,
        onset_curve: dbar.clone(),
        dbar,
        scale,
        seeds_needed: seeds_needed(spread, est, margin, settings.alpha, settings.power, !paired),
    })
}

fn single_mode(
    data: &Aligned,
    w0: usize,
    margin: f64,
    notes: &mut Vec<String>,
) -> Result<ModeResult> {
    let u = data.usable;
    let (i, j) = data.pairs[0];
    if data.a.len() > 1 || data.b.len() > 1 {
        notes.push(format!(
            "single-curve mode on pair ({i}, {j}): an arm has one trace and there is no perturbation ensemble"
        ));
    }
    let d: Vec<f64> = (0..u).map(|s| data.b[j][s] - data.a[i][s]).collect();
    let est = mean(&d[w0..]);
    let r = tost_mean_hac(&d[w0..], margin, Bandwidth::Andrews1991Ar1, Prewhiten::Ar1);
    let tost = tost_or_exact(r, est, margin, notes)?;
    let mut scale = vec![robust_scale(&d); u];
    floor_scale(&mut scale, &d);
    Ok(ModeResult {
        yardstick: Yardstick::SingleCurve,
        band: None,
        yardstick_test: None,
        late_difference: est,
        tost,
        onset_curve: d.clone(),
        dbar: d,
        scale,
        seeds_needed: None,
    })
}
