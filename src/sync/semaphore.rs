//! A counting semaphore that parks coroutines.

use std::fmt;
use std::sync::Mutex as StdMutex;
use std::time::{Duration, Instant};

use super::waiters::{OnUnwind, WaitQueue, deadline_after, expired, lock};
use crate::sched::park::{current_unparker, park_until};

/// A counting semaphore, after tokio's: [`acquire`](Self::acquire) takes a permit (waiting
/// while none is left) and returns a [`SemaphorePermit`] that gives it back when dropped.
///
/// Strictly FIFO: a released permit is handed to the oldest waiter, and nobody overtakes a
/// waiter (a `try_acquire` fails while others wait).
///
/// ```
/// use std::sync::Arc;
/// use sigcoro::sync::Semaphore;
///
/// let sem = Arc::new(Semaphore::new(2));
/// let a = sem.acquire();
/// let b = sem.acquire();
/// assert!(sem.try_acquire().is_none());
/// drop(a);
/// assert_eq!(sem.available_permits(), 1);
/// # drop(b);
/// ```
pub struct Semaphore {
    state: StdMutex<State>,
}

struct State {
    permits: usize,
    /// Waiters; an entry removed by a releaser has been handed a permit.
    waiters: WaitQueue,
}

impl State {
    /// Hands available permits to the oldest waiters.
    fn dispatch(&mut self) {
        while self.permits > 0 {
            let Some(w) = self.waiters.pop_front() else { break };
            self.permits -= 1;
            w.unparker.unpark();
        }
    }
}

impl Semaphore {
    /// A semaphore with `permits` permits.
    pub const fn new(permits: usize) -> Self {
        Semaphore {
            state: StdMutex::new(State {
                permits,
                waiters: WaitQueue::new(),
            }),
        }
    }

    /// Takes a permit, waiting while none is available.
    pub fn acquire(&self) -> SemaphorePermit<'_> {
        self.acquire_until(None)
            .expect("an acquire without deadline gets a permit")
    }

    /// Takes a permit if one is available and nobody is waiting.
    pub fn try_acquire(&self) -> Option<SemaphorePermit<'_>> {
        let mut st = lock(&self.state);
        if st.permits > 0 && st.waiters.is_empty() {
            st.permits -= 1;
            Some(SemaphorePermit { sem: self })
        } else {
            None
        }
    }

    /// Takes a permit, waiting at most `timeout`.
    pub fn acquire_timeout(&self, timeout: Duration) -> Option<SemaphorePermit<'_>> {
        self.acquire_until(deadline_after(timeout))
    }

    /// Adds `n` permits (waking waiters they can serve).
    pub fn add_permits(&self, n: usize) {
        let mut st = lock(&self.state);
        st.permits = st.permits.checked_add(n).expect("semaphore permit count overflow");
        st.dispatch();
    }

    /// Permits available right now.
    pub fn available_permits(&self) -> usize {
        lock(&self.state).permits
    }

    fn acquire_until(&self, deadline: Option<Instant>) -> Option<SemaphorePermit<'_>> {
        let mut st = lock(&self.state);
        if st.permits > 0 && st.waiters.is_empty() {
            st.permits -= 1;
            return Some(SemaphorePermit { sem: self });
        }
        if expired(deadline) {
            return None;
        }
        let id = st.waiters.push(current_unparker());
        drop(st);
        let guard = OnUnwind::new(|| {
            let mut st = lock(&self.state);
            if st.waiters.remove(id).is_none() {
                // Handed a permit meanwhile: give it back.
                st.permits += 1;
                st.dispatch();
            }
        });
        loop {
            park_until(deadline, "sigcoro::sync::Semaphore::acquire");
            let mut st = lock(&self.state);
            if !st.waiters.contains(id) {
                drop(st);
                guard.disarm();
                return Some(SemaphorePermit { sem: self });
            }
            if expired(deadline) {
                st.waiters.remove(id);
                drop(st);
                guard.disarm();
                return None;
            }
        }
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = lock(&self.state);
        f.debug_struct("Semaphore")
            .field("permits", &st.permits)
            .field("waiters", &st.waiters.len())
            .finish()
    }
}

/// A permit from a [`Semaphore`]; returns it when dropped.
#[must_use = "the permit is released at once if unused"]
pub struct SemaphorePermit<'a> {
    sem: &'a Semaphore,
}

impl SemaphorePermit<'_> {
    /// Consumes the permit without returning it: the semaphore has one permit less for good.
    pub fn forget(self) {
        std::mem::forget(self);
    }
}

impl Drop for SemaphorePermit<'_> {
    fn drop(&mut self) {
        self.sem.add_permits(1);
    }
}

impl fmt::Debug for SemaphorePermit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("SemaphorePermit { .. }")
    }
}
