//! The timer thread: one per runtime with preemption on, watching every worker (like Go's
//! sysmon).
//!
//! It never reads a clock on a worker's behalf. Each worker counts the slices it starts
//! (`slice_seq`, a plain store per new slice); the timer thread samples the counts every
//! `slice / 4`. A worker whose count has not moved for a whole slice, while running a coroutine,
//! gets its interrupt flag raised; one sample later, if the flag is still up, a signal. So a
//! coroutine runs between 1 and 1.25 slices before a safe point takes it, and at most 1.5 slices
//! before the signal does. When every worker is idle, the thread samples less and less often,
//! down to every 10 ms.
//!
//! Workers also publish their earliest timer. A worker still running a coroutine when its timer
//! is due is interrupted at once (flag and signal), so a sleeper does not wait for a CPU-bound
//! neighbour's slice to end: wake-up latency is the timer thread's own, tens of microseconds.

use super::handler::preempt_signal;
use super::{DEADLINE, PREEMPT};
use crate::sched::worker::Shared;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Nanoseconds from a process-wide origin to `t` (at least 1, so 0 can mean "none").
pub(crate) fn nanos(t: Instant) -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    let origin = *ORIGIN.get_or_init(|| Instant::now() - Duration::from_secs(1));
    t.saturating_duration_since(origin).as_nanos().max(1) as u64
}

/// The longest the timer thread sleeps while every worker idles.
const IDLE_SAMPLE: Duration = Duration::from_millis(10);

/// What the timer thread knows of one worker between samples.
#[derive(Default)]
struct Watch {
    seq: u64,
    samples: u32,
    flagged: bool,
    /// The last timer deadline we interrupted the worker for (it is not interrupted twice for
    /// one deadline; the next sample handles a deferral).
    handled_deadline: u64,
    /// When the flag was raised, and the worker thread's CPU time then (ns).
    flagged_at: Option<(Instant, u64)>,
}

/// Runs until the runtime shuts down.
pub(crate) fn run(rt: Arc<Shared>, slice: Duration) {
    // Wake on time rather than up to 50 us late (timer slack), and ask for a higher scheduling
    // weight (nice -10) so that on a machine whose cores the workers keep busy the kernel runs
    // this thread as soon as it wakes; without the privilege the call fails and nothing changes.
    // SAFETY: prctl and setpriority on this thread, with valid arguments.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1, 0, 0, 0);
        libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, -10);
    }
    let sample = (slice / 2).max(Duration::from_micros(20));
    let samples_per_slice = (slice.as_nanos() / sample.as_nanos()).max(1) as u32;
    let mut watch: Vec<Watch> = rt.workers.iter().map(|_| Watch::default()).collect();
    let mut period = sample;
    let mut next_sample = Instant::now() + period;
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    while !rt.timer_stop.load(Ordering::Acquire) {
        // Sleep until the next sample, or until a running worker's timer is due.
        let due = rt
            .workers
            .iter()
            .zip(&watch)
            .filter(|(w, _)| w.preempt.running.load(Ordering::Relaxed))
            .map(|(w, watch)| (w.preempt.deadline.load(Ordering::Relaxed), watch.handled_deadline))
            .filter(|&(d, handled)| d != 0 && d != handled)
            .map(|(d, _)| d)
            .min();
        let now = Instant::now();
        let wake = match due {
            Some(d) => next_sample.min(now + Duration::from_nanos(d.saturating_sub(nanos(now)))),
            None => next_sample,
        };
        if wake > now {
            std::thread::sleep(wake - now);
        }
        let now = Instant::now();
        let sampling = now >= next_sample;
        let now_ns = nanos(now);
        let mut any_running = false;
        for (w, watch) in rt.workers.iter().zip(watch.iter_mut()) {
            let seq = w.preempt.slice_seq.load(Ordering::Relaxed);
            let running = w.preempt.running.load(Ordering::Relaxed);
            any_running |= running;
            let deadline = w.preempt.deadline.load(Ordering::Relaxed);
            let timer_due = running && deadline != 0 && deadline <= now_ns && deadline != watch.handled_deadline;
            if timer_due {
                watch.handled_deadline = deadline;
            } else if !sampling {
                continue;
            }
            if !running || (sampling && seq != watch.seq) {
                (watch.seq, watch.samples, watch.flagged) = (seq, 0, false);
                if !timer_due {
                    continue;
                }
            } else if sampling {
                watch.samples += 1;
            }
            let flag = w.preempt.flag.load(Ordering::Acquire);
            if flag.is_null() || (watch.samples < samples_per_slice && !timer_due) {
                continue;
            }
            // SAFETY: a worker publishes its thread-local flag's address while it runs, and
            // the runtime stops this thread before its workers exit.
            let flag = unsafe { &*flag };
            let cpu_clock = w.preempt.cpu_clock.load(Ordering::Relaxed);
            if timer_due {
                // Make way for the coroutines the timer wakes: at once, by signal if need be.
                flag.fetch_or(DEADLINE, Ordering::Release);
            } else if !watch.flagged {
                flag.fetch_or(PREEMPT, Ordering::Release);
                watch.flagged = true;
                watch.flagged_at = Some((now, thread_cpu_ns(cpu_clock)));
                continue; // a grace period for a safe point to take it
            }
            if flag.load(Ordering::Acquire) & (PREEMPT | DEADLINE) != 0 && rt.preempt_async {
                let tid = w.preempt.tid.load(Ordering::Relaxed);
                let busy = match watch.flagged_at {
                    Some((at, cpu)) if !timer_due => {
                        burning_cpu(now - at, thread_cpu_ns(cpu_clock).saturating_sub(cpu))
                    }
                    _ => true,
                };
                // Restart the measure: the next signal needs another busy grace period.
                watch.flagged_at = Some((now, thread_cpu_ns(cpu_clock)));
                if tid != 0 && busy {
                    rt.stats.signals.fetch_add(1, Ordering::Relaxed);
                    // SAFETY: tgkill to a thread of our own process.
                    unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, preempt_signal()) };
                }
            }
        }
        if sampling {
            period = if any_running {
                sample
            } else {
                (period * 2).min(IDLE_SAMPLE)
            };
            next_sample = now + period;
        }
    }
}

/// A worker thread's CPU time in nanoseconds (0 if it cannot be read).
fn thread_cpu_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: reading a clock into a local.
    if clock == 0 || unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Whether a worker used nearly all of `wall` on a CPU: it is computing, not asleep in a system
/// call, where a signal could make the call fail with EINTR. (A thread can still enter a call
/// just as the signal comes; `SA_RESTART` covers the calls that restart, see the module docs.)
fn burning_cpu(wall: Duration, cpu_ns: u64) -> bool {
    cpu_ns as u128 * 10 >= wall.as_nanos() * 9
}
