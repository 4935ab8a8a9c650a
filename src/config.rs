//! Run configuration: every knob of the reference model, trainer and data, with Megatron-LM names
//! where Megatron has one.
//!
//! A run spec is a TOML file with an optional `preset` and three sections, `[model]`, `[train]`
//! and `[data]`; anything not written comes from the preset (or the defaults). [`RunConfig::resolve`]
//! then fills every derived value (`lr_decay_iters` from `train_iters`, `ffn_hidden_size` from
//! `hidden_size`, …) so that the config stored in a trace has no implicit defaults left: two traces
//! that differ in behaviour differ in a written field. This module owns parsing, overrides and
//! resolution; what the knobs do lives in `model`, `train` and `data`.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub(crate) mod footprint;

/// How attention is computed. Both give the same mathematics; they differ in rounding and memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttentionBackend {
    /// Materialise the `T × T` score matrix, softmax, multiply: the reference.
    Naive,
    /// Fused, tiled online-softmax kernel (FlashAttention-2 style); never stores `T × T`.
    Flash,
}

/// Which implementation runs the non-matmul ops (LayerNorm, GELU, attention softmax,
/// cross-entropy) and how linear layers are laid out.
///
/// Both compute the same mathematics and are bitwise deterministic across thread counts, but
/// they round differently: "fused kernels vs composed ops" is itself an environment pair, and a
/// trace records which one ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kernels {
    /// lossdiff's own CPU kernels with hand-written backward passes (see `kernels`): the fast path.
    Fused,
    /// candle's primitive ops and autograd, op for op: the slow, obviously-correct reference.
    Composed,
}

/// Floating-point type used for the forward/backward compute. Master weights and optimiser
/// state stay `f32` either way (pure bf16 training with AdamW underflows on CPU).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComputeDtype {
    /// 32-bit float.
    F32,
    /// bfloat16 activations and matmul inputs, f32 reductions.
    Bf16,
}

/// The reference GPT's shape and numerics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GptConfig {
    /// Tokens in the vocabulary (the synthetic corpus and byte files both use ≤ 256).
    pub vocab_size: usize,
    /// Context length `T`.
    pub seq_length: usize,
    /// Transformer blocks.
    pub num_layers: usize,
    /// Model width `C`.
    pub hidden_size: usize,
    /// Attention heads; must divide `hidden_size`.
    pub num_attention_heads: usize,
    /// MLP inner width; resolved to `4 × hidden_size` when absent, as in GPT-2 and Megatron-LM.
    pub ffn_hidden_size: Option<usize>,
    /// Attention implementation.
    pub attention: AttentionBackend,
    /// Dropout on attention probabilities. Written explicitly in every trace: a silently
    /// different default here is the classic flash-vs-no-flash confound.
    pub attention_dropout: f32,
    /// Dropout on the embedding sum and after each residual branch.
    pub hidden_dropout: f32,
    /// Share the token embedding with the LM head (GPT-2 does; Megatron's `--untie-…` turns it off).
    pub tie_embeddings: bool,
    /// Standard deviation of the normal initialisation; output projections use
    /// `init_method_std / sqrt(2 × num_layers)` as Megatron-LM and GPT-2 do.
    pub init_method_std: f64,
    /// Epsilon inside LayerNorm's square root.
    pub layernorm_epsilon: f64,
    /// Biases on linear layers.
    pub add_bias_linear: bool,
    /// Compute dtype.
    pub dtype: ComputeDtype,
    /// Fused kernels or composed candle ops.
    pub kernels: Kernels,
    /// Largest score-matrix footprint (bytes) naive attention may allocate before refusing.
    pub max_attention_bytes: u64,
}

impl Default for GptConfig {
    fn default() -> Self {
        GptConfig {
            vocab_size: 256,
            seq_length: 128,
            num_layers: 4,
            hidden_size: 128,
            num_attention_heads: 4,
            ffn_hidden_size: None,
            attention: AttentionBackend::Naive,
            attention_dropout: 0.0,
            hidden_dropout: 0.0,
            tie_embeddings: true,
            init_method_std: 0.02,
            layernorm_epsilon: 1e-5,
            add_bias_linear: true,
            dtype: ComputeDtype::F32,
            kernels: Kernels::Fused,
            // 4 GiB: far past anything the shipped configs need, well under this machine's memory.
            max_attention_bytes: 4 << 30,
        }
    }
}

impl GptConfig {
    /// Returns the head dimension `C / nh`.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Returns the MLP inner width, resolving the default.
    pub fn ffn(&self) -> usize {
        // Saturating: a spec's `hidden_size` is checked against the training budget after this is
        // called, so it may still be absurd here.
        self.ffn_hidden_size
            .unwrap_or(self.hidden_size.saturating_mul(4))
    }
}

/// Learning-rate decay after warmup, as in Megatron-LM's `--lr-decay-style`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DecayStyle {
    /// Stay at `lr`.
    #[serde(rename = "constant")]
    Constant,
    /// Linear from `lr` to `min_lr`.
    #[serde(rename = "linear")]
    Linear,
    /// Half-cosine from `lr` to `min_lr`.
    #[serde(rename = "cosine")]
    Cosine,
    /// `lr × sqrt(warmup / step)`, floored at `min_lr`.
    #[serde(rename = "inverse-square-root")]
    InverseSquareRoot,
    /// Warmup–stable–decay: constant, then an anneal over the last `lr_wsd_decay_iters`.
    #[serde(rename = "WSD")]
    Wsd,
}

/// Shape of the WSD anneal, as in Megatron-LM's `--lr-wsd-decay-style`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WsdDecayStyle {
    /// `1 − r`.
    Linear,
    /// `½ (1 + cos πr)`.
    Cosine,
    /// `2 · 0.5^r − 1`.
    Exponential,
    /// `1 − sqrt(r)`.
    MinusSqrt,
}

/// Optimiser, schedule and batch knobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Seed of the initial weights and of dropout masks.
    pub seed: u64,
    /// Seed of the batch order; resolved to `seed` when absent.
    pub data_seed: Option<u64>,
    /// When non-zero, flips the last mantissa bit of a random half of the non-zero initial
    /// weights, keyed by this seed: a benign rounding-level perturbation.
    pub perturb_seed: u64,
    /// Optimiser steps.
    pub train_iters: u64,
    /// Sequences per micro batch.
    pub micro_batch_size: usize,
    /// Micro batches accumulated into one optimiser step (global batch = micro × this).
    pub grad_accum_steps: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Floor of the decay, and the lr after `lr_decay_iters`.
    pub min_lr: f64,
    /// Learning rate at step 0 of the warmup.
    pub lr_warmup_init: f64,
    /// Warmup steps; ignored (and resolved) when `lr_warmup_frac` is set.
    pub lr_warmup_iters: u64,
    /// Warmup as a fraction of `lr_decay_iters`.
    pub lr_warmup_frac: Option<f64>,
    /// Steps over which the lr decays; resolved to `train_iters` when absent.
    pub lr_decay_iters: Option<u64>,
    /// Decay style.
    pub lr_decay_style: DecayStyle,
    /// Anneal length for WSD; resolved to 0 for other styles, required for WSD.
    pub lr_wsd_decay_iters: Option<u64>,
    /// Anneal shape for WSD.
    pub lr_wsd_decay_style: WsdDecayStyle,
    /// AdamW β₁.
    pub adam_beta1: f64,
    /// AdamW β₂.
    pub adam_beta2: f64,
    /// AdamW ε.
    pub adam_eps: f64,
    /// Decoupled weight decay, applied to matrices only (not biases, norms or embeddings).
    pub weight_decay: f64,
    /// Global gradient-norm clip; 0 disables clipping.
    pub clip_grad: f64,
    /// A fault to inject (see `lossdiff faults`); `none` for the reference behaviour.
    pub inject: crate::faults::Fault,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            seed: 1234,
            data_seed: None,
            perturb_seed: 0,
            train_iters: 200,
            micro_batch_size: 8,
            grad_accum_steps: 1,
            lr: 1e-3,
            min_lr: 1e-4,
            lr_warmup_init: 0.0,
            lr_warmup_iters: 0,
            lr_warmup_frac: None,
            lr_decay_iters: None,
            lr_decay_style: DecayStyle::Cosine,
            lr_wsd_decay_iters: None,
            lr_wsd_decay_style: WsdDecayStyle::Exponential,
            adam_beta1: 0.9,
            adam_beta2: 0.95,
            adam_eps: 1e-8,
            weight_decay: 0.1,
            clip_grad: 1.0,
            inject: crate::faults::Fault::None,
        }
    }
}

/// Where training tokens come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataSource {
    /// A seeded second-order Markov source whose entropy rate is known exactly.
    Synthetic,
    /// The bytes of a file, windows drawn at seeded offsets.
    File,
}

/// Data knobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Which corpus.
    pub source: DataSource,
    /// The byte file, for `source = "file"`.
    pub path: Option<PathBuf>,
    /// Synthetic corpus: how many next-token choices each context has (the entropy's support).
    pub branching: usize,
    /// Synthetic corpus: seed of the source's transition law (not of the batch order).
    pub corpus_seed: u64,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            source: DataSource::Synthetic,
            path: None,
            branching: 8,
            corpus_seed: 0,
        }
    }
}

/// Everything that determines a run's numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// Model shape and numerics.
    pub model: GptConfig,
    /// Optimiser and schedule.
    pub train: TrainConfig,
    /// Data.
    pub data: DataConfig,
}

/// Names of the shipped presets, for messages.
pub const PRESETS: &[&str] = &["gate", "small", "medium"];

impl RunConfig {
    /// Returns a named preset.
    ///
    /// - `gate`: trains 200 steps in a few seconds on one core; what `cargo test` gates on.
    /// - `small`: d_model 128, 4 layers, 4 heads, seq 128, batch 8 (842k parameters); nightly size.
    /// - `medium`: d_model 256, 6 layers, 8 heads, seq 256, batch 8 (~4.8M parameters).
    pub fn preset(name: &str) -> Option<RunConfig> {
        let base = RunConfig::default();
        match name {
            "gate" => Some(RunConfig {
                model: GptConfig {
                    vocab_size: 64,
                    seq_length: 32,
                    num_layers: 2,
                    hidden_size: 64,
                    num_attention_heads: 4,
                    ..base.model
                },
                train: TrainConfig {
                    train_iters: 200,
                    lr: 3e-3,
                    min_lr: 3e-4,
                    lr_warmup_iters: 20,
                    ..base.train
                },
                data: base.data,
            }),
            "small" => Some(RunConfig {
                train: TrainConfig {
                    train_iters: 1000,
                    lr_warmup_iters: 50,
                    ..base.train
                },
                ..base
            }),
            "medium" => Some(RunConfig {
                model: GptConfig {
                    seq_length: 256,
                    num_layers: 6,
                    hidden_size: 256,
                    num_attention_heads: 8,
                    ..base.model
                },
                train: TrainConfig {
                    train_iters: 1000,
                    lr: 6e-4,
                    min_lr: 6e-5,
                    lr_warmup_iters: 100,
                    ..base.train
                },
                data: base.data,
            }),
            _ => None,
        }
    }

    /// Loads a run spec: optional `preset = "…"`, then `[model]`, `[train]`, `[data]` overrides.
    ///
    /// # Errors
    /// [`Error::Io`], [`Error::Toml`]; [`Error::UnknownKey`] (with the closest valid key) and
    /// [`Error::InvalidValue`] naming the file and key.
    pub fn load(path: &Path) -> Result<RunConfig> {
        // Under the input limit, and never a FIFO, which would block the open.
        let text = crate::limits::read_input_to_string(path)?;
        RunConfig::parse(&text, path)
    }

    /// Parses a run spec already in memory; `path` only names it in errors (the fuzz target and
    /// tests parse specs without a file).
    ///
    /// # Errors
    /// As [`RunConfig::load`], without the I/O error.
    pub fn parse(text: &str, path: &Path) -> Result<RunConfig> {
        let doc: toml::Table = toml::from_str(text).map_err(|e| Error::Toml {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        RunConfig::from_table(doc, &path.display().to_string())
    }

    /// Builds a config from a parsed TOML table (a run spec, or an experiment's base section).
    ///
    /// # Errors
    /// As [`RunConfig::load`], with `origin` naming where the table came from.
    pub fn from_table(mut doc: toml::Table, origin: &str) -> Result<RunConfig> {
        let base = match doc.remove("preset") {
            None => RunConfig::default(),
            Some(toml::Value::String(name)) => {
                RunConfig::preset(&name).ok_or_else(|| Error::InvalidValue {
                    origin: origin.to_string(),
                    key: "preset".into(),
                    expected: format!("one of {}", PRESETS.join(", ")),
                    got: format!("{name:?}"),
                })?
            }
            Some(other) => {
                return Err(Error::InvalidValue {
                    origin: origin.to_string(),
                    key: "preset".into(),
                    expected: "a preset name string".into(),
                    got: other.to_string(),
                })
            }
        };
        let mut cfg = base;
        for (section, value) in doc {
            let toml::Value::Table(table) = value else {
                return Err(unknown_or_misplaced(origin, &section));
            };
            if !SECTIONS.contains(&section.as_str()) {
                return Err(unknown_key(origin, &section, SECTIONS.iter().copied()));
            }
            for (key, v) in table {
                cfg.set_value(&format!("{section}.{key}"), json_of(v), origin)?;
            }
        }
        cfg.validate(origin)?;
        Ok(cfg)
    }

    /// Applies a `key=value` override (`--set`). `key` may be bare (`train_iters`) when only one
    /// section has it, or qualified (`train.train_iters`). The value is TOML (`0.1`, `true`,
    /// `"flash"`); a bare word is taken as a string, so `attention=flash` works.
    ///
    /// # Errors
    /// [`Error::UnknownKey`] for a key no section has (with a suggestion), [`Error::InvalidValue`]
    /// for a malformed assignment or a value of the wrong kind.
    pub fn apply_override(&mut self, assignment: &str) -> Result<()> {
        self.apply_overrides(&[assignment])
    }

    /// Applies several overrides, then checks the result once: the config only has to be
    /// consistent after all of them, so their order never matters (`train_iters=30` before
    /// `lr_decay_iters=30` is as good as after).
    ///
    /// # Errors
    /// As [`RunConfig::apply_override`], plus [`RunConfig::validate`]'s errors for the result.
    pub fn apply_overrides<S: AsRef<str>>(&mut self, assignments: &[S]) -> Result<()> {
        for a in assignments {
            self.set_override(a.as_ref())?;
        }
        let origin = assignments
            .iter()
            .map(|a| format!("--set {}", a.as_ref()))
            .collect::<Vec<_>>()
            .join(" ");
        self.validate(&origin)
    }

    /// Applies one `key=value` override without checking the whole config (see
    /// [`RunConfig::apply_overrides`]).
    pub(crate) fn set_override(&mut self, assignment: &str) -> Result<()> {
        let origin = format!("--set {assignment}");
        let Some((key, raw)) = assignment.split_once('=') else {
            return Err(Error::InvalidValue {
                origin,
                key: assignment.into(),
                expected: "key=value".into(),
                got: assignment.into(),
            });
        };
        let (key, raw) = (key.trim(), raw.trim());
        let value = parse_scalar(raw);
        self.set_value(key, value, &origin)
    }

    /// Sets one field by (bare or qualified) key, type-checked through serde.
    fn set_value(&mut self, key: &str, value: serde_json::Value, origin: &str) -> Result<()> {
        let qualified = Self::qualify(key, origin)?;
        let (section, field) = qualified
            .split_once('.')
            .expect("qualify returns section.field");
        let mut tree = serde_json::to_value(&*self).expect("config serialises");
        tree[section][field] = value.clone();
        *self = serde_json::from_value(tree).map_err(|e| Error::InvalidValue {
            origin: origin.to_string(),
            key: qualified.clone(),
            expected: expected_for(&e.to_string()),
            got: value.to_string(),
        })?;
        Ok(())
    }

    /// Turns a bare key into `section.field`, or explains why it cannot.
    ///
    /// # Errors
    /// [`Error::UnknownKey`] with the closest valid key; [`Error::InvalidValue`] listing the
    /// candidates when a bare key names a field in several sections.
    pub fn qualify(key: &str, origin: &str) -> Result<String> {
        let all = Self::all_keys();
        if all.iter().any(|k| k == key) {
            return Ok(key.to_string());
        }
        let matches: Vec<&String> = all
            .iter()
            .filter(|k| k.split_once('.').map(|(_, f)| f) == Some(key))
            .collect();
        match matches.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(unknown_key(
                origin,
                key,
                all.iter()
                    .flat_map(|k| [k.as_str(), k.split_once('.').map_or(k.as_str(), |p| p.1)]),
            )),
            many => Err(Error::InvalidValue {
                origin: origin.to_string(),
                key: key.to_string(),
                expected: format!(
                    "a qualified key, one of {}",
                    many.iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                got: key.to_string(),
            }),
        }
    }

    /// Every settable key, `section.field`, in a stable order.
    pub fn all_keys() -> Vec<String> {
        let tree = serde_json::to_value(RunConfig::default()).expect("config serialises");
        let mut keys = Vec::new();
        for section in SECTIONS {
            if let Some(obj) = tree[section].as_object() {
                keys.extend(obj.keys().map(|k| format!("{section}.{k}")));
            }
        }
        keys
    }

    /// Checks cross-field constraints serde cannot express.
    ///
    /// # Errors
    /// [`Error::InvalidValue`] naming the offending key.
    pub fn validate(&self, origin: &str) -> Result<()> {
        let bad = |key: &str, expected: &str, got: String| {
            Err(Error::InvalidValue {
                origin: origin.to_string(),
                key: key.to_string(),
                expected: expected.to_string(),
                got,
            })
        };
        let m = &self.model;
        let t = &self.train;
        for (key, v) in [
            ("model.vocab_size", m.vocab_size),
            ("model.seq_length", m.seq_length),
            ("model.num_layers", m.num_layers),
            ("model.hidden_size", m.hidden_size),
            ("model.num_attention_heads", m.num_attention_heads),
            ("train.micro_batch_size", t.micro_batch_size),
            ("train.grad_accum_steps", t.grad_accum_steps),
        ] {
            if v == 0 {
                return bad(key, "a positive integer", v.to_string());
            }
        }
        if m.hidden_size % m.num_attention_heads != 0 {
            return bad(
                "model.num_attention_heads",
                &format!("a divisor of hidden_size ({})", m.hidden_size),
                m.num_attention_heads.to_string(),
            );
        }
        // Before anything below resolves the config: a footprint over the budget is refused
        // with the estimate, not discovered by the allocator.
        crate::config::footprint::check(
            self,
            crate::config::footprint::max_train_bytes()?,
            origin,
        )?;
        self.validate_numerics(origin)?;
        for (key, p) in [
            ("model.attention_dropout", m.attention_dropout),
            ("model.hidden_dropout", m.hidden_dropout),
        ] {
            if !(0.0..1.0).contains(&p) {
                return bad(key, "a probability in [0, 1)", p.to_string());
            }
        }
        if t.train_iters == 0 {
            return bad("train.train_iters", "a positive integer", "0".into());
        }
        if !(t.lr.is_finite() && t.lr >= 0.0) {
            return bad("train.lr", "a finite learning rate >= 0", t.lr.to_string());
        }
        if !(t.min_lr >= 0.0 && t.min_lr <= t.lr) {
            return bad(
                "train.min_lr",
                &format!("0 <= min_lr <= lr ({})", t.lr),
                t.min_lr.to_string(),
            );
        }
        if let Some(f) = t.lr_warmup_frac {
            if !(0.0..=1.0).contains(&f) {
                return bad(
                    "train.lr_warmup_frac",
                    "a fraction in [0, 1]",
                    f.to_string(),
                );
            }
        }
        if t.lr_decay_style == DecayStyle::Wsd && t.lr_wsd_decay_iters.is_none() {
            return bad(
                "train.lr_wsd_decay_iters",
                "a number of steps (required with lr_decay_style = \"WSD\")",
                "nothing".into(),
            );
        }
        let r = self.resolve();
        let (warmup, decay) = (r.train.lr_warmup_iters, r.train.lr_decay_iters.unwrap_or(0));
        if decay == 0 {
            return bad(
                "train.lr_decay_iters",
                "a positive number of steps",
                "0".into(),
            );
        }
        if warmup >= decay {
            // Megatron-LM asserts lr_warmup_steps < lr_decay_steps.
            return bad(
                "train.lr_warmup_iters",
                &format!("fewer steps than lr_decay_iters ({decay})"),
                warmup.to_string(),
            );
        }
        if r.train.lr_wsd_decay_iters.unwrap_or(0) > decay {
            return bad(
                "train.lr_wsd_decay_iters",
                &format!("at most lr_decay_iters ({decay})"),
                r.train.lr_wsd_decay_iters.unwrap_or(0).to_string(),
            );
        }
        let data = &self.data;
        if data.source == DataSource::File && data.path.is_none() {
            return bad(
                "data.path",
                "a file path (required with source = \"file\")",
                "nothing".into(),
            );
        }
        if data.source == DataSource::Synthetic && !(1..=m.vocab_size).contains(&data.branching) {
            return bad(
                "data.branching",
                &format!("1..={} (the vocabulary size)", m.vocab_size),
                data.branching.to_string(),
            );
        }
        if data.source == DataSource::File && m.vocab_size < 256 {
            return bad(
                "model.vocab_size",
                "256 for a byte-file corpus",
                m.vocab_size.to_string(),
            );
        }
        Ok(())
    }

    /// Checks the optimiser's and the model's real-valued knobs against their ranges: outside
    /// them training runs, but to NaN (`adam_beta1 = 1.0` divides by `1 − β₁ᵗ = 0` at step 1).
    fn validate_numerics(&self, origin: &str) -> Result<()> {
        let (m, t) = (&self.model, &self.train);
        let in_unit = |x: f64| (0.0..1.0).contains(&x);
        let positive = |x: f64| x.is_finite() && x > 0.0;
        let non_negative = |x: f64| x.is_finite() && x >= 0.0;
        let checks: [(&str, f64, bool, &str); 8] = [
            (
                "train.adam_beta1",
                t.adam_beta1,
                in_unit(t.adam_beta1),
                "a value in [0, 1)",
            ),
            (
                "train.adam_beta2",
                t.adam_beta2,
                in_unit(t.adam_beta2),
                "a value in [0, 1)",
            ),
            (
                "train.adam_eps",
                t.adam_eps,
                positive(t.adam_eps),
                "a finite value > 0",
            ),
            (
                "train.weight_decay",
                t.weight_decay,
                non_negative(t.weight_decay),
                "a finite value >= 0",
            ),
            (
                "train.clip_grad",
                t.clip_grad,
                non_negative(t.clip_grad),
                "a finite value >= 0 (0 disables clipping)",
            ),
            (
                "train.lr_warmup_init",
                t.lr_warmup_init,
                non_negative(t.lr_warmup_init),
                "a finite learning rate >= 0",
            ),
            (
                "model.init_method_std",
                m.init_method_std,
                non_negative(m.init_method_std),
                "a finite standard deviation >= 0",
            ),
            (
                "model.layernorm_epsilon",
                m.layernorm_epsilon,
                positive(m.layernorm_epsilon),
                "a finite value > 0",
            ),
        ];
        match checks.iter().find(|(_, _, ok, _)| !ok) {
            None => Ok(()),
            Some((key, v, _, expected)) => Err(Error::InvalidValue {
                origin: origin.to_string(),
                key: key.to_string(),
                expected: expected.to_string(),
                got: v.to_string(),
            }),
        }
    }

    /// Returns the config with every derived value filled in; what traces record.
    pub fn resolve(&self) -> RunConfig {
        let mut r = self.clone();
        r.model.ffn_hidden_size = Some(self.model.ffn());
        r.train.data_seed = Some(self.train.data_seed.unwrap_or(self.train.seed));
        let decay = self.train.lr_decay_iters.unwrap_or(self.train.train_iters);
        r.train.lr_decay_iters = Some(decay);
        if let Some(frac) = self.train.lr_warmup_frac {
            // Megatron-LM: lr_warmup_steps = lr_warmup_fraction * lr_decay_steps.
            r.train.lr_warmup_iters = (frac * decay as f64) as u64;
        }
        r.train.lr_wsd_decay_iters = Some(match self.train.lr_decay_style {
            DecayStyle::Wsd => self.train.lr_wsd_decay_iters.unwrap_or(0),
            _ => 0,
        });
        r
    }

    /// Returns the resolved config as a JSON object, as stored in traces.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self.resolve()).expect("config serialises")
    }
}

const SECTIONS: &[&str] = &["model", "train", "data"];

fn json_of(v: toml::Value) -> serde_json::Value {
    serde_json::to_value(v).expect("TOML values are JSON values")
}

/// Parses a `--set` value as TOML, falling back to a bare string.
fn parse_scalar(raw: &str) -> serde_json::Value {
    match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => json_of(t.remove("v").expect("parsed table has v")),
        Err(_) => serde_json::Value::String(raw.to_string()),
    }
}

/// Turns serde's "invalid type: …, expected …" into the expected part.
fn expected_for(serde_msg: &str) -> String {
    match serde_msg.split_once("expected ") {
        Some((_, e)) => e.trim_end_matches('.').to_string(),
        None => serde_msg.to_string(),
    }
}

fn unknown_or_misplaced(origin: &str, key: &str) -> Error {
    let sections: Vec<String> = RunConfig::all_keys()
        .into_iter()
        .filter(|k| k.ends_with(&format!(".{key}")))
        .collect();
    match sections.first() {
        Some(q) => Error::InvalidValue {
            origin: origin.to_string(),
            key: key.to_string(),
            expected: format!(
                "to be inside its section, as `{q}` (write it under [{}])",
                q.split('.').next().unwrap_or("")
            ),
            got: "a top-level key".into(),
        },
        None => {
            // A misspelled field written at the top (`train_iter`) is suggested with its section.
            let section_or_preset = closest(key, SECTIONS.iter().copied().chain(["preset"]));
            let field = || {
                let all = RunConfig::all_keys();
                let bare = all.iter().filter_map(|k| k.split_once('.').map(|p| p.1));
                let best = closest(key, bare)?;
                all.into_iter().find(|k| k.ends_with(&format!(".{best}")))
            };
            Error::UnknownKey {
                origin: origin.to_string(),
                key: key.to_string(),
                suggestion: section_or_preset.or_else(field),
            }
        }
    }
}

/// Builds an [`Error::UnknownKey`] with the closest candidate, when one is close enough.
pub fn unknown_key<'a>(
    origin: &str,
    key: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Error {
    Error::UnknownKey {
        origin: origin.to_string(),
        key: key.to_string(),
        suggestion: closest(key, candidates),
    }
}

/// Returns the candidate with the smallest edit distance, if within a third of the key's length.
/// A unit suffix is often forgotten, so a candidate is also measured without it (`timout` is one
/// edit from `timeout_s` without its `_s`).
pub fn closest<'a>(key: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    const UNIT_SUFFIXES: [&str; 3] = ["_s", "_ms", "_bytes"];
    let limit = (key.len() / 3).max(2);
    let distance = |c: &str| {
        let bare = UNIT_SUFFIXES.iter().find_map(|u| c.strip_suffix(u));
        let d = levenshtein(key, c);
        bare.map_or(d, |b| d.min(levenshtein(key, b)))
    };
    candidates
        .into_iter()
        .map(|c| (distance(c), c))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, c)| c.to_string())
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_are_checked_together_so_their_order_does_not_matter() {
        // Shrinking a run: each assignment alone breaks warmup < decay ≤ iters, together they
        // do not. Found when `--set train_iters=30 --set lr_decay_iters=30` was refused.
        let sets = ["train_iters=30", "lr_warmup_iters=5", "lr_decay_iters=30"];
        let mut a = RunConfig::preset("small").unwrap();
        a.apply_overrides(&sets).unwrap();
        let mut b = RunConfig::preset("small").unwrap();
        b.apply_overrides(&[sets[2], sets[1], sets[0]]).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.train.train_iters, 30);
        // The combined result is still checked.
        let err = RunConfig::preset("small")
            .unwrap()
            .apply_overrides(&["train_iters=30"])
            .unwrap_err();
        assert!(err.to_string().contains("--set train_iters=30"), "{err}");
    }

    #[test]
    fn bare_override_reaches_its_section() {
        let mut c = RunConfig::preset("gate").unwrap();
        c.apply_override("attention=flash").unwrap();
        c.apply_override("train_iters=50").unwrap();
        c.apply_override("train.lr=0.01").unwrap();
        assert_eq!(c.model.attention, AttentionBackend::Flash);
        assert_eq!(c.train.train_iters, 50);
        assert_eq!(c.train.lr, 0.01);
    }

    #[test]
    fn unknown_override_is_rejected_with_suggestion() {
        let mut c = RunConfig::default();
        let err = c.apply_override("atention_dropout=0.1").unwrap_err();
        assert!(
            matches!(&err, Error::UnknownKey { suggestion: Some(s), .. } if s == "attention_dropout"),
            "{err}"
        );
    }

    #[test]
    fn wrongly_typed_override_names_key_and_expectation() {
        let mut c = RunConfig::default();
        let err = c.apply_override("attention=fast").unwrap_err().to_string();
        assert!(
            err.contains("model.attention") && err.contains("naive"),
            "{err}"
        );
    }

    #[test]
    fn spec_file_keys_are_checked() {
        let doc: toml::Table =
            toml::from_str("preset = \"gate\"\n[train]\nlr_decay_iter = 5\n").unwrap();
        let err = RunConfig::from_table(doc, "spec.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("spec.toml") && err.contains("lr_decay_iters"),
            "{err}"
        );
    }

    #[test]
    fn resolve_fills_every_derived_default() {
        let r = RunConfig::preset("gate").unwrap().resolve();
        assert_eq!(r.train.lr_decay_iters, Some(200));
        assert_eq!(r.train.data_seed, Some(r.train.seed));
        assert_eq!(r.model.ffn_hidden_size, Some(256));
        let json = r.to_json();
        let nulls: Vec<String> = RunConfig::all_keys()
            .into_iter()
            .filter(|k| {
                let (s, f) = k.split_once('.').unwrap();
                json[s][f].is_null() && !matches!(f, "path" | "lr_warmup_frac")
            })
            .collect();
        assert!(nulls.is_empty(), "unresolved: {nulls:?}");
        assert!(json["model"]["attention_dropout"].is_number());
    }

    #[test]
    fn warmup_fraction_follows_megatron() {
        let mut c = RunConfig::default();
        c.train.train_iters = 1000;
        c.train.lr_decay_iters = Some(400);
        c.train.lr_warmup_frac = Some(0.1);
        assert_eq!(c.resolve().train.lr_warmup_iters, 40);
    }

    #[test]
    fn small_preset_has_842k_parameters_shape() {
        let m = RunConfig::preset("small").unwrap().model;
        assert_eq!(
            (
                m.hidden_size,
                m.num_layers,
                m.num_attention_heads,
                m.seq_length
            ),
            (128, 4, 4, 128)
        );
    }
}
