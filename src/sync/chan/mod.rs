//! The shared state behind [`channel`](super::channel)'s `Sender` and `Receiver`: one internal
//! spin lock over the queue, the end counts, the blocked waiters and the `Select` watchers.
//!
//! Blocked senders and receivers wait in [`WaitList`]s, grant style: whoever completes a blocked
//! operation does all of it under the lock (a sender hands its value straight into the oldest
//! blocked receiver's slot; a receiver making room moves the oldest blocked sender's value into
//! the queue, or on a rendezvous channel takes it) and the woken waiter returns without locking
//! again. Invariants, under the lock:
//!
//! - receivers block only while nothing can be received: `recv_waiters` is non-empty only while
//!   `queue` and (rendezvous) `send_waiters` are empty, so a value sent then always goes to the
//!   oldest blocked receiver, and values come out in the order they went in;
//! - on a buffered channel, senders block only while the queue is full;
//! - a blocked rendezvous sender's value stays in its node's slot until a receiver takes it;
//!   `queue` holds only values that needed no blocked sender (a value handed back by a
//!   cancelled receiver, or a selection's granted send whose receiver left), and receivers
//!   take those first. Values a sender leaves for a selection it claimed wait in `deliveries`
//!   (see `select_side.rs`).
//!
//! A receiver cancelled right after a value was handed to it gives the value back: to the next
//! blocked receiver, else to the front of the queue (it was the oldest), so nothing is lost; it
//! may then briefly leave a buffered channel one value over its capacity.
//!
//! **The spinner slot.** A coroutine about to wait on a buffered or unbounded channel that
//! looks empty (`queued`, a count kept outside the lock) first puts its node in `spinner`
//! *without* taking the lock, yields once, and looks at its node: in a ping-pong its peer has
//! handed it the value meanwhile, and the receive took no lock at all. A sender, under the
//! lock, serves the spinner like a blocked receiver (after those, and only while the queue is
//! empty, so values still come out in order). A spinner that was not served takes the lock
//! and leaves the slot (if its node is still there: a later spinner may have replaced it),
//! then receives as usual. Every write of `spinner` but the announcement happens under the
//! lock, and a spinner leaves only under the lock or once a completer (under the lock) has
//! taken its node out of the slot, so a sender never sees the node of a receiver that left:
//! the leaving receiver's own writes come after its announcement in `spinner`'s order, and
//! the sender's lock comes after the leaving. The slot holds one spinner, the latest: an
//! earlier one it replaced finds the slot not its own and links behind the blocked receivers.
//! Rendezvous receivers link their node as usual: a rendezvous send must find them.

use std::collections::VecDeque;
use std::pin::pin;
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::time::Instant;

use super::error::{RecvTimeoutError, SendTimeoutError, TryRecvError, TrySendError};
use super::select::Side;
use super::spin::{SpinGuard, SpinLock};
use super::waiters::{OnUnwind, expired};
use waitlist::{Node, WaitList, Wake, spinning_task};

mod ends;
mod select_side;
mod timer;
pub(super) mod waitlist;

use select_side::{Claim, Delivery, Watcher};
use timer::Timer;

/// The shared channel: one internal lock over the queue, the counts and the waiters.
pub(super) struct Chan<T> {
    pub(super) cap: Option<usize>,
    state: SpinLock<State<T>>,
    /// `queue.len()` as of the last change, stored under the lock and read without it: a hint
    /// for receivers deciding whether to spin (see the module's comment).
    queued: AtomicUsize,
    /// A coroutine's node, announced without the lock while it spins; taken under the lock.
    spinner: AtomicPtr<Node<T>>,
    /// Whether this is a timer channel (`State::timer` is set), read without the lock.
    is_timer: bool,
    /// Whether this is a rendezvous or a timer channel: their receivers take slow paths.
    special: bool,
}

struct State<T> {
    queue: VecDeque<T>,
    senders: usize,
    receivers: usize,
    /// Blocked receivers, waiting for a value in their slot.
    recv_waiters: WaitList<T>,
    /// Blocked senders, their values in their slots.
    send_waiters: WaitList<T>,
    /// `Select`s waiting to receive / send: all woken on every change that may concern them.
    recv_watchers: Vec<Watcher>,
    send_watchers: Vec<Watcher>,
    /// Sends that selections were granted and have not completed yet (their values are still
    /// being computed): counted as queued values by `has_room`.
    reserved: usize,
    /// Receivers that claimed a waiting selection's send (rendezvous channels only) and wait
    /// for its value.
    claims: Vec<Claim<T>>,
    /// Values sent to selections whose receive arm their senders claimed, by selection id
    /// (rendezvous channels only); each selection takes its own when it wakes.
    deliveries: Vec<Delivery<T>>,
    /// The schedule of a timer channel (see `timer.rs`).
    timer: Option<Timer<T>>,
}

#[inline]
fn wake_watchers(watchers: &[Watcher]) {
    for w in watchers {
        w.unparker.unpark();
    }
}

impl<T> State<T> {
    /// Hands `v` to the oldest blocked receiver, else to the spinner if the queue is empty.
    #[inline(always)]
    fn hand_off(&mut self, v: T, spinner: &AtomicPtr<Node<T>>) -> Result<Wake, T> {
        let node = match self.recv_waiters.pop_front() {
            Some(node) => node,
            None if self.queue.is_empty() => {
                // Acquire: the node's contents, written before its owner announced it.
                let Some(node) = ptr::NonNull::new(spinner.load(Ordering::Acquire)) else {
                    return Err(v);
                };
                spinner.store(ptr::null_mut(), Ordering::Relaxed);
                node
            }
            None => return Err(v),
        };
        // SAFETY: just unlinked (or taken out of the spinner slot), under the lock.
        Ok(unsafe { Node::complete(node, |slot| *slot = Some(v)) })
    }

    /// Queues `v` at the back.
    fn enqueue(&mut self, v: T, queued: &AtomicUsize) {
        self.queue.push_back(v);
        queued.store(self.queue.len(), Ordering::Relaxed);
        wake_watchers(&self.recv_watchers);
    }
}

/// Unlocks, then wakes (with preemption still held off).
#[inline(always)]
fn unlock_and_wake<T>(st: SpinGuard<'_, State<T>>, wake: Wake) {
    let off = st.unlock();
    wake.run(&off);
}

impl<T> Chan<T> {
    /// A channel with one sender and one receiver; `cap` is `None` for unbounded.
    pub(super) fn new(cap: Option<usize>) -> Self {
        Chan {
            cap,
            state: SpinLock::new(State {
                queue: VecDeque::with_capacity(cap.unwrap_or(0).min(1024)),
                senders: 1,
                receivers: 1,
                recv_waiters: WaitList::new(),
                send_waiters: WaitList::new(),
                recv_watchers: Vec::new(),
                send_watchers: Vec::new(),
                reserved: 0,
                claims: Vec::new(),
                deliveries: Vec::new(),
                timer: None,
            }),
            queued: AtomicUsize::new(0),
            spinner: AtomicPtr::new(ptr::null_mut()),
            is_timer: false,
            special: cap == Some(0),
        }
    }

    #[inline]
    fn lock(&self) -> SpinGuard<'_, State<T>> {
        self.state.lock()
    }

    fn is_zero(&self) -> bool {
        self.cap == Some(0)
    }

    /// Whether a value may be queued now (nobody blocked in `recv`; ignoring disconnection).
    /// Sends granted to selections count as queued. Never on a rendezvous channel: a value
    /// goes to a receiver there (a blocked one, or a selection it claims).
    fn has_room(&self, st: &State<T>) -> bool {
        match self.cap {
            None => true,
            Some(0) => false,
            Some(cap) => st.queue.len() + st.reserved < cap,
        }
    }

    /// Takes the oldest value, with the blocked sender to wake once the lock is released.
    #[inline(always)]
    fn pop(&self, st: &mut State<T>) -> Option<(T, Wake)> {
        if st.queue.is_empty() && st.send_waiters.len() == 0 {
            return st.timer.as_mut().and_then(Timer::take_due).map(|v| (v, Wake::NONE));
        }
        self.pop_some(st)
    }

    #[inline(always)]
    fn pop_some(&self, st: &mut State<T>) -> Option<(T, Wake)> {
        let (v, wake) = match st.queue.pop_front() {
            Some(v) => {
                let mut wake = Wake::NONE;
                if let Some(cap) = self.cap
                    && cap > 0
                    && st.queue.len() + st.reserved < cap
                    && let Some(node) = st.send_waiters.pop_front()
                {
                    // Room appeared: it goes to the oldest blocked sender's value.
                    let queue = &mut st.queue;
                    // SAFETY: just unlinked, under the lock.
                    wake = unsafe { Node::complete(node, |slot| queue.extend(slot.take())) };
                    wake_watchers(&st.recv_watchers);
                }
                self.queued.store(st.queue.len(), Ordering::Relaxed);
                (v, wake)
            }
            None if self.is_zero() => {
                let node = st.send_waiters.pop_front()?;
                let mut v = None;
                // SAFETY: just unlinked, under the lock; an empty slot tells the sender its
                // value was taken.
                let wake = unsafe { Node::complete(node, |slot| v = slot.take()) };
                (v.expect("a blocked sender's value is in its slot"), wake)
            }
            None => return None,
        };
        wake_watchers(&st.send_watchers);
        Some((v, wake))
    }

    pub(super) fn try_send(&self, v: T) -> Result<(), TrySendError<T>> {
        let mut st = self.lock();
        if st.receivers == 0 {
            return Err(TrySendError::Disconnected(v));
        }
        let v = match st.hand_off(v, &self.spinner) {
            Ok(wake) => {
                unlock_and_wake(st, wake);
                return Ok(());
            }
            Err(v) => v,
        };
        if self.is_zero() {
            return self.send_to_selection(&mut st, v).map_err(TrySendError::Full);
        }
        if !self.has_room(&st) {
            return Err(TrySendError::Full(v));
        }
        st.enqueue(v, &self.queued);
        Ok(())
    }

    #[inline(always)]
    pub(super) fn send(&self, v: T, deadline: Option<Instant>) -> Result<(), SendTimeoutError<T>> {
        let mut st = self.lock();
        if st.receivers == 0 {
            return Err(SendTimeoutError::Disconnected(v));
        }
        let v = match st.hand_off(v, &self.spinner) {
            Ok(wake) => {
                unlock_and_wake(st, wake);
                return Ok(());
            }
            Err(v) => v,
        };
        // With no receiver blocked, a rendezvous send waits for one, unless it may not wait at
        // all: then it behaves like `try_send`.
        if self.has_room(&st) {
            st.enqueue(v, &self.queued);
            return Ok(());
        }
        let v = if self.is_zero() && expired(deadline) {
            // It may not wait: as `try_send`, it goes to a waiting selection if there is one.
            match self.send_to_selection(&mut st, v) {
                Ok(()) => return Ok(()),
                Err(v) => v,
            }
        } else {
            v
        };
        self.send_blocking(st, v, deadline)
    }

    /// The rest of `send`, once the value can neither be handed over nor queued.
    #[inline(never)]
    fn send_blocking(
        &self,
        mut st: SpinGuard<'_, State<T>>,
        v: T,
        deadline: Option<Instant>,
    ) -> Result<(), SendTimeoutError<T>> {
        if expired(deadline) {
            return Err(SendTimeoutError::Timeout(v));
        }
        let node = pin!(Node::new(Some(v)));
        let node = node.as_ref().get_ref();
        // SAFETY: the node is pinned in this frame, and stays linked only until one of the
        // returns below: `Node::wait` ends once a completer unlinked it, else `leave` unlinks
        // it; the unwind guard unlinks it if the wait unwinds.
        unsafe { st.send_waiters.push_back(node) };
        if self.is_zero() {
            // A value is on offer: `Select`s waiting to receive may take it.
            wake_watchers(&st.recv_watchers);
        }
        drop(st);
        // A cancelled sender leaves the list; its value is dropped with the node, unlocked.
        let guard = OnUnwind::new(|| {
            self.leave(Side::Send, node);
        });
        let done = node.wait(deadline);
        guard.disarm();
        if done || self.leave(Side::Send, node) {
            return match node.take() {
                None => Ok(()),
                Some(v) => Err(SendTimeoutError::Disconnected(v)),
            };
        }
        let v = node.take().expect("an unsent value stays in its slot");
        Err(SendTimeoutError::Timeout(v))
    }

    /// The owner of `node` gives up waiting: unlinks it unless it was completed meanwhile.
    /// Returns whether it had been completed.
    fn leave(&self, side: Side, node: &Node<T>) -> bool {
        let mut st = self.lock();
        if node.is_done() {
            return true;
        }
        let list = match side {
            Side::Recv => &mut st.recv_waiters,
            Side::Send => &mut st.send_waiters,
        };
        // SAFETY: a node not done is still linked in its side's list (completers mark it done
        // under the lock).
        unsafe { list.unlink(node) };
        false
    }

    #[inline]
    pub(super) fn try_recv(&self) -> Result<T, TryRecvError> {
        self.try_recv_from(0)
    }

    /// `try_recv` for the selection `exclude` (0: none), which may not take its own send.
    pub(super) fn try_recv_from(&self, exclude: u64) -> Result<T, TryRecvError> {
        let mut st = self.lock();
        if let Some((v, wake)) = self.pop(&mut st) {
            unlock_and_wake(st, wake);
            return Ok(v);
        }
        if self.is_zero() && !st.send_watchers.is_empty() {
            // A selection waiting to send is a sender too (see `select_side.rs`).
            match self.recv_from_selection(st, exclude) {
                Ok(v) => return Ok(v),
                Err(guard) => st = guard,
            }
        }
        Err(if st.senders == 0 {
            TryRecvError::Disconnected
        } else {
            TryRecvError::Empty
        })
    }

    /// Inlined into the caller, with the first part of a blocking wait: a receiver that spins
    /// (see [`Node::wait`]) then switches away from its caller's own frame, as `yield_now`
    /// does. Every frame between the caller and the switch would cost two mispredicted
    /// returns per switch (the return-stack predictor sees the other coroutine's calls).
    #[inline(always)]
    pub(super) fn recv(&self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        if !self.is_zero()
            && self.queued.load(Ordering::Relaxed) == 0
            && !expired(deadline)
            && let Some(task) = spinning_task()
        {
            let node = pin!(Node::spinner(task));
            let node = node.as_ref().get_ref();
            // Announce, yield once, look (see the module's comment). The node stays pinned in
            // this frame until it leaves the slot: served (a completer took it out), or below
            // under the lock; if anything unwinds, the guard (armed first) leaves.
            let guard = OnUnwind::new(|| self.cancel_spin(node));
            self.spinner.store(ptr::from_ref(node).cast_mut(), Ordering::Release);
            waitlist::yield_once(task);
            guard.disarm();
            if node.is_done() {
                return node.take().ok_or(RecvTimeoutError::Disconnected);
            }
            let mut st = self.lock();
            if node.is_done() {
                drop(st);
                return node.take().ok_or(RecvTimeoutError::Disconnected);
            }
            self.leave_spinner_slot(node);
            if let Some((v, wake)) = self.pop(&mut st) {
                unlock_and_wake(st, wake);
                return Ok(v);
            }
            node.spun();
            // SAFETY: as below; the node is in no list and out of the slot.
            return unsafe { self.wait_recv(st, node, deadline) };
        }
        let mut st = self.lock();
        if let Some((v, wake)) = self.pop(&mut st) {
            unlock_and_wake(st, wake);
            return Ok(v);
        }
        let node = pin!(Node::new(None));
        let node = node.as_ref().get_ref();
        // SAFETY: the node is pinned in this frame, and in no list yet.
        unsafe { self.wait_recv(st, node, deadline) }
    }

    /// The rest of a receive that found nothing under the lock: links `node`, waits.
    ///
    /// # Safety
    ///
    /// `node` is in no list or slot, and stays pinned in the caller's frame until this returns.
    #[inline(always)]
    unsafe fn wait_recv(
        &self,
        st: SpinGuard<'_, State<T>>,
        node: &Node<T>,
        deadline: Option<Instant>,
    ) -> Result<T, RecvTimeoutError> {
        // One load and a branch for the common channels.
        if self.special && (self.is_timer || !st.send_watchers.is_empty()) {
            // SAFETY: passed on from our caller.
            return unsafe { self.wait_recv_special(st, node, deadline) };
        }
        // SAFETY: passed on from our caller.
        unsafe { self.wait_recv_plain(st, node, deadline) }
    }

    /// `wait_recv` on a timer channel, or on a rendezvous channel with selections waiting to
    /// send (a selection waiting to send is a sender too, see `select_side.rs`).
    ///
    /// # Safety
    ///
    /// As `wait_recv`.
    #[cold]
    #[inline(never)]
    unsafe fn wait_recv_special<'g>(
        &'g self,
        mut st: SpinGuard<'g, State<T>>,
        node: &Node<T>,
        deadline: Option<Instant>,
    ) -> Result<T, RecvTimeoutError> {
        if self.is_timer {
            return self.recv_timer(st, deadline);
        }
        match self.recv_from_selection(st, 0) {
            Ok(v) => return Ok(v),
            Err(guard) => st = guard,
        }
        // SAFETY: passed on from our caller.
        unsafe { self.wait_recv_plain(st, node, deadline) }
    }

    /// The rest of `wait_recv`: links the node and waits.
    ///
    /// # Safety
    ///
    /// As `wait_recv`.
    #[inline(always)]
    unsafe fn wait_recv_plain(
        &self,
        st: SpinGuard<'_, State<T>>,
        node: &Node<T>,
        deadline: Option<Instant>,
    ) -> Result<T, RecvTimeoutError> {
        // SAFETY: the node leaves the list before any return below: `Node::wait` returns
        // `true` once a completer unlinked it, else `recv_timed_out` unlinks it; if the wait
        // unwinds, the guard unlinks it (or passes its value on).
        unsafe { self.register_recv(st, node, deadline)? };
        let guard = OnUnwind::new(|| self.cancel_recv(node));
        let done = node.wait(deadline);
        guard.disarm();
        if done {
            return node.take().ok_or(RecvTimeoutError::Disconnected);
        }
        self.recv_timed_out(node)
    }

    /// Links a blocked receiver's node (unless the channel is disconnected or the deadline
    /// passed), then unlocks.
    ///
    /// # Safety
    ///
    /// On `Ok`, `node` must stay where it is until it is unlinked, which its owner must make sure
    /// of before dropping it (see `WaitList::push_back`).
    #[inline(always)]
    unsafe fn register_recv(
        &self,
        mut st: SpinGuard<'_, State<T>>,
        node: &Node<T>,
        deadline: Option<Instant>,
    ) -> Result<(), RecvTimeoutError> {
        if st.senders == 0 {
            return Err(RecvTimeoutError::Disconnected);
        }
        if expired(deadline) {
            return Err(RecvTimeoutError::Timeout);
        }
        // SAFETY: guaranteed by the caller.
        unsafe { st.recv_waiters.push_back(node) };
        if self.is_zero() {
            // A receiver is waiting now: rendezvous sends in `Select`s may proceed.
            wake_watchers(&st.send_watchers);
        }
        Ok(())
    }

    /// A blocked receiver's deadline passed: it leaves, unless a value (or the disconnection)
    /// reached it meanwhile.
    #[inline(never)]
    fn recv_timed_out(&self, node: &Node<T>) -> Result<T, RecvTimeoutError> {
        if self.leave(Side::Recv, node) {
            return node.take().ok_or(RecvTimeoutError::Disconnected);
        }
        Err(RecvTimeoutError::Timeout)
    }

    /// A blocked receiver unwinds: it leaves the list, or, if a value was handed to it already,
    /// passes the value on (to the next blocked receiver, else to the front of the queue).
    fn cancel_recv(&self, node: &Node<T>) {
        let mut st = self.lock();
        if !node.is_done() {
            // SAFETY: a node not done is still linked (completers mark it done under the lock).
            unsafe { st.recv_waiters.unlink(node) };
            return;
        }
        self.pass_on(st, node);
    }

    /// A receiver handed a value it will not return (it unwinds) passes it on: to the next
    /// receiver, else to the front of the queue (it was the oldest).
    fn pass_on(&self, mut st: SpinGuard<'_, State<T>>, node: &Node<T>) {
        let Some(v) = node.take() else { return };
        match st.hand_off(v, &self.spinner) {
            Ok(wake) => unlock_and_wake(st, wake),
            Err(v) => {
                st.queue.push_front(v);
                self.queued.store(st.queue.len(), Ordering::Relaxed);
                wake_watchers(&st.recv_watchers);
            }
        }
    }

    /// A spinner that was not served leaves the slot, under the lock, unless a later spinner
    /// replaced it there.
    #[inline(always)]
    fn leave_spinner_slot(&self, node: &Node<T>) {
        if ptr::eq(self.spinner.load(Ordering::Relaxed), node) {
            self.spinner.store(ptr::null_mut(), Ordering::Relaxed);
        }
    }

    /// A spinner unwinds (cancelled in its yield): it leaves the slot, or passes on a value
    /// handed to it meanwhile.
    fn cancel_spin(&self, node: &Node<T>) {
        let st = self.lock();
        if node.is_done() {
            self.pass_on(st, node);
        } else {
            self.leave_spinner_slot(node);
        }
    }

    pub(super) fn len(&self) -> usize {
        if self.is_zero() {
            return 0;
        }
        let st = self.lock();
        st.queue.len() + st.timer.as_ref().map_or(0, Timer::ready)
    }
}

#[cfg(test)]
mod tests;
