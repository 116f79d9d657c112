//! A worker's callbacks: work that other threads or signal handlers ask the worker to run at
//! its next safe point, or in its loop between coroutines. The layer above (`Interrupt`)
//! registers its callbacks here; the worker and the safe points run the due ones through the
//! [`Callback`] trait, so nothing here knows what a callback does.

use std::any::Any;
use std::panic;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Weak};

/// A callback registered with a worker.
pub(crate) trait Callback: Send + Sync {
    /// Whether it was asked for since it last ran.
    fn is_due(&self) -> bool;
    /// Runs it if it is still due. Its own panics it contains; an `Err` carries the payload
    /// of a cancellation of the interrupted coroutine, which must go on unwinding.
    fn run_if_due(&self) -> Result<(), Box<dyn Any + Send>>;
    /// Asks the worker again to run it (for the callbacks a cancellation leaves behind).
    fn raise(&self);
}

/// A worker's registered callbacks and whether any is due.
#[derive(Default)]
pub(crate) struct Callbacks {
    pending: AtomicBool,
    list: Mutex<Vec<Weak<dyn Callback>>>,
}

impl Callbacks {
    /// Whether a callback of this worker is due.
    pub(crate) fn is_pending(&self) -> bool {
        self.pending.load(Ordering::SeqCst)
    }

    /// Says that a callback is due (before the interrupt flag is raised). Async-signal-safe.
    pub(crate) fn mark_due(&self) {
        self.pending.store(true, Ordering::SeqCst);
    }

    /// Registers a callback; it is forgotten once the last strong reference goes.
    pub(crate) fn register(&self, callback: Weak<dyn Callback>) {
        crate::ground::lock(&self.list).push(callback);
    }

    /// Runs the due callbacks, if any was marked due. A cancellation that one of them reached
    /// goes on unwinding; the callbacks after it are raised again first, so the next safe point
    /// or the worker's loop runs them.
    pub(crate) fn run_pending(&self) {
        if !self.pending.swap(false, Ordering::AcqRel) {
            return;
        }
        let due: Vec<_> = {
            let mut list = crate::ground::lock(&self.list);
            list.retain(|w| w.strong_count() > 0);
            list.iter().filter_map(Weak::upgrade).filter(|c| c.is_due()).collect()
        };
        for (i, callback) in due.iter().enumerate() {
            if let Err(payload) = callback.run_if_due() {
                if let Some(next) = due.get(i + 1) {
                    next.raise();
                }
                panic::resume_unwind(payload);
            }
        }
    }
}

impl std::fmt::Debug for Callbacks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Callbacks")
            .field("pending", &self.is_pending())
            .finish()
    }
}
