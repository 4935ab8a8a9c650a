//! One gemm call behind a bounds check: the products of the fused kernels and of attention.
//!
//! gemm (the crate candle's CPU matmul uses) computes each output element as one chain of
//! multiply-adds over the inner dimension, in blocks whose size depends only on that dimension's
//! length, and splits work across threads by output blocks only. So a product's bits do not
//! depend on the thread count, on whether it runs as one call or as tiles of rows and columns, or
//! on which operand is the left one, as long as the inner dimension is the same; the kernels'
//! "same bits as candle's ops" arguments rest on this.

use std::mem::MaybeUninit;

/// A read-only matrix view: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    pub(crate) data: &'a [f32],
    pub(crate) rs: usize,
    pub(crate) cs: usize,
}

impl<'a> Mat<'a> {
    /// A row-major view with row stride `rs`.
    pub(crate) fn rows(data: &'a [f32], rs: usize) -> Self {
        Mat { data, rs, cs: 1 }
    }

    /// The transpose of a row-major view with row stride `rs`.
    pub(crate) fn transposed(data: &'a [f32], rs: usize) -> Self {
        Mat {
            data,
            rs: 1,
            cs: rs,
        }
    }

    /// Whether a `rows × cols` matrix (both at least 1) fits in `data`.
    fn fits(&self, rows: usize, cols: usize) -> bool {
        (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len()
    }
}

/// Computes `dst[m × n] = (accumulate ? dst : 0) + beta · lhs[m × k] · rhs[k × n]`, `dst` row-major
/// with row stride `dst_rs`, single-threaded so that the caller's task split fixes which thread
/// computes an element.
#[allow(clippy::too_many_arguments)]
pub(crate) fn tile_gemm(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    lhs: Mat<'_>,
    rhs: Mat<'_>,
    beta: f32,
) {
    // SAFETY: `dst` is a unique borrow of `dst.len()` elements, distinct from the operands.
    unsafe {
        checked_call(
            (m, n, k),
            (dst.as_mut_ptr(), dst.len(), dst_rs),
            accumulate,
            lhs,
            rhs,
            beta,
            1,
        )
    }
}

/// Computes `dst[m × n] = lhs[m × k] · rhs[k × n]` into uninitialised memory (row stride
/// `dst_rs`), single-threaded; afterwards those `m × n` elements are initialised (`k > 0`: gemm
/// writes every output element without reading it). Elements of `dst` outside them are left as
/// they were.
pub(crate) fn tile_gemm_uninit(
    dims: (usize, usize, usize),
    dst: &mut [MaybeUninit<f32>],
    dst_rs: usize,
    lhs: Mat<'_>,
    rhs: Mat<'_>,
) {
    gemm_uninit(dims, dst, dst_rs, lhs, rhs, 1);
}

/// Returns `lhs[m × k] · rhs[k × n]` as a fresh row-major buffer, written by gemm without a zero
/// fill first, with gemm's own split over `threads`.
pub(crate) fn product(
    (m, n, k): (usize, usize, usize),
    lhs: Mat<'_>,
    rhs: Mat<'_>,
    threads: usize,
) -> Vec<f32> {
    let mut dst: Vec<f32> = Vec::with_capacity(m * n);
    gemm_uninit(
        (m, n, k),
        &mut dst.spare_capacity_mut()[..m * n],
        n,
        lhs,
        rhs,
        threads,
    );
    // SAFETY: `gemm_uninit` initialised all m × n elements (row stride n, asserted to fit).
    unsafe { dst.set_len(m * n) };
    dst
}

/// [`tile_gemm_uninit`] with gemm's own split over `threads`.
fn gemm_uninit(
    (m, n, k): (usize, usize, usize),
    dst: &mut [MaybeUninit<f32>],
    dst_rs: usize,
    lhs: Mat<'_>,
    rhs: Mat<'_>,
    threads: usize,
) {
    // SAFETY: as in `tile_gemm`; `MaybeUninit<f32>` has `f32`'s layout, and gemm only writes
    // `dst` (`accumulate = false`).
    unsafe {
        checked_call(
            (m, n, k),
            (dst.as_mut_ptr().cast(), dst.len(), dst_rs),
            false,
            lhs,
            rhs,
            1.0,
            threads,
        )
    }
}

/// Whether `m × n` outputs at row stride `dst_rs` fit in `len` elements, rows not overlapping.
pub(super) fn dst_len_fits(len: usize, (m, n): (usize, usize), dst_rs: usize) -> bool {
    m > 0 && n > 0 && n <= dst_rs && (m - 1) * dst_rs + n <= len
}

pub(super) fn operands_fit((m, n, k): (usize, usize, usize), lhs: Mat<'_>, rhs: Mat<'_>) -> bool {
    m > 0 && n > 0 && k > 0 && lhs.fits(m, k) && rhs.fits(k, n)
}

/// Asserts that `m × n` outputs at row stride `dst_rs` fit in the `dst_len` elements at `dst` and
/// that the operands hold their views, then calls gemm: the bounds check every entry point shares.
///
/// # Safety
/// `dst` must be valid for writes (and reads when `accumulate`) of `dst_len` elements, and not
/// overlap the operands.
#[allow(clippy::too_many_arguments)]
unsafe fn checked_call(
    (m, n, k): (usize, usize, usize),
    (dst, dst_len, dst_rs): (*mut f32, usize, usize),
    accumulate: bool,
    lhs: Mat<'_>,
    rhs: Mat<'_>,
    beta: f32,
    threads: usize,
) {
    assert!(
        dst_len_fits(dst_len, (m, n), dst_rs) && operands_fit((m, n, k), lhs, rhs),
        "gemm: views out of bounds ({m}×{n}×{k})"
    );
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the assert keeps every index gemm touches inside `dst` and the operands' slices;
    // the rest is the caller's contract. T = f32 is one of gemm's types.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            1.0,
            beta,
            false,
            false,
            false,
            parallelism,
        );
    }
}
