//! Giving a fresh stack its first context by the signal-stack trick (GNU Pth, libcoro).
//!
//! For each new stack, with every signal blocked and under a process-wide lock (`sigaction` is
//! process-wide):
//!
//! 1. `sigaltstack` the new stack, `sigaction` the boot handler with `SA_ONSTACK`;
//! 2. send the boot signal to this thread only, and `sigsuspend` letting only it in: the kernel
//!    builds a signal frame on the new stack and runs the handler there;
//! 3. the handler (asm/x86_64.S) leaves a context just below its frame and returns;
//! 4. the previous alternate stack, action and mask are restored exactly (std keeps its overflow
//!    handler's alternate stack there).
//!
//! Then, with signals back to normal, one resume ([`enter`]) enters the context: it moves to
//! the top of the stack, where the stack's `Link` is, calls [`trampoline_main`], and that loop
//! switches straight back, idle, waiting for a [`Job`].
//!
//! This layer knows stacks only as address ranges with a `Link` at the top; the stack layer
//! (`stack::boot`) carves them, writes their headers, and boots them in batches: the first of a
//! batch by the trick, the others from a clone of its context (see [`super::birth`]).

use super::switch::{Link, Transfer, resume, suspend};
use std::arch::global_asm;
use std::io;
use std::mem::MaybeUninit;
use std::ptr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

/// The stack range the boot handler accepts, and the context it leaves (0: none yet).
static BOOT_LO: AtomicUsize = AtomicUsize::new(0);
static BOOT_HI: AtomicUsize = AtomicUsize::new(0);
static BOOT_SP: AtomicUsize = AtomicUsize::new(0);

/// Serialises boots: the handler, the statics above and `sigaction` are process-wide.
static BOOT_LOCK: Mutex<()> = Mutex::new(());

/// The boot signal; 0 means the default, `SIGRTMAX() - 1`.
static BOOT_SIGNAL: AtomicI32 = AtomicI32::new(0);

global_asm!(
    include_str!("../../asm/x86_64.S"),
    boot_lo = sym BOOT_LO,
    boot_hi = sym BOOT_HI,
    boot_sp = sym BOOT_SP,
    trampoline_main = sym trampoline_main,
    link_parent = const std::mem::offset_of!(Link, parent),
);

unsafe extern "C" {
    /// The boot signal handler, in asm/x86_64.S.
    fn sigcoro_boot_handler(sig: libc::c_int, info: *mut libc::siginfo_t, uctx: *mut libc::c_void);
}

/// A job handed to an idle trampoline: `run(data, link)` runs one coroutine to its end on the
/// stack whose `Link` is `link`.
///
/// `run` must end by suspending with its outcome (it is then idle, with its frame alive for the
/// resumer to read the outcome from) and, when resumed once more, return the value word of that
/// resume: the next job.
#[repr(C)]
pub(crate) struct Job {
    pub run: unsafe fn(data: *mut u8, link: *mut Link) -> usize,
    pub data: *mut u8,
}

/// The loop every booted stack runs forever: wait idle for a job, run it, and take the next.
///
/// # Safety
///
/// Entered only from `sigcoro_trampoline_start`, on the stack whose `Link` (at the top of the
/// stack, where the trampoline moved rsp) is `link`.
unsafe extern "C" fn trampoline_main(link: *mut Link) -> ! {
    // SAFETY: we run on the stack of `link`, entered through it by the boot, which waits for us.
    let mut job = unsafe { suspend(link, Transfer { value: 0, tag: 0 }) }.value;
    loop {
        // SAFETY: whoever resumes an idle stack passes a `Job` that lives until `run` has
        // read it, and `run` is that job's own entry, made for `data`.
        job = unsafe {
            let Job { run, data } = ptr::read(job as *const Job);
            run(data, link)
        };
    }
}

/// The signal used to boot stacks.
pub fn boot_signal() -> libc::c_int {
    match BOOT_SIGNAL.load(Ordering::Relaxed) {
        0 => libc::SIGRTMAX() - 1,
        sig => sig,
    }
}

/// Chooses the real-time signal used to boot stacks (the default is `SIGRTMAX() - 1`). Pick one
/// the application does not use; it is only ever sent by a thread to itself, briefly, with every
/// other signal blocked.
pub fn set_boot_signal(sig: libc::c_int) -> io::Result<()> {
    if sig < libc::SIGRTMIN() || sig > libc::SIGRTMAX() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "signal {sig} is not a real-time signal ({}..={}): the boot signal must not be one \
                 an application or the C library relies on",
                libc::SIGRTMIN(),
                libc::SIGRTMAX()
            ),
        ));
    }
    BOOT_SIGNAL.store(sig, Ordering::Relaxed);
    Ok(())
}

fn os_error(what: &str) -> io::Error {
    let err = io::Error::last_os_error();
    io::Error::new(err.kind(), format!("booting a coroutine stack: {what} failed: {err}"))
}

/// Gives each fresh stack `low..top` of `stacks` its first context by the signal-stack trick
/// and returns the contexts, in order; none has been entered yet (see [`enter`]).
///
/// # Safety
///
/// Each range is fresh, mapped stack memory that we own, with its `Link` written at `top`.
pub(crate) unsafe fn born_by_trick(stacks: &[(usize, usize)]) -> io::Result<Vec<usize>> {
    let _lock = BOOT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: we hold the boot lock, and the ranges are ours (the contract).
    unsafe {
        with_boot_signal(|sig| {
            stacks
                .iter()
                .map(|&(low, top)| boot_one(sig, low, top))
                .collect::<io::Result<Vec<_>>>()
        })
    }
}

/// Enters a newly born context once, so it parks idle in its trampoline loop.
///
/// # Safety
///
/// `link` is the `Link` at the top of a fresh stack that we own, and `ctx` a context on that
/// stack that resumes at `sigcoro_trampoline_start`: the one the boot handler left, or its
/// clone.
pub(crate) unsafe fn enter(link: *mut Link, ctx: usize) {
    // SAFETY: entering the context runs `sigcoro_trampoline_start`, which calls
    // `trampoline_main`, which switches back to us at once through `parent`.
    unsafe {
        (*link).ctx = ctx;
        resume(link, Transfer { value: 0, tag: 0 });
    }
}

/// Blocks every signal, installs the boot handler, runs `f`, and restores the thread's mask,
/// alternate stack and the signal's previous action exactly, whatever `f` returned.
///
/// # Safety
///
/// The caller holds `BOOT_LOCK`.
unsafe fn with_boot_signal<T>(f: impl FnOnce(libc::c_int) -> io::Result<T>) -> io::Result<T> {
    let sig = boot_signal();
    // SAFETY: plain libc calls on properly initialised local structures.
    unsafe {
        let mut all = MaybeUninit::<libc::sigset_t>::uninit();
        libc::sigfillset(all.as_mut_ptr());
        let mut old_mask = MaybeUninit::<libc::sigset_t>::uninit();
        libc::pthread_sigmask(libc::SIG_SETMASK, all.as_ptr(), old_mask.as_mut_ptr());
        let mut old_stack = MaybeUninit::<libc::stack_t>::zeroed();
        let mut old_action = MaybeUninit::<libc::sigaction>::zeroed();
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = sigcoro_boot_handler as *const () as usize;
        action.sa_flags = libc::SA_ONSTACK | libc::SA_SIGINFO;
        libc::sigfillset(&mut action.sa_mask);
        let result = if libc::sigaltstack(ptr::null(), old_stack.as_mut_ptr()) != 0 {
            Err(os_error("reading the alternate signal stack"))
        } else if libc::sigaction(sig, &action, old_action.as_mut_ptr()) != 0 {
            Err(os_error("installing the boot handler"))
        } else {
            let result = f(sig);
            libc::sigaction(sig, old_action.as_ptr(), ptr::null_mut());
            let mut old = old_stack.assume_init();
            old.ss_flags &= !libc::SS_ONSTACK;
            libc::sigaltstack(&old, ptr::null_mut());
            result
        };
        libc::pthread_sigmask(libc::SIG_SETMASK, old_mask.as_ptr(), ptr::null_mut());
        result
    }
}

/// Delivers the boot signal onto the stack `low..top`; returns the context the handler left
/// there.
///
/// # Safety
///
/// Runs inside [`with_boot_signal`]; `low..top` is fresh, mapped stack memory that we own.
unsafe fn boot_one(sig: libc::c_int, low: usize, top: usize) -> io::Result<usize> {
    BOOT_LO.store(low, Ordering::Relaxed);
    BOOT_HI.store(top, Ordering::Relaxed);
    BOOT_SP.store(0, Ordering::Relaxed);
    let stack = libc::stack_t {
        ss_sp: low as *mut libc::c_void,
        ss_flags: 0,
        ss_size: top - low,
    };
    // SAFETY: plain libc calls; every signal but `sig` stays blocked, so only the boot handler
    // can run, on the stack we just installed.
    unsafe {
        if libc::sigaltstack(&stack, ptr::null_mut()) != 0 {
            return Err(os_error("installing the new stack as alternate signal stack"));
        }
        let rc = libc::pthread_kill(libc::pthread_self(), sig);
        if rc != 0 {
            let err = io::Error::from_raw_os_error(rc);
            return Err(io::Error::new(
                err.kind(),
                format!("booting a coroutine stack: sending signal {sig} to this thread failed: {err}"),
            ));
        }
        let mut wait = MaybeUninit::<libc::sigset_t>::uninit();
        libc::sigfillset(wait.as_mut_ptr());
        libc::sigdelset(wait.as_mut_ptr(), sig);
        libc::sigsuspend(wait.as_ptr());
    }
    match BOOT_SP.load(Ordering::Relaxed) {
        0 => Err(io::Error::other(format!(
            "booting a coroutine stack: signal {sig} was not delivered on the new stack"
        ))),
        sp => Ok(sp),
    }
}
