//! A spawn storm: spawn 100,000 empty coroutines on one worker, then join them all.
//!
//! `cargo run --release --example spawn_storm` prints the cost of one spawn + run + finish +
//! join: for a storm (all spawned first, then joined in order), one at a time, and for a storm
//! on a runtime with a worker per core. Each figure is the median of several runs. Then it
//! shows spawned work spreading over the workers: CPU-bound coroutines spawned from one
//! coroutine while the other workers idle, timed against their total CPU time.

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
    spread(&all, cores);
}

/// Spawns `2 * cores` coroutines of ~50 ms of arithmetic each from one coroutine, with the
/// other workers idle, and prints how long they took against their total work.
fn spread(rt: &sigcoro::Runtime, cores: usize) {
    fn work(iters: u64) -> u64 {
        (0..iters).fold(1u64, |x, i| {
            std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i))
        })
    }
    let probe = Instant::now();
    work(20_000_000);
    let iters = (20_000_000.0 * 0.05 / probe.elapsed().as_secs_f64()) as u64;
    let tasks = 2 * cores;
    let mut took: Vec<f64> = (0..3)
        .map(|_| {
            rt.block_on(move || {
                sigcoro::sleep(std::time::Duration::from_millis(20)); // the others fall idle
                let start = Instant::now();
                let handles: Vec<_> = (0..tasks).map(|_| sigcoro::spawn(move || work(iters))).collect();
                handles.into_iter().for_each(|h| {
                    std::hint::black_box(h.join().unwrap());
                });
                start.elapsed().as_secs_f64() * 1e3
            })
        })
        .collect();
    took.sort_by(f64::total_cmp);
    println!(
        "{tasks} coroutines of ~50 ms arithmetic spawned from one coroutine on {cores} workers: {:.0} ms \
         (median of 3; {:.0} ms with every worker busy, {:.0} ms on one)",
        took[1],
        tasks as f64 * 50.0 / cores as f64,
        tasks as f64 * 50.0
    );
}
