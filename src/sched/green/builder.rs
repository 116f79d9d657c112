//! [`Builder`]: how a coroutine is set up before it is spawned (name, stack size, whether it
//! may migrate), and the spawn itself.

use super::JoinHandle;
use crate::coroutine;
use crate::sched::harness::run_task_body;
use crate::sched::task::Body;
use crate::sched::worker::{self, Shared};
use std::io;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Sets up a coroutine before spawning it: name and stack size, as `std::thread::Builder`,
/// and whether it may change worker threads once started ([`Builder::migratable`]).
#[derive(Debug, Default, Clone)]
pub struct Builder {
    name: Option<String>,
    stack_size: Option<usize>,
    migratable: bool,
}

impl Builder {
    /// A builder with no name and the runtime's stack size.
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Names the coroutine: [`GreenThread::name`](super::GreenThread::name) and overflow
    /// reports show it.
    pub fn name(mut self, name: impl Into<String>) -> Builder {
        self.name = Some(name.into());
        self
    }

    /// The coroutine's stack size in bytes (see [`crate::stack::min_stack_size`]).
    pub fn stack_size(mut self, bytes: usize) -> Builder {
        self.stack_size = Some(bytes);
        self
    }

    /// Lets the coroutine move to another worker thread of its runtime after it started, to
    /// even out load that appears later (coroutines of uneven length, some ending early). By
    /// default a started coroutine stays on the worker that first ran it for good.
    ///
    /// A migratable coroutine moves only when its slice ended at a safe point (a
    /// [`checkpoint`](crate::checkpoint), or the start of a channel operation, a `select`, a
    /// `join`) and another worker has less to run: never while it is parked, asleep, inside a
    /// [`preemptible`](crate::preemptible) region, or unwinding, and never during shutdown.
    /// [`coroutine_local!`](crate::coroutine_local) values live in the coroutine and move with
    /// it; [`GreenThread::migrations`](super::GreenThread::migrations) counts the moves.
    /// sigcoro's own code reads every per-thread state it needs afresh after each switch.
    ///
    /// # Safety
    ///
    /// The coroutine may return from any sigcoro call that may switch (every safe point and
    /// wait: `checkpoint`, `yield_now`, `sleep`, `park`, `join`, channel and `select`
    /// operations, I/O waits, `sync::Mutex::lock`, ...) on another OS thread. Its code,
    /// including the libraries it calls, must therefore not touch per-thread state in any
    /// function that also makes such a call:
    ///
    /// - no `thread_local!` access at all there, not even a fresh `with` after the call: the
    ///   compiler treats a thread-local's address as constant within a function and may
    ///   compute it once, before the call, on the old thread (a loop that calls
    ///   `std::thread::current()` around `checkpoint()` was seen to keep naming the thread it
    ///   left). Thread-locals touched inside an `#[inline(never)]` function that makes no such
    ///   call are fine, as are `coroutine_local!` values, which live in the coroutine;
    /// - no guard of a `std::sync::Mutex`, `RwLock` or other lock whose unlock must happen on
    ///   the locking thread, and no `RefCell` borrow or raw pointer into a thread-local, held
    ///   across such a call (sigcoro's own `sync` types are fine);
    /// - no assumption that the thread stays the same: thread ids, thread-bound handles (an
    ///   OpenGL context, a per-thread allocator arena reached by pointer), per-thread random
    ///   generators (`rand::thread_rng`), `errno` read across the call.
    ///
    /// Breaking the contract is a data race on another thread's state (undefined behaviour),
    /// hence `unsafe`. sigcoro's own thread-locals are read so that no address survives a
    /// switch (see ARCHITECTURE.md, "Thread-locals").
    ///
    /// ```
    /// use std::cell::Cell;
    /// sigcoro::coroutine_local! {
    ///     static DONE: Cell<u64> = Cell::new(0);
    /// }
    /// let rt = sigcoro::Runtime::builder().workers(2).build().unwrap();
    /// let done = rt.block_on(|| {
    ///     // SAFETY: the loop touches no per-thread state: arithmetic and a coroutine-local.
    ///     let b = unsafe { sigcoro::Builder::new().migratable() };
    ///     let h = b.spawn(|| {
    ///         for _ in 0..1000 {
    ///             DONE.with(|d| d.set(d.get() + 1)); // follows the coroutine
    ///             sigcoro::checkpoint();
    ///         }
    ///         DONE.with(Cell::get)
    ///     });
    ///     h.unwrap().join().unwrap()
    /// });
    /// assert_eq!(done, 1000);
    /// ```
    pub unsafe fn migratable(mut self) -> Builder {
        self.migratable = true;
        self
    }

    /// Spawns the coroutine on the current runtime.
    ///
    /// Fails when called outside a runtime, after the runtime began shutting down, with a bad
    /// stack size, or when memory or mappings run out; each error says which.
    pub fn spawn<F, T>(self, f: F) -> io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let Some(local) = worker::local() else {
            return Err(io::Error::other(
                "sigcoro: spawn called outside a runtime: use Runtime::spawn, Runtime::block_on or sigcoro::run",
            ));
        };
        self.spawn_on(&local.rt, f)
    }

    pub(crate) fn spawn_on<F, T>(self, rt: &Arc<Shared>, f: F) -> io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        if rt.shutdown.load(Ordering::Acquire) {
            return Err(io::Error::other(
                "sigcoro: cannot spawn: the runtime has been shut down",
            ));
        }
        // The runtime's own size was checked when it was built.
        let stack_size = match self.stack_size {
            Some(size) => crate::stack::validate_size(size)?,
            None => rt.stack_size,
        };
        let body = Body::new(move || run_task_body(f));
        let name = self.name.map(String::into_boxed_str);
        // On one of this runtime's own workers, the task may be a kept record, the spawn is
        // counted by that worker alone, and the task queues there. None of that may be cut by
        // a preemption: another coroutine of this worker could spawn in between.
        let _off = crate::ground::RuntimeGuard::new();
        let here = worker::local().filter(|l| Arc::ptr_eq(&l.rt, rt));
        let task = crate::sched::recycle::new_task(
            here,
            coroutine::next_id(),
            name,
            std::any::type_name::<F>,
            rt,
            stack_size,
            body,
        )?;
        worker::count_spawn(here, rt);
        if self.migratable {
            // Published to whichever worker dequeues it by the queue's lock.
            task.migratable.store(true, Ordering::Relaxed);
        }
        match here {
            Some(local) => local.push_unstarted(task.clone()),
            // Shut down meanwhile: the task, and the closure in it, are dropped unrun.
            None if worker::schedule_new(rt, task.clone()).is_err() => {
                worker::uncount_spawn_elsewhere(rt);
                return Err(io::Error::other(
                    "sigcoro: cannot spawn: the runtime has been shut down",
                ));
            }
            None => {}
        }
        Ok(JoinHandle {
            task,
            _marker: PhantomData,
        })
    }
}
