//! The report says the same thing in the same words everywhere (issue #19, "The first ten
//! minutes"): no Rust debug text, no emoji, every p-value named by its test, and a non-finite
//! value named with its step and arm. Real comparisons (seeds, a perturbation ensemble, NaN in
//! one arm, a divergence) go through `comparison_entry` and `write_report`, and the files that a
//! reader opens are checked.
//!
//! See: issue #19 ("The first ten minutes").

use super::{comparison_entry, comparison_summary, write_report, GateDecision, ReportInput};
use crate::compare::{compare, CompareSettings};
use crate::trace::{Origin, Series, Trace, LM_LOSS};

fn trace(seed: u64, loss: Vec<f64>) -> Trace {
    Trace {
        schema_version: 1,
        name: "run".into(),
        origin: Origin {
            format: "jsonl".into(),
            path: None,
        },
        config: serde_json::json!({"model": {"attention": "naive"}}),
        fingerprint: serde_json::json!({}),
        seeds: [("init".to_string(), seed)].into(),
        loss_floor: None,
        steps: (1..=loss.len() as u64).collect(),
        series: [(LM_LOSS.to_string(), Series::from_f64(loss))].into(),
    }
}

/// A decaying loss with a seeded wiggle, `shift` added from step `from` on.
fn curve(seed: u64, shift: f64, from: usize) -> Vec<f64> {
    (0..80)
        .map(|t| {
            let x = t as f64;
            let s = if t + 1 >= from { shift } else { 0.0 };
            3.0 * (-x / 30.0).exp() + 1.0 + 2e-3 * crate::rng::normal(seed, t as u64) + s
        })
        .collect()
}

/// Builds the four representative entries and writes their report; returns the directory and
/// the entries' texts (summary line by line, as `summary.json` stores it).
fn representative_report() -> (tempfile::TempDir, Vec<String>) {
    let s = CompareSettings::default();
    let seeds =
        |shift: f64| -> Vec<Trace> { (1..=3).map(|k| trace(k, curve(k, shift, 40))).collect() };
    // Seeds, equivalent (same curves but a tiny offset).
    let same = compare(&seeds(0.0), &seeds(1e-6), &[], &[], &s).unwrap();
    // Seeds, diverged from step 40 by 5 % of the loss.
    let diverged = compare(&seeds(0.0), &seeds(0.05), &[], &[], &s).unwrap();
    // A perturbation ensemble: same seed, B and the ensemble nudged by rounding-sized noise.
    let nudged = |k: u64| {
        let mut c = curve(7, 0.0, 0);
        c.iter_mut()
            .enumerate()
            .for_each(|(t, v)| *v += 1e-7 * crate::rng::normal(100 + k, t as u64));
        trace(7, c)
    };
    let pert: Vec<Trace> = (1..=4).map(nudged).collect();
    let rounding = compare(&[trace(7, curve(7, 0.0, 0))], &[nudged(9)], &pert, &[], &s).unwrap();
    // NaN in B from step 30.
    let mut broken = curve(1, 0.0, 0);
    broken[29..].iter_mut().for_each(|v| *v = f64::NAN);
    let nan = compare(
        &[trace(1, curve(1, 0.0, 0))],
        &[trace(1, broken)],
        &[],
        &[],
        &s,
    )
    .unwrap();
    let cases = [
        ("seeds", same, true),
        ("expected divergence", diverged.clone(), true),
        ("unexpected divergence", diverged, false),
        ("perturbation", rounding, true),
        ("nan", nan, false),
    ];
    let mut texts = Vec::new();
    let entries = cases
        .iter()
        .map(|(name, c, passed)| {
            let summary = comparison_summary("A", "B", c);
            texts.push(summary.clone());
            comparison_entry(name, c, *passed, summary, None)
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let input = ReportInput {
        name: "wording".into(),
        timestamp: "t".into(),
        entries,
        sweep_figures: vec![],
        gate: GateDecision {
            passed: false,
            reason: "2 comparison(s) failed".into(),
        },
    };
    write_report(&dir.path().join("r"), &input).unwrap();
    (dir, texts)
}

fn read(dir: &tempfile::TempDir, file: &str) -> String {
    std::fs::read_to_string(dir.path().join("r").join(file)).unwrap()
}

/// Returns `index.html` without its style sheet (CSS has braces of its own).
fn html_text(dir: &tempfile::TempDir) -> String {
    let html = read(dir, "index.html");
    let (head, rest) = html.split_once("<style>").unwrap();
    let (_, body) = rest.split_once("</style>").unwrap();
    format!("{head}{body}")
}

/// Returns whether `c` is in a Unicode block emoji come from (pictographs, dingbats, symbols
/// and arrows-supplemental, variation selectors).
fn is_emoji(c: char) -> bool {
    matches!(c as u32, 0x2600..=0x27BF | 0x2B00..=0x2BFF | 0xFE00..=0xFE0F | 0x1F000..=0x1FAFF)
}

#[test]
fn no_debug_text_and_no_emoji_in_any_page() {
    let (dir, texts) = representative_report();
    let pages = [
        ("index.md", read(&dir, "index.md")),
        ("index.html", html_text(&dir)),
        ("summaries", texts.join("\n")),
    ];
    for (name, text) in &pages {
        for debug in [
            "{ ",
            ": [",
            "(NonFinite)",
            "Some(",
            "None",
            "Perturbation",
            "Seeds {",
        ] {
            assert!(!text.contains(debug), "{name} has `{debug}`:\n{text}");
        }
        let emoji: Vec<char> = text.chars().filter(|&c| is_emoji(c)).collect();
        assert!(emoji.is_empty(), "{name} has emoji {emoji:?}");
    }
}

#[test]
fn every_p_value_names_its_test() {
    let (dir, texts) = representative_report();
    for (name, text) in [
        ("index.md", read(&dir, "index.md")),
        ("index.html", html_text(&dir)),
        ("summaries", texts.join("\n")),
    ] {
        assert!(!text.contains("p = "), "{name} has an unnamed p:\n{text}");
        assert!(text.contains("p (TOST, late window) = "), "{name}");
        assert!(text.contains("p (beyond margin, "), "{name}");
        assert!(text.contains("p (beyond rounding) = "), "{name}");
    }
    // The table's p cells carry the same test names as the sections and the figures.
    let md = read(&dir, "index.md");
    let summary: serde_json::Value = serde_json::from_str(&read(&dir, "summary.json")).unwrap();
    let rows: Vec<&str> = md
        .lines()
        .filter(|l| l.starts_with("| PASS") || l.starts_with("| FAIL"))
        .collect();
    assert_eq!(rows.len(), 5);
    for row in rows {
        let cells: Vec<&str> = row.split(" | ").collect();
        let entries = summary["entries"].as_array().unwrap();
        let e = entries.iter().find(|e| e["name"] == cells[1]).unwrap();
        match e["numbers"]["p_test"].as_str() {
            Some(test) => assert!(cells[4].ends_with(&format!("({test})")), "{row}"),
            None => assert_eq!(cells[4], "–", "{row}"),
        }
    }
}

#[test]
fn summary_json_names_the_test_next_to_each_p() {
    let (dir, _) = representative_report();
    let summary: serde_json::Value = serde_json::from_str(&read(&dir, "summary.json")).unwrap();
    for e in summary["entries"].as_array().unwrap() {
        let n = &e["numbers"];
        assert_eq!(n["p_value"].is_null(), n["p_test"].is_null(), "{n}");
        assert!(n["tolerance_pass"].is_boolean(), "{n}");
    }
    let tests: Vec<&str> = summary["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["numbers"]["p_test"].as_str())
        .collect();
    assert!(tests.contains(&"TOST, late window"), "{tests:?}");
    assert!(
        tests.iter().any(|t| t.starts_with("beyond margin, ")),
        "{tests:?}"
    );
}

#[test]
fn nan_is_named_with_its_step_and_arm_not_a_distance() {
    let (dir, texts) = representative_report();
    let nan = &texts[4];
    assert!(
        nan.starts_with("B vs A: diverged at step 30: NaN in B (A finite)"),
        "{nan}"
    );
    assert!(nan.contains("NaN at step 30 in B"), "{nan}");
    assert!(read(&dir, "index.md").contains("- B vs A: diverged at step 30: NaN in B (A finite)"));
}

#[test]
fn details_are_a_short_list_not_one_long_line() {
    let (dir, texts) = representative_report();
    for t in &texts {
        assert!(t.lines().count() >= 3, "{t}");
        assert!(!t.contains(" · "), "{t}");
        for line in t.lines() {
            assert!(line.chars().count() <= 160, "long line: {line}");
        }
    }
    let md = read(&dir, "index.md");
    assert!(
        md.contains("\n- tolerance: Megatron's rtol 0.05 rule"),
        "{md}"
    );
    let html = read(&dir, "index.html");
    assert!(html.contains("<ul class=\"details\"><li>"), "{html}");
}

#[test]
fn gate_badges_say_why() {
    let (dir, _) = representative_report();
    let md = read(&dir, "index.md");
    assert!(md.contains("**gate: pass (expected divergence)"), "{md}");
    assert!(md.contains("**gate: FAIL (beyond margin)"), "{md}");
    assert!(md.contains("**gate: pass (within margin"), "{md}");
}
