//! A task's lifecycle in one word, after tokio's `runtime/task/state.rs`: every transition
//! that another thread may race with is one atomic operation on [`State`]'s bits, and the
//! worker index the task belongs to sits beside them.
//!
//! | bit | name | set by | cleared by | meaning |
//! | --- | --- | --- | --- | --- |
//! | 0 | `TOKEN` | [`State::unpark`] (any thread), on a task that is not parked | [`State::take_token`] (the task), [`State::park`] (its worker, which then requeues it) | std's park token |
//! | 1 | `PARKED` | [`State::park`] (its worker), only without `TOKEN` | [`State::unpark`], which then schedules the task (without leaving a token) | suspended in a park |
//! | 2 | `SLEEPING` | [`State::sleep`] (its worker) | [`State::wake_sleeper`] (a timer, a cancellation), which then schedules it | suspended in a sleep; park tokens are left alone |
//! | 3 | `CANCELLED` | [`State::cancel`] (any thread) | never (a reused record starts at 0) | the task unwinds at its next wait |
//! | 4 | `UNWOUND` | [`State::mark_unwound`] (the task) | never | a cancellation started unwinding it: it ends cancelled, whatever it catches |
//! | 5 | `JOIN_WAITING` | [`State::join_wait`] (the joiner), unless `DONE` | never | the joiner left its unparker in the task and waits |
//! | 6 | `DONE` | [`State::complete`] (the task), once | never | the outcome is delivered; it is the joiner's |
//!
//! Whoever clears `PARKED` or `SLEEPING` schedules the task: exactly one thread does, so a task
//! is never queued twice. `PARKED` and `TOKEN` are never both set, nor `PARKED` and
//! `SLEEPING`. The outcome and the joiner's unparker (in the task) are handed over by
//! `JOIN_WAITING` and `DONE`: the joiner writes its unparker before it sets `JOIN_WAITING`; the
//! task writes its outcome before it sets `DONE`, and takes the unparker only if it saw
//! `JOIN_WAITING`.
//!
//! `owner` is the worker that runs the task, or [`UNSTARTED`] until one first does; a started
//! task stays with its worker.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

/// `owner` of a task that has not run yet: any worker may take it.
pub(crate) const UNSTARTED: usize = usize::MAX;

const TOKEN: u8 = 1 << 0;
const PARKED: u8 = 1 << 1;
const SLEEPING: u8 = 1 << 2;
const CANCELLED: u8 = 1 << 3;
const UNWOUND: u8 = 1 << 4;
const JOIN_WAITING: u8 = 1 << 5;
const DONE: u8 = 1 << 6;

/// A task's lifecycle bits and its owner (see the module docs).
pub(crate) struct State {
    bits: AtomicU8,
    owner: AtomicUsize,
}

impl State {
    /// The state of a task just spawned: nothing set, no owner.
    pub(crate) const fn new() -> State {
        State {
            bits: AtomicU8::new(0),
            owner: AtomicUsize::new(UNSTARTED),
        }
    }

    /// Back to [`State::new`], for a record being reused (nobody else holds it).
    pub(crate) fn reset(&mut self) {
        *self = State::new();
    }

    /// The worker that runs the task, or [`UNSTARTED`].
    #[inline(always)]
    pub(crate) fn owner(&self) -> usize {
        self.owner.load(Ordering::Acquire)
    }

    /// Whether no worker has run the task yet. A plain load: callers that act on `true`
    /// decide again where it is settled (under the queue's guard).
    #[inline(always)]
    pub(crate) fn is_unstarted(&self) -> bool {
        self.owner.load(Ordering::Relaxed) == UNSTARTED
    }

    /// Worker `index` runs the task from now on (as it gets its stack).
    #[inline(always)]
    pub(crate) fn adopt(&self, index: usize) {
        self.owner.store(index, Ordering::Release);
    }

    /// Sets the park token; `true` if the task was parked: the caller schedules it (the wake
    /// consumes the token).
    #[inline]
    pub(crate) fn unpark(&self) -> bool {
        // Written even when the token is already there: the release orders this caller's
        // writes before the park that consumes it, as std's `unpark` does.
        self.take_else_set(PARKED, TOKEN)
    }

    /// Consumes the park token if it is set (the task itself). A plain load first: the locked
    /// operation only when a token is there to take.
    #[inline(always)]
    pub(crate) fn take_token(&self) -> bool {
        self.bits.load(Ordering::Relaxed) & TOKEN != 0 && self.bits.fetch_and(!TOKEN, Ordering::AcqRel) & TOKEN != 0
    }

    /// The task suspended to park (its worker): `true` if it is parked now, `false` if a token
    /// was there, which this consumes: the task runs again at once.
    #[inline]
    pub(crate) fn park(&self) -> bool {
        !self.take_else_set(TOKEN, PARKED)
    }

    /// In one atomic step, clears `take` if it is set (`true`), or else sets `set` (`false`):
    /// the park token and the parked bit never stand together.
    #[inline(always)]
    fn take_else_set(&self, take: u8, set: u8) -> bool {
        let mut old = self.bits.load(Ordering::Relaxed);
        loop {
            let new = if old & take != 0 { old & !take } else { old | set };
            match self
                .bits
                .compare_exchange_weak(old, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return old & take != 0,
                Err(now) => old = now,
            }
        }
    }

    /// The task suspended to sleep (its worker).
    pub(crate) fn sleep(&self) {
        self.bits.fetch_or(SLEEPING, Ordering::AcqRel);
    }

    /// Ends a sleep early or on time; `true` if it was sleeping: the caller schedules it.
    pub(crate) fn wake_sleeper(&self) -> bool {
        self.bits.fetch_and(!SLEEPING, Ordering::AcqRel) & SLEEPING != 0
    }

    /// Asks the task to unwind at its next wait (the caller then wakes it).
    pub(crate) fn cancel(&self) {
        self.bits.fetch_or(CANCELLED, Ordering::AcqRel);
    }

    /// Whether a cancellation was asked.
    #[inline(always)]
    pub(crate) fn is_cancelled(&self) -> bool {
        self.bits.load(Ordering::Acquire) & CANCELLED != 0
    }

    /// A cancellation started unwinding the task (the task itself).
    pub(crate) fn mark_unwound(&self) {
        self.bits.fetch_or(UNWOUND, Ordering::AcqRel);
    }

    /// Whether a cancellation unwound the task: it ends cancelled.
    pub(crate) fn was_unwound(&self) -> bool {
        self.bits.load(Ordering::Acquire) & UNWOUND != 0
    }

    /// The task delivered its outcome (once): `true` if a joiner waits, whose unparker the
    /// caller now takes and wakes.
    pub(crate) fn complete(&self) -> bool {
        let old = self.bits.fetch_or(DONE, Ordering::AcqRel);
        debug_assert_eq!(old & DONE, 0, "a task completes once");
        old & JOIN_WAITING != 0
    }

    /// Whether the outcome is delivered.
    #[inline(always)]
    pub(crate) fn is_done(&self) -> bool {
        self.bits.load(Ordering::Acquire) & DONE != 0
    }

    /// The joiner, having left its unparker in the task, says it waits: `false` if the task
    /// is done already (the unparker is then dropped with the task).
    pub(crate) fn join_wait(&self) -> bool {
        let mut old = self.bits.load(Ordering::Acquire);
        loop {
            if old & DONE != 0 {
                return false;
            }
            match self
                .bits
                .compare_exchange_weak(old, old | JOIN_WAITING, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(now) => old = now,
            }
        }
    }

    /// Whether a joiner already waits (a second registration is a spurious wake-up).
    pub(crate) fn joiner_waits(&self) -> bool {
        self.bits.load(Ordering::Acquire) & JOIN_WAITING != 0
    }
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bits = self.bits.load(Ordering::Acquire);
        let names = [
            (TOKEN, "TOKEN"),
            (PARKED, "PARKED"),
            (SLEEPING, "SLEEPING"),
            (CANCELLED, "CANCELLED"),
            (UNWOUND, "UNWOUND"),
            (JOIN_WAITING, "JOIN_WAITING"),
            (DONE, "DONE"),
        ];
        let set: Vec<&str> = names.iter().filter(|(b, _)| bits & b != 0).map(|(_, n)| *n).collect();
        f.debug_struct("State")
            .field("bits", &set)
            .field("owner", &self.owner.load(Ordering::Acquire))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_before_the_park_keeps_the_task_running() {
        let s = State::new();
        assert!(!s.unpark(), "not parked: only the token is set");
        assert!(!s.unpark(), "a second token is the same token");
        assert!(!s.park(), "the token is consumed instead of parking");
        assert!(!s.take_token(), "and it is gone");
        assert!(s.park(), "without a token the task parks");
        assert!(s.unpark(), "the unpark that finds it parked schedules it");
        assert!(!s.take_token(), "the wake consumed the token");
        assert!(s.park(), "so the next park parks");
    }

    #[test]
    fn sleeps_leave_tokens_alone_and_wake_once() {
        let s = State::new();
        s.sleep();
        assert!(!s.unpark());
        assert!(s.wake_sleeper(), "the first waker schedules it");
        assert!(!s.wake_sleeper(), "the second finds it awake");
        assert!(s.take_token(), "the token set while it slept is still there");
    }

    #[test]
    fn the_join_handshake_goes_one_way_or_the_other() {
        let s = State::new();
        assert!(s.join_wait(), "the joiner waits before the end");
        assert!(s.complete(), "so the end wakes it");
        assert!(s.is_done());
        let s = State::new();
        assert!(!s.complete(), "nobody waits yet");
        assert!(!s.join_wait(), "the joiner finds it done");
    }

    #[test]
    fn cancellation_and_unwinding_are_sticky() {
        let mut s = State::new();
        s.cancel();
        s.mark_unwound();
        assert!(s.park() && s.unpark());
        assert!(s.is_cancelled() && s.was_unwound());
        s.adopt(3);
        assert_eq!(s.owner(), 3);
        s.reset();
        assert!(!s.is_cancelled() && !s.was_unwound() && s.is_unstarted());
    }
}
