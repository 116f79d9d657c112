//! The channels' waiter list: intrusive, FIFO, grant-style.
//!
//! A blocked sender or receiver puts a [`Node`] on its own stack and links it into the
//! channel's list under the channel's lock; the node holds who to wake and a slot for the value
//! (a blocked sender's value, or the one a sender hands a blocked receiver). Whoever completes
//! the operation does so under the lock: it unlinks the node, moves the value into or out of
//! the slot, marks the node `DONE` with a release store and wakes its owner if it parked. The
//! owner sees `DONE` with an acquire load and takes the outcome from its slot without locking
//! again. An owner that gives up (timeout, cancellation) takes the lock: a node not yet done is
//! still linked and is unlinked then; a done one is not touched by anyone else any more.
//!
//! **Spinning.** A coroutine first yields once instead of parking: when its peer runs on the
//! same worker (a ping-pong, a request and its reply) the answer usually comes within that one
//! round of the run queue, and both the park and the unpark are saved (they cost several locked
//! instructions in the scheduler); a completer that finds the node still `SPINNING` wakes
//! nobody. A receiver on a buffered channel spins before it even links its node (the channel's
//! spinner slot, see `chan`); other waiters link theirs, then spin. A yield sends the waiter to
//! the back of the run queue, whereas a woken coroutine runs next, so on a busy worker spinning
//! would add a round of the queue to the latency: a coroutine spins only when at most one other
//! task (its likely peer) is queued. An OS thread spins a few microseconds (pauses, then yields
//! of its time slice) before it parks, as crossbeam's waiters do: a value that comes meanwhile
//! costs no futex sleep and wake.
//!
//! **No reference counts per wait.** A coroutine's node holds a raw pointer to its task, valid
//! while the node is linked (the task waits on it, and leaves only under the lock). A completer
//! on the waiter's own worker thread wakes it through that pointer after unlocking, with
//! preemption still held off: the waiter cannot run (and end) before this thread goes back to
//! its scheduler. A completer on another thread takes a counted handle while the node is still
//! linked.

use std::cell::{Cell, UnsafeCell};
use std::marker::{PhantomData, PhantomPinned};
use std::mem::ManuallyDrop;
use std::ptr::{self, NonNull};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Instant;

use crate::ground::Critical;
use crate::sched::park::{Unparker, park_until, wait};
use crate::sched::task::{Action, Task};
use crate::sched::worker;
use crate::sync::waiters::expired;

/// Node states. `SPINNING`: linked, its owner polls it (a completer wakes nobody). `PARKED`:
/// linked, its owner parks (a completer wakes it). `DONE`: completed. Only the owner moves
/// `SPINNING` to `PARKED`; only a completer, under the lock, stores `DONE`.
const SPINNING: u8 = 0;
const PARKED: u8 = 1;
const DONE: u8 = 2;

/// How long an OS thread spins before it parks: rounds of growing pauses, then of yields.
const THREAD_SPIN_ROUNDS: u32 = 10;

/// An id of the running worker thread (its `Local`, unique among live workers), or 0 on a
/// thread that is not a worker.
#[inline(always)]
fn thread_tag() -> usize {
    worker::local().map_or(0, |l| ptr::from_ref(l) as usize)
}

/// Whether a coroutine of `local` that is about to wait should spin (yield once) first: when at
/// most one other task is queued, its likely peer. With more, a yield would wait a whole round
/// of them.
#[inline(always)]
fn worth_spinning(local: &worker::Local) -> bool {
    local.others_queued() <= 1
}

/// The running coroutine, if it may spin before waiting (see [`worth_spinning`]).
#[inline(always)]
pub(super) fn spinning_task() -> Option<&'static Task> {
    let local = worker::local()?;
    let task = crate::sched::park::current_task()?;
    worth_spinning(local).then_some(task)
}

/// Yields the running coroutine `task` once to the rest of its run queue: a waiter's spin. A
/// cancellation point.
#[inline(always)]
pub(super) fn yield_once(task: &Task) {
    wait(task, Action::Yield);
}

/// Who waits on a node.
enum Who {
    /// A coroutine, of the worker with tag `thread` (never 0).
    Task { task: NonNull<Task>, thread: usize },
    /// An OS thread outside any coroutine.
    /// (Shared, so that a completer under the lock takes a count instead of allocating.)
    Thread(Arc<std::thread::Thread>),
}

/// A wakeup to run once the channel's lock is released, in one word: it moves through
/// registers (as a two-word enum it could go through the stack, written as two words and read
/// back as one 16-byte load, a failed store-to-load forward).
///
/// The word is 0 for none, else the address of a task or of a thread handle (aligned to 8, so
/// the low bits are free) with a tag in the low bits: [`LOCAL`], a coroutine of this thread's
/// worker by raw pointer (see the module's comment); [`OWNED_TASK`], a coroutine of another
/// thread, and [`THREAD`], an OS thread, each with a count of its `Arc` that the wake gives up.
/// Not `Send`: a `LOCAL` wake runs on the thread that made it.
#[must_use = "a wakeup must be run"]
pub(super) struct Wake(usize, PhantomData<*const ()>);

const LOCAL: usize = 0;
const OWNED_TASK: usize = 1;
const THREAD: usize = 2;
const TAG_BITS: usize = 3;

const _: () = assert!(align_of::<Task>() > TAG_BITS && align_of::<std::thread::Thread>() > TAG_BITS);

impl Wake {
    /// Nobody to wake.
    pub(super) const NONE: Wake = Wake(0, PhantomData);

    fn local(task: NonNull<Task>) -> Wake {
        Wake(task.as_ptr() as usize | LOCAL, PhantomData)
    }

    fn owned_task(task: Arc<Task>) -> Wake {
        Wake(Arc::into_raw(task) as usize | OWNED_TASK, PhantomData)
    }

    fn thread(thread: Arc<std::thread::Thread>) -> Wake {
        Wake(Arc::into_raw(thread) as usize | THREAD, PhantomData)
    }

    /// Runs the wakeup. `off` proves preemption is still held off since the node was
    /// completed: a [`LOCAL`] task cannot have run meanwhile.
    #[inline(always)]
    pub(super) fn run(self, off: &Critical) {
        if self.0 != 0 {
            self.run_slow(off);
        } else {
            std::mem::forget(self); // nothing to give up
        }
    }

    #[inline(never)]
    fn run_slow(self, _off: &Critical) {
        let word = ManuallyDrop::new(self).0;
        let ptr = word & !TAG_BITS;
        match word & TAG_BITS {
            LOCAL => {
                // The pointer came from the `Arc` its worker holds while the task is alive
                // (`ground::current`), and the task is alive: it waits on this thread's worker
                // (parked, or about to) and cannot run before this thread returns to its
                // scheduler, as preemption is off since its node was completed.
                // SAFETY: as just said; the handle is never dropped, so no count moves.
                let u = ManuallyDrop::new(Unparker::Task(unsafe { Arc::from_raw(ptr as *const Task) }));
                u.unpark();
            }
            // SAFETY: made by `owned_task` from a count of our own, given up here.
            OWNED_TASK => Unparker::Task(unsafe { Arc::from_raw(ptr as *const Task) }).unpark(),
            // SAFETY: made by `thread` from a count of our own, given up here.
            THREAD => unsafe { Arc::from_raw(ptr as *const std::thread::Thread) }.unpark(),
            _ => unreachable!("no wake has tag 3"),
        }
    }
}

impl Drop for Wake {
    /// A wakeup dropped unrun (never on purpose) gives up what it owns, as the handles would.
    #[inline]
    fn drop(&mut self) {
        let ptr = self.0 & !TAG_BITS;
        match self.0 & TAG_BITS {
            // SAFETY: made by `owned_task` from a count of our own.
            OWNED_TASK => drop(unsafe { Arc::from_raw(ptr as *const Task) }),
            // SAFETY: made by `thread` from a count of our own.
            THREAD => drop(unsafe { Arc::from_raw(ptr as *const std::thread::Thread) }),
            _ => {}
        }
    }
}

/// One blocked operation. Lives on its owner's stack, pinned, while it is linked.
pub(super) struct Node<T> {
    prev: Cell<*const Node<T>>,
    next: Cell<*const Node<T>>,
    who: Who,
    state: AtomicU8,
    /// Before `DONE`: a blocked sender's value (its completer takes it). After: a value handed
    /// to a receiver (`None`: disconnected), or a sender's value that was not taken
    /// (disconnected, `None`: delivered). Touched only under the lock before `DONE`, only by the
    /// owner after.
    slot: UnsafeCell<Option<T>>,
    _pinned: PhantomPinned,
}

impl<T> Node<T> {
    /// A node for the running coroutine or thread, with `value` in its slot.
    #[inline]
    pub(super) fn new(value: Option<T>) -> Self {
        let local = worker::local();
        let (who, state) = match local.and_then(|l| Some((l, crate::sched::park::current_task()?))) {
            Some((local, task)) => {
                let state = if worth_spinning(local) { SPINNING } else { PARKED };
                let who = Who::Task {
                    task: NonNull::from(task),
                    thread: ptr::from_ref(local) as usize,
                };
                (who, state)
            }
            None => (Who::Thread(Arc::new(std::thread::current())), SPINNING),
        };
        Node {
            prev: Cell::new(ptr::null()),
            next: Cell::new(ptr::null()),
            who,
            state: AtomicU8::new(state),
            slot: UnsafeCell::new(value),
            _pinned: PhantomPinned,
        }
    }

    /// A `SPINNING` node for `task`, the running coroutine, about to spin in a channel's
    /// spinner slot.
    #[inline(always)]
    pub(super) fn spinner(task: &Task) -> Self {
        Node {
            prev: Cell::new(ptr::null()),
            next: Cell::new(ptr::null()),
            who: Who::Task {
                task: NonNull::from(task),
                thread: thread_tag(),
            },
            state: AtomicU8::new(SPINNING),
            slot: UnsafeCell::new(None),
            _pinned: PhantomPinned,
        }
    }

    /// Its owner spun already (and nobody else reaches the node): it parks when it waits.
    #[inline(always)]
    pub(super) fn spun(&self) {
        if matches!(self.who, Who::Task { .. }) {
            self.state.store(PARKED, Ordering::Relaxed);
        }
    }

    /// Whether the operation was completed (and the node unlinked).
    #[inline]
    pub(super) fn is_done(&self) -> bool {
        self.state.load(Ordering::Acquire) == DONE
    }

    /// Waits, once linked, until the node is done (`true`) or `deadline` passes (`false`: the
    /// owner then leaves under the lock, and may find it done after all). May unwind (a
    /// cancelled coroutine): the caller's guard leaves then.
    ///
    /// The spinning part is inlined, so that the switch happens in the caller's frame.
    #[inline(always)]
    pub(super) fn wait(&self, deadline: Option<Instant>) -> bool {
        match &self.who {
            Who::Task { task, .. } if self.state.load(Ordering::Relaxed) == SPINNING => {
                // SAFETY: only the owner waits on its node, and a `Who::Task` owner is the
                // running task, which is alive while it runs.
                let task = unsafe { task.as_ref() };
                // Yield once to the rest of the run queue.
                wait(task, Action::Yield);
                if self.is_done() {
                    return true;
                }
            }
            Who::Task { .. } => {}
            Who::Thread(_) => {
                if self.spin_thread() {
                    return true;
                }
            }
        }
        self.park(deadline)
    }

    /// An OS thread spins a little (backing off, then yielding its time slice) before it parks:
    /// a value that comes within a few microseconds then costs no futex sleep and wake.
    #[inline(never)]
    fn spin_thread(&self) -> bool {
        for round in 0..THREAD_SPIN_ROUNDS {
            if self.is_done() {
                return true;
            }
            if round < 6 {
                for _ in 0..(1 << round) {
                    std::hint::spin_loop();
                }
            } else {
                std::thread::yield_now();
            }
        }
        self.is_done()
    }

    /// The slow part of [`Node::wait`]: park until done or `deadline`.
    #[inline(never)]
    fn park(&self, deadline: Option<Instant>) -> bool {
        // From now on a completer must wake us; it may be completing us right now.
        if self.state.load(Ordering::Relaxed) == SPINNING
            && self
                .state
                .compare_exchange(SPINNING, PARKED, Ordering::Acquire, Ordering::Acquire)
                .is_err()
        {
            return true;
        }
        loop {
            // Done before parking: completed while still `SPINNING` (so nobody unparks us), e.g.
            // while we were preempted between linking the node and waiting.
            if self.is_done() {
                return true;
            }
            if expired(deadline) {
                return false;
            }
            park_until(deadline, "a channel send or recv (sigcoro::sync::channel)");
        }
    }

    /// Takes what is in the slot. For the owner only, once nobody else can reach the node: it
    /// is done, or the owner unlinked it itself.
    #[inline(always)]
    pub(super) fn take(&self) -> Option<T> {
        // SAFETY: nobody else reaches the node any more: a completer stored `DONE` after its
        // last access (release ordering, paired with the owner's acquire load of it), or
        // the owner unlinked it under the lock before anyone completed it.
        unsafe { (*self.slot.get()).take() }
    }

    /// Completes the operation of a node just unlinked from its list, under the lock: `f` fills
    /// or empties the slot. Returns the wakeup to run after unlocking (none if it spins).
    ///
    /// # Safety
    ///
    /// `node` must have been unlinked by the caller, who still holds the lock of the list.
    #[inline(always)]
    pub(super) unsafe fn complete(node: NonNull<Node<T>>, f: impl FnOnce(&mut Option<T>)) -> Wake {
        // SAFETY: a node is alive while linked and until its owner saw it done or took the lock
        // after we release it: its owner is still waiting.
        let n = unsafe { node.as_ref() };
        // SAFETY: before `DONE`, the slot is only touched under the lock, which we hold.
        f(unsafe { &mut *n.slot.get() });
        match &n.who {
            Who::Task { task, thread } if *thread == thread_tag() => {
                // The owner is a coroutine of this thread, not running now: no race on `state`.
                let state = n.state.load(Ordering::Relaxed);
                n.state.store(DONE, Ordering::Release);
                if state == PARKED {
                    Wake::local(*task)
                } else {
                    Wake::NONE
                }
            }
            Who::Task { task, .. } => {
                if n.state
                    .compare_exchange(SPINNING, DONE, Ordering::Release, Ordering::Relaxed)
                    .is_ok()
                {
                    return Wake::NONE; // it will see `DONE` itself
                }
                // It parks, and cannot leave before we store `DONE`: the task is alive.
                // SAFETY: as in `Wake::run_slow`, the pointer came from the task's `Arc`; we take a
                // count of our own before `DONE` lets the task go.
                let task = unsafe {
                    Arc::increment_strong_count(task.as_ptr());
                    Arc::from_raw(task.as_ptr())
                };
                n.state.store(DONE, Ordering::Release);
                Wake::owned_task(task)
            }
            Who::Thread(t) => {
                if n.state
                    .compare_exchange(SPINNING, DONE, Ordering::Release, Ordering::Relaxed)
                    .is_ok()
                {
                    return Wake::NONE; // it will see `DONE` itself
                }
                let t = Arc::clone(t);
                n.state.store(DONE, Ordering::Release);
                Wake::thread(t)
            }
        }
    }
}

/// A FIFO list of linked nodes; used under its channel's lock only.
pub(super) struct WaitList<T> {
    head: *const Node<T>,
    tail: *const Node<T>,
    len: usize,
}

// SAFETY: the list is reached only under its channel's lock; the nodes it points to hold
// values of `T` (moved between threads, hence `T: Send`) and a task pointer or thread handle,
// both usable from any thread.
unsafe impl<T: Send> Send for WaitList<T> {}

impl<T> WaitList<T> {
    pub(super) const fn new() -> Self {
        WaitList {
            head: ptr::null(),
            tail: ptr::null(),
            len: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Links `node` at the back.
    ///
    /// # Safety
    ///
    /// `node` must not be linked already, must stay where it is until it is unlinked, and must be
    /// unlinked (by [`WaitList::pop_front`] or [`WaitList::unlink`]) before it is dropped.
    pub(super) unsafe fn push_back(&mut self, node: &Node<T>) {
        node.prev.set(self.tail);
        node.next.set(ptr::null());
        if self.tail.is_null() {
            self.head = node;
        } else {
            // SAFETY: linked nodes are alive (the caller's contract).
            unsafe { (*self.tail).next.set(node) };
        }
        self.tail = node;
        self.len += 1;
    }

    /// Unlinks and returns the oldest node.
    #[inline]
    pub(super) fn pop_front(&mut self) -> Option<NonNull<Node<T>>> {
        let head = NonNull::new(self.head.cast_mut())?;
        // SAFETY: linked nodes are alive (`push_back`'s contract), and the head is linked.
        let next = unsafe { head.as_ref() }.next.get();
        self.head = next;
        if next.is_null() {
            self.tail = ptr::null();
        } else {
            // SAFETY: as above; `next` is linked.
            unsafe { (*next).prev.set(ptr::null()) };
        }
        self.len -= 1;
        Some(head)
    }

    /// Unlinks `node`.
    ///
    /// # Safety
    ///
    /// `node` must be linked in this list.
    pub(super) unsafe fn unlink(&mut self, node: &Node<T>) {
        let (prev, next) = (node.prev.get(), node.next.get());
        if prev.is_null() {
            self.head = next;
        } else {
            // SAFETY: linked nodes are alive.
            unsafe { (*prev).next.set(next) };
        }
        if next.is_null() {
            self.tail = prev;
        } else {
            // SAFETY: linked nodes are alive.
            unsafe { (*next).prev.set(prev) };
        }
        self.len -= 1;
    }
}
