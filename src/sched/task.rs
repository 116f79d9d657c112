//! A task: one spawned coroutine, its wait states, and the slot its outcome goes to.
//!
//! # Wait states
//!
//! `park` is a token, as in std: [`EMPTY`] → `unpark` → [`NOTIFIED`]; a park that finds the
//! token consumes it and returns. Otherwise the coroutine yields [`Action::Park`] and its worker
//! moves the state `EMPTY → PARKED`; if that fails the token arrived meanwhile and the task runs
//! again at once. `unpark` swaps in `NOTIFIED`, and whoever swaps out `PARKED` schedules it.
//!
//! `sleep` is separate, so a sleeper never eats a park token: the worker sets `sleeping` and
//! arms a timer; the timer or a cancellation that swaps `sleeping` back to false schedules it.
//!
//! Timers carry the task's `wait_seq` from when they were armed; a task bumps it each time it
//! returns from a wait, so a stale timer finds a different number and does nothing.

use super::worker;
use crate::coroutine::{Coroutine, Yielder};
use std::any::Any;
use std::cell::{Cell, UnsafeCell};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

pub(crate) const EMPTY: u8 = 0;
pub(crate) const NOTIFIED: u8 = 1;
pub(crate) const PARKED: u8 = 2;

/// `owner` of a task that has not run yet: any worker may take it.
pub(crate) const UNSTARTED: usize = usize::MAX;

/// A task's whole work, type-erased: run the user's closure and deliver its outcome.
pub(crate) type Body = Box<dyn FnOnce() + Send>;

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

/// `join_state` values. The task writes its outcome, then swaps in `DONE`; a joiner writes its
/// unparker, then moves `RUNNING -> WAITING`. Whoever swaps `WAITING` out for `DONE` wakes the
/// joiner. The outcome is the joiner's once it sees `DONE`; the unparker is the task's once it
/// sees `WAITING`.
const RUNNING: u8 = 0;
const WAITING: u8 = 1;
const DONE: u8 = 2;

/// How a task ended without a value.
pub(crate) enum JoinErrorKind {
    Panic(Box<dyn Any + Send>),
    Cancelled,
    /// Spawned by a coroutine of a runtime that was shutting down: never started.
    NotStarted,
}

/// A spawned coroutine.
pub(crate) struct Task {
    pub id: u64,
    pub name: Option<Box<str>>,
    /// The runtime this task belongs to.
    pub rt: Arc<worker::Shared>,
    /// The worker that runs it, or [`UNSTARTED`].
    pub owner: AtomicUsize,
    pub park: AtomicU8,
    pub sleeping: AtomicBool,
    pub wait_seq: AtomicU64,
    pub cancelled: AtomicBool,
    /// Set once a cancellation has started unwinding the task: it ends cancelled, whatever it
    /// catches.
    pub unwound: AtomicBool,
    /// Slot in its worker's registry of live tasks (owner thread only).
    pub slot: AtomicUsize,
    /// The deadline of the wait it suspends for ([`Action::Park`] timed, [`Action::Sleep`]):
    /// set by the task, read by its worker as it settles it (running worker only).
    pub deadline: Cell<Option<Instant>>,
    /// The coroutine's yielder, set when it starts (running worker only).
    pub yielder: Cell<*const Yielder<(), Action>>,
    /// What the layers below `sched` touch of the task (its no-preempt depth); the ground
    /// floor's `current` points here while the task runs.
    pub header: crate::ground::TaskHeader,
    /// Set while the coroutine is switched out from inside the preemption handler.
    pub in_handler: AtomicBool,
    /// Whether it last switched out by preemption (running worker only): it is likely to run
    /// until interrupted again, so its worker arms its alarm before resuming it.
    pub preempted: Cell<bool>,
    /// While the coroutine runs inside [`preemptible`](crate::preempt::preemptible): the
    /// canonical frame address of the region's closure, where the handler's stack walk ends;
    /// 0 outside a region. Written and read on the task's own thread only.
    pub region_cfa: AtomicUsize,
    /// The type name of the closure it was spawned with, for hog reports.
    pub entry: Cell<fn() -> &'static str>,
    /// The coroutine's stack, `[lo, hi)`, once it has one.
    pub stack_lo: AtomicUsize,
    pub stack_hi: AtomicUsize,
    /// How often this task was preempted.
    pub stats: crate::sched::stats::TaskCounters,
    /// Its `coroutine_local!` values (running worker only), made on first use.
    pub locals: UnsafeCell<Option<Box<super::coroutine_local::Locals>>>,
    /// The stack size its coroutine gets when it first runs.
    pub stack_size: usize,
    /// Whether its spawner declared it free of thread affinity ([`Builder::migratable`]): its
    /// worker may then hand it to another at a safe point (`worker::settle`). Set before the
    /// task is queued; read by the worker that runs it.
    ///
    /// [`Builder::migratable`]: crate::Builder::migratable
    pub migratable: AtomicBool,
    /// How many times it resumed on another worker than the one it last ran on.
    pub moves: AtomicU64,
    /// When it was last queued, in its queuing worker's count of queued tasks (runtimes with
    /// two or more workers): a worker runs the older of its two queues' first tasks (see
    /// `worker::steal`). Written by whoever queues it, read by the worker that pops it.
    pub stamp: AtomicU64,
    /// What the task runs, until its coroutine is made: a task gets a stack only when a worker
    /// first runs it, so a storm of spawned tasks reuses a few warm stacks.
    body: UnsafeCell<Option<Body>>,
    join_state: AtomicU8,
    outcome: UnsafeCell<Option<Outcome>>,
    joiner: UnsafeCell<Option<super::park::Unparker>>,
    coroutine: UnsafeCell<Option<Coroutine<(), Action, ()>>>,
}

// SAFETY: `body`, `coroutine` and `yielder` are touched only by the one worker that holds the
// task in its run queue (before the first run, whichever worker dequeues it; after, its owner,
// which changes only while the task waits in a locked stealable queue: see
// `worker::settle`), never concurrently; the coroutine is made on the worker that first runs
// it. `outcome` and
// `joiner` are handed between the task and its single joiner by `join_state` (see there).
// Every other field is atomic.
unsafe impl Send for Task {}
// SAFETY: as above.
unsafe impl Sync for Task {}

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

    pub(crate) fn new(
        id: u64,
        name: Option<Box<str>>,
        entry: fn() -> &'static str,
        rt: Arc<worker::Shared>,
        stack_size: usize,
        body: Body,
    ) -> Task {
        Task {
            id,
            name,
            rt,
            owner: AtomicUsize::new(UNSTARTED),
            park: AtomicU8::new(EMPTY),
            sleeping: AtomicBool::new(false),
            wait_seq: AtomicU64::new(0),
            cancelled: AtomicBool::new(false),
            unwound: AtomicBool::new(false),
            slot: AtomicUsize::new(usize::MAX),
            deadline: Cell::new(None),
            yielder: Cell::new(std::ptr::null()),
            join_state: AtomicU8::new(RUNNING),
            outcome: UnsafeCell::new(None),
            joiner: UnsafeCell::new(None),
            header: crate::ground::TaskHeader::new(),
            in_handler: AtomicBool::new(false),
            preempted: Cell::new(false),
            region_cfa: AtomicUsize::new(0),
            entry: Cell::new(entry),
            stack_lo: AtomicUsize::new(0),
            stack_hi: AtomicUsize::new(0),
            stats: crate::sched::stats::TaskCounters::default(),
            locals: UnsafeCell::new(None),
            stack_size,
            migratable: AtomicBool::new(false),
            moves: AtomicU64::new(0),
            stamp: AtomicU64::new(0),
            body: UnsafeCell::new(Some(body)),
            coroutine: UnsafeCell::new(None),
        }
    }

    /// Makes a finished task new again in place, keeping its allocation and its runtime
    /// handle (no reference count is touched). Every field is named, so a field added to
    /// `Task` must be reset here too.
    pub(crate) fn reuse(
        &mut self,
        new_id: u64,
        new_name: Option<Box<str>>,
        new_entry: fn() -> &'static str,
        new_stack_size: usize,
        new_body: Body,
    ) {
        let Task {
            id,
            name,
            rt: _,
            owner,
            park,
            sleeping,
            wait_seq,
            cancelled,
            unwound,
            slot,
            deadline,
            yielder,
            header,
            in_handler,
            preempted,
            region_cfa,
            entry,
            stack_lo,
            stack_hi,
            stats,
            locals,
            stack_size,
            migratable,
            moves,
            stamp,
            body,
            join_state,
            outcome,
            joiner,
            coroutine,
        } = self;
        *id = new_id;
        *name = new_name;
        *owner.get_mut() = UNSTARTED;
        *park.get_mut() = EMPTY;
        *sleeping.get_mut() = false;
        *wait_seq.get_mut() = 0;
        *cancelled.get_mut() = false;
        *unwound.get_mut() = false;
        *slot.get_mut() = usize::MAX;
        deadline.set(None);
        yielder.set(std::ptr::null());
        *header.preempt_off.get_mut() = 1;
        *in_handler.get_mut() = false;
        preempted.set(false);
        *region_cfa.get_mut() = 0;
        entry.set(new_entry);
        *stack_lo.get_mut() = 0;
        *stack_hi.get_mut() = 0;
        stats.reset();
        *locals.get_mut() = None;
        *stack_size = new_stack_size;
        *migratable.get_mut() = false;
        *moves.get_mut() = 0;
        *stamp.get_mut() = 0;
        *body.get_mut() = Some(new_body);
        *join_state.get_mut() = RUNNING;
        *outcome.get_mut() = None;
        *joiner.get_mut() = None;
        *coroutine.get_mut() = None;
    }

    /// Drops what a finished task may still hold (its name, coroutine-locals buffer, a joiner's
    /// handle, an outcome nobody took) before it is kept for reuse.
    pub(crate) fn release_resources(&mut self) {
        self.name = None;
        *self.locals.get_mut() = None;
        *self.joiner.get_mut() = None;
        *self.outcome.get_mut() = None;
    }

    /// The task's body, until its coroutine takes it.
    ///
    /// # Safety
    ///
    /// As for [`Task::coroutine`].
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn body(&self) -> &mut Option<Body> {
        // SAFETY: the caller is the one worker running this task.
        unsafe { &mut *self.body.get() }
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

    /// Sets the park token; schedules the task if it was parked.
    pub(crate) fn unpark(self: &Arc<Self>) {
        if self.park.swap(NOTIFIED, Ordering::AcqRel) == PARKED {
            worker::schedule(self.clone());
        }
    }

    /// [`Task::unpark`] through an owned handle, which goes to the run queue as it is.
    pub(crate) fn unpark_owned(self: Arc<Self>) {
        if self.park.swap(NOTIFIED, Ordering::AcqRel) == PARKED {
            worker::schedule(self);
        }
    }

    /// Wakes a sleeping task early (for cancellation and shutdown).
    pub(crate) fn interrupt_sleep(self: &Arc<Self>) {
        if self.sleeping.swap(false, Ordering::AcqRel) {
            worker::schedule(self.clone());
        }
    }

    /// Asks the task to unwind at its next park, sleep or yield.
    pub(crate) fn cancel(self: &Arc<Self>) {
        self.cancelled.store(true, Ordering::Release);
        self.unpark();
        self.interrupt_sleep();
    }

    /// Delivers the task's outcome (once, from the task) and wakes its joiner if one waits.
    pub(crate) fn deliver(&self, outcome: Outcome) {
        // SAFETY: only the task writes the outcome, once, before DONE makes it the joiner's.
        unsafe { *self.outcome.get() = Some(outcome) };
        if self.join_state.swap(DONE, Ordering::AcqRel) == WAITING {
            // SAFETY: WAITING means the joiner wrote its unparker and no longer touches it.
            if let Some(joiner) = unsafe { (*self.joiner.get()).take() } {
                joiner.unpark_owned();
            }
        }
    }

    /// Whether the task has delivered its outcome.
    pub(crate) fn is_done(&self) -> bool {
        self.join_state.load(Ordering::Acquire) == DONE
    }

    /// Waits (parking) until the task is done. `park` is the wait itself, so callers choose
    /// whether a cancellation of the waiter unwinds. Only one waiter at a time.
    pub(crate) fn wait_done(&self, mut park: impl FnMut()) {
        loop {
            match self.join_state.load(Ordering::Acquire) {
                DONE => return,
                RUNNING => {
                    // SAFETY: while RUNNING the joiner slot is ours.
                    unsafe { *self.joiner.get() = Some(super::park::current_unparker()) };
                    if self
                        .join_state
                        .compare_exchange(RUNNING, WAITING, Ordering::AcqRel, Ordering::Acquire)
                        .is_err()
                    {
                        return; // done meanwhile; the unparker we left is dropped with the task
                    }
                }
                _ => {} // already registered: a spurious wake-up
            }
            park();
        }
    }

    /// Takes the outcome of a done task (once).
    pub(crate) fn take_outcome(&self) -> Outcome {
        assert!(self.is_done(), "the outcome of a task is taken once it is done");
        // SAFETY: DONE makes the outcome the (single) joiner's; the task no longer touches it.
        unsafe { (*self.outcome.get()).take() }.expect("a task's outcome is taken once")
    }
}
