//! TCP: a listener and a stream shaped like std's, parking coroutines on EAGAIN.

use super::{Timeouts, as_connect_timeout, as_would_block, sys};
use crate::io::source::{Dir, Source, poll_fd};
use std::fmt;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::Arc;
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
    inner: std::net::TcpListener,
    src: Source,
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
            Ok(TcpListener::from_owned(fd))
        })
    }

    fn from_owned(fd: OwnedFd) -> TcpListener {
        let src = Source::new(fd.as_raw_fd());
        TcpListener {
            inner: std::net::TcpListener::from(fd),
            src,
        }
    }

    /// Wraps a std listener, switching it to non-blocking mode.
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<TcpListener> {
        listener.set_nonblocking(true)?;
        Ok(TcpListener::from_owned(listener.into()))
    }

    /// Accepts a connection, parking until one arrives.
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let fd = self.inner.as_raw_fd();
        let (conn, storage) = self.src.do_io(Dir::Read, None, || sys::accept(fd))?;
        Ok((TcpStream::from_owned(conn), sys::from_sockaddr(&storage)?))
    }

    /// An iterator over incoming connections: `accept` forever.
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { listener: self }
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// Stops listening (`shutdown(2)` of the listening socket; not in std): connections not
    /// yet accepted are reset, and every coroutine or thread blocked in `accept` on this
    /// listener or a clone of it wakes with an error, as do later calls.
    pub fn shutdown(&self) -> io::Result<()> {
        // SAFETY: a plain syscall on our own fd.
        sys::cvt(unsafe { libc::shutdown(self.inner.as_raw_fd(), libc::SHUT_RDWR) }).map(drop)
    }

    /// Another handle to the same listener (a `dup` of its fd).
    pub fn try_clone(&self) -> io::Result<TcpListener> {
        Ok(TcpListener::from_owned(self.inner.try_clone()?.into()))
    }

    /// Sets IP_TTL.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.inner.set_ttl(ttl)
    }

    /// Reads IP_TTL.
    pub fn ttl(&self) -> io::Result<u32> {
        self.inner.ttl()
    }

    /// Reads and clears SO_ERROR.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.inner.take_error()
    }
}

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpListener")
            .field("addr", &self.local_addr().ok())
            .field("fd", &self.as_raw_fd())
            .finish()
    }
}

impl AsRawFd for TcpListener {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

impl AsFd for TcpListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

impl From<TcpListener> for OwnedFd {
    fn from(l: TcpListener) -> OwnedFd {
        let TcpListener { inner, src } = l;
        drop(src);
        inner.into()
    }
}

/// The iterator of [`TcpListener::incoming`]; it never ends.
#[derive(Debug)]
pub struct Incoming<'a> {
    listener: &'a TcpListener,
}

impl Iterator for Incoming<'_> {
    type Item = io::Result<TcpStream>;

    fn next(&mut self) -> Option<io::Result<TcpStream>> {
        Some(self.listener.accept().map(|(s, _)| s))
    }
}

/// A TCP connection; see [`std::net::TcpStream`].
///
/// Reads and writes park the calling coroutine until the socket is ready. `Read` and `Write`
/// are implemented for `&TcpStream` too, so one coroutine can read while another writes.
pub struct TcpStream {
    inner: std::net::TcpStream,
    src: Source,
    timeouts: Arc<Timeouts>,
}

impl TcpStream {
    fn from_owned(fd: OwnedFd) -> TcpStream {
        TcpStream::with_timeouts(fd, Arc::default())
    }

    fn with_timeouts(fd: OwnedFd, timeouts: Arc<Timeouts>) -> TcpStream {
        let src = Source::new(fd.as_raw_fd());
        TcpStream {
            inner: std::net::TcpStream::from(fd),
            src,
            timeouts,
        }
    }

    /// Wraps a std stream, switching it to non-blocking mode. Timeouts set on the std stream
    /// are not carried over.
    pub fn from_std(stream: std::net::TcpStream) -> io::Result<TcpStream> {
        stream.set_nonblocking(true)?;
        Ok(TcpStream::from_owned(stream.into()))
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
        let raw = fd.as_raw_fd();
        let stream = TcpStream::from_owned(fd);
        if !sys::connect_start(raw, &storage, len)? {
            // In progress: done when the socket polls writable (or in error).
            loop {
                let seq = stream.src.seq(Dir::Write);
                let now = poll_fd(raw, libc::POLLOUT, Some(Instant::now()));
                if now.is_ok_and(|ev| ev != 0) {
                    break;
                }
                stream.src.wait(Dir::Write, seq, deadline).map_err(as_connect_timeout)?;
            }
            if let Some(e) = sys::take_error(raw)? {
                return Err(e);
            }
        }
        Ok(stream)
    }

    /// The address of the peer.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }

    /// The local address of this end.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// Shuts down the read half, the write half or both; coroutines blocked on this socket
    /// (through any clone) wake with end of stream or an error.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.inner.shutdown(how)
    }

    /// Sets TCP_NODELAY.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.inner.set_nodelay(nodelay)
    }

    /// Reads TCP_NODELAY.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.inner.nodelay()
    }

    /// Sets IP_TTL.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.inner.set_ttl(ttl)
    }

    /// Reads IP_TTL.
    pub fn ttl(&self) -> io::Result<u32> {
        self.inner.ttl()
    }

    /// Reads and clears SO_ERROR.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.inner.take_error()
    }

    /// Sets how long a read may wait (`None`: forever); a read that waits longer fails with
    /// `WouldBlock`. Zero is refused, as in std. Shared with the clones of this stream.
    pub fn set_read_timeout(&self, dur: Option<Duration>) -> io::Result<()> {
        Timeouts::set(&self.timeouts.read, dur)
    }

    /// Sets how long a write may wait (`None`: forever); see [`TcpStream::set_read_timeout`].
    pub fn set_write_timeout(&self, dur: Option<Duration>) -> io::Result<()> {
        Timeouts::set(&self.timeouts.write, dur)
    }

    /// The read timeout.
    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(Timeouts::get(&self.timeouts.read))
    }

    /// The write timeout.
    pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(Timeouts::get(&self.timeouts.write))
    }

    /// Reads without removing the data from the socket's queue, parking until some arrives.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        let deadline = Timeouts::deadline(&self.timeouts.read);
        self.src
            .do_io(Dir::Read, deadline, || self.inner.peek(buf))
            .map_err(as_would_block)
    }

    /// Another handle to the same connection (a `dup` of its fd), sharing its timeouts.
    pub fn try_clone(&self) -> io::Result<TcpStream> {
        let fd: OwnedFd = self.inner.try_clone()?.into();
        Ok(TcpStream::with_timeouts(fd, self.timeouts.clone()))
    }

    fn read_impl(&self, buf: &mut [u8]) -> io::Result<usize> {
        let deadline = Timeouts::deadline(&self.timeouts.read);
        let len = buf.len();
        self.src
            .read(len, deadline, || (&self.inner).read(buf))
            .map_err(as_would_block)
    }

    fn read_vectored_impl(&self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        let deadline = Timeouts::deadline(&self.timeouts.read);
        let len = bufs.iter().map(|b| b.len()).sum();
        self.src
            .read(len, deadline, || (&self.inner).read_vectored(bufs))
            .map_err(as_would_block)
    }

    fn write_impl(&self, buf: &[u8]) -> io::Result<usize> {
        let deadline = Timeouts::deadline(&self.timeouts.write);
        self.src
            .do_io(Dir::Write, deadline, || (&self.inner).write(buf))
            .map_err(as_would_block)
    }

    fn write_vectored_impl(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let deadline = Timeouts::deadline(&self.timeouts.write);
        self.src
            .do_io(Dir::Write, deadline, || (&self.inner).write_vectored(bufs))
            .map_err(as_would_block)
    }
}

impl Read for TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_impl(buf)
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        self.read_vectored_impl(bufs)
    }
}

impl Read for &TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_impl(buf)
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        self.read_vectored_impl(bufs)
    }
}

impl Write for TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_impl(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.write_vectored_impl(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Write for &TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_impl(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.write_vectored_impl(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpStream")
            .field("addr", &self.local_addr().ok())
            .field("peer", &self.peer_addr().ok())
            .field("fd", &self.as_raw_fd())
            .finish()
    }
}

impl AsRawFd for TcpStream {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

impl AsFd for TcpStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

impl From<TcpStream> for OwnedFd {
    fn from(s: TcpStream) -> OwnedFd {
        let TcpStream { inner, src, .. } = s;
        drop(src);
        inner.into()
    }
}

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
