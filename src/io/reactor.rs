//! A worker's reactor: the file descriptors that coroutines of this worker wait on, registered
//! in the worker's epoll instance. Token 0 is the worker's own eventfd; every other token
//! belongs here.
//!
//! # Registration scheme
//!
//! Sockets of [`crate::net`] (anything behind a [`super::source::Source`]) are registered
//! **edge-triggered, once per (socket, worker)**, lazily: the first time a coroutine of this
//! worker finds the socket not ready, it adds the fd with `EPOLLIN | EPOLLOUT | EPOLLRDHUP |
//! EPOLLET` and a token naming a slot of this reactor's slab, which holds the socket's
//! [`ScheduledIo`]. Later waits on this worker cost no `epoll_ctl`. A socket used by coroutines
//! of several workers is registered in each of their epoll instances, so a worker never depends
//! on another one to be woken, and a registration in the epoll of a worker that has gone away
//! is simply never read again.
//!
//! Tokens carry a generation (`gen << 32 | slot + 1`): a stale event (the socket was dropped,
//! its slot reused) finds a different generation and is ignored. Dropping a socket frees its
//! slots without any `epoll_ctl`: closing the fd removes it from every epoll set, and if the
//! fd was duplicated behind our back its stale events are ignored the same way.
//!
//! Raw fds handed to [`crate::io::wait_readable`] and friends are registered **one-shot** in a
//! second epoll instance nested in the worker's (token [`RAW_TOKEN`]), see [`super::raw`]:
//! their owners may close and reuse the numbers at any time, and a nested instance keeps them
//! apart from the socket registrations (one epoll set holds one entry per (file, fd)).

use super::raw::RawTable;
use super::source::ScheduledIo;
use crate::ground::lock;
use crate::sched::worker::Local;
use crate::sched::worker::poller::Poller;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// The token of the nested epoll instance holding one-shot registrations of raw fds.
pub(crate) const RAW_TOKEN: u64 = u64::MAX;

/// The I/O waiters of one worker. The worker holds it; sockets and waiters reach its shared
/// part through [`Reactor::inner`].
pub(crate) struct Reactor {
    inner: Arc<ReactorInner>,
}

/// What sockets keep of a reactor they are registered in.
pub(crate) struct ReactorInner {
    /// The worker's epoll fd. It is only used on the worker's own thread (by the worker and by
    /// its coroutines), so it is never used after the worker closed it.
    pub(crate) epoll: RawFd,
    slab: Mutex<Slab>,
    /// Coroutines of this worker parked on I/O now.
    parked: AtomicUsize,
    /// One-shot registrations of raw fds.
    pub(crate) raw: Mutex<RawTable>,
}

/// Slots of [`ScheduledIo`] named by tokens.
#[derive(Default)]
struct Slab {
    entries: Vec<Entry>,
    free: Vec<u32>,
}

#[derive(Default)]
struct Entry {
    generation: u32,
    io: Option<Arc<ScheduledIo>>,
}

/// The worker's [`Poller`]: a reactor registering in `epoll` (the runtime hands this to the
/// scheduler, which calls it as each worker starts).
pub(crate) fn new_poller(epoll: RawFd) -> Box<dyn Poller> {
    Box::new(Reactor::new(epoll))
}

/// The reactor of the worker `local` (the one [`new_poller`] made for it).
pub(crate) fn of(local: &Local) -> &Reactor {
    local
        .io
        .as_any()
        .downcast_ref::<Reactor>()
        .expect("a worker's poller is the reactor")
}

impl Poller for Reactor {
    fn dispatch(&self, events: &[libc::epoll_event]) {
        Reactor::dispatch(self, events);
    }

    fn has_waiters(&self) -> bool {
        Reactor::has_waiters(self)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl Reactor {
    /// A reactor registering in `epoll`, the worker's epoll instance.
    pub(crate) fn new(epoll: RawFd) -> Reactor {
        Reactor {
            inner: Arc::new(ReactorInner {
                epoll,
                slab: Mutex::new(Slab::default()),
                parked: AtomicUsize::new(0),
                raw: Mutex::new(RawTable::default()),
            }),
        }
    }

    /// The part of the reactor that registrations share.
    pub(crate) fn inner(&self) -> &Arc<ReactorInner> {
        &self.inner
    }

    /// Handles the events of one epoll wait: wakes the waiters of every socket named, and of
    /// the raw fds if their instance is among them. Tokens that name no slot (the worker's
    /// eventfd's, 0; a stale generation) are skipped.
    ///
    /// Under one hold of the slab's lock, which keeps every `ScheduledIo` it names alive (no
    /// reference count is touched per event): first it starts loading each named socket's
    /// state, then the task its waiter wakes, then it wakes them, so that the cache misses of
    /// a batch overlap instead of coming one at a time (at 1,024 HTTP connections these misses
    /// were most of the dispatch's time). Taking a socket's lock under the slab's orders the
    /// two locks the other way round from `wait_coroutine`, which registers in the slab (and
    /// frees a failed registration's slot) under the socket's lock; but `wait_coroutine` runs
    /// only on this reactor's worker thread, between dispatches, and `Source::drop` (from any
    /// thread) lets go of the socket's lock before it frees its slots, so the two orders never
    /// meet. The price: a `Source::drop` on another thread may wait for a batch of up to 64
    /// wake-ups (some of them pushes to other workers' queues with an eventfd write).
    pub(crate) fn dispatch(&self, events: &[libc::epoll_event]) {
        let mut raw = false;
        {
            let slab = lock(&self.inner.slab);
            for ev in events {
                if let Some(io) = slab.get(ev.u64) {
                    io.prefetch();
                }
            }
            for ev in events {
                if let Some(io) = slab.get(ev.u64) {
                    io.prefetch_waiter();
                }
            }
            for ev in events {
                if ev.u64 == RAW_TOKEN {
                    raw = true;
                } else if let Some(io) = slab.get(ev.u64) {
                    io.wake(ev.events);
                }
            }
        }
        if raw {
            self.inner.dispatch_raw();
        }
    }

    /// Whether coroutines of this worker wait on I/O, so a busy worker should poll for it.
    pub(crate) fn has_waiters(&self) -> bool {
        self.inner.parked.load(Ordering::Relaxed) != 0
    }
}

impl Drop for Reactor {
    fn drop(&mut self) {
        // Break the cycles socket -> ScheduledIo -> ReactorInner -> slab -> ScheduledIo: the
        // worker is gone, nothing will read this epoll instance again.
        // (Plain locks: the worker's thread-local state may be gone already.)
        let taken = std::mem::take(&mut *self.inner.slab.lock().unwrap_or_else(PoisonError::into_inner));
        drop(taken);
        self.inner.raw.lock().unwrap_or_else(PoisonError::into_inner).close();
    }
}

impl ReactorInner {
    /// Puts `io` in a free slot and returns the token naming it (never 0 nor [`RAW_TOKEN`]).
    pub(crate) fn insert(&self, io: Arc<ScheduledIo>) -> u64 {
        let mut slab = lock(&self.slab);
        let index = match slab.free.pop() {
            Some(i) => i,
            None => {
                slab.entries.push(Entry::default());
                u32::try_from(slab.entries.len() - 1).expect("fewer than 2^32 registrations")
            }
        };
        let entry = &mut slab.entries[index as usize];
        entry.io = Some(io);
        (u64::from(entry.generation) << 32) | (u64::from(index) + 1)
    }

    /// Frees the slot of `token` if it still names it.
    pub(crate) fn remove(&self, token: u64) {
        let mut slab = lock(&self.slab);
        let Some(index) = slot_of(token) else { return };
        let Some(entry) = slab.entries.get_mut(index) else {
            return;
        };
        if entry.generation != (token >> 32) as u32 || entry.io.is_none() {
            return;
        }
        entry.io = None;
        // Skip the generation that would make slot u32::MAX - 1's token RAW_TOKEN.
        entry.generation = entry.generation.wrapping_add(1) % u32::MAX;
        slab.free.push(index as u32);
    }

    /// Counts a coroutine of this worker that is about to park on I/O.
    pub(crate) fn park_begin(&self) {
        self.parked.fetch_add(1, Ordering::Relaxed);
    }

    /// Uncounts it.
    pub(crate) fn park_end(&self) {
        self.parked.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Slab {
    /// The socket state `token` names, if its slot still holds it.
    #[inline]
    fn get(&self, token: u64) -> Option<&ScheduledIo> {
        let entry = self.entries.get(slot_of(token)?)?;
        if entry.generation != (token >> 32) as u32 {
            return None;
        }
        entry.io.as_deref()
    }
}

fn slot_of(token: u64) -> Option<usize> {
    ((token & 0xffff_ffff) as usize).checked_sub(1)
}

/// `epoll_ctl` on `epoll`, with the error as an `io::Error`.
pub(crate) fn epoll_ctl(epoll: RawFd, op: i32, fd: RawFd, events: u32, token: u64) -> std::io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: token };
    // SAFETY: a plain syscall with a valid event struct; the fds are numbers the kernel checks.
    if unsafe { libc::epoll_ctl(epoll, op, fd, &mut ev) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
