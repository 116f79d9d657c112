//! `Interrupt`: asynchronous notifications for a worker, after Perl's Async::Interrupt.
//!
//! An interrupt belongs to the worker that created it and holds a callback. Any thread, or a
//! signal handler, may [`signal`](Interrupt::signal) it with a value: that stores the value,
//! raises the worker's interrupt flag (the one preemption uses) and, only if the worker sleeps,
//! writes its eventfd. The callback then runs on that worker at its next safe point, inside
//! whatever coroutine is running there (as a signal handler would), or in the worker's loop
//! between coroutines, and sees the value. With nothing else in the way, signalling costs a few
//! atomic stores and no system call.
//!
//! Callbacks are short and must not wait: they may spawn, unpark, send on unbounded channels
//! or set flags, but a blocking call would hold up whichever coroutine they interrupted (or the
//! whole worker). They never run inside a [`no_preempt`](crate::no_preempt) region, nor while
//! the interrupt is [blocked](Interrupt::block).
//!
//! A callback that panics is contained: the panic is caught where the callback runs, so it
//! never unwinds the coroutine that happened to be at the safe point nor the worker's loop. It
//! is counted ([`panics`](Interrupt::panics)), its message is kept
//! ([`last_panic`](Interrupt::last_panic)) and one line goes to stderr (after the panic hook's
//! own report); the interrupt stays usable and the callback runs again at the next signal.
//!
//! For event loops that wait on file descriptors, [`as_raw_fd`](Interrupt::as_raw_fd) gives an
//! eventfd that becomes readable when the interrupt is signalled; with autodrain on (the
//! default) it is drained just before the callback runs. Binding a POSIX signal
//! ([`bind_signal`](Interrupt::bind_signal)) makes the signal signal the interrupt, race-free:
//! the handler only stores and writes, and the callback runs synchronously later.

use crate::sched::worker::callbacks::Callback;
use crate::sched::worker::{self, Shared};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, TryLockError, Weak};

type UserCallback = Box<dyn FnMut(i32) + Send>;

struct Inner {
    rt: Arc<Shared>,
    worker: usize,
    /// The value of the last `signal` not yet handled (0: none).
    pending: AtomicI32,
    blocked: AtomicU32,
    callback: Mutex<UserCallback>,
    /// The eventfd, once asked for (-1: none); `fd_enabled` gates writes to it.
    fd: AtomicI32,
    fd_enabled: AtomicBool,
    autodrain: AtomicBool,
    /// The POSIX signal bound to this interrupt (0: none), and whether its handler sets the
    /// signal to SIG_IGN until the callback runs.
    bound_signal: AtomicI32,
    hysteresis: AtomicBool,
    /// User handles (`Interrupt` values); the last one to go unbinds the signal.
    handles: std::sync::atomic::AtomicUsize,
    /// How many times the callback panicked, and the message of the latest panic.
    panics: AtomicU64,
    last_panic: Mutex<Option<String>>,
}

/// An asynchronous interrupt bound to a worker; see the [module docs](self).
///
/// ```
/// use std::sync::mpsc;
/// let rt = sigcoro::Runtime::builder().workers(1).build().unwrap();
/// let (tx, rx) = mpsc::channel();
/// let irq = rt.block_on(move || sigcoro::Interrupt::new(move |v| tx.send(v).unwrap()).unwrap());
/// std::thread::spawn({
///     let irq = irq.clone();
///     move || irq.signal(7)
/// })
/// .join()
/// .unwrap();
/// assert_eq!(rx.recv().unwrap(), 7);
/// ```
pub struct Interrupt {
    inner: Arc<Inner>,
}

impl Clone for Interrupt {
    fn clone(&self) -> Self {
        self.inner.handles.fetch_add(1, Ordering::AcqRel);
        Interrupt {
            inner: self.inner.clone(),
        }
    }
}

impl Drop for Interrupt {
    fn drop(&mut self) {
        if self.inner.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.unbind_signal();
        }
    }
}

impl std::fmt::Debug for Interrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interrupt")
            .field("worker", &self.inner.worker)
            .field("pending", &self.inner.pending.load(Ordering::Relaxed))
            .field("blocked", &self.inner.blocked.load(Ordering::Relaxed))
            .finish()
    }
}

impl Interrupt {
    /// Creates an interrupt bound to the current worker, with `callback` to run there when it is
    /// signalled. Fails outside a coroutine of a runtime.
    pub fn new(callback: impl FnMut(i32) + Send + 'static) -> io::Result<Interrupt> {
        let Some(local) = worker::local() else {
            return Err(io::Error::other(
                "sigcoro: Interrupt::new called outside a runtime's worker",
            ));
        };
        let inner = Arc::new(Inner {
            rt: local.rt.clone(),
            worker: local.index,
            pending: AtomicI32::new(0),
            blocked: AtomicU32::new(0),
            callback: Mutex::new(Box::new(callback)),
            fd: AtomicI32::new(-1),
            fd_enabled: AtomicBool::new(true),
            autodrain: AtomicBool::new(true),
            bound_signal: AtomicI32::new(0),
            hysteresis: AtomicBool::new(false),
            handles: std::sync::atomic::AtomicUsize::new(1),
            panics: AtomicU64::new(0),
            last_panic: Mutex::new(None),
        });
        let weak: Weak<dyn Callback> = Arc::downgrade(&inner) as Weak<Inner>;
        local.rt.workers[local.index].interrupts.register(weak);
        Ok(Interrupt { inner })
    }

    /// Signals the interrupt with `value` (0 counts as 1): the callback runs at the owning
    /// worker's next safe point and sees the value of the latest signal before it ran.
    ///
    /// Async-signal-safe, callable from any thread or from a signal handler: atomic stores,
    /// and a `write(2)` to an eventfd only when one is in use or the worker sleeps.
    pub fn signal(&self, value: i32) {
        self.inner.signal(value);
    }

    /// Holds callbacks off until a matching [`unblock`](Self::unblock); calls nest. Signals
    /// meanwhile are kept (the latest value wins).
    pub fn block(&self) {
        self.inner.blocked.fetch_add(1, Ordering::AcqRel);
    }

    /// Ends one [`block`](Self::block); the last one lets a pending callback run at the next
    /// safe point.
    pub fn unblock(&self) {
        if self.inner.blocked.fetch_sub(1, Ordering::AcqRel) == 1 && self.inner.pending.load(Ordering::Acquire) != 0 {
            self.inner.raise();
        }
    }

    /// Blocks until the returned guard drops (Async::Interrupt's `scope_block`).
    pub fn scope_block(&self) -> InterruptBlock<'_> {
        self.block();
        InterruptBlock { irq: self }
    }

    /// A file descriptor (an eventfd) that becomes readable when the interrupt is signalled,
    /// for event loops of other libraries; made on first use. Only waiting for readability is
    /// meaningful on it.
    pub fn as_raw_fd(&self) -> io::Result<RawFd> {
        let fd = self.inner.fd.load(Ordering::Acquire);
        if fd >= 0 {
            return Ok(fd);
        }
        let new = new_eventfd()?;
        match self
            .inner
            .fd
            .compare_exchange(-1, new.as_raw_fd(), Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Ok(std::mem::ManuallyDrop::new(new).as_raw_fd()),
            Err(existing) => Ok(existing),
        }
    }

    /// Turns writing to the eventfd on signal on or off (default on).
    pub fn set_fd_enabled(&self, enabled: bool) {
        self.inner.fd_enabled.store(enabled, Ordering::Release);
    }

    /// Whether the eventfd is drained just before the callback runs (default on). Turn it off
    /// to share one eventfd's readiness with your own loop and drain it yourself.
    pub fn set_autodrain(&self, enabled: bool) {
        self.inner.autodrain.store(enabled, Ordering::Release);
    }

    /// Empties the eventfd (for autodrain off).
    pub fn drain(&self) {
        drain_fd(self.inner.fd.load(Ordering::Acquire));
    }

    /// Makes the interrupt usable in the child after a `fork`: the eventfd is replaced by a new
    /// one under the same descriptor number.
    pub fn post_fork(&self) -> io::Result<()> {
        let fd = self.inner.fd.load(Ordering::Acquire);
        if fd < 0 {
            return Ok(());
        }
        let new = new_eventfd()?;
        // SAFETY: dup2 onto the descriptor number we own; the new fd is closed after.
        if unsafe { libc::dup2(new.as_raw_fd(), fd) } < 0 {
            let err = io::Error::last_os_error();
            return Err(io::Error::new(
                err.kind(),
                format!("sigcoro: Interrupt: replacing its eventfd (dup2) failed: {err}"),
            ));
        }
        Ok(())
    }

    /// Makes the POSIX signal `sig` signal this interrupt (with value `sig`), race-free: its
    /// handler only stores the value and writes the eventfd. One interrupt per signal; the
    /// signal's default action is restored when the interrupt is dropped or rebound. Signals
    /// the process cannot catch, synchronous fault signals and the runtime's own are refused.
    pub fn bind_signal(&self, sig: i32) -> io::Result<()> {
        check_bindable(sig)?;
        let slot = &SIGNAL_TABLE[sig as usize];
        let raw = Arc::into_raw(self.inner.clone()) as *mut Inner;
        if slot
            .compare_exchange(std::ptr::null_mut(), raw, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // SAFETY: undoing the into_raw just above.
            drop(unsafe { Arc::from_raw(raw) });
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("signal {sig} is already bound to another sigcoro Interrupt"),
            ));
        }
        self.inner.bound_signal.store(sig, Ordering::Release);
        if let Err(e) = install_signal_handler(sig) {
            self.unbind_signal();
            return Err(e);
        }
        Ok(())
    }

    /// Undoes [`bind_signal`](Self::bind_signal), restoring the signal's default action.
    pub fn unbind_signal(&self) {
        let sig = self.inner.bound_signal.swap(0, Ordering::AcqRel);
        if sig > 0 {
            set_default_action(sig);
            let raw = SIGNAL_TABLE[sig as usize].swap(std::ptr::null_mut(), Ordering::AcqRel);
            if !raw.is_null() {
                // SAFETY: the table held one reference, made by into_raw in bind_signal.
                drop(unsafe { Arc::from_raw(raw) });
            }
        }
    }

    /// How many times the callback has panicked. Each panic was caught where the callback ran
    /// (see the [module docs](self)); the interrupt keeps working.
    pub fn panics(&self) -> u64 {
        self.inner.panics.load(Ordering::Acquire)
    }

    /// The message of the callback's latest panic, if it ever panicked (`"<non-string panic
    /// payload>"` when the payload was neither a `&str` nor a `String`).
    pub fn last_panic(&self) -> Option<String> {
        crate::ground::lock(&self.inner.last_panic).clone()
    }

    /// With hysteresis on, the bound signal's handler sets the signal to SIG_IGN and the
    /// handler is put back just before the callback runs: a flood of signals costs one
    /// handler call per callback, at the price of two `sigaction` calls.
    pub fn set_signal_hysteresis(&self, enabled: bool) {
        self.inner.hysteresis.store(enabled, Ordering::Release);
    }
}

/// Undoes a [`Interrupt::scope_block`] when dropped.
#[derive(Debug)]
pub struct InterruptBlock<'a> {
    irq: &'a Interrupt,
}

impl Drop for InterruptBlock<'_> {
    fn drop(&mut self) {
        self.irq.unblock();
    }
}

impl Inner {
    fn signal(&self, value: i32) {
        self.pending
            .store(if value == 0 { 1 } else { value }, Ordering::Release);
        if self.fd_enabled.load(Ordering::Acquire) {
            let fd = self.fd.load(Ordering::Acquire);
            if fd >= 0 {
                let one: u64 = 1;
                // SAFETY: write(2) of 8 bytes to an eventfd is async-signal-safe.
                unsafe { libc::write(fd, (&raw const one).cast(), 8) };
            }
        }
        if self.blocked.load(Ordering::Acquire) == 0 {
            self.raise();
        }
    }

    /// Tells the owning worker that a callback is due: its registry flag, its thread's interrupt
    /// flag, and a wakeup if it sleeps. Async-signal-safe.
    fn raise(&self) {
        let w = &self.rt.workers[self.worker];
        w.interrupts.mark_due();
        w.preempt.flag_users.fetch_add(1, Ordering::SeqCst);
        let flag = w.preempt.flag.load(Ordering::SeqCst);
        if !flag.is_null() {
            // SAFETY: the worker publishes its thread-local flags' address while it runs, and
            // before exiting clears it and waits until no user (counted above) remains.
            unsafe { (*flag).fetch_or(crate::ground::CALLBACKS, Ordering::AcqRel) };
        }
        w.preempt.flag_users.fetch_sub(1, Ordering::SeqCst);
        w.wake_if_sleeping();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let fd = self.fd.load(Ordering::Acquire);
        if fd >= 0 {
            // SAFETY: we made this eventfd and nobody else owns it.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
}

impl Callback for Inner {
    fn is_due(&self) -> bool {
        self.pending.load(Ordering::Acquire) != 0
    }

    fn run_if_due(&self) -> Result<(), Box<dyn std::any::Any + Send>> {
        if self.blocked.load(Ordering::Acquire) > 0 {
            return Ok(()); // unblock raises it again
        }
        let value = self.pending.swap(0, Ordering::AcqRel);
        if value == 0 {
            return Ok(());
        }
        if self.autodrain.load(Ordering::Acquire) {
            drain_fd(self.fd.load(Ordering::Acquire));
        }
        let sig = self.bound_signal.load(Ordering::Acquire);
        if sig > 0 && self.hysteresis.load(Ordering::Acquire) {
            let _ = install_signal_handler(sig);
        }
        // A callback that reaches a safe point of its own does not run itself again.
        let mut cb = match self.callback.try_lock() {
            Ok(cb) => cb,
            // Panics are caught inside the lock, so it is never poisoned; if it were, the
            // callback is still whole (a `FnMut` box) and runs.
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => {
                self.pending.store(value, Ordering::Release);
                return Ok(());
            }
        };
        if CONTAINMENT_OFF.load(Ordering::Relaxed) {
            // The tests' control: the old behaviour, the panic unwinds whoever ran the callback.
            cb(value);
            return Ok(());
        }
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| cb(value)));
        drop(cb);
        match outcome {
            Ok(()) => Ok(()),
            // Not the callback's panic: the interrupted coroutine was cancelled and the callback
            // reached one of its safe points. The cancellation goes on.
            Err(payload) if payload.is::<crate::sched::park::Cancelled>() => Err(payload),
            Err(payload) => {
                self.contain_panic(payload.as_ref());
                Ok(())
            }
        }
    }

    fn raise(&self) {
        Inner::raise(self);
    }
}

/// Set by [`uncontained_callback_panics_for_tests`].
static CONTAINMENT_OFF: AtomicBool = AtomicBool::new(false);

/// The tests' control: callbacks run without `catch_unwind`, as before panics were contained,
/// so a test can show the failure its fix prevents. Process-wide; tests call it in a child.
#[doc(hidden)]
pub fn uncontained_callback_panics_for_tests() {
    CONTAINMENT_OFF.store(true, Ordering::Relaxed);
}

impl Inner {
    /// Records a panic caught from the callback: counted, kept, and one line on stderr.
    fn contain_panic(&self, payload: &(dyn std::any::Any + Send)) {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "<non-string panic payload>".to_owned());
        let count = self.panics.fetch_add(1, Ordering::AcqRel) + 1;
        eprintln!(
            "sigcoro: an Interrupt callback on worker {} panicked ({count} so far): {message}; \
             the panic was contained and the interrupt keeps working",
            self.worker
        );
        *crate::ground::lock(&self.last_panic) = Some(message);
    }
}

fn new_eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the fd is owned at once.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        let err = io::Error::last_os_error();
        return Err(io::Error::new(
            err.kind(),
            format!("sigcoro: Interrupt: creating its eventfd failed: {err} (a descriptor; see ulimit -n)"),
        ));
    }
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn drain_fd(fd: RawFd) {
    if fd >= 0 {
        let mut buf = 0u64;
        // SAFETY: reading 8 bytes from our own non-blocking eventfd.
        unsafe { libc::read(fd, (&raw mut buf).cast(), 8) };
    }
}

/// Interrupts bound to POSIX signals, by signal number; read by the signal handler.
static SIGNAL_TABLE: [AtomicPtr<Inner>; 65] = [const { AtomicPtr::new(std::ptr::null_mut()) }; 65];

fn check_bindable(sig: i32) -> io::Result<()> {
    let why = if sig <= 0 || sig as usize >= SIGNAL_TABLE.len() {
        Some("it is not a signal number")
    } else if sig == libc::SIGKILL || sig == libc::SIGSTOP {
        Some("it cannot be caught")
    } else if [libc::SIGSEGV, libc::SIGBUS, libc::SIGFPE, libc::SIGILL].contains(&sig) {
        Some("it reports a fault of the thread that raised it and cannot be handled later")
    } else if sig == crate::boot_signal() {
        Some("sigcoro uses it to create coroutine stacks")
    } else if sig == crate::ground::preempt_signal() {
        Some("sigcoro uses it for preemption")
    } else {
        None
    };
    match why {
        Some(why) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cannot bind signal {sig}: {why}"),
        )),
        None => Ok(()),
    }
}

fn install_signal_handler(sig: i32) -> io::Result<()> {
    // SAFETY: installing our handler with a fully initialised action.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_bound_signal as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(sig, &action, std::ptr::null_mut()) != 0 {
            let err = io::Error::last_os_error();
            return Err(io::Error::new(
                err.kind(),
                format!("sigcoro: Interrupt: installing the handler of signal {sig} failed: {err}"),
            ));
        }
    }
    Ok(())
}

fn set_default_action(sig: i32) {
    // SAFETY: restoring the default action with a zeroed (SIG_DFL) action struct.
    unsafe {
        let action: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, &action, std::ptr::null_mut());
    }
}

extern "C" fn on_bound_signal(sig: libc::c_int, _info: *mut libc::siginfo_t, _uctx: *mut libc::c_void) {
    // SAFETY: errno is this thread's; restored before returning.
    let errno = unsafe { *libc::__errno_location() };
    let raw = SIGNAL_TABLE
        .get(sig as usize)
        .map_or(std::ptr::null_mut(), |s| s.load(Ordering::Acquire));
    // SAFETY: the table holds a reference for as long as the pointer is there.
    if let Some(inner) = unsafe { raw.as_ref() } {
        if inner.hysteresis.load(Ordering::Acquire) {
            // SAFETY: sigaction is async-signal-safe.
            unsafe {
                let mut ign: libc::sigaction = std::mem::zeroed();
                ign.sa_sigaction = libc::SIG_IGN;
                libc::sigaction(sig, &ign, std::ptr::null_mut());
            }
        }
        inner.signal(sig);
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}
