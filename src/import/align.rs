//! Importer-side step alignment: put two traces of one metric on their common steps.
//!
//! Traces from different stacks rarely share a grid (Megatron logs every step, a W&B export every
//! 5, a resumed run starts at 51). This finds the common steps and says, in one sentence, what was
//! left out, so a comparison never silently covers less than the user thinks. It does no
//! interpolation: a value is compared only where both runs measured it.

use super::{describe_steps, span};
use crate::error::{Error, Result};
use crate::trace::Trace;

/// Two traces' values of one metric on the steps both recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Alignment {
    /// The metric aligned.
    pub metric: String,
    /// Steps present in both traces, increasing.
    pub steps: Vec<u64>,
    /// Trace A's values on [`Alignment::steps`] (may be non-finite).
    pub a: Vec<f64>,
    /// Trace B's values on [`Alignment::steps`] (may be non-finite).
    pub b: Vec<f64>,
    /// Number of A's steps that B lacks.
    pub only_in_a: usize,
    /// Number of B's steps that A lacks.
    pub only_in_b: usize,
    /// A sentence for reports: `compared lm_loss on 50 common steps 1..50; A has 50 more steps (51..100) not in B`.
    pub summary: String,
}

/// Aligns `metric` of traces `a` and `b` on the steps both recorded.
///
/// Time: `O(len(a) + len(b))` (both step lists are strictly increasing).
///
/// # Errors
/// [`Error::MissingSeries`] if either trace lacks the metric; [`Error::NoCommonSteps`] if the
/// traces share no step.
///
/// # Examples
/// A logged at every step 1..100 and B every 5 steps 5..100 align on B's 20 steps.
pub fn align(a: &Trace, b: &Trace, metric: &str) -> Result<Alignment> {
    let (va, vb) = (series(a, metric)?, series(b, metric)?);
    let (mut steps, mut xa, mut xb) = (Vec::new(), Vec::new(), Vec::new());
    let (mut only_a, mut only_b) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < a.steps.len() || j < b.steps.len() {
        match (a.steps.get(i), b.steps.get(j)) {
            (Some(&sa), Some(&sb)) if sa == sb => {
                steps.push(sa);
                xa.push(va.get(i).copied().unwrap_or(f64::NAN));
                xb.push(vb.get(j).copied().unwrap_or(f64::NAN));
                (i, j) = (i + 1, j + 1);
            }
            (Some(&sa), Some(&sb)) if sa < sb => (only_a.push(sa), i += 1).1,
            (Some(&sa), None) => (only_a.push(sa), i += 1).1,
            (_, Some(&sb)) => (only_b.push(sb), j += 1).1,
            (None, None) => break,
        }
    }
    if steps.is_empty() {
        return Err(Error::NoCommonSteps {
            metric: metric.to_string(),
            a: a.name.clone(),
            a_steps: describe_steps(&a.steps),
            b: b.name.clone(),
            b_steps: describe_steps(&b.steps),
        });
    }
    let mut summary = format!(
        "compared {metric} on {} common {}",
        steps.len(),
        plural_span(&steps)
    );
    for (who, other, only) in [("A", "B", &only_a), ("B", "A", &only_b)] {
        if !only.is_empty() {
            let n = only.len();
            let more = plural_span(only);
            summary += &format!("; {who} has {n} more {more} not in {other}");
        }
    }
    Ok(Alignment {
        metric: metric.to_string(),
        steps,
        a: xa,
        b: xb,
        only_in_a: only_a.len(),
        only_in_b: only_b.len(),
        summary,
    })
}

/// `steps 1..50` or `step 7`.
fn plural_span(steps: &[u64]) -> String {
    let noun = if steps.len() == 1 { "step" } else { "steps" };
    format!("{noun} ({})", span(steps))
}

fn series<'t>(t: &'t Trace, metric: &str) -> Result<&'t [f64]> {
    t.metric(metric).ok_or_else(|| Error::MissingSeries {
        trace: t.name.clone(),
        metric: metric.to_string(),
        available: t.series.keys().cloned().collect::<Vec<_>>().join(", "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::import_bytes;
    use crate::trace::LM_LOSS;
    use std::path::Path;

    fn trace(name: &str, steps: impl Iterator<Item = u64>) -> Trace {
        let text: String = steps
            .map(|s| format!("{s} {}\n", 10.0 - s as f64 / 10.0))
            .collect();
        let mut t = import_bytes(text.as_bytes(), Path::new(name), None).unwrap();
        t.name = name.into();
        t
    }

    #[test]
    fn different_intervals_align_on_the_common_grid() {
        let a = trace("a", 1..=100);
        let b = trace("b", (5..=100).step_by(5));
        let al = align(&a, &b, LM_LOSS).unwrap();
        assert_eq!(al.steps, (5..=100).step_by(5).collect::<Vec<_>>());
        assert_eq!(al.a, al.b);
        assert_eq!((al.only_in_a, al.only_in_b), (80, 0));
        assert_eq!(
            al.summary,
            "compared lm_loss on 20 common steps (5..100 every 5); A has 80 more steps (1..99, irregular) not in B"
        );
    }

    #[test]
    fn resumed_half_aligns_on_its_steps() {
        let a = trace("a", 1..=100);
        let b = trace("b", 51..=100);
        let al = align(&b, &a, LM_LOSS).unwrap();
        assert_eq!(
            al.summary,
            "compared lm_loss on 50 common steps (51..100); B has 50 more steps (1..50) not in A"
        );
    }

    #[test]
    fn disjoint_or_missing_is_a_typed_error() {
        let a = trace("a", 1..=3);
        let b = trace("b", 4..=6);
        let err = align(&a, &b, LM_LOSS).unwrap_err();
        assert!(matches!(err, Error::NoCommonSteps { .. }), "{err}");
        assert!(
            err.to_string().contains("`a` has steps 3 steps 1..3"),
            "{err}"
        );
        let err = align(&a, &b, "grad_norm").unwrap_err();
        assert!(
            matches!(&err, Error::MissingSeries { available, .. } if available == "lm_loss"),
            "{err}"
        );
    }
}
