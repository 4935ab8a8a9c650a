//! What the terminal shows of a comparison: one line per comparison for `lossdiff run` (and
//! `lossdiff merge`), and the verdict table of `lossdiff report DIR`. Both print the same cells —
//! verdict, late-window effect, margin, p-value named by its test, onset and the rounding
//! finding — in words; nothing here is Rust's debug formatting. The report files (index.md,
//! summary.json) are the `report` module's.

use super::{percent, ExperimentReport};
use crate::compare::{
    named_p, Comparison, Direction, Margin, Verdict, P_BEYOND_MARGIN, P_BEYOND_ROUNDING, P_TOST,
};

/// One comparison's cells, each already in words (`–` where a cell does not apply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerdictRow {
    /// The verdict's label (`identical`, `equivalent`, `inconclusive`, `diverged`).
    pub verdict: String,
    /// Late-window mean difference B − A, relative and absolute: `+0.120% (+3.05e-3)`.
    pub effect: String,
    /// The equivalence margin, relative and absolute: `±0.1% (±2.54e-3)`.
    pub margin: String,
    /// The p-value that decided the verdict, named by its test: `p (TOST, late window) = 1.2e-5`.
    pub p: String,
    /// The onset step of a divergence.
    pub onset: String,
    /// "Same math up to rounding?", when a perturbation ensemble can tell.
    pub rounding: String,
}

/// Shown in a cell that does not apply.
const NONE: &str = "–";

/// Returns the cells of one comparison.
pub fn verdict_row(c: &Comparison) -> VerdictRow {
    VerdictRow {
        verdict: c.verdict.label().to_string(),
        effect: effect_text(c),
        margin: margin_text(c),
        p: p_text(c),
        onset: match c.verdict {
            Verdict::Diverged { onset_step, .. } => onset_step.to_string(),
            _ => NONE.to_string(),
        },
        rounding: rounding_text(c),
    }
}

fn effect_text(c: &Comparison) -> String {
    match (&c.verdict, &c.statistical) {
        (Verdict::Identical, _) => "0 (bitwise identical)".into(),
        (
            Verdict::Diverged {
                direction: Direction::NonFinite,
                ..
            },
            _,
        ) => "– (a non-finite value in one arm)".into(),
        (
            Verdict::Diverged {
                direction: Direction::Stopped,
                ..
            },
            _,
        ) => "– (a run stopped early)".into(),
        (_, Some(st)) => match st.relative_difference {
            Some(rel) => format!("{} ({:+.2e})", percent(rel), st.late_difference),
            None => format!("{:+.2e}", st.late_difference),
        },
        (_, None) => NONE.into(),
    }
}

fn margin_text(c: &Comparison) -> String {
    let Some(st) = &c.statistical else {
        return NONE.into();
    };
    match c.settings.margin {
        Margin::Relative(m) => format!("±{}% (±{:.2e})", short(m * 100.0), st.margin),
        Margin::Absolute(_) => format!("±{:.2e} (absolute)", st.margin),
    }
}

/// Formats a number with at most four significant digits and no trailing zeros (`0.1`, `2.5`).
fn short(x: f64) -> String {
    let s = format!("{x:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

fn p_text(c: &Comparison) -> String {
    let st = c.statistical.as_ref();
    match &c.verdict {
        Verdict::Identical => NONE.into(),
        Verdict::Diverged {
            p_value: Some(p), ..
        } => named_p(P_BEYOND_MARGIN, *p),
        Verdict::Diverged { .. } => "– (decided by rule, no test)".into(),
        Verdict::Equivalent => st.map_or(NONE.into(), |s| named_p(P_TOST, s.tost_p_value)),
        Verdict::Inconclusive { .. } => st.map_or(NONE.into(), |s| {
            format!(
                "{}, {}",
                named_p(P_TOST, s.tost_p_value),
                named_p(P_BEYOND_MARGIN, s.divergence_p_value)
            )
        }),
    }
}

fn rounding_text(c: &Comparison) -> String {
    match (c.rounding(), &c.verdict) {
        (None, _) => "– (no perturbation ensemble)".into(),
        (Some(_), Verdict::Identical) => "within rounding (bitwise identical)".into(),
        (Some(r), _) if r.within => format!(
            "within rounding ({}× the perturbation spread, {})",
            times(r.ratio),
            named_p(P_BEYOND_ROUNDING, r.p_value)
        ),
        (Some(r), _) => format!(
            "beyond rounding from step {} ({}× the perturbation spread, {})",
            r.onset_step
                .map_or_else(|| NONE.to_string(), |s| s.to_string()),
            times(r.ratio),
            named_p(P_BEYOND_ROUNDING, r.p_value)
        ),
    }
}

/// Formats how many perturbation spreads B sits from A: `1.3`, `45`, `3.5e14` (an ensemble with
/// almost no spread makes the ratio huge; its digits mean nothing).
fn times(ratio: f64) -> String {
    match ratio.abs() {
        r if !r.is_finite() => "∞".into(),
        r if r < 10.0 => format!("{ratio:.1}"),
        r if r < 1e4 => format!("{ratio:.0}"),
        _ => format!("{ratio:.1e}"),
    }
}

/// Returns a comparison's numbers for a one-line summary: effect and margin, the p-value when the
/// verdict's own description does not carry it, and the rounding finding when there is a
/// perturbation ensemble. Empty for identical arms (there is nothing to measure).
pub fn numbers_clause(c: &Comparison) -> String {
    if c.verdict == Verdict::Identical || c.statistical.is_none() {
        return String::new();
    }
    let row = verdict_row(c);
    let mut s = format!("late-window effect {} vs margin {}", row.effect, row.margin);
    if !matches!(c.verdict, Verdict::Diverged { .. }) {
        s += &format!(", {}", row.p);
    }
    if c.rounding().is_some() {
        s += &format!("; {}", row.rounding);
    }
    s
}

/// Renders rows as an aligned text table under a header line (`comparison`, then the cells).
pub fn render_verdict_table(rows: &[(String, VerdictRow)]) -> String {
    let header = [
        "comparison",
        "verdict",
        "effect (late window)",
        "margin",
        "p (test)",
        "onset",
        "rounding",
    ];
    let cells: Vec<[&str; 7]> = rows
        .iter()
        .map(|(name, r)| {
            [
                name.as_str(),
                &r.verdict,
                &r.effect,
                &r.margin,
                &r.p,
                &r.onset,
                &r.rounding,
            ]
        })
        .collect();
    let width = |i: usize| {
        (cells.iter().map(|c| c[i]))
            .chain([header[i]])
            .map(|s| s.chars().count())
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..header.len()).map(width).collect();
    let line = |c: &[&str; 7]| {
        let padded: Vec<String> = c
            .iter()
            .zip(&widths)
            .map(|(s, w)| format!("{s}{}", " ".repeat(w - s.chars().count())))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut s = line(&header);
    for c in &cells {
        s += &line(c);
    }
    s
}

/// Renders the terminal summary of gate results: one line per comparison and golden check,
/// pass/fail first, with the verdict, its effect against the margin, the p-value named by its
/// test, and the rounding finding when there is a perturbation ensemble.
pub fn render_summary(reports: &[&ExperimentReport]) -> String {
    let mut s = String::new();
    for r in reports {
        s += &format!(
            "{} {}\n",
            if r.passed { "PASS" } else { "FAIL" },
            r.experiment
        );
        for c in &r.comparisons {
            let numbers = numbers_clause(&c.comparison);
            s += &format!(
                "  {} [{}] {} vs {}: {}{}{}\n",
                if c.passed { "ok  " } else { "FAIL" },
                c.cell,
                c.a,
                c.b,
                c.comparison.verdict.describe(),
                if numbers.is_empty() {
                    String::new()
                } else {
                    format!(" — {numbers}")
                },
                if c.expected_diverged {
                    " (expected to diverge)"
                } else {
                    ""
                }
            );
            let und: Vec<String> = (c.comparison.config.undeclared.iter())
                .map(|d| format!("{} ({} → {})", d.key, super::show(&d.a), super::show(&d.b)))
                .collect();
            if !und.is_empty() {
                s += &format!("       undeclared: {}\n", und.join(", "));
            }
            for p in &c.problems {
                s += &format!("       problem: {p}\n");
            }
        }
        for g in &r.goldens {
            let numbers = g
                .comparison
                .as_ref()
                .map(numbers_clause)
                .filter(|n| !n.is_empty())
                .map(|n| format!(" — {n}"))
                .unwrap_or_default();
            s += &format!(
                "  {} [{}] {} vs golden: {}{numbers}\n",
                if g.passed { "ok  " } else { "FAIL" },
                g.cell,
                g.arm,
                g.message
            );
        }
        for m in &r.missing {
            s += &format!("  MISSING [{}] {}\n", m.cell, m.describe());
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_numbers_drop_trailing_zeros() {
        assert_eq!(short(0.1), "0.1");
        assert_eq!(short(2.5), "2.5");
        assert_eq!(short(1.0), "1");
    }

    #[test]
    fn the_table_aligns_columns_under_their_header() {
        let row = |v: &str| VerdictRow {
            verdict: v.into(),
            effect: "+1.000% (+2.00e-2)".into(),
            margin: "±0.1% (±2.00e-3)".into(),
            p: "p (beyond margin) = 1.0e-6".into(),
            onset: "12".into(),
            rounding: NONE.into(),
        };
        let t = render_verdict_table(&[
            ("new vs base".into(), row("diverged")),
            ("b vs base".into(), row("equivalent")),
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        let col = |l: &str, word: &str| l.find(word).map(|i| l[..i].chars().count());
        assert_eq!(col(lines[0], "verdict"), col(lines[1], "diverged"));
        assert_eq!(col(lines[1], "diverged"), col(lines[2], "equivalent"));
    }
}
