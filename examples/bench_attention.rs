//! Runs the long-sequence attention benchmark and prints its Markdown table.
//!
//! `cargo run --release --example bench_attention [T ...] [heads=N] [head_dim=N] [cap_gib=X]`
//! (default: T from 1k to 32k, 4 heads, head dim 32, naive cap 1 GiB of score matrices).
//! The `#[global_allocator]` line below is all a binary needs for peak-memory numbers; without
//! it the table says "n/a".

use lossdiff::attention::bench::{bench_attention, bench_markdown, AttentionBenchConfig};

#[global_allocator]
static ALLOC: lossdiff::alloc::CountingAlloc = lossdiff::alloc::CountingAlloc;

fn main() -> anyhow::Result<()> {
    let mut cfg = AttentionBenchConfig::default();
    let mut lens = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.split_once('=') {
            Some(("heads", n)) => cfg.heads = n.parse()?,
            Some(("head_dim", n)) => cfg.head_dim = n.parse()?,
            Some(("cap_gib", x)) => {
                cfg.naive_cap_bytes = (x.parse::<f64>()? * (1u64 << 30) as f64) as u64
            }
            Some((key, _)) => anyhow::bail!("unknown option `{key}` (heads, head_dim, cap_gib)"),
            None => lens.push(arg.parse()?),
        }
    }
    if !lens.is_empty() {
        cfg.seq_lens = lens;
    }
    let rows = bench_attention(&cfg)?;
    print!("{}", bench_markdown(&cfg, &rows));
    Ok(())
}
