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

mod socket;
mod sys;
mod tcp;
mod udp;
mod unix;

pub use tcp::{Incoming, TcpListener, TcpStream};
pub use udp::UdpSocket;
pub use unix::{UnixIncoming, UnixListener, UnixStream};

use std::time::Duration;

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
