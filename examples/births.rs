//! Cold births at scale: what new stacks cost when a runtime has none to reuse.
//!
//! - `cargo run --release --example births -- sleepers [COUNT]` (default 1,000,000, ~5 GB of
//!   RAM): COUNT coroutines spawned from one coroutine on a one-worker runtime, each going to
//!   sleep at once. Prints the time from the first spawn to the last one asleep, the RSS per
//!   sleeping coroutine, the process's user and system time over that span and its minor page
//!   faults, and how the stacks were born (signal-stack trick or cloned).
//! - `cargo run --release --example births -- storm [COUNT [WORKERS]]` (default 100,000): one
//!   storm of COUNT empty coroutines spawned and then joined, on a fresh runtime (default
//!   workers) in this fresh process; run it several times for a median. `cd benches/peers && cargo run --release
//!   -- cold` runs it against tokio in the same run, each in its own process.
//!
//! - `cargo run --release --example births -- warm [COUNT]`: 21 storms of COUNT (100,000)
//!   spawns and joins on one worker after a warm-up storm, every stack reused: the median ns
//!   per coroutine, to check that the warm path did not get slower.
//!
//! - `cargo run --release --example births -- page-floor [COUNT [STRIDE]]`: the kernel's floor
//!   for `sleepers`, without sigcoro: one write to each of COUNT (1,000,000) pages of one fresh
//!   mapping, STRIDE bytes apart (default: a default stack's slot, 264 KiB, so one page at the
//!   top of each slot as the sleepers touch; 4096 puts them side by side).
//!
//! Add `--trick` to force every birth through the signal-stack trick (the control).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// (user seconds, system seconds, minor faults) of the whole process so far.
fn usage() -> (f64, f64, i64) {
    // SAFETY: rusage is plain data, all-zero is valid, and getrusage fills the struct we own.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (tv(ru.ru_utime), tv(ru.ru_stime), ru.ru_minflt)
}

fn sleepers(count: usize) {
    let rt = sigcoro::Runtime::builder().workers(1).build().expect("runtime");
    let before = status_kib("VmRSS:");
    let (u0, s0, f0) = usage();
    let asleep = Arc::new(AtomicUsize::new(0));
    let last = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let (a, l) = (asleep.clone(), last.clone());
    let (start, handles) = rt.block_on(move || {
        let far = Instant::now() + Duration::from_secs(3600);
        let start = Instant::now();
        let handles: Vec<_> = (0..count)
            .map(|_| {
                let (a, l) = (a.clone(), l.clone());
                sigcoro::spawn(move || {
                    if a.fetch_add(1, Ordering::Relaxed) + 1 == count {
                        *l.lock().unwrap() = Some(Instant::now());
                    }
                    drop((a, l));
                    sigcoro::sleep_until(far)
                })
            })
            .collect();
        (start, handles)
    });
    while asleep.load(Ordering::Relaxed) < count {
        std::thread::sleep(Duration::from_millis(5));
    }
    let end = last.lock().unwrap().expect("the last sleeper stamped its time");
    let (u1, s1, f1) = usage();
    std::thread::sleep(Duration::from_millis(200));
    let after = status_kib("VmRSS:");
    let stats = rt.block_on(sigcoro::stack::thread_stats);
    println!(
        "{count} coroutines spawned from one coroutine on 1 worker, first spawn to last asleep: {:.3} s",
        (end - start).as_secs_f64()
    );
    println!(
        "  process CPU over the run: user {:.3} s, system {:.3} s; {} minor faults ({:.2} per coroutine)",
        u1 - u0,
        s1 - s0,
        f1 - f0,
        (f1 - f0) as f64 / count as f64
    );
    println!(
        "  RSS: {:.0} MiB more, {:.2} KiB per sleeping coroutine (page tables, not in RSS: {:.0} MiB)",
        (after - before) as f64 / 1024.0,
        (after - before) as f64 / count as f64,
        status_kib("VmPTE:") as f64 / 1024.0
    );
    println!(
        "  worker's stack pool: {stats:?}; births (trick, cloned): {:?}",
        sigcoro::stack::birth_counts()
    );
    // Unwinding a million sleepers at shutdown is not what is measured here.
    std::mem::forget((handles, rt));
    std::process::exit(0);
}

fn storm(count: usize, workers: Option<usize>) {
    let mut builder = sigcoro::Runtime::builder();
    if let Some(w) = workers {
        builder = builder.workers(w);
    }
    let rt = builder.build().expect("runtime");
    let (u0, s0, _) = usage();
    let (ns, stats) = rt.block_on(move || {
        let start = Instant::now();
        let handles: Vec<_> = (0..count).map(|i| sigcoro::spawn(move || i)).collect();
        for h in handles {
            std::hint::black_box(h.join().unwrap());
        }
        let ns = start.elapsed().as_nanos() as f64 / count as f64;
        (ns, sigcoro::stack::thread_stats())
    });
    let (u1, s1, _) = usage();
    println!(
        "cold storm of {count} spawns + joins on a fresh runtime ({} workers): {ns:.1} ns per coroutine \
         (user {:.3} s, system {:.3} s)",
        rt.workers(),
        u1 - u0,
        s1 - s0
    );
    println!(
        "  spawner's stack pool: {stats:?}; births (trick, cloned): {:?}",
        sigcoro::stack::birth_counts()
    );
    rt.shutdown();
}

/// Warm storms: `rounds` storms of `count` spawns + joins on one worker after one storm of
/// warm-up, so every stack and task record is reused; prints the median ns per coroutine.
fn warm(count: usize, rounds: usize) {
    let rt = sigcoro::Runtime::builder().workers(1).build().expect("runtime");
    let storm = move || {
        let start = Instant::now();
        let handles: Vec<_> = (0..count).map(|i| sigcoro::spawn(move || i)).collect();
        for h in handles {
            std::hint::black_box(h.join().unwrap());
        }
        start.elapsed().as_nanos() as f64 / count as f64
    };
    rt.block_on(storm);
    let mut v: Vec<f64> = (0..rounds).map(|_| rt.block_on(storm)).collect();
    v.sort_by(f64::total_cmp);
    println!(
        "warm storms of {count} spawns + joins on 1 worker: median {:.1} ns per coroutine (min {:.1}, {rounds} storms)",
        v[v.len() / 2],
        v[0]
    );
}

/// The kernel's floor for the sleepers: one write to each of `count` 4 KiB pages, `stride`
/// bytes apart, in one fresh mapping (a stack slot's stride puts one page at the top of each
/// slot, as the sleepers' stacks do; 4096 puts them side by side). Prints the time, the faults
/// and the time per fault.
fn page_floor(count: usize, stride: usize) {
    let len = count * stride;
    // SAFETY: a fresh private anonymous mapping, address space only until touched.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    assert_ne!(
        p,
        libc::MAP_FAILED,
        "mapping {len} bytes: {}",
        std::io::Error::last_os_error()
    );
    let base = p as usize;
    let (u0, s0, f0) = usage();
    let start = Instant::now();
    for i in 0..count {
        // The last page of each slot, where a stack's header and first frames go.
        let page = base + i * stride + stride - 4096;
        // SAFETY: inside the mapping, which nothing else uses.
        unsafe { std::ptr::write_volatile(page as *mut u64, i as u64) };
    }
    let t = start.elapsed().as_secs_f64();
    let (u1, s1, f1) = usage();
    println!(
        "page floor: {count} pages {stride} bytes apart, one write each: {t:.3} s (user {:.3} s, system \
         {:.3} s); {} minor faults, {:.2} us per page; page tables {:.0} MiB",
        u1 - u0,
        s1 - s0,
        f1 - f0,
        t * 1e6 / count as f64,
        status_kib("VmPTE:") as f64 / 1024.0
    );
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--trick") {
        args.remove(i);
        sigcoro::stack::births_by_trick_only(true);
    }
    let count = |default| args.get(1).map_or(default, |a| a.parse().expect("COUNT"));
    match args.first().map(String::as_str) {
        Some("sleepers") => sleepers(count(1_000_000)),
        Some("warm") => warm(count(100_000), 21),
        Some("page-floor") => {
            let stride = args.get(2).map_or(sigcoro::stack::DEFAULT_STACK_SIZE + 2 * 4096, |a| {
                a.parse().expect("STRIDE")
            });
            page_floor(count(1_000_000), stride)
        }
        Some("storm") => storm(count(100_000), args.get(2).map(|w| w.parse().expect("WORKERS"))),
        _ => {
            eprintln!(
                "usage: births sleepers [COUNT] | births storm [COUNT [WORKERS]] | births warm [COUNT] \
                 | births page-floor [COUNT [STRIDE]]; the first three take --trick"
            );
            std::process::exit(2);
        }
    }
}
