//! Workers: one OS thread each, with a FIFO run queue, a registry of the coroutines it owns,
//! timers, and an epoll instance it sleeps in when idle.
//!
//! A coroutine that has run stays on its worker: Rust and libc cache thread-local addresses in
//! registers, so moving a suspended coroutine to another thread would corrupt them. The
//! exception is a coroutine spawned migratable, whose spawner vouched for its code: it may be
//! handed to another worker at a safe point (`settle.rs`, "Moving a migratable task"). Tasks that
//! have not run yet may go anywhere: on a runtime with two or more workers they wait in their
//! worker's stealable queue, from which other workers take a share at their scheduling
//! decisions and before they sleep, even while the owner runs a hog (`steal.rs`).
//!
//! Wakeups from other threads go to the owner's remote queue; the waker writes the owner's
//! eventfd only if the owner said it was going to sleep (`sleeping`), with SeqCst on both sides
//! so that either the waker sees `sleeping` or the worker sees the queued task.

use super::park::current_task;
use super::task::{Task, UNSTARTED};
use super::timers::{TimerKind, Timers};
use std::cell::{Cell, UnsafeCell};
use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

pub(crate) mod alarm;
pub(crate) mod callbacks;
mod fds;
mod idle;
mod inline;
pub(crate) mod poller;
mod settle;
mod shared;
mod slice;
mod steal;
pub(crate) mod watch;

pub(crate) use inline::run_if_unstarted_here;
pub use settle::spent_slices_go_on_for_tests;
pub(crate) use shared::{PreemptConfig, Shared, WorkerShared};

/// How many tasks a worker runs between looks at its remote queue, timers and steal requests.
const BATCH: usize = 64;

/// From how many tasks in its run queue a worker prefetches the next ones' stack lines
/// (`Local::prefetch_queued`); with fewer, they are still in cache from their last run.
const PREFETCH_QUEUED: usize = 4;

/// The epoll token of a worker's own eventfd.
const EVENTFD_TOKEN: u64 = 0;

/// How long an idle worker spins on its remote queue before it sleeps in epoll.
const SPIN: std::time::Duration = std::time::Duration::from_micros(20);

/// A worker's live tasks by slot, and the free slots.
type LiveTasks = (Vec<Option<Arc<Task>>>, Vec<usize>);

/// A worker's own state, reachable from its thread only.
pub(crate) struct Local {
    pub index: usize,
    pub rt: Arc<Shared>,
    /// Tasks that have run here and wait to go on; on a one-worker runtime, unstarted tasks
    /// too (with more workers those wait in `WorkerShared::fresh`).
    queue: UnsafeCell<VecDeque<Arc<Task>>>,
    /// Whether the runtime has other workers: unstarted tasks then go to the stealable queue,
    /// and queued tasks are stamped (see `steal.rs`).
    stealable: bool,
    /// How many tasks were queued here (stamps; two or more workers only).
    tick: Cell<u64>,
    /// Since when this worker has been leaving its unstarted tasks to a lighter worker.
    /// (When, for which worker, and that worker's decision count then.)
    held_back: Cell<Option<(Instant, usize, u64)>>,
    /// A task just woken here: it runs next, in the current slice.
    next: UnsafeCell<Option<Arc<Task>>>,
    /// Tasks woken by timers, in deadline order: they run before the run queue, after `next`.
    timer_woken: UnsafeCell<VecDeque<Arc<Task>>>,
    /// A task switched out to let timer-woken ones run: it goes on right after them.
    made_way: UnsafeCell<Option<Arc<Task>>>,
    /// Set when a coroutine took the flag that ends the running slice: the next one to run
    /// starts a new slice even if it was woken into this one (the timer thread flags a slice
    /// once, so a coroutine going on in a spent slice would never be flagged again).
    slice_spent: Cell<bool>,
    /// Whether timers are firing now (their wake-ups go to `timer_woken`).
    firing: Cell<bool>,
    /// Set when a task that a joiner ran in its own place was preempted: the slice is over, and
    /// the worker looks at its timers and remote queue once control is back in its loop (for
    /// nested joins in place, once the outermost joiner switches out).
    slice_over: Cell<bool>,
    /// Whether this worker spins before it sleeps: its last idle spell was ended by another
    /// thread, not by I/O (`idle.rs`).
    spin_pays: Cell<bool>,
    /// Live tasks that have suspended here at least once, by slot; the free slots.
    registry: UnsafeCell<LiveTasks>,
    timers: UnsafeCell<Timers>,
    /// The I/O layer's waiters on this worker's epoll instance (`poller.rs`).
    pub io: Box<dyn poller::Poller>,
    /// Slice and alarm bookkeeping (`slice.rs`).
    pub slices: slice::Slices,
}

/// The worker state of this thread, if it is a worker. The pointer lives in the ground
/// floor's thread-local word (`ground::worker`), whose address is computed afresh at every
/// call, so a migratable coroutine that moved gets its new worker's state.
#[inline]
pub(crate) fn local() -> Option<&'static Local> {
    let p = crate::ground::worker().cast::<Local>();
    // SAFETY: a worker sets the pointer to its `Local`, which outlives every task it runs and is
    // cleared before the worker returns. The reference is used on this thread and is not kept
    // across a switch by the runtime's code (a migratable coroutine may resume elsewhere).
    unsafe { p.as_ref() }
}

/// Whether the calling coroutine is the only live one on its worker and nothing else is
/// queued there or on its way: blocking the worker then holds up nobody (`blocking` runs its
/// closure inline). Joiners that started the caller in their place and never suspended are not
/// counted: they wait for the caller anyway. False outside a runtime.
pub(crate) fn current_runs_alone() -> bool {
    let Some(local) = local() else { return false };
    // SAFETY: the registry is this thread's; we only read its lengths.
    let (slots, free) = unsafe { &*local.registry.get() };
    // A task enters the registry when it first suspends: the caller may not be there yet.
    let unlisted = current_task().is_some_and(|t| t.slot.load(Ordering::Relaxed) == usize::MAX);
    slots.len() - free.len() + usize::from(unlisted) <= 1
        && !local.has_work()
        && local.me().remote_len.load(Ordering::SeqCst) == 0
}

/// Counts a spawn on `rt`; `here` is the calling worker if it belongs to `rt`, which then
/// counts it with a plain store to its own counter (the caller holds preemption off).
pub(crate) fn count_spawn(here: Option<&Local>, rt: &Arc<Shared>) {
    match here {
        Some(l) => bump(&l.me().spawned),
        None => {
            rt.spawned_elsewhere.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// Takes back the count of a spawn from elsewhere whose task never got queued.
pub(crate) fn uncount_spawn_elsewhere(rt: &Shared) {
    rt.spawned_elsewhere.fetch_sub(1, Ordering::AcqRel);
}

/// Counts a task's end (always on a worker of its runtime: tasks end where they run).
pub(crate) fn count_end(rt: &Arc<Shared>) {
    let l = local().expect("a task ends on a worker");
    debug_assert!(Arc::ptr_eq(&l.rt, rt));
    bump(&l.me().ended);
}

/// Runs the due callbacks of the calling worker (a safe point found its flag raised).
pub(crate) fn run_pending_callbacks() {
    if let Some(local) = local() {
        local.me().interrupts.run_pending();
    }
}

/// Adds one to a counter only this thread writes: no locked instruction.
fn bump(counter: &AtomicUsize) {
    counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Release);
}

/// Clears the calling worker's alarm (see [`alarm`]), so that a system call
/// made on purpose on the worker thread is not interrupted by it.
pub(crate) fn disarm_alarm() {
    let _off = crate::ground::RuntimeGuard::new();
    if let Some(l) = local() {
        l.slices.disarm(&l.me().preempt);
    }
}

/// Queues a new task from a thread that is not one of `rt`'s workers, on the next worker in
/// turn; the task comes back if the runtime is shutting down (its workers may be gone).
pub(crate) fn schedule_new(rt: &Shared, task: Arc<Task>) -> Result<(), Arc<Task>> {
    let target = rt.next_worker.fetch_add(1, Ordering::Relaxed) % rt.workers.len();
    if rt.workers.len() > 1 {
        return steal::push_from_outside(rt, target, task);
    }
    rt.workers[target]
        .hand_over(rt, vec![task])
        .map_err(|mut back| back.pop().expect("the task came back"))
}

/// Makes a woken task (it was parked or asleep, so it has run) runnable on its worker.
///
/// On its own worker it takes the `next` slot (the one it displaces goes to the back): a
/// coroutine that slept or waited runs right after the current one, within the current slice,
/// so wake-ups are served fast while CPU-bound coroutines queue at the back. Unstarted tasks
/// never come here: spawns queue them (`Local::push_unstarted`, `schedule_new`).
pub(crate) fn schedule(task: Arc<Task>) {
    let _off = crate::ground::RuntimeGuard::new();
    let owner = task.state.owner();
    debug_assert_ne!(owner, UNSTARTED, "only a task that has run is woken");
    if let Some(local) = local()
        && Arc::ptr_eq(&local.rt, &task.rt)
        && owner == local.index
    {
        if local.firing.get() {
            local.timer_woken().push_back(task);
        } else if let Some(displaced) = local.next().replace(task) {
            local.push_back(displaced);
        }
        return;
    }
    // Our own handle on the runtime: the task may end, and drop the last other one, as soon
    // as it is queued.
    let rt = task.rt.clone();
    rt.workers[owner].push_remote(task);
}

impl Local {
    /// Runs one worker until shutdown, then unwinds what it still owns.
    pub(crate) fn run(index: usize, rt: Arc<Shared>) {
        let io = (rt.new_poller)(rt.workers[index].epoll.as_raw_fd());
        let slices = slice::Slices::new(rt.slice_ns, rt.slice_alarm_ns, rt.preempt_anywhere);
        let stealable = rt.workers.len() > 1;
        let local = Local {
            index,
            rt,
            stealable,
            queue: UnsafeCell::new(VecDeque::new()),
            tick: Cell::new(0),
            held_back: Cell::new(None),
            next: UnsafeCell::new(None),
            timer_woken: UnsafeCell::new(VecDeque::new()),
            made_way: UnsafeCell::new(None),
            slice_spent: Cell::new(false),
            firing: Cell::new(false),
            slice_over: Cell::new(false),
            spin_pays: Cell::new(true),
            registry: UnsafeCell::new((Vec::new(), Vec::new())),
            timers: UnsafeCell::new(Timers::default()),
            io,
            slices,
        };
        crate::ground::set_worker(std::ptr::from_ref(&local).cast());
        if local.stealable {
            // A migratable coroutine may end here with a stack another worker took: the pool
            // that hands a kept stack on when the thread exits must exist (its first use makes
            // it).
            crate::stack::thread_stats();
        }
        let watch = &local.me().preempt;
        local.slices.publish_thread(watch);
        local.main_loop();
        local.shut_down();
        local.slices.withdraw_thread(watch);
        crate::ground::set_worker(std::ptr::null());
    }

    /// How many tasks wait in the run queue, besides the running one: a waiter that finds
    /// others besides its peer would wait a whole round of them if it spun. (A task in the
    /// `next` slot runs right after the current one, so it is left out.)
    #[inline]
    pub(crate) fn others_queued(&self) -> usize {
        self.queue().len() + self.fresh_len()
    }

    pub(crate) fn me(&self) -> &WorkerShared {
        &self.rt.workers[self.index]
    }

    #[allow(clippy::mut_from_ref)]
    fn queue(&self) -> &mut VecDeque<Arc<Task>> {
        // SAFETY: only this worker's thread reaches its queue, and no borrow of it outlives one
        // statement here (running a task never happens while it is borrowed).
        unsafe { &mut *self.queue.get() }
    }

    #[allow(clippy::mut_from_ref)]
    fn next(&self) -> &mut Option<Arc<Task>> {
        // SAFETY: as for the queue.
        unsafe { &mut *self.next.get() }
    }

    #[allow(clippy::mut_from_ref)]
    fn timer_woken(&self) -> &mut VecDeque<Arc<Task>> {
        // SAFETY: as for the queue.
        unsafe { &mut *self.timer_woken.get() }
    }

    #[allow(clippy::mut_from_ref)]
    fn made_way(&self) -> &mut Option<Arc<Task>> {
        // SAFETY: as for the queue.
        unsafe { &mut *self.made_way.get() }
    }

    /// The task to run next, and whether it starts a new slice: the `next` slot, sleepers woken
    /// by timers (earliest deadline first), the task that made way for them (all three within
    /// the current slice, so that waking others never resets a CPU-bound task's slice), then
    /// the run queue (with other workers: the older of the run queue's and the stealable
    /// queue's first, after taking a share of other workers' unstarted tasks if `steal`).
    fn pop(&self, steal: bool) -> Option<(Arc<Task>, bool)> {
        let inherit = self
            .next()
            .take()
            .or_else(|| self.timer_woken().pop_front())
            .or_else(|| self.made_way().take());
        // A woken coroutine goes on in the running slice, unless that slice is spent.
        let new_slice = self.slice_spent.replace(false);
        match inherit {
            Some(t) => Some((t, new_slice)),
            None if self.stealable => Some((self.pop_queued(steal)?, true)),
            None => Some((self.queue().pop_front()?, true)),
        }
    }

    fn has_work(&self) -> bool {
        self.next().is_some()
            || !self.timer_woken().is_empty()
            || self.made_way().is_some()
            || !self.queue().is_empty()
            || self.fresh_len() != 0
    }

    #[allow(clippy::mut_from_ref)]
    fn timers(&self) -> &mut Timers {
        // SAFETY: as for the queue.
        unsafe { &mut *self.timers.get() }
    }

    fn main_loop(&self) {
        loop {
            for _ in 0..BATCH {
                let Some((task, new_slice)) = self.pop(true) else { break };
                self.prefetch_queued();
                if self.run_task(task, new_slice) {
                    break; // a slice went by: look at timers and the remote queue now
                }
            }
            self.take_remote();
            self.fire_timers();
            self.me().interrupts.run_pending();
            if self.others_queued() > 1 {
                // More than we can run at once: an idle worker may take the unstarted ones.
                self.nudge_if_waiting();
            }
            // Shutdown does not wait for the run queue to drain: coroutines that keep yielding
            // (or keep being preempted) would hold it off for ever. `shut_down` cancels them.
            if self.rt.shutdown.load(Ordering::Acquire) {
                return;
            }
            if self.has_work() {
                if self.io.has_waiters() {
                    self.poll_io(0);
                }
                continue;
            }
            self.idle();
        }
    }

    /// Runs a task until it suspends; returns whether it was preempted (it ran a whole slice,
    /// so timers and the remote queue are due a look).
    #[inline(always)]
    fn run_task(&self, task: Arc<Task>, new_slice: bool) -> bool {
        let watch = &self.me().preempt;
        self.slices.switch_in(watch, &task, new_slice);
        crate::ground::set_current(task.header_ptr());
        let outcome = if task.state.is_unstarted() {
            self.start(&task)
        } else {
            if task.slot.load(Ordering::Relaxed) == usize::MAX {
                // A migratable task that was offered to other workers (`settle.rs`).
                self.adopt(&task);
            }
            self.slices.cover(watch, &task, || self.timers().next_deadline());
            // SAFETY: we dequeued the task, so we are the one worker that may run it.
            let co = unsafe { task.coroutine() };
            Some(co.as_mut().expect("a queued task has a coroutine").resume(()))
        };
        crate::ground::set_current(std::ptr::null());
        self.slices.switch_out(watch);
        match outcome {
            // A task that a joiner ran in its place may have used up the slice.
            Some(outcome) => self.settle(task, outcome) | self.slice_over.replace(false),
            None => false, // no stack could be had: the task ended with that error
        }
    }

    fn take_remote(&self) {
        let me = self.me();
        // Once shutting down, always under the lock: a hand-over that read the flag as unset
        // under the same lock has then pushed its tasks before we look (see `hand_over`).
        if me.remote_len.load(Ordering::SeqCst) == 0 && !self.rt.shutdown.load(Ordering::SeqCst) {
            return;
        }
        let mut q = me.remote.lock().unwrap_or_else(|e| e.into_inner());
        me.remote_len.store(0, Ordering::SeqCst);
        // Woken tasks, unstarted ones placed here by a busy worker (`steal.rs`), and on one
        // worker unstarted ones from outside too.
        for task in q.drain(..) {
            self.push_back(task);
        }
    }

    fn fire_timers(&self) {
        crate::ground::clear_interrupt_flags(crate::ground::DEADLINE);
        if self.timers().is_empty() {
            return;
        }
        let now = Instant::now();
        self.firing.set(true);
        while let Some((seq, kind, task)) = self.timers().pop_expired(now) {
            if task.wait_seq.load(Ordering::Relaxed) != seq {
                continue;
            }
            match kind {
                TimerKind::Park => task.unpark(),
                TimerKind::Sleep => task.interrupt_sleep(),
            }
        }
        self.firing.set(false);
        self.publish_deadline();
    }

    /// Tells the timer thread when our earliest timer is due.
    fn publish_deadline(&self) {
        let deadline = self.timers().next_deadline();
        self.slices
            .publish_deadline(&self.me().preempt, &self.rt.timer_bell, deadline);
    }

    /// After shutdown was asked: cancel every live task this worker owns and run them until
    /// they have all unwound, so their destructors run on the thread they belong to.
    fn shut_down(&self) {
        loop {
            self.take_remote();
            self.drain_fresh();
            // SAFETY: registry is this thread's.
            let live: Vec<Arc<Task>> = unsafe { (*self.registry.get()).0.iter().flatten().cloned().collect() };
            for task in &live {
                task.cancel();
            }
            if live.is_empty() && !self.has_work() {
                break;
            }
            while let Some((task, _)) = self.pop(false) {
                if task.state.is_unstarted() {
                    // Never started: dropping its body drops the closure, which never ran.
                    // SAFETY: we dequeued it.
                    drop(unsafe { task.body().take() });
                    super::harness::finish(&task, Err(super::task::JoinErrorKind::Cancelled));
                    continue;
                }
                self.run_task(task, true);
            }
            self.take_remote();
            self.drain_fresh();
            if !self.has_work() {
                self.idle_briefly();
            }
        }
    }

    /// With more tasks queued than the caches keep warm (a server's connections), starts
    /// loading what the next resumes touch first while the popped task runs, one step of a
    /// chain per queued task so that no step waits for memory: the third task's record, the
    /// second's stack header (its record was prefetched by the previous call), the first's
    /// saved registers and frames (its header was). Without this, a switch into a coroutine
    /// that ran a thousand switches ago stalls on each of those in turn (at 1,024 HTTP
    /// connections, a quarter of the server's user time).
    #[inline(always)]
    fn prefetch_queued(&self) {
        let queue = self.queue();
        if queue.len() < PREFETCH_QUEUED {
            return;
        }
        queue[2].prefetch_record();
        // SAFETY: tasks in our run queue are ours alone to run (no other worker reaches this
        // queue) and suspended; started ones have a coroutine that only we touch.
        unsafe {
            if let Some(co) = queue[1].coroutine() {
                co.prefetch_header();
            }
            if let Some(co) = queue[0].coroutine() {
                co.prefetch_context();
            }
        }
    }

    fn idle_briefly(&self) {
        std::thread::yield_now();
    }
}
