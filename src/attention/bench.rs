//! The long-sequence attention benchmark behind `lossdiff bench attention`: forward + backward
//! time and peak heap memory of the naive and flash kernels as the sequence grows.
//!
//! Peak memory comes from [`crate::alloc::CountingAlloc`], which only the binary can register;
//! when it is not registered the rows say so (`None`) instead of printing zeros. The naive kernel
//! is not run past its memory cap: its row reports what it would have needed, from
//! [`Error::AttentionTooLarge`]. This module owns the measurement and its Markdown rendering; the
//! CLI flags that fill [`AttentionBenchConfig`] are `cli`'s.

use super::{attention, AttentionParams};
use crate::alloc::CountingAlloc;
use crate::config::AttentionBackend;
use crate::error::{Error, Result};
use crate::rng::normal;
use candle_core::{Device, Tensor, Var};
use std::fmt::Write as _;
use std::time::Instant;

/// What to measure. Defaults: batch 1, 4 heads, head dim 32, T from 1k to 32k, naive capped at
/// 1 GiB of score matrices (about 4.3 GiB of real peak heap, see [`AttentionBenchConfig::default`]).
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionBenchConfig {
    /// Sequence lengths, each measured for both kernels.
    pub seq_lens: Vec<usize>,
    /// Batch size `B`.
    pub batch: usize,
    /// Heads `nh`.
    pub heads: usize,
    /// Head dim `hs`.
    pub head_dim: usize,
    /// Score-matrix cap for the naive kernel (its `max_naive_bytes`).
    pub naive_cap_bytes: u64,
    /// Most timed runs per point; the fastest counts. Points whose first run takes over
    /// [`REPEAT_BUDGET_SECS`] run once, so long sequences do not dominate the wall time.
    pub repeats: usize,
    /// Seed of the random inputs.
    pub seed: u64,
}

/// A point that takes longer than this per run is timed once (see
/// [`AttentionBenchConfig::repeats`]): beyond a couple of seconds run-to-run noise is already
/// a small fraction.
pub const REPEAT_BUDGET_SECS: f64 = 2.0;

impl Default for AttentionBenchConfig {
    fn default() -> Self {
        AttentionBenchConfig {
            seq_lens: vec![1024, 2048, 4096, 8192, 16384, 32768],
            batch: 1,
            heads: 4,
            head_dim: 32,
            // The cap is checked against `naive_attention_bytes`, which counts the 18 T × T
            // matrices candle's composed path holds at its fwd+bwd peak (measured 4.3 GiB at 4k,
            // 4 heads). 6 GiB admits 4k (4.5 GiB) and refuses 8k (18 GiB) on this 24 GiB machine.
            naive_cap_bytes: 6 << 30,
            repeats: 3,
            seed: 0,
        }
    }
}

/// What happened at one `(kernel, T)` point.
#[derive(Debug, Clone, PartialEq)]
pub enum BenchOutcome {
    /// The kernel ran.
    Measured {
        /// Fastest forward time, seconds.
        forward_secs: f64,
        /// Fastest forward + backward (all three input gradients) time, seconds.
        total_secs: f64,
        /// Most heap bytes held at once above what was live before the call (inputs excluded,
        /// output and gradients included); `None` when the counting allocator is not registered.
        peak_bytes: Option<u64>,
    },
    /// The naive kernel refused: its score matrices would exceed the cap.
    Refused {
        /// Bytes its score matrices would need.
        needs_bytes: u64,
    },
}

/// One measured point.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionBenchRow {
    /// Which kernel.
    pub backend: AttentionBackend,
    /// Sequence length `T`.
    pub seq_len: usize,
    /// Timing and memory, or the refusal.
    pub outcome: BenchOutcome,
}

/// Measures naive and flash attention, forward + backward, at each configured sequence length.
///
/// Inputs are f32 `(B, nh, T, hs)` normals; the loss is `sum(out)`, so the backward computes
/// `dq`, `dk`, `dv` exactly as training would. Each kernel is warmed up once on a short sequence
/// first, so thread-pool and gemm start-up do not land in the first row.
///
/// # Errors
/// Candle errors from the kernels; [`Error::AttentionTooLarge`] is reported as a row, not raised.
pub fn bench_attention(cfg: &AttentionBenchConfig) -> Result<Vec<AttentionBenchRow>> {
    let mut rows = Vec::with_capacity(2 * cfg.seq_lens.len());
    for backend in [AttentionBackend::Naive, AttentionBackend::Flash] {
        measure(cfg, backend, 128)?;
    }
    for &t in &cfg.seq_lens {
        for backend in [AttentionBackend::Naive, AttentionBackend::Flash] {
            let outcome = match measure(cfg, backend, t) {
                Err(Error::AttentionTooLarge { bytes, .. }) => {
                    BenchOutcome::Refused { needs_bytes: bytes }
                }
                other => other?,
            };
            rows.push(AttentionBenchRow {
                backend,
                seq_len: t,
                outcome,
            });
        }
    }
    Ok(rows)
}

/// Times one `(backend, T)` point, up to `cfg.repeats` times, keeping the fastest run.
fn measure(
    cfg: &AttentionBenchConfig,
    backend: AttentionBackend,
    t: usize,
) -> Result<BenchOutcome> {
    let shape = (cfg.batch, cfg.heads, t, cfg.head_dim);
    let n = cfg.batch * cfg.heads * t * cfg.head_dim;
    let input = |salt: u64| -> Result<Var> {
        let data: Vec<f32> = (0..n as u64)
            .map(|i| normal(cfg.seed ^ salt, i) as f32)
            .collect();
        Ok(Var::from_tensor(&Tensor::from_vec(
            data,
            shape,
            &Device::Cpu,
        )?)?)
    };
    let (q, k, v) = (input(1)?, input(2)?, input(3)?);
    let params = AttentionParams {
        softmax_scale: 1.0 / (cfg.head_dim as f32).sqrt(),
        dropout: None,
        max_naive_bytes: cfg.naive_cap_bytes,
        // The composed ops: the footprint `naive_attention_bytes` was measured on.
        kernels: crate::config::Kernels::Composed,
    };
    let mut best: Option<(f64, f64, usize)> = None;
    for _ in 0..cfg.repeats.max(1) {
        let base = CountingAlloc::current_bytes();
        CountingAlloc::reset_peak();
        let start = Instant::now();
        let out = attention(
            q.as_tensor(),
            k.as_tensor(),
            v.as_tensor(),
            backend,
            &params,
        )?;
        let forward_secs = start.elapsed().as_secs_f64();
        let grads = out.sum_all()?.backward()?;
        let total_secs = start.elapsed().as_secs_f64();
        let peak = CountingAlloc::peak_bytes().saturating_sub(base);
        drop((out, grads));
        let run = (forward_secs, total_secs, peak);
        best = Some(best.map_or(run, |b| if run.1 < b.1 { run } else { b }));
        if total_secs > REPEAT_BUDGET_SECS {
            break;
        }
    }
    let (forward_secs, total_secs, peak) = best.unwrap_or_default();
    Ok(BenchOutcome::Measured {
        forward_secs,
        total_secs,
        peak_bytes: CountingAlloc::is_registered().then_some(peak as u64),
    })
}

/// Renders rows as a Markdown table, one line per sequence length with both kernels side by side
/// and flash's speed-up and memory ratio.
pub fn bench_markdown(cfg: &AttentionBenchConfig, rows: &[AttentionBenchRow]) -> String {
    let mut md = format!(
        "Attention fwd+bwd, f32, B={} nh={} hs={}, {} rayon threads\n\n",
        cfg.batch,
        cfg.heads,
        cfg.head_dim,
        rayon::current_num_threads()
    );
    md.push_str("| T | naive fwd+bwd | naive peak | flash fwd | flash fwd+bwd | flash peak | speed-up | memory ratio |\n");
    md.push_str("|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for &t in &cfg.seq_lens {
        let find = |b| {
            rows.iter()
                .find(|r| r.seq_len == t && r.backend == b)
                .map(|r| &r.outcome)
        };
        let (naive, flash) = (find(AttentionBackend::Naive), find(AttentionBackend::Flash));
        let (nt, np) = cells(naive);
        let (ft, fp) = cells(flash);
        let flash_fwd = match flash {
            Some(BenchOutcome::Measured { forward_secs, .. }) => format!("{forward_secs:.3} s"),
            _ => "–".into(),
        };
        let (speedup, mem) = match (naive, flash) {
            (
                Some(BenchOutcome::Measured {
                    total_secs: a,
                    peak_bytes: pa,
                    ..
                }),
                Some(BenchOutcome::Measured {
                    total_secs: b,
                    peak_bytes: pb,
                    ..
                }),
            ) => (
                format!("{:.2}×", a / b),
                match (pa, pb) {
                    (Some(pa), Some(pb)) if *pb > 0 => format!("{:.1}×", *pa as f64 / *pb as f64),
                    _ => "–".into(),
                },
            ),
            _ => ("–".into(), "–".into()),
        };
        let _ = writeln!(
            md,
            "| {t} | {nt} | {np} | {flash_fwd} | {ft} | {fp} | {speedup} | {mem} |"
        );
    }
    md
}

/// Returns the (time, memory) cells of one outcome.
fn cells(outcome: Option<&BenchOutcome>) -> (String, String) {
    match outcome {
        Some(BenchOutcome::Measured {
            total_secs,
            peak_bytes,
            ..
        }) => (
            format!("{total_secs:.3} s"),
            peak_bytes.map_or("n/a (allocator not registered)".into(), human_bytes),
        ),
        Some(BenchOutcome::Refused { needs_bytes }) => (
            format!(
                "refused: needs {:.1} GiB",
                *needs_bytes as f64 / (1u64 << 30) as f64
            ),
            "–".into(),
        ),
        None => ("–".into(), "–".into()),
    }
}

fn human_bytes(b: u64) -> String {
    const MIB: f64 = (1u64 << 20) as f64;
    if b as f64 >= 1024.0 * MIB {
        format!("{:.2} GiB", b as f64 / (1024.0 * MIB))
    } else {
        format!("{:.1} MiB", b as f64 / MIB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> AttentionBenchConfig {
        AttentionBenchConfig {
            seq_lens: vec![64, 256],
            heads: 2,
            head_dim: 8,
            // 256² × 2 heads × 4 B × 3 = 1.5 MiB: refuse 256, run 64.
            naive_cap_bytes: 4 << 20,
            repeats: 1,
            ..AttentionBenchConfig::default()
        }
    }

    #[test]
    fn naive_past_cap_is_reported_as_refused_with_needed_bytes() {
        let rows = bench_attention(&tiny()).unwrap();
        assert_eq!(rows.len(), 4);
        let naive_256 = rows
            .iter()
            .find(|r| r.seq_len == 256 && r.backend == AttentionBackend::Naive)
            .unwrap();
        // naive_attention_bytes(1, 2, 256, false) = 256² · 2 heads · 4 B · 18 matrices
        assert_eq!(
            naive_256.outcome,
            BenchOutcome::Refused {
                needs_bytes: 256 * 256 * 2 * 4 * 18
            }
        );
        for r in rows.iter().filter(|r| r.backend == AttentionBackend::Flash) {
            // The test binary does not register the counting allocator: memory is unknown.
            assert!(
                matches!(
                    r.outcome,
                    BenchOutcome::Measured {
                        peak_bytes: None,
                        ..
                    }
                ),
                "{r:?}"
            );
        }
        let md = bench_markdown(&tiny(), &rows);
        assert!(md.contains("refused: needs 0.0 GiB"), "{md}");
        assert_eq!(
            md.lines()
                .filter(|l| l.starts_with("| 64 ") || l.starts_with("| 256 "))
                .count(),
            2
        );
    }
}
