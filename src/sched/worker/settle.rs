//! After a task switched out: where it goes (a queue, parked, asleep, or out of the registry
//! when it ended), and the registry of the live tasks a worker owns, which shutdown walks and
//! placement counts (`steal.rs`, "Where a task starts").
//!
//! # Moving a migratable task
//!
//! A task spawned [migratable](crate::Builder::migratable) whose slice ended at a safe point
//! (`Action::Preempted` from `checkpoint`, not from the signal handler, not to make way for a
//! timer) goes to its worker's stealable queue instead of the run queue when another worker,
//! not running a hog, has less to run by two or more (idle counts as nothing): there the other
//! workers' balance rule takes it, as it takes unstarted tasks (`steal.rs`); if nobody does,
//! its own worker runs it in turn. Never inside a `preemptible` region (the region's frame and
//! signal mask are this thread's), never during shutdown, never while unwinding (the tests'
//! control that switches then). It leaves this worker's registry as it goes; the worker that
//! resumes it next adopts it ([`Local::adopt`]): it takes `owner`, enters it in its own
//! registry and counts the move, all before the task runs again, so every later wake-up
//! (`worker::schedule` reads `owner`) goes to the new worker.
//!
//! What makes this sound: the task is runnable while it moves, so no timer, waiter or waker of
//! the old worker refers to it (parked and sleeping tasks are never moved, and a stale timer
//! finds a newer `wait_seq`); it has no channel node linked (every channel, `select` and
//! `join` takes its safe point before it links one), so `waitlist`'s same-worker tag stays
//! right; the stealable queue's lock orders the old worker's last touch before the new one's
//! first; and the runtime's code reads its thread-locals afresh after every switch (see
//! `crate::ground`), so nothing of the old thread is used on the new one.

use super::Local;
use crate::coroutine::CoroutineResult;
use crate::sched::task::{Action, Task};
use crate::sched::timers::TimerKind;
use std::sync::Arc;
use std::sync::atomic::Ordering;

impl Local {
    /// Puts a task that just switched out where its action says: back in a queue, parked,
    /// asleep, or (ended) out of the registry and into the cache of kept records. Returns
    /// whether it was preempted (a slice went by).
    ///
    /// A task joins the registry of live tasks the first time it suspends: until then it is
    /// running, so shutdown (which runs between tasks) cannot miss it, and a task that runs to
    /// its end in one go never touches the registry.
    #[inline(always)]
    pub(super) fn settle(&self, task: Arc<Task>, outcome: CoroutineResult<Action, ()>) -> bool {
        let registered = task.slot.load(Ordering::Relaxed) != usize::MAX;
        let action = match outcome {
            CoroutineResult::Yield(action) => action,
            CoroutineResult::Return(()) => {
                // SAFETY: we ran the task, so we are the worker that may touch its coroutine.
                *unsafe { task.coroutine() } = None;
                if registered {
                    self.unregister(&task);
                }
                // A detached task's record is kept for a later spawn.
                crate::sched::recycle::give_back(task);
                return false;
            }
        };
        task.preempted.set(matches!(action, Action::Preempted { .. }));
        if !registered {
            self.register(&task);
        }
        match action {
            Action::Yield => self.push_back(task),
            Action::Preempted { signal, front } => {
                self.slices.stamp_next();
                if signal && self.rt.preempt_anywhere {
                    // The tests' controls run workers with the signal let in; a region's
                    // signal stays blocked between coroutines (see `preempt::region`).
                    crate::ground::unblock_preempt_signal();
                }
                if front {
                    if let Some(earlier) = self.made_way().replace(task) {
                        self.queue().push_front(earlier);
                    }
                    return true;
                }
                // The slice is over, whoever took its flag: a timer-woken coroutine may take
                // the flag of the slice that a coroutine which made way for it was running.
                // That one must not go on in the spent slice (the timer thread flags a slice
                // once): it goes to the back first, and whatever runs next starts a slice.
                if !SPENT_SLICES_GO_ON.load(Ordering::Relaxed) {
                    self.slice_spent.set(true);
                    if let Some(made_way) = self.made_way().take() {
                        self.push_back(made_way);
                    }
                }
                if !signal && self.may_move(&task) {
                    self.offer(task);
                } else {
                    self.push_back(task);
                }
                return true;
            }
            Action::Park { timed } => {
                if timed {
                    let d = task.deadline.get().expect("a timed park has a deadline");
                    let seq = task.wait_seq.load(Ordering::Relaxed);
                    self.timers().push(d, seq, TimerKind::Park, task.clone());
                    self.publish_deadline();
                }
                if !task.state.park() {
                    self.push_back(task); // a token came meanwhile: it runs again at once
                }
            }
            Action::Sleep => {
                let deadline = task.deadline.get().expect("a sleep has a deadline");
                let seq = task.wait_seq.load(Ordering::Relaxed);
                task.state.sleep();
                self.timers().push(deadline, seq, TimerKind::Sleep, task.clone());
                self.publish_deadline();
                if task.state.is_cancelled() {
                    task.interrupt_sleep();
                }
            }
        }
        false
    }

    /// Makes an unstarted task's coroutine and enters it, until it first suspends; the task is
    /// this worker's for good from the moment it has a stack. `None` when no stack could be
    /// had: the task ended with that error.
    #[inline(always)]
    pub(super) fn start(&self, task: &Arc<Task>) -> Option<CoroutineResult<Action, ()>> {
        let adopt = || task.state.adopt(self.index);
        let (co, outcome) = crate::sched::harness::start_coroutine(task, adopt)?;
        // SAFETY: we dequeued the task, so we are the one worker that may run it.
        unsafe { *task.coroutine() = Some(co) };
        Some(outcome)
    }

    /// Whether `task`, preempted at a safe point, should be offered to another worker (see the
    /// module docs): it is migratable and may move now, and another worker has less to run by
    /// two or more, counting `task` as this worker's.
    fn may_move(&self, task: &Task) -> bool {
        if !self.stealable
            || !task.migratable.load(Ordering::Relaxed)
            || task.region_cfa.load(Ordering::Relaxed) != 0
            || self.rt.shutdown.load(Ordering::Acquire)
            || crate::coroutine::SWITCH_WHILE_UNWINDING.load(Ordering::Relaxed)
        {
            return false;
        }
        let mine = self.queue().len() + usize::from(self.made_way().is_some()) + self.fresh_len() + 1;
        self.rt.workers.iter().enumerate().any(|(i, w)| {
            i != self.index && !super::steal::hogging(w) && {
                let theirs = if w.is_idle() {
                    0
                } else {
                    w.published.started.load(Ordering::Relaxed) + w.fresh.len()
                };
                theirs + 1 < mine
            }
        })
    }

    /// Offers a migratable `task` to other workers: out of this worker's registry and into its
    /// stealable queue, waking an idle worker to take it.
    fn offer(&self, task: Arc<Task>) {
        if task.slot.load(Ordering::Relaxed) != usize::MAX {
            self.unregister(&task);
            task.slot.store(usize::MAX, Ordering::Relaxed);
        }
        self.push_started_stealable(task);
    }

    /// A started task dequeued here was offered (it is in no registry): this worker takes it
    /// for good (until it moves again) before it resumes: `owner` and the count of moves if it
    /// last ran elsewhere (so wake-ups come here), and a slot in the registry (so shutdown
    /// cancels it; one taken during shutdown, which missed that round, is cancelled at once).
    #[cold]
    pub(super) fn adopt(&self, task: &Arc<Task>) {
        if task.state.owner() != self.index {
            task.state.adopt(self.index);
            task.moves.fetch_add(1, Ordering::Relaxed);
        }
        self.register(task);
        if self.rt.shutdown.load(Ordering::Acquire) {
            task.cancel();
        }
    }

    /// Enters a task in the registry of live tasks this worker owns.
    fn register(&self, task: &Arc<Task>) {
        // SAFETY: registry is this thread's.
        let (slots, free) = unsafe { &mut *self.registry.get() };
        let slot = free.pop().unwrap_or_else(|| {
            slots.push(None);
            slots.len() - 1
        });
        slots[slot] = Some(task.clone());
        task.slot.store(slot, Ordering::Relaxed);
        self.publish_live(slots.len() - free.len());
    }

    /// Takes an ended task out of the registry.
    fn unregister(&self, task: &Task) {
        // SAFETY: registry is this thread's.
        let (slots, free) = unsafe { &mut *self.registry.get() };
        let slot = task.slot.load(Ordering::Relaxed);
        slots[slot] = None;
        free.push(slot);
        self.publish_live(slots.len() - free.len());
    }

    /// Publishes how many live tasks this worker owns, for placement (`steal.rs`); nobody
    /// reads it on a one-worker runtime.
    #[inline]
    fn publish_live(&self, live: usize) {
        if self.stealable {
            self.me().published.live.store(live, Ordering::Relaxed);
        }
    }
}

/// Set by [`spent_slices_go_on_for_tests`].
static SPENT_SLICES_GO_ON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The tests' control: a coroutine that made way for timer-woken ones goes on in the slice one
/// of them ended, as before the fix, so a test can show the starvation it caused. Process-wide;
/// tests call it in a child. Not part of the API.
#[doc(hidden)]
pub fn spent_slices_go_on_for_tests() {
    SPENT_SLICES_GO_ON.store(true, Ordering::Relaxed);
}
