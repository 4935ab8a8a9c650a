//! The words and marks a report puts next to a verdict: the pass/warn/fail status (as text, and
//! as an inline SVG for `index.html`, never an emoji, which headless browsers and terminals
//! without an emoji font draw as empty boxes) and the gate badge that says why a comparison
//! passes or fails. Figures, `index.md`, `index.html` and `junit.xml` all take them from here.

use super::KeyNumbers;

/// A comparison's status in a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mark {
    /// Passes the gate.
    Pass,
    /// Passes the gate, but nothing was shown either way (inconclusive).
    Warn,
    /// Fails the gate.
    Fail,
}

impl Mark {
    /// Returns the status of a verdict label and the gate's decision.
    pub(super) fn of(verdict: &str, passed: bool) -> Mark {
        if !passed {
            Mark::Fail
        } else if verdict.to_ascii_lowercase().contains("inconclusive") {
            Mark::Warn
        } else {
            Mark::Pass
        }
    }

    /// Returns the status as a word ("PASS", "WARN", "FAIL"): what `index.md` shows.
    pub(super) fn word(self) -> &'static str {
        match self {
            Mark::Pass => "PASS",
            Mark::Warn => "WARN",
            Mark::Fail => "FAIL",
        }
    }

    /// Returns the CSS class of the status ("pass", "warn", "fail").
    pub(super) fn class(self) -> &'static str {
        match self {
            Mark::Pass => "pass",
            Mark::Warn => "warn",
            Mark::Fail => "fail",
        }
    }

    /// Returns the status as inline SVG followed by its word: a filled circle with a tick, an
    /// exclamation mark or a cross, drawn with paths so no font is involved.
    pub(super) fn html(self) -> String {
        let (fill, glyph) = match self {
            Mark::Pass => ("#1e8c3c", "M4.5 8.5l2.5 2.5 4.5-5"),
            Mark::Warn => ("#d79100", "M8 4v5M8 11.5v.5"),
            Mark::Fail => ("#c81e1e", "M5 5l6 6M11 5l-6 6"),
        };
        format!(
            "<span class=\"mark {}\"><svg width=\"16\" height=\"16\" viewBox=\"0 0 16 16\" aria-hidden=\"true\"><circle cx=\"8\" cy=\"8\" r=\"8\" fill=\"{fill}\"/><path d=\"{glyph}\" stroke=\"#fff\" stroke-width=\"2\" stroke-linecap=\"round\" fill=\"none\"/></svg>{}</span>",
            self.class(),
            self.word()
        )
    }
}

/// Returns the gate badge of a comparison with the reason in words, e.g. `gate: pass (expected
/// divergence)`, `gate: pass (within margin)` or `gate: FAIL (beyond margin)`.
///
/// The reason follows from the verdict and the decision: a divergence that passes was expected
/// (a canary, an `expect = "diverged"` cell); any other verdict that fails fell short of its
/// expectation, which the entry's details name. A pass that Megatron's rtol rule would have
/// failed says so, so `gate: pass` next to a failing tolerance lane is explained where it shows.
pub(super) fn gate_badge(verdict: &str, passed: bool, numbers: &KeyNumbers) -> String {
    let v = verdict.to_ascii_lowercase();
    let reason = match (passed, v.as_str()) {
        (true, "diverged") => "expected divergence",
        (true, "equivalent") => "within margin",
        (true, "identical") => "bitwise identical",
        (true, "inconclusive") => "not shown beyond margin",
        (true, _) => "",
        (false, "diverged") => "beyond margin",
        (false, "not run") => "not run",
        (false, "stale") => "stale golden",
        (false, "missing") => "no golden",
        (false, _) => "expectation not met",
    };
    let word = if passed { "pass" } else { "FAIL" };
    let megatron = if passed && numbers.tolerance_pass == Some(false) && v != "diverged" {
        "; Megatron's rtol rule alone would fail it"
    } else {
        ""
    };
    if reason.is_empty() {
        format!("gate: {word}")
    } else {
        format!("gate: {word} ({reason}{megatron})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn badge_says_why_an_expected_divergence_passes() {
        let n = KeyNumbers::default();
        assert_eq!(
            gate_badge("diverged", true, &n),
            "gate: pass (expected divergence)"
        );
        assert_eq!(
            gate_badge("diverged", false, &n),
            "gate: FAIL (beyond margin)"
        );
    }

    #[test]
    fn badge_says_within_margin_and_explains_a_failing_tolerance_lane() {
        let mut n = KeyNumbers {
            tolerance_pass: Some(true),
            ..KeyNumbers::default()
        };
        assert_eq!(
            gate_badge("equivalent", true, &n),
            "gate: pass (within margin)"
        );
        n.tolerance_pass = Some(false);
        assert_eq!(
            gate_badge("equivalent", true, &n),
            "gate: pass (within margin; Megatron's rtol rule alone would fail it)"
        );
        assert_eq!(
            gate_badge("identical", false, &n),
            "gate: FAIL (expectation not met)"
        );
    }

    #[test]
    fn marks_are_text_and_svg_not_emoji() {
        for (m, word) in [
            (Mark::Pass, "PASS"),
            (Mark::Warn, "WARN"),
            (Mark::Fail, "FAIL"),
        ] {
            let html = m.html();
            assert!(html.contains("<svg") && html.ends_with(&format!("{word}</span>")));
            assert!(html.is_ascii(), "{html}");
        }
        assert_eq!(Mark::of("inconclusive", true), Mark::Warn);
        assert_eq!(Mark::of("inconclusive", false), Mark::Fail);
        assert_eq!(Mark::of("diverged", true), Mark::Pass);
    }
}
