//! Spin loops without calls or safe points: only preemption (or another thread setting the
//! flag they watch) gets their coroutine off the CPU.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Spins until `stop`, counting blocks of arithmetic in `work`.
pub fn spin(stop: &AtomicBool, work: &AtomicU64) {
    let mut x = 1u64;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..2048 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        }
        work.fetch_add(1, Ordering::Relaxed);
    }
    black_box(x);
}

/// Spins until `stop`, doing nothing else.
pub fn spin_until(stop: &AtomicBool) {
    let mut spins = 0u64;
    while !stop.load(Ordering::Relaxed) {
        spins = black_box(spins + 1);
    }
}

/// A chunk of arithmetic a coroutine repeats between safe points (tens of microseconds).
pub fn chunk(x: u64) -> u64 {
    chunk_of(x, 20_000)
}

/// `steps` steps of the same arithmetic.
pub fn chunk_of(x: u64, steps: u32) -> u64 {
    let mut x = x;
    for _ in 0..steps {
        x = black_box(x)
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
    }
    x
}
