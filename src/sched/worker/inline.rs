//! Joining a coroutine that has not started yet: the joiner runs it in its own place.
//!
//! A coroutine that joins one still waiting in its worker's run queue would park; the worker
//! would get to the joined one in turn and, when it ends, wake the joiner: four switches and a
//! park/unpark handshake through both task records. When the joined task sits at either end of
//! the joiner's own queue, the joiner takes it out and starts it itself, as .NET's task
//! inlining does: two switches, and no handshake when it runs to its end. The joiner would wait
//! for it anyway, so nobody waits longer, except that the task jumps the ones queued before it
//! when it was at the back.
//!
//! The joined task runs in the joiner's slice, with the worker's `current` pointing at it. If it
//! suspends before its end, it comes back to the joiner, which settles it exactly as the worker
//! loop would (queued, parked, asleep, or preempted, which ends the slice) and then waits for it
//! as usual; the worker loop resumes it from then on. A task that never ran may run on any
//! worker, so starting it here moves nothing that has thread-local state.
//!
//! On a runtime with two or more workers the joined task must still be in the joiner's own
//! stealable queue (another worker may have taken it: the joiner then waits); once the joiner
//! has it, it wakes an idle worker to take what else waits unstarted, if there is one. Not
//! done when the joiner was cancelled
//! or is unwinding (its join unwinds or returns at once), inside a `preemptible` region (whose
//! signal the task must not get), or outside a coroutine.

use super::{Local, local};
use crate::sched::task::Task;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// From `join`: if `task` has not started and waits at either end of the calling coroutine's
/// worker queue, runs it now, in the caller's place, until it ends or first suspends.
pub(crate) fn run_if_unstarted_here(task: &Arc<Task>) {
    // A plain look first, for the common case of a task that has started or ended.
    if !task.state.is_unstarted() {
        return;
    }
    let Some(local) = local() else { return };
    let Some(joiner_task) = crate::sched::park::current_task() else {
        return;
    };
    // A joiner inside a `preemptible` region has the preemption signal let in: the task it
    // would run in its place must not get it, so it waits as usual.
    if joiner_task.state.is_cancelled()
        || std::thread::panicking()
        || joiner_task.region_cfa.load(Ordering::Relaxed) != 0
    {
        return;
    }
    // The queue is the worker's: no other coroutine of it may run until we are done with it.
    // Whether the task is still unstarted is decided under this guard (`take_unstarted`): a
    // preemption since the look above may have let the worker start it.
    let _off = crate::ground::RuntimeGuard::new();
    let Some(task) = local.take_unstarted(task) else { return };
    // We are about to be busy with it: an idle worker may as well run what else waits here.
    local.nudge_if_waiting();
    let outcome = {
        /// Points `current` back at the joiner however the start ends.
        struct Restore(*const crate::ground::TaskHeader);
        impl Drop for Restore {
            fn drop(&mut self) {
                crate::ground::set_current(self.0);
            }
        }
        let _restore = Restore(&joiner_task.header);
        crate::ground::set_current(task.header_ptr());
        local.start(&task)
    };
    if let Some(outcome) = outcome
        && local.settle(task, outcome)
    {
        local.slice_over.set(true);
    }
}

impl Local {
    /// Takes `task` out of the run queue (the stealable queue, with other workers) if it has
    /// not started and is at either end. The caller holds preemption off.
    fn take_unstarted(&self, task: &Arc<Task>) -> Option<Arc<Task>> {
        if !task.state.is_unstarted() {
            return None;
        }
        if self.stealable {
            return self.take_fresh(task);
        }
        let queue = self.queue();
        if queue.back().is_some_and(|t| Arc::ptr_eq(t, task)) {
            queue.pop_back()
        } else if queue.front().is_some_and(|t| Arc::ptr_eq(t, task)) {
            queue.pop_front()
        } else {
            None
        }
    }
}
