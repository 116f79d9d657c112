//! Non-blocking fds that park coroutines: the readiness state of one socket and the loop every
//! socket operation runs (`try it; on EAGAIN wait for readiness; try again`).
//!
//! # Waiting without lost wakeups
//!
//! Each direction (read, write) has a sequence number that the reactor bumps, under the
//! socket's lock, on every readiness event for that direction. An operation reads the number
//! *before* its syscall; if the syscall says EAGAIN, the waiter takes the lock and parks only if
//! the number has not moved. An event that came after the syscall either bumped the number
//! (the waiter retries at once) or finds the waiter in the list (and wakes it). Edge-triggered
//! registrations report every new arrival of data or buffer space, so nothing is missed.
//!
//! Outside a runtime (a plain thread, or a coroutine without a scheduler) the same operations
//! wait in `poll(2)` on the fd instead.

use super::reactor::{ReactorInner, epoll_ctl};
use crate::ground::lock;
use crate::sched::park::{Unparker, current_task, current_unparker, park_until};
use crate::sched::worker;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Which readiness an operation waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dir {
    /// Data to read, a connection to accept, or the peer's end of stream.
    Read = 0,
    /// Room to write, or a finished connect.
    Write = 1,
}

impl Dir {
    fn poll_events(self) -> i16 {
        match self {
            Dir::Read => libc::POLLIN | libc::POLLRDHUP,
            Dir::Write => libc::POLLOUT,
        }
    }
}

/// The readiness state of one registered fd, shared by its owner and the reactors it is
/// registered in.
pub(crate) struct ScheduledIo {
    seq: [AtomicU32; 2],
    /// Set (for good) once an event said the read side is closed or in error: reads must then
    /// always reach the kernel, no edge will come again.
    read_closed: AtomicBool,
    /// Where waking the waiter queued last writes first ([`Unparker::wake_address`]): a hint
    /// for the reactor, which prefetches it before it takes the lock. Never cleared, so it may
    /// name a task that has since ended or been freed: a prefetch (for reading) of any address
    /// is harmless, at worst one wasted load.
    wake_hint: AtomicUsize,
    state: Mutex<IoState>,
}

#[derive(Default)]
struct IoState {
    /// Parked waiters of each direction, with their ids.
    waiters: [Few<(u64, Unparker)>; 2],
    next_id: u64,
    /// The reactors this fd is registered in, with its token in each.
    regs: Few<(Arc<ReactorInner>, u64)>,
}

/// A list that keeps its first element inline: a socket almost always has one registration
/// and at most one waiter per direction, and a `Vec`'s buffer would be one more cache line to
/// miss at every wait and every event (a tenth of a 1,024-connection HTTP server's user time
/// went to those misses).
struct Few<T> {
    first: Option<T>,
    rest: Vec<T>,
}

impl<T> Default for Few<T> {
    fn default() -> Self {
        Few {
            first: None,
            rest: Vec::new(),
        }
    }
}

impl<T> Few<T> {
    fn push(&mut self, v: T) {
        if self.first.is_none() {
            self.first = Some(v);
        } else {
            self.rest.push(v);
        }
    }

    fn iter(&self) -> impl Iterator<Item = &T> {
        self.first.iter().chain(self.rest.iter())
    }

    /// Takes every element out (the spare buffer keeps its capacity).
    fn drain(&mut self) -> impl Iterator<Item = T> + '_ {
        self.first.take().into_iter().chain(self.rest.drain(..))
    }

    /// Removes the first element that `pred` picks; says whether there was one.
    fn remove_first(&mut self, mut pred: impl FnMut(&T) -> bool) -> bool {
        if self.first.as_ref().is_some_and(&mut pred) {
            self.first = if self.rest.is_empty() {
                None
            } else {
                Some(self.rest.swap_remove(0))
            };
            return true;
        }
        match self.rest.iter().position(pred) {
            Some(i) => {
                self.rest.swap_remove(i);
                true
            }
            None => false,
        }
    }
}

const READ_EVENTS: u32 = (libc::EPOLLIN | libc::EPOLLPRI | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;
const WRITE_EVENTS: u32 = (libc::EPOLLOUT | libc::EPOLLHUP | libc::EPOLLERR) as u32;
const CLOSED_EVENTS: u32 = (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;
const REGISTER_EVENTS: u32 = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;

impl ScheduledIo {
    fn new() -> ScheduledIo {
        ScheduledIo {
            seq: [AtomicU32::new(0), AtomicU32::new(0)],
            read_closed: AtomicBool::new(false),
            wake_hint: AtomicUsize::new(0),
            state: Mutex::new(IoState::default()),
        }
    }

    /// Starts loading every cache line of this state (its lock, sequence numbers and
    /// waiters), which a [`wake`](Self::wake) is about to touch.
    #[inline(always)]
    pub(crate) fn prefetch(&self) {
        let start = std::ptr::from_ref(self) as usize;
        let end = start + std::mem::size_of::<Self>();
        for line in (start & !63..end).step_by(64) {
            crate::ground::prefetch(line);
        }
    }

    /// Starts loading what waking this state's last waiter writes first (see `wake_hint`).
    /// Call it after [`prefetch`](Self::prefetch), once that had time to bring the hint in.
    #[inline(always)]
    pub(crate) fn prefetch_waiter(&self) {
        let at = self.wake_hint.load(Ordering::Relaxed);
        if at != 0 {
            crate::ground::prefetch(at);
        }
    }

    /// The readiness sequence number of `dir`, read before an operation's syscall.
    #[inline]
    pub(crate) fn seq(&self, dir: Dir) -> u32 {
        self.seq[dir as usize].load(Ordering::Acquire)
    }

    /// An epoll event for this fd: bumps the sequence numbers of the directions it concerns and
    /// wakes their waiters.
    pub(crate) fn wake(&self, events: u32) {
        if events & CLOSED_EVENTS != 0 {
            self.read_closed.store(true, Ordering::Release);
        }
        let mut st = lock(&self.state);
        for (dir, mask) in [(Dir::Read, READ_EVENTS), (Dir::Write, WRITE_EVENTS)] {
            if events & mask != 0 {
                self.seq[dir as usize].fetch_add(1, Ordering::Release);
                // Unparking under the lock keeps the vector's capacity: a coroutine waiter is
                // only queued on its worker, nothing here can take this lock again. The
                // handle itself goes to the run queue (no reference count touched). The
                // reactor holds its slab lock around this too, so nothing reached from here
                // may take a slab lock or drop a `Source`: an unpark that finds the task not
                // parked drops a handle that is never the task's last (a task with a waiter
                // entry is running, or parked in its worker's registry, and its entry goes
                // only under this lock).
                for (_, u) in st.waiters[dir as usize].drain() {
                    u.unpark_owned();
                }
            }
        }
    }

    /// Parks the running coroutine (of `reactor`'s worker) until an event for `dir` comes after
    /// `seq`, or `deadline` passes (then a `TimedOut` error). May return early: callers retry
    /// their operation.
    fn wait_coroutine(
        self: &Arc<Self>,
        fd: RawFd,
        reactor: &Arc<ReactorInner>,
        dir: Dir,
        seq: u32,
        deadline: Option<Instant>,
    ) -> io::Result<()> {
        let d = dir as usize;
        // The reactor's lock order rests on this (see `Reactor::dispatch`): registrations and
        // waits go to the running worker's own reactor, on its own thread.
        debug_assert!(
            worker::local().is_some_and(|l| Arc::ptr_eq(super::reactor::of(l).inner(), reactor)),
            "a coroutine waits in another worker's reactor"
        );
        let id = {
            let mut st = lock(&self.state);
            if self.seq(dir) != seq {
                return Ok(());
            }
            if !st.regs.iter().any(|(r, _)| Arc::ptr_eq(r, reactor)) {
                let token = reactor.insert(self.clone());
                let added = match epoll_ctl(reactor.epoll, libc::EPOLL_CTL_ADD, fd, REGISTER_EVENTS, token) {
                    // Still in this epoll set from a registration we no longer track (the
                    // fd went through into_raw_fd/from_raw_fd): take the entry over.
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                        epoll_ctl(reactor.epoll, libc::EPOLL_CTL_MOD, fd, REGISTER_EVENTS, token)
                    }
                    r => r,
                };
                match added {
                    Ok(()) => st.regs.push((reactor.clone(), token)),
                    // Not pollable (a regular file): always ready, as poll(2) says.
                    Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                        reactor.remove(token);
                        return Ok(());
                    }
                    Err(e) => {
                        reactor.remove(token);
                        return Err(e);
                    }
                }
            }
            let id = st.next_id;
            st.next_id += 1;
            let unparker = current_unparker();
            self.wake_hint.store(unparker.wake_address(), Ordering::Relaxed);
            st.waiters[d].push((id, unparker));
            id
        };
        reactor.park_begin();
        let mut guard = Leave {
            io: self,
            reactor,
            d,
            id,
            queued: true,
        };
        loop {
            park_until(deadline, "a socket operation (sigcoro::net)");
            let mut st = lock(&self.state);
            if !st.waiters[d].iter().any(|(w, _)| *w == id) {
                guard.queued = false;
                return Ok(());
            }
            if deadline.is_some_and(|t| Instant::now() >= t) {
                st.waiters[d].remove_first(|(w, _)| *w == id);
                guard.queued = false;
                return Err(timed_out());
            }
        }
    }
}

/// Leaves the waiter list (if still in it) and the parked count, also when a cancelled
/// coroutine unwinds.
struct Leave<'a> {
    io: &'a ScheduledIo,
    reactor: &'a ReactorInner,
    d: usize,
    id: u64,
    queued: bool,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        if self.queued {
            let mut st = lock(&self.io.state);
            // Ids are unique: there is at most one.
            st.waiters[self.d].remove_first(|(w, _)| *w == self.id);
        }
        self.reactor.park_end();
    }
}

/// The error a wait returns when its deadline passes.
pub(crate) fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "sigcoro: the operation timed out")
}

/// A non-blocking fd owned by a socket type: the operations' retry loop and the registration.
/// Dropping it forgets the registrations (closing the fd, done by its owner, removes them from
/// the epoll sets).
pub(crate) struct Source {
    fd: RawFd,
    io: Arc<ScheduledIo>,
    /// `1 << 32 | seq` after a stream read returned less than asked with the read sequence
    /// number at `seq`: the socket was drained then, so until the next event a read would only
    /// say EAGAIN (0: no such read). Saves that syscall, as tokio does.
    drained: AtomicU64,
}

impl Source {
    /// A source for `fd`, which must be in non-blocking mode. Costs no syscall: registration
    /// happens at the first wait.
    pub(crate) fn new(fd: RawFd) -> Source {
        Source {
            fd,
            io: Arc::new(ScheduledIo::new()),
            drained: AtomicU64::new(0),
        }
    }

    /// [`Source::do_io`] for stream reads into `len` bytes: after a short read, the next read
    /// of a coroutine skips the syscall that would say EAGAIN and waits for the next event.
    #[inline]
    pub(crate) fn read(
        &self,
        len: usize,
        deadline: Option<Instant>,
        mut op: impl FnMut() -> io::Result<usize>,
    ) -> io::Result<usize> {
        // Every socket operation is a safe point, also one that never waits: a connection
        // whose data is always there (pipelined requests), or an accept loop in a burst of
        // connections, must still end its slice.
        crate::sched::safepoint::checkpoint();
        let local = match worker::local() {
            Some(l) if current_task().is_some() => Some(l),
            _ => None,
        };
        loop {
            let seq = self.io.seq(Dir::Read);
            if let Some(local) = local
                && self.drained.load(Ordering::Relaxed) == (1 << 32 | u64::from(seq))
                && !self.io.read_closed.load(Ordering::Acquire)
            {
                self.drained.store(0, Ordering::Relaxed);
                self.io
                    .wait_coroutine(self.fd, super::reactor::of(local).inner(), Dir::Read, seq, deadline)?;
                continue;
            }
            match op() {
                Ok(n) => {
                    if n > 0 && n < len && local.is_some() {
                        self.drained.store(1 << 32 | u64::from(seq), Ordering::Relaxed);
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait(Dir::Read, seq, deadline)?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Runs `op` until it does not say EAGAIN or EINTR, waiting for `dir` readiness between
    /// tries; a `TimedOut` error once `deadline` passes.
    #[inline]
    pub(crate) fn do_io<R>(
        &self,
        dir: Dir,
        deadline: Option<Instant>,
        mut op: impl FnMut() -> io::Result<R>,
    ) -> io::Result<R> {
        crate::sched::safepoint::checkpoint(); // a safe point, as in `read`
        loop {
            let seq = self.io.seq(dir);
            match op() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait(dir, seq, deadline)?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                r => return r,
            }
        }
    }

    /// The readiness sequence number of `dir` (take it before the syscall you then wait after).
    pub(crate) fn seq(&self, dir: Dir) -> u32 {
        self.io.seq(dir)
    }

    /// Waits for `dir` readiness after `seq`: parks the coroutine, or polls outside a runtime.
    pub(crate) fn wait(&self, dir: Dir, seq: u32, deadline: Option<Instant>) -> io::Result<()> {
        match worker::local() {
            Some(local) if current_task().is_some() => {
                self.io
                    .wait_coroutine(self.fd, super::reactor::of(local).inner(), dir, seq, deadline)
            }
            _ => poll_fd(self.fd, dir.poll_events(), deadline).map(drop),
        }
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        let regs = std::mem::take(&mut lock(&self.io.state).regs);
        for (reactor, token) in regs.first.into_iter().chain(regs.rest) {
            reactor.remove(token);
        }
    }
}

/// Blocks the thread in `poll(2)` until `fd` has one of `events` (or an error or hang-up), or
/// `deadline` passes (a `TimedOut` error); returns the events seen. EINTR is retried.
pub(crate) fn poll_fd(fd: RawFd, events: i16, deadline: Option<Instant>) -> io::Result<i16> {
    let mut pfd = [libc::pollfd { fd, events, revents: 0 }];
    poll_until(&mut pfd, deadline)?;
    Ok(pfd[0].revents)
}

/// `poll(2)` on `fds` until one is ready or `deadline` passes (a `TimedOut` error).
pub(crate) fn poll_until(fds: &mut [libc::pollfd], deadline: Option<Instant>) -> io::Result<()> {
    loop {
        let timeout = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    0
                } else {
                    // Round up so that we never wake before the deadline and spin.
                    left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
                }
            }
        };
        // SAFETY: `fds` is a valid, exclusively borrowed array of pollfd of the given length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if n > 0 {
            return Ok(());
        }
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        } else if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(timed_out());
        }
    }
}
