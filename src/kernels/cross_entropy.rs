//! Mean cross-entropy of logits against class ids, loss and `dlogits` each in one pass.
//!
//! candle-nn's `cross_entropy` is `log_softmax` (max, subtract, exp, sum, log, subtract) then a
//! gather, a sum and a division; its backward walks the same chain back, materialising every
//! `(B·T, vocab)` intermediate and its gradient. The closed form needs only the row's
//! log-sum-exp:
//!
//! ```text
//! loss = mean_r (lse_r − x[r, t_r]),  lse_r = m_r + ln Σ_j exp(x[r, j] − m_r)
//! dx[r, j] = dloss / N · (exp(x[r, j] − lse_r) − [j = t_r])
//! ```
//!
//! Rows run in parallel; the per-row losses are summed in row order.

use super::math::exp;
use super::slices::{f32_slice, par_rows, sum, sum_map, u32_slice, with_f32, with_u32};
use crate::error::Result;
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};

/// Returns the mean over rows of `−log softmax(logits)[target]`: `logits` `(N, V)` f32,
/// `targets` `(N)` u32.
///
/// # Errors
/// Candle errors: wrong dtypes or shapes, or a target id not below `V`.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let (n, _v) = logits.dims2()?;
    if logits.dtype() != DType::F32 || targets.dtype() != DType::U32 || targets.dims() != [n] {
        return Err(candle_core::Error::Msg(format!(
            "cross_entropy: (N, V) f32 logits and (N) u32 targets expected, got {:?} {:?} and {:?} {:?}",
            logits.dtype(),
            logits.dims(),
            targets.dtype(),
            targets.dims()
        ))
        .into());
    }
    Ok(logits
        .contiguous()?
        .apply_op2(&targets.contiguous()?, CrossEntropy)?)
}

struct CrossEntropy;

/// Returns each row's log-sum-exp, checking the targets on the way.
fn log_sum_exp(x: &[f32], targets: &[u32], v: usize) -> candle_core::Result<Vec<f32>> {
    if let Some(&t) = targets.iter().find(|&&t| t as usize >= v) {
        return Err(candle_core::Error::Msg(format!(
            "cross_entropy: target {t} out of range for {v} classes"
        )));
    }
    let lse = par_rows(
        targets.len(),
        1,
        #[inline(always)]
        |r, out| {
            let row = &x[r * v..(r + 1) * v];
            let m = row.iter().fold(f32::NEG_INFINITY, |m, &a| m.max(a));
            out[0] = m + sum_map(row, |a| exp(a - m)).ln();
        },
    );
    Ok(lse)
}

impl CustomOp2 for CrossEntropy {
    fn name(&self) -> &'static str {
        "lossdiff-cross-entropy"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, targets) = (f32_slice(s1, l1)?, u32_slice(s2, l2)?);
        let v = x.len() / targets.len().max(1);
        let mut losses = log_sum_exp(x, targets, v)?;
        for (r, (l, &t)) in losses.iter_mut().zip(targets).enumerate() {
            *l -= x[r * v + t as usize];
        }
        let mean = sum(&losses) / targets.len() as f32;
        Ok((CpuStorage::F32(vec![mean]), Shape::from(())))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        _loss: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (n, v) = logits.dims2()?;
        let scale = grad.to_dtype(DType::F32)?.to_scalar::<f32>()? / n as f32;
        let dx = with_f32(logits, |x| {
            with_u32(targets, |targets| {
                let lse = log_sum_exp(x, targets, v)?;
                let dx = par_rows(
                    x.len(),
                    v,
                    #[inline(always)]
                    |r, out| {
                        let row = &x[r * v..(r + 1) * v];
                        for (o, &a) in out.iter_mut().zip(row) {
                            *o = exp(a - lse[r]) * scale;
                        }
                        out[targets[r] as usize] -= scale;
                    },
                );
                Ok(dx)
            })
        })?;
        Ok((Some(Tensor::from_vec(dx, (n, v), logits.device())?), None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_support::{assert_close, seeded};
    use candle_core::{Device, Var};

    fn case(n: usize, v: usize) -> (Var, Tensor) {
        let dev = Device::Cpu;
        let x = Var::from_vec(
            seeded(n * v, 7).iter().map(|a| a * 8.0).collect(),
            (n, v),
            &dev,
        )
        .unwrap();
        let t: Vec<u32> = (0..n).map(|i| ((i * 31 + 5) % v) as u32).collect();
        (x, Tensor::from_vec(t, n, &dev).unwrap())
    }

    #[test]
    fn cross_entropy_matches_candle_nn_and_its_gradient() {
        let (x, t) = case(133, 67);
        // Scaled as the trainer scales it (loss / grad_accum_steps), so the upstream
        // gradient is not 1.
        let fused = (cross_entropy(&x, &t).unwrap() * 0.5).unwrap();
        let composed = (candle_nn::loss::cross_entropy(&x, &t).unwrap() * 0.5).unwrap();
        assert_close(&fused, &composed, 1e-6, "cross-entropy loss");
        let (gf, gc) = (fused.backward().unwrap(), composed.backward().unwrap());
        assert_close(gf.get(&x).unwrap(), gc.get(&x).unwrap(), 1e-7, "dlogits");
    }

    #[test]
    fn uniform_logits_cost_ln_vocab() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((4, 64), DType::F32, &dev).unwrap();
        let t = Tensor::from_vec(vec![0u32, 1, 2, 63], 4, &dev).unwrap();
        let loss: f32 = cross_entropy(&x, &t).unwrap().to_scalar().unwrap();
        approx::assert_abs_diff_eq!(loss, 64f32.ln(), epsilon = 1e-6);
    }

    #[test]
    fn an_out_of_range_target_is_an_error() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((2, 4), DType::F32, &dev).unwrap();
        let t = Tensor::from_vec(vec![0u32, 4], 2, &dev).unwrap();
        let err = cross_entropy(&x, &t).unwrap_err().to_string();
        assert!(err.contains("target 4 out of range"), "{err}");
    }
}
