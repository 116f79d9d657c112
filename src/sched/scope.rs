//! `scope`: coroutines that may borrow from the caller, joined before `scope` returns.

use super::api::{Builder, JoinHandle};
use super::park;
use super::task::Task;
use super::worker;
use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Spawns coroutines that may borrow non-`'static` data, as `std::thread::scope`: every
/// coroutine spawned in the scope is joined before this returns.
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
        tasks: Mutex::new(Vec::new()),
        panicked: Arc::new(AtomicUsize::new(0)),
        seen_panics: AtomicUsize::new(0),
        _scope: PhantomData,
        _env: PhantomData,
    };
    let result = panic::catch_unwind(AssertUnwindSafe(|| f(&scope)));
    // Join everything, even if `f` panicked: the borrows must end before we return.
    let tasks = std::mem::take(&mut *scope.tasks.lock().unwrap_or_else(|e| e.into_inner()));
    for task in &tasks {
        wait_done(task);
    }
    match result {
        Err(payload) => panic::resume_unwind(payload),
        Ok(_) if scope.panicked.load(Ordering::Acquire) > scope.seen_panics.load(Ordering::Acquire) => {
            panic!("sigcoro::scope: a scoped coroutine panicked")
        }
        Ok(v) => v,
    }
}

/// Waits until a task has ended, leaving its outcome in place. Never unwinds for
/// cancellation: the scope's borrows must outlive the task.
fn wait_done(task: &Arc<Task>) {
    task.wait_done(|| {
        let _ = panic::catch_unwind(AssertUnwindSafe(|| park::park_until(None)));
    });
}

/// A scope to spawn borrowing coroutines in; see [`scope`].
pub struct Scope<'scope, 'env: 'scope> {
    tasks: Mutex<Vec<Arc<Task>>>,
    panicked: Arc<AtomicUsize>,
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
        let out = slot.clone();
        let panicked = self.panicked.clone();
        let body: Box<dyn FnOnce() + Send + 'scope> =
            Box::new(move || match panic::catch_unwind(AssertUnwindSafe(f)) {
                Ok(v) => *out.lock().unwrap_or_else(|e| e.into_inner()) = Some(v),
                Err(p) => {
                    panicked.fetch_add(1, Ordering::AcqRel);
                    panic::resume_unwind(p)
                }
            });
        // SAFETY: `scope` waits for every task spawned here to end before it returns, so the
        // borrows in `body` (all outliving 'scope) are never used after they end.
        let body: Box<dyn FnOnce() + Send + 'static> = unsafe { std::mem::transmute(body) };
        let handle = Builder::new()
            .spawn(body)
            .unwrap_or_else(|e| panic!("sigcoro::Scope::spawn: {e}"));
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(handle.task().clone());
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
