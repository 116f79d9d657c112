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
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub(crate) mod alarm;
pub(crate) mod callbacks;
mod fds;
mod idle;
mod inline;
pub(crate) mod poller;
mod settle;
mod slice;
mod steal;
pub(crate) mod watch;

pub(crate) use inline::run_if_unstarted_here;

/// How many tasks a worker runs between looks at its remote queue, timers and steal requests.
const BATCH: usize = 64;

/// The epoll token of a worker's own eventfd.
const EVENTFD_TOKEN: u64 = 0;

/// How long an idle worker spins on its remote queue before it sleeps in epoll.
const SPIN: std::time::Duration = std::time::Duration::from_micros(20);

/// How a runtime preempts, as built.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PreemptConfig {
    /// The slice; `None`: no preemption.
    pub slice: Option<Duration>,
    /// Whether regions may be preempted asynchronously.
    pub async_regions: bool,
    /// The tests' controls (see [`Shared::preempt_anywhere`]).
    pub anywhere: bool,
    /// Whether hog reports go to stderr too.
    pub report_hogs: bool,
    /// How long after its start a slice that ignores its flag is signalled (the timer
    /// thread's rule), when preemption is on.
    pub slice_and_grace: Option<Duration>,
}

/// What every thread may see of one worker.
pub(crate) struct WorkerShared {
    remote: Mutex<Vec<Arc<Task>>>,
    remote_len: AtomicUsize,
    sleeping: AtomicBool,
    /// Set while the worker has nothing to run (spinning or asleep); a worker that takes it
    /// wakes the idle one to steal unstarted tasks (`Shared::nudge_idle`).
    idle: AtomicBool,
    /// Its unstarted tasks, which any worker may take (two or more workers; see `steal.rs`).
    fresh: steal::Padded<steal::Fresh>,
    /// What it publishes for thieves at its scheduling decisions.
    published: steal::Padded<steal::Published>,
    eventfd: OwnedFd,
    epoll: OwnedFd,
    /// Tasks spawned and ended by this worker's thread: plain stores by that thread only, so
    /// counting what is alive costs no locked instruction per task.
    spawned: AtomicUsize,
    ended: AtomicUsize,
    /// What the timer thread watches.
    pub preempt: watch::PreemptWatch,
    /// This worker's `Interrupt`s.
    pub interrupts: callbacks::Callbacks,
}

/// The runtime's state shared by its workers, its handles and its tasks.
pub(crate) struct Shared {
    pub workers: Box<[WorkerShared]>,
    pub shutdown: AtomicBool,
    pub next_worker: AtomicUsize,
    /// How many workers are idle (a hint: busy workers look for one to share unstarted tasks
    /// with only when it is not zero).
    pub idlers: AtomicUsize,
    /// Tasks spawned from threads that are not this runtime's workers (the workers count
    /// their own: see [`Shared::alive`]).
    spawned_elsewhere: AtomicUsize,
    pub stack_size: usize,
    /// The preemption slice in ns; 0 when preemption is off.
    pub slice_ns: u64,
    /// Whether [`preemptible`](crate::preempt::preemptible) regions are preempted
    /// asynchronously (the runtime preempts, and the process can: see `async_preemption`).
    pub async_regions: bool,
    /// The tests' controls: signals switch coroutines anywhere, regions or not (unsound).
    pub preempt_anywhere: bool,
    /// How long after its start a slice of a coroutine that ignores the preemption flag is
    /// signalled (slice + grace, ns); 0 when no worker may be signalled.
    pub slice_alarm_ns: u64,
    /// Whether hog reports also go to stderr.
    pub report_hogs: bool,
    /// Tells the timer thread to stop (before the workers are).
    pub timer_stop: AtomicBool,
    /// Wakes the timer thread from a long nap when a worker gets work.
    pub timer_bell: watch::Bell,
    /// Runtime-wide preemption counts.
    pub stats: crate::sched::stats::Counters,
    /// Makes each worker's poller (the I/O layer's, handed in by the runtime).
    new_poller: poller::NewPoller,
    /// Whether unstarted tasks start on the worker with the fewest live ones (`steal.rs`);
    /// off only in the tests' controls.
    pub place_by_live: bool,
}

impl Shared {
    pub(crate) fn new(
        workers: usize,
        stack_size: usize,
        preempt: PreemptConfig,
        new_poller: poller::NewPoller,
    ) -> io::Result<Shared> {
        // `stack::release_idle_memory` frees the task records workers keep, too.
        crate::stack::pool::also_release(super::recycle::release_all);
        let workers = (0..workers).map(WorkerShared::new).collect::<io::Result<Vec<_>>>()?;
        Ok(Shared {
            workers: workers.into_boxed_slice(),
            shutdown: AtomicBool::new(false),
            next_worker: AtomicUsize::new(0),
            idlers: AtomicUsize::new(0),
            spawned_elsewhere: AtomicUsize::new(0),
            stack_size,
            slice_ns: preempt.slice.map_or(0, |s| s.as_nanos() as u64),
            async_regions: preempt.slice.is_some() && preempt.async_regions,
            preempt_anywhere: preempt.slice.is_some() && preempt.anywhere,
            slice_alarm_ns: match preempt.slice_and_grace {
                Some(alarm) if preempt.async_regions || preempt.anywhere => alarm.as_nanos() as u64,
                _ => 0,
            },
            report_hogs: preempt.report_hogs,
            timer_stop: AtomicBool::new(false),
            timer_bell: Default::default(),
            stats: crate::sched::stats::Counters::default(),
            new_poller,
            place_by_live: true,
        })
    }

    /// Whether workers may be signalled (inside regions, or anywhere for tests' controls).
    pub(crate) fn preempt_async(&self) -> bool {
        self.slice_alarm_ns != 0
    }

    /// Whether the runtime preempts at all.
    pub(crate) fn preempt_on(&self) -> bool {
        self.slice_ns != 0
    }

    /// How many tasks are alive: spawned and not yet ended. Exact once the workers stopped;
    /// while they run, a snapshot that may be off by the tasks spawned or ended meanwhile.
    pub(crate) fn alive(&self) -> usize {
        // Ends first: a task's end happens after its spawn, so every end counted here has its
        // spawn counted below.
        let ended: usize = self.workers.iter().map(|w| w.ended.load(Ordering::Acquire)).sum();
        let spawned: usize = self
            .workers
            .iter()
            .map(|w| w.spawned.load(Ordering::Acquire))
            .sum::<usize>()
            + self.spawned_elsewhere.load(Ordering::Acquire);
        spawned.saturating_sub(ended)
    }

    /// Wakes every worker (for shutdown).
    pub(crate) fn wake_all(&self) {
        for w in self.workers.iter() {
            w.wake();
        }
    }
}

impl WorkerShared {
    /// Whether the worker has nothing to run (SeqCst: see `preempt::monitor::Bell`).
    pub(crate) fn is_idle(&self) -> bool {
        self.idle.load(Ordering::SeqCst)
    }

    /// The shared part of worker `index`; errors name the descriptor and the worker.
    fn new(index: usize) -> io::Result<WorkerShared> {
        // SAFETY: plain syscalls; the fds are owned at once.
        let (eventfd, epoll) = unsafe {
            let efd = libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC);
            if efd < 0 {
                return Err(fds::creating(&format!("the wake-up eventfd of worker {index}")));
            }
            let eventfd = OwnedFd::from_raw_fd(efd);
            let ep = libc::epoll_create1(libc::EPOLL_CLOEXEC);
            if ep < 0 {
                return Err(fds::creating(&format!("the epoll instance of worker {index}")));
            }
            let epoll = OwnedFd::from_raw_fd(ep);
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: 0,
            };
            if libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, efd, &mut ev) != 0 {
                return Err(fds::creating(&format!(
                    "the registration of worker {index}'s eventfd in its epoll instance"
                )));
            }
            (eventfd, epoll)
        };
        Ok(WorkerShared {
            remote: Mutex::new(Vec::new()),
            remote_len: AtomicUsize::new(0),
            sleeping: AtomicBool::new(false),
            idle: AtomicBool::new(false),
            fresh: Default::default(),
            published: Default::default(),
            eventfd,
            epoll,
            spawned: AtomicUsize::new(0),
            ended: AtomicUsize::new(0),
            preempt: Default::default(),
            interrupts: callbacks::Callbacks::default(),
        })
    }

    /// Queues a woken task that this worker owns.
    fn push_remote(&self, task: Arc<Task>) {
        let q = self.remote.lock().unwrap_or_else(|e| e.into_inner());
        self.queue_and_wake(q, [task]);
    }

    /// Hands this worker unstarted tasks from another thread, unless the runtime is shutting
    /// down: then they come back, since this worker may have taken its remote queue for the
    /// last time. The flag is read under the queue's lock, which every take of a worker that
    /// saw the flag also holds (`Local::take_remote`), so a hand-over either comes before the
    /// last take or sees the flag.
    fn hand_over(&self, rt: &Shared, tasks: Vec<Arc<Task>>) -> Result<(), Vec<Arc<Task>>> {
        let q = self.remote.lock().unwrap_or_else(|e| e.into_inner());
        if rt.shutdown.load(Ordering::SeqCst) {
            return Err(tasks);
        }
        self.queue_and_wake(q, tasks);
        Ok(())
    }

    /// Appends to the remote queue whose lock `q` holds, then wakes the worker if it sleeps.
    fn queue_and_wake(&self, mut q: MutexGuard<'_, Vec<Arc<Task>>>, tasks: impl IntoIterator<Item = Arc<Task>>) {
        q.extend(tasks);
        self.remote_len.store(q.len(), Ordering::SeqCst);
        drop(q);
        if self.sleeping.load(Ordering::SeqCst) {
            self.wake();
        }
    }

    /// Wakes the worker if it sleeps in epoll. Async-signal-safe.
    pub(crate) fn wake_if_sleeping(&self) {
        if self.sleeping.load(Ordering::SeqCst) {
            self.wake();
        }
    }

    fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writing 8 bytes to our own eventfd; EAGAIN (counter full) still wakes.
        unsafe { libc::write(self.eventfd.as_raw_fd(), (&raw const one).cast(), 8) };
    }
}

/// A worker's live tasks by slot, and the free slots.
type Registry = (Vec<Option<Arc<Task>>>, Vec<usize>);

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
    registry: UnsafeCell<Registry>,
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
    let owner = task.owner.load(Ordering::Acquire);
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
        match inherit {
            Some(t) => Some((t, false)),
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
        let outcome = if task.owner.load(Ordering::Relaxed) == UNSTARTED {
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
        // Woken tasks, and on one worker unstarted ones from outside too.
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
        self.slices.publish_deadline(&self.me().preempt, deadline);
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
                if task.owner.load(Ordering::Relaxed) == UNSTARTED {
                    // Never started: dropping its body drops the closure, which never ran.
                    // SAFETY: we dequeued it.
                    drop(unsafe { task.body().take() });
                    super::green::finish(&task, Err(super::task::JoinErrorKind::Cancelled));
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

    fn idle_briefly(&self) {
        std::thread::yield_now();
    }
}
