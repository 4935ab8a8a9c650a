//! The three yardstick modes of the statistical lane (perturbation ensemble, seed ensembles,
//! single curve): each turns aligned curves into the summaries, tests and curves the lane needs.
//! Also dates a divergence: CUSUM on AR(1)-whitened standardised differences (last excursion that
//! crossed the threshold, in the direction of the difference), with PELT alongside.

use super::align::{Aligned, Pairing};
use super::statistical::{
    column, mean, sd, seeds_needed, BandSource, NoiseBand, Onset, OnsetMethod, SeedsNeeded,
    Yardstick,
};
use super::CompareSettings;
use crate::error::{Error, Result};
use crate::stats::{
    cusum, median, one_sample_ttest, pelt_mean, sic_penalty, t_cdf, t_quantile, tost_from_estimate,
    tost_mean_hac, welch_ttest, Alternative, Bandwidth, Prewhiten, TestOutcome, TostOutcome,
};

/// Standardising scales are floored at this fraction of their median, so steps where the
/// yardstick happens to be exactly zero (e.g. the first steps of a perturbation) do not explode.
const SCALE_FLOOR_OF_MEDIAN: f64 = 0.1;

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
    let med = median(&mut dd);
    let mut dev: Vec<f64> = dd.iter().map(|v| (v - med).abs()).collect();
    median(&mut dev) / (0.674_489_75 * std::f64::consts::SQRT_2)
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
pub(super) struct ModeResult {
    pub(super) yardstick: Yardstick,
    pub(super) band: Option<NoiseBand>,
    pub(super) yardstick_test: Option<TestOutcome>,
    pub(super) late_difference: f64,
    pub(super) tost: (Option<TostOutcome>, f64),
    /// The mean difference curve, tested for drift (H0: mean 0).
    pub(super) dbar: Vec<f64>,
    /// The curve the onset is dated on (the difference minus the yardstick's mean curve).
    pub(super) onset_curve: Vec<f64>,
    /// Per-step standardisation scale of `onset_curve`.
    pub(super) scale: Vec<f64>,
    pub(super) seeds_needed: Option<SeedsNeeded>,
}

pub(super) fn perturbation_mode(
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

pub(super) fn seeds_mode(
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

pub(super) fn single_mode(
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
}
