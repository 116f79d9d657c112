//! Balance of CPU-bound coroutines spawned from one coroutine (issue 13's program).
//!
//! `cargo run --release --example balance [-- --workers 2 --hogs 8 --slice-us 1000 --secs 5]`
//!
//! `block_on` spawns the hogs (arithmetic loops with a `sigcoro::checkpoint()` in them) and a
//! sleeper that sleeps 1 ms in a loop, then joins them. Coroutines that have not started may go
//! to any worker, so the hogs should spread evenly before they start; once started, each stays
//! on its worker. Prints each hog's work and worker, Jain's fairness index, the min/max share,
//! and the sleeper's lateness.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn main() {
    let (mut workers, mut hogs, mut slice_us, mut secs) = (2usize, 8usize, 1000u64, 5.0f64);
    let mut argv = std::env::args().skip(1);
    while let Some(flag) = argv.next() {
        let value = argv.next().unwrap_or_default();
        match flag.as_str() {
            "--workers" => workers = value.parse().expect("--workers N"),
            "--hogs" => hogs = value.parse().expect("--hogs N"),
            "--slice-us" => slice_us = value.parse().expect("--slice-us N"),
            "--secs" => secs = value.parse().expect("--secs S"),
            other => panic!("unknown option {other}; see the doc comment at the top of the example"),
        }
    }
    let rt = sigcoro::Runtime::builder()
        .workers(workers)
        .preempt(Some(Duration::from_micros(slice_us)))
        .build()
        .expect("runtime");
    let work: Arc<Vec<AtomicU64>> = Arc::new((0..hogs).map(|_| AtomicU64::new(0)).collect());
    let w = work.clone();
    let (names, mut late) = rt.block_on(move || {
        let stop = Arc::new(AtomicBool::new(false));
        let handles: Vec<_> = (0..hogs)
            .map(|i| {
                let (stop, work) = (stop.clone(), w.clone());
                sigcoro::spawn(move || {
                    let mut x = i as u64 + 1;
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..4096 {
                            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        }
                        work[i].fetch_add(1, Ordering::Relaxed);
                        sigcoro::checkpoint();
                    }
                    std::hint::black_box(x);
                    std::thread::current().name().unwrap_or("?").to_owned()
                })
            })
            .collect();
        let sleeper = sigcoro::spawn(move || {
            let end = Instant::now() + Duration::from_secs_f64(secs);
            let mut late = Vec::new();
            while Instant::now() < end {
                let t = Instant::now();
                sigcoro::sleep(Duration::from_millis(1));
                late.push(t.elapsed().saturating_sub(Duration::from_millis(1)).as_micros() as u64);
            }
            stop.store(true, Ordering::Relaxed);
            late
        });
        let names: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        (names, sleeper.join().unwrap())
    });
    let work: Vec<u64> = work.iter().map(|w| w.load(Ordering::Relaxed)).collect();
    let total: u64 = work.iter().sum();
    let n = work.len() as f64;
    let jain = (total as f64).powi(2) / (n * work.iter().map(|&w| (w as f64).powi(2)).sum::<f64>()).max(1.0);
    let (min, max) = (*work.iter().min().unwrap(), *work.iter().max().unwrap());
    println!("{workers} workers, {hogs} hogs with checkpoint(), {slice_us} us slice, {secs} s:");
    for (i, (w, name)) in work.iter().zip(&names).enumerate() {
        println!("  hog {i}: {:8.3} M blocks on {name}", *w as f64 / 1e6);
    }
    late.sort_unstable();
    let pct = |p: f64| late.get(((late.len() as f64 * p) as usize).min(late.len().saturating_sub(1)));
    println!(
        "  Jain {jain:.4}, min/max {:.3}; sleeper: {} wake-ups, lateness p50 {:?} us, p99 {:?} us",
        min as f64 / max.max(1) as f64,
        late.len(),
        pct(0.5),
        pct(0.99)
    );
}
