//! Change-point detection: Page's CUSUM (sequential, calibrated false-alarm rate) and PELT
//! (offline, exact optimal partition for a mean shift).
//!
//! The comparison engine dates a divergence with the CUSUM: it is the procedure one would run
//! online during training (stop at the alarm), its in-control average run length is known in
//! closed form (Siegmund 1985), and the onset estimate "first step after the statistic last left
//! zero" is the classical change-point estimate attached to it (Page 1954; Montgomery,
//! *Introduction to Statistical Quality Control*, §9.1.3). PELT is reported beside it as the
//! offline refinement: it uses the whole curve and can place several changes.

use super::check;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Reference value `k` in units of σ: tuned to detect a 1σ shift fastest (k = δ/2).
pub const CUSUM_DEFAULT_K: f64 = 0.5;
/// Decision interval `h` in units of σ: one-sided ARL₀ ≈ 938 steps, ARL for a 1σ shift ≈ 10.4
/// (Montgomery Table 9.3; Siegmund's approximation).
pub const CUSUM_DEFAULT_H: f64 = 5.0;

/// Which direction(s) the CUSUM watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CusumSide {
    /// Upward shifts only.
    Upper,
    /// Downward shifts only.
    Lower,
    /// Both (two one-sided CUSUMs; the in-control ARL halves).
    Both,
}

/// Direction of a detected shift.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shift {
    /// The mean went up.
    Up,
    /// The mean went down.
    Down,
}

/// CUSUM tuning, in units of the in-control standard deviation of the input.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CusumParams {
    /// Reference value (allowance) `k`.
    pub k: f64,
    /// Decision interval `h`.
    pub h: f64,
    /// Which direction(s) to watch.
    pub side: CusumSide,
}

impl Default for CusumParams {
    fn default() -> Self {
        CusumParams {
            k: CUSUM_DEFAULT_K,
            h: CUSUM_DEFAULT_H,
            side: CusumSide::Both,
        }
    }
}

/// The first alarm of a CUSUM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CusumAlarm {
    /// Index at which the statistic first exceeded `h`.
    pub alarm_index: usize,
    /// Estimated onset: the index after the statistic was last zero before the alarm.
    pub onset_index: usize,
    /// Which side alarmed.
    pub shift: Shift,
}

/// The CUSUM paths and the first alarm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CusumOutcome {
    /// `S⁺_t` (all zero when only the lower side is watched).
    pub upper: Vec<f64>,
    /// `S⁻_t` (all zero when only the upper side is watched).
    pub lower: Vec<f64>,
    /// The first alarm, if any.
    pub alarm: Option<CusumAlarm>,
}

/// Runs Page's tabular CUSUM on a standardised series `z` (in-control mean 0, sd 1).
///
/// # Formula
/// ```text
/// S⁺_t = max(0, S⁺_{t−1} + z_t − k),   S⁻_t = max(0, S⁻_{t−1} − z_t − k),   S₀ = 0
/// alarm at the first t with S_t > h;   onset = 1 + last t' < t with S_{t'} = 0 (0 if none)
/// ```
///
/// # Errors
/// [`Error::NonFiniteInput`]; [`Error::InvalidParameter`] if `k < 0` or `h ≤ 0`.
///
/// Reference: Page (1954), Biometrika 41(1/2); Montgomery (2009), *Introduction to Statistical
/// Quality Control*, 6th ed., §9.1 (tabular CUSUM, onset estimate `t − N⁺`).
///
/// Time: `O(n)`.
pub fn cusum(z: &[f64], params: CusumParams) -> Result<CusumOutcome> {
    check("cusum", z, 0)?;
    if !(params.k >= 0.0 && params.h > 0.0) {
        return Err(Error::InvalidParameter {
            name: "cusum k/h",
            expected: "k ≥ 0 and h > 0",
            got: format!("k = {}, h = {}", params.k, params.h),
        });
    }
    let watch_up = params.side != CusumSide::Lower;
    let watch_down = params.side != CusumSide::Upper;
    let (mut upper, mut lower) = (vec![0.0; z.len()], vec![0.0; z.len()]);
    let (mut sp, mut sm) = (0.0_f64, 0.0_f64);
    let (mut start_up, mut start_down) = (0, 0);
    let mut alarm = None;
    for (t, &x) in z.iter().enumerate() {
        if watch_up {
            sp = (sp + x - params.k).max(0.0);
        }
        if watch_down {
            sm = (sm - x - params.k).max(0.0);
        }
        upper[t] = sp;
        lower[t] = sm;
        if sp == 0.0 {
            start_up = t + 1;
        }
        if sm == 0.0 {
            start_down = t + 1;
        }
        if alarm.is_none() {
            // If both sides cross at once, the larger excursion names the shift.
            if sp > params.h && sp >= sm {
                alarm = Some((t, start_up, Shift::Up));
            } else if sm > params.h {
                alarm = Some((t, start_down, Shift::Down));
            }
        }
    }
    Ok(CusumOutcome {
        upper,
        lower,
        alarm: alarm.map(|(alarm_index, onset_index, shift)| CusumAlarm {
            alarm_index,
            onset_index,
            shift,
        }),
    })
}

/// Returns the SIC/BIC penalty `2 ln n` for one mean change in unit-variance data (R
/// `changepoint`'s `penalty = "SIC"` for `cpt.mean`).
pub fn sic_penalty(n: usize) -> f64 {
    2.0 * (n.max(2) as f64).ln()
}

/// Finds the optimal segmentation of `x` into constant-mean segments with PELT.
///
/// Returns the change points as the 0-based index where each new segment starts (empty for
/// no change). Scale `x` to unit noise variance first so that `penalty` is on the
/// `−2 log-likelihood` scale ([`sic_penalty`] is a sensible default).
///
/// # Formula
/// ```text
/// C(a..b) = Σ_{a≤i<b} (x_i − x̄_{a..b})²
/// F(t) = min_{τ ∈ R_t, t−τ ≥ m} F(τ) + C(τ..t) + β,   F(0) = −β
/// prune τ once F(τ) + C(τ..t) > F(t)   (effective from t + m, so the minimum segment length holds)
/// ```
///
/// # Errors
/// [`Error::NonFiniteInput`]; [`Error::InvalidParameter`] if `penalty < 0` or `min_seg_len == 0`;
/// [`Error::TooFewObservations`] if `n < min_seg_len`.
///
/// Reference: Killick, Fearnhead & Eckley (2012), JASA 107(500), Algorithm 2; R
/// `changepoint::cpt.mean(x, method = "PELT", penalty = "Manual", pen.value = β, minseglen = m)`.
///
/// Time: `O(n)` expected when changes are spread out, `O(n²)` worst case.
pub fn pelt_mean(x: &[f64], penalty: f64, min_seg_len: usize) -> Result<Vec<usize>> {
    check("pelt_mean", x, min_seg_len.max(1))?;
    if penalty.is_nan() || penalty < 0.0 || min_seg_len == 0 {
        return Err(Error::InvalidParameter {
            name: "pelt penalty/min_seg_len",
            expected: "penalty ≥ 0 and min_seg_len ≥ 1",
            got: format!("penalty = {penalty}, min_seg_len = {min_seg_len}"),
        });
    }
    let n = x.len();
    let (mut s1, mut s2) = (vec![0.0; n + 1], vec![0.0; n + 1]);
    for i in 0..n {
        s1[i + 1] = s1[i] + x[i];
        s2[i + 1] = s2[i] + x[i] * x[i];
    }
    let cost = |a: usize, b: usize| {
        let len = (b - a) as f64;
        let s = s1[b] - s1[a];
        (s2[b] - s2[a] - s * s / len).max(0.0)
    };
    let m = min_seg_len;
    let mut f = vec![f64::INFINITY; n + 1];
    let mut last = vec![0usize; n + 1];
    f[0] = -penalty;
    // Candidates with the time from which they may be dropped (None: not dominated yet).
    let mut cands: Vec<(usize, Option<usize>)> = vec![(0, None)];
    for t in m..=n {
        if t >= 2 * m {
            cands.push((t - m, None));
        }
        cands.retain(|&(_, drop_at)| drop_at.is_none_or(|d| d > t));
        for &(tau, _) in &cands {
            let v = f[tau] + cost(tau, t) + penalty;
            if v < f[t] {
                f[t] = v;
                last[t] = tau;
            }
        }
        for c in cands.iter_mut() {
            if c.1.is_none() && f[c.0] + cost(c.0, t) > f[t] {
                c.1 = Some(t + m);
            }
        }
    }
    let mut cps = Vec::new();
    let mut t = n;
    while t > 0 {
        t = last[t];
        if t > 0 {
            cps.push(t);
        }
    }
    cps.reverse();
    Ok(cps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(key: u64, n: usize) -> Vec<f64> {
        (0..n as u64).map(|i| crate::rng::normal(key, i)).collect()
    }

    #[test]
    fn cusum_hand_example_onset_is_step_after_last_zero() {
        // k = 0.5, h = 2: S⁺ = 0, 0.5, 0, 0.5, 1.5, 2.5 -> alarm at 5, last zero at 2, onset 3.
        let z = [0.0, 1.0, -1.0, 1.0, 1.5, 1.5];
        let p = CusumParams {
            k: 0.5,
            h: 2.0,
            side: CusumSide::Upper,
        };
        let r = cusum(&z, p).unwrap();
        assert_eq!(r.upper, vec![0.0, 0.5, 0.0, 0.5, 1.5, 2.5]);
        let a = r.alarm.unwrap();
        assert_eq!((a.alarm_index, a.onset_index, a.shift), (5, 3, Shift::Up));
    }

    /// Runs the one-sided upper CUSUM on N(δ, 1) until alarm; returns the run length.
    fn run_length(delta: f64, key: u64) -> usize {
        let mut s = 0.0_f64;
        for i in 0..100_000u64 {
            s = (s + crate::rng::normal(key, i) + delta - CUSUM_DEFAULT_K).max(0.0);
            if s > CUSUM_DEFAULT_H {
                return i as usize + 1;
            }
        }
        100_000
    }

    #[test]
    fn cusum_arl_against_siegmund_and_montgomery_table() {
        // Siegmund (1985) approximation, Montgomery (2009) eq. (9.20) and Table 9.3
        // (k = 0.5, h = 5): ARL₀ = (e^{2·0.5·6.166} − 2·0.5·6.166 − 1)/(2·0.25) = 938.2,
        // ARL for a 1σ shift = 10.4.
        let arl0 = (0..600).map(|r| run_length(0.0, 1000 + r)).sum::<usize>() as f64 / 600.0;
        // Run lengths are ~geometric: sd ≈ mean, so 600 runs give ~4 % error; allow 15 %.
        assert!((arl0 / 938.2 - 1.0).abs() < 0.15, "ARL0 {arl0}");
        let arl1 = (0..2000).map(|r| run_length(1.0, 5000 + r)).sum::<usize>() as f64 / 2000.0;
        assert!((arl1 / 10.4 - 1.0).abs() < 0.06, "ARL1 {arl1}");
    }

    #[test]
    fn cusum_two_sided_dates_a_downward_shift() {
        // Two-sided ARL₀ ≈ 470, so an in-control stretch of 60 steps rarely alarms (this one
        // doesn't); a 1.5σ shift is then caught within a few steps (ARL ≈ 5).
        let mut z = noise(3, 120);
        for v in &mut z[60..] {
            *v -= 1.5;
        }
        let a = cusum(&z, CusumParams::default()).unwrap().alarm.unwrap();
        assert_eq!(a.shift, Shift::Down);
        assert!((55..=66).contains(&a.onset_index), "{a:?}");
        assert!(a.alarm_index > 60 && a.alarm_index < 80, "{a:?}");
    }

    /// Optimal partitioning (Jackson et al. 2005): the exact O(n²) recursion PELT must reproduce.
    fn optimal_partitioning(x: &[f64], beta: f64, m: usize) -> Vec<usize> {
        let n = x.len();
        let cost = |a: usize, b: usize| {
            let s = &x[a..b];
            let mu = s.iter().sum::<f64>() / s.len() as f64;
            s.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>()
        };
        let mut f = vec![f64::INFINITY; n + 1];
        let mut last = vec![0; n + 1];
        f[0] = -beta;
        for t in m..=n {
            for tau in (0..=t - m).filter(|&tau| tau == 0 || tau >= m) {
                let v = f[tau] + cost(tau, t) + beta;
                if v < f[t] - 1e-9 {
                    f[t] = v;
                    last[t] = tau;
                }
            }
        }
        let (mut cps, mut t) = (vec![], n);
        while t > 0 {
            t = last[t];
            if t > 0 {
                cps.push(t);
            }
        }
        cps.reverse();
        cps
    }

    #[test]
    fn pelt_equals_optimal_partitioning() {
        // Killick et al. (2012), Theorem 3.2: PELT returns the optimal-partitioning solution.
        for key in 0..6u64 {
            let mut x = noise(key, 150);
            for v in &mut x[40..90] {
                *v += 1.0 + key as f64 * 0.3;
            }
            for v in &mut x[120..] {
                *v -= 0.8;
            }
            for m in [1, 5] {
                let beta = sic_penalty(x.len());
                assert_eq!(
                    pelt_mean(&x, beta, m).unwrap(),
                    optimal_partitioning(&x, beta, m),
                    "key {key}, m {m}"
                );
            }
        }
    }

    #[test]
    fn pelt_finds_known_mean_shifts() {
        let mut x = noise(42, 400);
        for v in &mut x[250..] {
            *v += 2.0;
        }
        let cps = pelt_mean(&x, sic_penalty(400), 5).unwrap();
        assert_eq!(cps.len(), 1, "{cps:?}");
        assert!((247..=253).contains(&cps[0]), "{cps:?}");
        assert!(pelt_mean(&noise(7, 400), sic_penalty(400), 5)
            .unwrap()
            .is_empty());
    }
}
