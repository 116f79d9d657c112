//! A spawn storm: spawn 100,000 empty coroutines on one worker, then join them all.
//!
//! `cargo run --release --example spawn_storm` prints the cost of one spawn + run + finish +
//! join: for a storm (all spawned first, then joined in order), one at a time, and for a storm
//! on a runtime with a worker per core. Each figure is the median of several runs.

use std::time::Instant;

/// Median nanoseconds per coroutine over `runs` runs of `round` (which returns its elapsed ns).
fn median(rt: &sigcoro::Runtime, runs: usize, n: usize, round: fn(usize) -> f64) -> f64 {
    let mut v: Vec<f64> = (0..runs).map(|_| rt.block_on(move || round(n))).collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// All `n` spawned, then all joined.
fn storm(n: usize) -> f64 {
    let start = Instant::now();
    let handles: Vec<_> = (0..n).map(|_| sigcoro::spawn(|| {})).collect();
    handles.into_iter().for_each(|h| h.join().unwrap());
    start.elapsed().as_nanos() as f64 / n as f64
}

/// Each spawned and joined before the next.
fn one_at_a_time(n: usize) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        sigcoro::spawn(|| {}).join().unwrap();
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

fn main() {
    let n = 100_000;
    let one = sigcoro::Runtime::builder().workers(1).build().expect("runtime");
    println!("spawn + run + finish + join of {n} empty coroutines (median of 9 runs):");
    println!(
        "  1 worker, storm        : {:7.1} ns per coroutine",
        median(&one, 9, n, storm)
    );
    println!(
        "  1 worker, one at a time: {:7.1} ns per coroutine",
        median(&one, 9, n, one_at_a_time)
    );
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let all = sigcoro::Runtime::builder().workers(cores).build().expect("runtime");
    println!(
        "  {cores} workers, storm       : {:7.1} ns per coroutine",
        median(&all, 9, n, storm)
    );
}
