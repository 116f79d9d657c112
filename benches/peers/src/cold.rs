//! `cold`: one storm of 100,000 empty tasks spawned and then joined, on a fresh runtime in a
//! fresh process (this binary re-executed as `cold-child PEER`), so nothing is warm: no task
//! records, no heap, no stacks. Each repetition runs every peer once, in turn, and the table
//! shows ns per task.
//!
//! Peers: sigcoro with its default workers against tokio's multi-thread runtime with as many
//! (one per core), and sigcoro on one worker against tokio's current-thread runtime. The
//! children are not pinned: a runtime with a worker per core needs the cores.

use crate::harness::Stats;
use std::hint::black_box;
use std::process::Command;
use std::time::Instant;

const TASKS: u64 = 100_000;
const PEERS: [(&str, &str); 4] = [
    (
        "sigcoro",
        "default workers (one per core), spawned and joined from a coroutine",
    ),
    ("tokio-mt", "multi-thread runtime, one worker per core, from a task"),
    ("sigcoro-1w", "one worker"),
    ("tokio", "current-thread runtime"),
];

pub fn run(reps: usize, out: &mut dyn FnMut(&str, &str, Stats, &str)) {
    let exe = std::env::current_exe().expect("current_exe");
    let mut samples = vec![Vec::new(); PEERS.len()];
    for _ in 0..reps {
        for (i, (peer, _)) in PEERS.iter().enumerate() {
            let o = Command::new(&exe)
                .args(["cold-child", peer])
                .output()
                .expect("running a cold child");
            let text = String::from_utf8_lossy(&o.stdout);
            assert!(o.status.success(), "cold child {peer} failed: {o:?}");
            samples[i].push(text.trim().parse::<f64>().expect("ns per task"));
        }
    }
    for ((peer, note), s) in PEERS.iter().zip(samples) {
        out(peer, "cold", Stats::from_samples(s, TASKS), note);
    }
}

/// One storm on a fresh runtime; prints ns per task and exits.
pub fn child(peer: &str) -> ! {
    unpin();
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let ns = match peer {
        "sigcoro" | "sigcoro-1w" => {
            let workers = if peer == "sigcoro" { cores } else { 1 };
            let rt = sigcoro::Runtime::builder().workers(workers).build().expect("runtime");
            rt.block_on(|| {
                let t = Instant::now();
                let hs: Vec<_> = (0..TASKS).map(|i| sigcoro::spawn(move || black_box(i))).collect();
                for h in hs {
                    black_box(h.join().unwrap());
                }
                t.elapsed()
            })
        }
        "tokio" | "tokio-mt" => {
            let rt = if peer == "tokio" {
                tokio::runtime::Builder::new_current_thread().enable_all().build()
            } else {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(cores)
                    .enable_all()
                    .build()
            }
            .expect("tokio runtime");
            rt.block_on(async {
                tokio::spawn(async {
                    let t = Instant::now();
                    let hs: Vec<_> = (0..TASKS).map(|i| tokio::spawn(async move { black_box(i) })).collect();
                    for h in hs {
                        black_box(h.await.unwrap());
                    }
                    t.elapsed()
                })
                .await
                .expect("the storm task")
            })
        }
        _ => panic!("unknown cold peer {peer}"),
    };
    println!("{:.1}", ns.as_nanos() as f64 / TASKS as f64);
    std::process::exit(0);
}

/// Lets the child run on every CPU (the parent pinned itself, and the mask is inherited).
fn unpin() {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; the pointer is to a live local.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for cpu in 0..libc::CPU_SETSIZE as usize {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set);
    }
}
