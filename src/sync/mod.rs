//! Synchronisation that parks coroutines, not threads (and works from plain threads too).
//!
//! Every blocking call here waits through the runtime's parking layer: inside a coroutine it
//! suspends only that coroutine and lets its worker run others; on a plain OS thread it parks the
//! thread. The same primitive can therefore be shared between coroutines on different workers
//! and ordinary threads.
//!
//! | primitive | after |
//! | --- | --- |
//! | [`channel`]: [`channel::bounded`], [`channel::unbounded`], [`channel::after`], [`channel::tick`], [`channel::never`], [`select!`](crate::select), [`Select`] | crossbeam-channel |
//! | [`oneshot`] | tokio's `oneshot` |
//! | [`Mutex`], [`RwLock`], [`Condvar`], [`Barrier`] | std (without poisoning) |
//! | [`Semaphore`] | tokio's `Semaphore` |
//! | [`WaitGroup`] | crossbeam's `WaitGroup` |
//!
//! Waiters queue in FIFO order. Inside a coroutine every blocking wait is a cancellation point:
//! a cancelled waiter leaves its queue cleanly (passing on any wakeup it had been given), so a
//! cancellation never strands the other waiters.

mod barrier;
mod chan;
pub mod channel;
mod condvar;
mod error;
mod mutex;
pub mod oneshot;
mod rwlock;
mod select;
mod select_macro;
mod semaphore;
mod spin;
mod waiters;
mod waitgroup;

pub use barrier::{Barrier, BarrierWaitResult};
pub use condvar::{Condvar, WaitTimeoutResult};
pub use mutex::{Mutex, MutexGuard};
pub use rwlock::{RwLock, RwLockReadGuard, RwLockWriteGuard};
pub use select::{Select, SelectedOperation};
pub use semaphore::{Semaphore, SemaphorePermit};
pub use waitgroup::WaitGroup;

/// Helpers the [`select!`](crate::select) macro expands to; not part of the API.
#[doc(hidden)]
pub mod __select {
    pub use super::select::{Mode, SendGuard, Token, recv_result, send_error};
}
