//! A channel for exactly one value, after tokio's `oneshot`, that parks coroutines.
//!
//! ```
//! use sigcoro::sync::oneshot;
//!
//! let (tx, rx) = oneshot::channel();
//! std::thread::spawn(move || tx.send(6 * 7).unwrap());
//! assert_eq!(rx.recv(), Ok(42));
//!
//! let (tx, rx) = oneshot::channel::<i32>();
//! drop(tx); // dropped without sending
//! assert_eq!(rx.recv(), Err(oneshot::RecvError));
//! ```

use std::fmt;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use super::waiters::{OnUnwind, deadline_after, expired, lock};
use crate::sched::park::{Unparker, current_unparker, park_until};

pub use super::error::{RecvError, RecvTimeoutError, TryRecvError};

/// Creates a oneshot channel: one [`Sender::send`], one value received.
pub fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let inner = Arc::new(Inner {
        state: StdMutex::new(State {
            value: None,
            sender_alive: true,
            receiver_alive: true,
            waiter: None,
        }),
    });
    (Sender { inner: inner.clone() }, Receiver { inner })
}

struct Inner<T> {
    state: StdMutex<State<T>>,
}

struct State<T> {
    value: Option<T>,
    sender_alive: bool,
    receiver_alive: bool,
    /// The receiver, while it waits.
    waiter: Option<Unparker>,
}

/// Sends the one value; dropping it unsent makes the receiver fail with [`RecvError`].
pub struct Sender<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Sender<T> {
    /// Sends the value; if the receiver is gone, returns it.
    pub fn send(self, value: T) -> Result<(), T> {
        let mut st = lock(&self.inner.state);
        if !st.receiver_alive {
            return Err(value);
        }
        st.value = Some(value);
        let waiter = st.waiter.take();
        drop(st);
        if let Some(w) = waiter {
            w.unpark();
        }
        Ok(())
    }

    /// Whether the receiver is gone (a send would fail).
    pub fn is_closed(&self) -> bool {
        !lock(&self.inner.state).receiver_alive
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut st = lock(&self.inner.state);
        st.sender_alive = false;
        let waiter = st.waiter.take();
        drop(st);
        if let Some(w) = waiter {
            w.unpark();
        }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("oneshot::Sender { .. }")
    }
}

/// Receives the one value.
pub struct Receiver<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Receiver<T> {
    /// Waits for the value; fails if the sender was dropped without sending.
    pub fn recv(self) -> Result<T, RecvError> {
        self.recv_until(None).map_err(|_| RecvError)
    }

    /// Takes the value if it has been sent. After the value was taken, or once the sender is
    /// gone without sending, fails with `Disconnected`.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        let mut st = lock(&self.inner.state);
        match st.value.take() {
            Some(v) => Ok(v),
            None if st.sender_alive => Err(TryRecvError::Empty),
            None => Err(TryRecvError::Disconnected),
        }
    }

    /// Waits at most `timeout` for the value; the receiver may be used again after a timeout.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.recv_until(deadline_after(timeout))
    }

    /// Waits until `deadline` at the latest for the value.
    pub fn recv_deadline(&self, deadline: Instant) -> Result<T, RecvTimeoutError> {
        self.recv_until(Some(deadline))
    }

    fn recv_until(&self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        let guard = OnUnwind::new(|| lock(&self.inner.state).waiter = None);
        let result = loop {
            let mut st = lock(&self.inner.state);
            if let Some(v) = st.value.take() {
                break Ok(v);
            }
            if !st.sender_alive {
                break Err(RecvTimeoutError::Disconnected);
            }
            if expired(deadline) {
                break Err(RecvTimeoutError::Timeout);
            }
            if st.waiter.is_none() {
                st.waiter = Some(current_unparker());
            }
            drop(st);
            park_until(deadline, "sigcoro::sync::oneshot::Receiver::recv");
        };
        guard.disarm();
        lock(&self.inner.state).waiter = None;
        result
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut st = lock(&self.inner.state);
        st.receiver_alive = false;
        let value = st.value.take();
        drop(st);
        drop(value);
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("oneshot::Receiver { .. }")
    }
}
