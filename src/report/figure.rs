//! The comparison figure: one PNG per A/B comparison with a verdict header, four panels (loss,
//! difference, zoom on the onset, learning rate) and a side column holding the legend and the
//! config differences, so no legend covers data and a silent config slip is impossible to miss.

use super::draw::{self, Area, Bounds, Chart, ARM_A, ARM_B, DIFF, FONT, GREY_TEXT, NOISE, RED};
use super::legend::{draw_legend, draw_text_box, LegendItem, TextBox};
use super::marks::gate_badge;
use super::{ArmCurves, ComparisonFigure, DiffCurve, KeyNumbers};
use crate::error::Result;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;
use plotters::style::FontStyle;
use std::ops::Range;

/// Size of the comparison figure in pixels: readable at 100 % zoom on a laptop screen.
pub(super) const COMPARISON_SIZE: (u32, u32) = (1600, 1200);
/// Height of the title and verdict strip.
const HEADER_H: u32 = 130;
/// Width of the side column (legend, config differences).
const SIDE_W: u32 = 450;
/// Fraction of the step span shown on each side of the onset in the zoom panel.
const ZOOM_HALF_WIDTH: f64 = 0.1;
/// Fraction of the step span the zoom panel shows at the end when there is no onset.
const ZOOM_TAIL: f64 = 0.2;

/// Renders a comparison figure as PNG bytes (1600×1200).
///
/// Panels: (a) both arms' loss with ensemble bands, seed members, loss floor and onset (log
/// scale when the loss spans more than a decade); (b) B − A with its noise band, zero line and
/// points outside the band in red; (c) a zoom on the onset (or on the last 20 % of steps);
/// (d) the learning-rate schedules. The header shows the verdict in its colour and the key
/// numbers; the side column holds the legend and the undeclared and declared config differences.
/// Non-finite values are drawn as gaps. The output is deterministic.
///
/// # Errors
/// [`Error::InvalidFigure`](crate::Error::InvalidFigure) if a series' length differs from its
/// steps; [`Error::Render`](crate::Error::Render) if drawing or encoding fails.
pub fn render_comparison(fig: &ComparisonFigure) -> Result<Vec<u8>> {
    validate(fig)?;
    let name = fig.title.as_str();
    draw::render_png(name, COMPARISON_SIZE, |root| {
        let (header, body) = root.split_vertically(HEADER_H);
        let (panels, side) = body.split_horizontally(COMPARISON_SIZE.0 - SIDE_W);
        draw_header(&header, name, &fig.verdict, fig.passed, &fig.numbers)?;
        let cells = panels.split_evenly((2, 2));
        loss_panel(&cells[0], fig)?;
        diff_panel(&cells[1], fig)?;
        zoom_panel(&cells[2], fig)?;
        lr_panel(&cells[3], fig)?;
        side_column(&side, fig)
    })
}

/// Checks every series' length against its steps.
fn validate(fig: &ComparisonFigure) -> Result<()> {
    fig.arm_a.validate(&fig.title, "arm A")?;
    fig.arm_b.validate(&fig.title, "arm B")?;
    fig.diff.validate(&fig.title)?;
    if let Some(lr) = &fig.lr_a {
        lr.validate(&fig.title, "lr A")?;
    }
    if let Some(lr) = &fig.lr_b {
        lr.validate(&fig.title, "lr B")?;
    }
    Ok(())
}

/// Returns the header's numbers line, e.g. "onset step 420 · late Δ +0.08 · p (beyond margin,
/// late window) = 1.2e-4 · margin ±0.02"; the late-window difference and the margin are in the
/// metric's units, and the p-value names its test. The gate badge is separate
/// ([`gate_badge`](super::marks::gate_badge)).
pub(super) fn numbers_line(n: &KeyNumbers) -> String {
    let mut parts = Vec::new();
    if let Some(s) = n.onset_step {
        parts.push(format!("onset step {s}"));
    }
    if let Some(e) = n.effect_size {
        parts.push(format!("late Δ {}", draw::fmt_signed(e)));
    }
    if let Some(p) = n.p_value {
        parts.push(match &n.p_test {
            Some(test) => crate::compare::named_p(test, p),
            // An entry written by an older lossdiff does not know its test.
            None => format!("p = {}", crate::compare::format_p(p)),
        });
    }
    if let Some(m) = n.margin {
        parts.push(format!("margin ±{}", draw::fmt_num(m)));
    }
    parts.join("  ·  ")
}

/// Draws the title, the verdict badge in its colour and the key numbers.
pub(super) fn draw_header(
    area: &Area<'_>,
    title: &str,
    verdict: &str,
    passed: bool,
    numbers: &KeyNumbers,
) -> Result<()> {
    let err = draw::render_err(title);
    let title_font = (FONT, 32, FontStyle::Bold).into_font().color(&BLACK);
    let (w, _) = area.dim_in_pixel();
    let fitted = fit_text(title, w.saturating_sub(48), |t| {
        area.estimate_text_size(t, &title_font)
            .map_or(u32::MAX, |(tw, _)| tw)
    });
    area.draw_text(&fitted, &title_font, (24, 14))
        .map_err(&err)?;
    let color = draw::verdict_color(verdict, passed);
    let badge_font = (FONT, 28, FontStyle::Bold).into_font().color(&WHITE);
    let label = verdict.to_uppercase();
    let (tw, _) = area.estimate_text_size(&label, &badge_font).map_err(&err)?;
    let badge_w = tw as i32 + 32;
    area.draw(&Rectangle::new(
        [(24, 62), (24 + badge_w, 108)],
        color.filled(),
    ))
    .map_err(&err)?;
    area.draw_text(&label, &badge_font, (40, 71))
        .map_err(&err)?;
    // Numbers on one line, the gate badge (with its reason) under them, both shrunk to fit.
    let x = 24 + badge_w + 24;
    let room = (w as i32 - x - 24).max(0) as u32;
    let gate = gate_badge(verdict, passed, numbers);
    let gate_color = if passed { draw::GREEN } else { draw::RED };
    for (text, y, color, style) in [
        (numbers_line(numbers), 60, BLACK, FontStyle::Normal),
        (gate, 90, gate_color, FontStyle::Bold),
    ] {
        let font = fitting_font(area, &text, room, style);
        area.draw_text(&text, &font.color(&color), (x, y))
            .map_err(&err)?;
    }
    let (w, h) = area.dim_in_pixel();
    let rule = [(0, h as i32 - 2), (w as i32, h as i32 - 2)];
    area.draw(&PathElement::new(rule, color.stroke_width(3)))
        .map_err(&err)?;
    Ok(())
}

/// Returns the largest font from 24 px down to 14 px in which `text` fits `room` pixels.
fn fitting_font<'a>(area: &Area<'_>, text: &str, room: u32, style: FontStyle) -> FontDesc<'a> {
    let mut size = 24;
    while size > 14 {
        let font = (FONT, size, style).into_font();
        match area.estimate_text_size(text, &font.clone().into_text_style(area)) {
            Ok((tw, _)) if tw > room => size -= 2,
            _ => break,
        }
    }
    (FONT, size, style).into_font()
}

/// Shortens `text` with a middle ellipsis until `width_of` it is at most `max` pixels, so a long
/// title (two deep paths) never runs off the figure; both ends stay, as they tell runs apart.
pub(super) fn fit_text(text: &str, max: u32, width_of: impl Fn(&str) -> u32) -> String {
    let chars: Vec<char> = text.chars().collect();
    if width_of(text) <= max {
        return text.to_string();
    }
    for keep in (2..chars.len()).rev() {
        let head: String = chars[..keep.div_ceil(2)].iter().collect();
        let tail: String = chars[chars.len() - keep / 2..].iter().collect();
        let candidate = format!("{head}…{tail}");
        if width_of(&candidate) <= max {
            return candidate;
        }
    }
    "…".into()
}

/// Returns the steps' extent as a drawable x range.
fn step_range(fig: &ComparisonFigure) -> Range<f64> {
    let mut b = Bounds::default();
    for s in [&fig.arm_a.steps, &fig.arm_b.steps, &fig.diff.steps] {
        b.add(s.iter().map(|&x| x as f64));
    }
    b.steps()
}

/// Widens `b` by an arm's mean, band and members restricted to steps in `x`.
pub(super) fn add_arm(b: &mut Bounds, arm: &ArmCurves, x: &Range<f64>) {
    let within = |vals: &[f64]| -> Vec<f64> {
        arm.steps
            .iter()
            .zip(vals)
            .filter(|(&s, _)| x.start <= s as f64 && s as f64 <= x.end)
            .map(|(_, &v)| v)
            .collect()
    };
    b.add(within(&arm.mean));
    if let Some((lo, hi)) = &arm.band {
        b.add(within(lo));
        b.add(within(hi));
    }
    for m in &arm.members {
        b.add(within(m));
    }
}

/// Draws one arm: thin seed members, then the band, then the mean on top.
pub(super) fn draw_arm<Y: Ranged<ValueType = f64>>(
    chart: &mut Chart<'_, '_, Y>,
    name: &str,
    arm: &ArmCurves,
    color: RGBColor,
    mean_width: u32,
) -> Result<()> {
    for m in &arm.members {
        draw::draw_curve(chart, name, &arm.steps, m, color.mix(0.35).stroke_width(1))?;
    }
    if let Some(band) = &arm.band {
        draw::draw_band(chart, name, &arm.steps, band, color)?;
    }
    draw::draw_curve(
        chart,
        name,
        &arm.steps,
        &arm.mean,
        color.stroke_width(mean_width),
    )
}

/// Builds a chart on `area` with the house style: caption, step axis, labelled y axis.
pub(super) fn build_chart<'a, 'b, YR>(
    area: &'a Area<'b>,
    name: &str,
    caption: &str,
    x: Range<f64>,
    y: YR,
    y_desc: &str,
) -> Result<Chart<'a, 'b, YR::CoordDescType>>
where
    YR: AsRangedCoord<Value = f64>,
    YR::CoordDescType: ValueFormatter<f64>,
{
    let err = draw::render_err(name);
    let mut builder = ChartBuilder::on(area);
    builder
        .margin(14)
        .x_label_area_size(48)
        .y_label_area_size(84);
    if !caption.is_empty() {
        builder.caption(caption, (FONT, 22, FontStyle::Bold));
    }
    let mut chart = builder.build_cartesian_2d(x, y).map_err(&err)?;
    // About one y label per 45 px keeps small panels from stacking labels on each other.
    let (_, h) = area.dim_in_pixel();
    let y_labels = (h as usize / 45).clamp(3, 6);
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc(y_desc)
        .label_style((FONT, 17))
        .axis_desc_style((FONT, 18))
        .x_labels(6)
        .y_labels(y_labels)
        .x_label_formatter(&|v| draw::fmt_step(*v))
        .y_label_formatter(&|v| draw::fmt_tick(*v))
        .bold_line_style(BLACK.mix(0.12))
        .light_line_style(TRANSPARENT)
        .draw()
        .map_err(&err)?;
    Ok(chart)
}

/// Draws both arms, the floor and the onset on a chart with any y scale.
fn draw_loss_layers<Y: Ranged<ValueType = f64>>(
    chart: &mut Chart<'_, '_, Y>,
    fig: &ComparisonFigure,
    floor: bool,
) -> Result<()> {
    let name = fig.title.as_str();
    // A is drawn wider so it stays visible where B lies exactly on top of it.
    draw_arm(chart, name, &fig.arm_a, ARM_A, 5)?;
    draw_arm(chart, name, &fig.arm_b, ARM_B, 3)?;
    if let (true, Some(f)) = (floor, fig.loss_floor) {
        let x = chart.x_range();
        let pts = vec![(x.start, f), (x.end, f)];
        draw::draw_dashed(chart, name, pts, BLACK.stroke_width(2))?;
    }
    if let Some(s) = fig.onset {
        draw::draw_vline(chart, name, s, &format!("onset {s}"))?;
    }
    Ok(())
}

/// Panel (a): both arms' loss over the whole run, log scale when it spans over a decade.
fn loss_panel(area: &Area<'_>, fig: &ComparisonFigure) -> Result<()> {
    let x = step_range(fig);
    let mut b = Bounds::default();
    add_arm(&mut b, &fig.arm_a, &x);
    add_arm(&mut b, &fig.arm_b, &x);
    b.add(fig.loss_floor);
    let name = fig.title.as_str();
    if b.wants_log() {
        let caption = "(a) loss (log scale)";
        let mut chart = build_chart(area, name, caption, x, b.log().log_scale(), "loss")?;
        draw_loss_layers(&mut chart, fig, true)
    } else {
        let mut chart = build_chart(area, name, "(a) loss", x, b.linear(0.05), "loss")?;
        draw_loss_layers(&mut chart, fig, true)
    }
}

/// Returns the zoom window: ± 10 % of the span around the onset, else the last 20 %.
fn zoom_range(full: &Range<f64>, onset: Option<u64>) -> Range<f64> {
    let span = full.end - full.start;
    let (lo, hi) = match onset {
        Some(s) => {
            let half = (span * ZOOM_HALF_WIDTH).max(2.0);
            (s as f64 - half, s as f64 + half)
        }
        None => (full.end - span * ZOOM_TAIL, full.end),
    };
    let lo = lo.max(full.start);
    let hi = hi.min(full.end);
    if hi > lo {
        lo..hi
    } else {
        full.clone()
    }
}

/// Panel (c): both arms' loss zoomed on the onset (or the end of the run), linear scale.
fn zoom_panel(area: &Area<'_>, fig: &ComparisonFigure) -> Result<()> {
    let x = zoom_range(&step_range(fig), fig.onset);
    let mut b = Bounds::default();
    add_arm(&mut b, &fig.arm_a, &x);
    add_arm(&mut b, &fig.arm_b, &x);
    let (lo, hi) = (
        draw::fmt_step(x.start.ceil()),
        draw::fmt_step(x.end.floor()),
    );
    let caption = match fig.onset {
        Some(s) => format!("(c) zoom on onset: steps {lo}–{hi} (onset {s})"),
        None => format!("(c) zoom on the last 20 %: steps {lo}–{hi}"),
    };
    let name = fig.title.as_str();
    let mut chart = build_chart(area, name, &caption, x.clone(), b.linear(0.08), "loss")?;
    // Points outside the window would be pinned to the panel's edge; draw only the window.
    let clipped = ComparisonFigure {
        arm_a: clip_arm(&fig.arm_a, &x),
        arm_b: clip_arm(&fig.arm_b, &x),
        ..fig.clone()
    };
    draw_loss_layers(&mut chart, &clipped, false)
}

/// Returns the part of `arm` whose steps lie in `x`.
fn clip_arm(arm: &ArmCurves, x: &Range<f64>) -> ArmCurves {
    let keep: Vec<usize> = (0..arm.steps.len())
        .filter(|&i| x.start <= arm.steps[i] as f64 && arm.steps[i] as f64 <= x.end)
        .collect();
    // `get`: an empty band (meaning "no band") has no values to pick.
    let pick = |v: &[f64]| {
        keep.iter()
            .filter_map(|&i| v.get(i).copied())
            .collect::<Vec<f64>>()
    };
    ArmCurves {
        label: arm.label.clone(),
        steps: keep.iter().map(|&i| arm.steps[i]).collect(),
        mean: pick(&arm.mean),
        band: arm.band.as_ref().map(|(lo, hi)| (pick(lo), pick(hi))),
        members: arm.members.iter().map(|m| pick(m)).collect(),
    }
}

/// Panel (b): B − A with the noise band, the zero line, out-of-band points and the onset.
fn diff_panel(area: &Area<'_>, fig: &ComparisonFigure) -> Result<()> {
    let d = &fig.diff;
    let name = fig.title.as_str();
    let x = step_range(fig);
    let mut b = Bounds::default();
    b.add(d.values.iter().copied());
    b.add([0.0]);
    if let Some((lo, hi)) = &d.noise_band {
        b.add(lo.iter().chain(hi).copied());
    }
    let caption = "(b) difference B − A, grey = noise band";
    let mut chart = build_chart(area, name, caption, x.clone(), b.linear(0.08), "Δ loss")?;
    if let Some(band) = &d.noise_band {
        draw::draw_band(&mut chart, name, &d.steps, band, NOISE)?;
    }
    chart
        .draw_series(LineSeries::new(
            [(x.start, 0.0), (x.end, 0.0)],
            BLACK.stroke_width(1),
        ))
        .map_err(draw::render_err(name))?;
    draw::draw_curve(&mut chart, name, &d.steps, &d.values, DIFF.stroke_width(2))?;
    let outside = outside_band(d).map(|p| Circle::new(p, 3, RED.filled()));
    chart.draw_series(outside).map_err(draw::render_err(name))?;
    if let Some(s) = fig.onset {
        draw::draw_vline(&mut chart, name, s, &format!("onset {s}"))?;
    }
    Ok(())
}

/// Returns the `(step, value)` points of `d` outside its noise band.
fn outside_band(d: &DiffCurve) -> impl Iterator<Item = (f64, f64)> + '_ {
    let (lo, hi) = d
        .noise_band
        .as_ref()
        .map_or((&[][..], &[][..]), |(l, h)| (&l[..], &h[..]));
    d.steps
        .iter()
        .zip(&d.values)
        .zip(lo.iter().zip(hi))
        .filter(|((_, v), (l, h))| v.is_finite() && (**v < **l || **v > **h))
        .map(|((&s, &v), _)| (s as f64, v))
}

/// Panel (d): the learning-rate schedules; B is dashed so identical schedules show both.
fn lr_panel(area: &Area<'_>, fig: &ComparisonFigure) -> Result<()> {
    let name = fig.title.as_str();
    let caption = "(d) learning rate";
    if fig.lr_a.is_none() && fig.lr_b.is_none() {
        let titled = area
            .titled(caption, (FONT, 22, FontStyle::Bold))
            .map_err(draw::render_err(name))?;
        let font = (FONT, 20).into_font().color(&GREY_TEXT);
        titled
            .draw_text("no learning-rate schedule given", &font, (80, 200))
            .map_err(draw::render_err(name))?;
        return Ok(());
    }
    let mut b = Bounds::default();
    let mut xb = Bounds::default();
    for lr in [&fig.lr_a, &fig.lr_b].into_iter().flatten() {
        b.add(lr.values.iter().copied());
        xb.add(lr.steps.iter().map(|&s| s as f64));
    }
    b.add([0.0]);
    let mut chart = build_chart(area, name, caption, xb.steps(), b.linear(0.05), "lr")?;
    if let Some(lr) = &fig.lr_a {
        draw::draw_curve(
            &mut chart,
            name,
            &lr.steps,
            &lr.values,
            ARM_A.stroke_width(4),
        )?;
    }
    if let Some(lr) = &fig.lr_b {
        let pts = draw::segments(&lr.steps, &lr.values);
        for run in pts {
            draw::draw_dashed(&mut chart, name, run, ARM_B.stroke_width(2))?;
        }
    }
    if let Some(s) = fig.onset {
        draw::draw_vline(&mut chart, name, s, &format!("onset {s}"))?;
    }
    Ok(())
}

/// Draws the legend and the config-difference boxes in the side column.
fn side_column(area: &Area<'_>, fig: &ComparisonFigure) -> Result<()> {
    let name = fig.title.as_str();
    let mut items = vec![
        LegendItem::line(format!("A: {}", fig.arm_a.label), ARM_A, false),
        LegendItem::line(format!("B: {}", fig.arm_b.label), ARM_B, false),
    ];
    if fig.arm_a.has_band() || fig.arm_b.has_band() {
        items.push(LegendItem::fill("ensemble band (A / B)", ARM_A));
    }
    if !(fig.arm_a.members.is_empty() && fig.arm_b.members.is_empty()) {
        items.push(LegendItem::thin("individual seeds (thin)", ARM_A));
    }
    items.push(LegendItem::line("difference B − A".into(), DIFF, false));
    if fig.diff.has_band() {
        items.push(LegendItem::fill("noise band (benign)", NOISE));
    }
    if outside_band(&fig.diff).next().is_some() {
        items.push(LegendItem::dot("outside noise band", RED));
    }
    if fig.onset.is_some() {
        items.push(LegendItem::line("onset of divergence".into(), RED, true));
    }
    if fig.loss_floor.is_some() {
        items.push(LegendItem::line("loss floor".into(), BLACK, true));
    }
    if fig.lr_b.is_some() {
        items.push(LegendItem::line("lr B (dashed over A)".into(), ARM_B, true));
    }
    let mut y = draw_legend(area, name, "Legend", &items, 16)?;
    y = draw_text_box(area, name, y + 18, &undeclared_box(fig))?;
    y = draw_text_box(area, name, y + 18, &declared_box(fig))?;
    if !fig.environment_differences.is_empty() {
        draw_text_box(area, name, y + 18, &environment_box(fig))?;
    }
    Ok(())
}

/// The grey box listing environment differences: what the gate judges, not a slip.
fn environment_box(fig: &ComparisonFigure) -> TextBox {
    TextBox {
        heading: format!(
            "Environment differences ({})",
            fig.environment_differences.len()
        ),
        lines: fig.environment_differences.clone(),
        color: GREY_TEXT,
        alarm: false,
    }
}

/// The red box listing undeclared differences (or a quiet "none").
fn undeclared_box(fig: &ComparisonFigure) -> TextBox {
    let n = fig.undeclared_differences.len();
    if n == 0 {
        TextBox {
            heading: "Undeclared config differences: none".into(),
            lines: Vec::new(),
            color: GREY_TEXT,
            alarm: false,
        }
    } else {
        TextBox {
            heading: format!("UNDECLARED CONFIG DIFFERENCES ({n})"),
            lines: fig.undeclared_differences.clone(),
            color: RED,
            alarm: true,
        }
    }
}

/// The grey box listing what the comparison meant to vary.
fn declared_box(fig: &ComparisonFigure) -> TextBox {
    let lines = if fig.declared_factors.is_empty() {
        vec!["none".to_string()]
    } else {
        fig.declared_factors.clone()
    };
    TextBox {
        heading: "Declared factors".into(),
        lines,
        color: GREY_TEXT,
        alarm: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::testdata::{comparison, png_info};

    #[test]
    fn a_long_title_is_shortened_in_the_middle_to_fit() {
        // 10 px per character, 100 px available.
        let width = |t: &str| 10 * t.chars().count() as u32;
        assert_eq!(fit_text("short", 100, width), "short");
        let long = "experiments/2024-01-01/flash vs experiments/2024-01-01/naive";
        let fitted = fit_text(long, 100, width);
        assert!(width(&fitted) <= 100, "{fitted}");
        assert_eq!(fitted, "exper…aive");
    }

    #[test]
    fn comparison_png_has_the_documented_size_and_content() {
        let png = render_comparison(&comparison(200, true)).unwrap();
        let info = png_info(&png);
        assert_eq!((info.width, info.height), COMPARISON_SIZE);
        assert!(
            info.distinct_colors > 50,
            "{} colours",
            info.distinct_colors
        );
    }

    #[test]
    fn comparison_is_byte_identical_across_renders() {
        let fig = comparison(120, true);
        assert_eq!(
            render_comparison(&fig).unwrap(),
            render_comparison(&fig).unwrap()
        );
    }

    #[test]
    fn nan_values_empty_band_and_missing_lr_do_not_panic() {
        let mut fig = comparison(60, false);
        fig.arm_b.mean[10] = f64::NAN;
        fig.arm_b.mean[11] = f64::INFINITY;
        fig.diff.values[30] = f64::NAN;
        // An empty band on a non-empty arm means "no band"; an empty arm draws nothing.
        fig.arm_b.band = Some((Vec::new(), Vec::new()));
        fig.diff.noise_band = Some((Vec::new(), Vec::new()));
        fig.arm_a.steps.clear();
        fig.arm_a.mean.clear();
        fig.arm_a.members.clear();
        fig.arm_a.band = None;
        fig.lr_a = None;
        fig.lr_b = None;
        let info = png_info(&render_comparison(&fig).unwrap());
        assert_eq!((info.width, info.height), COMPARISON_SIZE);
        assert!(info.distinct_colors > 20);
    }

    #[test]
    fn single_step_and_all_nan_curves_render() {
        let mut fig = comparison(1, false);
        fig.onset = Some(0);
        let info = png_info(&render_comparison(&fig).unwrap());
        assert!(info.distinct_colors > 20);
        fig.arm_a.mean = vec![f64::NAN];
        fig.arm_b.mean = vec![f64::NAN];
        fig.diff.values = vec![f64::NAN];
        assert!(render_comparison(&fig).is_ok());
    }

    #[test]
    fn mismatched_lengths_are_a_typed_error() {
        let mut fig = comparison(10, true);
        fig.arm_b.mean.pop();
        let e = render_comparison(&fig).unwrap_err();
        assert!(matches!(e, crate::Error::InvalidFigure { .. }), "{e}");
        assert!(
            e.to_string().contains("arm B mean: 10 steps but 9 values"),
            "{e}"
        );
    }

    #[test]
    fn zoom_window_centres_on_onset_and_falls_back_to_the_tail() {
        assert_eq!(zoom_range(&(0.0..1000.0), Some(500)), 400.0..600.0);
        assert_eq!(zoom_range(&(0.0..1000.0), Some(20)), 0.0..120.0);
        assert_eq!(zoom_range(&(0.0..1000.0), None), 800.0..1000.0);
        assert_eq!(zoom_range(&(5.0..5.0), None), 5.0..5.0);
    }

    #[test]
    fn numbers_line_lists_what_is_known() {
        let n = KeyNumbers {
            onset_step: Some(420),
            effect_size: Some(0.083),
            p_value: Some(1.2e-4),
            margin: Some(0.02),
            p_test: Some("beyond margin, late window".into()),
            tolerance_pass: Some(true),
        };
        assert_eq!(
            numbers_line(&n),
            "onset step 420  ·  late Δ +0.083  ·  p (beyond margin, late window) = 1.2e-4  ·  margin ±0.02"
        );
    }
}
