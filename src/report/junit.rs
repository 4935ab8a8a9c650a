//! `junit.xml` for CI systems: one testsuite per report, one testcase per comparison, and a
//! `<failure>` (with the summary as its message) for each comparison that fails the gate.

use super::escape::xml;
use super::figure::numbers_line;
use super::marks::gate_badge;
use super::ReportInput;
use std::fmt::Write as _;

/// Renders `junit.xml`: one testsuite, one testcase per entry, a failure for each failing one.
pub(super) fn junit_xml(report: &ReportInput) -> String {
    let total = report.entries.len();
    let failed = report.entries.iter().filter(|e| !e.passed).count();
    let name = xml(&report.name);
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        s,
        "<testsuites name=\"lossdiff\" tests=\"{total}\" failures=\"{failed}\" errors=\"0\">"
    );
    let _ = writeln!(
        s,
        "  <testsuite name=\"{name}\" tests=\"{total}\" failures=\"{failed}\" errors=\"0\" skipped=\"0\" timestamp=\"{}\">",
        xml(&report.timestamp)
    );
    for e in &report.entries {
        let _ = write!(
            s,
            "    <testcase classname=\"lossdiff.{name}\" name=\"{}\"",
            xml(&e.name)
        );
        let mut details = format!(
            "verdict: {}\n{}\n{}",
            e.verdict,
            gate_badge(&e.verdict, e.passed, &e.numbers),
            numbers_line(&e.numbers)
        );
        for d in &e.undeclared_differences {
            let _ = write!(details, "\nundeclared config difference: {d}");
        }
        for d in &e.environment_differences {
            let _ = write!(details, "\nenvironment difference: {d}");
        }
        if e.passed {
            let _ = writeln!(
                s,
                ">\n      <system-out>{}</system-out>\n    </testcase>",
                xml(&details)
            );
        } else {
            let _ = writeln!(
                s,
                ">\n      <failure message=\"{}\" type=\"{}\">{}</failure>\n    </testcase>",
                xml(e.summary.lines().next().unwrap_or_default()),
                xml(&e.verdict),
                xml(&format!("{details}\n{}", e.summary))
            );
        }
    }
    s.push_str("  </testsuite>\n</testsuites>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::testdata::report_input;

    #[test]
    fn junit_counts_tests_and_failures() {
        let x = junit_xml(&report_input(Vec::new()));
        assert!(x.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites"));
        assert!(
            x.contains("<testsuites name=\"lossdiff\" tests=\"3\" failures=\"1\" errors=\"0\">")
        );
        assert!(x.contains("<testsuite name=\"nightly tiny-gpt\" tests=\"3\" failures=\"1\""));
        assert_eq!(x.matches("<testcase ").count(), 3);
        assert_eq!(x.matches("<failure ").count(), 1);
        assert_eq!(x.matches("</testsuite>").count(), 1);
    }

    #[test]
    fn junit_escapes_names_messages_and_details() {
        let x = junit_xml(&report_input(Vec::new()));
        assert!(
            x.contains("name=\"dropout &lt;slip&gt; &amp; &quot;friends&quot;\""),
            "{x}"
        );
        assert!(x.contains(
            "message=\"B drifts above A from step 30 on; |B − A| leaves the noise band.\""
        ));
        assert!(x.contains("undeclared config difference: model.attention_dropout: 0.0 → 0.1"));
        // Outside the XML declaration, every quote and angle bracket belongs to markup.
        assert!(!x.contains("<slip>") && !x.contains("\"friends\""));
    }

    #[test]
    fn junit_escapes_apostrophes_and_ampersands_in_the_suite_name() {
        let mut input = report_input(Vec::new());
        input.name = "it's <a&b>".into();
        let x = junit_xml(&input);
        assert!(x.contains("name=\"it&apos;s &lt;a&amp;b&gt;\""), "{x}");
    }
}
