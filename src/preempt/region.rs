//! Asynchronous preemption regions: code the user vouches for may be switched out at any
//! instruction where that is safe.
//!
//! Outside a region the preemption signal is blocked in every worker thread's mask, so it can
//! never interrupt a system call (no EINTR) or land in code nobody vouched for; a signal sent
//! just as a region ends stays pending until the next region begins. Entering a region
//! unblocks it, leaving blocks it again (one `rt_sigprocmask` each). A coroutine inside a
//! region that waits at a sigcoro call blocks it before it switches out and unblocks it when it
//! is back; one switched out by the handler leaves it blocked (the kernel blocks a signal while
//! its handler runs), and gets its own mask back from `rt_sigreturn` when it resumes.
//!
//! The region records the canonical frame address (CFA) of its closure's frame: the handler
//! walks the interrupted coroutine's frames up to that one (see [`super::unwind`]) and
//! switches only if every one of them runs vouched code.

use crate::sched::park::current_task;
use crate::sched::task::Task;
use crate::sched::worker;
use crate::sched::worker::watch::{IN_REGION, RUNNING};
use std::sync::atomic::{AtomicBool, Ordering, compiler_fence};

/// Runs `f` where the timer thread may preempt it asynchronously, at any instruction of Rust
/// code outside the standard library, as Go preempts goroutines. Use it for computation that
/// never reaches a safe point: numeric kernels, simulations, preemption experiments.
///
/// The signal handler switches the coroutine out only when the interrupted instruction and
/// every caller up to this region are Rust functions of the executable outside std, core,
/// alloc and the global allocator (found with the executable's `.eh_frame`, so frame pointers
/// are not needed). C code, assembly, shared libraries and the runtime's own critical sections
/// are never interrupted there; the flag then waits for the next instruction that is safe, or
/// the next safe point.
///
/// Outside a coroutine, inside another region, or on a runtime without preemption, `f` simply
/// runs. Where asynchronous preemption is unavailable (a stripped executable, or
/// `SIGCORO_PREEMPT=noasync`; see [`async_preemption`](super::async_preemption)), `f` runs with
/// safe-point preemption only, and the first such region of the process says so on stderr.
///
/// ```
/// let rt = sigcoro::Runtime::builder().workers(1).build().unwrap();
/// let sum = rt.block_on(|| {
///     // SAFETY: pure arithmetic on locals: no thread-local state, no locks, no raw syscalls.
///     unsafe {
///         sigcoro::preemptible(|| {
///             let mut x = 0u64;
///             for i in 0..1_000_000u64 {
///                 x = x.wrapping_add(i * i);
///             }
///             x
///         })
///     }
/// });
/// assert!(sum > 0);
/// ```
///
/// # Safety
///
/// A preemption switches to another coroutine *of the same thread* at an instruction the code
/// did not choose, and the compiler may have inlined standard-library code into yours, where no
/// check can see it. So, while `f` runs, no instruction of it may be in the middle of using
/// state that belongs to the thread rather than to the coroutine:
///
/// - no `std::sync::Mutex`, `RwLock` or other lock guard of a thread-blocking lock may be held
///   (another coroutine of the worker that takes it would block the thread: a deadlock);
/// - no `thread_local!` value may be borrowed or its address kept (`RefCell` borrows,
///   `rand::thread_rng`, caches), and nothing may read or write the thread's errno or signal
///   mask;
/// - with LTO, a Rust global allocator may be inlined into `f`: do not allocate;
/// - no raw system call that fails with EINTR (`nanosleep`, `poll`, `select`, ...) may be made:
///   the signal can interrupt it.
///
/// sigcoro's own calls (channels, `sleep`, `spawn`, ...) are fine inside a region: they hold
/// preemption off where they must. Breaking the contract can deadlock the worker or corrupt
/// thread-local state, hence `unsafe`.
pub unsafe fn preemptible<R>(f: impl FnOnce() -> R) -> R {
    let Some(task) = current_task() else { return f() };
    if task.region_cfa.load(Ordering::Relaxed) != 0 {
        return f(); // nested: the outer region covers it
    }
    let Some(local) = worker::local() else { return f() };
    if !local.rt.async_regions {
        if local.rt.preempt_on() {
            say_unavailable_once();
        }
        return f();
    }
    let mut f = Some(f);
    let mut out = None;
    // No `Option::map` here: unoptimised builds would leave a frame of core's code between the
    // region and `f`, and every walk would refuse it.
    let mut call = || {
        if let Some(f) = f.take() {
            out = Some(f());
        }
    };
    enter(task, &local.me().preempt, &mut call);
    out.expect("the region's closure ran")
}

/// Enters a region and calls `f`, whose frame's CFA is this frame's stack pointer at the call.
/// Not inlined, so that the stack pointer read here is the one the call uses (LLVM keeps `rsp`
/// fixed in a function body that has no dynamic allocation).
#[inline(never)]
fn enter(task: &Task, watch: &crate::sched::worker::watch::PreemptWatch, f: &mut dyn FnMut()) {
    /// Leaves the region however `f` ends.
    struct Leave<'a>(&'a Task, &'a crate::sched::worker::watch::PreemptWatch);
    impl Drop for Leave<'_> {
        fn drop(&mut self) {
            crate::ground::block_preempt_signal();
            compiler_fence(Ordering::SeqCst);
            self.0.region_cfa.store(0, Ordering::Relaxed);
            self.1.running.store(RUNNING, Ordering::Relaxed);
        }
    }
    let sp: usize;
    // SAFETY: reads the stack pointer only.
    unsafe { std::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags)) };
    task.region_cfa.store(sp, Ordering::Relaxed);
    watch.running.store(IN_REGION, Ordering::Relaxed);
    let _leave = Leave(task, watch);
    compiler_fence(Ordering::SeqCst);
    crate::ground::unblock_preempt_signal();
    f();
}

fn say_unavailable_once() {
    static SAID: AtomicBool = AtomicBool::new(false);
    if !SAID.swap(true, Ordering::Relaxed) {
        let why = super::async_preemption()
            .err()
            .unwrap_or("the runtime was built without it");
        eprintln!("sigcoro: preemptible regions run with safe-point preemption only: {why}");
    }
}
