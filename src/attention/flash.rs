//! Fused causal attention on the CPU, FlashAttention-2 style (Dao 2023,
//! <https://arxiv.org/abs/2307.08691>), as a candle custom op with its own backward.
//!
//! The forward walks each `(batch, head)` in blocks of [`FWD_Q`] query rows and, inside a block,
//! over key tiles of [`FWD_K`] columns, keeping a running row max and row sum (online softmax)
//! so that only a `FWD_Q × FWD_K` tile of scores ever exists. It stores the log-sum-exp of
//! every row; the backward recomputes the probabilities tile by tile from `q`, `k` and that
//! log-sum-exp (`P = exp(S − LSE)`), with `D_i = rowsum(dO_i ∘ O_i)` and
//! `dS = P ∘ (dP − D)`. Tile products go through the `gemm` crate (the same SIMD micro-kernels
//! candle's matmul uses) with its own threading off; rayon splits the work so that every output
//! element is computed by exactly one task in a fixed order, which makes the bits independent of
//! the thread count.
//!
//! Attention dropout is drawn inside the tiles from [`crate::rng`] with the same `(b, h, q)` row
//! keys and `k` columns as [`super::attention_dropout_mask`]; as in FA2 it multiplies the
//! normalised probabilities, so the log-sum-exp is that of the undropped softmax.
//!
//! This module owns the kernel; the seam, the naive reference and the memory cap are `mod.rs`'s.

use super::{AttentionParams, Dims};
use crate::error::{Error, Result};
use crate::kernels::gemm::{tile_gemm, Mat};
use crate::kernels::math::exp_fused as exp;
use crate::kernels::slices::wide;
use crate::rng::keep;
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Tensor};
use half::bf16;
use rayon::prelude::*;
use std::sync::Mutex;

/// Query rows per forward task and tile, and key columns per forward tile. A 128 × 256 f32
/// score tile is 128 KiB, which stays in L2 beside the `q`, `k`, `v` tiles. A grid at T = 4k–8k
/// on two threads (AVX2) put the forward at its fastest here: 64 × 256 was 6–8 % slower,
/// 64 × 128 12–23 %, 32 × 256 15–40 %, from per-row softmax work (row max, rescale) and gemm's
/// per-call packing, which larger tiles amortise; 128 × 512 and 256 × 512 were no faster.
const FWD_Q: usize = 128;
/// See [`FWD_Q`].
const FWD_K: usize = 256;
/// Query rows and key columns per backward tile (`P` and `dS` of one tile: 256 KiB). In the
/// same grid 64 × 256 was 3–8 % slower and 128 × 128 level.
const BWD_Q: usize = 128;
/// See [`BWD_Q`].
const BWD_K: usize = 256;

/// Computes causal attention with the fused kernel.
///
/// `q`, `k`, `v` are `(B, nh, T, hs)` f32 or bf16 tensors of one dtype; the result has the same
/// shape and dtype. Scores, softmax and accumulation run in f32. Gradients flow to all three
/// inputs through the op's own backward, which never materialises `T × T`.
///
/// Time: `O(B · nh · T² · hs / 2)`. Extra memory: `O(B · nh · T · hs)` (f32 copies of the
/// inputs, the log-sum-exp, the gradients), never `O(T²)`.
///
/// # Errors
/// [`Error::AttentionInput`] when shapes or dtypes differ, a dimension is zero, the dtype is not
/// f32/bf16, or the dropout rate is outside `[0, 1)`; candle errors when the tensors are not on
/// the CPU.
pub fn flash_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    params: &AttentionParams,
) -> Result<Tensor> {
    let input_error = |reason: String| Error::AttentionInput { reason };
    let (b, nh, t, hs) = q.dims4()?;
    if k.dims() != q.dims() || v.dims() != q.dims() {
        return Err(input_error(format!(
            "q, k, v must have one (B, nh, T, hs) shape, got {:?}, {:?}, {:?}",
            q.dims(),
            k.dims(),
            v.dims()
        )));
    }
    if b * nh * t * hs == 0 {
        return Err(input_error(format!("empty input of shape {:?}", q.dims())));
    }
    let dtype = q.dtype();
    if k.dtype() != dtype || v.dtype() != dtype || !matches!(dtype, DType::F32 | DType::BF16) {
        return Err(input_error(format!(
            "q, k, v must all be f32 or all bf16, got {:?}, {:?}, {:?}",
            q.dtype(),
            k.dtype(),
            v.dtype()
        )));
    }
    if let Some((p, _)) = params.dropout {
        if !(0.0..1.0).contains(&p) {
            return Err(input_error(format!("dropout rate {p} is outside [0, 1)")));
        }
    }
    let op = FlashOp {
        dims: Dims { b, nh, t, d: hs },
        params: *params,
        lse: Mutex::new(None),
    };
    Ok(q.apply_op3(k, v, op)?)
}

impl Dims {
    /// Returns the dropout rate, keep scale and row key of query `row` of head `bh`, if dropout
    /// is on.
    fn dropout_row(&self, params: &AttentionParams, bh: usize, row: usize) -> Option<Dropout> {
        params.dropout.map(|(p, stream)| Dropout {
            p,
            scale: 1.0 / (1.0 - p),
            key: self.row_key(&stream, bh, row),
        })
    }
}

/// One query row's dropout draw: element `k` survives iff `keep(key, k, p)`.
#[derive(Debug, Clone, Copy)]
struct Dropout {
    p: f32,
    scale: f32,
    key: u64,
}

impl Dropout {
    /// Returns the factor (0 or `1/(1-p)`) of column `col`, as the naive mask holds it.
    #[inline]
    fn factor(&self, col: usize) -> f32 {
        if keep(self.key, col as u64, self.p) {
            self.scale
        } else {
            0.0
        }
    }
}

/// The custom op. The log-sum-exp is a side output candle has no slot for, so the forward
/// leaves it here for the backward (and the backward recomputes it if it is missing).
struct FlashOp {
    dims: Dims,
    params: AttentionParams,
    lse: Mutex<Option<Vec<f32>>>,
}

impl CustomOp3 for FlashOp {
    fn name(&self) -> &'static str {
        "lossdiff-flash-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (q, k, v) = (gather(s1, l1)?, gather(s2, l2)?, gather(s3, l3)?);
        let (out, lse) = forward(&q, &k, &v, self.dims, &self.params);
        if let Ok(mut slot) = self.lse.lock() {
            *slot = Some(lse);
        }
        let storage = match s1 {
            CpuStorage::BF16(_) => {
                CpuStorage::BF16(out.iter().map(|&x| bf16::from_f32(x)).collect())
            }
            _ => CpuStorage::F32(out),
        };
        Ok((storage, self.dims.shape()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        out: &Tensor,
        grad_out: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (qf, kf, vf) = (to_f32_vec(q)?, to_f32_vec(k)?, to_f32_vec(v)?);
        let (of, dof) = (to_f32_vec(out)?, to_f32_vec(grad_out)?);
        let saved = self.lse.lock().ok().and_then(|slot| slot.clone());
        let lse = match saved {
            Some(lse) => lse,
            None => forward(&qf, &kf, &vf, self.dims, &self.params).1,
        };
        let grads = backward(
            &Inputs {
                q: &qf,
                k: &kf,
                v: &vf,
            },
            &of,
            &dof,
            &lse,
            self.dims,
            &self.params,
        );
        let dtype = q.dtype();
        let wrap = |g: Vec<f32>| {
            Tensor::from_vec(g, self.dims.shape(), q.device()).and_then(|t| t.to_dtype(dtype))
        };
        Ok((
            Some(wrap(grads.dq)?),
            Some(wrap(grads.dk)?),
            Some(wrap(grads.dv)?),
        ))
    }
}

/// Copies a 4-D f32 or bf16 storage into a row-major f32 buffer, honouring offset and strides.
fn gather(storage: &CpuStorage, layout: &Layout) -> candle_core::Result<Vec<f32>> {
    match storage {
        CpuStorage::F32(data) => Ok(gather_with(data, layout, |x| x)),
        CpuStorage::BF16(data) => Ok(gather_with(data, layout, bf16::to_f32)),
        other => Err(candle_core::Error::Msg(format!(
            "flash attention takes f32 or bf16, got {:?}",
            other.dtype()
        ))),
    }
}

fn gather_with<T: Copy>(data: &[T], layout: &Layout, f: impl Fn(T) -> f32) -> Vec<f32> {
    if let Some((start, end)) = layout.contiguous_offsets() {
        return data[start..end].iter().map(|&x| f(x)).collect();
    }
    // Only 4-D tensors reach here (flash_attention checked `dims4`).
    let (dims, stride) = (layout.dims(), layout.stride());
    let mut out = Vec::with_capacity(layout.shape().elem_count());
    for i0 in 0..dims[0] {
        for i1 in 0..dims[1] {
            for i2 in 0..dims[2] {
                let base = layout.start_offset() + i0 * stride[0] + i1 * stride[1] + i2 * stride[2];
                out.extend((0..dims[3]).map(|i3| f(data[base + i3 * stride[3]])));
            }
        }
    }
    out
}

fn to_f32_vec(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()
}

/// `q`, `k`, `v` as contiguous f32 `(B, nh, T, d)` buffers.
struct Inputs<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
}

/// Runs the forward; returns the output `(B, nh, T, d)` and the log-sum-exp `(B, nh, T)`.
///
/// Tasks are `(b, h, query block)`; each writes its own rows of both buffers.
fn forward(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    dims: Dims,
    params: &AttentionParams,
) -> (Vec<f32>, Vec<f32>) {
    let (t, d) = (dims.t, dims.d);
    let mut out = vec![0f32; dims.len()];
    let mut lse = vec![0f32; dims.b * dims.nh * t];
    let head = t * d;
    out.par_chunks_mut(head)
        .zip(lse.par_chunks_mut(t))
        .enumerate()
        .for_each(|(bh, (out_h, lse_h))| {
            let inputs = Inputs {
                q: &q[bh * head..(bh + 1) * head],
                k: &k[bh * head..(bh + 1) * head],
                v: &v[bh * head..(bh + 1) * head],
            };
            out_h
                .par_chunks_mut(FWD_Q * d)
                .zip(lse_h.par_chunks_mut(FWD_Q))
                .enumerate()
                .for_each(|(qb, (o, l))| {
                    forward_block(&inputs, dims, params, bh, qb * FWD_Q, o, l);
                });
        });
    (out, lse)
}

/// Computes one block of query rows starting at `q0` of head `bh` into `out` and `lse`.
fn forward_block(
    x: &Inputs<'_>,
    dims: Dims,
    params: &AttentionParams,
    bh: usize,
    q0: usize,
    out: &mut [f32],
    lse: &mut [f32],
) {
    let d = dims.d;
    let rows = lse.len();
    let q_end = q0 + rows;
    let q_blk = Mat::rows(&x.q[q0 * d..q_end * d], d);
    let dropout: Vec<Option<Dropout>> = (q0..q_end)
        .map(|r| dims.dropout_row(params, bh, r))
        .collect();
    let mut row_max = vec![f32::NEG_INFINITY; rows];
    let mut row_sum = vec![0f32; rows];
    let mut s = vec![0f32; rows * FWD_K];
    // Keys past the block's last query are masked for every row: those tiles are skipped.
    for k0 in (0..q_end).step_by(FWD_K) {
        let cols = FWD_K.min(q_end - k0);
        let s = &mut s[..rows * cols];
        let k_blk = Mat::transposed(&x.k[k0 * d..(k0 + cols) * d], d);
        tile_gemm(
            (rows, cols, d),
            s,
            cols,
            false,
            q_blk,
            k_blk,
            params.softmax_scale,
        );
        wide(
            #[inline(always)]
            || {
                online_softmax_tile(
                    s,
                    (q0, k0, cols),
                    &dropout,
                    &mut row_max,
                    &mut row_sum,
                    out,
                    d,
                )
            },
        );
        let v_blk = Mat::rows(&x.v[k0 * d..(k0 + cols) * d], d);
        tile_gemm(
            (rows, d, cols),
            out,
            d,
            true,
            Mat::rows(s, cols),
            v_blk,
            1.0,
        );
    }
    for r in 0..rows {
        // Row r always sees key r, so its sum is at least exp(0) = 1 relative to its max.
        let inv = 1.0 / row_sum[r];
        out[r * d..(r + 1) * d].iter_mut().for_each(|o| *o *= inv);
        lse[r] = row_max[r] + row_sum[r].ln();
    }
}

/// Folds one tile of scores into the running softmax of its rows: the new row max, the
/// rescaled running sum and output rows, and the tile's `exp(s − max)` (dropped, when dropout is
/// on) left in `s` for the `P V` product. Future columns end up 0.
///
/// Inlined into one [`wide`] call per tile, so the row max and the exponentials run on the
/// widest vector unit; the arithmetic is the same on every path.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn online_softmax_tile(
    s: &mut [f32],
    (q0, k0, cols): (usize, usize, usize),
    dropout: &[Option<Dropout>],
    row_max: &mut [f32],
    row_sum: &mut [f32],
    out: &mut [f32],
    d: usize,
) {
    for (r, s_row) in s.chunks_mut(cols).enumerate() {
        // Columns `k0 + c > q0 + r` are in the causal future.
        let valid = (q0 + r + 1).saturating_sub(k0).min(cols);
        let new_max = row_max[r].max(max_lanes(&s_row[..valid]));
        if new_max == f32::NEG_INFINITY {
            s_row.fill(0.0);
            continue;
        }
        let rescale = (row_max[r] - new_max).exp();
        row_max[r] = new_max;
        let sum = exp_shifted_lanes(&mut s_row[..valid], new_max);
        s_row[valid..].fill(0.0);
        row_sum[r] = row_sum[r] * rescale + sum;
        if rescale != 1.0 {
            out[r * d..(r + 1) * d]
                .iter_mut()
                .for_each(|o| *o *= rescale);
        }
        if let Some(drop) = dropout[r] {
            for (c, x) in s_row[..valid].iter_mut().enumerate() {
                *x *= drop.factor(k0 + c);
            }
        }
    }
}

/// The largest of `xs` (NaNs ignored, as `f32::max` does), on 8 lanes. `max` is exact, so any
/// grouping gives the sequential fold's value; only `±0` may come out with either sign, and
/// both shift the exponentials identically.
#[inline(always)]
fn max_lanes(xs: &[f32]) -> f32 {
    const LANES: usize = 8;
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(chunk) {
            *a = a.max(x);
        }
    }
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    acc.iter().fold(tail, |a, &b| a.max(b))
}

/// Replaces each `x` by `exp(x − shift)` and returns their sum, on 8 SIMD lanes.
///
/// The exponentials are the kernel's scalar hot spot (one per score, forward and backward), and
/// libm's `expf` does not vectorise. Callers run it inside [`wide`], compiled for the widest
/// vector unit the CPU has; the arithmetic and the 8-lane summation order are the same on every
/// path, so every path gives the same bits.
#[inline(always)]
fn exp_shifted_lanes(xs: &mut [f32], shift: f32) -> f32 {
    // Two passes: a plain loop is what the loop vectoriser turns into vector exponentials (the
    // 8-lane form below left them scalar), and the sum then adds the same values in the same
    // order as one fused pass would.
    for x in xs.iter_mut() {
        *x = exp(*x - shift);
    }
    const LANES: usize = 8;
    let mut acc = [0f32; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (a, x) in acc.iter_mut().zip(chunk) {
            *a += *x;
        }
    }
    for (a, x) in acc.iter_mut().zip(chunks.remainder()) {
        *a += *x;
    }
    acc.iter().sum()
}

/// Gradients of the three inputs, each `(B, nh, T, d)` f32.
struct Grads {
    dq: Vec<f32>,
    dk: Vec<f32>,
    dv: Vec<f32>,
}

/// Runs the FA2 backward from the saved log-sum-exp.
///
/// Two task decompositions give the same bits, because each tile's arithmetic is the same and
/// every gradient block sums its tiles in the same ascending order in both:
/// - per head (one rayon task per `(b, h)`, one pass computing `dq`, `dk`, `dv` together): the
///   least work, used when there are at least two heads per thread;
/// - split (`dk`/`dv` tasks per `(b, h, key block)`, then `dq` tasks per `(b, h, query block)`):
///   recomputes each tile twice, but keeps all threads busy when `B · nh` is small.
///
/// Which one runs therefore never changes the result, only the speed.
fn backward(
    x: &Inputs<'_>,
    out: &[f32],
    grad_out: &[f32],
    lse: &[f32],
    dims: Dims,
    params: &AttentionParams,
) -> Grads {
    let split = dims.b * dims.nh < 2 * rayon::current_num_threads();
    backward_with(x, out, grad_out, lse, dims, params, split)
}

fn backward_with(
    x: &Inputs<'_>,
    out: &[f32],
    grad_out: &[f32],
    lse: &[f32],
    dims: Dims,
    params: &AttentionParams,
    split: bool,
) -> Grads {
    let (t, d) = (dims.t, dims.d);
    let head = t * d;
    let mut g = Grads {
        dq: vec![0f32; dims.len()],
        dk: vec![0f32; dims.len()],
        dv: vec![0f32; dims.len()],
    };
    let ctx = |bh| HeadBwd::new(x, out, grad_out, lse, dims, params, bh);
    if !split {
        g.dq.par_chunks_mut(head)
            .zip(g.dk.par_chunks_mut(head))
            .zip(g.dv.par_chunks_mut(head))
            .enumerate()
            .for_each(|(bh, ((dq, dk), dv))| ctx(bh).all_grads(dq, dk, dv));
        return g;
    }
    g.dk.par_chunks_mut(head)
        .zip(g.dv.par_chunks_mut(head))
        .enumerate()
        .for_each(|(bh, (dk, dv))| {
            let h = ctx(bh);
            dk.par_chunks_mut(BWD_K * d)
                .zip(dv.par_chunks_mut(BWD_K * d))
                .enumerate()
                .for_each(|(kb, (dk, dv))| h.key_block_grads(kb * BWD_K, dk, dv));
        });
    g.dq.par_chunks_mut(head).enumerate().for_each(|(bh, dq)| {
        let h = ctx(bh);
        dq.par_chunks_mut(BWD_Q * d)
            .enumerate()
            .for_each(|(qb, dq)| h.query_block_grads(qb * BWD_Q, dq));
    });
    g
}

/// One head's view for the backward: its slices of the inputs, `dO` and the log-sum-exp, plus
/// `D` and the dropout rows, which every tile of the head reads.
struct HeadBwd<'a> {
    x: Inputs<'a>,
    grad_out: &'a [f32],
    lse: &'a [f32],
    delta: Vec<f32>,
    dropout: Vec<Option<Dropout>>,
    t: usize,
    d: usize,
    scale: f32,
}

/// One tile's scratch: `pd` = dropped probabilities `P̃`, `ds` = `dS` (after [`HeadBwd::tile`]).
struct TileBufs {
    pd: Vec<f32>,
    ds: Vec<f32>,
}

impl TileBufs {
    fn new() -> Self {
        TileBufs {
            pd: vec![0f32; BWD_Q * BWD_K],
            ds: vec![0f32; BWD_Q * BWD_K],
        }
    }
}

impl<'a> HeadBwd<'a> {
    fn new(
        x: &Inputs<'a>,
        out: &'a [f32],
        grad_out: &'a [f32],
        lse: &'a [f32],
        dims: Dims,
        params: &AttentionParams,
        bh: usize,
    ) -> Self {
        let (t, d) = (dims.t, dims.d);
        let span = bh * t * d..(bh + 1) * t * d;
        let (out, grad_out) = (&out[span.clone()], &grad_out[span.clone()]);
        // D_i = rowsum(dO_i ∘ O_i) = rowsum(P_i ∘ dP_i): the softmax Jacobian's diagonal term.
        let delta = out
            .chunks(d)
            .zip(grad_out.chunks(d))
            .map(|(o, g)| o.iter().zip(g).map(|(a, b)| a * b).sum())
            .collect();
        HeadBwd {
            x: Inputs {
                q: &x.q[span.clone()],
                k: &x.k[span.clone()],
                v: &x.v[span],
            },
            grad_out,
            lse: &lse[bh * t..(bh + 1) * t],
            delta,
            dropout: (0..t).map(|r| dims.dropout_row(params, bh, r)).collect(),
            t,
            d,
            scale: params.softmax_scale,
        }
    }

    /// Fills `bufs` with `P̃` and `dS` of the tile of query rows `q0..q0+rows` and key columns
    /// `k0..k0+cols`, both zero in the causal future.
    fn tile(&self, (q0, rows): (usize, usize), (k0, cols): (usize, usize), bufs: &mut TileBufs) {
        let d = self.d;
        let n = rows * cols;
        let (p, ds) = (&mut bufs.pd[..n], &mut bufs.ds[..n]);
        let q_blk = Mat::rows(&self.x.q[q0 * d..(q0 + rows) * d], d);
        let do_blk = Mat::rows(&self.grad_out[q0 * d..(q0 + rows) * d], d);
        let kspan = k0 * d..(k0 + cols) * d;
        // S = scale · Q Kᵀ, then P = exp(S − LSE) below.
        let k_t = Mat::transposed(&self.x.k[kspan.clone()], d);
        tile_gemm((rows, cols, d), p, cols, false, q_blk, k_t, self.scale);
        // dP' = dO Vᵀ, the gradient w.r.t. the dropped probabilities.
        let v_t = Mat::transposed(&self.x.v[kspan], d);
        tile_gemm((rows, cols, d), ds, cols, false, do_blk, v_t, 1.0);
        wide(
            #[inline(always)]
            || {
                for (r, (p_row, ds_row)) in p.chunks_mut(cols).zip(ds.chunks_mut(cols)).enumerate()
                {
                    let row = q0 + r;
                    let valid = (row + 1).saturating_sub(k0).min(cols);
                    let (p_row, ds_row) = (&mut p_row[..valid], &mut ds_row[..valid]);
                    let (lse, delta) = (self.lse[row], self.delta[row]);
                    match self.dropout[row] {
                        None => {
                            for (p, ds) in p_row.iter_mut().zip(ds_row.iter_mut()) {
                                let prob = exp(*p - lse);
                                *p = prob;
                                // dS = P ∘ (dP − D).
                                *ds = prob * (*ds - delta);
                            }
                        }
                        Some(mask) => {
                            for (c, (p, ds)) in p_row.iter_mut().zip(ds_row.iter_mut()).enumerate()
                            {
                                let prob = exp(*p - lse);
                                let factor = mask.factor(k0 + c);
                                *p = prob * factor;
                                // dS = P ∘ (dP − D), with dP = dP' ∘ mask.
                                *ds = prob * (*ds * factor - delta);
                            }
                        }
                    }
                }
            },
        );
        for (r, (p_row, ds_row)) in p.chunks_mut(cols).zip(ds.chunks_mut(cols)).enumerate() {
            let valid = (q0 + r + 1).saturating_sub(k0).min(cols);
            p_row[valid..].fill(0.0);
            ds_row[valid..].fill(0.0);
        }
    }

    /// Query blocks that see key `k0`, ascending: those whose last row is at or after it.
    fn query_blocks(&self, k0: usize) -> impl Iterator<Item = (usize, usize)> {
        let t = self.t;
        (k0 / BWD_Q * BWD_Q..t)
            .step_by(BWD_Q)
            .map(move |q0| (q0, BWD_Q.min(t - q0)))
    }

    /// Adds `dV_j += P̃ᵀ dO_i` and `dK_j += scale · dSᵀ Q_i` for the tile in `bufs`.
    fn add_key_grads(
        &self,
        (q0, rows): (usize, usize),
        cols: usize,
        bufs: &TileBufs,
        dk: &mut [f32],
        dv: &mut [f32],
    ) {
        let d = self.d;
        let n = rows * cols;
        let qspan = q0 * d..(q0 + rows) * d;
        let pd_t = Mat::transposed(&bufs.pd[..n], cols);
        tile_gemm(
            (cols, d, rows),
            dv,
            d,
            true,
            pd_t,
            Mat::rows(&self.grad_out[qspan.clone()], d),
            1.0,
        );
        let ds_t = Mat::transposed(&bufs.ds[..n], cols);
        tile_gemm(
            (cols, d, rows),
            dk,
            d,
            true,
            ds_t,
            Mat::rows(&self.x.q[qspan], d),
            self.scale,
        );
    }

    /// Adds `dQ_i += scale · dS K_j` for the tile in `bufs`.
    fn add_query_grads(
        &self,
        rows: usize,
        (k0, cols): (usize, usize),
        bufs: &TileBufs,
        dq: &mut [f32],
    ) {
        let d = self.d;
        let ds = Mat::rows(&bufs.ds[..rows * cols], cols);
        let k_blk = Mat::rows(&self.x.k[k0 * d..(k0 + cols) * d], d);
        tile_gemm((rows, d, cols), dq, d, true, ds, k_blk, self.scale);
    }

    /// Computes `dq`, `dk`, `dv` of the whole head in one pass over its tiles.
    fn all_grads(&self, dq: &mut [f32], dk: &mut [f32], dv: &mut [f32]) {
        let d = self.d;
        let mut bufs = TileBufs::new();
        for k0 in (0..self.t).step_by(BWD_K) {
            let block = BWD_K.min(self.t - k0);
            for (q0, rows) in self.query_blocks(k0) {
                let cols = tile_cols(q0 + rows, k0, block);
                let kspan = k0 * d..(k0 + cols) * d;
                self.tile((q0, rows), (k0, cols), &mut bufs);
                self.add_key_grads(
                    (q0, rows),
                    cols,
                    &bufs,
                    &mut dk[kspan.clone()],
                    &mut dv[kspan],
                );
                self.add_query_grads(rows, (k0, cols), &bufs, &mut dq[q0 * d..(q0 + rows) * d]);
            }
        }
    }

    /// Computes the `dk`, `dv` rows of the key block starting at `k0`.
    fn key_block_grads(&self, k0: usize, dk: &mut [f32], dv: &mut [f32]) {
        let d = self.d;
        let block = dk.len() / d;
        let mut bufs = TileBufs::new();
        for (q0, rows) in self.query_blocks(k0) {
            let cols = tile_cols(q0 + rows, k0, block);
            self.tile((q0, rows), (k0, cols), &mut bufs);
            self.add_key_grads(
                (q0, rows),
                cols,
                &bufs,
                &mut dk[..cols * d],
                &mut dv[..cols * d],
            );
        }
    }

    /// Computes the `dq` rows of the query block starting at `q0`.
    fn query_block_grads(&self, q0: usize, dq: &mut [f32]) {
        let rows = dq.len() / self.d;
        let mut bufs = TileBufs::new();
        // Keys past the block's last query contribute nothing.
        for k0 in (0..q0 + rows).step_by(BWD_K) {
            let cols = tile_cols(q0 + rows, k0, BWD_K.min(self.t - k0));
            self.tile((q0, rows), (k0, cols), &mut bufs);
            self.add_query_grads(rows, (k0, cols), &bufs, dq);
        }
    }
}

/// Columns of the key block `k0..k0 + block` that queries before `q_end` can see: the tile's
/// gemms skip the keys that are in the causal future of every one of its rows.
fn tile_cols(q_end: usize, k0: usize, block: usize) -> usize {
    block.min(q_end - k0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attention::attention_naive;
    use crate::rng::{normal, DropoutSite, DropoutStream};
    use candle_core::{Device, Var};

    /// f32: both paths accumulate in f32 over at most a few hundred terms in different orders;
    /// measured worst is 5e-7 of the max-abs (5e-6 on the 1e-2 floor at T = 1), so 1e-5 leaves
    /// room for other CPUs' gemm kernels while still catching any real formula error.
    const F32_TOL: f32 = 1e-5;
    /// bf16 (unit roundoff 2^-8), against the f32 reference on the same rounded inputs: the output
    /// is rounded once, and the gradients also see the bf16-rounded `O` and `dO`; measured worst
    /// is 4.6e-3 of the max-abs, and 2^-6 = four roundoffs leaves 3× margin.
    const BF16_TOL: f32 = 1.0 / 64.0;
    /// Central differences in f32 with h = 1e-2: truncation O(h²) ≈ 1e-4 and cancellation
    /// ≈ 1e-7/h = 1e-5, both relative to the gradient's scale; 2e-3 sits well above both.
    const FD_TOL: f32 = 2e-3;

    fn randn(shape: (usize, usize, usize, usize), seed: u64) -> Tensor {
        let n = shape.0 * shape.1 * shape.2 * shape.3;
        let data: Vec<f32> = (0..n as u64).map(|i| normal(seed, i) as f32).collect();
        Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
    }

    fn params(hs: usize, dropout: Option<(f32, DropoutStream)>) -> AttentionParams {
        AttentionParams {
            softmax_scale: 1.0 / (hs as f32).sqrt(),
            dropout,
            max_naive_bytes: 1 << 30,
            kernels: crate::config::Kernels::Composed,
        }
    }

    fn stream() -> DropoutStream {
        DropoutStream {
            seed: 11,
            step: 2,
            micro: 1,
            layer: 3,
            site: DropoutSite::Attention,
        }
    }

    type Kernel = fn(&Tensor, &Tensor, &Tensor, &AttentionParams) -> Result<Tensor>;

    /// Returns `[out, dq, dk, dv]` as f32 vectors for loss `sum(out ∘ w)`.
    fn run(kernel: Kernel, inputs: &[Tensor; 3], w: &Tensor, p: &AttentionParams) -> [Vec<f32>; 4] {
        let vars: Vec<Var> = inputs
            .iter()
            .map(|t| Var::from_tensor(t).unwrap())
            .collect();
        let out = kernel(
            vars[0].as_tensor(),
            vars[1].as_tensor(),
            vars[2].as_tensor(),
            p,
        )
        .unwrap();
        let loss = (out.to_dtype(DType::F32).unwrap() * w)
            .unwrap()
            .sum_all()
            .unwrap();
        let grads = loss.backward().unwrap();
        let flat = |t: &Tensor| to_f32_vec(t).unwrap();
        [
            flat(&out),
            flat(grads.get(vars[0].as_tensor()).unwrap()),
            flat(grads.get(vars[1].as_tensor()).unwrap()),
            flat(grads.get(vars[2].as_tensor()).unwrap()),
        ]
    }

    /// Asserts `max |got − want| ≤ tol · max(max |want|, 1e-2)` for each of out, dq, dk, dv;
    /// the floor makes exact-zero references (with T = 1, dq is 0) an absolute comparison.
    fn assert_close(got: &[Vec<f32>; 4], want: &[Vec<f32>; 4], tol: f32, case: &str) {
        for (name, (g, w)) in ["out", "dq", "dk", "dv"].iter().zip(got.iter().zip(want)) {
            let scale = w.iter().fold(1e-2f32, |a, b| a.max(b.abs()));
            let err = g.iter().zip(w).fold(0f32, |a, (x, y)| a.max((x - y).abs()));
            assert!(g.iter().all(|x| x.is_finite()), "{case} {name}: non-finite");
            assert!(
                err <= tol * scale,
                "{case} {name}: max err {err:e} > {tol:e} × {scale:e}"
            );
        }
    }

    /// (B, nh, T, hs): T = 1, T below, at and off the tile sizes (128 query rows, 256 keys),
    /// several key tiles, batch > 1, several heads.
    const SHAPES: [(usize, usize, usize, usize); 6] = [
        (1, 1, 1, 16),
        (2, 3, 37, 16),
        (1, 2, 128, 32),
        (2, 2, 130, 64),
        (1, 4, 200, 32),
        (1, 2, 600, 32),
    ];

    fn inputs(
        shape: (usize, usize, usize, usize),
        seed: u64,
        dtype: DType,
    ) -> ([Tensor; 3], Tensor) {
        let cast = |t: Tensor| t.to_dtype(dtype).unwrap();
        let qkv = [
            cast(randn(shape, seed)),
            cast(randn(shape, seed + 1)),
            cast(randn(shape, seed + 2)),
        ];
        (qkv, randn(shape, seed + 3))
    }

    #[test]
    fn forward_and_grads_match_naive_f32() {
        for (i, &shape) in SHAPES.iter().enumerate() {
            let (qkv, w) = inputs(shape, 100 * i as u64, DType::F32);
            let p = params(shape.3, None);
            let want = run(attention_naive, &qkv, &w, &p);
            assert_close(
                &run(flash_attention, &qkv, &w, &p),
                &want,
                F32_TOL,
                &format!("{shape:?}"),
            );
        }
    }

    #[test]
    fn forward_and_grads_match_naive_bf16() {
        // Reference: the naive path in f32 on the same bf16-rounded inputs.
        for (i, &shape) in SHAPES.iter().enumerate() {
            let (qkv, w) = inputs(shape, 100 * i as u64, DType::BF16);
            let up = qkv.clone().map(|t| t.to_dtype(DType::F32).unwrap());
            let p = params(shape.3, None);
            let want = run(attention_naive, &up, &w, &p);
            let got = run(flash_attention, &qkv, &w, &p);
            let out = flash_attention(&qkv[0], &qkv[1], &qkv[2], &p).unwrap();
            assert_eq!(out.dtype(), DType::BF16);
            assert_close(&got, &want, BF16_TOL, &format!("bf16 {shape:?}"));
        }
    }

    #[test]
    fn dropout_matches_naive_dropout_mask() {
        for (i, &shape) in SHAPES.iter().enumerate().skip(1) {
            let (qkv, w) = inputs(shape, 7 + i as u64, DType::F32);
            let p = params(shape.3, Some((0.25, stream())));
            let want = run(attention_naive, &qkv, &w, &p);
            assert_close(
                &run(flash_attention, &qkv, &w, &p),
                &want,
                F32_TOL,
                &format!("dropout {shape:?}"),
            );
            // The mask matters: without dropout the output is measurably different.
            let plain = run(flash_attention, &qkv, &w, &params(shape.3, None));
            let diff = plain[0]
                .iter()
                .zip(&want[0])
                .fold(0f32, |a, (x, y)| a.max((x - y).abs()));
            assert!(diff > 0.1, "{shape:?}: dropout changed nothing ({diff})");
        }
    }

    #[test]
    fn grads_match_central_differences() {
        let shape = (1, 2, 9, 4);
        for dropout in [None, Some((0.3, stream()))] {
            let (qkv, w) = inputs(shape, 5, DType::F32);
            let p = params(shape.3, dropout);
            let analytic = run(flash_attention, &qkv, &w, &p);
            let loss = |xs: &[Tensor; 3]| -> f32 {
                let out = flash_attention(&xs[0], &xs[1], &xs[2], &p).unwrap();
                (out * &w)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap()
            };
            let h = 1e-2f32;
            for which in 0..3 {
                let base = to_f32_vec(&qkv[which]).unwrap();
                let numeric: Vec<f32> = (0..base.len())
                    .map(|j| {
                        let nudged = |delta: f32| {
                            let mut data = base.clone();
                            data[j] += delta;
                            let mut xs = qkv.clone();
                            xs[which] = Tensor::from_vec(data, shape, &Device::Cpu).unwrap();
                            loss(&xs)
                        };
                        (nudged(h) - nudged(-h)) / (2.0 * h)
                    })
                    .collect();
                let got = &analytic[which + 1];
                let scale = numeric.iter().fold(0f32, |a, b| a.max(b.abs()));
                let err = got
                    .iter()
                    .zip(&numeric)
                    .fold(0f32, |a, (x, y)| a.max((x - y).abs()));
                assert!(
                    err <= FD_TOL * scale,
                    "input {which} {dropout:?}: {err:e} > {FD_TOL:e} × {scale:e}"
                );
            }
        }
    }

    #[test]
    fn bits_independent_of_thread_count() {
        // B · nh = 4: one thread takes the per-head backward, three threads the split one.
        // Several query blocks and key tiles per head.
        let shape = (2, 2, 600, 32);
        let (qkv, w) = inputs(shape, 21, DType::F32);
        let p = params(shape.3, Some((0.1, stream())));
        let in_pool = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| run(flash_attention, &qkv, &w, &p))
        };
        let (one, three) = (in_pool(1), in_pool(3));
        for (name, (a, b)) in ["out", "dq", "dk", "dv"].iter().zip(one.iter().zip(&three)) {
            let same = a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "{name} differs between 1 and 3 threads");
        }
    }

    #[test]
    fn backward_schemes_give_identical_bits() {
        // Per-head single pass and split (key-block, then query-block) passes sum every
        // gradient block's tiles in the same order, so the thread-count heuristic that picks
        // between them can never change a result.
        let dims = Dims {
            b: 2,
            nh: 2,
            t: 600,
            d: 16,
        };
        for dropout in [None, Some((0.2, stream()))] {
            let p = params(dims.d, dropout);
            let n = dims.len();
            let [q, k, v, d_o]: [Vec<f32>; 4] =
                [1, 2, 3, 4].map(|s| (0..n as u64).map(|i| normal(s, i) as f32).collect());
            let (out, lse) = forward(&q, &k, &v, dims, &p);
            let x = Inputs {
                q: &q,
                k: &k,
                v: &v,
            };
            let one = backward_with(&x, &out, &d_o, &lse, dims, &p, false);
            let two = backward_with(&x, &out, &d_o, &lse, dims, &p, true);
            for (name, a, b) in [
                ("dq", &one.dq, &two.dq),
                ("dk", &one.dk, &two.dk),
                ("dv", &one.dv, &two.dv),
            ] {
                assert!(
                    a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{name} {dropout:?}"
                );
            }
        }
    }

    #[test]
    fn strided_inputs_match_contiguous() {
        // The model produces q, k, v as (B, T, nh, hs).transpose(1, 2): not contiguous.
        let (b, t, nh, hs) = (2, 70, 3, 16);
        let make = |seed| randn((b, t, nh, hs), seed).transpose(1, 2).unwrap();
        let qkv = [make(1), make(2), make(3)];
        assert!(!qkv[0].is_contiguous());
        let w = randn((b, nh, t, hs), 4);
        let p = params(hs, None);
        let contiguous = qkv.clone().map(|x| x.contiguous().unwrap());
        let got = run(flash_attention, &qkv, &w, &p);
        let want = run(flash_attention, &contiguous, &w, &p);
        assert_close(&got, &want, 0.0, "strided");
    }

    #[test]
    fn exp_within_two_ulp_of_libm_on_attention_scores() {
        // Reference: std's f32::exp (libm expf, correctly rounded to < 1 ulp) on [-87, 0] and
        // a little above 0 (scores minus a rounded max can be slightly positive).
        for i in 0..=200_000 {
            let x = -87.0 + 88.0 * i as f32 / 200_000.0;
            let (got, want) = (exp(x), x.exp());
            let ulp = (want.to_bits() as i64 - got.to_bits() as i64).abs();
            assert!(ulp <= 2, "exp({x}) = {got}, libm {want} ({ulp} ulp)");
        }
        assert_eq!(exp(-200.0), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        let mut xs: Vec<f32> = (0..19).map(|i| -(i as f32) / 3.0).collect();
        let sum = wide(|| exp_shifted_lanes(&mut xs, 0.5));
        let want: f32 = (0..19).map(|i| (-(i as f32) / 3.0 - 0.5).exp()).sum();
        approx::assert_relative_eq!(sum, want, max_relative = 1e-6);
        // The dispatched (AVX-512 or AVX2 here) and the portable bodies give the same bits.
        let base: Vec<f32> = (0..1000).map(|i| -(i as f32) * 0.037).collect();
        let (mut a, mut b) = (base.clone(), base);
        let sa = wide(
            #[inline(always)]
            || exp_shifted_lanes(&mut a, 0.25),
        );
        let sb = exp_shifted_lanes(&mut b, 0.25);
        assert_eq!(sa.to_bits(), sb.to_bits());
        assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
    }

    #[test]
    fn rejects_mismatched_inputs() {
        let x = randn((1, 2, 8, 4), 0);
        let y = randn((1, 2, 9, 4), 0);
        let p = params(4, None);
        assert!(matches!(
            flash_attention(&x, &y, &x, &p),
            Err(Error::AttentionInput { .. })
        ));
        let h = x.to_dtype(DType::F16).unwrap();
        assert!(matches!(
            flash_attention(&h, &h, &h, &p),
            Err(Error::AttentionInput { .. })
        ));
        let empty = randn((1, 2, 0, 4), 0);
        assert!(matches!(
            flash_attention(&empty, &empty, &empty, &p),
            Err(Error::AttentionInput { .. })
        ));
        let p1 = params(4, Some((1.0, stream())));
        assert!(matches!(
            flash_attention(&x, &x, &x, &p1),
            Err(Error::AttentionInput { .. })
        ));
    }
    /// Digest of `[out, dq, dk, dv]` bits over shapes that cover one tile, several tiles and the
    /// gate model's attention, f32 and bf16, with and without dropout.
    fn kernel_digests() -> Vec<(String, u64)> {
        let shapes = [
            (1, 4, 32, 16),
            (1, 2, 200, 32),
            (2, 2, 130, 64),
            (1, 1, 600, 32),
        ];
        let mut out = Vec::new();
        for (i, &shape) in shapes.iter().enumerate() {
            for dtype in [DType::F32, DType::BF16] {
                for dropout in [None, Some((0.1, stream()))] {
                    let (qkv, w) = inputs(shape, 7 * i as u64, dtype);
                    let got = run(flash_attention, &qkv, &w, &params(shape.3, dropout));
                    let mut h = 0xcbf2_9ce4_8422_2325u64;
                    for x in got.iter().flatten() {
                        h = (h ^ u64::from(x.to_bits())).wrapping_mul(0x1000_0000_01b3);
                    }
                    let name = format!("{shape:?} {dtype:?} dropout={}", dropout.is_some());
                    out.push((name, h));
                }
            }
        }
        out
    }

    #[test]
    #[ignore = "prints the kernel's bit digests, for comparing two versions by hand"]
    fn print_kernel_digests() {
        for (name, h) in kernel_digests() {
            println!("{name}: {h:016x}");
        }
    }
}
