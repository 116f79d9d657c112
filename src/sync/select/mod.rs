//! Waiting on several channel operations at once: the [`Select`] builder and the
//! [`select!`](crate::select) macro that expands to it, after crossbeam-channel's.
//!
//! A selection tries every operation once, starting from a random arm so that no arm is
//! favoured (or from the first, when biased). If none is ready it registers one [`Unparker`]
//! with every channel involved (as a *watcher* of the side it wants), tries every operation
//! again (a change that happened before the registration is seen by this second pass, one after
//! it wakes the selector), then parks; each wakeup is followed by another pass. A selection
//! that may not wait (`try_select`, a `default` arm, a zero timeout) still makes that second
//! pass before it gives up, as crossbeam does, so an operation that was ready during the whole
//! selection is not missed while another thread empties one channel and fills the next.
//! Channels wake all their watchers on every change that may make an operation ready. The
//! watchers are unregistered by a drop guard, so a selection cut short by an unwinding park
//! leaves no trace.
//!
//! A receive completes when it is attempted; a send is *granted* (room reserved, see
//! `chan/select_side.rs`) and completes once the caller supplies the value through the
//! [`SelectedOperation`], which never waits. So once a selection returns, its operation has
//! happened or is bound to, and no other has.

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::channel::{Receiver, RecvError, SendError, Sender};
use super::error::{ReadyTimeoutError, SelectTimeoutError, TryReadyError, TrySelectError};
use super::waiters::{deadline_after, expired};
use crate::sched::park::{Unparker, current_unparker, park_until};

mod op;

pub use op::SelectedOperation;
#[doc(hidden)]
pub use op::{SendGuard, Token};

/// Which operation a watcher waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Recv,
    Send,
}

/// A waiting selection's send arm that receivers may claim (rendezvous channels).
#[derive(Clone, Copy)]
pub(crate) struct Offer {
    pub(crate) ctx: *const SelectCtx,
    /// The arm's position in the selection.
    pub(crate) arm: usize,
}

// SAFETY: the context is only reached through its atomic state, while its selection keeps the
// offer registered (and so keeps the context alive); `SelectCtx` is `Sync`.
unsafe impl Send for Offer {}

/// A blocked selection's state, claimable by receivers: [`BUSY`] while the selection runs a
/// pass (nobody may claim it), [`WAITING`] while it parks, else the position of the claimed
/// arm plus [`CLAIMED`].
pub(crate) struct SelectCtx {
    state: AtomicUsize,
}

const BUSY: usize = 0;
const WAITING: usize = 1;
const CLAIMED: usize = 2;

impl SelectCtx {
    /// Claims arm `arm` of a waiting selection; fails if it is not waiting.
    pub(crate) fn try_claim(&self, arm: usize) -> bool {
        self.state
            .compare_exchange(WAITING, arm + CLAIMED, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// Whether the selection waits (and may be claimed).
    pub(crate) fn is_waiting(&self) -> bool {
        self.state.load(Ordering::Acquire) == WAITING
    }
}

/// A value moved to the heap with its type erased: what a selected receive carries to
/// [`SelectedOperation::recv`].
pub(crate) struct ErasedBox {
    ptr: *mut (),
    drop: unsafe fn(*mut ()),
}

// SAFETY: made only from an `Option<T>` of a channel's `T`, which is `Send` wherever the
// channel's ends are (see `Sender`'s and `Receiver`'s `Send`).
unsafe impl Send for ErasedBox {}

impl ErasedBox {
    pub(crate) fn new<T>(v: Option<T>) -> Self {
        /// # Safety
        ///
        /// `p` came from `Box::<Option<T>>::into_raw` and is dropped once.
        unsafe fn drop_box<T>(p: *mut ()) {
            // SAFETY: guaranteed by the caller.
            drop(unsafe { Box::from_raw(p.cast::<Option<T>>()) });
        }
        ErasedBox {
            ptr: Box::into_raw(Box::new(v)).cast(),
            drop: drop_box::<T>,
        }
    }

    /// # Safety
    ///
    /// `T` must be the type the box was made with.
    pub(crate) unsafe fn into_inner<T>(self) -> Option<T> {
        let me = std::mem::ManuallyDrop::new(self);
        // SAFETY: guaranteed by the caller; `me` is not dropped, so the box is freed once.
        *unsafe { Box::from_raw(me.ptr.cast::<Option<T>>()) }
    }
}

impl Drop for ErasedBox {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `new`, with `drop` made for its type; dropped once.
        unsafe { (self.drop)(self.ptr) }
    }
}

/// A channel a [`Select`] can use, with its element type erased.
pub(crate) trait Watch {
    /// Unparks `unparker` whenever an operation on `side` may have become possible (or the
    /// channel got disconnected), until [`Watch::unwatch`].
    fn watch(&self, side: Side, id: u64, unparker: &Unparker, offer: Option<Offer>);
    fn unwatch(&self, side: Side, id: u64);
    /// Receives without waiting (except for a claimed selection's value), for the selection
    /// `id`: `None` if not ready; else the value (or `None`, disconnected) is written into
    /// `slot`, or returned boxed when `slot` is null.
    ///
    /// # Safety
    ///
    /// `slot` is null or points to an `Option<T>` of the channel's `T` that nobody else
    /// accesses during the call.
    unsafe fn try_recv_into(&self, slot: *mut (), id: u64) -> Option<Option<ErasedBox>>;
    /// Grants the selection `id` a send (`Outcome::Sending`), or reports the channel
    /// disconnected (`Outcome::Disconnected`); `None` if not ready.
    fn try_reserve_send(&self, id: u64) -> Option<Outcome>;
    /// Whether the operation on `side` would complete (or fail) now.
    fn is_ready(&self, side: Side, id: u64) -> bool;
    /// Takes the value a sender left for the selection `id`, whose receive arm it claimed, into
    /// `slot` (or boxed, if `slot` is null), waiting while a selecting sender computes it;
    /// `None` if that sender gave up.
    ///
    /// # Safety
    ///
    /// As [`Watch::try_recv_into`].
    unsafe fn take_delivery(&self, id: u64, slot: *mut ()) -> Option<Option<ErasedBox>>;
    /// The selection `id` unwinds after a sender claimed its receive: the value goes back to
    /// the channel.
    fn return_delivery(&self, id: u64);
    /// The selection `id` parks again with a send arm on offer: on a rendezvous channel,
    /// selections waiting to receive are woken to claim it (they may have found it busy).
    fn offer_again(&self, id: u64);
    /// When a timer channel's next message is due (`None` for other channels).
    fn next_due(&self) -> Option<Instant>;
    /// Gives back a granted send that will not be completed.
    fn abandon(&self, grant: Grant);
    /// The channel's identity.
    fn addr(&self) -> *const ();
}

struct Arm<'a> {
    chan: &'a dyn Watch,
    side: Side,
    /// The index [`Select::send`]/[`Select::recv`] returned.
    index: usize,
    /// Receives only: an `Option<T>` the value goes to (`select!`), or null (boxed).
    slot: *mut (),
}

/// Seeds the threads' generators of first arms.
static SEED: AtomicU64 = AtomicU64::new(0x9E37_79B9_7F4A_7C15);

thread_local! {
    /// This thread's xorshift state for the first arm a selection tries (a counter shared by
    /// all threads would be fair per process, not per selection: two selections that take
    /// turns would each see every other value, and always start at the same arm).
    static RNG: Cell<u64> = const { Cell::new(0) };
}

/// A random index below `n` (`n > 0`). Never inlined: its thread-local's address must not be
/// kept across a migratable coroutine's switch (see `crate::ground`).
#[inline(never)]
fn random_below(n: usize) -> usize {
    RNG.with(|rng| {
        let mut x = rng.get();
        if x == 0 {
            x = SEED.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed) | 1;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        rng.set(x);
        ((x >> 32) as usize * n) >> 32
    })
}
/// Selection ids, unique across all selections (0 is none).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// What a selection looks for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Goal {
    /// Completes an operation.
    Select,
    /// Finds a ready operation without performing it.
    Ready,
}

/// How a selection's send was granted; what completes it (or gives it back).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Grant {
    /// Room was reserved (`State::reserved`).
    Reserved,
    /// A receiver claimed the send of the selection of this id and waits for its value.
    ClaimedBy(u64),
    /// The selection claimed the receive of the selection of this id, which waits for the
    /// value (rendezvous channels).
    To(u64),
}

/// What a pass found, for the arm at a position.
pub(crate) enum Outcome {
    Ready,
    Received(Option<ErasedBox>),
    Sending(Grant),
    Disconnected,
}

/// Waits on several channel operations, with crossbeam-channel's `Select` API: add operations
/// with [`send`](Select::send) and [`recv`](Select::recv) (each returns its index), then
/// [`select`](Select::select) one, which returns a [`SelectedOperation`] to complete with the
/// same channel end, or look for a ready one with [`ready`](Select::ready). A `Select` can be
/// used again, and operations [removed](Select::remove).
///
/// ```
/// use sigcoro::sync::{Select, channel};
///
/// let (tx1, rx1) = channel::unbounded::<i32>();
/// let (tx2, rx2) = channel::bounded::<&str>(1);
/// tx1.send(7).unwrap();
///
/// let mut sel = Select::new();
/// let r = sel.recv(&rx1);
/// let s = sel.send(&tx2);
/// let op = sel.select();
/// match op.index() {
///     i if i == r => assert_eq!(op.recv(&rx1), Ok(7)),
///     i if i == s => {
///         op.send(&tx2, "hello").unwrap();
///         assert_eq!(rx2.recv(), Ok("hello"));
///     }
///     _ => unreachable!(),
/// }
/// ```
pub struct Select<'a> {
    arms: Vec<Arm<'a>>,
    next_index: usize,
    biased: bool,
    _ends: PhantomData<&'a ()>,
}

impl<'a> Select<'a> {
    /// An empty selection that picks fairly among ready operations.
    pub fn new() -> Self {
        Select {
            arms: Vec::new(),
            next_index: 0,
            biased: false,
            _ends: PhantomData,
        }
    }

    /// An empty selection that, when several operations are ready, picks the one added first.
    pub fn new_biased() -> Self {
        Select {
            biased: true,
            ..Select::new()
        }
    }

    /// Adds a receive from `r`; returns the operation's index.
    pub fn recv<T>(&mut self, r: &'a Receiver<T>) -> usize {
        self.push(&*r.chan, Side::Recv, std::ptr::null_mut())
    }

    /// Adds a send to `s`; returns the operation's index. The value is given once the
    /// operation is selected, to [`SelectedOperation::send`].
    pub fn send<T>(&mut self, s: &'a Sender<T>) -> usize {
        self.push(&*s.chan, Side::Send, std::ptr::null_mut())
    }

    /// Adds a receive whose value goes to `slot` (for [`select!`](crate::select)).
    #[doc(hidden)]
    pub fn recv_into<T>(&mut self, r: &'a Receiver<T>, slot: &'a mut Option<T>) -> usize {
        self.push(&*r.chan, Side::Recv, std::ptr::from_mut(slot).cast())
    }

    fn push(&mut self, chan: &'a dyn Watch, side: Side, slot: *mut ()) -> usize {
        let index = self.next_index;
        self.next_index += 1;
        self.arms.push(Arm {
            chan,
            side,
            index,
            slot,
        });
        index
    }

    /// Removes the operation of index `index`.
    ///
    /// # Panics
    ///
    /// If there is no such operation (never added, or removed already).
    pub fn remove(&mut self, index: usize) {
        let pos = self.arms.iter().position(|a| a.index == index);
        let pos = pos.unwrap_or_else(|| panic!("no operation of index {index} in this Select"));
        self.arms.remove(pos);
    }

    /// Completes an operation that is ready now (or fails if there is none). A selected send
    /// still needs its value: see [`SelectedOperation`].
    pub fn try_select(&mut self) -> Result<SelectedOperation<'a>, TrySelectError> {
        self.select_until(Some(Instant::now()), true).ok_or(TrySelectError)
    }

    /// Waits until an operation is selected. With no operation it waits forever.
    pub fn select(&mut self) -> SelectedOperation<'a> {
        self.select_until(None, false)
            .expect("a blocking selection selects an operation")
    }

    /// Waits at most `timeout` for an operation to be selected.
    pub fn select_timeout(&mut self, timeout: Duration) -> Result<SelectedOperation<'a>, SelectTimeoutError> {
        self.select_until(deadline_after(timeout), false)
            .ok_or(SelectTimeoutError)
    }

    /// Waits until `deadline` at the latest for an operation to be selected.
    pub fn select_deadline(&mut self, deadline: Instant) -> Result<SelectedOperation<'a>, SelectTimeoutError> {
        self.select_until(Some(deadline), false).ok_or(SelectTimeoutError)
    }

    /// The index of an operation that is ready now (it would complete, or fail because its
    /// channel is disconnected), without performing it. Another thread may take the chance
    /// before the caller does.
    pub fn try_ready(&mut self) -> Result<usize, TryReadyError> {
        self.ready_until(Some(Instant::now()), true).ok_or(TryReadyError)
    }

    /// Waits until an operation is ready and returns its index (see [`Select::try_ready`]).
    pub fn ready(&mut self) -> usize {
        self.ready_until(None, false)
            .expect("a blocking selection finds a ready operation")
    }

    /// Waits at most `timeout` for an operation to be ready.
    pub fn ready_timeout(&mut self, timeout: Duration) -> Result<usize, ReadyTimeoutError> {
        self.ready_until(deadline_after(timeout), false)
            .ok_or(ReadyTimeoutError)
    }

    /// Waits until `deadline` at the latest for an operation to be ready.
    pub fn ready_deadline(&mut self, deadline: Instant) -> Result<usize, ReadyTimeoutError> {
        self.ready_until(Some(deadline), false).ok_or(ReadyTimeoutError)
    }

    fn ready_until(&mut self, deadline: Option<Instant>, never_wait: bool) -> Option<usize> {
        crate::checkpoint();
        let (pos, _) = self.run(Goal::Ready, deadline, never_wait)?;
        Some(self.arms[pos].index)
    }

    fn select_until(&mut self, deadline: Option<Instant>, never_wait: bool) -> Option<SelectedOperation<'a>> {
        crate::checkpoint();
        let (pos, outcome) = self.run(Goal::Select, deadline, never_wait)?;
        let arm = &self.arms[pos];
        Some(SelectedOperation::new(arm.index, arm.chan, outcome))
    }

    /// Runs the selection as [`select!`](crate::select) does: never waiting (`Try`), up to a
    /// timeout, or until an operation completes.
    #[doc(hidden)]
    pub fn run_macro(&mut self, mode: Mode) -> Option<(usize, Token)> {
        crate::checkpoint();
        let (deadline, never_wait) = match mode {
            Mode::Block => (None, false),
            Mode::Try => (None, true),
            Mode::Timeout(t) => (deadline_after(t), false),
        };
        let (pos, outcome) = self.run(Goal::Select, deadline, never_wait)?;
        let arm = &self.arms[pos];
        Some((arm.index, Token::new(arm.chan, outcome)))
    }

    /// The selection loop; returns the position of the arm and what it found there.
    fn run(&self, goal: Goal, deadline: Option<Instant>, never_wait: bool) -> Option<(usize, Outcome)> {
        let start = match self.arms.len() {
            0 | 1 => 0,
            _ if self.biased => 0,
            n => random_below(n),
        };
        if let Some(found) = self.attempt_all(goal, start, 0) {
            return Some(found);
        }
        if never_wait || expired(deadline) {
            // The second pass (see the module's comment).
            return self.attempt_all(goal, start, 0);
        }
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let unparker = current_unparker();
        let ctx = SelectCtx {
            state: AtomicUsize::new(BUSY),
        };
        let _unwatch = Unwatch { arms: &self.arms, id };
        let offers = goal == Goal::Select;
        for (pos, arm) in self.arms.iter().enumerate() {
            let offer = offers.then_some(Offer { ctx: &ctx, arm: pos });
            arm.chan.watch(arm.side, id, &unparker, offer);
        }
        // Dropped before `_unwatch`: a claim that an unwinding park leaves is given back.
        let _claims = ClaimGuard {
            ctx: &ctx,
            arms: &self.arms,
            id,
        };
        loop {
            if let Some(found) = self.attempt_all(goal, start, id) {
                return Some(found);
            }
            if expired(deadline) {
                return None;
            }
            ctx.state.store(WAITING, Ordering::Release);
            if offers {
                for arm in self.arms.iter().filter(|a| a.side == Side::Send) {
                    arm.chan.offer_again(id);
                }
            }
            park_until(self.park_deadline(deadline), "a channel select (sigcoro::select!)");
            if let Err(state) = ctx
                .state
                .compare_exchange(WAITING, BUSY, Ordering::Acquire, Ordering::Acquire)
            {
                ctx.state.store(BUSY, Ordering::Relaxed); // taken: the guard leaves it
                let pos = state - CLAIMED;
                let arm = &self.arms[pos];
                let outcome = match arm.side {
                    // A receiver claimed a send arm and waits for its value.
                    Side::Send => Outcome::Sending(Grant::ClaimedBy(id)),
                    // A sender claimed a receive arm and left its value, or will.
                    // SAFETY: as in `attempt_all`.
                    Side::Recv => match unsafe { arm.chan.take_delivery(id, arm.slot) } {
                        Some(value) => Outcome::Received(value),
                        None => continue, // the selecting sender gave up: select again
                    },
                };
                return Some((pos, outcome));
            }
        }
    }

    /// `deadline`, or earlier if a timer channel's message is due before it.
    fn park_deadline(&self, deadline: Option<Instant>) -> Option<Instant> {
        self.arms
            .iter()
            .filter(|a| a.side == Side::Recv)
            .filter_map(|a| a.chan.next_due())
            .chain(deadline)
            .min()
    }

    fn attempt_all(&self, goal: Goal, start: usize, id: u64) -> Option<(usize, Outcome)> {
        let n = self.arms.len();
        (0..n).map(|k| (start + k) % n).find_map(|pos| {
            let arm = &self.arms[pos];
            let found = match (goal, arm.side) {
                (Goal::Ready, side) => arm.chan.is_ready(side, id).then_some(Outcome::Ready),
                // SAFETY: `slot` is null or was made by `recv_into` from a `&'a mut Option<T>`
                // of the channel's `T`, which this selection holds exclusively.
                (Goal::Select, Side::Recv) => unsafe { arm.chan.try_recv_into(arm.slot, id) }.map(Outcome::Received),
                (Goal::Select, Side::Send) => arm.chan.try_reserve_send(id),
            };
            #[cfg(test)]
            if found.is_none() {
                tests::after_failed_attempt();
            }
            found.map(|o| (pos, o))
        })
    }
}

impl Default for Select<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Select<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Select")
            .field("operations", &self.arms.len())
            .field("biased", &self.biased)
            .finish()
    }
}

/// Unregisters a selection's watchers when it ends, however it ends.
struct Unwatch<'s, 'a> {
    arms: &'s [Arm<'a>],
    id: u64,
}

impl Drop for Unwatch<'_, '_> {
    fn drop(&mut self) {
        for arm in self.arms {
            arm.chan.unwatch(arm.side, self.id);
        }
    }
}

/// Gives back what a claim brought a selection that unwinds before taking it: the value a
/// sender left (back to the channel), or the send a receiver waits for (it is released).
struct ClaimGuard<'s, 'a> {
    ctx: &'s SelectCtx,
    arms: &'s [Arm<'a>],
    id: u64,
}

impl Drop for ClaimGuard<'_, '_> {
    fn drop(&mut self) {
        // No claim can come after this: it needs the state `WAITING`.
        let state = self.ctx.state.swap(BUSY, Ordering::Acquire);
        if state < CLAIMED {
            return;
        }
        let arm = &self.arms[state - CLAIMED];
        match arm.side {
            Side::Send => arm.chan.abandon(Grant::ClaimedBy(self.id)),
            Side::Recv => arm.chan.return_delivery(self.id),
        }
    }
}

/// How long a selection may wait (what [`select!`](crate::select) passes to its selection).
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Until an operation completes.
    Block,
    /// Not at all.
    Try,
    /// At most this long.
    Timeout(Duration),
}

/// The outcome of a receive arm of [`select!`](crate::select).
#[doc(hidden)]
pub fn recv_result<T>(slot: Option<T>) -> Result<T, RecvError> {
    slot.ok_or(RecvError)
}

/// The error a send arm of [`select!`](crate::select) gives for `value` when disconnected.
#[doc(hidden)]
pub fn send_error<T>(value: T) -> Result<(), SendError<T>> {
    Err(SendError(value))
}

#[cfg(test)]
mod tests;
