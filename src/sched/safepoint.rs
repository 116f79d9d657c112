//! Safe points: where a coroutine takes its worker's interrupt flags and, if one asks for it,
//! switches out (the default preemption; see [`crate::preempt`] for the whole story).
//!
//! The timer thread and [`Interrupt::signal`](crate::Interrupt::signal) raise flags in the
//! ground floor ([`crate::ground::interrupt_flags`]); a safe point tests them with one load and
//! a predictable branch, and only its cold path looks further: run the worker's due interrupt
//! callbacks, then yield as [`Action::Preempted`] if the slice is over or a timer is due.

use super::park::current_task;
use super::task::Action;
use crate::ground::{self, CALLBACKS, DEADLINE, PREEMPT};
use std::sync::atomic::Ordering;

/// Takes the preemption flags: the action that switches out for them, if any is set.
///
/// The flags are taken in one atomic step: were they read and then cleared, a PREEMPT the
/// timer thread raised in between would be wiped while the switch counted as making way for a
/// timer only, and the slice, flagged once, would never end for the coroutine resumed in it
/// (see `Local::slice_spent`).
pub(crate) fn take_preemption(signal: bool) -> Option<Action> {
    if ground::interrupt_flags() & (PREEMPT | DEADLINE) == 0 {
        return None;
    }
    let flags = ground::take_interrupt_flags(PREEMPT | DEADLINE);
    if flags == 0 {
        return None;
    }
    count_hog();
    Some(Action::Preempted {
        signal,
        front: flags & PREEMPT == 0,
    })
}

/// Counts a hog episode in the running coroutine's stats if the timer thread reported the
/// slice that ends now (rare: only after slices without a safe point).
fn count_hog() {
    let Some(local) = super::worker::local() else {
        return;
    };
    let watch = &local.me().preempt;
    let hog = watch.hog_seq.load(Ordering::Relaxed);
    if hog != 0 && hog == watch.slice_seq.load(Ordering::Relaxed) {
        watch.hog_seq.store(0, Ordering::Relaxed);
        if let Some(task) = current_task() {
            task.stats.hogs.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A safe point: if the timer thread asked this worker to switch, yield now. Costs one load and
/// a predictable branch when nothing is pending; does nothing outside a runtime.
///
/// Put it in long loops that make no runtime calls. For hot loops where even that load would
/// block vectorisation, see [`Checkpoints`](crate::Checkpoints).
#[inline]
pub fn checkpoint() {
    if ground::interrupt_flags() != 0 {
        checkpoint_slow();
    }
}

#[cold]
#[inline(never)]
fn checkpoint_slow() {
    let Some(task) = current_task() else {
        // Not a coroutine (a worker's own stack runs interrupt callbacks in its loop).
        ground::clear_interrupt_flags(PREEMPT);
        return;
    };
    if ground::preempt_held_off(&task.header) {
        return; // the end of the region takes it
    }
    if ground::interrupt_flags() & CALLBACKS != 0 {
        ground::clear_interrupt_flags(CALLBACKS);
        super::worker::run_pending_callbacks();
    }
    let Some(action) = take_preemption(false) else { return };
    task.stats.at_safe_points.fetch_add(1, Ordering::Relaxed);
    task.rt.stats.at_safe_points.fetch_add(1, Ordering::Relaxed);
    super::park::wait(task, action);
}
