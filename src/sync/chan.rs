//! The shared state behind [`channel`](super::channel)'s `Sender` and `Receiver`: one internal
//! lock over the queue, the end counts, the blocked waiters and the `Select` watchers.

use std::collections::VecDeque;
use std::sync::Mutex as StdMutex;
use std::time::Instant;

use super::error::{RecvTimeoutError, SendTimeoutError, TryRecvError, TrySendError};
use super::select::{Side, Watch};
use super::waitq::{OnUnwind, WaitQueue, expired, lock, unpark};
use crate::sched::park::{Unparker, current_unparker, park_until};

/// The shared channel: one internal lock over the queue, the counts and the waiters.
pub(super) struct Chan<T> {
    pub(super) cap: Option<usize>,
    state: StdMutex<State<T>>,
}

struct State<T> {
    queue: VecDeque<T>,
    /// Zero capacity only, parallel to `queue`: the id (in `send_waiters`) of the blocked sender
    /// that offered each value, or 0 for a value `try_send` handed to a waiting receiver.
    owners: VecDeque<u64>,
    senders: usize,
    receivers: usize,
    /// Blocked receivers (notify style: notified when a value arrives).
    recv_waiters: WaitQueue,
    /// Blocked senders. Buffered channels: notified when room appears. Zero capacity: each
    /// has a value in `queue`; a receiver taking it removes the entry (grant style).
    send_waiters: WaitQueue,
    /// `Select`s waiting to receive / send: all woken on every change that may concern them.
    recv_watchers: Vec<(u64, Unparker)>,
    send_watchers: Vec<(u64, Unparker)>,
}

impl<T> State<T> {
    /// Receivers waiting right now, not counting the `Select` with id `exclude`.
    fn waiting_receivers(&self, exclude: u64) -> usize {
        let watching = self.recv_watchers.iter().filter(|(id, _)| *id != exclude).count();
        self.recv_waiters.len() + watching
    }
}

fn wake_watchers(watchers: &[(u64, Unparker)]) {
    for (_, u) in watchers {
        u.unpark();
    }
}

impl<T> Chan<T> {
    /// A channel with one sender and one receiver; `cap` is `None` for unbounded.
    pub(super) fn new(cap: Option<usize>) -> Self {
        Chan {
            cap,
            state: StdMutex::new(State {
                queue: VecDeque::with_capacity(cap.unwrap_or(0).min(1024)),
                owners: VecDeque::new(),
                senders: 1,
                receivers: 1,
                recv_waiters: WaitQueue::new(),
                send_waiters: WaitQueue::new(),
                recv_watchers: Vec::new(),
                send_watchers: Vec::new(),
            }),
        }
    }

    /// A `Sender` was cloned.
    pub(super) fn add_sender(&self) {
        lock(&self.state).senders += 1;
    }

    /// A `Receiver` was cloned.
    pub(super) fn add_receiver(&self) {
        lock(&self.state).receivers += 1;
    }

    /// A `Sender` was dropped; the last one wakes every receiver (they drain, then fail).
    pub(super) fn drop_sender(&self) {
        let mut st = lock(&self.state);
        st.senders -= 1;
        if st.senders == 0 {
            st.recv_waiters.notify_all();
            wake_watchers(&st.recv_watchers);
        }
    }

    /// A `Receiver` was dropped; the last one wakes every sender so that they fail.
    pub(super) fn drop_receiver(&self) {
        let mut st = lock(&self.state);
        st.receivers -= 1;
        if st.receivers > 0 {
            return;
        }
        // Nobody can receive any more: drop buffered values (outside the lock), except the
        // values blocked senders offered on a rendezvous channel, which go back to them.
        let mut dropped = std::mem::take(&mut st.queue);
        if self.is_zero() {
            let owners = std::mem::take(&mut st.owners);
            let values = std::mem::take(&mut dropped);
            for (v, owner) in values.into_iter().zip(owners) {
                if owner == 0 {
                    dropped.push_back(v);
                } else {
                    st.queue.push_back(v);
                    st.owners.push_back(owner);
                }
            }
        }
        st.send_waiters.notify_all();
        wake_watchers(&st.send_watchers);
        drop(st);
        drop(dropped);
    }

    fn is_zero(&self) -> bool {
        self.cap == Some(0)
    }

    /// Whether a value may be queued now (ignoring disconnection).
    fn has_room(&self, st: &State<T>, exclude: u64) -> bool {
        match self.cap {
            None => true,
            Some(0) => st.waiting_receivers(exclude) > st.queue.len(),
            Some(cap) => st.queue.len() < cap,
        }
    }

    /// Queues `v` (offered by blocked sender `owner` on a zero-capacity channel, else 0) and
    /// returns the blocked receiver to wake once the lock is released.
    fn push(&self, st: &mut State<T>, v: T, owner: u64) -> Option<Unparker> {
        st.queue.push_back(v);
        if self.is_zero() {
            st.owners.push_back(owner);
        }
        wake_watchers(&st.recv_watchers);
        st.recv_waiters.notify_one()
    }

    /// Takes the oldest value, with the sender to wake once the lock is released.
    fn pop(&self, st: &mut State<T>) -> Option<(T, Option<Unparker>)> {
        let v = st.queue.pop_front()?;
        let wake = if self.is_zero() {
            match st.owners.pop_front() {
                Some(owner) if owner != 0 => st.send_waiters.remove(owner).map(|w| w.unparker),
                _ => None,
            }
        } else {
            st.send_waiters.notify_one()
        };
        wake_watchers(&st.send_watchers);
        Some((v, wake))
    }

    /// Takes back the value blocked sender `id` offered on a zero-capacity channel.
    fn withdraw(st: &mut State<T>, id: u64) -> Option<T> {
        let i = st.owners.iter().position(|&o| o == id)?;
        st.owners.remove(i);
        st.queue.remove(i)
    }

    pub(super) fn try_send(&self, v: T, exclude: u64) -> Result<(), TrySendError<T>> {
        let mut st = lock(&self.state);
        if st.receivers == 0 {
            return Err(TrySendError::Disconnected(v));
        }
        if !self.has_room(&st, exclude) {
            return Err(TrySendError::Full(v));
        }
        let wake = self.push(&mut st, v, 0);
        drop(st);
        unpark(wake);
        Ok(())
    }

    pub(super) fn send(&self, v: T, deadline: Option<Instant>) -> Result<(), SendTimeoutError<T>> {
        let mut st = lock(&self.state);
        if st.receivers == 0 {
            return Err(SendTimeoutError::Disconnected(v));
        }
        // A rendezvous send waits for its value to be taken, unless it may not wait at all:
        // then it behaves like `try_send`.
        let may_queue = !self.is_zero() || expired(deadline);
        if may_queue && self.has_room(&st, 0) {
            let wake = self.push(&mut st, v, 0);
            drop(st);
            unpark(wake);
            return Ok(());
        }
        if expired(deadline) {
            return Err(SendTimeoutError::Timeout(v));
        }
        let id = st.send_waiters.push(current_unparker());
        if self.is_zero() {
            // Rendezvous: offer the value, then wait until a receiver has taken it.
            let wake = self.push(&mut st, v, id);
            drop(st);
            unpark(wake);
            return self.wait_offer_taken(id, deadline);
        }
        drop(st);
        let guard = OnUnwind::new(|| self.leave(Side::Send, id));
        loop {
            park_until(deadline);
            let mut st = lock(&self.state);
            let disconnected = st.receivers == 0;
            if !disconnected && self.has_room(&st, 0) {
                st.send_waiters.remove(id);
                let wake = self.push(&mut st, v, 0);
                drop(st);
                guard.disarm();
                unpark(wake);
                return Ok(());
            }
            if disconnected || expired(deadline) {
                drop(st);
                guard.disarm();
                self.leave(Side::Send, id);
                return Err(if disconnected {
                    SendTimeoutError::Disconnected(v)
                } else {
                    SendTimeoutError::Timeout(v)
                });
            }
            st.send_waiters.rearm(id);
        }
    }

    fn wait_offer_taken(&self, id: u64, deadline: Option<Instant>) -> Result<(), SendTimeoutError<T>> {
        let guard = OnUnwind::new(|| {
            let mut st = lock(&self.state);
            let value = st.send_waiters.remove(id).and_then(|_| Self::withdraw(&mut st, id));
            drop(st);
            drop(value);
        });
        loop {
            park_until(deadline);
            let mut st = lock(&self.state);
            if !st.send_waiters.contains(id) {
                drop(st);
                guard.disarm();
                return Ok(());
            }
            let disconnected = st.receivers == 0;
            if disconnected || expired(deadline) {
                st.send_waiters.remove(id);
                let v = Self::withdraw(&mut st, id).expect("an offered value is in the queue");
                drop(st);
                guard.disarm();
                return Err(if disconnected {
                    SendTimeoutError::Disconnected(v)
                } else {
                    SendTimeoutError::Timeout(v)
                });
            }
        }
    }

    pub(super) fn try_recv(&self) -> Result<T, TryRecvError> {
        let mut st = lock(&self.state);
        if let Some((v, wake)) = self.pop(&mut st) {
            drop(st);
            unpark(wake);
            return Ok(v);
        }
        Err(if st.senders == 0 {
            TryRecvError::Disconnected
        } else {
            TryRecvError::Empty
        })
    }

    pub(super) fn recv(&self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        let mut st = lock(&self.state);
        if let Some((v, wake)) = self.pop(&mut st) {
            drop(st);
            unpark(wake);
            return Ok(v);
        }
        if st.senders == 0 {
            return Err(RecvTimeoutError::Disconnected);
        }
        if expired(deadline) {
            return Err(RecvTimeoutError::Timeout);
        }
        let id = st.recv_waiters.push(current_unparker());
        if self.is_zero() {
            // A receiver is waiting now: rendezvous sends in `Select`s may proceed.
            wake_watchers(&st.send_watchers);
        }
        drop(st);
        let guard = OnUnwind::new(|| self.leave(Side::Recv, id));
        loop {
            park_until(deadline);
            let mut st = lock(&self.state);
            if let Some((v, wake)) = self.pop(&mut st) {
                st.recv_waiters.remove(id);
                drop(st);
                guard.disarm();
                unpark(wake);
                return Ok(v);
            }
            let disconnected = st.senders == 0;
            if disconnected || expired(deadline) {
                drop(st);
                guard.disarm();
                self.leave(Side::Recv, id);
                return Err(if disconnected {
                    RecvTimeoutError::Disconnected
                } else {
                    RecvTimeoutError::Timeout
                });
            }
            st.recv_waiters.rearm(id);
        }
    }

    /// A blocked (notify-style) waiter leaves without completing: if a wakeup had been aimed at
    /// it, pass it on so the value or room it announced is not stranded.
    fn leave(&self, side: Side, id: u64) {
        let mut st = lock(&self.state);
        let queue = match side {
            Side::Recv => &mut st.recv_waiters,
            Side::Send => &mut st.send_waiters,
        };
        let baton = match queue.remove(id) {
            Some(w) if w.notified => queue.notify_one(),
            _ => None,
        };
        drop(st);
        unpark(baton);
    }

    pub(super) fn len(&self) -> usize {
        if self.is_zero() {
            0
        } else {
            lock(&self.state).queue.len()
        }
    }
}

impl<T> Watch for Chan<T> {
    fn watch(&self, side: Side, id: u64, unparker: &Unparker) {
        let mut st = lock(&self.state);
        match side {
            Side::Recv => {
                st.recv_watchers.push((id, unparker.clone()));
                if self.is_zero() {
                    wake_watchers(&st.send_watchers);
                }
            }
            Side::Send => st.send_watchers.push((id, unparker.clone())),
        }
    }

    fn unwatch(&self, side: Side, id: u64) {
        let mut st = lock(&self.state);
        let list = match side {
            Side::Recv => &mut st.recv_watchers,
            Side::Send => &mut st.send_watchers,
        };
        if let Some(i) = list.iter().position(|(w, _)| *w == id) {
            list.swap_remove(i);
        }
    }
}
