//! Plumbing shared by the attention kernels: f32 copies of their inputs, and one tile product
//! through the `gemm` crate with its own threading off, so that the caller's task split fixes
//! which thread computes an element and never what it computes.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, DType, Layout, Tensor};
use half::bf16;

/// Copies a 4-D f32 or bf16 storage into a row-major f32 buffer, honouring offset and strides.
pub(super) fn gather(storage: &CpuStorage, layout: &Layout) -> candle_core::Result<Vec<f32>> {
    match storage {
        CpuStorage::F32(data) => Ok(gather_with(data, layout, |x| x)),
        CpuStorage::BF16(data) => Ok(gather_with(data, layout, bf16::to_f32)),
        other => Err(candle_core::Error::Msg(format!(
            "flash attention takes f32 or bf16, got {:?}",
            other.dtype()
        ))),
    }
}

fn gather_with<T: Copy>(data: &[T], layout: &Layout, f: impl Fn(T) -> f32) -> Vec<f32> {
    if let Some((start, end)) = layout.contiguous_offsets() {
        return data[start..end].iter().map(|&x| f(x)).collect();
    }
    // Only 4-D tensors reach here (flash_attention checked `dims4`).
    let (dims, stride) = (layout.dims(), layout.stride());
    let mut out = Vec::with_capacity(layout.shape().elem_count());
    for i0 in 0..dims[0] {
        for i1 in 0..dims[1] {
            for i2 in 0..dims[2] {
                let base = layout.start_offset() + i0 * stride[0] + i1 * stride[1] + i2 * stride[2];
                out.extend((0..dims[3]).map(|i3| f(data[base + i3 * stride[3]])));
            }
        }
    }
    out
}

pub(super) fn to_f32_vec(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()
}

/// A read-only matrix view: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub(super) struct Mat<'a> {
    pub(super) data: &'a [f32],
    pub(super) rs: usize,
    pub(super) cs: usize,
}

impl<'a> Mat<'a> {
    /// A row-major view with row stride `rs`.
    pub(super) fn rows(data: &'a [f32], rs: usize) -> Self {
        Mat { data, rs, cs: 1 }
    }

    /// The transpose of a row-major view with row stride `rs`.
    pub(super) fn transposed(data: &'a [f32], rs: usize) -> Self {
        Mat {
            data,
            rs: 1,
            cs: rs,
        }
    }

    fn fits(&self, rows: usize, cols: usize) -> bool {
        (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len()
    }
}

/// Computes `dst[m × n] = (accumulate ? dst : 0) + beta · lhs[m × k] · rhs[k × n]` with gemm's
/// SIMD kernels, single-threaded so that the caller's task decomposition fixes the bits.
#[allow(clippy::too_many_arguments)]
pub(super) fn tile_gemm(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    lhs: Mat<'_>,
    rhs: Mat<'_>,
    beta: f32,
) {
    let dst_view = Mat::rows(dst, dst_rs);
    assert!(
        m > 0 && n > 0 && k > 0 && dst_view.fits(m, n) && lhs.fits(m, k) && rhs.fits(k, n),
        "tile_gemm: views out of bounds ({m}×{n}×{k})"
    );
    // SAFETY: the assert above keeps every index gemm touches inside the three slices, `dst` is
    // a unique borrow distinct from `lhs` and `rhs`, and T = f32 is one of gemm's types.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
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
            gemm::Parallelism::None,
        );
    }
}
