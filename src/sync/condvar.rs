//! A condition variable for this module's [`Mutex`](super::Mutex).

use std::fmt;
use std::sync::Mutex as StdMutex;
use std::time::{Duration, Instant};

use super::mutex::MutexGuard;
use super::waiters::{OnUnwind, WaitQueue, deadline_after, expired, lock, unpark};
use crate::sched::park::{current_unparker, park_until};

/// A condition variable like `std::sync::Condvar`, working with [`Mutex`](super::Mutex) and
/// parking coroutines.
///
/// Waiters are woken in FIFO order; each [`notify_one`](Self::notify_one) wakes a different
/// waiter. Waits do not return spuriously (only on a notification or a timeout), but as with
/// any condition variable the condition should still be checked in a loop, or with
/// [`wait_while`](Self::wait_while), since another holder may change it first.
///
/// ```
/// use std::sync::Arc;
/// use sigcoro::sync::{Condvar, Mutex};
///
/// let pair = Arc::new((Mutex::new(false), Condvar::new()));
/// let pair2 = Arc::clone(&pair);
/// std::thread::spawn(move || {
///     let (ready, cv) = &*pair2;
///     *ready.lock() = true;
///     cv.notify_one();
/// });
/// let (ready, cv) = &*pair;
/// let guard = cv.wait_while(ready.lock(), |ready| !*ready);
/// assert!(*guard);
/// ```
pub struct Condvar {
    waiters: StdMutex<WaitQueue>,
}

/// Whether a timed wait on a [`Condvar`] ended by timing out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitTimeoutResult(bool);

impl WaitTimeoutResult {
    /// Whether the wait timed out (rather than being notified or seeing its condition met).
    pub fn timed_out(&self) -> bool {
        self.0
    }
}

impl Condvar {
    /// A condition variable with no waiters.
    pub const fn new() -> Self {
        Condvar {
            waiters: StdMutex::new(WaitQueue::new()),
        }
    }

    /// Unlocks the guard's mutex, waits for a notification, and locks the mutex again.
    pub fn wait<'a, T: ?Sized>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        self.wait_until(guard, None).0
    }

    /// Waits while `condition` holds, re-checking it after every notification.
    pub fn wait_while<'a, T: ?Sized, F>(&self, mut guard: MutexGuard<'a, T>, mut condition: F) -> MutexGuard<'a, T>
    where
        F: FnMut(&mut T) -> bool,
    {
        while condition(&mut *guard) {
            guard = self.wait(guard);
        }
        guard
    }

    /// Like [`wait`](Self::wait), but gives up after `timeout`.
    pub fn wait_timeout<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
    ) -> (MutexGuard<'a, T>, WaitTimeoutResult) {
        let (guard, timed_out) = self.wait_until(guard, deadline_after(timeout));
        (guard, WaitTimeoutResult(timed_out))
    }

    /// Like [`wait_while`](Self::wait_while), but gives up after `timeout`; the result says
    /// whether the condition still held when the time ran out.
    pub fn wait_timeout_while<'a, T: ?Sized, F>(
        &self,
        mut guard: MutexGuard<'a, T>,
        timeout: Duration,
        mut condition: F,
    ) -> (MutexGuard<'a, T>, WaitTimeoutResult)
    where
        F: FnMut(&mut T) -> bool,
    {
        let deadline = deadline_after(timeout);
        loop {
            if !condition(&mut *guard) {
                return (guard, WaitTimeoutResult(false));
            }
            if expired(deadline) {
                return (guard, WaitTimeoutResult(true));
            }
            guard = self.wait_until(guard, deadline).0;
        }
    }

    /// Wakes the oldest waiter not woken yet, if any.
    pub fn notify_one(&self) {
        let next = lock(&self.waiters).notify_one();
        unpark(next);
    }

    /// Wakes every current waiter.
    pub fn notify_all(&self) {
        lock(&self.waiters).notify_all();
    }

    /// Returns the re-locked guard and whether the wait timed out.
    fn wait_until<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, T>,
        deadline: Option<Instant>,
    ) -> (MutexGuard<'a, T>, bool) {
        let mutex = guard.mutex;
        // Register before unlocking, so a notification sent right after the unlock finds us.
        let id = lock(&self.waiters).push(current_unparker());
        drop(guard);
        let leave = OnUnwind::new(|| self.leave(id));
        let timed_out = loop {
            park_until(deadline, "sigcoro::sync::Condvar::wait");
            let mut q = lock(&self.waiters);
            if q.is_notified(id) {
                q.remove(id);
                break false;
            }
            if expired(deadline) {
                q.remove(id);
                break true;
            }
        };
        leave.disarm();
        (mutex.lock(), timed_out)
    }

    /// A waiter unwinds out of its wait: leave the queue, passing on a notification it got.
    fn leave(&self, id: u64) {
        let mut q = lock(&self.waiters);
        let baton = match q.remove(id) {
            Some(w) if w.notified => q.notify_one(),
            _ => None,
        };
        drop(q);
        unpark(baton);
    }
}

impl Default for Condvar {
    fn default() -> Self {
        Condvar::new()
    }
}

impl fmt::Debug for Condvar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("Condvar { .. }")
    }
}
