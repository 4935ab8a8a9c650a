//! AdamW with parameter groups and global-norm clipping, in plain Rust over f32 buffers.
//!
//! candle-nn's `AdamW` has one weight decay for all parameters and no clipping; Megatron-LM
//! exempts biases, norms (and here embeddings) from decay and clips by global norm. The update is
//! PyTorch's `torch.optim.AdamW` formula operation for operation, in f32, one parameter at a time
//! in name order, so results are bitwise reproducible.

use crate::config::TrainConfig;
use crate::error::Result;
use crate::faults::Fault;
use crate::params::ParamKind;
use candle_core::{CpuStorage, InplaceOp1, Layout, Tensor, Var};
use rayon::prelude::*;
use std::cell::RefCell;

struct Slot {
    var: Var,
    decays: bool,
    m: Vec<f32>,
    v: Vec<f32>,
}

/// AdamW state over a fixed, ordered list of parameters.
pub struct AdamW {
    slots: Vec<Slot>,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    t: i32,
}

impl AdamW {
    /// Creates the optimiser over `params` (name order), taking hyper-parameters from `cfg`.
    pub fn new(params: Vec<(String, Var)>, cfg: &TrainConfig) -> Self {
        let slots = params
            .into_iter()
            .map(|(name, var)| {
                let n = var.elem_count();
                Slot {
                    var,
                    decays: ParamKind::of(&name).decays()
                        || (cfg.inject == Fault::WeightDecayOnNorms
                            && ParamKind::of(&name) == ParamKind::Norm),
                    m: vec![0.0; n],
                    v: vec![0.0; n],
                }
            })
            .collect();
        AdamW {
            slots,
            beta1: cfg.adam_beta1,
            beta2: cfg.adam_beta2,
            eps: cfg.adam_eps,
            weight_decay: cfg.weight_decay,
            t: 0,
        }
    }

    /// Applies one update with learning rate `lr` and gradients `grads` (same order as the params).
    ///
    /// # Errors
    /// Candle errors reading gradients or writing parameters.
    pub fn step(&mut self, grads: &[Vec<f32>], lr: f64) -> Result<()> {
        self.t += 1;
        let (b1, b2) = (self.beta1 as f32, self.beta2 as f32);
        let bc1 = 1.0 - self.beta1.powi(self.t);
        let bc2_sqrt = (1.0 - self.beta2.powi(self.t)).sqrt();
        let step_size = (lr / bc1) as f32;
        let eps = self.eps as f32;
        for (slot, g) in self.slots.iter_mut().zip(grads) {
            let decay = if slot.decays {
                (1.0 - lr * self.weight_decay) as f32
            } else {
                1.0
            };
            let update = Update {
                moments: RefCell::new((&mut slot.m, &mut slot.v)),
                g,
                decay,
                b1,
                b2,
                bc2_sqrt: bc2_sqrt as f32,
                step_size,
                eps,
            };
            // In place in the parameter's own storage: no copy out and back per step.
            slot.var.as_tensor().inplace_op1(&update)?;
        }
        Ok(())
    }
}

/// One parameter's AdamW update, applied to its storage in place.
struct Update<'a> {
    moments: RefCell<(&'a mut Vec<f32>, &'a mut Vec<f32>)>,
    g: &'a [f32],
    decay: f32,
    b1: f32,
    b2: f32,
    bc2_sqrt: f32,
    step_size: f32,
    eps: f32,
}

impl InplaceOp1 for Update<'_> {
    fn name(&self) -> &'static str {
        "lossdiff-adamw"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let p = match (storage, layout.contiguous_offsets()) {
            (CpuStorage::F32(p), Some((start, end))) => &mut p[start..end],
            _ => candle_core::bail!("adamw: parameters are contiguous f32"),
        };
        let mut moments = self.moments.borrow_mut();
        let (m, v) = &mut *moments;
        let (b1, b2, g) = (self.b1, self.b2, self.g);
        if [m.len(), v.len(), g.len()] != [p.len(); 3] {
            candle_core::bail!("adamw: moments and gradient do not match the parameter's length");
        }
        let (decay, bc2_sqrt, eps, step_size) =
            (self.decay, self.bc2_sqrt, self.eps, self.step_size);
        crate::kernels::slices::wide(
            #[inline(always)]
            || {
                for (((p, m), v), &g) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
                    // torch: p *= 1 - lr·wd; m = β1 m + (1-β1) g; v = β2 v + (1-β2) g²;
                    //        p -= (lr / bc1) · m / (sqrt(v) / sqrt(bc2) + eps)
                    *p *= decay;
                    *m = b1 * *m + (1.0 - b1) * g;
                    *v = b2 * *v + (1.0 - b2) * g * g;
                    let denom = v.sqrt() / bc2_sqrt + eps;
                    *p -= step_size * *m / denom;
                }
            },
        );
        Ok(())
    }
}

/// Adds `grad`'s elements into `acc` (same length) without copying them out first.
///
/// # Errors
/// Candle errors: a non-f32 or non-CPU gradient, or a length mismatch.
pub fn accumulate(acc: &mut [f32], grad: &Tensor) -> Result<()> {
    crate::kernels::slices::with_f32(grad, |g| {
        if g.len() != acc.len() {
            return Err(candle_core::Error::Msg(format!(
                "gradient of {:?} elements {:?} does not fit an f32 buffer of {}",
                grad.shape(),
                grad.dtype(),
                acc.len()
            )));
        }
        for (a, x) in acc.iter_mut().zip(g) {
            *a += x;
        }
        Ok(())
    })?;
    Ok(())
}

/// Returns the global L2 norm of `grads`, summing squares in f64 in parameter order.
///
/// Each tensor's squares are one sequential sum, so the tensors are summed on rayon's threads
/// without changing a bit; their sums are then added in parameter order. (`medium`'s 4.8 M
/// squares are a chain of dependent adds: milliseconds on one thread.)
pub fn global_norm(grads: &[Vec<f32>]) -> f64 {
    let per_tensor: Vec<f64> = grads
        .par_iter()
        .map(|g| g.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>())
        .collect();
    per_tensor.iter().sum::<f64>().sqrt()
}

/// Scales `grads` in place so their global norm is at most `max_norm` (Megatron-LM's
/// `clip_grad_norm_fp32`: coefficient `max_norm / (norm + 1e-6)`, applied only when below 1).
/// Returns the norm before clipping. `max_norm <= 0` disables clipping.
pub fn clip_global_norm(grads: &mut [Vec<f32>], max_norm: f64) -> f64 {
    let norm = global_norm(grads);
    if max_norm > 0.0 {
        let coeff = max_norm / (norm + 1e-6);
        if coeff < 1.0 {
            let c = coeff as f32;
            grads
                .par_iter_mut()
                .for_each(|g| g.iter_mut().for_each(|x| *x *= c));
        }
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;
    use candle_core::Device;

    #[test]
    fn adamw_matches_torch_two_steps() {
        // torch.optim.AdamW([p], lr=0.1, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1) with
        // p = [1, -2] and grads [0.5, -1] then [0.25, 0.5], worked by hand from torch's update:
        // step 1: p·0.99 − (0.1/0.1)·m/(sqrt(v)/sqrt(0.05)) with m = [0.05, −0.1] → [0.89, −1.88]
        let var = Var::from_tensor(&Tensor::new(&[1.0f32, -2.0], &Device::Cpu).unwrap()).unwrap();
        let cfg = TrainConfig {
            adam_beta1: 0.9,
            adam_beta2: 0.95,
            adam_eps: 1e-8,
            weight_decay: 0.1,
            ..TrainConfig::default()
        };
        let mut opt = AdamW::new(vec![("h.0.mlp.c_fc.weight".into(), var.clone())], &cfg);
        opt.step(&[vec![0.5, -1.0]], 0.1).unwrap();
        let p: Vec<f32> = var.as_tensor().to_vec1().unwrap();
        assert_relative_eq!(p[0], 0.89, max_relative = 1e-6);
        assert_relative_eq!(p[1], -1.88, max_relative = 1e-6);
        opt.step(&[vec![0.25, 0.5]], 0.1).unwrap();
        let p: Vec<f32> = var.as_tensor().to_vec1().unwrap();
        // step 2: m = [0.07, −0.04], v = [0.015, 0.06],
        // bc1 = 0.19, bc2 = 0.0975; p = p·0.99 − 0.1/0.19 · m / (sqrt(v)/sqrt(bc2) + 1e-8)
        let expect = |p0: f64, m: f64, v: f64| {
            p0 * 0.99 - (0.1 / 0.19) * m / (v.sqrt() / 0.0975f64.sqrt() + 1e-8)
        };
        assert_relative_eq!(
            f64::from(p[0]),
            expect(0.89, 0.07, 0.015),
            max_relative = 1e-6
        );
        assert_relative_eq!(
            f64::from(p[1]),
            expect(-1.88, -0.04, 0.06),
            max_relative = 1e-6
        );
    }

    #[test]
    fn no_decay_groups_skip_weight_decay() {
        let var = Var::from_tensor(&Tensor::new(&[1.0f32], &Device::Cpu).unwrap()).unwrap();
        let cfg = TrainConfig {
            weight_decay: 0.5,
            ..TrainConfig::default()
        };
        let mut opt = AdamW::new(vec![("ln_f.weight".into(), var.clone())], &cfg);
        opt.step(&[vec![0.0]], 0.1).unwrap();
        assert_eq!(var.as_tensor().to_vec1::<f32>().unwrap(), [1.0]);
    }

    #[test]
    fn clipping_scales_to_max_norm_and_reports_the_raw_norm() {
        let mut g = vec![vec![3.0f32], vec![4.0f32]];
        let norm = clip_global_norm(&mut g, 1.0);
        assert_eq!(norm, 5.0);
        assert_relative_eq!(global_norm(&g), 1.0, max_relative = 1e-6);
        let mut small = vec![vec![0.3f32, 0.4]];
        clip_global_norm(&mut small, 1.0);
        assert_eq!(small, [vec![0.3f32, 0.4]]);
    }

    #[test]
    fn the_global_norm_is_the_sequential_f64_sum_on_any_thread_count() {
        // Ragged tensors of seeded values: the parallel per-tensor sums must give the bits of one
        // sequential sum in parameter order, which is what the traces' grad_norm recorded.
        let mut s = 7u64;
        let grads: Vec<Vec<f32>> = [1, 17, 4096, 3, 100_000, 255]
            .iter()
            .map(|&n| {
                (0..n)
                    .map(|_| {
                        s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
                        (s >> 40) as f32 / (1u64 << 20) as f32 - 8.0
                    })
                    .collect()
            })
            .collect();
        let sequential = grads
            .iter()
            .map(|g| g.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>())
            .sum::<f64>()
            .sqrt();
        for threads in [1, 2, 4] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let norm = pool.install(|| global_norm(&grads));
            assert_eq!(norm.to_bits(), sequential.to_bits(), "{threads} threads");
        }
    }
}
