//! The human-readable report pages: `index.md` (for code hosts and tickets) and a standalone
//! `index.html` with every figure embedded as a data URI. Both list failures first.

use super::escape::{base64, html, md};
use super::figure::numbers_line;
use super::files::{Figures, GateDecision, ReportEntry, ReportInput};
use super::marks::{gate_badge, Mark};
use super::{draw, KeyNumbers};
use std::fmt::Write as _;

/// Returns entry indices with failing entries first, otherwise in input order.
fn failures_first(entries: &[ReportEntry]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..entries.len()).collect();
    idx.sort_by_key(|&i| entries[i].passed);
    idx
}

/// Returns an entry's status mark.
fn mark(e: &ReportEntry) -> Mark {
    Mark::of(&e.verdict, e.passed)
}

/// Returns a verdict with its status as text, e.g. "FAIL diverged" (`index.md`'s marks).
fn marked(e: &ReportEntry) -> String {
    format!("{} {}", mark(e).word(), verdict_text(e))
}

/// Returns the verdict as the table shows it: a divergence that passes says it was expected.
fn verdict_text(e: &ReportEntry) -> String {
    if e.passed && e.verdict == "diverged" {
        "diverged (expected)".into()
    } else {
        e.verdict.clone()
    }
}

/// Returns an entry's details: its summary's lines, each one fact.
fn details(e: &ReportEntry) -> impl Iterator<Item = &str> {
    e.summary.lines().map(str::trim).filter(|l| !l.is_empty())
}

/// Returns the line under an entry's heading: the gate badge, then the key numbers.
fn badge_line(e: &ReportEntry) -> String {
    let numbers = numbers_line(&e.numbers);
    let badge = gate_badge(&e.verdict, e.passed, &e.numbers);
    if numbers.is_empty() {
        badge
    } else {
        format!("{badge}  ·  {numbers}")
    }
}

/// Returns the table cells for the key numbers: onset, effect, p, margin ("–" when unknown).
pub(super) fn number_cells(n: &KeyNumbers) -> [String; 4] {
    let dash = || "–".to_string();
    [
        n.onset_step.map_or_else(dash, |s| s.to_string()),
        n.effect_size.map_or_else(dash, draw::fmt_signed),
        n.p_value.map_or_else(dash, |p| match &n.p_test {
            Some(t) => format!("{} ({t})", crate::compare::format_p(p)),
            None => crate::compare::format_p(p),
        }),
        n.margin
            .map_or_else(dash, |m| format!("±{}", draw::fmt_num(m))),
    ]
}

/// Returns the gate line, e.g. "Gate: FAIL: 1 of 3 comparisons diverged".
fn gate_line(g: &GateDecision) -> String {
    let verdict = if g.passed { "PASS" } else { "FAIL" };
    if g.reason.is_empty() {
        format!("Gate: {verdict}")
    } else {
        format!("Gate: {verdict}: {}", g.reason)
    }
}

/// Renders `index.md`: gate line, summary table (failures first), then one section per entry.
pub(super) fn index_md(report: &ReportInput, figs: &Figures) -> String {
    let mut s = String::new();
    let failed = report.entries.iter().filter(|e| !e.passed).count();
    let _ = writeln!(
        s,
        "# {}\n",
        md(&format!("lossdiff report: {}", report.name))
    );
    let _ = writeln!(s, "**{}**\n", md(&gate_line(&report.gate)));
    let _ = writeln!(
        s,
        "{} · {} comparisons · {failed} failing\n",
        md(&report.timestamp),
        report.entries.len()
    );
    s.push_str("| Verdict | Comparison | Onset step | Effect | p (test) | Margin |\n");
    s.push_str("|---|---|---|---|---|---|\n");
    for &i in &failures_first(&report.entries) {
        let e = &report.entries[i];
        let [on, eff, p, m] = number_cells(&e.numbers);
        let _ = writeln!(
            s,
            "| {} | {} | {on} | {eff} | {p} | {m} |",
            md(&marked(e)),
            md(&e.name)
        );
    }
    for &i in &failures_first(&report.entries) {
        md_section(&mut s, &report.entries[i], figs.entry[i].as_deref());
    }
    if !report.sweep_figures.is_empty() {
        s.push_str("\n## Sweeps\n");
        for (f, rel) in report.sweep_figures.iter().zip(&figs.sweep) {
            let _ = writeln!(
                s,
                "\n### {}\n\n![{}]({rel})",
                md(&f.caption),
                md(&f.caption)
            );
        }
    }
    s
}

/// Appends one entry's section to `index.md`: heading, badge and numbers, details as a list.
fn md_section(s: &mut String, e: &ReportEntry, figure: Option<&str>) {
    let _ = writeln!(s, "\n## {}\n", md(&format!("{}: {}", e.name, marked(e))));
    let _ = writeln!(s, "**{}**\n", md(&badge_line(e)));
    let lines: Vec<&str> = details(e).collect();
    if !lines.is_empty() {
        for l in lines {
            let _ = writeln!(s, "- {}", md(l));
        }
        s.push('\n');
    }
    md_list(
        s,
        "Undeclared config differences",
        &e.undeclared_differences,
    );
    md_list(s, "Environment differences", &e.environment_differences);
    if let Some(rel) = figure {
        let _ = writeln!(s, "![{}]({rel})", md(&e.name));
    }
}

/// Appends a bold heading and a bullet list, or "none".
fn md_list(s: &mut String, heading: &str, items: &[String]) {
    if items.is_empty() {
        let _ = writeln!(s, "**{heading}:** none\n");
        return;
    }
    let _ = writeln!(s, "**{heading}:**\n");
    for it in items {
        let _ = writeln!(s, "- {}", md(it));
    }
    s.push('\n');
}

/// Renders the standalone `index.html`, with every figure as a base64 data URI.
pub(super) fn index_html(report: &ReportInput, figs: &Figures) -> String {
    let mut s = String::new();
    let title = html(&format!("lossdiff report: {}", report.name));
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\n<style>{CSS}</style></head><body>\n<h1>{title}</h1>\n"
    );
    let class = if report.gate.passed { "pass" } else { "fail" };
    let gate = html(&gate_line(&report.gate));
    let _ = writeln!(s, "<p class=\"gate {class}\">{gate}</p>");
    let _ = writeln!(s, "<p>{}</p>", html(&report.timestamp));
    html_table(&mut s, &report.entries);
    for &i in &failures_first(&report.entries) {
        html_section(&mut s, &report.entries[i], figs.entry[i].as_deref(), figs);
    }
    for (f, rel) in report.sweep_figures.iter().zip(&figs.sweep) {
        let _ = writeln!(
            s,
            "<h2>{}</h2>\n{}",
            html(&f.caption),
            img(figs, rel, &f.caption)
        );
    }
    s.push_str("</body></html>\n");
    s
}

/// Returns an `<img>` embedding the figure at `rel` as a base64 data URI.
fn img(figs: &Figures, rel: &str, alt: &str) -> String {
    let data = figs
        .files
        .iter()
        .find(|(r, _)| r == rel)
        .map(|(_, b)| base64(b))
        .unwrap_or_default();
    format!(
        "<img alt=\"{}\" src=\"data:image/png;base64,{data}\">",
        html(alt)
    )
}

/// Appends the summary table: verdict first, failures first.
fn html_table(s: &mut String, entries: &[ReportEntry]) {
    s.push_str("<table><tr><th>Verdict</th><th>Comparison</th><th>Onset step</th><th>Effect</th><th>p (test)</th><th>Margin</th></tr>\n");
    for &i in &failures_first(entries) {
        let e = &entries[i];
        let m = mark(e);
        let (verdict, name) = (html(&verdict_text(e)), html(&e.name));
        let _ = write!(
            s,
            "<tr><td class=\"{}\">{} {verdict}</td><td>{name}</td>",
            m.class(),
            m.html()
        );
        for c in number_cells(&e.numbers) {
            let _ = write!(s, "<td>{}</td>", html(&c));
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</table>\n");
}

/// Appends one entry's section: heading, badge and numbers, details, differences, figure.
fn html_section(s: &mut String, e: &ReportEntry, figure: Option<&str>, figs: &Figures) {
    let m = mark(e);
    let heading = html(&format!("{}: {}", e.name, e.verdict));
    let _ = writeln!(s, "<h2>{} {heading}</h2>", m.html());
    let _ = writeln!(s, "<p><b>{}</b></p>", html(&badge_line(e)));
    let lines: Vec<&str> = details(e).collect();
    if !lines.is_empty() {
        s.push_str("<ul class=\"details\">");
        for l in lines {
            let _ = write!(s, "<li>{}</li>", html(l));
        }
        s.push_str("</ul>\n");
    }
    let undeclared = &e.undeclared_differences;
    html_list(s, "Undeclared config differences", undeclared, true);
    html_list(
        s,
        "Environment differences",
        &e.environment_differences,
        false,
    );
    if let Some(rel) = figure {
        let _ = writeln!(s, "{}", img(figs, rel, &e.name));
    }
}

/// Inline style sheet of `index.html` (no external assets).
const CSS: &str = "body{font-family:sans-serif;max-width:1700px;margin:2em auto;padding:0 1em}\
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 10px;text-align:left}\
.fail{color:#c81e1e;font-weight:bold}.pass{color:#1e8c3c}.warn{color:#d79100}.gate{font-size:1.3em}\
.alarm{border:3px solid #c81e1e;background:#ffebeb;padding:.5em 1em}img{max-width:100%}\
.mark{display:inline-flex;align-items:center;gap:4px;font-weight:bold;white-space:nowrap}\
.mark svg{flex:none}.details li{margin:2px 0}";

/// Appends a heading and a list, boxed in red when `alarm` and the list is not empty.
fn html_list(s: &mut String, heading: &str, items: &[String], alarm: bool) {
    if items.is_empty() {
        let _ = writeln!(s, "<p><b>{heading}:</b> none</p>");
        return;
    }
    let class = if alarm { " class=\"alarm\"" } else { "" };
    let _ = write!(s, "<div{class}><b>{heading}:</b><ul>");
    for it in items {
        let _ = write!(s, "<li>{}</li>", html(it));
    }
    s.push_str("</ul></div>\n");
}
