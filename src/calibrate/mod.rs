//! Calibration: does lossdiff see what it claims to see, and does it stay quiet when nothing
//! changed? Runs the reference model on null pairs and on the fault catalog and measures, for the
//! statistical verdict and for Megatron-LM's tolerance rule side by side:
//!
//! - false-positive rate on null pairs — (1) same config and seed, initial weights nudged in the
//!   last bit by different perturbation seeds; (2) different seeds with dropout on — with a
//!   Wilson 95 % interval;
//! - detection rate, onset error and steps-to-detect for every fault in [`Fault::CATALOG`].
//!
//! Ground truth for a fault's onset is measured, not assumed: the first step at which the faulty
//! run's loss differs in any bit from the clean run of the same seed.

use crate::compare::{compare, CompareSettings, Comparison, Verdict};
use crate::config::RunConfig;
use crate::error::{Error, Result};
use crate::experiment::{Role, RunRequest};
use crate::faults::Fault;
use crate::rng::mix64;
use crate::runner::{run_all, RunnerOptions};
use crate::trace::Trace;
use crate::train::loss_bits;
use serde::{Deserialize, Serialize};

pub mod synthetic;

/// What to run.
#[derive(Debug, Clone)]
pub struct CalibrationOptions {
    /// Base run config (a preset with overrides).
    pub base: RunConfig,
    /// Seeds; each seed gets a clean run, a pool of perturbed runs and one run per fault.
    pub seeds: Vec<u64>,
    /// Perturbed runs per seed: each in turn plays arm B of a null pair, the next
    /// `yardstick` ones (cyclically) its yardstick.
    pub perturbation_pool: usize,
    /// Perturbations in each comparison's yardstick.
    pub yardstick: usize,
    /// Seeds run with dropout 0.1 for the seed null (split into random halves).
    pub dropout_seeds: usize,
    /// Random splits of the dropout seeds into two arms.
    pub dropout_splits: usize,
    /// Seeds per arm in a dropout split.
    pub dropout_arm_size: usize,
    /// Faults to test.
    pub faults: Vec<Fault>,
    /// Comparison settings.
    pub settings: CompareSettings,
    /// Parallelism and cache.
    pub runner: RunnerOptions,
    /// Cases per synthetic family (see [`synthetic`]); 0 skips them.
    pub synthetic_cases: u64,
}

impl CalibrationOptions {
    /// The full calibration behind the README table: gate model, 200 steps, 96 seeds (so every
    /// rate's 95 % Wilson interval is at most 20 points wide, even a rate near 50 %: with 24 the
    /// rounding rates of the subtle faults spanned 35–72 %), and 400 cases per synthetic family.
    pub fn full() -> Self {
        let mut base = RunConfig::preset("gate").expect("gate preset exists");
        // Short decay, so faults that act after the decay ends have steps to act on.
        base.train.lr_decay_iters = Some(150);
        CalibrationOptions {
            base,
            seeds: (101..=196).collect(),
            perturbation_pool: 6,
            yardstick: 4,
            dropout_seeds: 10,
            dropout_splits: 20,
            dropout_arm_size: 3,
            faults: Fault::CATALOG.to_vec(),
            settings: CompareSettings::default(),
            runner: RunnerOptions::default(),
            synthetic_cases: 400,
        }
    }

    /// A reduced calibration that fits in CI: 100 steps, 2 seeds.
    pub fn reduced() -> Self {
        let mut o = CalibrationOptions::full();
        o.base.train.train_iters = 100;
        o.base.train.lr_warmup_iters = 10;
        o.base.train.lr_decay_iters = Some(75);
        o.seeds = vec![101, 102];
        o.dropout_seeds = 8;
        o.dropout_splits = 10;
        o.synthetic_cases = 40;
        o
    }
}

/// False positives on one kind of null pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NullRow {
    /// What the null pairs are.
    pub kind: String,
    /// Pairs compared.
    pub pairs: usize,
    /// Pairs lossdiff called diverged.
    pub false_positives: usize,
    /// Wilson 95 % interval of the false-positive rate.
    pub rate_ci: (f64, f64),
    /// Pairs Megatron's rtol rule failed.
    pub megatron_failures: usize,
    /// Pairs called identical / equivalent / inconclusive.
    pub verdicts: (usize, usize, usize),
    /// Pairs found beyond rounding (false positives of the rounding finding, where it applies).
    #[serde(default)]
    pub beyond_rounding: usize,
}

/// Detection of one fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRow {
    /// The fault.
    pub fault: Fault,
    /// Seeds tested.
    pub replicates: usize,
    /// Seeds where lossdiff said diverged.
    pub detected: usize,
    /// Wilson 95 % interval of the detection rate.
    pub rate_ci: (f64, f64),
    /// Median measured true onset (first differing loss bit), over seeds.
    pub true_onset: Option<u64>,
    /// Median of estimated onset − true onset, over detections (diverged or beyond rounding).
    pub onset_error: Option<f64>,
    /// 10th and 90th percentiles of the onset error.
    #[serde(default)]
    pub onset_error_spread: Option<(f64, f64)>,
    /// Seeds where the rounding finding said "beyond rounding".
    #[serde(default)]
    pub beyond_rounding: usize,
    /// Wilson 95 % interval of the beyond-rounding rate.
    #[serde(default)]
    pub rounding_ci: (f64, f64),
    /// Median of CUSUM alarm step − true onset, over detections where the CUSUM alarmed.
    pub steps_to_detect: Option<f64>,
    /// Median late-window relative effect `(B − A)/A`, over seeds.
    pub effect: Option<f64>,
    /// Seeds where Megatron's rtol 0.05 rule failed.
    pub megatron_detected: usize,
}

/// The calibration result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Steps per run.
    pub steps: u64,
    /// Seeds used.
    pub seeds: usize,
    /// Significance level.
    pub alpha: f64,
    /// Null-pair rows.
    pub nulls: Vec<NullRow>,
    /// Fault rows.
    pub faults: Vec<FaultRow>,
    /// Synthetic families (curves lossdiff did not train).
    #[serde(default)]
    pub synthetic: Option<synthetic::SyntheticCalibration>,
}

/// Runs the calibration.
///
/// # Errors
/// Training and comparison errors.
pub fn calibrate(opts: &CalibrationOptions) -> Result<Calibration> {
    let mut requests = Vec::new();
    let mut req = |arm: String, seed: u64, f: &dyn Fn(&mut RunConfig)| {
        let mut config = opts.base.clone();
        config.train.seed = seed;
        f(&mut config);
        requests.push(RunRequest {
            cell: "calibration".into(),
            arm,
            role: Role::Seed,
            seed,
            config,
            threads: 1,
            command: None,
        });
    };
    for &s in &opts.seeds {
        req(format!("clean-{s}"), s, &|_| {});
        for p in 1..=opts.perturbation_pool as u64 {
            req(format!("perturb-{s}-{p}"), s, &|c| c.train.perturb_seed = p);
        }
        for f in &opts.faults {
            req(format!("{}-{s}", f.name()), s, &|c| c.train.inject = *f);
        }
    }
    for i in 0..opts.dropout_seeds as u64 {
        req(format!("dropout-{i}"), 500 + i, &|c| {
            c.model.attention_dropout = 0.1;
            c.model.hidden_dropout = 0.1;
        });
    }
    let (traces, _) = run_all("calibrate", &requests, &opts.runner)?;
    let get = |arm: &str| -> Result<&Trace> {
        requests
            .iter()
            .position(|r| r.arm == arm)
            .map(|i| &traces[i])
            .ok_or_else(|| Error::InvalidValue {
                origin: "calibrate".into(),
                key: "run".into(),
                expected: "a run that was requested".into(),
                got: arm.into(),
            })
    };

    // Null 1: last-bit perturbations of the same seed.
    let mut perturb = Vec::new();
    let pool = opts.perturbation_pool;
    for &s in &opts.seeds {
        let clean = get(&format!("clean-{s}"))?.clone();
        for j in 0..pool {
            let b = get(&format!("perturb-{s}-{}", j + 1))?.clone();
            let yard: Vec<Trace> = (1..=opts.yardstick)
                .map(|k| get(&format!("perturb-{s}-{}", (j + k) % pool + 1)).cloned())
                .collect::<Result<_>>()?;
            perturb.push(compare(
                std::slice::from_ref(&clean),
                &[b],
                &yard,
                &[],
                &opts.settings,
            )?);
        }
    }
    // Null 2: different seeds, dropout on, random halves.
    let dropout: Vec<Trace> = (0..opts.dropout_seeds)
        .map(|i| get(&format!("dropout-{i}")).cloned())
        .collect::<Result<_>>()?;
    let mut seeds_null = Vec::new();
    for split in 0..opts.dropout_splits as u64 {
        let mut order: Vec<usize> = (0..dropout.len()).collect();
        order.sort_by_key(|&i| mix64(split.wrapping_mul(0x9E37) ^ i as u64));
        let k = opts.dropout_arm_size.min(dropout.len() / 2);
        let a: Vec<Trace> = order[..k].iter().map(|&i| dropout[i].clone()).collect();
        let b: Vec<Trace> = order[k..2 * k]
            .iter()
            .map(|&i| dropout[i].clone())
            .collect();
        seeds_null.push(compare(&a, &b, &[], &[], &opts.settings)?);
    }
    let nulls = vec![
        null_row(
            "same seed, last-bit perturbations (perturbation yardstick)",
            &perturb,
        ),
        null_row("different seeds, dropout 0.1 (seed yardstick)", &seeds_null),
    ];

    let mut faults = Vec::new();
    for &f in &opts.faults {
        let mut cmp = Vec::new();
        let mut truth = Vec::new();
        for &s in &opts.seeds {
            let clean = get(&format!("clean-{s}"))?.clone();
            let faulty = get(&format!("{}-{s}", f.name()))?.clone();
            truth.push(first_bit_difference(&clean, &faulty));
            let yard: Vec<Trace> = (1..=opts.yardstick)
                .map(|k| get(&format!("perturb-{s}-{k}")).cloned())
                .collect::<Result<_>>()?;
            cmp.push(compare(&[clean], &[faulty], &yard, &[], &opts.settings)?);
        }
        faults.push(fault_row(f, &cmp, &truth));
    }
    let synthetic = (opts.synthetic_cases > 0)
        .then(|| synthetic::calibrate_synthetic(opts.synthetic_cases))
        .transpose()?;
    Ok(Calibration {
        steps: opts.base.train.train_iters,
        seeds: opts.seeds.len(),
        alpha: opts.settings.alpha,
        nulls,
        faults,
        synthetic,
    })
}

fn first_bit_difference(a: &Trace, b: &Trace) -> Option<u64> {
    let (x, y) = (loss_bits(a), loss_bits(b));
    x.iter()
        .zip(&y)
        .position(|(p, q)| p != q)
        .map(|i| a.steps[i])
}

fn is_diverged(c: &Comparison) -> bool {
    matches!(c.verdict, Verdict::Diverged { .. })
}

fn null_row(kind: &str, cs: &[Comparison]) -> NullRow {
    let fp = cs.iter().filter(|c| is_diverged(c)).count();
    let count = |f: &dyn Fn(&Verdict) -> bool| cs.iter().filter(|c| f(&c.verdict)).count();
    NullRow {
        kind: kind.into(),
        pairs: cs.len(),
        false_positives: fp,
        rate_ci: wilson(fp, cs.len()),
        megatron_failures: cs.iter().filter(|c| !c.tolerance.pass).count(),
        verdicts: (
            count(&|v| matches!(v, Verdict::Identical)),
            count(&|v| matches!(v, Verdict::Equivalent)),
            count(&|v| matches!(v, Verdict::Inconclusive { .. })),
        ),
        beyond_rounding: cs.iter().filter(|c| c.beyond_rounding()).count(),
    }
}

fn fault_row(fault: Fault, cs: &[Comparison], truth: &[Option<u64>]) -> FaultRow {
    let detected: Vec<usize> = (0..cs.len()).filter(|&i| is_diverged(&cs[i])).collect();
    let rounding: Vec<usize> = (0..cs.len()).filter(|&i| cs[i].beyond_rounding()).collect();
    // The onset of whatever was found: the divergence's, else where rounding was left behind.
    let found_onset = |c: &Comparison| match &c.verdict {
        Verdict::Diverged { onset_step, .. } => Some(*onset_step),
        _ => c.rounding().and_then(|r| r.onset_step),
    };
    let mut onset_err: Vec<f64> = (0..cs.len())
        .filter_map(|i| Some(found_onset(&cs[i])? as f64 - truth[i]? as f64))
        .collect();
    onset_err.sort_by(f64::total_cmp);
    let to_detect: Vec<f64> = (0..cs.len())
        .filter(|&i| is_diverged(&cs[i]) || cs[i].beyond_rounding())
        .filter_map(|i| {
            let alarm = cs[i].statistical.as_ref()?.onset.cusum_alarm_step?;
            Some(alarm as f64 - truth[i]? as f64)
        })
        .collect();
    let effects: Vec<f64> = cs
        .iter()
        .filter_map(|c| c.statistical.as_ref()?.relative_difference)
        .collect();
    let truths: Vec<f64> = truth.iter().flatten().map(|&t| t as f64).collect();
    let pick = |q: f64| onset_err[((onset_err.len() - 1) as f64 * q).round() as usize];
    FaultRow {
        fault,
        replicates: cs.len(),
        detected: detected.len(),
        rate_ci: wilson(detected.len(), cs.len()),
        true_onset: median(&truths).map(|t| t as u64),
        onset_error: median(&onset_err),
        onset_error_spread: (!onset_err.is_empty()).then(|| (pick(0.1), pick(0.9))),
        beyond_rounding: rounding.len(),
        rounding_ci: wilson(rounding.len(), cs.len()),
        steps_to_detect: median(&to_detect),
        effect: median(&effects),
        megatron_detected: cs.iter().filter(|c| !c.tolerance.pass).count(),
    }
}

fn median(xs: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    (!v.is_empty()).then(|| crate::stats::median(&mut v))
}

/// Returns the Wilson score 95 % interval for `k` successes in `n` trials.
///
/// # Formula
/// ```text
/// (p̂ + z²/2n ± z·sqrt(p̂(1−p̂)/n + z²/4n²)) / (1 + z²/n),   z = 1.959964
/// ```
/// Reference: Wilson (1927); R `prop.test(k, n, correct = FALSE)$conf.int`.
pub fn wilson(k: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let z = 1.959_963_984_540_054;
    let (k, n) = (k as f64, n as f64);
    let p = k / n;
    let denom = 1.0 + z * z / n;
    let centre = p + z * z / (2.0 * n);
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt();
    (
        ((centre - half) / denom).max(0.0),
        ((centre + half) / denom).min(1.0),
    )
}

/// Renders the calibration as the README's Markdown tables.
pub fn to_markdown(c: &Calibration) -> String {
    let pct = |x: f64| format!("{:.0}%", x * 100.0);
    let mut s = format!(
        "Gate model, {} steps, {} seeds, alpha = {}. `diverged` answers \"does it matter?\" (beyond the 0.1 % margin); \"beyond rounding\" answers \"is it the same math?\" (against 4 last-bit perturbations of the same seed). Megatron column: its rtol 0.05 rule (fails = flagged).\n\n",
        c.steps, c.seeds, c.alpha
    );
    s += "| null pairs | pairs | diverged (95% CI) | beyond rounding | identical / equivalent / inconclusive | Megatron flagged |\n|---|---|---|---|---|---|\n";
    for r in &c.nulls {
        s += &format!(
            "| {} | {} | {} ({}–{}) | {} | {} / {} / {} | {} |\n",
            r.kind,
            r.pairs,
            r.false_positives,
            pct(r.rate_ci.0),
            pct(r.rate_ci.1),
            r.beyond_rounding,
            r.verdicts.0,
            r.verdicts.1,
            r.verdicts.2,
            r.megatron_failures
        );
    }
    s += "\n| fault | diverged (95% CI) | beyond rounding (95% CI) | true onset | onset error: median [10th, 90th pct] | CUSUM alarm after onset | effect | Megatron detected |\n|---|---|---|---|---|---|---|---|\n";
    for r in &c.faults {
        let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or("–".to_string(), f);
        let spread = r
            .onset_error_spread
            .map_or(String::new(), |(lo, hi)| format!(" [{lo:+.0}, {hi:+.0}]"));
        s += &format!(
            "| `{}` — {} | {}/{} ({}–{}) | {}/{} ({}–{}) | {} | {}{spread} | {} | {} | {}/{} |\n",
            r.fault.name(),
            r.fault.describe(),
            r.detected,
            r.replicates,
            pct(r.rate_ci.0),
            pct(r.rate_ci.1),
            r.beyond_rounding,
            r.replicates,
            pct(r.rounding_ci.0),
            pct(r.rounding_ci.1),
            r.true_onset.map_or("–".into(), |t| t.to_string()),
            opt(r.onset_error, &|x| format!("{x:+.0}")),
            opt(r.steps_to_detect, &|x| format!("{x:.0}")),
            opt(r.effect, &crate::gate::percent),
            r.megatron_detected,
            r.replicates
        );
    }
    if let Some(syn) = &c.synthetic {
        s += "\n";
        s += &synthetic::to_markdown(syn);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README table's promise: every rate's 95 % interval at most 20 points wide, whatever
    /// the rate (the widest is at one half).
    #[test]
    fn the_full_run_has_seeds_for_intervals_at_most_20_points_wide() {
        let n = CalibrationOptions::full().seeds.len();
        let widest = (0..=n)
            .map(|k| {
                let (lo, hi) = wilson(k, n);
                hi - lo
            })
            .fold(0.0, f64::max);
        assert!(widest <= 0.20, "{n} seeds: widest interval {widest:.3}");
    }

    #[test]
    fn wilson_matches_r_prop_test() {
        // R: prop.test(3, 20, correct = FALSE)$conf.int → 0.05236 0.36041
        let (lo, hi) = wilson(3, 20);
        approx::assert_abs_diff_eq!(lo, 0.05236, epsilon = 1e-4);
        approx::assert_abs_diff_eq!(hi, 0.36041, epsilon = 1e-4);
        // R: prop.test(0, 24, correct = FALSE)$conf.int → 0.0000 0.1380
        let (lo, hi) = wilson(0, 24);
        approx::assert_abs_diff_eq!(lo, 0.0, epsilon = 1e-12);
        approx::assert_abs_diff_eq!(hi, 0.13799, epsilon = 1e-4);
    }
}
