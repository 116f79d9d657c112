//! The runtime: worker threads, `block_on`, and shutdown.
//!
//! ```
//! let rt = sigcoro::Runtime::builder().workers(2).build().unwrap();
//! let sum = rt.block_on(|| {
//!     let handles: Vec<_> = (0..10u64).map(|i| sigcoro::spawn(move || i * i)).collect();
//!     handles.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
//! });
//! assert_eq!(sum, 285);
//! let report = rt.shutdown();
//! assert_eq!(report.alive, 0);
//! ```

use crate::preempt::settings::{self, EnvSetting};
use crate::sched::green::{Builder, JoinHandle};
use crate::sched::worker::{Local, PreemptConfig, Shared};
use crate::stack;
use std::io;
use std::panic;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Worker threads that run coroutines. Dropping it shuts it down (see [`Runtime::shutdown`]).
pub struct Runtime {
    shared: Arc<Shared>,
    threads: Vec<std::thread::JoinHandle<()>>,
    timer: Option<std::thread::JoinHandle<()>>,
    /// The hog reports the timer thread files.
    hogs: Arc<crate::preempt::hog::HogLog>,
}

/// Sets up a [`Runtime`].
#[derive(Debug, Clone)]
pub struct RuntimeBuilder {
    workers: Option<usize>,
    stack_size: usize,
    name: String,
    preempt: Option<Duration>,
    report_hogs: bool,
    anywhere: bool,
    place_by_live: bool,
}

/// The default preemption slice: 10 ms, as Go's. A coroutine that runs that long without
/// waiting is switched out at its next safe point (inside a
/// [`preemptible`](crate::preemptible) region, by a signal half a slice later).
pub const DEFAULT_PREEMPT_SLICE: Duration = Duration::from_millis(10);

/// The shortest preemption slice accepted.
pub const MIN_PREEMPT_SLICE: Duration = Duration::from_micros(20);

/// The longest preemption slice accepted: one minute.
pub const MAX_PREEMPT_SLICE: Duration = Duration::from_secs(60);

/// What shutting a runtime down found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Coroutines still alive (parked, sleeping, queued or not yet started) when shutdown
    /// began; each was cancelled and unwound on its worker, so its destructors ran.
    pub alive: usize,
}

impl RuntimeBuilder {
    /// How many worker threads (default: the number of available cores).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = Some(n);
        self
    }

    /// The default stack size of the coroutines spawned on this runtime, in bytes.
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = bytes;
        self
    }

    /// The worker threads' name prefix; workers are named `prefix-0`, `prefix-1`, ...
    pub fn name(mut self, prefix: impl Into<String>) -> Self {
        self.name = prefix.into();
        self
    }

    /// Preemption: `Some(slice)` switches out a coroutine that has run `slice` without waiting,
    /// at its next safe point (see [`crate::preempt`]); `None` turns it off, so coroutines run
    /// until they wait or yield. The default is [`DEFAULT_PREEMPT_SLICE`]; the slice must lie
    /// between [`MIN_PREEMPT_SLICE`] and [`MAX_PREEMPT_SLICE`]. `SIGCORO_PREEMPT=off` in the
    /// environment overrides it with `None`.
    pub fn preempt(mut self, slice: Option<Duration>) -> Self {
        self.preempt = slice;
        self
    }

    /// Also print each hog report on stderr, once per hog (see
    /// [`preempt::hog`](crate::preempt::hog)); they are always kept for [`Runtime::hogs`].
    pub fn report_hogs(mut self, on: bool) -> Self {
        self.report_hogs = on;
        self
    }

    /// The tests' controls only: signals preempt coroutines anywhere, in any code, as sigcoro
    /// once did. Not part of the API.
    ///
    /// # Safety
    ///
    /// Unsound by design (it crashes allocators and deadlocks std's locks): only for showing,
    /// in a child process, the failures the default mode prevents.
    #[doc(hidden)]
    pub unsafe fn preempt_anywhere_for_tests(mut self) -> Self {
        self.anywhere = true;
        self
    }

    /// The tests' controls only: with `false`, an unstarted coroutine starts on the worker that
    /// dequeues it even when another worker has fewer live coroutines (see
    /// `sched/worker/steal.rs`, "Where a task starts").
    #[doc(hidden)]
    pub fn place_by_live_count_for_tests(mut self, on: bool) -> Self {
        self.place_by_live = on;
        self
    }

    /// Starts the workers. Fails on zero or absurd worker counts, a bad stack size, or when
    /// the threads or their epoll/eventfd descriptors cannot be created.
    pub fn build(self) -> io::Result<Runtime> {
        let workers = self
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        if workers == 0 || workers > 4096 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a runtime needs between 1 and 4096 workers, not {workers}"),
            ));
        }
        let stack_size = stack::validate_size(self.stack_size)?;
        let slice = match settings::env() {
            EnvSetting::Off => None,
            _ => self.preempt,
        };
        if let Some(slice) = slice
            && !(MIN_PREEMPT_SLICE..=MAX_PREEMPT_SLICE).contains(&slice)
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a preemption slice of {slice:?} lies outside {MIN_PREEMPT_SLICE:?}..={MAX_PREEMPT_SLICE:?} \
                     (use preempt(None) to turn preemption off)"
                ),
            ));
        }
        let anywhere = slice.is_some() && self.anywhere;
        if anywhere {
            crate::preempt::handler::install()?;
        }
        let config = PreemptConfig {
            slice,
            async_regions: slice.is_some() && crate::preempt::async_preemption().is_ok(),
            anywhere,
            report_hogs: self.report_hogs,
            slice_and_grace: slice.map(crate::preempt::monitor::slice_and_grace),
        };
        let mut shared = Shared::new(workers, stack_size, config, crate::io::reactor::new_poller)?;
        shared.place_by_live = self.place_by_live;
        let shared = Arc::new(shared);
        let hogs = Arc::new(crate::preempt::hog::HogLog::default());
        let mut threads = Vec::with_capacity(workers);
        for i in 0..workers {
            let rt = shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("{}-{i}", self.name))
                .spawn(move || Local::run(i, rt));
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    let partial = Runtime {
                        shared,
                        threads,
                        timer: None,
                        hogs,
                    };
                    drop(partial);
                    return Err(io::Error::new(e.kind(), format!("starting worker thread {i}: {e}")));
                }
            }
        }
        let timer = match slice {
            None => None,
            Some(slice) => {
                let (rt, log) = (shared.clone(), hogs.clone());
                let spawned = std::thread::Builder::new()
                    .name(format!("{}-timer", self.name))
                    .spawn(move || crate::preempt::monitor::run(rt, log, slice));
                match spawned {
                    Ok(t) => Some(t),
                    Err(e) => {
                        drop(Runtime {
                            shared,
                            threads,
                            timer: None,
                            hogs,
                        });
                        return Err(io::Error::new(
                            e.kind(),
                            format!("starting the preemption timer thread: {e}"),
                        ));
                    }
                }
            }
        };
        Ok(Runtime {
            shared,
            threads,
            timer,
            hogs,
        })
    }
}

impl Runtime {
    /// A builder with the defaults: a worker per core, [`stack::DEFAULT_STACK_SIZE`] stacks,
    /// threads named `sigcoro-N`, preemption after [`DEFAULT_PREEMPT_SLICE`].
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder {
            workers: None,
            stack_size: stack::DEFAULT_STACK_SIZE,
            name: "sigcoro".into(),
            preempt: Some(DEFAULT_PREEMPT_SLICE),
            report_hogs: false,
            anywhere: false,
            place_by_live: true,
        }
    }

    /// Runs `f` as a coroutine on this runtime and waits for its value. A panic in `f` is
    /// resumed here.
    ///
    /// # Panics
    ///
    /// If `f` panics, or the runtime can no longer spawn.
    pub fn block_on<F, T>(&self, f: F) -> T
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let handle = self.spawn(f);
        match handle.join() {
            Ok(v) => v,
            Err(e) if e.is_panic() => panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("sigcoro: block_on: {e}"),
        }
    }

    /// Spawns a coroutine on this runtime from any thread.
    ///
    /// # Panics
    ///
    /// After shutdown began, or when no stack can be had; use [`Runtime::builder_spawn`] to get
    /// those as errors.
    pub fn spawn<F, T>(&self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.builder_spawn(Builder::new(), f)
            .unwrap_or_else(|e| panic!("sigcoro: Runtime::spawn: {e}"))
    }

    /// Spawns a coroutine set up by `builder` on this runtime, from any thread.
    pub fn builder_spawn<F, T>(&self, builder: Builder, f: F) -> io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        builder.spawn_on(&self.shared, f)
    }

    /// How many worker threads run this runtime.
    pub fn workers(&self) -> usize {
        self.shared.workers.len()
    }

    /// How many coroutines are alive now (spawned and not yet ended).
    pub fn alive(&self) -> usize {
        self.shared.alive()
    }

    /// Stops the runtime: no new spawns; every coroutine still alive is cancelled and unwound
    /// on its own worker (its destructors run); then the workers exit. A coroutine spinning
    /// without ever waiting delays this until it waits.
    pub fn shutdown(mut self) -> ShutdownReport {
        self.stop()
    }

    /// How often this runtime's coroutines have been preempted so far, and how many signals its
    /// timer thread sent.
    pub fn preemptions(&self) -> crate::preempt::PreemptStats {
        self.shared.stats.snapshot()
    }

    /// The coroutines seen hogging a worker (running two slices or more without reaching a
    /// safe point), oldest first; the runtime keeps the last 64. See
    /// [`preempt::hog`](crate::preempt::hog).
    pub fn hogs(&self) -> Vec<crate::preempt::HogReport> {
        self.hogs.snapshot()
    }

    fn stop(&mut self) -> ShutdownReport {
        // The timer thread goes first: it reads the workers' thread-local flags. It sleeps in
        // `park_timeout`, so it sees the flag at once, whatever the slice.
        self.shared.timer_stop.store(true, Ordering::Release);
        if let Some(t) = self.timer.take() {
            t.thread().unpark();
            let _ = t.join();
        }
        let alive = self.shared.alive();
        self.shared.shutdown.store(true, Ordering::Release);
        self.shared.wake_all();
        let me = std::thread::current().id();
        for t in self.threads.drain(..) {
            assert!(
                t.thread().id() != me,
                "sigcoro: a runtime cannot be shut down from one of its own coroutines"
            );
            let _ = t.join();
        }
        ShutdownReport { alive }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if self.threads.is_empty() {
            return;
        }
        let report = self.stop();
        if report.alive > 0 {
            eprintln!(
                "sigcoro: runtime dropped with {} coroutine(s) still alive; they were cancelled and unwound",
                report.alive
            );
        }
    }
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("workers", &self.workers())
            .field("alive", &self.alive())
            .finish()
    }
}

/// Runs `f` on a new default runtime (a worker per core), shuts it down, and returns `f`'s
/// value.
///
/// # Panics
///
/// If the runtime cannot start, or `f` panics.
pub fn run<F, T>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let rt = Runtime::builder()
        .build()
        .unwrap_or_else(|e| panic!("sigcoro::run: cannot start a runtime: {e}"));
    rt.block_on(f)
}
