//! What a verdict says about itself: its one-word label, whether it passes on its own, and a
//! one-line description. They live with [`Verdict`] so that the gate, the reports and the CLI
//! print the same words and agree on what passes, instead of each keeping its own copy.

use super::{Comparison, Direction, Verdict};

/// Name of the test behind a `diverged` verdict's p-value: the minimum-effect test of "the
/// difference is beyond the margin" (adjusted over the run's windows).
pub const P_BEYOND_MARGIN: &str = "beyond margin";
/// Name of the equivalence test: two one-sided tests that the late-window difference is inside
/// the margin.
pub const P_TOST: &str = "TOST, late window";
/// Name of the rounding test: B's difference against last-bit perturbations of A.
pub const P_BEYOND_ROUNDING: &str = "beyond rounding";
/// Name of the plain test that the late-window difference is not zero.
pub const P_DIFFERENCE: &str = "difference t-test";
/// Name of the drift test: a trend in the difference curve, with Newey–West standard errors.
pub const P_DRIFT: &str = "HAC drift test";

/// Formats a p-value with the name of its test, as every output shows one:
/// `p (TOST, late window) = 1.5e-11`, so no p is ever printed without saying which test it is.
pub fn named_p(test: &str, p: f64) -> String {
    format!("p ({test}) = {}", format_p(p))
}

/// Formats a p-value as every output shows it: three decimals, scientific below 0.001
/// (`0.011`, `1.5e-11`), so the same p reads the same in the terminal, a table and a figure.
pub fn format_p(p: f64) -> String {
    if p.is_finite() && p > 0.0 && p < 1e-3 {
        format!("{p:.1e}")
    } else {
        format!("{p:.3}")
    }
}

impl Verdict {
    /// Returns the one-word label (`identical`, `equivalent`, `inconclusive`, `diverged`) used
    /// in reports, `summary.json` and JUnit files.
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Identical => "identical",
            Verdict::Equivalent => "equivalent",
            Verdict::Inconclusive { .. } => "inconclusive",
            Verdict::Diverged { .. } => "diverged",
        }
    }

    /// Returns whether the verdict passes when nothing else is expected of it: everything but a
    /// divergence. An inconclusive verdict passes because it has not shown a change; the gate
    /// layers its own expectations (a planted change must diverge) on top of this.
    pub fn passes(&self) -> bool {
        !matches!(self, Verdict::Diverged { .. })
    }

    /// Returns a one-line description with the verdict's key numbers, e.g. `diverged from step 12
    /// (B higher, effect +0.500%, p (beyond margin) = 1.0e-6)`. Every p-value names its test in
    /// the same words the reports use ([`P_BEYOND_MARGIN`]), so a reader can tell the verdict's p
    /// from TOST's or the rounding test's wherever it appears.
    pub fn describe(&self) -> String {
        match self {
            Verdict::Diverged {
                onset_step,
                direction: Direction::Stopped,
                ..
            } => format!(
                "diverged: a run stopped after step {}",
                onset_step.saturating_sub(1)
            ),
            Verdict::Diverged {
                onset_step,
                direction,
                effect_size,
                p_value,
            } => format!(
                "diverged from step {onset_step} ({}{}{})",
                match direction {
                    Direction::Higher => "B higher",
                    Direction::Lower => "B lower",
                    _ => "NaN or ±inf in one arm only",
                },
                effect_size
                    .map(|e| format!(", effect {:+.3}%", e * 100.0))
                    .unwrap_or_default(),
                p_value
                    .map(|p| format!(", {}", named_p(P_BEYOND_MARGIN, p)))
                    .unwrap_or_default()
            ),
            Verdict::Inconclusive { seeds_needed } => format!(
                "inconclusive{}",
                seeds_needed
                    .map(|s| format!(" ({} seeds per arm would settle it)", s.per_arm))
                    .unwrap_or_default()
            ),
            other => other.label().to_string(),
        }
    }
}

impl Comparison {
    /// Returns [`Verdict::describe`], naming the arm and the value when one arm went non-finite:
    /// `diverged at step 12: NaN in B (A finite)` rather than a distance that cannot be computed.
    pub fn describe(&self) -> String {
        match (&self.verdict, &self.non_finite) {
            (
                Verdict::Diverged {
                    direction: Direction::NonFinite,
                    ..
                },
                Some(nf),
            ) => {
                let other = if nf.arm == "A" { "B" } else { "A" };
                format!(
                    "diverged at step {}: {} in {} ({other} finite)",
                    nf.step, nf.value, nf.arm
                )
            }
            (v, _) => v.describe(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diverged() -> Verdict {
        Verdict::Diverged {
            onset_step: 12,
            direction: Direction::Higher,
            effect_size: Some(0.005),
            p_value: Some(1e-6),
        }
    }

    #[test]
    fn only_a_divergence_fails_on_its_own() {
        assert!(Verdict::Identical.passes());
        assert!(Verdict::Equivalent.passes());
        assert!(Verdict::Inconclusive { seeds_needed: None }.passes());
        assert!(!diverged().passes());
    }

    #[test]
    fn description_leads_with_the_label_and_carries_the_key_numbers() {
        assert_eq!(Verdict::Equivalent.describe(), "equivalent");
        assert_eq!(
            diverged().describe(),
            "diverged from step 12 (B higher, effect +0.500%, p (beyond margin) = 1.0e-6)"
        );
        assert!(diverged().describe().starts_with(diverged().label()));
    }

    #[test]
    fn p_values_read_alike_everywhere_and_name_their_test() {
        assert_eq!(format_p(1.23e-5), "1.2e-5");
        assert_eq!(format_p(0.4321), "0.432");
        assert_eq!(named_p(P_TOST, 1.5e-11), "p (TOST, late window) = 1.5e-11");
    }
}
