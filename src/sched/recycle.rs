//! Finished tasks kept for the next spawns, as Go keeps dead goroutines' records (`gfput` /
//! `gfget`): a spawn then costs no `malloc`, and a storm of spawns reuses warm memory instead
//! of faulting fresh pages in after the allocator trimmed its heap.
//!
//! Each worker thread keeps its own list, touched by that thread only, so taking and giving
//! back are plain vector operations. A task is kept when the last reference to it goes away on
//! a worker of its runtime: at `join`, or when a detached task ends. The lists hold at most
//! [`CAP`] tasks per worker; [`crate::stack::release_idle_memory`] empties the caller's list and
//! asks every worker to empty its own when it next goes idle.

pub(crate) mod slab;

use super::task::{Body, Task};
use super::worker::{self, Shared};
use std::cell::UnsafeCell;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The most finished tasks a worker keeps (a few hundred bytes each).
pub(crate) const CAP: usize = 1 << 17;

/// Bumped by `release_idle_memory`: a worker whose list is older empties it.
static RELEASE_EPOCH: AtomicU64 = AtomicU64::new(0);

struct Cache {
    tasks: Vec<Arc<Task>>,
    epoch: u64,
}

thread_local! {
    static CACHE: UnsafeCell<Cache> = const { UnsafeCell::new(Cache { tasks: Vec::new(), epoch: 0 }) };
}

/// Runs `f` on this thread's list, unless the thread is exiting. The caller holds preemption
/// off (a coroutine preempted inside would leave the list borrowed for the next one), or runs
/// on the worker's own stack. Its callers (but the tests' `kept`) are never inlined: a
/// migratable coroutine may resume on another thread between two spawns, and a thread-local
/// address inlined into its code could be kept across that switch (see `crate::ground`).
fn with_cache<R>(f: impl FnOnce(&mut Cache) -> R) -> Option<R> {
    // SAFETY: the list is this thread's, no coroutine switch happens while `f` runs (see
    // above), and `f` (code of this module only) never re-enters `with_cache`: dropping a task
    // here drops no task of this list.
    CACHE.try_with(|c| f(unsafe { &mut *c.get() })).ok()
}

/// A new task, on a kept record when this thread is a worker of `rt` and has one, else on a
/// record from the slab. `here` is the calling worker if it belongs to `rt`; the caller holds
/// preemption off. Fails only when the slab needs a chunk the kernel will not map.
#[inline(never)]
pub(crate) fn new_task(
    here: Option<&worker::Local>,
    id: u64,
    name: Option<Box<str>>,
    entry: fn() -> &'static str,
    rt: &Arc<Shared>,
    stack_size: usize,
    body: Body,
) -> io::Result<Arc<Task>> {
    if here.is_some()
        && let Some(task) = with_cache(|c| c.tasks.pop()).flatten()
    {
        // SAFETY: only unique tasks are kept (see `give_back`), and nobody got a reference since.
        unsafe { unique(&task) }.reuse(id, name, entry, stack_size, body);
        return Ok(task);
    }
    pretouch_heap();
    Task::new(id, name, entry, rt.clone(), stack_size, body).map(Arc::new)
}

/// Heap bytes touched ahead for the blocks of new tasks (below glibc's mmap and trim
/// thresholds, 128 KiB, so the block comes from the top of the thread's arena and goes back
/// there).
const PRETOUCH: usize = 60 * 1024;

thread_local! {
    /// Heap bytes new tasks took since the last `pretouch_heap` went ahead of them.
    static TOUCHED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Once in [`PRETOUCH`] bytes of new task blocks, takes a block of that size from the heap,
/// has the kernel populate it in one call, and frees it. An allocator that carves small blocks
/// from the top of a contiguous heap (glibc's arenas) then hands the next tasks' blocks out of
/// memory already writable and faulted in, instead of growing its heap by one `mprotect` and
/// one page fault per 4 KiB; elsewhere it costs a short-lived allocation.
#[inline(never)]
fn pretouch_heap() {
    let due = TOUCHED.with(|t| {
        let n = t.get() + size_of::<Task>() + 2 * size_of::<usize>();
        t.set(if n >= PRETOUCH { 0 } else { n });
        n >= PRETOUCH
    });
    if !due {
        return;
    }
    let block = Vec::<u8>::with_capacity(PRETOUCH);
    let start = (block.as_ptr() as usize).next_multiple_of(crate::stack::page_size());
    let end = (block.as_ptr() as usize + PRETOUCH) & !(crate::stack::page_size() - 1);
    if end > start {
        // SAFETY: the range lies inside the block we own; populating it only commits its
        // memory (it fails harmlessly on kernels older than 5.14).
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_POPULATE_WRITE) };
    }
    drop(block);
}

/// Gives up a reference to a finished task; the last one, on a worker of the task's runtime,
/// keeps the record for a later spawn.
#[inline(never)]
pub(crate) fn give_back(task: Arc<Task>) {
    // A plain load first: only the last holder keeps the record, and only on its own runtime.
    if Arc::strong_count(&task) != 1 || !worker::local().is_some_and(|l| Arc::ptr_eq(&l.rt, &task.rt)) {
        return;
    }
    let _off = crate::ground::RuntimeGuard::new();
    // Pairs with the release decrements of the other holders, as `Arc`'s own drop does: their
    // last uses happened before what follows.
    std::sync::atomic::fence(Ordering::Acquire);
    // SAFETY: we hold the only strong reference, and no `Weak<Task>` is ever made.
    unsafe { unique(&task) }.release_resources();
    with_cache(move |c| {
        if c.tasks.len() < CAP {
            c.tasks.push(task);
        }
    });
}

/// The task behind a reference known to be the only one: `Arc::get_mut` without its locked
/// check of weak references, which tasks never have.
///
/// # Safety
///
/// `task` must be the only `Arc` to its task (no other strong reference, and no `Weak` ever
/// made), and the returned borrow must end before the `Arc` is cloned or dropped.
#[allow(clippy::mut_from_ref)]
unsafe fn unique(task: &Arc<Task>) -> &mut Task {
    debug_assert_eq!(Arc::strong_count(task), 1);
    // SAFETY: per the contract, nothing else can reach the task while the borrow lives.
    unsafe { &mut *Arc::as_ptr(task).cast_mut() }
}

/// Empties this thread's list, and asks every worker to empty its own when it next idles.
pub(crate) fn release_all() {
    let _off = crate::ground::RuntimeGuard::new();
    RELEASE_EPOCH.fetch_add(1, Ordering::Relaxed);
    release_if_asked();
}

/// Empties this thread's list if `release_all` was called since it last looked (from a worker's
/// own stack, or with preemption off), and gives the records back to the slab, which unmaps
/// the chunks left with none in use.
#[inline(never)]
pub(crate) fn release_if_asked() {
    let epoch = RELEASE_EPOCH.load(Ordering::Relaxed);
    let kept = with_cache(|c| {
        if c.epoch == epoch {
            return None;
        }
        c.epoch = epoch;
        Some(std::mem::take(&mut c.tasks))
    });
    if let Some(Some(kept)) = kept {
        drop(kept); // outside the borrow
        slab::release_idle();
    }
}

/// How many finished tasks this thread keeps.
#[cfg(test)]
pub(crate) fn kept() -> usize {
    let _off = crate::ground::RuntimeGuard::new();
    with_cache(|c| c.tasks.len()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::kept;
    use std::sync::Arc;

    #[test]
    fn joined_and_detached_tasks_are_kept_and_reused_fresh() {
        let rt = crate::Runtime::builder().workers(1).preempt(None).build().unwrap();
        rt.block_on(|| {
            let before = kept();
            // A cancelled task leaves a record full of state: cancelled, unwound, a name.
            let h = crate::Builder::new().name("old").spawn(crate::park).unwrap();
            crate::yield_now();
            h.cancel();
            let first = Arc::as_ptr(h.task());
            let old_id = h.thread().id();
            assert!(h.join().unwrap_err().is_cancelled());
            assert_eq!(kept(), before + 1, "a joined task's record is kept");

            let h = crate::spawn(|| crate::current().name().map(str::to_owned));
            assert_eq!(Arc::as_ptr(h.task()), first, "the kept record is reused");
            assert_eq!(kept(), before);
            assert_ne!(h.thread().id(), old_id);
            assert_eq!(h.join().unwrap(), None, "nothing of the old task shows through");

            drop(crate::spawn(|| ()));
            crate::yield_now();
            // It took the record the second join gave back, and gives it back as it ends.
            assert_eq!(kept(), before + 1, "a detached task's record is kept when it ends");
            crate::stack::release_idle_memory();
            assert_eq!(kept(), 0);
        });
    }
}
