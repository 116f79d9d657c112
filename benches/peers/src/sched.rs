//! Scheduler workloads on one worker thread: may (`set_workers(1)`) against tokio's
//! current-thread runtime (`enable_all`, run on the pinned main thread).
//!
//! - `handoff`: two coroutines/tasks each yielding `n` times; per handoff = time / 2n.
//! - `spawn`: spawn + run + finish + join of 100,000 empty tasks, per task. may cannot hold
//!   100,000 coroutines at once under the default `vm.max_map_count` (2 mappings per stack,
//!   ~32.7k), so it spawns in waves of 10,000 (spawn the wave, then join it), and also in waves
//!   of 1,000, which its stack pool (capacity 1000) covers; tokio is shown both with all
//!   100,000 in flight and in waves of 10,000.
//! - `chan`: a u64 ping-ponged between two coroutines/tasks over two unbounded channels;
//!   per one-way hop = time / 2n.

use crate::harness::{bench, bench_fixed, Stats};
use crate::may_rt;
use std::hint::black_box;
use std::time::{Duration, Instant};
use tokio::runtime::{Builder, Runtime};

pub const SPAWN_TASKS: u64 = 100_000;
pub const SPAWN_WAVE: u64 = 10_000;

fn tokio_rt() -> Runtime {
    Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Two tasks on `rt` each awaiting `yield_now` `n` times: the time of the whole exchange.
pub fn tokio_yield_handoffs(rt: &Runtime, n: u64) -> std::time::Duration {
    rt.block_on(async move {
        let t = Instant::now();
        let yielder = move || async move {
            for _ in 0..n {
                tokio::task::yield_now().await;
            }
        };
        let (a, b) = (tokio::spawn(yielder()), tokio::spawn(yielder()));
        a.await.unwrap();
        b.await.unwrap();
        t.elapsed()
    })
}

pub fn handoff(reps: usize, out: &mut dyn FnMut(&str, &str, Stats, &str)) {
    let s = bench(reps, 2.0, |n| {
        may_rt::timed(move || {
            let yielder = move || (0..n).for_each(|_| may::coroutine::yield_now());
            let (a, b) = (may_rt::spawn(yielder), may_rt::spawn(yielder));
            a.join().unwrap();
            b.join().unwrap();
        })
    });
    out("may", "handoff", s, "2 coroutines, yield_now");

    let rt = tokio_rt();
    let s = bench(reps, 2.0, |n| tokio_yield_handoffs(&rt, n));
    out("tokio", "handoff", s, "2 tasks, yield_now");
}

pub fn spawn(reps: usize, out: &mut dyn FnMut(&str, &str, Stats, &str)) {
    for (peer, wave, note) in [
        ("may", SPAWN_WAVE, "100k in waves of 10k (map-count limit)"),
        ("may-waves1k", 1_000, "100k in waves of 1k (= may's stack pool)"),
    ] {
        let run = move |total: u64| {
            may_rt::timed(move || {
                let mut left = total;
                while left > 0 {
                    let w = left.min(wave);
                    let hs: Vec<_> = (0..w).map(|i| may_rt::spawn(move || black_box(i))).collect();
                    hs.into_iter().for_each(|h| {
                        black_box(h.join().unwrap());
                    });
                    left -= w;
                }
            })
        };
        run(SPAWN_TASKS); // warm-up
        out(peer, "spawn", bench_fixed(reps, SPAWN_TASKS, 1.0, run), note);
    }

    let rt = tokio_rt();
    for (peer, wave, note) in [
        ("tokio", SPAWN_TASKS, "100k in flight"),
        ("tokio-waves", SPAWN_WAVE, "100k in waves of 10k, as may"),
    ] {
        let run = |total: u64| -> Duration {
            rt.block_on(async move {
                let t = Instant::now();
                let mut left = total;
                while left > 0 {
                    let w = left.min(wave);
                    let hs: Vec<_> = (0..w).map(|i| tokio::spawn(async move { black_box(i) })).collect();
                    for h in hs {
                        black_box(h.await.unwrap());
                    }
                    left -= w;
                }
                t.elapsed()
            })
        };
        run(SPAWN_TASKS); // warm-up
        out(peer, "spawn", bench_fixed(reps, SPAWN_TASKS, 1.0, run), note);
    }
}

pub fn chan(reps: usize, out: &mut dyn FnMut(&str, &str, Stats, &str)) {
    let s = bench(reps, 2.0, |n| {
        may_rt::timed(move || {
            use may::sync::mpsc::channel;
            let ((tx1, rx1), (tx2, rx2)) = (channel::<u64>(), channel::<u64>());
            let echo = may_rt::spawn(move || (0..n).for_each(|_| tx2.send(rx1.recv().unwrap() + 1).unwrap()));
            let ping = may_rt::spawn(move || {
                (0..n).for_each(|i| {
                    tx1.send(i).unwrap();
                    black_box(rx2.recv().unwrap());
                })
            });
            ping.join().unwrap();
            echo.join().unwrap();
        })
    });
    out("may", "chan", s, "may::sync::mpsc::channel ping-pong / 2");

    let rt = tokio_rt();
    let s = bench(reps, 2.0, |n| {
        rt.block_on(async move {
            use tokio::sync::mpsc::unbounded_channel;
            let t = Instant::now();
            let ((tx1, mut rx1), (tx2, mut rx2)) = (unbounded_channel::<u64>(), unbounded_channel::<u64>());
            let echo = tokio::spawn(async move {
                for _ in 0..n {
                    tx2.send(rx1.recv().await.unwrap() + 1).unwrap();
                }
            });
            let ping = tokio::spawn(async move {
                for i in 0..n {
                    tx1.send(i).unwrap();
                    black_box(rx2.recv().await.unwrap());
                }
            });
            ping.await.unwrap();
            echo.await.unwrap();
            t.elapsed()
        })
    });
    out("tokio", "chan", s, "tokio::sync::mpsc::unbounded_channel ping-pong / 2");
}
