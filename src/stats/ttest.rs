//! t-tests (Welch, paired, one-sample) and the two one-sided tests (TOST) for equivalence.

use super::{check, mean, p_value, sample_var, t_cdf, Alternative};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// The outcome of a test with a t (or z) statistic.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TestOutcome {
    /// The estimated effect (difference of means, or mean difference).
    pub estimate: f64,
    /// Standard error of the estimate.
    pub se: f64,
    /// The test statistic `estimate / se` (after subtracting the null value).
    pub statistic: f64,
    /// Degrees of freedom of the reference t distribution (`inf` for a normal reference).
    pub df: f64,
    /// The p-value for the requested alternative.
    pub p_value: f64,
}

/// The outcome of a TOST equivalence test against the bounds `[−margin, +margin]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TostOutcome {
    /// The estimated effect.
    pub estimate: f64,
    /// Its standard error.
    pub se: f64,
    /// Degrees of freedom.
    pub df: f64,
    /// The equivalence margin (bounds are `±margin`).
    pub margin: f64,
    /// p-value of `H0: effect ≤ −margin` (statistic `(estimate + margin)/se`, upper tail).
    pub p_lower: f64,
    /// p-value of `H0: effect ≥ +margin` (statistic `(estimate − margin)/se`, lower tail).
    pub p_upper: f64,
    /// The TOST p-value, `max(p_lower, p_upper)`: equivalence is shown at level α when `p_value < α`.
    pub p_value: f64,
}

fn outcome(estimate: f64, se: f64, df: f64, alternative: Alternative) -> Result<TestOutcome> {
    if se <= 0.0 || !se.is_finite() {
        return Err(Error::ZeroVariance {
            statistic: "t-test",
        });
    }
    let statistic = estimate / se;
    Ok(TestOutcome {
        estimate,
        se,
        statistic,
        df,
        p_value: p_value(statistic, alternative, |t| t_cdf(t, df)),
    })
}

/// Computes Welch's two-sample t-test for a difference of means with unequal variances.
///
/// # Formula
/// ```text
/// t  = (x̄ − ȳ) / sqrt(s²x/nx + s²y/ny)
/// df = (s²x/nx + s²y/ny)² / ((s²x/nx)²/(nx−1) + (s²y/ny)²/(ny−1))     (Welch–Satterthwaite)
/// ```
///
/// # Errors
/// [`Error::TooFewObservations`] if either sample has fewer than 2 values,
/// [`Error::NonFiniteInput`] for NaN/inf, [`Error::ZeroVariance`] if both samples are constant.
///
/// Reference: Welch (1947), Biometrika 34; `scipy.stats.ttest_ind(x, y, equal_var=False)`.
///
/// Time: `O(nx + ny)`.
///
/// # Examples
/// ```ignore
/// // Crate-private, so not compiled as a doctest; the unit tests below make this call.
/// use lossdiff::stats::{welch_ttest, Alternative};
/// let r = welch_ttest(&[3.1, 2.9, 3.4, 3.0], &[2.7, 3.5, 2.2, 3.9], Alternative::TwoSided)?;
/// assert!(r.p_value > 0.05 && r.df < 6.0);
/// # Ok::<(), lossdiff::Error>(())
/// ```
pub fn welch_ttest(x: &[f64], y: &[f64], alternative: Alternative) -> Result<TestOutcome> {
    check("welch_ttest", x, 2)?;
    check("welch_ttest", y, 2)?;
    let (vx, vy) = (
        sample_var(x) / x.len() as f64,
        sample_var(y) / y.len() as f64,
    );
    let df =
        (vx + vy).powi(2) / (vx * vx / (x.len() as f64 - 1.0) + vy * vy / (y.len() as f64 - 1.0));
    outcome(mean(x) - mean(y), (vx + vy).sqrt(), df, alternative)
}

/// Computes the one-sample t-test of `H0: mean = mu`.
///
/// # Formula
/// ```text
/// t = (x̄ − μ0) / (s / sqrt(n)),   df = n − 1
/// ```
///
/// # Errors
/// [`Error::TooFewObservations`] for `n < 2`, [`Error::NonFiniteInput`], [`Error::ZeroVariance`].
///
/// Reference: `scipy.stats.ttest_1samp(x, mu)`.
pub fn one_sample_ttest(x: &[f64], mu: f64, alternative: Alternative) -> Result<TestOutcome> {
    check("one_sample_ttest", x, 2)?;
    let n = x.len() as f64;
    outcome(
        mean(x) - mu,
        (sample_var(x) / n).sqrt(),
        n - 1.0,
        alternative,
    )
}

/// Computes the TOST equivalence test from an estimate, its standard error and df.
///
/// # Formula
/// ```text
/// p_lower = P(T_df ≥ (est + Δ)/se),   p_upper = P(T_df ≤ (est − Δ)/se),   p = max(p_lower, p_upper)
/// ```
///
/// # Errors
/// [`Error::InvalidParameter`] if `margin` is negative or not finite, `df ≤ 0`, or `se` is not
/// positive and finite.
///
/// Reference: Schuirmann (1987), J. Pharmacokinet. Biopharm. 15(6); Lakens (2017), Soc. Psychol.
/// Personal. Sci. 8(4). Matches `statsmodels.stats.weightstats.ttost_ind`/`ttost_paired`.
pub fn tost_from_estimate(estimate: f64, se: f64, df: f64, margin: f64) -> Result<TostOutcome> {
    if !(margin >= 0.0 && margin.is_finite()) {
        return Err(Error::InvalidParameter {
            name: "margin",
            expected: "a finite value ≥ 0",
            got: margin.to_string(),
        });
    }
    let valid = se > 0.0 && se.is_finite() && df > 0.0 && estimate.is_finite();
    if !valid {
        return Err(Error::InvalidParameter {
            name: "se",
            expected: "a finite estimate, se > 0 and df > 0",
            got: format!("estimate {estimate}, se {se}, df {df}"),
        });
    }
    // The upper tail as the CDF of the negated statistic: `1 − cdf(x)` keeps no digits once
    // cdf(x) is within 1e-16 of 1 (p = 4.18e-15 came out 4.22e-15), and made TOST of B − A
    // and of A − B disagree.
    let p_lower = t_cdf(-(estimate + margin) / se, df);
    let p_upper = t_cdf((estimate - margin) / se, df);
    Ok(TostOutcome {
        estimate,
        se,
        df,
        margin,
        p_lower,
        p_upper,
        p_value: p_lower.max(p_upper),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    const X: [f64; 8] = [3.1, 2.9, 3.4, 3.0, 3.3, 2.8, 3.2, 3.05];
    const Y: [f64; 6] = [2.7, 3.5, 2.2, 3.9, 2.6, 3.1];

    #[test]
    fn tost_tails_mirror_and_keep_tiny_p_values() {
        // Far inside the margin both one-sided p-values are ~1e-16; `1 − cdf` rounded the lower
        // one to a different number (found by tests/properties.rs swapping A and B).
        let r = tost_from_estimate(0.0, 1.0, 100.0, 9.0).unwrap();
        assert!(r.p_lower > 0.0 && r.p_lower < 1e-12, "{}", r.p_lower);
        assert_eq!(r.p_lower, r.p_upper);
        let (a, b) = (
            tost_from_estimate(0.3, 0.1, 12.0, 1.0).unwrap(),
            tost_from_estimate(-0.3, 0.1, 12.0, 1.0).unwrap(),
        );
        assert_eq!((a.p_lower, a.p_upper), (b.p_upper, b.p_lower));
    }

    #[test]
    fn welch_against_scipy() {
        let r = welch_ttest(&X, &Y, Alternative::TwoSided).unwrap();
        // scipy.stats.ttest_ind(X, Y, equal_var=False)
        // -> statistic=0.35340289917849155, pvalue=0.7363247417186388, df=5.776483976750498
        assert_relative_eq!(r.statistic, 0.35340289917849155, max_relative = 1e-10);
        assert_relative_eq!(r.p_value, 0.7363247417186388, max_relative = 1e-8);
        assert_relative_eq!(r.df, 5.776483976750498, max_relative = 1e-10);
        let g = welch_ttest(&X, &Y, Alternative::Greater).unwrap();
        // scipy.stats.ttest_ind(X, Y, equal_var=False, alternative="greater").pvalue
        assert_relative_eq!(g.p_value, 0.3681623708593194, max_relative = 1e-8);
    }

    #[test]
    fn one_sample_against_scipy() {
        let r = one_sample_ttest(&X, 3.0, Alternative::TwoSided).unwrap();
        // scipy.stats.ttest_1samp(X, 3.0) -> statistic, pvalue
        assert_relative_eq!(r.statistic, 1.3206763594884356, max_relative = 1e-10);
        assert_relative_eq!(r.p_value, 0.22814736607350866, max_relative = 1e-8);
    }

    #[test]
    fn errors_are_typed() {
        assert!(matches!(
            welch_ttest(&[1.0], &Y, Alternative::TwoSided),
            Err(Error::TooFewObservations {
                needed: 2,
                got: 1,
                ..
            })
        ));
        assert!(matches!(
            welch_ttest(&[1.0, f64::NAN], &Y, Alternative::TwoSided),
            Err(Error::NonFiniteInput { index: 1, .. })
        ));
        assert!(matches!(
            welch_ttest(&[1.0, 1.0], &[2.0, 2.0], Alternative::TwoSided),
            Err(Error::ZeroVariance { .. })
        ));
        assert!(matches!(
            tost_from_estimate(0.0, 1.0, 3.0, -1.0),
            Err(Error::InvalidParameter { name: "margin", .. })
        ));
    }
}
