//! Parking: how a waiting coroutine (or OS thread) sleeps until something wakes it.
//!
//! The sync primitives are built on three calls: [`current_unparker`] (a handle to whoever is
//! running), [`park_until`] (sleep until unparked or a deadline), and [`Unparker::unpark`]. They
//! work the same for coroutines on a runtime worker, which park without blocking the worker, and
//! for plain OS threads, which park with `std::thread::park`.
//!
//! Semantics are std's: every unparker carries one token. `unpark` sets it; `park_until`
//! consumes it and returns at once if it was set, else sleeps until it is set or the deadline
//! passes. Parking may also end spuriously, so callers loop on their own condition.
//!
//! Inside a coroutine, `park_until` is a cancellation point: if the coroutine was cancelled it
//! unwinds (so callers must keep their state consistent across it, e.g. with a drop guard).
//!
//! # No parking while unwinding
//!
//! A coroutine never switches out while it unwinds (a panic, or a cancellation), at a wait nor
//! at a safe point. std keeps the panic count that `std::thread::panicking` reads per OS
//! thread, and every coroutine of a worker runs on that one thread: any coroutine resumed in
//! the unwinding one's place would see `panicking()` true (a `Drop` of its own would then
//! behave as if it unwound; a `MutexGuard` would poison its lock). std offers no way to set
//! the count aside, and nothing else may run on the thread meanwhile, so a wait that must park
//! there cannot be made to work: [`park_until`] and [`park_uncancelled`] end the process at
//! once with a message naming the call ([`refuse_wait_while_unwinding`]). Waiting without
//! parking (spinning) would hang the worker silently, and blocking the thread would deadlock
//! as soon as the awaited event depends on another coroutine of the same worker. A wait that
//! need not park (a token already there, a value already sent, an uncontended lock, a joined
//! coroutine already ended) returns as usual. `sleep` blocks the worker thread instead
//! (nothing can deadlock on time), and `blocking` waits for its helper thread the same way.

use super::task::{Action, Task};
use std::panic;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// A handle that wakes one parked coroutine or thread.
#[derive(Clone)]
pub(crate) enum Unparker {
    /// A coroutine of a runtime.
    Task(Arc<Task>),
    /// An OS thread outside any coroutine.
    Thread(std::thread::Thread),
}

impl std::fmt::Debug for Unparker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unparker::Task(t) => write!(f, "Unparker(coroutine {})", t.id),
            Unparker::Thread(t) => write!(f, "Unparker(thread {:?})", t.id()),
        }
    }
}

impl Unparker {
    /// Sets the token of whoever this handle belongs to, waking it if it is parked.
    pub(crate) fn unpark(&self) {
        match self {
            Unparker::Task(t) => t.unpark(),
            Unparker::Thread(t) => t.unpark(),
        }
    }

    /// Where waking this handle first writes (the task's state word; 0 for a thread), for a
    /// waker that wants to prefetch it.
    pub(crate) fn wake_address(&self) -> usize {
        match self {
            Unparker::Task(t) => std::ptr::from_ref(&t.state) as usize,
            Unparker::Thread(_) => 0,
        }
    }

    /// [`Unparker::unpark`], consuming the handle (no reference count is touched to wake a
    /// coroutine).
    pub(crate) fn unpark_owned(self) {
        match self {
            Unparker::Task(t) => t.unpark_owned(),
            Unparker::Thread(t) => t.unpark(),
        }
    }
}

/// The payload a cancelled coroutine unwinds with.
pub(crate) struct Cancelled;

/// The task running on this thread, if this thread is a worker inside a coroutine.
#[inline]
pub(crate) fn current_task() -> Option<&'static Task> {
    // SAFETY: the ground floor's `current` is set only by workers, to the header of the task
    // they run, which they keep alive (they hold an `Arc`) until the task suspends; only that
    // task's own code calls this.
    unsafe { Task::from_header(crate::ground::current()).as_ref() }
}

/// An owning handle to the running task.
pub(crate) fn current_task_arc() -> Option<Arc<Task>> {
    let task = current_task()?;
    // SAFETY: `task` came from `Arc::as_ptr` of an Arc the worker holds; we add a reference.
    unsafe {
        Arc::increment_strong_count(task);
        Some(Arc::from_raw(task))
    }
}

/// A handle to the running coroutine, or to the running thread outside coroutines.
pub(crate) fn current_unparker() -> Unparker {
    match current_task_arc() {
        Some(task) => Unparker::Task(task),
        None => Unparker::Thread(std::thread::current()),
    }
}

/// Unwinds the running coroutine if it was cancelled, unless it is already unwinding.
#[inline]
pub(crate) fn check_cancelled(task: &Task) {
    if task.state.is_cancelled() {
        start_cancel_unwind();
    }
}

/// Unwinds the running coroutine with the cancellation payload, unless it is already unwinding.
#[cold]
fn start_cancel_unwind() {
    let task = current_task().expect("only a task is cancelled");
    if !std::thread::panicking() {
        task.state.mark_unwound();
        panic::resume_unwind(Box::new(Cancelled));
    }
}

/// Suspends the running task to its worker with `action`: the one way a coroutine waits.
/// Does nothing while the coroutine unwinds (it never switches out mid-unwind, which would
/// leave the thread's panic count raised under other coroutines): a yield or a preemption is
/// skipped, and the parking waits never get here then (see the module docs).
#[inline(always)]
pub(crate) fn wait(task: &Task, action: Action) {
    check_cancelled(task);
    wait_uncancelled(task, action);
    check_cancelled(task);
}

/// [`wait`] without its cancellation checks.
#[inline(always)]
fn wait_uncancelled(task: &Task, action: Action) {
    if std::thread::panicking() && !crate::coroutine::SWITCH_WHILE_UNWINDING.load(Ordering::Relaxed) {
        return;
    }
    debug_assert_eq!(
        crate::ground::critical_depth(),
        0,
        "a coroutine waits in a critical section"
    );
    let yielder = task.yielder.get();
    // Hold preemption off across the switch itself (a task's suspend never unwinds, so no guard
    // object is needed, and we already have the task: no second thread-local lookup).
    crate::ground::off_inc(&task.header.preempt_off);
    std::sync::atomic::compiler_fence(Ordering::SeqCst);
    // Inside a `preemptible` region the preemption signal is let in; the coroutines that run
    // meanwhile must not get it.
    let in_region = task.region_cfa.load(Ordering::Relaxed) != 0;
    if in_region {
        crate::ground::block_preempt_signal();
    }
    // SAFETY: the yielder lives in the task's entry frame for the task's whole run, and we are
    // that task, running on its own stack.
    unsafe { (*yielder).suspend(action) };
    if in_region {
        crate::ground::unblock_preempt_signal();
    }
    std::sync::atomic::compiler_fence(Ordering::SeqCst);
    crate::ground::off_dec(&task.header.preempt_off);
    // Only this task's worker touches the number: a plain load and store, no locked add.
    task.wait_seq
        .store(task.wait_seq.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

/// Parks the caller until its token is set or `deadline` passes (never, for `None`); may
/// return spuriously. `what` names the public call that waits, for the message of
/// [`refuse_wait_while_unwinding`] (a coroutine that unwinds cannot park).
pub(crate) fn park_until(deadline: Option<Instant>, what: &str) {
    let Some(task) = current_task() else {
        match deadline {
            None => std::thread::park(),
            Some(d) => {
                let now = Instant::now();
                if d > now {
                    std::thread::park_timeout(d - now);
                }
            }
        }
        return;
    };
    if take_token(task) {
        check_cancelled(task);
        return;
    }
    if deadline.is_some_and(|d| d <= Instant::now()) {
        check_cancelled(task);
        return;
    }
    if std::thread::panicking() {
        refuse_wait_while_unwinding(task, what);
    }
    task.deadline.set(deadline);
    // The wake consumes the token (`State::unpark`, or the worker's `State::park` that found
    // one): nothing to clear here.
    wait(
        task,
        Action::Park {
            timed: deadline.is_some(),
        },
    );
}

/// Parks like [`park_until`] with no deadline, but is no cancellation point: for a wait that
/// must outlast a cancellation (a scope waiting for the coroutines that borrow from it). A
/// cancellation wakes it, as any unpark does. `what` as for [`park_until`].
pub(crate) fn park_uncancelled(what: &str) {
    let Some(task) = current_task() else {
        std::thread::park();
        return;
    };
    if take_token(task) {
        return;
    }
    if std::thread::panicking() {
        refuse_wait_while_unwinding(task, what);
    }
    wait_uncancelled(task, Action::Park { timed: false });
}

/// Consumes the task's park token if it is set.
#[inline(always)]
fn take_token(task: &Task) -> bool {
    task.state.take_token()
}

/// Set by [`spin_while_unwinding_for_tests`].
pub(crate) static REFUSAL_OFF: AtomicBool = AtomicBool::new(false);

/// The tests' control: a wait that would park while its coroutine unwinds returns at once
/// instead of ending the process, and `sleep` loops over such returns, as before (the hang and
/// the busy wait the fix replaces). Process-wide; not part of the API.
#[doc(hidden)]
pub fn spin_while_unwinding_for_tests() {
    REFUSAL_OFF.store(true, Ordering::Relaxed);
}

/// The tests' control: a coroutine that unwinds switches out at its yields and safe points,
/// which it never does otherwise, so a test can show that the coroutine resumed in its place
/// would see `std::thread::panicking()` true. Unsound on purpose; process-wide; not part of
/// the API.
#[doc(hidden)]
pub fn switch_while_unwinding_for_tests() {
    crate::coroutine::SWITCH_WHILE_UNWINDING.store(true, Ordering::Relaxed);
}

/// Ends the process: `what`, called by the running coroutine `task` while it unwinds (from a
/// destructor), would have to park, which cannot be done (see the module docs). Writes why to
/// stderr with `write(2)` and aborts, as std does for a panic that cannot unwind.
#[cold]
#[inline(never)]
pub(crate) fn refuse_wait_while_unwinding(task: &Task, what: &str) {
    if REFUSAL_OFF.load(Ordering::Relaxed) {
        return;
    }
    let who = match &task.name {
        Some(name) => format!("coroutine '{name}' (id {})", task.id),
        None => format!("coroutine {}", task.id),
    };
    let msg = format!(
        "sigcoro: {what} would have to wait inside a destructor that runs while {who} unwinds \
         (a panic, or JoinHandle::cancel). A coroutine cannot park while it unwinds: the thread's \
         panic state (std::thread::panicking) is shared by every coroutine of its worker, so any \
         other coroutine resumed meanwhile would see it, and waiting without parking would hang \
         the worker. Finish the wait before unwinding starts, or give it to a coroutine that is \
         not unwinding (sigcoro::spawn works in a destructor). Aborting.\n"
    );
    let mut rest = msg.as_bytes();
    while !rest.is_empty() {
        // SAFETY: write(2) from a live buffer to stderr.
        let n = unsafe { libc::write(2, rest.as_ptr().cast(), rest.len()) };
        if n <= 0 {
            break;
        }
        rest = &rest[n as usize..];
    }
    std::process::abort();
}
