//! A spawn storm: spawn 100,000 empty coroutines on one worker, then join them all.
//!
//! `cargo run --release --example spawn_storm` prints the cost of one spawn + run + finish +
//! join, and the same for a runtime with a worker per core.

use std::time::Instant;

fn storm(workers: usize, n: usize) -> f64 {
    let rt = sigcoro::Runtime::builder().workers(workers).build().expect("runtime");
    let mut runs: Vec<f64> = (0..7)
        .map(|_| {
            rt.block_on(move || {
                let start = Instant::now();
                let handles: Vec<_> = (0..n).map(|_| sigcoro::spawn(|| {})).collect();
                handles.into_iter().for_each(|h| h.join().unwrap());
                start.elapsed().as_nanos() as f64 / n as f64
            })
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[runs.len() / 2]
}

fn main() {
    let n = 100_000;
    println!("spawn + run + finish + join of {n} empty coroutines (median of 7 runs):");
    println!("  1 worker : {:7.1} ns per coroutine", storm(1, n));
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    println!("  {cores} workers: {:7.1} ns per coroutine", storm(cores, n));
}
