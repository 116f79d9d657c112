//! Sockets shaped like `std::net` (and `std::os::unix::net`) whose blocking calls park the
//! calling coroutine instead of its worker thread.
//!
//! Every socket here is non-blocking underneath. An operation is tried at once; when the
//! kernel says EAGAIN the coroutine parks until its worker's epoll instance reports readiness
//! (see [`crate::io`]), then tries again. On a plain thread outside any runtime the same types
//! work too, waiting in `poll(2)`. EINTR is retried and never returned.
//!
//! ```
//! use sigcoro::net::{TcpListener, TcpStream};
//! use std::io::{Read, Write};
//!
//! let echoed = sigcoro::run(|| {
//!     let listener = TcpListener::bind("127.0.0.1:0").unwrap();
//!     let addr = listener.local_addr().unwrap();
//!     let server = sigcoro::spawn(move || {
//!         let (mut conn, _) = listener.accept().unwrap();
//!         let mut buf = [0; 64];
//!         let n = conn.read(&mut buf).unwrap();
//!         conn.write_all(&buf[..n]).unwrap();
//!     });
//!     let mut client = TcpStream::connect(addr).unwrap();
//!     client.write_all(b"ping").unwrap();
//!     let mut reply = [0; 4];
//!     client.read_exact(&mut reply).unwrap();
//!     server.join().unwrap();
//!     reply
//! });
//! assert_eq!(&echoed, b"ping");
//! ```
//!
//! # Timeouts
//!
//! `set_read_timeout` / `set_write_timeout` behave as std's on Linux: an operation that waits
//! longer fails with [`std::io::ErrorKind::WouldBlock`] (EAGAIN). As in std they are properties
//! of the socket, shared by the handles `try_clone` makes. `connect_timeout` fails with
//! [`std::io::ErrorKind::TimedOut`].
//!
//! # Stopping a coroutine that waits on a socket
//!
//! A socket cannot be dropped while another coroutine borrows it, and dropping a `try_clone`
//! duplicate leaves the socket open (as with std and `close(2)`). To wake a coroutine blocked
//! in `read` or `write`, call `shutdown` on the socket (or a clone): readers wake with end of
//! stream (`Ok(0)`), writers with `BrokenPipe`, exactly as blocked threads would. To wake a
//! coroutine blocked in `accept`, call [`TcpListener::shutdown`] (an addition to std's API): it
//! wakes with an error. Cancelling the coroutine ([`crate::JoinHandle::cancel`]) also works.
//! For raw fds, see [`crate::io::close`].
//!
//! # Name resolution
//!
//! Addresses given as [`std::net::ToSocketAddrs`] are resolved as std does; a host name means
//! a blocking `getaddrinfo` on the worker. Resolve names inside [`crate::blocking()`] first to
//! keep the worker free.

mod sys;
mod tcp;
mod udp;
mod unix;

pub use tcp::{Incoming, TcpListener, TcpStream};
pub use udp::UdpSocket;
pub use unix::{UnixIncoming, UnixListener, UnixStream};

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A socket's read and write timeouts (0: none), shared by its clones like socket options.
#[derive(Debug, Default)]
struct Timeouts {
    read: AtomicU64,
    write: AtomicU64,
}

impl Timeouts {
    fn set(slot: &AtomicU64, dur: Option<Duration>) -> io::Result<()> {
        let nanos = match dur {
            None => 0,
            Some(d) if d.is_zero() => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "cannot set a 0 duration timeout",
                ));
            }
            Some(d) => u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1),
        };
        slot.store(nanos, Ordering::Relaxed);
        Ok(())
    }

    fn get(slot: &AtomicU64) -> Option<Duration> {
        match slot.load(Ordering::Relaxed) {
            0 => None,
            n => Some(Duration::from_nanos(n)),
        }
    }

    /// The deadline of an operation starting now under the timeout in `slot`.
    #[inline]
    fn deadline(slot: &AtomicU64) -> Option<Instant> {
        match slot.load(Ordering::Relaxed) {
            0 => None,
            n => Instant::now().checked_add(Duration::from_nanos(n)),
        }
    }
}

/// Our own wait timeouts (errors with no OS code) become EAGAIN, as SO_RCVTIMEO gives in std.
fn as_would_block(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::TimedOut && e.raw_os_error().is_none() {
        io::Error::from_raw_os_error(libc::EAGAIN)
    } else {
        e
    }
}

/// Our own wait timeouts become the ETIMEDOUT a connect that timed out gives.
fn as_connect_timeout(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::TimedOut && e.raw_os_error().is_none() {
        io::Error::new(io::ErrorKind::TimedOut, "connection timed out")
    } else {
        e
    }
}

/// Sleeps a little before retrying something the kernel refused for now: parks the coroutine,
/// or sleeps the thread outside a runtime.
fn backoff(attempt: u32) {
    let d = Duration::from_millis(1 << attempt.min(6));
    if crate::sched::park::current_task().is_some() {
        crate::sleep(d);
    } else {
        std::thread::sleep(d);
    }
}
