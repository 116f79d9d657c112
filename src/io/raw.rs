//! Waiting on raw fds that the caller owns (pipes, inotify, timerfd, other libraries' sockets),
//! and [`close`], which wakes whoever waits on an fd before closing it.
//!
//! A coroutine's wait arms a one-shot registration (`EPOLLONESHOT`, level-checked at arming, so
//! an fd that is ready already fires at once) in its worker's nested raw epoll instance. The
//! worker's reactor keeps, per fd, the coroutines waiting on it and their interests; when an
//! event comes it wakes the waiters it concerns and re-arms for the others. Tokens carry the fd
//! and a generation of its entry, so an event armed for an fd number that has since been closed
//! and reused is recognised as stale.
//!
//! Closing an fd with `close(2)` silently drops it from every epoll set, so a coroutine waiting
//! on it would never hear of it. [`close`] is the way out: every wait (coroutine or thread)
//! announces itself in a process-wide table by fd number, and `close` marks and wakes every
//! waiter of that number, which then returns an error, before it closes the fd.

use super::reactor::{RAW_TOKEN, ReactorInner, epoll_ctl};
use super::source::{poll_until, timed_out};
use crate::ground::lock;
use crate::sched::park::{Unparker, current_task, current_unparker, park_until};
use crate::sched::worker;
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

/// The raw waiters of one worker, by fd.
#[derive(Default)]
pub(crate) struct RawTable {
    /// The nested epoll instance, made at the first raw wait on this worker.
    epoll: Option<OwnedFd>,
    fds: HashMap<RawFd, RawEntry>,
    next_gen: u32,
    next_id: u64,
}

struct RawEntry {
    generation: u32,
    waiters: Vec<RawWaiter>,
}

struct RawWaiter {
    id: u64,
    interest: u32,
    fired: bool,
    unparker: Unparker,
}

const ERR_EVENTS: u32 = (libc::EPOLLERR | libc::EPOLLHUP) as u32;

impl RawTable {
    /// The worker is going away: close the nested instance.
    pub(crate) fn close(&mut self) {
        self.epoll = None;
        self.fds.clear();
    }

    /// (Re-)arms `fd` for the union of its unfired waiters' interests; does nothing if none.
    fn arm(&self, fd: RawFd) -> io::Result<()> {
        let (Some(ep), Some(entry)) = (&self.epoll, self.fds.get(&fd)) else {
            return Ok(());
        };
        let interest = entry
            .waiters
            .iter()
            .filter(|w| !w.fired)
            .fold(0, |acc, w| acc | w.interest);
        if interest == 0 {
            return Ok(());
        }
        let events = interest | libc::EPOLLONESHOT as u32;
        let token = (u64::from(entry.generation) << 32) | u64::from(fd as u32);
        match epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_MOD, fd, events, token) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, events, token)
            }
            r => r,
        }
    }

    /// Removes waiter `id` of `fd`, and the fd's entry once it has no waiters.
    fn leave(&mut self, fd: RawFd, id: u64) -> Option<RawWaiter> {
        let entry = self.fds.get_mut(&fd)?;
        let i = entry.waiters.iter().position(|w| w.id == id)?;
        let w = entry.waiters.swap_remove(i);
        if entry.waiters.is_empty() {
            self.fds.remove(&fd);
        }
        Some(w)
    }
}

impl ReactorInner {
    /// Reads the nested raw epoll instance (its token came up in the worker's) and wakes the
    /// waiters of every fd that fired.
    pub(crate) fn dispatch_raw(&self) {
        let mut table = lock(&self.raw);
        let Some(ep) = table.epoll.as_ref().map(|e| e.as_raw_fd()) else {
            return;
        };
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 32];
        // SAFETY: our own epoll fd and a local buffer; timeout 0 never blocks.
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, 0) };
        for ev in &events[..n.max(0) as usize] {
            let (token, flags) = (ev.u64, ev.events);
            let fd = (token & 0xffff_ffff) as u32 as RawFd;
            let Some(entry) = table.fds.get_mut(&fd) else { continue };
            if entry.generation != (token >> 32) as u32 {
                continue;
            }
            for w in entry.waiters.iter_mut().filter(|w| !w.fired) {
                if flags & (w.interest | ERR_EVENTS) != 0 {
                    w.fired = true;
                    w.unparker.unpark();
                }
            }
            if table.arm(fd).is_err() {
                // The fd is gone (closed behind our back): let the others find out by trying.
                if let Some(entry) = table.fds.get_mut(&fd) {
                    for w in entry.waiters.iter_mut().filter(|w| !w.fired) {
                        w.fired = true;
                        w.unparker.unpark();
                    }
                }
            }
        }
    }

    /// Parks the running coroutine (of this reactor's worker) until `fd` has `interest`,
    /// `deadline` passes, or `watch` is closed.
    fn raw_wait(&self, fd: RawFd, interest: u32, deadline: Option<Instant>, watch: &CloseWaiter) -> io::Result<()> {
        let id = {
            let mut table = lock(&self.raw);
            if table.epoll.is_none() {
                table.epoll = Some(self.make_nested()?);
            }
            let id = table.next_id;
            table.next_id += 1;
            if !table.fds.contains_key(&fd) {
                let generation = table.next_gen;
                table.next_gen = generation.wrapping_add(1);
                let waiters = Vec::new();
                table.fds.insert(fd, RawEntry { generation, waiters });
            }
            table.fds.get_mut(&fd).expect("just inserted").waiters.push(RawWaiter {
                id,
                interest,
                fired: false,
                unparker: current_unparker(),
            });
            if let Err(e) = table.arm(fd) {
                table.leave(fd, id);
                // Not pollable (a regular file): always ready, as poll(2) says.
                return if e.raw_os_error() == Some(libc::EPERM) {
                    Ok(())
                } else {
                    Err(e)
                };
            }
            id
        };
        self.park_begin();
        let _guard = RawLeave { reactor: self, fd, id };
        loop {
            if watch.closed.load(Ordering::Acquire) {
                return Err(closed_error(fd));
            }
            park_until(deadline, "a descriptor wait (sigcoro::io)");
            let mut table = lock(&self.raw);
            let fired = table
                .fds
                .get(&fd)
                .and_then(|e| e.waiters.iter().find(|w| w.id == id))
                .is_none_or(|w| w.fired);
            if watch.closed.load(Ordering::Acquire) {
                return Err(closed_error(fd));
            }
            if fired {
                return Ok(());
            }
            if deadline.is_some_and(|t| Instant::now() >= t) {
                table.leave(fd, id);
                return Err(timed_out());
            }
        }
    }

    /// Makes the nested epoll instance and registers it in the worker's.
    fn make_nested(&self) -> io::Result<OwnedFd> {
        // SAFETY: a plain syscall; the fd is owned at once.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if ep < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `ep` is a fresh fd nobody else owns.
        let owned = unsafe { OwnedFd::from_raw_fd(ep) };
        epoll_ctl(self.epoll, libc::EPOLL_CTL_ADD, ep, libc::EPOLLIN as u32, RAW_TOKEN)?;
        Ok(owned)
    }
}

/// Leaves the raw table and the parked count, also when a cancelled coroutine unwinds.
struct RawLeave<'a> {
    reactor: &'a ReactorInner,
    fd: RawFd,
    id: u64,
}

impl Drop for RawLeave<'_> {
    fn drop(&mut self) {
        lock(&self.reactor.raw).leave(self.fd, self.id);
        self.reactor.park_end();
    }
}

/// A waiter's entry in the process-wide close table.
struct CloseWaiter {
    closed: AtomicBool,
    wake: Wake,
}

enum Wake {
    /// A coroutine.
    Unpark(Unparker),
    /// A thread blocked in poll(2) on the fd and this eventfd.
    EventFd(Arc<OwnedFd>),
}

impl CloseWaiter {
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        match &self.wake {
            Wake::Unpark(u) => u.unpark(),
            Wake::EventFd(e) => {
                let one: u64 = 1;
                // SAFETY: 8 bytes to an eventfd the Arc keeps open; EAGAIN (full) still wakes.
                unsafe { libc::write(e.as_raw_fd(), (&raw const one).cast(), 8) };
            }
        }
    }
}

/// Waiters by fd number, for [`close`].
fn watches() -> &'static Mutex<HashMap<RawFd, Vec<Arc<CloseWaiter>>>> {
    static WATCHES: OnceLock<Mutex<HashMap<RawFd, Vec<Arc<CloseWaiter>>>>> = OnceLock::new();
    WATCHES.get_or_init(Mutex::default)
}

/// Keeps a watch in the close table for the length of a wait.
struct Watching {
    fd: RawFd,
    watch: Arc<CloseWaiter>,
}

impl Watching {
    fn new(fd: RawFd, wake: Wake) -> Watching {
        let watch = Arc::new(CloseWaiter {
            closed: AtomicBool::new(false),
            wake,
        });
        lock(watches()).entry(fd).or_default().push(watch.clone());
        Watching { fd, watch }
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let mut map = lock(watches());
        if let Some(list) = map.get_mut(&self.fd) {
            list.retain(|w| !Arc::ptr_eq(w, &self.watch));
            if list.is_empty() {
                map.remove(&self.fd);
            }
        }
    }
}

fn closed_error(fd: RawFd) -> io::Error {
    io::Error::other(format!(
        "sigcoro: file descriptor {fd} was closed by sigcoro::io::close while this wait was on it"
    ))
}

thread_local! {
    /// This thread's eventfd for waking it out of a raw wait in poll(2) (made on first use).
    static THREAD_EVENTFD: Option<Arc<OwnedFd>> = {
        // SAFETY: a plain syscall; the fd is owned at once.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        // SAFETY: `fd` is a fresh fd nobody else owns.
        (fd >= 0).then(|| Arc::new(unsafe { OwnedFd::from_raw_fd(fd) }))
    };
}

/// Waits until `fd` has `interest` (`EPOLLIN` or `EPOLLOUT`), `deadline` passes or [`close`]
/// closes it: the implementation of `sigcoro::io::wait_readable` and friends.
pub(crate) fn wait_fd(fd: RawFd, interest: u32, deadline: Option<Instant>) -> io::Result<()> {
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    if let Some(local) = worker::local()
        && current_task().is_some()
    {
        let watching = Watching::new(fd, Wake::Unpark(current_unparker()));
        return super::reactor::of(local)
            .inner()
            .raw_wait(fd, interest, deadline, &watching.watch);
    }
    let evfd = THREAD_EVENTFD.try_with(|e| e.clone()).ok().flatten();
    let events = if interest & libc::EPOLLIN as u32 != 0 {
        libc::POLLIN
    } else {
        libc::POLLOUT
    };
    let Some(evfd) = evfd else {
        // No eventfd to be woken through: wait on the fd alone.
        return super::source::poll_fd(fd, events, deadline).and_then(nval);
    };
    let watching = Watching::new(fd, Wake::EventFd(evfd.clone()));
    loop {
        let mut fds = [
            libc::pollfd { fd, events, revents: 0 },
            libc::pollfd {
                fd: evfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        poll_until(&mut fds, deadline)?;
        if fds[1].revents != 0 {
            let mut buf = 0u64;
            // SAFETY: draining our own non-blocking eventfd into a local.
            unsafe { libc::read(evfd.as_raw_fd(), (&raw mut buf).cast(), 8) };
        }
        if watching.watch.closed.load(Ordering::Acquire) {
            return Err(closed_error(fd));
        }
        if fds[0].revents != 0 {
            return nval(fds[0].revents);
        }
    }
}

/// Turns POLLNVAL into EBADF.
fn nval(revents: i16) -> io::Result<()> {
    if revents & libc::POLLNVAL != 0 {
        Err(io::Error::from_raw_os_error(libc::EBADF))
    } else {
        Ok(())
    }
}

/// Wakes every coroutine and thread waiting on `fd` through `sigcoro::io` with an error, then
/// closes it.
pub(crate) fn close(fd: OwnedFd) -> io::Result<()> {
    let raw = fd.as_raw_fd();
    let list = lock(watches()).remove(&raw).unwrap_or_default();
    for w in &list {
        w.close();
    }
    let raw = fd.into_raw_fd();
    // SAFETY: we owned `raw` (it came out of an OwnedFd) and close it once. EINTR is not
    // retried: Linux has released the descriptor by then.
    if unsafe { libc::close(raw) } != 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}
