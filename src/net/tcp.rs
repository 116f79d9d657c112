//! TCP: a listener and a stream shaped like std's, parking coroutines on EAGAIN.

use super::socket::{Sock, Timed, delegate, fd_traits, incoming, stream_io, timeout_methods};
use super::sys;
use std::io;
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// Runs `f` on each address `addr` resolves to until one succeeds; the last error otherwise.
fn each_addr<A: ToSocketAddrs, T>(addr: A, mut f: impl FnMut(&SocketAddr) -> io::Result<T>) -> io::Result<T> {
    let mut last = None;
    for a in addr.to_socket_addrs()? {
        match f(&a) {
            Ok(v) => return Ok(v),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "could not resolve to any addresses")))
}

/// A TCP socket server, listening for connections; see [`std::net::TcpListener`].
///
/// `accept` parks the calling coroutine until a connection arrives.
pub struct TcpListener {
    sock: Sock<std::net::TcpListener>,
}

impl TcpListener {
    /// Binds a listener to `addr` (with `SO_REUSEADDR`, and the system's largest backlog).
    pub fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<TcpListener> {
        each_addr(addr, |a| {
            let fd = sys::socket(sys::family(a), libc::SOCK_STREAM)?;
            sys::setsockopt_int(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
            let (storage, len) = sys::to_sockaddr(a);
            // SAFETY: `storage` holds a valid address of `len` bytes.
            sys::cvt(unsafe { libc::bind(fd.as_raw_fd(), (&raw const storage).cast(), len) })?;
            // SAFETY: a plain syscall; the kernel caps the backlog at net.core.somaxconn.
            sys::cvt(unsafe { libc::listen(fd.as_raw_fd(), libc::SOMAXCONN) })?;
            Ok(TcpListener {
                sock: Sock::new(fd.into()),
            })
        })
    }

    /// Wraps a std listener, switching it to non-blocking mode.
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<TcpListener> {
        Ok(TcpListener {
            sock: Sock::nonblocking(listener)?,
        })
    }

    /// Accepts a connection, parking until one arrives.
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (conn, storage) = self.sock.accept(|l| sys::accept(l.as_raw_fd()))?;
        Ok((TcpStream::from_owned(conn), sys::from_sockaddr(&storage)?))
    }

    /// An iterator over incoming connections: `accept` forever.
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { listener: self }
    }

    /// Stops listening (`shutdown(2)` of the listening socket; not in std): connections not
    /// yet accepted are reset, and every coroutine or thread blocked in `accept` on this
    /// listener or a clone of it wakes with an error, as do later calls.
    pub fn shutdown(&self) -> io::Result<()> {
        // SAFETY: a plain syscall on our own fd.
        sys::cvt(unsafe { libc::shutdown(self.as_raw_fd(), libc::SHUT_RDWR) }).map(drop)
    }

    /// Another handle to the same listener (a `dup` of its fd).
    pub fn try_clone(&self) -> io::Result<TcpListener> {
        Ok(TcpListener {
            sock: self.sock.try_clone()?,
        })
    }

    delegate! {
        /// The address the listener is bound to.
        fn local_addr(&self) -> io::Result<SocketAddr>;
        /// Sets IP_TTL.
        fn set_ttl(&self, ttl: u32) -> io::Result<()>;
        /// Reads IP_TTL.
        fn ttl(&self) -> io::Result<u32>;
        /// Reads and clears SO_ERROR.
        fn take_error(&self) -> io::Result<Option<io::Error>>;
    }
}

fd_traits!(TcpListener { "addr": local_addr }, into OwnedFd);

incoming!(
    /// The iterator of [`TcpListener::incoming`]; it never ends.
    Incoming,
    TcpListener,
    TcpStream
);

/// A TCP connection; see [`std::net::TcpStream`].
///
/// Reads and writes park the calling coroutine until the socket is ready. `Read` and `Write`
/// are implemented for `&TcpStream` too, so one coroutine can read while another writes.
pub struct TcpStream {
    sock: Timed<std::net::TcpStream>,
}

impl TcpStream {
    /// A stream of `fd`, which must be a non-blocking TCP socket.
    fn from_owned(fd: OwnedFd) -> TcpStream {
        TcpStream {
            sock: Sock::new(fd.into()),
        }
    }

    /// Wraps a std stream, switching it to non-blocking mode. Timeouts set on the std stream
    /// are not carried over.
    pub fn from_std(stream: std::net::TcpStream) -> io::Result<TcpStream> {
        Ok(TcpStream {
            sock: Sock::nonblocking(stream)?,
        })
    }

    /// Connects to `addr`, trying each address it resolves to in turn, parking until the
    /// handshake is done.
    pub fn connect<A: ToSocketAddrs>(addr: A) -> io::Result<TcpStream> {
        each_addr(addr, |a| TcpStream::connect_until(a, None))
    }

    /// Connects to `addr`, failing with `TimedOut` if the handshake takes longer than
    /// `timeout` (which must not be zero, as in std).
    pub fn connect_timeout(addr: &SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        if timeout.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot set a 0 duration timeout",
            ));
        }
        TcpStream::connect_until(addr, Instant::now().checked_add(timeout))
    }

    fn connect_until(addr: &SocketAddr, deadline: Option<Instant>) -> io::Result<TcpStream> {
        let fd = sys::socket(sys::family(addr), libc::SOCK_STREAM)?;
        let (storage, len) = sys::to_sockaddr(addr);
        let stream = TcpStream::from_owned(fd);
        if !sys::connect_start(stream.as_raw_fd(), &storage, len)? {
            stream.sock.finish_connect(deadline)?;
        }
        Ok(stream)
    }

    delegate! {
        /// The address of the peer.
        fn peer_addr(&self) -> io::Result<SocketAddr>;
        /// The local address of this end.
        fn local_addr(&self) -> io::Result<SocketAddr>;
        /// Shuts down the read half, the write half or both; coroutines blocked on this socket
        /// (through any clone) wake with end of stream or an error.
        fn shutdown(&self, how: Shutdown) -> io::Result<()>;
        /// Sets TCP_NODELAY.
        fn set_nodelay(&self, nodelay: bool) -> io::Result<()>;
        /// Reads TCP_NODELAY.
        fn nodelay(&self) -> io::Result<bool>;
        /// Sets IP_TTL.
        fn set_ttl(&self, ttl: u32) -> io::Result<()>;
        /// Reads IP_TTL.
        fn ttl(&self) -> io::Result<u32>;
        /// Reads and clears SO_ERROR.
        fn take_error(&self) -> io::Result<Option<io::Error>>;
    }

    timeout_methods!("read", "write", "stream");

    /// Reads without removing the data from the socket's queue, parking until some arrives.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.sock.read_with(|s| s.peek(buf))
    }

    /// Another handle to the same connection (a `dup` of its fd), sharing its timeouts.
    pub fn try_clone(&self) -> io::Result<TcpStream> {
        Ok(TcpStream {
            sock: self.sock.try_clone()?,
        })
    }
}

stream_io!(TcpStream);

fd_traits!(TcpStream { "addr": local_addr, "peer": peer_addr }, into OwnedFd);

impl IntoRawFd for TcpStream {
    fn into_raw_fd(self) -> RawFd {
        OwnedFd::from(self).into_raw_fd()
    }
}

impl FromRawFd for TcpStream {
    /// Takes ownership of a connected TCP socket fd and switches it to non-blocking mode.
    ///
    /// # Safety
    ///
    /// `fd` must be an open socket that nothing else owns.
    unsafe fn from_raw_fd(fd: RawFd) -> TcpStream {
        let _ = sys::set_nonblocking(fd, true);
        // SAFETY: the caller hands us ownership of an open fd.
        TcpStream::from_owned(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}
