//! The preemption signal's handler: switches a coroutine out from inside the handler, where
//! the interrupted code is vouched safe.
//!
//! The signal comes from the timer thread, or from the worker's own alarm (see
//! [`crate::sched::worker::alarm`]; `si_code == SI_TIMER`), which also means "the slice is over, and a timer
//! may be due": the handler raises those flags itself. It is blocked in every worker's mask
//! except inside [`preemptible`](super::preemptible) regions (see [`super::region`]), so in the
//! default mode it is never delivered at all.
//!
//! Installed process-wide without `SA_ONSTACK`, so it runs on the interrupted coroutine's own
//! stack (which is why stacks keep `AT_MINSIGSTKSZ` of headroom) and the kernel's signal frame
//! there holds the whole interrupted state. It switches only if the coroutine is in a region,
//! outside every no-preempt section, not unwinding, and [`super::unwind::walk`] finds that the
//! interrupted instruction and every caller up to the region run vouched code; otherwise the
//! flag stays up for the next safe point, and the timer thread tries again a grace period
//! later.
//!
//! Switching out from the handler leaves the signal blocked in the thread's mask (the kernel
//! blocks it while its handler runs), which is how the worker wants it between coroutines. When
//! the coroutine is resumed it returns from the handler, and `rt_sigreturn` restores its
//! registers and its own mask (unblocked: it is in its region).
//!
//! Everything here is async-signal-safe: thread-local and atomic loads and stores, reads of the
//! coroutine's own stack and of the executable's unwind tables, and the switch.

use super::unwind::{Regs, Verdict};
use crate::ground::{DEADLINE, PREEMPT, preempt_signal};
use crate::sched::task::Task;
use crate::sched::worker;
use std::io;
use std::ptr;
use std::sync::Once;
use std::sync::atomic::{Ordering, compiler_fence};

static INSTALL: Once = Once::new();

/// Installs the handler once per process (after the code ranges are known).
pub(crate) fn install() -> io::Result<()> {
    let mut result = Ok(());
    INSTALL.call_once(|| {
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

extern "C" fn on_preempt(_sig: libc::c_int, info: *mut libc::siginfo_t, uctx: *mut libc::c_void) {
    // SAFETY: errno is this thread's; we put back what the interrupted code had.
    let errno = unsafe { *libc::__errno_location() };
    if let Some(local) = worker::local() {
        local.me().preempt.signal_sent_at.store(0, Ordering::Release);
    }
    // SAFETY: the kernel passes the signal's info to SA_SIGINFO handlers.
    if unsafe { !crate::sched::worker::alarm::from_alarm(info) } || alarm_wants_preemption() {
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
    if !local.slices.alarm_fired(crate::sched::park::current_task()) {
        return false;
    }
    local.rt.stats.alarms.fetch_add(1, Ordering::Relaxed);
    crate::ground::raise_interrupt_flags(DEADLINE | PREEMPT);
    true
}

/// Stack between the interrupted point and its region beyond which a refused walk counts as a
/// long one (see the timer thread's backoff).
const LONG_WALK: usize = 16 * 1024;

/// Preempts the running coroutine if the interrupted point is safe.
///
/// # Safety
///
/// Called only from the signal handler, with the interrupted context.
unsafe fn try_preempt(uctx: &libc::ucontext_t) {
    let Some(local) = worker::local() else { return };
    let Some(task) = crate::sched::park::current_task() else {
        return;
    };
    let anywhere = local.rt.preempt_anywhere;
    let region = task.region_cfa.load(Ordering::Relaxed);
    if region == 0 && !anywhere {
        return; // a signal let in just as a region ended: the flag waits for a safe point
    }
    if crate::ground::preempt_held_off(&task.header) || task.in_handler.load(Ordering::Relaxed) {
        return; // a safe point or the end of the no-preempt section takes the interrupt
    }
    if std::thread::panicking() {
        return; // never switch out mid-unwind: other coroutines would see a panicking thread
    }
    let gregs = &uctx.uc_mcontext.gregs;
    let regs = Regs {
        pc: gregs[libc::REG_RIP as usize] as usize,
        sp: gregs[libc::REG_RSP as usize] as usize,
        bp: gregs[libc::REG_RBP as usize] as usize,
    };
    let watch = &local.me().preempt;
    watch.last_pc.store(regs.pc, Ordering::Relaxed);
    watch
        .last_pc_seq
        .store(watch.slice_seq.load(Ordering::Relaxed), Ordering::Relaxed);
    // The tests' controls switch anywhere; everything else must pass the walk.
    let walk_start = crate::ground::nanos_now_in_handler();
    // SAFETY: `regs` are the interrupted registers of this task's coroutine, on this thread.
    let vouched = anywhere || unsafe { vouched(task, regs, region) };
    // Whatever the verdict, the coroutine then runs four times as long as the walk took
    // before the next signal (a walk at the bottom of a deep stack, by an unoptimised walker,
    // can take longer than a slice: without this the coroutine would make no headway).
    let walk_end = crate::ground::nanos_now_in_handler();
    let walk_ns = walk_end.saturating_sub(walk_start);
    watch.quiet_until.store(walk_end + 4 * walk_ns, Ordering::Relaxed);
    if !vouched {
        // A long refused walk (deep, or slow) makes the timer thread back off as well; a
        // short one is retried soon by the worker's alarm.
        if region.saturating_sub(regs.sp) > LONG_WALK || walk_ns > local.rt.slice_ns / 8 {
            watch.deep_refusal.store(true, Ordering::Relaxed);
        } else {
            local.slices.retry_soon(walk_ns);
        }
        task.stats.deferred.fetch_add(1, Ordering::Relaxed);
        task.rt.stats.deferred.fetch_add(1, Ordering::Relaxed);
        return;
    }
    // A safe point may have taken the flags since the signal was sent: then nothing to do.
    let Some(action) = crate::sched::safepoint::take_preemption(true) else {
        return;
    };
    task.stats.asynchronous.fetch_add(1, Ordering::Relaxed);
    task.rt.stats.asynchronous.fetch_add(1, Ordering::Relaxed);
    task.in_handler.store(true, Ordering::Relaxed);
    crate::ground::off_inc(&task.header.preempt_off);
    compiler_fence(Ordering::SeqCst);
    // SAFETY: we run on the task's own stack (the walk checked it) as that task; its yielder
    // lives in its entry frame. The worker leaves the signal blocked, as between coroutines.
    unsafe { (*task.yielder.get()).suspend(action) };
    compiler_fence(Ordering::SeqCst);
    crate::ground::off_dec(&task.header.preempt_off);
    task.in_handler.store(false, Ordering::Relaxed);
}

/// Whether the interrupted instruction and every caller up to the region's closure run
/// vouched code, on the task's own stack.
///
/// # Safety
///
/// `regs` are the interrupted registers of `task`'s coroutine, on this thread.
unsafe fn vouched(task: &Task, regs: Regs, region_cfa: usize) -> bool {
    let Some(map) = super::codemap::get() else { return false };
    let (lo, hi) = (
        task.stack_lo.load(Ordering::Relaxed),
        task.stack_hi.load(Ordering::Relaxed),
    );
    if regs.sp < lo || regs.sp >= hi {
        return false;
    }
    // SAFETY: the registers are the coroutine's, and [lo, hi) is its stack.
    let verdict = unsafe { super::unwind::walk(map, regs, lo, hi, region_cfa) };
    matches!(verdict, Verdict::Vouched)
}
