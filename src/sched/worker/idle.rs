//! A worker with nothing to run: it steals unstarted tasks if another worker has some to
//! spare (see `steal.rs`), or spins briefly and sleeps in epoll until work, a nudge from
//! another worker, I/O or a timer is due.
//!
//! # When to spin
//!
//! The spin watches only what other threads hand over (the remote queue, a nudge, an
//! interrupt); I/O readiness and timers show up only in epoll. So a worker whose work comes
//! from its sockets (a server) would burn every spin to the end and then sleep anyway: with
//! the clients on the same cores, that CPU is taken from them (a third of a 2-worker HTTP
//! server's samples were the spin's `pause` at 16 connections). A worker therefore spins only
//! if its last idle spell was ended by another thread (a spin that saw work, or a wake-up
//! through its eventfd); after one ended by I/O alone it sleeps at once. A sleep that ends by
//! its timeout changes nothing.

use super::{EVENTFD_TOKEN, Local, SPIN};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// What a look at epoll found.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Polled {
    /// Nothing: the timeout passed (or EINTR).
    Nothing,
    /// Only I/O events (or the raw-fd instance).
    Io,
    /// Our eventfd, with or without I/O: another thread woke us.
    Woken,
}

impl Local {
    /// Steals, or sleeps in epoll until woken or the next timer is due.
    pub(super) fn idle(&self) {
        crate::sched::recycle::release_if_asked();
        let me = self.me();
        // Workers that queue unstarted tasks while we are idle wake us (`Shared::nudge_idle`).
        // The flags go up before we look for tasks to steal: a spawner stores its queue's
        // length before it loads `idlers` (both SeqCst), so either it sees us idle and nudges
        // us, or we see its tasks here.
        me.idle.store(true, Ordering::SeqCst);
        self.rt.idlers.fetch_add(1, Ordering::SeqCst);
        if !self.steal_before_sleep() {
            self.wait_for_work();
        }
        me.idle.store(false, Ordering::SeqCst);
        self.rt.idlers.fetch_sub(1, Ordering::SeqCst);
        // (After `idle` went down: the timer thread's nap checks it, see `timer::Bell`.)
        self.rt.timer_bell.ring();
        self.slices.stamp_next();
    }

    /// Spins briefly (if another thread ended the last idle spell), then sleeps, until work,
    /// an interrupt, I/O or a timer is due.
    fn wait_for_work(&self) {
        let me = self.me();
        // A nudge takes our `idle` flag; spawns from outside the runtime fill `fresh`.
        let work_arrived = || {
            me.remote_len.load(Ordering::SeqCst) != 0
                || me.interrupts.is_pending()
                || !me.idle.load(Ordering::SeqCst)
                || self.fresh_len() != 0
        };
        if self.spin_pays.get() {
            // Spin a few microseconds first: a wakeup from a busy worker usually comes within
            // that, and costs a cache miss instead of an eventfd write and a kernel wakeup (tens
            // of microseconds on a VM). Nobody writes our eventfd while we spin: we are not
            // `sleeping`.
            let spin_end = Instant::now() + SPIN;
            while !work_arrived() && Instant::now() < spin_end {
                for _ in 0..32 {
                    std::hint::spin_loop();
                }
            }
            if work_arrived() {
                return;
            }
        }
        if work_arrived() {
            return;
        }
        me.sleeping.store(true, Ordering::SeqCst);
        if !work_arrived() && !self.rt.shutdown.load(Ordering::SeqCst) {
            let timeout = match self.timers().next_deadline() {
                None => -1,
                Some(d) => {
                    let now = Instant::now();
                    // Round up, so we never wake before the deadline and spin.
                    d.saturating_duration_since(now)
                        .as_micros()
                        .div_ceil(1000)
                        .min(i32::MAX as u128) as i32
                }
            };
            match self.poll_io(timeout) {
                Polled::Woken => self.spin_pays.set(true),
                Polled::Io => self.spin_pays.set(false),
                Polled::Nothing => {}
            }
        }
        me.sleeping.store(false, Ordering::SeqCst);
    }

    /// Waits up to `timeout_ms` (-1: no limit, 0: just look) for epoll events and hands them
    /// out: token 0 is our eventfd (drained), every other token belongs to the reactor.
    /// Says what it found.
    pub(super) fn poll_io(&self, timeout_ms: i32) -> Polled {
        let me = self.me();
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 64];
        // SAFETY: our own epoll fd and a local buffer; EINTR just ends the wait early.
        let n = unsafe { libc::epoll_wait(me.epoll.as_raw_fd(), events.as_mut_ptr(), 64, timeout_ms) };
        let events = &events[..n.max(0) as usize];
        let woken = events.iter().any(|ev| ev.u64 == EVENTFD_TOKEN);
        if woken {
            let mut buf = 0u64;
            // SAFETY: draining our own non-blocking eventfd.
            unsafe { libc::read(me.eventfd.as_raw_fd(), (&raw mut buf).cast(), 8) };
        }
        // Our eventfd is in a batch at most once: any other event is the poller's.
        if events.len() > usize::from(woken) {
            self.io.dispatch(events);
        }
        match (woken, events.is_empty()) {
            (true, _) => Polled::Woken,
            (false, false) => Polled::Io,
            (false, true) => Polled::Nothing,
        }
    }
}
