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

pub(crate) mod alarm;
pub(crate) mod codemap;
pub(crate) mod handler;
pub mod hog;
pub(crate) mod monitor;
pub(crate) mod region;
pub mod settings;
pub(crate) mod unwind;
pub(crate) mod watch;

pub use hog::HogReport;
pub use region::preemptible;
pub use settings::async_preemption;

use crate::sched::park::current_task;
use crate::sched::task::Task;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering, compiler_fence};

thread_local! {
    /// This worker's interrupt flags, [`PREEMPT`] and [`CALLBACKS`]; the timer thread and
    /// [`Interrupt::signal`](crate::Interrupt::signal) set them through a pointer. On threads
    /// that are not workers they stay 0.
    pub(crate) static INTERRUPT: AtomicU8 = const { AtomicU8::new(0) };
    /// How deep this thread is in [`Critical`] sections; the handler reads it on this thread.
    static CRITICAL: AtomicU32 = const { AtomicU32::new(0) };
}

/// Interrupt flag: the running slice has expired.
pub(crate) const PREEMPT: u8 = 1;
/// Interrupt flag: an [`Interrupt`](crate::Interrupt) of this worker was signalled.
pub(crate) const CALLBACKS: u8 = 2;
/// Interrupt flag: a timer of this worker is due; make way for the coroutines it wakes.
pub(crate) const DEADLINE: u8 = 4;

/// Takes the preemption flags: the action that switches out for them, if any is set.
pub(crate) fn take_preemption(signal: bool) -> Option<crate::sched::task::Action> {
    let flags = INTERRUPT.with(|f| f.load(Ordering::Relaxed));
    if flags & (PREEMPT | DEADLINE) == 0 {
        return None;
    }
    INTERRUPT.with(|f| f.fetch_and(!(PREEMPT | DEADLINE), Ordering::Relaxed));
    count_hog();
    Some(crate::sched::task::Action::Preempted {
        signal,
        front: flags & PREEMPT == 0,
    })
}

/// Counts a hog episode in the running coroutine's stats if the timer thread reported the
/// slice that ends now (rare: only after slices without a safe point).
fn count_hog() {
    let Some(local) = crate::sched::worker::local() else {
        return;
    };
    let watch = &local.me().preempt;
    let hog = watch.hog_seq.load(Ordering::Relaxed);
    if hog != 0 && hog == watch.slice_seq.load(Ordering::Relaxed) {
        watch.hog_seq.store(0, Ordering::Relaxed);
        if let Some(task) = current_task() {
            task.stats.hogs.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A safe point: if the timer thread asked this worker to switch, yield now. Costs one load and
/// a predictable branch when nothing is pending; does nothing outside a runtime.
///
/// Put it in long loops that make no runtime calls. For hot loops where even that load would
/// block vectorisation, see [`Checkpoints`].
#[inline]
pub fn checkpoint() {
    if INTERRUPT.with(|f| f.load(Ordering::Relaxed)) != 0 {
        checkpoint_slow();
    }
}

#[cold]
#[inline(never)]
fn checkpoint_slow() {
    let Some(task) = current_task() else {
        // Not a coroutine (a worker's own stack runs interrupt callbacks in its loop).
        INTERRUPT.with(|f| f.fetch_and(!PREEMPT, Ordering::Relaxed));
        return;
    };
    if preempt_held_off(task) {
        return; // the end of the region takes it
    }
    let flags = INTERRUPT.with(|f| f.load(Ordering::Relaxed));
    if flags & CALLBACKS != 0 {
        INTERRUPT.with(|f| f.fetch_and(!CALLBACKS, Ordering::Relaxed));
        crate::interrupt::run_pending();
    }
    let Some(action) = take_preemption(false) else { return };
    task.stats.at_safe_points.fetch_add(1, Ordering::Relaxed);
    task.rt.stats.at_safe_points.fetch_add(1, Ordering::Relaxed);
    crate::sched::park::wait(task, action);
}

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

/// Adds one to a task's no-preempt depth. Only the task's own thread writes the depth (the
/// signal handler that reads it runs on that thread too), so a plain load and store do: no
/// locked instruction on the hot path. Returns the old depth.
#[inline(always)]
pub(crate) fn off_inc(depth: &std::sync::atomic::AtomicU32) -> u32 {
    let old = depth.load(Ordering::Relaxed);
    depth.store(old + 1, Ordering::Relaxed);
    old
}

/// Takes one from a task's no-preempt depth (see [`off_inc`]); returns the old depth.
#[inline(always)]
pub(crate) fn off_dec(depth: &std::sync::atomic::AtomicU32) -> u32 {
    let old = depth.load(Ordering::Relaxed);
    depth.store(old - 1, Ordering::Relaxed);
    old
}

/// The runtime's own no-preempt regions: holds preemption off like [`NoPreemptGuard`] but never
/// yields when it ends (the runtime may be in the middle of something). Its depth is the task's,
/// so it may span a switch (a join in place runs another coroutine inside one); for short
/// sections that never switch, [`Critical`] is cheaper.
pub(crate) struct RuntimeGuard {
    task: Option<&'static Task>,
}

impl RuntimeGuard {
    #[inline]
    pub(crate) fn new() -> RuntimeGuard {
        let task = current_task();
        if let Some(t) = task {
            crate::preempt::off_inc(&t.preempt_off);
            compiler_fence(Ordering::SeqCst);
        }
        RuntimeGuard { task }
    }

    /// Ends the region; returns whether it was the outermost one.
    #[inline]
    fn release(&mut self) -> bool {
        match self.task.take() {
            Some(t) => {
                compiler_fence(Ordering::SeqCst);
                crate::preempt::off_dec(&t.preempt_off) == 1
            }
            None => false,
        }
    }
}

impl Drop for RuntimeGuard {
    #[inline]
    fn drop(&mut self) {
        self.release();
    }
}

/// A short section of the runtime's own code that never switches coroutines (the channels'
/// spin-locked state): preemption is held off through a depth counted per *thread*, so
/// entering and leaving are one add each, with no lookup of the running task.
///
/// Unlike [`RuntimeGuard`], whose depth belongs to the task, it must not be held across a
/// switch: the coroutines that ran meanwhile would be unpreemptible. Nothing in such a section
/// waits, and [`wait`](crate::sched::park) asserts so in debug builds.
#[must_use = "the section ends when the guard is dropped"]
pub(crate) struct Critical {
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Critical {
    /// Enters a section; preemption stays off on this thread until the guard drops.
    #[inline(always)]
    pub(crate) fn enter() -> Critical {
        CRITICAL.with(off_inc);
        compiler_fence(Ordering::SeqCst);
        Critical {
            _not_send: std::marker::PhantomData,
        }
    }
}

impl Drop for Critical {
    #[inline(always)]
    fn drop(&mut self) {
        compiler_fence(Ordering::SeqCst);
        CRITICAL.with(off_dec);
    }
}

/// Whether the running coroutine must not be preempted now: it is in a [`no_preempt`] region
/// or a [`RuntimeGuard`] (its own depth), or its thread is in a [`Critical`] section. For the
/// signal handler and the safe points, on the task's own thread.
#[inline]
pub(crate) fn preempt_held_off(task: &Task) -> bool {
    task.preempt_off.load(Ordering::Relaxed) > 0 || CRITICAL.with(|d| d.load(Ordering::Relaxed)) > 0
}

/// This thread's [`Critical`] depth (0 when no section is open).
#[inline]
pub(crate) fn critical_depth() -> u32 {
    CRITICAL.with(|d| d.load(Ordering::Relaxed))
}

/// A std mutex guard that also holds preemption off, for the runtime's internal locks: a
/// coroutine preempted while holding one would block every other coroutine of its worker that
/// takes it.
pub(crate) struct LockGuard<'a, T> {
    guard: std::sync::MutexGuard<'a, T>,
    _off: RuntimeGuard,
}

/// Locks a runtime-internal std mutex (ignoring poison) with preemption held off.
#[inline]
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> LockGuard<'_, T> {
    let off = RuntimeGuard::new();
    LockGuard {
        guard: m.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
        _off: off,
    }
}

impl<T> std::ops::Deref for LockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> std::ops::DerefMut for LockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

/// How often coroutines were preempted: counts for one coroutine
/// ([`GreenThread::preemptions`](crate::GreenThread::preemptions)) or a whole runtime
/// ([`Runtime::preemptions`](crate::Runtime::preemptions)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PreemptStats {
    /// Switched away by the signal handler inside a [`preemptible`] region.
    pub asynchronous: u64,
    /// Switched away at a safe point after the interrupt flag was raised.
    pub at_safe_points: u64,
    /// Signals that found the coroutine where it could not be switched (a no-preempt section,
    /// code that is not vouched Rust code): the flag stayed set for the next safe point.
    pub deferred: u64,
    /// Times it held its worker for two slices or more without reaching a safe point (see
    /// [`hog`]; runtime totals count the reports filed).
    pub hogs: u64,
    /// Signals the timer thread sent (runtime totals only).
    pub signals: u64,
    /// Signals the workers' own alarms delivered: the end of a slice of a coroutine that was
    /// preempted before, or a timer due while one runs (runtime totals only).
    pub alarms: u64,
}

/// A runtime's counters behind [`PreemptStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub asynchronous: std::sync::atomic::AtomicU64,
    pub at_safe_points: std::sync::atomic::AtomicU64,
    pub deferred: std::sync::atomic::AtomicU64,
    pub hogs: std::sync::atomic::AtomicU64,
    pub signals: std::sync::atomic::AtomicU64,
    pub alarms: std::sync::atomic::AtomicU64,
}

/// One coroutine's counters behind [`PreemptStats`] (signals are counted per runtime only).
#[derive(Debug, Default)]
pub(crate) struct TaskCounters {
    pub asynchronous: std::sync::atomic::AtomicU64,
    pub at_safe_points: std::sync::atomic::AtomicU64,
    pub deferred: std::sync::atomic::AtomicU64,
    pub hogs: std::sync::atomic::AtomicU64,
}

impl TaskCounters {
    /// Back to zero (for a task record being reused).
    pub(crate) fn reset(&mut self) {
        *self = TaskCounters::default();
    }

    pub(crate) fn snapshot(&self) -> PreemptStats {
        PreemptStats {
            asynchronous: self.asynchronous.load(Ordering::Relaxed),
            at_safe_points: self.at_safe_points.load(Ordering::Relaxed),
            deferred: self.deferred.load(Ordering::Relaxed),
            hogs: self.hogs.load(Ordering::Relaxed),
            ..PreemptStats::default()
        }
    }
}

impl Counters {
    pub(crate) fn snapshot(&self) -> PreemptStats {
        PreemptStats {
            asynchronous: self.asynchronous.load(Ordering::Relaxed),
            at_safe_points: self.at_safe_points.load(Ordering::Relaxed),
            deferred: self.deferred.load(Ordering::Relaxed),
            hogs: self.hogs.load(Ordering::Relaxed),
            signals: self.signals.load(Ordering::Relaxed),
            alarms: self.alarms.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Critical;
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
