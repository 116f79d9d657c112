//! Helpers for the tests of sound preemption (`tests/sound_*.rs`): every workload runs in a
//! child process, once with the default preemption (which must be sound) and once, as the
//! control, with signals preempting anywhere (which must fail).
//!
//! A test re-executes its own binary with `--exact <test>` and `SIGCORO_SOUND_CHILD=<test>:<mode>`
//! in the environment; the child sees the variable and runs the workload instead. The child's
//! core dumps are off. Inside the child a [`Watchdog`] turns a deadlock into an exit with
//! [`HUNG_EXIT`] and a message; the parent also kills a child that outlives its timeout.

#![allow(dead_code)] // each test binary uses a part

use sigcoro::Runtime;
use std::fmt;
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "SIGCORO_SOUND_CHILD";

/// The exit status of a child whose [`Watchdog`] found its workload stuck.
pub const HUNG_EXIT: i32 = 86;

/// How long a child may run before the parent kills it (its own watchdog fires well before).
pub const CHILD_TIMEOUT: Duration = Duration::from_secs(90);

/// How a workload's runtime preempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The default: preemption only at safe points. Must be sound.
    Default,
    /// The control: signals preempt coroutines anywhere, the old unsound behaviour.
    Anywhere,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Default => "default",
            Mode::Anywhere => "anywhere",
        }
    }

    /// A runtime of `workers` workers, preempting after `slice` in this mode.
    pub fn runtime(self, workers: usize, slice: Duration) -> Runtime {
        let builder = Runtime::builder().workers(workers).preempt(Some(slice));
        let builder = match self {
            Mode::Default => builder,
            // SAFETY: unsound on purpose: only the control's child process runs this, to show
            // that the workload fails without the fix.
            Mode::Anywhere => unsafe { builder.preempt_anywhere_for_tests() },
        };
        builder.build().expect("runtime")
    }
}

/// The mode to run `test`'s workload in, if this process is the child spawned for `test`.
pub fn child_mode(test: &str) -> Option<Mode> {
    let var = std::env::var(CHILD_ENV).ok()?;
    let (name, mode) = var.rsplit_once(':')?;
    if name != test {
        return None;
    }
    match mode {
        "default" => Some(Mode::Default),
        "anywhere" => Some(Mode::Anywhere),
        _ => panic!("{CHILD_ENV}={var}: unknown mode"),
    }
}

/// How a child ended, and what it printed.
pub struct Outcome {
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

/// What became of a child's workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It ran and its checks passed.
    Passed,
    /// A check failed (the child panicked): a wrong result.
    WrongResult,
    /// It stopped making progress: its watchdog or the parent's timeout ended it.
    Hung,
    /// It died of this signal.
    Crashed(i32),
    /// It exited with another status.
    Other,
}

impl Outcome {
    pub fn verdict(&self) -> Verdict {
        let Some(status) = self.status else {
            return Verdict::Hung;
        };
        match (status.code(), status.signal()) {
            (Some(0), _) => Verdict::Passed,
            (Some(HUNG_EXIT), _) => Verdict::Hung,
            // The test harness exits with 101 when the test panicked.
            (Some(101), _) => Verdict::WrongResult,
            (None, Some(sig)) => Verdict::Crashed(sig),
            _ => Verdict::Other,
        }
    }

    /// The value of `key=` on the child's `RESULT` line, if it printed one.
    pub fn result(&self, key: &str) -> Option<u64> {
        // The harness's "test NAME ... " may come first on the line.
        let (_, line) = self.stdout.lines().find_map(|l| l.split_once("RESULT "))?;
        line.split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.parse().ok())
    }

    /// Asserts that the child's workload ran to the end with its checks passed.
    #[track_caller]
    pub fn assert_passed(&self) {
        assert_eq!(self.verdict(), Verdict::Passed, "the workload failed: {self:?}");
    }
}

impl fmt::Debug for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            Some(status) => write!(f, "child {status:?} after {:.1?}", self.elapsed)?,
            None => write!(f, "child killed by the parent's timeout after {:.1?}", self.elapsed)?,
        }
        write!(f, "\n--- stdout ---\n{}\n--- stderr ---\n{}", self.stdout, self.stderr)
    }
}

/// Re-runs this binary with only `test` selected, as its child running the workload in `mode`;
/// kills it after `timeout` (then its status is `None`).
pub fn run_child(test: &str, mode: Mode, timeout: Duration) -> Outcome {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", test, "--include-ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("{test}:{}", mode.as_str()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: the hook runs between fork and exec, where only async-signal-safe calls are
    // allowed: setrlimit is one, and it touches nothing of the parent's state.
    unsafe {
        cmd.pre_exec(|| {
            let none = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &none);
            Ok(())
        });
    }
    let (status, stdout, stderr, elapsed) = super::child::spawn_and_wait(&mut cmd, timeout);
    Outcome {
        status,
        stdout,
        stderr,
        elapsed,
    }
}

/// Runs `test` as a child in the default mode and asserts that its workload passed.
pub fn expect_sound(test: &str) -> Outcome {
    let out = run_child(test, Mode::Default, CHILD_TIMEOUT);
    println!("{out:?}");
    out.assert_passed();
    out
}

/// The control: runs `test` as a child with preemption anywhere, up to `tries` times, until
/// one fails in a way `expected` accepts; panics if none does. Returns that child's outcome.
pub fn expect_unsound(test: &str, tries: usize, expected: impl Fn(&Outcome) -> bool) -> Outcome {
    let mut seen = Vec::new();
    for attempt in 1..=tries {
        let out = run_child(test, Mode::Anywhere, CHILD_TIMEOUT);
        if expected(&out) {
            println!("control: failed as expected on try {attempt} of {tries}: {out:?}");
            return out;
        }
        seen.push(format!("try {attempt}: {:?}: {out:?}", out.verdict()));
    }
    panic!(
        "the control never failed as expected in {tries} tries: the workload cannot show the bug:\n{}",
        seen.join("\n")
    );
}

/// Turns a stuck workload into a prompt, explained exit: a plain thread that ends the process
/// with [`HUNG_EXIT`] when [`Watchdog::progress`] has not been called for `stall`, or when the
/// whole workload outlives `limit`. Dropping it disarms it.
pub struct Watchdog {
    done: Arc<AtomicBool>,
    beats: Arc<AtomicU64>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Watchdog {
    pub fn arm(what: &'static str, stall: Duration, limit: Duration) -> Watchdog {
        let done = Arc::new(AtomicBool::new(false));
        let beats = Arc::new(AtomicU64::new(0));
        let (d, b) = (done.clone(), beats.clone());
        let thread = thread::spawn(move || {
            let start = Instant::now();
            let (mut last, mut since) = (0, Instant::now());
            while !d.load(Ordering::Acquire) {
                let now = b.load(Ordering::Relaxed);
                if now != last {
                    (last, since) = (now, Instant::now());
                }
                let (why, wait) = if since.elapsed() > stall {
                    ("made no progress for", stall)
                } else if start.elapsed() > limit {
                    ("still running after", limit)
                } else {
                    thread::sleep(Duration::from_millis(20));
                    continue;
                };
                // Formatted into a local buffer: the stuck workload may hold the allocator's locks.
                let mut buf = [0u8; 256];
                let mut out = &mut buf[..];
                let _ = writeln!(
                    out,
                    "WATCHDOG: {what} {why} {wait:?} ({last} steps done): deadlocked or livelocked"
                );
                let len = 256 - out.len();
                // SAFETY: write(2) of a local buffer to stderr and _exit(2): no lock of the stuck
                // process (its allocator's or stdio's) is taken on the way out.
                unsafe {
                    libc::write(2, buf.as_ptr().cast(), len);
                    libc::_exit(HUNG_EXIT);
                }
            }
        });
        Watchdog {
            done,
            beats,
            thread: Some(thread),
        }
    }

    /// A handle the workload's coroutines call [`Progress::step`] on.
    pub fn progress(&self) -> Progress {
        Progress(self.beats.clone())
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reports progress to a [`Watchdog`].
#[derive(Clone)]
pub struct Progress(Arc<AtomicU64>);

impl Progress {
    #[inline]
    pub fn step(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// Spins for about `d` of wall time without any safe point: a stretch where only a signal could
/// preempt. Returns a value to black-box.
pub fn spin_for(d: Duration) -> u64 {
    let end = Instant::now() + d;
    let mut x = 1u64;
    while Instant::now() < end {
        for _ in 0..256 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        }
    }
    x
}

/// One round of allocator churn, a pure function of `r`: vectors, strings and boxes of varied
/// sizes (some past the allocators' small-object classes), freed out of order, and a HashMap
/// grown and thinned. Returns a checksum of what it read back.
pub fn churn_round(r: u64) -> u64 {
    use std::collections::HashMap;
    let mut sum = 0u64;
    let n = 1 + (r.wrapping_mul(37) % 509) as usize;
    let v: Vec<u64> = (0..n as u64).map(|j| j ^ r).collect();
    sum = sum.wrapping_add(v.iter().fold(0u64, |a, &x| a.wrapping_add(x)));
    let s = format!("{r}:{}", "ab".repeat((r % 300) as usize));
    sum = sum.wrapping_add(s.len() as u64 + u64::from(s.as_bytes()[s.len() - 1]));
    let big = vec![r as u8; 1 + (r.wrapping_mul(7919) % 70_000) as usize].into_boxed_slice();
    sum = sum.wrapping_add(u64::from(big[big.len() / 2]) + big.len() as u64);
    let mut boxes: Vec<Option<Box<[u8]>>> = (0..32u64)
        .map(|k| Some(vec![(k + r) as u8; 8 + (k.wrapping_mul(r) % 200) as usize].into_boxed_slice()))
        .collect();
    for k in (1..32).step_by(2).chain((0..32).step_by(2)) {
        let b = boxes[k].take().expect("each box is taken once");
        sum = sum.wrapping_add(u64::from(b[b.len() - 1]) * b.len() as u64);
    }
    let mut m: HashMap<u64, Vec<u64>> = HashMap::new();
    for k in 0..64u64 {
        m.insert(r.wrapping_mul(64).wrapping_add(k), vec![k ^ r; (k % 16) as usize]);
    }
    for k in (0..64u64).step_by(3) {
        m.remove(&r.wrapping_mul(64).wrapping_add(k));
    }
    let kept = m.values().fold(0u64, |a, v| {
        a.wrapping_add(v.iter().fold(v.len() as u64, |b, &x| b.wrapping_add(x)))
    });
    sum.wrapping_add(kept)
}

/// What one allocator stress run did.
#[derive(Debug, Default)]
pub struct ChurnReport {
    pub rounds: u64,
    pub mismatches: u64,
}

/// The allocator stress: `coroutines` coroutines on `workers` workers at `slice`, each running
/// [`churn_round`]s from its own offset for about `run` (counted in rounds, so the work is
/// exact), with a [`sigcoro::checkpoint`] every 16 rounds and a [`sigcoro::yield_now`] every
/// 128: stretches of several slices between safe points. Each coroutine's checksums are then
/// compared with the same rounds recomputed on this thread, outside the runtime.
pub fn alloc_churn(mode: Mode, workers: usize, coroutines: u64, slice: Duration, run: Duration) -> ChurnReport {
    let rt = mode.runtime(workers, slice);
    let dog = Watchdog::arm("the allocator stress", Duration::from_secs(3), Duration::from_secs(60));
    let progress = dog.progress();
    let deadline = Instant::now() + run;
    let handles: Vec<_> = (0..coroutines)
        .map(|c| {
            let progress = progress.clone();
            rt.spawn(move || {
                let first = c * 97;
                let mut sums = Vec::new();
                let mut r = first;
                while Instant::now() < deadline {
                    for _ in 0..16 {
                        sums.push(churn_round(r));
                        r += 1;
                    }
                    progress.step();
                    if (r - first).is_multiple_of(128) {
                        sigcoro::yield_now();
                    } else {
                        sigcoro::checkpoint();
                    }
                }
                (first, sums)
            })
        })
        .collect();
    let results: Vec<(u64, Vec<u64>)> = handles
        .into_iter()
        .map(|h| h.join().expect("no coroutine panicked"))
        .collect();
    let stats = rt.preemptions();
    drop(rt);
    // The coroutines' ranges of rounds overlap: each round is recomputed once.
    let end = results
        .iter()
        .map(|(first, sums)| first + sums.len() as u64)
        .max()
        .unwrap_or(0);
    let expected: Vec<u64> = (0..end).map(churn_round).collect();
    let mut report = ChurnReport::default();
    for (first, sums) in &results {
        for (r, &sum) in (*first..).zip(sums) {
            report.rounds += 1;
            if expected[r as usize] != sum {
                report.mismatches += 1;
            }
        }
    }
    drop(dog);
    println!(
        "RESULT rounds={} mismatches={} at_safe_points={} asynchronous={} signals={} alarms={}",
        report.rounds, report.mismatches, stats.at_safe_points, stats.asynchronous, stats.signals, stats.alarms
    );
    assert_eq!(report.mismatches, 0, "checksum mismatch: {report:?}, {stats:?}");
    assert!(
        report.rounds >= coroutines * 16,
        "every coroutine did some work: {report:?}"
    );
    if mode == Mode::Default {
        assert!(
            stats.at_safe_points > 0,
            "preemption happened at safe points: {stats:?}"
        );
    }
    report
}
