//! Waiting on several channel operations at once: the [`Select`] builder and the
//! [`select!`](crate::select) macro that expands to it.
//!
//! A selection first tries every operation once, starting from a rotating arm so that no arm
//! is favoured. If none is ready it registers one [`Unparker`] with every channel involved (as
//! a *watcher* of the side it wants), tries every operation again (a change that happened
//! before the registration is seen by this second pass, one after it wakes the selector), then
//! parks; each wakeup is followed by another pass. Channels wake all their watchers on every
//! change that may make an operation ready. The watchers are unregistered by a drop guard, so
//! a selection cut short by an unwinding park leaves no trace.
//!
//! An operation completes atomically when it is attempted, so once a selection returns, its
//! operation has happened and no other has.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::channel::{Receiver, RecvError, SendError, Sender, TryRecvError, TrySendError};
use super::waitq::{deadline_after, expired};
use crate::sched::park::{Unparker, current_unparker, park_until};

/// Which operation a watcher waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Recv,
    Send,
}

/// A channel a [`Select`] can watch: it unparks every watcher of a side when an operation on
/// that side may have become possible (or the channel got disconnected).
pub(crate) trait Watch {
    fn watch(&self, side: Side, id: u64, unparker: &Unparker);
    fn unwatch(&self, side: Side, id: u64);
}

/// Attempts one operation without waiting; `true` if it completed (successfully or with a
/// disconnection error). `id` identifies the selector, so that a rendezvous send does not pair
/// with the same selector's own receive.
type AttemptFn = unsafe fn(handle: *const (), slot: *mut (), id: u64) -> bool;

struct Arm<'a> {
    chan: &'a dyn Watch,
    side: Side,
    /// `&'a Receiver<T>` or `&'a Sender<T>`, type-erased.
    handle: *const (),
    /// `&'a mut Option<T>`, type-erased.
    slot: *mut (),
    attempt: AttemptFn,
}

/// Rotates the arm tried first, for fairness.
static ROTATE: AtomicUsize = AtomicUsize::new(0);
/// Watcher ids, unique across all selections.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Waits until one of several channel operations completes, then reports which one.
///
/// Each operation is given a slot of type `Option<T>`: a receive fills it with the value
/// (`None` after the selection means the channel was disconnected); a send takes its value from
/// it (`None` afterwards means it was sent, `Some` that the channel was disconnected and the
/// value came back). Only the selected operation touches its slot.
///
/// ```
/// use sigcoro::sync::{Select, channel};
///
/// let (tx1, rx1) = channel::unbounded::<i32>();
/// let (tx2, rx2) = channel::bounded::<&str>(1);
/// tx1.send(7).unwrap();
///
/// let mut got = None;
/// let mut msg = Some("hello");
/// let mut sel = Select::new();
/// let r = sel.recv(&rx1, &mut got);
/// let s = sel.send(&tx2, &mut msg);
/// let i = sel.select();
/// if i == r {
///     assert_eq!(got, Some(7));
/// } else {
///     assert_eq!(i, s);
///     assert!(msg.is_none()); // sent
///     assert_eq!(rx2.recv(), Ok("hello"));
/// }
/// ```
pub struct Select<'a> {
    arms: Vec<Arm<'a>>,
    _slots: PhantomData<&'a mut ()>,
}

impl<'a> Select<'a> {
    /// An empty selection.
    pub fn new() -> Self {
        Select {
            arms: Vec::new(),
            _slots: PhantomData,
        }
    }

    /// Adds a receive from `rx` into `slot`; returns the operation's index.
    pub fn recv<T>(&mut self, rx: &'a Receiver<T>, slot: &'a mut Option<T>) -> usize {
        self.arms.push(Arm {
            chan: &*rx.chan,
            side: Side::Recv,
            handle: (rx as *const Receiver<T>).cast(),
            slot: (slot as *mut Option<T>).cast(),
            attempt: attempt_recv::<T>,
        });
        self.arms.len() - 1
    }

    /// Adds a send of the value in `slot` to `tx`; returns the operation's index.
    ///
    /// # Panics
    ///
    /// If `slot` is `None`.
    pub fn send<T>(&mut self, tx: &'a Sender<T>, slot: &'a mut Option<T>) -> usize {
        assert!(slot.is_some(), "Select::send needs a value in its slot");
        self.arms.push(Arm {
            chan: &*tx.chan,
            side: Side::Send,
            handle: (tx as *const Sender<T>).cast(),
            slot: (slot as *mut Option<T>).cast(),
            attempt: attempt_send::<T>,
        });
        self.arms.len() - 1
    }

    /// Waits until an operation completes and returns its index. With no operation it waits
    /// forever.
    pub fn select(self) -> usize {
        self.run(Mode::Block)
            .expect("a blocking selection completes an operation")
    }

    /// Completes an operation that is ready now, if any.
    pub fn try_select(self) -> Option<usize> {
        self.run(Mode::Try)
    }

    /// Waits at most `timeout` for an operation to complete.
    pub fn select_timeout(self, timeout: Duration) -> Option<usize> {
        self.run(Mode::Timeout(timeout))
    }

    /// Waits until `deadline` at the latest for an operation to complete.
    pub fn select_deadline(self, deadline: Instant) -> Option<usize> {
        self.run(Mode::Deadline(deadline))
    }

    /// Runs the selection in the given mode (what [`select!`](crate::select) calls).
    #[doc(hidden)]
    pub fn run(self, mode: Mode) -> Option<usize> {
        let deadline = match mode {
            Mode::Block | Mode::Try => None,
            Mode::Timeout(t) => deadline_after(t),
            Mode::Deadline(d) => Some(d),
        };
        let start = match self.arms.len() {
            0 | 1 => 0,
            n => ROTATE.fetch_add(1, Ordering::Relaxed) % n,
        };
        if let Some(i) = self.attempt_all(start, 0) {
            return Some(i);
        }
        if mode == Mode::Try || expired(deadline) {
            return None;
        }
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let unparker = current_unparker();
        let _unwatch = Unwatch { arms: &self.arms, id };
        for arm in &self.arms {
            arm.chan.watch(arm.side, id, &unparker);
        }
        loop {
            if let Some(i) = self.attempt_all(start, id) {
                return Some(i);
            }
            if expired(deadline) {
                return None;
            }
            park_until(deadline, "a channel select (sigcoro::select!)");
        }
    }

    fn attempt_all(&self, start: usize, id: u64) -> Option<usize> {
        let n = self.arms.len();
        (0..n).map(|k| (start + k) % n).find(|&i| {
            let arm = &self.arms[i];
            // SAFETY: `handle` and `slot` were made by `recv`/`send` from references that live
            // for 'a and that this selection holds exclusively (the slot) or shared (the
            // channel end); `attempt` was instantiated there with the matching `T`.
            unsafe { (arm.attempt)(arm.handle, arm.slot, id) }
        })
    }
}

impl Default for Select<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Select<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Select").field("operations", &self.arms.len()).finish()
    }
}

/// Unregisters a selection's watchers when it ends, however it ends.
struct Unwatch<'s, 'a> {
    arms: &'s [Arm<'a>],
    id: u64,
}

impl Drop for Unwatch<'_, '_> {
    fn drop(&mut self) {
        for arm in self.arms {
            arm.chan.unwatch(arm.side, self.id);
        }
    }
}

/// # Safety
///
/// `handle` must point to a live `Receiver<T>` and `slot` to an `Option<T>` nobody else
/// accesses during the call.
unsafe fn attempt_recv<T>(handle: *const (), slot: *mut (), _id: u64) -> bool {
    // SAFETY: guaranteed by the caller (see `Select::attempt_all`).
    let (rx, slot) = unsafe { (&*handle.cast::<Receiver<T>>(), &mut *slot.cast::<Option<T>>()) };
    match rx.chan.try_recv() {
        Ok(v) => {
            *slot = Some(v);
            true
        }
        Err(TryRecvError::Empty) => false,
        Err(TryRecvError::Disconnected) => {
            *slot = None;
            true
        }
    }
}

/// # Safety
///
/// `handle` must point to a live `Sender<T>` and `slot` to an `Option<T>` nobody else
/// accesses during the call.
unsafe fn attempt_send<T>(handle: *const (), slot: *mut (), id: u64) -> bool {
    // SAFETY: guaranteed by the caller (see `Select::attempt_all`).
    let (tx, slot) = unsafe { (&*handle.cast::<Sender<T>>(), &mut *slot.cast::<Option<T>>()) };
    let Some(v) = slot.take() else { return false };
    match tx.chan.try_send(v, id) {
        Ok(()) => true,
        Err(TrySendError::Full(v)) => {
            *slot = Some(v);
            false
        }
        Err(TrySendError::Disconnected(v)) => {
            *slot = Some(v);
            true
        }
    }
}

/// How long a selection may wait (what [`select!`](crate::select) passes to `Select::run`).
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Until an operation completes.
    Block,
    /// Not at all.
    Try,
    /// At most this long.
    Timeout(Duration),
    /// Until this instant.
    Deadline(Instant),
}

/// A receive arm of [`select!`](crate::select): the channel end and the slot.
#[doc(hidden)]
#[derive(Debug)]
pub struct RecvArm<'a, T> {
    rx: &'a Receiver<T>,
    slot: Option<T>,
    index: usize,
}

impl<'a, T> RecvArm<'a, T> {
    /// An arm receiving from `rx`.
    pub fn new(rx: &'a Receiver<T>) -> Self {
        RecvArm {
            rx,
            slot: None,
            index: usize::MAX,
        }
    }

    /// Adds the arm to the selection.
    pub fn add_to<'s>(&'s mut self, sel: &mut Select<'s>) {
        let RecvArm { rx, slot, index } = self;
        *index = sel.recv(rx, slot);
    }

    /// The arm's index in the selection.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The outcome of the arm once it was selected.
    pub fn into_result(self) -> Result<T, RecvError> {
        self.slot.ok_or(RecvError)
    }
}

/// A send arm of [`select!`](crate::select): the channel end and the value.
#[doc(hidden)]
#[derive(Debug)]
pub struct SendArm<'a, T> {
    tx: &'a Sender<T>,
    slot: Option<T>,
    index: usize,
}

impl<'a, T> SendArm<'a, T> {
    /// An arm sending `value` to `tx`.
    pub fn new(tx: &'a Sender<T>, value: T) -> Self {
        SendArm {
            tx,
            slot: Some(value),
            index: usize::MAX,
        }
    }

    /// Adds the arm to the selection.
    pub fn add_to<'s>(&'s mut self, sel: &mut Select<'s>) {
        let SendArm { tx, slot, index } = self;
        *index = sel.send(tx, slot);
    }

    /// The arm's index in the selection.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The outcome of the arm once it was selected.
    pub fn into_result(self) -> Result<(), SendError<T>> {
        match self.slot {
            None => Ok(()),
            Some(v) => Err(SendError(v)),
        }
    }
}
