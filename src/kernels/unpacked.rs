//! Products of cache-sized operands without gemm's packing, with gemm's bits.
//!
//! gemm copies both operands into packed panels before its micro-kernel runs. For the naive
//! attention's products (32 query rows against at most 512 keys, head dim 32) that copying and
//! gemm's dispatch are a large part of each call. Here the micro-kernel reads the operands where
//! they lie, so both must have contiguous rows: a left operand read down its columns (a stride of
//! a whole `T × T` row between elements) thrashes L1, which is what gemm's packing is for.
//!
//! The bits are gemm's because the arithmetic is: on its main path gemm computes every output as
//! one chain of fused multiply-adds over the inner dimension, in order, starting from zero, when
//! that dimension is one of its blocks (`k ≤ 512`), and so does the micro-kernel here. Where gemm
//! sums otherwise ([`matches_gemm`]) [`product_uninit`] calls gemm itself. [`continue_chains`] goes
//! further: it carries each output's chain on from the value already in `dst`, so a product over
//! a long inner dimension can be computed a slice of it at a time, with the bits of one gemm call
//! over all of it.

use super::gemm::{dst_len_fits, operands_fit, tile_gemm_uninit, Mat};
use super::slices::wide;
use std::mem::MaybeUninit;

/// Longest inner dimension gemm sums in one block, so as one chain per output.
const MAX_K: usize = 512;

/// f32 lanes of one AVX2 register: the micro-kernel's unit of columns.
const LANES: usize = 8;

/// Computes `dst[m × n] = lhs[m × k] · rhs[k × n]` into uninitialised memory (row stride
/// `dst_rs`), single-threaded, with the bits of [`tile_gemm_uninit`]: afterwards those `m × n`
/// elements are initialised; elements of `dst` outside them are left as they were.
pub(crate) fn product_uninit(
    (m, n, k): (usize, usize, usize),
    dst: &mut [MaybeUninit<f32>],
    dst_rs: usize,
    lhs: Mat<'_>,
    rhs: Mat<'_>,
) {
    if lhs.cs != 1 || rhs.cs != 1 || !matches_gemm((m, n, k), lhs, rhs) {
        return tile_gemm_uninit((m, n, k), dst, dst_rs, lhs, rhs);
    }
    // SAFETY: `Chains::Start` reads nothing from `dst`.
    unsafe { run((m, n, k), dst, dst_rs, Chains::Start, lhs, rhs) }
}

/// Computes `dst[m × n] = lhs[m × k] · rhs[k × n]` as the continuation of the chains in `dst`:
/// each output's multiply-adds start from the value `dst` holds, so that calls over consecutive
/// slices of an inner dimension give the bits of one chain over all of it (of one gemm call, when
/// [`matches_gemm`] holds for that call). `Chains::Start` begins the chains at zero, as gemm does.
///
/// # Safety
/// With `Chains::Continue`, the `m × n` elements of `dst` must be initialised.
pub(crate) unsafe fn continue_chains(
    dims: (usize, usize, usize),
    dst: &mut [MaybeUninit<f32>],
    dst_rs: usize,
    chains: Chains,
    lhs: Mat<'_>,
    rhs: Mat<'_>,
) {
    assert!(
        lhs.cs == 1 && rhs.cs == 1,
        "unpacked product: operands with contiguous rows only"
    );
    // SAFETY: the caller's contract.
    unsafe { run(dims, dst, dst_rs, chains, lhs, rhs) }
}

/// Where the micro-kernel's chains begin.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chains {
    /// At zero, as gemm's do.
    Start,
    /// At the value in `dst`.
    Continue,
}

/// Whether gemm computes the `m × n × k` product of these views on its main path, one chain of
/// fused multiply-adds per output, which is what the micro-kernel here computes.
///
/// gemm (`gemm-common` 0.19) turns to other summations for a dimension of 1 (matrix-vector),
/// `k ≤ 2`, at most 16 × 16 outputs from a row-major left and column-major right operand, and
/// inner dimensions longer than one block; and its micro-kernel is fused only where the CPU has
/// FMA (its scalar fallback multiplies, then adds).
pub(crate) fn matches_gemm((m, n, k): (usize, usize, usize), lhs: Mat<'_>, rhs: Mat<'_>) -> bool {
    let horizontal = lhs.cs == 1 && rhs.rs == 1 && m * n <= 16 * 16;
    m > 1 && n > 1 && k > 2 && k <= MAX_K && !horizontal && fused_multiply_add()
}

/// Whether gemm's micro-kernel here uses fused multiply-adds, as this one does.
fn fused_multiply_add() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// # Safety
/// As [`continue_chains`]; both operands have contiguous rows.
unsafe fn run(
    (m, n, k): (usize, usize, usize),
    dst: &mut [MaybeUninit<f32>],
    dst_rs: usize,
    chains: Chains,
    lhs: Mat<'_>,
    rhs: Mat<'_>,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        dst_len_fits(dst.len(), (m, n), dst_rs) && (k == 0 || operands_fit((m, n, k), lhs, rhs)),
        "unpacked product: views out of bounds ({m}×{n}×{k})"
    );
    let dst = dst.as_mut_ptr().cast::<f32>();
    let (a, b) = (lhs.data.as_ptr(), rhs.data.as_ptr());
    // Compiled for AVX2 and FMA here, whatever the caller was compiled for: outside a
    // target-feature context `mul_add` is a call to libm's `fmaf` per element.
    wide(
        #[inline(always)]
        || {
            let mut i = 0;
            while i < m {
                // Six rows a tile (twelve accumulators, gemm's own count), but never a last
                // tile of one or two rows: 8 rows left go as two tiles of four.
                let rows = match m - i {
                    8 => 4,
                    left => left.min(6),
                };
                let tile = Tile {
                    k,
                    a: a.wrapping_add(i * lhs.rs),
                    a_rs: lhs.rs,
                    b,
                    b_rs: rhs.rs,
                    dst: dst.wrapping_add(i * dst_rs),
                    dst_rs,
                    chains,
                };
                // SAFETY: rows `i..i + rows` of every view are in bounds (asserted above), and
                // the tiles write disjoint elements of `dst`.
                unsafe {
                    match rows {
                        6 => row_tile::<6>(n, tile),
                        5 => row_tile::<5>(n, tile),
                        4 => row_tile::<4>(n, tile),
                        3 => row_tile::<3>(n, tile),
                        2 => row_tile::<2>(n, tile),
                        _ => row_tile::<1>(n, tile),
                    }
                }
                i += rows;
            }
        },
    );
}

/// A strip of rows of the product: `a` at its first row (row stride `a_rs`, elements along a row
/// contiguous), `b` at the first column wanted, `dst` at the strip's first output.
#[derive(Clone, Copy)]
struct Tile {
    k: usize,
    a: *const f32,
    a_rs: usize,
    b: *const f32,
    b_rs: usize,
    dst: *mut f32,
    dst_rs: usize,
    chains: Chains,
}

impl Tile {
    /// The same strip from column `j` on.
    fn at_column(self, j: usize) -> Tile {
        Tile {
            b: self.b.wrapping_add(j),
            dst: self.dst.wrapping_add(j),
            ..self
        }
    }
}

/// Rows `0..R` of the strip, all `n` columns: sixteen columns a tile, then eight, then one at a
/// time.
///
/// # Safety
/// `a` must be readable at `r · a_rs + p` and `b` at `p · b_rs + j` for `r < R`, `p < k`,
/// `j < n`; `dst` writable at `r · dst_rs + j` (and readable, initialised, with
/// `Chains::Continue`).
#[inline(always)]
unsafe fn row_tile<const R: usize>(n: usize, tile: Tile) {
    let mut j = 0;
    // SAFETY (all three loops): columns `j..j + width` are below `n`; the caller's contract.
    while j + 2 * LANES <= n {
        unsafe { block::<R, 2>(tile.at_column(j)) };
        j += 2 * LANES;
    }
    if j + LANES <= n {
        unsafe { block::<R, 1>(tile.at_column(j)) };
        j += LANES;
    }
    while j < n {
        unsafe { column::<R>(tile.at_column(j)) };
        j += 1;
    }
}

/// The micro-kernel: an `R × (V · 8)` block of outputs held in registers, each the chain
/// `((c + a₀b₀) + a₁b₁) + …`, `c` zero or `dst`'s value, every step one fused multiply-add.
///
/// # Safety
/// As [`row_tile`], for `V · 8` columns.
#[inline(always)]
unsafe fn block<const R: usize, const V: usize>(t: Tile) {
    let mut acc = [[[0f32; LANES]; V]; R];
    if t.chains == Chains::Continue {
        for (r, acc) in acc.iter_mut().enumerate() {
            // SAFETY: row `r`, columns `0 .. V · 8` of `dst`, initialised; the caller's contract.
            *acc = unsafe {
                t.dst
                    .add(r * t.dst_rs)
                    .cast::<[[f32; LANES]; V]>()
                    .read_unaligned()
            };
        }
    }
    for p in 0..t.k {
        let mut bv = [[0f32; LANES]; V];
        for (v, bv) in bv.iter_mut().enumerate() {
            // SAFETY: row `p`, columns `v · 8 .. v · 8 + 8` of `b`; the caller's contract.
            *bv = unsafe {
                t.b.add(p * t.b_rs + v * LANES)
                    .cast::<[f32; LANES]>()
                    .read_unaligned()
            };
        }
        for (r, acc) in acc.iter_mut().enumerate() {
            // SAFETY: element `(r, p)` of `a`; the caller's contract.
            let x = unsafe { *t.a.add(r * t.a_rs + p) };
            for (acc, bv) in acc.iter_mut().zip(&bv) {
                for (c, &y) in acc.iter_mut().zip(bv) {
                    *c = x.mul_add(y, *c);
                }
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        // SAFETY: row `r`, columns `0 .. V · 8` of `dst`; the caller's contract.
        unsafe {
            t.dst
                .add(r * t.dst_rs)
                .cast::<[[f32; LANES]; V]>()
                .write_unaligned(*acc)
        };
    }
}

/// One column of `R` outputs, each computed as [`block`] computes it.
///
/// # Safety
/// As [`row_tile`], for one column.
#[inline(always)]
unsafe fn column<const R: usize>(t: Tile) {
    let mut acc = [0f32; R];
    if t.chains == Chains::Continue {
        for (r, c) in acc.iter_mut().enumerate() {
            // SAFETY: element `(r, 0)` of `dst`, initialised; the caller's contract.
            *c = unsafe { *t.dst.add(r * t.dst_rs) };
        }
    }
    for p in 0..t.k {
        // SAFETY: element `(p, 0)` of `b` and `(r, p)` of `a`; the caller's contract.
        let y = unsafe { *t.b.add(p * t.b_rs) };
        for (r, c) in acc.iter_mut().enumerate() {
            *c = unsafe { *t.a.add(r * t.a_rs + p) }.mul_add(y, *c);
        }
    }
    for (r, &c) in acc.iter().enumerate() {
        // SAFETY: element `(r, 0)` of `dst`; the caller's contract.
        unsafe { *t.dst.add(r * t.dst_rs) = c };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_support::seeded;

    /// Returns `m × k` and `k × n` operands, optionally salted with signed zeros and exact
    /// cancellations, where the summation order shows in the sign.
    fn operands((m, n, k): (usize, usize, usize), zeros: bool) -> (Vec<f32>, Vec<f32>) {
        let (mut a, mut b) = (seeded(m * k, 1), seeded(k * n, 2));
        if zeros {
            for (i, x) in a.iter_mut().enumerate() {
                if i % 3 == 0 {
                    *x = -0.0;
                }
            }
            for (i, x) in b.iter_mut().enumerate() {
                if i % 5 != 1 {
                    *x = if i % 2 == 0 { 0.0 } else { -0.0 };
                }
            }
        }
        (a, b)
    }

    /// Returns the bits of the `m × n` outputs in `dst` (row stride `rs`).
    fn bits(dst: &[MaybeUninit<f32>], (m, n): (usize, usize), rs: usize) -> Vec<u32> {
        dst.chunks(rs)
            .take(m)
            // SAFETY: the product initialised the first `n` elements of each row.
            .flat_map(|row| {
                row[..n]
                    .iter()
                    .map(|x| unsafe { x.assume_init() }.to_bits())
            })
            .collect()
    }

    fn gemm_bits(dims: (usize, usize, usize), lhs: Mat<'_>, rhs: Mat<'_>) -> Vec<u32> {
        let rs = dims.1 + 3;
        let mut dst = vec![MaybeUninit::new(f32::NAN); dims.0 * rs];
        tile_gemm_uninit(dims, &mut dst, rs, lhs, rhs);
        bits(&dst, (dims.0, dims.1), rs)
    }

    #[test]
    fn products_have_gemms_bits() {
        // The naive attention's shapes at head dim 32 (query block × keys × head dim, and query
        // block × head dim × keys), ragged ones that reach every tile width and row count, and
        // shapes gemm sums otherwise (handed back to it).
        let shapes = [
            (32, 256, 32),
            (32, 32, 256),
            (32, 32, 512),
            (48, 64, 32),
            (37, 29, 41),
            (7, 23, 5),
            (8, 17, 3),
            (16, 16, 40),
            (1, 40, 40),
            (40, 1, 40),
            (40, 40, 2),
            (20, 40, 600),
        ];
        for (m, n, k) in shapes {
            for zeros in [false, true] {
                let (a, b) = operands((m, n, k), zeros);
                let (lhs, rhs) = (Mat::rows(&a, k), Mat::rows(&b, n));
                let rs = n + 3;
                let mut dst = vec![MaybeUninit::new(f32::NAN); m * rs];
                product_uninit((m, n, k), &mut dst, rs, lhs, rhs);
                assert!(
                    bits(&dst, (m, n), rs) == gemm_bits((m, n, k), lhs, rhs),
                    "({m}, {n}, {k}), zeros {zeros}"
                );
            }
        }
    }

    #[test]
    fn chains_continued_slice_by_slice_have_the_bits_of_one_gemm_call() {
        // As the attention backward uses it: the left operand arrives as the transpose of a
        // `k × m` buffer (one gemm call reads it down its columns); here it is copied to rows a
        // slice of the inner dimension at a time, and the chains are carried across slices.
        for ((m, n, k), slice) in [((32, 32, 256), 32), ((40, 24, 99), 17), ((64, 8, 48), 16)] {
            for zeros in [false, true] {
                let (a_t, b) = operands((m, n, k), zeros);
                let want = gemm_bits((m, n, k), Mat::transposed(&a_t, m), Mat::rows(&b, n));
                assert!(matches_gemm(
                    (m, n, k),
                    Mat::transposed(&a_t, m),
                    Mat::rows(&b, n)
                ));
                let mut dst = vec![MaybeUninit::new(f32::NAN); m * n];
                for p0 in (0..k).step_by(slice) {
                    let p1 = (p0 + slice).min(k);
                    let a: Vec<f32> = (0..m)
                        .flat_map(|i| (p0..p1).map(move |p| (i, p)))
                        .map(|(i, p)| a_t[p * m + i])
                        .collect();
                    let chains = match p0 {
                        0 => Chains::Start,
                        _ => Chains::Continue,
                    };
                    let (lhs, rhs) = (Mat::rows(&a, p1 - p0), Mat::rows(&b[p0 * n..], n));
                    // SAFETY: every slice after the first continues chains the first started.
                    unsafe { continue_chains((m, n, p1 - p0), &mut dst, n, chains, lhs, rhs) };
                }
                assert!(bits(&dst, (m, n), n) == want, "({m}, {n}, {k}) by {slice}");
            }
        }
    }

    #[test]
    fn writes_only_the_product() {
        let (m, n, k) = (9, 21, 7);
        let (a, b) = operands((m, n, k), false);
        let rs = n + 2;
        let mut dst = vec![MaybeUninit::new(7.0f32); m * rs];
        product_uninit((m, n, k), &mut dst, rs, Mat::rows(&a, k), Mat::rows(&b, n));
        for row in dst.chunks(rs) {
            // SAFETY: the whole buffer was initialised with 7.
            assert!(row[n..].iter().all(|x| unsafe { x.assume_init() } == 7.0));
        }
    }

    #[test]
    #[should_panic(expected = "out of bounds")]
    fn refuses_views_out_of_bounds() {
        let (a, b) = (vec![0f32; 32 * 32], vec![0f32; 32 * 31]);
        let mut dst = vec![MaybeUninit::new(0f32); 32 * 32];
        product_uninit(
            (32, 32, 32),
            &mut dst,
            32,
            Mat::rows(&a, 32),
            Mat::rows(&b, 32),
        );
    }
}
