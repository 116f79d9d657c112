//! sigcoro-peers: peer runtimes (corosensei, generator, may, tokio, glibc) on the workloads
//! sigcoro is benchmarked on, so they can be compared in the same run on the same machine.
//!
//! Usage: `sigcoro-peers [--json] [--reps R] <switch|create|rss|handoff|spawn|cold|chan|echo|echo-rss|all>...`
//! (and `sigcoro-peers http-serve PEER PORT [WORKERS] [SECS]`: one HTTP server for `http.sh`)
//!
//! Prints one table row per (peer, workload) and, with `--json`, a JSON line after each row.
//! Timed workloads run with the main thread pinned to CPU 0; may's one worker pins itself
//! to CPU 0 too, and tokio's current-thread runtime runs on the main thread.

mod cold;
mod create;
mod echo;
/// glibc's switches: the lab's file (a superset, with the sigsetjmp variant too).
#[allow(dead_code)]
#[path = "../../../examples/switch_lab/glibc.rs"]
mod glibc;
mod harness;
mod http;
mod lab;
mod may_rt;
mod rss;
mod sched;
mod switch;

use harness::Stats;

const WORKLOADS: [&str; 9] = [
    "switch", "create", "rss", "handoff", "spawn", "cold", "chan", "echo", "echo-rss",
];
const USAGE: &str =
    "usage: sigcoro-peers [--json] [--reps R] <switch|create|rss|handoff|spawn|cold|chan|echo|echo-rss|all>...";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("rss-child") {
        rss::child(&args[1], args[2].parse().expect("count"));
    }
    if args.first().map(String::as_str) == Some("cold-child") {
        cold::child(&args[1]);
    }
    if args.first().map(String::as_str) == Some("echo-rss-child") {
        echo::rss_child(&args[1], args[2].parse().expect("count"));
    }
    if args.first().map(String::as_str) == Some("http-serve") {
        http::serve(&args[1..]); // one HTTP server for benches/peers/http.sh
    }
    if args.first().map(String::as_str) == Some("lab") {
        lab::main(&args[1..]); // the context-switch lab's peer rows (examples/switch_lab.rs)
    }
    let (mut json, mut reps, mut picked) = (false, 15usize, Vec::new());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--json" => json = true,
            "--reps" => reps = it.next().and_then(|r| r.parse().ok()).filter(|&r| r > 0).expect(USAGE),
            "all" => picked.extend(WORKLOADS),
            w if WORKLOADS.contains(&w) => picked.push(*WORKLOADS.iter().find(|&&x| x == w).unwrap()),
            _ => {
                eprintln!("{USAGE}");
                std::process::exit(2);
            }
        }
    }
    if picked.is_empty() {
        eprintln!("{USAGE}");
        std::process::exit(2);
    }

    may_rt::init();
    let pinned = match harness::pin_to_cpu0() {
        Ok(()) => "cpu0",
        Err(e) => {
            eprintln!("warning: could not pin to CPU 0: {e}");
            "no"
        }
    };
    println!(
        "{:<9} {:<17} {:>10} {:>10} {:>10} {:>4} {:>10} {:>4}  note",
        "workload", "peer", "median", "min", "max", "reps", "iters", "pin"
    );
    let mut out = |peer: &str, workload: &str, s: Stats, note: &str| {
        let unit = if workload == "rss" { "B" } else { "ns" };
        let pin = if workload == "rss" || workload == "cold" { "-" } else { pinned };
        println!(
            "{workload:<9} {peer:<17} {:>8.1}{unit:<2} {:>8.1}{unit:<2} {:>8.1}{unit:<2} {:>4} {:>10} {pin:>4}  {note}",
            s.median, s.min, s.max, s.reps, s.iters
        );
        if json {
            let k = if workload == "rss" { "bytes" } else { "ns" };
            println!(
                "{{\"peer\":\"{peer}\",\"workload\":\"{workload}\",\"median_{k}\":{:.2},\"min_{k}\":{:.2},\"max_{k}\":{:.2},\"reps\":{},\"iters\":{}}}",
                s.median, s.min, s.max, s.reps, s.iters
            );
        }
    };
    for w in picked {
        match w {
            "switch" => switch::run(reps, &mut out),
            "create" => create::run(reps, &mut out),
            "rss" => rss::run(3, &mut out),
            "handoff" => sched::handoff(reps, &mut out),
            "spawn" => sched::spawn(reps.min(5), &mut out),
            "cold" => cold::run(reps.min(9), &mut out),
            "chan" => sched::chan(reps, &mut out),
            "echo" => echo::run(reps),
            "echo-rss" => echo::rss(),
            _ => unreachable!(),
        }
    }
}
