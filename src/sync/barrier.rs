//! A reusable barrier that parks coroutines.

use std::fmt;
use std::sync::Mutex as StdMutex;

use super::waiters::{OnUnwind, WaitQueue, lock};
use crate::sched::park::{current_unparker, park_until};

/// A barrier like `std::sync::Barrier`: [`wait`](Self::wait) blocks until `n` parties have
/// called it, then releases them all, and can be used again for the next round (generation).
/// Exactly one party per round is told it is the leader.
///
/// A coroutine cancelled while waiting withdraws its arrival, so the round still needs `n`
/// live parties.
///
/// ```
/// use std::sync::Arc;
/// use sigcoro::sync::Barrier;
///
/// let barrier = Arc::new(Barrier::new(3));
/// let handles: Vec<_> = (0..3)
///     .map(|_| {
///         let b = Arc::clone(&barrier);
///         std::thread::spawn(move || b.wait().is_leader())
///     })
///     .collect();
/// let leaders = handles.into_iter().map(|h| h.join().unwrap());
/// assert_eq!(leaders.filter(|&leader| leader).count(), 1);
/// ```
pub struct Barrier {
    n: usize,
    state: StdMutex<State>,
}

struct State {
    /// Parties arrived in the current round.
    arrived: usize,
    /// Round number; waiters leave when it changes.
    generation: u64,
    waiters: WaitQueue,
}

/// What [`Barrier::wait`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarrierWaitResult(bool);

impl BarrierWaitResult {
    /// Whether this party completed the round (exactly one per round is the leader).
    pub fn is_leader(&self) -> bool {
        self.0
    }
}

impl Barrier {
    /// A barrier for `n` parties (`0` behaves like `1`: nobody waits).
    pub const fn new(n: usize) -> Self {
        Barrier {
            n,
            state: StdMutex::new(State {
                arrived: 0,
                generation: 0,
                waiters: WaitQueue::new(),
            }),
        }
    }

    /// Waits until all `n` parties have arrived in this round.
    pub fn wait(&self) -> BarrierWaitResult {
        let mut st = lock(&self.state);
        st.arrived += 1;
        if st.arrived >= self.n {
            st.arrived = 0;
            st.generation = st.generation.wrapping_add(1);
            st.waiters.wake_all_remove();
            return BarrierWaitResult(true);
        }
        let generation = st.generation;
        let id = st.waiters.push(current_unparker());
        drop(st);
        let guard = OnUnwind::new(|| {
            let mut st = lock(&self.state);
            if st.generation == generation {
                st.waiters.remove(id);
                st.arrived -= 1;
            }
        });
        loop {
            park_until(None, "sigcoro::sync::Barrier::wait");
            if lock(&self.state).generation != generation {
                guard.disarm();
                return BarrierWaitResult(false);
            }
        }
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier").field("n", &self.n).finish_non_exhaustive()
    }
}
