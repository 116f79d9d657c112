//! The I/O layer's side of a worker's epoll instance. A worker sleeps in its epoll instance
//! when idle and hands the events of each wait to its [`Poller`], which skips the worker's own
//! eventfd's; the I/O layer (`io::reactor`) implements it and wakes the coroutines waiting on
//! those descriptors through their unparkers. The scheduler never names the I/O layer: the runtime hands each
//! worker a [`NewPoller`] when it builds them.

use std::any::Any;
use std::os::fd::RawFd;

/// What a worker's epoll instance serves besides the worker's own eventfd.
pub(crate) trait Poller: Any {
    /// Handles the epoll events of one wait. The worker's eventfd's token (0, which the
    /// worker handles itself) names nothing of the poller's and is skipped.
    fn dispatch(&self, events: &[libc::epoll_event]);
    /// Whether coroutines of this worker wait on I/O, so a busy worker should poll for it.
    fn has_waiters(&self) -> bool;
    /// The poller as `Any`, so that the I/O layer can find its own type again.
    fn as_any(&self) -> &dyn Any;
}

/// Makes a worker's poller for its epoll instance (on the worker's thread, as it starts).
pub(crate) type NewPoller = fn(epoll: RawFd) -> Box<dyn Poller>;
