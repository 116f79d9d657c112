//! What every thread may see of a runtime's workers: [`Shared`], the runtime's state that its
//! workers, handles and tasks share, and each worker's [`WorkerShared`] part: its remote queue
//! and wake-up eventfd, its stealable queue, its counts, what it shows the timer thread, and
//! its callbacks.

use super::{callbacks, fds, poller, steal, watch};
use crate::sched::task::Task;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

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
    pub(super) remote: Mutex<Vec<Arc<Task>>>,
    pub(super) remote_len: AtomicUsize,
    pub(super) sleeping: AtomicBool,
    /// Set while the worker has nothing to run (spinning or asleep); a worker that takes it
    /// wakes the idle one to steal unstarted tasks (`Shared::nudge_idle`).
    pub(super) idle: AtomicBool,
    /// Its unstarted tasks, which any worker may take (two or more workers; see `steal.rs`).
    pub(super) fresh: steal::Padded<steal::Fresh>,
    /// What it publishes for thieves at its scheduling decisions.
    pub(super) published: steal::Padded<steal::Published>,
    pub(super) eventfd: OwnedFd,
    pub(super) epoll: OwnedFd,
    /// Tasks spawned and ended by this worker's thread: plain stores by that thread only, so
    /// counting what is alive costs no locked instruction per task.
    pub(super) spawned: AtomicUsize,
    pub(super) ended: AtomicUsize,
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
    pub(super) spawned_elsewhere: AtomicUsize,
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
    pub(super) new_poller: poller::NewPoller,
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
        crate::stack::pool::also_release(crate::sched::recycle::release_all);
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
    pub(super) fn new(index: usize) -> io::Result<WorkerShared> {
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
    pub(super) fn push_remote(&self, task: Arc<Task>) {
        let q = self.remote.lock().unwrap_or_else(|e| e.into_inner());
        self.queue_and_wake(q, [task]);
    }

    /// Hands this worker unstarted tasks from another thread, unless the runtime is shutting
    /// down: then they come back, since this worker may have taken its remote queue for the
    /// last time. The flag is read under the queue's lock, which every take of a worker that
    /// saw the flag also holds (`Local::take_remote`), so a hand-over either comes before the
    /// last take or sees the flag.
    pub(super) fn hand_over(&self, rt: &Shared, tasks: Vec<Arc<Task>>) -> Result<(), Vec<Arc<Task>>> {
        let q = self.remote.lock().unwrap_or_else(|e| e.into_inner());
        if rt.shutdown.load(Ordering::SeqCst) {
            return Err(tasks);
        }
        self.queue_and_wake(q, tasks);
        Ok(())
    }

    /// Appends to the remote queue whose lock `q` holds, then wakes the worker if it sleeps.
    pub(super) fn queue_and_wake(
        &self,
        mut q: MutexGuard<'_, Vec<Arc<Task>>>,
        tasks: impl IntoIterator<Item = Arc<Task>>,
    ) {
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

    pub(super) fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writing 8 bytes to our own eventfd; EAGAIN (counter full) still wakes.
        unsafe { libc::write(self.eventfd.as_raw_fd(), (&raw const one).cast(), 8) };
    }
}
