//! What a verdict says about itself: its one-word label, whether it passes on its own, and a
//! one-line description. They live with [`Verdict`] so that the gate, the reports and the CLI
//! print the same words and agree on what passes, instead of each keeping its own copy.

use super::{Direction, Verdict};

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
    /// (B higher, effect +0.500%, beyond-margin p = 1.00e-6)`.
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
                    _ => "non-finite value in one arm",
                },
                effect_size
                    .map(|e| format!(", effect {:+.3}%", e * 100.0))
                    .unwrap_or_default(),
                p_value
                    .map(|p| format!(", beyond-margin p = {p:.2e}"))
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
            "diverged from step 12 (B higher, effect +0.500%, beyond-margin p = 1.00e-6)"
        );
        assert!(diverged().describe().starts_with(diverged().label()));
    }
}
