//! The training loop, readable top to bottom (after nanoGPT's `train.py`): for each step, the
//! learning rate, then per micro batch forward and backward with gradients summed, then clip, then
//! AdamW, then record. It owns nothing else: the model, data, schedule and optimiser are their
//! own modules, and what it returns is a [`Trace`].
//!
//! Determinism: every random choice (weights, batches, dropout) is keyed by seeds in the config,
//! parameters are visited in name order, and candle's CPU kernels are deterministic for a given
//! CPU feature set; the same config gives bit-identical losses across runs and thread counts.
//!
//! Threads: a step runs in the caller's rayon pool (see `threads`), whose size the fingerprint
//! records; candle's own thread counts come from the process's environment, which only the
//! process owner sets.

use crate::config::RunConfig;
use crate::data::Corpus;
use crate::error::Result;
use crate::fingerprint::Fingerprint;
use crate::model::{ForwardCtx, Gpt};
use crate::optim::{accumulate, clip_global_norm, AdamW};
use crate::params::ParamStore;
use crate::schedule;
use crate::trace::{
    Origin, Series, Trace, GRAD_NORM, LM_LOSS, LR, STEP_TIME, TRACE_SCHEMA_VERSION,
};
use candle_core::{Device, Tensor, Var};
use std::collections::BTreeMap;
use std::time::Instant;

/// What one optimiser step measured; passed to the progress callback.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepRecord {
    /// Step number, 1-based as Megatron-LM logs iterations.
    pub step: u64,
    /// Steps the run will take.
    pub total: u64,
    /// Mean loss over the step's micro batches (nats/token).
    pub loss: f32,
    /// Global gradient norm before clipping.
    pub grad_norm: f32,
    /// Learning rate used for this step.
    pub lr: f64,
    /// Wall-clock seconds of the step.
    pub step_time: f64,
}

/// Trains the reference GPT as `cfg` says and returns its trace, named `name`.
///
/// `on_step` is called after every step (progress bars, logging). Training stops early at the
/// first non-finite loss: that step is recorded (a NaN is a finding) and nothing after it.
///
/// # Errors
/// Config errors ([`crate::Error::InvalidValue`]), data file errors, candle errors, and
/// [`crate::Error::AttentionTooLarge`] when naive attention exceeds its memory cap.
pub fn train(cfg: &RunConfig, name: &str, on_step: &mut dyn FnMut(&StepRecord)) -> Result<Trace> {
    let mut trainer = Trainer::new(cfg, name)?;
    let mut rec = Recorder::default();
    for step in 0..trainer.cfg.train.train_iters {
        let record = trainer.step(step)?;
        rec.push(&record);
        on_step(&record);
        if !record.loss.is_finite() {
            break;
        }
    }
    Ok(trainer.into_trace(rec))
}

/// A model, its optimiser and its data, ready to take optimiser steps.
pub struct Trainer {
    cfg: RunConfig,
    name: String,
    device: Device,
    corpus: Corpus,
    model: Gpt,
    params: Vec<(String, Var)>,
    opt: AdamW,
}

impl Trainer {
    /// Validates and resolves `cfg`, builds the corpus, model and optimiser.
    ///
    /// # Errors
    /// As [`train`].
    pub fn new(cfg: &RunConfig, name: &str) -> Result<Trainer> {
        cfg.validate(name)?;
        let cfg = cfg.resolve();
        crate::alloc::retain_freed_memory();
        let device = Device::Cpu;
        let corpus = Corpus::from_config(&cfg.data, cfg.model.vocab_size, cfg.model.seq_length)?;
        let store = ParamStore::new(cfg.train.seed, cfg.train.perturb_seed);
        let model = Gpt::new(&cfg.model, cfg.train.inject, &store, &device)?;
        let params = store.vars();
        let opt = AdamW::new(params.clone(), &cfg.train);
        Ok(Trainer {
            cfg,
            name: name.to_string(),
            device,
            corpus,
            model,
            params,
            opt,
        })
    }

    /// Takes optimiser step `step` (0-based): lr, forward and backward per micro batch with
    /// gradients averaged, clip, AdamW (skipped when the loss is non-finite), record.
    ///
    /// # Errors
    /// As [`train`].
    pub fn step(&mut self, step: u64) -> Result<StepRecord> {
        crate::threads::in_pool(|| self.step_in_pool(step))
    }

    fn step_in_pool(&mut self, step: u64) -> Result<StepRecord> {
        let start = Instant::now();
        let (m, t) = (&self.cfg.model, &self.cfg.train);
        let lr = schedule::trained_lr(step, t);
        let data_seed = t.data_seed.unwrap_or(t.seed);
        let accum = t.grad_accum_steps;
        let mut grads: Vec<Vec<f32>> = self
            .params
            .iter()
            .map(|(_, v)| vec![0.0; v.elem_count()])
            .collect();
        let mut loss_sum = 0f32;
        for micro in 0..accum as u64 {
            let first_row = micro as usize * t.micro_batch_size;
            let (x, y) =
                self.corpus
                    .batch(data_seed, step, first_row, t.micro_batch_size, m.seq_length);
            let shape = (t.micro_batch_size, m.seq_length);
            let (x, y) = (
                Tensor::from_vec(x, shape, &self.device)?,
                Tensor::from_vec(y, shape, &self.device)?,
            );
            let ctx = ForwardCtx {
                seed: t.seed,
                step,
                micro,
                train: true,
            };
            let loss = (self.model.loss(&x, &y, &ctx)? * schedule::loss_scale(step, t))?;
            loss_sum += loss.to_scalar::<f32>()?;
            // Average over micro batches, as one big batch would.
            let micro_grads = (loss / accum as f64)?.backward()?;
            for ((pname, var), acc) in self.params.iter().zip(grads.iter_mut()) {
                let g = micro_grads.get(var.as_tensor()).ok_or_else(|| {
                    candle_core::Error::Msg(format!("parameter {pname} received no gradient"))
                })?;
                accumulate(acc, g)?;
            }
        }
        let loss = loss_sum / accum as f32;
        let grad_norm = clip_global_norm(&mut grads, t.clip_grad) as f32;
        if loss.is_finite() {
            self.opt.step(&grads, lr)?;
        }
        Ok(StepRecord {
            step: step + 1,
            total: t.train_iters,
            loss,
            grad_norm,
            lr,
            step_time: start.elapsed().as_secs_f64(),
        })
    }

    /// Returns the resolved config this trainer runs.
    pub fn config(&self) -> &RunConfig {
        &self.cfg
    }

    fn into_trace(self, rec: Recorder) -> Trace {
        let t = &self.cfg.train;
        let data_seed = t.data_seed.unwrap_or(t.seed);
        Trace {
            schema_version: TRACE_SCHEMA_VERSION,
            name: self.name,
            origin: Origin {
                format: "lossdiff".into(),
                path: None,
            },
            config: self.cfg.to_json(),
            fingerprint: Fingerprint::current().to_json(),
            seeds: BTreeMap::from([
                ("init".to_string(), t.seed),
                ("dropout".to_string(), t.seed),
                ("data".to_string(), data_seed),
                ("perturb".to_string(), t.perturb_seed),
            ]),
            loss_floor: self.corpus.loss_floor(self.cfg.model.seq_length),
            steps: rec.steps,
            series: BTreeMap::from([
                (LM_LOSS.to_string(), Series::from_f32(&rec.loss)),
                (GRAD_NORM.to_string(), Series::from_f32(&rec.grad_norm)),
                (LR.to_string(), Series::from_f64(rec.lr)),
                (STEP_TIME.to_string(), Series::from_f64(rec.step_time)),
            ]),
        }
    }
}

#[derive(Default)]
struct Recorder {
    steps: Vec<u64>,
    loss: Vec<f32>,
    grad_norm: Vec<f32>,
    lr: Vec<f64>,
    step_time: Vec<f64>,
}

impl Recorder {
    fn push(&mut self, r: &StepRecord) {
        self.steps.push(r.step);
        self.loss.push(r.loss);
        self.grad_norm.push(r.grad_norm);
        self.lr.push(r.lr);
        self.step_time.push(r.step_time);
    }
}

/// Returns the loss series of a trace as `f32` bit patterns, for exact comparisons in tests.
pub fn loss_bits(trace: &Trace) -> Vec<u32> {
    trace
        .lm_loss()
        .unwrap_or_default()
        .iter()
        .map(|&v| (v as f32).to_bits())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quick(iters: u64) -> RunConfig {
        let mut c = RunConfig::preset("gate").unwrap();
        c.train.train_iters = iters;
        c.train.lr_warmup_iters = iters / 4;
        c
    }

    fn run(c: &RunConfig) -> Trace {
        train(c, "t", &mut |_| {}).unwrap()
    }

    #[test]
    fn same_config_gives_bit_identical_losses() {
        let a = run(&quick(5));
        let b = run(&quick(5));
        assert_eq!(loss_bits(&a), loss_bits(&b));
        assert_eq!(a.steps, [1, 2, 3, 4, 5]);
    }

    #[test]
    fn gradient_accumulation_equals_one_big_batch() {
        // Rows are keyed by their index in the step's global batch, so 2 × 4 sees the same 8
        // rows as 1 × 8; only the order of floating-point sums differs.
        let mut c = quick(3);
        c.train.micro_batch_size = 4;
        c.train.grad_accum_steps = 2;
        let accum = run(&c);
        let single = run(&quick(3));
        for name in [LM_LOSS, GRAD_NORM] {
            let (a, b) = (accum.metric(name).unwrap(), single.metric(name).unwrap());
            for (x, y) in a.iter().zip(b) {
                approx::assert_relative_eq!(x, y, max_relative = 1e-5);
            }
        }
    }

    #[test]
    fn a_last_bit_perturbation_changes_bits_but_not_the_curve() {
        let base = run(&quick(20));
        let mut c = quick(20);
        c.train.perturb_seed = 7;
        let pert = run(&c);
        let bits = |t: &Trace| (loss_bits(t), t.metric(GRAD_NORM).unwrap().to_vec());
        assert_ne!(
            bits(&base),
            bits(&pert),
            "the perturbation must reach the numbers"
        );
        for (a, b) in base.lm_loss().unwrap().iter().zip(pert.lm_loss().unwrap()) {
            assert!(
                (a - b).abs() < 1e-5,
                "a last-bit nudge moved the loss by {}",
                a - b
            );
        }
    }

    #[test]
    fn loss_starts_near_ln_vocab_and_falls_toward_the_floor() {
        let t = run(&quick(60));
        let loss = t.lm_loss().unwrap();
        let ln_v = 64f64.ln();
        let floor = t.loss_floor.unwrap();
        assert!(
            (loss[0] - ln_v).abs() < 0.1,
            "first loss {} vs ln 64 = {ln_v}",
            loss[0]
        );
        let last = loss[loss.len() - 5..].iter().sum::<f64>() / 5.0;
        assert!(
            last < ln_v - 0.5 && last > floor,
            "after 60 steps {last} (floor {floor})"
        );
    }

    #[test]
    fn a_nan_loss_ends_the_run_at_that_step() {
        let mut c = quick(10);
        c.train.lr = 1e6;
        c.train.min_lr = 1e6;
        c.train.clip_grad = 0.0;
        c.train.lr_warmup_iters = 0;
        let t = run(&c);
        let loss = t.lm_loss().unwrap();
        assert!(!loss.last().unwrap().is_finite(), "{loss:?}");
        assert!(loss[..loss.len() - 1].iter().all(|l| l.is_finite()));
    }
}
