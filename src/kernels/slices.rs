//! Plumbing shared by the fused kernels: borrowing candle CPU storage as slices, row-parallel
//! loops and reductions whose summation order is fixed by the data, never by the thread count.
//!
//! Determinism rule for every kernel: work is split into rows (or fixed-size row blocks), each
//! computed by one thread in one fixed order; partial results are combined in block order. The
//! number of rayon threads changes only which thread runs a block, not what it computes.

use candle_core::{CpuStorage, Layout, Storage, Tensor};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Rows per rayon task: large enough that scheduling costs nothing next to the row work.
const MIN_ROWS_PER_TASK: usize = 16;

/// Rows per partial sum in [`column_sums`]: a constant, so the partials (and their bits) are the
/// same for any thread count.
const COLUMN_BLOCK_ROWS: usize = 64;

/// Borrows a contiguous f32 storage as a slice.
pub(crate) fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((start, end))) => Ok(&v[start..end]),
        _ => Err(candle_core::Error::Msg(
            "fused kernel: expected a contiguous f32 tensor".into(),
        )),
    }
}

/// Borrows a contiguous u32 storage as a slice.
pub(crate) fn u32_slice<'a>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [u32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::U32(v), Some((start, end))) => Ok(&v[start..end]),
        _ => Err(candle_core::Error::Msg(
            "fused kernel: expected a contiguous u32 tensor".into(),
        )),
    }
}

/// Calls `f` with the f32 elements of `t` (made contiguous first) in row-major order.
///
/// Backward passes use this to read their saved tensors without copying them into a `Vec`.
pub(crate) fn with_f32<R>(
    t: &Tensor,
    f: impl FnOnce(&[f32]) -> candle_core::Result<R>,
) -> candle_core::Result<R> {
    with_slice(t, f32_slice, f)
}

/// Calls `f` with the u32 elements of `t` (made contiguous first) in row-major order.
pub(crate) fn with_u32<R>(
    t: &Tensor,
    f: impl FnOnce(&[u32]) -> candle_core::Result<R>,
) -> candle_core::Result<R> {
    with_slice(t, u32_slice, f)
}

fn with_slice<T, R>(
    t: &Tensor,
    slice: for<'a> fn(&'a CpuStorage, &Layout) -> candle_core::Result<&'a [T]>,
    f: impl FnOnce(&[T]) -> candle_core::Result<R>,
) -> candle_core::Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(s) => f(slice(s, layout)?),
        _ => Err(candle_core::Error::Msg(
            "fused kernels run on the CPU only".into(),
        )),
    }
}

/// Whether rayon work should run inline on the calling thread.
///
/// A parallel loop called from outside rayon's pool is handed to a pool thread while the caller
/// sleeps on a futex. With one thread that round trip buys nothing, and it is not cheap: about
/// 90 calls per `small` step spent ~12 % of the step waking and parking threads (perf, one thread).
/// Rows compute the same bits either way (see the module's determinism rule).
pub(crate) fn inline() -> bool {
    rayon::current_num_threads() == 1
}

/// Runs `f` compiled for the widest vector unit the CPU has (AVX-512, else AVX2, else baseline
/// x86-64's SSE2), chosen at run time.
///
/// The kernels' loops are written to vectorise (see `math`), and baseline x86-64 vectorises
/// them four lanes wide. Rust never fuses `a * b + c` into an FMA nor reorders float operations,
/// so a wider unit computes the same operations on more lanes at once: the bits do not depend
/// on which branch ran.
#[inline(always)]
pub(crate) fn wide<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        // FMA comes with both: only code that asks for `mul_add` gets it (see above), and a
        // fused multiply-add rounds once, exactly as IEEE 754 and libm's software `fmaf` do.
        #[target_feature(enable = "avx512f,fma")]
        fn avx512<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        #[target_feature(enable = "avx2,fma")]
        fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX-512F and FMA, checked on the line above.
            return unsafe { avx512(f) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA, checked on the line above.
            return unsafe { avx2(f) };
        }
    }
    f()
}

/// Returns a new `len`-element buffer filled row by row, `f(row_index, out_row)`, rows spread
/// over rayon's threads.
///
/// Each row is zeroed by the task that then fills it, instead of the whole buffer by one
/// `memset` on the calling thread before the loop: those serial fills (`vec![0.0; len]`) were
/// about 3 % of a two-thread `medium` step's own thread. Here the zeroing is split over the
/// threads and lands in cache just before `f` writes the row. `f` sees zeros where it writes nothing
/// (the causal softmax's masked tail relies on that).
pub(crate) fn par_rows(
    len: usize,
    d: usize,
    f: impl Fn(usize, &mut [f32]) + Sync + Send,
) -> Vec<f32> {
    if d == 0 {
        return vec![0.0; len];
    }
    let mut out: Vec<f32> = Vec::with_capacity(len);
    for_each_row(
        &mut out.spare_capacity_mut()[..len],
        d,
        #[inline(always)]
        |i, row: &mut [MaybeUninit<f32>]| f(i, zeroed(row)),
    );
    // SAFETY: rows of `d` (the last one possibly shorter) cover all `len` elements, and each was
    // initialised by its task above.
    unsafe { out.set_len(len) };
    out
}

/// Returns a new `len`-element buffer filled row by row, `f(row_index, out_row)`, rows spread
/// over rayon's threads, for kernels that write every element: unlike [`par_rows`], nothing is
/// zero-filled before `f` writes it (those fills were about 5 % of a two-thread `small` step's
/// own thread).
///
/// # Safety
/// `f` must initialise every element of the row it is given (`MaybeUninit::write`); the buffer
/// is returned as initialised.
pub(crate) unsafe fn par_rows_uninit(
    len: usize,
    d: usize,
    f: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync + Send,
) -> Vec<f32> {
    if d == 0 {
        return vec![0.0; len];
    }
    let mut out: Vec<f32> = Vec::with_capacity(len);
    for_each_row(&mut out.spare_capacity_mut()[..len], d, f);
    // SAFETY: rows of `d` (the last one possibly shorter) cover all `len` elements, and the
    // caller's `f` initialised every element of each.
    unsafe { out.set_len(len) };
    out
}

/// Zero-fills `rows` and returns them as initialised: the task that fills a slice of a fresh
/// buffer zeroes it too, in parallel and while it is in cache, instead of a serial zero fill of the
/// whole buffer on the calling thread.
#[inline(always)]
pub(crate) fn zeroed(rows: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    rows.fill(MaybeUninit::new(0.0));
    // SAFETY: every element was initialised on the line above.
    unsafe { assume_init(rows) }
}

/// Returns `rows` as the initialised `f32`s they hold.
///
/// # Safety
/// Every element of `rows` must have been initialised.
#[inline(always)]
pub(crate) unsafe fn assume_init(rows: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: the caller's contract; `MaybeUninit<f32>` has `f32`'s layout.
    unsafe { &mut *(rows as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// Calls `f(row_index, row)` for each `d`-element row of `out` (the last may be shorter), rows
/// spread over rayon's threads, each compiled for the widest vector unit.
fn for_each_row<T: Send>(out: &mut [T], d: usize, f: impl Fn(usize, &mut [T]) + Sync + Send) {
    if d == 0 {
        return;
    }
    if inline() {
        out.chunks_mut(d).enumerate().for_each(|(i, row)| {
            wide(
                #[inline(always)]
                || f(i, row),
            )
        });
        return;
    }
    out.par_chunks_mut(d)
        .with_min_len(MIN_ROWS_PER_TASK)
        .enumerate()
        .for_each(|(i, row)| {
            wide(
                #[inline(always)]
                || f(i, row),
            )
        });
}

/// Returns `Σ_rows f(row)` for an `n_rows × d` problem, where `f(row, acc)` adds row `row`'s
/// contribution into `acc` (length `d`): rows are summed in order within fixed blocks of
/// [`COLUMN_BLOCK_ROWS`], blocks in parallel, and the block partials in block order.
pub(crate) fn column_sums(
    n_rows: usize,
    d: usize,
    f: impl Fn(usize, &mut [f32]) + Sync + Send,
) -> Vec<f32> {
    let blocks = n_rows.div_ceil(COLUMN_BLOCK_ROWS);
    let block = |blk: usize| {
        let mut acc = vec![0f32; d];
        let end = ((blk + 1) * COLUMN_BLOCK_ROWS).min(n_rows);
        for row in blk * COLUMN_BLOCK_ROWS..end {
            wide(
                #[inline(always)]
                || f(row, &mut acc),
            );
        }
        acc
    };
    let partials: Vec<Vec<f32>> = match inline() {
        true => (0..blocks).map(block).collect(),
        false => (0..blocks).into_par_iter().map(block).collect(),
    };
    let mut total = vec![0f32; d];
    for p in &partials {
        for (t, x) in total.iter_mut().zip(p) {
            *t += x;
        }
    }
    total
}

/// Returns `Σ f(x)` with eight interleaved accumulators (so the loop vectorises), combined in a
/// fixed tree: the order depends on the length only.
#[inline(always)]
pub(crate) fn sum_map(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = x.chunks_exact(8);
    let tail = chunks.remainder().iter().fold(0f32, |s, &v| s + f(v));
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += f(v);
        }
    }
    combine(acc) + tail
}

/// Returns `Σ f(a, b)` over pairs, in the same fixed order as [`sum_map`].
#[inline(always)]
pub(crate) fn sum_map2(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (a[..n].chunks_exact(8), b[..n].chunks_exact(8));
    let tail = a
        .remainder()
        .iter()
        .zip(b.remainder())
        .fold(0f32, |s, (&x, &y)| s + f(x, y));
    let mut acc = [0f32; 8];
    for (x, y) in a.zip(b) {
        for ((s, &x), &y) in acc.iter_mut().zip(x).zip(y) {
            *s += f(x, y);
        }
    }
    combine(acc) + tail
}

/// Returns `Σ x` in [`sum_map`]'s order.
pub(crate) fn sum(x: &[f32]) -> f32 {
    sum_map(x, |v| v)
}

fn combine(acc: [f32; 8]) -> f32 {
    let pairs = [
        acc[0] + acc[4],
        acc[1] + acc[5],
        acc[2] + acc[6],
        acc[3] + acc[7],
    ];
    (pairs[0] + pairs[2]) + (pairs[1] + pairs[3])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `wide` may only change how many lanes run, never a result: `exp`, `erf`, division, square
    /// root and an eight-accumulator sum, run through it (AVX-512 or AVX2 on a CPU that has them)
    /// and in a loop compiled for baseline x86-64, give the same bits. (On a CPU with neither,
    /// both sides are the baseline.)
    #[test]
    fn the_widest_vector_unit_computes_the_baseline_bits() {
        use super::super::math::{erf, exp};
        let x: Vec<f32> = (0..100_003)
            .map(|i| (i as f32 - 50_000.0) * 1.7e-3)
            .collect();
        #[inline(always)]
        fn body(x: &[f32]) -> (Vec<f32>, f32) {
            let y: Vec<f32> = x
                .iter()
                .map(|&v| exp(-0.5 * v * v) * erf(v) / (v.abs().sqrt() + 1e-3))
                .collect();
            let s = sum_map(&y, |v| v * v + 1.0);
            (y, s)
        }
        let (wide_y, wide_s) = wide(
            #[inline(always)]
            || body(&x),
        );
        let (base_y, base_s) = body(&x);
        assert_eq!(wide_s.to_bits(), base_s.to_bits());
        for (i, (a, b)) in wide_y.iter().zip(&base_y).enumerate() {
            assert_eq!(a.to_bits(), b.to_bits(), "x = {}", x[i]);
        }
    }

    #[test]
    fn sum_and_dot_agree_with_f64_sums() {
        let x: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin()).collect();
        let exact: f64 = x.iter().map(|&v| f64::from(v)).sum();
        approx::assert_abs_diff_eq!(f64::from(sum(&x)), exact, epsilon = 1e-5);
        let sq: f64 = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
        let dot = sum_map2(&x, &x, |a, b| a * b);
        approx::assert_abs_diff_eq!(f64::from(dot), sq, epsilon = 1e-5);
    }

    #[test]
    fn column_sums_are_the_same_bits_on_one_and_four_threads() {
        let (n, d) = (1000, 3);
        let x: Vec<f32> = (0..n * d).map(|i| (i as f32 * 0.013).cos()).collect();
        let run = |threads| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| {
                    column_sums(n, d, |r, acc| {
                        for (a, v) in acc.iter_mut().zip(&x[r * d..(r + 1) * d]) {
                            *a += v;
                        }
                    })
                })
        };
        let (one, four) = (run(1), run(4));
        assert_eq!(
            one.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            four.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }
}
