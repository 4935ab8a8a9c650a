//! One estimate of the difference `B − A` over a stretch of steps, with its standard error and
//! degrees of freedom, and the three questions every mode asks of it the same way: does it differ
//! from zero, is it inside the margin (TOST), is it beyond the margin (minimum-effect test).
//!
//! Every mode (paired seeds, independent seeds, one curve per arm) only decides how to *estimate*
//! `(estimate, se, df)`; the verdict is then read off the confidence interval's position relative
//! to `0` and `±margin`, so two modes can only disagree where their intervals do — never because
//! one asks "is it zero?" and another "is it small?".

use crate::stats::{t_cdf, tost_from_estimate};
use serde::{Deserialize, Serialize};

/// A difference estimate with its uncertainty.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Estimated mean difference `B − A` in the metric's units.
    pub estimate: f64,
    /// Its standard error (0 when the difference is known exactly, e.g. a shared-noise offset).
    pub se: f64,
    /// Degrees of freedom of the reference t distribution (`inf` for a normal reference,
    /// written `"inf"` in JSON, which has no infinity).
    #[serde(with = "non_finite_as_text")]
    pub df: f64,
}

/// Upper-tail probability of Student's t, as the CDF of `−t` so tiny p-values keep their digits.
fn t_sf(t: f64, df: f64) -> f64 {
    if t.is_nan() {
        return 1.0;
    }
    t_cdf(-t, df.clamp(1.0, 1e7))
}

impl Evidence {
    fn exact(&self) -> bool {
        !(self.se > 0.0 && self.se.is_finite())
    }

    /// Two-sided p-value of `H0: δ = 0`.
    pub fn p_difference(&self) -> f64 {
        if self.exact() {
            return if self.estimate != 0.0 { 0.0 } else { 1.0 };
        }
        (2.0 * t_sf(self.estimate.abs() / self.se, self.df)).min(1.0)
    }

    /// TOST p-value of `H0: |δ| ≥ margin` (small: the difference is shown inside the margin).
    ///
    /// # Formula
    /// ```text
    /// p = max(P(T > (est + m)/se)ᶜ, P(T < (est − m)/se)ᶜ) = max(sf((est + m)/se), sf((m − est)/se))
    /// ```
    /// Reference: Schuirmann (1987), J. Pharmacokinet. Biopharm. 15(6).
    pub fn p_equivalence(&self, margin: f64) -> f64 {
        if self.exact() {
            return if self.estimate.abs() < margin {
                0.0
            } else {
                1.0
            };
        }
        tost_from_estimate(self.estimate, self.se, self.df.min(1e7), margin)
            .map_or(1.0, |t| t.p_value)
    }

    /// Minimum-effect p-value of `H0: |δ| ≤ margin` (small: the difference is shown beyond it).
    ///
    /// Rejecting when `|est|` exceeds a critical value has, at the boundary `|δ| = m`, the size
    /// below — both tails count, so with `m = 0` this is the ordinary two-sided test.
    ///
    /// # Formula
    /// ```text
    /// p = sf((|est| − m)/se) + sf((|est| + m)/se)
    /// ```
    /// Reference: Murphy & Myors (1999), "Testing the hypothesis that treatments have negligible
    /// effects: minimum-effect tests", J. Appl. Psychol. 84(2).
    pub fn p_beyond(&self, margin: f64) -> f64 {
        if self.exact() {
            return if self.estimate.abs() > margin {
                0.0
            } else {
                1.0
            };
        }
        let a = self.estimate.abs();
        (t_sf((a - margin) / self.se, self.df) + t_sf((a + margin) / self.se, self.df)).min(1.0)
    }
}

/// Serialises an `f64` that may be infinite or NaN: JSON has no such numbers and `serde_json`
/// writes them as `null`, which then fails to read back. Non-finite values are written as the
/// strings traces use (`"inf"`, `"-inf"`, `"nan"`).
pub(crate) mod non_finite_as_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        match *v {
            v if v.is_finite() => s.serialize_f64(v),
            v if v.is_nan() => s.serialize_str("nan"),
            v if v > 0.0 => s.serialize_str("inf"),
            _ => s.serialize_str("-inf"),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Value {
            Num(f64),
            Text(String),
        }
        match Value::deserialize(d)? {
            Value::Num(v) => Ok(v),
            Value::Text(t) => crate::trace::parse_non_finite(&t).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "expected a number, \"inf\" or \"nan\", got {t:?}"
                ))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn a_zero_margin_beyond_test_is_the_two_sided_test() {
        let e = Evidence {
            estimate: 0.3,
            se: 0.1,
            df: 9.0,
        };
        // scipy.stats.t.sf(3, 9) * 2 = 0.014956...
        assert_relative_eq!(e.p_beyond(0.0), 0.014_956_1, max_relative = 1e-4);
        assert_relative_eq!(e.p_beyond(0.0), e.p_difference(), max_relative = 1e-12);
    }

    #[test]
    fn inside_outside_and_straddling_the_margin() {
        let inside = Evidence {
            estimate: 0.01,
            se: 0.01,
            df: 20.0,
        };
        assert!(inside.p_equivalence(0.1) < 1e-6 && inside.p_beyond(0.1) > 0.99);
        let outside = Evidence {
            estimate: -0.3,
            ..inside
        };
        assert!(outside.p_beyond(0.1) < 1e-6 && outside.p_equivalence(0.1) > 0.99);
        let straddling = Evidence {
            estimate: 0.1,
            se: 0.05,
            df: 20.0,
        };
        assert!(straddling.p_beyond(0.1) > 0.4 && straddling.p_equivalence(0.1) > 0.4);
    }

    #[test]
    fn an_infinite_df_survives_a_json_round_trip() {
        let e = Evidence {
            estimate: 0.5,
            se: 0.0,
            df: f64::INFINITY,
        };
        let text = serde_json::to_string(&e).unwrap();
        assert!(text.contains("\"inf\""), "{text}");
        assert_eq!(serde_json::from_str::<Evidence>(&text).unwrap(), e);
    }

    #[test]
    fn an_exact_difference_is_decided_by_its_value() {
        let e = Evidence {
            estimate: 0.2,
            se: 0.0,
            df: f64::INFINITY,
        };
        assert_eq!((e.p_beyond(0.1), e.p_equivalence(0.1)), (0.0, 1.0));
        assert_eq!((e.p_beyond(0.3), e.p_equivalence(0.3)), (1.0, 0.0));
    }
}
