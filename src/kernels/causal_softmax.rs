//! Naive attention's `softmax(scores · scale + causal mask)` as one op over the `T × T` scores.
//!
//! Composed, this is an affine, a broadcast add of the `−∞` mask, and candle-nn's `softmax`
//! (max, subtract, exp, sum, divide): six score-sized buffers forward and as many backward. The
//! fused op reads the scores once, touches only the causal half of each row, and differentiates
//! in closed form:
//!
//! ```text
//! P[i, j] = exp(scale · S[i, j] − m_i) / Σ_{k ≤ i} exp(scale · S[i, k] − m_i)   (j ≤ i; 0 above)
//! dS[i, j] = scale · P[i, j] · (dP[i, j] − Σ_k P[i, k] dP[i, k])
//! ```
//!
//! Query `i` is the row's index within its `T × T` matrix; rows run in parallel.

use super::math::exp;
use super::slices::{f32_slice, par_rows, sum, sum_map2, with_f32};
use crate::error::Result;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor, D};

/// Returns causal softmax probabilities of `scores · scale` for `scores` `(…, T, T)` f32.
///
/// # Errors
/// Candle errors: a non-f32 input or non-square last two dims.
pub fn causal_softmax(scores: &Tensor, scale: f32) -> Result<Tensor> {
    let (tq, tk) = (scores.dim(D::Minus2)?, scores.dim(D::Minus1)?);
    if scores.dtype() != DType::F32 || tq != tk {
        return Err(candle_core::Error::Msg(format!(
            "causal_softmax: f32 (…, T, T) scores expected, got {:?} {:?}",
            scores.dtype(),
            scores.dims()
        ))
        .into());
    }
    Ok(scores.contiguous()?.apply_op1(CausalSoftmax { scale })?)
}

/// Turns the visible scores of one query row into probabilities in place:
/// `p_j = exp(scale · s_j − m) / Σ_k exp(scale · s_k − m)` with `m` the row's scaled maximum.
///
/// Shared with the naive backend's fused attention (`attention::naive_fused`), which must give
/// this op's bits.
#[inline(always)]
pub(crate) fn softmax_row(row: &mut [f32], scale: f32) {
    let m = row.iter().fold(f32::NEG_INFINITY, |m, &a| m.max(a * scale));
    for a in row.iter_mut() {
        *a = exp(*a * scale - m);
    }
    let inv = 1.0 / sum(row);
    row.iter_mut().for_each(|p| *p *= inv);
}

/// Turns one row's gradient of the probabilities `g` into the gradient of its scores in place:
/// `dS_j = scale · p_j · (g_j − Σ_k p_k g_k)`, over the row's visible keys.
#[inline(always)]
pub(crate) fn softmax_grad_row(p: &[f32], g: &mut [f32], scale: f32) {
    let pg = sum_map2(p, g, |p, g| p * g);
    for (g, &p) in g.iter_mut().zip(p) {
        *g = scale * p * (*g - pg);
    }
}

struct CausalSoftmax {
    scale: f32,
}

impl CustomOp1 for CausalSoftmax {
    fn name(&self) -> &'static str {
        "lossdiff-causal-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l)?;
        let t = l.dims().last().copied().unwrap_or(0);
        let scale = self.scale;
        let out = par_rows(
            x.len(),
            t,
            #[inline(always)]
            |r, out| {
                let n = r % t + 1; // keys 0..=i are visible to query i
                out[..n].copy_from_slice(&x[r * t..r * t + n]);
                softmax_row(&mut out[..n], scale);
            },
        );
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, s: &Tensor, p: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let t = s.dim(D::Minus1)?;
        let scale = self.scale;
        let ds = with_f32(p, |p| {
            with_f32(grad, |g| {
                let ds = par_rows(
                    p.len(),
                    t,
                    #[inline(always)]
                    |r, out| {
                        let n = r % t + 1;
                        out[..n].copy_from_slice(&g[r * t..r * t + n]);
                        softmax_grad_row(&p[r * t..r * t + n], &mut out[..n], scale);
                    },
                );
                Ok(ds)
            })
        })?;
        Ok(Some(Tensor::from_vec(ds, s.shape(), s.device())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_support::{assert_close, probed_grads, seeded};
    use candle_core::{Device, Var};

    /// The composed reference, as `attention_naive` computes it.
    fn composed(s: &Tensor, scale: f32) -> Tensor {
        let t = s.dim(D::Minus1).unwrap();
        let mask: Vec<f32> = (0..t)
            .flat_map(|i| (0..t).map(move |j| if j <= i { 0.0 } else { f32::NEG_INFINITY }))
            .collect();
        let mask = Tensor::from_vec(mask, (t, t), s.device()).unwrap();
        let scaled = (s * f64::from(scale))
            .unwrap()
            .broadcast_add(&mask)
            .unwrap();
        candle_nn::ops::softmax(&scaled, D::Minus1).unwrap()
    }

    #[test]
    fn causal_softmax_matches_masked_softmax_and_its_gradient() {
        let dev = Device::Cpu;
        let (b, h, t) = (2, 3, 19);
        let s = Var::from_vec(
            seeded(b * h * t * t, 11).iter().map(|a| a * 10.0).collect(),
            (b, h, t, t),
            &dev,
        )
        .unwrap();
        let probe = Tensor::from_vec(seeded(b * h * t * t, 12), (b, h, t, t), &dev).unwrap();
        let fused = causal_softmax(&s, 0.35).unwrap();
        let reference = composed(&s, 0.35);
        assert_close(&fused, &reference, 1e-6, "probabilities");
        let gf = probed_grads(fused, &probe);
        let gc = probed_grads(reference, &probe);
        assert_close(gf.get(&s).unwrap(), gc.get(&s).unwrap(), 1e-6, "dscores");
    }

    #[test]
    fn future_keys_get_exactly_zero_probability() {
        let dev = Device::Cpu;
        let s = Tensor::from_vec(seeded(16, 3), (1, 1, 4, 4), &dev).unwrap();
        let p: Vec<Vec<f32>> = causal_softmax(&s, 1.0)
            .unwrap()
            .reshape((4, 4))
            .unwrap()
            .to_vec2()
            .unwrap();
        for (i, row) in p.iter().enumerate() {
            assert!(row[i + 1..].iter().all(|&x| x == 0.0), "row {i}: {row:?}");
            approx::assert_abs_diff_eq!(row.iter().sum::<f32>(), 1.0, epsilon = 1e-6);
        }
    }
}
