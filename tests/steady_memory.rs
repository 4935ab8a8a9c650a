//! A training step after the first reuses the memory the first one mapped: glibc's defaults
//! unmap freed buffers, and every step then faults its pages in again (about 44,000 page faults,
//! 130 ms of kernel time, per `medium` step on two threads before `alloc::share_one_arena`).
//! Counted from the real binary (`bench cell`, which trains one model at a time and so shares one
//! arena), because the arena limit only holds in a process that sets it before its second thread
//! allocates, which a test harness has long done.
//
// See: issue #20, "Speed, round two" (attack the serial part of the two-thread step).
#![cfg(all(target_os = "linux", target_env = "gnu"))]

mod common;

use common::{lossdiff_in, stderr, stdout};

/// Minor page faults per timed step of `preset` on `threads` threads, as `bench cell` counts them.
fn faults_per_step(preset: &str, threads: &str) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "bench",
        "cell",
        "--preset",
        preset,
        "--threads",
        threads,
        "--steps",
        "2",
        "--warmup",
        "1",
    ];
    let out = lossdiff_in(dir.path(), &args, &[("RAYON_NUM_THREADS", threads)]);
    assert!(out.status.success(), "bench cell failed:\n{}", stderr(&out));
    let line: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    line["minor_faults_per_run"]
        .as_f64()
        .unwrap_or_else(|| panic!("no fault count in {line}"))
}

#[test]
fn a_medium_step_on_two_threads_maps_no_fresh_memory_once_warm() {
    // A 4 KiB page per fault: 2,000 faults is 8 MB, half of one attention score tensor.
    let faults = faults_per_step("medium", "2");
    assert!(
        faults < 2_000.0,
        "{faults} page faults per warm medium step"
    );
}

#[test]
fn a_small_step_on_one_thread_maps_no_fresh_memory_once_warm() {
    let faults = faults_per_step("small", "1");
    assert!(faults < 500.0, "{faults} page faults per warm small step");
}
