//! Learning-rate schedule, following Megatron-LM's `OptimizerParamScheduler.get_lr`
//! (`megatron/core/optimizer_param_scheduler.py`) step for step, so that an lr-decay sweep here
//! means what it means there.
//!
//! Step convention: optimiser step `s` (0-based; Megatron's `num_steps` before that step's
//! `scheduler.step`) trains with `lr_at(s)`. With warmup, step 0 therefore trains at
//! `lr_warmup_init` (0 by default), exactly as Megatron's first iteration does.

use crate::config::{DecayStyle, TrainConfig, WsdDecayStyle};
use crate::faults::Fault;
use std::f64::consts::PI;

/// Returns the learning rate optimiser step `step` (0-based) trains with.
///
/// `cfg` must be resolved ([`crate::config::RunConfig::resolve`]): `lr_decay_iters` and
/// `lr_wsd_decay_iters` set, `lr_warmup_iters` derived from `lr_warmup_frac` if given.
pub fn lr_at(step: u64, cfg: &TrainConfig) -> f64 {
    let (max_lr, min_lr) = (cfg.lr, cfg.min_lr);
    let warmup = cfg.lr_warmup_iters;
    let decay = cfg.lr_decay_iters.unwrap_or(cfg.train_iters);
    // 1) Linear warmup from lr_warmup_init, inclusive of the last warmup step.
    if warmup > 0 && step <= warmup {
        return cfg.lr_warmup_init + (max_lr - cfg.lr_warmup_init) * step as f64 / warmup as f64;
    }
    // 2) Constant: the peak forever after warmup.
    if cfg.lr_decay_style == DecayStyle::Constant {
        return max_lr;
    }
    // 3) Past the decay horizon: min_lr, constant.
    if step > decay {
        return min_lr;
    }
    // 4) Inverse square root, floored at min_lr.
    if cfg.lr_decay_style == DecayStyle::InverseSquareRoot {
        let w = warmup.max(1) as f64;
        let s = step.max(1) as f64;
        return (max_lr * w.sqrt() / s.sqrt()).max(min_lr);
    }
    // 5) Decay styles on the ratio of decay progress.
    let ratio = (step - warmup) as f64 / (decay - warmup) as f64;
    let coeff = match cfg.lr_decay_style {
        DecayStyle::Linear => 1.0 - ratio,
        DecayStyle::Cosine => 0.5 * ((PI * ratio).cos() + 1.0),
        DecayStyle::Wsd => {
            let anneal = cfg.lr_wsd_decay_iters.unwrap_or(0);
            let anneal_start = decay - anneal;
            if step <= anneal_start {
                1.0
            } else {
                let r = (step - anneal_start) as f64 / anneal as f64;
                match cfg.lr_wsd_decay_style {
                    WsdDecayStyle::Linear => 1.0 - r,
                    WsdDecayStyle::Cosine => 0.5 * ((PI * r).cos() + 1.0),
                    WsdDecayStyle::Exponential => 2.0 * 0.5f64.powf(r) - 1.0,
                    WsdDecayStyle::MinusSqrt => 1.0 - r.sqrt(),
                }
            }
        }
        DecayStyle::Constant | DecayStyle::InverseSquareRoot => unreachable!("handled above"),
    };
    min_lr + coeff * (max_lr - min_lr)
}

/// Returns the learning rate step `step` trains with: [`lr_at`] unless `cfg.inject` is a
/// schedule fault.
pub fn trained_lr(step: u64, cfg: &TrainConfig) -> f64 {
    match cfg.inject {
        Fault::LrDecayToZero => lr_at(
            step,
            &TrainConfig {
                min_lr: 0.0,
                ..cfg.clone()
            },
        ),
        Fault::LrZeroAfterDecay if step > cfg.lr_decay_iters.unwrap_or(cfg.train_iters) => 0.0,
        Fault::WarmupOffByOne if step < cfg.lr_warmup_iters => lr_at(step + 1, cfg),
        _ => lr_at(step, cfg),
    }
}

/// Returns the factor applied to the loss at `step` (1 unless [`Fault::LateLossBias`] is active).
pub fn loss_scale(step: u64, cfg: &TrainConfig) -> f64 {
    match cfg.inject {
        Fault::LateLossBias if step * 5 >= cfg.train_iters * 4 => 1.005,
        _ => 1.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    fn cfg(style: DecayStyle, warmup: u64, decay: u64) -> TrainConfig {
        TrainConfig {
            lr: 1e-3,
            min_lr: 1e-4,
            lr_warmup_iters: warmup,
            lr_decay_iters: Some(decay),
            lr_decay_style: style,
            train_iters: 2 * decay,
            ..TrainConfig::default()
        }
    }

    #[test]
    fn warmup_starts_at_init_and_reaches_peak_on_its_last_step() {
        let c = cfg(DecayStyle::Cosine, 10, 100);
        assert_eq!(lr_at(0, &c), 0.0);
        assert_relative_eq!(lr_at(1, &c), 1e-4, max_relative = 1e-12);
        assert_relative_eq!(lr_at(5, &c), 5e-4, max_relative = 1e-12);
        assert_relative_eq!(lr_at(10, &c), 1e-3, max_relative = 1e-12);
    }

    #[test]
    fn cosine_hits_midpoint_and_floor_then_stays_at_min_lr() {
        let c = cfg(DecayStyle::Cosine, 10, 110);
        // step 60: ratio 0.5 → coeff 0.5 → 1e-4 + 0.5·9e-4 = 5.5e-4
        assert_relative_eq!(lr_at(60, &c), 5.5e-4, max_relative = 1e-12);
        // step 35: ratio 0.25 → coeff (cos(π/4)+1)/2 = 0.853553390593 → 8.68198051533e-4
        assert_relative_eq!(
            lr_at(35, &c),
            8.681_980_515_339_464e-4,
            max_relative = 1e-12
        );
        assert_relative_eq!(lr_at(110, &c), 1e-4, max_relative = 1e-12);
        assert_eq!(lr_at(111, &c), 1e-4);
        assert_eq!(lr_at(10_000, &c), 1e-4);
    }

    #[test]
    fn linear_decay_boundaries() {
        let c = cfg(DecayStyle::Linear, 0, 100);
        assert_eq!(lr_at(0, &c), 1e-3);
        // step 25: 1e-4 + 0.75·9e-4 = 7.75e-4
        assert_relative_eq!(lr_at(25, &c), 7.75e-4, max_relative = 1e-12);
        assert_relative_eq!(lr_at(100, &c), 1e-4, max_relative = 1e-12);
    }

    #[test]
    fn constant_ignores_decay_horizon() {
        let c = cfg(DecayStyle::Constant, 5, 10);
        assert_relative_eq!(lr_at(2, &c), 4e-4, max_relative = 1e-12);
        assert_eq!(lr_at(6, &c), 1e-3);
        assert_eq!(lr_at(500, &c), 1e-3);
    }

    #[test]
    fn inverse_square_root_after_warmup() {
        let c = cfg(DecayStyle::InverseSquareRoot, 16, 1000);
        assert_relative_eq!(lr_at(16, &c), 1e-3, max_relative = 1e-12);
        // step 64: 1e-3·sqrt(16/64) = 5e-4
        assert_relative_eq!(lr_at(64, &c), 5e-4, max_relative = 1e-12);
        // step 900: 1e-3·4/30 = 1.333e-4 (above floor); step 1600 is past decay → min_lr
        assert_relative_eq!(
            lr_at(900, &c),
            1.333_333_333_333_333_3e-4,
            max_relative = 1e-12
        );
        assert_eq!(lr_at(1001, &c), 1e-4);
    }

    #[test]
    fn wsd_is_flat_until_the_anneal_then_follows_its_shape() {
        let mut c = cfg(DecayStyle::Wsd, 10, 100);
        c.lr_wsd_decay_iters = Some(20);
        c.lr_wsd_decay_style = WsdDecayStyle::Linear;
        assert_eq!(lr_at(50, &c), 1e-3);
        assert_eq!(lr_at(80, &c), 1e-3);
        // step 90: r = 0.5 → 5.5e-4
        assert_relative_eq!(lr_at(90, &c), 5.5e-4, max_relative = 1e-12);
        assert_relative_eq!(lr_at(100, &c), 1e-4, max_relative = 1e-12);
        c.lr_wsd_decay_style = WsdDecayStyle::Exponential;
        // step 90: coeff 2·0.5^0.5 − 1 = 0.414213562373 → 4.72792206136e-4
        assert_relative_eq!(
            lr_at(90, &c),
            4.727_922_061_357_855e-4,
            max_relative = 1e-12
        );
        c.lr_wsd_decay_style = WsdDecayStyle::MinusSqrt;
        // step 85: r = 0.25 → coeff 0.5 → 5.5e-4
        assert_relative_eq!(lr_at(85, &c), 5.5e-4, max_relative = 1e-12);
    }

    #[test]
    fn decay_iters_default_to_train_iters() {
        let mut c = cfg(DecayStyle::Linear, 0, 100);
        c.lr_decay_iters = None;
        c.train_iters = 50;
        assert_relative_eq!(lr_at(25, &c), 5.5e-4, max_relative = 1e-12);
    }

    fn fault_cfg(inject: Fault) -> TrainConfig {
        let mut c = crate::config::RunConfig::preset("gate")
            .unwrap()
            .resolve()
            .train;
        c.inject = inject;
        c.lr_decay_iters = Some(100);
        c
    }

    #[test]
    fn lr_faults_change_only_their_phase() {
        let clean = fault_cfg(Fault::None);
        let zero = fault_cfg(Fault::LrDecayToZero);
        assert_eq!(
            trained_lr(10, &clean),
            trained_lr(10, &zero),
            "warmup untouched"
        );
        assert!(trained_lr(100, &zero) == 0.0 && trained_lr(100, &clean) == clean.min_lr);
        let after = fault_cfg(Fault::LrZeroAfterDecay);
        assert_eq!(trained_lr(100, &after), trained_lr(100, &clean));
        assert_eq!(trained_lr(101, &after), 0.0);
        let early = fault_cfg(Fault::WarmupOffByOne);
        assert_eq!(trained_lr(0, &early), trained_lr(1, &clean));
        assert_eq!(trained_lr(20, &early), trained_lr(20, &clean));
    }

    #[test]
    fn late_loss_bias_starts_at_eighty_percent() {
        let c = fault_cfg(Fault::LateLossBias);
        assert_eq!(loss_scale(159, &c), 1.0);
        assert_eq!(loss_scale(160, &c), 1.005);
    }
}
