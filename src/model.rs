//! The reference GPT: GPT-2's architecture at toy scale, after nanoGPT's `model.py`
//! (<https://github.com/karpathy/nanoGPT/blob/master/model.py>) and candle-transformers' model files.
//!
//! Token embedding + learned positions → `num_layers` pre-LayerNorm blocks
//! (`x + attn(ln_1(x))`, `x + mlp(ln_2(x))`) → final LayerNorm → LM head (tied to the token
//! embedding unless `tie_embeddings = false`). Weight names follow nanoGPT (`wte`, `h.0.attn.c_attn`)
//! so PyTorch checkpoints map 1:1.
//!
//! Two deliberate departures from off-the-shelf candle-nn:
//! - LayerNorm is `kernels::layer_norm` or composed from primitive ops (candle-nn 0.11's own has
//!   no backward: its parameters silently get no gradient); `kernels` picks fused or composed.
//! - Dropout masks come from [`crate::rng`], keyed by (seed, step, micro batch, layer, site,
//!   element), because candle's dropout RNG cannot be seeded.
//!
//! The configuration is [`crate::config::GptConfig`]; the shipped sizes are presets there.

use crate::attention::{attention_qkv, AttentionParams};
use crate::config::{ComputeDtype, GptConfig, Kernels};
use crate::error::Result;
use crate::faults::Fault;
use crate::kernels;
use crate::params::ParamStore;
use crate::rng::{dropout_row, DropoutSite, DropoutStream};
use candle_core::{DType, Device, Tensor, D};
use candle_nn::{Init, VarBuilder};

/// What a forward pass needs besides the tokens: where its dropout masks come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardCtx {
    /// Dropout seed of the run.
    pub seed: u64,
    /// Optimiser step (0-based).
    pub step: u64,
    /// Micro batch within the step.
    pub micro: u64,
    /// Training mode: dropout on when its probability is non-zero.
    pub train: bool,
}

impl ForwardCtx {
    /// An evaluation context: no dropout (tests evaluate the model with it).
    #[cfg(test)]
    pub fn eval() -> Self {
        ForwardCtx {
            seed: 0,
            step: 0,
            micro: 0,
            train: false,
        }
    }

    fn stream(&self, layer: u64, site: DropoutSite) -> DropoutStream {
        DropoutStream {
            seed: self.seed,
            step: self.step,
            micro: self.micro,
            layer,
            site,
        }
    }
}

/// `y = x Wᵀ + b`, computed in the input's dtype (weights are cast from their f32 masters).
struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
    kernels: Kernels,
}

impl Linear {
    fn new(
        d_in: usize,
        d_out: usize,
        std: f64,
        bias: bool,
        cfg: &GptConfig,
        vb: VarBuilder,
    ) -> Result<Self> {
        let weight = vb.get_with_hints(
            (d_out, d_in),
            "weight",
            Init::Randn {
                mean: 0.0,
                stdev: std,
            },
        )?;
        let bias = match bias {
            true => Some(vb.get_with_hints(d_out, "bias", Init::Const(0.0))?),
            false => None,
        };
        Ok(Linear {
            weight,
            bias,
            kernels: cfg.kernels,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = matmul_wt(x, &self.weight.to_dtype(x.dtype())?, self.kernels)?;
        Ok(match (&self.bias, self.kernels) {
            (Some(b), Kernels::Composed) => y.broadcast_add(&b.to_dtype(x.dtype())?)?,
            (Some(b), Kernels::Fused) => kernels::add_bias(&y, &b.to_dtype(x.dtype())?)?,
            (None, _) => y,
        })
    }
}

/// Returns `x Wᵀ` for `x` (B, T, d_in) and `w` (d_out, d_in).
fn matmul_wt(x: &Tensor, w: &Tensor, kernels: Kernels) -> Result<Tensor> {
    Ok(match kernels {
        // One batched product per sequence: the weight is broadcast over the batch, and its
        // gradient is a (B, d_out, d_in) tensor summed afterwards.
        Kernels::Composed => x.broadcast_matmul(&w.t()?)?,
        // One (B·T, d_in) × (d_in, d_out) product: a single large gemm forward and backward,
        // no broadcast weight, no batch reduction of its gradient, the weight's gradient made in
        // its own layout.
        Kernels::Fused => {
            let (b, t, c) = x.dims3()?;
            let y = kernels::matmul_wt(&x.reshape((b * t, c))?, w)?; // (B·T, d_out)
            y.reshape((b, t, ()))? // (B, T, d_out)
        }
    })
}

/// LayerNorm computed in f32, either fused or from primitive ops (so that autograd reaches its
/// gain and bias; candle-nn's own has no backward).
struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
    kernels: Kernels,
}

impl LayerNorm {
    fn new(dim: usize, cfg: &GptConfig, vb: VarBuilder) -> Result<Self> {
        Ok(LayerNorm {
            weight: vb.get_with_hints(dim, "weight", Init::Const(1.0))?,
            bias: vb.get_with_hints(dim, "bias", Init::Const(0.0))?,
            eps: cfg.layernorm_epsilon,
            kernels: cfg.kernels,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (dtype, x) = (x.dtype(), x.to_dtype(DType::F32)?);
        if self.kernels == Kernels::Fused {
            let y = kernels::layer_norm(&x, &self.weight, &self.bias, self.eps)?;
            return Ok(y.to_dtype(dtype)?);
        }
        let mean = x.mean_keepdim(D::Minus1)?;
        let centred = x.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        let y = normed
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)?;
        Ok(y.to_dtype(dtype)?)
    }
}

/// Multiplies `x` (B, T, C) by a seeded dropout mask; identity when off.
fn hidden_dropout(
    x: &Tensor,
    p: f32,
    ctx: &ForwardCtx,
    layer: u64,
    site: DropoutSite,
) -> Result<Tensor> {
    if !ctx.train || p == 0.0 {
        return Ok(x.clone());
    }
    let (b, t, c) = x.dims3()?;
    let stream = ctx.stream(layer, site);
    let mut mask = vec![0f32; b * t * c];
    for (row, chunk) in mask.chunks_mut(c).enumerate() {
        dropout_row(
            stream.row_key(&[(row / t) as u64, (row % t) as u64]),
            p,
            chunk,
        );
    }
    let mask = Tensor::from_vec(mask, (b, t, c), x.device())?.to_dtype(x.dtype())?;
    Ok((x * mask)?)
}

struct CausalSelfAttention {
    c_attn: Linear,
    c_proj: Linear,
    n_head: usize,
    layer: u64,
    cfg: GptConfig,
    fault: Fault,
}

impl CausalSelfAttention {
    fn new(cfg: &GptConfig, layer: usize, fault: Fault, vb: VarBuilder) -> Result<Self> {
        let c = cfg.hidden_size;
        Ok(CausalSelfAttention {
            fault,
            c_attn: Linear::new(
                c,
                3 * c,
                cfg.init_method_std,
                cfg.add_bias_linear,
                cfg,
                vb.pp("c_attn"),
            )?,
            c_proj: Linear::new(
                c,
                c,
                proj_std(cfg),
                cfg.add_bias_linear,
                cfg,
                vb.pp("c_proj"),
            )?,
            n_head: cfg.num_attention_heads,
            layer: layer as u64,
            cfg: cfg.clone(),
        })
    }

    fn forward(&self, x: &Tensor, ctx: &ForwardCtx) -> Result<Tensor> {
        let hs = x.dim(D::Minus1)? / self.n_head;
        let qkv = self.c_attn.forward(x)?; // (B, T, 3C)
        let p = self.fault.dropout(self.cfg.attention_dropout);
        let params = AttentionParams {
            softmax_scale: self.fault.softmax_scale_factor() / (hs as f32).sqrt(),
            dropout: (ctx.train && p > 0.0)
                .then(|| (p, ctx.stream(self.layer, DropoutSite::Attention))),
            max_naive_bytes: self.cfg.max_attention_bytes,
            kernels: self.cfg.kernels,
        };
        let backend = self.cfg.attention;
        let y = match self.fault {
            Fault::Bf16Attention => {
                let y = attention_qkv(&qkv.to_dtype(DType::BF16)?, self.n_head, backend, &params)?;
                y.to_dtype(qkv.dtype())?
            }
            _ => attention_qkv(&qkv, self.n_head, backend, &params)?,
        }; // (B, T, C)
        let y = self.c_proj.forward(&y)?;
        hidden_dropout(
            &y,
            self.fault.dropout(self.cfg.hidden_dropout),
            ctx,
            self.layer,
            DropoutSite::AttentionResidual,
        )
    }
}

struct Mlp {
    c_fc: Linear,
    c_proj: Linear,
    layer: u64,
    dropout: f32,
    kernels: Kernels,
}

impl Mlp {
    fn new(cfg: &GptConfig, layer: usize, fault: Fault, vb: VarBuilder) -> Result<Self> {
        let (c, f) = (cfg.hidden_size, cfg.ffn());
        Ok(Mlp {
            c_fc: Linear::new(
                c,
                f,
                cfg.init_method_std,
                cfg.add_bias_linear,
                cfg,
                vb.pp("c_fc"),
            )?,
            c_proj: Linear::new(
                f,
                c,
                proj_std(cfg),
                cfg.add_bias_linear,
                cfg,
                vb.pp("c_proj"),
            )?,
            layer: layer as u64,
            dropout: fault.dropout(cfg.hidden_dropout),
            kernels: cfg.kernels,
        })
    }

    fn forward(&self, x: &Tensor, ctx: &ForwardCtx) -> Result<Tensor> {
        let h = self.c_fc.forward(x)?; // (B, T, 4C)
        let h = match self.kernels {
            Kernels::Composed => h.gelu_erf()?,
            Kernels::Fused => kernels::gelu_erf(&h)?,
        };
        let y = self.c_proj.forward(&h)?; // (B, T, C)
        hidden_dropout(&y, self.dropout, ctx, self.layer, DropoutSite::MlpResidual)
    }
}

struct Block {
    ln_1: LayerNorm,
    attn: CausalSelfAttention,
    ln_2: LayerNorm,
    mlp: Mlp,
}

impl Block {
    fn new(cfg: &GptConfig, layer: usize, fault: Fault, vb: VarBuilder) -> Result<Self> {
        Ok(Block {
            ln_1: LayerNorm::new(cfg.hidden_size, cfg, vb.pp("ln_1"))?,
            attn: CausalSelfAttention::new(cfg, layer, fault, vb.pp("attn"))?,
            ln_2: LayerNorm::new(cfg.hidden_size, cfg, vb.pp("ln_2"))?,
            mlp: Mlp::new(cfg, layer, fault, vb.pp("mlp"))?,
        })
    }

    fn forward(&self, x: &Tensor, ctx: &ForwardCtx) -> Result<Tensor> {
        let x = (x + self.attn.forward(&self.ln_1.forward(x)?, ctx)?)?;
        let x = (&x + self.mlp.forward(&self.ln_2.forward(&x)?, ctx)?)?;
        Ok(x)
    }
}

/// Output projections get `std / sqrt(2 × layers)`: each residual branch adds variance, and this
/// keeps the residual stream's scale independent of depth (GPT-2 paper §2.3, Megatron-LM's
/// `scaled_init_method_normal`).
fn proj_std(cfg: &GptConfig) -> f64 {
    cfg.init_method_std / (2.0 * cfg.num_layers as f64).sqrt()
}

/// The reference GPT.
pub struct Gpt {
    wte: Tensor,
    wpe: Tensor,
    h: Vec<Block>,
    ln_f: LayerNorm,
    lm_head: Option<Linear>,
    cfg: GptConfig,
    fault: Fault,
}

impl Gpt {
    /// Builds the model, creating its parameters in `store`; `fault` is an injected bug
    /// ([`Fault::None`] for the reference model).
    ///
    /// # Errors
    /// Candle errors (shapes) only; the config is validated beforehand by `config`.
    pub fn new(cfg: &GptConfig, fault: Fault, store: &ParamStore, device: &Device) -> Result<Self> {
        let vb = store.var_builder(device);
        let emb = Init::Randn {
            mean: 0.0,
            stdev: cfg.init_method_std,
        };
        let wte = vb
            .pp("wte")
            .get_with_hints((cfg.vocab_size, cfg.hidden_size), "weight", emb)?;
        let wpe = vb
            .pp("wpe")
            .get_with_hints((cfg.seq_length, cfg.hidden_size), "weight", emb)?;
        let h = (0..cfg.num_layers)
            .map(|i| Block::new(cfg, i, fault, vb.pp("h").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let ln_f = LayerNorm::new(cfg.hidden_size, cfg, vb.pp("ln_f"))?;
        let lm_head = match cfg.tie_embeddings {
            true => None,
            false => Some(Linear::new(
                cfg.hidden_size,
                cfg.vocab_size,
                cfg.init_method_std,
                false,
                cfg,
                vb.pp("lm_head"),
            )?),
        };
        Ok(Gpt {
            wte,
            wpe,
            h,
            ln_f,
            lm_head,
            cfg: cfg.clone(),
            fault,
        })
    }

    /// Returns the logits `(B, T, vocab)` in f32 for token ids `idx` `(B, T)` (u32).
    ///
    /// # Errors
    /// Candle errors; [`crate::Error::AttentionTooLarge`] from the naive attention cap.
    pub fn forward(&self, idx: &Tensor, ctx: &ForwardCtx) -> Result<Tensor> {
        let (b, t) = idx.dims2()?;
        let dtype = match self.cfg.dtype {
            ComputeDtype::F32 => DType::F32,
            ComputeDtype::Bf16 => DType::BF16,
        };
        let tok = self
            .wte
            .embedding(&idx.flatten_all()?)?
            .reshape((b, t, self.cfg.hidden_size))?; // (B, T, C)
        let pos = self.wpe.narrow(0, 0, t)?; // (T, C)
        let x = match self.cfg.kernels {
            Kernels::Composed => tok.broadcast_add(&pos)?,
            // (B, T·C) + (T·C): the position table is a bias over flattened sequences.
            Kernels::Fused => kernels::add_bias(&tok.reshape((b, ()))?, &pos.flatten_all()?)?
                .reshape((b, t, self.cfg.hidden_size))?,
        }
        .to_dtype(dtype)?;
        let mut x = hidden_dropout(
            &x,
            self.fault.dropout(self.cfg.hidden_dropout),
            ctx,
            u64::MAX,
            DropoutSite::Embedding,
        )?;
        for block in &self.h {
            x = block.forward(&x, ctx)?;
        }
        let x = self.ln_f.forward(&x)?;
        let logits = match &self.lm_head {
            Some(head) => head.forward(&x)?,
            None => matmul_wt(&x, &self.wte.to_dtype(dtype)?, self.cfg.kernels)?, // (B, T, vocab)
        };
        Ok(logits.to_dtype(DType::F32)?)
    }

    /// Returns the mean next-token cross-entropy (nats) of `idx` against `targets`, both `(B, T)`.
    ///
    /// # Errors
    /// As [`Gpt::forward`].
    pub fn loss(&self, idx: &Tensor, targets: &Tensor, ctx: &ForwardCtx) -> Result<Tensor> {
        let logits = self.forward(idx, ctx)?;
        let (b, t, v) = logits.dims3()?;
        let logits = logits.reshape((b * t, v))?; // (B·T, vocab)
        let targets = targets.flatten_all()?; // (B·T)
        Ok(match self.cfg.kernels {
            Kernels::Composed => candle_nn::loss::cross_entropy(&logits, &targets)?,
            Kernels::Fused => kernels::cross_entropy(&logits, &targets)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AttentionBackend, RunConfig};

    fn tokens(b: usize, t: usize, vocab: usize) -> Tensor {
        shifted_tokens(b, t, vocab, 0)
    }

    fn shifted_tokens(b: usize, t: usize, vocab: usize, shift: usize) -> Tensor {
        let ids: Vec<u32> = (0..b * t)
            .map(|i| ((i * 7 + 3 + shift) % vocab) as u32)
            .collect();
        Tensor::from_vec(ids, (b, t), &Device::Cpu).unwrap()
    }

    #[test]
    fn small_preset_has_842_496_parameters() {
        // d128, 4 layers, vocab 256, seq 128, tied head: the PyTorch reference's 842k model.
        let cfg = RunConfig::preset("small").unwrap().model;
        let store = ParamStore::new(1, 0);
        Gpt::new(&cfg, Fault::None, &store, &Device::Cpu).unwrap();
        let n: usize = store.vars().iter().map(|(_, v)| v.elem_count()).sum();
        assert_eq!(n, 842_496);
    }

    #[test]
    fn logits_have_batch_time_vocab_shape() {
        let cfg = RunConfig::preset("gate").unwrap().model;
        let model = Gpt::new(&cfg, Fault::None, &ParamStore::new(1, 0), &Device::Cpu).unwrap();
        let logits = model
            .forward(
                &tokens(3, cfg.seq_length, cfg.vocab_size),
                &ForwardCtx::eval(),
            )
            .unwrap();
        assert_eq!(logits.dims(), &[3, cfg.seq_length, cfg.vocab_size]);
    }

    #[test]
    fn initial_loss_is_near_ln_vocab() {
        let cfg = RunConfig::preset("gate").unwrap().model;
        let model = Gpt::new(&cfg, Fault::None, &ParamStore::new(1, 0), &Device::Cpu).unwrap();
        // Targets differ from inputs: with a tied head, predicting the input token itself is
        // easier than chance from the start.
        let x = tokens(4, cfg.seq_length, cfg.vocab_size);
        let y = shifted_tokens(4, cfg.seq_length, cfg.vocab_size, 1);
        let loss: f32 = model
            .loss(&x, &y, &ForwardCtx::eval())
            .unwrap()
            .to_scalar()
            .unwrap();
        let ln_v = (cfg.vocab_size as f32).ln();
        assert!((loss - ln_v).abs() < 0.1, "loss {loss} vs ln(vocab) {ln_v}");
    }

    /// The candle-nn 0.11 trap: `LayerNorm` and `softmax_last_dim` have no backward, so some
    /// parameters silently get no gradient. Every parameter must get a finite, non-zero one.
    #[test]
    fn every_parameter_receives_a_finite_nonzero_gradient() {
        for (tie, dropout) in [(true, 0.0), (false, 0.1)] {
            let mut cfg = RunConfig::preset("gate").unwrap().model;
            cfg.tie_embeddings = tie;
            cfg.attention_dropout = dropout;
            cfg.hidden_dropout = dropout;
            let store = ParamStore::new(1, 0);
            let model = Gpt::new(&cfg, Fault::None, &store, &Device::Cpu).unwrap();
            let x = tokens(2, cfg.seq_length, cfg.vocab_size);
            let ctx = ForwardCtx {
                seed: 3,
                step: 0,
                micro: 0,
                train: true,
            };
            let grads = model.loss(&x, &x, &ctx).unwrap().backward().unwrap();
            for (name, var) in store.vars() {
                let g = grads
                    .get(var.as_tensor())
                    .unwrap_or_else(|| panic!("{name}: no gradient"));
                let sq: f32 = g.sqr().unwrap().sum_all().unwrap().to_scalar().unwrap();
                assert!(
                    sq.is_finite() && sq > 0.0,
                    "{name}: |g|² = {sq} (tie {tie})"
                );
            }
        }
    }

    /// Fused kernels are the composed ops rounded differently: with shared parameters (one
    /// store), loss and every gradient agree to f32 rounding, for both attention backends.
    #[test]
    fn fused_and_composed_models_agree_on_loss_and_every_gradient() {
        for attention in [AttentionBackend::Naive, AttentionBackend::Flash] {
            let mut cfg = RunConfig::preset("gate").unwrap().model;
            cfg.attention = attention;
            let store = ParamStore::new(1, 0);
            let x = tokens(2, cfg.seq_length, cfg.vocab_size);
            let y = shifted_tokens(2, cfg.seq_length, cfg.vocab_size, 1);
            let run = |kernels| {
                let cfg = GptConfig {
                    kernels,
                    ..cfg.clone()
                };
                let model = Gpt::new(&cfg, Fault::None, &store, &Device::Cpu).unwrap();
                let loss = model.loss(&x, &y, &ForwardCtx::eval()).unwrap();
                (loss.to_scalar::<f32>().unwrap(), loss.backward().unwrap())
            };
            let (lc, gc) = run(Kernels::Composed);
            let (lf, gf) = run(Kernels::Fused);
            approx::assert_abs_diff_eq!(lc, lf, epsilon = 1e-5);
            for (name, var) in store.vars() {
                let (a, b) = (
                    gc.get(var.as_tensor()).unwrap(),
                    gf.get(var.as_tensor()).unwrap(),
                );
                let max_abs = |t: &Tensor| -> f32 {
                    t.abs().unwrap().max_all().unwrap().to_scalar().unwrap()
                };
                let (scale, err) = (max_abs(a), max_abs(&(a - b).unwrap()));
                assert!(
                    err <= 1e-4 * scale.max(1e-3),
                    "{name} ({attention:?}): max |Δg| {err:e} vs max |g| {scale:e}"
                );
            }
        }
    }

    #[test]
    fn dropout_masks_are_reproducible_and_step_dependent() {
        let mut cfg = RunConfig::preset("gate").unwrap().model;
        cfg.hidden_dropout = 0.1;
        cfg.attention_dropout = 0.1;
        let model = Gpt::new(&cfg, Fault::None, &ParamStore::new(1, 0), &Device::Cpu).unwrap();
        let x = tokens(2, cfg.seq_length, cfg.vocab_size);
        let at = |step| -> f32 {
            let ctx = ForwardCtx {
                seed: 3,
                step,
                micro: 0,
                train: true,
            };
            model.loss(&x, &x, &ctx).unwrap().to_scalar().unwrap()
        };
        assert_eq!(at(0).to_bits(), at(0).to_bits());
        assert_ne!(at(0), at(1));
    }
}
