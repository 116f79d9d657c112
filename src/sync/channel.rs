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
//! To wait on several channels at once use [`select!`](crate::select) or [`Select`].

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::chan::Chan;
use super::waitq::deadline_after;

pub use super::error::{
    ReadyTimeoutError, RecvError, RecvTimeoutError, SelectTimeoutError, SendError, SendTimeoutError, TryReadyError,
    TryRecvError, TrySelectError, TrySendError,
};
pub use super::select::{Select, SelectedOperation};

/// Creates a channel holding at most `cap` values; `cap == 0` makes a rendezvous channel.
///
/// On a rendezvous channel a blocking [`Sender::send`] waits until a receiver has taken its
/// value, and [`Sender::try_send`] succeeds only while a receiver is waiting. If that receiver
/// then gives up (a timeout, or a `select!` that picked another arm), the value stays in the
/// channel for the next receiver: nothing is lost.
pub fn bounded<T>(cap: usize) -> (Sender<T>, Receiver<T>) {
    new_pair(Some(cap))
}

/// Creates a channel of unlimited capacity: sends never block.
pub fn unbounded<T>() -> (Sender<T>, Receiver<T>) {
    new_pair(None)
}

fn new_pair<T>(cap: Option<usize>) -> (Sender<T>, Receiver<T>) {
    let chan = Arc::new(Chan::new(cap));
    (Sender { chan: chan.clone() }, Receiver { chan })
}

/// The sending half of a channel; clone it for more producers.
pub struct Sender<T> {
    pub(super) chan: Arc<Chan<T>>,
}

impl<T> Sender<T> {
    /// Sends a value, waiting while the channel is full (on a rendezvous channel: until a
    /// receiver takes it). Fails, returning the value, if every receiver is gone.
    // Inlined with its fast path (a hand-off or a queued value); the blocking part stays out
    // of line (`Chan::send_blocking`).
    #[inline(always)]
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        crate::checkpoint();
        self.chan.send(value, None).map_err(|e| SendError(e.into_inner()))
    }

    /// Sends a value if that is possible without waiting.
    #[inline]
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        self.chan.try_send(value)
    }

    /// Sends a value, waiting at most `timeout`.
    #[inline]
    pub fn send_timeout(&self, value: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        self.chan.send(value, deadline_after(timeout))
    }

    /// Sends a value, waiting until `deadline` at the latest.
    pub fn send_deadline(&self, value: T, deadline: Instant) -> Result<(), SendTimeoutError<T>> {
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
        Arc::ptr_eq(&self.chan, &other.chan)
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.chan.add_sender();
        Sender {
            chan: self.chan.clone(),
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
pub struct Receiver<T> {
    pub(super) chan: Arc<Chan<T>>,
}

impl<T> Receiver<T> {
    /// Receives a value, waiting while the channel is empty; fails once it is empty and every
    /// sender is gone.
    // Inlined, so that a receiver that waits suspends right below the caller's frame (see
    // `Chan::recv`).
    #[inline(always)]
    pub fn recv(&self) -> Result<T, RecvError> {
        crate::checkpoint();
        self.chan.recv(None).map_err(|_| RecvError)
    }

    /// Receives a value if one is there.
    #[inline]
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        self.chan.try_recv()
    }

    /// Receives a value, waiting at most `timeout`.
    #[inline]
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.chan.recv(deadline_after(timeout))
    }

    /// Receives a value, waiting until `deadline` at the latest.
    pub fn recv_deadline(&self, deadline: Instant) -> Result<T, RecvTimeoutError> {
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

    /// The capacity given to [`bounded`], or `None` for an [`unbounded`] channel.
    pub fn capacity(&self) -> Option<usize> {
        self.chan.cap
    }

    /// Whether both receivers belong to the same channel.
    pub fn same_channel(&self, other: &Receiver<T>) -> bool {
        Arc::ptr_eq(&self.chan, &other.chan)
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
