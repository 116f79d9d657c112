//! A worker's own alarm clock, for the coroutines that run until something interrupts them.
//!
//! The timer thread finds a coroutine that ran past its slice and, if no safe point took the
//! flag within the grace period, signals its worker (see [`crate::preempt`]'s timer thread). Doing that for the
//! same CPU-bound coroutine slice after slice costs a wake-up of the timer thread and a signal
//! sent across CPUs each time, and the timer thread learns of a worker's new timers only at
//! its next look. So a worker that resumes a coroutine that was preempted last time (one likely
//! to run until interrupted again) arms its own kernel timer (`timer_create` with
//! `SIGEV_THREAD_ID`) for the earlier of that slice's end (start + slice + grace) and the
//! worker's earliest timer. The kernel then sends the preemption signal straight to the worker
//! thread, on its own CPU, with `si_code == SI_TIMER`; the handler raises the
//! [`PREEMPT`](crate::ground::PREEMPT) and [`DEADLINE`](crate::ground::DEADLINE) flags itself, and the slice ends
//! there (a timer that fires ends the slice: the woken coroutines run, then the next in line).
//!
//! It costs one `timer_settime` per slice of a CPU-bound coroutine and per new earliest timer
//! while one runs, and nothing otherwise. The worker publishes what the alarm covers (the slice
//! and the time), so the timer thread neither signals for it nor wakes for it; it only checks,
//! much later, that the slice did end (a preemption deferred in libc waits for a safe point).
//! An alarm that finds nothing to do (the coroutine yielded meanwhile) costs one signal.

use super::watch::PreemptWatch;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

/// A kernel timer that signals the worker thread that made it.
///
/// The worker sets it; its signal handler reads it (on the same thread, so relaxed atomics
/// suffice: they only keep the compiler from tearing or caching what the handler may see).
pub(crate) struct Alarm {
    id: libc::timer_t,
    /// What it is set for (in [`crate::ground::nanos`]; 0: nothing or unknown).
    armed: AtomicU64,
    /// Whether that is the end of a slice rather than a timer: the slice end should not outlive
    /// the coroutine it was set for, and is measured in CPU time (see [`Alarm::fired`]).
    slice_end: AtomicBool,
    /// The slice it last covered, the worker thread's CPU time when that slice began, and the
    /// CPU time the slice may use (slice + grace).
    slice: AtomicU64,
    slice_cpu: AtomicU64,
    budget: u64,
    /// Whether a worker timer is pending as well (then the alarm is never put off).
    timer_pending: AtomicBool,
    /// Whether the kernel timer may still go off (set, and not seen going off since).
    ticking: AtomicBool,
    /// Quick retries after refused walks in the slice it last covered (see [`Alarm::retry_soon`]).
    retries: AtomicU32,
}

/// The most quick retries after refused walks per slice; then the timer thread's slower
/// re-signals (a grace period apart) take over.
const MAX_RETRIES: u32 = 32;

impl Alarm {
    /// An alarm for the calling thread, whose slices may use `budget` ns of CPU, or `None` if
    /// the kernel refuses one (then the timer thread alone interrupts the worker).
    pub(crate) fn for_this_thread(budget: u64) -> Option<Alarm> {
        // SAFETY: a zeroed sigevent is valid; we fill in the fields SIGEV_THREAD_ID needs, and
        // timer_create writes the id into a local.
        unsafe {
            let mut ev: libc::sigevent = std::mem::zeroed();
            ev.sigev_notify = libc::SIGEV_THREAD_ID;
            ev.sigev_signo = crate::ground::preempt_signal();
            ev.sigev_notify_thread_id = libc::gettid();
            let mut id: libc::timer_t = std::ptr::null_mut();
            (libc::timer_create(libc::CLOCK_MONOTONIC, &mut ev, &mut id) == 0).then_some(Alarm {
                id,
                armed: AtomicU64::new(0),
                slice_end: AtomicBool::new(false),
                slice: AtomicU64::new(0),
                slice_cpu: AtomicU64::new(0),
                budget,
                timer_pending: AtomicBool::new(false),
                ticking: AtomicBool::new(false),
                retries: AtomicU32::new(0),
            })
        }
    }

    /// Before the worker resumes a coroutine that was preempted last time: sets the alarm for
    /// the earlier of the end of its slice `seq` (when the slice's start is known) and the
    /// worker's earliest timer, and tells the timer thread what it covers.
    pub(crate) fn cover(&self, watch: &PreemptWatch, seq: u64, slice_end: Option<u64>, timer: Option<u64>) {
        let (target, ends_slice) = match (slice_end, timer) {
            (Some(end), Some(due)) => (end.min(due), end <= due),
            (Some(end), None) => (end, true),
            (None, Some(due)) => (due, false),
            (None, None) => return,
        };
        if slice_end.is_some() && self.slice.load(Ordering::Relaxed) != seq {
            self.slice.store(seq, Ordering::Relaxed);
            self.slice_cpu.store(thread_cpu_ns(), Ordering::Relaxed);
            self.retries.store(0, Ordering::Relaxed);
        }
        self.slice_end.store(ends_slice, Ordering::Relaxed);
        self.timer_pending.store(timer.is_some(), Ordering::Relaxed);
        // Not before the quiet time the handler set after a slow refused walk (see
        // `PreemptWatch::quiet_until`): the coroutine must run between walks.
        let now = crate::ground::nanos(Instant::now());
        let quiet = watch.quiet_until.load(Ordering::Relaxed).saturating_sub(now);
        if self.armed.load(Ordering::Relaxed) != target || quiet > 0 {
            let wait = target.saturating_sub(now).max(1).max(quiet);
            if !self.set(wait) {
                return;
            }
            self.armed.store(target, Ordering::Relaxed);
        }
        watch.alarm.store(target, Ordering::Relaxed);
        watch
            .alarm_seq
            .store(if slice_end.is_some() { seq } else { 0 }, Ordering::Release);
    }

    /// Before the worker starts a slice for a coroutine that was not preempted: an alarm set
    /// for another coroutine's slice end is cleared (it would cut this slice short).
    #[inline]
    pub(crate) fn release(&self, watch: &PreemptWatch) {
        // A plain load first: this runs at every new slice, and a swap would be a locked
        // instruction.
        if self.slice_end.load(Ordering::Relaxed) {
            self.clear_slice_end(watch);
        }
    }

    #[cold]
    fn clear_slice_end(&self, watch: &PreemptWatch) {
        self.slice_end.store(false, Ordering::Relaxed);
        if self.set(0) {
            self.armed.store(0, Ordering::Relaxed);
            watch.alarm.store(0, Ordering::Relaxed);
            watch.alarm_seq.store(0, Ordering::Release);
        }
    }

    /// Clears the alarm, whatever it was set for (before a coroutine blocks its worker in a
    /// system call on purpose, as `blocking` does inline).
    pub(crate) fn disarm(&self, watch: &PreemptWatch) {
        if self.ticking.load(Ordering::Relaxed) && self.set(0) {
            self.armed.store(0, Ordering::Relaxed);
            self.slice_end.store(false, Ordering::Relaxed);
            self.timer_pending.store(false, Ordering::Relaxed);
            watch.alarm.store(0, Ordering::Relaxed);
            watch.alarm_seq.store(0, Ordering::Release);
        }
    }

    /// From the signal handler, as soon as the alarm went off: it is no longer set, so the
    /// next `cover` sets it again even for the same time (the worker may have been between
    /// coroutines, and the timer not yet due when it looked).
    pub(crate) fn went_off(&self) {
        self.armed.store(0, Ordering::Relaxed);
        self.ticking.store(false, Ordering::Relaxed);
    }

    /// From the signal handler, after a refused walk (the coroutine was in code that is not
    /// vouched, such as a std or core function that an unoptimised build does not inline): sets
    /// the alarm to go off again soon, so that the next try likely finds the coroutine back in
    /// its own code, rather than a grace period later: a sixteenth of a slice from now, and at
    /// least four times as long as the refused walk took (`walk_ns`), so that the coroutine
    /// keeps most of the time between tries (an unoptimised walker is slow, and a slice may be
    /// as short as 20 µs). Only when the alarm is not set for something else, and at most
    /// [`MAX_RETRIES`] times a slice. Async-signal-safe: atomics and `timer_settime`.
    pub(crate) fn retry_soon(&self, walk_ns: u64) {
        if self.ticking.load(Ordering::Relaxed) || self.retries.load(Ordering::Relaxed) >= MAX_RETRIES {
            return;
        }
        self.retries.fetch_add(1, Ordering::Relaxed);
        // The budget is a slice and a half.
        self.set((self.budget / 24).max(4 * walk_ns));
    }

    /// From the signal handler: sets the alarm again a grace period (a third of the budget)
    /// from now.
    pub(crate) fn again_after_grace(&self) {
        self.set(self.budget / 3);
    }

    /// From the signal handler, when the alarm went off while a coroutine runs: whether to
    /// preempt it. A slice's end counts CPU time: if the worker thread was off the CPU for a
    /// good part of the slice (the machine is busy), the coroutine has not had its slice yet,
    /// and the alarm is set again for what is left. A thread that hardly ran at all is likely
    /// asleep in a system call: no more alarms for this slice (each could cut a call short with
    /// EINTR); the timer thread looks at it later. An alarm with a worker timer pending always
    /// preempts. Async-signal-safe: atomics, `clock_gettime` and `timer_settime`.
    pub(crate) fn fired(&self) -> bool {
        if !self.slice_end.load(Ordering::Relaxed) || self.timer_pending.load(Ordering::Relaxed) {
            return true;
        }
        let used = thread_cpu_ns().saturating_sub(self.slice_cpu.load(Ordering::Relaxed));
        if used * 4 >= self.budget * 3 {
            return true;
        }
        if used * 8 < self.budget {
            self.armed.store(0, Ordering::Relaxed);
            return false;
        }
        // The time it is now set for is not known here without a clock read: `cover` sets it
        // afresh next time.
        self.armed.store(0, Ordering::Relaxed);
        !self.set(self.budget - used)
    }

    /// Sets the kernel timer to go off in `wait_ns` (0: never).
    fn set(&self, wait_ns: u64) -> bool {
        let spec = libc::itimerspec {
            it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
            it_value: libc::timespec {
                tv_sec: (wait_ns / 1_000_000_000) as libc::time_t,
                tv_nsec: (wait_ns % 1_000_000_000) as libc::c_long,
            },
        };
        // SAFETY: our own timer, a valid relative one-shot setting.
        let done = unsafe { libc::timer_settime(self.id, 0, &spec, std::ptr::null_mut()) == 0 };
        if done {
            self.ticking.store(wait_ns != 0, Ordering::Relaxed);
        }
        done
    }
}

/// This thread's CPU time in nanoseconds. Async-signal-safe.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: reading a clock into a local.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Drop for Alarm {
    fn drop(&mut self) {
        // SAFETY: our own timer, deleted once.
        unsafe { libc::timer_delete(self.id) };
    }
}

/// Whether a signal came from an alarm rather than from the timer thread.
///
/// # Safety
///
/// `info` is the `siginfo_t` the kernel passed to an `SA_SIGINFO` handler.
pub(crate) unsafe fn from_alarm(info: *const libc::siginfo_t) -> bool {
    // SAFETY: per the contract.
    !info.is_null() && unsafe { (*info).si_code } == libc::SI_TIMER
}
