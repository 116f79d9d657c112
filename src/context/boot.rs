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
//! Then, with signals back to normal, one resume enters the context: it moves to the top of the
//! stack, calls [`trampoline_main`], and that loop switches straight back, idle, waiting for a
//! job. The pages the kernel's frame dirtied are returned, so a booted idle stack costs one page.
//!
//! New stacks come in batches ([`boot_stacks`]): only the first of a batch is born this way;
//! the others start from a clone of the context the trick left on it (see [`super::birth`] for
//! why that context, and not the frame parked after the first entry, is what can be cloned),
//! and are entered once exactly like it.

use super::birth::{self, Image};
use super::switch::{Link, Transfer, resume, suspend};
use crate::overflow;
use crate::stack::reserve;
use crate::stack::{HEADER_SIZE, Header, Stack, page_size};
use std::arch::global_asm;
use std::io;
use std::mem::MaybeUninit;
use std::ptr::{self, NonNull};
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

/// A job handed to an idle trampoline: `run(data, header)` runs one coroutine to its end.
///
/// `run` must end by suspending with its outcome (it is then idle, with its frame alive for the
/// resumer to read the outcome from) and, when resumed once more, return the value word of that
/// resume: the next job.
#[repr(C)]
pub(crate) struct Job {
    pub run: unsafe fn(data: *mut u8, header: *mut Header) -> usize,
    pub data: *mut u8,
}

/// The loop every booted stack runs forever: wait idle for a job, run it, and take the next.
///
/// # Safety
///
/// Entered only from `sigcoro_trampoline_start`, on the stack whose header is `header`.
unsafe extern "C" fn trampoline_main(header: *mut Header) -> ! {
    // SAFETY: we run on the stack `header` describes, entered through its link by the boot,
    // which waits for us.
    let mut job = unsafe { suspend(&raw mut (*header).link, Transfer { value: 0, tag: 0 }) }.value;
    loop {
        // SAFETY: whoever resumes an idle stack passes a `Job` that lives until `run` has
        // read it, and `run` is that job's own entry, made for `data`.
        job = unsafe {
            let Job { run, data } = ptr::read(job as *const Job);
            run(data, header)
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

/// Gives `n` fresh stacks of `stride` bytes their first context and appends them, idle, to
/// `out`: the first by the signal-stack trick, the others from a clone of the context the trick
/// left there (see [`birth`](super::birth)), unless the trick's image is refused or the hidden
/// control sends every birth through the trick.
pub(crate) fn boot_stacks(stride: usize, n: usize, out: &mut Vec<Stack>) -> io::Result<()> {
    overflow::ensure_handler();
    let slots = reserve::carve(stride, n)?;
    let Some((first, rest)) = slots.split_first() else {
        return Ok(());
    };
    if birth::trick_only() {
        boot_slots(&slots, stride, out)?;
        return Ok(());
    }
    match boot_slots(std::slice::from_ref(first), stride, out)? {
        Some(image) => {
            // How deep the trick-born stack parked: every clone must park exactly as deep,
            // since its first entry ran the same instructions from the same state.
            let parked = parked_depth(out.last().expect("the trick's stack").header());
            for &slot in rest {
                let header = (slot + stride - HEADER_SIZE) as *mut Header;
                // SAFETY: the slot was just carved for us alone, guard installed, and its
                // context is not born yet; the image is the trick's, captured before entry.
                let ctx = unsafe {
                    header.write(Header::new(stride));
                    (*header).born_by_clone = true;
                    image.stamp(header)
                };
                // SAFETY: `ctx` is the trick's context, cloned onto this fresh stack.
                let stack = unsafe { enter(header, ctx) };
                assert_eq!(
                    parked_depth(stack.header()),
                    parked,
                    "a cloned stack parked unlike the trick-born one it was cloned from"
                );
                out.push(stack);
            }
            birth::count(0, rest.len());
            Ok(())
        }
        None => boot_slots(rest, stride, out).map(drop),
    }
}

/// Boots fresh slots (guards installed) by the trick and appends them, idle, to `out`. Returns
/// the image of the first slot's context as the trick left it, if it may be cloned.
fn boot_slots(slots: &[usize], stride: usize, out: &mut Vec<Stack>) -> io::Result<Option<Image>> {
    let contexts = {
        let _lock = BOOT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: we hold the boot lock, and the slots were just carved for us alone.
        unsafe {
            with_boot_signal(|sig| {
                slots
                    .iter()
                    .map(|&s| boot_one(sig, s, stride))
                    .collect::<io::Result<Vec<_>>>()
            })
        }
    };
    let contexts = contexts?;
    let mut image = None;
    for (i, (&slot, &sp)) in slots.iter().zip(&contexts).enumerate() {
        let header = (slot + stride - HEADER_SIZE) as *mut Header;
        if i == 0 {
            // SAFETY: `sp` is the context the handler published for this slot's stack, which
            // nothing has resumed yet.
            image = unsafe { Image::capture(sp, slot + page_size(), header as usize) };
        }
        // SAFETY: `sp` is the context the boot handler left on this slot's stack.
        let stack = unsafe { enter(header, sp) };
        // The kernel's signal frame dirtied pages the idle trampoline does not use.
        reserve::release_cold_pages(&stack);
        out.push(stack);
    }
    birth::count(slots.len(), 0);
    Ok(image)
}

/// Bytes between an idle stack's saved context and its header.
fn parked_depth(header: *mut Header) -> usize {
    // SAFETY: the header of an idle stack we own is mapped; `ctx` is its saved rsp.
    header as usize - unsafe { (*header).link.ctx }
}

/// Enters a newly born context once, so it parks idle in its trampoline loop, and returns the
/// stack.
///
/// # Safety
///
/// `header` is the written header of a fresh slot that we own, and `ctx` a context on its stack
/// that resumes at `sigcoro_trampoline_start`: the one the boot handler left, or its clone.
unsafe fn enter(header: *mut Header, ctx: usize) -> Stack {
    // SAFETY: entering the context runs `sigcoro_trampoline_start`, which calls
    // `trampoline_main`, which switches back to us at once through `parent`.
    unsafe {
        (*header).link.ctx = ctx;
        resume(&raw mut (*header).link, Transfer { value: 0, tag: 0 });
        // The stack is born and idle, and we own it.
        Stack::from_header(NonNull::new_unchecked(header))
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

/// Delivers the boot signal onto one slot's stack; returns the context the handler left there.
///
/// # Safety
///
/// Runs inside [`with_boot_signal`]; `slot` is a fresh slot of `stride` bytes that we own.
unsafe fn boot_one(sig: libc::c_int, slot: usize, stride: usize) -> io::Result<usize> {
    let low = slot + page_size();
    let header = (slot + stride - HEADER_SIZE) as *mut Header;
    // SAFETY: the header area is ours, mapped and writable.
    unsafe { header.write(Header::new(stride)) };
    BOOT_LO.store(low, Ordering::Relaxed);
    BOOT_HI.store(header as usize, Ordering::Relaxed);
    BOOT_SP.store(0, Ordering::Relaxed);
    let stack = libc::stack_t {
        ss_sp: low as *mut libc::c_void,
        ss_flags: 0,
        ss_size: header as usize - low,
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

/// Boots an idle stack of this thread's pool again, guard page included, exactly as a fresh
/// one: what the `cold creation` benchmark measures without growing memory.
#[doc(hidden)]
pub fn reboot_one_for_bench(size: usize) -> io::Result<()> {
    let size = crate::stack::validate_size(size)?;
    let stack = crate::stack::pool::take(size)?;
    let stride = stack.stride();
    let slot = reserve::slot_base(stack.into_header().as_ptr() as usize, stride);
    reserve::install_guard(slot)?;
    let mut out = Vec::with_capacity(1);
    boot_slots(&[slot], stride, &mut out)?;
    out.into_iter().for_each(crate::stack::pool::give);
    Ok(())
}
