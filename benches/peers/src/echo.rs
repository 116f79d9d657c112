//! `echo`: one load client driving three echo servers in turn, all on loopback in this
//! process: tokio's (multi-thread runtime, 2 workers, a task per connection), std's (a thread
//! per connection), and sigcoro's (2 workers, a coroutine per connection). The client is
//! `examples/echo_load.rs` (included below): 100 connections, each a sigcoro coroutine sending a
//! 64-byte message and waiting for its echo, for 3 s. Servers take turns, repeated, and the
//! median run is reported. Threads are unpinned for this workload (both cores in use).
//!
//! Client and server share this process and the machine's cores, so each run also reports the
//! CPU time of the client's threads (`echo-load-*`, read from `/proc/self/task`) apart from the
//! rest of the process (the server's threads, and the main thread, which only waits), in
//! seconds and microseconds per message: a server that costs more CPU per message leaves less
//! to the client, and that shows in the throughput of every server.
//!
//! `echo-rss`: resident memory per idle connection with 10,000 connections held. Each server
//! runs in a child process (this binary as `echo-rss-child PEER N`) that reports its RSS growth
//! once it has accepted N connections and every handler waits in `read`; this process holds the
//! client ends (plain std sockets, so the child's RSS is the server's alone).

#[path = "../../../examples/echo_load.rs"]
mod load;

use load::{LoadConfig, LoadReport};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CONNS: usize = 100;
const SIZE: usize = 64;
const SECS: u64 = 3;
const SERVER_WORKERS: usize = 2;
const CLIENT_WORKERS: usize = 1;
const PEERS: [&str; 3] = ["tokio", "std-threads", "sigcoro"];
pub const RSS_CONNS: u64 = 10_000;

/// A loopback listener with a deep backlog (the same for every server).
fn listener() -> std::net::TcpListener {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    // SAFETY: re-listening on our own socket with a larger backlog (capped by somaxconn).
    unsafe { libc::listen(l.as_raw_fd(), 4096) };
    l
}

/// A running server; dropping it stops what can be stopped (std's accept thread is left
/// blocked, harmlessly, until the process ends).
enum Server {
    Tokio(tokio::runtime::Runtime),
    Std,
    Sigcoro(sigcoro::Runtime),
}

fn start(peer: &str, l: std::net::TcpListener, accepted: Arc<AtomicU64>) -> Server {
    match peer {
        "tokio" => Server::Tokio(tokio_server(l, accepted)),
        "std-threads" => {
            std_server(l, accepted);
            Server::Std
        }
        "sigcoro" => {
            let l = sigcoro::net::TcpListener::from_std(l).expect("sigcoro listener");
            Server::Sigcoro(
                load::serve_sigcoro(l, SERVER_WORKERS, accepted).expect("sigcoro server"),
            )
        }
        _ => panic!("unknown echo peer {peer}"),
    }
}

fn tokio_server(l: std::net::TcpListener, accepted: Arc<AtomicU64>) -> tokio::runtime::Runtime {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    l.set_nonblocking(true).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(SERVER_WORKERS)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.spawn(async move {
        let l = tokio::net::TcpListener::from_std(l).expect("tokio listener");
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            accepted.fetch_add(1, Ordering::Relaxed);
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                loop {
                    let n = match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    rt
}

fn std_server(l: std::net::TcpListener, accepted: Arc<AtomicU64>) {
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            accepted.fetch_add(1, Ordering::Relaxed);
            let _ = s.set_nodelay(true);
            let spawned = std::thread::Builder::new().spawn(move || {
                let mut buf = [0u8; 1024];
                loop {
                    let n = match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
            if let Err(e) = spawned {
                eprintln!("std server: cannot start a thread: {e}");
            }
        }
    });
}

/// Lets this thread (and the threads it starts) run on every CPU.
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

/// The throughput workload: prints one line per server (median of `reps` runs).
pub fn run(reps: usize) {
    unpin();
    let reps = reps.clamp(1, 3);
    let cfg = LoadConfig {
        conns: CONNS,
        size: SIZE,
        duration: Duration::from_secs(SECS),
        max_msgs: 100_000_000,
        workers: CLIENT_WORKERS,
    };
    println!(
        "echo: {CONNS} connections x {SIZE}-byte messages, closed loop, {SECS} s per run, {reps} runs per server \
         (interleaved), client: sigcoro with {CLIENT_WORKERS} worker, servers: {SERVER_WORKERS} workers/threads, \
         both in this process, unpinned"
    );
    println!("machine: {}; load average before: {}", machine(), loadavg());
    let mut results: Vec<Vec<LoadReport>> = vec![Vec::new(); PEERS.len()];
    for _ in 0..reps {
        for (i, peer) in PEERS.iter().enumerate() {
            let l = listener();
            let addr: SocketAddr = l.local_addr().unwrap();
            let server = start(peer, l, Arc::default());
            match load::run_load(addr, &cfg) {
                Ok(r) => results[i].push(r),
                Err(e) => eprintln!("echo {peer}: {e}"),
            }
            match server {
                Server::Tokio(rt) => rt.shutdown_timeout(Duration::from_secs(1)),
                Server::Sigcoro(rt) => drop(rt.shutdown()),
                Server::Std => {}
            }
        }
    }
    for (i, peer) in PEERS.iter().enumerate() {
        let mut runs = std::mem::take(&mut results[i]);
        if runs.is_empty() {
            continue;
        }
        runs.sort_by(|a, b| a.msgs_per_sec().total_cmp(&b.msgs_per_sec()));
        let all: Vec<String> = runs
            .iter()
            .map(|r| format!("{:.0}", r.msgs_per_sec()))
            .collect();
        let median = &runs[runs.len() / 2];
        println!(
            "echo      {peer:<12} {}  (runs: {})",
            median.line(),
            all.join(", ")
        );
        println!("echo      {peer:<12} {}", median.cpu_line());
    }
    println!("load average after: {}", loadavg());
    crate::harness::pin_to_cpu0().ok();
}

/// The CPU count and model, from `/proc/cpuinfo`.
fn machine() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, m)| m.trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpus} CPUs, {model}")
}

/// The 1, 5 and 15-minute load averages.
fn loadavg() -> String {
    let l = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// Raises this process's open-file limit to its hard limit.
fn raise_nofile() -> u64 {
    // SAFETY: reading and writing our own limits through a local struct.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        lim.rlim_cur
    }
}

fn vm_rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

/// The RSS workload: one child per server, `RSS_CONNS` idle connections each.
pub fn rss() {
    unpin();
    let limit = raise_nofile();
    let n = RSS_CONNS.min(limit.saturating_sub(100));
    println!(
        "echo-rss: {n} idle connections held per server (open-file limit {limit}); RSS growth of the server process"
    );
    let exe = std::env::current_exe().unwrap();
    for peer in ["sigcoro", "tokio", "std-threads"] {
        let mut child = Command::new(&exe)
            .args(["echo-rss-child", peer, &n.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("child");
        let mut lines = BufReader::new(child.stdout.take().unwrap())
            .lines()
            .map_while(Result::ok);
        let port: u16 = match lines
            .next()
            .and_then(|l| l.strip_prefix("PORT ").map(str::to_string))
        {
            Some(p) => p.parse().unwrap(),
            None => {
                eprintln!("echo-rss {peer}: the child did not start");
                let _ = child.kill();
                continue;
            }
        };
        let start = Instant::now();
        let mut held = Vec::with_capacity(n as usize);
        for _ in 0..n {
            match std::net::TcpStream::connect(("127.0.0.1", port)) {
                Ok(s) => held.push(s),
                Err(e) => {
                    eprintln!("echo-rss {peer}: connect #{}: {e}", held.len());
                    break;
                }
            }
        }
        let connected = start.elapsed();
        let report = lines.find(|l| l.starts_with("RSS ") || l.starts_with("FAIL "));
        match report.as_deref().and_then(|l| l.strip_prefix("RSS ")) {
            Some(r) => {
                let f: Vec<f64> = r.split_whitespace().map(|x| x.parse().unwrap()).collect();
                println!(
                    "echo-rss  {peer:<12} {:>8.0} B/conn ({:.1} KiB)  {} conns, RSS {:.1} -> {:.1} MiB, connected in {:.1?}",
                    f[0],
                    f[0] / 1024.0,
                    held.len(),
                    f[1] / 1048576.0,
                    f[2] / 1048576.0,
                    connected
                );
            }
            None => eprintln!("echo-rss {peer}: {report:?}"),
        }
        drop(held);
        drop(child.stdin.take());
        let _ = child.wait();
    }
    crate::harness::pin_to_cpu0().ok();
}

/// The child side of `echo-rss`: serve, report, wait for the parent to close stdin.
pub fn rss_child(peer: &str, n: u64) -> ! {
    raise_nofile();
    let l = listener();
    let port = l.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicU64::new(0));
    let server = start(peer, l, accepted.clone());
    std::thread::sleep(Duration::from_millis(100));
    let before = vm_rss();
    println!("PORT {port}");
    std::io::stdout().flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while accepted.load(Ordering::Relaxed) < n {
        if Instant::now() > deadline {
            println!("FAIL accepted only {}", accepted.load(Ordering::Relaxed));
            std::process::exit(1);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // Let every handler reach its read and park there.
    std::thread::sleep(Duration::from_millis(500));
    let after = vm_rss();
    println!(
        "RSS {} {before} {after}",
        (after as f64 - before as f64) / n as f64
    );
    std::io::stdout().flush().unwrap();
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    std::mem::forget(server);
    std::process::exit(0)
}
