//! Legends and text boxes drawn in free space beside the charts, never over data: the
//! comparison figure's side column and the sweep grid's header use them.

use super::draw::{self, Area, FONT};
use crate::error::Result;
use plotters::prelude::*;
use plotters::style::FontStyle;

/// One legend row: a swatch and its label.
pub(super) struct LegendItem {
    label: String,
    color: RGBColor,
    kind: Swatch,
}

/// How a legend swatch is drawn.
enum Swatch {
    Line { dashed: bool, width: u32 },
    Fill,
    Dot,
}

impl LegendItem {
    /// A solid or dashed line swatch.
    pub(super) fn line(label: String, color: RGBColor, dashed: bool) -> Self {
        let kind = Swatch::Line { dashed, width: 3 };
        LegendItem { label, color, kind }
    }
    /// A thin line swatch (seed members).
    pub(super) fn thin(label: &str, color: RGBColor) -> Self {
        let kind = Swatch::Line {
            dashed: false,
            width: 1,
        };
        LegendItem {
            label: label.into(),
            color,
            kind,
        }
    }
    /// A translucent filled swatch (bands).
    pub(super) fn fill(label: &str, color: RGBColor) -> Self {
        let (label, kind) = (label.into(), Swatch::Fill);
        LegendItem { label, color, kind }
    }
    /// A dot swatch (highlighted points).
    pub(super) fn dot(label: &str, color: RGBColor) -> Self {
        let (label, kind) = (label.into(), Swatch::Dot);
        LegendItem { label, color, kind }
    }
}

/// Draws a legend under `heading` starting at pixel row `top`; returns the row below it.
pub(super) fn draw_legend(
    area: &Area<'_>,
    name: &str,
    heading: &str,
    items: &[LegendItem],
    top: i32,
) -> Result<i32> {
    let err = draw::render_err(name);
    let font = (FONT, 18).into_font().color(&BLACK);
    let head = (FONT, 20, FontStyle::Bold).into_font().color(&BLACK);
    // An empty heading still takes its row, so legends side by side line up.
    if !heading.is_empty() {
        area.draw_text(heading, &head, (16, top)).map_err(&err)?;
    }
    let mut y = top + 34;
    for it in items {
        let c = y + 10;
        match it.kind {
            Swatch::Line {
                dashed: false,
                width,
            } => area
                .draw(&PathElement::new(
                    [(16, c), (60, c)],
                    it.color.stroke_width(width),
                ))
                .map_err(&err)?,
            Swatch::Line {
                dashed: true,
                width,
            } => {
                for x in [16, 32, 48] {
                    let seg = [(x, c), (x + 10, c)];
                    area.draw(&PathElement::new(seg, it.color.stroke_width(width)))
                        .map_err(&err)?;
                }
            }
            Swatch::Fill => area
                .draw(&Rectangle::new(
                    [(16, c - 8), (60, c + 8)],
                    it.color.mix(0.3).filled(),
                ))
                .map_err(&err)?,
            Swatch::Dot => area
                .draw(&Circle::new((38, c), 5, it.color.filled()))
                .map_err(&err)?,
        }
        let label: String = it.label.chars().take(34).collect();
        area.draw_text(&label, &font, (72, y)).map_err(&err)?;
        y += 30;
    }
    Ok(y)
}

/// A heading and wrapped lines in a bordered box.
pub(super) struct TextBox {
    pub heading: String,
    pub lines: Vec<String>,
    pub color: RGBColor,
    /// Tint the background and thicken the border: something needs attention.
    pub alarm: bool,
}

/// Draws `tb` at pixel row `top`, clipped to the area; returns the row below it.
pub(super) fn draw_text_box(area: &Area<'_>, name: &str, top: i32, tb: &TextBox) -> Result<i32> {
    let err = draw::render_err(name);
    let (w, h) = area.dim_in_pixel();
    let (w, h) = (w as i32, h as i32);
    let line_h = 26;
    let mut lines: Vec<String> = tb.lines.iter().flat_map(|l| draw::wrap(l, 36)).collect();
    let room = ((h - top - 70) / line_h).max(1) as usize;
    if lines.len() > room {
        let more = lines.len() - room + 1;
        lines.truncate(room - 1);
        lines.push(format!("… and {more} more lines"));
    }
    let bottom = top + 48 + line_h * lines.len() as i32;
    let rect = [(8, top), (w - 12, bottom)];
    if tb.alarm {
        area.draw(&Rectangle::new(rect, RGBColor(255, 235, 235).filled()))
            .map_err(&err)?;
    }
    let border = tb.color.stroke_width(if tb.alarm { 4 } else { 1 });
    area.draw(&Rectangle::new(rect, border)).map_err(&err)?;
    let head = (FONT, 19, FontStyle::Bold).into_font().color(&tb.color);
    area.draw_text(&tb.heading, &head, (20, top + 12))
        .map_err(&err)?;
    let font = (FONT, 18).into_font().color(&BLACK);
    for (i, l) in lines.iter().enumerate() {
        let y = top + 46 + line_h * i as i32;
        area.draw_text(l, &font, (20, y)).map_err(&err)?;
    }
    Ok(bottom)
}
