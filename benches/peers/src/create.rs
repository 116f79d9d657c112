//! `create`: create a coroutine, run it to completion, drop it (per coroutine).
//!
//! - corosensei with a fresh `DefaultStack` (1 MiB mmap + guard, munmap on drop) each time,
//!   and with one stack reused (`Coroutine::with_stack`, then `into_stack` when done).
//! - generator: `Gn::new_scoped` (fresh 32 KiB mmap'd stack each time).
//! - may: spawn + join of an empty coroutine from inside a coroutine on the one worker
//!   (may takes the coroutine and its stack from its own pool of 1000).

use crate::harness::{bench, Stats};
use crate::may_rt;
use corosensei::stack::DefaultStack;
use corosensei::Coroutine;
use generator::Gn;
use std::hint::black_box;
use std::time::Instant;

pub fn run(reps: usize, out: &mut dyn FnMut(&str, &str, Stats, &str)) {
    let s = bench(reps, 1.0, |n| {
        let t = Instant::now();
        for i in 0..n {
            let mut co: Coroutine<(), (), u64> = Coroutine::new(move |_, ()| black_box(i));
            black_box(co.resume(()));
        }
        t.elapsed()
    });
    out("corosensei", "create", s, "fresh DefaultStack (1 MiB) each");

    let mut stack = Some(DefaultStack::default());
    let s = bench(reps, 1.0, |n| {
        let t = Instant::now();
        for i in 0..n {
            let st = stack.take().unwrap();
            let mut co: Coroutine<(), (), u64, _> =
                Coroutine::with_stack(st, move |_, ()| black_box(i));
            black_box(co.resume(()));
            stack = Some(co.into_stack());
        }
        t.elapsed()
    });
    out(
        "corosensei-reuse",
        "create",
        s,
        "one DefaultStack, with_stack + into_stack",
    );

    let s = bench(reps, 1.0, |n| {
        let t = Instant::now();
        for i in 0..n {
            let mut g = Gn::<()>::new_scoped(move |_| black_box(i));
            black_box(g.resume());
        }
        t.elapsed()
    });
    out(
        "generator",
        "create",
        s,
        "Gn::new_scoped, fresh 32 KiB stack each",
    );

    let s = bench(reps, 1.0, |n| {
        may_rt::timed(move || {
            for i in 0..n {
                black_box(may_rt::spawn(move || black_box(i)).join().unwrap());
            }
        })
    });
    out(
        "may",
        "create",
        s,
        "spawn+join from a coroutine, pooled stacks",
    );
}
