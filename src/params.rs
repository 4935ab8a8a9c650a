//! Seeded, ordered parameter storage behind candle's `VarBuilder`.
//!
//! candle's `VarMap` initialises from an unseeded RNG and iterates a `HashMap`, so two runs of the
//! same config would start from different weights and visit parameters in different orders.
//! [`ParamStore`] plugs into `VarBuilder::from_backend` instead: each parameter's initial values
//! are a pure function of `(seed, parameter name, element index)`, and parameters are kept in a
//! `BTreeMap`, so every loop over them (optimiser, grad norm, checksums) runs in name order.
//! The model code keeps candle's idiom (`vb.pp("c_attn")`, `Init::Randn`) unchanged.

use crate::rng::{hash_str, hash_words, mix64, normal};
use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::{Init, VarBuilder};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Which optimiser group a parameter belongs to; decides weight decay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// A weight matrix of a linear layer: decayed.
    Matrix,
    /// A bias vector: not decayed.
    Bias,
    /// A LayerNorm gain or bias: not decayed.
    Norm,
    /// A token or position embedding (and a tied LM head): not decayed.
    Embedding,
}

impl ParamKind {
    /// Classifies a parameter by its nanoGPT-style name.
    pub fn of(name: &str) -> ParamKind {
        let leaf = name.rsplit('.').next().unwrap_or(name);
        let parent = name.rsplit('.').nth(1).unwrap_or("");
        if parent.starts_with("ln_") {
            ParamKind::Norm
        } else if matches!(parent, "wte" | "wpe") {
            ParamKind::Embedding
        } else if leaf == "bias" {
            ParamKind::Bias
        } else {
            ParamKind::Matrix
        }
    }

    /// Returns whether decoupled weight decay applies, as in Megatron-LM's default param groups.
    pub fn decays(self) -> bool {
        self == ParamKind::Matrix
    }
}

/// Creates parameters with seeded values and keeps them in name order.
#[derive(Clone)]
pub struct ParamStore {
    seed: u64,
    perturb_seed: u64,
    vars: Arc<Mutex<BTreeMap<String, Var>>>,
}

impl ParamStore {
    /// Creates an empty store. `perturb_seed != 0` flips the last mantissa bit of a seeded half of
    /// the non-zero initial values: the benign, rounding-sized nudge the perturbation ensemble uses.
    pub fn new(seed: u64, perturb_seed: u64) -> Self {
        ParamStore {
            seed,
            perturb_seed,
            vars: Arc::new(Mutex::new(BTreeMap::new())),
        }
    }

    /// Returns a `VarBuilder` that draws from this store.
    pub fn var_builder(&self, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self.clone()), DType::F32, device.clone())
    }

    /// Returns every parameter as `(name, var)`, sorted by name.
    pub fn vars(&self) -> Vec<(String, Var)> {
        self.lock()
            .iter()
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Var>> {
        // A poisoned lock only means another thread panicked mid-insert of a whole Var; the map
        // itself is still consistent.
        self.vars.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn initial_values(&self, name: &str, n: usize, init: Init) -> candle_core::Result<Vec<f32>> {
        let key = hash_words(&[self.seed, hash_str(name)]);
        let mut data: Vec<f32> = match init {
            Init::Const(c) => vec![c as f32; n],
            Init::Randn { mean, stdev } => (0..n as u64)
                .map(|i| (mean + stdev * normal(key, i)) as f32)
                .collect(),
            other => candle_core::bail!("parameter {name}: unsupported init {other:?}"),
        };
        if self.perturb_seed != 0 {
            let pkey = hash_words(&[self.perturb_seed, hash_str(name)]);
            for (i, x) in data.iter_mut().enumerate() {
                if *x != 0.0 && mix64(pkey ^ i as u64) & 1 == 1 {
                    *x = f32::from_bits(x.to_bits() ^ 1);
                }
            }
        }
        Ok(data)
    }
}

impl candle_nn::var_builder::SimpleBackend for ParamStore {
    fn get(
        &self,
        s: Shape,
        name: &str,
        h: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        if let Some(v) = self.lock().get(name) {
            if v.shape() != &s {
                candle_core::bail!(
                    "parameter {name} requested with shape {s:?}, exists as {:?}",
                    v.shape()
                );
            }
            return Ok(v.as_tensor().clone());
        }
        let data = self.initial_values(name, s.elem_count(), h)?;
        let var = Var::from_tensor(&Tensor::from_vec(data, s, dev)?.to_dtype(dtype)?)?;
        self.lock().insert(name.to_string(), var.clone());
        Ok(var.as_tensor().clone())
    }

    fn get_unchecked(
        &self,
        name: &str,
        _dtype: DType,
        _dev: &Device,
    ) -> candle_core::Result<Tensor> {
        match self.lock().get(name) {
            Some(v) => Ok(v.as_tensor().clone()),
            None => candle_core::bail!("parameter {name} does not exist yet"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.lock().contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_follow_megatron_no_decay_rules() {
        assert_eq!(ParamKind::of("h.0.attn.c_attn.weight"), ParamKind::Matrix);
        assert_eq!(ParamKind::of("h.0.attn.c_attn.bias"), ParamKind::Bias);
        assert_eq!(ParamKind::of("h.0.ln_1.weight"), ParamKind::Norm);
        assert_eq!(ParamKind::of("ln_f.bias"), ParamKind::Norm);
        assert_eq!(ParamKind::of("wte.weight"), ParamKind::Embedding);
        assert_eq!(ParamKind::of("lm_head.weight"), ParamKind::Matrix);
    }

    #[test]
    fn values_depend_on_name_not_creation_order() {
        let dev = Device::Cpu;
        let init = Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        let a = ParamStore::new(5, 0);
        let b = ParamStore::new(5, 0);
        let vb_a = a.var_builder(&dev);
        let vb_b = b.var_builder(&dev);
        let x1 = vb_a.get_with_hints((3, 4), "x", init).unwrap();
        let _ = vb_a.get_with_hints((2, 2), "y", init).unwrap();
        let _ = vb_b.get_with_hints((2, 2), "y", init).unwrap();
        let x2 = vb_b.get_with_hints((3, 4), "x", init).unwrap();
        let (v1, v2): (Vec<f32>, Vec<f32>) = (
            x1.flatten_all().unwrap().to_vec1().unwrap(),
            x2.flatten_all().unwrap().to_vec1().unwrap(),
        );
        assert_eq!(v1, v2);
        assert_eq!(
            a.vars().iter().map(|p| p.0.as_str()).collect::<Vec<_>>(),
            ["x", "y"]
        );
    }

    #[test]
    fn perturbation_moves_about_half_the_weights_by_one_ulp() {
        let dev = Device::Cpu;
        let init = Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        let base = ParamStore::new(5, 0)
            .var_builder(&dev)
            .get_with_hints(1000, "w", init)
            .unwrap();
        let pert = ParamStore::new(5, 9)
            .var_builder(&dev)
            .get_with_hints(1000, "w", init)
            .unwrap();
        let (a, b): (Vec<f32>, Vec<f32>) = (base.to_vec1().unwrap(), pert.to_vec1().unwrap());
        let moved = a.iter().zip(&b).filter(|(x, y)| x != y).count();
        assert!((400..600).contains(&moved), "{moved} of 1000 moved");
        for (x, y) in a.iter().zip(&b) {
            assert!((x.to_bits() as i64 - y.to_bits() as i64).abs() <= 1);
        }
    }
}
