//! The timer thread: one per runtime with preemption on, watching every worker (like Go's
//! sysmon), asleep until the next thing that can be due.
//!
//! # What it does to a worker
//!
//! A coroutine that has run a whole slice gets its worker's interrupt flag raised (an atomic
//! OR, no system call): the next safe point switches it out. That is all it does in the default
//! mode. A worker running a coroutine inside a [`preemptible`](super::preemptible) region
//! (`watch.running == IN_REGION`) also gets the preemption signal if the flag is still up a
//! grace period (half a slice) later and the thread was on a CPU for at least an eighth of that
//! time; if the handler had to defer, it is signalled again a grace period later (longer after
//! refusals with deep stacks), and never while a signal it sent is still untaken. Such a
//! CPU-bound coroutine thus runs about a slice and a half.
//!
//! From then on the worker's own alarm (see [`crate::sched::worker::alarm`]) ends that coroutine's slices:
//! the timer thread only checks, a few slices after the alarm, that the slice did end, and
//! takes over (flag, grace, signal) if it did not.
//!
//! A worker still running a coroutine when one of its timers is due is interrupted at once
//! (the flag, and in a region the signal; its alarm does this itself when it covers the timer),
//! so a sleeper does not wait for a neighbour's slice. The interrupted coroutine goes on right
//! after the coroutines the timer woke, within its slice; if more than half of its slice has
//! gone, its slice ends there instead.
//!
//! A slice that goes two slices without reaching a safe point is a hog: see
//! [`super::hog`].
//!
//! # When it wakes
//!
//! At the earliest of: a slice's end, a grace period's end, a running worker's timer, and one
//! look per slice and a half at each running worker whose slice no alarm covers. It knows when
//! a slice began if the worker stamped it (a worker stamps the slice that follows a preemption,
//! which is where CPU-bound coroutines live, and its first slice after an idle spell);
//! otherwise it counts the slice from when it first
//! saw it, so a slice may run up to one more slice and a half before it is flagged.
//!
//! Wake-ups are shared where they can be, because on a virtual machine each one costs tens of
//! microseconds of a core the workers want: a slice that has run half its length is flagged
//! when the thread is awake anyway, so the slices of busy workers line up and end together; a
//! slice end waits for a timer due within half a slice after it; other events due within a
//! sixteenth of a slice are handled together. Timers are never handled before they are due.
//! A slice thus runs between half and one and a half of its length, and about its length on
//! average. After it raised the flag (the default mode) the thread next looks a slice later,
//! not a grace period, since no signal can follow.
//!
//! With every worker idle it looks less and less often, down to every 10 ms, and a worker that
//! gets work wakes it from such a nap (see the worker's `Bell`).

use super::hog::{HOG_SLICES, HogLog, HogReport};
use crate::ground::{DEADLINE, PREEMPT, nanos, preempt_signal};
use crate::sched::worker::Shared;
use crate::sched::worker::watch::{IDLE, IN_REGION, PreemptWatch};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How long a slice's coroutine has to take the flag at a safe point before it is signalled.
fn grace(slice: u64) -> u64 {
    slice / 2
}

/// Slice plus grace: how long a coroutine that never reaches a safe point runs per slice.
pub(crate) fn slice_and_grace(slice: Duration) -> Duration {
    let ns = slice.as_nanos() as u64;
    Duration::from_nanos(ns + grace(ns))
}

/// How long after a worker's alarm was due the timer thread checks that the slice did end (it
/// may not, if the signal came while the coroutine was in libc), in slices.
const ALARM_CHECK_SLICES: u64 = 4;

/// How long a signal not yet taken by the handler keeps the timer thread from sending another,
/// in slices.
const IN_FLIGHT_SLICES: u64 = 8;

/// Re-signals of one slice wait at most `grace << MAX_BACKOFF`.
const MAX_BACKOFF: u32 = 5;

/// The longest the timer thread sleeps while every worker idles.
const IDLE_LOOK: u64 = 10_000_000;

/// What the timer thread knows of one worker.
#[derive(Default)]
struct WorkerView {
    /// The slice seen last (`None` while the worker runs nothing) and when it began: stamped by
    /// the worker, or when this thread first saw it.
    slice: Option<(u64, u64)>,
    /// When the flag was raised for this slice, and when it was last signalled.
    flagged_at: Option<u64>,
    signalled_at: Option<u64>,
    /// The wall time and the worker thread's CPU time when the flag went up or a signal was
    /// last tried: the busy check's window starts there.
    cpu_mark: Option<(u64, u64)>,
    /// The last timer deadline we interrupted the worker for (never twice for one deadline).
    handled_deadline: u64,
    /// Refusals after long walks in the running slice: each doubles the next wait.
    tries: u32,
    /// The worker's index, and the hog reported for the running slice: its slice and id.
    index: usize,
    hog: Option<(u64, u64)>,
}

/// The timer thread's view of time for one look, and the runtime's settings.
struct Look<'a> {
    rt: &'a Shared,
    /// Where hog reports go (the runtime reads them).
    hogs: &'a HogLog,
    pid: libc::pid_t,
    now: u64,
    slice: u64,
    grace: u64,
    /// How early an event may be handled when the thread is awake anyway.
    tolerance: u64,
    /// How early a slice may be flagged when the thread is awake anyway: up to half a slice,
    /// so that the slices of busy workers line up and one wake-up serves them all.
    align: u64,
    /// The longest a running worker goes without a look.
    look: u64,
}

/// Runs until the runtime shuts down.
pub(crate) fn run(rt: Arc<Shared>, hogs: Arc<HogLog>, slice: Duration) {
    rt.timer_bell.set_thread(std::thread::current());
    // Wake on time rather than up to 50 us late (timer slack), and ask for a higher scheduling
    // weight (nice -10) so that on a machine whose cores the workers keep busy the kernel runs
    // this thread as soon as it wakes; without the privilege the call fails and nothing changes.
    // SAFETY: prctl and setpriority on this thread, with valid arguments.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1, 0, 0, 0);
        libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, -10);
    }
    let slice = slice.as_nanos() as u64;
    let mut watch: Vec<WorkerView> = (0..rt.workers.len())
        .map(|index| WorkerView {
            index,
            ..WorkerView::default()
        })
        .collect();
    let mut idle_period = slice;
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    while !rt.timer_stop.load(Ordering::Acquire) {
        let look = Look {
            rt: &rt,
            hogs: &hogs,
            pid,
            now: nanos(Instant::now()),
            slice,
            grace: grace(slice),
            tolerance: slice / 16,
            align: slice / 2,
            look: slice + grace(slice),
        };
        let mut next = Next::NONE;
        for (w, watch) in rt.workers.iter().zip(watch.iter_mut()) {
            next = next.min(look.worker(&w.preempt, watch));
        }
        let wake = next.wake(slice);
        let now = nanos(Instant::now());
        let pause = if wake == u64::MAX && rt.timer_bell.may_nap(&rt) {
            idle_period = (idle_period * 2).min(IDLE_LOOK);
            idle_period
        } else if wake == u64::MAX {
            slice
        } else {
            idle_period = slice;
            wake.saturating_sub(now)
        };
        if pause > 0 {
            rt.timer_bell.will_wake_at(now + pause);
            // Parked, not asleep: shutdown unparks it, whatever the slice, and a worker whose
            // new timer is due before `now + pause` (`Bell::hurry_for`).
            std::thread::park_timeout(Duration::from_nanos(pause));
        }
        rt.timer_bell.woke();
    }
}

/// When the timer thread next needs to look, in two kinds.
#[derive(Clone, Copy)]
struct Next {
    /// Slice ends, grace periods and periodic looks: these may be handled a little early or
    /// late.
    flex: u64,
    /// Timers: never handled before they are due (the worker would find nothing to wake).
    timer: u64,
}

impl Next {
    const NONE: Next = Next {
        flex: u64::MAX,
        timer: u64::MAX,
    };

    fn flex(at: u64) -> Next {
        Next { flex: at, ..Next::NONE }
    }

    fn min(self, other: Next) -> Next {
        Next {
            flex: self.flex.min(other.flex),
            timer: self.timer.min(other.timer),
        }
    }

    /// When to wake (`u64::MAX`: nothing runs). A slice end that comes shortly before a timer
    /// waits for the timer, so that one wake-up serves both: with a sleeper beside CPU-bound
    /// coroutines the thread then wakes once per slice, not twice.
    fn wake(self, slice: u64) -> u64 {
        if self.timer >= self.flex && self.timer - self.flex <= slice / 2 {
            self.timer
        } else {
            self.flex.min(self.timer)
        }
    }
}

impl Look<'_> {
    /// Looks at one worker: interrupts it if something is due, and says when it next needs a
    /// look ([`Next::NONE`]: it runs nothing).
    fn worker(&self, w: &PreemptWatch, watch: &mut WorkerView) -> Next {
        let now = self.now;
        if w.running.load(Ordering::Relaxed) == IDLE {
            self.hog_over(watch);
            (watch.slice, watch.flagged_at, watch.signalled_at, watch.cpu_mark) = (None, None, None, None);
            return Next::NONE;
        }
        let (seq, stamp) = w.slice();
        if watch.slice.map(|(s, _)| s) != Some(seq) {
            self.hog_over(watch);
            watch.slice = Some((seq, stamp.unwrap_or(now).min(now)));
            (watch.flagged_at, watch.signalled_at, watch.tries) = (None, None, 0);
        }
        let start = watch.slice.map_or(now, |(_, start)| start);
        self.hog_check(w, watch, seq, start);
        let mut next = Next::flex(now + self.look);

        let alarm = w.alarm.load(Ordering::Relaxed);
        let deadline = w.deadline.load(Ordering::Relaxed);
        if deadline != 0 && deadline != watch.handled_deadline && deadline != alarm {
            // No tolerance here: a worker interrupted before its timer is due would find
            // nothing to wake.
            if deadline <= now {
                // Make way for the coroutines the timer wakes, at once; end the slice too if
                // most of it has gone.
                watch.handled_deadline = deadline;
                let ends_slice = now - start >= self.slice / 2;
                self.interrupt(w, if ends_slice { DEADLINE | PREEMPT } else { DEADLINE });
                self.signal(w);
                if ends_slice {
                    (watch.flagged_at, watch.signalled_at) = (Some(now), Some(now));
                }
                return next;
            }
            next.timer = deadline;
        }

        if w.alarm_seq.load(Ordering::Acquire) == seq && watch.flagged_at.is_none() {
            // The worker's alarm ends this slice: only check, much later, that it did.
            let check = alarm + ALARM_CHECK_SLICES * self.slice;
            if check > now {
                // (No periodic look either; a timer the alarm does not cover still counts.)
                return Next {
                    flex: check,
                    timer: deadline_wake(deadline, alarm, now).unwrap_or(u64::MAX),
                };
            }
            // Still the same slice long after: take over (the alarm's signal was deferred, or
            // the thread hardly ran and the alarm left it to us).
            self.flag(w, watch);
            return next.min(Next::flex(now + self.grace));
        }
        let (due, early) = match (watch.flagged_at, watch.signalled_at) {
            (None, _) => (start + self.slice, self.align),
            // The flag is up and no signal can follow (the coroutine is not in a region): the
            // next safe point takes it, and the next look is for the hog report, if any.
            (Some(_), _) if !self.may_signal(w) => {
                let hog = start + HOG_SLICES * self.slice;
                return if hog > now { next.min(Next::flex(hog)) } else { next };
            }
            (Some(flagged), None) => (flagged + self.grace, self.tolerance),
            // Signalled, and still the same slice: the handler deferred (the coroutine was in a
            // no-preempt section or in code that is not vouched). The flag stays up for the
            // next safe point; signal again a grace period later, a period that doubles with
            // every refusal after a long walk, so that a coroutine whose walks are long and keep
            // failing (deep recursion, say) is not kept busy in the handler.
            (Some(_), Some(signalled)) => (signalled + (self.grace << watch.tries.min(MAX_BACKOFF)), self.tolerance),
        };
        if due > now + early {
            return next.min(Next::flex(due));
        }
        if watch.flagged_at.is_none() {
            self.flag(w, watch);
        } else {
            self.signal_if_busy(w, watch);
        }
        // A signal may follow after a grace period; otherwise the next slice is due about a
        // slice from now (the coroutine switches out at its next safe point).
        let after = if self.may_signal(w) { self.grace } else { self.slice };
        next.min(Next::flex(now + after))
    }

    /// Raises the preemption flag for the running slice, and notes the worker thread's CPU
    /// time: the grace period that starts now is the window the busy check looks at.
    fn flag(&self, w: &PreemptWatch, watch: &mut WorkerView) {
        self.interrupt(w, PREEMPT);
        watch.flagged_at = Some(self.now);
        // (A system call: only worth it where a signal may follow.)
        watch.cpu_mark = self.may_signal(w).then(|| (self.now, thread_cpu_ns(w)));
    }

    /// Whether the worker's coroutine may be sent the preemption signal: it runs in a region
    /// (or the runtime preempts anywhere), and signals work in this process.
    fn may_signal(&self, w: &PreemptWatch) -> bool {
        let in_region = w.running.load(Ordering::Relaxed) == IN_REGION || self.rt.preempt_anywhere;
        in_region && self.rt.preempt_async()
    }

    /// Raises interrupt flags on a worker.
    fn interrupt(&self, w: &PreemptWatch, bits: u8) {
        let flag = w.flag.load(Ordering::Acquire);
        if !flag.is_null() {
            // SAFETY: a worker publishes its thread-local flag's address while it runs, and the
            // runtime stops this thread before its workers exit.
            unsafe { (*flag).fetch_or(bits, Ordering::Release) };
        }
    }

    /// Signals a worker whose slice ran out, if its thread has been on a CPU for at least an
    /// eighth of the time since the flag (or the last try): it is computing, not blocked in a
    /// system call that the signal would cut short. Records the try either way.
    fn signal_if_busy(&self, w: &PreemptWatch, watch: &mut WorkerView) {
        let (now, cpu) = (self.now, thread_cpu_ns(w));
        // No mark yet (flagged outside a region, which it entered since): look again a grace
        // period from now.
        let busy = watch
            .cpu_mark
            .is_some_and(|(at, before)| burning_cpu(now - at, cpu.saturating_sub(before)));
        watch.cpu_mark = Some((now, cpu));
        if w.deep_refusal.swap(false, Ordering::Relaxed) {
            watch.tries += 1;
        }
        watch.signalled_at = Some(now);
        if busy {
            self.signal(w);
        }
    }

    /// Sends the preemption signal to a worker thread whose interrupt flags are up, if it runs
    /// a coroutine inside a region (never otherwise: that is the default mode's guarantee).
    fn signal(&self, w: &PreemptWatch) {
        if !self.may_signal(w) {
            return;
        }
        let flag = w.flag.load(Ordering::Acquire);
        // SAFETY: as in `interrupt`.
        let pending = !flag.is_null() && unsafe { (*flag).load(Ordering::Acquire) } & (PREEMPT | DEADLINE) != 0;
        let tid = w.tid.load(Ordering::Relaxed);
        let sent = w.signal_sent_at.load(Ordering::Acquire);
        let in_flight = sent != 0 && self.now.saturating_sub(sent) < IN_FLIGHT_SLICES * self.slice;
        let quiet = w.quiet_until.load(Ordering::Relaxed) > self.now;
        if pending && tid != 0 && !in_flight && !quiet {
            w.signal_sent_at.store(self.now, Ordering::Release);
            self.rt.stats.signals.fetch_add(1, Ordering::Relaxed);
            // SAFETY: tgkill to a thread of our own process.
            unsafe { libc::syscall(libc::SYS_tgkill, self.pid, tid, preempt_signal()) };
        }
    }
}

impl Look<'_> {
    /// Files a hog report when the running slice has gone [`HOG_SLICES`] slices without a safe
    /// point, and keeps it up to date while it goes on.
    fn hog_check(&self, w: &PreemptWatch, watch: &mut WorkerView, seq: u64, start: u64) {
        let held = self.now.saturating_sub(start);
        // Inside a region the signal takes the worker back; only a coroutine it cannot take
        // for a good while (it runs code that is not vouched) counts as a hog there.
        let slices = match w.running.load(Ordering::Relaxed) {
            IN_REGION => 4 * HOG_SLICES,
            _ => HOG_SLICES,
        };
        if held < slices * self.slice {
            return;
        }
        let function = self.last_function(w, seq);
        if let Some((hog_seq, id)) = watch.hog
            && hog_seq == seq
        {
            self.hogs
                .update(watch.index, id, Duration::from_nanos(held), true, function);
            return;
        }
        let Some((id, entry, name)) = w.ident.read() else {
            return;
        };
        if w.slice_seq.load(Ordering::Acquire) != seq {
            return; // it switched out while we read: no hog after all
        }
        watch.hog = Some((seq, id));
        w.hog_seq.store(seq, Ordering::Relaxed);
        // The unstarted tasks queued behind it cannot run there: another worker takes them.
        self.rt.offer_unstarted(watch.index);
        self.rt.stats.hogs.fetch_add(1, Ordering::Relaxed);
        let report = self.hogs.file(HogReport {
            worker: watch.index,
            id,
            name,
            entry,
            function,
            held_for: Duration::from_nanos(held),
            ongoing: true,
        });
        if self.rt.report_hogs {
            eprintln!(
                "sigcoro: {report}; coroutines queued behind it on that worker wait (add \
                 sigcoro::checkpoint() to its loop, or run it in sigcoro::preemptible)"
            );
        }
    }

    /// The reported hog's slice is over: its report says so.
    fn hog_over(&self, watch: &mut WorkerView) {
        if let Some((_, id)) = watch.hog.take() {
            self.hogs.update(watch.index, id, Duration::ZERO, false, None);
        }
    }

    /// Where the handler last found slice `seq`'s coroutine, if it did.
    fn last_function(&self, w: &PreemptWatch, seq: u64) -> Option<String> {
        if w.last_pc_seq.load(Ordering::Relaxed) != seq {
            return None;
        }
        let pc = w.last_pc.load(Ordering::Relaxed);
        let (name, offset) = super::codemap::get()?.function_at(pc)?;
        Some(format!("{name}+{offset:#x}"))
    }
}

/// When the timer thread must wake for a worker's timer (not when its alarm covers it).
fn deadline_wake(deadline: u64, alarm: u64, now: u64) -> Option<u64> {
    (deadline != 0 && deadline != alarm && deadline > now).then_some(deadline)
}

/// A worker thread's CPU time in nanoseconds (0 if it cannot be read).
fn thread_cpu_ns(w: &PreemptWatch) -> u64 {
    let clock = w.cpu_clock.load(Ordering::Relaxed);
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: reading a clock into a local.
    if clock == 0 || unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Whether a worker ran on a CPU for at least an eighth of `wall`: it is computing (perhaps
/// sharing its CPU with other threads), not asleep in a system call, where a signal could make
/// the call fail with EINTR. (Only coroutines inside `preemptible` regions are signalled, and
/// their contract excludes such calls.)
fn burning_cpu(wall: u64, cpu_ns: u64) -> bool {
    cpu_ns * 8 >= wall
}
