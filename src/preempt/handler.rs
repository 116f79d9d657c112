//! The preemption signal's handler: switch a coroutine out from inside the handler, where safe.
//!
//! The signal comes from the timer thread, or from the worker's own alarm (see
//! [`super::alarm`]; `si_code == SI_TIMER`), which also means "the slice is over, and a timer
//! may be due": the handler raises those flags itself.
//!
//! Installed process-wide without `SA_ONSTACK`, so it runs on the interrupted coroutine's own
//! stack (which is why stacks keep `AT_MINSIGSTKSZ` of headroom) and the kernel's signal frame
//! there holds the whole interrupted state. `SA_RESTART` restarts interrupted system calls, and
//! the timer thread signals only workers that are running, not sleeping in one.
//!
//! Switching out from the handler leaves the signal blocked in the thread's mask (the kernel
//! blocks it while its handler runs); the worker unblocks it before running anything else.
//! When the coroutine is resumed it returns from the handler, and `rt_sigreturn` restores its
//! registers and its own mask.
//!
//! Everything here is async-signal-safe: thread-local and atomic loads and stores, reads of the
//! coroutine's own stack, and the switch.

use super::ranges;
use crate::sched::task::Task;
use crate::sched::worker;
use std::io;
use std::mem::MaybeUninit;
use std::ptr;
use std::sync::Once;
use std::sync::atomic::{Ordering, compiler_fence};

/// The preemption signal: `SIGRTMAX() - 2` (the boot signal is `SIGRTMAX() - 1`).
pub(crate) fn preempt_signal() -> libc::c_int {
    libc::SIGRTMAX() - 2
}

static INSTALL: Once = Once::new();

/// Installs the handler once per process (after the code ranges are known).
pub(crate) fn install() -> io::Result<()> {
    let mut result = Ok(());
    INSTALL.call_once(|| {
        ranges::init();
        // SAFETY: installing a handler for a signal the runtime reserves; the action struct is
        // fully initialised.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_preempt as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(preempt_signal(), &action, ptr::null_mut()) != 0 {
                result = Err(io::Error::last_os_error());
            }
        }
    });
    result
}

/// Unblocks the preemption signal in this thread's mask, after a switch out of the handler.
pub(crate) fn unblock() {
    // SAFETY: plain libc calls on a local set.
    unsafe {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigaddset(set.as_mut_ptr(), preempt_signal());
        libc::pthread_sigmask(libc::SIG_UNBLOCK, set.as_ptr(), ptr::null_mut());
    }
}

extern "C" fn on_preempt(_sig: libc::c_int, info: *mut libc::siginfo_t, uctx: *mut libc::c_void) {
    // SAFETY: errno is this thread's; we put back what the interrupted code had.
    let errno = unsafe { *libc::__errno_location() };
    // SAFETY: the kernel passes the signal's info to SA_SIGINFO handlers.
    if unsafe { !super::alarm::from_alarm(info) } || alarm_wants_preemption() {
        // SAFETY: the kernel passes the interrupted context for SA_SIGINFO handlers.
        unsafe { try_preempt(&*uctx.cast::<libc::ucontext_t>()) };
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// The worker's own alarm went off: its slice is over or one of its timers is due. Raises the
/// flags if that concerns the coroutine running now (a stale alarm finds the worker between
/// coroutines, and a slice that lost CPU time to other threads goes on).
fn alarm_wants_preemption() -> bool {
    let Some(local) = worker::local() else { return false };
    if !local.alarm_fired() {
        return false;
    }
    local.rt.stats.alarms.fetch_add(1, Ordering::Relaxed);
    super::INTERRUPT.with(|f| f.fetch_or(super::DEADLINE | super::PREEMPT, Ordering::Relaxed));
    true
}

/// Preempts the running coroutine if the interrupted point is safe.
///
/// # Safety
///
/// Called only from the signal handler, with the interrupted context.
unsafe fn try_preempt(uctx: &libc::ucontext_t) {
    let Some(local) = worker::local() else { return };
    // SAFETY: `current` is the task this worker runs; it stays alive while it runs.
    let Some(task) = (unsafe { local.current.get().as_ref() }) else {
        return;
    };
    if super::preempt_held_off(task) || task.in_handler.load(Ordering::Relaxed) {
        return; // a safe point or the end of the region takes the interrupt
    }
    if std::thread::panicking() {
        return; // never switch out mid-unwind: other coroutines would see a panicking thread
    }
    let gregs = &uctx.uc_mcontext.gregs;
    let (pc, sp, fp) = (
        gregs[libc::REG_RIP as usize] as usize,
        gregs[libc::REG_RSP as usize] as usize,
        gregs[libc::REG_RBP as usize] as usize,
    );
    // SAFETY: the checks read only the coroutine's own stack, within its bounds.
    if !unsafe { interrupted_point_is_safe(task, pc, sp, fp) } {
        task.stats.deferred.fetch_add(1, Ordering::Relaxed);
        task.rt.stats.deferred.fetch_add(1, Ordering::Relaxed);
        return;
    }
    // A safe point may have taken the flags since the signal was sent: then nothing to do.
    let Some(action) = super::take_preemption(true) else {
        return;
    };
    task.stats.asynchronous.fetch_add(1, Ordering::Relaxed);
    task.rt.stats.asynchronous.fetch_add(1, Ordering::Relaxed);
    task.in_handler.store(true, Ordering::Relaxed);
    crate::preempt::off_inc(&task.preempt_off);
    compiler_fence(Ordering::SeqCst);
    // SAFETY: we run on the task's own stack (checked above) as that task; its yielder lives in
    // its entry frame. The worker takes `Preempted` as "unblock the signal, requeue".
    unsafe { (*task.yielder.get()).suspend(action) };
    compiler_fence(Ordering::SeqCst);
    crate::preempt::off_dec(&task.preempt_off);
    task.in_handler.store(false, Ordering::Relaxed);
}

/// Whether neither the interrupted instruction nor any of its callers up to the coroutine's
/// entry lies in code that must not be interrupted.
///
/// # Safety
///
/// `sp` and `fp` are the interrupted registers of `task`'s coroutine.
unsafe fn interrupted_point_is_safe(task: &Task, pc: usize, sp: usize, mut fp: usize) -> bool {
    let Some(ranges) = ranges::get() else { return false };
    let (lo, hi) = (
        task.stack_lo.load(Ordering::Relaxed),
        task.stack_hi.load(Ordering::Relaxed),
    );
    let base = task.user_base.load(Ordering::Relaxed);
    if !ranges.async_ok() || sp < lo || sp + 8 > hi || base == 0 || ranges.contains(pc) {
        return false;
    }
    // At a function's first instructions, its return address is at [sp]; elsewhere that word is
    // data, and a false alarm only defers.
    // SAFETY: sp lies within the coroutine's mapped stack.
    if ranges.contains(unsafe { *(sp as *const usize) }) {
        return false;
    }
    // Walk the frame-pointer chain up to the frame of the runtime's call into user code.
    let mut below = sp;
    for _ in 0..4096 {
        if fp == base {
            return true;
        }
        if fp < below || !fp.is_multiple_of(8) || fp + 16 > base {
            return false; // not a chain we can follow: do not guess
        }
        // SAFETY: [fp, fp + 16) lies within [sp, base), on the coroutine's stack.
        let (next, ret) = unsafe { (*(fp as *const usize), *((fp + 8) as *const usize)) };
        if ranges.contains(ret) {
            return false;
        }
        below = fp + 16;
        fp = next;
    }
    false
}
