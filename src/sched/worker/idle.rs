//! A worker between tasks: handing unstarted tasks to idle workers, asking for some when idle,
//! and sleeping in epoll until work or a timer is due.

use super::{EVENTFD_TOKEN, Local, SPIN, UNSTARTED};
use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::time::Instant;

impl Local {
    /// Hands half of our unstarted tasks to an idle worker that asked for work.
    pub(super) fn answer_steal_request(&self) {
        let me = self.me();
        me.queued.store(self.queue().len(), Ordering::Relaxed);
        let thief = me.steal_request.load(Ordering::Relaxed);
        if thief == 0 {
            return;
        }
        me.steal_request.store(0, Ordering::Relaxed);
        let queue = self.queue();
        let unstarted = queue
            .iter()
            .filter(|t| t.owner.load(Ordering::Relaxed) == UNSTARTED)
            .count();
        let mut give = unstarted / 2;
        if give == 0 {
            return;
        }
        let mut kept = VecDeque::with_capacity(queue.len());
        let mut taken = Vec::with_capacity(give);
        for t in queue.drain(..) {
            if give > 0 && t.owner.load(Ordering::Relaxed) == UNSTARTED {
                give -= 1;
                taken.push(t);
            } else {
                kept.push_back(t);
            }
        }
        *queue = kept;
        self.rt.workers[thief - 1].push_remote_many(taken);
    }

    /// Posts a steal request to the busiest other worker.
    pub(super) fn ask_for_work(&self) {
        let victim = (0..self.rt.workers.len())
            .filter(|&i| i != self.index)
            .max_by_key(|&i| self.rt.workers[i].queued.load(Ordering::Relaxed));
        if let Some(v) = victim
            && self.rt.workers[v].queued.load(Ordering::Relaxed) > 1
        {
            let _ = self.rt.workers[v].steal_request.compare_exchange(
                0,
                self.index + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    /// Sleeps in epoll until woken or the next timer is due.
    pub(super) fn idle(&self) {
        crate::sched::recycle::release_if_asked();
        let me = self.me();
        // Spin a few microseconds first: a wakeup from a busy worker usually comes within
        // that, and costs a cache miss instead of an eventfd write and a kernel wakeup (tens of
        // microseconds on a VM). Nobody writes our eventfd while we spin: we are not `sleeping`.
        let spin_end = Instant::now() + SPIN;
        let work_arrived = || me.remote_len.load(Ordering::SeqCst) != 0 || me.interrupts.is_pending();
        while !work_arrived() && Instant::now() < spin_end {
            for _ in 0..32 {
                std::hint::spin_loop();
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
            self.poll_io(timeout);
        }
        me.sleeping.store(false, Ordering::SeqCst);
    }

    /// Waits up to `timeout_ms` (-1: no limit, 0: just look) for epoll events and hands them
    /// out: token 0 is our eventfd (drained), every other token belongs to the reactor.
    pub(super) fn poll_io(&self, timeout_ms: i32) {
        let me = self.me();
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 64];
        // SAFETY: our own epoll fd and a local buffer; EINTR just ends the wait early.
        let n = unsafe { libc::epoll_wait(me.epoll.as_raw_fd(), events.as_mut_ptr(), 64, timeout_ms) };
        for ev in &events[..n.max(0) as usize] {
            let (token, flags) = (ev.u64, ev.events);
            if token == EVENTFD_TOKEN {
                let mut buf = 0u64;
                // SAFETY: draining our own non-blocking eventfd.
                unsafe { libc::read(me.eventfd.as_raw_fd(), (&raw mut buf).cast(), 8) };
            } else {
                self.io.dispatch(token, flags);
            }
        }
    }
}
