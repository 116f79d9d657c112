//! What a worker shows the timer thread: who it is, whether it runs a coroutine, which slice,
//! since when (when it knows cheaply), and its earliest timer.
//!
//! A worker writes these with plain stores (no locked instruction on the switch path); the
//! timer thread only reads them, except for the interrupt flags behind `flag`.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

/// [`PreemptWatch::running`]: the worker runs no coroutine.
pub(crate) const IDLE: u8 = 0;
/// [`PreemptWatch::running`]: the worker runs a coroutine outside any async region.
pub(crate) const RUNNING: u8 = 1;
/// [`PreemptWatch::running`]: the worker runs a coroutine inside an async region.
pub(crate) const IN_REGION: u8 = 2;

/// A worker's state as the preemption timer thread sees it.
#[derive(Default)]
pub(crate) struct PreemptWatch {
    /// The worker thread's id, for tgkill.
    pub tid: AtomicI32,
    /// The worker thread's CPU-time clock.
    pub cpu_clock: AtomicI32,
    /// Slices started: bumped whenever a task runs from the back of the queue (a task woken
    /// into the `next` slot inherits the slice, so a ping-pong pair cannot hog the worker).
    pub slice_seq: AtomicU64,
    /// The slice whose start time `stamp_ns` holds. Only slices that begin right after a
    /// preemption are stamped: reading a clock at every yield would cost more than the yield,
    /// and a slice that follows a preemption is the one most likely to run out too.
    pub stamp_seq: AtomicU64,
    /// When slice `stamp_seq` began, in [`super::monitor::nanos`].
    pub stamp_ns: AtomicU64,
    /// What the worker runs now: [`IDLE`], [`RUNNING`], or [`IN_REGION`] (a coroutine inside
    /// [`preemptible`](super::preemptible), the only state in which it may be signalled).
    pub running: AtomicU8,
    /// Who runs now, for hog reports: written at every switch in, read by the timer thread.
    pub ident: super::hog::Ident,
    /// The last instruction the preemption handler found the running coroutine at, and the
    /// slice it was in (async regions only; for hog reports).
    pub last_pc: AtomicUsize,
    pub last_pc_seq: AtomicU64,
    /// The slice the timer thread reported as a hog (0: none): the coroutine counts it in its
    /// own stats when it finally switches out.
    pub hog_seq: AtomicU64,
    /// Set by the handler when it refused after a long walk (a deep stack below the region):
    /// the timer thread then waits longer before it signals again.
    pub deep_refusal: AtomicBool,
    /// Until when (in [`super::monitor::nanos`]) the timer thread sends no signal and the
    /// worker's alarm does not go off: set by the handler after every walk to four times the
    /// walk's length past its end, so that a walk slower than the retries (an unoptimised
    /// walker on a deep stack) cannot keep the coroutine in the handler for good.
    pub quiet_until: AtomicU64,
    /// When the timer thread last sent the preemption signal (in [`super::monitor::nanos`]),
    /// cleared to 0 by the handler: real-time signals queue, so while one is still on its way
    /// (blocked between regions, or the handler busy) the timer thread sends no other, for a
    /// while (a signal the kernel could not deliver never clears it).
    pub signal_sent_at: AtomicU64,
    /// The worker's thread-local interrupt flags (null once the worker has exited).
    pub flag: AtomicPtr<AtomicU8>,
    /// Threads (or signal handlers) dereferencing `flag` right now; an exiting worker clears
    /// `flag` and waits for this to reach 0 before its thread-locals go away.
    pub flag_users: AtomicUsize,
    /// The worker's earliest timer, in [`super::monitor::nanos`] (0: none). A coroutine still
    /// running when it is due is preempted at once, so the timer fires on time.
    pub deadline: AtomicU64,
    /// When the worker's own alarm goes off (see [`super::alarm`]; 0: not set), and the slice
    /// whose end it covers (0: none). The timer thread leaves those to the alarm.
    pub alarm: AtomicU64,
    pub alarm_seq: AtomicU64,
}

impl PreemptWatch {
    /// Starts a new slice (worker thread only); `stamp` records its start time as well, which
    /// comes back.
    #[inline]
    pub(crate) fn start_slice(&self, stamp: bool) -> Option<u64> {
        let seq = self.slice_seq.load(Ordering::Relaxed) + 1;
        let mut at = None;
        if stamp {
            // Time first, then which slice it belongs to, then the slice itself: a reader that
            // sees `stamp_seq == slice_seq` (acquire) sees this slice's time.
            let now = super::monitor::nanos(Instant::now());
            self.stamp_ns.store(now, Ordering::Relaxed);
            self.stamp_seq.store(seq, Ordering::Release);
            at = Some(now);
        }
        self.slice_seq.store(seq, Ordering::Release);
        at
    }

    /// The running slice and, if the worker stamped it, when it began. The acquire load of
    /// `stamp_seq` makes that slice's time visible, so the time read is never an older one; a
    /// newer stamp written meanwhile can only make the slice look younger (it then runs a little
    /// longer before it is interrupted, never shorter).
    pub(crate) fn slice(&self) -> (u64, Option<u64>) {
        let seq = self.slice_seq.load(Ordering::Acquire);
        if self.stamp_seq.load(Ordering::Acquire) != seq {
            return (seq, None);
        }
        (seq, Some(self.stamp_ns.load(Ordering::Relaxed)))
    }
}
