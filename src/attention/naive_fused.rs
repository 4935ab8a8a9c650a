//! The naive backend's fused kernel: `softmax(q kᵀ · scale + causal) · v` with the `T × T`
//! probabilities materialised, as [`super::attention_naive`] computes them with candle's ops, but
//! as one op that skips the masked half of every product.
//!
//! Query rows go in blocks of [`BLOCK`]. A block's scores and its `P v` and `dS k` products stop
//! at the block's last key, and `dk = dSᵀ q`, `dv = Pᵀ dO` start at a key block's first query, so
//! the products above the diagonal, which the composed path computes in full, are skipped: at
//! T = 256 a block-causal product is 56 % of a full one. The skipped terms are exact zeros there
//! (the probabilities and score gradients of future keys are 0), and every kept element is gemm's
//! one chain of multiply-adds over the same keys in the same order, so the results are the
//! composed path's bits. That last point needs the product's inner dimension to be one gemm
//! block: gemm takes `k ≤ 512` in one, longer ones in blocks whose size depends on the product's
//! shape, so sequences longer than [`MAX_SEQ_LEN`] keep the composed path ([`takes`]).
//!
//! The products run in [`unpacked`], gemm's chains without gemm's packing: at these sizes gemm
//! spent much of each call copying operands into panels.
//!
//! The op takes q, k and v as one `(3, B, nh, T, hs)` tensor and returns their gradient as one,
//! which the model's head split turns back into the projections' gradient in one pass: as three
//! tensors, each of the three gradients would come back padded with zeros to the projections'
//! width and be added up.
//!
//! Tasks are `(batch · head, query block)` forward and one per head backward; each writes its
//! own rows single-threaded, so the bits are the same for any thread count. The backward goes
//! through a head's query blocks in order and carries `dk`'s and `dv`'s chains from one block to
//! the next, so the score gradients are used while in cache instead of written out as a second
//! `T × T` buffer. Attention dropout uses [`crate::rng::dropout_row`] with the naive mask's row
//! keys, multiplying the probabilities as the composed path does.

use super::{AttentionParams, Dims};
use crate::error::Result;
use crate::kernels::gemm::{tile_gemm_uninit, Mat};
use crate::kernels::slices::{assume_init, f32_slice, wide, with_f32, zeroed};
use crate::kernels::unpacked::{self, product_uninit, Chains};
use crate::kernels::{softmax_grad_row, softmax_row};
use crate::rng::{dropout_row, DropoutStream};
use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::sync::Mutex;

/// Query (and key) rows per task. Smaller blocks skip more of the masked half (at T = 256, 32
/// computes 56 % of a full product, 64 computes 62 %) but make smaller gemm calls. Measured
/// alone on two threads, 64 was level with 32 at T = 128 and took twice as long at T = 256;
/// 16 is too small (below).
const BLOCK: usize = 32;

/// A last block shorter than this joins the one before it.
///
/// gemm sums in another order on three paths: matrix-vector (a dimension of 1), `k ≤ 2`, and
/// products of at most 16 × 16 outputs with a row-major left and column-major right operand
/// (the scores). The composed path's `T × T` products take one of those only when the kernel's
/// single block does the same product; with blocks of 32 and at least 16 rows, every tile of a
/// longer sequence is at least 32 × 32 or 16 × 48 outputs, clear of all three.
const MIN_BLOCK: usize = 16;
const _: () = assert!(BLOCK * BLOCK > 16 * 16 && MIN_BLOCK * (BLOCK + MIN_BLOCK) > 16 * 16);

/// Longest sequence the kernel takes: every product's inner dimension (`hs` or at most `T` keys)
/// is then one gemm block, which is what makes its bits the composed path's.
const MAX_SEQ_LEN: usize = 512;

/// Whether the kernel computes attention over `t` positions with head dim `d` with the composed
/// path's bits, so may stand in for it.
///
/// Besides [`MAX_SEQ_LEN`]: the backward computes each key block's `dk` and `dv` chains a query
/// block at a time ([`NaiveOp::head_grads`]), which gives the bits of the composed path's one
/// gemm call per key block only where gemm sums that call as one chain of fused multiply-adds:
/// not for `d = 1`, `T ≤ 2` (`k ≤ 2`) or on CPUs without FMA.
pub(super) fn takes(t: usize, d: usize) -> bool {
    let key_block_product = |&(c0, c1): &(usize, usize)| {
        let ds_columns = Mat {
            data: &[],
            rs: 1,
            cs: t,
        };
        unpacked::matches_gemm((c1 - c0, d, t - c0), ds_columns, Mat::rows(&[], d))
    };
    t <= MAX_SEQ_LEN && row_blocks(t).iter().all(key_block_product)
}

/// Computes causal attention with materialised probabilities for f32 `qkv` `(3, B, nh, T, hs)`
/// (q, k and v stacked) of a shape [`takes`] accepts; returns `(B, nh, T, hs)`, and the gradient
/// flows to `qkv`.
///
/// # Errors
/// Candle errors when the input is not a five-dimensional f32 tensor on the CPU with 3 first.
pub(super) fn naive_fused(qkv: &Tensor, params: &AttentionParams) -> Result<Tensor> {
    let (three, b, nh, t, d) = qkv.dims5()?;
    if three != 3 {
        let msg =
            format!("naive attention: q, k and v stacked in a first dimension of 3, not {three}");
        return Err(candle_core::Error::Msg(msg).into());
    }
    let op = NaiveOp {
        dims: Dims { b, nh, t, d },
        scale: params.softmax_scale,
        dropout: params.dropout,
        saved: Mutex::new(None),
    };
    Ok(qkv.contiguous()?.apply_op1(op)?)
}

impl Dims {
    /// Splits a `(3, B, nh, T, d)` buffer into q, k and v.
    fn parts<'a>(&self, qkv: &'a [f32]) -> (&'a [f32], &'a [f32], &'a [f32]) {
        let (q, kv) = qkv.split_at(self.len());
        let (k, v) = kv.split_at(self.len());
        (q, k, v)
    }
}

/// The probabilities the forward made, kept for the backward: candle has no slot for a side
/// output. `dropped` is `P ⊙ mask` when dropout is on. Both hold each head's row blocks one
/// after another, a block's rows as long as its keys ([`Rows::Causal`]): the backward reads them
/// a block at a time, so the masked keys past each block's end are never stored.
struct Saved {
    probs: Vec<f32>,
    dropped: Option<Vec<f32>>,
}

struct NaiveOp {
    dims: Dims,
    scale: f32,
    dropout: Option<(f32, DropoutStream)>,
    saved: Mutex<Option<Saved>>,
}

impl NaiveOp {
    /// Writes query row `row` of head `bh`'s dropout factors (0 or `1/(1−p)`) into `mask`, the
    /// naive mask's row.
    fn mask_row(
        &self,
        (rate, stream): (f32, DropoutStream),
        bh: usize,
        row: usize,
        mask: &mut [f32],
    ) {
        dropout_row(self.dims.row_key(&stream, bh, row), rate, mask);
    }
}

impl CustomOp1 for NaiveOp {
    fn name(&self) -> &'static str {
        "lossdiff-naive-attention"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (out, saved) = self.forward(f32_slice(s, l)?);
        if let Ok(mut slot) = self.saved.lock() {
            *slot = Some(saved);
        }
        Ok((CpuStorage::F32(out), self.dims.shape()))
    }

    fn bwd(
        &self,
        qkv: &Tensor,
        _out: &Tensor,
        grad_out: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let saved = self.saved.lock().ok().and_then(|mut slot| slot.take());
        let dqkv = with_f32(qkv, |qkv| {
            with_f32(grad_out, |dy| {
                let saved = match saved {
                    Some(saved) => saved,
                    None => self.forward(qkv).1,
                };
                Ok(self.backward(qkv, dy, &saved))
            })
        })?;
        Ok(Some(Tensor::from_vec(dqkv, qkv.shape(), qkv.device())?))
    }
}

/// Returns the row blocks `[r0, r1)` of a length-`t` sequence: [`BLOCK`] rows each, a short last
/// one merged into the block before it.
fn row_blocks(t: usize) -> Vec<(usize, usize)> {
    let mut blocks: Vec<(usize, usize)> = (0..t)
        .step_by(BLOCK)
        .map(|r0| (r0, (r0 + BLOCK).min(t)))
        .collect();
    if let [.., (_, prev_end), (r0, r1)] = blocks[..] {
        if r1 - r0 < MIN_BLOCK {
            debug_assert_eq!(prev_end, r0);
            blocks.pop();
            if let Some(last) = blocks.last_mut() {
                last.1 = r1;
            }
        }
    }
    blocks
}

/// Writes query block `[r0, r1)`'s rows of a buffer with row stride `rs` (at least `r1`) and
/// returns them: keys `0..r1` are `a[r0..r1] · b[0..r1]ᵀ` (`a`, `b` one head's `(T, d)` rows:
/// `q kᵀ` for the scores, `dO vᵀ` for the probabilities' gradient), the keys from `r1` to `rs`
/// zero. `b_t` is `bᵀ`, `(d, T)`, for the unpacked product, which needs contiguous rows.
#[inline(always)]
fn causal_block<'a>(
    rows: &'a mut [MaybeUninit<f32>],
    rs: usize,
    (t, d): (usize, usize),
    (r0, r1): (usize, usize),
    a: &[f32],
    (b, b_t): (&[f32], &[f32]),
) -> &'a mut [f32] {
    let dims = (r1 - r0, r1, d);
    let (a_rows, b_cols) = (
        Mat::rows(&a[r0 * d..r1 * d], d),
        Mat::transposed(&b[..r1 * d], d),
    );
    // gemm's bits on its main path whichever layout `b` comes in; elsewhere gemm itself, given
    // the layout the composed path gives it.
    match unpacked::matches_gemm(dims, a_rows, b_cols) {
        true => product_uninit(dims, rows, rs, a_rows, Mat::rows(b_t, t)),
        false => tile_gemm_uninit(dims, rows, rs, a_rows, b_cols),
    }
    for row in rows.chunks_mut(rs) {
        row[r1..].fill(MaybeUninit::new(0.0));
    }
    // SAFETY: the product initialised keys `0..r1` of every row of the block, the loop the rest.
    unsafe { assume_init(rows) }
}

/// Writes the `(d, T)` transpose of each head's `(T, d)` rows of `x` into `out`, heads in
/// parallel.
fn transpose_heads(x: &[f32], Dims { t, d, .. }: Dims) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    if !x.is_empty() {
        out.par_chunks_mut(t * d)
            .zip(x.par_chunks(t * d))
            .for_each(|(out, x)| wide(|| transpose_into(x, (t, d), out)));
    }
    out
}

/// Writes the `cols × rows` transpose of the `rows × cols` row-major `x` into `out`.
#[inline(always)]
fn transpose_into<T: Copy>(x: &[T], (rows, cols): (usize, usize), out: &mut [T]) {
    for (i, row) in x.chunks_exact(cols).take(rows).enumerate() {
        for (j, &v) in row.iter().enumerate() {
            out[j * rows + i] = v;
        }
    }
}

/// How long a row block's rows are in a buffer [`par_blocks`] cuts.
#[derive(Clone, Copy)]
enum Rows {
    /// All the same length.
    Of(usize),
    /// As long as the block's keys, `r1`: the probabilities, kept block by block with the
    /// masked keys past each block's end left out.
    Causal,
}

impl Rows {
    /// Elements of block `[r0, r1)`.
    fn block_len(self, (r0, r1): (usize, usize)) -> usize {
        (r1 - r0)
            * match self {
                Rows::Of(len) => len,
                Rows::Causal => r1,
            }
    }

    /// Elements of one head's blocks.
    fn head_len(self, blocks: &[(usize, usize)]) -> usize {
        blocks.iter().map(|&block| self.block_len(block)).sum()
    }
}

/// Calls `f(bh, (r0, r1), rows)` in parallel for every head `bh` and row block, `rows[i]` being
/// that block's rows of `bufs[i]`, whose heads' blocks lie one after another, each as long as
/// its [`Rows`] says. The rows of different tasks are disjoint, so each task writes its own.
fn par_blocks<const N: usize>(
    dims: Dims,
    blocks: &[(usize, usize)],
    bufs: [(&mut [MaybeUninit<f32>], Rows); N],
    f: impl Fn(usize, (usize, usize), [&mut [MaybeUninit<f32>]; N]) + Sync,
) {
    let t = dims.t;
    assert_eq!(
        blocks.iter().map(|(r0, r1)| r1 - r0).sum::<usize>(),
        t,
        "naive attention: row blocks must cover the sequence"
    );
    // Each buffer cut into its rows of every (head, block), in task order.
    let mut rows: Vec<_> = bufs
        .into_iter()
        .map(|(mut rest, rows)| {
            let mut cut = Vec::with_capacity(dims.heads() * blocks.len());
            for _ in 0..dims.heads() {
                for &block in blocks {
                    let (block, tail) =
                        std::mem::take(&mut rest).split_at_mut(rows.block_len(block));
                    cut.push(block);
                    rest = tail;
                }
            }
            cut.into_iter()
        })
        .collect();
    let tasks: Vec<_> = (0..dims.heads())
        .flat_map(|bh| blocks.iter().map(move |&block| (bh, block)))
        .map(|(bh, block)| {
            let outs = std::array::from_fn(|i| rows[i].next().expect("one row block per task"));
            (bh, block, outs)
        })
        .collect();
    tasks.into_par_iter().for_each(|(bh, block, outs)| {
        wide(
            #[inline(always)]
            || f(bh, block, outs),
        )
    });
}

/// A fresh buffer with room for `len` elements, for [`par_blocks`]' tasks to write.
fn buffer(len: usize) -> Vec<f32> {
    Vec::with_capacity(len)
}

/// Returns `buf` with its first `len` elements marked as written.
///
/// # Safety
/// The tasks must have initialised all `len` elements (through `spare_capacity_mut`).
unsafe fn written(mut buf: Vec<f32>, len: usize) -> Vec<f32> {
    // SAFETY: the caller's contract; `len` is within the capacity `buffer` gave.
    unsafe { buf.set_len(len) };
    buf
}

impl NaiveOp {
    /// Returns the output `(B, nh, T, d)` and what the backward needs.
    fn forward(&self, qkv: &[f32]) -> (Vec<f32>, Saved) {
        let Dims { t, .. } = self.dims;
        let (q, k, v) = self.dims.parts(qkv);
        let blocks = row_blocks(t);
        let (probs_len, out_len) = (
            self.dims.heads() * Rows::Causal.head_len(&blocks),
            self.dims.len(),
        );
        // The dropped probabilities are a third buffer with dropout on, an empty one without.
        let (dropped_rows, dropped_len) = match self.dropout {
            Some(_) => (Rows::Causal, probs_len),
            None => (Rows::Of(0), 0),
        };
        let (mut probs, mut out, mut dropped) =
            (buffer(probs_len), buffer(out_len), buffer(dropped_len));
        let k_t = transpose_heads(k, self.dims);
        par_blocks(
            self.dims,
            &blocks,
            [
                (&mut probs.spare_capacity_mut()[..probs_len], Rows::Causal),
                (
                    &mut out.spare_capacity_mut()[..out_len],
                    Rows::Of(self.dims.d),
                ),
                (
                    &mut dropped.spare_capacity_mut()[..dropped_len],
                    dropped_rows,
                ),
            ],
            #[inline(always)]
            |bh, rows, outs| self.forward_block((q, k, &k_t, v), bh, rows, outs),
        );
        // SAFETY: `forward_block` initialises every element of its rows (see there), and the
        // tasks' rows cover the three buffers.
        let (probs, out, dropped) = unsafe {
            (
                written(probs, probs_len),
                written(out, out_len),
                written(dropped, dropped_len),
            )
        };
        let dropped = self.dropout.is_some().then_some(dropped);
        (out, Saved { probs, dropped })
    }

    /// Scores, probabilities and output rows of query block `[r0, r1)` of head `bh`, written into
    /// the uninitialised `outs` (probabilities, output, and the dropped probabilities with
    /// dropout on): every element of each.
    ///
    /// Inlined into [`par_blocks`]' tasks, which run inside [`wide`]: compiled on its own, the
    /// softmax here would be baseline x86-64's four lanes (perf showed SSE code, the exponential
    /// 15 % of the op's time).
    #[inline(always)]
    fn forward_block(
        &self,
        (q, k, k_t, v): (&[f32], &[f32], &[f32], &[f32]),
        bh: usize,
        (r0, r1): (usize, usize),
        [probs, out, dropped]: [&mut [MaybeUninit<f32>]; 3],
    ) {
        let Dims { t, d, .. } = self.dims;
        let mut dropped = self.dropout.is_some().then(|| zeroed(dropped));
        let (qh, kh, vh) = (
            self.dims.head(q, bh),
            self.dims.head(k, bh),
            self.dims.head(v, bh),
        );
        // Scores of keys 0..r1, unscaled (the softmax scales them, as the composed path does).
        let k_t = self.dims.head(k_t, bh);
        let probs = causal_block(probs, r1, (t, d), (r0, r1), qh, (kh, k_t));
        let mut mask = vec![0f32; if self.dropout.is_some() { t } else { 0 }];
        for (r, row) in probs.chunks_mut(r1).enumerate() {
            let visible = r0 + r + 1;
            softmax_row(&mut row[..visible], self.scale);
            row[visible..].fill(0.0);
            if let (Some(dropout), Some(dropped)) = (self.dropout, dropped.as_deref_mut()) {
                self.mask_row(dropout, bh, r0 + r, &mut mask);
                let kept = &mut dropped[r * r1..r * r1 + visible];
                for ((o, &p), &m) in kept.iter_mut().zip(&row[..visible]).zip(&mask) {
                    *o = p * m;
                }
            }
        }
        let weights: &[f32] = match dropped {
            Some(dropped) => dropped,
            None => probs,
        };
        let (weights, values) = (Mat::rows(weights, r1), Mat::rows(&vh[..r1 * d], d));
        product_uninit((r1 - r0, d, r1), out, d, weights, values);
    }

    /// Returns the gradient of `qkv`, `(3, B, nh, T, d)`, for the output gradient `dy`: one task
    /// per head.
    fn backward(&self, qkv: &[f32], dy: &[f32], saved: &Saved) -> Vec<f32> {
        let len = self.dims.len();
        let head = self.dims.t * self.dims.d;
        if len == 0 {
            return Vec::new();
        }
        let blocks = row_blocks(self.dims.t);
        let mut dqkv = buffer(3 * len);
        let (dq, dkv) = dqkv.spare_capacity_mut()[..3 * len].split_at_mut(len);
        let (dk, dv) = dkv.split_at_mut(len);
        dq.par_chunks_mut(head)
            .zip(dk.par_chunks_mut(head))
            .zip(dv.par_chunks_mut(head))
            .enumerate()
            .for_each(|(bh, ((dq, dk), dv))| {
                wide(
                    #[inline(always)]
                    || self.head_grads((qkv, dy, saved), &blocks, bh, [dq, dk, dv]),
                )
            });
        // SAFETY: `head_grads` initialises every element of its head's dq, dk and dv (see
        // there), and the heads cover the buffer.
        unsafe { written(dqkv, 3 * len) }
    }

    /// Writes head `bh`'s gradients into the uninitialised `dq`, `dk` and `dv` (`(T, d)` each),
    /// a query block at a time.
    ///
    /// For each block: `dP = dO vᵀ` over keys `0..r1`, the dropout mask, the softmax's backward
    /// (`dS`), `dq = dS k` for the block's rows; then the block's terms of `dkᵀ = qᵀ dS` and
    /// `dvᵀ = dOᵀ P` for keys `0..r1`. Key `j`'s gradient is one chain over queries `i ≥ c0`,
    /// `c0` the first key of `j`'s block (the block-causal product's rows, zeros above the
    /// diagonal included), in query order: begun at the block where `r0 = c0`, carried on by
    /// each later one ([`Chains`]). That is the product the composed path computes with one gemm
    /// call over the materialised `T × T` score gradients; here the block's `dS` is used while in
    /// cache and never written out. The transposed forms keep both operands' rows contiguous.
    #[inline(always)]
    fn head_grads(
        &self,
        (qkv, dy, saved): (&[f32], &[f32], &Saved),
        blocks: &[(usize, usize)],
        bh: usize,
        [dq, dk, dv]: [&mut [MaybeUninit<f32>]; 3],
    ) {
        let Dims { t, d, .. } = self.dims;
        let (q, k, v) = self.dims.parts(qkv);
        let (kh, vh, dyh) = (
            self.dims.head(k, bh),
            self.dims.head(v, bh),
            self.dims.head(dy, bh),
        );
        let head_len = Rows::Causal.head_len(blocks);
        let head = bh * head_len..(bh + 1) * head_len;
        let probs = &saved.probs[head.clone()];
        let weights = &saved.dropped.as_deref().unwrap_or(&saved.probs)[head];
        let transposed = |x: &[f32]| {
            let mut x_t = vec![0f32; t * d];
            transpose_into(x, (t, d), &mut x_t);
            x_t
        };
        let (q_t, v_t, dy_t) = (
            transposed(self.dims.head(q, bh)),
            transposed(vh),
            transposed(dyh),
        );
        // dkᵀ and dvᵀ, (d, T), whose chains the blocks carry on.
        let (mut dk_t, mut dv_t) = (
            vec![MaybeUninit::new(0f32); d * t],
            vec![MaybeUninit::new(0f32); d * t],
        );
        let widest = blocks.iter().map(|(r0, r1)| r1 - r0).max().unwrap_or(0);
        let mut ds = vec![MaybeUninit::new(0f32); widest * t];
        let mut offset = 0;
        let mut mask = vec![0f32; if self.dropout.is_some() { t } else { 0 }];
        for &(r0, r1) in blocks {
            let rows = r1 - r0;
            let this_block = offset..offset + rows * r1;
            offset = this_block.end;
            let (probs, weights) = (&probs[this_block.clone()], &weights[this_block]);
            // The block's rows of dP, then dS, at row stride r1.
            let ds = causal_block(&mut ds[..rows * r1], r1, (t, d), (r0, r1), dyh, (vh, &v_t));
            for (r, row) in ds.chunks_mut(r1).enumerate() {
                let visible = r0 + r + 1;
                let g = &mut row[..visible];
                if let Some(dropout) = self.dropout {
                    self.mask_row(dropout, bh, r0 + r, &mut mask);
                    g.iter_mut().zip(&mask).for_each(|(g, &m)| *g *= m);
                }
                softmax_grad_row(&probs[r * r1..r * r1 + visible], g, self.scale);
                row[visible..].fill(0.0);
            }
            let keys = Mat::rows(&kh[..r1 * d], d);
            product_uninit((rows, d, r1), &mut dq[r0 * d..], d, Mat::rows(ds, r1), keys);
            let ds = Mat::rows(ds, r1);
            let w = Mat::rows(weights, r1);
            for (grad_t, x_t, rhs) in [(&mut dk_t, &q_t, ds), (&mut dv_t, &dy_t, w)] {
                // Element (p, i) is the block's query r0 + i's p-th entry.
                let lhs = Mat::rows(&x_t[r0..], t);
                let diagonal = Mat::rows(&rhs.data[r0..], rhs.rs);
                // SAFETY: keys 0..r0 belong to earlier blocks, whose chains were begun when
                // those blocks were the current one (and all of `grad_t` is initialised).
                unsafe {
                    unpacked::continue_chains((d, r0, rows), grad_t, t, Chains::Continue, lhs, rhs);
                    let this = &mut grad_t[r0..];
                    unpacked::continue_chains(
                        (d, rows, rows),
                        this,
                        t,
                        Chains::Start,
                        lhs,
                        diagonal,
                    );
                }
            }
        }
        transpose_into(&dk_t, (d, t), dk);
        transpose_into(&dv_t, (d, t), dv);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Kernels;
    use crate::kernels::test_support::{probed_grads, seeded};
    use crate::rng::DropoutSite;
    use candle_core::{Device, Var};

    /// The path this kernel replaces: candle's products around the fused causal softmax, and the
    /// naive dropout mask as a tensor.
    fn composed(q: &Tensor, k: &Tensor, v: &Tensor, params: &AttentionParams) -> Tensor {
        let (b, nh, t, _) = q.dims4().unwrap();
        let scores = q.matmul(&k.t().unwrap()).unwrap();
        let mut probs = crate::kernels::causal_softmax(&scores, params.softmax_scale).unwrap();
        if let Some((p, stream)) = params.dropout {
            let mask = super::super::attention_dropout_mask(b, nh, t, p, &stream, q.device());
            probs = (probs * mask.unwrap()).unwrap();
        }
        probs.matmul(v).unwrap()
    }

    fn bits(t: &Tensor) -> Vec<u32> {
        let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// How the attention under test is reached.
    #[derive(Clone, Copy)]
    enum Path {
        /// The heads copied out one part at a time, candle's products around the fused causal
        /// softmax, the heads merged back: what the model ran before this op.
        Composed,
        /// The model's path: [`super::super::attention_qkv`] from the projections.
        Projections,
        /// [`super::super::attention_naive`] on separate q, k and v (stacked for the op).
        Separate,
    }

    /// Runs `path` on seeded projections `(2, T, 3 · 3 · hs)` (three heads) and a seeded output
    /// gradient; returns the output's bits and those of the projections' gradient.
    fn run(path: Path, t: usize, hs: usize, dropout: Option<f32>) -> [Vec<u32>; 2] {
        let (dev, nh) = (Device::Cpu, 3);
        let c = nh * hs;
        let qkv = Var::from_vec(seeded(2 * t * 3 * c, 1), (2, t, 3 * c), &dev).unwrap();
        let probe = Tensor::from_vec(seeded(2 * t * c, 4), (2, t, c), &dev).unwrap();
        let params = AttentionParams {
            softmax_scale: 1.0 / (hs as f32).sqrt(),
            dropout: dropout.map(|p| {
                (
                    p,
                    DropoutStream {
                        seed: 9,
                        step: 2,
                        micro: 0,
                        layer: 1,
                        site: DropoutSite::Attention,
                    },
                )
            }),
            max_naive_bytes: u64::MAX,
            kernels: Kernels::Fused,
        };
        let x = qkv.as_tensor();
        let heads = |i| crate::kernels::split_heads(x, nh, i).unwrap();
        let merge = |y: &Tensor| crate::kernels::merge_heads(y).unwrap();
        let y = match path {
            Path::Composed => merge(&composed(&heads(0), &heads(1), &heads(2), &params)),
            Path::Projections => {
                let backend = crate::config::AttentionBackend::Naive;
                super::super::attention_qkv(x, nh, backend, &params).unwrap()
            }
            Path::Separate => {
                let (q, k, v) = (heads(0), heads(1), heads(2));
                merge(&super::super::attention_naive(&q, &k, &v, &params).unwrap())
            }
        };
        let out = bits(&y);
        [out, bits(probed_grads(y, &probe).get(&qkv).unwrap())]
    }

    /// Returns the first of "output", "gradient" whose bits differ between the op, reached from
    /// the projections or from separate heads, and the composed path.
    fn first_difference(t: usize, hs: usize, dropout: Option<f32>) -> Option<String> {
        let want = run(Path::Composed, t, hs, dropout);
        [Path::Projections, Path::Separate]
            .into_iter()
            .find_map(|path| {
                let got = run(path, t, hs, dropout);
                ["output", "gradient"]
                    .into_iter()
                    .zip(got.iter().zip(&want))
                    .find(|(_, (a, b))| a != b)
                    .map(|(name, _)| {
                        format!(
                            "{name} ({})",
                            ["projections", "separate"][path as usize - 1]
                        )
                    })
            })
    }

    #[test]
    fn skipping_the_masked_blocks_keeps_the_composed_paths_bits() {
        // One block, a merged short last block, exact blocks, ragged blocks, the longest length.
        for t in [1, 5, 16, 31, 32, 33, 47, 48, 50, 100, 128, 200, 256, 512] {
            for dropout in [None, Some(0.1)] {
                assert_eq!(
                    first_difference(t, 32, dropout),
                    None,
                    "T = {t}, dropout {dropout:?}"
                );
            }
        }
        assert_eq!(first_difference(70, 8, None), None, "head dim 8");
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn takes_the_sequences_whose_key_gradients_gemm_sums_as_one_chain() {
        // Where gemm would not sum a key block's gradient as one fused chain, the block-by-block
        // continuation would not give its bits: those shapes keep the composed path.
        assert!(!takes(2, 32), "k ≤ 2: gemm's outer-product path");
        assert!(!takes(256, 1), "head dim 1: gemm's matrix-vector path");
        assert!(
            !takes(MAX_SEQ_LEN + 1, 32),
            "inner dimension past one gemm block"
        );
        let fma = std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma");
        for (t, d) in [(3, 2), (32, 8), (256, 32), (MAX_SEQ_LEN, 64)] {
            assert_eq!(takes(t, d), fma, "T = {t}, d = {d}");
        }
    }

    #[test]
    fn row_blocks_cover_the_sequence_and_never_end_short() {
        for t in 1..300 {
            let blocks = row_blocks(t);
            assert_eq!(blocks[0].0, 0);
            assert_eq!(blocks.last().unwrap().1, t);
            for pair in blocks.windows(2) {
                assert_eq!(pair[0].1, pair[1].0, "T = {t}");
            }
            if blocks.len() > 1 {
                assert!(
                    blocks.iter().all(|(a, b)| b - a >= MIN_BLOCK),
                    "T = {t}: {blocks:?}"
                );
            }
        }
    }
}
