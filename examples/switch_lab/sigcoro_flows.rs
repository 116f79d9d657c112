//! sigcoro's own ways to pass control: the switch (bare, and with the signal mask saved and
//! restored as `sigsetjmp(.., 1)` would), the scheduler's handoffs, and creating a context.

use crate::harness::{self, Stats};
use sigcoro::coroutine::{Coroutine, CoroutineResult, Yielder};
use std::hint::black_box;
use std::time::Instant;

/// A coroutine that answers every resume with its input plus one, forever.
fn echo_plus_one() -> Coroutine<u64, u64, ()> {
    Coroutine::new(|y, mut v| {
        loop {
            v = y.suspend(v + 1);
        }
    })
}

fn yielded(r: CoroutineResult<u64, ()>) -> u64 {
    match r {
        CoroutineResult::Yield(v) => v,
        CoroutineResult::Return(()) => unreachable!("the coroutine loops forever"),
    }
}

/// One-way switch: half of a `resume` + `suspend` round trip carrying a `u64`.
pub fn switch(reps: usize) -> Stats {
    let mut co = echo_plus_one();
    harness::bench(reps, 2.0, |n| harness::round_trips(n, |v| yielded(co.resume(v))))
}

/// The thread's signal mask now.
fn mask_now() -> libc::sigset_t {
    // SAFETY: a zeroed sigset_t is a valid (empty) set; with a null new set, pthread_sigmask
    // only writes the current mask into the local we pass.
    unsafe {
        let mut m: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut m);
        m
    }
}

/// What `sigsetjmp(env, 1)` does to the mask: reads it into `env` (one `rt_sigprocmask`).
#[inline(always)]
fn save_mask(into: &mut libc::sigset_t) {
    // SAFETY: a null new set makes this a read of the current mask into `into`.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), into) };
}

/// What `siglongjmp` does to the mask: sets the one `env` saved (one `rt_sigprocmask`).
#[inline(always)]
fn restore_mask(from: &libc::sigset_t) {
    // SAFETY: `from` is a mask read from this thread, so setting it changes nothing but costs
    // the same syscall.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, from, std::ptr::null_mut()) };
}

/// One `rt_sigprocmask` that sets the arriving side's mask and saves the leaving side's.
#[inline(always)]
fn swap_mask(set: &libc::sigset_t, save: &mut libc::sigset_t) {
    // SAFETY: `set` is the thread's own mask (see `restore_mask`); `save` is a live local.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, set, save) };
}

/// The switch with a per-context signal mask kept the way `sigsetjmp(.., 1)`/`siglongjmp`
/// keep it: the leaving side saves its mask, the arriving side's mask is restored; two
/// `rt_sigprocmask` calls per one-way switch.
pub fn switch_sigsetjmp_style(reps: usize) -> Stats {
    let mut co: Coroutine<u64, u64, ()> = Coroutine::new(|y, mut v| {
        let mut mine = mask_now();
        loop {
            save_mask(&mut mine);
            v = y.suspend(v + 1);
            restore_mask(&mine);
        }
    });
    let mut main_mask = mask_now();
    harness::bench(reps, 2.0, |n| {
        harness::round_trips(n, |v| {
            save_mask(&mut main_mask);
            let r = yielded(co.resume(v));
            restore_mask(&main_mask);
            r
        })
    })
}

/// The switch with a per-context signal mask at the least cost: one `SIG_SETMASK` that also
/// returns the old mask, per one-way switch (what `swapcontext` does too).
pub fn switch_mask_swap(reps: usize) -> Stats {
    let target = mask_now();
    let mut co: Coroutine<u64, u64, ()> = Coroutine::new(move |y, mut v| {
        let mut mine = target;
        loop {
            swap_mask(&target, &mut mine);
            v = y.suspend(v + 1);
        }
    });
    let mut main_mask = target;
    harness::bench(reps, 2.0, |n| {
        harness::round_trips(n, |v| {
            swap_mask(&target, &mut main_mask);
            yielded(co.resume(v))
        })
    })
}

/// Two coroutines on one worker, each yielding `n` times: one operation is one handoff.
pub fn yield_handoff(rt: &sigcoro::Runtime, reps: usize) -> Stats {
    harness::bench(reps, 2.0, |n| {
        rt.block_on(move || {
            let t = Instant::now();
            let a = sigcoro::spawn(move || (0..n).for_each(|_| sigcoro::yield_now()));
            let b = sigcoro::spawn(move || (0..n).for_each(|_| sigcoro::yield_now()));
            a.join().expect("yielder a");
            b.join().expect("yielder b");
            t.elapsed()
        })
    })
}

/// A `u64` ping-ponged between two coroutines on one worker over two unbounded channels: one
/// operation is one hop (a send, and the receive it wakes).
pub fn channel_hop(rt: &sigcoro::Runtime, reps: usize) -> Stats {
    harness::bench(reps, 2.0, |n| {
        rt.block_on(move || {
            let (to_pong, pong_rx) = sigcoro::sync::channel::unbounded::<u64>();
            let (to_ping, ping_rx) = sigcoro::sync::channel::unbounded::<u64>();
            let pong = sigcoro::spawn(move || {
                for v in pong_rx.iter() {
                    to_ping.send(v + 1).expect("ping is there");
                }
            });
            let t = Instant::now();
            let mut v = 0u64;
            for _ in 0..n {
                to_pong.send(v).expect("pong is there");
                v = ping_rx.recv().expect("pong answers");
            }
            let d = t.elapsed();
            drop(to_pong);
            pong.join().expect("pong");
            assert_eq!(v, n, "every hop happened");
            d
        })
    })
}

/// Spawn an empty coroutine and join it, one at a time, from a coroutine on the worker.
pub fn spawn_join(rt: &sigcoro::Runtime, reps: usize) -> Stats {
    harness::bench(reps, 1.0, |n| {
        rt.block_on(move || {
            let t = Instant::now();
            for i in 0..n {
                black_box(sigcoro::spawn(move || black_box(i)).join().expect("empty coroutine"));
            }
            t.elapsed()
        })
    })
}

/// `Coroutine::new`, one resume that runs it to the end, and the drop that pools its stack.
pub fn create_pooled(reps: usize) -> Stats {
    harness::bench(reps, 1.0, |n| {
        harness::timed(|| {
            for i in 0..n {
                let mut co = Coroutine::new(|_: &Yielder<u64, ()>, v: u64| v + 1);
                black_box(co.resume(black_box(i)));
            }
        })
    })
}

/// A stack's first context made by the signal-stack trick, as every new stack gets it: guard
/// re-installed, `sigaltstack`, `sigaction`, a signal to self, `sigsuspend`, the trampoline's
/// first entry, everything restored.
pub fn create_cold(reps: usize) -> Stats {
    harness::bench(reps, 1.0, |n| {
        harness::timed(|| {
            for _ in 0..n {
                sigcoro::__bench::reboot_one_for_bench(sigcoro::stack::DEFAULT_STACK_SIZE).expect("booting a stack");
            }
        })
    })
}
