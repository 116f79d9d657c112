//! A worker's timers: a binary heap of deadlines.
//!
//! Each entry holds its task and the task's `wait_seq` from when it was armed; a task that
//! stopped waiting has moved on to another number, so its stale timers fire into nothing and
//! are never searched for or removed early. A million sleepers cost a million 40-byte entries.

use super::task::Task;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Instant;

/// What a timer wakes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TimerKind {
    /// A `park` with a deadline: sets the park token.
    Park,
    /// A `sleep`: ends it.
    Sleep,
}

struct Entry {
    deadline: Instant,
    order: u64,
    seq: u64,
    kind: TimerKind,
    task: Arc<Task>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.deadline, self.order).cmp(&(other.deadline, other.order))
    }
}

/// The heap; equal deadlines fire in the order they were armed.
#[derive(Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<Entry>>,
    armed: u64,
}

impl Timers {
    pub(crate) fn push(&mut self, deadline: Instant, seq: u64, kind: TimerKind, task: Arc<Task>) {
        self.armed += 1;
        self.heap.push(Reverse(Entry {
            deadline,
            order: self.armed,
            seq,
            kind,
            task,
        }));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|e| e.0.deadline)
    }

    /// The next timer due at `now`, if any.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<(u64, TimerKind, Arc<Task>)> {
        if self.heap.peek()?.0.deadline > now {
            return None;
        }
        let Reverse(e) = self.heap.pop()?;
        Some((e.seq, e.kind, e.task))
    }
}
