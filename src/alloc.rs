//! A counting global allocator, so that benchmarks can report peak heap memory in-process.
//!
//! Peak RSS from the OS cannot be reset between measurements and counts pages glibc keeps after a
//! free; counting bytes at the allocator gives "the most this computation held at once", which
//! is what the attention benchmark compares. The library only defines the allocator: a binary
//! opts in with one line,
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: lossdiff::alloc::CountingAlloc = lossdiff::alloc::CountingAlloc;
//! ```
//!
//! and [`CountingAlloc::is_registered`] tells library code whether that happened (any program
//! allocates before `main`, so a registered counter is never at zero allocations).
//!
//! This module owns the counters; what is measured with them is the benchmark's business.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Bytes currently allocated through [`CountingAlloc`].
static CURRENT: AtomicUsize = AtomicUsize::new(0);
/// Largest value [`CURRENT`] reached since the last [`CountingAlloc::reset_peak`].
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// Allocations ever made through [`CountingAlloc`]; non-zero iff it is the global allocator.
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// A [`System`] allocator that counts current and peak live bytes.
///
/// The counters are process-wide statics (there is only one global allocator), so the type is a
/// unit struct and its queries are associated functions. Overhead: two or three relaxed atomic
/// operations per allocation.
#[derive(Debug, Clone, Copy, Default)]
pub struct CountingAlloc;

impl CountingAlloc {
    /// Returns whether this allocator is registered as `#[global_allocator]` (it has counted at
    /// least one allocation).
    pub fn is_registered() -> bool {
        ALLOCATIONS.load(Ordering::Relaxed) > 0
    }

    /// Returns the bytes allocated and not yet freed.
    pub fn current_bytes() -> usize {
        CURRENT.load(Ordering::Relaxed)
    }

    /// Returns the most bytes live at once since the last [`CountingAlloc::reset_peak`].
    pub fn peak_bytes() -> usize {
        PEAK.load(Ordering::Relaxed)
    }

    /// Starts a new peak measurement from the bytes live now.
    pub fn reset_peak() {
        PEAK.store(CURRENT.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    fn added(bytes: usize) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        let now = CURRENT.fetch_add(bytes, Ordering::Relaxed) + bytes;
        PEAK.fetch_max(now, Ordering::Relaxed);
    }

    fn removed(bytes: usize) {
        CURRENT.fetch_sub(bytes, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to `System` with the caller's layout unchanged and only adds
// bookkeeping on atomics, which never allocates.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc(layout);
        if !ptr.is_null() {
            Self::added(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc_zeroed(layout);
        if !ptr.is_null() {
            Self::added(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        Self::removed(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = System.realloc(ptr, layout, new_size);
        if !new.is_null() {
            // Count the new block before freeing the old: a moving realloc holds both briefly.
            Self::added(new_size);
            Self::removed(layout.size());
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_through_the_global_alloc_interface() {
        // Not registered in the test binary: drive the trait directly, as the runtime would.
        let a = CountingAlloc;
        let layout = Layout::from_size_align(1 << 20, 8).unwrap();
        assert!(!CountingAlloc::is_registered());
        CountingAlloc::reset_peak();
        let before = CountingAlloc::current_bytes();
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null());
            assert_eq!(CountingAlloc::current_bytes() - before, 1 << 20);
            let p = a.realloc(p, layout, 3 << 20);
            assert_eq!(CountingAlloc::current_bytes() - before, 3 << 20);
            a.dealloc(p, Layout::from_size_align(3 << 20, 8).unwrap());
        }
        assert_eq!(CountingAlloc::current_bytes(), before);
        assert!(CountingAlloc::peak_bytes() - before >= 3 << 20);
        assert!(CountingAlloc::is_registered());
    }
}
