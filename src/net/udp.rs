//! UDP: a socket shaped like std's, parking coroutines on EAGAIN.

use super::{Timeouts, as_would_block};
use crate::io::source::{Dir, Source};
use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

/// A UDP socket; see [`std::net::UdpSocket`].
///
/// Receives park the calling coroutine until a datagram arrives; sends park while the socket
/// buffer is full.
pub struct UdpSocket {
    inner: std::net::UdpSocket,
    src: Source,
    timeouts: Arc<Timeouts>,
}

impl UdpSocket {
    fn wrap(inner: std::net::UdpSocket, timeouts: Arc<Timeouts>) -> io::Result<UdpSocket> {
        inner.set_nonblocking(true)?;
        let src = Source::new(inner.as_raw_fd());
        Ok(UdpSocket { inner, src, timeouts })
    }

    /// Binds a socket to `addr`.
    pub fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<UdpSocket> {
        UdpSocket::wrap(std::net::UdpSocket::bind(addr)?, Arc::default())
    }

    /// Wraps a std socket, switching it to non-blocking mode.
    pub fn from_std(socket: std::net::UdpSocket) -> io::Result<UdpSocket> {
        UdpSocket::wrap(socket, Arc::default())
    }

    /// Sets the default peer for `send` and `recv` (no packet is sent).
    pub fn connect<A: ToSocketAddrs>(&self, addr: A) -> io::Result<()> {
        self.inner.connect(addr)
    }

    /// Sends a datagram to `addr` (the first address it resolves to).
    pub fn send_to<A: ToSocketAddrs>(&self, buf: &[u8], addr: A) -> io::Result<usize> {
        let addr = addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no addresses to send data to"))?;
        let deadline = Timeouts::deadline(&self.timeouts.write);
        self.src
            .do_io(Dir::Write, deadline, || self.inner.send_to(buf, addr))
            .map_err(as_would_block)
    }

    /// Receives a datagram and the address it came from.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let deadline = Timeouts::deadline(&self.timeouts.read);
        self.src
            .do_io(Dir::Read, deadline, || self.inner.recv_from(buf))
            .map_err(as_would_block)
    }

    /// Receives a datagram without removing it from the queue.
    pub fn peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let deadline = Timeouts::deadline(&self.timeouts.read);
        self.src
            .do_io(Dir::Read, deadline, || self.inner.peek_from(buf))
            .map_err(as_would_block)
    }

    /// Sends a datagram to the connected peer.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        let deadline = Timeouts::deadline(&self.timeouts.write);
        self.src
            .do_io(Dir::Write, deadline, || self.inner.send(buf))
            .map_err(as_would_block)
    }

    /// Receives a datagram from the connected peer.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        let deadline = Timeouts::deadline(&self.timeouts.read);
        self.src
            .do_io(Dir::Read, deadline, || self.inner.recv(buf))
            .map_err(as_would_block)
    }

    /// Receives a datagram from the connected peer without removing it from the queue.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        let deadline = Timeouts::deadline(&self.timeouts.read);
        self.src
            .do_io(Dir::Read, deadline, || self.inner.peek(buf))
            .map_err(as_would_block)
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// The connected peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }

    /// Sets SO_BROADCAST.
    pub fn set_broadcast(&self, on: bool) -> io::Result<()> {
        self.inner.set_broadcast(on)
    }

    /// Reads SO_BROADCAST.
    pub fn broadcast(&self) -> io::Result<bool> {
        self.inner.broadcast()
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

    /// Sets how long a receive may wait (`None`: forever); a receive that waits longer fails
    /// with `WouldBlock`. Zero is refused, as in std. Shared with the clones of this socket.
    pub fn set_read_timeout(&self, dur: Option<Duration>) -> io::Result<()> {
        Timeouts::set(&self.timeouts.read, dur)
    }

    /// Sets how long a send may wait (`None`: forever).
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

    /// Another handle to the same socket (a `dup` of its fd), sharing its timeouts.
    pub fn try_clone(&self) -> io::Result<UdpSocket> {
        UdpSocket::wrap(self.inner.try_clone()?, self.timeouts.clone())
    }
}

impl fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpSocket")
            .field("addr", &self.local_addr().ok())
            .field("fd", &self.as_raw_fd())
            .finish()
    }
}

impl AsRawFd for UdpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

impl AsFd for UdpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

impl From<UdpSocket> for OwnedFd {
    fn from(s: UdpSocket) -> OwnedFd {
        let UdpSocket { inner, src, .. } = s;
        drop(src);
        inner.into()
    }
}
