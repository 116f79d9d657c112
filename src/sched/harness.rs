//! The harness that starts and finishes tasks, apart from the API users call (`green.rs`): a
//! task's first run makes its coroutine on a pooled stack ([`start_coroutine`]), its body runs
//! the user's closure with preemption allowed and catches how it ended ([`run_task_body`]), and
//! its end counts it and hands the outcome to the joiner ([`finish`]).

use super::park::{Cancelled, current_task};
use super::task::{Action, JoinErrorKind, Task};
use super::worker;
use crate::coroutine::{self, Yielder};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::Ordering;

/// A task's whole life on its coroutine: run `f`, catch how it ended, hand that to the joiner.
pub(crate) fn run_task_body<F, T>(f: F)
where
    F: FnOnce() -> T,
    T: Send + 'static,
{
    let task = current_task().expect("a task runs on its worker");
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| call_user(task, f)));
    // Coroutine-local values are dropped here, on the coroutine's own stack; a panicking
    // destructor among them counts as the coroutine's panic.
    // SAFETY: only the running task touches its locals.
    let locals = std::mem::take(unsafe { &mut *task.locals.get() });
    let outcome = match (outcome, panic::catch_unwind(AssertUnwindSafe(move || drop(locals)))) {
        (Ok(_), Err(p)) => Err(p),
        (outcome, _) => outcome,
    };
    let result = match outcome {
        _ if task.state.was_unwound() => Err(JoinErrorKind::Cancelled),
        Ok(v) => Ok(super::value::Value::new(v)),
        Err(p) if p.is::<Cancelled>() => Err(JoinErrorKind::Cancelled),
        Err(p) => Err(JoinErrorKind::Panic(p)),
    };
    finish(task, result);
}

/// Runs the user's closure with preemption allowed: the task's no-preempt depth drops from the
/// runtime's 1 to 0 while it runs, and comes back however it ends.
#[inline(always)]
fn call_user<F: FnOnce() -> T, T>(task: &Task, f: F) -> T {
    /// Holds preemption off again when user code ends, by return or by unwinding.
    struct Reenter<'a>(&'a Task);
    impl Drop for Reenter<'_> {
        fn drop(&mut self) {
            std::sync::atomic::compiler_fence(Ordering::SeqCst);
            crate::ground::off_inc(&self.0.header.preempt_off);
        }
    }
    let _reenter = Reenter(task);
    crate::ground::off_dec(&task.header.preempt_off);
    std::sync::atomic::compiler_fence(Ordering::SeqCst);
    f()
}

/// Delivers a task's outcome and wakes its joiner.
pub(crate) fn finish(task: &Task, result: super::task::Outcome) {
    worker::count_end(&task.rt);
    task.deliver(result);
}

/// Starts a task's coroutine on its first run and runs it until it first suspends: the stack
/// comes from the running worker's pool, and `on_stack` (the worker's bookkeeping) runs once the
/// stack is there, before the task does. On failure (no stack could be had) the task ends with
/// that error as its panic, and `None` comes back.
#[inline(always)]
pub(crate) fn start_coroutine(task: &Task, on_stack: impl FnOnce()) -> Option<coroutine::Started<(), Action, ()>> {
    // SAFETY: the caller is the worker running the task.
    let body = unsafe { task.body().take() }.expect("an unstarted task has its body");
    let entry = move |y: &Yielder<(), Action>, ()| {
        current_task().expect("a task runs on its worker").yielder.set(y);
        body.run()
    };
    let started = coroutine::start_checked(task.id, task.name.as_deref(), task.stack_size, entry, (), |lo, hi| {
        task.stack_lo.store(lo, Ordering::Relaxed);
        task.stack_hi.store(hi, Ordering::Relaxed);
        on_stack();
    });
    match started {
        Ok(started) => Some(started),
        Err(e) => {
            let msg = format!("sigcoro: cannot start coroutine {}: {e}", task.id);
            finish(task, Err(JoinErrorKind::Panic(Box::new(msg))));
            None
        }
    }
}
