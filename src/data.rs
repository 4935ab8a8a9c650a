//! Training data: which tokens each step sees, as a pure function of `(data_seed, step, micro, row)`.
//!
//! The built-in corpus is a seeded second-order source whose entropy rate is known exactly, so the
//! best achievable loss is printed next to every curve and "the model is learning" is a number:
//!
//! ```text
//! x[t+1] = (perm[x[t]] + shift(x[t-1]) + o_J) mod V,   J ~ q (K choices),   shift(x) = (x mod 2)·V/2
//! ```
//!
//! Given `(x[t-1], x[t])` the next token is one of K distinct values with probabilities `q`, so
//! `H(x[t+1] | past) = H(q)` exactly. Predicting it needs the current token (a bigram) *and* one
//! bit of the previous token (attention to position t−1). Position 0 cannot see `x[-1]` and faces
//! the mixture of the two shifts; its entropy is computed exactly too (see [`Corpus::loss_floor`]).
//!
//! A byte file is the other source: windows start at seeded offsets; its floor is unknown.
//! This module owns token generation; batching into tensors is the trainer's.

use crate::config::{DataConfig, DataSource};
use crate::error::{Error, Result};
use crate::rng::{hash_words, mix64, unit_open_f64};

/// A token source.
#[derive(Debug, Clone)]
pub enum Corpus {
    /// The synthetic source above.
    Synthetic(Synthetic),
    /// Bytes of a file.
    File(Vec<u8>),
}

/// The synthetic source's law, drawn once from `corpus_seed`.
#[derive(Debug, Clone)]
pub struct Synthetic {
    vocab: usize,
    perm: Vec<u32>,
    offsets: Vec<u32>,
    /// Cumulative probabilities of the K choices (last is 1).
    cdf: Vec<f64>,
    probs: Vec<f64>,
}

impl Synthetic {
    /// Builds the law for `vocab` tokens and `branching` choices per context.
    pub fn new(vocab: usize, branching: usize, corpus_seed: u64) -> Self {
        let key = hash_words(&[corpus_seed, 0x5EED]);
        // A seeded Fisher–Yates permutation of the vocabulary.
        let mut perm: Vec<u32> = (0..vocab as u32).collect();
        for i in (1..vocab).rev() {
            let j = (mix64(key ^ i as u64) % (i as u64 + 1)) as usize;
            perm.swap(i, j);
        }
        // K distinct offsets: the first K of another permutation.
        let mut pool: Vec<u32> = (0..vocab as u32).collect();
        for i in (1..vocab).rev() {
            let j = (mix64(!key ^ i as u64) % (i as u64 + 1)) as usize;
            pool.swap(i, j);
        }
        let offsets = pool[..branching].to_vec();
        // Zipf-like probabilities q_j ∝ 1/(j+1): skewed, so the floor sits well above 0 and below ln K.
        let weights: Vec<f64> = (0..branching).map(|j| 1.0 / (j as f64 + 1.0)).collect();
        let total: f64 = weights.iter().sum();
        let probs: Vec<f64> = weights.iter().map(|w| w / total).collect();
        let mut acc = 0.0;
        let mut cdf: Vec<f64> = probs
            .iter()
            .map(|p| {
                acc += p;
                acc
            })
            .collect();
        if let Some(last) = cdf.last_mut() {
            *last = 1.0;
        }
        Synthetic {
            vocab,
            perm,
            offsets,
            cdf,
            probs,
        }
    }

    fn next(&self, prev: u32, cur: u32, u: f64) -> u32 {
        let j = self
            .cdf
            .iter()
            .position(|&c| u < c)
            .unwrap_or(self.cdf.len() - 1);
        let shift = (prev % 2) * (self.vocab as u32 / 2);
        ((self.perm[cur as usize] + shift + self.offsets[j]) as usize % self.vocab) as u32
    }

    /// Entropy (nats) of the next token given the two previous ones: `H(q)`.
    pub fn entropy_rate(&self) -> f64 {
        entropy(&self.probs)
    }

    /// Entropy (nats) of the token after the first, which sees only one token of context.
    pub fn first_position_entropy(&self) -> f64 {
        let v = self.vocab;
        let mut p = vec![0.0; v];
        for (o, q) in self.offsets.iter().zip(&self.probs) {
            for shift in [0, v / 2] {
                p[(*o as usize + shift) % v] += 0.5 * q;
            }
        }
        entropy(&p)
    }
}

fn entropy(p: &[f64]) -> f64 {
    -p.iter()
        .filter(|&&x| x > 0.0)
        .map(|&x| x * x.ln())
        .sum::<f64>()
}

impl Corpus {
    /// Builds the corpus a config asks for.
    ///
    /// # Errors
    /// [`Error::Io`] when the byte file cannot be read; [`Error::NotARegularFile`] for a FIFO or a
    /// device; [`Error::InputTooLarge`] over the input limit (`LOSSDIFF_MAX_INPUT_BYTES`);
    /// [`Error::InvalidValue`] when it is shorter than one window.
    pub fn from_config(data: &DataConfig, vocab: usize, seq_len: usize) -> Result<Corpus> {
        match data.source {
            DataSource::Synthetic => Ok(Corpus::Synthetic(Synthetic::new(
                vocab,
                data.branching,
                data.corpus_seed,
            ))),
            DataSource::File => {
                let path = data.path.as_deref().unwrap_or(std::path::Path::new(""));
                // Under the input limit like every other file lossdiff reads; a FIFO or a device
                // (`/dev/zero`) is refused before it is opened.
                let limit = crate::limits::max_input_bytes()?;
                let bytes = crate::limits::read_limited(path, limit)?;
                if bytes.len() < seq_len + 2 {
                    return Err(Error::InvalidValue {
                        origin: path.display().to_string(),
                        key: "data.path".into(),
                        expected: format!(
                            "a file of at least {} bytes (seq_length + 2)",
                            seq_len + 2
                        ),
                        got: format!("{} bytes", bytes.len()),
                    });
                }
                Ok(Corpus::File(bytes))
            }
        }
    }

    /// Returns the best achievable mean loss (nats/token) over a window of `seq_len`, if known.
    pub fn loss_floor(&self, seq_len: usize) -> Option<f64> {
        match self {
            Corpus::Synthetic(s) => {
                let t = seq_len as f64;
                Some((s.first_position_entropy() + (t - 1.0) * s.entropy_rate()) / t)
            }
            Corpus::File(_) => None,
        }
    }

    /// Returns `(inputs, targets)`, each `rows × seq_len` token ids: rows `first_row..first_row +
    /// rows` of step `step`'s global batch. A pure function of its arguments: batch order never
    /// depends on what ran before, and splitting a step into micro batches does not change which
    /// rows it sees.
    pub fn batch(
        &self,
        data_seed: u64,
        step: u64,
        first_row: usize,
        rows: usize,
        seq_len: usize,
    ) -> (Vec<u32>, Vec<u32>) {
        let mut inputs = Vec::with_capacity(rows * seq_len);
        let mut targets = Vec::with_capacity(rows * seq_len);
        for r in first_row..first_row + rows {
            let key = hash_words(&[data_seed, step, r as u64]);
            let window = self.window(key, seq_len + 1);
            inputs.extend_from_slice(&window[..seq_len]);
            targets.extend_from_slice(&window[1..]);
        }
        (inputs, targets)
    }

    fn window(&self, key: u64, len: usize) -> Vec<u32> {
        match self {
            Corpus::Synthetic(s) => {
                let v = s.vocab as u64;
                // x[-1] is drawn and dropped so position 0 starts in the stationary regime.
                let mut prev = (mix64(key ^ 0xA) % v) as u32;
                let mut cur = (mix64(key ^ 0xB) % v) as u32;
                let mut out = Vec::with_capacity(len);
                out.push(cur);
                for t in 1..len as u64 {
                    let next = s.next(prev, cur, unit_open_f64(mix64(key ^ (t << 8))));
                    out.push(next);
                    (prev, cur) = (cur, next);
                }
                out
            }
            Corpus::File(bytes) => {
                let start = (mix64(key) % (bytes.len() - len + 1) as u64) as usize;
                bytes[start..start + len]
                    .iter()
                    .map(|&b| u32::from(b))
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_pure_functions_of_seed_and_step() {
        let c = Corpus::Synthetic(Synthetic::new(64, 8, 0));
        assert_eq!(c.batch(1, 5, 0, 4, 32), c.batch(1, 5, 0, 4, 32));
        assert_ne!(c.batch(1, 5, 0, 4, 32), c.batch(1, 6, 0, 4, 32));
        let (whole, _) = c.batch(1, 5, 0, 4, 32);
        let (tail, _) = c.batch(1, 5, 2, 2, 32);
        assert_eq!(
            &whole[64..],
            &tail[..],
            "micro batches are slices of the step's batch"
        );
        assert_ne!(c.batch(1, 5, 0, 4, 32), c.batch(2, 5, 0, 4, 32));
    }

    #[test]
    fn file_corpus_windows_are_slices_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("corpus.txt");
        let text: Vec<u8> = (0..5000u32)
            .map(|i| b"the quick brown fox "[i as usize % 20])
            .collect();
        std::fs::write(&path, &text).unwrap();
        let cfg = DataConfig {
            source: DataSource::File,
            path: Some(path.clone()),
            ..DataConfig::default()
        };
        let c = Corpus::from_config(&cfg, 256, 32).unwrap();
        assert_eq!(c.loss_floor(32), None, "a file's entropy is not known");
        let (x, y) = c.batch(3, 0, 0, 2, 32);
        let row: Vec<u8> = x[..32].iter().map(|&t| t as u8).collect();
        assert!(text.windows(32).any(|w| w == row.as_slice()));
        assert_eq!(&x[1..32], &y[..31]);
        std::fs::write(&path, b"short").unwrap();
        let err = Corpus::from_config(&cfg, 256, 32).unwrap_err().to_string();
        assert!(err.contains("at least 34 bytes"), "{err}");
    }

    #[test]
    fn targets_are_inputs_shifted_by_one() {
        let c = Corpus::Synthetic(Synthetic::new(64, 8, 0));
        let (x, y) = c.batch(1, 0, 0, 1, 16);
        assert_eq!(&x[1..], &y[..15]);
    }

    #[test]
    fn entropy_rate_is_that_of_the_zipf_choice() {
        // H(q) for q ∝ (1, 1/2, …, 1/8), computed in closed form.
        let s = Synthetic::new(64, 8, 0);
        let h8: f64 = (1..=8).map(|j| 1.0 / j as f64).sum();
        let expected: f64 = (1..=8)
            .map(|j| {
                let q = 1.0 / (j as f64 * h8);
                -q * q.ln()
            })
            .sum();
        approx::assert_abs_diff_eq!(s.entropy_rate(), expected, epsilon = 1e-12);
        // Position 0 cannot see the shift bit: up to ln 2 more.
        assert!(s.first_position_entropy() > s.entropy_rate());
        assert!(s.first_position_entropy() <= s.entropy_rate() + 2f64.ln() + 1e-12);
    }

    #[test]
    fn empirical_conditional_entropy_matches_the_law() {
        // Estimate H(x[t+1] | x[t-1] mod 2, x[t]) from samples: it must approach H(q).
        let s = Synthetic::new(16, 4, 3);
        let c = Corpus::Synthetic(s.clone());
        let mut counts = std::collections::HashMap::<(u32, u32, u32), f64>::new();
        let mut ctx_counts = std::collections::HashMap::<(u32, u32), f64>::new();
        for step in 0..400 {
            let (x, _) = c.batch(9, step, 0, 8, 64);
            for row in x.chunks(64) {
                for w in row.windows(3) {
                    *counts.entry((w[0] % 2, w[1], w[2])).or_default() += 1.0;
                    *ctx_counts.entry((w[0] % 2, w[1])).or_default() += 1.0;
                }
            }
        }
        let n: f64 = ctx_counts.values().sum();
        let h: f64 = counts
            .iter()
            .map(|((a, b, _), c)| -(c / n) * (c / ctx_counts[&(*a, *b)]).ln())
            .sum();
        approx::assert_abs_diff_eq!(h, s.entropy_rate(), epsilon = 0.02);
    }
}
