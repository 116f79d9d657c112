//! Lengthy foreign work off the worker: Perl Multicore's release/acquire as one call.
//!
//! [`blocking`](blocking())`(f)` runs `f` on a helper thread while the calling coroutine is
//! parked, so its worker keeps running the other coroutines; the caller resumes with `f`'s value
//! (or its panic) once `f` returns. Release and acquire are the two ends of one call, so the
//! pair rules of the spec (never nest, never forget one) hold by construction.
//!
//! ```
//! let total = sigcoro::run(|| {
//!     let data = vec![1u64; 1 << 16];
//!     // `f` may borrow from the caller's stack: the caller waits for it.
//!     sigcoro::blocking(|| data.iter().sum::<u64>())
//! });
//! assert_eq!(total, 1 << 16);
//! ```
//!
//! # When `f` runs inline
//!
//! Handing `f` to a helper costs two thread wakeups. When the calling coroutine is the only one
//! alive on its worker (none parked, sleeping or queued there) there is nothing to keep running
//! meanwhile, so `f` runs inline on the worker, at no cost (the spec's "extremely low overhead when not active"). On a plain thread
//! (outside any runtime) `f` also runs inline: the thread would block anyway.
//!
//! # The pool
//!
//! Helper threads are named `sigcoro-blocking-N` and shared by the whole process. A call finds
//! an idle helper or starts a new one, up to [`max_threads`] (default
//! [`DEFAULT_MAX_THREADS`]); past that, calls wait in FIFO order for a helper. A helper idle for
//! [`KEEP_ALIVE`] exits. If no helper can be started at all (the system refuses threads), `f`
//! runs inline.
//!
//! # Cancellation
//!
//! `f` may borrow from the caller's stack, so the caller must not unwind while `f` runs. A
//! coroutine cancelled while it waits for `f` therefore keeps waiting, blocking its worker
//! thread, until `f` returns, and then unwinds. Keep `f` bounded in time.

use crate::ground::lock;
use crate::sched::park::{Unparker, current_task, current_unparker, park_until};
use crate::sched::worker;
use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

/// The largest number of helper threads unless [`set_max_threads`] says otherwise.
pub const DEFAULT_MAX_THREADS: usize = 128;

/// How long a helper thread waits for work before it exits.
pub const KEEP_ALIVE: Duration = Duration::from_secs(10);

type Job = Box<dyn FnOnce() + Send + 'static>;

struct Pool {
    state: Mutex<PoolState>,
    work: Condvar,
    max: AtomicUsize,
}

struct PoolState {
    queue: VecDeque<(u64, Job)>,
    next_id: u64,
    idle: usize,
    total: usize,
    started: usize,
}

static POOL: Pool = Pool {
    state: Mutex::new(PoolState {
        queue: VecDeque::new(),
        next_id: 0,
        idle: 0,
        total: 0,
        started: 0,
    }),
    work: Condvar::new(),
    max: AtomicUsize::new(DEFAULT_MAX_THREADS),
};

/// Sets the largest number of helper threads (at least 1). Threads above a lowered limit exit
/// when they next go idle.
pub fn set_max_threads(n: usize) {
    POOL.max.store(n.max(1), Ordering::Relaxed);
}

/// The largest number of helper threads.
pub fn max_threads() -> usize {
    POOL.max.load(Ordering::Relaxed)
}

/// What the pool looks like now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Helper threads alive.
    pub threads: usize,
    /// Of those, how many wait for work.
    pub idle: usize,
    /// Calls waiting for a helper.
    pub queued: usize,
    /// Helper threads started since the process began.
    pub started: usize,
}

/// A snapshot of the pool.
pub fn stats() -> PoolStats {
    let st = lock(&POOL.state);
    PoolStats {
        threads: st.total,
        idle: st.idle,
        queued: st.queue.len(),
        started: st.started,
    }
}

/// Runs `f` on a helper thread while the calling coroutine is parked (see the [module
/// docs](self)), and returns its value. A panic in `f` resumes in the caller.
pub fn blocking<F, T>(f: F) -> T
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    if current_task().is_none() {
        return f();
    }
    if runs_alone() {
        // Inline on the worker thread: its own alarm must not cut the closure's calls short.
        worker::disarm_alarm();
        return f();
    }
    let mut slot: Option<std::thread::Result<T>> = None;
    let done = Arc::new(Done {
        flag: Mutex::new(false),
        cond: Condvar::new(),
        unparker: current_unparker(),
    });
    let out = SlotPtr(&raw mut slot);
    let signal = done.clone();
    let job = move || {
        let out = out;
        let result = panic::catch_unwind(AssertUnwindSafe(f));
        // SAFETY: the caller does not read, move or free `slot` until `signal` says done.
        unsafe { out.0.write(Some(result)) };
        signal.signal();
    };
    let job: Box<dyn FnOnce() + Send + '_> = Box::new(job);
    // SAFETY: the job may borrow from the caller's frame ('_). The caller does not return or
    // unwind until the job has signalled `done`, after which the job touches nothing borrowed
    // (only `done`, which it co-owns): the borrow outlives every use, as with scoped threads.
    let job: Job = unsafe { std::mem::transmute::<Box<dyn FnOnce() + Send + '_>, Job>(job) };
    if let Err(job) = submit(job) {
        // No helper could be started: run it here.
        job();
    }
    done.wait();
    match slot.take().expect("a finished job left its result") {
        Ok(v) => v,
        Err(payload) => panic::resume_unwind(payload),
    }
}

/// Whether the calling coroutine is the only one alive on its worker, with nothing queued
/// (nothing to run while `f` would block the worker).
fn runs_alone() -> bool {
    worker::current_runs_alone()
}

/// Where the helper writes the result.
struct SlotPtr<T>(*mut Option<std::thread::Result<T>>);

// SAFETY: the pointer is written once by the helper while the caller waits, never shared
// otherwise; `T: Send` makes handing the value over sound.
unsafe impl<T: Send> Send for SlotPtr<T> {}

/// Completion of one job: a flag for the caller, and its unparker.
struct Done {
    flag: Mutex<bool>,
    cond: Condvar,
    unparker: Unparker,
}

impl Done {
    fn signal(&self) {
        *lock(&self.flag) = true;
        self.cond.notify_all();
        self.unparker.unpark();
    }

    fn is_done(&self) -> bool {
        *lock(&self.flag)
    }

    /// Blocks the thread (not only the coroutine) until the job is done.
    fn block_thread(&self) {
        let mut flag = self.flag.lock().unwrap_or_else(PoisonError::into_inner);
        while !*flag {
            flag = self.cond.wait(flag).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Parks until done. If the coroutine is cancelled meanwhile, blocks the thread until
    /// done (the job may borrow from this stack), then goes on unwinding. A coroutine that
    /// already unwinds (`blocking` in a destructor) cannot park, so it blocks the thread until
    /// done: the job runs on a helper thread, whatever this worker does.
    fn wait(&self) {
        if std::thread::panicking() {
            self.block_thread();
            return;
        }
        while !self.is_done() {
            if let Err(payload) = panic::catch_unwind(|| park_until(None, "sigcoro::blocking")) {
                self.block_thread();
                panic::resume_unwind(payload);
            }
        }
    }
}

/// Queues `job` for a helper, starting one if none is idle and the limit allows. Gives the
/// job back if there is no helper and none can be started.
fn submit(job: Job) -> Result<(), Job> {
    let mut st = lock(&POOL.state);
    let id = st.next_id;
    st.next_id += 1;
    st.queue.push_back((id, job));
    if st.idle >= st.queue.len() || st.total >= max_threads() {
        drop(st);
        POOL.work.notify_one();
        return Ok(());
    }
    st.total += 1;
    st.started += 1;
    let n = st.started;
    drop(st);
    let spawned = std::thread::Builder::new()
        .name(format!("sigcoro-blocking-{n}"))
        .spawn(helper);
    if spawned.is_ok() {
        return Ok(());
    }
    let mut st = lock(&POOL.state);
    st.total -= 1;
    if st.total > 0 {
        // Another helper will get to it.
        return Ok(());
    }
    match st.queue.iter().position(|(i, _)| *i == id) {
        Some(i) => Err(st.queue.remove(i).expect("found").1),
        None => Ok(()),
    }
}

/// A helper thread: runs queued jobs until idle for [`KEEP_ALIVE`]. (Not a coroutine: it
/// takes the pool's lock directly, to wait on the condition variable with it.)
fn helper() {
    let lock = || POOL.state.lock().unwrap_or_else(PoisonError::into_inner);
    let mut st = lock();
    loop {
        if let Some((_, job)) = st.queue.pop_front() {
            drop(st);
            job();
            st = lock();
            continue;
        }
        if st.total > max_threads() {
            break;
        }
        st.idle += 1;
        let (guard, timeout) = POOL
            .work
            .wait_timeout(st, KEEP_ALIVE)
            .unwrap_or_else(PoisonError::into_inner);
        st = guard;
        st.idle -= 1;
        if timeout.timed_out() && st.queue.is_empty() {
            break;
        }
    }
    st.total -= 1;
}
