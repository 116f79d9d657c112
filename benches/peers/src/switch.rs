//! `switch`: one-way context switch, measured as half of a resume+suspend round trip.
//!
//! - corosensei: `Coroutine::resume` / `Yielder::suspend`.
//! - generator: `Generator::resume` / `Scope::yield_`.
//! - may: it offers no raw switch between two coroutines of its own (its raw switch *is*
//!   generator's). The closest is `yield_now` with a single coroutine on a one-worker runtime:
//!   coroutine -> worker's scheduler loop (re-queue) -> coroutine. Half of that is reported, so it
//!   includes may's scheduler bookkeeping, not just the register swap.
//! - glibc `_setjmp`/`_longjmp` and `swapcontext`: see [`crate::glibc`].

use crate::glibc;
use crate::harness::{bench, Stats};
use crate::may_rt;
use corosensei::Coroutine;
use generator::Gn;
use std::hint::black_box;
use std::time::Instant;

pub fn run(reps: usize, out: &mut dyn FnMut(&str, &str, Stats, &str)) {
    let mut co: Coroutine<u64, u64, ()> = Coroutine::new(|y, mut x| loop {
        x = y.suspend(x + 1);
    });
    let s = bench(reps, 2.0, |n| {
        let t = Instant::now();
        for i in 0..n {
            black_box(co.resume(black_box(i)));
        }
        t.elapsed()
    });
    out("corosensei", "switch", s, "resume+suspend / 2");

    let mut co = sigcoro::coroutine::Coroutine::new(|y: &sigcoro::coroutine::Yielder<u64, u64>, mut x: u64| loop {
        x = y.suspend(x + 1);
    });
    let s = bench(reps, 2.0, |n| {
        let t = Instant::now();
        for i in 0..n {
            black_box(co.resume(black_box(i)));
        }
        t.elapsed()
    });
    out("sigcoro", "switch", s, "resume+suspend / 2");

    let mut g = Gn::<u64>::new_scoped(|mut s| loop {
        black_box(s.yield_(1u64));
    });
    let s = bench(reps, 2.0, |n| {
        let t = Instant::now();
        for i in 0..n {
            black_box(g.send(black_box(i)));
        }
        t.elapsed()
    });
    out("generator", "switch", s, "send+yield_ / 2");

    let s = bench(reps, 2.0, |n| {
        may_rt::in_coroutine(move || {
            let t = Instant::now();
            for _ in 0..n {
                may::coroutine::yield_now();
            }
            t.elapsed()
        })
    });
    out(
        "may",
        "switch",
        s,
        "yield_now, 1 coroutine: co->scheduler->co / 2",
    );

    let s = bench(reps, 2.0, glibc::sjlj_round_trips);
    out(
        "glibc-sjlj",
        "switch",
        s,
        "_setjmp+_longjmp each way, asm loop / 2",
    );

    let s = bench(reps, 2.0, glibc::swapcontext_round_trips);
    out(
        "glibc-ucontext",
        "switch",
        s,
        "swapcontext there and back / 2",
    );
}
