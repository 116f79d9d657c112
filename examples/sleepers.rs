//! A million sleeping coroutines: memory per sleeper, an idle runtime's CPU use, and how late a
//! sleeper wakes when the runtime is otherwise idle.
//!
//! `cargo run --release --example sleepers [-- COUNT]` (default 1,000,000; needs ~5 GB of RAM).

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

/// User + system CPU time of the whole process, in seconds.
fn process_cpu() -> f64 {
    // SAFETY: rusage is plain data, all-zero is valid, and getrusage fills the struct we own.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn main() {
    let count: usize = std::env::args().nth(1).map_or(1_000_000, |a| a.parse().expect("COUNT"));
    let rt = sigcoro::Runtime::builder().build().expect("runtime");
    let before = status_kib("VmRSS:");
    let t = Instant::now();
    let asleep = Arc::new(AtomicUsize::new(0));
    let a = asleep.clone();
    let handles = rt.block_on(move || {
        let far = Instant::now() + Duration::from_secs(3600);
        (0..count)
            .map(|_| {
                let a = a.clone();
                sigcoro::spawn(move || {
                    a.fetch_add(1, Ordering::Relaxed);
                    drop(a);
                    sigcoro::sleep_until(far)
                })
            })
            .collect::<Vec<_>>()
    });
    // Wait until every coroutine has started and sleeps.
    while asleep.load(Ordering::Relaxed) < count {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    let spawned = t.elapsed();
    let after = status_kib("VmRSS:");
    println!(
        "{count} coroutines spawned and asleep in {:.1} s on {} workers",
        spawned.as_secs_f64(),
        rt.workers()
    );
    println!(
        "RSS: {:.0} MiB more, {:.2} KiB per sleeping coroutine (page tables, not in RSS: {:.0} MiB)",
        (after - before) as f64 / 1024.0,
        (after - before) as f64 / count as f64,
        status_kib("VmPTE:") as f64 / 1024.0
    );

    let cpu0 = process_cpu();
    std::thread::sleep(Duration::from_secs(2));
    let idle = (process_cpu() - cpu0) / 2.0;
    println!("idle runtime with {count} sleepers: {:.2}% of a core", idle * 100.0);

    let mut late = rt.block_on(|| {
        (0..20)
            .map(|_| {
                let t = Instant::now();
                sigcoro::sleep(Duration::from_millis(50));
                (t.elapsed() - Duration::from_millis(50)).as_micros() as u64
            })
            .collect::<Vec<_>>()
    });
    late.sort_unstable();
    println!(
        "a 50 ms sleeper on that runtime wakes late by: median {:.2} ms, max {:.2} ms",
        late[late.len() / 2] as f64 / 1000.0,
        late[late.len() - 1] as f64 / 1000.0
    );
    drop(handles);
    let t = Instant::now();
    let report = rt.shutdown();
    println!(
        "shutdown cancelled and unwound {} coroutines in {:.1} s",
        report.alive,
        t.elapsed().as_secs_f64()
    );
}
