//! A worker's reactor: file descriptors that coroutines of this worker wait on, registered in
//! the worker's epoll instance. Token 0 is the worker's own eventfd; every other token belongs
//! here.

use std::os::fd::RawFd;

/// The I/O waiters of one worker (reached from that worker's thread only).
pub(crate) struct Reactor {
    #[allow(dead_code)]
    epoll: RawFd,
}

impl Reactor {
    /// A reactor registering in `epoll`, the worker's epoll instance.
    pub(crate) fn new(epoll: RawFd) -> Reactor {
        Reactor { epoll }
    }

    /// Handles one epoll event whose token is not 0.
    pub(crate) fn dispatch(&self, _token: u64, _events: u32) {}

    /// Whether coroutines of this worker wait on I/O, so a busy worker should poll for it.
    pub(crate) fn has_waiters(&self) -> bool {
        false
    }
}
