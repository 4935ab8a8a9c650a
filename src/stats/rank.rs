//! Rank tests: the Wilcoxon signed-rank test and the Mann–Whitney U test, both through their
//! normal approximations with tie corrections.
//!
//! Only the asymptotic paths are implemented. The exact null distributions are not: statrs' exact
//! Mann–Whitney is wrong when `len(x) ≤ len(y)` (returns p = 1), and lossdiff applies these tests
//! to per-step or per-seed samples large enough for the approximation (n ≳ 20).

use super::{check, p_value, std_normal, Alternative};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use statrs::distribution::ContinuousCDF;

/// Whether a ±½ continuity correction is applied to the normal approximation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Continuity {
    /// Shift the statistic ½ towards its mean (scipy's `use_continuity=True`/`correction=True`).
    Corrected,
    /// No correction.
    Uncorrected,
}

/// The outcome of a Wilcoxon signed-rank test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WilcoxonOutcome {
    /// scipy's statistic: `min(R+, R−)` for two-sided, `R+` for one-sided alternatives.
    pub statistic: f64,
    /// Sum of the ranks of the positive differences.
    pub r_plus: f64,
    /// Number of non-zero differences used.
    pub n: usize,
    /// The standardised statistic.
    pub z: f64,
    /// p-value.
    pub p_value: f64,
}

/// The outcome of a Mann–Whitney U test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MannWhitneyOutcome {
    /// `U` of the first sample (scipy's statistic): `R_x − nx(nx+1)/2`.
    pub u: f64,
    /// The standardised statistic.
    pub z: f64,
    /// p-value.
    pub p_value: f64,
}

/// Returns average (mid) ranks, 1-based, and `Σ (t³ − t)` over tie groups.
fn midranks(x: &[f64]) -> (Vec<f64>, f64) {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&i, &j| x[i].total_cmp(&x[j]));
    let mut ranks = vec![0.0; x.len()];
    let mut ties = 0.0;
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && x[idx[j + 1]] == x[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            ranks[k] = avg;
        }
        let t = (j - i + 1) as f64;
        ties += t * t * t - t;
        i = j + 1;
    }
    (ranks, ties)
}

/// Computes the Wilcoxon signed-rank test on paired differences `d` (normal approximation).
///
/// Zero differences are dropped before ranking (Wilcoxon's method); tied |d| get mid-ranks and
/// the variance is tie-corrected; no continuity correction. This matches
/// `scipy.stats.wilcoxon(d, zero_method="wilcox", correction=False, method="approx")`.
/// The exact small-sample distribution is not implemented.
///
/// # Formula
/// ```text
/// R+ = Σ_{dᵢ>0} rank|dᵢ|,   μ = n(n+1)/4,   σ² = n(n+1)(2n+1)/24 − Σ(t³−t)/48
/// z = (R+ − μ)/σ    (two-sided: scipy uses min(R+, R−), same |z|)
/// ```
///
/// # Errors
/// [`Error::NonFiniteInput`]; [`Error::TooFewObservations`] if fewer than 2 non-zero differences.
///
/// Reference: Wilcoxon (1945), Biometrics Bull. 1(6); Hollander, Wolfe & Chicken (2014),
/// *Nonparametric Statistical Methods*, §3.1.
///
/// Time: `O(n log n)`.
pub fn wilcoxon_signed_rank(d: &[f64], alternative: Alternative) -> Result<WilcoxonOutcome> {
    check("wilcoxon_signed_rank", d, 0)?;
    let nz: Vec<f64> = d.iter().copied().filter(|v| *v != 0.0).collect();
    if nz.len() < 2 {
        return Err(Error::TooFewObservations {
            statistic: "wilcoxon_signed_rank (non-zero differences)",
            needed: 2,
            got: nz.len(),
        });
    }
    let n = nz.len() as f64;
    let abs: Vec<f64> = nz.iter().map(|v| v.abs()).collect();
    let (ranks, ties) = midranks(&abs);
    let r_plus: f64 = nz
        .iter()
        .zip(&ranks)
        .filter(|(v, _)| **v > 0.0)
        .map(|(_, r)| r)
        .sum();
    let r_minus = n * (n + 1.0) / 2.0 - r_plus;
    let mu = n * (n + 1.0) / 4.0;
    let sd = (n * (n + 1.0) * (2.0 * n + 1.0) / 24.0 - ties / 48.0).sqrt();
    let z = (r_plus - mu) / sd;
    let statistic = match alternative {
        Alternative::TwoSided => r_plus.min(r_minus),
        _ => r_plus,
    };
    Ok(WilcoxonOutcome {
        statistic,
        r_plus,
        n: nz.len(),
        z,
        p_value: p_value(z, alternative, |t| std_normal().cdf(t)),
    })
}

/// Computes the Mann–Whitney U test of `x` against `y` (normal approximation, tie-corrected).
///
/// Matches `scipy.stats.mannwhitneyu(x, y, alternative=…, use_continuity=…, method="asymptotic")`.
///
/// # Formula
/// ```text
/// U = R_x − nx(nx+1)/2,   μ = nx·ny/2,   σ² = nx·ny/12 · ((N+1) − Σ(t³−t)/(N(N−1)))
/// z = (U − μ ∓ ½)/σ   (continuity shift towards μ when corrected)
/// ```
///
/// # Errors
/// [`Error::TooFewObservations`] if a sample is empty, [`Error::NonFiniteInput`],
/// [`Error::ZeroVariance`] if all values are tied.
///
/// Reference: Mann & Whitney (1947), Ann. Math. Statist. 18(1); scipy's `_mannwhitneyu.py`.
///
/// Time: `O(N log N)`.
pub fn mann_whitney_u(
    x: &[f64],
    y: &[f64],
    alternative: Alternative,
    continuity: Continuity,
) -> Result<MannWhitneyOutcome> {
    check("mann_whitney_u", x, 1)?;
    check("mann_whitney_u", y, 1)?;
    let (nx, ny) = (x.len() as f64, y.len() as f64);
    let all: Vec<f64> = x.iter().chain(y).copied().collect();
    let (ranks, ties) = midranks(&all);
    let u = ranks[..x.len()].iter().sum::<f64>() - nx * (nx + 1.0) / 2.0;
    let big_n = nx + ny;
    let var = nx * ny / 12.0 * ((big_n + 1.0) - ties / (big_n * (big_n - 1.0)));
    if var.is_nan() || var <= 0.0 {
        return Err(Error::ZeroVariance {
            statistic: "mann_whitney_u",
        });
    }
    let mu = nx * ny / 2.0;
    let c = match continuity {
        Continuity::Corrected => 0.5,
        Continuity::Uncorrected => 0.0,
    };
    // scipy: two-sided uses the larger of U and nx·ny − U; one-sided shifts toward the mean.
    let (z, p) = match alternative {
        Alternative::TwoSided => {
            let z = (u.max(nx * ny - u) - mu - c) / var.sqrt();
            (z, (2.0 * std_normal().cdf(-z)).min(1.0))
        }
        Alternative::Greater => {
            let z = (u - mu - c) / var.sqrt();
            // Upper tail as cdf(−z): `1 − cdf(z)` rounds every p below ~1e-16 to 0.
            (z, std_normal().cdf(-z))
        }
        Alternative::Less => {
            let z = (u - mu + c) / var.sqrt();
            (z, std_normal().cdf(z))
        }
    };
    Ok(MannWhitneyOutcome { u, z, p_value: p })
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    const D: [f64; 12] = [
        0.5, -0.2, 1.1, 0.0, 0.3, 0.3, -0.3, 0.8, 1.4, -0.6, 0.2, 0.9,
    ];
    const X: [f64; 9] = [1.83, 0.50, 1.62, 2.48, 1.68, 1.88, 1.55, 3.06, 1.30];
    // 3.14 is a data value here, not an approximation of π.
    #[allow(clippy::approx_constant)]
    const Y: [f64; 11] = [
        0.878, 0.647, 0.598, 2.05, 1.06, 1.29, 1.06, 3.14, 1.29, 1.5, 0.5,
    ];

    #[test]
    fn wilcoxon_against_scipy() {
        let r = wilcoxon_signed_rank(&D, Alternative::TwoSided).unwrap();
        // scipy.stats.wilcoxon(D, zero_method="wilcox", correction=False, method="approx")
        // -> statistic, pvalue  (one zero dropped; |0.3| tied three times, |0.2| twice)
        assert_relative_eq!(r.statistic, 12.5, max_relative = 1e-12);
        assert_relative_eq!(r.p_value, 0.06767094791360319, max_relative = 1e-9);
        assert_eq!(r.n, 11);
        let g = wilcoxon_signed_rank(&D, Alternative::Greater).unwrap();
        // same call with alternative="greater" -> statistic (R+), pvalue
        assert_relative_eq!(g.statistic, 53.5, max_relative = 1e-12);
        assert_relative_eq!(g.p_value, 0.033835473956801594, max_relative = 1e-9);
    }

    #[test]
    fn mann_whitney_against_scipy() {
        // scipy.stats.mannwhitneyu(X, Y, method="asymptotic")  (use_continuity=True, two-sided)
        let r = mann_whitney_u(&X, &Y, Alternative::TwoSided, Continuity::Corrected).unwrap();
        assert_relative_eq!(r.u, 73.5, max_relative = 1e-12);
        assert_relative_eq!(r.p_value, 0.07387296394549313, max_relative = 1e-9);
        // scipy.stats.mannwhitneyu(X, Y, method="asymptotic", use_continuity=False, alternative="less")
        let l = mann_whitney_u(&X, &Y, Alternative::Less, Continuity::Uncorrected).unwrap();
        assert_relative_eq!(l.p_value, 0.9660318523903866, max_relative = 1e-9);
        // scipy.stats.mannwhitneyu(Y, X, method="asymptotic", alternative="greater")
        // (len(x) > len(y) here; statrs' exact path is wrong for the other order)
        let g = mann_whitney_u(&Y, &X, Alternative::Greater, Continuity::Corrected).unwrap();
        assert_relative_eq!(g.p_value, 0.9688011360591712, max_relative = 1e-9);
    }

    #[test]
    fn all_zero_differences_are_an_error() {
        assert!(matches!(
            wilcoxon_signed_rank(&[0.0, 0.0, 1.0], Alternative::TwoSided),
            Err(Error::TooFewObservations { got: 1, .. })
        ));
        assert!(matches!(
            mann_whitney_u(&[1.0], &[1.0], Alternative::TwoSided, Continuity::Corrected),
            Err(Error::ZeroVariance { .. })
        ));
    }
}
