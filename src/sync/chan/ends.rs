//! The ends of a [`Chan`] coming and going: the counts of senders and receivers, what the last
//! of either does (fail the other side's waiters, drop the buffered values), and the values
//! still queued when the channel itself dies.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;

use super::waitlist::Node;
use super::{Chan, wake_watchers};

/// Drops every value of `values`, even when some of their destructors panic; the first
/// panic is propagated once all are dropped (the others are discarded), as crossbeam does. A
/// plain `VecDeque` drop would abort the process at the second panicking destructor.
fn drop_values<T>(values: VecDeque<T>) {
    let mut first = None;
    for v in values {
        if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(v))) {
            first.get_or_insert(payload);
        }
    }
    // While unwinding already, a second panic would abort: the payload is dropped instead.
    if let Some(payload) = first
        && !std::thread::panicking()
    {
        std::panic::resume_unwind(payload);
    }
}

impl<T> Chan<T> {
    /// A `Sender` was cloned.
    pub(in crate::sync) fn add_sender(&self) {
        self.lock().senders += 1;
    }

    /// A `Receiver` was cloned.
    pub(in crate::sync) fn add_receiver(&self) {
        self.lock().receivers += 1;
    }

    /// A `Sender` was dropped; the last one fails every blocked receiver (the queue is empty
    /// while receivers block) and wakes the watchers (they drain, then fail).
    pub(in crate::sync) fn drop_sender(&self) {
        let mut st = self.lock();
        st.senders -= 1;
        if st.senders > 0 {
            return;
        }
        let mut wakes = Vec::new();
        while let Some(node) = st.recv_waiters.pop_front() {
            // SAFETY: just unlinked, under the lock; an empty slot means disconnected.
            wakes.push(unsafe { Node::complete(node, |_| {}) });
        }
        wake_watchers(&st.recv_watchers);
        let off = st.unlock();
        wakes.into_iter().for_each(|w| w.run(&off));
    }

    /// A `Receiver` was dropped; the last one drops the buffered values and fails every blocked
    /// sender, which gets its value back.
    pub(in crate::sync) fn drop_receiver(&self) {
        let mut st = self.lock();
        st.receivers -= 1;
        if st.receivers > 0 {
            return;
        }
        let dropped = std::mem::take(&mut st.queue);
        self.queued.store(0, Ordering::Relaxed);
        let mut wakes = Vec::new();
        while let Some(node) = st.send_waiters.pop_front() {
            // SAFETY: just unlinked, under the lock; the value left in the slot goes back.
            wakes.push(unsafe { Node::complete(node, |_| {}) });
        }
        wake_watchers(&st.send_watchers);
        let off = st.unlock();
        wakes.into_iter().for_each(|w| w.run(&off));
        drop(off);
        drop_values(dropped); // user code, outside the lock and the no-preempt region
    }
}

impl<T> Drop for Chan<T> {
    /// Values still queued (the channel dies with its last end) are dropped one by one, as in
    /// [`drop_values`].
    fn drop(&mut self) {
        let queue = std::mem::take(&mut self.state.get_mut().queue);
        drop_values(queue);
    }
}
