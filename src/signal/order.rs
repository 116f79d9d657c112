//! Keeping the values of a real-time signal in the order the kernel queued them.
//!
//! A process-directed signal may be taken from the kernel's queue by any thread that does not
//! block it, and by the dispatcher's signalfd. Two takers run in parallel: a thread that took
//! value 28 and is still on its way to forward it loses the race against the dispatcher, which
//! reads 29 to 45 directly. No handler can undo that, since the order is lost between the
//! kernel's dequeue and the handler's first instruction. So, for real-time signals, sigcoro
//! makes the dispatcher the only taker: when the first [`Signals`](super::Signals) for one is
//! made, every thread of the process is asked to block it (the caller's thread directly, every
//! other one with a thread-directed copy of the signal that carries [`BLOCK_TAG`], whose
//! handler adds the signal to the mask the thread returns to), and the subscription waits until
//! each thread that did not block the signal has done so. Threads started later inherit the
//! mask. A thread that blocked it only for a moment (one inside `pthread_create` blocks
//! everything) gets the request too, without a wait: a thread takes the signals queued to it
//! alone before those of the process, so its first delivery of the signal is the request, and
//! it blocks the signal before it could take one of the process's. A thread that unblocks it
//! again later takes the next delivery through the handler, which forwards it and blocks the
//! signal again.

use std::io;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The `sigval` of a request to block the signal (not a delivery): "SGCRBLK!".
pub(super) const BLOCK_TAG: u64 = 0x5347_4352_424c_4b21;

/// Requests handled: the handler counts each.
pub(super) static BLOCKED: AtomicUsize = AtomicUsize::new(0);

/// Set by [`unordered_real_time_signals_for_tests`].
pub(super) static ORDER_OFF: AtomicBool = AtomicBool::new(false);

/// How long a subscription waits for every thread to block the signal. A thread that has not
/// answered by then (stopped by a debugger, say) blocks it when it next runs; a delivery it
/// takes before that may be out of order.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// The tests' control: real-time signals are neither blocked in the process's threads nor kept
/// in order, as before. Process-wide; not part of the API.
#[doc(hidden)]
pub fn unordered_real_time_signals_for_tests() {
    ORDER_OFF.store(true, Ordering::Relaxed);
}

/// Whether `sig` is a real-time signal, whose deliveries queue and keep their order.
pub(super) fn is_real_time(sig: libc::c_int) -> bool {
    sig >= libc::SIGRTMIN() && sig <= libc::SIGRTMAX()
}

/// Blocks the real-time signal `sig` in every thread of the process except the dispatcher
/// (`dispatcher`, its thread id), and waits (at most [`ANSWER_WITHIN`]) until they all have.
/// The signal's handler must already be `forward`.
pub(super) fn block_everywhere(sig: libc::c_int, dispatcher: i32) -> io::Result<()> {
    if ORDER_OFF.load(Ordering::Relaxed) {
        return Ok(());
    }
    // SAFETY: sigset_t is plain data that sigemptyset initialises; SIG_BLOCK only adds `sig` to
    // this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = MaybeUninit::zeroed().assume_init();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    // SAFETY: plain syscalls.
    let (pid, me) = unsafe { (libc::getpid(), libc::syscall(libc::SYS_gettid) as i32) };
    let before = BLOCKED.load(Ordering::Acquire);
    let mut asked = 0;
    let tasks = std::fs::read_dir("/proc/self/task").map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "sigcoro::signal: listing the threads (/proc/self/task) to block real-time signal {sig} in each: {e}"
            ),
        )
    })?;
    for tid in tasks.filter_map(|t| t.ok()?.file_name().to_str()?.parse::<i32>().ok()) {
        if tid == me || tid == dispatcher {
            continue;
        }
        let (blocked, pending) = mask_of(tid, sig);
        if blocked && pending {
            // Whatever it takes first when it unblocks the signal is queued to it alone, and
            // the handler then blocks the signal: no more requests pile up in its queue.
            continue;
        }
        match queue_tag(pid, tid, sig) {
            Ok(()) if !blocked => asked += 1,
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {} // it has exited
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!(
                        "sigcoro::signal: asking thread {tid} to block real-time signal {sig} (so that its \
                         deliveries keep their order) failed: {e}; RLIMIT_SIGPENDING may be too low"
                    ),
                ));
            }
        }
    }
    let deadline = Instant::now() + ANSWER_WITHIN;
    while BLOCKED.load(Ordering::Acquire).wrapping_sub(before) < asked && Instant::now() < deadline {
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(())
}

/// Whether thread `tid` blocks `sig`, and whether `sig` is pending for it alone, from the
/// `SigBlk` and `SigPnd` lines of its status (false when unknown).
fn mask_of(tid: i32, sig: libc::c_int) -> (bool, bool) {
    let Ok(status) = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")) else {
        return (false, false);
    };
    let has = |line: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(line))
            .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
            .is_some_and(|mask| mask & (1u64 << (sig - 1)) != 0)
    };
    (has("SigBlk:"), has("SigPnd:"))
}

/// Queues `sig` to thread `tid` with [`BLOCK_TAG`] as its value.
fn queue_tag(pid: libc::pid_t, tid: i32, sig: libc::c_int) -> io::Result<()> {
    let si = super::RtInfo {
        signo: sig,
        errno: 0,
        code: libc::SI_QUEUE,
        _pad: 0,
        pid,
        // SAFETY: a plain syscall.
        uid: unsafe { libc::getuid() },
        value: BLOCK_TAG,
        _rest: [0; 12],
    };
    // SAFETY: a plain syscall with a pointer to a full siginfo, to a thread of our process.
    let r = unsafe { libc::syscall(libc::SYS_rt_tgsigqueueinfo, pid, tid, sig, &raw const si) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
