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
//! 3. **Statistical**: a noise band, a calibrated test of the late-window difference against a
//!    yardstick, a drift test on the difference curve, TOST on the late-window mean, and the onset.
//!
//! # Yardstick (which noise a difference is measured against)
//! - **Perturbation** (≥ 2 perturbation traces): the null curves are `p_j − a` (same config and
//!   seed, initial weights nudged in the last bit), the observed curves `b_i − a_i` over seed-paired
//!   traces. Under the null "B differs from A only by rounding", an observed curve is exchangeable
//!   with the null curves, so a pooled two-sample t-test of late-window means (observed vs null)
//!   is calibrated. This is the right yardstick for flash vs naive attention or a library upgrade.
//! - **Seeds** (≥ 2 traces per arm, no perturbation): per-seed late-window means compared with a
//!   paired t-test (seed-paired arms) or Welch's t-test.
//! - **Single curve** (one trace per arm): no ensemble; the difference `d_t = b_t − a_t` is tested
//!   with a prewhitened Newey–West (HAC) variance.
//!
//! # Decision rule
//! 0. No verdict at all (an error) when the arms share one step only, or no step at which both
//!    are finite: a single point or two all-NaN runs cannot justify `identical` or any other verdict.
//! 1. A common step where one arm has a non-finite value and the other is finite →
//!    `Diverged` at the first such step (direction `NonFinite`).
//! 2. Every pair bitwise equal on every common step → `Identical`.
//! 3. With an ensemble: `Diverged` iff *both* the yardstick test on the late-window difference
//!    *and* the HAC drift test on the mean difference curve (all usable steps, H0: mean 0) reject at
//!    `alpha`; the reported p-value is the larger of the two (an intersection–union test: its false
//!    positive rate is ≤ `alpha` whenever *either* test is valid). The yardstick test is exact under
//!    exchangeability but blind to whether a gap is systematic; the drift test ignores zero-mean
//!    noise (bf16 autocast) but over-rejects for random-walk-like rounding growth. Together they
//!    flag a one-sided drift far below seed noise (a softmax scale off by 1 %: ~400× rounding,
//!    ~20× below seed noise) while staying calibrated on benign pairs.
//!    In single-curve mode the drift test alone decides, except that a drift TOST shows to lie
//!    inside the margin is `Equivalent` (with a note): without a yardstick, the margin is the only
//!    measure of relevance. (Found on Megatron-LM's dev vs LTS containers: a real +1e-5-nat bias,
//!    1000× inside the margin.) Otherwise (size ≈ `alpha` for weakly to moderately
//!    autocorrelated differences, AR(1) ρ ≲ 0.6; liberal for near-unit-root differences — an
//!    ensemble is the remedy).
//! 4. Otherwise `Equivalent` iff TOST on the late-window mean difference rejects at `alpha` with the
//!    stated margin (relative to A's late-window mean by default).
//! 5. Otherwise `Inconclusive`, with the seeds per arm a power calculation on the observed
//!    variance says would settle it.
//!
//! Onset: a CUSUM (Page 1954; k = 0.5, h = 5) on the standardised difference curve (difference
//! minus the yardstick's mean, divided by its per-step spread), whitened by an AR(1) filter fitted
//! on the first half so its residuals are roughly independent (Harris & Ross 1991) — the
//! sequential procedure one would run during training, with a known in-control run length
//! (ARL₀ ≈ 938 one-sided). The onset is the step after the CUSUM was last zero before its last
//! crossing of `h` in the direction of the difference (an earlier false alarm that returned to
//! zero does not count). PELT (Killick, Fearnhead & Eckley 2012) on the standardised curve is
//! reported alongside as the offline refinement, and dates the divergence when the CUSUM never
//! crosses `h`; failing both, the late window's first step is reported (method `WindowStart`).

mod align;
mod configdiff;
mod lanes;
mod modes;
#[cfg(test)]
mod sim_tests;
mod statistical;
#[cfg(test)]
mod tests;
mod verdict;

pub use align::{Alignment, Pairing};
pub use configdiff::{diff_configs, ArmId, ConfigDiff, FieldDiff, StochasticWarning};
pub use lanes::{megatron_allowed_failures, ExactLane, ToleranceLane};
pub use statistical::{
    seeds_needed, BandSource, Goal, NoiseBand, Onset, OnsetMethod, SeedsNeeded, StatLane, Yardstick,
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
    /// One arm produced NaN or ±inf where the other was finite.
    NonFinite,
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
}

impl Comparison {
    /// Returns the p-value used when gating many comparisons: 0 for a non-finite divergence,
    /// 1 for identical arms, else the statistical lane's divergence p-value.
    pub fn divergence_p_value(&self) -> f64 {
        match (&self.verdict, &self.statistical) {
            (Verdict::Identical, _) => 1.0,
            (
                Verdict::Diverged {
                    direction: Direction::NonFinite,
                    ..
                },
                _,
            ) => 0.0,
            (_, Some(s)) => s.divergence_p_value,
            (_, None) => 1.0,
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
    let data = align::align(a, b, perturbation, &settings.metric)?;
    let exact = lanes::exact_lane(&data);
    let tolerance = lanes::tolerance_lane(&data, settings.rtol, settings.atol);
    let config = diff_configs(a, b, factors);
    let mut notes = data.notes.clone();
    let non_finite = data.first_one_sided_non_finite();
    // NaN in one arm is a divergence; NaN everywhere in both is two broken runs, not "identical".
    if non_finite.is_none() && !data.any_finite_step() {
        return Err(Error::NoFiniteCommonStep {
            a: a[0].name.clone(),
            b: b[0].name.clone(),
            metric: settings.metric.clone(),
            common: data.steps.len(),
        });
    }
    let mut statistical = if data.usable < MIN_STATISTICAL_STEPS {
        notes.push(format!(
            "statistical lane skipped: {} usable common steps, need {MIN_STATISTICAL_STEPS}",
            data.usable
        ));
        None
    } else {
        Some(statistical::stat_lane(&data, settings)?)
    };
    let verdict = if let Some(step) = non_finite {
        Verdict::Diverged {
            onset_step: step,
            direction: Direction::NonFinite,
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
    let verdict = bound_onset(verdict, &exact, statistical.as_mut(), &mut notes);
    if let (Verdict::Equivalent, Some(lane)) = (&verdict, &statistical) {
        if lane.divergence_p_value < settings.alpha {
            notes.push(format!(
                "a systematic difference of {:+.3e} was detected (drift p = {:.2e}) but lies inside the margin ±{:.3e} (TOST p = {:.2e}): equivalent",
                lane.late_difference, lane.divergence_p_value, lane.margin, lane.tost_p_value
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
    })
}

/// Moves a divergence's onset no earlier than the first step at which any A/B pair differs in
/// its bits: curves that are still bitwise identical cannot have diverged yet. The change-point
/// detectors work on a curve standardised against the yardstick, whose noise can open an
/// excursion while the arms are still identical (a bug that acts only late in the run).
fn bound_onset(
    verdict: Verdict,
    exact: &ExactLane,
    lane: Option<&mut StatLane>,
    notes: &mut Vec<String>,
) -> Verdict {
    let (
        Verdict::Diverged {
            onset_step,
            direction,
            effect_size,
            p_value,
        },
        Some(first),
    ) = (&verdict, exact.first_differing_step)
    else {
        return verdict;
    };
    // No detector located a change: the difference was there all along (a constant offset, as
    // between two GPU platforms), so it starts where the bits first differ, not at the late window.
    if lane
        .as_ref()
        .is_some_and(|l| l.onset.method == OnsetMethod::WindowStart)
    {
        notes.push(format!(
            "no change point located: the onset is the first differing step, {first}"
        ));
        if let Some(l) = lane {
            l.onset.step = first;
        }
        return Verdict::Diverged {
            onset_step: first,
            direction: *direction,
            effect_size: *effect_size,
            p_value: *p_value,
        };
    }
    if let Some(lane) = lane {
        if lane.onset.cusum_alarm_step.is_some_and(|a| a < first) {
            notes.push(format!(
                "CUSUM alarm at step {} discarded: it precedes the first differing step {first}",
                lane.onset.cusum_alarm_step.unwrap_or_default()
            ));
            lane.onset.cusum_alarm_step = None;
        }
        lane.onset.step = lane.onset.step.max(first);
    }
    if *onset_step >= first {
        return verdict;
    }
    notes.push(format!(
        "onset moved from step {onset_step} to {first}: every pair is bitwise identical before step {first}"
    ));
    Verdict::Diverged {
        onset_step: first,
        direction: *direction,
        effect_size: *effect_size,
        p_value: *p_value,
    }
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
    /// Cells failing the gate: Holm-adjusted p ≤ α.
    pub failing: Vec<usize>,
    /// Cells worth a look: BH-adjusted p ≤ α.
    pub triage: Vec<usize>,
    /// Whether the sweep passes (no failing cell).
    pub pass: bool,
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
    Ok(SweepGate {
        alpha,
        pass: failing.is_empty(),
        p_values,
        holm,
        bh,
        failing,
        triage,
    })
}
