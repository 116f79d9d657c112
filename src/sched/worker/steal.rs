//! Unstarted tasks that any worker may take: the stealable queue of a runtime with two or more
//! workers, and the balance rule (Go's `findrunnable`).
//!
//! # Who holds what
//!
//! - `Local::queue` (thread-local, no lock) holds tasks that have started on this worker:
//!   yielded, preempted, or woken, and unstarted ones another worker placed here for good
//!   (see "Where a task starts"). They never leave it. (A migratable task preempted at a
//!   safe point may be offered in `fresh` instead: see `settle.rs`. Such a task keeps its
//!   `owner`, so a join never runs it in place, and placement leaves it where it is.)
//! - `WorkerShared::fresh` (a [`Fresh`]: a `Mutex<VecDeque>` with a length hint) holds the
//!   worker's unstarted tasks. The owner pushes its spawns at the back and pops at the front
//!   (its FIFO turn) or at either end (a join in place); threads outside the runtime push at
//!   the back (`schedule_new`, under the shutdown rule below); other workers (thieves) take
//!   from the front, the oldest first, as Go steals from the head of a run queue. A thief puts
//!   what it took in its own `fresh`, where it stays stealable until it starts.
//!
//! One-worker runtimes have nobody to share with: their spawns go straight to `Local::queue`,
//! as before, and none of this runs (`Local::stealable` is false).
//!
//! # Order on the owner
//!
//! Every push to either queue stamps the task with the worker's running count of pushes
//! (`Task::stamp`); the owner runs whichever queue's first task is older. So a worker runs its
//! started and unstarted tasks in the order they were queued, as one FIFO would: neither kind
//! starves the other. (A task spawned from outside the runtime is stamped with the owner's
//! count as last published, a little in the past; tasks that move between workers are stamped
//! anew when they arrive, behind what the thief had queued, except that a thief with nothing
//! else to run runs the first one at once.)
//!
//! # When a worker steals
//!
//! At every scheduling decision that starts a slice (after a yield, a park, a task's end, a
//! preemption) and before it goes idle, a worker looks at the other workers' length hints:
//! one load each when nobody has unstarted tasks. From a worker with some, it takes
//! half the difference of their loads (runnable tasks: started and queued or running, plus
//! unstarted), at most all of the victim's unstarted ones: an idle thief takes about half, a
//! busy one only what evens the two out. Behind a hog (a coroutine that reaches no safe point),
//! whose worker makes no decision, the unstarted tasks thus go to whichever worker's load
//! drops below the hog's: an idle one at once (the hog report wakes one), a busy one as its
//! own tasks end.
//!
//! Since a started task never moves (unless migratable), the share must be settled before the
//! tasks start. So the owner holds back too: while its load exceeds that of a lighter worker
//! (one not running a reported hog) by two or more, it runs its started tasks before its
//! unstarted ones, leaving those for the lighter worker's next decision (and wakes it if it
//! idles). It stops holding back once that worker made two decisions without taking them, or
//! after [`HOLD_BACK_MAX`]; with no started task to run, it starts one at once. This is the one
//! exception to its FIFO order.
//!
//! A spawn that leaves two or more unstarted tasks on its worker, and a hog report, wake an
//! idle worker if there is one (one load of `Shared::idlers` when there is none), which then
//! steals. A single spawned task stays with its spawner, which usually joins it in place.
//!
//! # Where a task starts
//!
//! The rules above balance runnable tasks. But a started task stays where it started for the
//! rest of its life, however long it waits: a server's connection coroutines, started one at a
//! time as clients arrive, would all live on the acceptor's worker, which takes every one while
//! the other workers sleep (their runnable load is zero whenever they look). So the last step
//! before a worker starts an unstarted task from its queue looks at the live started tasks
//! (`Published::live`, the size of each worker's registry: queued, running, parked or asleep):
//! if this worker has nothing else to run, and another worker, not running a hog, has nothing
//! runnable either (no started task queued or running, no unstarted one) and fewer live
//! tasks, the task goes to that worker's stealable queue instead and wakes it. Among idle
//! workers, where a lightly loaded server's connection coroutines start, tasks that mostly
//! wait spread by number (a worker given one has it queued, so it counts as busy for the
//! next).
//!
//! Otherwise (this worker or the other is busy) the steals and the hold-back above balance the
//! runnable load, and a parked coroutine (a joiner, a sleeper) must not weigh like a runnable
//! one: a hog is never pushed away because its worker also holds a parked joiner. So there
//! only a wide gap counts ([`wide_gap`]: an eighth of this worker's live tasks, at least
//! [`WIDE_GAP_MIN`]): a worker that owns that many more live tasks than another (counting
//! those already handed to it, not its unstarted ones, which steals may take) hands the task
//! to that worker's run queue, for good. Not to its stealable queue: there the task would
//! count as runnable load, which the steals and the hold-back even out by sending it straight
//! back (a 256-connection HTTP server under `wrk` ended up split 40:214 that way, or, with no
//! such step, in whatever way the steals of the moment left it). A worker running a reported
//! hog is never a target; an accept loop in a burst of connections was one until socket
//! operations became safe points. Tasks joined in place and those a thief runs at once skip
//! the step: they start where the work already is.
//!
//! The rule cannot tell a long-lived task from a short one. When a wide gap exists already
//! (the coroutines of one worker ended, those of the other did not), the tasks the heavier
//! worker starts, short computing ones too, go to the lighter one until the gap closes: 32
//! computing coroutines spawned beside 100 parked ones ran 600:40 chunks (split about evenly
//! before). Tried and left out, each measured with that burst and with 256 `wrk` connections:
//! bounding the rule by runnable load (never to a worker with more to run) blocked the
//! placement the rule exists for in about half the runs; exempting tasks a thief stole kept
//! the burst split but let the thief keep a burst of connections (10:247 in 2 of 8 runs);
//! exempting them unless their victim had little to run did neither reliably.
//!
//! # Shutdown
//!
//! Each worker drains its own `fresh` in `Local::shut_down`, under its lock, after it saw the
//! shutdown flag; a push from outside reads the flag under the same lock (so it comes before
//! that drain or fails), the owner's own spawns fail once it saw the flag, and a thief puts
//! what it took into its own `fresh` or runs it: no task is left where nobody looks.

use super::watch::IDLE;
use super::{Local, Shared, Task, WorkerShared};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Keeps what it holds on cache lines of its own (two, for the adjacent-line prefetcher).
#[repr(align(128))]
#[derive(Default)]
pub(crate) struct Padded<T>(pub T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// A worker's stealable queue of unstarted tasks (see the module docs for who touches it).
#[derive(Default)]
pub(crate) struct Fresh {
    queue: Mutex<VecDeque<Arc<Task>>>,
    /// `queue.len()`, stored under the lock: what other workers look at without it.
    len: AtomicUsize,
}

/// What a worker publishes for thieves and outside spawners, at each scheduling decision.
#[derive(Default)]
pub(crate) struct Published {
    /// Its started tasks that are queued or running (a hint).
    pub(super) started: AtomicUsize,
    /// Its count of queued tasks (stamps), as last published.
    tick: AtomicU64,
    /// How many scheduling decisions it made (each publishes).
    decisions: AtomicU64,
    /// Its live started tasks (those in its registry: queued, running, parked or asleep).
    pub(super) live: AtomicUsize,
}

impl Fresh {
    fn lock(&self) -> MutexGuard<'_, VecDeque<Arc<Task>>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many unstarted tasks it holds (a hint).
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::SeqCst)
    }
}

/// Whether stamp `a` is older than stamp `b` (counts wrap).
fn older(a: u64, b: u64) -> bool {
    (a.wrapping_sub(b) as i64) < 0
}

/// How many unstarted tasks a worker of load `mine` takes from a victim with `fresh` of them
/// and `started` started ones: half the difference, at most all of them.
fn share(fresh: usize, started: usize, mine: usize) -> usize {
    ((fresh + started).saturating_sub(mine) / 2).min(fresh)
}

/// The longest an owner holds its unstarted tasks back for a lighter worker that makes no
/// scheduling decision (blocked in a system call, say).
const HOLD_BACK_MAX: Duration = Duration::from_millis(50);

/// How many more live tasks a busy worker must own than another before the tasks it starts go
/// there: an eighth of them, and never fewer than [`WIDE_GAP_MIN`], so that a few parked joiners
/// or sleepers never push a runnable task away.
fn wide_gap(mine: usize) -> usize {
    (mine / 8).max(WIDE_GAP_MIN)
}

/// The smallest gap [`wide_gap`] asks for.
const WIDE_GAP_MIN: usize = 8;

/// Whether worker `w` runs a coroutine the timer thread reported as a hog.
pub(super) fn hogging(w: &WorkerShared) -> bool {
    let watch = &w.preempt;
    let hog = watch.hog_seq.load(Ordering::Relaxed);
    hog != 0 && hog == watch.slice_seq.load(Ordering::Relaxed) && watch.running.load(Ordering::Relaxed) != IDLE
}

impl Shared {
    /// Wakes one idle worker other than `from`, which then looks for tasks to steal. One load
    /// when no worker is idle. Also called by the timer thread.
    pub(crate) fn nudge_idle(&self, from: usize) {
        if self.idlers.load(Ordering::SeqCst) == 0 {
            return;
        }
        // Take the idle worker's flag, so that only one nudge wakes it.
        let idle = self.workers.iter().enumerate().find(|&(i, w)| {
            i != from
                && w.idle.load(Ordering::Relaxed)
                && w.idle
                    .compare_exchange(true, false, Ordering::SeqCst, Ordering::Relaxed)
                    .is_ok()
        });
        if let Some((_, w)) = idle {
            w.wake_if_sleeping();
        }
    }

    /// From the timer thread, on a new hog report for worker `hog`: the unstarted tasks queued
    /// there cannot run there, so an idle worker comes for them (busy ones take them at their
    /// next scheduling decision).
    pub(crate) fn offer_unstarted(&self, hog: usize) {
        if self.workers.len() > 1 && self.workers[hog].fresh.len() != 0 {
            self.nudge_idle(hog);
        }
    }
}

/// Queues a new task on worker `to` from a thread outside the runtime, or from another worker
/// that places it there (two or more workers), unless the runtime is shutting down: then it
/// comes back. The flag is read under the queue's lock, which the worker's last drain also
/// holds after it saw the flag.
pub(super) fn push_from_outside(rt: &Shared, to: usize, task: Arc<Task>) -> Result<(), Arc<Task>> {
    let w = &rt.workers[to];
    let mut q = w.fresh.lock();
    if rt.shutdown.load(Ordering::SeqCst) {
        return Err(task);
    }
    task.stamp
        .store(w.published.tick.load(Ordering::Relaxed), Ordering::Relaxed);
    q.push_back(task);
    let n = q.len();
    w.fresh.len.store(n, Ordering::SeqCst);
    drop(q);
    w.wake_if_sleeping();
    if n > 1 {
        rt.nudge_idle(to);
    }
    Ok(())
}

impl Local {
    /// Stamps a task being queued on this worker with the next count.
    #[inline]
    fn stamp(&self, task: &Task) {
        let n = self.tick.get().wrapping_add(1);
        self.tick.set(n);
        task.stamp.store(n, Ordering::Relaxed);
    }

    /// Queues a started task at the back of the run queue.
    #[inline(always)]
    pub(super) fn push_back(&self, task: Arc<Task>) {
        if self.stealable {
            self.stamp(&task);
        }
        self.queue().push_back(task);
    }

    /// Queues a task that has not run yet, from a spawn on this worker (the caller holds
    /// preemption off): in the run queue on a one-worker runtime, in the stealable queue
    /// otherwise, waking an idle worker when two or more wait there.
    pub(crate) fn push_unstarted(&self, task: Arc<Task>) {
        if !self.stealable {
            self.queue().push_back(task);
            return;
        }
        self.stamp(&task);
        let fresh = &self.me().fresh;
        let mut q = fresh.lock();
        q.push_back(task);
        let n = q.len();
        fresh.len.store(n, Ordering::SeqCst);
        drop(q);
        if n > 1 {
            self.rt.nudge_idle(self.index);
        }
    }

    /// Offers a started migratable task to other workers (`settle.rs`): at the back of the
    /// stealable queue, stamped like any queued task, waking an idle worker to take it. On its
    /// own worker it runs in its turn if nobody does.
    pub(super) fn push_started_stealable(&self, task: Arc<Task>) {
        self.stamp(&task);
        let fresh = &self.me().fresh;
        let mut q = fresh.lock();
        q.push_back(task);
        fresh.len.store(q.len(), Ordering::SeqCst);
        drop(q);
        self.rt.nudge_idle(self.index);
    }

    /// When this worker is about to be busy and unstarted tasks wait here, wakes an idle
    /// worker to take some.
    pub(super) fn nudge_if_waiting(&self) {
        if self.stealable && self.me().fresh.len() != 0 {
            self.rt.nudge_idle(self.index);
        }
    }

    /// How many unstarted tasks wait in this worker's stealable queue (0 on one worker).
    #[inline]
    pub(super) fn fresh_len(&self) -> usize {
        if self.stealable { self.me().fresh.len() } else { 0 }
    }

    /// The next task from the run queue or the stealable queue, whichever's first is older;
    /// first, with `steal`, takes a share of another worker's unstarted tasks (see the module
    /// docs), one of which runs at once if this worker had nothing else.
    pub(super) fn pop_queued(&self, steal: bool) -> Option<Arc<Task>> {
        let task = match steal.then(|| self.balance(true)).flatten() {
            Some(t) => Some(t),
            None => self.pop_older(),
        };
        if task.is_some() {
            self.publish(1);
        }
        task
    }

    fn pop_older(&self) -> Option<Arc<Task>> {
        let fresh = &self.me().fresh;
        if fresh.len.load(Ordering::Relaxed) == 0 {
            return self.queue().pop_front();
        }
        let mut q = fresh.lock();
        let take_fresh = match (self.queue().front(), q.front()) {
            (Some(started), Some(unstarted)) => {
                older(
                    unstarted.stamp.load(Ordering::Relaxed),
                    started.stamp.load(Ordering::Relaxed),
                ) && !self.hold_back(q.len())
            }
            (started, _) => started.is_none(),
        };
        if take_fresh && let Some(t) = q.pop_front() {
            self.held_back.set(None);
            fresh.len.store(q.len(), Ordering::SeqCst);
            drop(q);
            return match self.place(t) {
                Some(t) => Some(t),
                None => self.pop_older(),
            };
        }
        drop(q);
        self.queue().pop_front()
    }

    /// Where an unstarted task this worker is about to start goes for good: here, or to a
    /// worker with fewer live started tasks (see the module docs). `None`: it went there.
    fn place(&self, task: Arc<Task>) -> Option<Arc<Task>> {
        if !task.state.is_unstarted() {
            return Some(task); // a migratable task offered here: it is runnable where it is
        }
        let mine = self.me().published.live.load(Ordering::Relaxed);
        if mine == 0 || !self.rt.place_by_live {
            return Some(task);
        }
        let idle = self.load() == 0;
        if !idle && mine < WIDE_GAP_MIN {
            return Some(task); // no gap can be wide enough: spare the other workers' lines
        }
        let lighter = self.rt.workers.iter().enumerate().find_map(|(i, w)| {
            if i == self.index || hogging(w) {
                return None;
            }
            let (live, fresh) = (w.published.live.load(Ordering::Relaxed), w.fresh.len());
            if idle && fresh == 0 && w.published.started.load(Ordering::Relaxed) == 0 && live < mine {
                return Some((i, w, false)); // both idle: any difference counts
            }
            // Otherwise only a wide gap counts: runnable load is what the steals and the
            // hold-back balance, and a parked coroutine (a joiner, a sleeper) must not weigh
            // like a runnable one. Its unstarted tasks do not count: they are runnable load,
            // which the steals may take from it (in a burst of connections, all of them).
            let gap = mine >= WIDE_GAP_MIN && live + w.remote_len.load(Ordering::Relaxed) + wide_gap(mine) <= mine;
            gap.then_some((i, w, true))
        });
        let Some((to, w, for_good)) = lighter else {
            return Some(task);
        };
        if !for_good {
            // Under the target's lock and shutdown rule; a worker that stopped sends it back.
            return push_from_outside(&self.rt, to, task).err();
        }
        // Handed over for good, to its run queue: in its stealable queue the task would
        // count as that worker's runnable load, which the steals and the hold-back would
        // even out by sending it back here.
        w.hand_over(&self.rt, vec![task]).err().and_then(|mut back| back.pop())
    }

    /// Whether to run a started task before the older unstarted one, to leave it to a lighter
    /// worker (see the module docs); `fresh` is how many unstarted ones wait here.
    fn hold_back(&self, fresh: usize) -> bool {
        let mine = self.queue().len() + usize::from(self.made_way().is_some()) + fresh;
        let lighter = self.rt.workers.iter().enumerate().find(|&(i, w)| {
            i != self.index
                && !hogging(w)
                && w.published.started.load(Ordering::Relaxed) + w.fresh.len.load(Ordering::Relaxed) + 2 <= mine
        });
        let Some((i, w)) = lighter else {
            self.held_back.set(None);
            return false;
        };
        let decisions = w.published.decisions.load(Ordering::Relaxed);
        let (since, seen) = match self.held_back.get() {
            Some((since, who, seen)) if who == i => (since, seen),
            _ => (Instant::now(), decisions),
        };
        self.held_back.set(Some((since, i, seen)));
        if decisions.wrapping_sub(seen) >= 2 || since.elapsed() > HOLD_BACK_MAX {
            // It had its chance: start ours after all.
            self.held_back.set(None);
            return false;
        }
        self.rt.nudge_idle(self.index);
        true
    }

    /// Publishes this worker's started load (`running`: one more runs now) and its count.
    pub(super) fn publish(&self, running: usize) {
        let p = &self.me().published;
        let started = self.queue().len() + usize::from(self.made_way().is_some()) + running;
        if p.started.load(Ordering::Relaxed) != started {
            p.started.store(started, Ordering::Relaxed);
        }
        p.tick.store(self.tick.get(), Ordering::Relaxed);
        p.decisions
            .store(p.decisions.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }

    /// Takes a share of another worker's unstarted tasks if the balance rule says so. With
    /// `run_now`, the first one comes back to run at once if this worker had nothing else to
    /// run; the others (all of them otherwise) go to the back of its own stealable queue.
    pub(super) fn balance(&self, run_now: bool) -> Option<Arc<Task>> {
        let workers = &self.rt.workers;
        let n = workers.len();
        let mut mine = None;
        let mut best: Option<(usize, usize)> = None;
        for k in 1..n {
            let v = (self.index + k) % n;
            let w = &workers[v];
            let fresh = w.fresh.len.load(Ordering::Relaxed);
            if fresh == 0 {
                continue;
            }
            let mine = *mine.get_or_insert_with(|| self.load());
            let want = share(fresh, w.published.started.load(Ordering::Relaxed), mine);
            if want > best.map_or(0, |(_, w)| w) {
                best = Some((v, want));
            }
        }
        let (victim, want) = best?;
        let alone = run_now && mine.is_some_and(|m| m <= 1);
        let taken: Vec<Arc<Task>> = {
            let from = &workers[victim].fresh;
            let mut q = from.lock();
            let take = want.min(q.len());
            let taken = q.drain(..take).collect();
            from.len.store(q.len(), Ordering::SeqCst);
            taken
        };
        let mut taken = taken.into_iter();
        let now = if alone { taken.next() } else { None };
        if taken.len() > 0 {
            let own = &self.me().fresh;
            let mut q = own.lock();
            for t in taken {
                self.stamp(&t);
                q.push_back(t);
            }
            own.len.store(q.len(), Ordering::SeqCst);
        }
        now
    }

    /// This worker's load: its queued started tasks and its unstarted ones.
    fn load(&self) -> usize {
        self.queue().len() + usize::from(self.made_way().is_some()) + self.me().fresh.len()
    }

    /// Whether a steal got this worker something to run (before it sleeps).
    pub(super) fn steal_before_sleep(&self) -> bool {
        if !self.stealable {
            return false;
        }
        self.publish(0);
        self.balance(false);
        self.me().fresh.len() != 0
    }

    /// Joining in place: takes `task` out of the stealable queue if it waits at either end.
    pub(super) fn take_fresh(&self, task: &Arc<Task>) -> Option<Arc<Task>> {
        let fresh = &self.me().fresh;
        if fresh.len.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut q = fresh.lock();
        let taken = if q.back().is_some_and(|t| Arc::ptr_eq(t, task)) {
            q.pop_back()
        } else if q.front().is_some_and(|t| Arc::ptr_eq(t, task)) {
            q.pop_front()
        } else {
            None
        };
        fresh.len.store(q.len(), Ordering::SeqCst);
        taken
    }

    /// Shutdown: moves every task of the stealable queue into the run queue, where
    /// `shut_down` cancels the unstarted ones. Always under the lock (see the module docs).
    pub(super) fn drain_fresh(&self) {
        if !self.stealable {
            return;
        }
        let fresh = &self.me().fresh;
        let mut q = fresh.lock();
        self.queue().extend(q.drain(..));
        fresh.len.store(0, Ordering::SeqCst);
    }
}
