//! The selection side of [`Chan`]: watchers, the sends granted to selections before their
//! values exist, and the receivers that claim a waiting selection's send.
//!
//! **Granted sends.** A selection never holds a send's value while it waits: `select!`
//! evaluates a send arm's value only once that arm was chosen, as crossbeam does. Choosing a
//! send arm *reserves* room (`State::reserved`, counted as a queued value by `has_room`); the
//! chosen arm then completes the send with its value ([`Chan::complete_send`]), which never
//! waits, or gives the room back if it never computes it ([`Chan::abandon_send`]). On a
//! rendezvous channel a send is granted while a receiver waits for it (a blocked receiver or a
//! watching selection); if that receiver has gone by the time the value comes, the value waits
//! in the channel for the next receiver, as the values of `try_send`s to watching selections do.
//!
//! **Claims.** On a rendezvous channel a selection that waits with a send arm registers an
//! [`Offer`] with its watcher: a receiver that finds nothing else to take (`try_recv`,
//! `recv_timeout(0)`, another selection's receive) *claims* the offer, moving the selection's
//! [`SelectCtx`] from waiting to that arm with one compare-and-swap (which fails if the
//! selection is busy with a pass of its own, or was claimed by someone else), leaves its node in
//! `State::claims` and waits for the value, as crossbeam's zero-capacity receivers wait for a
//! selecting sender's packet. The selection wakes, sees its arm chosen, evaluates the value and
//! completes the send into the claimer's node; if it never does (the value's expression panics,
//! or the `SelectedOperation` is dropped), the claimer is released empty-handed and looks again.
//! A claimer that is cancelled while it waits leaves `claims`, or passes on a value that
//! reached it.
//!
//! The other way round, a sender (`try_send`, `send_timeout(0)`, or a selection's send arm in
//! a pass) claims a selection waiting to receive: its value waits in `State::deliveries` under
//! the receiving selection's id, and that selection takes it when it wakes. A selecting
//! sender's value does not exist yet: its delivery is *pending*, and the receiving selection
//! waits for it (as a claimer does for a claimed send); if the sender gives it up, the
//! receiving selection selects again. A receiving selection that unwinds first gives a value
//! that reached it back to the channel (a later one goes there as a granted send). A
//! selection that parks again with a send arm on offer wakes the receiving selections of that
//! channel (`offer_again`), which may have found it busy with a pass of its own. A rendezvous
//! send is granted only against a receiver that is there (blocked, or a selection it claimed),
//! so every completed send has its receiver.

use std::pin::pin;
use std::ptr;
use std::time::Instant;

use super::super::select::{ErasedBox, Grant, Offer, Outcome, Side, Watch};
use super::super::spin::SpinGuard;
use super::super::waiters::OnUnwind;
use super::waitlist::Node;
use super::{Chan, State, unlock_and_wake, wake_watchers};
use crate::sched::park::{Unparker, current_unparker, park_until};

/// A selection waiting on one side of a channel.
pub(in crate::sync) struct Watcher {
    pub(super) id: u64,
    pub(super) unparker: Unparker,
    /// Set for the send arms of a selection in its blocking phase: receivers may claim it.
    offer: Option<Offer>,
}

/// A receiver waiting for the value of the selection `id`, whose send it claimed.
pub(in crate::sync) struct Claim<T> {
    id: u64,
    node: *const Node<T>,
}

// SAFETY: the node pointer is dereferenced only under the channel's lock, while the claimer
// waits on it (it leaves `claims` under the lock before its node dies); the node and the value
// it receives may be reached from any thread, as the nodes of `WaitList` are.
unsafe impl<T: Send> Send for Claim<T> {}

/// A value for the selection `id`, whose receive arm a sender claimed.
pub(in crate::sync) struct Delivery<T> {
    id: u64,
    /// The value; `None` while a selecting sender computes it, or once it gave up.
    value: Option<T>,
    /// Whether a selecting sender still computes the value.
    pending: bool,
    /// The receiving selection, once it waits for a pending value.
    waiter: Option<Unparker>,
}

impl<T> Chan<T> {
    /// Claims the offer of a waiting selection other than `exclude` and waits for its value.
    /// Gives the guard back (still locked, and with nothing to pop) when no selection could be
    /// claimed.
    #[cold]
    #[inline(never)]
    pub(super) fn recv_from_selection<'g>(
        &'g self,
        mut st: SpinGuard<'g, State<T>>,
        exclude: u64,
    ) -> Result<T, SpinGuard<'g, State<T>>> {
        loop {
            let claimed = st.send_watchers.iter().position(|w| {
                w.id != exclude
                    && w.offer.is_some_and(|o| {
                        // SAFETY: a registered offer's context lives until its selection has
                        // unwatched, which takes this lock.
                        unsafe { (*o.ctx).try_claim(o.arm) }
                    })
            });
            let Some(k) = claimed else { return Err(st) };
            let node = pin!(Node::new(None));
            let node = node.as_ref().get_ref();
            let id = st.send_watchers[k].id;
            st.claims.push(Claim {
                id,
                node: ptr::from_ref(node),
            });
            st.send_watchers[k].unparker.unpark();
            drop(st);
            // The node stays pinned here until it leaves `claims`: completed (a completer took
            // it out), or by the guard if the wait unwinds.
            let guard = OnUnwind::new(|| self.cancel_claim(node));
            node.wait(None);
            guard.disarm();
            if let Some(v) = node.take() {
                return Ok(v);
            }
            // The selection gave up its send: look again.
            st = self.lock();
            if let Some((v, wake)) = self.pop(&mut st) {
                unlock_and_wake(st, wake);
                return Ok(v);
            }
        }
    }

    /// A claimer unwinds: it leaves `claims`, or passes on the value that reached it.
    fn cancel_claim(&self, node: &Node<T>) {
        let mut st = self.lock();
        if node.is_done() {
            self.pass_on(st, node);
            return;
        }
        st.claims.retain(|c| !ptr::eq(c.node, node));
    }

    /// Whether a receive would complete now (with a value or the disconnection), for the
    /// selection `exclude`.
    fn recv_ready(&self, st: &State<T>, exclude: u64) -> bool {
        !st.queue.is_empty()
            || st.send_waiters.len() > 0
            || st.senders == 0
            || st.timer.as_ref().is_some_and(|t| t.ready() > 0)
            || (self.is_zero()
                && st.send_watchers.iter().any(|w| {
                    w.id != exclude
                        && w.offer.is_some_and(|o| {
                            // SAFETY: as in `recv_from_selection`.
                            unsafe { (*o.ctx).is_waiting() }
                        })
                }))
    }

    /// Whether a send may be granted now (or fails, disconnected): there is room, or a blocked
    /// receiver not promised to another granted send.
    fn send_grantable(&self, st: &State<T>) -> bool {
        st.receivers == 0 || st.recv_waiters.len() > st.reserved || self.has_room(st)
    }

    /// Whether a send would complete now (or fail): also when a selection other than `exclude`
    /// waits to receive on a rendezvous channel (a sender with its value claims it).
    fn send_ready(&self, st: &State<T>, exclude: u64) -> bool {
        self.send_grantable(st)
            || (self.is_zero()
                && st.recv_watchers.iter().any(|w| {
                    w.id != exclude
                        && w.offer.is_some_and(|o| {
                            // SAFETY: as in `recv_from_selection`.
                            unsafe { (*o.ctx).is_waiting() }
                        })
                }))
    }

    /// A sender with its value in hand claims a selection waiting to receive (rendezvous
    /// channels): the value waits in `deliveries` for that selection, which is woken. Gives
    /// the value back if no selection could be claimed.
    pub(super) fn send_to_selection(&self, st: &mut State<T>, v: T) -> Result<(), T> {
        let claimed = st.recv_watchers.iter().position(|w| {
            w.offer.is_some_and(|o| {
                // SAFETY: as in `recv_from_selection`.
                unsafe { (*o.ctx).try_claim(o.arm) }
            })
        });
        let Some(k) = claimed else { return Err(v) };
        let id = st.recv_watchers[k].id;
        st.recv_watchers[k].unparker.unpark();
        st.deliveries.push(Delivery {
            id,
            value: Some(v),
            pending: false,
            waiter: None,
        });
        Ok(())
    }

    /// A selection (`exclude`) claims a selection waiting to receive for the send it will
    /// complete (rendezvous channels): the receiving selection waits for the value.
    fn grant_to_selection(&self, st: &mut State<T>, exclude: u64) -> Option<Grant> {
        let claimed = st.recv_watchers.iter().position(|w| {
            w.id != exclude
                && w.offer.is_some_and(|o| {
                    // SAFETY: as in `recv_from_selection`.
                    unsafe { (*o.ctx).try_claim(o.arm) }
                })
        })?;
        let id = st.recv_watchers[claimed].id;
        st.recv_watchers[claimed].unparker.unpark();
        st.deliveries.push(Delivery {
            id,
            value: None,
            pending: true,
            waiter: None,
        });
        Some(Grant::To(id))
    }

    /// The pending delivery to the selection `id`, if it still waits for one.
    fn pending_delivery(st: &mut State<T>, id: u64) -> Option<&mut Delivery<T>> {
        st.deliveries.iter_mut().find(|d| d.id == id && d.pending)
    }

    /// Completes a send granted to a selection. Never waits. Gives the value back if every
    /// receiver is gone.
    pub(in crate::sync) fn complete_send(&self, v: T, grant: Grant) -> Result<(), T> {
        let mut st = self.lock();
        match grant {
            Grant::To(id) => {
                if let Some(d) = Self::pending_delivery(&mut st, id) {
                    d.value = Some(v);
                    d.pending = false;
                    if let Some(w) = d.waiter.take() {
                        w.unpark();
                    }
                    return Ok(());
                }
                // The receiving selection has gone (cancelled): the value goes as a granted one.
            }
            Grant::ClaimedBy(id) => {
                if let Some(i) = st.claims.iter().position(|c| c.id == id) {
                    let node = st.claims.swap_remove(i).node;
                    // SAFETY: the claimer waits on its node until a completer marks it done,
                    // or leaves `claims` under the lock we hold; it has not.
                    let wake = unsafe { Node::complete(ptr::NonNull::from(&*node), |slot| *slot = Some(v)) };
                    unlock_and_wake(st, wake);
                    return Ok(());
                }
                // The claimer has gone (cancelled): the value goes as a granted one.
            }
            Grant::Reserved => st.reserved -= 1,
        }
        if st.receivers == 0 {
            return Err(v);
        }
        match st.hand_off(v, &self.spinner) {
            Ok(wake) => unlock_and_wake(st, wake),
            // The room was reserved (on a rendezvous channel, for a receiver that may have
            // left meanwhile: the value waits for the next one).
            Err(v) => st.enqueue(v, &self.queued),
        }
        Ok(())
    }

    /// A selection will not complete the send it was granted: the room goes back, or the
    /// claimer is released empty-handed.
    pub(in crate::sync) fn abandon_send(&self, grant: Grant) {
        let mut st = self.lock();
        match grant {
            Grant::To(id) => {
                if let Some(d) = Self::pending_delivery(&mut st, id) {
                    d.pending = false; // with no value: the receiving selection selects again
                    if let Some(w) = d.waiter.take() {
                        w.unpark();
                    }
                }
            }
            Grant::ClaimedBy(id) => {
                if let Some(i) = st.claims.iter().position(|c| c.id == id) {
                    let node = st.claims.swap_remove(i).node;
                    // SAFETY: as in `complete_send`; an empty slot tells it to look again.
                    let wake = unsafe { Node::complete(ptr::NonNull::from(&*node), |_| {}) };
                    unlock_and_wake(st, wake);
                }
            }
            Grant::Reserved => {
                st.reserved -= 1;
                if let Some(cap) = self.cap
                    && cap > 0
                    && st.queue.len() + st.reserved < cap
                    && let Some(node) = st.send_waiters.pop_front()
                {
                    // Room appeared: it goes to the oldest blocked sender's value.
                    let queue = &mut st.queue;
                    // SAFETY: just unlinked, under the lock.
                    let wake = unsafe { Node::complete(node, |slot| queue.extend(slot.take())) };
                    self.queued.store(st.queue.len(), std::sync::atomic::Ordering::Relaxed);
                    wake_watchers(&st.recv_watchers);
                    wake_watchers(&st.send_watchers);
                    unlock_and_wake(st, wake);
                    return;
                }
                wake_watchers(&st.send_watchers);
            }
        }
    }
}

impl<T> Watch for Chan<T> {
    fn watch(&self, side: Side, id: u64, unparker: &Unparker, offer: Option<Offer>) {
        let mut st = self.lock();
        let w = Watcher {
            id,
            unparker: unparker.clone(),
            offer,
        };
        match side {
            Side::Recv => {
                st.recv_watchers.push(w);
                if self.is_zero() {
                    wake_watchers(&st.send_watchers);
                }
            }
            Side::Send => {
                st.send_watchers.push(w);
                if self.is_zero() && offer.is_some() {
                    // A sender is on offer: selections waiting to receive may claim it.
                    wake_watchers(&st.recv_watchers);
                }
            }
        }
    }

    fn unwatch(&self, side: Side, id: u64) {
        let mut st = self.lock();
        let list = match side {
            Side::Recv => &mut st.recv_watchers,
            Side::Send => &mut st.send_watchers,
        };
        if let Some(i) = list.iter().position(|w| w.id == id) {
            list.swap_remove(i);
        }
    }

    unsafe fn try_recv_into(&self, slot: *mut (), id: u64) -> Option<Option<ErasedBox>> {
        let v = match self.try_recv_from(id) {
            Ok(v) => Some(v),
            Err(super::TryRecvError::Empty) => return None,
            Err(super::TryRecvError::Disconnected) => None,
        };
        if slot.is_null() {
            return Some(Some(ErasedBox::new(v)));
        }
        // SAFETY: the caller passes a slot of this channel's `T` that only it touches.
        unsafe { *slot.cast::<Option<T>>() = v };
        Some(None)
    }

    fn try_reserve_send(&self, id: u64) -> Option<Outcome> {
        let mut st = self.lock();
        if st.receivers == 0 {
            return Some(Outcome::Disconnected);
        }
        if self.send_grantable(&st) {
            st.reserved += 1;
            return Some(Outcome::Sending(Grant::Reserved));
        }
        if self.is_zero() && !st.recv_watchers.is_empty() {
            return self.grant_to_selection(&mut st, id).map(Outcome::Sending);
        }
        None
    }

    fn is_ready(&self, side: Side, id: u64) -> bool {
        let st = self.lock();
        match side {
            Side::Recv => self.recv_ready(&st, id),
            Side::Send => self.send_ready(&st, id),
        }
    }

    unsafe fn take_delivery(&self, id: u64, slot: *mut ()) -> Option<Option<ErasedBox>> {
        // If the wait for a pending value unwinds, the delivery leaves (its value, if it came,
        // goes back to the channel; a later one is sent as a granted one).
        let guard = OnUnwind::new(|| self.return_delivery(id));
        let v = loop {
            let mut st = self.lock();
            let i = st.deliveries.iter().position(|d| d.id == id);
            let i = i.expect("a claimed receive has its delivery");
            if st.deliveries[i].pending {
                st.deliveries[i].waiter = Some(current_unparker());
                drop(st);
                // Until the selecting sender completes or gives up.
                park_until(None, "Receiver::recv (sigcoro::sync::channel)");
                continue;
            }
            break st.deliveries.swap_remove(i).value;
        };
        guard.disarm();
        let v = v?; // the selecting sender gave up
        if slot.is_null() {
            return Some(Some(ErasedBox::new(Some(v))));
        }
        // SAFETY: the caller passes a slot of this channel's `T` that only it touches.
        unsafe { *slot.cast::<Option<T>>() = Some(v) };
        Some(None)
    }

    fn return_delivery(&self, id: u64) {
        let mut st = self.lock();
        let Some(i) = st.deliveries.iter().position(|d| d.id == id) else {
            return;
        };
        let Some(v) = st.deliveries.swap_remove(i).value else {
            return;
        };
        match st.hand_off(v, &self.spinner) {
            Ok(wake) => unlock_and_wake(st, wake),
            Err(v) => {
                st.queue.push_front(v);
                self.queued.store(st.queue.len(), std::sync::atomic::Ordering::Relaxed);
                wake_watchers(&st.recv_watchers);
            }
        }
    }

    fn offer_again(&self, id: u64) {
        if !self.is_zero() {
            return;
        }
        let st = self.lock();
        for w in st.recv_watchers.iter().filter(|w| w.id != id) {
            w.unparker.unpark();
        }
    }

    fn next_due(&self) -> Option<Instant> {
        Chan::next_due(self)
    }

    fn abandon(&self, grant: Grant) {
        self.abandon_send(grant);
    }

    fn addr(&self) -> *const () {
        ptr::from_ref(self).cast()
    }
}
