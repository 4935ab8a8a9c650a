//! Reports: the figures and files that get attached to a bug ticket, so that someone who never
//! ran lossdiff sees at a glance what diverged, where, by how much, and what else differed.
//!
//! This module owns drawing (PNG via plotters, with the DejaVu font embedded so no system fonts
//! are needed) and the report directory (`index.md`, `index.html`, `summary.json`, `junit.xml`,
//! `figures/*.png`). It does not compute anything statistical: verdicts, onsets, effect sizes and
//! noise bands come in as plain numbers in the types below, which the caller fills from the
//! comparison engine's results.
//!
//! Every renderer is deterministic: the same input gives byte-identical PNG bytes.
//!
//! # Examples
//! ```no_run
//! use lossdiff::report::{render_comparison, ArmCurves, ComparisonFigure};
//! let steps: Vec<u64> = (0..100).collect();
//! let a: Vec<f64> = steps.iter().map(|&s| 3.0 / (1.0 + s as f64 / 10.0)).collect();
//! let fig = ComparisonFigure {
//!     title: "tiny: dropout".into(),
//!     verdict: "diverged".into(),
//!     arm_a: ArmCurves::single("golden", steps.clone(), a.clone()),
//!     arm_b: ArmCurves::single("candidate", steps, a.iter().map(|v| v + 0.1).collect()),
//!     ..ComparisonFigure::default()
//! };
//! let png: Vec<u8> = render_comparison(&fig)?;
//! # Ok::<(), lossdiff::Error>(())
//! ```

mod draw;
mod entry;
mod escape;
mod figure;
mod files;
mod index;
mod junit;
mod legend;
mod marks;
mod sweep;
#[cfg(test)]
mod testdata;
#[cfg(test)]
mod wording_tests;

pub use entry::{
    comparison_entry, comparison_entry_with_figure, comparison_figure, comparison_summary,
    relative_margin, value_text,
};
pub use figure::render_comparison;
pub use files::{
    check_report_dir, write_report, EntrySummary, FigureSource, GateDecision, NamedFigure,
    ReportEntry, ReportInput, ReportPaths, ReportSummary, SUMMARY_SCHEMA_VERSION,
};
pub use sweep::{render_sweep_grid, render_sweep_heatmap};

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// The headline numbers of one comparison, shown in figure titles and report tables.
///
/// All are optional: a bitwise comparison has an onset but no p-value, a TOST has a margin.
/// JSON has no NaN: a non-finite number is written as `null` in `summary.json` and reads back
/// as `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyNumbers {
    /// First step at which the arms are judged to differ.
    pub onset_step: Option<u64>,
    /// Effect size (B − A in the comparison's unit, e.g. final-window loss difference).
    pub effect_size: Option<f64>,
    /// p-value of the test behind the verdict.
    pub p_value: Option<f64>,
    /// Equivalence margin the verdict was judged against.
    pub margin: Option<f64>,
    /// The test `p_value` comes from, as every output names it next to the number, e.g.
    /// "TOST, late window" or "beyond margin, steps 21–40" (`p (TOST, late window) = 1.5e-11`).
    #[serde(default)]
    pub p_test: Option<String>,
    /// Whether Megatron-LM's rtol rule passed, so a gate badge can say why it disagrees.
    #[serde(default)]
    pub tolerance_pass: Option<bool>,
}

/// A plain series: one value per step. Values may be non-finite; they are drawn as gaps.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Curve {
    /// Steps, increasing.
    pub steps: Vec<u64>,
    /// One value per step.
    pub values: Vec<f64>,
}

/// The loss curves of one arm: its mean, an optional ensemble band and optional seed members.
///
/// Invariants (checked by the renderers, [`Error::InvalidFigure`] otherwise): `mean`, both band
/// vectors and every member have `steps.len()` values. Values may be non-finite (drawn as gaps).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ArmCurves {
    /// Legend label, e.g. "golden (5 seeds)".
    pub label: String,
    /// Steps, increasing.
    pub steps: Vec<u64>,
    /// Mean (or the single run's) loss per step.
    pub mean: Vec<f64>,
    /// Ensemble band `(lo, hi)` per step, if the arm has several seeds. A band with both vectors
    /// empty counts as no band.
    pub band: Option<(Vec<f64>, Vec<f64>)>,
    /// Individual seeds' curves, drawn as thin lines; may be empty.
    pub members: Vec<Vec<f64>>,
}

impl ArmCurves {
    /// Builds an arm with a single curve (no band, no members).
    pub fn single(label: impl Into<String>, steps: Vec<u64>, mean: Vec<f64>) -> Self {
        ArmCurves {
            label: label.into(),
            steps,
            mean,
            band: None,
            members: Vec::new(),
        }
    }
}

/// The difference curve B − A on the arms' common steps, with the band benign noise spans.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DiffCurve {
    /// Common steps, increasing.
    pub steps: Vec<u64>,
    /// B − A per step.
    pub values: Vec<f64>,
    /// What seed-to-seed noise looks like, `(lo, hi)` per step, if known. A band with both
    /// vectors empty counts as no band.
    pub noise_band: Option<(Vec<f64>, Vec<f64>)>,
}

/// Everything [`render_comparison`] draws for one A/B comparison.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ComparisonFigure {
    /// Figure title, e.g. the comparison's name.
    pub title: String,
    /// Verdict label: "diverged", "equivalent", "identical", "inconclusive", …
    pub verdict: String,
    /// Whether the gate passes this comparison.
    pub passed: bool,
    /// Numbers for the title line.
    pub numbers: KeyNumbers,
    /// Arm A (usually the golden / baseline).
    pub arm_a: ArmCurves,
    /// Arm B (usually the candidate).
    pub arm_b: ArmCurves,
    /// B − A with its noise band.
    pub diff: DiffCurve,
    /// Step marked with a vertical line in the loss, difference and zoom panels.
    pub onset: Option<u64>,
    /// Learning-rate schedule of arm A, if known.
    pub lr_a: Option<Curve>,
    /// Learning-rate schedule of arm B, if known.
    pub lr_b: Option<Curve>,
    /// Config differences nobody declared, e.g. "model.attention_dropout: 0.0 → 0.1".
    pub undeclared_differences: Vec<String>,
    /// Environment differences (versions, CPU, kernels), e.g. "candle_version: 0.10.2 → 0.11.1":
    /// what the gate judges, not a config slip, so drawn apart from the undeclared ones.
    pub environment_differences: Vec<String>,
    /// Factors the comparison was meant to vary, e.g. "attention: naive → flash".
    pub declared_factors: Vec<String>,
    /// Lowest achievable loss (e.g. the corpus entropy), drawn as a dashed line.
    pub loss_floor: Option<f64>,
}

/// One axis of a sweep: a config key and the values it took, in display order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SweepAxis {
    /// Config key, e.g. "lr_decay_iters".
    pub key: String,
    /// Values as displayed, e.g. `["1000", "2000"]`.
    pub values: Vec<String>,
}

/// One cell (one sweep value, or value pair) of a [`SweepFigure`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SweepCell {
    /// Panel label, e.g. "lr_decay_iters=1000".
    pub label: String,
    /// This cell's value on each sweep axis, in axis order; each must be in that axis' `values`.
    pub coordinates: Vec<String>,
    /// Arm A's curves.
    pub arm_a: ArmCurves,
    /// Arm B's curves.
    pub arm_b: ArmCurves,
    /// B − A with its noise band.
    pub diff: DiffCurve,
    /// Verdict label.
    pub verdict: String,
    /// Whether the cell is free of divergence (false: drawn red). Whether a divergence was
    /// *expected* (a planted bug) is the report's business, not the grid's.
    pub passed: bool,
    /// Step where the arms start to differ.
    pub onset: Option<u64>,
    /// Relative late-window effect `(B − A) / |A|`, the heat map's colour.
    pub effect_size: Option<f64>,
    /// The margin relative to A's level (`margin / |A|`): effects inside it are drawn white.
    #[serde(default)]
    pub relative_margin: Option<f64>,
}

/// A sweep: one A/B comparison per combination of one or two config values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SweepFigure {
    /// Figure title.
    pub title: String,
    /// One or two axes.
    pub axes: Vec<SweepAxis>,
    /// The cells, drawn in this order (row-major) in the grid.
    pub cells: Vec<SweepCell>,
}

/// Returns an [`Error::InvalidFigure`] for `figure`.
fn invalid(figure: &str, reason: impl Into<String>) -> Error {
    Error::InvalidFigure {
        figure: figure.to_string(),
        reason: reason.into(),
    }
}

/// Returns whether a band has no values at all; such a band is drawn as no band.
fn is_empty_band(band: &(Vec<f64>, Vec<f64>)) -> bool {
    band.0.is_empty() && band.1.is_empty()
}

/// Checks that a series named `what` has one value per step.
fn check_len(figure: &str, what: &str, steps: usize, values: usize) -> Result<()> {
    if steps == values {
        Ok(())
    } else {
        Err(invalid(
            figure,
            format!("{what}: {steps} steps but {values} values"),
        ))
    }
}

impl ArmCurves {
    /// Returns whether the arm has a band with values.
    fn has_band(&self) -> bool {
        self.band.as_ref().is_some_and(|b| !is_empty_band(b))
    }

    /// Checks the length invariants listed on the type.
    fn validate(&self, figure: &str, arm: &str) -> Result<()> {
        let n = self.steps.len();
        check_len(figure, &format!("{arm} mean"), n, self.mean.len())?;
        if let Some((lo, hi)) = self.band.as_ref().filter(|b| !is_empty_band(b)) {
            check_len(figure, &format!("{arm} band lo"), n, lo.len())?;
            check_len(figure, &format!("{arm} band hi"), n, hi.len())?;
        }
        for (i, m) in self.members.iter().enumerate() {
            check_len(figure, &format!("{arm} member {i}"), n, m.len())?;
        }
        Ok(())
    }
}

impl DiffCurve {
    /// Returns whether the curve has a noise band with values.
    fn has_band(&self) -> bool {
        self.noise_band.as_ref().is_some_and(|b| !is_empty_band(b))
    }

    /// Checks that values and band have one entry per step.
    fn validate(&self, figure: &str) -> Result<()> {
        let n = self.steps.len();
        check_len(figure, "difference", n, self.values.len())?;
        if let Some((lo, hi)) = self.noise_band.as_ref().filter(|b| !is_empty_band(b)) {
            check_len(figure, "noise band lo", n, lo.len())?;
            check_len(figure, "noise band hi", n, hi.len())?;
        }
        Ok(())
    }
}

impl Curve {
    /// Checks that there is one value per step.
    fn validate(&self, figure: &str, what: &str) -> Result<()> {
        check_len(figure, what, self.steps.len(), self.values.len())
    }
}
