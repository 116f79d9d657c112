//! Makespan of CPU-bound coroutines of uneven length, pinned or migratable (issue 13, item 2).
//!
//! `cargo run --release --example makespan [-- --workers 2 --hogs 16 --min-ms 20 --max-ms 200
//! --rounds 5 --slice-us 1000]`
//!
//! Each round draws the hogs' lengths at random between `--min-ms` and `--max-ms` of work
//! (calibrated on this thread first) and runs them twice on a fresh runtime: pinned (the
//! default) and spawned with `Builder::migratable`. `block_on` spawns them all and joins them;
//! each hog is a loop of arithmetic chunks with a `sigcoro::checkpoint()` between them and
//! times its own chunks. Prints, per round and mode, the makespan (spawn of the first to join
//! of the last), the total work (the sum of the chunks' times), and their ratio to total work
//! divided by the number of workers (1.00 is a perfect split); then the medians.

use std::sync::Arc;
use std::time::{Duration, Instant};

/// A chunk of work between safe points (tens of microseconds).
fn chunk(x: u64) -> u64 {
    let mut x = x;
    for _ in 0..20_000 {
        x = std::hint::black_box(x)
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
    }
    x
}

/// How many chunks this thread runs per millisecond.
fn calibrate() -> f64 {
    let mut x = 1;
    for _ in 0..200 {
        x = chunk(x); // warm up
    }
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed() < Duration::from_millis(100) {
        x = chunk(x);
        n += 1;
    }
    std::hint::black_box(x);
    n as f64 / t.elapsed().as_secs_f64() / 1000.0
}

/// xorshift64*, for reproducible lengths.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// Runs hogs of `chunks` each on a fresh runtime; returns the makespan and the total work.
fn run(workers: usize, slice: Duration, chunks: &[u64], migratable: bool) -> (Duration, Duration) {
    let rt = sigcoro::Runtime::builder()
        .workers(workers)
        .preempt(Some(slice))
        .build()
        .expect("runtime");
    let chunks: Arc<Vec<u64>> = Arc::new(chunks.to_vec());
    rt.block_on(move || {
        let start = Instant::now();
        let handles: Vec<_> = (0..chunks.len())
            .map(|i| {
                let chunks = chunks.clone();
                let b = if migratable {
                    // SAFETY: the hogs keep no per-thread state: arithmetic and `Instant`.
                    unsafe { sigcoro::Builder::new().migratable() }
                } else {
                    sigcoro::Builder::new()
                };
                b.spawn(move || {
                    let mut x = i as u64 + 1;
                    let mut work = Duration::ZERO;
                    for _ in 0..chunks[i] {
                        let t = Instant::now();
                        x = chunk(x);
                        work += t.elapsed();
                        sigcoro::checkpoint();
                    }
                    std::hint::black_box(x);
                    work
                })
                .expect("spawn")
            })
            .collect();
        let work: Duration = handles.into_iter().map(|h| h.join().unwrap()).sum();
        (start.elapsed(), work)
    })
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let (mut workers, mut hogs, mut min_ms, mut max_ms, mut rounds, mut slice_us) =
        (2usize, 16usize, 20u64, 200u64, 5usize, 1000u64);
    let mut argv = std::env::args().skip(1);
    while let Some(flag) = argv.next() {
        let value = argv.next().unwrap_or_default();
        match flag.as_str() {
            "--workers" => workers = value.parse().expect("--workers N"),
            "--hogs" => hogs = value.parse().expect("--hogs N"),
            "--min-ms" => min_ms = value.parse().expect("--min-ms N"),
            "--max-ms" => max_ms = value.parse().expect("--max-ms N"),
            "--rounds" => rounds = value.parse().expect("--rounds N"),
            "--slice-us" => slice_us = value.parse().expect("--slice-us N"),
            other => panic!("unknown option {other}; see the doc comment at the top of the example"),
        }
    }
    let per_ms = calibrate();
    println!(
        "{hogs} hogs of {min_ms}-{max_ms} ms on {workers} workers, {slice_us} us slice, {rounds} rounds \
         ({per_ms:.1} chunks per ms here)"
    );
    let slice = Duration::from_micros(slice_us);
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut ratios = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        let chunks: Vec<u64> = (0..hogs)
            .map(|_| {
                let ms = min_ms + next(&mut state) % (max_ms - min_ms + 1);
                (ms as f64 * per_ms).round().max(1.0) as u64
            })
            .collect();
        for (mode, migratable) in [(0, false), (1, true)] {
            let (makespan, work) = run(workers, slice, &chunks, migratable);
            let ideal = work.as_secs_f64() / workers as f64;
            let ratio = makespan.as_secs_f64() / ideal;
            ratios[mode].push(ratio);
            println!(
                "  round {round} {:10}: makespan {:7.1} ms, work {:7.1} ms, makespan / (work / {workers}) = {ratio:.3}",
                if migratable { "migratable" } else { "pinned" },
                makespan.as_secs_f64() * 1e3,
                work.as_secs_f64() * 1e3,
            );
        }
    }
    let [mut pinned, mut migratable] = ratios;
    println!(
        "median makespan / (work / {workers}): pinned {:.3}, migratable {:.3}",
        median(&mut pinned),
        median(&mut migratable)
    );
}
