//! Drawing primitives shared by the figures: font registration, the palette, PNG encoding, axis
//! bounds, and curve/band/marker helpers that turn non-finite values into gaps instead of panics.
//! Panel layout lives in `figure.rs` and `sweep.rs`.

use crate::error::{Error, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;
use std::sync::Once;

/// The bitmap drawing area every figure draws on.
pub(super) type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;
/// A chart with a linear step axis and a `Y` value axis (linear or logarithmic).
pub(super) type Chart<'a, 'b, Y> =
    ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, Y>>;

/// Font family name the figures use; registered from the embedded DejaVu fonts.
pub(super) const FONT: &str = "sans-serif";

/// Arm A (baseline): blue.
pub(super) const ARM_A: RGBColor = RGBColor(31, 119, 180);
/// Arm B (candidate): orange.
pub(super) const ARM_B: RGBColor = RGBColor(230, 115, 0);
/// The difference curve: purple.
pub(super) const DIFF: RGBColor = RGBColor(110, 50, 150);
/// Benign-noise band: grey.
pub(super) const NOISE: RGBColor = RGBColor(120, 120, 120);
/// Onset markers and "diverged": red.
pub(super) const RED: RGBColor = RGBColor(200, 30, 30);
/// "equivalent" / "identical": green.
pub(super) const GREEN: RGBColor = RGBColor(30, 140, 60);
/// "inconclusive" and anything unknown: amber.
pub(super) const AMBER: RGBColor = RGBColor(215, 145, 0);
/// Secondary text.
pub(super) const GREY_TEXT: RGBColor = RGBColor(90, 90, 90);

/// Registers the embedded DejaVu fonts with plotters, once per process.
///
/// This is the only place fonts are registered; every renderer calls it first.
pub(super) fn ensure_fonts() {
    static FONTS: Once = Once::new();
    FONTS.call_once(|| {
        // The font bytes are compiled in; parsing them can only fail if the dejavu crate is broken.
        plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
            .map_err(|_| ())
            .expect("the embedded DejaVu Sans font parses");
        plotters::style::register_font(FONT, FontStyle::Bold, dejavu::sans::bold())
            .map_err(|_| ())
            .expect("the embedded DejaVu Sans Bold font parses");
    });
}

/// Returns a closure mapping any plotters error to [`Error::Render`] for `figure`.
pub(super) fn render_err<E: std::fmt::Display>(figure: &str) -> impl Fn(E) -> Error + '_ {
    move |e| Error::Render {
        figure: figure.to_string(),
        message: e.to_string(),
    }
}

/// Renders `w`×`h` pixels with `draw` and returns them as PNG bytes (RGB, 8 bit).
///
/// # Errors
/// Whatever `draw` returns; [`Error::Render`] if encoding fails.
pub(super) fn render_png(
    figure: &str,
    (w, h): (u32, u32),
    draw: impl FnOnce(&Area<'_>) -> Result<()>,
) -> Result<Vec<u8>> {
    ensure_fonts();
    let mut pixels = vec![255u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(render_err(figure))?;
        draw(&root)?;
        root.present().map_err(render_err(figure))?;
    }
    encode_png(figure, w, h, &pixels)
}

/// Encodes RGB pixels as a PNG with fixed settings, so equal pixels give equal bytes.
fn encode_png(figure: &str, w: u32, h: u32, rgb: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::Default);
    let mut writer = enc.write_header().map_err(render_err(figure))?;
    writer.write_image_data(rgb).map_err(render_err(figure))?;
    writer.finish().map_err(render_err(figure))?;
    Ok(out)
}

/// Returns the colour of a verdict: red when failing, green for a pass that is "equivalent" or
/// "identical", amber for everything else (inconclusive, unknown labels).
pub(super) fn verdict_color(verdict: &str, passed: bool) -> RGBColor {
    let v = verdict.to_ascii_lowercase();
    if v.contains("diverg") || (!passed && !v.contains("inconclusive")) {
        RED
    } else if passed && (v.contains("equivalent") || v.contains("identical")) {
        GREEN
    } else {
        AMBER
    }
}

/// Running minimum and maximum of the finite values seen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Bounds {
    /// Smallest finite value, `+inf` when none.
    pub lo: f64,
    /// Largest finite value, `-inf` when none.
    pub hi: f64,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            lo: f64::INFINITY,
            hi: f64::NEG_INFINITY,
        }
    }
}

impl Bounds {
    /// Widens the bounds by every finite value of `values`.
    pub fn add(&mut self, values: impl IntoIterator<Item = f64>) {
        for v in values.into_iter().filter(|v| v.is_finite()) {
            self.lo = self.lo.min(v);
            self.hi = self.hi.max(v);
        }
    }

    /// Returns whether no finite value was seen.
    pub fn is_empty(&self) -> bool {
        self.lo > self.hi
    }

    /// Returns whether a logarithmic axis suits these bounds: all positive, over a decade.
    pub fn wants_log(&self) -> bool {
        !self.is_empty() && self.lo > 0.0 && self.hi / self.lo > 10.0
    }

    /// Returns a drawable linear range: padded by `pad` of the span, never empty or degenerate.
    pub fn linear(&self, pad: f64) -> std::ops::Range<f64> {
        if self.is_empty() {
            return 0.0..1.0;
        }
        let span = self.hi - self.lo;
        // A flat or single-point series still needs a non-zero range to map onto pixels.
        let pad = if span > 0.0 {
            span * pad
        } else {
            self.lo.abs().max(1.0) * 0.05
        };
        (self.lo - pad)..(self.hi + pad)
    }

    /// Returns a range for a step axis: the exact extent, or ± 1 step around a single step.
    pub fn steps(&self) -> std::ops::Range<f64> {
        if !self.is_empty() && self.hi - self.lo < 2.0 {
            let mid = (self.lo + self.hi) / 2.0;
            (mid - 1.0)..(mid + 1.0)
        } else {
            self.linear(0.0)
        }
    }

    /// Returns a logarithmic range padded by a small factor; only valid when `wants_log`.
    pub fn log(&self) -> std::ops::Range<f64> {
        (self.lo / 1.08)..(self.hi * 1.08)
    }
}

/// Returns the index ranges of the maximal runs where `ok` holds.
fn runs(ok: impl Iterator<Item = bool>) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = None;
    let mut n = 0;
    for (i, good) in ok.enumerate() {
        match (good, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push(s..i);
                start = None;
            }
            _ => {}
        }
        n = i + 1;
    }
    if let Some(s) = start {
        out.push(s..n);
    }
    out
}

/// Splits `(step, value)` pairs into runs of finite values, so gaps are not bridged.
pub(super) fn segments(steps: &[u64], values: &[f64]) -> Vec<Vec<(f64, f64)>> {
    let n = steps.len().min(values.len());
    runs(values[..n].iter().map(|v| v.is_finite()))
        .into_iter()
        .map(|r| r.map(|i| (steps[i] as f64, values[i])).collect())
        .collect()
}

/// Splits a `(lo, hi)` band into closed polygons over runs where both edges are finite.
pub(super) fn band_polygons(steps: &[u64], lo: &[f64], hi: &[f64]) -> Vec<Vec<(f64, f64)>> {
    let n = steps.len().min(lo.len()).min(hi.len());
    runs((0..n).map(|i| lo[i].is_finite() && hi[i].is_finite()))
        .into_iter()
        .map(|r| {
            let lower = r.clone().map(|i| (steps[i] as f64, lo[i]));
            let upper = r.rev().map(|i| (steps[i] as f64, hi[i]));
            lower.chain(upper).collect()
        })
        .collect()
}

/// Draws a series as lines over its finite runs; isolated points become dots.
pub(super) fn draw_curve<Y: Ranged<ValueType = f64>>(
    chart: &mut Chart<'_, '_, Y>,
    figure: &str,
    steps: &[u64],
    values: &[f64],
    style: ShapeStyle,
) -> Result<()> {
    for run in segments(steps, values) {
        if run.len() == 1 {
            let dot = Circle::new(run[0], 4, style.filled());
            chart
                .draw_series(std::iter::once(dot))
                .map_err(render_err(figure))?;
        } else {
            chart
                .draw_series(LineSeries::new(run, style))
                .map_err(render_err(figure))?;
        }
    }
    Ok(())
}

/// Draws a series as a dashed line over its finite runs.
pub(super) fn draw_dashed<Y: Ranged<ValueType = f64>>(
    chart: &mut Chart<'_, '_, Y>,
    figure: &str,
    points: Vec<(f64, f64)>,
    style: ShapeStyle,
) -> Result<()> {
    if points.iter().any(|(x, y)| !x.is_finite() || !y.is_finite()) {
        return Ok(());
    }
    chart
        .draw_series(DashedLineSeries::new(points, 10, 6, style))
        .map_err(render_err(figure))?;
    Ok(())
}

/// Fills a `(lo, hi)` band with a translucent `color`.
pub(super) fn draw_band<Y: Ranged<ValueType = f64>>(
    chart: &mut Chart<'_, '_, Y>,
    figure: &str,
    steps: &[u64],
    band: &(Vec<f64>, Vec<f64>),
    color: RGBColor,
) -> Result<()> {
    let polys = band_polygons(steps, &band.0, &band.1);
    chart
        .draw_series(
            polys
                .into_iter()
                .map(|p| Polygon::new(p, color.mix(0.22).filled())),
        )
        .map_err(render_err(figure))?;
    Ok(())
}

/// Draws a dashed vertical marker at `step` across the chart's y range, labelled at the top.
pub(super) fn draw_vline<Y: Ranged<ValueType = f64>>(
    chart: &mut Chart<'_, '_, Y>,
    figure: &str,
    step: u64,
    label: &str,
) -> Result<()> {
    let y = chart.y_range();
    let x = step as f64;
    if !chart.x_range().contains(&x) {
        return Ok(());
    }
    draw_dashed(
        chart,
        figure,
        vec![(x, y.start), (x, y.end)],
        RED.stroke_width(2),
    )?;
    if label.is_empty() {
        return Ok(());
    }
    let font = (FONT, 16).into_font().color(&RED);
    let (px, _) = chart.backend_coord(&(x, y.end));
    let right_edge = chart.plotting_area().get_pixel_range().0.end;
    // Label right of the line, just under the top edge; left of it when near the right edge.
    let dx = if px + 110 > right_edge { -105 } else { 5 };
    let text = EmptyElement::at((x, y.end)) + Text::new(label.to_string(), (dx, 4), font);
    chart
        .draw_series(std::iter::once(text))
        .map_err(render_err(figure))?;
    Ok(())
}

/// Formats an axis tick or a key number compactly: scientific below 1e-3 or from 1e5.
pub(super) fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    if v == 0.0 {
        // Also turns -0.0 into "0".
        return "0".into();
    }
    let a = v.abs();
    if !(1e-3..1e5).contains(&a) {
        format!("{v:.1e}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        trim_zeros(format!("{v:.2}"))
    } else {
        trim_zeros(format!("{v:.4}"))
    }
}

/// Formats an axis tick: like [`fmt_num`], but float noise around zero (a tick at 6.9e-18
/// from summing step sizes) prints as "0". Losses, lrs and differences are all far above 1e-12.
pub(super) fn fmt_tick(v: f64) -> String {
    if v.abs() < 1e-12 {
        "0".into()
    } else {
        fmt_num(v)
    }
}

/// Formats a step-axis tick: whole steps only (fractional ticks of a short axis stay blank).
pub(super) fn fmt_step(v: f64) -> String {
    if (v - v.round()).abs() > 1e-9 {
        String::new()
    } else {
        format!("{}", v.round() as i64)
    }
}

/// Formats a signed effect size with an explicit sign.
pub(super) fn fmt_signed(v: f64) -> String {
    if v > 0.0 {
        format!("+{}", fmt_num(v))
    } else {
        fmt_num(v)
    }
}

/// Drops trailing zeros after a decimal point ("1.50" → "1.5", "2.00" → "2").
fn trim_zeros(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Wraps `text` into lines of at most `width` characters, breaking at spaces where possible.
pub(super) fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let mut word: Vec<char> = word.chars().collect();
        // Words longer than a line (long config keys) are hard-broken.
        while word.len() > width {
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            lines.push(word.drain(..width).collect());
        }
        let word: String = word.into_iter().collect();
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_split_at_non_finite_values() {
        let s = segments(&[0, 1, 2, 3, 4], &[1.0, f64::NAN, 2.0, 3.0, f64::INFINITY]);
        assert_eq!(s, vec![vec![(0.0, 1.0)], vec![(2.0, 2.0), (3.0, 3.0)]]);
    }

    #[test]
    fn band_polygons_close_over_finite_runs() {
        let p = band_polygons(
            &[0, 1, 2, 3],
            &[0.0, 1.0, f64::NAN, 3.0],
            &[1.0, 2.0, 5.0, 4.0],
        );
        assert_eq!(p.len(), 2);
        assert_eq!(p[0], vec![(0.0, 0.0), (1.0, 1.0), (1.0, 2.0), (0.0, 1.0)]);
        assert_eq!(p[1], vec![(3.0, 3.0), (3.0, 4.0)]);
    }

    #[test]
    fn bounds_ignore_nan_and_pad_degenerate_ranges() {
        let mut b = Bounds::default();
        assert!(b.is_empty());
        assert_eq!(b.linear(0.05), 0.0..1.0);
        b.add([f64::NAN, 2.0]);
        let r = b.linear(0.05);
        assert!(r.start < 2.0 && r.end > 2.0);
        assert!(!b.wants_log());
        assert_eq!(b.steps(), 1.0..3.0);
        b.add([25.0]);
        assert!(b.wants_log());
        b.add([-1.0]);
        assert!(!b.wants_log());
    }

    #[test]
    fn verdict_colours_follow_the_brief() {
        assert_eq!(verdict_color("diverged", false), RED);
        assert_eq!(verdict_color("equivalent", true), GREEN);
        assert_eq!(verdict_color("identical", true), GREEN);
        assert_eq!(verdict_color("inconclusive", false), AMBER);
        assert_eq!(verdict_color("inconclusive", true), AMBER);
    }

    #[test]
    fn numbers_format_compactly() {
        assert_eq!(fmt_num(2.5), "2.5");
        assert_eq!(fmt_num(0.0831), "0.0831");
        assert_eq!(fmt_num(6e-4), "6.0e-4");
        assert_eq!(fmt_num(1500.0), "1500");
        assert_eq!(fmt_signed(0.25), "+0.25");
        assert_eq!(fmt_signed(-0.0), "0");
        assert_eq!(fmt_tick(6.9e-18), "0");
        assert_eq!(fmt_step(-0.0), "0");
        assert_eq!(fmt_step(0.5), "");
        assert_eq!(fmt_step(1500.0), "1500");
        assert_eq!(fmt_tick(6e-4), "6.0e-4");
    }

    #[test]
    fn wrap_breaks_at_spaces_and_hard_breaks_long_words() {
        assert_eq!(wrap("a bb ccc", 4), vec!["a bb", "ccc"]);
        assert_eq!(wrap("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
    }
}
