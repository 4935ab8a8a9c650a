//! Synthetic figure inputs and a PNG inspector for the report tests. The curves mimic a real
//! case: arm B has attention dropout 0.1 instead of 0.0 and drifts above arm A from step 60 %.

use super::SweepFigure;
use super::{ArmCurves, ComparisonFigure, Curve, DiffCurve, KeyNumbers, SweepAxis, SweepCell};
use std::collections::BTreeSet;

/// Loss of a seeded run: a power-law decay to `floor`, with a small deterministic wiggle.
fn loss(step: u64, floor: f64, seed: u64, drift_from: Option<u64>) -> f64 {
    let s = step as f64;
    let wiggle = 0.04 * ((s * 0.37 + seed as f64 * 1.7).sin());
    let drift = drift_from.map_or(0.0, |d| (s - d as f64).max(0.0) * 0.004);
    floor + 9.0 / (1.0 + s / 8.0).powf(0.9) + wiggle + drift
}

/// An arm of `seeds` members over `n` steps, with a min/max band.
fn arm(label: &str, n: u64, seeds: u64, drift_from: Option<u64>) -> ArmCurves {
    let steps: Vec<u64> = (0..n).collect();
    let members: Vec<Vec<f64>> = (0..seeds)
        .map(|k| steps.iter().map(|&s| loss(s, 1.5, k, drift_from)).collect())
        .collect();
    let col = |f: fn(f64, f64) -> f64, init: f64| -> Vec<f64> {
        (0..steps.len())
            .map(|i| members.iter().map(|m| m[i]).fold(init, f))
            .collect()
    };
    let mean: Vec<f64> = (0..steps.len())
        .map(|i| members.iter().map(|m| m[i]).sum::<f64>() / seeds as f64)
        .collect();
    let band = Some((
        col(f64::min, f64::INFINITY),
        col(f64::max, f64::NEG_INFINITY),
    ));
    ArmCurves {
        label: label.into(),
        steps,
        mean,
        band,
        members,
    }
}

/// B − A on common steps, with a ± 0.05 noise band.
fn diff(a: &ArmCurves, b: &ArmCurves) -> DiffCurve {
    let values: Vec<f64> = a.mean.iter().zip(&b.mean).map(|(x, y)| y - x).collect();
    let n = values.len();
    DiffCurve {
        steps: a.steps.clone(),
        values,
        noise_band: Some((vec![-0.05; n], vec![0.05; n])),
    }
}

/// A cosine learning-rate schedule with a 10 % warmup.
fn lr(n: u64) -> Curve {
    let steps: Vec<u64> = (0..n).collect();
    let warm = (n / 10).max(1) as f64;
    let values = steps
        .iter()
        .map(|&s| {
            let s = s as f64;
            if s < warm {
                6e-4 * (s + 1.0) / warm
            } else {
                let t = (s - warm) / (n as f64 - warm).max(1.0);
                6e-5 + 0.5 * (6e-4 - 6e-5) * (1.0 + (std::f64::consts::PI * t).cos())
            }
        })
        .collect();
    Curve { steps, values }
}

/// A comparison over `n` steps; `diverged` makes B drift from 60 % of the run on.
pub(crate) fn comparison(n: u64, diverged: bool) -> ComparisonFigure {
    let onset = diverged.then_some(n * 6 / 10);
    let a = arm("golden (4 seeds)", n, 4, None);
    let b = arm("candidate (4 seeds)", n, 4, onset);
    ComparisonFigure {
        title: "tiny-gpt: flash attention vs naive".into(),
        verdict: if diverged { "diverged" } else { "equivalent" }.into(),
        passed: !diverged,
        numbers: KeyNumbers {
            onset_step: onset,
            effect_size: Some(if diverged { 0.083 } else { 0.001 }),
            p_value: Some(if diverged { 1.2e-5 } else { 0.61 }),
            margin: Some(0.02),
            p_test: Some(
                if diverged {
                    "beyond margin, late window"
                } else {
                    "TOST, late window"
                }
                .into(),
            ),
            tolerance_pass: Some(true),
        },
        diff: diff(&a, &b),
        arm_a: a,
        arm_b: b,
        onset,
        lr_a: Some(lr(n)),
        lr_b: Some(lr(n)),
        undeclared_differences: if diverged {
            vec!["model.attention_dropout: 0.0 → 0.1".into()]
        } else {
            Vec::new()
        },
        environment_differences: if diverged {
            vec!["candle_version: 0.11.1 → 0.11.2".into()]
        } else {
            Vec::new()
        },
        declared_factors: vec!["model.attention: naive → flash".into()],
        loss_floor: Some(1.5),
    }
}

/// A sweep over `lr_decay_iters` with `n` cells; every third cell diverges.
pub(crate) fn sweep(n: usize) -> SweepFigure {
    let values: Vec<String> = (1..=n).map(|k| (k * 1000).to_string()).collect();
    let cells = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let diverged = i % 3 == 2;
            let onset = diverged.then_some(50 + 10 * i as u64);
            let a = arm("golden", 120, 3, None);
            let b = arm("candidate", 120, 3, onset);
            SweepCell {
                label: format!("lr_decay_iters={v}"),
                coordinates: vec![v.clone()],
                diff: diff(&a, &b),
                arm_a: a,
                arm_b: b,
                verdict: if diverged { "diverged" } else { "equivalent" }.into(),
                passed: !diverged,
                onset,
                effect_size: Some(if diverged {
                    0.05 * i as f64
                } else {
                    -0.002 * i as f64
                }),
                relative_margin: Some(1e-3),
            }
        })
        .collect();
    SweepFigure {
        title: "sweep: lr_decay_iters".into(),
        axes: vec![SweepAxis {
            key: "lr_decay_iters".into(),
            values,
        }],
        cells,
    }
}

/// Six cells on a 3 × 2 grid: `lr_decay_iters` in columns, `dropout` in rows.
pub(crate) fn sweep_2d() -> SweepFigure {
    let mut two = sweep(6);
    let axis = |key: &str, values: &[&str]| SweepAxis {
        key: key.into(),
        values: values.iter().map(|v| v.to_string()).collect(),
    };
    two.axes = vec![
        axis("lr_decay_iters", &["1000", "2000", "3000"]),
        axis("dropout", &["0.0", "0.1"]),
    ];
    for (i, c) in two.cells.iter_mut().enumerate() {
        c.coordinates = vec![
            two.axes[0].values[i % 3].clone(),
            two.axes[1].values[i / 3].clone(),
        ];
        c.label = format!("decay={} dropout={}", c.coordinates[0], c.coordinates[1]);
    }
    two
}

/// What the tests check about a PNG.
pub(crate) struct PngInfo {
    pub width: u32,
    pub height: u32,
    pub distinct_colors: usize,
}

/// Decodes `bytes` (checking the signature) and counts its distinct pixel colours.
pub(crate) fn png_info(bytes: &[u8]) -> PngInfo {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    // IHDR is the first chunk: length (4), type (4), then width and height, big-endian.
    assert_eq!(&bytes[12..16], b"IHDR");
    let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    let decoder = png::Decoder::new(bytes);
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut buf).unwrap();
    assert_eq!((frame.width, frame.height), (width, height));
    let colors: BTreeSet<&[u8]> = buf[..frame.buffer_size()].chunks(3).collect();
    PngInfo {
        width,
        height,
        distinct_colors: colors.len(),
    }
}

/// Writes the sample figures to `/tmp/report-look/` for a human to look at.
///
/// Ignored by default: run `cargo test --lib report::testdata::write_look_pngs -- --ignored`.
#[test]
#[ignore = "writes files for manual inspection"]
fn write_look_pngs() {
    use super::{render_comparison, render_sweep_grid, render_sweep_heatmap};
    let dir = std::path::Path::new("/tmp/report-look");
    std::fs::create_dir_all(dir).unwrap();
    let put = |name: &str, bytes: Vec<u8>| std::fs::write(dir.join(name), bytes).unwrap();
    put(
        "comparison-diverged.png",
        render_comparison(&comparison(400, true)).unwrap(),
    );
    put(
        "comparison-equivalent.png",
        render_comparison(&comparison(400, false)).unwrap(),
    );
    let mut log = comparison(400, true);
    let cube = |v: &mut f64| *v = v.powi(3) / 10.0;
    for arm in [&mut log.arm_a, &mut log.arm_b] {
        arm.mean.iter_mut().for_each(cube);
        arm.members.iter_mut().flatten().for_each(cube);
        if let Some((lo, hi)) = &mut arm.band {
            lo.iter_mut().chain(hi.iter_mut()).for_each(cube);
        }
    }
    log.loss_floor = log.loss_floor.map(|f| f.powi(3) / 10.0);
    log.arm_b.mean[100] = f64::NAN;
    put("comparison-log-nan.png", render_comparison(&log).unwrap());
    put("sweep-grid-6.png", render_sweep_grid(&sweep(6)).unwrap());
    put("sweep-grid-1.png", render_sweep_grid(&sweep(1)).unwrap());
    put(
        "sweep-heatmap-6.png",
        render_sweep_heatmap(&sweep(6)).unwrap(),
    );
    let mut single = comparison(1, true);
    single.onset = Some(0);
    single.lr_b = None;
    put(
        "comparison-single-step.png",
        render_comparison(&single).unwrap(),
    );
    let mut gaps = comparison(60, false);
    gaps.arm_b.mean[10..20]
        .iter_mut()
        .for_each(|v| *v = f64::NAN);
    gaps.arm_b.band = Some((Vec::new(), Vec::new()));
    gaps.lr_a = None;
    gaps.lr_b = None;
    put("comparison-gaps.png", render_comparison(&gaps).unwrap());
    let mut two = sweep_2d();
    two.cells[4].effect_size = None;
    put("sweep-heatmap-2d.png", render_sweep_heatmap(&two).unwrap());
    put("sweep-grid-2d.png", render_sweep_grid(&two).unwrap());
}

/// A report of three comparisons: one diverged (dropout slip), one equivalent, one inconclusive.
pub(crate) fn report_input(figure: Vec<u8>) -> super::ReportInput {
    use super::{FigureSource, GateDecision, NamedFigure, ReportEntry, ReportInput};
    let diverged = comparison(50, true);
    ReportInput {
        name: "nightly tiny-gpt".into(),
        timestamp: "2026-11-22T05:00:00Z".into(),
        entries: vec![
            ReportEntry {
                name: "flash-vs-naive".into(),
                verdict: "equivalent".into(),
                passed: true,
                summary: "Loss curves agree within the noise band at every step.".into(),
                numbers: KeyNumbers {
                    effect_size: Some(0.001),
                    p_value: Some(0.61),
                    margin: Some(0.02),
                    p_test: Some("TOST, late window".into()),
                    ..KeyNumbers::default()
                },
                figure: Some(FigureSource::Png(figure.clone())),
                ..ReportEntry::default()
            },
            ReportEntry {
                name: "dropout <slip> & \"friends\"".into(),
                verdict: "diverged".into(),
                passed: false,
                summary: "B drifts above A from step 30 on; |B − A| leaves the noise band.".into(),
                numbers: diverged.numbers.clone(),
                undeclared_differences: diverged.undeclared_differences.clone(),
                environment_differences: vec!["candle: 0.11.1 → 0.11.2".into()],
                figure: Some(FigureSource::Png(figure.clone())),
            },
            ReportEntry {
                name: "bf16".into(),
                verdict: "inconclusive".into(),
                passed: true,
                summary: "Too few seeds to decide.".into(),
                ..ReportEntry::default()
            },
        ],
        sweep_figures: vec![NamedFigure {
            name: "lr sweep".into(),
            caption: "Sweep over lr_decay_iters".into(),
            figure: FigureSource::Png(figure),
        }],
        gate: GateDecision {
            passed: false,
            reason: "1 of 3 comparisons diverged".into(),
        },
    }
}

/// Writes a sample report (real figures) to `/tmp/report-look/report/` for a human to read.
#[test]
#[ignore = "writes files for manual inspection"]
fn write_look_report() {
    use super::{render_comparison, render_sweep_grid, FigureSource};
    let mut input = report_input(Vec::new());
    input.entries[0].figure = Some(FigureSource::Png(
        render_comparison(&comparison(200, false)).unwrap(),
    ));
    input.entries[1].figure = Some(FigureSource::Png(
        render_comparison(&comparison(200, true)).unwrap(),
    ));
    input.sweep_figures[0].figure = FigureSource::Png(render_sweep_grid(&sweep(6)).unwrap());
    super::write_report(std::path::Path::new("/tmp/report-look/report"), &input).unwrap();
}
