//! may set up as a one-worker runtime, and a helper to run timed code inside a coroutine.
//!
//! may's configuration is process-wide and read when its scheduler first starts, so
//! [`init`] must run before any other may call. may pins its worker to the first CPU of the
//! process's affinity mask (CPU 0 once the main thread is pinned).

use std::time::Duration;

/// Configures may: one worker thread, everything else at its defaults.
pub fn init() {
    may::config().set_workers(1);
}

/// Runs `f` in a may coroutine on the worker and returns its result; `f` times itself, so the
/// cross-thread spawn and join around it are not measured.
pub fn in_coroutine<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    // SAFETY: may's spawn is unsafe because a coroutine must not hold thread-local references
    // across a switch (it may move threads); with one worker it cannot move, and `f` holds none.
    let h = unsafe { may::coroutine::spawn(f) };
    h.join().expect("may coroutine panicked")
}

/// Spawns `f` as a may coroutine (see [`in_coroutine`] for the safety argument).
pub fn spawn<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> may::coroutine::JoinHandle<T> {
    // SAFETY: as in `in_coroutine`.
    unsafe { may::coroutine::spawn(f) }
}

/// The elapsed time of `f` run in a coroutine.
pub fn timed(f: impl FnOnce() + Send + 'static) -> Duration {
    in_coroutine(move || crate::harness::timed(f))
}
