//! GELU in its exact (erf) form, `x · Φ(x)`, with a one-pass backward `Φ(x) + x φ(x)`.
//!
//! candle's `gelu_erf` calls libm's `erff` per element (a branchy scalar routine) and
//! differentiates through six more tensor ops (`sqr`, `neg`, `exp`, `erf`, three affines), each
//! allocating a buffer the size of the MLP activation. Here `erf` and `exp` are the vectorisable
//! approximations of `math` (a few ulp), and the backward is one loop.

use super::math::{erf, exp};
use super::slices::{f32_slice, par_rows_uninit, with_f32};
use crate::error::Result;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};

/// Elements per parallel task: GELU is elementwise, so any split gives the same bits.
const CHUNK: usize = 4096;

/// `1 / sqrt(2π)`, the standard normal density at 0. (candle's composed backward truncates it
/// to 0.398942.)
const INV_SQRT_2PI: f32 = 0.398_942_3;

/// Returns `gelu(x) = x · (1 + erf(x / √2)) / 2` elementwise.
///
/// f32 runs the kernel; other dtypes take candle's `gelu_erf` (same mathematics).
///
/// # Errors
/// Candle errors from making the input contiguous.
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    if x.dtype() != DType::F32 {
        return Ok(x.gelu_erf()?);
    }
    Ok(x.contiguous()?.apply_op1(GeluErf)?)
}

#[inline(always)]
fn gelu(x: f32) -> f32 {
    (erf(x * std::f32::consts::FRAC_1_SQRT_2) + 1.0) * 0.5 * x
}

#[inline(always)]
fn gelu_grad(x: f32) -> f32 {
    let cdf = 0.5 + 0.5 * erf(x * std::f32::consts::FRAC_1_SQRT_2);
    cdf + x * INV_SQRT_2PI * exp(-0.5 * x * x)
}

struct GeluErf;

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "lossdiff-gelu-erf"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l)?;
        // SAFETY: row `i` of `o` is `x`'s elements from `i · CHUNK` (at most CHUNK of them):
        // the loop writes each.
        let out = unsafe {
            par_rows_uninit(
                x.len(),
                CHUNK,
                #[inline(always)]
                |i, o| {
                    for (o, &v) in o.iter_mut().zip(&x[i * CHUNK..]) {
                        o.write(gelu(v));
                    }
                },
            )
        };
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let dx = with_f32(x, |x| {
            with_f32(grad, |g| {
                // SAFETY: as in the forward; `g` has `x`'s length.
                let out = unsafe {
                    par_rows_uninit(
                        x.len(),
                        CHUNK,
                        #[inline(always)]
                        |i, o| {
                            let (x, g) = (&x[i * CHUNK..], &g[i * CHUNK..]);
                            for ((o, &v), &g) in o.iter_mut().zip(x).zip(g) {
                                o.write(g * gelu_grad(v));
                            }
                        },
                    )
                };
                Ok(out)
            })
        })?;
        Ok(Some(Tensor::from_vec(dx, x.shape(), x.device())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_support::{assert_close, probed_grads, seeded};
    use candle_core::{Device, Var};

    #[test]
    fn gelu_erf_matches_candle_gelu_erf_and_its_gradient() {
        let dev = Device::Cpu;
        let n = 3 * CHUNK + 17; // ragged last task
        let x = Var::from_vec(seeded(n, 5).iter().map(|v| v * 12.0).collect(), n, &dev).unwrap();
        let w = Tensor::from_vec(seeded(n, 6), n, &dev).unwrap();
        let fused = gelu_erf(x.as_tensor()).unwrap();
        let composed = x.as_tensor().gelu_erf().unwrap();
        assert_close(&fused, &composed, 1e-6, "gelu forward");
        let (gf, gc) = (probed_grads(fused, &w), probed_grads(composed, &w));
        // candle's backward uses 0.398942 for 1/sqrt(2π): a 3e-7 relative difference.
        assert_close(gf.get(&x).unwrap(), gc.get(&x).unwrap(), 2e-6, "gelu dx");
    }
}
