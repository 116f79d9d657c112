//! A worker between tasks: handing unstarted tasks to idle workers, asking for some when idle,
//! and sleeping in epoll until work or a timer is due.

use super::{EVENTFD_TOKEN, Local, SPIN, Task, UNSTARTED};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// The most queued tasks one hand-over looks at.
const SCAN: usize = 1024;

fn is_unstarted(task: &Task) -> bool {
    task.owner.load(Ordering::Relaxed) == UNSTARTED
}

impl Local {
    /// Queues a task that has not run yet, from a spawn on this worker (the caller holds
    /// preemption off). When other tasks already wait here and another worker is idle, the
    /// newest half goes to it at once: a spawn storm spreads over idle workers, while a
    /// coroutine that spawns one task and joins it keeps it here. A pending steal request is
    /// answered here too, not only between tasks.
    pub(crate) fn push_unstarted(&self, task: Arc<Task>) {
        let queue = self.queue();
        queue.push_back(task);
        self.unstarted.set(self.unstarted.get() + 1);
        if queue.len() > 1 {
            self.share_with_idle(false);
        }
        let me = self.me();
        if me.steal_request.load(Ordering::Relaxed) != 0 {
            self.answer_steal_request();
        }
    }

    /// If another worker is idle, hands it the newest half of our unstarted tasks (rounded up
    /// when we are about to be busy, `busy`). Costs one load when no worker is idle.
    pub(super) fn share_with_idle(&self, busy: bool) {
        if self.rt.idlers.load(Ordering::Relaxed) == 0 {
            return;
        }
        let unstarted = self.unstarted.get();
        let give = if busy { unstarted.div_ceil(2) } else { unstarted / 2 };
        if give == 0 {
            return;
        }
        // Take the idle worker's flag, so that only one giver hands it work.
        let idle = (0..self.rt.workers.len()).find(|&i| {
            let w = &self.rt.workers[i];
            i != self.index
                && w.idle.load(Ordering::Relaxed)
                && w.idle
                    .compare_exchange(true, false, Ordering::SeqCst, Ordering::Relaxed)
                    .is_ok()
        });
        if let Some(to) = idle
            && self.hand_newest(give, to) == 0
        {
            // Nothing to hand over after all: it is still (as far as we know) idle.
            self.rt.workers[to].idle.store(true, Ordering::SeqCst);
        }
    }

    /// Hands half of our unstarted tasks to an idle worker that asked for work.
    pub(super) fn answer_steal_request(&self) {
        let me = self.me();
        me.queued.store(self.queue().len(), Ordering::Relaxed);
        let thief = me.steal_request.load(Ordering::Relaxed);
        if thief == 0 {
            return;
        }
        me.steal_request.store(0, Ordering::Relaxed);
        let give = self.unstarted.get() / 2;
        if give > 0 {
            self.hand_newest(give, thief - 1);
        }
    }

    /// Moves our `give` newest unstarted tasks to worker `to`, in the order they were spawned:
    /// the newest, because a coroutine that joins its tasks in spawn order reaches them last.
    /// Looks at no more than [`SCAN`] queued tasks from the back, where spawns put them.
    /// Returns how many went; none once the runtime is shutting down (they stay here, and this
    /// worker's own shutdown cancels them).
    fn hand_newest(&self, mut give: usize, to: usize) -> usize {
        let queue = self.queue();
        let mut passed = Vec::new();
        let mut taken = Vec::with_capacity(give);
        while give > 0
            && passed.len() + taken.len() < SCAN
            && let Some(t) = queue.pop_back()
        {
            if is_unstarted(&t) {
                give -= 1;
                taken.push(t);
            } else {
                passed.push(t);
            }
        }
        // What we passed over goes back first, in its old order.
        queue.extend(passed.into_iter().rev());
        taken.reverse();
        let count = taken.len();
        let handed = match count {
            0 => 0,
            _ => match self.rt.workers[to].hand_over(&self.rt, taken) {
                Ok(()) => count,
                Err(back) => {
                    queue.extend(back);
                    0
                }
            },
        };
        self.unstarted.set(self.unstarted.get().saturating_sub(handed));
        self.me().queued.store(queue.len(), Ordering::Relaxed);
        handed
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
        // Busy workers that see us idle hand us unstarted tasks (see `share_with_idle`).
        me.idle.store(true, Ordering::SeqCst);
        self.rt.idlers.fetch_add(1, Ordering::SeqCst);
        self.wait_for_work();
        me.idle.store(false, Ordering::SeqCst);
        self.rt.idlers.fetch_sub(1, Ordering::SeqCst);
    }

    /// Spins briefly, then sleeps, until work, an interrupt, I/O or a timer is due.
    fn wait_for_work(&self) {
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
