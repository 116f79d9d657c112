//! A small timing harness (no criterion): calibrate an iteration count so one repetition
//! lasts ~30 ms, warm up, repeat, and report the median and spread in ns per operation.
//!
//! A workload is a closure `run(n) -> Duration` that performs `n` iterations and returns the
//! time they took. Measuring inside the closure lets a workload time only its hot loop (for
//! example inside a coroutine on a runtime's worker thread) and leave setup out.

use std::time::{Duration, Instant};

/// Time one repetition should last.
const TARGET: Duration = Duration::from_millis(30);

/// Summary of the repetitions, in ns per operation: the lab's own type, so both report alike.
pub use crate::lab::harness::Stats;

/// Calibrates `n` so that `run(n)` lasts about [`TARGET`], runs one warm-up repetition, then
/// `reps` measured ones. `ops` is how many reported operations one iteration holds (2 when an
/// iteration is a round trip and the figure wanted is one way).
pub fn bench(reps: usize, ops: f64, mut run: impl FnMut(u64) -> Duration) -> Stats {
    let mut n = 1u64;
    loop {
        let d = run(n);
        if d >= TARGET / 4 {
            let scale = TARGET.as_secs_f64() / d.as_secs_f64();
            n = ((n as f64 * scale) as u64).max(1);
            break;
        }
        n *= if d < Duration::from_micros(100) { 16 } else { 4 };
    }
    run(n); // warm-up at the final size
    bench_fixed(reps, n, ops, run)
}

/// Like [`bench`] but with a fixed iteration count and no calibration or warm-up
/// (the caller warms up when it matters).
pub fn bench_fixed(reps: usize, n: u64, ops: f64, mut run: impl FnMut(u64) -> Duration) -> Stats {
    let samples = (0..reps).map(|_| run(n).as_nanos() as f64 / (n as f64 * ops)).collect();
    Stats::from_samples(samples, n)
}

/// Times `f`.
pub fn timed(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

/// Pins the calling thread to CPU 0. Threads it spawns afterwards inherit the mask.
pub fn pin_to_cpu0() -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; the pointer is to a live local.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
