//! The README's walkthrough, run as a new user runs it: every `sh` block between
//! `<!-- walkthrough:begin -->` and `<!-- walkthrough:end -->`, verbatim and in order, each with
//! `bash -e -o pipefail` in one empty directory, with the built `lossdiff` on `PATH` and the
//! repository's `python/` on `PYTHONPATH` (what the README's setup block does).
//!
//! What the README promises is what is checked:
//! - a block exits 0, unless its last line ends in `# exits N…` (then N);
//! - every `--png FILE` it names is written, as a PNG;
//! - every `lossdiff report DIR` writes `DIR/report/index.md` and `index.html`;
//! - a `text` block right after an `sh` block shows that block's output: the verdict word on its
//!   first line must be in what the block printed. Only the word is checked: the lines around it
//!   may be reworded without breaking the walkthrough.
//!
//! So an edit that breaks the walkthrough (a renamed flag, a logger API change, a verdict that no
//! longer holds, a figure no longer written) fails `cargo test`, not a new user.

use std::path::{Path, PathBuf};
use std::process::Command;

const BEGIN: &str = "<!-- walkthrough:begin -->";
const END: &str = "<!-- walkthrough:end -->";
const VERDICTS: [&str; 4] = ["identical", "equivalent", "diverged", "inconclusive"];

/// One fenced code block of the walkthrough.
#[derive(Debug, PartialEq)]
struct Block {
    /// The info string after the opening fence (`sh`, `text`, …).
    lang: String,
    /// The block's lines, verbatim, joined with newlines.
    body: String,
    /// Line of the opening fence in the README (1-based), for messages.
    line: usize,
}

/// Returns the fenced blocks between the walkthrough markers, or why there are none.
fn walkthrough_blocks(readme: &str) -> Result<Vec<Block>, String> {
    let lines: Vec<&str> = readme.lines().collect();
    let find = |marker: &str| {
        let hits: Vec<usize> = (0..lines.len())
            .filter(|&i| lines[i].trim() == marker)
            .collect();
        match hits.as_slice() {
            [i] => Ok(*i),
            [] => Err(format!("README.md has no `{marker}` line")),
            _ => Err(format!("README.md has {} `{marker}` lines", hits.len())),
        }
    };
    let (begin, end) = (find(BEGIN)?, find(END)?);
    if end < begin {
        return Err(format!("`{END}` comes before `{BEGIN}` in README.md"));
    }
    let mut blocks = Vec::new();
    let mut i = begin + 1;
    while i < end {
        if let Some(lang) = lines[i].strip_prefix("```") {
            let close = (i + 1..end)
                .find(|&j| lines[j].trim_end() == "```")
                .ok_or_else(|| format!("README.md line {}: unclosed code block", i + 1))?;
            blocks.push(Block {
                lang: lang.trim().to_string(),
                body: lines[i + 1..close].join("\n"),
                line: i + 1,
            });
            i = close;
        }
        i += 1;
    }
    if !blocks.iter().any(|b| b.lang == "sh") {
        return Err("the walkthrough has no ```sh block".into());
    }
    Ok(blocks)
}

/// Returns the exit code a block promises: `N` from a last line ending in `# exits N…`, else 0.
fn expected_exit(body: &str) -> i32 {
    let last = body.lines().rev().find(|l| !l.trim().is_empty());
    last.and_then(|l| l.split_once("# exits "))
        .and_then(|(_, rest)| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .unwrap_or(0)
}

/// Returns the word after each occurrence of `flag` in a shell block (`--png x.png` → `x.png`).
fn args_after<'a>(body: &'a str, words: &[&str]) -> Vec<&'a str> {
    let tokens: Vec<&str> = body.split_whitespace().collect();
    tokens
        .windows(words.len() + 1)
        .filter(|w| w[..words.len()] == *words)
        .map(|w| w[words.len()])
        .collect()
}

/// Returns the verdict word shown on the first line of an expected-output block, if any.
fn shown_verdict(text: &str) -> Option<&'static str> {
    let first = text.lines().next()?;
    VERDICTS.into_iter().find(|v| first.contains(v))
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs one block as the README's reader would, from `dir`; returns (exit code, stdout, stderr).
fn run_block(block: &Block, dir: &Path) -> (i32, String, String) {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_lossdiff"))
        .parent()
        .expect("the binary lives in a directory");
    let path = std::env::join_paths(std::iter::once(bin_dir.to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .expect("PATH entries hold no separator");
    let out = Command::new("bash")
        .args(["-e", "-o", "pipefail", "-c", &block.body])
        .current_dir(dir)
        .env("PATH", path)
        .env("PYTHONPATH", repo().join("python"))
        .output()
        .expect("bash runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_readme_walkthrough_runs_verbatim_on_an_empty_directory() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md is readable");
    let blocks = walkthrough_blocks(&readme).unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().expect("a temp dir");
    let (mut figures, mut reports) = (0, 0);
    for (k, block) in blocks.iter().enumerate() {
        if block.lang != "sh" {
            continue;
        }
        let (code, stdout, stderr) = run_block(block, dir.path());
        let context = format!(
            "README.md line {}:\n{}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
            block.line, block.body
        );
        let want = expected_exit(&block.body);
        assert_eq!(
            code, want,
            "exit code {code}, the README promises {want}; {context}"
        );
        for png in args_after(&block.body, &["--png"]) {
            let bytes = std::fs::read(dir.path().join(png))
                .unwrap_or_else(|e| panic!("{png} was not written ({e}); {context}"));
            assert!(
                bytes.starts_with(b"\x89PNG"),
                "{png} is not a PNG; {context}"
            );
            figures += 1;
        }
        for report in args_after(&block.body, &["lossdiff", "report"]) {
            for file in ["index.md", "index.html"] {
                let p = dir.path().join(report).join("report").join(file);
                assert!(p.is_file(), "{} was not written; {context}", p.display());
            }
            reports += 1;
        }
        let shown = blocks.get(k + 1).filter(|b| b.lang == "text");
        if let Some(verdict) = shown.and_then(|b| shown_verdict(&b.body)) {
            assert!(
                stdout.contains(verdict),
                "the README shows `{verdict}` for this block, but it printed something else; {context}"
            );
        }
    }
    assert!(figures > 0, "the walkthrough writes no figure (--png)");
    assert!(
        reports > 0,
        "the walkthrough writes no report (`lossdiff report DIR`)"
    );
}

#[test]
fn blocks_are_read_between_the_markers_only() {
    let readme =
        "```sh\nnot me\n```\n<!-- walkthrough:begin -->\ntext\n```sh\necho 1\necho 2\n```\n\
                  ```text\nb vs a: equivalent\n```\n<!-- walkthrough:end -->\n```sh\nnor me\n```\n";
    let blocks = walkthrough_blocks(readme).unwrap();
    assert_eq!(
        blocks,
        vec![
            Block {
                lang: "sh".into(),
                body: "echo 1\necho 2".into(),
                line: 6
            },
            Block {
                lang: "text".into(),
                body: "b vs a: equivalent".into(),
                line: 10
            },
        ]
    );
    assert_eq!(shown_verdict(&blocks[1].body), Some("equivalent"));
}

#[test]
fn a_readme_without_markers_or_shell_blocks_is_an_error_not_an_empty_pass() {
    assert!(walkthrough_blocks("# lossdiff\n```sh\nls\n```\n")
        .unwrap_err()
        .contains("no `<!-- walkthrough:begin -->`"));
    let no_sh = "<!-- walkthrough:begin -->\n```text\nx\n```\n<!-- walkthrough:end -->\n";
    assert!(walkthrough_blocks(no_sh).unwrap_err().contains("no ```sh"));
    let unclosed = "<!-- walkthrough:begin -->\n```sh\nls\n<!-- walkthrough:end -->\n";
    assert!(walkthrough_blocks(unclosed)
        .unwrap_err()
        .contains("unclosed"));
}

#[test]
fn a_block_promises_exit_0_unless_its_last_line_says_otherwise() {
    assert_eq!(expected_exit("lossdiff compare a b"), 0);
    assert_eq!(
        expected_exit("x\nlossdiff compare a c --png c.png  # exits 1: diverged\n"),
        1
    );
    assert_eq!(expected_exit("# exits 1\nlossdiff compare a b"), 0);
    assert_eq!(
        args_after(
            "lossdiff compare a b --png f.png\nlossdiff report runs  # x",
            &["--png"]
        ),
        vec!["f.png"]
    );
    assert_eq!(
        args_after("lossdiff report runs  # exits 1", &["lossdiff", "report"]),
        vec!["runs"]
    );
}
