//! The core every socket type of this module is built on, so that each loop and rule is
//! written once: [`Sock`], a std socket in non-blocking mode with its readiness [`Source`]
//! (and, for streams and datagram sockets, the timeouts its clones share), and macros for the
//! methods and trait impls that the public types share word for word.

use super::sys;
use crate::io::source::{Dir, Source, poll_fd};
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A socket's read and write timeouts (0: none), shared by its clones like socket options.
#[derive(Debug, Default)]
pub(super) struct Timeouts {
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

    /// The timeout of operations waiting for `dir`.
    fn slot(&self, dir: Dir) -> &AtomicU64 {
        match dir {
            Dir::Read => &self.read,
            Dir::Write => &self.write,
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

/// A std socket `S` in non-blocking mode, with the readiness source its operations wait on.
/// `T` is what its clones share besides the socket: `()` for listeners, [`Timeouts`] for the
/// others (see [`Timed`]).
///
/// Fields drop in order: the socket is closed (leaving the epoll sets) before the source
/// forgets its registrations.
pub(super) struct Sock<S, T = ()> {
    /// The std socket, for the operations that never wait.
    pub(super) inner: S,
    src: Source,
    timeouts: T,
}

/// A stream or datagram socket: a [`Sock`] whose operations honour the read and write
/// timeouts shared by its clones.
pub(super) type Timed<S> = Sock<S, Arc<Timeouts>>;

impl<S: AsRawFd, T: Default> Sock<S, T> {
    /// Wraps `inner`, which must be in non-blocking mode already (fresh timeouts, if any).
    pub(super) fn new(inner: S) -> Sock<S, T> {
        Sock::with(inner, T::default())
    }

    /// Wraps `inner`, switching it to non-blocking mode.
    pub(super) fn nonblocking(inner: S) -> io::Result<Sock<S, T>> {
        sys::set_nonblocking(inner.as_raw_fd(), true)?;
        Ok(Sock::new(inner))
    }
}

impl<S: AsRawFd, T> Sock<S, T> {
    fn with(inner: S, timeouts: T) -> Sock<S, T> {
        let src = Source::new(inner.as_raw_fd());
        Sock { inner, src, timeouts }
    }

    /// Another handle to the same socket (a `dup` of its fd, non-blocking as it shares the
    /// open file), sharing what the clones of this one share.
    pub(super) fn try_clone(&self) -> io::Result<Sock<S, T>>
    where
        S: AsFd + From<OwnedFd>,
        T: Clone,
    {
        let fd = self.inner.as_fd().try_clone_to_owned()?;
        Ok(Sock::with(S::from(fd), self.timeouts.clone()))
    }

    /// The socket's fd, which the caller now owns (it stays in non-blocking mode).
    pub(super) fn into_fd(self) -> OwnedFd
    where
        S: Into<OwnedFd>,
    {
        let Sock { inner, src, .. } = self;
        drop(src);
        inner.into()
    }

    /// A listener's `accept`: runs `op` until a connection comes, parking in between; never
    /// times out.
    pub(super) fn accept<R>(&self, mut op: impl FnMut(&S) -> io::Result<R>) -> io::Result<R> {
        self.src.do_io(Dir::Read, None, || op(&self.inner))
    }

    /// Waits for a connect that said EINPROGRESS to finish, until `deadline` (then a
    /// `TimedOut` error, as a connect timing out gives), and returns its outcome.
    pub(super) fn finish_connect(&self, deadline: Option<Instant>) -> io::Result<()> {
        let fd = self.inner.as_raw_fd();
        // Done when the socket polls writable (or in error).
        loop {
            let seq = self.src.seq(Dir::Write);
            if poll_fd(fd, libc::POLLOUT, Some(Instant::now())).is_ok_and(|ev| ev != 0) {
                break;
            }
            self.src.wait(Dir::Write, seq, deadline).map_err(as_connect_timeout)?;
        }
        match sys::take_error(fd)? {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl<S> Timed<S> {
    /// Sets the read timeout (`None`: none); zero is refused, as in std.
    pub(super) fn set_read_timeout(&self, dur: Option<Duration>) -> io::Result<()> {
        Timeouts::set(&self.timeouts.read, dur)
    }

    /// Sets the write timeout (`None`: none); zero is refused, as in std.
    pub(super) fn set_write_timeout(&self, dur: Option<Duration>) -> io::Result<()> {
        Timeouts::set(&self.timeouts.write, dur)
    }

    /// The read timeout.
    pub(super) fn read_timeout(&self) -> Option<Duration> {
        Timeouts::get(&self.timeouts.read)
    }

    /// The write timeout.
    pub(super) fn write_timeout(&self) -> Option<Duration> {
        Timeouts::get(&self.timeouts.write)
    }

    /// Runs `op` until it does not say EAGAIN, parking until the socket is ready for `dir`
    /// in between; `WouldBlock` once the timeout of `dir` has passed.
    fn timed<R>(&self, dir: Dir, mut op: impl FnMut(&S) -> io::Result<R>) -> io::Result<R> {
        let deadline = Timeouts::deadline(self.timeouts.slot(dir));
        self.src
            .do_io(dir, deadline, || op(&self.inner))
            .map_err(as_would_block)
    }

    /// An operation that waits for data (a receive, a peek), under the read timeout.
    pub(super) fn read_with<R>(&self, op: impl FnMut(&S) -> io::Result<R>) -> io::Result<R> {
        self.timed(Dir::Read, op)
    }

    /// An operation that waits for buffer space (a send), under the write timeout.
    pub(super) fn write_with<R>(&self, op: impl FnMut(&S) -> io::Result<R>) -> io::Result<R> {
        self.timed(Dir::Write, op)
    }

    /// A stream read of up to `len` bytes by `op`, under the read timeout (see
    /// [`Source::read`]).
    fn stream_read(&self, len: usize, mut op: impl FnMut(&S) -> io::Result<usize>) -> io::Result<usize> {
        let deadline = Timeouts::deadline(&self.timeouts.read);
        self.src.read(len, deadline, || op(&self.inner)).map_err(as_would_block)
    }
}

impl<S> Timed<S>
where
    for<'a> &'a S: Read + Write,
{
    /// [`Read::read`] for a stream socket.
    pub(super) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let len = buf.len();
        self.stream_read(len, |mut s| s.read(buf))
    }

    /// [`Read::read_vectored`] for a stream socket.
    pub(super) fn read_vectored(&self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        let len = bufs.iter().map(|b| b.len()).sum();
        self.stream_read(len, |mut s| s.read_vectored(bufs))
    }

    /// [`Write::write`] for a stream socket.
    pub(super) fn write(&self, buf: &[u8]) -> io::Result<usize> {
        self.write_with(|mut s| s.write(buf))
    }

    /// [`Write::write_vectored`] for a stream socket.
    pub(super) fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.write_with(|mut s| s.write_vectored(bufs))
    }
}

impl<S: AsRawFd, T> AsRawFd for Sock<S, T> {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

impl<S: AsFd, T> AsFd for Sock<S, T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

/// Public methods that only call the std socket's method of the same name: each given as
/// its doc comment and signature, `fn name(&self, arg: Type) -> Ret;`.
macro_rules! delegate {
    ($($(#[$doc:meta])* fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(&self $(, $arg: $ty)*) -> $ret {
                self.sock.inner.$name($($arg),*)
            }
        )*
    };
}

/// The public timeout methods of a stream or datagram socket type, whose operations are
/// called `$read`s and `$write`s in their docs, and which is called a `$what`.
macro_rules! timeout_methods {
    ($read:literal, $write:literal, $what:literal) => {
        #[doc = concat!("Sets how long a ", $read, " may wait (`None`: forever); a ", $read)]
        #[doc = "that waits longer fails with `WouldBlock`. Zero is refused, as in std."]
        #[doc = concat!("Shared with the clones of this ", $what, ".")]
        pub fn set_read_timeout(&self, dur: Option<::std::time::Duration>) -> ::std::io::Result<()> {
            self.sock.set_read_timeout(dur)
        }

        #[doc = concat!("Sets how long a ", $write, " may wait (`None`: forever), as")]
        #[doc = concat!("[`set_read_timeout`](Self::set_read_timeout) does for ", $read, "s.")]
        pub fn set_write_timeout(&self, dur: Option<::std::time::Duration>) -> ::std::io::Result<()> {
            self.sock.set_write_timeout(dur)
        }

        /// The read timeout.
        pub fn read_timeout(&self) -> ::std::io::Result<Option<::std::time::Duration>> {
            Ok(self.sock.read_timeout())
        }

        /// The write timeout.
        pub fn write_timeout(&self) -> ::std::io::Result<Option<::std::time::Duration>> {
            Ok(self.sock.write_timeout())
        }
    };
}

/// `Read` and `Write` for a stream socket type and for shared references to it (so one
/// coroutine can read while another writes), through its `sock` field.
macro_rules! stream_io {
    ($ty:ty) => {
        $crate::net::socket::stream_io!(@impl $ty);
        $crate::net::socket::stream_io!(@impl &$ty);
    };
    (@impl $ty:ty) => {
        impl ::std::io::Read for $ty {
            fn read(&mut self, buf: &mut [u8]) -> ::std::io::Result<usize> {
                self.sock.read(buf)
            }

            fn read_vectored(&mut self, bufs: &mut [::std::io::IoSliceMut<'_>]) -> ::std::io::Result<usize> {
                self.sock.read_vectored(bufs)
            }
        }

        impl ::std::io::Write for $ty {
            fn write(&mut self, buf: &[u8]) -> ::std::io::Result<usize> {
                self.sock.write(buf)
            }

            fn write_vectored(&mut self, bufs: &[::std::io::IoSlice<'_>]) -> ::std::io::Result<usize> {
                self.sock.write_vectored(bufs)
            }

            fn flush(&mut self) -> ::std::io::Result<()> {
                Ok(())
            }
        }
    };
}

/// `Debug` (the type's name, the fields `$field` showing `self.$getter().ok()`, then the fd),
/// `AsRawFd` and `AsFd` for a socket type, through its `sock` field; with `, into OwnedFd`,
/// also `From<$ty> for OwnedFd`.
macro_rules! fd_traits {
    ($ty:ident { $($field:literal: $getter:ident),* }) => {
        impl ::std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    $(.field($field, &self.$getter().ok()))*
                    .field("fd", &::std::os::fd::AsRawFd::as_raw_fd(self))
                    .finish()
            }
        }

        impl ::std::os::fd::AsRawFd for $ty {
            fn as_raw_fd(&self) -> ::std::os::fd::RawFd {
                ::std::os::fd::AsRawFd::as_raw_fd(&self.sock)
            }
        }

        impl ::std::os::fd::AsFd for $ty {
            fn as_fd(&self) -> ::std::os::fd::BorrowedFd<'_> {
                ::std::os::fd::AsFd::as_fd(&self.sock)
            }
        }
    };
    ($ty:ident { $($field:literal: $getter:ident),* }, into OwnedFd) => {
        $crate::net::socket::fd_traits!($ty { $($field: $getter),* });

        impl From<$ty> for ::std::os::fd::OwnedFd {
            fn from(s: $ty) -> ::std::os::fd::OwnedFd {
                s.sock.into_fd()
            }
        }
    };
}

/// A listener's `incoming` iterator type (`$(#[$doc])*` its doc comment): `accept` forever,
/// dropping the peer addresses.
macro_rules! incoming {
    ($(#[$doc:meta])* $name:ident, $listener:ty, $stream:ty) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name<'a> {
            listener: &'a $listener,
        }

        impl Iterator for $name<'_> {
            type Item = ::std::io::Result<$stream>;

            fn next(&mut self) -> Option<::std::io::Result<$stream>> {
                Some(self.listener.accept().map(|(s, _)| s))
            }
        }
    };
}

pub(super) use {delegate, fd_traits, incoming, stream_io, timeout_methods};
