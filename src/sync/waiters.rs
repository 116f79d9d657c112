//! The FIFO waiter queue every primitive builds on, plus small shared helpers.
//!
//! A waiter registers an entry (its [`Unparker`]) under the primitive's internal lock, releases
//! the lock and parks; whoever changes the state either *notifies* an entry (sets its flag and
//! unparks it; the waiter re-checks its condition and keeps its place if it lost a race) or
//! *grants* it (removes it from the queue: the waiter then owns what it waited for). Entry ids
//! grow in queue order, so lookups are binary searches.

use std::collections::VecDeque;
use std::sync::Mutex as StdMutex;
use std::time::{Duration, Instant};

use crate::sched::park::Unparker;

// The primitives share waiters' unparkers across threads (their `Sync` impls rely on it).
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Unparker>();
};

/// One registered waiter.
pub(crate) struct Waiter {
    /// Unique within its queue and increasing in queue order.
    pub(crate) id: u64,
    /// Wakes the waiter.
    pub(crate) unparker: Unparker,
    /// Set by `notify_*`: a wakeup was aimed at this waiter and it has not re-checked yet.
    pub(crate) notified: bool,
}

/// A FIFO queue of parked waiters; always used under its primitive's internal lock.
pub(crate) struct WaitQueue {
    waiters: VecDeque<Waiter>,
    next_id: u64,
}

impl WaitQueue {
    /// An empty queue (no allocation until the first waiter).
    pub(crate) const fn new() -> Self {
        WaitQueue {
            waiters: VecDeque::new(),
            next_id: 1,
        }
    }

    /// Appends a waiter and returns its id (never 0).
    pub(crate) fn push(&mut self, unparker: Unparker) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.waiters.push_back(Waiter {
            id,
            unparker,
            notified: false,
        });
        id
    }

    /// Number of registered waiters.
    pub(crate) fn len(&self) -> usize {
        self.waiters.len()
    }

    /// Whether no waiter is registered.
    pub(crate) fn is_empty(&self) -> bool {
        self.waiters.is_empty()
    }

    fn index(&self, id: u64) -> Option<usize> {
        self.waiters.binary_search_by_key(&id, |w| w.id).ok()
    }

    /// Whether the waiter is still queued (for grant-style queues: not granted yet).
    pub(crate) fn contains(&self, id: u64) -> bool {
        self.index(id).is_some()
    }

    /// Whether the waiter is queued and has been notified.
    pub(crate) fn is_notified(&self, id: u64) -> bool {
        self.index(id).is_some_and(|i| self.waiters[i].notified)
    }

    /// Removes a waiter, returning its entry if it was still queued.
    pub(crate) fn remove(&mut self, id: u64) -> Option<Waiter> {
        let i = self.index(id)?;
        self.waiters.remove(i)
    }

    /// Removes and returns the oldest waiter (grant-style handoff).
    pub(crate) fn pop_front(&mut self) -> Option<Waiter> {
        self.waiters.pop_front()
    }

    /// The oldest waiter, if any.
    pub(crate) fn front(&self) -> Option<&Waiter> {
        self.waiters.front()
    }

    /// Marks the oldest waiter not yet notified and returns a handle to wake it; the caller
    /// unparks it after releasing its lock (a stale unpark only causes a spurious wakeup).
    #[must_use = "the returned unparker must be unparked"]
    pub(crate) fn notify_one(&mut self) -> Option<Unparker> {
        let w = self.waiters.iter_mut().find(|w| !w.notified)?;
        w.notified = true;
        Some(w.unparker.clone())
    }

    /// Marks every waiter notified and wakes them all.
    pub(crate) fn notify_all(&mut self) {
        for w in self.waiters.iter_mut() {
            w.notified = true;
            w.unparker.unpark();
        }
    }

    /// Removes every waiter and wakes it (grant-all).
    pub(crate) fn wake_all_remove(&mut self) {
        for w in self.waiters.drain(..) {
            w.unparker.unpark();
        }
    }
}

/// Unparks the handle if there is one (used after a lock is released).
pub(crate) fn unpark(u: Option<Unparker>) {
    if let Some(u) = u {
        u.unpark();
    }
}

/// Locks an internal std mutex, with preemption held off while it is held (a coroutine
/// preempted holding it would block every coroutine of its worker that wants it). Internal
/// critical sections run no user code, so poisoning carries no information and is ignored.
pub(crate) fn lock<T>(m: &StdMutex<T>) -> crate::ground::LockGuard<'_, T> {
    crate::ground::lock(m)
}

/// The deadline `timeout` from now; `None` (wait forever) if it overflows `Instant`.
pub(crate) fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// Whether `deadline` has passed (never, for `None`).
#[inline]
pub(crate) fn expired(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

/// Runs a closure when dropped, unless disarmed: the clean-up that keeps a wait queue
/// consistent if `park_until` unwinds (a cancelled coroutine). The closure must not park.
pub(crate) struct OnUnwind<F: FnMut()> {
    f: Option<F>,
}

impl<F: FnMut()> OnUnwind<F> {
    /// Arms the guard.
    #[inline(always)]
    pub(crate) fn new(f: F) -> Self {
        OnUnwind { f: Some(f) }
    }

    /// Disarms the guard: the waiter left its queue on a normal path.
    #[inline(always)]
    pub(crate) fn disarm(mut self) {
        self.f = None;
    }
}

impl<F: FnMut()> Drop for OnUnwind<F> {
    #[inline(always)]
    fn drop(&mut self) {
        if let Some(f) = self.f.as_mut() {
            f();
        }
    }
}
