//! The environment a run executed in: what a "framework upgrade" changes.
//!
//! Two traces of the same config can differ only through this: candle's version, the compiler,
//! the CPU features that select gemm's kernels (AVX2/FMA vs AVX-512 give different rounding),
//! the thread count, the build profile. The comparison engine lists every differing field as an
//! environment difference; goldens record it as provenance. A changed fingerprint is what a gate
//! judges — never a reason to call a golden stale.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Build and machine facts recorded in every trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// lossdiff's version.
    pub lossdiff_version: String,
    /// candle-core's version, read from Cargo.lock at build time.
    pub candle_version: String,
    /// `rustc --version` of the build.
    pub rustc: String,
    /// Target triple.
    pub target: String,
    /// Cargo profile and optimisation level, e.g. `debug/opt3`.
    pub build_profile: String,
    /// Git revision of lossdiff at build time, when built from a checkout.
    pub git_revision: String,
    /// CPU model name from the OS.
    pub cpu_model: String,
    /// CPU features that select kernels, `name: bool`.
    pub cpu_features: BTreeMap<String, bool>,
    /// Threads of the rayon pool the run trained in, where its parallel loops (and gemm's
    /// tiles) run; the runner builds one pool per run, sized by the arm's `threads`.
    pub threads: usize,
    /// Operating system.
    pub os: String,
}

impl Fingerprint {
    /// Reads the current environment.
    pub fn current() -> Self {
        Fingerprint {
            lossdiff_version: env!("CARGO_PKG_VERSION").to_string(),
            candle_version: env!("LOSSDIFF_CANDLE_VERSION").to_string(),
            rustc: env!("LOSSDIFF_RUSTC").to_string(),
            target: env!("LOSSDIFF_TARGET").to_string(),
            build_profile: format!(
                "{}/opt{}",
                env!("LOSSDIFF_PROFILE"),
                env!("LOSSDIFF_OPT_LEVEL")
            ),
            git_revision: env!("LOSSDIFF_GIT_REV").to_string(),
            cpu_model: cpu_model(),
            cpu_features: cpu_features(),
            threads: rayon::current_num_threads(),
            os: std::env::consts::OS.to_string(),
        }
    }

    /// Returns the fingerprint as a JSON object, as stored in traces.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("fingerprint serialises")
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(target_arch = "x86_64")]
fn cpu_features() -> BTreeMap<String, bool> {
    macro_rules! features {
        ($($f:tt),*) => { BTreeMap::from([$((String::from($f), std::arch::is_x86_feature_detected!($f))),*]) };
    }
    features!("sse4.1", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl")
}

#[cfg(target_arch = "aarch64")]
fn cpu_features() -> BTreeMap<String, bool> {
    macro_rules! features {
        ($($f:tt),*) => { BTreeMap::from([$((String::from($f), std::arch::is_aarch64_feature_detected!($f))),*]) };
    }
    features!("neon", "fp16", "bf16", "sve")
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn cpu_features() -> BTreeMap<String, bool> {
    BTreeMap::new()
}

/// Returns lowercase hex of bytes (digests in cache keys and golden seals).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
