//! Gating many comparisons at once (the cells of a sweep): Holm for the pass/fail gate,
//! Benjamini–Hochberg to rank what to look at first.

use super::Comparison;
use crate::error::{Error, Result};
use crate::stats::{benjamini_hochberg, holm};
use serde::{Deserialize, Serialize};

/// The gate decision over a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepGate {
    /// Level used for both procedures.
    pub alpha: f64,
    /// Each cell's divergence p-value ([`Comparison::divergence_p_value`]).
    pub p_values: Vec<f64>,
    /// Holm-adjusted p-values (family-wise error ≤ α).
    pub holm: Vec<f64>,
    /// Benjamini–Hochberg adjusted p-values (false discovery rate ≤ α).
    pub bh: Vec<f64>,
    /// Cells failing the gate: Holm-adjusted p ≤ α.
    pub failing: Vec<usize>,
    /// Cells worth a look: BH-adjusted p ≤ α.
    pub triage: Vec<usize>,
    /// Whether the sweep passes (no failing cell).
    pub pass: bool,
}

/// Gates a sweep: Holm (step-down, FWER) decides pass/fail, Benjamini–Hochberg (FDR) triages.
///
/// # Formula
/// ```text
/// fail cell i  ⇔  holm(p)_i ≤ α;    triage cell i  ⇔  bh(p)_i ≤ α
/// ```
///
/// # Errors
/// [`Error::InvalidParameter`] if `alpha` is not in `(0, 1)`.
///
/// Reference: Holm (1979); Benjamini & Hochberg (1995); R `p.adjust`.
pub fn gate_sweep(cells: &[Comparison], alpha: f64) -> Result<SweepGate> {
    if !(alpha > 0.0 && alpha < 1.0) {
        return Err(Error::InvalidParameter {
            name: "alpha",
            expected: "0 < alpha < 1",
            got: alpha.to_string(),
        });
    }
    let p_values: Vec<f64> = cells.iter().map(Comparison::divergence_p_value).collect();
    let holm = holm(&p_values)?;
    let bh = benjamini_hochberg(&p_values)?;
    let below = |adj: &[f64]| {
        (0..adj.len())
            .filter(|&i| adj[i] <= alpha)
            .collect::<Vec<_>>()
    };
    let failing = below(&holm);
    let triage = below(&bh);
    Ok(SweepGate {
        alpha,
        pass: failing.is_empty(),
        p_values,
        holm,
        bh,
        failing,
        triage,
    })
}
