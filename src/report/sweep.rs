//! Sweep figures: the grid of small multiples a person would otherwise assemble by hand from one
//! plot per run (shared axes, failing cells tinted red), and a compact heat map of effect size.

use super::draw::{self, Area, Bounds, ARM_A, ARM_B, DIFF, FONT, GREY_TEXT, NOISE, RED};
use super::figure::{add_arm, build_chart, draw_arm, fit_text};
use super::legend::{draw_legend, LegendItem};
use super::{invalid, SweepCell, SweepFigure};
use crate::error::Result;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontStyle;
use std::ops::Range;

/// Width of the sweep grid figure in pixels.
const GRID_W: u32 = 1600;
/// Height of one grid row (loss chart over difference chart).
const GRID_ROW_H: u32 = 460;
/// Height of the grid's title strip, which also holds the legend.
const GRID_HEADER_H: u32 = 150;
/// Heat map cell size in pixels.
const HEAT_CELL: (u32, u32) = (170, 96);
/// Tint behind failing cells.
const FAIL_TINT: RGBColor = RGBColor(255, 228, 228);

/// Where each cell sits: columns follow the first axis, rows the second (if any).
struct Layout {
    cols: usize,
    rows: usize,
    /// `(col, row)` of each cell, in cell order.
    at: Vec<(usize, usize)>,
    col_key: String,
    col_labels: Vec<String>,
    row_key: String,
    row_labels: Vec<String>,
}

/// Returns the index of `value` on `axis`, or an error naming the cell.
fn axis_index(fig: &SweepFigure, cell: &SweepCell, axis: usize) -> Result<usize> {
    let ax = &fig.axes[axis];
    let v = cell.coordinates.get(axis).ok_or_else(|| {
        invalid(
            &fig.title,
            format!("cell '{}' has no value for `{}`", cell.label, ax.key),
        )
    })?;
    ax.values.iter().position(|x| x == v).ok_or_else(|| {
        invalid(
            &fig.title,
            format!(
                "cell '{}': `{}` = {v} is not among the axis values",
                cell.label, ax.key
            ),
        )
    })
}

/// Places the cells on the axes' grid; cells of a one-axis sweep without coordinates go in order.
fn layout(fig: &SweepFigure) -> Result<Layout> {
    if fig.axes.len() > 2 {
        return Err(invalid(
            &fig.title,
            format!("{} sweep axes; at most 2 are drawn", fig.axes.len()),
        ));
    }
    let ordered = fig.axes.len() < 2 && fig.cells.iter().all(|c| c.coordinates.is_empty());
    let mut at = Vec::with_capacity(fig.cells.len());
    for (i, cell) in fig.cells.iter().enumerate() {
        let col = if ordered {
            i
        } else {
            axis_index(fig, cell, 0)?
        };
        let row = if fig.axes.len() == 2 {
            axis_index(fig, cell, 1)?
        } else {
            0
        };
        if at.contains(&(col, row)) {
            return Err(invalid(
                &fig.title,
                format!("cell '{}' duplicates another cell's values", cell.label),
            ));
        }
        at.push((col, row));
    }
    let key = |k: usize| fig.axes.get(k).map(|a| a.key.clone()).unwrap_or_default();
    let col_labels = match (ordered, fig.axes.first()) {
        (false, Some(a)) => a.values.clone(),
        (_, Some(a)) if a.values.len() >= fig.cells.len() => a.values.clone(),
        _ => fig.cells.iter().map(|c| c.label.clone()).collect(),
    };
    let row_labels = fig
        .axes
        .get(1)
        .map(|a| a.values.clone())
        .unwrap_or_else(|| vec![String::new()]);
    Ok(Layout {
        cols: col_labels.len().max(1),
        rows: row_labels.len(),
        at,
        col_key: key(0),
        col_labels,
        row_key: key(1),
        row_labels,
    })
}

/// Returns `(cols, rows)` of the small-multiples grid for `n` cells of a one-axis sweep.
fn grid_shape(n: usize) -> (usize, usize) {
    let cols = match n {
        0 | 1 => 1,
        2 | 3 => n,
        4 => 2,
        _ => (n as f64).sqrt().ceil() as usize,
    };
    (cols, n.max(1).div_ceil(cols))
}

/// Renders the sweep as a grid of panels with shared axes, as PNG bytes (1600 px wide).
///
/// Each panel shows both arms' loss (bands when given, onset line) over the difference B − A
/// with its noise band. All loss panels share one x and one y range (log when the loss spans
/// more than a decade), all difference panels one y range, so panels compare by eye. Failing
/// cells get a red tint, a red border and "DIVERGED @ step N". One-axis sweeps wrap into a
/// near-square grid in cell order; two-axis sweeps put the first axis in columns, the second in rows.
///
/// # Errors
/// [`Error::InvalidFigure`](crate::Error::InvalidFigure) for inconsistent lengths or a cell
/// whose coordinates are not on the axes; [`Error::Render`](crate::Error::Render) if drawing fails.
pub fn render_sweep_grid(fig: &SweepFigure) -> Result<Vec<u8>> {
    let lay = layout(fig)?;
    for c in &fig.cells {
        c.arm_a
            .validate(&fig.title, &format!("{} arm A", c.label))?;
        c.arm_b
            .validate(&fig.title, &format!("{} arm B", c.label))?;
        c.diff.validate(&fig.title)?;
    }
    let (cols, rows, at) = if fig.axes.len() == 2 {
        (lay.cols, lay.rows, lay.at.clone())
    } else {
        let (c, r) = grid_shape(fig.cells.len());
        (c, r, (0..fig.cells.len()).map(|i| (i % c, i / c)).collect())
    };
    let h = GRID_HEADER_H + GRID_ROW_H * rows as u32;
    let shared = SharedAxes::of(fig);
    draw::render_png(&fig.title, (GRID_W, h), |root| {
        let (header, body) = root.split_vertically(GRID_HEADER_H);
        grid_header(&header, fig)?;
        let panels = body.split_evenly((rows, cols));
        for (cell, (c, r)) in fig.cells.iter().zip(at) {
            grid_cell(&panels[r * cols + c], &fig.title, cell, &shared)?;
        }
        Ok(())
    })
}

/// The ranges every grid panel shares.
struct SharedAxes {
    x: Range<f64>,
    loss: Bounds,
    diff: Range<f64>,
}

impl SharedAxes {
    /// Computes the shared ranges over all cells.
    fn of(fig: &SweepFigure) -> Self {
        let mut xb = Bounds::default();
        for c in &fig.cells {
            for s in [&c.arm_a.steps, &c.arm_b.steps, &c.diff.steps] {
                xb.add(s.iter().map(|&v| v as f64));
            }
        }
        let x = xb.steps();
        let mut loss = Bounds::default();
        let mut diff = Bounds::default();
        diff.add([0.0]);
        for c in &fig.cells {
            add_arm(&mut loss, &c.arm_a, &x);
            add_arm(&mut loss, &c.arm_b, &x);
            diff.add(c.diff.values.iter().copied());
            if let Some((lo, hi)) = &c.diff.noise_band {
                diff.add(lo.iter().chain(hi).copied());
            }
        }
        SharedAxes {
            x,
            loss,
            diff: diff.linear(0.08),
        }
    }
}

/// Draws the grid's title, the count of failing cells and a horizontal legend.
fn grid_header(area: &Area<'_>, fig: &SweepFigure) -> Result<()> {
    let err = draw::render_err(&fig.title);
    let title = (FONT, 32, FontStyle::Bold).into_font().color(&BLACK);
    area.draw_text(&fig.title, &title, (24, 14)).map_err(&err)?;
    let failed = fig.cells.iter().filter(|c| !c.passed).count();
    let (text, color) = if failed == 0 {
        let n = fig.cells.len();
        let text = if n == 1 {
            "the cell did not diverge".to_string()
        } else {
            format!("no cell of {n} diverged")
        };
        (text, draw::GREEN)
    } else {
        (
            format!(
                "{failed} of {} cells diverged (red panels)",
                fig.cells.len()
            ),
            RED,
        )
    };
    let font = (FONT, 24, FontStyle::Bold).into_font().color(&color);
    area.draw_text(&text, &font, (24, 62)).map_err(&err)?;
    let first_a = fig
        .cells
        .first()
        .map(|c| c.arm_a.label.clone())
        .unwrap_or_default();
    let first_b = fig
        .cells
        .first()
        .map(|c| c.arm_b.label.clone())
        .unwrap_or_default();
    let left = [
        LegendItem::line(format!("A: {first_a}"), ARM_A, false),
        LegendItem::line(format!("B: {first_b}"), ARM_B, false),
        LegendItem::fill("ensemble band", ARM_A),
    ];
    let right = [
        LegendItem::line("difference B − A (lower chart)".into(), DIFF, false),
        LegendItem::fill("noise band (benign)", NOISE),
        LegendItem::line("onset".into(), RED, true),
    ];
    let (w, _) = area.dim_in_pixel();
    let cols = area
        .split_horizontally(w as i32 - 900)
        .1
        .split_evenly((1, 2));
    draw_legend(&cols[0], &fig.title, "Legend", &left, 12)?;
    draw_legend(&cols[1], &fig.title, "", &right, 12)?;
    Ok(())
}

/// Draws one panel: tinted when failing, a label line, the loss chart over the difference chart.
fn grid_cell(area: &Area<'_>, name: &str, cell: &SweepCell, axes: &SharedAxes) -> Result<()> {
    let err = draw::render_err(name);
    let area = area.margin(6, 6, 6, 6);
    let (w, h) = area.dim_in_pixel();
    if !cell.passed {
        area.fill(&FAIL_TINT).map_err(&err)?;
        let border = [(2, 2), (w as i32 - 3, h as i32 - 3)];
        area.draw(&Rectangle::new(border, RED.stroke_width(5)))
            .map_err(&err)?;
    } else {
        let border = [(0, 0), (w as i32 - 1, h as i32 - 1)];
        area.draw(&Rectangle::new(border, BLACK.mix(0.2).stroke_width(1)))
            .map_err(&err)?;
    }
    let (label_area, charts) = area.split_vertically(44);
    cell_title(&label_area, name, cell)?;
    let (loss_area, diff_area) = charts.split_vertically((h - 44) * 56 / 100);
    cell_loss(&loss_area, name, cell, axes)?;
    cell_diff(&diff_area, name, cell, axes)
}

/// Draws a panel's label left and its status ("DIVERGED @ step N") right-aligned; the label
/// is shortened with "…" when both would not fit.
fn cell_title(area: &Area<'_>, name: &str, cell: &SweepCell) -> Result<()> {
    let err = draw::render_err(name);
    let (w, _) = area.dim_in_pixel();
    let status = match (cell.passed, cell.onset) {
        (false, Some(s)) => format!("{} @ step {s}", cell.verdict.to_uppercase()),
        (false, None) => cell.verdict.to_uppercase(),
        (true, _) => cell.verdict.clone(),
    };
    let color = draw::verdict_color(&cell.verdict, cell.passed);
    let sfont = (FONT, 21, FontStyle::Bold).into_font().color(&color);
    let (sw, _) = area.estimate_text_size(&status, &sfont).map_err(&err)?;
    let status_x = w as i32 - 16 - sw as i32;
    area.draw_text(&status, &sfont, (status_x, 12))
        .map_err(&err)?;
    let font = (FONT, 21, FontStyle::Bold).into_font().color(&BLACK);
    let mut label = cell.label.clone();
    let mut chars: Vec<char> = label.chars().collect();
    while !chars.is_empty() {
        let (lw, _) = area.estimate_text_size(&label, &font).map_err(&err)?;
        if 14 + lw as i32 + 20 <= status_x {
            break;
        }
        chars.pop();
        label = chars.iter().collect::<String>() + "…";
    }
    area.draw_text(&label, &font, (14, 12)).map_err(&err)?;
    Ok(())
}

/// The loss chart of one panel, on the shared axes.
fn cell_loss(area: &Area<'_>, name: &str, cell: &SweepCell, axes: &SharedAxes) -> Result<()> {
    let x = axes.x.clone();
    if axes.loss.wants_log() {
        let mut chart = build_chart(area, name, "", x, axes.loss.log().log_scale(), "loss")?;
        cell_loss_layers(&mut chart, name, cell)
    } else {
        let mut chart = build_chart(area, name, "", x, axes.loss.linear(0.05), "loss")?;
        cell_loss_layers(&mut chart, name, cell)
    }
}

/// Both arms and the onset line of one panel.
fn cell_loss_layers<Y: Ranged<ValueType = f64>>(
    chart: &mut draw::Chart<'_, '_, Y>,
    name: &str,
    cell: &SweepCell,
) -> Result<()> {
    draw_arm(chart, name, &cell.arm_a, ARM_A, 4)?;
    draw_arm(chart, name, &cell.arm_b, ARM_B, 2)?;
    if let Some(s) = cell.onset {
        draw::draw_vline(chart, name, s, &format!("onset {s}"))?;
    }
    Ok(())
}

/// The difference chart of one panel, on the shared axes.
fn cell_diff(area: &Area<'_>, name: &str, cell: &SweepCell, axes: &SharedAxes) -> Result<()> {
    let d = &cell.diff;
    let mut chart = build_chart(area, name, "", axes.x.clone(), axes.diff.clone(), "Δ loss")?;
    if let Some(band) = &d.noise_band {
        draw::draw_band(&mut chart, name, &d.steps, band, NOISE)?;
    }
    let zero = [(axes.x.start, 0.0), (axes.x.end, 0.0)];
    chart
        .draw_series(LineSeries::new(zero, BLACK.stroke_width(1)))
        .map_err(draw::render_err(name))?;
    draw::draw_curve(&mut chart, name, &d.steps, &d.values, DIFF.stroke_width(2))?;
    if let Some(s) = cell.onset {
        draw::draw_vline(&mut chart, name, s, "")?;
    }
    Ok(())
}

/// Renders a compact heat map of effect size over the sweep's one or two axes, as PNG bytes.
///
/// Each cell shows its effect size (signed) and verdict. Colour is measured in margins: a cell
/// whose |effect| is within its margin is white (what "equivalent" looks like, however the
/// numbers compare among themselves), beyond it a tint from pale to full blue (negative) or red
/// (positive), full at the largest |effect| (or at twice the margin, when that is larger).
/// Cells without an effect size are grey and say "n/a"; failing cells get a thick red border. A
/// colour bar shows the scale with the margin marked. The two-line title is shortened to fit.
///
/// # Errors
/// [`Error::InvalidFigure`](crate::Error::InvalidFigure) when a cell's coordinates are not on the
/// axes; [`Error::Render`](crate::Error::Render) if drawing fails.
pub fn render_sweep_heatmap(fig: &SweepFigure) -> Result<Vec<u8>> {
    let lay = layout(fig)?;
    let left = if fig.axes.len() == 2 { 220 } else { 40 };
    let (cw, ch) = HEAT_CELL;
    let w = (left + cw * lay.cols as u32 + 240).max(760);
    let h = 150 + ch * lay.rows as u32 + 30;
    let scale = HeatScale::of(fig);
    draw::render_png(&fig.title, (w, h), |root| {
        heat_title(root, fig, &scale)?;
        heat_labels(root, &fig.title, &lay, left as i32)?;
        for (cell, &(c, r)) in fig.cells.iter().zip(&lay.at) {
            let x0 = left as i32 + (c as u32 * cw) as i32;
            let y0 = 150 + (r as u32 * ch) as i32;
            heat_cell(root, &fig.title, cell, (x0, y0), &scale)?;
        }
        let bar_x = left as i32 + (cw * lay.cols as u32) as i32 + 40;
        color_bar(
            root,
            &fig.title,
            (bar_x, 150),
            (ch * lay.rows as u32) as i32,
            &scale,
        )
    })
}

/// How a heat map turns an effect into a colour: white within `margin`, full colour at `full`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct HeatScale {
    /// The relative margin (the largest of the cells'; 0 when no cell has one).
    margin: f64,
    /// The |effect| drawn in full colour; above `margin`.
    full: f64,
}

impl HeatScale {
    /// Reads the scale off the cells: their largest margin and largest finite |effect|.
    fn of(fig: &SweepFigure) -> Self {
        let finite = |v: Option<f64>| v.filter(|x| x.is_finite()).map(f64::abs);
        let max = |it: &mut dyn Iterator<Item = f64>| it.fold(0.0f64, f64::max);
        let margin = max(&mut fig.cells.iter().filter_map(|c| finite(c.relative_margin)));
        let largest = max(&mut fig.cells.iter().filter_map(|c| finite(c.effect_size)));
        Self::new(margin, largest)
    }

    /// Builds a scale with full colour at `largest`, and at least at twice the margin so a
    /// cell just past the margin is pale rather than saturated.
    fn new(margin: f64, largest: f64) -> Self {
        let full = largest.max(2.0 * margin);
        let full = if full > 0.0 { full } else { 1.0 };
        HeatScale { margin, full }
    }
}

/// Draws the heat map's title on two lines, each shortened with "…" to fit the figure: the
/// sweep's name, then what the colour means.
fn heat_title(root: &Area<'_>, fig: &SweepFigure, scale: &HeatScale) -> Result<()> {
    let err = draw::render_err(&fig.title);
    let (w, _) = root.dim_in_pixel();
    let room = w.saturating_sub(40);
    let what = if scale.margin > 0.0 {
        format!(
            "relative late-window effect (B − A) / |A|; white = within the margin ±{}",
            percent(scale.margin)
        )
    } else {
        "relative late-window effect (B − A) / |A|".to_string()
    };
    for (text, size, style, y) in [
        (fig.title.as_str(), 26, FontStyle::Bold, 12),
        (what.as_str(), 18, FontStyle::Normal, 46),
    ] {
        let font = (FONT, size, style).into_font().color(&BLACK);
        let fitted = fit_text(text, room, |t| {
            root.estimate_text_size(t, &font)
                .map_or(u32::MAX, |(tw, _)| tw)
        });
        root.draw_text(&fitted, &font, (20, y)).map_err(&err)?;
    }
    Ok(())
}

/// Formats a relative value as a percentage for the heat map's labels ("0.1%", "-55%").
fn percent(rel: f64) -> String {
    format!("{}%", draw::fmt_num(rel * 100.0))
}

/// Returns the heat-map colour of a relative effect: white within the margin, then from a pale
/// tint just past it to full blue (negative) or red (positive) at `scale.full`.
fn heat_color(e: f64, scale: &HeatScale) -> RGBColor {
    let beyond = e.abs() - scale.margin;
    // NaN (no effect to colour) is white too, hence not `beyond <= 0.0`.
    if beyond.is_nan() || beyond <= 0.0 {
        return RGBColor(255, 255, 255);
    }
    let span = (scale.full - scale.margin).max(f64::MIN_POSITIVE);
    // A quarter tint at the margin itself, so "just beyond" never reads as "within".
    let a = 0.25 + 0.75 * (beyond / span).min(1.0);
    let (r, g, b) = if e > 0.0 {
        (215.0, 48.0, 39.0)
    } else {
        (49.0, 90.0, 200.0)
    };
    let mix = |c: f64| (255.0 + (c - 255.0) * a).round() as u8;
    RGBColor(mix(r), mix(g), mix(b))
}

/// Draws the axis keys and value labels around the heat map.
fn heat_labels(root: &Area<'_>, name: &str, lay: &Layout, left: i32) -> Result<()> {
    let err = draw::render_err(name);
    let (cw, ch) = (HEAT_CELL.0 as i32, HEAT_CELL.1 as i32);
    let key = (FONT, 20, FontStyle::Bold).into_font().color(&GREY_TEXT);
    // Below the two title lines (which end at y ≈ 68).
    root.draw_text(&format!("{} →", lay.col_key), &key, (left, 80))
        .map_err(&err)?;
    let font = (FONT, 19).into_font().color(&BLACK);
    let centred = font.pos(Pos::new(HPos::Center, VPos::Center));
    for (i, l) in lay.col_labels.iter().enumerate() {
        let short: String = l.chars().take(16).collect();
        root.draw_text(&short, &centred, (left + cw * i as i32 + cw / 2, 124))
            .map_err(&err)?;
    }
    if !lay.row_key.is_empty() {
        root.draw_text(&format!("{} ↓", lay.row_key), &key, (16, 100))
            .map_err(&err)?;
        let right = font.pos(Pos::new(HPos::Right, VPos::Center));
        for (j, l) in lay.row_labels.iter().enumerate() {
            let short: String = l.chars().take(18).collect();
            root.draw_text(&short, &right, (left - 14, 150 + ch * j as i32 + ch / 2))
                .map_err(&err)?;
        }
    }
    Ok(())
}

/// Draws one heat-map cell with its number and verdict.
fn heat_cell(
    root: &Area<'_>,
    name: &str,
    cell: &SweepCell,
    (x0, y0): (i32, i32),
    scale: &HeatScale,
) -> Result<()> {
    let err = draw::render_err(name);
    let (cw, ch) = (HEAT_CELL.0 as i32, HEAT_CELL.1 as i32);
    let effect = cell.effect_size.filter(|e| e.is_finite());
    let fill = effect.map_or(RGBColor(215, 215, 215), |e| heat_color(e, scale));
    let rect = [(x0, y0), (x0 + cw - 1, y0 + ch - 1)];
    root.draw(&Rectangle::new(rect, fill.filled()))
        .map_err(&err)?;
    // Near-zero cells are almost white: a grey outline keeps the grid visible.
    let border = if cell.passed {
        RGBColor(190, 190, 190).stroke_width(1)
    } else {
        RED.stroke_width(5)
    };
    let inset = [(x0 + 2, y0 + 2), (x0 + cw - 3, y0 + ch - 3)];
    root.draw(&Rectangle::new(inset, border)).map_err(&err)?;
    // Dark fills need white text to stay readable.
    let luma = 0.299 * fill.0 as f64 + 0.587 * fill.1 as f64 + 0.114 * fill.2 as f64;
    let ink = if luma < 140.0 { WHITE } else { BLACK };
    let num = effect.map_or("n/a".to_string(), |e| {
        let p = percent(e);
        if e > 0.0 {
            format!("+{p}")
        } else {
            p
        }
    });
    let big = (FONT, 24, FontStyle::Bold)
        .into_font()
        .color(&ink)
        .pos(Pos::new(HPos::Center, VPos::Center));
    root.draw_text(&num, &big, (x0 + cw / 2, y0 + ch / 2 - 12))
        .map_err(&err)?;
    let small = (FONT, 16)
        .into_font()
        .color(&ink)
        .pos(Pos::new(HPos::Center, VPos::Center));
    let verdict = match (cell.passed, cell.onset) {
        (false, Some(s)) => format!("{} @ {s}", cell.verdict),
        _ => cell.verdict.clone(),
    };
    root.draw_text(&verdict, &small, (x0 + cw / 2, y0 + ch / 2 + 18))
        .map_err(&err)?;
    Ok(())
}

/// Draws a vertical colour bar from −full (bottom) to +full (top), labelled at both ends, at 0
/// and at ± the margin (the white band between those two labels).
fn color_bar(
    root: &Area<'_>,
    name: &str,
    (x, y): (i32, i32),
    height: i32,
    scale: &HeatScale,
) -> Result<()> {
    let err = draw::render_err(name);
    let height = height.max(60);
    let value_at = |k: i32| scale.full * (1.0 - 2.0 * k as f64 / (height - 1).max(1) as f64);
    for k in 0..height {
        let c = heat_color(value_at(k), scale);
        root.draw(&Rectangle::new(
            [(x, y + k), (x + 24, y + k + 1)],
            c.filled(),
        ))
        .map_err(&err)?;
    }
    root.draw(&Rectangle::new(
        [(x, y), (x + 24, y + height)],
        BLACK.stroke_width(1),
    ))
    .map_err(&err)?;
    let font = (FONT, 15)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    let frac = |v: f64| 0.5 - v / (2.0 * scale.full);
    let mut labels = vec![
        (0.0, format!("+{}", percent(scale.full))),
        (1.0, format!("-{}", percent(scale.full))),
    ];
    if scale.margin > 0.0 {
        // The margin's two labels would sit on top of each other on a bar this tall: one says both.
        labels.push((0.5, format!("±{} (margin)", percent(scale.margin))));
        for v in [scale.margin, -scale.margin] {
            let ty = y + (frac(v) * height as f64) as i32;
            root.draw(&PathElement::new(
                [(x - 4, ty), (x + 28, ty)],
                GREY_TEXT.stroke_width(1),
            ))
            .map_err(&err)?;
        }
    } else {
        labels.push((0.5, "0".into()));
    }
    for (f, text) in labels {
        let ty = y + (f * height as f64) as i32;
        root.draw_text(&text, &font, (x + 32, ty)).map_err(&err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::testdata::{png_info, sweep, sweep_2d};

    #[test]
    fn grid_with_one_and_six_cells_renders_and_is_deterministic() {
        for n in [1, 6] {
            let fig = sweep(n);
            let png = render_sweep_grid(&fig).unwrap();
            let info = png_info(&png);
            let rows = grid_shape(n).1 as u32;
            assert_eq!(
                (info.width, info.height),
                (GRID_W, GRID_HEADER_H + GRID_ROW_H * rows)
            );
            assert!(
                info.distinct_colors > 50,
                "{n} cells: {} colours",
                info.distinct_colors
            );
            assert_eq!(png, render_sweep_grid(&fig).unwrap(), "{n} cells");
        }
    }

    #[test]
    fn heatmap_one_axis_and_two_axes_render() {
        let one = sweep(6);
        let info = png_info(&render_sweep_heatmap(&one).unwrap());
        assert!(info.distinct_colors > 20);
        assert_eq!(
            render_sweep_heatmap(&one).unwrap(),
            render_sweep_heatmap(&one).unwrap()
        );
        let mut two = sweep_2d();
        two.cells[4].effect_size = None;
        two.cells[5].effect_size = Some(f64::NAN);
        two.cells[1].arm_b.mean[5] = f64::NAN;
        two.cells[1].diff.values[5] = f64::NAN;
        let info = png_info(&render_sweep_heatmap(&two).unwrap());
        assert_eq!(info.height, 150 + HEAT_CELL.1 * 2 + 30);
        assert!(render_sweep_grid(&two).is_ok());
    }

    #[test]
    fn grid_shape_is_near_square() {
        assert_eq!(grid_shape(1), (1, 1));
        assert_eq!(grid_shape(3), (3, 1));
        assert_eq!(grid_shape(4), (2, 2));
        assert_eq!(grid_shape(6), (3, 2));
        assert_eq!(grid_shape(10), (4, 3));
    }

    #[test]
    fn cell_off_the_axes_is_a_typed_error() {
        let mut fig = sweep(2);
        fig.cells[1].coordinates = vec!["999".into()];
        let e = render_sweep_heatmap(&fig).unwrap_err();
        assert!(
            e.to_string()
                .contains("`lr_decay_iters` = 999 is not among the axis values"),
            "{e}"
        );
    }

    #[test]
    fn heat_colour_is_white_within_the_margin_and_saturated_at_the_largest_effect() {
        // The kernels sweep of issue #19: a −9.3e-9 effect against a 0.1 % margin is white, not
        // the saturated blue it was when the colour was scaled to the map's own data.
        let kernels = HeatScale::new(1e-3, 9.3e-9);
        assert_eq!(heat_color(-9.3e-9, &kernels), RGBColor(255, 255, 255));
        assert_eq!(heat_color(-1e-3, &kernels), RGBColor(255, 255, 255));
        let sweep = HeatScale::new(1e-3, 0.2);
        assert_eq!(heat_color(0.0, &sweep), RGBColor(255, 255, 255));
        assert_eq!(heat_color(0.2, &sweep), RGBColor(215, 48, 39));
        assert_eq!(heat_color(-0.5, &sweep), RGBColor(49, 90, 200));
        let just_beyond = heat_color(1.1e-3, &sweep);
        assert!(
            just_beyond != RGBColor(255, 255, 255) && just_beyond.0 > 200,
            "{just_beyond:?}"
        );
        // Without a margin, only an exact zero is white.
        let none = HeatScale::new(0.0, 0.0);
        assert_eq!(heat_color(0.0, &none), RGBColor(255, 255, 255));
        assert!(heat_color(0.5, &HeatScale::new(0.0, 1.0)) != RGBColor(255, 255, 255));
    }

    #[test]
    fn heat_scale_reads_the_cells_margins() {
        let mut fig = sweep(3);
        for (c, e) in fig.cells.iter_mut().zip([-9.3e-9, 2e-9, 0.0]) {
            c.effect_size = Some(e);
            c.relative_margin = Some(1e-3);
        }
        assert_eq!(HeatScale::of(&fig), HeatScale::new(1e-3, 9.3e-9));
        assert!(render_sweep_heatmap(&fig).is_ok());
    }
}
