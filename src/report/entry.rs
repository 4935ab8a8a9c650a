//! The one way a comparison becomes part of a report: from a [`Comparison`] and the traces it
//! compared, this module builds the figure's data ([`comparison_figure`]), the report entry
//! ([`comparison_entry`]) and its paragraph of text ([`comparison_summary`]). The gate, `lossdiff
//! compare`, `lossdiff report DIR` and the nightly all go through it, so a verdict reads the same
//! everywhere. It summarises curves (means and min/max envelopes over seeds, the difference of the
//! means) and copies the engine's numbers; it decides nothing — verdict, onset, noise band and
//! p-values come from the `Comparison`, and whether the entry passes from the caller.

use super::{ArmCurves, ComparisonFigure, Curve, DiffCurve, FigureSource, KeyNumbers, ReportEntry};
use crate::compare::{
    named_p, BandSource, Comparison, FieldDiff, OnsetMethod, StatLane, Verdict, Yardstick,
    P_BEYOND_MARGIN, P_BEYOND_ROUNDING, P_TOST,
};
use crate::trace::{Trace, LR};
use std::collections::{BTreeMap, BTreeSet};

/// Builds the comparison figure of arm A (reference) against arm B from the traces that went into
/// `c` and the comparison itself.
///
/// - **Arms**: the mean over an arm's traces on the steps all of them share; with ≥ 2 traces, the
///   min/max envelope as the band and every trace as a thin member line.
/// - **Difference**: mean B − mean A on the comparison's common steps (those of every A, B and
///   perturbation trace). The noise band is the statistical lane's band, on its usable steps (the
///   leading finite common steps), NaN (not drawn) after them: with a perturbation ensemble it is
///   the band of the null differences `p − a`; with seeds it is A's seed prediction band moved to
///   difference units (`band centre − mean A ± half width`). Single curves have no band.
/// - **Numbers**: onset from a `Diverged` verdict, unless the lane's onset method is
///   `WindowStart` (no detector located a change; the step is only the window's start, so no
///   onset is drawn or shown); effect = the late-window mean difference
///   B − A in the metric's units; p = the divergence p-value (TOST's for `Equivalent`); margin in
///   the metric's units. `passed` is "not diverged"; a gate with other rules may overwrite it.
/// - **Context**: each arm's first trace's `lr` series when it has one; config differences as
///   `key: a → b` (undeclared config, and apart from it the environment); declared factors (those equal in
///   both arms marked so); A's loss floor (else B's).
///
/// Traces lacking the compared metric are skipped (the comparison would have failed on them).
///
/// Time: `O(K·n log n)` for `K` traces of `n` steps.
///
/// # Examples
/// ```
/// use lossdiff::compare::{compare, CompareSettings};
/// use lossdiff::report::{comparison_figure, render_comparison};
/// use lossdiff::trace::{Origin, Series, Trace, LM_LOSS};
/// // B = A + 0.01 + noise-like wiggle: a constant offset the single-curve test detects.
/// let mk = |shift: f64| Trace {
///     schema_version: 1,
///     name: "run".into(),
///     origin: Origin { format: "jsonl".into(), path: None },
///     config: serde_json::json!({}),
///     fingerprint: serde_json::json!({}),
///     seeds: Default::default(),
///     loss_floor: None,
///     steps: (1..=40).collect(),
///     series: [(LM_LOSS.to_string(),
///         Series::from_f64((0..40).map(|t| {
///             let x = t as f64;
///             3.0 - 0.01 * x + shift * (1.0 + 0.1 * (x * 12.9898).sin())
///         }).collect()))]
///         .into(),
/// };
/// let (a, b) = (vec![mk(0.0)], vec![mk(0.01)]);
/// let c = compare(&a, &b, &[], &[], &CompareSettings::default())?;
/// let fig = comparison_figure("a vs b", &a, &b, &[], &c, c.verdict.passes());
/// assert_eq!(fig.verdict, "diverged");
/// assert_eq!(fig.diff.steps.len(), 40);
/// let png = render_comparison(&fig)?;
/// # Ok::<(), lossdiff::Error>(())
/// ```
pub fn comparison_figure(
    title: &str,
    a: &[Trace],
    b: &[Trace],
    perturbation: &[Trace],
    c: &Comparison,
    passed: bool,
) -> ComparisonFigure {
    let metric = c.metric.as_str();
    let arm_a = arm_curves(a, metric);
    let arm_b = arm_curves(b, metric);
    let diff = diff_curve(a, b, perturbation, c);
    // A `WindowStart` onset is the late window's first step, not a located change: drawing it as
    // "onset of divergence" would date the divergence where nothing happened.
    let numbers = key_numbers(c);
    ComparisonFigure {
        title: title.to_string(),
        verdict: c.verdict.label().to_string(),
        passed,
        onset: numbers.onset_step,
        numbers,
        arm_a,
        arm_b,
        diff,
        lr_a: lr_curve(a),
        lr_b: lr_curve(b),
        undeclared_differences: undeclared(c),
        environment_differences: environment(c),
        declared_factors: declared(c),
        loss_floor: a.iter().chain(b).find_map(|t| t.loss_floor),
    }
}

/// Returns `metric` of every trace that has it, indexed by step.
fn by_step(traces: &[Trace], metric: &str) -> Vec<BTreeMap<u64, f64>> {
    traces
        .iter()
        .filter_map(|t| {
            // Any cadence: an eval loss every 50 steps is drawn at its own steps.
            let (steps, v) = t.points(metric)?;
            Some(steps.iter().copied().zip(v.iter().copied()).collect())
        })
        .collect()
}

/// Returns the steps every map has, increasing.
fn shared_steps<'a>(maps: impl IntoIterator<Item = &'a BTreeMap<u64, f64>>) -> Vec<u64> {
    let mut it = maps.into_iter();
    let Some(first) = it.next() else {
        return Vec::new();
    };
    let mut set: BTreeSet<u64> = first.keys().copied().collect();
    for m in it {
        set.retain(|s| m.contains_key(s));
    }
    set.into_iter().collect()
}

/// Returns the per-step mean of the maps at `steps` (every map has every step).
fn mean_at(maps: &[BTreeMap<u64, f64>], steps: &[u64]) -> Vec<f64> {
    steps
        .iter()
        .map(|s| maps.iter().map(|m| m[s]).sum::<f64>() / maps.len() as f64)
        .collect()
}

/// Builds one arm's mean, min/max envelope and members, labelled by its first trace's name.
fn arm_curves(traces: &[Trace], metric: &str) -> ArmCurves {
    let maps = by_step(traces, metric);
    let steps = shared_steps(&maps);
    let mean = mean_at(&maps, &steps);
    let name = traces.first().map_or("", |t| t.name.as_str());
    if maps.len() < 2 {
        return ArmCurves::single(name, steps, mean);
    }
    let members: Vec<Vec<f64>> = maps
        .iter()
        .map(|m| steps.iter().map(|s| m[s]).collect())
        .collect();
    let fold = |f: fn(f64, f64) -> f64| -> Vec<f64> {
        (0..steps.len())
            .map(|i| members.iter().map(|m| m[i]).reduce(f).unwrap_or(f64::NAN))
            .collect()
    };
    ArmCurves {
        label: format!("{name} ({} traces, band = min/max)", maps.len()),
        band: Some((fold(f64::min), fold(f64::max))),
        steps,
        mean,
        members,
    }
}

/// Builds mean B − mean A on the comparison's common steps, with the lane's noise band.
fn diff_curve(a: &[Trace], b: &[Trace], perturbation: &[Trace], c: &Comparison) -> DiffCurve {
    let (ma, mb, mp) = (
        by_step(a, &c.metric),
        by_step(b, &c.metric),
        by_step(perturbation, &c.metric),
    );
    let steps = shared_steps(ma.iter().chain(&mb).chain(&mp));
    let (mean_a, mean_b) = (mean_at(&ma, &steps), mean_at(&mb, &steps));
    let values: Vec<f64> = mean_b.iter().zip(&mean_a).map(|(b, a)| b - a).collect();
    let noise_band = c
        .statistical
        .as_ref()
        .and_then(|s| s.band.as_ref())
        .filter(|band| band.center.len() <= steps.len())
        .map(|band| {
            let mut lo = vec![f64::NAN; steps.len()];
            let mut hi = vec![f64::NAN; steps.len()];
            for (i, (cen, h)) in band.center.iter().zip(&band.half_width).enumerate() {
                // Seed bands are in loss units around A's mean; move them to difference units.
                let mid = match band.source {
                    BandSource::PerturbationDifferences => *cen,
                    BandSource::SeedsOfA => cen - mean_a[i],
                };
                (lo[i], hi[i]) = (mid - h, mid + h);
            }
            (lo, hi)
        });
    DiffCurve {
        steps,
        values,
        noise_band,
    }
}

/// Returns the header numbers of a comparison, shown alike on its figure and in its entry.
fn key_numbers(c: &Comparison) -> KeyNumbers {
    let onset = located_onset(c);
    let tolerance_pass = Some(c.tolerance.pass);
    let Some(s) = &c.statistical else {
        return KeyNumbers {
            onset_step: onset,
            tolerance_pass,
            ..KeyNumbers::default()
        };
    };
    let beyond_margin = || format!("{P_BEYOND_MARGIN}, {}", deciding_window(s));
    let (p_value, p_test) = match c.verdict {
        Verdict::Identical => (None, None),
        Verdict::Diverged { p_value, .. } => (p_value, p_value.map(|_| beyond_margin())),
        Verdict::Equivalent => (Some(s.tost_p_value), Some(P_TOST.to_string())),
        Verdict::Inconclusive { .. } => (Some(s.divergence_p_value), Some(beyond_margin())),
    };
    KeyNumbers {
        onset_step: onset,
        effect_size: (!matches!(c.verdict, Verdict::Identical)).then_some(s.late_difference),
        p_value,
        margin: Some(s.margin),
        p_test,
        tolerance_pass,
    }
}

/// Returns the window whose beyond-margin p is the lane's divergence p (the smallest adjusted
/// one): "late window", or "steps a–b" for an earlier one.
fn deciding_window(s: &StatLane) -> String {
    // Reversed, so a tie (every window at p = 1, say) names the late window.
    let best = (s.windows.iter().enumerate().rev())
        .min_by(|x, y| x.1.p_beyond_adjusted.total_cmp(&y.1.p_beyond_adjusted));
    match best {
        Some((i, w)) if i + 1 < s.windows.len() => {
            format!("steps {}–{}", w.first_step, w.last_step)
        }
        _ => "late window".into(),
    }
}

/// Returns a comparison's margin relative to A's late-window level (`margin / |A|`), the scale
/// a sweep heat map draws relative effects against; `None` without a statistical lane or when
/// A's level is 0.
pub fn relative_margin(c: &Comparison) -> Option<f64> {
    let s = c.statistical.as_ref()?;
    let level = s.late_mean_a.abs();
    (level > 0.0 && s.margin.is_finite()).then(|| s.margin / level)
}

/// Returns the onset of a divergence when a detector located it. A `WindowStart` onset is the
/// late window's first step, not a located change: showing it as "onset of divergence" would
/// date the divergence where nothing happened.
fn located_onset(c: &Comparison) -> Option<u64> {
    let located =
        (c.statistical.as_ref()).is_none_or(|s| s.onset.method != OnsetMethod::WindowStart);
    match c.verdict {
        Verdict::Diverged { onset_step, .. } if located => Some(onset_step),
        _ => None,
    }
}

/// Returns the `lr` curve of an arm's first trace, if it has one.
fn lr_curve(traces: &[Trace]) -> Option<Curve> {
    let (steps, values) = traces.first()?.points(LR)?;
    Some(Curve {
        steps: steps.to_vec(),
        values: values.to_vec(),
    })
}

/// Formats a config value for display: strings without quotes, a missing value as "(missing)".
fn show(v: &Option<serde_json::Value>) -> String {
    v.as_ref().map_or("(missing)".into(), value_text)
}

/// Formats a JSON value for people: strings without quotes, and a number that is exactly an
/// `f32` (dropout, say, stored widened to f64 in a trace's config) in its shortest `f32` form —
/// `0.1`, not `0.10000000149011612`.
pub fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f64::from(f as f32) == f => format!("{}", f as f32),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// Formats a field difference as `key: a → b`.
fn format_field(prefix: &str, f: &FieldDiff) -> String {
    format!("{prefix}{}: {} → {}", f.key, show(&f.a), show(&f.b))
}

/// Returns the undeclared config differences.
fn undeclared(c: &Comparison) -> Vec<String> {
    c.config
        .undeclared
        .iter()
        .map(|f| format_field("", f))
        .collect()
}

/// Returns the environment differences.
fn environment(c: &Comparison) -> Vec<String> {
    (c.config.environment.iter())
        .map(|f| format_field("", f))
        .collect()
}

/// Returns the declared factors: those that differ as `key: a → b`, the others marked equal.
fn declared(c: &Comparison) -> Vec<String> {
    let differ = c.config.declared.iter().map(|f| format_field("", f));
    let equal = (c.config.declared_but_equal.iter()).map(|k| format!("{k}: equal in both arms"));
    differ.chain(equal).collect()
}

/// Builds the report entry of a comparison: its verdict label, the numbers its figure shows,
/// the undeclared and environment differences, `summary` (usually [`comparison_summary`]) and
/// the figure. `passed` is the caller's decision, as for [`comparison_figure`].
pub fn comparison_entry(
    name: &str,
    c: &Comparison,
    passed: bool,
    summary: String,
    figure: Option<FigureSource>,
) -> ReportEntry {
    ReportEntry {
        name: name.to_string(),
        verdict: c.verdict.label().to_string(),
        passed,
        summary,
        numbers: key_numbers(c),
        undeclared_differences: c
            .config
            .undeclared
            .iter()
            .map(|f| format_field("", f))
            .collect(),
        environment_differences: (c.config.environment.iter())
            .map(|f| format_field("", f))
            .collect(),
        figure,
    }
}

/// Builds a comparison's entry with its figure drawn from the traces it compared: what `lossdiff
/// report DIR` and `lossdiff compare` need, where the verdict alone decides whether it passes.
///
/// # Errors
/// [`crate::Error::InvalidFigure`] or a drawing error from rendering the figure.
pub fn comparison_entry_with_figure(
    name: &str,
    (a, b, perturbation): (&[Trace], &[Trace], &[Trace]),
    c: &Comparison,
    summary: String,
) -> crate::error::Result<ReportEntry> {
    let passed = c.verdict.passes();
    let figure = comparison_figure(name, a, b, perturbation, c, passed);
    let png = super::render_comparison(&figure)?;
    Ok(comparison_entry(
        name,
        c,
        passed,
        summary,
        Some(FigureSource::Png(png)),
    ))
}

/// Returns the comparison of `b` against `a` for a reader who never ran lossdiff, as short lines
/// (one fact each, joined by `\n`; the pages show them as a list): the verdict, then the exact,
/// tolerance and statistical lanes, every p-value with its test, and the rounding finding.
pub fn comparison_summary(a: &str, b: &str, c: &Comparison) -> String {
    let mut lines = vec![format!("{b} vs {a}: {}", c.describe())];
    lines.push(exact_line(c));
    lines.push(format!(
        "tolerance: Megatron's rtol {} rule {} ({} failing steps, {} allowed)",
        c.tolerance.rtol,
        if c.tolerance.pass { "passes" } else { "fails" },
        c.tolerance.failing_steps,
        c.tolerance.allowed_failures
    ));
    if let Some(l) = &c.statistical {
        lines.push(format!(
            "statistical ({}): late-window difference {:+.3e} against a margin of ±{:.3e}",
            yardstick_text(&l.yardstick),
            l.late_difference,
            l.margin
        ));
        lines.push(format!(
            "{}; {}",
            named_p(
                &format!("{P_BEYOND_MARGIN}, {}", deciding_window(l)),
                l.divergence_p_value
            ),
            named_p(P_TOST, l.tost_p_value)
        ));
        if let Some(r) = &l.rounding {
            let finding = match (r.within, r.onset_step) {
                (true, _) => "within rounding".to_string(),
                (false, Some(k)) => format!("beyond rounding from step {k}"),
                (false, None) => "beyond rounding".to_string(),
            };
            lines.push(format!(
                "rounding: {finding} ({} the perturbation spread, {})",
                ratio_text(r.ratio),
                named_p(P_BEYOND_ROUNDING, r.p_value)
            ));
        }
    }
    lines.join("\n")
}

/// Returns the exact lane's line; a non-finite value is named with its step and arm, since no
/// distance can be computed past it.
fn exact_line(c: &Comparison) -> String {
    let mut s = match c.exact.first_differing_step {
        None => "exact: bitwise identical".to_string(),
        Some(step) => format!(
            "exact: first differing step {step}, max relative difference {:.2e}",
            c.exact.max_rel_diff
        ),
    };
    if let Some(nf) = &c.non_finite {
        s += &format!(
            " over the finite steps; {} at step {} in {}",
            nf.value, nf.step, nf.arm
        );
    }
    s
}

/// Describes the yardstick in words, e.g. "4 last-bit perturbations of A, 3 pairs".
fn yardstick_text(y: &Yardstick) -> String {
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    match *y {
        Yardstick::Perturbation { ensemble, pairs } => format!(
            "{} of A, {}",
            plural(ensemble, "last-bit perturbation", "last-bit perturbations"),
            plural(pairs, "pair", "pairs")
        ),
        Yardstick::Seeds { a, b, paired } => format!(
            "{a} vs {b} seeds, {}",
            if paired { "paired" } else { "unpaired (Welch)" }
        ),
        Yardstick::SingleCurve => "one curve per arm".into(),
    }
}

/// Formats how many perturbation spreads a difference is ("0.6×", "1200×", "no spread").
fn ratio_text(r: f64) -> String {
    if !r.is_finite() {
        "infinitely many times (the ensemble has no spread)".into()
    } else if r < 10.0 {
        format!("{r:.1}×")
    } else {
        format!("{r:.0}×")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::{compare, CompareSettings};
    use crate::trace::{Origin, Series, LM_LOSS};

    fn trace(name: &str, seed: u64, steps: Vec<u64>, loss: Vec<f64>) -> Trace {
        Trace {
            schema_version: 1,
            name: name.into(),
            origin: Origin {
                format: "jsonl".into(),
                path: None,
            },
            config: serde_json::json!({"model": {"attention": name}}),
            fingerprint: serde_json::json!({}),
            seeds: [("init".to_string(), seed)].into(),
            loss_floor: None,
            series: [
                (LM_LOSS.to_string(), Series::from_f64(loss)),
                (LR.to_string(), Series::from_f64(vec![1e-3; steps.len()])),
            ]
            .into(),
            steps,
        }
    }

    /// A decaying curve with a small deterministic wiggle per seed.
    fn curve(seed: u64, n: u64, shift: f64) -> Vec<f64> {
        (0..n)
            .map(|t| {
                let x = t as f64;
                3.0 * (-x / 30.0).exp() + 0.01 * ((x * 0.7 + seed as f64).sin()) + shift
            })
            .collect()
    }

    #[test]
    fn seed_arms_get_mean_envelope_members_and_a_difference_band() {
        let steps: Vec<u64> = (1..=60).collect();
        let a: Vec<Trace> = (0..3)
            .map(|s| trace("naive", s, steps.clone(), curve(s, 60, 0.0)))
            .collect();
        let b: Vec<Trace> = (0..3)
            .map(|s| trace("flash", s, steps.clone(), curve(s, 60, 0.0)))
            .collect();
        let factors = ["model.attention".to_string()];
        let c = compare(&a, &b, &[], &factors, &CompareSettings::default()).unwrap();
        let fig = comparison_figure("t", &a, &b, &[], &c, c.verdict.passes());
        assert_eq!(fig.arm_a.members.len(), 3);
        let (lo, hi) = fig.arm_a.band.as_ref().unwrap();
        for i in 0..60 {
            assert!(lo[i] <= fig.arm_a.mean[i] && fig.arm_a.mean[i] <= hi[i]);
        }
        // Same curves in both arms: the difference is exactly zero and inside a centred band.
        assert!(fig.diff.values.iter().all(|v| *v == 0.0));
        let (blo, bhi) = fig.diff.noise_band.as_ref().unwrap();
        assert!(blo[10] < 0.0 && bhi[10] > 0.0);
        approx::assert_abs_diff_eq!(blo[10] + bhi[10], 0.0, epsilon = 1e-12);
        assert_eq!(fig.declared_factors, ["model.attention: naive → flash"]);
        assert!(fig.lr_a.is_some() && fig.lr_b.is_some());
        assert_eq!(fig.verdict, "identical");
        assert!(fig.passed);
    }

    /// A dependency upgrade changes the environment, not the config: the figure's red
    /// "undeclared config differences" box stays empty and the versions are listed apart.
    #[test]
    fn environment_differences_are_not_drawn_as_undeclared_config() {
        let steps: Vec<u64> = (1..=60).collect();
        let mut a = vec![trace("x", 1, steps.clone(), curve(1, 60, 0.0))];
        let mut b = vec![trace("x", 1, steps, curve(1, 60, 0.0))];
        a[0].fingerprint = serde_json::json!({"candle_version": "0.10.2"});
        b[0].fingerprint = serde_json::json!({"candle_version": "0.11.1"});
        let c = compare(&a, &b, &[], &[], &CompareSettings::default()).unwrap();
        assert_eq!(c.config.environment.len(), 1, "{:?}", c.config);
        let fig = comparison_figure("t", &a, &b, &[], &c, c.verdict.passes());
        assert!(
            fig.undeclared_differences.is_empty(),
            "{:?}",
            fig.undeclared_differences
        );
        assert_eq!(
            fig.environment_differences,
            ["candle_version: 0.10.2 → 0.11.1"]
        );
    }

    #[test]
    fn single_curves_on_different_grids_use_common_steps_and_the_verdict_onset() {
        let a = vec![trace("x", 1, (1..=80).collect(), curve(1, 80, 0.0))];
        let mut drift = curve(1, 80, 0.0);
        // An offset of 5e-3 on top of independent noise of sd 7e-4.
        for (t, v) in drift.iter_mut().enumerate() {
            *v += 7e-4 * crate::rng::normal(11, t as u64) + 5e-3;
        }
        let b_steps: Vec<u64> = (1..=80).filter(|s| s % 2 == 0).collect();
        let b_loss: Vec<f64> = b_steps.iter().map(|&s| drift[s as usize - 1]).collect();
        let b = vec![trace("x", 1, b_steps.clone(), b_loss)];
        let c = compare(&a, &b, &[], &[], &CompareSettings::default()).unwrap();
        let fig = comparison_figure("t", &a, &b, &[], &c, c.verdict.passes());
        assert_eq!(fig.diff.steps, b_steps);
        assert_eq!(fig.arm_a.steps.len(), 80);
        assert!(fig.diff.noise_band.is_none());
        assert_eq!(fig.verdict, "diverged");
        assert!(!fig.passed);
        let Verdict::Diverged { onset_step, .. } = c.verdict else {
            unreachable!("checked above")
        };
        assert_eq!(fig.onset, Some(onset_step));
        assert_eq!(fig.numbers.onset_step, Some(onset_step));
        approx::assert_abs_diff_eq!(fig.numbers.effect_size.unwrap(), 5e-3, epsilon = 1e-3);
    }

    #[test]
    fn perturbation_band_is_the_lanes_band_on_the_usable_steps() {
        let steps: Vec<u64> = (1..=50).collect();
        let nudged = |k: f64| {
            let mut c = curve(1, 50, 0.0);
            c.iter_mut()
                .enumerate()
                .for_each(|(t, v)| *v += 1e-6 * (t as f64 * k).sin());
            c
        };
        let a = vec![trace("x", 1, steps.clone(), curve(1, 50, 0.0))];
        let b = vec![trace("x", 1, steps.clone(), nudged(3.1))];
        let p: Vec<Trace> = [5.3, 7.7, 11.3]
            .iter()
            .map(|&k| trace("x", 1, steps.clone(), nudged(k)))
            .collect();
        let c = compare(&a, &b, &p, &[], &CompareSettings::default()).unwrap();
        let fig = comparison_figure("t", &a, &b, &p, &c, c.verdict.passes());
        let band = c.statistical.as_ref().unwrap().band.as_ref().unwrap();
        let (lo, hi) = fig.diff.noise_band.as_ref().unwrap();
        for i in 0..50 {
            approx::assert_abs_diff_eq!(lo[i], band.center[i] - band.half_width[i], epsilon = 0.0);
            approx::assert_abs_diff_eq!(hi[i], band.center[i] + band.half_width[i], epsilon = 0.0);
        }
        approx::assert_abs_diff_eq!(
            fig.diff.values[7],
            b[0].lm_loss().unwrap()[7] - a[0].lm_loss().unwrap()[7],
            epsilon = 1e-15
        );
    }
}
