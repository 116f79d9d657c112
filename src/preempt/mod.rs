//! Preemption: timer threads interrupt coroutines that run too long, at safe points.
//!
//! # The default: safe points, sound by construction
//!
//! A runtime's timer thread watches each worker. When the same slice has run longer than the
//! runtime's `preempt` slice, it raises the worker's interrupt flag: one atomic OR, no system
//! call. Every safe point ([`checkpoint`], [`Checkpoints`], every sigcoro call that may switch:
//! [`yield_now`](crate::yield_now), joins, parking, sleeping, channel and lock operations,
//! `try_*` included, the end of a [`no_preempt`] region) tests the flag with one load and a
//! predictable branch and, if it is set, yields. A timer due on a worker raises the flag the
//! same way, so a sleeper wakes at its neighbour's next safe point. No signal is ever sent to a
//! worker: no EINTR, no signal frame on a coroutine stack, no switch inside code that did not
//! choose to switch. This is Async::Interrupt's model: signalled from another thread, handled
//! where the program is ready for it.
//!
//! What it costs: a coroutine that computes for a long time without a safe point keeps its
//! worker. The runtime reports it ([`hog`]: [`Runtime::hogs`](crate::Runtime::hogs), the
//! `hogs` counters, and a line on stderr with
//! [`report_hogs`](crate::RuntimeBuilder::report_hogs)).
//!
//! # The opt-in: asynchronous preemption in regions the user vouches for
//!
//! Inside [`preemptible`] (an `unsafe fn`: its contract is about thread-owned state), a
//! coroutine that ignores its flag for a grace period (half a slice) more is sent the
//! preemption signal, and the handler switches it out at the interrupted instruction if that
//! instruction and every caller up to the region are Rust code of the executable outside std,
//! core, alloc and the global allocator (the modules `codemap` and `unwind`). Outside regions the
//! signal is blocked in the workers' masks. A coroutine preempted once has its next slices
//! ended by its worker's own kernel timer (the module `alarm`).
//!
//! # What user code must still guard
//!
//! Safe points are explicit calls, so the rule is the one of `.await` in async Rust: do not
//! hold thread-owned state across a sigcoro call that may switch. A `std::sync::Mutex` guard
//! held across `sleep`, a channel operation or a `checkpoint()` blocks the whole worker thread
//! when another of its coroutines takes the lock; hold it across no sigcoro call, or use
//! [`crate::sync::Mutex`], which parks coroutines. [`no_preempt`] keeps a safe point from
//! switching for preemption (it may still wait by its own choice).
//!
//! # Switching it off
//!
//! `SIGCORO_PREEMPT=noasync` turns regions' asynchronous preemption off for a whole process,
//! `SIGCORO_PREEMPT=off` all preemption (see [`settings`]).

pub(crate) mod codemap;
pub(crate) mod handler;
pub mod hog;
pub(crate) mod monitor;
pub(crate) mod region;
pub mod settings;
pub(crate) mod unwind;

pub use hog::HogReport;
pub use region::preemptible;
pub use settings::async_preemption;

pub use crate::sched::safepoint::checkpoint;
pub use crate::sched::stats::PreemptStats;

use crate::ground::RuntimeGuard;

/// A countdown that calls [`checkpoint`] once every `every` ticks, so a hot loop pays a
/// decrement and a rarely taken branch instead of a load per iteration.
///
/// ```
/// let mut cp = sigcoro::Checkpoints::every(1024);
/// let mut sum = 0u64;
/// for i in 0..1_000_000u64 {
///     sum = sum.wrapping_add(i * i);
///     cp.tick();
/// }
/// # assert!(sum > 0);
/// ```
#[derive(Debug, Clone)]
pub struct Checkpoints {
    every: u32,
    left: u32,
}

impl Checkpoints {
    /// A countdown that checks once every `every` ticks (at least 1).
    pub fn every(every: u32) -> Checkpoints {
        let every = every.max(1);
        Checkpoints { every, left: every }
    }

    /// Counts one tick; every `every`th one is a [`checkpoint`].
    #[inline]
    pub fn tick(&mut self) {
        self.left -= 1;
        if self.left == 0 {
            self.left = self.every;
            checkpoint();
        }
    }
}

/// Runs `f` where no preemption lands: neither a safe point inside it nor the signal handler
/// switches away (it may still wait, e.g. on a channel, by its own choice). Regions nest; when
/// the outermost one ends, an interrupt that arrived meanwhile is taken.
pub fn no_preempt<R>(f: impl FnOnce() -> R) -> R {
    let _guard = NoPreemptGuard::new();
    f()
}

/// A [`no_preempt`] region as a guard: preemption is held off until it drops. Async::Interrupt's
/// `scope_block`.
#[must_use = "the region ends when the guard is dropped"]
pub struct NoPreemptGuard {
    inner: RuntimeGuard,
}

impl NoPreemptGuard {
    /// Begins a region (a no-op outside a coroutine of a runtime).
    pub fn new() -> NoPreemptGuard {
        NoPreemptGuard {
            inner: RuntimeGuard::new(),
        }
    }
}

impl Default for NoPreemptGuard {
    fn default() -> Self {
        NoPreemptGuard::new()
    }
}

impl Drop for NoPreemptGuard {
    fn drop(&mut self) {
        let outermost = self.inner.release();
        if outermost && !std::thread::panicking() {
            checkpoint();
        }
    }
}

impl std::fmt::Debug for NoPreemptGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NoPreemptGuard")
    }
}

#[cfg(test)]
mod tests {
    use crate::ground::Critical;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    /// A coroutine that spins inside `Critical` sections (plain arithmetic, where the signal
    /// finds nothing else to refuse) is never switched out there, while it is preempted between
    /// them: another coroutine of its worker never sees it inside.
    #[test]
    fn no_preemption_inside_a_critical_section() {
        let rt = crate::Runtime::builder()
            .workers(1)
            .preempt(Some(Duration::from_micros(100)))
            .build()
            .expect("runtime");
        let inside = Arc::new(AtomicBool::new(false));
        let seen_inside = Arc::new(AtomicUsize::new(0));
        let (i1, i2, seen) = (inside.clone(), inside.clone(), seen_inside.clone());
        // SAFETY: arithmetic, atomics and the runtime's own sections: no thread-owned state.
        let guarded = rt.spawn(move || unsafe {
            super::preemptible(|| {
                let mut x = 1u64;
                for _ in 0..20 {
                    let _section = Critical::enter();
                    i1.store(true, Ordering::SeqCst);
                    let end = Instant::now() + Duration::from_millis(2);
                    while Instant::now() < end {
                        for _ in 0..4096 {
                            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        }
                    }
                    i1.store(false, Ordering::SeqCst);
                    drop(_section);
                    // Between sections: spin on, so the pending interrupt lands here.
                    let end = Instant::now() + Duration::from_millis(1);
                    while Instant::now() < end {
                        for _ in 0..4096 {
                            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        }
                    }
                }
                std::hint::black_box(x);
                crate::current().preemptions()
            })
        });
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        let observer = rt.spawn(move || {
            while !d.load(Ordering::SeqCst) {
                if i2.load(Ordering::SeqCst) {
                    seen.fetch_add(1, Ordering::SeqCst);
                }
                crate::yield_now();
            }
        });
        let stats = guarded.join().unwrap();
        done.store(true, Ordering::SeqCst);
        observer.join().unwrap();
        assert_eq!(
            seen_inside.load(Ordering::SeqCst),
            0,
            "another coroutine ran inside a critical section"
        );
        // The spinner was preempted, between its sections.
        assert!(stats.asynchronous > 0, "{stats:?}");
    }
}
