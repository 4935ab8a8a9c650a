//! Fault injection: small, documented numerical bugs that real training stacks have shipped,
//! switchable by config (`inject = "<fault>"`, listed by `lossdiff faults`).
//!
//! They exist so lossdiff can prove it sees what it claims to see: calibration runs each fault
//! against a clean arm and reports how often, how early and how precisely each lane of the
//! comparison catches it, and the nightly's *canary* runs one and fails if it is not caught.
//! Each fault is applied at one hook: the learning rate ([`lr`]), attention (scale, precision),
//! dropout, weight-decay groups, or the reported loss ([`loss_scale`]).

use crate::config::TrainConfig;
use crate::schedule::lr_at;
use serde::{Deserialize, Serialize};

/// A fault to inject, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// No fault: the reference behaviour.
    #[default]
    None,
    /// The decay targets 0 instead of `min_lr` (a dropped `min_lr` argument).
    LrDecayToZero,
    /// After `lr_decay_iters` the lr drops to 0 instead of staying at `min_lr`: invisible when
    /// decay spans the whole run, a late plateau when decay is short.
    LrZeroAfterDecay,
    /// Warmup is one step ahead (`step + 1` instead of `step`).
    WarmupOffByOne,
    /// Dropout 0.1 on attention and hidden states whatever the config says (a framework default
    /// leaking through).
    DropoutLeak,
    /// Softmax scale 1 % too large (`1.01 / sqrt(head_dim)`).
    #[serde(rename = "softmax_scale_1pct")]
    SoftmaxScale1pct,
    /// Attention computed in bf16 (q, k, v, scores and outputs rounded to bf16) instead of f32.
    Bf16Attention,
    /// Weight decay applied to LayerNorm gains and biases too.
    WeightDecayOnNorms,
    /// The reported (and back-propagated) loss is 0.5 % too large from 80 % of the run on.
    LateLossBias,
}

impl Fault {
    /// Every fault, in catalog order (`None` excluded).
    pub const CATALOG: [Fault; 8] = [
        Fault::LrDecayToZero,
        Fault::LrZeroAfterDecay,
        Fault::WarmupOffByOne,
        Fault::DropoutLeak,
        Fault::SoftmaxScale1pct,
        Fault::Bf16Attention,
        Fault::WeightDecayOnNorms,
        Fault::LateLossBias,
    ];

    /// Returns the config spelling, e.g. `softmax_scale_1pct`.
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// Returns a one-line description of what the fault changes.
    pub fn describe(self) -> &'static str {
        match self {
            Fault::None => "no fault",
            Fault::LrDecayToZero => "lr decays to 0 instead of min_lr",
            Fault::LrZeroAfterDecay => {
                "lr is 0 after lr_decay_iters instead of min_lr (only matters for short decay)"
            }
            Fault::WarmupOffByOne => "warmup runs one step ahead",
            Fault::DropoutLeak => "dropout 0.1 on attention and hidden states regardless of config",
            Fault::SoftmaxScale1pct => "softmax scale 1% too large",
            Fault::Bf16Attention => "attention inputs, scores and outputs rounded to bf16",
            Fault::WeightDecayOnNorms => "weight decay also applied to LayerNorm parameters",
            Fault::LateLossBias => "loss 0.5% too large from 80% of the run on",
        }
    }

    /// Returns the dropout probability the model actually uses for a configured `p`.
    pub fn dropout(self, p: f32) -> f32 {
        match self {
            Fault::DropoutLeak => p.max(0.1),
            _ => p,
        }
    }

    /// Returns the factor on the softmax scale.
    pub fn softmax_scale_factor(self) -> f32 {
        match self {
            Fault::SoftmaxScale1pct => 1.01,
            _ => 1.0,
        }
    }
}

/// Returns the learning rate step `step` trains with, fault included.
pub fn lr(step: u64, cfg: &TrainConfig) -> f64 {
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
    use crate::config::RunConfig;

    fn cfg(inject: Fault) -> TrainConfig {
        let mut c = RunConfig::preset("gate").unwrap().resolve().train;
        c.inject = inject;
        c.lr_decay_iters = Some(100);
        c
    }

    #[test]
    fn every_fault_has_a_distinct_config_name() {
        let names: std::collections::BTreeSet<String> =
            Fault::CATALOG.iter().map(|f| f.name()).collect();
        assert_eq!(names.len(), Fault::CATALOG.len());
        assert!(names.contains("softmax_scale_1pct"));
    }

    #[test]
    fn lr_faults_change_only_their_phase() {
        let clean = cfg(Fault::None);
        let zero = cfg(Fault::LrDecayToZero);
        assert_eq!(lr(10, &clean), lr(10, &zero), "warmup untouched");
        assert!(lr(100, &zero) == 0.0 && lr(100, &clean) == clean.min_lr);
        let after = cfg(Fault::LrZeroAfterDecay);
        assert_eq!(lr(100, &after), lr(100, &clean));
        assert_eq!(lr(101, &after), 0.0);
        let early = cfg(Fault::WarmupOffByOne);
        assert_eq!(lr(0, &early), lr(1, &clean));
        assert_eq!(lr(20, &early), lr(20, &clean));
    }

    #[test]
    fn late_loss_bias_starts_at_eighty_percent() {
        let c = cfg(Fault::LateLossBias);
        assert_eq!(loss_scale(159, &c), 1.0);
        assert_eq!(loss_scale(160, &c), 1.005);
    }
}
