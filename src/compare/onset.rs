//! Dating a divergence: CUSUM on AR(1)-whitened standardised differences (last excursion that
//! crossed the threshold, in the direction of the difference), with PELT alongside.

use super::statistical::{Onset, OnsetMethod};
use super::CompareSettings;
use crate::error::Result;
use crate::stats::{cusum, pelt_mean, sic_penalty};

/// Shortest PELT segment, in steps: a mean shift shorter than this is noise for our purposes.
const PELT_MIN_SEGMENT: usize = 5;

/// Largest AR(1) coefficient used to whiten the onset curve (as in `stats::hac`).
const AR1_CAP: f64 = 0.97;

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

pub(super) fn onset(
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
