//! The report directory attached to a ticket or published by CI: `index.md` (renders on code
//! hosts and in tickets), a standalone `index.html` (images embedded, no external assets),
//! `summary.json` (machine-readable verdicts), `junit.xml` (CI test reports) and
//! `figures/*.png`. Every file is written atomically. The pages are rendered in `index.rs`,
//! the JUnit file in `junit.rs`, text escaping in `escape.rs`.

use super::index::{index_html, index_md};
use super::junit::junit_xml;
use super::KeyNumbers;
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Version of the `summary.json` layout; bumped when a field changes meaning or goes away.
pub const SUMMARY_SCHEMA_VERSION: u32 = 1;

/// Where a figure's PNG comes from: bytes rendered in memory, or a file already on disk.
#[derive(Debug, Clone, PartialEq)]
pub enum FigureSource {
    /// PNG bytes, e.g. from [`render_comparison`](super::render_comparison).
    Png(Vec<u8>),
    /// A PNG file; it is copied into the report's `figures/`.
    Path(PathBuf),
}

/// One comparison in a report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReportEntry {
    /// Comparison name; also names its figure file.
    pub name: String,
    /// Verdict label: "diverged", "equivalent", "identical", "inconclusive", …
    pub verdict: String,
    /// Whether the gate passes this comparison.
    pub passed: bool,
    /// One paragraph saying what happened, for a reader who never ran lossdiff.
    pub summary: String,
    /// Onset, effect size, p-value, margin.
    pub numbers: KeyNumbers,
    /// Config differences nobody declared, e.g. "model.attention_dropout: 0.0 → 0.1".
    pub undeclared_differences: Vec<String>,
    /// Environment differences (library versions, device, dtype), e.g. "candle: 0.11.1 → 0.11.2".
    pub environment_differences: Vec<String>,
    /// The comparison's figure; not part of `summary.json` (which records its path instead).
    #[serde(skip)]
    pub figure: Option<FigureSource>,
}

/// An extra figure (sweep grid, heat map) shown after the comparisons.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedFigure {
    /// Names the figure file.
    pub name: String,
    /// Heading shown above the figure.
    pub caption: String,
    /// The PNG.
    pub figure: FigureSource,
}

/// The overall gate decision the report explains.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GateDecision {
    /// Whether the gate passes.
    pub passed: bool,
    /// Why, in one line, e.g. "1 of 3 comparisons diverged".
    pub reason: String,
}

/// Everything [`write_report`] writes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReportInput {
    /// Report name, e.g. the suite or PR it belongs to.
    pub name: String,
    /// When the comparisons ran, as the caller wants it shown (not read from the clock, so the
    /// same input writes the same files).
    pub timestamp: String,
    /// The comparisons, in the caller's order (the summary table lists failures first).
    pub entries: Vec<ReportEntry>,
    /// Sweep grids and heat maps.
    pub sweep_figures: Vec<NamedFigure>,
    /// The overall decision.
    pub gate: GateDecision,
}

/// The paths [`write_report`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportPaths {
    /// The report directory.
    pub dir: PathBuf,
    /// `index.md`.
    pub index_md: PathBuf,
    /// `index.html`.
    pub index_html: PathBuf,
    /// `summary.json`.
    pub summary_json: PathBuf,
    /// `junit.xml`.
    pub junit_xml: PathBuf,
    /// Every `figures/*.png`, entries first, then sweep figures.
    pub figures: Vec<PathBuf>,
}

/// One entry of `summary.json`: the entry without its image, plus the figure's relative path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntrySummary {
    /// The entry as given (its figure bytes are not serialised).
    #[serde(flatten)]
    pub entry: ReportEntry,
    /// Path of its figure relative to the report directory, e.g. "figures/tiny.png".
    pub figure_path: Option<String>,
}

/// The contents of `summary.json`; deserialise it to read a report's verdicts back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportSummary {
    /// [`SUMMARY_SCHEMA_VERSION`] at write time.
    pub schema_version: u32,
    /// Report name.
    pub name: String,
    /// The timestamp given in the input.
    pub timestamp: String,
    /// The overall decision.
    pub gate: GateDecision,
    /// Number of comparisons.
    pub total: usize,
    /// Number of comparisons that fail the gate.
    pub failed: usize,
    /// The comparisons, in input order.
    pub entries: Vec<EntrySummary>,
    /// Relative paths of the sweep figures.
    pub sweep_figures: Vec<String>,
}

/// Writes a report directory: `index.md`, `index.html`, `summary.json`, `junit.xml` and
/// `figures/*.png`, each atomically (see `fsutil::write_atomic`).
///
/// Figure files are named after their entry, reduced to `[A-Za-z0-9._-]` and made unique.
/// The output depends only on `report`, so the same input writes the same bytes.
///
/// # Errors
/// [`Error::ReportWrite`] naming `dir` and the file when the directory cannot be created or a
/// file cannot be written, or when a [`FigureSource::Path`] cannot be read.
pub fn write_report(dir: &Path, report: &ReportInput) -> Result<ReportPaths> {
    std::fs::create_dir_all(dir.join("figures")).map_err(|source| Error::ReportWrite {
        dir: dir.to_path_buf(),
        file: dir.join("figures"),
        source,
    })?;
    let figs = Figures::collect(dir, report)?;
    let summary = summary(report, &figs);
    let json = serde_json::to_string_pretty(&summary).map_err(|e| Error::json(dir, &e))?;
    let paths = ReportPaths {
        dir: dir.to_path_buf(),
        index_md: dir.join("index.md"),
        index_html: dir.join("index.html"),
        summary_json: dir.join("summary.json"),
        junit_xml: dir.join("junit.xml"),
        figures: figs.files.iter().map(|(rel, _)| dir.join(rel)).collect(),
    };
    for (rel, bytes) in &figs.files {
        put(dir, &dir.join(rel), bytes)?;
    }
    put(dir, &paths.summary_json, json.as_bytes())?;
    put(dir, &paths.junit_xml, junit_xml(report).as_bytes())?;
    put(dir, &paths.index_md, index_md(report, &figs).as_bytes())?;
    put(dir, &paths.index_html, index_html(report, &figs).as_bytes())?;
    Ok(paths)
}

/// Checks that a report can be written into `dir` (creating it), so a run that would train for
/// minutes fails at once on a report path under a regular file or in a read-only place.
///
/// # Errors
/// [`Error::ReportWrite`] naming the directory and the OS error.
pub fn check_report_dir(dir: &Path) -> Result<()> {
    crate::fsutil::probe_dir(dir).map_err(|source| Error::ReportWrite {
        dir: dir.to_path_buf(),
        file: dir.to_path_buf(),
        source,
    })
}

/// Writes one file atomically, naming the report directory in any error.
fn put(dir: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, bytes).map_err(|e| match e {
        Error::Io { path, source } => Error::ReportWrite {
            dir: dir.to_path_buf(),
            file: path,
            source,
        },
        other => other,
    })
}

/// The figures' relative paths and bytes, resolved once for all writers.
pub(super) struct Figures {
    /// Relative path of each entry's figure, by entry index.
    pub entry: Vec<Option<String>>,
    /// Relative path of each sweep figure.
    pub sweep: Vec<String>,
    /// `(relative path, PNG bytes)` of every figure file.
    pub files: Vec<(String, Vec<u8>)>,
}

impl Figures {
    /// Reads path sources and assigns unique file names.
    fn collect(dir: &Path, report: &ReportInput) -> Result<Self> {
        let mut taken = BTreeSet::new();
        let mut files = Vec::new();
        let mut add = |name: &str, src: &FigureSource| -> Result<String> {
            let bytes = match src {
                FigureSource::Png(b) => b.clone(),
                FigureSource::Path(p) => std::fs::read(p).map_err(|source| Error::ReportWrite {
                    dir: dir.to_path_buf(),
                    file: p.clone(),
                    source,
                })?,
            };
            let rel = format!("figures/{}.png", unique_slug(name, &mut taken));
            files.push((rel.clone(), bytes));
            Ok(rel)
        };
        let mut entry = Vec::new();
        for e in &report.entries {
            entry.push(e.figure.as_ref().map(|f| add(&e.name, f)).transpose()?);
        }
        let mut sweep = Vec::new();
        for f in &report.sweep_figures {
            sweep.push(add(&f.name, &f.figure)?);
        }
        Ok(Figures {
            entry,
            sweep,
            files,
        })
    }
}

/// Reduces `name` to a file-name-safe slug not yet in `taken`, and records it.
fn unique_slug(name: &str, taken: &mut BTreeSet<String>) -> String {
    let mut base: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    // Runs of replaced characters collapse to one underscore: "a <b>" → "a_b".
    while base.contains("__") {
        base = base.replace("__", "_");
    }
    base = base.trim_matches(['.', '_']).to_string();
    if base.is_empty() {
        base = "figure".into();
    }
    let mut slug = base.clone();
    let mut k = 2;
    while taken.contains(&slug) {
        slug = format!("{base}-{k}");
        k += 1;
    }
    taken.insert(slug.clone());
    slug
}

/// Builds the `summary.json` contents.
fn summary(report: &ReportInput, figs: &Figures) -> ReportSummary {
    ReportSummary {
        schema_version: SUMMARY_SCHEMA_VERSION,
        name: report.name.clone(),
        timestamp: report.timestamp.clone(),
        gate: report.gate.clone(),
        total: report.entries.len(),
        failed: report.entries.iter().filter(|e| !e.passed).count(),
        entries: report
            .entries
            .iter()
            .zip(&figs.entry)
            .map(|(e, f)| EntrySummary {
                entry: ReportEntry {
                    figure: None,
                    ..e.clone()
                },
                figure_path: f.clone(),
            })
            .collect(),
        sweep_figures: figs.sweep.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::testdata::report_input;

    /// A stand-in figure: the writers copy bytes, they do not decode them.
    const FIG: &[u8] = b"\x89PNG\r\n\x1a\nnot-really-a-png";

    fn written() -> (tempfile::TempDir, ReportPaths) {
        let tmp = tempfile::tempdir().unwrap();
        let paths = write_report(&tmp.path().join("report"), &report_input(FIG.to_vec())).unwrap();
        (tmp, paths)
    }

    #[test]
    fn summary_json_parses_back_without_image_bytes() {
        let (_tmp, paths) = written();
        let text = std::fs::read_to_string(&paths.summary_json).unwrap();
        let back: ReportSummary = serde_json::from_str(&text).unwrap();
        let input = report_input(FIG.to_vec());
        assert_eq!(back.schema_version, SUMMARY_SCHEMA_VERSION);
        assert_eq!((back.total, back.failed), (3, 1));
        assert_eq!(back.gate, input.gate);
        assert_eq!(back.timestamp, "2026-11-22T05:00:00Z");
        let expected: Vec<ReportEntry> = input
            .entries
            .into_iter()
            .map(|e| ReportEntry { figure: None, ..e })
            .collect();
        let got: Vec<ReportEntry> = back.entries.iter().map(|e| e.entry.clone()).collect();
        assert_eq!(got, expected);
        assert_eq!(
            back.entries[0].figure_path.as_deref(),
            Some("figures/flash-vs-naive.png")
        );
        assert_eq!(back.entries[2].figure_path, None);
        assert_eq!(back.sweep_figures, vec!["figures/lr_sweep.png".to_string()]);
        assert!(
            !text.contains("not-really"),
            "image bytes leaked into summary.json"
        );
    }

    #[test]
    fn index_md_has_the_table_failures_first_and_relative_image_links() {
        let (_tmp, paths) = written();
        let md = std::fs::read_to_string(&paths.index_md).unwrap();
        assert!(md.contains("| Verdict | Comparison | Onset step | Effect | p (test) | Margin |"));
        let fail_row = md.find("| FAIL diverged |").expect("failing row");
        let pass_row = md.find("| PASS equivalent |").expect("passing row");
        assert!(fail_row < pass_row, "failures are listed first");
        assert!(md.contains("| WARN inconclusive | bf16 | – | – | – | – |"));
        assert!(md.contains("| 0.610 (TOST, late window) |"), "{md}");
        assert!(md.contains("](figures/flash-vs-naive.png)"));
        assert!(md.contains("](figures/dropout_slip_friends.png)"), "{md}");
        assert!(md.contains("- model.attention\\_dropout: 0.0 → 0.1"));
        assert!(md.contains("**Gate: FAIL: 1 of 3 comparisons diverged**"));
        assert!(md.contains("![Sweep over lr\\_decay\\_iters](figures/lr_sweep.png)"));
        for f in &paths.figures {
            assert_eq!(std::fs::read(f).unwrap(), FIG);
        }
        assert_eq!(paths.figures.len(), 3);
    }

    #[test]
    fn index_html_is_standalone_with_data_uris() {
        let (_tmp, paths) = written();
        let html = std::fs::read_to_string(&paths.index_html).unwrap();
        let uri = format!(
            "data:image/png;base64,{}",
            crate::report::escape::base64(FIG)
        );
        assert_eq!(html.matches(&uri).count(), 3);
        assert!(
            !html.contains("src=\"figures/") && !html.contains("http"),
            "external asset"
        );
        assert!(html.contains("dropout &lt;slip&gt; &amp; &quot;friends&quot;"));
        assert!(
            html.contains("class=\"alarm\""),
            "undeclared differences are boxed"
        );
        assert!(html.contains("<td class=\"warn\"><span class=\"mark warn\"><svg"));
        assert!(html.contains("WARN</span> inconclusive</td>"));
    }

    #[test]
    fn figure_paths_are_copied_and_names_made_unique() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("given.png");
        std::fs::write(&src, b"from disk").unwrap();
        let mut input = report_input(FIG.to_vec());
        input.entries[1].name = "flash-vs-naive".into();
        input.entries[1].figure = Some(FigureSource::Path(src));
        let paths = write_report(&tmp.path().join("r"), &input).unwrap();
        let rel: Vec<_> = paths
            .figures
            .iter()
            .map(|p| p.strip_prefix(&paths.dir).unwrap())
            .collect();
        assert_eq!(rel[1], Path::new("figures/flash-vs-naive-2.png"));
        assert_eq!(std::fs::read(&paths.figures[1]).unwrap(), b"from disk");
    }

    #[test]
    fn same_input_writes_identical_files() {
        let (_t1, a) = written();
        let (_t2, b) = written();
        for (x, y) in [(&a.index_md, &b.index_md), (&a.index_html, &b.index_html)]
            .into_iter()
            .chain([
                (&a.summary_json, &b.summary_json),
                (&a.junit_xml, &b.junit_xml),
            ])
        {
            assert_eq!(
                std::fs::read(x).unwrap(),
                std::fs::read(y).unwrap(),
                "{}",
                x.display()
            );
        }
    }

    #[test]
    fn unwritable_directory_is_a_typed_error_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("a-file");
        std::fs::write(&file, b"x").unwrap();
        // A directory below a regular file cannot be created, even by root.
        let dir = file.join("report");
        let err = write_report(&dir, &report_input(FIG.to_vec())).unwrap_err();
        match &err {
            Error::ReportWrite { dir: d, .. } => assert_eq!(d, &dir),
            other => panic!("expected ReportWrite, got {other:?}"),
        }
        assert!(
            err.to_string().contains(&dir.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn missing_figure_file_is_a_typed_error_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let mut input = report_input(FIG.to_vec());
        let missing = tmp.path().join("nope.png");
        input.entries[0].figure = Some(FigureSource::Path(missing.clone()));
        let err = write_report(&tmp.path().join("r"), &input).unwrap_err();
        assert!(
            matches!(&err, Error::ReportWrite { file, .. } if file == &missing),
            "{err:?}"
        );
    }

    #[test]
    fn slugs_are_file_safe_and_unique() {
        let mut taken = BTreeSet::new();
        assert_eq!(unique_slug("a/b c", &mut taken), "a_b_c");
        assert_eq!(unique_slug("a/b c", &mut taken), "a_b_c-2");
        assert_eq!(unique_slug("../", &mut taken), "figure");
        assert_eq!(unique_slug("x <y> & z", &mut taken), "x_y_z");
    }
}
