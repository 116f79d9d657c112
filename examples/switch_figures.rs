//! The foundation's figures, in plain words:
//!
//! - the one-way switch: half of a `resume` + `suspend` round trip of a coroutine that
//!   ping-pongs a `u64`;
//! - a whole short coroutine on a pooled stack: `Coroutine::new`, one `resume` that runs it to
//!   the end, and the drop that gives the stack back to the pool;
//! - the cold creation of a stack by the signal-stack trick (guard page, `sigaltstack`,
//!   `sigaction`, a signal to self, the trampoline's first entry), which each stack pays once;
//! - the memory of an idle coroutine: 100,000 coroutines that each suspended once, measured as
//!   the growth of VmRSS, and separately of VmPTE (page tables, which RSS does not count).
//!
//! Timings are the median of several runs after a warm-up run, with the fastest and slowest
//! run. Run it with `cargo run --release --example switch_figures`; it takes a few seconds.

use sigcoro::coroutine::{Coroutine, CoroutineResult, Yielder};
use sigcoro::stack::DEFAULT_STACK_SIZE;
use std::hint::black_box;
use std::time::Instant;

/// Timed runs per figure, after one warm-up run.
const REPS: usize = 9;

/// Nanoseconds per operation: the median, fastest and slowest of [`REPS`] runs.
struct Figure {
    median: f64,
    min: f64,
    max: f64,
}

impl Figure {
    fn scaled(self, by: f64) -> Figure {
        Figure {
            median: self.median * by,
            min: self.min * by,
            max: self.max * by,
        }
    }
}

impl std::fmt::Display for Figure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (scale, unit) = if self.median >= 1_000.0 {
            (1e-3, "us")
        } else {
            (1.0, "ns")
        };
        let (med, min, max) = (self.median * scale, self.min * scale, self.max * scale);
        write!(f, "{med:.1} {unit} (runs from {min:.1} to {max:.1} {unit})")
    }
}

/// Times `batch(ops)`, which does `ops` operations, once to warm up and then [`REPS`] times.
fn measure(ops: u64, mut batch: impl FnMut(u64)) -> Figure {
    batch(ops);
    let mut per_op: Vec<f64> = (0..REPS)
        .map(|_| {
            let start = Instant::now();
            batch(ops);
            start.elapsed().as_secs_f64() * 1e9 / ops as f64
        })
        .collect();
    per_op.sort_by(f64::total_cmp);
    Figure {
        median: per_op[REPS / 2],
        min: per_op[0],
        max: per_op[REPS - 1],
    }
}

/// A field of `/proc/self/status`, in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or(0)
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|line| {
            line.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    // SAFETY: utsname is plain bytes, and uname only fills in the struct we pass.
    let kernel = unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        libc::uname(&mut u);
        let field = |f: &[libc::c_char]| std::ffi::CStr::from_ptr(f.as_ptr()).to_string_lossy().into_owned();
        format!("{} {}", field(&u.sysname), field(&u.release))
    };
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpu}, {kernel}, {cpus} CPUs")
}

fn main() {
    println!("sigcoro foundation figures");
    println!("machine: {}", machine());
    if cfg!(debug_assertions) {
        println!("note: this is a debug build; run with --release for meaningful figures");
    }
    println!("each timing: the median of {REPS} runs after a warm-up run\n");

    // Memory first, while the process has no stacks yet: every coroutine gets a fresh one.
    const IDLE: u64 = 100_000;
    let (rss_before, pte_before) = (status_kib("VmRSS"), status_kib("VmPTE"));
    let idle: Vec<_> = (0..IDLE)
        .map(|i| {
            let mut co = Coroutine::new(move |y: &Yielder<u64, u64>, v: u64| y.suspend(v + i));
            black_box(co.resume(1));
            co
        })
        .collect();
    let (rss, pte) = (status_kib("VmRSS") - rss_before, status_kib("VmPTE") - pte_before);
    drop(idle);

    let mut ping: Coroutine<u64, u64, ()> = Coroutine::new(|y, mut v| {
        loop {
            v = y.suspend(v + 1);
        }
    });
    let switch = measure(2_000_000, |n| {
        let mut v = 0;
        for _ in 0..n {
            if let CoroutineResult::Yield(next) = ping.resume(black_box(v)) {
                v = next;
            }
        }
        assert_eq!(v, n, "every round trip happened");
    })
    .scaled(0.5);
    println!("one-way switch (half a resume + suspend round trip):      {switch}");

    let pooled = measure(200_000, |n| {
        for i in 0..n {
            let mut co = Coroutine::new(|_: &Yielder<u64, ()>, v: u64| v + 1);
            black_box(co.resume(black_box(i)));
        }
    });
    println!("new + resume to the end + drop, on a pooled stack:        {pooled}");

    let cold = measure(2_000, |n| {
        for _ in 0..n {
            sigcoro::__bench::reboot_one_for_bench(DEFAULT_STACK_SIZE).expect("booting a stack");
        }
    });
    println!("cold creation of a stack by the signal-stack trick:       {cold}");

    println!(
        "memory of an idle suspended coroutine ({} KiB stack, {IDLE} of them):\n    \
         {:.2} KiB of RSS each, plus {:.2} KiB of page tables each (VmPTE, not in RSS)",
        DEFAULT_STACK_SIZE / 1024,
        rss as f64 / IDLE as f64,
        pte as f64 / IDLE as f64,
    );
}
