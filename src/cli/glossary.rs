//! `lossdiff glossary [TERM]`: the plain-words explanation of every term the outputs use, built
//! into the binary from docs/glossary.md so that `--help` can point to it wherever lossdiff is
//! installed.

use std::process::ExitCode;

/// The glossary, as written in the repository.
const GLOSSARY: &str = include_str!("../../docs/glossary.md");

/// Prints the whole glossary, or the entries about `term`.
pub(super) fn run(term: Option<&str>) -> anyhow::Result<ExitCode> {
    match term {
        None => print!("{GLOSSARY}"),
        Some(t) => {
            let found = entries_about(GLOSSARY, t);
            anyhow::ensure!(
                !found.is_empty(),
                "no glossary entry mentions `{t}`; `lossdiff glossary` prints them all"
            );
            println!("{}", found.join("\n\n"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Returns the entries (paragraphs) whose bold headword contains `term` (case-insensitive), or,
/// when no headword does, every entry that mentions it.
fn entries_about<'a>(text: &'a str, term: &str) -> Vec<&'a str> {
    let term = term.to_lowercase();
    let paragraphs: Vec<&str> = text
        .split("\n\n")
        .map(str::trim)
        .filter(|p| !p.is_empty() && !p.starts_with('#'))
        .collect();
    let headword = |p: &str| {
        p.strip_prefix("**")
            .and_then(|rest| rest.split_once("**"))
            .map(|(h, _)| h.to_lowercase())
    };
    let by_head: Vec<&str> = (paragraphs.iter().copied())
        .filter(|p| headword(p).is_some_and(|h| h.contains(&term)))
        .collect();
    if !by_head.is_empty() {
        return by_head;
    }
    (paragraphs.into_iter())
        .filter(|p| p.to_lowercase().contains(&term))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_term_finds_its_entry_by_headword_first() {
        let tost = entries_about(GLOSSARY, "tost");
        assert_eq!(tost.len(), 1, "{tost:?}");
        assert!(tost[0].starts_with("**TOST**"));
        // Not a headword anywhere: the entries that mention it.
        assert!(entries_about(GLOSSARY, "Newey")
            .iter()
            .any(|p| p.starts_with("**HAC")));
        assert!(entries_about(GLOSSARY, "no such term at all").is_empty());
    }

    #[test]
    fn every_term_the_terminal_prints_has_an_entry() {
        // The words of `lossdiff run`, `report DIR` and `compare` output (see gate::terminal).
        let terms = [
            "identical",
            "equivalent",
            "inconclusive",
            "diverged",
            "effect",
            "margin",
            "late window",
            "TOST",
            "p (beyond margin)",
            "p (difference t-test)",
            "p (beyond rounding)",
            "drift test",
            "onset",
            "within rounding",
            "perturbation",
            "yardstick",
            "reference",
            "seed tag",
            "verdict table",
            "exit code",
            "bless",
            "golden",
            "stale",
            "alignment",
            "tolerance",
            "exact",
            "CUSUM",
            "alarm",
            "noise band",
            "declared",
        ];
        for t in terms {
            let headed = entries_about(GLOSSARY, t).iter().any(|p| {
                p.to_lowercase().starts_with("**")
                    && p.split("**")
                        .nth(1)
                        .is_some_and(|h| h.to_lowercase().contains(&t.to_lowercase()))
            });
            assert!(headed, "no glossary entry for `{t}`");
        }
    }
}
