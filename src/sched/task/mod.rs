//! A task: one spawned coroutine, its lifecycle, and the slot its outcome goes to.
//!
//! # Who touches what
//!
//! A task's fields fall in three groups, in tokio's manner:
//! - **what it is**, set at spawn and read by anyone: `id`, `name`, `rt`, `stack_size`,
//!   `entry` (and the ground floor's `header`, whose no-preempt depth only the task's own thread
//!   touches);
//! - **its lifecycle**, which any thread may race on: [`State`] (`state.rs`), one word of bits
//!   changed by single atomic operations, plus the worker that owns it. The outcome and the
//!   joiner's unparker are handed between the task and its joiner by that word;
//! - **its run**, touched only by the worker that runs it (or, before its first run, the one
//!   that dequeued it): its coroutine, body, yielder, registry slot, wait deadline and
//!   sequence, preemption marks, stack bounds, coroutine-locals. The signal handler reads some
//!   of them, on that same thread.
//!
//! # Waits
//!
//! `park` is a token, as in std: a park that finds the token consumes it and returns.
//! Otherwise the coroutine yields [`Action::Park`] and its worker marks it parked, unless the
//! token arrived meanwhile: then the task runs again at once. The unpark that finds it parked
//! schedules it. `sleep` is separate, so a sleeper never eats a park token: the worker marks it
//! sleeping and arms a timer; the timer or a cancellation that clears the mark schedules it.
//!
//! Timers carry the task's `wait_seq` from when they were armed; a task bumps it each time it
//! returns from a wait, so a stale timer finds a different number and does nothing.

mod body;
mod state;

pub(crate) use body::{Body, Work};
pub(crate) use state::{State, UNSTARTED};

use super::worker;
use crate::coroutine::{Coroutine, Yielder};
use std::any::Any;
use std::cell::{Cell, UnsafeCell};
use std::io;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::time::Instant;

/// What a task's coroutine asks of its worker when it suspends. It fits in a register, so it
/// crosses the switch without a trip through memory (a value read back from the coroutine's
/// stack right after the switch costs a failed store-to-load forward); a deadline waits in
/// [`Task::deadline`].
#[derive(Clone, Copy, Debug)]
pub(crate) enum Action {
    /// Run me again after the others queued now.
    Yield,
    /// Park me until unparked, or (`timed`) until my deadline.
    Park { timed: bool },
    /// Wake me at my deadline (or on cancellation); park tokens are left alone.
    Sleep,
    /// I was preempted: by the signal's handler (`signal`: unblock the signal), or at a safe
    /// point. If my slice expired, requeue me at the back; if I only made way for a due timer
    /// (`front`), at the front, to go on after the coroutines it woke.
    Preempted { signal: bool, front: bool },
}

const _: () = assert!(size_of::<Action>() <= size_of::<usize>());

/// A task's outcome: its value, or how it failed.
pub(crate) type Outcome = Result<super::value::Value, JoinErrorKind>;

/// How a task ended without a value.
pub(crate) enum JoinErrorKind {
    Panic(Box<dyn Any + Send>),
    Cancelled,
    /// Spawned by a coroutine of a runtime that was shutting down: never started.
    NotStarted,
}

/// A spawned coroutine. The `Arc<Task>` block holds what every switch, park and wake of the
/// task touches; the rest, its [`Record`], lives in the slab of task records
/// (`recycle::slab`), not on the heap, and is reached through `Deref`. A storm of spawns on a
/// fresh runtime then faults the records in a huge page at a time, not a 4 KiB page (and,
/// with glibc, one `mprotect` of the thread's arena) at a time, while the hot paths read their
/// fields without going through the record's pointer.
pub(crate) struct Task {
    rec: NonNull<Record>,
    // What it is: set at spawn (or reuse), read by anyone.
    /// Its id ([`GreenThread::id`](crate::GreenThread::id)).
    pub id: u64,
    /// Its name, if it was given one.
    pub name: Option<Box<str>>,
    /// The runtime this task belongs to.
    pub rt: Arc<worker::Shared>,
    /// The type name of the closure it was spawned with, for hog reports.
    pub entry: Cell<fn() -> &'static str>,
    /// What the layers below `sched` touch of the task (its no-preempt depth, own thread
    /// only); the ground floor's `current` points here while the task runs.
    pub header: crate::ground::TaskHeader,

    // Its lifecycle: any thread, through `State`'s transitions.
    /// Its lifecycle bits and owner (see `state.rs`).
    pub state: State,
    /// Whether its spawner declared it free of thread affinity ([`Builder::migratable`]): its
    /// worker may then hand it to another at a safe point (`worker::settle`). Set before the
    /// task is queued; read by the worker that runs it.
    ///
    /// [`Builder::migratable`]: crate::Builder::migratable
    pub migratable: AtomicBool,
    /// When it was last queued, in its queuing worker's count of queued tasks (runtimes with
    /// two or more workers): a worker runs the older of its two queues' first tasks (see
    /// `worker::steal`). Written by whoever queues it, read by the worker that pops it.
    pub stamp: AtomicU64,

    // Its run: only the worker that runs it (before its first run, the one that dequeued it);
    // the signal handler reads some of these, on that same thread.
    /// Its coroutine, from its first run.
    coroutine: UnsafeCell<Option<Coroutine<(), Action, ()>>>,
    /// The coroutine's yielder, set when it starts.
    pub yielder: Cell<*const Yielder<(), Action>>,
    /// Slot in its worker's registry of live tasks.
    pub slot: AtomicUsize,
    /// The deadline of the wait it suspends for ([`Action::Park`] timed, [`Action::Sleep`]):
    /// set by the task, read by its worker as it settles it.
    pub deadline: Cell<Option<Instant>>,
    /// Bumped each time it returns from a wait, so a stale timer finds a different number.
    pub wait_seq: AtomicU64,
    /// Whether it last switched out by preemption: it is likely to run until interrupted
    /// again, so its worker arms its alarm before resuming it.
    pub preempted: Cell<bool>,
    /// Set while the coroutine is switched out from inside the preemption handler.
    pub in_handler: AtomicBool,
    /// While the coroutine runs inside [`preemptible`](crate::preempt::preemptible): the
    /// canonical frame address of the region's closure, where the handler's stack walk ends;
    /// 0 outside a region.
    pub region_cfa: AtomicUsize,
}

/// The part of a task that its hot paths do not touch at every switch, in the slab of task
/// records (see [`Task`]).
pub(crate) struct Record {
    /// The stack size its coroutine gets when it first runs.
    pub stack_size: usize,
    /// What the task runs, until its coroutine is made (a task gets a stack only when a worker
    /// first runs it, so a storm of spawned tasks reuses a few warm stacks); then its outcome,
    /// written once by the task before `State::complete`, then the joiner's.
    work: UnsafeCell<Work>,
    /// The waiting joiner's unparker, written by the joiner before `State::join_wait`, then
    /// the task's.
    joiner: UnsafeCell<Option<super::park::Unparker>>,
    /// How often this task was preempted (its own thread writes, anyone reads).
    pub stats: crate::sched::stats::TaskCounters,
    /// How many times it resumed on another worker than the one it last ran on.
    pub moves: AtomicU64,
    /// The coroutine's stack, `[lo, hi)`, once it has one (its running worker).
    pub stack_lo: AtomicUsize,
    pub stack_hi: AtomicUsize,
    /// Its `coroutine_local!` values, made on first use (its running worker).
    pub locals: UnsafeCell<Option<Box<super::coroutine_local::Locals>>>,
}

// SAFETY: a `Task` owns its record as a `Box` would. `coroutine`, `yielder`, `deadline`,
// `preempted` and `entry` are touched only by the one worker that holds the task in its run
// queue (before the first run, whichever worker dequeues it; after, its owner, which changes
// only while the task waits in a locked stealable queue: see `worker::settle`), never
// concurrently, or written through `&mut Task` (`reuse`) and read-only while it is shared;
// the coroutine is made on the worker that first runs it. Every other field is atomic.
unsafe impl Send for Task {}
// SAFETY: as above.
unsafe impl Sync for Task {}

// SAFETY: `work` (the body) is touched only by the one worker that holds the task in its run
// queue, as the coroutine (see `Task`); the outcome in `work` and `joiner` are handed between
// the task and its single joiner by `state` (see `state.rs`). `locals` is its running
// worker's; every other field is atomic.
unsafe impl Send for Record {}
// SAFETY: as above.
unsafe impl Sync for Record {}

impl Deref for Task {
    type Target = Record;

    #[inline(always)]
    fn deref(&self) -> &Record {
        // SAFETY: the record was initialised by `Task::new` and lives until `Task`'s drop.
        unsafe { self.rec.as_ref() }
    }
}

impl DerefMut for Task {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut Record {
        // SAFETY: as for `deref`, and `&mut self` makes the borrow unique.
        unsafe { self.rec.as_mut() }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        // SAFETY: the record is initialised and owned by this task alone; it is dropped once,
        // and its memory goes back to the slab it came from only after that.
        unsafe {
            std::ptr::drop_in_place(self.rec.as_ptr());
            super::recycle::slab::free(self.rec);
        }
    }
}

impl Task {
    /// The task whose header is at `header` (null for null).
    ///
    /// # Safety
    ///
    /// A non-null `header` must point at the `header` field of a `Task`.
    #[inline(always)]
    pub(crate) unsafe fn from_header(header: *const crate::ground::TaskHeader) -> *const Task {
        if header.is_null() {
            return std::ptr::null();
        }
        // SAFETY: per the contract, `header` lies `offset_of!(Task, header)` bytes into a Task.
        unsafe { header.byte_sub(std::mem::offset_of!(Task, header)).cast() }
    }

    /// This task's header, as the ground floor's `current` holds it while the task runs.
    #[inline(always)]
    pub(crate) fn header_ptr(self: &Arc<Task>) -> *const crate::ground::TaskHeader {
        &self.header
    }

    /// A new task, on a record taken from the slab. Fails when the slab needs memory and the
    /// kernel refuses it (the error says which limit it hit).
    pub(crate) fn new(
        id: u64,
        name: Option<Box<str>>,
        entry: fn() -> &'static str,
        rt: Arc<worker::Shared>,
        stack_size: usize,
        body: Body,
    ) -> io::Result<Task> {
        let rec = super::recycle::slab::alloc()?;
        let record = Record {
            stack_size,
            work: UnsafeCell::new(Work::Body(body)),
            joiner: UnsafeCell::new(None),
            stats: crate::sched::stats::TaskCounters::default(),
            moves: AtomicU64::new(0),
            stack_lo: AtomicUsize::new(0),
            stack_hi: AtomicUsize::new(0),
            locals: UnsafeCell::new(None),
        };
        // SAFETY: `alloc` returned memory for one record that nobody else owns.
        unsafe { rec.as_ptr().write(record) };
        Ok(Task {
            rec,
            id,
            name,
            rt,
            entry: Cell::new(entry),
            header: crate::ground::TaskHeader::new(),
            state: State::new(),
            migratable: AtomicBool::new(false),
            stamp: AtomicU64::new(0),
            coroutine: UnsafeCell::new(None),
            yielder: Cell::new(std::ptr::null()),
            slot: AtomicUsize::new(usize::MAX),
            deadline: Cell::new(None),
            wait_seq: AtomicU64::new(0),
            preempted: Cell::new(false),
            in_handler: AtomicBool::new(false),
            region_cfa: AtomicUsize::new(0),
        })
    }

    /// Makes a finished task new again in place, keeping its allocations and its runtime
    /// handle (no reference count is touched). Every field is named, so a field added to
    /// `Task` or `Record` must be reset here too.
    pub(crate) fn reuse(
        &mut self,
        new_id: u64,
        new_name: Option<Box<str>>,
        new_entry: fn() -> &'static str,
        new_stack_size: usize,
        new_body: Body,
    ) {
        let Record {
            stack_size,
            work,
            joiner,
            stats,
            moves,
            stack_lo,
            stack_hi,
            locals,
        } = &mut **self;
        *stack_size = new_stack_size;
        *work.get_mut() = Work::Body(new_body);
        *joiner.get_mut() = None;
        stats.reset();
        *moves.get_mut() = 0;
        *stack_lo.get_mut() = 0;
        *stack_hi.get_mut() = 0;
        *locals.get_mut() = None;
        let Task {
            rec: _,
            id,
            name,
            rt: _,
            entry,
            header,
            state,
            migratable,
            stamp,
            coroutine,
            yielder,
            slot,
            deadline,
            wait_seq,
            preempted,
            in_handler,
            region_cfa,
        } = self;
        *id = new_id;
        *name = new_name;
        entry.set(new_entry);
        *header.preempt_off.get_mut() = 1;
        state.reset();
        *migratable.get_mut() = false;
        *stamp.get_mut() = 0;
        *coroutine.get_mut() = None;
        yielder.set(std::ptr::null());
        *slot.get_mut() = usize::MAX;
        deadline.set(None);
        *wait_seq.get_mut() = 0;
        preempted.set(false);
        *in_handler.get_mut() = false;
        *region_cfa.get_mut() = 0;
    }

    /// Drops what a finished task may still hold (its name, coroutine-locals buffer, a joiner's
    /// handle, an outcome nobody took) before it is kept for reuse.
    pub(crate) fn release_resources(&mut self) {
        self.name = None;
        *self.locals.get_mut() = None;
        *self.joiner.get_mut() = None;
        *self.work.get_mut() = Work::Empty;
    }

    /// Where the task's body waits until its coroutine takes it (`take`).
    ///
    /// # Safety
    ///
    /// As for [`Task::coroutine`].
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn body(&self) -> &mut Work {
        // SAFETY: the caller is the one worker running this task, which has not delivered its
        // outcome yet (a task's outcome comes after its body is gone).
        unsafe { &mut *self.work.get() }
    }

    /// The task's coroutine.
    ///
    /// # Safety
    ///
    /// Only the worker that dequeued this task may call it, and not while a previous borrow
    /// lives.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn coroutine(&self) -> &mut Option<Coroutine<(), Action, ()>> {
        // SAFETY: the caller is the one worker running this task.
        unsafe { &mut *self.coroutine.get() }
    }

    /// Starts loading the lines of this task that its worker reads to resume it (its state
    /// and its coroutine's stack pointer).
    #[inline(always)]
    pub(crate) fn prefetch_record(&self) {
        let at = std::ptr::from_ref(self) as usize;
        crate::ground::prefetch(at + std::mem::offset_of!(Task, state));
        crate::ground::prefetch(at + std::mem::offset_of!(Task, coroutine));
    }

    /// Sets the park token; schedules the task if it was parked.
    pub(crate) fn unpark(self: &Arc<Self>) {
        if self.state.unpark() {
            worker::schedule(self.clone());
        }
    }

    /// [`Task::unpark`] through an owned handle, which goes to the run queue as it is.
    pub(crate) fn unpark_owned(self: Arc<Self>) {
        if self.state.unpark() {
            worker::schedule(self);
        }
    }

    /// Wakes a sleeping task early (for cancellation and shutdown).
    pub(crate) fn interrupt_sleep(self: &Arc<Self>) {
        if self.state.wake_sleeper() {
            worker::schedule(self.clone());
        }
    }

    /// Asks the task to unwind at its next park, sleep or yield.
    pub(crate) fn cancel(self: &Arc<Self>) {
        self.state.cancel();
        self.unpark();
        self.interrupt_sleep();
    }

    /// Delivers the task's outcome (once, from the task) and wakes its joiner if one waits.
    pub(crate) fn deliver(&self, outcome: Outcome) {
        // SAFETY: only the task writes the outcome, once, before `complete` makes it the
        // joiner's; its body is gone by then.
        let work = unsafe { &mut *self.work.get() };
        debug_assert!(
            matches!(work, Work::Empty),
            "a task delivers once, after its body is gone"
        );
        *work = Work::Outcome(outcome);
        if self.state.complete() {
            // SAFETY: a waiting joiner wrote its unparker and no longer touches it.
            if let Some(joiner) = unsafe { (*self.joiner.get()).take() } {
                joiner.unpark_owned();
            }
        }
    }

    /// Whether the task has delivered its outcome.
    pub(crate) fn is_done(&self) -> bool {
        self.state.is_done()
    }

    /// Waits (parking) until the task is done. `park` is the wait itself, so callers choose
    /// whether a cancellation of the waiter unwinds. Only one waiter at a time.
    pub(crate) fn wait_done(&self, mut park: impl FnMut()) {
        loop {
            if self.state.is_done() {
                return;
            }
            if !self.state.joiner_waits() {
                // SAFETY: until we say we wait, the joiner slot is ours.
                unsafe { *self.joiner.get() = Some(super::park::current_unparker()) };
                if !self.state.join_wait() {
                    return; // done meanwhile; the unparker we left is dropped with the task
                }
            } // else already registered: a spurious wake-up
            park();
        }
    }

    /// Takes the outcome of a done task (once).
    pub(crate) fn take_outcome(&self) -> Outcome {
        assert!(self.is_done(), "the outcome of a task is taken once it is done");
        // SAFETY: done makes the outcome the (single) joiner's; the task no longer touches it.
        match std::mem::replace(unsafe { &mut *self.work.get() }, Work::Empty) {
            Work::Outcome(outcome) => outcome,
            _ => panic!("a task's outcome is taken once"),
        }
    }
}
