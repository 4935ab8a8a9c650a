//! The training memory budget: how many bytes a run will need, estimated from its config before
//! anything is allocated, and the limit it is held to.
//!
//! Without it a spec asking for `hidden_size = 65536` or `micro_batch_size = 100000000` got as far
//! as the first tensor and died in the allocator (`memory allocation of … bytes failed`, exit 134):
//! a crash, not a refusal, and on a shared CI runner possibly someone else's OOM kill. The estimate
//! is an upper bound of the same order as the real peak (every term is a count of `f32`s the
//! trainer holds at once; `docs/limits.md` has it next to measured peaks). It owns the arithmetic
//! and the limit; `config` calls it from `validate`, so every spec is checked at load.

use crate::config::{AttentionBackend, DataSource, RunConfig};
use crate::error::{Error, Result};

/// Default training budget: 8 GiB. The largest shipped preset (`medium`) needs about 1 GiB by this
/// estimate; a config past 8 GiB is far more likely a typo than a reference-model run.
pub const DEFAULT_MAX_TRAIN_BYTES: u64 = 8 << 30;

/// The environment variable that overrides [`DEFAULT_MAX_TRAIN_BYTES`].
pub const MAX_TRAIN_BYTES_ENV: &str = "LOSSDIFF_MAX_TRAIN_BYTES";

/// `(B, nh, T, T)` f32 matrices naive attention holds at its forward+backward peak. candle's
/// composed path keeps every intermediate for autograd (scores, scaled, masked, max-shifted,
/// exponentials, probabilities) plus their gradients: measured 4.32 GiB at B = 1, nh = 4,
/// T = 4096, i.e. 17.3 such matrices (`lossdiff bench attention`). Rounded up.
pub const NAIVE_PEAK_MATRICES: u64 = 18;

/// Bytes per element: everything is counted as `f32` (bf16 compute keeps f32 master weights and
/// reductions, so this is an upper bound for it).
const F32: f64 = 4.0;

/// Returns the bytes naive attention needs at its forward+backward peak for `(B, nh, T, T)`
/// score matrices (two more with dropout: the mask and its product).
pub fn naive_attention_bytes(b: usize, nh: usize, t: usize, dropout: bool) -> u64 {
    let matrices = NAIVE_PEAK_MATRICES + if dropout { 2 } else { 0 };
    saturate(b as f64 * nh as f64 * t as f64 * t as f64 * F32 * matrices as f64)
}

/// What one run holds in memory at its peak, in bytes, by part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footprint {
    /// Weights, gradients and AdamW's two moments: `16 × parameters`.
    pub parameters: u64,
    /// Activations kept for the backward pass and their gradients, one micro batch.
    pub activations: u64,
    /// Logits, their softmax and gradient: `B × T × vocab` each.
    pub logits: u64,
    /// Attention beyond the activations: naive's `T × T` matrices, or flash's log-sum-exp rows.
    pub attention: u64,
    /// Token ids of one micro batch, and the synthetic corpus's tables.
    pub data: u64,
}

impl Footprint {
    /// Estimates the footprint of `cfg` (resolved or not). Time: `O(1)`; nothing is allocated.
    pub fn of(cfg: &RunConfig) -> Footprint {
        let m = &cfg.model;
        let (v, t, c, l) = (
            m.vocab_size as f64,
            m.seq_length as f64,
            m.hidden_size as f64,
            m.num_layers as f64,
        );
        let f = m.ffn_hidden_size.map_or(4.0 * c, |f| f as f64);
        let b = cfg.train.micro_batch_size as f64;
        let nh = m.num_attention_heads as f64;
        // wte, wpe, per block: two LayerNorms, qkv, output projection and the MLP, then ln_f.
        let block = 4.0 * c + (3.0 * c * c + 3.0 * c) + (c * c + c) + (c * f + f) + (f * c + c);
        let head = if m.tie_embeddings { 0.0 } else { v * c };
        let params = v * c + t * c + l * block + 2.0 * c + head;
        let tokens = b * t;
        // Per block: LayerNorm outputs, q/k/v, attention output, projections and residuals
        // (about 12 × C per token) and the MLP's inner activations before and after GELU (about
        // 4 × F); the same again for their gradients during the backward pass.
        let activations = 2.0 * tokens * (l * (12.0 * c + 4.0 * f) + 4.0 * c) * F32;
        let attention = match m.attention {
            // Naive: every block keeps its probabilities for the backward pass, and one block at
            // a time reaches the full forward+backward peak. Flash keeps only its log-sum-exp
            // rows (and their gradient); its output is counted with the activations.
            AttentionBackend::Naive => l * b * nh * t * t * F32 + naive_bytes(cfg) as f64,
            AttentionBackend::Flash => 2.0 * l * b * nh * t * F32,
        };
        let synthetic = match cfg.data.source {
            // The source's permutation and offset pool, drawn once per run.
            DataSource::Synthetic => 2.0 * v * F32,
            // The byte file is held to the input limit when it is read (`data`).
            DataSource::File => 0.0,
        };
        Footprint {
            parameters: saturate(16.0 * params),
            activations: saturate(activations),
            logits: saturate(4.0 * tokens * v * F32),
            attention: saturate(attention),
            data: saturate(4.0 * tokens * F32 + synthetic),
        }
    }

    /// Returns the total, saturating at `u64::MAX`.
    pub fn total(&self) -> u64 {
        [
            self.parameters,
            self.activations,
            self.logits,
            self.attention,
            self.data,
        ]
        .iter()
        .fold(0u64, |acc, &x| acc.saturating_add(x))
    }

    /// Returns the largest part's name and the config keys that shrink it.
    fn largest(&self, attention: AttentionBackend) -> (&'static str, u64, &'static str) {
        let flash = attention == AttentionBackend::Flash;
        [
            (
                "parameters and optimiser state",
                self.parameters,
                "`hidden_size`, `num_layers`, `ffn_hidden_size` or `vocab_size`",
            ),
            (
                "activations",
                self.activations,
                "`micro_batch_size` (`grad_accum_steps` keeps the global batch), `seq_length`, `hidden_size` or `num_layers`",
            ),
            (
                "logits",
                self.logits,
                "`micro_batch_size`, `seq_length` or `vocab_size`",
            ),
            (
                "attention",
                self.attention,
                if flash {
                    "`micro_batch_size` or `seq_length`"
                } else {
                    "`micro_batch_size` or `seq_length`, or set `attention = \"flash\"`"
                },
            ),
            (
                "token batches and corpus tables",
                self.data,
                "`micro_batch_size`, `seq_length` or `vocab_size`",
            ),
        ]
        .into_iter()
        .max_by_key(|&(_, bytes, _)| bytes)
        .expect("five parts")
    }
}

/// Returns the training budget in bytes: `LOSSDIFF_MAX_TRAIN_BYTES`, else
/// [`DEFAULT_MAX_TRAIN_BYTES`].
///
/// # Errors
/// [`Error::InvalidValue`] when the variable is not a positive whole number.
pub fn max_train_bytes() -> Result<u64> {
    crate::limits::byte_limit(
        MAX_TRAIN_BYTES_ENV,
        DEFAULT_MAX_TRAIN_BYTES,
        "a positive number of bytes, e.g. 17179869184 for 16 GiB",
    )
}

/// Refuses `cfg` when its estimated [`Footprint`] is over `limit` bytes, naming the largest part
/// and the keys that shrink it.
///
/// # Errors
/// [`Error::TrainTooLarge`] with `origin` (the spec or flag the config came from).
pub fn check(cfg: &RunConfig, limit: u64, origin: &str) -> Result<()> {
    let fp = Footprint::of(cfg);
    let bytes = fp.total();
    if bytes <= limit {
        return Ok(());
    }
    let (part, part_bytes, knobs) = fp.largest(cfg.model.attention);
    Err(Error::TrainTooLarge {
        origin: origin.to_string(),
        bytes,
        limit,
        part,
        part_bytes,
        knobs,
    })
}

/// Naive attention's forward+backward peak for one block of `cfg`.
fn naive_bytes(cfg: &RunConfig) -> u64 {
    let m = &cfg.model;
    naive_attention_bytes(
        cfg.train.micro_batch_size,
        m.num_attention_heads,
        m.seq_length,
        m.attention_dropout > 0.0,
    )
}

/// Converts an estimate to bytes; `as` saturates, so an absurd config reads as `u64::MAX`.
fn saturate(x: f64) -> u64 {
    x as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_term_counts_the_models_parameters() {
        // model.rs `small_preset_has_842_496_parameters` counts the built model's variables;
        // weights, gradients and AdamW's two moments make four f32 copies.
        let small = RunConfig::preset("small").unwrap();
        assert_eq!(Footprint::of(&small).parameters, 16 * 842_496);
    }

    #[test]
    fn shipped_presets_fit_the_default_budget() {
        for name in crate::config::PRESETS {
            let cfg = RunConfig::preset(name).unwrap();
            let total = Footprint::of(&cfg).total();
            assert!(total < DEFAULT_MAX_TRAIN_BYTES / 4, "{name}: {total}");
            check(&cfg, DEFAULT_MAX_TRAIN_BYTES, name).unwrap();
        }
    }

    #[test]
    fn absurd_sizes_saturate_instead_of_overflowing() {
        let mut cfg = RunConfig::preset("gate").unwrap();
        cfg.model.hidden_size = usize::MAX / 2;
        cfg.model.vocab_size = usize::MAX;
        cfg.train.micro_batch_size = usize::MAX;
        assert_eq!(Footprint::of(&cfg).total(), u64::MAX);
    }

    #[test]
    fn refusal_names_the_largest_part_and_its_knobs() {
        let mut cfg = RunConfig::preset("gate").unwrap();
        cfg.model.seq_length = 1 << 14;
        let err = check(&cfg, DEFAULT_MAX_TRAIN_BYTES, "spec.toml").unwrap_err();
        let Error::TrainTooLarge { part, knobs, .. } = &err else {
            panic!("{err}");
        };
        // Naive attention's T × T matrices dominate, and flash is the way out.
        assert_eq!(*part, "attention");
        assert!(knobs.contains("attention = \"flash\""), "{knobs}");
        cfg.model.attention = AttentionBackend::Flash;
        check(&cfg, DEFAULT_MAX_TRAIN_BYTES, "spec.toml").unwrap();
    }
}
