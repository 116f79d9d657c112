//! Criterion benches of preemption: what a safe point costs, and what preemption costs CPU-bound
//! coroutines. `cargo bench --bench preempt`; `examples/preemption.rs` shows what it buys.

use criterion::{Criterion, criterion_group, criterion_main};
use sigcoro::Runtime;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// One `checkpoint()` inside a coroutine, with nothing pending: a thread-local load and a branch.
fn checkpoint_cost(c: &mut Criterion) {
    let rt = Runtime::builder().workers(1).preempt(None).build().expect("runtime");
    c.bench_function("preempt/checkpoint", |b| {
        b.iter_custom(|iters| {
            rt.block_on(move || {
                let start = Instant::now();
                for i in 0..iters {
                    sigcoro::checkpoint();
                    black_box(i);
                }
                start.elapsed()
            })
        })
    });
}

/// 8 CPU-bound coroutines on 2 workers share a fixed amount of arithmetic; one iteration is one
/// block of 4096 multiply-adds. Compare the per-block time with preemption off, at 1 ms and at
/// 100 us slices.
fn hog_throughput(c: &mut Criterion) {
    let mut g = c.benchmark_group("preempt/hogs");
    g.sample_size(10).measurement_time(Duration::from_secs(4));
    for (name, slice) in [
        ("off", None),
        ("slice_1ms", Some(Duration::from_millis(1))),
        ("slice_100us", Some(Duration::from_micros(100))),
    ] {
        let rt = Runtime::builder().workers(2).preempt(slice).build().expect("runtime");
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let per_hog = iters.div_ceil(8);
                let start = Instant::now();
                let hogs: Vec<_> = (0..8u64)
                    .map(|i| {
                        rt.spawn(move || {
                            let mut x = i + 1;
                            for _ in 0..per_hog {
                                for _ in 0..4096 {
                                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                                }
                            }
                            black_box(x);
                        })
                    })
                    .collect();
                hogs.into_iter().for_each(|h| h.join().unwrap());
                start.elapsed()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, checkpoint_cost, hog_throughput);
criterion_main!(benches);
