//! I/O for coroutines: readiness through each worker's epoll instance.
//!
//! Inside a coroutine, waiting for an fd parks only that coroutine: its worker runs the others
//! and learns of readiness from its epoll instance, in which it sleeps when it has nothing to
//! run (with its next timer as the timeout: no busy polling). On a plain thread the same calls
//! block the thread in `poll(2)`. EINTR is retried inside and never returned.
//!
//! [`crate::net`] builds sockets on this; the functions here are for fds the caller owns:
//! pipes, inotify, timerfd, eventfd, sockets of other libraries.
//!
//! ```
//! use std::io::{Read, Write};
//! use std::os::fd::AsRawFd;
//!
//! let (mut reader, mut writer) = std::io::pipe().unwrap();
//! let fd = reader.as_raw_fd();
//! let got = sigcoro::run(move || {
//!     let waiter = sigcoro::spawn(move || {
//!         sigcoro::io::wait_readable(fd).unwrap();
//!         let mut buf = [0; 5];
//!         reader.read_exact(&mut buf).unwrap();
//!         buf
//!     });
//!     writer.write_all(b"hello").unwrap();
//!     waiter.join().unwrap()
//! });
//! assert_eq!(&got, b"hello");
//! ```
//!
//! # Closing an fd that others wait on
//!
//! `close(2)` removes an fd from every epoll set without a word, so a coroutine waiting on it
//! would wait forever. Close fds that others may be waiting on with [`close`]: every coroutine
//! and thread waiting on that fd through this module wakes with an error, then the fd is
//! closed. (Sockets of [`crate::net`] cannot be dropped while borrowed; to stop a coroutine
//! blocked on one of them, call `shutdown` on a clone: it wakes with end of stream or an error,
//! as a thread would.)
//!
//! Readiness is level-checked: a wait on an fd that is ready already returns at once. It can
//! still be stale by the time the caller acts (another reader got there first), so read and
//! write in non-blocking mode and wait again on `WouldBlock`.

pub(crate) mod raw;
pub(crate) mod reactor;
pub(crate) mod source;

use std::os::fd::{OwnedFd, RawFd};
use std::time::{Duration, Instant};

const IN: u32 = libc::EPOLLIN as u32;
const OUT: u32 = libc::EPOLLOUT as u32;

/// Waits until `fd` is readable (or has an error or hang-up pending).
///
/// Parks the running coroutine, or blocks the thread outside a runtime. Fails with EBADF for
/// an invalid fd, or with an error naming [`close`] if another coroutine closed `fd` with it.
/// Regular files are always ready.
pub fn wait_readable(fd: RawFd) -> std::io::Result<()> {
    raw::wait_fd(fd, IN, None)
}

/// Waits until `fd` is writable (or has an error or hang-up pending); see [`wait_readable`].
pub fn wait_writable(fd: RawFd) -> std::io::Result<()> {
    raw::wait_fd(fd, OUT, None)
}

/// [`wait_readable`] for at most `timeout`: an error of kind `TimedOut` after that.
pub fn wait_readable_timeout(fd: RawFd, timeout: Duration) -> std::io::Result<()> {
    raw::wait_fd(fd, IN, Instant::now().checked_add(timeout))
}

/// [`wait_writable`] for at most `timeout`: an error of kind `TimedOut` after that.
pub fn wait_writable_timeout(fd: RawFd, timeout: Duration) -> std::io::Result<()> {
    raw::wait_fd(fd, OUT, Instant::now().checked_add(timeout))
}

/// [`wait_readable`] until `deadline`: an error of kind `TimedOut` after that.
pub fn wait_readable_deadline(fd: RawFd, deadline: Instant) -> std::io::Result<()> {
    raw::wait_fd(fd, IN, Some(deadline))
}

/// [`wait_writable`] until `deadline`: an error of kind `TimedOut` after that.
pub fn wait_writable_deadline(fd: RawFd, deadline: Instant) -> std::io::Result<()> {
    raw::wait_fd(fd, OUT, Some(deadline))
}

/// Closes `fd` after waking, with an error, every coroutine or thread waiting on it through
/// this module's functions.
///
/// A wait that starts after `close` took the fd's waiters (a race in the caller's program)
/// waits on whatever the number then names, as it would with `close(2)`.
pub fn close(fd: impl Into<OwnedFd>) -> std::io::Result<()> {
    raw::close(fd.into())
}
