//! Multiple-testing adjustments: Holm's step-down (family-wise error) and Benjamini–Hochberg
//! (false discovery rate). Used to gate a sweep of comparisons at once.

use crate::error::{Error, Result};

fn check_p(p: &[f64]) -> Result<()> {
    match p.iter().position(|v| !(0.0..=1.0).contains(v)) {
        Some(index) => Err(Error::NonFiniteInput {
            statistic: "p-value adjustment (p must be in [0, 1])",
            index,
            value: p[index],
        }),
        None => Ok(()),
    }
}

fn order(p: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..p.len()).collect();
    idx.sort_by(|&i, &j| p[i].total_cmp(&p[j]).then(i.cmp(&j)));
    idx
}

/// Returns Holm's step-down adjusted p-values, in the input order.
///
/// Rejecting every hypothesis whose adjusted p-value is `≤ α` controls the family-wise error
/// rate at `α` under any dependence.
///
/// # Formula
/// ```text
/// p₍₁₎ ≤ … ≤ p₍m₎ sorted,   p̃₍i₎ = min(1, max_{j ≤ i} (m − j + 1) p₍j₎)
/// ```
///
/// # Errors
/// [`Error::NonFiniteInput`] if a p-value is outside `[0, 1]` or NaN.
///
/// Reference: Holm (1979), Scand. J. Statist. 6(2); R `p.adjust(p, method = "holm")`.
///
/// Time: `O(m log m)`.
///
/// # Examples
/// ```ignore
/// // Crate-private, so not compiled as a doctest; the unit tests below make this call.
/// // p.adjust(c(0.01, 0.04, 0.03), "holm") = 0.03 0.06 0.06
/// let adj = lossdiff::stats::holm(&[0.01, 0.04, 0.03])?;
/// assert!((adj[0] - 0.03).abs() < 1e-12 && (adj[1] - 0.06).abs() < 1e-12);
/// # Ok::<(), lossdiff::Error>(())
/// ```
pub fn holm(p: &[f64]) -> Result<Vec<f64>> {
    check_p(p)?;
    let m = p.len();
    let mut out = vec![0.0; m];
    let mut running: f64 = 0.0;
    for (rank, &i) in order(p).iter().enumerate() {
        running = running.max(((m - rank) as f64 * p[i]).min(1.0));
        out[i] = running;
    }
    Ok(out)
}

/// Returns Benjamini–Hochberg adjusted p-values (q-values), in the input order.
///
/// Rejecting every hypothesis with adjusted p-value `≤ q` controls the false discovery rate at
/// `q` for independent or positively dependent tests.
///
/// # Formula
/// ```text
/// p₍₁₎ ≤ … ≤ p₍m₎ sorted,   p̃₍i₎ = min(1, min_{j ≥ i} m p₍j₎ / j)
/// ```
///
/// # Errors
/// [`Error::NonFiniteInput`] if a p-value is outside `[0, 1]` or NaN.
///
/// Reference: Benjamini & Hochberg (1995), J. R. Statist. Soc. B 57(1); R `p.adjust(p, method = "BH")`.
///
/// Time: `O(m log m)`.
pub fn benjamini_hochberg(p: &[f64]) -> Result<Vec<f64>> {
    check_p(p)?;
    let m = p.len();
    let mut out = vec![0.0; m];
    let mut running: f64 = 1.0;
    for (rank, &i) in order(p).iter().enumerate().rev() {
        running = running.min(m as f64 * p[i] / (rank + 1) as f64);
        out[i] = running;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    const P: [f64; 8] = [0.01, 0.04, 0.03, 0.005, 0.2, 0.04, 0.5, 0.001];

    #[test]
    fn holm_against_r_p_adjust() {
        // p.adjust(c(0.01, 0.04, 0.03, 0.005, 0.2, 0.04, 0.5, 0.001), method = "holm")
        // (same algorithm as statsmodels multipletests(P, method="holm")[1])
        let expected = [0.06, 0.16, 0.15, 0.035, 0.4, 0.16, 0.5, 0.008];
        for (g, e) in holm(&P).unwrap().iter().zip(expected) {
            assert_relative_eq!(*g, e, max_relative = 1e-12);
        }
    }

    #[test]
    fn bh_against_r_p_adjust() {
        // p.adjust(c(0.01, 0.04, 0.03, 0.005, 0.2, 0.04, 0.5, 0.001), method = "BH")
        // (same algorithm as statsmodels multipletests(P, method="fdr_bh")[1])
        let expected = [
            0.02666666666666667,
            0.05333333333333334,
            0.05333333333333334,
            0.02,
            0.2285714285714286,
            0.05333333333333334,
            0.5,
            0.008,
        ];
        for (g, e) in benjamini_hochberg(&P).unwrap().iter().zip(expected) {
            assert_relative_eq!(*g, e, max_relative = 1e-12);
        }
    }

    #[test]
    fn out_of_range_p_is_an_error() {
        assert!(matches!(
            holm(&[0.1, 1.5]),
            Err(Error::NonFiniteInput { index: 1, .. })
        ));
        assert!(matches!(
            benjamini_hochberg(&[f64::NAN]),
            Err(Error::NonFiniteInput { index: 0, .. })
        ));
        assert_eq!(holm(&[]).unwrap(), Vec::<f64>::new());
    }
}
