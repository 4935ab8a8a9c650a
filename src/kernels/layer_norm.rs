//! LayerNorm over the last dim, `(x − mean) / sqrt(var + eps) · w + b`, with its backward.
//!
//! The composed version is nine candle ops (two means, a broadcast subtract, square, add, sqrt,
//! broadcast divide, multiply, add), and autograd turns each broadcast into a strided reduction;
//! in the `small` model LayerNorm and its gradient were about a tenth of a step. Here a row's
//! statistics are two short sums, and the backward is the textbook closed form
//!
//! ```text
//! x̂ = (x − μ) · r,  r = 1 / sqrt(σ² + eps),  g = dy · w
//! dx = r · (g − mean(g) − x̂ · mean(g · x̂)),  dw = Σ_rows dy · x̂,  db = Σ_rows dy
//! ```
//!
//! with rows in parallel and the parameter sums in fixed row blocks (see `slices`).

use super::slices::{column_sums, f32_slice, par_rows, sum, sum_map, sum_map2, with_f32};
use crate::error::Result;
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Tensor, D};

/// Returns `LayerNorm(x)` over the last dim with gain `w` and bias `b` (both of that length).
///
/// f32 runs the kernel; other dtypes are rejected by the caller's f32 cast in the model.
///
/// # Errors
/// Candle errors: a non-f32 input, or `w`/`b` not matching the last dim.
pub fn layer_norm(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
    let d = x.dim(D::Minus1)?;
    if x.dtype() != DType::F32 || w.dims() != [d] || b.dims() != [d] {
        return Err(candle_core::Error::Msg(format!(
            "layer_norm: f32 (…, {d}) input with ({d}) gain and bias expected, got {:?} {:?} {:?}",
            x.dtype(),
            w.dims(),
            b.dims()
        ))
        .into());
    }
    let op = LayerNorm { eps: eps as f32 };
    Ok(x.contiguous()?
        .apply_op3(&w.contiguous()?, &b.contiguous()?, op)?)
}

struct LayerNorm {
    eps: f32,
}

/// Returns each row's `(mean, 1 / sqrt(var + eps))`.
fn row_stats(x: &[f32], d: usize, eps: f32) -> Vec<(f32, f32)> {
    let stats = par_rows(
        2 * (x.len() / d),
        2,
        #[inline(always)]
        |r, s| {
            let row = &x[r * d..(r + 1) * d];
            let mean = sum(row) / d as f32;
            let var = sum_map(row, |v| (v - mean) * (v - mean)) / d as f32;
            s[0] = mean;
            s[1] = 1.0 / (var + eps).sqrt();
        },
    );
    stats.chunks_exact(2).map(|s| (s[0], s[1])).collect()
}

impl CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "lossdiff-layer-norm"
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
        let (x, w, b) = (f32_slice(s1, l1)?, f32_slice(s2, l2)?, f32_slice(s3, l3)?);
        let d = w.len();
        let stats = row_stats(x, d, self.eps);
        let out = par_rows(
            x.len(),
            d,
            #[inline(always)]
            |r, o| {
                let (mean, rstd) = stats[r];
                let row = &x[r * d..(r + 1) * d];
                for (((o, v), w), b) in o.iter_mut().zip(row).zip(w).zip(b) {
                    *o = (v - mean) * rstd * w + b;
                }
            },
        );
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let d = w.elem_count();
        let (dx, dwb) = with_f32(x, |x| {
            with_f32(w, |w| with_f32(grad, |dy| Ok(backward(x, w, dy, self.eps))))
        })?;
        let dev = x.device();
        let dx = Tensor::from_vec(dx, x.shape(), dev)?;
        let dw = Tensor::from_slice(&dwb[..d], d, dev)?;
        let db = Tensor::from_slice(&dwb[d..], d, dev)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// Returns `dx` and the concatenated `[dw, db]`.
fn backward(x: &[f32], w: &[f32], dy: &[f32], eps: f32) -> (Vec<f32>, Vec<f32>) {
    let d = w.len();
    let stats = row_stats(x, d, eps);
    let dx = par_rows(
        x.len(),
        d,
        #[inline(always)]
        |r, out| {
            let (mean, rstd) = stats[r];
            let (row, dy) = (&x[r * d..(r + 1) * d], &dy[r * d..(r + 1) * d]);
            // out holds g = dy·w first, then dx.
            for ((o, g), w) in out.iter_mut().zip(dy).zip(w) {
                *o = g * w;
            }
            let mean_g = sum(out) / d as f32;
            let xhat = |v: f32| (v - mean) * rstd;
            let mean_gx = sum_map2(out, row, |g, v| g * xhat(v)) / d as f32;
            for (o, &v) in out.iter_mut().zip(row) {
                *o = rstd * (*o - mean_g - xhat(v) * mean_gx);
            }
        },
    );
    let dwb = column_sums(
        x.len() / d,
        2 * d,
        #[inline(always)]
        |r, acc| {
            let (mean, rstd) = stats[r];
            let (row, dy) = (&x[r * d..(r + 1) * d], &dy[r * d..(r + 1) * d]);
            let (dw, db) = acc.split_at_mut(d);
            for (((a, v), g), c) in dw.iter_mut().zip(row).zip(dy).zip(db.iter_mut()) {
                *a += g * ((v - mean) * rstd);
                *c += g;
            }
        },
    );
    (dx, dwb)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_support::{assert_close, probed_grads, seeded};
    use candle_core::{Device, Var};

    /// The composed reference, op for op as `model::LayerNorm` computes it.
    fn composed(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Tensor {
        let mean = x.mean_keepdim(D::Minus1).unwrap();
        let centred = x.broadcast_sub(&mean).unwrap();
        let var = centred.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
        let normed = centred
            .broadcast_div(&(var + eps).unwrap().sqrt().unwrap())
            .unwrap();
        normed.broadcast_mul(w).unwrap().broadcast_add(b).unwrap()
    }

    #[test]
    fn layer_norm_matches_composed_ops_and_their_gradients() {
        let dev = Device::Cpu;
        let (rows, d) = (3 * 70, 37); // ragged row blocks and lanes
        let x = Var::from_vec(
            seeded(rows * d, 1).iter().map(|v| v * 4.0 + 1.0).collect(),
            (3, 70, d),
            &dev,
        )
        .unwrap();
        let w = Var::from_vec(seeded(d, 2).iter().map(|v| v + 1.0).collect(), d, &dev).unwrap();
        let b = Var::from_vec(seeded(d, 3), d, &dev).unwrap();
        let probe = Tensor::from_vec(seeded(rows * d, 4), (3, 70, d), &dev).unwrap();

        let fused = layer_norm(&x, &w, &b, 1e-5).unwrap();
        let reference = composed(&x, &w, &b, 1e-5);
        assert_close(&fused, &reference, 2e-6, "layer_norm forward");
        let gf = probed_grads(fused, &probe);
        let gc = probed_grads(reference, &probe);
        for (v, what, tol) in [(&x, "dx", 1e-5), (&w, "dw", 1e-5), (&b, "db", 1e-5)] {
            assert_close(gf.get(v).unwrap(), gc.get(v).unwrap(), tol, what);
        }
    }

    #[test]
    fn a_constant_row_normalises_to_the_bias() {
        let dev = Device::Cpu;
        let x = Tensor::from_vec(vec![3f32; 8], (1, 8), &dev).unwrap();
        let w = Tensor::from_vec(vec![2f32; 8], 8, &dev).unwrap();
        let b = Tensor::from_vec((0..8).map(|i| i as f32).collect(), 8, &dev).unwrap();
        let y: Vec<f32> = layer_norm(&x, &w, &b, 1e-5)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(y, (0..8).map(|i| i as f32).collect::<Vec<_>>());
    }
}
