//! The std::thread-shaped API: spawn, join, yield, sleep, park, the current coroutine.

use super::park::{self, check_cancelled, current_task, current_task_arc, wait};
use super::task::{Action, Body, JoinErrorKind, Task};
use super::worker::{self, Shared};
use crate::coroutine;
use std::any::Any;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

mod builder;

pub use builder::Builder;

#[cold]
#[inline(never)]
fn outside(what: &str) -> ! {
    panic!(
        "sigcoro::{what} called outside a sigcoro runtime: call it from a coroutine started by \
         Runtime::block_on, Runtime::spawn or sigcoro::run"
    )
}

/// The running task, or a panic naming the API that needed one.
#[inline]
fn running(what: &str) -> &'static Task {
    current_task().unwrap_or_else(|| outside(what))
}

/// Spawns a coroutine on the current runtime and returns a handle to join it.
///
/// The coroutine is queued on this worker (on a runtime with other workers, in its stealable
/// queue: another worker may take it before it runs) and stays on whichever worker first runs
/// it (see [`Builder::migratable`] for coroutines that may move later).
///
/// A coroutine of a runtime that is shutting down (a destructor run by its cancellation, say)
/// gets a handle to a coroutine that never starts: `f` is dropped unrun, and `join` returns a
/// [`JoinError`] that [is cancelled](JoinError::is_cancelled) and says why. Panicking there
/// instead would abort the process (a panic in a destructor during unwinding).
///
/// # Panics
///
/// Outside a runtime, or when the coroutine's stack size is refused; [`Builder::spawn`]
/// returns those as errors instead, and the shutdown too.
pub fn spawn<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match Builder::new().spawn(f) {
        Ok(handle) => handle,
        Err(e) => match worker::local() {
            Some(local) if local.rt.shutdown.load(Ordering::Acquire) => {
                not_started(&local.rt, std::any::type_name::<F>)
            }
            _ => panic!("sigcoro::spawn: {e}"),
        },
    }
}

/// A handle to a coroutine that was spawned while its runtime was shutting down: it has ended
/// already, never started, and was never counted as alive.
fn not_started<T>(rt: &Arc<Shared>, entry: fn() -> &'static str) -> JoinHandle<T> {
    let body = Body::new(|| {});
    let task = Task::new(coroutine::next_id(), None, entry, rt.clone(), rt.stack_size, body);
    let task = Arc::new(task.unwrap_or_else(|e| panic!("sigcoro::spawn: {e}")));
    // SAFETY: nobody else has the task yet.
    drop(unsafe { task.body().take() });
    task.deliver(Err(JoinErrorKind::NotStarted));
    JoinHandle {
        task,
        _marker: PhantomData,
    }
}

/// An owned permission to join a coroutine. Dropping it detaches the coroutine.
pub struct JoinHandle<T> {
    task: Arc<Task>,
    _marker: PhantomData<fn() -> T>,
}

impl<T: 'static> JoinHandle<T> {
    /// Waits for the coroutine to end: its value, or how it failed. Parks the caller if it is a
    /// coroutine, blocks it if it is a plain thread.
    ///
    /// A coroutine that joins one which has not started yet and waits at either end of its own
    /// worker's run queue runs it at once, in its own place, instead of parking until the
    /// worker gets to it (see ARCHITECTURE.md, "Scheduling"). A join is a safe point. A coroutine
    /// cancelled before or while it waits in `join` unwinds there; one that finds the joined
    /// coroutine ended, or runs it to its end in place, gets its outcome.
    ///
    /// In a destructor that runs while the caller unwinds (a panic, or [`cancel`](Self::cancel)),
    /// a `join` that would have to wait ends the process with a message naming it (see
    /// "Waiting in destructors" at [`cancel`](Self::cancel)).
    pub fn join(self) -> Result<T, JoinError> {
        let JoinHandle { task, .. } = self;
        // A join is a safe point, like every runtime call.
        crate::preempt::checkpoint();
        if !task.is_done() {
            worker::run_if_unstarted_here(&task);
        }
        task.wait_done(|| park::park_until(None, "JoinHandle::join"));
        let (outcome, id) = (task.take_outcome(), task.id);
        super::recycle::give_back(task);
        match outcome {
            // SAFETY: a `JoinHandle<T>` is made only by spawning an `FnOnce() -> T`, whose
            // value `run_task_body::<_, T>` delivered.
            Ok(v) => Ok(unsafe { v.take::<T>() }),
            Err(JoinErrorKind::Panic(p)) => Err(JoinError {
                repr: Repr::Panic(p),
                id,
            }),
            Err(JoinErrorKind::Cancelled) => Err(JoinError {
                repr: Repr::Cancelled,
                id,
            }),
            Err(JoinErrorKind::NotStarted) => Err(JoinError {
                repr: Repr::NotStarted,
                id,
            }),
        }
    }

    /// Whether the coroutine has ended (its outcome waits for `join`).
    pub fn is_finished(&self) -> bool {
        self.task.is_done()
    }

    /// Asks the coroutine to stop: at its next park, sleep or yield it unwinds, so its
    /// destructors run and its locks are released; `join` then returns a cancelled error. A
    /// coroutine that never waits is not interrupted (preemption does not cancel).
    ///
    /// # Waiting in destructors
    ///
    /// While it unwinds, the coroutine cannot park: std's panic count, which
    /// `std::thread::panicking` reads, is per OS thread and every coroutine of the worker runs
    /// on that thread, so any coroutine resumed meanwhile would see it. A destructor that runs
    /// then (here, or during a panic) may do what needs no waiting: a `try_` operation, a send
    /// on a channel with room, an uncontended `Mutex::lock`, a `join` of a coroutine that has
    /// ended, a `spawn` (a coroutine that is not unwinding may do the waiting). `sleep` blocks
    /// the worker thread for its duration, and `blocking` blocks it until its job is done. A
    /// wait that would have to park (`join` of a running coroutine, `recv` on an empty
    /// channel, a contended `Mutex::lock`, `scope` with coroutines still running, ...) ends the
    /// process at once with a message that names the call, as std does for a panic that cannot
    /// unwind: spinning instead would hang the worker.
    pub fn cancel(&self) {
        self.task.cancel();
    }

    #[cfg(test)]
    pub(crate) fn task(&self) -> &Arc<Task> {
        &self.task
    }

    /// The coroutine this handle joins.
    pub fn thread(&self) -> GreenThread {
        GreenThread {
            task: self.task.clone(),
        }
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle").field("id", &self.task.id).finish()
    }
}

enum Repr {
    Panic(Box<dyn Any + Send>),
    Cancelled,
    NotStarted,
}

/// Why a joined coroutine has no value: it panicked, or it was cancelled.
pub struct JoinError {
    repr: Repr,
    id: u64,
}

impl JoinError {
    /// Whether the coroutine panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self.repr, Repr::Panic(_))
    }

    /// Whether the coroutine was cancelled (also when it never started, having been spawned
    /// while its runtime was shutting down; see [`spawn`]).
    pub fn is_cancelled(&self) -> bool {
        matches!(self.repr, Repr::Cancelled | Repr::NotStarted)
    }

    /// The panic payload, to inspect or to `resume_unwind` with.
    ///
    /// # Panics
    ///
    /// If the coroutine was cancelled rather than panicking.
    pub fn into_panic(self) -> Box<dyn Any + Send> {
        self.try_into_panic()
            .unwrap_or_else(|_| panic!("sigcoro: JoinError::into_panic on a cancelled coroutine"))
    }

    /// The panic payload, or the error back if the coroutine was cancelled.
    pub fn try_into_panic(self) -> Result<Box<dyn Any + Send>, JoinError> {
        match self.repr {
            Repr::Panic(p) => Ok(p),
            Repr::Cancelled | Repr::NotStarted => Err(self),
        }
    }
}

impl fmt::Debug for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            Repr::Cancelled => write!(f, "coroutine {} was cancelled", self.id),
            Repr::NotStarted => write!(
                f,
                "coroutine {} never started: it was spawned while its runtime was shutting down (its \
                 closure was dropped unrun; this counts as a cancellation)",
                self.id
            ),
            Repr::Panic(p) => {
                let msg = p
                    .downcast_ref::<&str>()
                    .copied()
                    .or_else(|| p.downcast_ref::<String>().map(String::as_str))
                    .unwrap_or("<non-string payload>");
                write!(f, "coroutine {} panicked: {msg}", self.id)
            }
        }
    }
}

impl std::error::Error for JoinError {}

/// Puts the running coroutine at the back of its worker's run queue. Also a safe point and a
/// cancellation point.
///
/// # Panics
///
/// Outside a runtime.
#[inline]
pub fn yield_now() {
    let task = running("yield_now");
    wait(task, Action::Yield);
}

/// Sleeps the running coroutine for at least `dur`; its worker runs others meanwhile. Park
/// tokens are left alone.
///
/// # Panics
///
/// Outside a runtime.
pub fn sleep(dur: Duration) {
    sleep_until(Instant::now() + dur);
}

/// Sleeps the running coroutine until `deadline`.
///
/// In a destructor that runs while the coroutine unwinds (a panic, or a cancellation), the
/// coroutine cannot park: the worker thread sleeps instead, and the worker's other coroutines
/// wait meanwhile (see "Waiting in destructors" at [`JoinHandle::cancel`]).
///
/// # Panics
///
/// Outside a runtime.
pub fn sleep_until(deadline: Instant) {
    let task = running("sleep_until");
    if std::thread::panicking() && !super::park::REFUSAL_OFF.load(std::sync::atomic::Ordering::Relaxed) {
        // A coroutine that unwinds cannot park (see the module docs of `park`): the thread
        // sleeps, so nothing else runs on it meanwhile, and nothing spins.
        let now = Instant::now();
        if deadline > now {
            std::thread::sleep(deadline - now);
        }
        return;
    }
    while Instant::now() < deadline {
        task.deadline.set(Some(deadline));
        wait(task, Action::Sleep);
    }
    check_cancelled(task);
}

/// Parks the running coroutine until [`GreenThread::unpark`] is called on it (or spuriously),
/// as `std::thread::park`.
///
/// In a destructor that runs while the coroutine unwinds (a panic, or a cancellation), a `park` that
/// would have to wait ends the process with a message naming it (see "Waiting in destructors" at
/// [`JoinHandle::cancel`](crate::JoinHandle::cancel)).
///
/// # Panics
///
/// Outside a runtime.
pub fn park() {
    running("park");
    park::park_until(None, "sigcoro::park");
}

/// Parks the running coroutine for at most `dur`, as `std::thread::park_timeout`.
///
/// # Panics
///
/// Outside a runtime.
pub fn park_timeout(dur: Duration) {
    running("park_timeout");
    park::park_until(Some(Instant::now() + dur), "sigcoro::park_timeout");
}

/// A handle to the running coroutine.
///
/// # Panics
///
/// Outside a runtime.
pub fn current() -> GreenThread {
    GreenThread {
        task: current_task_arc().unwrap_or_else(|| outside("current")),
    }
}

/// A handle to a coroutine of a runtime: its id, its name, and a way to unpark it.
#[derive(Clone)]
pub struct GreenThread {
    task: Arc<Task>,
}

impl GreenThread {
    /// The coroutine's id, unique in the process.
    pub fn id(&self) -> u64 {
        self.task.id
    }

    /// The name given with [`Builder::name`].
    pub fn name(&self) -> Option<&str> {
        self.task.name.as_deref()
    }

    /// How often this coroutine has been preempted so far.
    pub fn preemptions(&self) -> crate::preempt::PreemptStats {
        self.task.stats.snapshot()
    }

    /// How many times the coroutine has moved to another worker thread so far (always 0 unless
    /// it was spawned [migratable](Builder::migratable)).
    pub fn migrations(&self) -> u64 {
        self.task.moves.load(Ordering::Relaxed)
    }

    /// Sets the coroutine's park token, waking it if it is parked. Callable from any thread.
    pub fn unpark(&self) {
        self.task.unpark();
    }
}

impl fmt::Debug for GreenThread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GreenThread")
            .field("id", &self.task.id)
            .field("name", &self.name())
            .finish()
    }
}

/// How many bytes of stack the running coroutine has left below its stack pointer, before its
/// guard page: for recursion guards (as the `stacker` crate's `remaining_stack`). A signal
/// landing on the coroutine's stack needs `AT_MINSIGSTKSZ` of it. `None` outside a coroutine of
/// a runtime.
pub fn stack_remaining() -> Option<usize> {
    let task = current_task()?;
    let sp: usize;
    // SAFETY: reads the stack pointer only.
    unsafe { std::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags)) };
    Some(sp.saturating_sub(task.stack_lo.load(Ordering::Relaxed)))
}
