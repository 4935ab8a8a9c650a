//! `lossdiff compare A B [more…]`: imports curves of any training stack, compares every arm after
//! the first against the first, prints the verdict with its three lanes, alignment and config
//! differences, and optionally writes the figure(s) and JSON. Exit 1 if any comparison diverged.

use crate::compare::{
    compare, CompareSettings, Comparison, Margin, OnsetMethod, Verdict, Yardstick,
};
use crate::import::{import, Format};
use crate::report::{comparison_figure, render_comparison};
use crate::trace::Trace;
use anyhow::Context;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `lossdiff compare`.
#[derive(clap::Args)]
pub(super) struct CompareArgs {
    /// Arms: a file, or comma-separated files that are seeds of one arm. The first arm is A (the
    /// reference); every other arm is compared against A.
    #[arg(required = true, num_args = 2.., value_name = "ARM")]
    arms: Vec<String>,
    /// Input format for every file (default: detected from content), e.g. megatron-golden, jsonl,
    /// csv, megatron-log, torchtitan, tensorboard, lossdiff.
    #[arg(long, value_name = "NAME")]
    format: Option<String>,
    /// Perturbation ensemble of A (comma-separated files): same config and seed as A, initial
    /// weights nudged in the last bit. The yardstick for "only rounding differs".
    #[arg(long, value_name = "FILES")]
    perturb: Option<String>,
    /// Config key the arms are meant to differ in (repeatable); other differences are reported
    /// as undeclared.
    #[arg(long = "declared", value_name = "KEY")]
    declared: Vec<String>,
    /// Series to compare.
    #[arg(long, default_value = crate::trace::LM_LOSS)]
    metric: String,
    /// Significance level of every test.
    #[arg(long, default_value_t = crate::compare::DEFAULT_ALPHA)]
    alpha: f64,
    /// Equivalence margin, relative to A's late-window mean.
    #[arg(long, default_value_t = crate::compare::DEFAULT_RELATIVE_MARGIN)]
    margin: f64,
    /// Tolerance lane's relative tolerance (Megatron-LM's approximate gate uses 0.05).
    #[arg(long, default_value_t = crate::compare::MEGATRON_RTOL)]
    rtol: f64,
    /// Tolerance lane's absolute tolerance.
    #[arg(long, default_value_t = crate::compare::MEGATRON_ATOL)]
    atol: f64,
    /// Write the comparison figure (PNG). With several B arms, B arm i goes to PATH with `-i`
    /// inserted before the extension (`fig.png` → `fig-1.png`, `fig-2.png`).
    #[arg(long, value_name = "PATH")]
    png: Option<PathBuf>,
    /// Write the comparisons as JSON: an array of `{a, b, comparison}`, one per B arm.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
}

/// One arm: its files and the traces read from them.
struct Arm {
    files: Vec<String>,
    traces: Vec<Trace>,
}

impl Arm {
    /// Names the arm by its file names (without directories).
    fn label(&self) -> String {
        let names: Vec<String> = (self.files.iter())
            .map(|f| {
                Path::new(f)
                    .file_name()
                    .map_or(f.clone(), |n| n.to_string_lossy().into_owned())
            })
            .collect();
        names.join(",")
    }
}

/// Runs `lossdiff compare`.
pub(super) fn run(args: CompareArgs) -> anyhow::Result<ExitCode> {
    let format = args
        .format
        .as_deref()
        .map(str::parse::<Format>)
        .transpose()?;
    let arms = (args.arms.iter())
        .map(|a| read_arm(a, format))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let perturb = match &args.perturb {
        Some(p) => read_arm(p, format)?.traces,
        None => Vec::new(),
    };
    let settings = CompareSettings {
        alpha: args.alpha,
        margin: Margin::Relative(args.margin),
        rtol: args.rtol,
        atol: args.atol,
        metric: args.metric.clone(),
        ..CompareSettings::default()
    };
    let (a, bs) = arms.split_first().expect("clap requires at least two arms");
    let mut out = Vec::new();
    let mut any_diverged = false;
    for (i, b) in bs.iter().enumerate() {
        let c = compare(&a.traces, &b.traces, &perturb, &args.declared, &settings)
            .with_context(|| format!("comparing {} with {}", a.label(), b.label()))?;
        any_diverged |= matches!(c.verdict, Verdict::Diverged { .. });
        print!("{}", render_comparison_text(&a.label(), &b.label(), &c));
        if let Some(png) = &args.png {
            let path = indexed_path(png, i + 1, bs.len());
            let title = format!("{} vs {}", b.label(), a.label());
            let fig = comparison_figure(
                &title,
                &a.traces,
                &b.traces,
                &perturb,
                &c,
                c.verdict.passes(),
            );
            let bytes = render_comparison(&fig)?;
            crate::fsutil::write_atomic(&path, &bytes)?;
            println!("figure: {}", path.display());
        }
        out.push(serde_json::json!({"a": a.files, "b": b.files, "comparison": c}));
    }
    if let Some(json) = &args.json {
        let text = serde_json::to_string_pretty(&out)?;
        crate::fsutil::write_atomic(json, text.as_bytes())?;
        println!("json: {}", json.display());
    }
    Ok(ExitCode::from(u8::from(any_diverged)))
}

/// Imports every file of a comma-separated arm.
fn read_arm(arg: &str, format: Option<Format>) -> anyhow::Result<Arm> {
    let files: Vec<String> = (arg.split(','))
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(String::from)
        .collect();
    anyhow::ensure!(!files.is_empty(), "arm {arg:?} names no file");
    let traces = (files.iter())
        .map(|f| import(Path::new(f), format).with_context(|| format!("cannot import {f}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Arm { files, traces })
}

/// Inserts `-index` before the extension when there are several B arms.
fn indexed_path(path: &Path, index: usize, of: usize) -> PathBuf {
    if of < 2 {
        return path.to_path_buf();
    }
    let stem = path.file_stem().map_or("".into(), |s| s.to_string_lossy());
    let name = match path.extension() {
        Some(ext) => format!("{stem}-{index}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{index}"),
    };
    path.with_file_name(name)
}

/// Most runs of steps listed before the list is elided.
const MAX_STEP_RUNS: usize = 8;

/// Formats a list of steps compactly as ranges (`1..50, 52, 60..64`), eliding the middle of long
/// lists (`1, 3, 5, 7, 9, 11, …, 59, 61..100`).
fn step_ranges(steps: &[u64]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < steps.len() {
        let mut j = i;
        while j + 1 < steps.len() && steps[j + 1] == steps[j] + 1 {
            j += 1;
        }
        parts.push(match j > i {
            true => format!("{}..{}", steps[i], steps[j]),
            false => steps[i].to_string(),
        });
        i = j + 1;
    }
    if parts.len() > MAX_STEP_RUNS {
        let tail = parts.split_off(parts.len() - 2);
        parts.truncate(MAX_STEP_RUNS - 2);
        parts.push("…".into());
        parts.extend(tail);
    }
    parts.join(", ")
}

/// Renders the readable summary of one comparison of `b` against `a`.
pub(super) fn render_comparison_text(a: &str, b: &str, c: &Comparison) -> String {
    let unlocated = matches!(c.verdict, Verdict::Diverged { .. })
        && (c.statistical.as_ref()).is_some_and(|s| s.onset.method == OnsetMethod::WindowStart);
    let caveat = match unlocated {
        true => " — no change point located; that step is the late window's start",
        false => "",
    };
    let verdict = c.verdict.describe();
    let mut s = format!("{b} vs {a} ({}): {verdict}{caveat}\n", c.metric);
    let al = &c.alignment;
    let mut align = format!("  alignment:   {} common steps", al.common);
    for (what, steps) in [("only in A", &al.only_a), ("only in B", &al.only_b)] {
        if !steps.is_empty() {
            let _ = write!(align, "; {} {what} ({})", steps.len(), step_ranges(steps));
        }
    }
    if al.missing_in_perturbation > 0 {
        let _ = write!(
            align,
            "; {} missing in the perturbation ensemble",
            al.missing_in_perturbation
        );
    }
    if al.usable < al.common {
        let _ = write!(align, "; statistics on the first {} (finite)", al.usable);
    }
    s += &align;
    s += "\n";
    s += &exact_line(c);
    s += &tolerance_line(c);
    s += &statistical_lines(c);
    s += &config_lines(c);
    for n in &c.notes {
        let _ = writeln!(s, "  note:        {n}");
    }
    s
}

fn exact_line(c: &Comparison) -> String {
    let e = &c.exact;
    match e.first_differing_step {
        None => format!("  exact:       bitwise identical ({} pairs)\n", e.pairs),
        Some(step) => format!(
            "  exact:       differs from step {step} on {} steps; max |B − A| = {:.3e}, max relative {:.3e}\n",
            e.differing_steps, e.max_abs_diff, e.max_rel_diff
        ),
    }
}

fn tolerance_line(c: &Comparison) -> String {
    let t = &c.tolerance;
    let first = t
        .first_failing_step
        .map(|s| format!(", first at step {s}"))
        .unwrap_or_default();
    format!(
        "  tolerance:   {} (Megatron rule |B − A| ≤ {} + {}·|A|: {} failing steps{first}, {} allowed)\n",
        if t.pass { "pass" } else { "FAIL" },
        t.atol,
        t.rtol,
        t.failing_steps,
        t.allowed_failures
    )
}

fn statistical_lines(c: &Comparison) -> String {
    let Some(st) = &c.statistical else {
        return "  statistical: not computed (see notes)\n".into();
    };
    let yardstick = match st.yardstick {
        Yardstick::Perturbation { ensemble, pairs } => {
            format!("perturbation ensemble of {ensemble} vs {pairs} observed pairs")
        }
        Yardstick::Seeds { a, b, paired } => format!(
            "seeds ({a} A, {b} B, {})",
            if paired { "paired" } else { "Welch" }
        ),
        Yardstick::SingleCurve => "single curve (HAC variance of B − A, no ensemble)".into(),
    };
    let mut s = format!("  statistical: yardstick {yardstick}\n");
    let rel = st
        .relative_difference
        .map(|r| format!(" ({:+.4}%)", r * 100.0))
        .unwrap_or_default();
    let _ = writeln!(
        s,
        "               late window from step {} ({} steps): mean B − A = {:+.3e}{rel}, margin ±{:.3e}",
        st.window_start_step, st.window_steps, st.late_difference, st.margin
    );
    let mut tests = Vec::new();
    if let Some(t) = &st.yardstick_test {
        tests.push(format!("yardstick p = {:.3e}", t.p_value));
    }
    tests.push(format!("drift p = {:.3e}", st.drift_p_value));
    tests.push(format!("TOST p = {:.3e}", st.tost_p_value));
    tests.push(format!("divergence p = {:.3e}", st.divergence_p_value));
    let _ = writeln!(s, "               {}", tests.join(", "));
    if let Some(b) = &st.band {
        let _ = writeln!(
            s,
            "               noise band ({} members): {} of {} observed points outside",
            b.k, b.observed_outside, b.observed_points
        );
    }
    let alarm = st
        .onset
        .cusum_alarm_step
        .map(|a| format!(", CUSUM alarm at step {a}"))
        .unwrap_or_default();
    let _ = match st.onset.method {
        OnsetMethod::WindowStart => writeln!(
            s,
            "               onset: no change point located (reported as the window start, step {})",
            st.onset.step
        ),
        m => writeln!(
            s,
            "               onset: step {} ({m:?}{alarm})",
            st.onset.step
        ),
    };
    for n in &st.notes {
        let _ = writeln!(s, "               note: {n}");
    }
    s
}

fn config_lines(c: &Comparison) -> String {
    let cfg = &c.config;
    let mut s = String::new();
    let show = |v: &Option<serde_json::Value>| match v {
        None => "(missing)".to_string(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    let mut list = |title: &str, items: &[crate::compare::FieldDiff]| {
        for f in items {
            let _ = writeln!(
                s,
                "  {title:<12} {}: {} → {}",
                f.key,
                show(&f.a),
                show(&f.b)
            );
        }
    };
    list("declared:", &cfg.declared);
    list("undeclared:", &cfg.undeclared);
    list("environment:", &cfg.environment);
    for k in &cfg.declared_but_equal {
        let _ = writeln!(s, "  declared:    {k} is equal in both arms");
    }
    for w in &cfg.stochastic {
        let _ = writeln!(
            s,
            "  warning:     {} = {} in arm {:?}: a stochastic component is on",
            w.key,
            crate::report::value_text(&serde_json::json!(w.value)),
            w.arm
        );
    }
    if cfg.declared.is_empty() && cfg.undeclared.is_empty() && cfg.environment.is_empty() {
        s += "  config:      no differences\n";
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_ranges_merge_runs() {
        assert_eq!(step_ranges(&[1, 2, 3, 5, 7, 8]), "1..3, 5, 7..8");
        assert_eq!(step_ranges(&[]), "");
        let odd: Vec<u64> = (1..60).step_by(2).chain(61..=100).collect();
        assert_eq!(step_ranges(&odd), "1, 3, 5, 7, 9, 11, …, 59, 61..100");
    }

    #[test]
    fn indexed_path_inserts_the_index_only_for_several_arms() {
        let p = Path::new("out/fig.png");
        assert_eq!(indexed_path(p, 1, 1), PathBuf::from("out/fig.png"));
        assert_eq!(indexed_path(p, 2, 3), PathBuf::from("out/fig-2.png"));
        assert_eq!(indexed_path(Path::new("fig"), 1, 2), PathBuf::from("fig-1"));
    }
}
