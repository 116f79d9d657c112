//! `rss`: resident memory per idle suspended coroutine.
//!
//! Each measurement runs in a child process (this binary re-executed as `rss-child PEER COUNT`)
//! so peers do not pollute each other. The child warms its peer up, reads VmRSS, creates COUNT
//! coroutines that each suspend once (may: park) and stay suspended, reads VmRSS again, prints
//! the difference per coroutine (handles included) and exits without tearing them down.
//!
//! Every peer guards each stack with `mprotect`, which costs 2 kernel mappings per coroutine,
//! and `vm.max_map_count` (65530 by default) then caps them near 32.7k: COUNT is lowered to what
//! fits, and the output says so.

use crate::harness::Stats;
use crate::may_rt;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

pub const PEERS: [&str; 3] = ["corosensei", "may", "generator"];
pub const WANTED: u64 = 100_000;

/// Runs `reps` children per peer and reports bytes per coroutine.
pub fn run(reps: usize, out: &mut dyn FnMut(&str, &str, Stats, &str)) {
    let exe = std::env::current_exe().expect("current_exe");
    for peer in PEERS {
        let (mut samples, mut count, mut pte) = (vec![], 0, 0.0);
        for _ in 0..reps {
            let o = Command::new(&exe)
                .args(["rss-child", peer, &WANTED.to_string()])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&o.stdout);
            let Some(line) = text.lines().find(|l| l.starts_with("RSS ")) else {
                eprintln!(
                    "rss child for {peer} failed ({}): {}",
                    o.status,
                    String::from_utf8_lossy(&o.stderr)
                );
                break;
            };
            let f: Vec<f64> = line
                .split_whitespace()
                .skip(1)
                .map(|x| x.parse().unwrap())
                .collect();
            samples.push(f[0]);
            count = f[1] as u64;
            pte = f[2];
        }
        if !samples.is_empty() {
            let note = format!(
                "{count} coroutines/child (map-count cap), +{:.0} B page tables each",
                pte
            );
            out(peer, "rss", Stats::from_samples(samples, count), &note);
        }
    }
}

/// A field of /proc/self/status, in bytes.
fn status_bytes(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

/// How many more guarded stacks fit under `vm.max_map_count` (2 mappings each, some margin).
fn map_count_room() -> u64 {
    let max: u64 = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let now = std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count() as u64;
    max.saturating_sub(now + 1000) / 2
}

/// The child side: creates up to `wanted` idle coroutines of `peer` and prints
/// `RSS <bytes per coroutine> <count> <page-table bytes per coroutine>`.
pub fn child(peer: &str, wanted: u64) -> ! {
    match peer {
        "corosensei" => drop(corosensei_idle(1)),
        "generator" => drop(generator_idle(1)),
        "may" => may_rt::in_coroutine(|| ()), // starts the scheduler and its pool of 1000
        _ => panic!("unknown rss peer {peer}"),
    }
    let count = wanted.min(map_count_room());
    let (rss0, pte0) = (status_bytes("VmRSS:"), status_bytes("VmPTE:"));
    let keep: Box<dyn std::any::Any> = match peer {
        "corosensei" => Box::new(corosensei_idle(count)),
        "generator" => Box::new(generator_idle(count)),
        _ => Box::new(may_idle(count)),
    };
    let (rss1, pte1) = (status_bytes("VmRSS:"), status_bytes("VmPTE:"));
    let per = |a: u64, b: u64| (b as f64 - a as f64) / count as f64;
    println!("RSS {} {} {}", per(rss0, rss1), count, per(pte0, pte1));
    std::mem::forget(keep);
    std::process::exit(0)
}

type Coro = corosensei::Coroutine<(), (), ()>;

fn corosensei_idle(count: u64) -> Vec<Coro> {
    (0..count)
        .map(|_| {
            let mut co = Coro::new(|y, ()| y.suspend(()));
            co.resume(());
            co
        })
        .collect()
}

fn generator_idle(count: u64) -> Vec<generator::Generator<'static, (), u64>> {
    (0..count)
        .map(|_| {
            let mut g = generator::Gn::<()>::new_scoped(|mut s| {
                s.yield_(1u64);
                0u64
            });
            g.resume();
            g
        })
        .collect()
}

/// Spawns `count` coroutines that park, and waits until all of them have.
fn may_idle(count: u64) -> Vec<may::coroutine::JoinHandle<()>> {
    static PARKED: AtomicU64 = AtomicU64::new(0);
    let hs = (0..count)
        .map(|_| {
            may_rt::spawn(|| {
                PARKED.fetch_add(1, Ordering::Release);
                may::coroutine::park();
            })
        })
        .collect();
    while PARKED.load(Ordering::Acquire) < count {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    hs
}
