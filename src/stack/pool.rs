//! The per-thread pool of booted stacks.
//!
//! A stack is booted once (by the signal-stack trick, about ten syscalls) and then reused: a
//! finished coroutine's stack waits in its trampoline loop, so the next coroutine on it costs a
//! switch and no syscall. Each thread keeps up to [`POOL_CAP`] idle stacks per size; beyond that,
//! and when the thread exits, they go back to the process-wide reserve, which returns their
//! cold pages to the kernel once it holds more than it should keep warm. A thread keeps the
//! stacks of its [`POOL_CLASSES`] most recently used sizes: those of a size it has not used
//! for a while go back to the reserve too, which can then return whole reservations.

use super::boot;
use super::{Header, Stack, reserve, stride_for};
use std::cell::{Cell, UnsafeCell};
use std::io;
use std::ptr::NonNull;

/// Idle stacks a thread keeps per size; past that it hands half to the process at once.
const POOL_CAP: usize = 4096;
/// Stack sizes a thread keeps idle stacks of; the least recently used size goes past that.
const POOL_CLASSES: usize = 8;
/// The most stacks born in one go when the pool runs dry: one by the signal-stack trick, the
/// others cloned from its context (`context::birth`), so a large batch makes the trick rare.
const MAX_BATCH: usize = 256;
/// The most idle stacks adopted from the process in one go.
const MAX_ADOPT: usize = 1024;

/// What one thread's pool has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Stacks this thread had born: by the signal-stack trick, or cloned from its context.
    pub booted: u64,
    /// Stacks this thread took over from the process-wide reserve (given back by other threads).
    pub adopted: u64,
    /// Coroutines started on a stack taken from the pool.
    pub taken: u64,
    /// Idle stacks in this thread's pool now.
    pub idle: usize,
}

#[derive(Default)]
struct Pool {
    classes: Vec<(usize, Vec<Stack>)>,
    stats: PoolStats,
}

impl Pool {
    /// The idle stacks of `stride`, made the most recently used size. The common case is one
    /// size per thread, kept first.
    fn class(&mut self, stride: usize) -> &mut Vec<Stack> {
        match self.classes.iter().position(|(s, _)| *s == stride) {
            Some(0) => {}
            Some(i) => self.classes[..=i].rotate_right(1),
            None => {
                self.classes.insert(0, (stride, Vec::new()));
                if self.classes.len() > POOL_CLASSES {
                    let (_, stale) = self.classes.pop().expect("more than one class");
                    reserve::give_idle(stale);
                }
            }
        }
        &mut self.classes[0].1
    }

    fn refill(&mut self, stride: usize) -> io::Result<()> {
        // Adopted stacks were booted elsewhere: this thread still needs its fault handler and
        // an alternate signal stack for overflow reports.
        super::overflow::ensure_handler();
        let batch = ((self.stats.booted + self.stats.adopted) as usize / 8).clamp(1, MAX_BATCH);
        let mut got = Vec::with_capacity(batch);
        let adopted = reserve::take_idle(stride, MAX_ADOPT, &mut got);
        self.stats.adopted += adopted as u64;
        if adopted == 0 {
            boot::boot_stacks(stride, batch, &mut got)?;
            self.stats.booted += got.len() as u64;
        }
        self.class(stride).extend(got);
        Ok(())
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for (_, stacks) in self.classes.drain(..) {
            reserve::give_idle(stacks);
        }
        SPARE.with(|s| s.pool_gone.set(true));
        if let Some(spare) = take_spare() {
            reserve::give_idle([spare]);
        }
    }
}

thread_local! {
    static POOL: UnsafeCell<Pool> = UnsafeCell::new(Pool::default());
    static SPARE: Spare = const {
        Spare {
            stack: Cell::new(None),
            pool_gone: Cell::new(false),
            taken: Cell::new(0),
        }
    };
}

/// The stack given back last, kept beside the pool: a coroutine that ends and the next that
/// starts (a spawn and its join, a storm) trade it without a look into the pool. It has no
/// destructor, so reaching it costs no lazy-initialisation check; the pool's own destructor
/// hands the stack on when the thread exits.
struct Spare {
    stack: Cell<Option<NonNull<Header>>>,
    /// Set when the pool's destructor ran (the thread is exiting): no stack is kept then.
    pool_gone: Cell<bool>,
    /// Coroutines started on the spare stack (counted in [`PoolStats::taken`]).
    taken: Cell<u64>,
}

/// Takes the spare stack, if there is one. The caller holds preemption off.
fn take_spare() -> Option<Stack> {
    // SAFETY: a header in SPARE is an idle booted stack that only SPARE owned.
    SPARE.with(|s| s.stack.take()).map(|h| unsafe { Stack::from_header(h) })
}

/// Keeps `stack` as the spare. The caller holds preemption off and checked the slot is free.
fn set_spare(stack: Stack) {
    SPARE.with(|s| s.stack.set(Some(stack.into_header())));
}

/// Runs `f` on this thread's pool, or returns `None` while the thread is being torn down.
fn with_pool<T>(f: impl FnOnce(&mut Pool) -> T) -> Option<T> {
    // A coroutine preempted inside would leave the pool borrowed for the next one.
    let _off = crate::ground::RuntimeGuard::new();
    // SAFETY: the pool is only reached through this function, and no function called with it
    // reaches back here (booting, the reserve and madvise never run coroutine code), so the
    // mutable borrow is unique.
    POOL.try_with(|p| f(unsafe { &mut *p.get() })).ok()
}

/// Takes a booted stack of at least `size` usable bytes (already validated) from this thread's
/// pool, booting new ones when it is empty. Never inlined (nor is [`give`]): a migratable
/// coroutine may resume on another thread between two calls, and an inlined thread-local
/// address could be kept across that switch (see `crate::ground`).
#[inline(never)]
pub(crate) fn take(size: usize) -> io::Result<Stack> {
    let stride = stride_for(size);
    {
        // A coroutine preempted between the take and the count would let another one in.
        let _off = crate::ground::RuntimeGuard::new();
        if let Some(spare) = take_spare() {
            if spare.stride() == stride {
                SPARE.with(|s| s.taken.set(s.taken.get() + 1));
                return Ok(spare);
            }
            give_to_pool(spare);
        }
    }
    let taken = with_pool(|pool| {
        if let Some(stack) = pool.class(stride).pop() {
            pool.stats.taken += 1;
            return Ok(stack);
        }
        pool.refill(stride)?;
        pool.stats.taken += 1;
        Ok(pool.class(stride).pop().expect("refill produced a stack"))
    });
    match taken {
        Some(result) => result,
        // The thread is exiting: boot one stack without a pool.
        None => {
            let mut got = Vec::with_capacity(1);
            boot::boot_stacks(stride, 1, &mut got)?;
            Ok(got.pop().expect("booted one stack"))
        }
    }
}

/// Gives an idle stack (its trampoline waiting for a job) back to this thread: as the spare
/// if there is none, else to the pool. A thread usually gives back only stacks it took, and
/// its first take made its pool, whose destructor hands the spare on when the thread exits; a
/// migratable coroutine may end on another worker than the one that took its stack, so
/// workers of runtimes that can move coroutines make their pool when they start.
#[inline(never)]
pub(crate) fn give(stack: Stack) {
    let _off = crate::ground::RuntimeGuard::new();
    if SPARE.with(|s| s.stack.get().is_none() && !s.pool_gone.get()) {
        set_spare(stack);
        return;
    }
    give_to_pool(stack);
}

fn give_to_pool(stack: Stack) {
    let stride = stack.stride();
    let mut stack = Some(stack);
    let overflow = with_pool(|pool| {
        let class = pool.class(stride);
        class.push(stack.take().expect("not yet given"));
        (class.len() > POOL_CAP).then(|| class.split_off(POOL_CAP / 2))
    });
    match (stack, overflow) {
        (Some(stack), _) => reserve::give_idle([stack]),
        (None, Some(Some(half))) => reserve::give_idle(half),
        _ => {}
    }
}

/// What [`release_idle_memory`] frees besides stacks: the scheduler's kept task records,
/// registered by the scheduler when a runtime is built (the stack layer does not know it).
static ALSO_RELEASE: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Registers what [`release_idle_memory`] frees besides stacks (the first registration wins;
/// there is one caller, the scheduler).
pub(crate) fn also_release(release: fn()) {
    let _ = ALSO_RELEASE.set(release);
}

/// Returns to the kernel the memory that idle stacks hold beyond what their parked contexts
/// use: those of this thread's pool and those waiting in the process-wide reserve. The stacks
/// stay booted; the next coroutines on them fault their pages back in. Also frees the records
/// of finished coroutines that workers keep for reuse (this thread's at once, every other
/// worker's when it next goes idle). Useful after a spike of coroutines.
// Never inlined (nor is `thread_stats`): a migratable coroutine may call it, and a thread-local
// address inlined into its code could be kept across a switch (see `crate::ground`).
#[inline(never)]
pub fn release_idle_memory() {
    if let Some(release) = ALSO_RELEASE.get() {
        release();
    }
    with_pool(|pool| {
        for (_, stacks) in &pool.classes {
            stacks.iter().for_each(reserve::release_cold_pages);
        }
        if let Some(spare) = take_spare() {
            reserve::release_cold_pages(&spare);
            set_spare(spare);
        }
    });
    reserve::release_all_idle();
}

/// This thread's pool statistics.
#[inline(never)]
pub fn thread_stats() -> PoolStats {
    with_pool(|pool| {
        let spare = SPARE.with(|s| s.stack.get().is_some());
        let idle = pool.classes.iter().map(|(_, s)| s.len()).sum::<usize>() + usize::from(spare);
        let taken = pool.stats.taken + SPARE.with(|s| s.taken.get());
        PoolStats {
            idle,
            taken,
            ..pool.stats
        }
    })
    .unwrap_or_default()
}
