//! A wait group (crossbeam style) that parks coroutines.

use std::fmt;
use std::sync::{Arc, Mutex as StdMutex};

use super::waiters::{OnUnwind, WaitQueue, lock};
use crate::sched::park::{current_unparker, park_until};

/// Waits for a set of tasks to finish, after crossbeam's `WaitGroup`: every clone is one
/// member, dropping a clone marks it done, and [`wait`](Self::wait) drops the caller's own
/// member and waits until every other one is gone (dropped or waiting too).
///
/// ```
/// use sigcoro::sync::WaitGroup;
///
/// let wg = WaitGroup::new();
/// for _ in 0..4 {
///     let wg = wg.clone();
///     std::thread::spawn(move || {
///         // ... work ...
///         drop(wg);
///     });
/// }
/// wg.wait(); // returns once all four threads dropped their clone
/// ```
pub struct WaitGroup {
    inner: Arc<Inner>,
}

struct Inner {
    state: StdMutex<State>,
}

struct State {
    /// Live members.
    count: usize,
    /// Members waiting for `count` to reach 0.
    waiters: WaitQueue,
}

impl WaitGroup {
    /// A group with one member (this handle).
    pub fn new() -> Self {
        WaitGroup {
            inner: Arc::new(Inner {
                state: StdMutex::new(State {
                    count: 1,
                    waiters: WaitQueue::new(),
                }),
            }),
        }
    }

    /// Drops this member and waits until every member is gone.
    pub fn wait(self) {
        let inner = Arc::clone(&self.inner);
        drop(self);
        let mut st = lock(&inner.state);
        if st.count == 0 {
            return;
        }
        let id = st.waiters.push(current_unparker());
        drop(st);
        let guard = OnUnwind::new(|| {
            lock(&inner.state).waiters.remove(id);
        });
        loop {
            park_until(None, "sigcoro::sync::WaitGroup::wait");
            if lock(&inner.state).count == 0 {
                guard.disarm();
                return;
            }
        }
    }
}

impl Default for WaitGroup {
    fn default() -> Self {
        WaitGroup::new()
    }
}

impl Clone for WaitGroup {
    fn clone(&self) -> Self {
        lock(&self.inner.state).count += 1;
        WaitGroup {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl Drop for WaitGroup {
    fn drop(&mut self) {
        let mut st = lock(&self.inner.state);
        st.count -= 1;
        if st.count == 0 {
            st.waiters.wake_all_remove();
        }
    }
}

impl fmt::Debug for WaitGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = lock(&self.inner.state).count;
        f.debug_struct("WaitGroup").field("count", &count).finish()
    }
}
