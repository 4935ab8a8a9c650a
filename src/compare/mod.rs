//! The comparison engine: turns arm A traces, arm B traces and (optionally) a perturbation
//! ensemble into a [`Comparison`] with a calibrated [`Verdict`], three lanes of evidence, and a
//! diff of the resolved configs and environments. It owns the decision rule; the statistics it
//! uses live in [`crate::stats`], trace I/O in [`crate::trace`].
//!
//! # Lanes
//! 1. **Exact**: bitwise equality per common step, over every A/B pair.
//! 2. **Tolerance**: Megatron-LM's approximate gate, `|b − a| ≤ atol + rtol·|a|` per step (A is the
//!    reference), passing while at most `min(max(n/100, 1), 50)` steps fail — so users see what
//!    their current gate would say.
//! 3. **Statistical**: two questions, answered the same way whatever the mode —
//!    - *does it matter?* — the verdict word, judged against the equivalence margin;
//!    - *is it the same math up to rounding?* — the rounding finding, judged against a
//!      perturbation ensemble (same seed, initial weights nudged in the last bit), when there is
//!      one. A kernel bug can sit hundreds of times above rounding and far inside the margin; a
//!      bf16 change is expected beyond rounding and inside the margin. Both are reported and both
//!      can gate.
//!
//! # Pairing (which noise the difference is measured against)
//! Runs are paired by the seed their traces record (native seeds, or one an importer found in
//! the source's config); `--paired` pairs by position; a lone run per arm with no recorded seed is
//! *assumed* to share its partner's seed (said in the output; `--unpaired` drops the assumption).
//! Paired runs are judged on their per-pair differences; unpaired ones on independent samples.
//! One run per arm with different recorded seeds cannot separate a change from seed noise: the
//! verdict is `inconclusive`, never `diverged`.
//!
//! # Decision rule (written once; the README repeats it)
//! 0. No verdict (an error) when the arms share one step only, or no step where both are finite.
//! 1. One arm non-finite (or beyond ±1e30) where the other is finite → `Diverged` at that step.
//!    A run that stopped before its partner (or its own `train_iters`) → `Diverged` (direction
//!    `stopped`) after its last step, unless the user asked for the common steps only.
//! 2. Every pair bitwise equal on every common step → `Identical`.
//! 3. The run is cut into windows of the late window's length (the last *is* the late window).
//!    Each window's mean difference gets an estimate, a standard error and degrees of freedom from
//!    the mode (paired t on per-pair means; the perturbation spread for one pair; an AR(1) noise
//!    model, erring towards persistence, for one same-seed curve; Welch for independent seeds).
//!    `Diverged` iff some window is shown *beyond* the margin (minimum-effect test of
//!    `|δ| > margin`; the late window keeps α/2, the others share α/2 — a weighted Bonferroni
//!    correction): a difference that is significant but inside
//!    the margin is never `diverged`, and a transient divergence that rejoins still is.
//! 4. Otherwise `Equivalent` iff TOST shows the late window *inside* the margin.
//! 5. Otherwise `Inconclusive`, with the seeds per arm a power calculation says would settle it.
//!
//! Because every mode only estimates `(δ, se, df)` and the verdict reads the confidence
//! interval's position relative to `0` and `±margin`, more data (a narrower interval) can only
//! move a verdict from `inconclusive` to a decision, and two modes disagree only where their
//! intervals do.
//!
//! Rounding: with a perturbation ensemble and paired runs, "beyond rounding" iff both a pooled
//! t-test of the observed late-window differences against the null ones *and* a HAC drift test on
//! the mean difference curve reject (intersection–union: size ≤ α if either is valid).
//!
//! Onset (see `onset`): the first step at which paired runs differ in their bits, when they were
//! identical before it; otherwise the break of a segmented regression (step or ramp) on the
//! standardised difference. The CUSUM alarm — when a monitor would have fired — is reported
//! separately.

mod align;
mod configdiff;
mod evidence;
mod lanes;
mod modes;
mod onset;
#[cfg(test)]
mod sim_tests;
mod statistical;
#[cfg(test)]
mod tests;
mod verdict;
#[cfg(test)]
mod verdict_tests;
pub use verdict::{
    format_p, named_p, P_BEYOND_MARGIN, P_BEYOND_ROUNDING, P_DIFFERENCE, P_DRIFT, P_TOST,
};

pub use align::{Alignment, NonFiniteAt, Pairing, PairingMode, Stopped, SANE_MAGNITUDE};
pub use configdiff::{diff_configs, ArmId, ConfigDiff, FieldDiff, StochasticWarning};
pub use evidence::Evidence;
pub use lanes::{megatron_allowed_failures, ExactLane, ToleranceLane};
pub use statistical::{
    seeds_needed, BandSource, Goal, NoiseBand, Onset, OnsetMethod, RoundingFinding, SeedsNeeded,
    StatLane, WindowFinding, Yardstick,
};

use crate::error::{Error, Result};
use crate::stats::{benjamini_hochberg, holm, CusumParams};
use crate::trace::{Trace, LM_LOSS};
use serde::{Deserialize, Serialize};

/// Default significance level of every test in a comparison.
pub const DEFAULT_ALPHA: f64 = 0.05;
/// Default equivalence margin, relative to A's late-window mean: 0.1 % of the loss, about 1.7×
/// the seed-to-seed sd of a GPT-2 124M final loss (0.06 %, modded-nanogpt) and 50× narrower than
/// Megatron's rtol.
pub const DEFAULT_RELATIVE_MARGIN: f64 = 1e-3;
/// Default late window: the last 20 % of the usable common steps.
pub const DEFAULT_WINDOW_FRACTION: f64 = 0.2;
/// Megatron-LM's approximate-test relative tolerance.
pub const MEGATRON_RTOL: f64 = 0.05;
/// Megatron-LM's approximate-test absolute tolerance.
pub const MEGATRON_ATOL: f64 = 0.0;
/// Power targeted when saying how many seeds would settle an inconclusive comparison.
pub const DEFAULT_POWER: f64 = 0.8;
/// Fewest usable common steps the statistical lane accepts (HAC needs a few lags of history).
pub const MIN_STATISTICAL_STEPS: usize = 10;
/// Fewest steps in the late window.
pub const MIN_WINDOW_STEPS: usize = 5;

/// The equivalence margin for the late-window mean difference.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Margin {
    /// A fraction of `|A's late-window mean|`.
    Relative(f64),
    /// An absolute difference in the metric's units.
    Absolute(f64),
}

/// Everything that tunes a comparison; stored in the [`Comparison`] so a report states it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareSettings {
    /// Significance level.
    pub alpha: f64,
    /// Equivalence margin.
    pub margin: Margin,
    /// Fraction of the usable common steps forming the late window (at least [`MIN_WINDOW_STEPS`]).
    pub window_fraction: f64,
    /// Tolerance lane: relative tolerance.
    pub rtol: f64,
    /// Tolerance lane: absolute tolerance.
    pub atol: f64,
    /// Metric (series name) to compare.
    pub metric: String,
    /// CUSUM tuning for the onset.
    pub cusum: CusumParams,
    /// Power for the seeds-needed calculation.
    pub power: f64,
    /// How to match A runs with B runs.
    #[serde(default)]
    pub pairing: PairingMode,
    /// Compare on the common steps even when an arm stopped early (otherwise a failure).
    #[serde(default)]
    pub common_steps_only: bool,
}

impl Default for CompareSettings {
    fn default() -> Self {
        CompareSettings {
            alpha: DEFAULT_ALPHA,
            margin: Margin::Relative(DEFAULT_RELATIVE_MARGIN),
            window_fraction: DEFAULT_WINDOW_FRACTION,
            rtol: MEGATRON_RTOL,
            atol: MEGATRON_ATOL,
            metric: LM_LOSS.to_string(),
            cusum: CusumParams::default(),
            power: DEFAULT_POWER,
            pairing: PairingMode::Auto,
            common_steps_only: false,
        }
    }
}

impl CompareSettings {
    fn validate(&self) -> Result<()> {
        let bad = |name, expected, got: f64| {
            Err(Error::InvalidParameter {
                name,
                expected,
                got: got.to_string(),
            })
        };
        if !(self.alpha > 0.0 && self.alpha < 0.5) {
            return bad("alpha", "0 < alpha < 0.5", self.alpha);
        }
        if !(self.window_fraction > 0.0 && self.window_fraction <= 1.0) {
            return bad("window_fraction", "0 < fraction ≤ 1", self.window_fraction);
        }
        if !(self.power > 0.0 && self.power < 1.0) {
            return bad("power", "0 < power < 1", self.power);
        }
        let (Margin::Relative(m) | Margin::Absolute(m)) = self.margin;
        if !(m >= 0.0 && m.is_finite()) {
            return bad("margin", "a finite value ≥ 0", m);
        }
        if !(self.rtol >= 0.0 && self.atol >= 0.0) {
            return bad("rtol/atol", "≥ 0", self.rtol.min(self.atol));
        }
        Ok(())
    }
}

/// Which way B moved relative to A.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// B's metric is higher (for a loss: worse).
    Higher,
    /// B's metric is lower.
    Lower,
    /// One arm produced NaN or ±inf (or a value beyond ±1e30) where the other was finite.
    NonFinite,
    /// One arm's run stopped before the other's (a crash, a timeout, an early exit).
    Stopped,
}

/// The outcome of a comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Verdict {
    /// Bitwise equal on every common step of every pair.
    Identical,
    /// Within the stated margin, shown by TOST at `alpha`, and no drift detected.
    Equivalent,
    /// Neither divergence nor equivalence could be shown.
    Inconclusive {
        /// Seeds per arm that would settle it at the target power, when estimable.
        seeds_needed: Option<SeedsNeeded>,
    },
    /// A systematic difference (or a non-finite value in one arm).
    Diverged {
        /// Estimated first step of the divergence.
        onset_step: u64,
        /// Which way B moved.
        direction: Direction,
        /// Late-window mean difference relative to A's: `(B − A)/|A|` (None for non-finite).
        effect_size: Option<f64>,
        /// The divergence test's p-value (None for non-finite).
        p_value: Option<f64>,
    },
}

/// A full comparison of two arms: verdict, lanes, alignment and config/environment differences.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The metric compared.
    pub metric: String,
    /// The settings used (margin, alpha, window, tolerances).
    pub settings: CompareSettings,
    /// The verdict.
    pub verdict: Verdict,
    /// Which steps were compared.
    pub alignment: Alignment,
    /// How A and B traces were paired, and how many pairs.
    pub pairing: Pairing,
    /// Lane 1: bitwise.
    pub exact: ExactLane,
    /// Lane 2: Megatron tolerance.
    pub tolerance: ToleranceLane,
    /// Lane 3: statistics (None when not computable, with the reason in `notes`).
    pub statistical: Option<StatLane>,
    /// Config and environment differences between the arms.
    pub config: ConfigDiff,
    /// Anything the reader should know (truncations, fallbacks, skipped lanes).
    pub notes: Vec<String>,
    /// Where one arm first had NaN or ±inf and the other did not, so reports can say which arm.
    #[serde(default)]
    pub non_finite: Option<NonFiniteAt>,
}

impl Comparison {
    /// Returns the p-value used when gating many comparisons: 0 for a non-finite value or a run
    /// that stopped, 1 for identical arms, else the statistical lane's beyond-the-margin p-value.
    pub fn divergence_p_value(&self) -> f64 {
        match (&self.verdict, &self.statistical) {
            (Verdict::Identical, _) => 1.0,
            (
                Verdict::Diverged {
                    direction: Direction::NonFinite | Direction::Stopped,
                    ..
                },
                _,
            ) => 0.0,
            (_, Some(s)) => s.divergence_p_value,
            (_, None) => 1.0,
        }
    }

    /// The rounding finding, when a perturbation ensemble judged it.
    pub fn rounding(&self) -> Option<&RoundingFinding> {
        self.statistical.as_ref().and_then(|s| s.rounding.as_ref())
    }

    /// Whether a rounding yardstick shows B beyond rounding (false without one, or identical).
    pub fn beyond_rounding(&self) -> bool {
        self.verdict != Verdict::Identical && self.rounding().is_some_and(|r| !r.within)
    }

    /// The p-value of "beyond rounding" (1 without a yardstick or for identical arms).
    pub fn rounding_p_value(&self) -> f64 {
        match (&self.verdict, self.rounding()) {
            (Verdict::Identical, _) | (_, None) => 1.0,
            (_, Some(r)) => r.p_value,
        }
    }
}

/// Compares arm A against arm B.
pub trait Comparator {
    /// Compares `a` (reference) with `b`, using `perturbation` (possibly empty) as the yardstick
    /// and `factors` as the config keys the experiment means to vary.
    ///
    /// # Errors
    /// See [`compare`].
    fn compare(
        &self,
        a: &[Trace],
        b: &[Trace],
        perturbation: &[Trace],
        factors: &[String],
    ) -> Result<Comparison>;
}

/// The comparator implementing the decision rule in this module's docs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DefaultComparator {
    /// Settings applied to every comparison.
    pub settings: CompareSettings,
}

impl Comparator for DefaultComparator {
    fn compare(
        &self,
        a: &[Trace],
        b: &[Trace],
        perturbation: &[Trace],
        factors: &[String],
    ) -> Result<Comparison> {
        compare(a, b, perturbation, factors, &self.settings)
    }
}

/// Compares arm A (reference) with arm B and returns the verdict and its evidence.
///
/// # Errors
/// [`Error::EmptyArm`], [`Error::MissingMetric`], [`Error::ArmsShareNoStep`],
/// [`Error::SingleCommonStep`], [`Error::NoFiniteCommonStep`] (both arms non-finite throughout:
/// two broken runs are not "identical"), [`Error::InvalidTrace`] for a series whose length differs from its steps,
/// [`Error::InvalidParameter`] for bad settings, and [`Error::TooFewSteps`] when the verdict needs
/// the statistical lane and fewer than [`MIN_STATISTICAL_STEPS`] finite common steps exist.
///
/// Time: `O(K·n)` for `K` traces of `n` steps (PELT is `O(n)` expected).
///
/// # Examples
/// ```
/// use lossdiff::compare::{compare, CompareSettings, Verdict};
/// use lossdiff::trace::{Origin, Series, Trace, LM_LOSS};
/// let mk = |loss: Vec<f64>| Trace {
///     schema_version: 1,
///     name: "run".into(),
///     origin: Origin { format: "lossdiff".into(), path: None },
///     config: serde_json::json!({"model": {"attention": "naive"}}),
///     fingerprint: serde_json::json!({}),
///     seeds: [("init".to_string(), 1)].into(),
///     loss_floor: None,
///     steps: (1..=loss.len() as u64).collect(),
///     series: [(LM_LOSS.to_string(), Series::from_f64(loss))].into(),
/// };
/// let a = mk((0..50).map(|t| 3.0 - 0.01 * t as f64).collect());
/// let c = compare(&[a.clone()], &[a], &[], &[], &CompareSettings::default())?;
/// assert_eq!(c.verdict, Verdict::Identical);
/// # Ok::<(), lossdiff::Error>(())
/// ```
pub fn compare(
    a: &[Trace],
    b: &[Trace],
    perturbation: &[Trace],
    factors: &[String],
    settings: &CompareSettings,
) -> Result<Comparison> {
    settings.validate()?;
    let data = align::align(
        a,
        b,
        perturbation,
        &settings.metric,
        settings.pairing,
        settings.common_steps_only,
    )?;
    let exact = lanes::exact_lane(&data);
    let tolerance = lanes::tolerance_lane(&data, settings.rtol, settings.atol);
    let config = diff_configs(a, b, factors);
    let mut notes = data.notes.clone();
    notes.push(data.pairing.describe().to_string());
    let non_finite = data.one_sided_non_finite();
    // Paired runs that are bitwise equal up to some step: the search for the onset starts there.
    let identical_until = exact
        .first_differing_step
        .filter(|_| data.pairing.is_paired())
        .and_then(|k| data.steps[..data.usable].iter().position(|&s| s == k));
    // NaN in one arm is a divergence; NaN everywhere in both is two broken runs, not "identical".
    if non_finite.is_none() && !data.any_finite_step() {
        return Err(Error::NoFiniteCommonStep {
            a: a[0].name.clone(),
            b: b[0].name.clone(),
            metric: settings.metric.clone(),
            common: data.steps.len(),
        });
    }
    let statistical = if data.usable < MIN_STATISTICAL_STEPS {
        notes.push(format!(
            "statistical lane skipped: {} usable common steps, need {MIN_STATISTICAL_STEPS}",
            data.usable
        ));
        None
    } else {
        Some(statistical::stat_lane(&data, settings, identical_until)?)
    };
    let stopped_at = data.stopped.as_ref().map(|s| s.last_step + 1);
    let verdict = if let Some(step) = non_finite
        .as_ref()
        .map(|n| n.step)
        .filter(|n| stopped_at.is_none_or(|s| *n < s))
    {
        Verdict::Diverged {
            onset_step: step,
            direction: Direction::NonFinite,
            effect_size: None,
            p_value: None,
        }
    } else if let Some(stop) = &data.stopped {
        notes.push(format!(
            "arm {} run `{}` stopped at step {} of {}: a run that ends early is a failure, not a statistical question (--common-steps compares the common steps only)",
            stop.arm, stop.trace, stop.last_step, stop.expected_last_step
        ));
        Verdict::Diverged {
            onset_step: stop.last_step + 1,
            direction: Direction::Stopped,
            effect_size: None,
            p_value: None,
        }
    } else if exact.identical {
        Verdict::Identical
    } else {
        let lane = statistical.as_ref().ok_or(Error::TooFewSteps {
            what: "statistical comparison",
            needed: MIN_STATISTICAL_STEPS,
            got: data.usable,
        })?;
        lane.verdict(settings.alpha)
    };
    if let (Verdict::Equivalent, Some(lane)) = (&verdict, &statistical) {
        if let Some(late) = lane.late.filter(|l| l.p_difference() < settings.alpha) {
            notes.push(format!(
                "a difference of {:+.3e} is significant ({}) but inside the margin ±{:.3e} ({}): equivalent",
                late.estimate,
                named_p(P_DIFFERENCE, late.p_difference()),
                lane.margin,
                named_p(P_TOST, lane.tost_p_value)
            ));
        }
        if let Some(r) = lane.rounding.as_ref().filter(|r| !r.within) {
            notes.push(format!(
                "beyond rounding ({:.0}× the rounding spread, {}) but inside the margin ±{:.3e} ({}): the math changed, the outcome did not",
                r.ratio,
                named_p(P_BEYOND_ROUNDING, r.p_value),
                lane.margin,
                named_p(P_TOST, lane.tost_p_value)
            ));
        }
    }
    Ok(Comparison {
        metric: settings.metric.clone(),
        settings: settings.clone(),
        verdict,
        alignment: data.alignment.clone(),
        pairing: data.pairing,
        exact,
        tolerance,
        statistical,
        config,
        notes,
        non_finite,
    })
}

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
    /// Cells failing the gate: Holm-adjusted beyond-the-margin p ≤ α.
    pub failing: Vec<usize>,
    /// Cells worth a look: BH-adjusted p ≤ α.
    pub triage: Vec<usize>,
    /// Whether the sweep passes (no failing cell).
    pub pass: bool,
    /// Cells beyond rounding after Holm's correction (cells with a rounding yardstick only).
    #[serde(default)]
    pub beyond_rounding: Vec<usize>,
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
    let rounding_p: Vec<f64> = cells.iter().map(Comparison::rounding_p_value).collect();
    let beyond_rounding = below(&crate::stats::holm(&rounding_p)?);
    Ok(SweepGate {
        alpha,
        pass: failing.is_empty(),
        p_values,
        holm,
        bh,
        failing,
        triage,
        beyond_rounding,
    })
}
