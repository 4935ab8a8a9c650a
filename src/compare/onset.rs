//! Dating a divergence: where the persistent departure began (the onset), and separately when a
//! monitor watching the run would have raised the alarm.
//!
//! The two differ by design. An alarm fires once enough evidence has piled up — steps after the
//! change for a small shift, many steps for a slow ramp — so reporting it as the onset made every
//! onset late (an lr schedule that parts at step 23 was dated 71). The onset is estimated instead
//! from the shape of the whole departure:
//!
//! 1. **Bitwise evidence first.** When every pair is bitwise identical up to step k, nothing can
//!    have diverged before k, and whatever made the curves differ acted at k: the onset is k.
//! 2. **Far outside the yardstick from the first step.** When the first few steps already sit
//!    more than `START_Z` yardstick spreads away, on either side (a dropout left on, a config
//!    slip, a 2 % bias),
//!    the departure began at the first step, whatever else happens later: a steep ramp at step 100
//!    would otherwise win the fit below and hide the departure that was there all along.
//! 3. **Otherwise a segmented regression** on the standardised difference curve `z` (difference
//!    minus the yardstick's centre, over its per-step spread), with two one-break models:
//!    a *step* (`z = 0` before τ, a constant after: an offset such as a platform bias) and a
//!    *hinge* (`z = 0` before τ, growing linearly after: a ramp such as an lr schedule that parts).
//!    Both are fitted by least squares at every τ in `O(n)` with prefix sums; the better fit
//!    names τ. This is the maximum-likelihood break under Gaussian noise (Hinkley 1971 for the
//!    step, Hudson 1966 for the hinge), and unlike a threshold crossing it does not depend on how
//!    fast evidence accumulates.
//!
//! The alarm is Page's CUSUM on the AR(1)-whitened curve from the search start (the first alarm in
//! the direction of the difference). PELT is kept as the offline multi-change view; on long
//! curves it runs on block means and each change is refined inside its block, so its cost stays
//! linear in the number of steps.

use super::statistical::{Onset, OnsetMethod};
use super::CompareSettings;
use crate::error::Result;
use crate::stats::{cusum, pelt_mean, sic_penalty};

/// Shortest PELT segment, in steps: a mean shift shorter than this is noise for our purposes.
const PELT_MIN_SEGMENT: usize = 5;

/// PELT is exact but can cost `O(n²)` on drifting curves; beyond this many points it runs on
/// block means (2,000 points: a few milliseconds).
const PELT_MAX_POINTS: usize = 2_000;

/// Largest AR(1) coefficient used to whiten the alarm's input.
const AR1_CAP: f64 = 0.97;

/// Fewest steps after a break for the segmented fit to consider it.
const MIN_TAIL: usize = 3;

/// How far (in yardstick spreads) each of the first `START_STEPS` steps must sit for the
/// departure to be dated at the first step. Five spreads on three consecutive steps: with the
/// per-step spread estimated from a 4-run ensemble (t with 3 df, P(|t| > 5) ≈ 1.5 %), noise
/// alone does it on three independent steps about once in 270,000 curves (correlated early steps
/// make it likelier; the calibration's null rows bound that empirically).
const START_Z: f64 = 5.0;
const START_STEPS: usize = 3;

/// Whitens a standardised curve with an AR(1) filter fitted on its first half (assumed mostly in
/// control), so the CUSUM sees roughly independent residuals (Harris & Ross 1991).
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

/// The break of the best one-break model (step or hinge) for `y` (oriented so the departure is
/// upward), as an index into `y`, with whether the step model won.
///
/// # Formula
/// ```text
/// step:  RSS(τ) = Σ_{t<τ} y² + Σ_{t≥τ} (y − ȳ_τ)²
/// hinge: RSS(τ) = Σ y² − (Σ_{t≥τ} y_t (t − τ + 1))² / Σ_{t≥τ} (t − τ + 1)²     (slope ≥ 0)
/// ```
pub(crate) fn segmented_break(y: &[f64]) -> Option<(usize, bool)> {
    let n = y.len();
    if n < MIN_TAIL + 1 {
        return None;
    }
    // Suffix sums: S0 = Σ y, S1 = Σ t·y, S2 = Σ y² over t ≥ τ.
    let (mut s0, mut s1, mut s2) = (vec![0.0; n + 1], vec![0.0; n + 1], vec![0.0; n + 1]);
    for t in (0..n).rev() {
        s0[t] = s0[t + 1] + y[t];
        s1[t] = s1[t + 1] + t as f64 * y[t];
        s2[t] = s2[t + 1] + y[t] * y[t];
    }
    let total = s2[0];
    let mut best: Option<(f64, usize, bool)> = None;
    for tau in 0..=n - MIN_TAIL {
        let m = (n - tau) as f64;
        // Step: the tail's mean removes s0²/m of its sum of squares (only upward departures).
        let step_gain = if s0[tau] > 0.0 {
            s0[tau] * s0[tau] / m
        } else {
            0.0
        };
        // Hinge: x_t = t − τ + 1 for t ≥ τ; Σ x y = S1 − (τ − 1) S0, Σ x² = m(m+1)(2m+1)/6.
        let sxy = s1[tau] - (tau as f64 - 1.0) * s0[tau];
        let sxx = m * (m + 1.0) * (2.0 * m + 1.0) / 6.0;
        let hinge_gain = if sxy > 0.0 { sxy * sxy / sxx } else { 0.0 };
        let (gain, is_step) = if step_gain >= hinge_gain {
            (step_gain, true)
        } else {
            (hinge_gain, false)
        };
        let rss = total - gain;
        // Ties go to the earliest break: the departure begins where it first fits.
        if best.is_none_or(|(b, _, _)| rss < b) {
            best = Some((rss, tau, is_step));
        }
    }
    best.and_then(|(_, tau, is_step)| (s0[tau] > 0.0).then_some((tau, is_step)))
}

/// PELT change points of `z`, on block means when `z` is long, refined inside each block.
fn pelt_points(z: &[f64]) -> Result<Vec<usize>> {
    if z.len() < PELT_MIN_SEGMENT {
        return Ok(Vec::new());
    }
    if z.len() <= PELT_MAX_POINTS {
        return pelt_mean(z, sic_penalty(z.len()), PELT_MIN_SEGMENT);
    }
    let block = z.len().div_ceil(PELT_MAX_POINTS);
    // Block means of unit-variance noise have variance 1/block; scale back to unit variance so the
    // penalty keeps its meaning.
    let means: Vec<f64> = z
        .chunks(block)
        .map(|c| c.iter().sum::<f64>() / c.len() as f64 * (c.len() as f64).sqrt())
        .collect();
    let coarse = pelt_mean(&means, sic_penalty(means.len()), PELT_MIN_SEGMENT)?;
    Ok(coarse
        .into_iter()
        .map(|i| refine(z, (i - 1) * block, ((i + 1) * block).min(z.len())))
        .collect())
}

/// The single mean-shift split of `z[lo..hi]` with the least squared error (`lo < split < hi`).
fn refine(z: &[f64], lo: usize, hi: usize) -> usize {
    let seg = &z[lo..hi];
    let total: f64 = seg.iter().sum();
    let n = seg.len() as f64;
    let (mut left, mut best) = (0.0, (f64::NEG_INFINITY, lo + seg.len() / 2));
    for (k, v) in seg.iter().enumerate().take(seg.len() - 1) {
        left += v;
        let (nl, nr) = ((k + 1) as f64, n - (k + 1) as f64);
        let right = total - left;
        // Between-segment sum of squares: larger is a better split.
        let gain = left * left / nl + right * right / nr;
        if gain > best.0 {
            best = (gain, lo + k + 1);
        }
    }
    best.1
}

/// Whether the curve is already far outside the yardstick on each of its first steps, on either
/// side: a dropout leak moves the first losses up or down at random before it settles into
/// slowing training down, and the change acted at step one all the same.
fn departs_from_the_start(z: &[f64]) -> bool {
    z.len() >= START_STEPS && z[..START_STEPS].iter().all(|v| v.abs() > START_Z)
}

/// Dates the departure of the standardised curve `z` (usable steps `steps`).
///
/// `identical_until`: index of the first step at which a *paired* A/B run differs in its bits,
/// when the runs are paired (the search starts there). `up`: the direction of the difference.
pub(super) fn onset(
    z: &[f64],
    steps: &[u64],
    identical_until: Option<usize>,
    window_start: usize,
    up: bool,
    settings: &CompareSettings,
) -> Result<Onset> {
    let start = identical_until.unwrap_or(0).min(z.len().saturating_sub(1));
    let tail = &z[start..];
    let oriented: Vec<f64> = tail.iter().map(|v| if up { *v } else { -*v }).collect();
    let alarm = if oriented.is_empty() {
        None
    } else {
        let c = cusum(&ar1_residuals(&oriented), settings.cusum)?;
        c.upper
            .iter()
            .position(|&v| v > settings.cusum.h)
            .map(|i| steps[start + i])
    };
    let pelt_steps = pelt_points(tail)?
        .into_iter()
        .map(|i| steps[start + i])
        .collect();
    let (step, method) = if start > 0 {
        (steps[start], OnsetMethod::FirstDifferingStep)
    } else if departs_from_the_start(tail) {
        (steps[0], OnsetMethod::FromFirstStep)
    } else {
        match segmented_break(&oriented) {
            Some((tau, true)) => (steps[start + tau], OnsetMethod::StepChange),
            Some((tau, false)) => (steps[start + tau], OnsetMethod::RampStart),
            None => (steps[window_start], OnsetMethod::WindowStart),
        }
    };
    Ok(Onset {
        step,
        method,
        cusum_alarm_step: alarm,
        pelt_steps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(n: usize, key: u64) -> Vec<f64> {
        (0..n as u64)
            .map(|i| 0.5 * crate::rng::normal(key, i))
            .collect()
    }

    #[test]
    fn a_constant_offset_from_the_first_step_is_dated_at_the_first_step() {
        let z: Vec<f64> = noise(300, 1).iter().map(|v| v + 3.0).collect();
        assert_eq!(segmented_break(&z), Some((0, true)));
    }

    #[test]
    fn a_ramp_is_dated_where_it_starts_not_where_it_becomes_visible() {
        let z: Vec<f64> = noise(300, 2)
            .iter()
            .enumerate()
            .map(|(t, v)| {
                v + if t >= 150 {
                    0.05 * (t - 150) as f64
                } else {
                    0.0
                }
            })
            .collect();
        let (tau, step) = segmented_break(&z).expect("a break");
        assert!(!step && tau.abs_diff(150) <= 6, "tau = {tau}");
    }

    #[test]
    fn a_late_step_is_dated_at_the_step() {
        let z: Vec<f64> = noise(200, 3)
            .iter()
            .enumerate()
            .map(|(t, v)| v + if t >= 160 { 4.0 } else { 0.0 })
            .collect();
        assert_eq!(segmented_break(&z), Some((160, true)));
    }

    /// A small offset present from the first step, then a steep ramp from step 100 (a config slip
    /// plus its compounding effect): the ramp fits best, but the departure began at step 0.
    #[test]
    fn an_offset_from_the_first_step_is_not_hidden_by_a_later_ramp() {
        let n = 300;
        let z: Vec<f64> = noise(n, 5)
            .iter()
            .enumerate()
            .map(|(t, v)| {
                v + 8.0
                    + if t >= 100 {
                        2.0 * (t - 100) as f64
                    } else {
                        0.0
                    }
            })
            .collect();
        let (tau, _) = segmented_break(&z).expect("a break");
        assert!(
            tau >= 90,
            "the one-break fit alone dates the ramp (tau = {tau})"
        );
        let steps: Vec<u64> = (1..=n as u64).collect();
        let o = onset(&z, &steps, Some(0), 240, true, &CompareSettings::default()).unwrap();
        assert_eq!((o.step, o.method), (1, OnsetMethod::FromFirstStep));
    }

    /// A dropout leak: the first losses jump far from the yardstick, down as often as up, before
    /// the run settles into being slower (B higher). The change acted at the first step.
    #[test]
    fn a_departure_that_starts_on_the_other_side_is_still_dated_at_the_first_step() {
        let n = 300;
        let z: Vec<f64> = noise(n, 7)
            .iter()
            .enumerate()
            .map(|(t, v)| v + if t < 5 { -9.0 } else { 0.2 * (t - 5) as f64 })
            .collect();
        let steps: Vec<u64> = (1..=n as u64).collect();
        let o = onset(&z, &steps, Some(0), 240, true, &CompareSettings::default()).unwrap();
        assert_eq!((o.step, o.method), (1, OnsetMethod::FromFirstStep));
    }

    /// Noise that touches five spreads once near the start is not a departure.
    #[test]
    fn one_large_early_value_does_not_anchor_the_onset() {
        let n = 300;
        let z: Vec<f64> = noise(n, 6)
            .iter()
            .enumerate()
            .map(|(t, v)| v + if t == 1 { 6.0 } else { 0.0 } + if t >= 150 { 4.0 } else { 0.0 })
            .collect();
        let steps: Vec<u64> = (1..=n as u64).collect();
        let o = onset(&z, &steps, Some(0), 240, true, &CompareSettings::default()).unwrap();
        assert_eq!((o.step, o.method), (151, OnsetMethod::StepChange));
    }

    #[test]
    fn pelt_on_long_curves_stays_near_the_true_change() {
        let n = 100_000;
        let z: Vec<f64> = noise(n, 4)
            .iter()
            .enumerate()
            .map(|(t, v)| v + if t >= 61_234 { 2.0 } else { 0.0 })
            .collect();
        let points = pelt_points(&z).expect("pelt runs");
        assert_eq!(points.len(), 1, "{points:?}");
        assert!(points[0].abs_diff(61_234) <= 3, "{points:?}");
    }
}
