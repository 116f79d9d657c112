//! The quick-start demo: what sigcoro does, with figures a person can read.
//!
//! `cargo run --release --example demo` runs, in a few seconds:
//! 1. a generator on a bare `Coroutine` and the cost of one switch;
//! 2. a runtime with a worker per core: 10,000 coroutines that sleep and yield, joined;
//! 3. a ping-pong between two coroutines on one worker, per handoff;
//! 4. a spawn storm: spawn + run + join per coroutine;
//! 5. preemption: coroutines spinning beside one that sleeps 1 ms at a time: with a
//!    `checkpoint()` in their loops (the default, signal-free mode), call-free inside an
//!    `unsafe preemptible` region (asynchronous preemption), call-free in the default mode (a
//!    hog, which the runtime reports), and with preemption off.

use sigcoro::coroutine::{Coroutine, CoroutineResult, Yielder};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    println!(
        "sigcoro demo on {} cores\n",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    // 1. A generator, and the switch.
    let mut fib = Coroutine::new(|y: &Yielder<(), u64>, ()| {
        let (mut a, mut b) = (0u64, 1u64);
        loop {
            y.suspend(a);
            (a, b) = (b, a + b);
        }
    });
    let first: Vec<u64> = (0..10)
        .map(|_| match fib.resume(()) {
            CoroutineResult::Yield(v) => v,
            CoroutineResult::Return(()) => unreachable!(),
        })
        .collect();
    println!("1. a Fibonacci generator on a bare coroutine yields {first:?}");
    let mut echo = Coroutine::new(|y: &Yielder<u64, u64>, mut v: u64| {
        loop {
            v = y.suspend(v + 1);
        }
    });
    let switch_ns = median(
        (0..7)
            .map(|_| {
                const N: u64 = 2_000_000;
                let t = Instant::now();
                for i in 0..N {
                    std::hint::black_box(echo.resume(i));
                }
                t.elapsed().as_nanos() as f64 / (2 * N) as f64
            })
            .collect(),
    );
    println!("   one switch (half a resume + suspend round trip): {switch_ns:.1} ns\n");

    // 2. Green threads on a runtime: the first round boots a stack per coroutine by the
    // signal-stack trick; the second reuses them from the workers' pools.
    let rt = sigcoro::Runtime::builder().build().expect("runtime");
    for round in ["cold stacks", "pooled stacks"] {
        let t = Instant::now();
        let sum = rt.block_on(|| {
            let handles: Vec<_> = (0..10_000u64)
                .map(|i| {
                    sigcoro::spawn(move || {
                        sigcoro::sleep(Duration::from_millis(10 + i % 10));
                        sigcoro::yield_now();
                        i
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
        });
        println!(
            "2. 10,000 coroutines ({round}) slept 10-19 ms each, yielded and were joined in {:.1} ms on {} workers (sum {sum})",
            t.elapsed().as_secs_f64() * 1e3,
            rt.workers()
        );
    }
    println!();
    drop(rt);

    // 3. Ping-pong on one worker.
    let one = sigcoro::Runtime::builder().workers(1).build().expect("runtime");
    let handoff_ns = median(
        (0..5)
            .map(|_| {
                one.block_on(|| {
                    const N: u64 = 1_000_000;
                    let t = Instant::now();
                    let a = sigcoro::spawn(|| (0..N).for_each(|_| sigcoro::yield_now()));
                    let b = sigcoro::spawn(|| (0..N).for_each(|_| sigcoro::yield_now()));
                    a.join().unwrap();
                    b.join().unwrap();
                    t.elapsed().as_nanos() as f64 / (2 * N) as f64
                })
            })
            .collect(),
    );
    println!("3. two coroutines passing control with yield_now on one worker: {handoff_ns:.1} ns per handoff\n");

    // 4. Spawn storm.
    let spawn_ns = median(
        (0..5)
            .map(|_| {
                one.block_on(|| {
                    const N: usize = 100_000;
                    let t = Instant::now();
                    let hs: Vec<_> = (0..N).map(|_| sigcoro::spawn(|| {})).collect();
                    hs.into_iter().for_each(|h| h.join().unwrap());
                    t.elapsed().as_nanos() as f64 / N as f64
                })
            })
            .collect(),
    );
    println!("4. spawn + run + finish + join of 100,000 empty coroutines on one worker: {spawn_ns:.0} ns each");

    // 5. Preemption.
    println!("\n5. four coroutines spin, beside one sleeping 1 ms at a time, on one worker, for 0.5 s each:");
    for spin in [Spin::Checkpoints, Spin::Region, Spin::Plain, Spin::PreemptionOff] {
        preemption_case(spin);
    }
}

/// How the spinners of part 5 spin.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Spin {
    /// A `checkpoint()` per iteration, default (safe-point) mode.
    Checkpoints,
    /// No call at all, inside `unsafe { preemptible(..) }`: asynchronous preemption.
    Region,
    /// No call at all, default mode: the spinners are hogs.
    Plain,
    /// A `checkpoint()` per iteration, but the runtime has preemption off.
    PreemptionOff,
}

fn preemption_case(spin: Spin) {
    let slice = (spin != Spin::PreemptionOff).then_some(Duration::from_millis(1));
    let rt = sigcoro::Runtime::builder()
        .workers(1)
        .preempt(slice)
        .build()
        .expect("runtime");
    let stop = Arc::new(AtomicBool::new(false));
    let spinners: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            rt.spawn(move || {
                let mut x = 1u64;
                let mut work = || {
                    while !stop.load(Ordering::Relaxed) {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                        if matches!(spin, Spin::Checkpoints | Spin::PreemptionOff) {
                            sigcoro::checkpoint();
                        }
                    }
                };
                match spin {
                    // SAFETY: arithmetic on a local and a load of an atomic: no thread-owned state.
                    Spin::Region => unsafe { sigcoro::preemptible(work) },
                    _ => work(),
                }
                std::hint::black_box(x);
            })
        })
        .collect();
    let end = Instant::now() + Duration::from_millis(500);
    let sleeper = rt.spawn(move || {
        let mut late = Vec::new();
        while Instant::now() < end {
            let t = Instant::now();
            sigcoro::sleep(Duration::from_millis(1));
            late.push(t.elapsed().saturating_sub(Duration::from_millis(1)));
        }
        late
    });
    std::thread::sleep(Duration::from_millis(600));
    stop.store(true, Ordering::Relaxed);
    let mut late = sleeper.join().unwrap();
    spinners.into_iter().for_each(|h| h.join().unwrap());
    late.sort();
    let p = |q: f64| {
        late.get(((late.len().max(1) - 1) as f64 * q) as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    let stats = rt.preemptions();
    let woke = format!(
        "the sleeper woke {} times, late by {:.2} ms (median) / {:.2} ms (p99)",
        late.len(),
        p(0.5),
        p(0.99)
    );
    match spin {
        Spin::Checkpoints => println!(
            "   default mode, a checkpoint() per iteration: {woke}; {} preemptions at safe points, {} signals sent",
            stats.at_safe_points,
            stats.signals + stats.alarms
        ),
        Spin::Region => match sigcoro::preempt::async_preemption() {
            Ok(()) => println!(
                "   no calls at all, inside unsafe preemptible(..): {woke}; {} preemptions by signal, {} deferred",
                stats.asynchronous, stats.deferred
            ),
            Err(why) => println!(
                "   no calls at all, inside unsafe preemptible(..): {woke}; asynchronous preemption is off: {why}"
            ),
        },
        Spin::Plain => {
            println!("   default mode, no calls at all: {woke}: the spinner that got the worker kept it");
            if let Some(hog) = rt.hogs().first() {
                println!("     the runtime reported it: {hog}");
            }
        }
        Spin::PreemptionOff => {
            println!("   preemption off, a checkpoint() per iteration: {woke}: checkpoints do nothing without a slice")
        }
    }
}
