//! Runs the long-sequence attention benchmark and prints its Markdown table.
//!
//! `cargo run --release --example bench_attention [T ...]` (default T: 1k to 16k). The one line
//! below is all a binary needs for peak-memory numbers; without it the table says "n/a".

use lossdiff::attention::bench::{bench_attention, bench_markdown, AttentionBenchConfig};

#[global_allocator]
static ALLOC: lossdiff::alloc::CountingAlloc = lossdiff::alloc::CountingAlloc;

fn main() -> anyhow::Result<()> {
    let mut cfg = AttentionBenchConfig::default();
    let lens: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    if !lens.is_empty() {
        cfg.seq_lens = lens;
    }
    let rows = bench_attention(&cfg)?;
    print!("{}", bench_markdown(&cfg, &rows));
    Ok(())
}
