//! Multi-producer multi-consumer channels that park coroutines, after crossbeam-channel.
//!
//! [`bounded`] channels hold at most `cap` values (`cap == 0` is a rendezvous channel: a send
//! completes only when a receiver takes the value); [`unbounded`] ones never block senders.
//! Both ends are `Clone`; values come out in the order they went in.
//!
//! Disconnection works as in std and crossbeam: once every [`Sender`] is gone, receivers drain
//! what is left and then get `Disconnected`; once every [`Receiver`] is gone, a send fails and
//! hands the value back inside the error (buffered values are dropped then).
//!
//! A value sent while a receiver waits goes straight to the receiver that has waited longest.
//! If that receiver is cancelled before it runs again, the value is not lost: it goes to the
//! next waiting receiver, or back to the front of the channel (which may then hold one value
//! more than its capacity for a while).
//!
//! ```
//! use sigcoro::sync::channel;
//!
//! let (tx, rx) = channel::bounded(4);
//! let producer = std::thread::spawn(move || {
//!     for i in 0..10 {
//!         tx.send(i).unwrap();
//!     }
//! });
//! let sum: i32 = rx.iter().sum(); // ends when the sender is dropped
//! producer.join().unwrap();
//! assert_eq!(sum, 45);
//! ```
//!
//! To wait on several channels at once use [`select!`](crate::select),
//! [`select_biased!`](crate::select_biased) or [`Select`].
//!
//! # Safe points
//!
//! Every channel call is a safe point, `try_send`, `try_recv`, `try_iter` and a `select!` with
//! a `default` arm included: with preemption on, a coroutine that polls a channel in a loop is
//! switched out at the end of its slice, so the other coroutines of its worker (the one that
//! would fill the channel, say) run. The check is one thread-local load and a predictable
//! branch before the call, nothing more on success.
//!
//! **What a failed `try_*` costs.** Nothing beyond that check: a failed try call does not yield.
//! A polling loop therefore holds its worker for a whole slice at a time (10 ms by default), as
//! any loop with a [`checkpoint`](crate::checkpoint) does, and for good when preemption is off.
//! Yielding on every failure would make a poller that shares its worker cost each neighbour a
//! trip round the run queue per poll and would change nothing for a poller alone on its worker;
//! a loop that means to wait should block (`recv`, `select!` without `default`, a timeout) or
//! call [`yield_now`](crate::yield_now) itself.
//!
//! # Differences from crossbeam-channel
//!
//! The API and the semantics are crossbeam's, including `select!` evaluating a send arm's value
//! only when that arm is chosen and making a second pass before it takes `default`, and, on a
//! rendezvous channel, receivers that may not wait seeing senders blocked in a selection and
//! senders that may not wait seeing receivers blocked in one. The differences, on purpose:
//!
//! - **A rendezvous channel may hold a value for a moment.** A value that reaches a receiver
//!   that is then cancelled, or a `select!` send arm granted against a blocked receiver that
//!   timed out before the value was computed, waits in the channel for the next receiver
//!   instead of being taken back (`len()` stays 0 meanwhile). Nothing is lost or duplicated.
//! - **A cancelled receiver** (`JoinHandle::cancel`) that had a value handed to it passes it on
//!   to the next receiver or back to the front of the channel, which may then hold one value
//!   more than its capacity for a while.
//! - **Fairness** among ready arms starts at a random arm and tries the others in turn
//!   instead of shuffling them all.
//! - **`Select` is neither `Send` nor `Sync`** (crossbeam's is, even for channels of values
//!   that are not `Send`).
//! - **`Receiver` is covariant in `T`** and `Sender` invariant (crossbeam's are invariant).
//! - **A dropped [`SelectedOperation`]** gives back its reserved room (or drops the received
//!   value) before it panics; a rendezvous receiver waiting for that send is released.
//! - `select!` takes at most 32 `recv`/`send` arms.

use std::fmt;
use std::marker::PhantomData;
use std::panic::{RefUnwindSafe, UnwindSafe};
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::chan::Chan;
use super::waiters::deadline_after;

pub use super::error::{
    ReadyTimeoutError, RecvError, RecvTimeoutError, SelectTimeoutError, SendError, SendTimeoutError, TryReadyError,
    TryRecvError, TrySelectError, TrySendError,
};
pub use super::select::{Select, SelectedOperation};

/// Creates a channel holding at most `cap` values; `cap == 0` makes a rendezvous channel.
///
/// On a rendezvous channel a blocking [`Sender::send`] waits until a receiver has taken its
/// value, and [`Sender::try_send`] succeeds only while a receiver is waiting (blocked in
/// `recv`, or in a selection, which the value then goes to).
pub fn bounded<T>(cap: usize) -> (Sender<T>, Receiver<T>) {
    new_pair(Some(cap))
}

/// Creates a channel of unlimited capacity: sends never block.
pub fn unbounded<T>() -> (Sender<T>, Receiver<T>) {
    new_pair(None)
}

fn new_pair<T>(cap: Option<usize>) -> (Sender<T>, Receiver<T>) {
    let chan = ChanRef::new(Chan::new(cap));
    let sender = Sender {
        chan: chan.clone(),
        _invariant: PhantomData,
    };
    (sender, Receiver { chan })
}

/// A channel that delivers one message, the `Instant` it was due, once `duration` has passed;
/// then none. It never gets disconnected (as crossbeam's).
///
/// ```
/// use std::time::{Duration, Instant};
/// use sigcoro::select;
/// use sigcoro::sync::channel;
///
/// let (_tx, rx) = channel::unbounded::<i32>();
/// let start = Instant::now();
/// select! {
///     recv(rx) -> _ => unreachable!(),
///     recv(channel::after(Duration::from_millis(5))) -> due => assert!(due.unwrap() >= start),
/// }
/// ```
pub fn after(duration: Duration) -> Receiver<Instant> {
    timer_receiver(Instant::now().checked_add(duration), None)
}

/// A channel that delivers one message, `when`, once that instant has come; then none.
pub fn at(when: Instant) -> Receiver<Instant> {
    timer_receiver(Some(when), None)
}

/// A channel that delivers a message every `duration`: the `Instant` it was due. The next one
/// is due `duration` after each receive; ticks nobody receives are skipped, not queued.
///
/// ```
/// use std::time::Duration;
/// use sigcoro::sync::channel;
///
/// let ticker = channel::tick(Duration::from_millis(1));
/// let first = ticker.recv().unwrap();
/// assert!(ticker.recv().unwrap() > first);
/// ```
pub fn tick(duration: Duration) -> Receiver<Instant> {
    timer_receiver(Instant::now().checked_add(duration), Some(duration))
}

/// A channel that never delivers a message and never gets disconnected: a `select!` arm that
/// is never ready (to switch an arm off, as with crossbeam's `never`).
///
/// ```
/// use std::time::Duration;
/// use sigcoro::select;
/// use sigcoro::sync::channel;
///
/// let timeout: Option<Duration> = None;
/// let got = select! {
///     recv(timeout.map(channel::after).unwrap_or(channel::never())) -> _ => "timed out",
///     default => "nothing",
/// };
/// assert_eq!(got, "nothing");
/// ```
pub fn never<T>() -> Receiver<T> {
    Receiver {
        chan: ChanRef::new(Chan::never()),
    }
}

fn timer_receiver(first: Option<Instant>, period: Option<Duration>) -> Receiver<Instant> {
    Receiver {
        chan: ChanRef::new(Chan::timer(first, period)),
    }
}

/// A counted reference to a channel, as an `Arc<Chan<T>>`, but covariant in `T`: `Chan<T>`
/// itself is invariant (its lock and its waiters' pointers), and a `Receiver` only takes
/// values out, so it may see a `&'static str` channel as a `&'a str` one. `Sender` adds its
/// own invariance.
pub(super) struct ChanRef<T> {
    ptr: NonNull<()>,
    /// Owns `T`s (the channel's values), for the drop check; covariant.
    _values: PhantomData<T>,
}

// SAFETY: a `ChanRef` is an `Arc<Chan<T>>` with a type-erased pointer; `Arc<Chan<T>>` is `Send`
// and `Sync` when `Chan<T>` is both, that is when `T: Send` (see `SpinLock`).
unsafe impl<T: Send> Send for ChanRef<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for ChanRef<T> {}

impl<T> ChanRef<T> {
    fn new(chan: Chan<T>) -> Self {
        let ptr = Arc::into_raw(Arc::new(chan)).cast_mut().cast::<()>();
        ChanRef {
            // SAFETY: `Arc::into_raw` never returns null.
            ptr: unsafe { NonNull::new_unchecked(ptr) },
            _values: PhantomData,
        }
    }

    fn ptr_eq(&self, other: &Self) -> bool {
        self.ptr == other.ptr
    }
}

impl<T> std::ops::Deref for ChanRef<T> {
    type Target = Chan<T>;
    #[inline(always)]
    fn deref(&self) -> &Chan<T> {
        // SAFETY: the pointer came from `Arc::into_raw` of a `Chan<T>` (up to lifetimes, which
        // covariance may have shortened and which do not change its layout) and this
        // reference holds a count of it.
        unsafe { &*self.ptr.as_ptr().cast::<Chan<T>>() }
    }
}

impl<T> Clone for ChanRef<T> {
    fn clone(&self) -> Self {
        // SAFETY: as in `deref`; the new reference owns the count taken here.
        unsafe { Arc::increment_strong_count(self.ptr.as_ptr().cast::<Chan<T>>()) };
        ChanRef {
            ptr: self.ptr,
            _values: PhantomData,
        }
    }
}

impl<T> Drop for ChanRef<T> {
    fn drop(&mut self) {
        // SAFETY: as in `deref`; gives up this reference's count.
        drop(unsafe { Arc::from_raw(self.ptr.as_ptr().cast::<Chan<T>>()) });
    }
}

/// The sending half of a channel; clone it for more producers.
///
/// Invariant in `T`, as std's and crossbeam's senders: a covariant one would let a value of a
/// shorter lifetime reach a receiver that expects a longer one.
///
/// ```compile_fail
/// fn shorten<'a>(s: sigcoro::sync::channel::Sender<&'static str>) -> sigcoro::sync::channel::Sender<&'a str> {
///     s
/// }
/// ```
pub struct Sender<T> {
    pub(super) chan: ChanRef<T>,
    _invariant: PhantomData<fn(T) -> T>,
}

impl<T> UnwindSafe for Sender<T> {}
impl<T> RefUnwindSafe for Sender<T> {}

impl<T> Sender<T> {
    /// Sends a value, waiting while the channel is full (on a rendezvous channel: until a
    /// receiver takes it). Fails, returning the value, if every receiver is gone.
    ///
    /// In a destructor that runs while the coroutine unwinds (a panic, or a cancellation), a `send` that
    /// would have to wait ends the process with a message naming it (see "Waiting in destructors" at
    /// [`JoinHandle::cancel`](crate::JoinHandle::cancel)).
    // Inlined with its fast path (a hand-off or a queued value); the blocking part stays out
    // of line (`Chan::send_blocking`).
    #[inline(always)]
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        crate::checkpoint();
        self.chan.send(value, None).map_err(|e| SendError(e.into_inner()))
    }

    /// Sends a value if that is possible without waiting. A safe point, as every channel
    /// call (see the module's documentation).
    #[inline]
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        crate::checkpoint();
        self.chan.try_send(value)
    }

    /// Sends a value, waiting at most `timeout`.
    #[inline]
    pub fn send_timeout(&self, value: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        crate::checkpoint();
        self.chan.send(value, deadline_after(timeout))
    }

    /// Sends a value, waiting until `deadline` at the latest.
    pub fn send_deadline(&self, value: T, deadline: Instant) -> Result<(), SendTimeoutError<T>> {
        crate::checkpoint();
        self.chan.send(value, Some(deadline))
    }

    /// Number of values in the channel (always 0 for a rendezvous channel).
    pub fn len(&self) -> usize {
        self.chan.len()
    }

    /// Whether the channel holds no value (always true for a rendezvous channel).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the channel is full (always true for a rendezvous channel, never for an
    /// unbounded one).
    pub fn is_full(&self) -> bool {
        self.chan.cap.is_some_and(|cap| self.len() >= cap)
    }

    /// The capacity given to [`bounded`], or `None` for an [`unbounded`] channel.
    pub fn capacity(&self) -> Option<usize> {
        self.chan.cap
    }

    /// Whether both senders belong to the same channel.
    pub fn same_channel(&self, other: &Sender<T>) -> bool {
        self.chan.ptr_eq(&other.chan)
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.chan.add_sender();
        Sender {
            chan: self.chan.clone(),
            _invariant: PhantomData,
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.chan.drop_sender();
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("Sender { .. }")
    }
}

/// The receiving half of a channel; clone it for more consumers (each value goes to one).
///
/// Covariant in `T`: it only takes values out.
///
/// ```
/// fn shorten<'a>(r: sigcoro::sync::channel::Receiver<&'static str>) -> sigcoro::sync::channel::Receiver<&'a str> {
///     r
/// }
/// let (tx, rx) = sigcoro::sync::channel::unbounded::<&'static str>();
/// tx.send("x").unwrap();
/// assert_eq!(shorten(rx).recv(), Ok("x"));
/// ```
pub struct Receiver<T> {
    pub(super) chan: ChanRef<T>,
}

impl<T> UnwindSafe for Receiver<T> {}
impl<T> RefUnwindSafe for Receiver<T> {}

impl<T> Receiver<T> {
    /// Receives a value, waiting while the channel is empty; fails once it is empty and every
    /// sender is gone.
    ///
    /// In a destructor that runs while the coroutine unwinds (a panic, or a cancellation), a `recv` that
    /// would have to wait ends the process with a message naming it (see "Waiting in destructors" at
    /// [`JoinHandle::cancel`](crate::JoinHandle::cancel)).
    // Inlined, so that a receiver that waits suspends right below the caller's frame (see
    // `Chan::recv`).
    #[inline(always)]
    pub fn recv(&self) -> Result<T, RecvError> {
        crate::checkpoint();
        self.chan.recv(None).map_err(|_| RecvError)
    }

    /// Receives a value if one is there. A safe point, as every channel call (see the
    /// module's documentation).
    #[inline]
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        crate::checkpoint();
        self.chan.try_recv()
    }

    /// Receives a value, waiting at most `timeout`.
    #[inline]
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        crate::checkpoint();
        self.chan.recv(deadline_after(timeout))
    }

    /// Receives a value, waiting until `deadline` at the latest.
    pub fn recv_deadline(&self, deadline: Instant) -> Result<T, RecvTimeoutError> {
        crate::checkpoint();
        self.chan.recv(Some(deadline))
    }

    /// A blocking iterator over received values; ends when the channel is disconnected.
    pub fn iter(&self) -> Iter<'_, T> {
        Iter { rx: self }
    }

    /// An iterator over the values available now; never waits.
    pub fn try_iter(&self) -> TryIter<'_, T> {
        TryIter { rx: self }
    }

    /// Number of values in the channel (always 0 for a rendezvous channel).
    pub fn len(&self) -> usize {
        self.chan.len()
    }

    /// Whether the channel holds no value (always true for a rendezvous channel).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the channel is full (always true for a rendezvous channel, never for an
    /// unbounded one).
    pub fn is_full(&self) -> bool {
        self.chan.cap.is_some_and(|cap| self.len() >= cap)
    }

    /// The capacity given to [`bounded`], or `None` for an [`unbounded`] channel.
    pub fn capacity(&self) -> Option<usize> {
        self.chan.cap
    }

    /// Whether both receivers belong to the same channel.
    pub fn same_channel(&self, other: &Receiver<T>) -> bool {
        self.chan.ptr_eq(&other.chan)
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        self.chan.add_receiver();
        Receiver {
            chan: self.chan.clone(),
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.chan.drop_receiver();
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("Receiver { .. }")
    }
}

/// Blocking iterator returned by [`Receiver::iter`].
#[derive(Debug)]
pub struct Iter<'a, T> {
    rx: &'a Receiver<T>,
}

impl<T> Iterator for Iter<'_, T> {
    type Item = T;
    #[inline(always)]
    fn next(&mut self) -> Option<T> {
        self.rx.recv().ok()
    }
}

/// Non-blocking iterator returned by [`Receiver::try_iter`].
#[derive(Debug)]
pub struct TryIter<'a, T> {
    rx: &'a Receiver<T>,
}

impl<T> Iterator for TryIter<'_, T> {
    type Item = T;
    #[inline]
    fn next(&mut self) -> Option<T> {
        self.rx.try_recv().ok()
    }
}

/// Owning blocking iterator returned by `Receiver::into_iter`.
#[derive(Debug)]
pub struct IntoIter<T> {
    rx: Receiver<T>,
}

impl<T> Iterator for IntoIter<T> {
    type Item = T;
    #[inline(always)]
    fn next(&mut self) -> Option<T> {
        self.rx.recv().ok()
    }
}

impl<'a, T> IntoIterator for &'a Receiver<T> {
    type Item = T;
    type IntoIter = Iter<'a, T>;
    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

impl<T> IntoIterator for Receiver<T> {
    type Item = T;
    type IntoIter = IntoIter<T>;
    fn into_iter(self) -> IntoIter<T> {
        IntoIter { rx: self }
    }
}
