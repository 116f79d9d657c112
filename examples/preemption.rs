//! What preemption buys: CPU hogs beside an interactive coroutine, with preemption on and off.
//!
//! `cargo run --release --example preemption [-- --mode region|checkpoint --workers 2 --hogs 8 --slice-us 1000 --secs 2 --pairs 1]`
//!
//! The hogs spin in arithmetic loops; the interactive coroutine sleeps 1 ms in a loop and
//! records how late each wake-up is. With preemption off, a hog that holds a worker never lets
//! go, so the sleeper starves and the hogs' shares depend on which ran first. With it on:
//!
//! - `--mode region` (the default): the loops never call a function or reach a safe point, and
//!   run inside `unsafe { sigcoro::preemptible(..) }`: the timer thread's signal (or the
//!   worker's own alarm) switches them out asynchronously after about a slice and a half;
//! - `--mode checkpoint`: the loops call `sigcoro::checkpoint()` once per block of work, and the
//!   default, signal-free mode switches them out there after about a slice.
//!
//! On a noisy machine one on/off pair says little about throughput: `--pairs N` runs N pairs,
//! alternating which of on and off goes first, and prints the median of each figure.
//!
//! `--hog-report` measures how soon the default mode names a call-free spinner as a hog: 20
//! times, a spinner that never reaches a safe point starts on a one-worker runtime, and this
//! thread polls `Runtime::hogs()` until it appears; prints the delay in slices.
//!
//! `--floor` measures what the machine itself charges for the interrupts preemption needs, with
//! no runtime at all: plain threads (one per worker) spin in the same loop, with and without a
//! kernel timer that signals each of them (an empty handler) every slice and a half, the rate
//! at which a runtime preempts CPU-bound coroutines. On a virtual machine each timer interrupt
//! can cost tens of microseconds; no preemption design can do better than this ratio.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

struct Args {
    mode: Mode,
    workers: usize,
    hogs: usize,
    slice: Duration,
    secs: f64,
    pairs: usize,
    floor: bool,
    hog_report: bool,
}

/// How the hogs let preemption in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Call-free loops inside a `preemptible` region.
    Region,
    /// Loops with a `checkpoint()` per block, default mode.
    Checkpoint,
}

fn parse_args() -> Args {
    let mut a = Args {
        mode: Mode::Region,
        workers: 2,
        hogs: 8,
        slice: Duration::from_millis(1),
        secs: 2.0,
        pairs: 1,
        floor: false,
        hog_report: false,
    };
    let mut argv = std::env::args().skip(1);
    while let Some(flag) = argv.next() {
        if flag == "--floor" {
            a.floor = true;
            continue;
        }
        if flag == "--hog-report" {
            a.hog_report = true;
            continue;
        }
        let value = argv.next().unwrap_or_default();
        match flag.as_str() {
            "--mode" => {
                a.mode = match value.as_str() {
                    "region" => Mode::Region,
                    "checkpoint" => Mode::Checkpoint,
                    other => panic!("--mode region|checkpoint, not {other:?}"),
                }
            }
            "--workers" => a.workers = value.parse().expect("--workers N"),
            "--hogs" => a.hogs = value.parse().expect("--hogs N"),
            "--slice-us" => a.slice = Duration::from_micros(value.parse().expect("--slice-us N")),
            "--secs" => a.secs = value.parse().expect("--secs S"),
            "--pairs" => a.pairs = value.parse().ok().filter(|&n| n > 0).expect("--pairs N (at least 1)"),
            other => panic!("unknown option {other}; see the doc comment at the top of the example"),
        }
    }
    a
}

/// One measurement: the sleeper's lateness in microseconds (sorted) and each hog's work.
struct Run {
    lateness_us: Vec<u64>,
    work: Vec<u64>,
    stats: sigcoro::PreemptStats,
    /// CPU time the timer thread used, in seconds.
    timer_cpu: f64,
}

/// CPU time (user + system, seconds) of this process's thread named `name`, if it is alive.
fn thread_cpu(name: &str) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    for entry in dir.flatten() {
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        if let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')'))
            && &stat[open + 1..close] == name
        {
            let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
            // SAFETY: sysconf has no preconditions.
            let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
            let ticks: f64 = fields[11].parse::<f64>().unwrap_or(0.0) + fields[12].parse::<f64>().unwrap_or(0.0);
            return ticks / hz;
        }
    }
    0.0
}

fn run(args: &Args, preempt: Option<Duration>) -> Run {
    let rt = sigcoro::Runtime::builder()
        .workers(args.workers)
        .preempt(preempt)
        .build()
        .expect("runtime");
    let stop = Arc::new(AtomicBool::new(false));
    let work: Arc<Vec<AtomicU64>> = Arc::new((0..args.hogs).map(|_| AtomicU64::new(0)).collect());
    let (hogs, secs, mode) = (args.hogs, args.secs, args.mode);
    // Spawned from this thread, tasks go to the workers in turn: each gets its share of hogs.
    let hog_handles: Vec<_> = (0..hogs)
        .map(|i| {
            let (stop, work) = (stop.clone(), work.clone());
            rt.spawn(move || {
                let mut x = i as u64 + 1;
                let mut spin = || {
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..4096 {
                            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        }
                        work[i].fetch_add(1, Ordering::Relaxed);
                        if mode == Mode::Checkpoint {
                            sigcoro::checkpoint();
                        }
                    }
                };
                match mode {
                    // SAFETY: arithmetic and an atomic counter: no thread-owned state.
                    Mode::Region => unsafe { sigcoro::preemptible(spin) },
                    Mode::Checkpoint => spin(),
                }
                std::hint::black_box(x);
            })
        })
        .collect();
    // The run's end is fixed now: a sleeper that starves until the hogs stop records nothing.
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let sleeper = rt.spawn(move || {
        let mut late = Vec::new();
        while Instant::now() < end {
            let t = Instant::now();
            sigcoro::sleep(Duration::from_millis(1));
            late.push((t.elapsed().saturating_sub(Duration::from_millis(1))).as_micros() as u64);
        }
        late
    });
    // Without preemption the sleeper may never run: this thread ends the run on time.
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    let lateness_us = sleeper.join().unwrap();
    hog_handles.into_iter().for_each(|h| h.join().unwrap());
    let stats = rt.preemptions();
    let timer_cpu = thread_cpu("sigcoro-timer");
    let work = work.iter().map(|w| w.load(Ordering::Relaxed)).collect();
    let mut lateness_us = lateness_us;
    lateness_us.sort_unstable();
    Run {
        lateness_us,
        work,
        stats,
        timer_cpu,
    }
}

fn pct(v: &[u64], p: f64) -> String {
    if v.is_empty() {
        return "-".into();
    }
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    format!("{:.2} ms", v[i] as f64 / 1000.0)
}

/// The summary figures of one run.
struct Figures {
    p50_ms: f64,
    p99_ms: f64,
    jain: f64,
    min_max: f64,
    total: u64,
}

fn figures(r: &Run) -> Figures {
    let total: u64 = r.work.iter().sum();
    let n = r.work.len() as f64;
    let jain = (total as f64).powi(2) / (n * r.work.iter().map(|&w| (w as f64).powi(2)).sum::<f64>()).max(1.0);
    let (min, max) = (*r.work.iter().min().unwrap_or(&0), *r.work.iter().max().unwrap_or(&0));
    let at = |p: f64| {
        let v = &r.lateness_us;
        if v.is_empty() {
            return f64::NAN;
        }
        v[((v.len() as f64 - 1.0) * p).round() as usize] as f64 / 1000.0
    };
    Figures {
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        jain,
        min_max: min as f64 / max.max(1) as f64,
        total,
    }
}

fn report(label: &str, r: &Run, secs: f64) {
    let f = figures(r);
    println!("{label}");
    println!(
        "  sleeper: {} wake-ups in {secs} s; lateness p50 {}, p99 {}, max {}",
        r.lateness_us.len(),
        pct(&r.lateness_us, 0.5),
        pct(&r.lateness_us, 0.99),
        pct(&r.lateness_us, 1.0)
    );
    let shares: Vec<String> = r
        .work
        .iter()
        .map(|&w| format!("{:.1}%", 100.0 * w as f64 / f.total.max(1) as f64))
        .collect();
    println!("  hog shares: {}", shares.join(" "));
    println!(
        "  fairness (Jain) {:.4}, min/max {:.3}, total work {:.1} M blocks/s",
        f.jain,
        f.min_max,
        f.total as f64 / secs / 1e6
    );
    println!(
        "  preemptions: {} by signal, {} at safe points, {} deferred; signals: {} from the timer thread, {} from worker alarms",
        r.stats.asynchronous, r.stats.at_safe_points, r.stats.deferred, r.stats.signals, r.stats.alarms
    );
    println!("  timer thread CPU: {:.1}% of a core", 100.0 * r.timer_cpu / secs);
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// `--pairs N`: N on/off pairs, one line each, then the medians.
fn pairs(args: &Args) {
    println!(
        "\n{} pairs of {} s runs, preemption on ({:?} slice) and off, alternating which goes first:",
        args.pairs, args.secs, args.slice
    );
    println!("  pair  on/off  Jain    min/max  p50 ms  p99 ms  timer CPU  signals/s");
    let mut rows = Vec::new();
    for i in 0..args.pairs {
        let (on, off) = if i % 2 == 0 {
            let on = run(args, Some(args.slice));
            (on, run(args, None))
        } else {
            let off = run(args, None);
            (run(args, Some(args.slice)), off)
        };
        let (f, t_off) = (figures(&on), figures(&off).total);
        let ratio = f.total as f64 / t_off.max(1) as f64;
        let timer = 100.0 * on.timer_cpu / args.secs;
        let signals = (on.stats.signals + on.stats.alarms) as f64 / args.secs;
        println!(
            "  {:4}  {ratio:6.3}  {:.4}  {:7.3}  {:6.2}  {:6.2}  {:8.1}%  {signals:9.0}",
            i + 1,
            f.jain,
            f.min_max,
            f.p50_ms,
            f.p99_ms,
            timer
        );
        rows.push((ratio, f, timer, signals));
    }
    type Row = (f64, Figures, f64, f64);
    let col = |g: &dyn Fn(&Row) -> f64| median(rows.iter().map(g).collect());
    println!(
        "  median {:6.3}  {:.4}  {:7.3}  {:6.2}  {:6.2}  {:8.1}%  {:9.0}",
        col(&|r| r.0),
        col(&|r| r.1.jain),
        col(&|r| r.1.min_max),
        col(&|r| r.1.p50_ms),
        col(&|r| r.1.p99_ms),
        col(&|r| r.2),
        col(&|r| r.3)
    );
}

/// `--floor`: plain threads spinning, with and without a kernel timer signal every slice and a
/// half; prints the throughput ratio of each pair and the median.
fn floor(args: &Args) {
    let period = args.slice + args.slice / 2;
    println!(
        "\nfloor: {} plain threads spinning, with and without a kernel timer signal every {period:?} each ({} pairs of {} s):",
        args.workers, args.pairs, args.secs
    );
    extern "C" fn empty(_: libc::c_int) {}
    // SAFETY: an empty handler for a real-time signal nothing else in this program uses.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = empty as *const () as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigaction(libc::SIGRTMIN(), &action, std::ptr::null_mut());
    }
    let ratios: Vec<f64> = (0..args.pairs)
        .map(|i| {
            let (with, without) = if i % 2 == 0 {
                (spin_threads(args, Some(period)), spin_threads(args, None))
            } else {
                let without = spin_threads(args, None);
                (spin_threads(args, Some(period)), without)
            };
            let ratio = with as f64 / without.max(1) as f64;
            println!("  pair {:2}: with / without signals {ratio:.3}", i + 1);
            ratio
        })
        .collect();
    println!("  median {:.3}", median(ratios));
}

/// `--hog-report`: how many slices after a call-free spinner starts its hog report appears.
fn hog_report(args: &Args) {
    let mut delays = Vec::new();
    for _ in 0..20 {
        let rt = sigcoro::Runtime::builder()
            .workers(1)
            .preempt(Some(args.slice))
            .build()
            .expect("runtime");
        let stop = Arc::new(AtomicBool::new(false));
        let started = Arc::new(AtomicU64::new(0));
        let (s, st) = (stop.clone(), started.clone());
        let spinner = rt.spawn(move || {
            st.store(sigcoro_nanos(), Ordering::Release);
            let mut x = 1u64;
            while !s.load(Ordering::Relaxed) {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
            std::hint::black_box(x);
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        while rt.hogs().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(50));
        }
        let seen = sigcoro_nanos();
        stop.store(true, Ordering::Relaxed);
        spinner.join().unwrap();
        let from = started.load(Ordering::Acquire);
        delays.push((seen - from) as f64 / args.slice.as_nanos() as f64);
    }
    delays.sort_by(f64::total_cmp);
    println!(
        "\nhog report of a call-free spinner, default mode, {:?} slice, 20 runs: median {:.2} slices after it started, max {:.2} (the timer thread files it after 2)",
        args.slice,
        median(delays.clone()),
        delays[delays.len() - 1]
    );
}

/// Nanoseconds on a monotonic clock shared by all threads.
fn sigcoro_nanos() -> u64 {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Total blocks of work `args.workers` plain threads do in `args.secs`, each signalled by its
/// own kernel timer every `period` if given.
fn spin_threads(args: &Args, period: Option<Duration>) -> u64 {
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..args.workers)
        .map(|i| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                // SAFETY: a timer for this thread (SIGEV_THREAD_ID), set periodic, deleted below.
                let timer = period.map(|p| unsafe {
                    let mut ev: libc::sigevent = std::mem::zeroed();
                    ev.sigev_notify = libc::SIGEV_THREAD_ID;
                    ev.sigev_signo = libc::SIGRTMIN();
                    ev.sigev_notify_thread_id = libc::gettid();
                    let mut id: libc::timer_t = std::ptr::null_mut();
                    assert_eq!(libc::timer_create(libc::CLOCK_MONOTONIC, &mut ev, &mut id), 0);
                    let ts = libc::timespec {
                        tv_sec: p.as_secs() as libc::time_t,
                        tv_nsec: p.subsec_nanos() as libc::c_long,
                    };
                    let spec = libc::itimerspec {
                        it_interval: ts,
                        it_value: ts,
                    };
                    libc::timer_settime(id, 0, &spec, std::ptr::null_mut());
                    id
                });
                let (mut x, mut blocks) = (i as u64 + 1, 0u64);
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..4096 {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    }
                    blocks += 1;
                }
                if let Some(id) = timer {
                    // SAFETY: the timer made above, deleted once.
                    unsafe { libc::timer_delete(id) };
                }
                std::hint::black_box(x);
                blocks
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(args.secs));
    stop.store(true, Ordering::Relaxed);
    threads.into_iter().map(|t| t.join().unwrap()).sum()
}

fn main() {
    let args = parse_args();
    println!(
        "{} workers, {} hogs ({}), a 1 ms sleeper, {} s per run; asynchronous preemption: {}",
        args.workers,
        args.hogs,
        match args.mode {
            Mode::Region => "call-free loops in preemptible regions",
            Mode::Checkpoint => "loops with a checkpoint() per block, safe-point mode",
        },
        args.secs,
        match sigcoro::preempt::async_preemption() {
            Ok(()) => "available".to_string(),
            Err(why) => format!("off ({why})"),
        }
    );
    if args.floor {
        floor(&args);
        return;
    }
    if args.hog_report {
        hog_report(&args);
        return;
    }
    if args.pairs > 1 {
        pairs(&args);
        return;
    }
    let on = run(&args, Some(args.slice));
    report(&format!("\npreemption on, {:?} slice:", args.slice), &on, args.secs);
    let off = run(&args, None);
    report("\npreemption off:", &off, args.secs);
    let (t_on, t_off): (u64, u64) = (on.work.iter().sum(), off.work.iter().sum());
    println!(
        "\nhog throughput with preemption on / off: {:.3}",
        t_on as f64 / t_off.max(1) as f64
    );
}
