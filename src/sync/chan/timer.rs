//! Timer channels ([`after`](crate::sync::channel::after), `at`, `tick`) and the channel that
//! never delivers (`never`), as crossbeam's: receivers with no sender (the count of senders
//! stays 1, so they are never disconnected), whose message, the `Instant` it was due, is made
//! when a receiver finds it due. `after` and `at` deliver once; `tick` delivers again one period
//! after each receive (ticks nobody received are skipped, not queued).
//!
//! A blocking receive sleeps until the next message is due; a [`Select`](crate::sync::Select)
//! asks its channels when their next message is due ([`Watch::next_due`]) and parks until then
//! at the latest.

use std::time::{Duration, Instant};

use super::super::spin::SpinGuard;
use super::super::waiters::expired;
use super::{Chan, State};
use crate::sched::park::park_until;
use crate::sync::channel::RecvTimeoutError;

/// A timer channel's schedule.
pub(in crate::sync) struct Timer<T> {
    /// When the next message is due; `None` once a one-shot timer delivered it.
    next: Option<Instant>,
    /// A ticker's period.
    period: Option<Duration>,
    /// Makes the message (the identity: timer channels carry `Instant`s).
    msg: fn(Instant) -> T,
}

impl<T> Timer<T> {
    /// The message, if one is due; schedules the next.
    pub(super) fn take_due(&mut self) -> Option<T> {
        let due = self.next?;
        let now = Instant::now();
        if now < due {
            return None;
        }
        self.next = self.period.and_then(|p| now.checked_add(p));
        Some((self.msg)(due))
    }

    /// How many messages are ready (0 or 1).
    pub(super) fn ready(&self) -> usize {
        usize::from(self.next.is_some_and(|due| Instant::now() >= due))
    }
}

impl Chan<Instant> {
    /// A channel that delivers `Instant`s: once at `first` (never if `None`), then every
    /// `period` after each receive if it is a ticker.
    pub(in crate::sync) fn timer(first: Option<Instant>, period: Option<Duration>) -> Self {
        let mut chan = Chan::new(Some(1));
        chan.state.get_mut().timer = Some(Timer {
            next: first,
            period,
            msg: std::convert::identity,
        });
        chan.is_timer = true;
        chan.special = true;
        chan
    }
}

impl<T> Chan<T> {
    /// A rendezvous channel with no sender that never disconnects: nothing ever arrives.
    pub(in crate::sync) fn never() -> Self {
        Chan::new(Some(0))
    }

    /// When the next message of a timer channel is due.
    pub(in crate::sync) fn next_due(&self) -> Option<Instant> {
        if !self.is_timer {
            return None;
        }
        self.lock().timer.as_ref().and_then(|t| t.next)
    }

    /// A blocking receive on a timer channel: sleeps until its message is due or the deadline
    /// passes.
    #[cold]
    #[inline(never)]
    pub(super) fn recv_timer<'g>(
        &'g self,
        mut st: SpinGuard<'g, State<T>>,
        deadline: Option<Instant>,
    ) -> Result<T, RecvTimeoutError> {
        loop {
            let timer = st.timer.as_mut().expect("a timer channel");
            if let Some(v) = timer.take_due() {
                return Ok(v);
            }
            if expired(deadline) {
                return Err(RecvTimeoutError::Timeout);
            }
            let wake = match (timer.next, deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            drop(st);
            park_until(wake, "Receiver::recv on a timer channel (sigcoro::sync::channel)"); // spurious wakeups only loop
            st = self.lock();
        }
    }
}
