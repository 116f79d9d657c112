//! What a worker shows the timer thread: who it is, whether it runs a coroutine, which slice,
//! since when (when it knows cheaply), and its earliest timer.
//!
//! A worker writes these with plain stores (no locked instruction on the switch path); the
//! timer thread only reads them, except for the interrupt flags behind `flag`.

use crate::sched::worker::Shared;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

/// [`PreemptWatch::running`]: the worker runs no coroutine.
pub(crate) const IDLE: u8 = 0;
/// [`PreemptWatch::running`]: the worker runs a coroutine outside any async region.
pub(crate) const RUNNING: u8 = 1;
/// [`PreemptWatch::running`]: the worker runs a coroutine inside an async region.
pub(crate) const IN_REGION: u8 = 2;

/// A worker's state as the preemption timer thread sees it.
#[derive(Default)]
pub(crate) struct PreemptWatch {
    /// The worker thread's id, for tgkill.
    pub tid: AtomicI32,
    /// The worker thread's CPU-time clock.
    pub cpu_clock: AtomicI32,
    /// Slices started: bumped whenever a task runs from the back of the queue (a task woken
    /// into the `next` slot inherits the slice, so a ping-pong pair cannot hog the worker).
    pub slice_seq: AtomicU64,
    /// The slice whose start time `stamp_ns` holds. Only slices that begin right after a
    /// preemption are stamped: reading a clock at every yield would cost more than the yield,
    /// and a slice that follows a preemption is the one most likely to run out too.
    pub stamp_seq: AtomicU64,
    /// When slice `stamp_seq` began, in [`crate::ground::nanos`].
    pub stamp_ns: AtomicU64,
    /// What the worker runs now: [`IDLE`], [`RUNNING`], or [`IN_REGION`] (a coroutine inside
    /// [`preemptible`](crate::preemptible), the only state in which it may be signalled).
    pub running: AtomicU8,
    /// Who runs now, for hog reports: written at every switch in, read by the timer thread.
    pub ident: Ident,
    /// The last instruction the preemption handler found the running coroutine at, and the
    /// slice it was in (async regions only; for hog reports).
    pub last_pc: AtomicUsize,
    pub last_pc_seq: AtomicU64,
    /// The slice the timer thread reported as a hog (0: none): the coroutine counts it in its
    /// own stats when it finally switches out.
    pub hog_seq: AtomicU64,
    /// Set by the handler when it refused after a long walk (a deep stack below the region):
    /// the timer thread then waits longer before it signals again.
    pub deep_refusal: AtomicBool,
    /// Until when (in [`crate::ground::nanos`]) the timer thread sends no signal and the
    /// worker's alarm does not go off: set by the handler after every walk to four times the
    /// walk's length past its end, so that a walk slower than the retries (an unoptimised
    /// walker on a deep stack) cannot keep the coroutine in the handler for good.
    pub quiet_until: AtomicU64,
    /// When the timer thread last sent the preemption signal (in [`crate::ground::nanos`]),
    /// cleared to 0 by the handler: real-time signals queue, so while one is still on its way
    /// (blocked between regions, or the handler busy) the timer thread sends no other, for a
    /// while (a signal the kernel could not deliver never clears it).
    pub signal_sent_at: AtomicU64,
    /// The worker's thread-local interrupt flags (null once the worker has exited).
    pub flag: AtomicPtr<AtomicU8>,
    /// Threads (or signal handlers) dereferencing `flag` right now; an exiting worker clears
    /// `flag` and waits for this to reach 0 before its thread-locals go away.
    pub flag_users: AtomicUsize,
    /// The worker's earliest timer, in [`crate::ground::nanos`] (0: none). A coroutine still
    /// running when it is due is preempted at once, so the timer fires on time.
    pub deadline: AtomicU64,
    /// When the worker's own alarm goes off (see [`super::alarm`]; 0: not set), and the slice
    /// whose end it covers (0: none). The timer thread leaves those to the alarm.
    pub alarm: AtomicU64,
    pub alarm_seq: AtomicU64,
}

impl PreemptWatch {
    /// Starts a new slice (worker thread only); `stamp` records its start time as well, which
    /// comes back.
    #[inline]
    pub(crate) fn start_slice(&self, stamp: bool) -> Option<u64> {
        let seq = self.slice_seq.load(Ordering::Relaxed) + 1;
        let mut at = None;
        if stamp {
            // Time first, then which slice it belongs to, then the slice itself: a reader that
            // sees `stamp_seq == slice_seq` (acquire) sees this slice's time.
            let now = crate::ground::nanos(Instant::now());
            self.stamp_ns.store(now, Ordering::Relaxed);
            self.stamp_seq.store(seq, Ordering::Release);
            at = Some(now);
        }
        self.slice_seq.store(seq, Ordering::Release);
        at
    }

    /// The running slice and, if the worker stamped it, when it began. The acquire load of
    /// `stamp_seq` makes that slice's time visible, so the time read is never an older one; a
    /// newer stamp written meanwhile can only make the slice look younger (it then runs a little
    /// longer before it is interrupted, never shorter).
    pub(crate) fn slice(&self) -> (u64, Option<u64>) {
        let seq = self.slice_seq.load(Ordering::Acquire);
        if self.stamp_seq.load(Ordering::Acquire) != seq {
            return (seq, None);
        }
        (seq, Some(self.stamp_ns.load(Ordering::Relaxed)))
    }
}

/// How many bytes of a coroutine's name a hog report keeps.
pub(crate) const NAME_BYTES: usize = 48;

/// Who a worker runs now, copied at every switch in (see the module docs).
#[derive(Default)]
pub(crate) struct Ident {
    /// The task's id; 0 while the other fields are being written.
    id: AtomicU64,
    /// `fn() -> &'static str` giving the entry closure's type name, as an address.
    entry: AtomicUsize,
    name_len: AtomicUsize,
    name: [AtomicU64; NAME_BYTES / 8],
}

impl Ident {
    /// Records who runs now (the worker thread only). Nothing is written when the same task
    /// runs again.
    #[inline]
    pub(crate) fn publish(&self, id: u64, entry: fn() -> &'static str, name: Option<&str>) {
        if self.id.load(Ordering::Relaxed) == id {
            return;
        }
        self.publish_new(id, entry, name);
    }

    #[inline(never)]
    fn publish_new(&self, id: u64, entry: fn() -> &'static str, name: Option<&str>) {
        self.id.store(0, Ordering::Release);
        self.entry.store(entry as usize, Ordering::Release);
        let name = name.unwrap_or("").as_bytes();
        let len = name.len().min(NAME_BYTES);
        for (i, word) in self.name.iter().enumerate().take(len.div_ceil(8)) {
            let mut bytes = [0u8; 8];
            let chunk = &name[i * 8..len.min(i * 8 + 8)];
            bytes[..chunk.len()].copy_from_slice(chunk);
            word.store(u64::from_le_bytes(bytes), Ordering::Release);
        }
        self.name_len.store(len, Ordering::Release);
        self.id.store(id, Ordering::Release);
    }

    /// Reads who runs now (any thread): the id, the entry's type name and the name, or `None`
    /// if the worker was switching meanwhile.
    pub(crate) fn read(&self) -> Option<(u64, &'static str, Option<String>)> {
        let id = self.id.load(Ordering::Acquire);
        if id == 0 {
            return None;
        }
        let entry = self.entry.load(Ordering::Acquire);
        let len = self.name_len.load(Ordering::Acquire).min(NAME_BYTES);
        let mut bytes = [0u8; NAME_BYTES];
        for (i, word) in self.name.iter().enumerate().take(len.div_ceil(8)) {
            bytes[i * 8..i * 8 + 8].copy_from_slice(&word.load(Ordering::Acquire).to_le_bytes());
        }
        if self.id.load(Ordering::Acquire) != id || entry == 0 {
            return None;
        }
        // SAFETY: `entry` only ever holds an address stored from a `fn() -> &'static str` by
        // `publish_new`, and it is not 0.
        let entry: fn() -> &'static str = unsafe { std::mem::transmute::<usize, fn() -> &'static str>(entry) };
        let name = (len > 0).then(|| String::from_utf8_lossy(&bytes[..len]).into_owned());
        Some((id, entry(), name))
    }
}

/// How a worker that leaves its idle loop wakes the timer thread from a nap longer than a
/// slice, so that a coroutine that starts hogging right after a quiet spell is seen within its
/// slices, not up to the timer thread's longest nap later.
///
/// A Dekker handshake, both sides SeqCst: the worker lowers its `idle` flag, then reads
/// `napping`; the timer thread raises `napping`, then reads every worker's `idle` flag. At
/// least one of them sees the other's store, so either the worker rings or the timer thread
/// does not nap. A ring costs a load while the timer thread is awake, and a futex wake-up
/// otherwise.
#[derive(Debug, Default)]
pub(crate) struct Bell {
    napping: AtomicBool,
    thread: OnceLock<std::thread::Thread>,
    /// When the timer thread will next look (in [`crate::ground::nanos`]); 0 while it looks.
    /// A worker that publishes a timer due earlier wakes it ([`Bell::hurry_for`]): otherwise a
    /// sleeper that goes back to sleep right after the timer thread woke it would be seen only
    /// at that thread's next look, up to a slice late.
    wake_at: AtomicU64,
}

impl Bell {
    /// Called by a worker right after it lowered its `idle` flag.
    pub(crate) fn ring(&self) {
        if self.napping.load(Ordering::SeqCst)
            && self.napping.swap(false, Ordering::SeqCst)
            && let Some(t) = self.thread.get()
        {
            t.unpark();
        }
    }

    /// Whether the timer thread may nap (every worker idle); if so `napping` stays raised.
    pub(crate) fn may_nap(&self, rt: &Shared) -> bool {
        self.napping.store(true, Ordering::SeqCst);
        if rt.workers.iter().all(|w| w.is_idle()) {
            return true;
        }
        self.napping.store(false, Ordering::SeqCst);
        false
    }

    /// The timer thread that naps (set once, when it starts).
    pub(crate) fn set_thread(&self, thread: std::thread::Thread) {
        let _ = self.thread.set(thread);
    }

    /// The timer thread is awake again (after a nap that a ring may or may not have ended)
    /// and about to look at the workers.
    pub(crate) fn woke(&self) {
        self.napping.store(false, Ordering::Relaxed);
        self.wake_at.store(0, Ordering::SeqCst);
    }

    /// The timer thread will look next at `at` (it parks until then).
    pub(crate) fn will_wake_at(&self, at: u64) {
        self.wake_at.store(at, Ordering::SeqCst);
    }

    /// A worker published a timer due at `deadline` (SeqCst, before this): wakes the timer
    /// thread if it would look only later, or may have looked at the worker before the store.
    /// Both sides SeqCst: either the timer thread's look reads the new deadline, or this reads
    /// the time it planned (or 0, still looking) and wakes it.
    pub(crate) fn hurry_for(&self, deadline: u64) {
        let at = self.wake_at.load(Ordering::SeqCst);
        if (at == 0 || deadline < at)
            && let Some(t) = self.thread.get()
        {
            t.unpark();
        }
    }
}
