//! `scope`: coroutines that may borrow from the caller, joined before `scope` returns.

use super::green::{Builder, JoinHandle};
use super::park;
use super::worker;
use std::fmt;
use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Spawns coroutines that may borrow non-`'static` data, as `std::thread::scope`: every
/// coroutine spawned in the scope is joined before this returns.
///
/// In a destructor that runs while the coroutine unwinds (a panic, or a cancellation), a `scope` whose coroutines still run that
/// would have to wait ends the process with a message naming it (see "Waiting in destructors" at
/// [`JoinHandle::cancel`](crate::JoinHandle::cancel)).
///
/// ```
/// let rt = sigcoro::Runtime::builder().workers(2).build().unwrap();
/// rt.block_on(|| {
///     let mut counts = vec![0u64; 4];
///     sigcoro::scope(|s| {
///         for (i, c) in counts.iter_mut().enumerate() {
///             s.spawn(move || *c = (i as u64 + 1) * 10);
///         }
///     });
///     assert_eq!(counts, [10, 20, 30, 40]);
/// });
/// ```
///
/// # Panics
///
/// Outside a runtime; and after every coroutine is joined, if one of them panicked and was not
/// joined by hand.
pub fn scope<'env, F, T>(f: F) -> T
where
    F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> T,
{
    if worker::local().is_none() {
        panic!("sigcoro::scope called outside a sigcoro runtime");
    }
    let scope = Scope {
        data: Arc::new(ScopeData {
            running: AtomicUsize::new(0),
            panicked: AtomicUsize::new(0),
            waiter: park::current_unparker(),
        }),
        seen_panics: AtomicUsize::new(0),
        _scope: PhantomData,
        _env: PhantomData,
    };
    let result = panic::catch_unwind(AssertUnwindSafe(|| f(&scope)));
    // Wait for everything, even if `f` panicked: the borrows must end before we return. The
    // wait is on the scope's own count, not on the coroutines' join handles, which a
    // coroutine of the scope may be joining meanwhile. Never unwinds for cancellation.
    while scope.data.running.load(Ordering::Acquire) != 0 {
        park::park_uncancelled("sigcoro::scope (waiting for its coroutines)");
    }
    match result {
        Err(payload) => panic::resume_unwind(payload),
        Ok(_) if scope.data.panicked.load(Ordering::Acquire) > scope.seen_panics.load(Ordering::Acquire) => {
            panic!("sigcoro::scope: a scoped coroutine panicked")
        }
        Ok(v) => v,
    }
}

/// What a scope's coroutines share with it.
struct ScopeData {
    /// Coroutines that may still touch what they borrow.
    running: AtomicUsize,
    /// Coroutines that panicked.
    panicked: AtomicUsize,
    /// Whoever called `scope`, woken when `running` drops to zero.
    waiter: park::Unparker,
}

/// One scoped coroutine's place in `running`: holds what may borrow from the scope (the
/// closure, the slot for its value) and, once it has dropped them, lets the scope go on. Also
/// when the coroutine never ran (its closure is dropped at shutdown).
struct Running<G> {
    borrowing: Option<G>,
    data: Arc<ScopeData>,
}

impl<G> Running<G> {
    fn new(borrowing: G, data: &Arc<ScopeData>) -> Running<G> {
        data.running.fetch_add(1, Ordering::AcqRel);
        Running {
            borrowing: Some(borrowing),
            data: data.clone(),
        }
    }
}

impl<G> Drop for Running<G> {
    fn drop(&mut self) {
        drop(self.borrowing.take());
        if self.data.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.data.waiter.unpark();
        }
    }
}

/// A scope to spawn borrowing coroutines in; see [`scope`].
pub struct Scope<'scope, 'env: 'scope> {
    data: Arc<ScopeData>,
    seen_panics: AtomicUsize,
    _scope: PhantomData<&'scope mut &'scope ()>,
    _env: PhantomData<&'env mut &'env ()>,
}

/// A handle to join one coroutine of a scope.
pub struct ScopedJoinHandle<'scope, T> {
    handle: JoinHandle<()>,
    slot: Arc<Mutex<Option<T>>>,
    scope_seen: &'scope AtomicUsize,
}

impl fmt::Debug for Scope<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("running", &self.data.running.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for ScopedJoinHandle<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopedJoinHandle")
            .field("handle", &self.handle)
            .finish_non_exhaustive()
    }
}

impl<'scope, 'env> Scope<'scope, 'env> {
    /// Spawns a coroutine that may borrow anything that outlives the scope.
    ///
    /// # Panics
    ///
    /// When the runtime cannot spawn (see [`Builder::spawn`]).
    pub fn spawn<F, T>(&'scope self, f: F) -> ScopedJoinHandle<'scope, T>
    where
        F: FnOnce() -> T + Send + 'scope,
        T: Send + 'scope,
    {
        let slot: Arc<Mutex<Option<T>>> = Arc::new(Mutex::new(None));
        let mut running = Running::new((f, slot.clone()), &self.data);
        let body: Box<dyn FnOnce() + Send + 'scope> = Box::new(move || {
            let (f, out) = running.borrowing.take().expect("a scoped body runs once");
            match panic::catch_unwind(AssertUnwindSafe(f)) {
                Ok(v) => {
                    *out.lock().unwrap_or_else(|e| e.into_inner()) = Some(v);
                    drop(out);
                    drop(running);
                }
                Err(p) => {
                    drop(out);
                    running.data.panicked.fetch_add(1, Ordering::AcqRel);
                    drop(running);
                    panic::resume_unwind(p)
                }
            }
        });
        // Only the lifetime changes. `scope` returns only after every `Running` made here has
        // dropped what it holds (the closure and the value slot, all that may borrow for
        // 'scope), whether the coroutine ran, panicked or never started; nothing in `body`
        // outlives that but its `Arc<ScopeData>`, which borrows nothing.
        // SAFETY: as just said, no borrow in `body` is used after 'scope ends.
        let body: Box<dyn FnOnce() + Send + 'static> = unsafe { std::mem::transmute(body) };
        let handle = Builder::new()
            .spawn(body)
            .unwrap_or_else(|e| panic!("sigcoro::Scope::spawn: {e}"));
        ScopedJoinHandle {
            handle,
            slot,
            scope_seen: &self.seen_panics,
        }
    }
}

impl<T> ScopedJoinHandle<'_, T> {
    /// Waits for the coroutine and returns its value, or its panic payload.
    pub fn join(self) -> std::thread::Result<T> {
        match self.handle.join() {
            Ok(()) => Ok(self
                .slot
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .expect("a finished scoped coroutine left its value")),
            Err(e) if e.is_panic() => {
                self.scope_seen.fetch_add(1, Ordering::AcqRel);
                Err(e.into_panic())
            }
            Err(e) => Err(Box::new(e.to_string())),
        }
    }

    /// Whether the coroutine has ended.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}
