//! Stack overflow reports for coroutines.
//!
//! A coroutine that runs off the bottom of its stack touches the slot's guard page and the
//! kernel raises SIGSEGV (SIGBUS on some kernels). The handler, on the thread's alternate
//! signal stack, looks the address up in the table of stack reservations; on a guard hit it
//! writes which coroutine overflowed and its stack size with `write(2)`, then aborts. Any other
//! fault goes to the handler that was installed before ours, so std's own "thread has
//! overflowed its stack" report keeps working.
//!
//! When the kernel cannot even push a signal's frame onto a nearly full coroutine stack (a
//! preemption signal in a `preemptible` region, say), the SIGSEGV it raises instead carries no
//! address; the handler then looks at the interrupted stack pointer (see `frame_push_failed`).
//!
//! Everything the handler does is async-signal-safe: atomics, arithmetic, a buffer on its own
//! stack, `write`, `sigaction` and `abort`.

use super::reserve;
use memmap2::{MmapMut, MmapOptions};
use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Once, OnceLock};

static INSTALL: Once = Once::new();
static PREV_SEGV: OnceLock<libc::sigaction> = OnceLock::new();
static PREV_BUS: OnceLock<libc::sigaction> = OnceLock::new();

/// Installs the fault handler (once per process) and makes sure this thread has an alternate
/// signal stack for it to run on (threads made by std have one; others get one here).
pub(crate) fn ensure_handler() {
    INSTALL.call_once(|| {
        // SAFETY: getauxval reads the auxiliary vector; 0 means the kernel did not say.
        let frame = unsafe { libc::getauxval(libc::AT_MINSIGSTKSZ) } as usize;
        if frame != 0 {
            FRAME_REACH.store(frame + 4096, Ordering::Relaxed);
        }
        install(libc::SIGSEGV, &PREV_SEGV);
        install(libc::SIGBUS, &PREV_BUS);
    });
    // While the thread is being torn down the slot is gone; its alternate stack, if we made
    // one, was disabled with it, and the kernel then reports an overflow as a plain SIGSEGV.
    let _ = THREAD_ALT_STACK.try_with(|s| {
        let mut s = s.borrow_mut();
        if s.is_none() {
            *s = Some(AltStack::ensure());
        }
    });
}

fn install(sig: libc::c_int, prev: &OnceLock<libc::sigaction>) {
    // SAFETY: we read the current action, keep it, then install ours; the previous one is
    // stored before ours can run, and the handler only reads it.
    unsafe {
        let mut old = MaybeUninit::<libc::sigaction>::zeroed();
        libc::sigaction(sig, ptr::null(), old.as_mut_ptr());
        let _ = prev.set(old.assume_init());
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_fault as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        libc::sigemptyset(&mut action.sa_mask);
        // The preemption signal must not land while the report is written or the process
        // aborts: its handler would walk the alternate stack as if it were the coroutine's,
        // and a fault there, with SIGSEGV blocked, kills the process with a bare SIGSEGV.
        libc::sigaddset(&mut action.sa_mask, crate::ground::preempt_signal());
        libc::sigaction(sig, &action, ptr::null_mut());
    }
}

/// The alternate signal stack this module gave a thread that had none (`None` inside: the
/// thread already had one).
struct AltStack(Option<MmapMut>);

thread_local! {
    static THREAD_ALT_STACK: RefCell<Option<AltStack>> = const { RefCell::new(None) };
}

impl AltStack {
    fn ensure() -> AltStack {
        // SAFETY: reading the current alternate stack into a local.
        let current = unsafe {
            let mut cur = MaybeUninit::<libc::stack_t>::zeroed();
            libc::sigaltstack(ptr::null(), cur.as_mut_ptr());
            cur.assume_init()
        };
        if current.ss_flags & libc::SS_DISABLE == 0 {
            return AltStack(None);
        }
        let size = super::min_stack_size() + 64 * 1024;
        let Ok(map) = MmapOptions::new().len(size).stack().map_anon() else {
            return AltStack(None);
        };
        let stack = libc::stack_t {
            ss_sp: map.as_ptr() as *mut libc::c_void,
            ss_flags: 0,
            ss_size: size,
        };
        // SAFETY: the mapping lives as long as this thread's AltStack, which disables it first.
        unsafe { libc::sigaltstack(&stack, ptr::null_mut()) };
        AltStack(Some(map))
    }
}

impl Drop for AltStack {
    fn drop(&mut self) {
        if self.0.is_some() {
            let off = libc::stack_t {
                ss_sp: ptr::null_mut(),
                ss_flags: libc::SS_DISABLE,
                ss_size: 0,
            };
            // SAFETY: disabling our alternate stack before its memory goes away.
            unsafe { libc::sigaltstack(&off, ptr::null_mut()) };
        }
    }
}

extern "C" fn on_fault(sig: libc::c_int, info: *mut libc::siginfo_t, uctx: *mut libc::c_void) {
    // SAFETY: errno is a thread-local int that libc hands out a pointer to.
    let errno = unsafe { *libc::__errno_location() };
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers; SIGSEGV/SIGBUS carry
    // the faulting address.
    let addr = unsafe { (*info).si_addr() } as usize;
    // SAFETY: the kernel passes the interrupted context for SA_SIGINFO handlers.
    let sp = unsafe { interrupted_sp(uctx) };
    // SAFETY: as above; the kernel passes the interrupted context for SA_SIGINFO handlers.
    let hit = reserve::guard_hit(addr, sp).or_else(|| unsafe { frame_push_failed(info, uctx) });
    if let Some(header) = hit {
        // SAFETY: the header of a slot whose guard was hit by a thread running in that slot's
        // reservation is mapped: the reservation is held while one of its stacks is live (see
        // `reserve::guard_hit`).
        unsafe { report(&*header) };
        // SAFETY: abort is async-signal-safe.
        unsafe { libc::abort() };
    }
    let prev = if sig == libc::SIGSEGV {
        PREV_SEGV.get()
    } else {
        PREV_BUS.get()
    };
    match prev {
        Some(p) if p.sa_sigaction != libc::SIG_DFL && p.sa_sigaction != libc::SIG_IGN => {
            if p.sa_flags & libc::SA_SIGINFO != 0 {
                // SAFETY: the previous handler was installed with SA_SIGINFO, so this is its type.
                let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                    unsafe { std::mem::transmute(p.sa_sigaction) };
                f(sig, info, uctx);
            } else {
                // SAFETY: a plain handler takes the signal number only.
                let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(p.sa_sigaction) };
                f(sig);
            }
        }
        _ => {
            // Restore the default action and return: the fault repeats and the process dies of
            // it as it would have without us (with a core dump where enabled).
            // SAFETY: sigaction is async-signal-safe.
            unsafe {
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &dfl, ptr::null_mut());
            }
        }
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// How far below the interrupted stack pointer a signal frame may reach: the kernel's own
/// figure for this CPU (`AT_MINSIGSTKSZ`), plus a page for the red zone and alignment. Read at
/// install time, so the handler does not call `getauxval`.
static FRAME_REACH: AtomicUsize = AtomicUsize::new(64 * 1024);

/// The tests' control: reports of failed frame pushes switched off (see
/// [`crate::stack::disable_frame_push_reports_for_tests`]).
pub(crate) static FRAME_PUSH_REPORTS_OFF: AtomicBool = AtomicBool::new(false);

/// When the kernel cannot push a signal's frame (the coroutine's stack has less room left than
/// a frame needs), it kills the thread with a SIGSEGV of its own: `si_code` `SI_KERNEL` and no
/// address. That is an overflow if the interrupted stack pointer lies within a frame's reach
/// above a coroutine's guard page.
///
/// # Safety
///
/// `info` and `uctx` are what the kernel passed to an `SA_SIGINFO` handler.
unsafe fn frame_push_failed(info: *const libc::siginfo_t, uctx: *const libc::c_void) -> Option<*const super::Header> {
    // SAFETY: per the contract.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    if code != libc::SI_KERNEL || addr != 0 || uctx.is_null() || FRAME_PUSH_REPORTS_OFF.load(Ordering::Relaxed) {
        return None;
    }
    // SAFETY: per the contract, `uctx` is the interrupted thread's context.
    let sp = unsafe { (*uctx.cast::<libc::ucontext_t>()).uc_mcontext.gregs[libc::REG_RSP as usize] } as usize;
    let reach = FRAME_REACH.load(Ordering::Relaxed);
    let mut below = 0;
    while below <= reach {
        if let Some(header) = reserve::guard_hit(sp.wrapping_sub(below), sp) {
            return Some(header);
        }
        below += 1024;
    }
    None
}

/// The stack pointer of the interrupted context, or 0 if there is none.
///
/// # Safety
///
/// `uctx` is null or what the kernel passed to an `SA_SIGINFO` handler.
unsafe fn interrupted_sp(uctx: *const libc::c_void) -> usize {
    if uctx.is_null() {
        return 0;
    }
    // SAFETY: per the contract, `uctx` is the interrupted thread's context.
    unsafe { (*uctx.cast::<libc::ucontext_t>()).uc_mcontext.gregs[libc::REG_RSP as usize] as usize }
}

/// A fixed buffer that formats without allocating.
struct Msg {
    buf: [u8; 256],
    len: usize,
}

impl Msg {
    fn push(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }

    fn push_u64(&mut self, mut v: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }
}

/// Writes the overflow report for the coroutine whose stack header is given.
fn report(header: &super::Header) {
    let mut m = Msg { buf: [0; 256], len: 0 };
    m.push(b"\nsigcoro: coroutine ");
    let name = header.name_bytes();
    if name.is_empty() {
        m.push(b"<unnamed>");
    } else {
        m.push(b"'");
        m.push(name);
        m.push(b"'");
    }
    m.push(b" (id ");
    m.push_u64(header.id);
    m.push(b") has overflowed its stack of ");
    m.push_u64(header.size as u64);
    m.push(b" bytes\nfatal runtime error: coroutine stack overflow, aborting\n");
    // SAFETY: write(2) to stderr from a local buffer is async-signal-safe.
    unsafe { libc::write(2, m.buf.as_ptr() as *const libc::c_void, m.len) };
}
