//! UDP: a socket shaped like std's, parking coroutines on EAGAIN.

use super::socket::{Sock, Timed, delegate, fd_traits, timeout_methods};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

/// A UDP socket; see [`std::net::UdpSocket`].
///
/// Receives park the calling coroutine until a datagram arrives; sends park while the socket
/// buffer is full.
pub struct UdpSocket {
    sock: Timed<std::net::UdpSocket>,
}

impl UdpSocket {
    /// Binds a socket to `addr`.
    pub fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<UdpSocket> {
        UdpSocket::from_std(std::net::UdpSocket::bind(addr)?)
    }

    /// Wraps a std socket, switching it to non-blocking mode.
    pub fn from_std(socket: std::net::UdpSocket) -> io::Result<UdpSocket> {
        Ok(UdpSocket {
            sock: Sock::nonblocking(socket)?,
        })
    }

    /// Sets the default peer for `send` and `recv` (no packet is sent).
    pub fn connect<A: ToSocketAddrs>(&self, addr: A) -> io::Result<()> {
        self.sock.inner.connect(addr)
    }

    /// Sends a datagram to `addr` (the first address it resolves to).
    pub fn send_to<A: ToSocketAddrs>(&self, buf: &[u8], addr: A) -> io::Result<usize> {
        let addr = addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no addresses to send data to"))?;
        self.sock.write_with(|s| s.send_to(buf, addr))
    }

    /// Receives a datagram and the address it came from.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.sock.read_with(|s| s.recv_from(buf))
    }

    /// Receives a datagram without removing it from the queue.
    pub fn peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.sock.read_with(|s| s.peek_from(buf))
    }

    /// Sends a datagram to the connected peer.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.sock.write_with(|s| s.send(buf))
    }

    /// Receives a datagram from the connected peer.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.sock.read_with(|s| s.recv(buf))
    }

    /// Receives a datagram from the connected peer without removing it from the queue.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.sock.read_with(|s| s.peek(buf))
    }

    delegate! {
        /// The address the socket is bound to.
        fn local_addr(&self) -> io::Result<SocketAddr>;
        /// The connected peer's address.
        fn peer_addr(&self) -> io::Result<SocketAddr>;
        /// Sets SO_BROADCAST.
        fn set_broadcast(&self, on: bool) -> io::Result<()>;
        /// Reads SO_BROADCAST.
        fn broadcast(&self) -> io::Result<bool>;
        /// Sets IP_TTL.
        fn set_ttl(&self, ttl: u32) -> io::Result<()>;
        /// Reads IP_TTL.
        fn ttl(&self) -> io::Result<u32>;
        /// Reads and clears SO_ERROR.
        fn take_error(&self) -> io::Result<Option<io::Error>>;
    }

    timeout_methods!("receive", "send", "socket");

    /// Another handle to the same socket (a `dup` of its fd), sharing its timeouts.
    pub fn try_clone(&self) -> io::Result<UdpSocket> {
        Ok(UdpSocket {
            sock: self.sock.try_clone()?,
        })
    }
}

fd_traits!(UdpSocket { "addr": local_addr }, into OwnedFd);
