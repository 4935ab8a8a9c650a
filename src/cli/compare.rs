//! `lossdiff compare A B [more…]`: imports curves of any training stack, compares every arm after
//! the first against the first, prints the verdict with its three lanes, alignment and config
//! differences, and optionally writes the figure(s) and JSON. Exit 1 if any comparison diverged.

use crate::compare::{
    compare, named_p, CompareSettings, Comparison, Margin, OnsetMethod, PairingMode, Verdict,
    Yardstick, P_BEYOND_MARGIN, P_BEYOND_ROUNDING, P_DRIFT, P_TOST,
};
use crate::golden::Golden;
use crate::import::{import_with, require_series, Format, ImportOptions};
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
    /// Series to compare (repeatable: each is compared on its own common steps, whatever its
    /// cadence).
    #[arg(long = "metric", value_name = "NAME", default_value = crate::trace::LM_LOSS)]
    metrics: Vec<String>,
    /// Rank to read from logs whose lines carry rank prefixes (`[rank1]:`); default: the lowest
    /// rank with metric lines.
    #[arg(long)]
    rank: Option<u32>,
    /// Run to read from a file holding several (a W&B CSV export of two runs).
    #[arg(long, value_name = "NAME")]
    run: Option<String>,
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
    /// The arms share seeds: pair A's i-th run with B's i-th (when traces record no seed).
    #[arg(long, conflicts_with = "unpaired")]
    paired: bool,
    /// The arms are independent runs: never pair them, even a lone run per arm.
    #[arg(long)]
    unpaired: bool,
    /// Compare on the common steps even when a run stopped before its partner.
    #[arg(long)]
    common_steps: bool,
}

/// One arm: its files, the traces read from them, and the label it is shown under.
struct Arm {
    files: Vec<String>,
    traces: Vec<Trace>,
    label: String,
    /// Perturbation traces of a golden given as this arm.
    golden_perturbations: Vec<Trace>,
}

impl Arm {
    fn label(&self) -> String {
        self.label.clone()
    }
}

/// Runs `lossdiff compare`.
pub(super) fn run(args: CompareArgs) -> anyhow::Result<ExitCode> {
    let opts = ImportOptions {
        format: args
            .format
            .as_deref()
            .map(str::parse::<Format>)
            .transpose()?,
        rank: args.rank,
        run: args.run.clone(),
    };
    let mut arms = (args.arms.iter())
        .map(|a| read_arm(a, &opts))
        .collect::<anyhow::Result<Vec<_>>>()?;
    label_arms(&mut arms);
    let mut perturb = match &args.perturb {
        Some(p) => read_arm(p, &opts)?.traces,
        None => Vec::new(),
    };
    if perturb.is_empty() && !arms[0].golden_perturbations.is_empty() {
        perturb = std::mem::take(&mut arms[0].golden_perturbations);
        println!(
            "note: using the {} perturbation traces of golden {} as the perturbation ensemble",
            perturb.len(),
            arms[0].label
        );
    }
    for t in arms.iter().flat_map(|a| &a.traces).chain(&perturb) {
        if let Some(choice) = t
            .config
            .pointer("/import/rank_choice")
            .and_then(|v| v.as_str())
        {
            println!(
                "note: {}: {choice}",
                t.origin.path.as_deref().unwrap_or(&t.name)
            );
        }
        for m in &args.metrics {
            require_series(t, m)?;
        }
    }
    let (a, bs) = arms.split_first().expect("clap requires at least two arms");
    let mut out = Vec::new();
    let mut any_diverged = false;
    let figures = bs.len() * args.metrics.len();
    for (m, metric) in args.metrics.iter().enumerate() {
        let settings = CompareSettings {
            alpha: args.alpha,
            margin: Margin::Relative(args.margin),
            rtol: args.rtol,
            atol: args.atol,
            metric: metric.clone(),
            pairing: match (args.paired, args.unpaired) {
                (true, _) => PairingMode::Paired,
                (_, true) => PairingMode::Unpaired,
                _ => PairingMode::Auto,
            },
            common_steps_only: args.common_steps,
            ..CompareSettings::default()
        };
        for (i, b) in bs.iter().enumerate() {
            let c = compare(&a.traces, &b.traces, &perturb, &args.declared, &settings)
                .with_context(|| {
                    format!("comparing {} with {} on {metric}", a.label(), b.label())
                })?;
            // Exit 1 on a divergence, and, when a rounding yardstick was given, beyond rounding.
            any_diverged |= matches!(c.verdict, Verdict::Diverged { .. }) || c.beyond_rounding();
            print!("{}", render_comparison_text(&a.label(), &b.label(), &c));
            if let Some(png) = &args.png {
                let path = indexed_path(png, m * bs.len() + i + 1, figures);
                let title = format!("{} vs {}", b.label(), a.label());
                let passed = c.verdict.passes() && !c.beyond_rounding();
                let fig = comparison_figure(&title, &a.traces, &b.traces, &perturb, &c, passed);
                let bytes = render_comparison(&fig)?;
                crate::fsutil::write_atomic(&path, &bytes)?;
                println!("figure: {}", path.display());
            }
            out.push(serde_json::json!({"a": a.files, "b": b.files, "comparison": c}));
        }
    }
    if let Some(json) = &args.json {
        let text = serde_json::to_string_pretty(&out)?;
        crate::fsutil::write_atomic(json, text.as_bytes())?;
        println!("json: {}", json.display());
    }
    Ok(ExitCode::from(u8::from(any_diverged)))
}

/// Whether a file is a lossdiff golden (an arm's ensemble), from the start of its content;
/// [`Golden::load`] then checks the whole file.
pub(super) fn is_golden(path: &Path) -> bool {
    use std::io::Read;
    // Goldens are written with their header first (`"format": "lossdiff-golden"` on line 2);
    // reading a huge log whole just to find out it is not one would double its import time.
    // Only a regular file is opened: opening a FIFO would block until a writer comes.
    if crate::limits::check_regular_file(path).is_err() {
        return false;
    }
    let mut head = Vec::new();
    let read = std::fs::File::open(path).and_then(|f| f.take(4096).read_to_end(&mut head));
    let text = String::from_utf8_lossy(&head);
    read.is_ok() && text.trim_start().starts_with('{') && text.contains("\"lossdiff-golden\"")
}

/// Imports every file of a comma-separated arm; a lossdiff golden contributes its seed traces.
fn read_arm(arg: &str, opts: &ImportOptions) -> anyhow::Result<Arm> {
    let files: Vec<String> = (arg.split(','))
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(String::from)
        .collect();
    anyhow::ensure!(!files.is_empty(), "arm {arg:?} names no file");
    let mut traces = Vec::new();
    let mut golden_perturbations = Vec::new();
    for f in &files {
        let path = Path::new(f);
        let golden = match opts.format {
            Some(f) => f == Format::LossdiffGolden,
            None => is_golden(path),
        };
        if golden {
            let g = Golden::load(path).with_context(|| format!("cannot read golden {f}"))?;
            traces.extend(g.seed_traces);
            golden_perturbations.extend(g.perturbation_traces);
            continue;
        }
        traces.push(import_with(path, opts).with_context(|| format!("cannot import {f}"))?);
    }
    Ok(Arm {
        files,
        traces,
        label: String::new(),
        golden_perturbations,
    })
}

/// Labels each arm by the shortest part of its path(s) that tells it from the other arms, and
/// names its imported traces the same way, so text, figures and reports agree.
fn label_arms(arms: &mut [Arm]) {
    let keys: Vec<Option<PathBuf>> = arms.iter().map(|a| arm_key(&a.files)).collect();
    let distinct = keys
        .iter()
        .flatten()
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let all_files: Vec<PathBuf> = arms
        .iter()
        .flat_map(|a| a.files.iter().map(PathBuf::from))
        .collect();
    let file_labels = short_labels(&all_files);
    let arm_labels = match distinct == arms.len() && keys.iter().all(Option::is_some) {
        true => short_labels(&keys.into_iter().flatten().collect::<Vec<_>>()),
        false => Vec::new(),
    };
    let mut next = file_labels.into_iter();
    for (i, arm) in arms.iter_mut().enumerate() {
        let mine: Vec<String> = next.by_ref().take(arm.files.len()).collect();
        if arm.files.len() == arm.traces.len() {
            for (t, l) in arm.traces.iter_mut().zip(&mine) {
                if t.origin.path.is_some() {
                    t.name = l.clone();
                }
            }
        }
        arm.label = arm_labels.get(i).cloned().unwrap_or_else(|| mine.join(","));
    }
}

/// The path that stands for an arm: its one run, or the directory its files share.
fn arm_key(files: &[String]) -> Option<PathBuf> {
    let runs: Vec<PathBuf> = files.iter().map(|f| run_path(Path::new(f))).collect();
    if let [one] = &runs[..] {
        return Some(one.clone());
    }
    let first: Vec<_> = runs.first()?.components().collect();
    let shared = (0..first.len())
        .take_while(|&i| runs.iter().all(|r| r.components().nth(i) == Some(first[i])))
        .count();
    (shared > 0).then(|| first[..shared].iter().collect())
}

/// A file's run: the directory of a TensorBoard event file or a `trainer_state.json` (their
/// names say nothing about the run), else the file itself.
fn run_path(p: &Path) -> PathBuf {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let generic = name.contains("tfevents") || name == "trainer_state.json";
    match (generic, p.parent()) {
        (true, Some(dir)) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => p.to_path_buf(),
    }
}

/// Returns, for each path, the shortest part that tells it apart from the others: the one
/// component where they all differ when there is one (`runs/flash/seed1.jsonl` and
/// `runs/naive/seed1.jsonl` → `flash`, `naive`), else what lies between their common start and
/// end; file extensions dropped. Equal paths get `#2`, `#3`.
pub(super) fn short_labels(paths: &[PathBuf]) -> Vec<String> {
    let comps = |strip_ext: bool| -> Vec<Vec<String>> {
        (paths.iter())
            .map(|p| {
                let p = run_path(p);
                let mut c: Vec<String> = (p.components())
                    .filter(|c| matches!(c, std::path::Component::Normal(_)))
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                if let (Some(last), Some(stem), true) = (c.last_mut(), p.file_stem(), strip_ext) {
                    if p.extension().is_some() && !p.is_dir() {
                        *last = stem.to_string_lossy().into_owned();
                    }
                }
                c
            })
            .collect()
    };
    let unique =
        |l: &[String]| l.iter().collect::<std::collections::BTreeSet<_>>().len() == l.len();
    let mut labels = distinguishing(&comps(true));
    if !unique(&labels) {
        // `run.jsonl` and `run.csv`: the extension is what tells them apart.
        let with_ext = distinguishing(&comps(false));
        if unique(&with_ext) {
            labels = with_ext;
        }
    }
    let mut seen: std::collections::BTreeMap<String, usize> = Default::default();
    for l in &mut labels {
        let n = seen.entry(l.clone()).or_insert(0);
        *n += 1;
        if *n > 1 {
            *l = format!("{l}#{n}");
        }
    }
    labels
}

/// The distinguishing part of each component list (see [`short_labels`]).
fn distinguishing(comps: &[Vec<String>]) -> Vec<String> {
    let last = |c: &Vec<String>| c.last().cloned().unwrap_or_else(|| "?".into());
    match comps.len() {
        0 => Vec::new(),
        1 => vec![last(&comps[0])],
        _ => {
            let min = comps.iter().map(Vec::len).min().unwrap_or(0);
            let same_at = |i: usize| comps.iter().all(|c| c[i] == comps[0][i]);
            let pre = (0..min).take_while(|&i| same_at(i)).count();
            let same_from_end = |k: usize| {
                let first = &comps[0][comps[0].len() - 1 - k];
                comps.iter().all(|c| &c[c.len() - 1 - k] == first)
            };
            let suf = (0..min - pre).take_while(|&k| same_from_end(k)).count();
            let equal_len = comps.iter().all(|c| c.len() == comps[0].len());
            let all_differ = |i: usize| {
                let set: std::collections::BTreeSet<&String> =
                    comps.iter().map(|c| &c[i]).collect();
                set.len() == comps.len()
            };
            let single = (pre..comps[0].len() - suf)
                .rev()
                .find(|&i| equal_len && all_differ(i));
            comps
                .iter()
                .map(|c| match single {
                    Some(i) => c[i].clone(),
                    None if c.len() > pre + suf => c[pre..c.len() - suf].join("/"),
                    None => last(c),
                })
                .collect()
        }
    }
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
        // Differences of finite values are all zero: what differs is a NaN or an infinity (or
        // the sign of a zero), and a "max |B − A| = 0" would read as no difference at all.
        Some(step) if e.max_abs_diff == 0.0 && non_finite(c) => format!(
            "  exact:       differs from step {step} on {} steps, only where a value is non-finite (NaN or ±inf); the finite values are equal\n",
            e.differing_steps
        ),
        Some(step) if e.max_abs_diff == 0.0 => format!(
            "  exact:       differs in its bits from step {step} on {} steps, but the values are equal as numbers (e.g. −0 and +0)\n",
            e.differing_steps
        ),
        Some(step) => format!(
            "  exact:       differs from step {step} on {} steps; over finite values max |B − A| = {:.3e}, max relative {:.3e}\n",
            e.differing_steps, e.max_abs_diff, e.max_rel_diff
        ),
    }
}

/// Whether one arm has a non-finite value where the other is finite (as far as the alignment saw).
fn non_finite(c: &Comparison) -> bool {
    matches!(
        c.verdict,
        Verdict::Diverged {
            direction: crate::compare::Direction::NonFinite,
            ..
        }
    ) || c.alignment.usable < c.alignment.common
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
            format!(
                "one same-seed pair ({pairs}), spread from a perturbation ensemble of {ensemble}"
            )
        }
        Yardstick::Seeds { a, b, paired } => format!(
            "seeds ({a} A, {b} B, {})",
            if paired {
                "paired t on per-pair differences"
            } else {
                "independent, Welch"
            }
        ),
        Yardstick::SingleCurve => "one curve per arm (AR(1) noise model of B − A)".into(),
    };
    let mut s = format!("  statistical: {yardstick}\n");
    let rel = st
        .relative_difference
        .map(|r| format!(" ({:+.4}%)", r * 100.0))
        .unwrap_or_default();
    let se = st
        .late
        .map(|e| format!(" ± {:.2e} (se)", e.se))
        .unwrap_or_default();
    let _ = writeln!(
        s,
        "               late window from step {} ({} steps): mean B − A = {:+.3e}{se}{rel}, margin ±{:.3e}",
        st.window_start_step, st.window_steps, st.late_difference, st.margin
    );
    let _ = writeln!(
        s,
        "               margin: {}; {}",
        named_p(P_TOST, st.tost_p_value),
        named_p(
            &format!(
                "{P_BEYOND_MARGIN}, any of {} windows, the late one keeping α/2",
                st.windows.len()
            ),
            st.divergence_p_value
        )
    );
    for w in st.windows.iter().filter(|w| w.beyond_margin) {
        if let Some(e) = w.evidence {
            let _ = writeln!(
                s,
                "               beyond the margin over steps {}–{}: B − A = {:+.3e} (margin ±{:.3e}, {})",
                w.first_step,
                w.last_step,
                e.estimate,
                w.margin,
                named_p(
                    &format!("{P_BEYOND_MARGIN}, adjusted over the windows"),
                    w.p_beyond_adjusted
                )
            );
        }
    }
    if let Some(r) = st.rejoin_step {
        let _ = writeln!(s, "               back inside the margin from step {r}");
    }
    match &st.rounding {
        Some(r) if r.within => {
            let _ = writeln!(
                s,
                "               rounding: within rounding ({:.1}× the spread of {} perturbations, {})",
                r.ratio,
                r.ensemble,
                named_p(P_BEYOND_ROUNDING, r.p_value)
            );
        }
        Some(r) => {
            let _ = writeln!(
                s,
                "               rounding: BEYOND rounding from step {} ({:.0}× the spread of {} perturbations, {})",
                r.onset_step.unwrap_or(st.onset.step),
                r.ratio,
                r.ensemble,
                named_p(P_BEYOND_ROUNDING, r.p_value)
            );
        }
        None => {}
    }
    let _ = writeln!(
        s,
        "               drift: {}",
        named_p(P_DRIFT, st.drift_p_value)
    );
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
        .map(|a| format!("; a CUSUM monitor would have alarmed at step {a}"))
        .unwrap_or_default();
    let how = match st.onset.method {
        // Bitwise-equal pairs have no departure to date.
        OnsetMethod::NoDeparture => None,
        OnsetMethod::FirstDifferingStep => Some("bitwise identical before it"),
        OnsetMethod::FromFirstStep => Some("already far outside the yardstick at the first step"),
        OnsetMethod::StepChange => Some("a level shift starts there"),
        OnsetMethod::RampStart => Some("a ramp starts there"),
        OnsetMethod::WindowStart => Some("no break located: the late window's start"),
    };
    if let Some(how) = how {
        let _ = writeln!(
            s,
            "               onset: step {} ({how}){alarm}",
            st.onset.step
        );
    }
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
    for d in &cfg.schedules {
        let kind = if d.declared {
            "declared:"
        } else {
            "undeclared:"
        };
        let _ = writeln!(
            s,
            "  {kind:<12} {} differs from step {} ({:e} → {:e}): a schedule series, so its config differs",
            d.series, d.from_step, d.a, d.b
        );
    }
    if !cfg.one_arm_only.is_empty() {
        let (a, b) = cfg
            .one_arm_only
            .iter()
            .partition::<Vec<_>, _>(|f| f.b.is_none());
        let names = |v: &[&crate::compare::FieldDiff]| {
            let mut keys: Vec<&str> = v.iter().map(|f| f.key.as_str()).take(6).collect();
            if v.len() > 6 {
                keys.push("…");
            }
            keys.join(", ")
        };
        for (arm, v) in [("A", a), ("B", b)] {
            if !v.is_empty() {
                let _ = writeln!(
                    s,
                    "  recorded:    by {arm} only, not compared ({} keys): {}",
                    v.len(),
                    names(&v)
                );
            }
        }
    }
    for f in &cfg.provenance {
        let _ = writeln!(
            s,
            "  provenance:  {}: {} → {}",
            f.key,
            show(&f.a),
            show(&f.b)
        );
    }
    for k in &cfg.declared_but_equal {
        let _ = writeln!(s, "  declared:    {k} is equal in both arms");
    }
    for w in &cfg.stochastic {
        let _ = writeln!(
            s,
            "  warning:     {} = {} in arm {}: a stochastic component is on",
            w.key,
            crate::report::value_text(&serde_json::json!(w.value)),
            match w.arm {
                crate::compare::ArmId::A => "A",
                crate::compare::ArmId::B => "B",
            }
        );
    }
    if cfg.declared.is_empty()
        && cfg.undeclared.is_empty()
        && cfg.environment.is_empty()
        && cfg.schedules.is_empty()
    {
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
    fn labels_are_the_shortest_distinguishing_part_of_each_path() {
        let l = |ps: &[&str]| short_labels(&ps.iter().map(PathBuf::from).collect::<Vec<_>>());
        assert_eq!(
            l(&["runs/flash/seed1.jsonl", "runs/naive/seed1.jsonl"]),
            ["flash", "naive"]
        );
        assert_eq!(l(&["a.jsonl", "b.jsonl"]), ["a", "b"]);
        assert_eq!(
            l(&[
                "tb/flash/events.out.tfevents.1796.vm.16650.0",
                "tb/naive/events.out.tfevents.1797.vm.1.0"
            ]),
            ["flash", "naive"]
        );
        assert_eq!(
            l(&["x/2024-01-01/flash/log", "x/2024-01-02/naive/log"]),
            ["flash", "naive"]
        );
        assert_eq!(l(&["a/run.log", "a/b/run.log"]), ["run", "b"]);
        assert_eq!(l(&["same.log", "same.log"]), ["same", "same#2"]);
        assert_eq!(l(&["d/run.jsonl", "d/run.csv"]), ["run.jsonl", "run.csv"]);
        assert_eq!(l(&["only/one/file.jsonl"]), ["file"]);
    }

    #[test]
    fn indexed_path_inserts_the_index_only_for_several_arms() {
        let p = Path::new("out/fig.png");
        assert_eq!(indexed_path(p, 1, 1), PathBuf::from("out/fig.png"));
        assert_eq!(indexed_path(p, 2, 3), PathBuf::from("out/fig-2.png"));
        assert_eq!(indexed_path(Path::new("fig"), 1, 2), PathBuf::from("fig-1"));
    }
}
