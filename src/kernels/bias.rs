//! Bias addition, `y + b` over the last dim, whose backward is a plain column sum.
//!
//! candle differentiates `broadcast_add` by summing the gradient over the broadcast (leading)
//! dims with its generic strided reduction, which was the largest non-matmul cost of a training
//! step (a sixth of the `small` step). Here the bias gradient is one pass over contiguous rows,
//! summed in fixed row blocks (see `slices`), so its bits do not depend on the thread count.

use super::slices::{column_sums, f32_slice, par_rows_uninit};
use crate::error::Result;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Shape, Tensor};

/// Returns `y + bias` with `bias` (D) broadcast over the rows of `y` (..., D).
///
/// f32 only runs the kernel; other dtypes take candle's `broadcast_add` (same mathematics).
///
/// # Errors
/// Candle errors from making the inputs contiguous.
pub fn add_bias(y: &Tensor, bias: &Tensor) -> Result<Tensor> {
    if y.dtype() != DType::F32 || bias.dtype() != DType::F32 || bias.rank() != 1 {
        return Ok(y.broadcast_add(bias)?);
    }
    let d = y.dims().last().copied().unwrap_or(0);
    if bias.dim(0)? != d {
        return Ok(y.broadcast_add(bias)?);
    }
    Ok(y.contiguous()?.apply_op2(&bias.contiguous()?, AddBias)?)
}

struct AddBias;

impl CustomOp2 for AddBias {
    fn name(&self) -> &'static str {
        "lossdiff-add-bias"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (y, b) = (f32_slice(s1, l1)?, f32_slice(s2, l2)?);
        let d = b.len();
        // SAFETY: a row of `o` has `d` elements, as many as `y`'s row and `b`: the loop writes
        // each.
        let out = unsafe {
            par_rows_uninit(
                y.len(),
                d,
                #[inline(always)]
                |r, o| {
                    for ((o, a), c) in o.iter_mut().zip(&y[r * d..(r + 1) * d]).zip(b) {
                        o.write(a + c);
                    }
                },
            )
        };
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _y: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let db = grad.apply_op1_no_bwd(&ColumnSum)?;
        Ok((Some(grad), Some(db)))
    }
}

/// Sums a (..., D) tensor over every leading dim, in `column_sums`' fixed row blocks.
struct ColumnSum;

impl CustomOp1 for ColumnSum {
    fn name(&self) -> &'static str {
        "lossdiff-column-sum"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = f32_slice(s, l)?;
        let d = l.dims().last().copied().unwrap_or(0);
        let rows = g.len().checked_div(d).unwrap_or(0);
        let acc = column_sums(
            rows,
            d,
            #[inline(always)]
            |r, acc| {
                for (a, x) in acc.iter_mut().zip(&g[r * d..(r + 1) * d]) {
                    *a += x;
                }
            },
        );
        Ok((CpuStorage::F32(acc), Shape::from(d)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_support::seeded;
    use candle_core::{Device, Var};

    #[test]
    fn add_bias_matches_broadcast_add_and_its_gradients() {
        let dev = Device::Cpu;
        let (n, d) = (37, 13); // ragged on purpose
        let y = Var::from_vec(seeded(n * d, 1), (n, d), &dev).unwrap();
        let b = Var::from_vec(seeded(d, 2), d, &dev).unwrap();
        let w = Tensor::from_vec(seeded(n * d, 3), (n, d), &dev).unwrap();

        let fused = add_bias(y.as_tensor(), b.as_tensor()).unwrap();
        let composed = y.broadcast_add(b.as_tensor()).unwrap();
        let diff = (&fused - &composed)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0, "forward is exact");

        let gf = (fused * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let gc = (composed * &w)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for v in [&y, &b] {
            let (a, c) = (gf.get(v).unwrap(), gc.get(v).unwrap());
            let err = (a - c).unwrap().abs().unwrap().max_all().unwrap();
            approx::assert_abs_diff_eq!(err.to_scalar::<f32>().unwrap(), 0.0, epsilon = 1e-5);
        }
    }

    #[test]
    fn bias_gradient_sums_leading_dims_of_a_3d_input() {
        let dev = Device::Cpu;
        let y = Var::from_vec(vec![0f32; 2 * 3 * 4], (2, 3, 4), &dev).unwrap();
        let b = Var::from_vec(vec![0f32; 4], 4, &dev).unwrap();
        let out = add_bias(y.as_tensor(), b.as_tensor()).unwrap();
        let g = out.sum_all().unwrap().backward().unwrap();
        let db: Vec<f32> = g.get(&b).unwrap().to_vec1().unwrap();
        assert_eq!(db, vec![6.0; 4], "each bias entry feeds 2 × 3 outputs");
    }
}
