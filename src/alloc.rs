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
//! This module owns the counters; what is measured with them is the benchmark's business. It
//! also owns the allocator settings training needs: [`retain_freed_memory`] and
//! [`share_one_arena`].

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Tells glibc's malloc to keep freed memory for reuse instead of returning it to the OS.
///
/// A training step allocates and frees the same few hundred activation and gradient buffers
/// every step. With glibc's defaults every step faults those pages in again, for two reasons:
/// - buffers over the (dynamic) mmap threshold are `mmap`ed and `munmap`ed each time, and the
///   heap top is trimmed after frees: measured at ~50,000 page faults per `small` step, about a
///   tenth of its time. Fixing the mmap threshold at its 32 MiB maximum and never trimming keeps
///   those pages mapped.
/// - a thread other than the process's first gets an arena of its own, which glibc unmaps heap by
///   heap as they empty whatever the trim threshold says; [`share_one_arena`] is about that.
///
/// The process holds on to its high-water mark, which a trainer reaches in its first step anyway.
/// Results are unaffected (only where buffers live changes). Idempotent; a no-op off glibc.
pub fn retain_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: mallopt only changes allocator parameters; it is safe to call at any time,
            // and both values are within glibc's documented ranges (the mmap threshold's maximum
            // is 32 MiB on 64-bit targets).
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
                libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
            }
        });
    }
}

/// Makes every thread allocate from the process's first malloc arena, for a process that trains
/// one model at a time, on however many threads.
///
/// A thread other than the first gets an arena of its own, built from heaps of at most 64 MiB, and
/// glibc unmaps such a heap as soon as everything in it is freed, whatever the trim threshold
/// says. Training runs on a rayon worker, and `medium`'s 17 MB attention scores fill those heaps a
/// few buffers at a time: ~44,000 page faults (about 130 ms of kernel time) per two-thread `medium`
/// step. The first thread's arena obeys [`retain_freed_memory`]'s thresholds: a few hundred.
///
/// Not for several trainings at once (`lossdiff run`'s jobs): they then contend for the one
/// arena's lock, 12,000 context switches and a slower `flash_vs_noflash` experiment where the
/// default arenas had 65. glibc fixes its arena limit when a second thread first allocates, so
/// this only takes hold before that: the `lossdiff` binary calls it in `main`, before anything
/// starts a thread, for `train` and the bench's cells.
/// Idempotent; a no-op off glibc.
pub fn share_one_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: mallopt only changes allocator parameters; an arena limit of 1 is the main
            // arena alone, within glibc's documented range.
            unsafe {
                libc::mallopt(libc::M_ARENA_MAX, 1);
            }
        });
    }
}

/// The process-wide counters behind [`CountingAlloc`] (there is only one global allocator).
static COUNTERS: Counters = Counters::new();

/// Live-byte bookkeeping, separate from the allocator so that it can be tested on its own
/// instance without making the real counters look registered.
struct Counters {
    /// Bytes allocated and not yet freed.
    current: AtomicUsize,
    /// Largest `current` since the last reset.
    peak: AtomicUsize,
    /// Allocations ever counted; non-zero iff the owner is the global allocator.
    allocations: AtomicU64,
}

impl Counters {
    const fn new() -> Self {
        Counters {
            current: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            allocations: AtomicU64::new(0),
        }
    }

    fn added(&self, bytes: usize) {
        self.allocations.fetch_add(1, Ordering::Relaxed);
        let now = self.current.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }

    fn removed(&self, bytes: usize) {
        self.current.fetch_sub(bytes, Ordering::Relaxed);
    }

    fn reallocated(&self, old: usize, new: usize) {
        // Count the new block before freeing the old: a moving realloc holds both briefly.
        self.added(new);
        self.removed(old);
    }

    fn reset_peak(&self) {
        self.peak
            .store(self.current.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

/// A [`System`] allocator that counts current and peak live bytes.
///
/// The counters are process-wide statics, so the type is a unit struct and its queries are
/// associated functions. Overhead: a few relaxed atomic operations per allocation.
#[derive(Debug, Clone, Copy, Default)]
pub struct CountingAlloc;

impl CountingAlloc {
    /// Returns whether this allocator is registered as `#[global_allocator]` (it has counted at
    /// least one allocation).
    pub fn is_registered() -> bool {
        COUNTERS.allocations.load(Ordering::Relaxed) > 0
    }

    /// Returns the bytes allocated and not yet freed.
    pub fn current_bytes() -> usize {
        COUNTERS.current.load(Ordering::Relaxed)
    }

    /// Returns the most bytes live at once since the last [`CountingAlloc::reset_peak`].
    pub fn peak_bytes() -> usize {
        COUNTERS.peak.load(Ordering::Relaxed)
    }

    /// Starts a new peak measurement from the bytes live now.
    pub fn reset_peak() {
        COUNTERS.reset_peak();
    }
}

// SAFETY: every method forwards to `System` with the caller's layout unchanged and only adds
// bookkeeping on atomics, which never allocates.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc(layout);
        if !ptr.is_null() {
            COUNTERS.added(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc_zeroed(layout);
        if !ptr.is_null() {
            COUNTERS.added(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        COUNTERS.removed(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = System.realloc(ptr, layout, new_size);
        if !new.is_null() {
            COUNTERS.reallocated(layout.size(), new_size);
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_tracks_the_most_bytes_live_at_once() {
        let c = Counters::new();
        c.added(100);
        c.added(50);
        c.removed(100);
        assert_eq!(c.current.load(Ordering::Relaxed), 50);
        assert_eq!(c.peak.load(Ordering::Relaxed), 150);
        // A realloc of 50 → 80 briefly holds both blocks.
        c.reallocated(50, 80);
        assert_eq!(c.current.load(Ordering::Relaxed), 80);
        assert_eq!(c.peak.load(Ordering::Relaxed), 150);
        c.reset_peak();
        assert_eq!(c.peak.load(Ordering::Relaxed), 80);
        c.added(10);
        assert_eq!(c.peak.load(Ordering::Relaxed), 90);
        assert_eq!(c.allocations.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn unregistered_in_the_test_binary() {
        // The test harness uses the system allocator, so the real counters never move.
        let _v = vec![0u8; 1 << 16];
        assert!(!CountingAlloc::is_registered());
        assert_eq!(CountingAlloc::current_bytes(), 0);
    }
}
