//! Logs of several ranks in one file. torchrun's `--tee`/`--redirects` and Slurm wrappers prefix
//! every line with its rank (`[rank0]:`, `[default0]:`), and every rank prints its own metric
//! lines, so the interleaved steps repeat ("step 1 after step 1"). The lines are split by rank
//! and one rank is read: the one asked for (`--rank N`), else the lowest rank that printed
//! metric lines — rank 0 for torchtitan; for Megatron-LM, which prints iteration lines on the
//! last pipeline rank, that one. The choice is recorded in `config.import.rank` and said in the
//! output. Lines without a prefix (the launcher's own) belong to every rank.

use crate::error::{Error, Result};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;

use super::Collector;

/// One line: its 1-based number in the file and its text without the rank prefix.
pub(super) type Line<'a> = (usize, &'a str);

/// Splits a `[rankN]:` or `[defaultN]:` prefix off a line.
fn prefix(line: &str) -> Option<(u32, &str)> {
    let rest = line.strip_prefix('[')?;
    let rest = (rest.strip_prefix("rank")).or_else(|| rest.strip_prefix("default"))?;
    let end = rest.find(|c: char| !c.is_ascii_digit())?;
    let rank = rest.get(..end)?.parse().ok()?;
    let text = rest.get(end..)?.strip_prefix("]:")?;
    Some((rank, text))
}

/// A log's lines split by rank.
pub(super) struct Ranked<'a> {
    plain: Vec<Line<'a>>,
    by_rank: BTreeMap<u32, Vec<Line<'a>>>,
}

impl<'a> Ranked<'a> {
    /// Splits `text` into lines per rank prefix.
    pub(super) fn split(text: &'a str) -> Self {
        let mut plain = Vec::new();
        let mut by_rank: BTreeMap<u32, Vec<Line<'a>>> = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            match prefix(line) {
                Some((rank, rest)) => by_rank.entry(rank).or_default().push((i + 1, rest)),
                None => plain.push((i + 1, line)),
            }
        }
        Ranked { plain, by_rank }
    }

    /// Returns the lines of `rank` (all lines when the log has no prefixes), with the unprefixed
    /// lines, in file order.
    pub(super) fn lines(&self, rank: Option<u32>) -> Vec<Line<'a>> {
        let mut out = self.plain.clone();
        if let Some(r) = rank.and_then(|r| self.by_rank.get(&r)) {
            out.extend_from_slice(r);
            out.sort_unstable_by_key(|l| l.0);
        }
        out
    }

    /// Ranks present, in order.
    pub(super) fn ranks(&self) -> Vec<u32> {
        self.by_rank.keys().copied().collect()
    }

    /// Chooses the rank to read and notes the choice in the collector.
    ///
    /// # Errors
    /// [`Error::InvalidValue`] when `wanted` is not a rank of the file, listing the ranks.
    pub(super) fn choose(
        &self,
        wanted: Option<u32>,
        is_metric: impl Fn(&str) -> bool,
        path: &Path,
        c: &mut Collector<'_>,
    ) -> Result<Option<u32>> {
        let ranks = self.ranks();
        if ranks.is_empty() {
            return Ok(None);
        }
        let list = ranks
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let chosen = match wanted {
            Some(r) if self.by_rank.contains_key(&r) => r,
            Some(r) => {
                return Err(Error::InvalidValue {
                    origin: format!("{} (--rank)", path.display()),
                    key: "rank".into(),
                    expected: format!("one of the ranks in the file: {list}"),
                    got: r.to_string(),
                })
            }
            None => (self.by_rank.iter())
                .find(|(_, lines)| lines.iter().any(|(_, l)| is_metric(l)))
                .map_or(ranks[0], |(r, _)| *r),
        };
        c.note("rank", json!(chosen));
        if ranks.len() > 1 {
            c.note("ranks", json!(ranks));
            if wanted.is_none() {
                c.note(
                    "rank_choice",
                    json!(format!(
                        "ranks {list} present; read rank {chosen}, the lowest with metric lines (choose with --rank)"
                    )),
                );
            }
        }
        Ok(Some(chosen))
    }

    /// Returns lines to search for a printed config: the chosen rank's, then every other rank's
    /// in order (Megatron prints its arguments on rank 0 and its iterations on the last rank).
    pub(super) fn config_candidates(&self, chosen: Option<u32>) -> Vec<Vec<Line<'a>>> {
        let mut out = vec![self.lines(chosen)];
        for r in self.ranks().into_iter().filter(|r| Some(*r) != chosen) {
            out.push(self.lines(Some(r)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_as_torchrun_writes_them() {
        assert_eq!(prefix("[rank0]:step: 1"), Some((0, "step: 1")));
        assert_eq!(prefix("[default12]: x"), Some((12, " x")));
        assert_eq!(prefix("[rank]: x"), None);
        assert_eq!(prefix("[2024-01-01] iteration"), None);
        let r = Ranked::split("launcher\n[rank1]:b1\n[rank0]:a1\n[rank1]:b2\n");
        assert_eq!(r.ranks(), [0, 1]);
        assert_eq!(r.lines(Some(1)), [(1, "launcher"), (2, "b1"), (4, "b2")]);
        assert_eq!(r.lines(None), [(1, "launcher")]);
    }
}
