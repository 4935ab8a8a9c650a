//! Pure statistical routines used by the comparison engine: t-tests, equivalence (TOST) tests,
//! multiple-testing adjustments, long-run (HAC) variance, and change-point detection (CUSUM,
//! PELT). Crate-private: routines nothing calls are deleted, not kept "just in case".
//!
//! Every routine is a free function over `&[f64]` returning a named result struct, and each is
//! checked in its tests against published reference values (scipy, statsmodels, R `p.adjust`,
//! textbook tables). This module knows nothing about traces, steps or verdicts: that is `compare`.
//!
//! Inputs must be finite; a NaN or infinity is an [`Error::NonFiniteInput`], never silently dropped.

mod changepoint;
mod hac;
mod multiple;
mod ttest;

pub use changepoint::{cusum, pelt_mean, sic_penalty, CusumParams};
pub use hac::{hac_mean_test, Bandwidth, HacMeanOutcome, Prewhiten};
pub use multiple::{benjamini_hochberg, holm};
pub use ttest::{one_sample_ttest, tost_from_estimate, welch_ttest, TestOutcome, TostOutcome};

use crate::error::{Error, Result};
use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

/// Which alternative hypothesis a test is against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Alternative {
    /// The location differs in either direction.
    TwoSided,
    /// The first sample's location is smaller.
    Less,
    /// The first sample's location is greater.
    Greater,
}

/// Returns the arithmetic mean (NaN for an empty slice; callers check lengths first).
pub(crate) fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

/// Returns the median, averaging the two middle values of an even count (NaN for an empty
/// slice); sorts `x` in place.
///
/// The upper middle value alone is not the median of the negated series, which made comparing
/// A with B and B with A standardise their difference curves differently.
pub(crate) fn median(x: &mut [f64]) -> f64 {
    x.sort_by(f64::total_cmp);
    let n = x.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => x[n / 2],
        _ => (x[n / 2 - 1] + x[n / 2]) / 2.0,
    }
}

/// Returns the unbiased sample variance (divisor `n − 1`).
pub(crate) fn sample_var(x: &[f64]) -> f64 {
    let m = mean(x);
    x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (x.len() as f64 - 1.0)
}

/// Checks that `x` has at least `needed` values, all finite.
pub(crate) fn check(statistic: &'static str, x: &[f64], needed: usize) -> Result<()> {
    if x.len() < needed {
        return Err(Error::TooFewObservations {
            statistic,
            needed,
            got: x.len(),
        });
    }
    match x.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(Error::NonFiniteInput {
            statistic,
            index,
            value: x[index],
        }),
        None => Ok(()),
    }
}

/// Returns `P(T ≤ t)` for Student's t with `df` degrees of freedom (normal when `df` is infinite).
pub(crate) fn t_cdf(t: f64, df: f64) -> f64 {
    if df.is_infinite() {
        return std_normal().cdf(t);
    }
    StudentsT::new(0.0, 1.0, df)
        .expect("df > 0 is checked by every caller")
        .cdf(t)
}

/// Returns the `p` quantile of Student's t with `df` degrees of freedom.
pub(crate) fn t_quantile(p: f64, df: f64) -> f64 {
    if df.is_infinite() {
        return std_normal().inverse_cdf(p);
    }
    StudentsT::new(0.0, 1.0, df)
        .expect("df > 0 is checked by every caller")
        .inverse_cdf(p)
}

/// Returns the standard normal distribution.
pub(crate) fn std_normal() -> Normal {
    Normal::new(0.0, 1.0).expect("unit normal is valid")
}

/// Returns the p-value of statistic `stat` whose null cdf is `cdf`, for the given alternative.
pub(crate) fn p_value(stat: f64, alternative: Alternative, cdf: impl Fn(f64) -> f64) -> f64 {
    match alternative {
        Alternative::TwoSided => (2.0 * cdf(-stat.abs())).min(1.0),
        Alternative::Less => cdf(stat),
        Alternative::Greater => cdf(-stat),
    }
}
