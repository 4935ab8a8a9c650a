//! Causal self-attention kernels behind one seam: `softmax(q kᵀ · scale + causal) · v`, with
//! optional attention dropout.
//!
//! The model calls [`attention_qkv`] with its `(B, T, 3C)` projections and an
//! [`AttentionBackend`]; this module splits the heads, picks the kernel ([`attention`], on
//! `(B, nh, T, hs)` tensors) and merges the heads back. [`attention_naive`] is the reference (it
//! materialises the `T × T` scores and is what every faster kernel is tested against);
//! `naive_fused` is the same arithmetic as one op that skips the masked blocks. `flash` is the
//! fused tiled kernel. Both draw attention-dropout masks from [`crate::rng`] keyed by
//! `(batch, head, query)` rows and `key` columns, so with dropout on they drop exactly the same
//! elements.
//!
//! This module owns the arithmetic of attention and its heads; projections and residuals are
//! `model`'s.

pub mod bench;
mod flash;
mod naive_fused;

pub use flash::flash_attention;

use crate::config::{AttentionBackend, Kernels};
use crate::error::{Error, Result};
use crate::kernels;
use crate::rng::{dropout_row, DropoutStream};
use candle_core::{DType, Tensor, D};

/// Per-call attention settings that are not tensors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionParams {
    /// Multiplier of `q kᵀ`, normally `1 / sqrt(head_dim)`.
    pub softmax_scale: f32,
    /// Attention-dropout probability and the stream its mask comes from; `None` when off or in eval.
    pub dropout: Option<(f32, DropoutStream)>,
    /// Largest score-matrix footprint (bytes) the naive path may allocate.
    pub max_naive_bytes: u64,
    /// Whether the naive path's masked softmax is the fused op or composed candle ops.
    pub kernels: Kernels,
}

/// Computes causal attention with the chosen backend.
///
/// `q`, `k`, `v` are `(B, nh, T, hs)`; the result is `(B, nh, T, hs)` in `q`'s dtype.
///
/// # Errors
/// [`Error::AttentionTooLarge`] when the naive path would exceed its memory cap; candle errors on
/// shape mismatch.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    backend: AttentionBackend,
    params: &AttentionParams,
) -> Result<Tensor> {
    match backend {
        AttentionBackend::Naive => attention_naive(q, k, v, params),
        AttentionBackend::Flash => flash_attention(q, k, v, params),
    }
}

/// The shape of one attention call, `(b, nh, t, d)`: every `(B, nh, T, hs)` buffer of a kernel
/// is row-major in it, one head's `T × d` rows after another.
#[derive(Debug, Clone, Copy)]
struct Dims {
    b: usize,
    nh: usize,
    t: usize,
    d: usize,
}

impl Dims {
    /// Heads of the call, `B · nh`.
    fn heads(&self) -> usize {
        self.b * self.nh
    }

    /// Elements of one `(B, nh, T, d)` buffer.
    fn len(&self) -> usize {
        self.heads() * self.t * self.d
    }

    fn shape(&self) -> candle_core::Shape {
        candle_core::Shape::from((self.b, self.nh, self.t, self.d))
    }

    /// Returns head `bh`'s rows of a `(B, nh, T, d)` buffer.
    fn head<'a>(&self, x: &'a [f32], bh: usize) -> &'a [f32] {
        let len = self.t * self.d;
        &x[bh * len..(bh + 1) * len]
    }

    /// Returns the attention-dropout key of query `row` of head `bh` ([`dropout_row_key`]).
    fn row_key(&self, stream: &DropoutStream, bh: usize, row: usize) -> u64 {
        dropout_row_key(stream, self.nh, bh, row)
    }
}

/// Returns the attention-dropout key of query `row` of head `bh` (of `nh` per sequence): the
/// stream's row key `(b, h, row)`. Every kernel draws its mask rows from this key, which is what
/// makes them drop the same elements.
fn dropout_row_key(stream: &DropoutStream, nh: usize, bh: usize, row: usize) -> u64 {
    stream.row_key(&[(bh / nh) as u64, (bh % nh) as u64, row as u64])
}

/// Computes causal attention from the projections `qkv` `(B, T, 3C)` (q, k and v side by side,
/// each `n_head` heads of `C / n_head`) and returns `(B, T, C)` with the heads side by side: what
/// the model's attention layer needs between its two linear layers.
///
/// The heads are copied out, attention runs, and they are merged back. With the naive backend,
/// fused kernels, f32 and a shape `naive_fused` takes (at most 512 positions, among others), q,
/// k and v are copied out as one tensor for `naive_fused`, whose gradient comes back as one:
/// three splits would each pad their gradient with zeros to the projections' width, for autograd
/// to add up. Same bits either way.
///
/// # Errors
/// As [`attention`]; candle errors when `qkv`'s width is not `3 · n_head · hs`.
pub fn attention_qkv(
    qkv: &Tensor,
    n_head: usize,
    backend: AttentionBackend,
    params: &AttentionParams,
) -> Result<Tensor> {
    let (b, t, c3) = qkv.dims3()?;
    let c = c3 / 3;
    if backend == AttentionBackend::Naive
        && params.kernels == Kernels::Fused
        && qkv.dtype() == DType::F32
        && naive_fused::takes(t, c.checked_div(n_head).unwrap_or(0))
    {
        check_naive_cap(b, n_head, t, params)?;
        let y = naive_fused::naive_fused(&kernels::split_qkv_heads(qkv, n_head)?, params)?;
        return kernels::merge_heads(&y);
    }
    let heads = |i: usize| -> Result<Tensor> {
        Ok(match params.kernels {
            Kernels::Fused => kernels::split_heads(qkv, n_head, i)?,
            // (B, T, C) -> (B, T, nh, hs) -> (B, nh, T, hs)
            Kernels::Composed => qkv
                .narrow(D::Minus1, i * c, c)?
                .reshape((b, t, n_head, c / n_head))?
                .transpose(1, 2)?
                .contiguous()?,
        })
    };
    let y = attention(&heads(0)?, &heads(1)?, &heads(2)?, backend, params)?; // (B, nh, T, hs)
    Ok(match params.kernels {
        Kernels::Fused => kernels::merge_heads(&y)?,
        Kernels::Composed => y.transpose(1, 2)?.reshape((b, t, c))?,
    })
}

/// Refuses a naive attention whose score matrices would pass the configured cap.
fn check_naive_cap(b: usize, nh: usize, t: usize, params: &AttentionParams) -> Result<()> {
    let bytes = naive_attention_bytes(b, nh, t, params.dropout.is_some());
    if bytes > params.max_naive_bytes {
        return Err(Error::AttentionTooLarge {
            seq_len: t,
            bytes,
            cap: params.max_naive_bytes,
        });
    }
    Ok(())
}

// The peak count lives with the rest of the training budget, which refuses a config at load.
pub use crate::config::footprint::naive_attention_bytes;

/// Computes causal attention the textbook way, materialising the `T × T` scores.
///
/// Softmax runs in f32 whatever the input dtype. This is the reference the fused kernels are
/// tested against, and what "no-flash" means in a flash-vs-no-flash experiment. With fused
/// kernels, f32 inputs and a shape it takes (at most 512 positions, among others), one op
/// (`naive_fused`) computes it with the same bits and skips the products' masked blocks (it
/// takes q, k and v stacked).
///
/// # Errors
/// As [`attention`].
pub fn attention_naive(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    params: &AttentionParams,
) -> Result<Tensor> {
    let (b, nh, t, hs) = q.dims4()?;
    check_naive_cap(b, nh, t, params)?;
    let in_dtype = q.dtype();
    if params.kernels == Kernels::Fused && in_dtype == DType::F32 && naive_fused::takes(t, hs) {
        return naive_fused::naive_fused(&Tensor::stack(&[q, k, v], 0)?, params);
    }
    let scores = q.matmul(&k.t()?)?.to_dtype(DType::F32)?; // (B, nh, T, T)
    let mut probs = match params.kernels {
        Kernels::Composed => {
            let scores = (scores * f64::from(params.softmax_scale))?;
            let mask = causal_mask(t, q.device())?;
            candle_nn::ops::softmax(&scores.broadcast_add(&mask)?, D::Minus1)?
        }
        Kernels::Fused => kernels::causal_softmax(&scores, params.softmax_scale)?,
    };
    if let Some((p, stream)) = params.dropout {
        probs = (probs * attention_dropout_mask(b, nh, t, p, &stream, q.device())?)?;
    }
    // (B, nh, T, hs)
    Ok(probs.to_dtype(in_dtype)?.matmul(v)?)
}

/// Returns the `(T, T)` additive causal mask: 0 on and below the diagonal, −∞ above.
fn causal_mask(t: usize, device: &candle_core::Device) -> Result<Tensor> {
    let data: Vec<f32> = (0..t)
        .flat_map(|i| (0..t).map(move |j| if j <= i { 0.0 } else { f32::NEG_INFINITY }))
        .collect();
    Ok(Tensor::from_vec(data, (t, t), device)?)
}

/// Returns the `(B, nh, T, T)` attention-dropout factors (0 or `1/(1-p)`), element
/// `(b, h, q, k)` from row key `(b, h, q)` and column `k`.
pub fn attention_dropout_mask(
    b: usize,
    nh: usize,
    t: usize,
    p: f32,
    stream: &DropoutStream,
    device: &candle_core::Device,
) -> Result<Tensor> {
    let mut data = vec![0f32; b * nh * t * t];
    for (row, chunk) in data.chunks_mut(t).enumerate() {
        dropout_row(dropout_row_key(stream, nh, row / t, row % t), p, chunk);
    }
    Ok(Tensor::from_vec(data, (b, nh, t, t), device)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn params() -> AttentionParams {
        AttentionParams {
            softmax_scale: 0.5,
            dropout: None,
            max_naive_bytes: 1 << 30,
            kernels: Kernels::Composed,
        }
    }

    #[test]
    fn first_query_attends_only_to_itself() {
        let dev = Device::Cpu;
        let q = Tensor::randn(0f32, 1.0, (1, 1, 5, 4), &dev).unwrap();
        let k = Tensor::randn(0f32, 1.0, (1, 1, 5, 4), &dev).unwrap();
        let v = Tensor::randn(0f32, 1.0, (1, 1, 5, 4), &dev).unwrap();
        let y = attention_naive(&q, &k, &v, &params()).unwrap();
        let y0: Vec<f32> = y
            .get(0)
            .unwrap()
            .get(0)
            .unwrap()
            .get(0)
            .unwrap()
            .to_vec1()
            .unwrap();
        let v0: Vec<f32> = v
            .get(0)
            .unwrap()
            .get(0)
            .unwrap()
            .get(0)
            .unwrap()
            .to_vec1()
            .unwrap();
        for (a, b) in y0.iter().zip(&v0) {
            approx::assert_abs_diff_eq!(a, b, epsilon = 1e-6);
        }
    }

    #[test]
    fn naive_refuses_past_memory_cap() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((2, 4, 64, 8), DType::F32, &dev).unwrap();
        let p = AttentionParams {
            max_naive_bytes: 1000,
            ..params()
        };
        let err = attention_naive(&x, &x, &x, &p).unwrap_err();
        assert!(
            matches!(err, Error::AttentionTooLarge { seq_len: 64, bytes, cap: 1000 } if bytes == 2 * 4 * 64 * 64 * 4 * 18),
            "{err}"
        );
    }
}
