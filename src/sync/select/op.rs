//! What a selection hands back: the [`SelectedOperation`] of the [`Select`](super::Select)
//! API, and the [`Token`] and [`SendGuard`] that [`select!`](crate::select) completes a send
//! arm with.

use std::fmt;

use super::{Grant, Outcome, Watch};
use crate::sync::channel::{Receiver, RecvError, SendError, Sender};

/// The operation a [`Select`](super::Select) selected, to be completed with the same channel
/// end it was added with: [`recv`](SelectedOperation::recv) takes the value received (a
/// receive has happened already), [`send`](SelectedOperation::send) supplies the value of a
/// send (room was reserved for it, so it never waits).
///
/// # Panics
///
/// Dropping it without completing the operation panics (as crossbeam's does), after giving back
/// the reserved room or dropping the received value.
#[must_use = "a selected operation must be completed with `send` or `recv`"]
pub struct SelectedOperation<'a> {
    index: usize,
    chan: &'a dyn Watch,
    outcome: Option<Outcome>,
}

impl<'a> SelectedOperation<'a> {
    pub(super) fn new(index: usize, chan: &'a dyn Watch, outcome: Outcome) -> Self {
        SelectedOperation {
            index,
            chan,
            outcome: Some(outcome),
        }
    }

    /// The index of the operation (what `Select::send`/`Select::recv` returned).
    pub fn index(&self) -> usize {
        self.index
    }

    /// Completes the selected send with `msg`; fails, handing `msg` back, if every receiver is
    /// gone.
    ///
    /// # Panics
    ///
    /// If the selected operation is not a send to `s`'s channel.
    pub fn send<T>(mut self, s: &Sender<T>, msg: T) -> Result<(), SendError<T>> {
        assert!(
            std::ptr::addr_eq(self.chan.addr(), std::ptr::from_ref(&*s.chan)),
            "SelectedOperation::send: not the selected operation's channel"
        );
        let token = Token::new(self.chan, self.outcome.take().expect("not completed yet"));
        SendGuard::new(s, token).send(msg)
    }

    /// Completes the selected receive: the value received, or an error if the channel is
    /// empty and disconnected.
    ///
    /// # Panics
    ///
    /// If the selected operation is not a receive from `r`'s channel.
    pub fn recv<T>(mut self, r: &Receiver<T>) -> Result<T, RecvError> {
        assert!(
            std::ptr::addr_eq(self.chan.addr(), std::ptr::from_ref(&*r.chan)),
            "SelectedOperation::recv: not the selected operation's channel"
        );
        match self.outcome.take() {
            // SAFETY: a receive on this channel (checked above) boxed an `Option<T>`.
            Some(Outcome::Received(Some(b))) => unsafe { b.into_inner::<T>() }.ok_or(RecvError),
            other => {
                self.outcome = other;
                panic!("SelectedOperation::recv: the selected operation is a send")
            }
        }
    }
}

impl Drop for SelectedOperation<'_> {
    fn drop(&mut self) {
        let Some(outcome) = self.outcome.take() else { return };
        // A received value is dropped with `outcome`; a granted send is given back.
        if let Outcome::Sending(grant) = outcome {
            self.chan.abandon(grant);
        }
        if !std::thread::panicking() {
            panic!("dropped a SelectedOperation without completing the operation");
        }
    }
}

impl fmt::Debug for SelectedOperation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SelectedOperation").field("index", &self.index).finish()
    }
}

/// What [`select!`](crate::select) gets for the selected arm, to hand to a [`SendGuard`] if
/// the arm is a send. A granted send whose token is dropped otherwise keeps its room reserved.
#[doc(hidden)]
pub struct Token {
    chan: *const (),
    outcome: Option<Outcome>,
}

impl Token {
    pub(super) fn new(chan: &dyn Watch, outcome: Outcome) -> Self {
        Token {
            chan: chan.addr(),
            outcome: Some(outcome),
        }
    }

    fn take_grant(&mut self) -> Option<Grant> {
        match self.outcome.take() {
            Some(Outcome::Sending(grant)) => Some(grant),
            _ => None,
        }
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("Token { .. }")
    }
}

/// Completes the send of a selected `select!` arm: the value is evaluated only then.
#[doc(hidden)]
pub struct SendGuard<'c, T> {
    tx: &'c Sender<T>,
    token: Token,
}

impl<'c, T> SendGuard<'c, T> {
    /// A guard for the arm's channel end and the selection's token.
    ///
    /// # Panics
    ///
    /// If the token was not made for `tx`'s channel.
    pub fn new(tx: &'c Sender<T>, token: Token) -> Self {
        assert!(
            std::ptr::eq(token.chan, std::ptr::from_ref(&*tx.chan).cast()),
            "a select token completes its own channel's send"
        );
        SendGuard { tx, token }
    }

    /// Sends `value` as the granted send (or hands it back if the channel is disconnected).
    pub fn send(mut self, value: T) -> Result<(), SendError<T>> {
        match self.token.take_grant() {
            Some(grant) => self.tx.chan.complete_send(value, grant).map_err(SendError),
            None => Err(SendError(value)), // disconnected
        }
    }
}

impl<T> Drop for SendGuard<'_, T> {
    /// The value was never given (its expression panicked, returned or broke out): the
    /// granted send is given back.
    fn drop(&mut self) {
        if let Some(grant) = self.token.take_grant() {
            self.tx.chan.abandon_send(grant);
        }
    }
}

impl<T> fmt::Debug for SendGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("SendGuard { .. }")
    }
}
