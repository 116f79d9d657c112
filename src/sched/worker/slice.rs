//! A worker's slices: the one place where the worker loop meets preemption's bookkeeping.
//!
//! A *slice* begins when a task runs from the back of the queue (a task woken into the `next`
//! slot inherits it) and is what the timer thread measures. At each switch the loop calls:
//!
//! | call | when | what it does |
//! | --- | --- | --- |
//! | [`Slices::switch_in`] | before a task runs | a new slice: bump its number (and stamp its start when that pays), release the alarm, clear a stale `PREEMPT`; then publish who runs and whether it is in a region |
//! | [`Slices::cover`] | before a started task resumes | a task preempted last time gets the worker's alarm for its slice end or our next timer (async regions only) |
//! | [`Slices::switch_out`] | after it suspends | the worker runs nothing |
//! | [`Slices::stamp_next`] | after a preemption or an idle spell | the next slice is stamped with its start time |
//! | [`Slices::publish_deadline`] | when the earliest timer changes | tells the timer thread when to raise `DEADLINE` |
//!
//! What the timer thread reads lives in the worker's [`PreemptWatch`]; the alarm is the
//! worker's own kernel timer ([`super::alarm`]).

use super::alarm::Alarm;
use super::watch::{Bell, IDLE, IN_REGION, PreemptWatch, RUNNING};
use crate::ground::{self, PREEMPT};
use crate::sched::task::Task;
use std::cell::Cell;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// A worker's slice bookkeeping (worker thread only).
pub(crate) struct Slices {
    /// Interrupts a CPU-bound coroutine at its slice end or our next timer (workers that may
    /// be signalled only).
    alarm: Option<Alarm>,
    /// Whether the next slice is stamped with its start time for the timer thread: after a
    /// preemption (CPU-bound coroutines live there), and first and after an idle spell (the
    /// timer thread may have napped, and would count the slice from when it woke).
    stamp_next: Cell<bool>,
    /// When the running slice began, if it was stamped.
    start: Cell<Option<u64>>,
    /// Whether the runtime preempts at all (who runs is published only then).
    preempts: bool,
    /// Slice plus grace in ns: when a slice that ignores its flag is signalled (0: never).
    alarm_ns: u64,
    /// The tests' controls: signals may land anywhere, not only in regions.
    anywhere: bool,
}

impl Slices {
    /// The bookkeeping of a worker of a runtime with this slice (`slice_ns`, 0: no
    /// preemption) and alarm (`alarm_ns`, 0: never signalled).
    pub(crate) fn new(slice_ns: u64, alarm_ns: u64, anywhere: bool) -> Slices {
        Slices {
            alarm: (alarm_ns != 0).then(|| Alarm::for_this_thread(alarm_ns)).flatten(),
            stamp_next: Cell::new(true),
            start: Cell::new(None),
            preempts: slice_ns != 0,
            alarm_ns,
            anywhere,
        }
    }

    /// Publishes this worker thread for the timer thread (its id, CPU clock and interrupt
    /// flags), and sets the preemption signal's mask: let in only inside regions, or
    /// everywhere for the tests' controls.
    pub(crate) fn publish_thread(&self, watch: &PreemptWatch) {
        if self.anywhere {
            ground::unblock_preempt_signal();
        } else {
            ground::block_preempt_signal();
        }
        // SAFETY: gettid has no preconditions.
        watch.tid.store(unsafe { libc::gettid() }, Ordering::Relaxed);
        let mut clock: libc::clockid_t = 0;
        // SAFETY: asks for this thread's CPU clock id into a local.
        if unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut clock) } == 0 {
            watch.cpu_clock.store(clock, Ordering::Relaxed);
        }
        watch.flag.store(ground::interrupt_flags_address(), Ordering::Release);
    }

    /// Withdraws the published flags before the thread exits, and waits until no other
    /// thread or handler still uses them.
    pub(crate) fn withdraw_thread(&self, watch: &PreemptWatch) {
        watch.flag.store(std::ptr::null_mut(), Ordering::SeqCst);
        while watch.flag_users.load(Ordering::SeqCst) != 0 {
            std::hint::spin_loop();
        }
    }

    /// `task` is about to run; `new_slice` if it starts a slice of its own.
    #[inline(always)]
    pub(crate) fn switch_in(&self, watch: &PreemptWatch, task: &Task, new_slice: bool) {
        if new_slice {
            // A coroutine preempted last time is likely to run until interrupted again: its
            // slice is stamped, and the worker's alarm covers its end (see `cover`).
            let hog = task.preempted.get();
            self.start.set(watch.start_slice(self.stamp_next.replace(false) || hog));
            if !hog && let Some(alarm) = &self.alarm {
                alarm.release(watch);
            }
            // A locked read-modify-write only when the bit is set: this runs at every handoff.
            ground::clear_interrupt_flags(PREEMPT);
        }
        let in_region = task.region_cfa.load(Ordering::Relaxed) != 0;
        watch
            .running
            .store(if in_region { IN_REGION } else { RUNNING }, Ordering::Relaxed);
        if self.preempts {
            watch.ident.publish(task.id, task.entry.get(), task.name.as_deref());
        }
    }

    /// A started `task` that was preempted last time is about to resume inside a region (or
    /// anywhere, for the tests' controls): the alarm covers the earlier of its slice's end and
    /// `next_timer`.
    #[inline]
    pub(crate) fn cover(&self, watch: &PreemptWatch, task: &Task, next_timer: impl FnOnce() -> Option<Instant>) {
        let Some(alarm) = &self.alarm else { return };
        if !task.preempted.get() || (task.region_cfa.load(Ordering::Relaxed) == 0 && !self.anywhere) {
            return;
        }
        let slice_end = self.start.get().map(|start| start + self.alarm_ns);
        let timer = next_timer().map(ground::nanos);
        alarm.cover(watch, watch.slice_seq.load(Ordering::Relaxed), slice_end, timer);
    }

    /// The task switched out: the worker runs nothing.
    #[inline(always)]
    pub(crate) fn switch_out(&self, watch: &PreemptWatch) {
        watch.running.store(IDLE, Ordering::Relaxed);
    }

    /// Stamps the next slice with its start time.
    pub(crate) fn stamp_next(&self) {
        self.stamp_next.set(true);
    }

    /// Tells the timer thread when our earliest timer is due (`None`: no timer), and wakes it
    /// if it would look only after that.
    pub(crate) fn publish_deadline(&self, watch: &PreemptWatch, bell: &Bell, deadline: Option<Instant>) {
        let ns = deadline.map_or(0, ground::nanos);
        if watch.deadline.load(Ordering::Relaxed) != ns {
            watch.deadline.store(ns, Ordering::SeqCst);
            if ns != 0 && self.preempts {
                bell.hurry_for(ns);
            }
        }
    }

    /// From the preemption handler: this worker's alarm went off; whether the coroutine
    /// running now (`task`) is due to be switched out (never when none runs).
    pub(crate) fn alarm_fired(&self, task: Option<&Task>) -> bool {
        let Some(alarm) = &self.alarm else { return false };
        alarm.went_off();
        let Some(task) = task else { return false };
        if !alarm.fired() {
            return false;
        }
        if ground::preempt_held_off(&task.header) || task.in_handler.load(Ordering::Relaxed) {
            // It cannot be switched out here: the runtime's own code around a switch, or a
            // `no_preempt` region. The flags stay up for its next safe point, and the alarm
            // goes off again a grace period later, for a coroutine that never reaches one.
            alarm.again_after_grace();
        }
        true
    }

    /// From the preemption handler, after a short refused walk that took `walk_ns`: the alarm
    /// tries again soon (see `Alarm::retry_soon`).
    pub(crate) fn retry_soon(&self, walk_ns: u64) {
        if let Some(alarm) = &self.alarm {
            alarm.retry_soon(walk_ns);
        }
    }

    /// Clears the alarm, so that a system call made on purpose is not interrupted by it.
    pub(crate) fn disarm(&self, watch: &PreemptWatch) {
        if let Some(alarm) = &self.alarm {
            alarm.disarm(watch);
        }
    }
}
