//! Preemption counters: per coroutine and per runtime, behind [`PreemptStats`].

use std::sync::atomic::Ordering;

/// How often coroutines were preempted: counts for one coroutine
/// ([`GreenThread::preemptions`](crate::GreenThread::preemptions)) or a whole runtime
/// ([`Runtime::preemptions`](crate::Runtime::preemptions)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PreemptStats {
    /// Switched away by the signal handler inside a [`preemptible`](crate::preemptible) region.
    pub asynchronous: u64,
    /// Switched away at a safe point after the interrupt flag was raised.
    pub at_safe_points: u64,
    /// Signals that found the coroutine where it could not be switched (a no-preempt section,
    /// code that is not vouched Rust code): the flag stayed set for the next safe point.
    pub deferred: u64,
    /// Times it held its worker for two slices or more without reaching a safe point (see
    /// [`hog`](crate::preempt::hog); runtime totals count the reports filed).
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
