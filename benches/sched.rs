//! Criterion benches of the scheduler: yield handoff (hot, and around a ring of 4,096 cold
//! stacks), spawn + join, channel ping-pong, and a wake across workers. `cargo bench --bench
//! sched`; `examples/ping_pong.rs` and `examples/spawn_storm.rs` print the same figures in
//! plain words.

use criterion::{Criterion, criterion_group, criterion_main};
use sigcoro::GreenThread;
use sigcoro::Runtime;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Instant;

fn one_worker() -> Runtime {
    Runtime::builder().workers(1).build().expect("runtime")
}

/// Two coroutines on one worker, each yielding `iters` times: one iteration is one handoff.
fn yield_handoff(c: &mut Criterion) {
    let rt = one_worker();
    c.bench_function("sched/yield_handoff", |b| {
        b.iter_custom(|iters| {
            rt.block_on(move || {
                let start = Instant::now();
                let half = iters.div_ceil(2);
                let a = sigcoro::spawn(move || (0..half).for_each(|_| sigcoro::yield_now()));
                let b = sigcoro::spawn(move || (0..half).for_each(|_| sigcoro::yield_now()));
                a.join().unwrap();
                b.join().unwrap();
                start.elapsed()
            })
        })
    });
}

/// 4,096 coroutines on one worker yielding in turn, each touching a frame of its own between
/// yields: one iteration is one handoff into a coroutine that ran 4,096 switches ago, whose
/// stack lines (and page) the caches no longer hold, as with a server's connections.
fn yield_ring(c: &mut Criterion) {
    const RING: u64 = 4096;
    let rt = one_worker();
    c.bench_function("sched/yield_ring_4096", |b| {
        b.iter_custom(|iters| {
            rt.block_on(move || {
                let rounds = iters.div_ceil(RING);
                let ring: Vec<_> = (0..RING)
                    .map(|i| {
                        sigcoro::spawn(move || {
                            let mut frame = [i; 8];
                            sigcoro::yield_now(); // everyone started before the clock runs
                            for r in 0..rounds {
                                frame[(r % 8) as usize] += 1;
                                std::hint::black_box(&mut frame);
                                sigcoro::yield_now();
                            }
                        })
                    })
                    .collect();
                sigcoro::yield_now();
                let start = Instant::now();
                ring.into_iter().for_each(|h| h.join().unwrap());
                // Per handoff: the rounds ran `rounds * RING` of them, reported for `iters`.
                start.elapsed().mul_f64(iters as f64 / (rounds * RING) as f64)
            })
        })
    });
}

/// Spawn empty coroutines on one worker in storms of up to 100,000, joining each storm before
/// the next (the measure; criterion's larger counts would otherwise measure storms of
/// millions, whose task records no cache holds): one iteration is one spawn + run + finish +
/// join.
fn spawn_join(c: &mut Criterion) {
    const STORM: u64 = 100_000;
    let rt = one_worker();
    c.bench_function("sched/spawn_join", |b| {
        b.iter_custom(|iters| {
            rt.block_on(move || {
                let start = Instant::now();
                let mut left = iters;
                while left > 0 {
                    let n = left.min(STORM);
                    let handles: Vec<_> = (0..n).map(|_| sigcoro::spawn(|| {})).collect();
                    handles.into_iter().for_each(|h| h.join().unwrap());
                    left -= n;
                }
                start.elapsed()
            })
        })
    });
}

/// A u64 ping-ponged between two coroutines on one worker over unbounded channels: one
/// iteration is one hop (a send and the receive it wakes).
fn channel_ping_pong(c: &mut Criterion) {
    let rt = one_worker();
    c.bench_function("sched/channel_ping_pong", |b| {
        b.iter_custom(|iters| {
            rt.block_on(move || {
                let rounds = iters.div_ceil(2);
                let (to_pong, pong_rx) = sigcoro::sync::channel::unbounded::<u64>();
                let (to_ping, ping_rx) = sigcoro::sync::channel::unbounded::<u64>();
                let pong = sigcoro::spawn(move || {
                    for v in pong_rx.iter() {
                        to_ping.send(v + 1).unwrap();
                    }
                });
                let start = Instant::now();
                let mut v = 0u64;
                for _ in 0..rounds {
                    to_pong.send(v).unwrap();
                    v = ping_rx.recv().unwrap();
                }
                let elapsed = start.elapsed();
                drop(to_pong);
                pong.join().unwrap();
                assert_eq!(v, rounds);
                elapsed
            })
        })
    });
}

/// Two coroutines on two workers waking each other with park/unpark: one iteration is one
/// cross-worker wake (half a round trip). Spawned from outside, they go to the two workers in
/// turn.
fn cross_worker_wake(c: &mut Criterion) {
    let rt = Runtime::builder().workers(2).build().expect("runtime");
    c.bench_function("sched/cross_worker_wake", |b| {
        b.iter_custom(|iters| {
            let rounds = iters.div_ceil(2);
            let state = Arc::new(AtomicU64::new(0));
            let (to_ping, from_pong) = mpsc::channel::<GreenThread>();
            let (to_pong, from_ping) = mpsc::channel::<GreenThread>();
            let s = state.clone();
            let pong = rt.spawn(move || {
                to_ping.send(sigcoro::current()).unwrap();
                let ping = from_ping.recv().unwrap();
                for i in 0..rounds {
                    while s.load(Ordering::Acquire) != 2 * i + 1 {
                        sigcoro::park();
                    }
                    s.store(2 * i + 2, Ordering::Release);
                    ping.unpark();
                }
            });
            let ping = rt.spawn(move || {
                to_pong.send(sigcoro::current()).unwrap();
                let pong = from_pong.recv().unwrap();
                let start = Instant::now();
                for i in 0..rounds {
                    state.store(2 * i + 1, Ordering::Release);
                    pong.unpark();
                    while state.load(Ordering::Acquire) != 2 * i + 2 {
                        sigcoro::park();
                    }
                }
                start.elapsed()
            });
            pong.join().unwrap();
            ping.join().unwrap()
        })
    });
}

criterion_group!(
    benches,
    yield_handoff,
    yield_ring,
    spawn_join,
    channel_ping_pong,
    cross_worker_wake
);
criterion_main!(benches);
