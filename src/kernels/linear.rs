//! A linear layer's product `x Wᵀ` as one op with its own backward.
//!
//! Through candle's ops, `x.matmul(w.t())` differentiates into `dx = dy W` and `dWᵀ = xᵀ dy`, and
//! autograd then copies `dWᵀ` into `W`'s layout on the step's own thread, one weight gradient per
//! linear layer per step. Here `dW = dyᵀ x` is computed in `W`'s layout directly, and the op is
//! one autograd node instead of three. Running `dx` and `dW` side by side, single-threaded each,
//! was measured too: no faster than one after the other on all the threads, so it is not done.
//!
//! Same bits as candle's ops: the forward and `dx` are the same gemm calls, and `dW` is the same
//! chain of multiply-adds per element with its operands' roles swapped. gemm splits the inner
//! dimension into blocks whose size depends only on its length (or, below 64 × 64 outputs, on
//! nothing else either way round), and never splits it across threads.

use super::gemm::{product, Mat};
use super::slices::{f32_slice, with_f32};
use crate::error::Result;
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};

/// Returns `x Wᵀ` for `x` `(n, d_in)` and `w` `(d_out, d_in)`.
///
/// f32 runs the kernel; other dtypes take candle's `matmul`.
///
/// # Errors
/// Candle errors on shape mismatch.
pub fn matmul_wt(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let ((n, d_in), (d_out, w_in)) = (x.dims2()?, w.dims2()?);
    if x.dtype() != DType::F32 || w.dtype() != DType::F32 || d_in != w_in || n * d_in * d_out == 0 {
        return Ok(x.matmul(&w.t()?)?);
    }
    Ok(x.contiguous()?.apply_op2(&w.contiguous()?, MatmulWt)?)
}

struct MatmulWt;

impl CustomOp2 for MatmulWt {
    fn name(&self) -> &'static str {
        "lossdiff-matmul-wt"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, w) = (f32_slice(s1, l1)?, f32_slice(s2, l2)?);
        let ((n, d_in), (d_out, _)) = (l1.shape().dims2()?, l2.shape().dims2()?);
        let threads = rayon::current_num_threads();
        let y = product(
            (n, d_out, d_in),
            Mat::rows(x, d_in),
            Mat::transposed(w, d_in),
            threads,
        );
        Ok((CpuStorage::F32(y), Shape::from((n, d_out))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let ((n, d_in), (d_out, _)) = (x.dims2()?, w.dims2()?);
        let (dx, dw) = with_f32(x, |xs| {
            with_f32(w, |ws| {
                with_f32(dy, |dys| {
                    let threads = rayon::current_num_threads();
                    let (dy, dy_t) = (Mat::rows(dys, d_out), Mat::transposed(dys, d_out));
                    let dx = product((n, d_in, d_out), dy, Mat::rows(ws, d_in), threads);
                    let dw = product((d_out, d_in, n), dy_t, Mat::rows(xs, d_in), threads);
                    Ok((dx, dw))
                })
            })
        })?;
        Ok((
            Some(Tensor::from_vec(dx, (n, d_in), x.device())?),
            Some(Tensor::from_vec(dw, (d_out, d_in), w.device())?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_support::seeded;
    use candle_core::{Device, Var};

    fn bits(t: &Tensor) -> Vec<u32> {
        let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// Returns `[y, dx, dw]` as bits, from the kernel or from candle's `x.matmul(w.t())`.
    fn run(n: usize, d_in: usize, d_out: usize, fused: bool) -> [Vec<u32>; 3] {
        let dev = Device::Cpu;
        let x = Var::from_vec(seeded(n * d_in, 1), (n, d_in), &dev).unwrap();
        let w = Var::from_vec(seeded(d_out * d_in, 2), (d_out, d_in), &dev).unwrap();
        let probe = Tensor::from_vec(seeded(n * d_out, 3), (n, d_out), &dev).unwrap();
        let y = if fused {
            matmul_wt(x.as_tensor(), w.as_tensor()).unwrap()
        } else {
            x.as_tensor().matmul(&w.as_tensor().t().unwrap()).unwrap()
        };
        let grads = (&y * &probe)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        [
            bits(&y),
            bits(grads.get(&x).unwrap()),
            bits(grads.get(&w).unwrap()),
        ]
    }

    #[test]
    fn the_linear_product_and_both_gradients_have_candles_bits() {
        // The model's shapes (small's qkv, medium's MLP down-projection with an inner dimension
        // of two gemm blocks), gemm's below-64×64 path, and ragged sizes.
        for (n, d_in, d_out) in [
            (1024, 128, 384),
            (2048, 1024, 256),
            (64, 64, 64),
            (37, 19, 23),
            (700, 600, 130),
        ] {
            for threads in [1, 2] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let (fused, candle) =
                    pool.install(|| (run(n, d_in, d_out, true), run(n, d_in, d_out, false)));
                for (what, (a, b)) in ["y", "dx", "dw"].iter().zip(fused.iter().zip(&candle)) {
                    assert!(
                        a == b,
                        "{what} differs at ({n}, {d_in}) × ({d_out}, {d_in})ᵀ, {threads} threads"
                    );
                }
            }
        }
    }
}
