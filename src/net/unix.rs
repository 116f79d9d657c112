//! Unix-domain stream sockets shaped like `std::os::unix::net`, parking coroutines on EAGAIN.

use super::{Timeouts, as_would_block, backoff, sys};
use crate::io::source::{Dir, Source, poll_fd};
use std::fmt;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A Unix-domain socket server; see [`std::os::unix::net::UnixListener`].
pub struct UnixListener {
    inner: std::os::unix::net::UnixListener,
    src: Source,
}

impl UnixListener {
    fn wrap(inner: std::os::unix::net::UnixListener) -> io::Result<UnixListener> {
        inner.set_nonblocking(true)?;
        let src = Source::new(inner.as_raw_fd());
        Ok(UnixListener { inner, src })
    }

    /// Binds a listener to the socket file `path` (which must not exist).
    pub fn bind<P: AsRef<Path>>(path: P) -> io::Result<UnixListener> {
        UnixListener::wrap(std::os::unix::net::UnixListener::bind(path)?)
    }

    /// Wraps a std listener, switching it to non-blocking mode.
    pub fn from_std(listener: std::os::unix::net::UnixListener) -> io::Result<UnixListener> {
        UnixListener::wrap(listener)
    }

    /// Accepts a connection, parking until one arrives.
    pub fn accept(&self) -> io::Result<(UnixStream, SocketAddr)> {
        let (s, addr) = self.src.do_io(Dir::Read, None, || self.inner.accept())?;
        Ok((UnixStream::wrap(s, Arc::default())?, addr))
    }

    /// An iterator over incoming connections: `accept` forever.
    pub fn incoming(&self) -> UnixIncoming<'_> {
        UnixIncoming { listener: self }
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// Another handle to the same listener (a `dup` of its fd).
    pub fn try_clone(&self) -> io::Result<UnixListener> {
        UnixListener::wrap(self.inner.try_clone()?)
    }

    /// Reads and clears SO_ERROR.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.inner.take_error()
    }
}

impl fmt::Debug for UnixListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixListener")
            .field("addr", &self.local_addr().ok())
            .field("fd", &self.as_raw_fd())
            .finish()
    }
}

impl AsRawFd for UnixListener {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

impl AsFd for UnixListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

/// The iterator of [`UnixListener::incoming`]; it never ends.
#[derive(Debug)]
pub struct UnixIncoming<'a> {
    listener: &'a UnixListener,
}

impl Iterator for UnixIncoming<'_> {
    type Item = io::Result<UnixStream>;

    fn next(&mut self) -> Option<io::Result<UnixStream>> {
        Some(self.listener.accept().map(|(s, _)| s))
    }
}

/// A Unix-domain stream connection; see [`std::os::unix::net::UnixStream`].
///
/// `Read` and `Write` are implemented for `&UnixStream` too.
pub struct UnixStream {
    inner: std::os::unix::net::UnixStream,
    src: Source,
    timeouts: Arc<Timeouts>,
}

impl UnixStream {
    fn wrap(inner: std::os::unix::net::UnixStream, timeouts: Arc<Timeouts>) -> io::Result<UnixStream> {
        inner.set_nonblocking(true)?;
        let src = Source::new(inner.as_raw_fd());
        Ok(UnixStream { inner, src, timeouts })
    }

    /// Wraps a std stream, switching it to non-blocking mode.
    pub fn from_std(stream: std::os::unix::net::UnixStream) -> io::Result<UnixStream> {
        UnixStream::wrap(stream, Arc::default())
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
        let raw = fd.as_raw_fd();
        let stream = UnixStream::wrap(std::os::unix::net::UnixStream::from(fd), Arc::default())?;
        let mut attempt = 0;
        loop {
            // SAFETY: `sun` is a valid sockaddr_un of `len` bytes.
            let r = unsafe { libc::connect(raw, (&raw const sun).cast(), len) };
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
                Some(libc::EINPROGRESS) => {
                    loop {
                        let seq = stream.src.seq(Dir::Write);
                        if poll_fd(raw, libc::POLLOUT, Some(Instant::now())).is_ok_and(|ev| ev != 0) {
                            break;
                        }
                        stream.src.wait(Dir::Write, seq, None)?;
                    }
                    return match sys::take_error(raw)? {
                        Some(e) => Err(e),
                        None => Ok(stream),
                    };
                }
                _ => return Err(e),
            }
        }
    }

    /// A pair of connected sockets.
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = std::os::unix::net::UnixStream::pair()?;
        Ok((
            UnixStream::wrap(a, Arc::default())?,
            UnixStream::wrap(b, Arc::default())?,
        ))
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

    /// Reads and clears SO_ERROR.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.inner.take_error()
    }

    /// Sets how long a read may wait (`None`: forever); a read that waits longer fails with
    /// `WouldBlock`. Zero is refused, as in std. Shared with the clones of this stream.
    pub fn set_read_timeout(&self, dur: Option<Duration>) -> io::Result<()> {
        Timeouts::set(&self.timeouts.read, dur)
    }

    /// Sets how long a write may wait (`None`: forever).
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

    /// Another handle to the same connection (a `dup` of its fd), sharing its timeouts.
    pub fn try_clone(&self) -> io::Result<UnixStream> {
        UnixStream::wrap(self.inner.try_clone()?, self.timeouts.clone())
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

impl Read for UnixStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_impl(buf)
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        self.read_vectored_impl(bufs)
    }
}

impl Read for &UnixStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_impl(buf)
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        self.read_vectored_impl(bufs)
    }
}

impl Write for UnixStream {
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

impl Write for &UnixStream {
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

impl fmt::Debug for UnixStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixStream").field("fd", &self.as_raw_fd()).finish()
    }
}

impl AsRawFd for UnixStream {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

impl AsFd for UnixStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

impl From<UnixStream> for OwnedFd {
    fn from(s: UnixStream) -> OwnedFd {
        let UnixStream { inner, src, .. } = s;
        drop(src);
        inner.into()
    }
}
