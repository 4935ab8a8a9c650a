//! Fault injection: small, documented numerical bugs that real training stacks have shipped,
//! switchable by config (`inject = "<fault>"`, listed by `lossdiff faults`).
//!
//! They exist so lossdiff can prove it sees what it claims to see: calibration runs each fault
//! against a clean arm and reports how often, how early and how precisely each lane of the
//! comparison catches it, and the nightly's *canary* runs one and fails if it is not caught.
//! Each fault is applied at one hook: the learning rate and the reported loss
//! ([`crate::schedule::trained_lr`], [`crate::schedule::loss_scale`]), attention (scale,
//! precision), dropout, or weight-decay groups. This module is only the catalogue, so that
//! `config` can name a fault without importing the code that applies it.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fault_has_a_distinct_config_name() {
        let names: std::collections::BTreeSet<String> =
            Fault::CATALOG.iter().map(|f| f.name()).collect();
        assert_eq!(names.len(), Fault::CATALOG.len());
        assert!(names.contains("softmax_scale_1pct"));
    }
}
