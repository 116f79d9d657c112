//! Unix-domain stream sockets shaped like `std::os::unix::net`, parking coroutines on EAGAIN.

use super::socket::{Sock, Timed, delegate, fd_traits, incoming, stream_io, timeout_methods};
use super::{backoff, sys};
use std::io;
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::SocketAddr;
use std::path::Path;

/// A Unix-domain socket server; see [`std::os::unix::net::UnixListener`].
pub struct UnixListener {
    sock: Sock<std::os::unix::net::UnixListener>,
}

impl UnixListener {
    /// Binds a listener to the socket file `path` (which must not exist).
    pub fn bind<P: AsRef<Path>>(path: P) -> io::Result<UnixListener> {
        UnixListener::from_std(std::os::unix::net::UnixListener::bind(path)?)
    }

    /// Wraps a std listener, switching it to non-blocking mode.
    pub fn from_std(listener: std::os::unix::net::UnixListener) -> io::Result<UnixListener> {
        Ok(UnixListener {
            sock: Sock::nonblocking(listener)?,
        })
    }

    /// Accepts a connection, parking until one arrives.
    pub fn accept(&self) -> io::Result<(UnixStream, SocketAddr)> {
        let (s, addr) = self.sock.accept(|l| l.accept())?;
        Ok((UnixStream::from_std(s)?, addr))
    }

    /// An iterator over incoming connections: `accept` forever.
    pub fn incoming(&self) -> UnixIncoming<'_> {
        UnixIncoming { listener: self }
    }

    /// Another handle to the same listener (a `dup` of its fd).
    pub fn try_clone(&self) -> io::Result<UnixListener> {
        Ok(UnixListener {
            sock: self.sock.try_clone()?,
        })
    }

    delegate! {
        /// The address the listener is bound to.
        fn local_addr(&self) -> io::Result<SocketAddr>;
        /// Reads and clears SO_ERROR.
        fn take_error(&self) -> io::Result<Option<io::Error>>;
    }
}

fd_traits!(UnixListener { "addr": local_addr });

incoming!(
    /// The iterator of [`UnixListener::incoming`]; it never ends.
    UnixIncoming,
    UnixListener,
    UnixStream
);

/// A Unix-domain stream connection; see [`std::os::unix::net::UnixStream`].
///
/// `Read` and `Write` are implemented for `&UnixStream` too.
pub struct UnixStream {
    sock: Timed<std::os::unix::net::UnixStream>,
}

impl UnixStream {
    /// Wraps a std stream, switching it to non-blocking mode.
    pub fn from_std(stream: std::os::unix::net::UnixStream) -> io::Result<UnixStream> {
        Ok(UnixStream {
            sock: Sock::nonblocking(stream)?,
        })
    }

    /// Connects to the socket file `path`. If the listener's backlog is full, retries with a
    /// short backoff (parking the coroutine) until it has room.
    pub fn connect<P: AsRef<Path>>(path: P) -> io::Result<UnixStream> {
        let bytes = path.as_ref().as_os_str().as_bytes();
        // SAFETY: sockaddr_un is plain old data; all zeroes is a valid value.
        let mut sun: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        if bytes.len() >= sun.sun_path.len() || bytes.contains(&0) || bytes.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a Unix socket path must be non-empty, shorter than 108 bytes and free of NUL bytes",
            ));
        }
        sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (d, s) in sun.sun_path.iter_mut().zip(bytes) {
            *d = *s as libc::c_char;
        }
        let len = (std::mem::offset_of!(libc::sockaddr_un, sun_path) + bytes.len() + 1) as libc::socklen_t;
        let fd = sys::socket(libc::AF_UNIX, libc::SOCK_STREAM)?;
        let stream = UnixStream {
            sock: Sock::new(fd.into()),
        };
        let mut attempt = 0;
        loop {
            // SAFETY: `sun` is a valid sockaddr_un of `len` bytes.
            let r = unsafe { libc::connect(stream.as_raw_fd(), (&raw const sun).cast(), len) };
            if r == 0 {
                return Ok(stream);
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => {}
                // The listener's backlog is full: the kernel offers no wakeup for room.
                Some(libc::EAGAIN) => {
                    backoff(attempt);
                    attempt += 1;
                }
                Some(libc::EINPROGRESS) => return stream.sock.finish_connect(None).map(|()| stream),
                _ => return Err(e),
            }
        }
    }

    /// A pair of connected sockets.
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = std::os::unix::net::UnixStream::pair()?;
        Ok((UnixStream::from_std(a)?, UnixStream::from_std(b)?))
    }

    delegate! {
        /// The address of the peer.
        fn peer_addr(&self) -> io::Result<SocketAddr>;
        /// The local address of this end.
        fn local_addr(&self) -> io::Result<SocketAddr>;
        /// Shuts down the read half, the write half or both; coroutines blocked on this socket
        /// (through any clone) wake with end of stream or an error.
        fn shutdown(&self, how: Shutdown) -> io::Result<()>;
        /// Reads and clears SO_ERROR.
        fn take_error(&self) -> io::Result<Option<io::Error>>;
    }

    timeout_methods!("read", "write", "stream");

    /// Another handle to the same connection (a `dup` of its fd), sharing its timeouts.
    pub fn try_clone(&self) -> io::Result<UnixStream> {
        Ok(UnixStream {
            sock: self.sock.try_clone()?,
        })
    }
}

stream_io!(UnixStream);

fd_traits!(UnixStream {}, into OwnedFd);
