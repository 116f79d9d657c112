//! POSIX signals delivered to coroutines as messages (seed 004's synchronous model).
//!
//! ```no_run
//! use sigcoro::signal::{SIGINT, SIGTERM, Signals};
//!
//! sigcoro::run(|| {
//!     let signals = Signals::new(&[SIGINT, SIGTERM]).unwrap();
//!     let sig = signals.recv();
//!     println!("got signal {} from pid {:?}; shutting down", sig.number(), sig.sender_pid());
//! });
//! ```
//!
//! # How a signal travels
//!
//! A dedicated thread, `sigcoro-signals`, blocks every signal and reads a `signalfd`: it is
//! the one place where signals are taken, synchronously, and turned into messages. For each
//! signal some [`Signals`] asks for, a small handler is installed (process-wide, as `sigaction`
//! is) whose only job is to re-queue the signal, with its `siginfo` (sender pid and uid,
//! `sigqueue` value), to that thread with `rt_tgsigqueueinfo`. So the model holds whatever the
//! other threads' masks are: no thread has to block anything, and code that runs when the signal
//! lands (a coroutine, a worker, foreign code) never runs application logic in a handler. If
//! every other thread of the process blocks the signal, the signalfd takes it directly, which
//! is how real-time signals travel (below). Only
//! the code, sender and value survive the trip: other `siginfo` fields (a SIGCHLD's exit
//! status, say) are not kept.
//!
//! When the last `Signals` for a standard signal is dropped, the disposition that was there
//! before the first one was made is restored. A real-time signal keeps sigcoro's handler and
//! stays blocked in the threads (below): later deliveries nobody asks for are dropped.
//!
//! # Real-time signals keep their order
//!
//! Process-directed deliveries of one real-time signal reach the [`Signals`] in the order the
//! kernel queued them (the order sent). For that, only one thread may take them from the
//! kernel's queue: when the first `Signals` for a real-time signal is made, sigcoro blocks it
//! in every thread of the process and waits until each has (threads started later inherit the
//! mask), and the dispatcher's signalfd takes them all. The masks, and sigcoro's handler, stay
//! so after the last `Signals` for it is dropped (a thread that blocked the signal for a moment
//! when it was asked may hold the request until it unblocks it). A copy directed at one thread (`pthread_sigqueue`, `tgkill`, a
//! `SIGEV_THREAD_ID` timer) therefore stays pending in that thread and is not received, unless
//! it is sent to a thread that unblocked the signal again: that thread's handler forwards it
//! and blocks the signal once more. Standard signals are never blocked.
//!
//! # Coalescing and queueing
//!
//! - **Standard signals** (1 to 31) **coalesce**: deliveries of a signal that is already
//!   pending, in the kernel or in a `Signals` that has not received it yet, count once.
//! - **Real-time signals** (`SIGRTMIN()` to `SIGRTMAX()`) **queue**: each delivery is received
//!   once, in the order sent (see below), with its value, up to [`MAX_QUEUED`] waiting per `Signals`
//!   (beyond that, new ones are dropped) and within the kernel's `RLIMIT_SIGPENDING`.
//!
//! # Who gets a signal
//!
//! Every `Signals` that includes the signal gets its own copy (a broadcast): a library can
//! listen for SIGTERM without stealing it from the application. One `Signals` shared by several
//! coroutines hands each delivery to exactly one of them: the one that has waited longest.
//!
//! # Refused signals
//!
//! SIGKILL and SIGSTOP (the kernel acts on them directly), SIGSEGV, SIGBUS, SIGFPE and SIGILL
//! (faults of the thread that ran the faulting instruction; sigcoro's overflow reports use
//! SIGSEGV and SIGBUS), the runtime's own signals ([`crate::boot_signal`], and `SIGRTMAX() - 2`,
//! reserved for preemption), and the two real-time signals below `SIGRTMIN()` that the C
//! library keeps for itself. Asking for one is an `InvalidInput` error that says why.

mod order;

#[doc(hidden)]
pub use order::unordered_real_time_signals_for_tests;

use crate::ground::{LockGuard, lock};
use crate::sync::{Condvar, Mutex as CoMutex};
use std::collections::VecDeque;
use std::io;
use std::mem::{MaybeUninit, size_of};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub use libc::{SIGALRM, SIGCHLD, SIGHUP, SIGINT, SIGPIPE, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH};

/// How many real-time signals one [`Signals`] keeps waiting before it drops new ones.
pub const MAX_QUEUED: usize = 1024;

/// One delivery of a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signal {
    number: libc::c_int,
    code: i32,
    pid: u32,
    uid: u32,
    value: Option<u64>,
}

impl Signal {
    /// The signal number, e.g. [`SIGINT`].
    pub fn number(&self) -> libc::c_int {
        self.number
    }

    /// The `si_code` it was sent with: `SI_USER` (0) for `kill`, `SI_QUEUE` (-1) for
    /// `sigqueue`, `SI_TKILL` (-6) for `tgkill`, a positive code when the kernel sent it.
    pub fn code(&self) -> i32 {
        self.code
    }

    /// The process that sent it, for signals sent by a process (`kill`, `sigqueue`, `tgkill`).
    pub fn sender_pid(&self) -> Option<u32> {
        (self.code <= 0).then_some(self.pid)
    }

    /// The real user id of the sender, when [`Signal::sender_pid`] is known.
    pub fn sender_uid(&self) -> Option<u32> {
        (self.code <= 0).then_some(self.uid)
    }

    /// The value passed to `sigqueue` (the whole `sigval`, as an integer).
    pub fn value(&self) -> Option<u64> {
        self.value
    }
}

/// A subscription to some signals: receives them as messages. See the [module docs](self).
pub struct Signals {
    sub: Arc<Subscriber>,
    numbers: Vec<libc::c_int>,
}

struct Subscriber {
    /// Bit `n` set: wants signal `n`.
    set: u128,
    queue: CoMutex<VecDeque<Signal>>,
    cond: Condvar,
}

impl Subscriber {
    fn wants(&self, sig: libc::c_int) -> bool {
        (0..128).contains(&sig) && self.set & (1u128 << sig) != 0
    }

    /// Adds a delivery: standard signals coalesce with one still waiting; real-time ones queue.
    fn push(&self, s: Signal) {
        let mut q = self.queue.lock();
        if s.number < libc::SIGRTMIN() && q.iter().any(|p| p.number == s.number) {
            return;
        }
        if q.len() >= MAX_QUEUED {
            return;
        }
        q.push_back(s);
        drop(q);
        self.cond.notify_one();
    }
}

impl Signals {
    /// Subscribes to `signals`; fails, changing nothing, if one of them is refused (see the
    /// [module docs](self)) or the dispatcher thread cannot start.
    pub fn new(signals: &[libc::c_int]) -> io::Result<Signals> {
        for &sig in signals {
            check(sig)?;
        }
        let mut numbers = signals.to_vec();
        numbers.sort_unstable();
        numbers.dedup();
        let sub = Arc::new(Subscriber {
            set: numbers.iter().fold(0u128, |acc, &s| acc | (1u128 << s)),
            queue: CoMutex::new(VecDeque::new()),
            cond: Condvar::new(),
        });
        let mut reg = registry();
        reg.start()?;
        for (i, &sig) in numbers.iter().enumerate() {
            if let Err(e) = reg.acquire(sig) {
                for &done in &numbers[..i] {
                    reg.release(done);
                }
                return Err(e);
            }
        }
        reg.subs.push(sub.clone());
        Ok(Signals { sub, numbers })
    }

    /// The signals this subscription receives.
    pub fn signals(&self) -> &[libc::c_int] {
        &self.numbers
    }

    /// Waits for the next signal: parks the coroutine, or blocks the thread outside a runtime.
    pub fn recv(&self) -> Signal {
        let mut q = self.sub.queue.lock();
        loop {
            if let Some(s) = q.pop_front() {
                return s;
            }
            q = self.sub.cond.wait(q);
        }
    }

    /// Waits at most `timeout` for the next signal.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Signal> {
        match Instant::now().checked_add(timeout) {
            Some(deadline) => self.recv_deadline(deadline),
            None => Some(self.recv()),
        }
    }

    /// Waits until `deadline` for the next signal.
    pub fn recv_deadline(&self, deadline: Instant) -> Option<Signal> {
        let mut q = self.sub.queue.lock();
        loop {
            if let Some(s) = q.pop_front() {
                return Some(s);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            q = self.sub.cond.wait_timeout(q, left).0;
        }
    }

    /// The next signal if one is waiting.
    pub fn try_recv(&self) -> Option<Signal> {
        self.sub.queue.lock().pop_front()
    }

    /// An endless iterator of [`Signals::recv`].
    pub fn iter(&self) -> impl Iterator<Item = Signal> + '_ {
        std::iter::repeat_with(|| self.recv())
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        let mut reg = registry();
        reg.subs.retain(|s| !Arc::ptr_eq(s, &self.sub));
        for &sig in &self.numbers {
            reg.release(sig);
        }
    }
}

impl std::fmt::Debug for Signals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signals").field("signals", &self.numbers).finish()
    }
}

/// Waits for one SIGINT (Ctrl-C at a terminal).
///
/// A SIGINT that arrives before this call subscribes still has its previous effect (by
/// default, ending the process); make a [`Signals`] early if that window matters.
pub fn ctrl_c() -> io::Result<()> {
    Signals::new(&[SIGINT])?.recv();
    Ok(())
}

/// Refuses what cannot or must not become a message, saying why.
fn check(sig: libc::c_int) -> io::Result<()> {
    let max = libc::SIGRTMAX();
    let why = if sig < 1 || sig > max {
        format!("signal {sig} does not exist here (signals are 1..={max})")
    } else if sig == libc::SIGKILL || sig == libc::SIGSTOP {
        format!(
            "signal {sig} ({}) cannot be caught or blocked: the kernel acts on it directly",
            if sig == libc::SIGKILL { "SIGKILL" } else { "SIGSTOP" }
        )
    } else if let Some(name) = fault_name(sig) {
        format!(
            "signal {sig} ({name}) reports a fault of the instruction that raised it, in the thread \
             that ran it; it cannot be turned into a message (sigcoro's stack-overflow reports use \
             SIGSEGV and SIGBUS)"
        )
    } else if sig == crate::boot_signal() {
        format!("signal {sig} is used by sigcoro to boot coroutine stacks (see sigcoro::set_boot_signal)")
    } else if sig == max - 2 {
        format!("signal {sig} (SIGRTMAX-2) is reserved by sigcoro for preemption")
    } else if sig > 31 && sig < libc::SIGRTMIN() {
        format!("signal {sig} is reserved by the C library for its threads")
    } else {
        return Ok(());
    };
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("sigcoro::signal: {why}"),
    ))
}

fn fault_name(sig: libc::c_int) -> Option<&'static str> {
    match sig {
        libc::SIGSEGV => Some("SIGSEGV"),
        libc::SIGBUS => Some("SIGBUS"),
        libc::SIGFPE => Some("SIGFPE"),
        libc::SIGILL => Some("SIGILL"),
        _ => None,
    }
}

/// The dispatcher thread's id, where handlers forward signals (0 before it starts).
static DISPATCHER: AtomicI32 = AtomicI32::new(0);

/// Marks a forwarded signal whose original `si_code` (in the low 32 bits) had to be replaced
/// by SI_QUEUE, the only code the kernel lets a thread queue to another.
const FORWARD_TAG: u64 = 0x5347_4352_0000_0000;
const TAG_MASK: u64 = 0xffff_ffff_0000_0000;

/// The process-wide subscription state.
struct Registry {
    /// The dispatcher's signalfd; its mask only grows (signals nobody wants are dropped).
    sfd: Option<OwnedFd>,
    mask: libc::sigset_t,
    subs: Vec<Arc<Subscriber>>,
    /// Per signal: how many subscriptions want it, and the action before the first.
    users: Vec<(u32, Option<libc::sigaction>)>,
}

fn registry() -> LockGuard<'static, Registry> {
    static REG: OnceLock<Mutex<Registry>> = OnceLock::new();
    lock(REG.get_or_init(|| {
        // SAFETY: sigset_t is plain data; sigemptyset initialises it.
        let mut mask: libc::sigset_t = unsafe { MaybeUninit::zeroed().assume_init() };
        // SAFETY: a valid sigset_t pointer.
        unsafe { libc::sigemptyset(&mut mask) };
        Mutex::new(Registry {
            sfd: None,
            mask,
            subs: Vec::new(),
            users: vec![(0, None); 128],
        })
    }))
}

impl Registry {
    /// Starts the dispatcher thread if it is not running.
    fn start(&mut self) -> io::Result<()> {
        if self.sfd.is_some() {
            return Ok(());
        }
        // SAFETY: `self.mask` is an initialised sigset_t; -1 asks for a new signalfd.
        let fd = unsafe { libc::signalfd(-1, &self.mask, libc::SFD_CLOEXEC) };
        if fd < 0 {
            return Err(os_error(
                "creating the dispatcher's signalfd (a descriptor; see ulimit -n)",
            ));
        }
        // SAFETY: a fresh fd nobody else owns.
        let sfd = unsafe { OwnedFd::from_raw_fd(fd) };
        let raw = sfd.as_raw_fd();
        let (tx, rx) = std::sync::mpsc::channel();
        // The thread is born with every signal blocked (it inherits this thread's mask), so no
        // signal can land on it before it reads the signalfd.
        let spawned = with_all_blocked(|| {
            std::thread::Builder::new()
                .name("sigcoro-signals".into())
                .spawn(move || {
                    // SAFETY: a plain syscall.
                    let tid = unsafe { libc::syscall(libc::SYS_gettid) } as i32;
                    let _ = tx.send(tid);
                    dispatch(raw);
                })
        })
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("sigcoro::signal: starting the dispatcher thread failed: {e}"),
            )
        })?;
        drop(spawned);
        let tid = rx
            .recv()
            .map_err(|_| io::Error::other("sigcoro::signal: the dispatcher thread died at birth"))?;
        DISPATCHER.store(tid, Ordering::Release);
        self.sfd = Some(sfd);
        Ok(())
    }

    /// One more subscription wants `sig`: make sure the dispatcher reads it and the handler
    /// forwards it.
    fn acquire(&mut self, sig: libc::c_int) -> io::Result<()> {
        let i = sig as usize;
        if self.users[i].0 == 0 {
            // SAFETY: an initialised sigset_t and a valid signal number.
            unsafe { libc::sigaddset(&mut self.mask, sig) };
            let sfd = self.sfd.as_ref().expect("started").as_raw_fd();
            // SAFETY: updating the mask of our own signalfd.
            if unsafe { libc::signalfd(sfd, &self.mask, libc::SFD_CLOEXEC) } < 0 {
                return Err(os_error(&format!("adding signal {sig} to the dispatcher's signalfd")));
            }
            // SAFETY: sigaction is plain data; zeroes are a valid start.
            let mut sa: libc::sigaction = unsafe { MaybeUninit::zeroed().assume_init() };
            sa.sa_sigaction = forward as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART | libc::SA_ONSTACK;
            // SAFETY: a valid sigset_t inside `sa`.
            unsafe { libc::sigfillset(&mut sa.sa_mask) };
            // SAFETY: as above.
            let mut old: libc::sigaction = unsafe { MaybeUninit::zeroed().assume_init() };
            // SAFETY: valid pointers; `forward` is async-signal-safe.
            if unsafe { libc::sigaction(sig, &sa, &mut old) } != 0 {
                return Err(os_error(&format!("installing the handler of signal {sig}")));
            }
            self.users[i].1 = Some(old);
            if order::is_real_time(sig) {
                self.users[i].0 += 1;
                if let Err(e) = order::block_everywhere(sig, DISPATCHER.load(Ordering::Acquire)) {
                    self.release(sig);
                    return Err(e);
                }
                return Ok(());
            }
        }
        self.users[i].0 += 1;
        Ok(())
    }

    /// One subscription less for `sig`: the last one restores the previous action, except for
    /// a real-time signal (see the module docs): a request to block it may still wait in a
    /// thread that blocks it, and must meet `forward` whenever that thread unblocks it.
    fn release(&mut self, sig: libc::c_int) {
        let i = sig as usize;
        self.users[i].0 -= 1;
        if order::is_real_time(sig) && !order::ORDER_OFF.load(Ordering::Relaxed) {
            return;
        }
        if self.users[i].0 == 0
            && let Some(old) = self.users[i].1.take()
        {
            // SAFETY: restoring an action sigaction gave us.
            unsafe { libc::sigaction(sig, &old, std::ptr::null_mut()) };
        }
    }
}

/// The last OS error, saying what `sigcoro::signal` was doing.
fn os_error(what: &str) -> io::Error {
    let err = io::Error::last_os_error();
    io::Error::new(err.kind(), format!("sigcoro::signal: {what} failed: {err}"))
}

/// Runs `f` with every signal blocked in this thread, then restores the mask.
fn with_all_blocked<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: sigset_t is plain data; sigfillset initialises it; pthread_sigmask only changes
    // this thread's mask, and we put it back.
    unsafe {
        let mut all: libc::sigset_t = MaybeUninit::zeroed().assume_init();
        let mut old: libc::sigset_t = MaybeUninit::zeroed().assume_init();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let r = f();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        r
    }
}

/// The head of the kernel's siginfo for the signals we forward (the `_rt` layout).
#[repr(C)]
#[derive(Clone, Copy)]
struct RtInfo {
    signo: i32,
    errno: i32,
    code: i32,
    _pad: i32,
    pid: i32,
    uid: u32,
    value: u64,
    _rest: [u64; 12],
}

const _: () = assert!(size_of::<RtInfo>() == size_of::<libc::siginfo_t>());

/// The handler of every subscribed signal: re-queue it, with its siginfo, to the dispatcher.
/// A real-time signal is also blocked in the mask this thread returns to (see the module docs);
/// a request to block it ([`order::BLOCK_TAG`]) is counted, not forwarded.
/// Async-signal-safe: three syscalls at most, no allocation, errno saved.
extern "C" fn forward(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: errno is thread-local and always addressable.
    let errno = unsafe { *libc::__errno_location() };
    if order::is_real_time(sig) && !ctx.is_null() && !order::ORDER_OFF.load(Ordering::Relaxed) {
        // SAFETY: with SA_SIGINFO the kernel passes the interrupted context, whose mask it
        // restores when the handler returns; sigaddset is async-signal-safe.
        unsafe { libc::sigaddset(&mut (*ctx.cast::<libc::ucontext_t>()).uc_sigmask, sig) };
    }
    let tid = DISPATCHER.load(Ordering::Relaxed);
    if tid > 0 && !info.is_null() {
        // SAFETY: with SA_SIGINFO the kernel passes a valid siginfo_t, which RtInfo mirrors.
        let mut si = unsafe { info.cast::<RtInfo>().read() };
        // SAFETY: getpid is async-signal-safe.
        if si.code == libc::SI_QUEUE && si.value == order::BLOCK_TAG && si.pid == unsafe { libc::getpid() } {
            order::BLOCKED.fetch_add(1, Ordering::AcqRel);
            // SAFETY: as above.
            unsafe { *libc::__errno_location() = errno };
            return;
        }
        if si.code >= 0 || si.code == libc::SI_TKILL {
            // The kernel only lets a thread queue SI_QUEUE-coded signals to another thread.
            si.value = FORWARD_TAG | u64::from(si.code as u32);
            si.code = libc::SI_QUEUE;
        }
        // SAFETY: a plain syscall with a pointer to a full siginfo.
        unsafe { libc::syscall(libc::SYS_rt_tgsigqueueinfo, libc::getpid(), tid, sig, &raw const si) };
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// The dispatcher thread: reads the signalfd forever and hands each signal to its subscribers.
fn dispatch(sfd: RawFd) {
    const N: usize = 16;
    // SAFETY: signalfd_siginfo is plain data.
    let mut buf: [libc::signalfd_siginfo; N] = unsafe { MaybeUninit::zeroed().assume_init() };
    loop {
        // SAFETY: reading into a local buffer of N records.
        let n = unsafe { libc::read(sfd, buf.as_mut_ptr().cast(), size_of::<[libc::signalfd_siginfo; N]>()) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        let count = n as usize / size_of::<libc::signalfd_siginfo>();
        for si in &buf[..count] {
            let signal = decode(si);
            let subs: Vec<Arc<Subscriber>> = registry()
                .subs
                .iter()
                .filter(|s| s.wants(signal.number))
                .cloned()
                .collect();
            for s in subs {
                s.push(signal);
            }
        }
    }
}

/// A signalfd record as a [`Signal`], undoing the forwarding's code rewrite.
fn decode(si: &libc::signalfd_siginfo) -> Signal {
    let (code, value) = if si.ssi_code == libc::SI_QUEUE && si.ssi_ptr & TAG_MASK == FORWARD_TAG {
        ((si.ssi_ptr & 0xffff_ffff) as u32 as i32, None)
    } else if si.ssi_code == libc::SI_QUEUE {
        (si.ssi_code, Some(si.ssi_ptr))
    } else {
        (si.ssi_code, None)
    };
    Signal {
        number: si.ssi_signo as libc::c_int,
        code,
        pid: si.ssi_pid,
        uid: si.ssi_uid,
        value,
    }
}
