//! The ground floor: the little state every layer needs, and nothing else. It imports no other
//! module of the crate; every module may import it.
//!
//! | item | what it is | who writes it | who reads it |
//! | --- | --- | --- | --- |
//! | [`current`] | the running task's [`TaskHeader`] (null outside a scheduled coroutine) | the worker, as it switches a task in and out | `sched` (`current_task`), [`RuntimeGuard`], the preemption handler |
//! | [`TaskHeader`] | the part of a task the layers below `sched` touch: its no-preempt depth | the task's own thread | safe points and the signal handler of that thread |
//! | [`interrupt_flags`] | this worker's interrupt flags ([`PREEMPT`], [`CALLBACKS`], [`DEADLINE`]) | other threads through the address [`interrupt_flags_address`] publishes, and the handler | every safe point (one load) |
//! | [`Critical`] | a per-thread no-preempt depth for short sections that never switch | the thread itself | the signal handler of the same thread |
//! | [`lock`] | the one internal-lock helper: ignores poison, holds preemption off | everyone | |
//! | [`preempt_signal`], [`block_preempt_signal`], [`unblock_preempt_signal`] | the preemption signal and this thread's mask of it | workers, regions, the overflow handler | |
//! | [`nanos`] | the timer thread's clock: nanoseconds since a process-wide origin | | the worker's slices, the timer thread, the handler |
//! | [`prefetch`] | a hint to start loading a cache line | the worker's hot paths | |
//!
//! A task's depth lives in its header rather than in a thread-local because it must follow the
//! task across switches: a join in place runs another coroutine inside the joiner's
//! [`RuntimeGuard`], and the one that runs there starts with a depth of its own.

use std::cell::Cell;
use std::mem::MaybeUninit;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering, compiler_fence};
use std::time::{Duration, Instant};

// The thread-locals of this floor live in the static TLS block of the executable (or of a
// library loaded with it), declared here in assembly and reached only through the accessors
// below. Why not `thread_local!`: LLVM treats a thread-local's address
// (`llvm.threadlocal.address`) as constant within a function, so it may compute it once and
// reuse it after a call that switched the coroutine to another worker thread (a loop with a
// `checkpoint()` in it: the address is hoisted out of the loop, seen in a cdylib as one
// `__tls_get_addr` before the loop). A coroutine that migrates (`Builder::migratable`) would
// then read and write the first thread's flags, depth and task pointer. Each accessor instead
// reads the thread pointer (`fs:0`, which the x86-64 ABI makes point to itself) in an `asm!`
// block that is not `pure`: the compiler may neither merge two of them nor move one across
// another `asm!` (the switch), so every use after a switch computes the address on the thread
// it runs on. The offset comes from the initial-exec relocation (`@gottpoff`), which the
// linker turns into a constant in an executable: `mov reg, fs:0` plus an `add` or `lea`,
// against one `fs:`-relative load before. A library that uses sigcoro and is loaded with
// `dlopen` either fits in the static TLS surplus or fails to load ("cannot allocate memory in
// static TLS block"): never a wrong address.
std::arch::global_asm!(
    ".pushsection .tbss,\"awT\",@nobits",
    ".p2align 3",
    ".globl sigcoro_0_1_ground_interrupt",
    ".hidden sigcoro_0_1_ground_interrupt",
    ".type sigcoro_0_1_ground_interrupt,@object",
    ".size sigcoro_0_1_ground_interrupt,8",
    "sigcoro_0_1_ground_interrupt:",
    ".zero 8",
    ".globl sigcoro_0_1_ground_critical",
    ".hidden sigcoro_0_1_ground_critical",
    ".type sigcoro_0_1_ground_critical,@object",
    ".size sigcoro_0_1_ground_critical,8",
    "sigcoro_0_1_ground_critical:",
    ".zero 8",
    ".globl sigcoro_0_1_ground_current",
    ".hidden sigcoro_0_1_ground_current",
    ".type sigcoro_0_1_ground_current,@object",
    ".size sigcoro_0_1_ground_current,8",
    "sigcoro_0_1_ground_current:",
    ".zero 8",
    ".globl sigcoro_0_1_ground_worker",
    ".hidden sigcoro_0_1_ground_worker",
    ".type sigcoro_0_1_ground_worker,@object",
    ".size sigcoro_0_1_ground_worker,8",
    "sigcoro_0_1_ground_worker:",
    ".zero 8",
    ".popsection",
);

/// Defines an accessor that returns the address of one of the thread-local words above, on
/// the thread that calls it, computed afresh at every call (see the comment above).
macro_rules! tls_word {
    ($(#[$attr:meta])* fn $name:ident -> $ty:ty = $sym:literal) => {
        $(#[$attr])*
        #[inline(always)]
        fn $name() -> *const $ty {
            let p: *const $ty;
            // The block reads the thread pointer (`fs:0` holds its own address on x86-64 Linux,
            // glibc and musl alike) and adds the symbol's offset in the static TLS block, as
            // the initial-exec model does. `nomem`: the two words it reads (the thread's own
            // pointer, the offset's GOT slot) never change while the thread runs. Not `pure`,
            // on purpose: the compiler must keep one block per use, in order with the switch.
            // SAFETY: reads two constant words and writes only the output register and flags.
            unsafe {
                std::arch::asm!(
                    "mov {p}, qword ptr fs:0",
                    concat!("add {p}, qword ptr [rip + ", $sym, "@gottpoff]"),
                    p = out(reg) p,
                    options(nostack, nomem),
                );
            }
            p
        }
    };
}

tls_word! {
    /// This worker's interrupt flags, [`PREEMPT`], [`CALLBACKS`] and [`DEADLINE`]; other
    /// threads set them through the address the worker publishes. On threads that are not
    /// workers they stay 0.
    fn interrupt_word -> AtomicU8 = "sigcoro_0_1_ground_interrupt"
}
tls_word! {
    /// How deep this thread is in [`Critical`] sections; the handler reads it on this thread.
    fn critical_word -> AtomicU32 = "sigcoro_0_1_ground_critical"
}
tls_word! {
    /// The header of the task running on this thread (null on a worker's own stack and on
    /// threads that are not workers).
    fn current_word -> Cell<*const TaskHeader> = "sigcoro_0_1_ground_current"
}
tls_word! {
    /// The worker state of this thread (`sched::worker::Local`, opaque here; null on threads
    /// that are not workers).
    fn worker_word -> Cell<*const ()> = "sigcoro_0_1_ground_worker"
}

/// This thread's interrupt flags.
#[inline(always)]
fn interrupt() -> &'static AtomicU8 {
    // The reference is used within the caller's expression and never kept across a switch
    // (`'static` stands for "as long as the thread", and every caller re-derives it).
    // SAFETY: this thread's zero-initialised (valid), 8-aligned word, alive with the thread.
    unsafe { &*interrupt_word() }
}

/// This thread's [`Critical`] depth.
#[inline(always)]
fn critical() -> &'static AtomicU32 {
    // SAFETY: as for `interrupt`.
    unsafe { &*critical_word() }
}

/// Interrupt flag: the running slice has expired.
pub(crate) const PREEMPT: u8 = 1;
/// Interrupt flag: an [`Interrupt`](crate::Interrupt) of this worker was signalled.
pub(crate) const CALLBACKS: u8 = 2;
/// Interrupt flag: a timer of this worker is due; make way for the coroutines it wakes.
pub(crate) const DEADLINE: u8 = 4;

/// This thread's interrupt flags (0 when nothing is pending).
#[inline(always)]
pub(crate) fn interrupt_flags() -> u8 {
    interrupt().load(Ordering::Relaxed)
}

/// Clears `mask` in this thread's interrupt flags, with a locked instruction only when one of
/// its bits is set (the worker calls this at every handoff).
#[inline(always)]
pub(crate) fn clear_interrupt_flags(mask: u8) {
    let f = interrupt();
    if f.load(Ordering::Relaxed) & mask != 0 {
        f.fetch_and(!mask, Ordering::Relaxed);
    }
}

/// Clears `mask` in this thread's interrupt flags and says which of its bits were set, in one
/// atomic step: a flag another thread raises meanwhile is either taken here or stays raised.
#[inline(always)]
pub(crate) fn take_interrupt_flags(mask: u8) -> u8 {
    interrupt().fetch_and(!mask, Ordering::Relaxed) & mask
}

/// Raises `mask` in this thread's interrupt flags (the signal handler, on its own thread).
#[inline]
pub(crate) fn raise_interrupt_flags(mask: u8) {
    interrupt().fetch_or(mask, Ordering::Relaxed);
}

/// The address of this thread's interrupt flags, which a worker publishes so that other
/// threads can raise them (it clears the published copy before the thread exits).
pub(crate) fn interrupt_flags_address() -> *mut AtomicU8 {
    interrupt_word().cast_mut()
}

/// What every layer may touch of a scheduled task: the header `sched`'s task embeds, and the
/// thread-local [`current`] points at while the task runs.
#[derive(Debug)]
pub(crate) struct TaskHeader {
    /// No-preempt depth: user regions plus the runtime's own sections. Starts at 1 (runtime
    /// code) and drops to 0 only while user code runs. Only the task's own thread writes it
    /// (the signal handler that reads it runs on that thread too).
    pub preempt_off: AtomicU32,
}

impl TaskHeader {
    /// A header for a task that has not run: its depth is the runtime's.
    pub(crate) const fn new() -> TaskHeader {
        TaskHeader {
            preempt_off: AtomicU32::new(1),
        }
    }
}

/// The header of the task running on this thread, if any.
#[inline(always)]
pub(crate) fn current() -> *const TaskHeader {
    // SAFETY: the word is this thread's, zero-initialised (a null pointer) and alive as long as
    // the thread; only this thread and its signal handler touch it, never concurrently with a
    // write of the thread's own (the handler runs between instructions of this thread).
    unsafe { (*current_word()).get() }
}

/// Sets the task running on this thread (null: none). For the worker as it switches a task in
/// and out, and for a join in place.
#[inline(always)]
pub(crate) fn set_current(header: *const TaskHeader) {
    // SAFETY: as in `current`.
    unsafe { (*current_word()).set(header) }
}

/// The calling thread's worker state, as `sched::worker` set it (null on other threads).
#[inline(always)]
pub(crate) fn worker() -> *const () {
    // SAFETY: as in `current`.
    unsafe { (*worker_word()).get() }
}

/// Sets the calling thread's worker state (null: none), for `sched::worker` as a worker starts
/// and stops.
#[inline]
pub(crate) fn set_worker(local: *const ()) {
    // SAFETY: as in `current`.
    unsafe { (*worker_word()).set(local) }
}

/// Adds one to a no-preempt depth. Only the owning thread writes a depth (the signal handler
/// that reads it runs on that thread too), so a plain load and store do: no locked
/// instruction on the hot path. Returns the old depth.
#[inline(always)]
pub(crate) fn off_inc(depth: &AtomicU32) -> u32 {
    let old = depth.load(Ordering::Relaxed);
    depth.store(old + 1, Ordering::Relaxed);
    old
}

/// Takes one from a no-preempt depth (see [`off_inc`]); returns the old depth.
#[inline(always)]
pub(crate) fn off_dec(depth: &AtomicU32) -> u32 {
    let old = depth.load(Ordering::Relaxed);
    depth.store(old - 1, Ordering::Relaxed);
    old
}

/// The runtime's own no-preempt regions: preemption stays off until the guard drops, and its
/// end never yields (the runtime may be in the middle of something). Its depth is the task's,
/// so it may span a switch (a join in place runs another coroutine inside one); for short
/// sections that never switch, [`Critical`] is cheaper.
pub(crate) struct RuntimeGuard {
    task: *const TaskHeader,
}

impl RuntimeGuard {
    /// Holds preemption off for the running task (a no-op outside one).
    #[inline]
    pub(crate) fn new() -> RuntimeGuard {
        let task = current();
        // SAFETY: a non-null `current` is the header of the running task, which its worker
        // keeps alive while it runs; the guard is dropped by that same task.
        if let Some(t) = unsafe { task.as_ref() } {
            off_inc(&t.preempt_off);
            compiler_fence(Ordering::SeqCst);
        }
        RuntimeGuard { task }
    }

    /// Ends the region; returns whether it was the outermost one.
    #[inline]
    pub(crate) fn release(&mut self) -> bool {
        let task = std::mem::replace(&mut self.task, std::ptr::null());
        // SAFETY: as in `new`: the task that took the guard is alive and releases it.
        match unsafe { task.as_ref() } {
            Some(t) => {
                compiler_fence(Ordering::SeqCst);
                off_dec(&t.preempt_off) == 1
            }
            None => false,
        }
    }
}

impl Drop for RuntimeGuard {
    #[inline]
    fn drop(&mut self) {
        self.release();
    }
}

impl std::fmt::Debug for RuntimeGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RuntimeGuard")
    }
}

/// A short section of the runtime's own code that never switches coroutines (the channels'
/// spin-locked state): preemption is held off through a depth counted per *thread*, so
/// entering and leaving are one add each, with no lookup of the running task.
///
/// Unlike [`RuntimeGuard`], whose depth belongs to the task, it must not be held across a
/// switch: the coroutines that ran meanwhile would be unpreemptible. Nothing in such a section
/// waits, and `sched::park`'s wait asserts so in debug builds.
#[must_use = "the section ends when the guard is dropped"]
pub(crate) struct Critical {
    /// This thread's depth: the section never switches, so the address stays this thread's.
    depth: &'static AtomicU32,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Critical {
    /// Enters a section; preemption stays off on this thread until the guard drops.
    #[inline(always)]
    pub(crate) fn enter() -> Critical {
        let depth = critical();
        off_inc(depth);
        compiler_fence(Ordering::SeqCst);
        Critical {
            depth,
            _not_send: std::marker::PhantomData,
        }
    }
}

impl Drop for Critical {
    #[inline(always)]
    fn drop(&mut self) {
        compiler_fence(Ordering::SeqCst);
        off_dec(self.depth);
    }
}

/// This thread's [`Critical`] depth (0 when no section is open).
#[inline]
pub(crate) fn critical_depth() -> u32 {
    critical().load(Ordering::Relaxed)
}

/// Whether the task of `header` must not be preempted now: it is in a no-preempt region or a
/// [`RuntimeGuard`] (its own depth), or its thread is in a [`Critical`] section. For the signal
/// handler and the safe points, on the task's own thread.
#[inline]
pub(crate) fn preempt_held_off(header: &TaskHeader) -> bool {
    header.preempt_off.load(Ordering::Relaxed) > 0 || critical_depth() > 0
}

/// A std mutex guard that also holds preemption off, for the runtime's internal locks: a
/// coroutine preempted while holding one would block every other coroutine of its worker that
/// takes it. The sections run no user code, so poisoning carries no information and is
/// ignored.
pub(crate) struct LockGuard<'a, T> {
    // Declared first: the lock is released before preemption is let back in.
    guard: std::sync::MutexGuard<'a, T>,
    _off: RuntimeGuard,
}

/// Locks a runtime-internal std mutex (ignoring poison) with preemption held off.
#[inline]
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> LockGuard<'_, T> {
    let off = RuntimeGuard::new();
    LockGuard {
        guard: m.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
        _off: off,
    }
}

impl<T> std::ops::Deref for LockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> std::ops::DerefMut for LockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

/// The preemption signal: `SIGRTMAX() - 2` (the boot signal is `SIGRTMAX() - 1`).
pub(crate) fn preempt_signal() -> libc::c_int {
    libc::SIGRTMAX() - 2
}

/// Blocks (`SIG_BLOCK`) or unblocks the preemption signal in this thread's mask.
fn set_preempt_mask(how: libc::c_int) {
    // SAFETY: plain libc calls on a local set.
    unsafe {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigaddset(set.as_mut_ptr(), preempt_signal());
        libc::pthread_sigmask(how, set.as_ptr(), std::ptr::null_mut());
    }
}

/// Blocks the preemption signal in this thread's mask: outside regions it stays pending.
pub(crate) fn block_preempt_signal() {
    set_preempt_mask(libc::SIG_BLOCK);
}

/// Lets the preemption signal in: for a region, or (tests' controls) for a whole worker.
pub(crate) fn unblock_preempt_signal() {
    set_preempt_mask(libc::SIG_UNBLOCK);
}

/// The origin of [`nanos`], set by its first call (the timer thread's, before any worker can
/// be signalled).
static ORIGIN: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds from a process-wide origin to `t` (at least 1, so 0 can mean "none").
pub(crate) fn nanos(t: Instant) -> u64 {
    let origin = *ORIGIN.get_or_init(|| Instant::now() - Duration::from_secs(1));
    t.saturating_duration_since(origin).as_nanos().max(1) as u64
}

/// [`nanos`] of now, for a signal handler: no lazy initialisation, only a load of the origin
/// and a clock read (0 if the origin is not set yet). Async-signal-safe.
pub(crate) fn nanos_now_in_handler() -> u64 {
    ORIGIN.get().map_or(0, |o| {
        Instant::now().saturating_duration_since(*o).as_nanos().max(1) as u64
    })
}

/// Starts loading the cache line at `addr` into every cache level, for a read soon (a hint to
/// the hardware: it never faults and changes nothing a program can see, whatever the address).
#[inline(always)]
pub(crate) fn prefetch(addr: usize) {
    use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
    // SAFETY: `prefetcht0` has no architectural effect and never faults, even on an address
    // that is unmapped, so any value is fine.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(addr as *const i8) };
}
