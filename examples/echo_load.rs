//! A bounded echo load client, loopback only: `--conns` connections, each a coroutine that
//! sends a `--size`-byte message and waits for its echo before sending the next (closed loop),
//! for at most `--secs` seconds or `--count` messages in all. Prints throughput and latency
//! percentiles, and the CPU time the client used (its threads, `echo-load-*`) apart from the
//! rest of the process (the in-process server, when there is one).
//!
//! ```sh
//! cargo run --release --example echo_load                      # against an in-process sigcoro server
//! cargo run --release --example echo_server &                  # or a separate one
//! cargo run --release --example echo_load -- --addr 127.0.0.1:7878 --conns 100 --size 64 --secs 5
//! ```
//!
//! Refuses any address outside 127.0.0.0/8 and ::1. `benches/peers` reuses this file (its
//! `echo` workload drives tokio's, a thread-per-connection and sigcoro's servers with it), so
//! it sticks to what both editions accept.

#![allow(dead_code)]

use sigcoro::Runtime;
use sigcoro::net::{TcpListener, TcpStream};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What one load run does.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Concurrent connections (one coroutine each).
    pub conns: usize,
    /// Bytes per message.
    pub size: usize,
    /// Longest run.
    pub duration: Duration,
    /// Most messages in all.
    pub max_msgs: u64,
    /// Worker threads of the client's runtime.
    pub workers: usize,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            conns: 100,
            size: 64,
            duration: Duration::from_secs(5),
            max_msgs: 50_000_000,
            workers: 1,
        }
    }
}

/// What a load run measured.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// Messages echoed.
    pub msgs: u64,
    /// From the moment every connection was up to the last echo.
    pub elapsed: Duration,
    /// Round-trip times in ns, sorted.
    pub latencies: Vec<u32>,
    /// CPU time (user + system) the client's threads used over `elapsed`.
    pub client_cpu: Duration,
    /// CPU time the whole process used over `elapsed`: minus `client_cpu`, the server's when
    /// it runs in this process too.
    pub process_cpu: Duration,
}

impl LoadReport {
    /// Echoed messages per second.
    pub fn msgs_per_sec(&self) -> f64 {
        self.msgs as f64 / self.elapsed.as_secs_f64()
    }

    /// The `p`-quantile (0..=1) of the round-trip time.
    pub fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies.len() - 1) as f64 * p).round() as usize;
        Duration::from_nanos(u64::from(self.latencies[i]))
    }

    /// CPU time of the rest of the process (an in-process server) over the run.
    pub fn server_cpu(&self) -> Duration {
        self.process_cpu.saturating_sub(self.client_cpu)
    }

    /// `cpu` per echoed message, in microseconds.
    pub fn us_per_msg(&self, cpu: Duration) -> f64 {
        cpu.as_secs_f64() * 1e6 / self.msgs.max(1) as f64
    }

    /// The client's CPU, and the in-process server's: seconds and microseconds per message.
    pub fn cpu_line(&self) -> String {
        format!(
            "client CPU {:.2} s ({:.1} us/msg), server CPU {:.2} s ({:.1} us/msg)",
            self.client_cpu.as_secs_f64(),
            self.us_per_msg(self.client_cpu),
            self.server_cpu().as_secs_f64(),
            self.us_per_msg(self.server_cpu())
        )
    }

    /// One line: throughput and latency percentiles.
    pub fn line(&self) -> String {
        format!(
            "{:>10.0} msgs/s  {:>9} msgs in {:.2?}  rtt p50 {:>7.1?} p90 {:>7.1?} p99 {:>7.1?} p99.9 {:>7.1?} max {:>7.1?}",
            self.msgs_per_sec(),
            self.msgs,
            self.elapsed,
            self.percentile(0.50),
            self.percentile(0.90),
            self.percentile(0.99),
            self.percentile(0.999),
            self.percentile(1.0),
        )
    }
}

/// Refuses anything but loopback addresses: load tests stay on this machine.
pub fn check_loopback(addr: &SocketAddr) -> io::Result<()> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refusing to send load to {addr}: only loopback addresses (127.0.0.0/8, ::1) are allowed"),
        ))
    }
}

/// The name prefix of the client runtime's threads (`echo-load-0`, `echo-load-timer`).
const CLIENT_THREADS: &str = "echo-load";

/// CPU time (user + system) of this process (`None`, threads that ended included), or of its
/// live threads whose name starts with `prefix`; from `/proc`, in clock ticks (10 ms).
pub fn cpu_time(prefix: Option<&str>) -> Duration {
    // utime and stime are the 14th and 15th fields; the 2nd, the name, may hold spaces.
    let ticks = |stat: &str| -> u64 {
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        rest.split_whitespace()
            .skip(11)
            .take(2)
            .filter_map(|f| f.parse::<u64>().ok())
            .sum()
    };
    let total = match prefix {
        None => ticks(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default()),
        Some(prefix) => std::fs::read_dir("/proc/self/task")
            .into_iter()
            .flatten()
            .flatten()
            .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with(prefix)))
            .map(|t| ticks(&std::fs::read_to_string(t.path().join("stat")).unwrap_or_default()))
            .sum(),
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_nanos(total * 1_000_000_000 / hz)
}

/// Drives the echo server at `addr` as `cfg` says, from a sigcoro runtime of its own.
pub fn run_load(addr: SocketAddr, cfg: &LoadConfig) -> io::Result<LoadReport> {
    check_loopback(&addr)?;
    let rt = Runtime::builder().workers(cfg.workers).name(CLIENT_THREADS).build()?;
    let cfg = cfg.clone();
    rt.block_on(move || {
        let budget = Arc::new(AtomicU64::new(cfg.max_msgs));
        let barrier = Arc::new(sigcoro::sync::Barrier::new(cfg.conns + 1));
        let conns: Vec<_> = (0..cfg.conns)
            .map(|c| {
                let (budget, barrier, cfg) = (budget.clone(), barrier.clone(), cfg.clone());
                sigcoro::spawn(move || -> io::Result<Vec<u32>> {
                    let connected = TcpStream::connect(addr).and_then(|s| s.set_nodelay(true).map(|_| s));
                    barrier.wait();
                    let mut s = connected?;
                    let deadline = Instant::now() + cfg.duration;
                    let msg: Vec<u8> = (0..cfg.size).map(|i| (i + c) as u8).collect();
                    let mut back = vec![0u8; cfg.size];
                    let mut lat = Vec::with_capacity(1 << 14);
                    loop {
                        if budget
                            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1))
                            .is_err()
                        {
                            break;
                        }
                        let t = Instant::now();
                        if t >= deadline {
                            break;
                        }
                        s.write_all(&msg)?;
                        s.read_exact(&mut back)?;
                        lat.push(t.elapsed().as_nanos().min(u128::from(u32::MAX)) as u32);
                        if back != msg {
                            return Err(io::Error::other("the echo differs from the message"));
                        }
                    }
                    Ok(lat)
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let cpu_start = (cpu_time(Some(CLIENT_THREADS)), cpu_time(None));
        let mut latencies = Vec::new();
        let mut first_err = None;
        for h in conns {
            match h.join() {
                Ok(Ok(l)) => latencies.extend(l),
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Err(e) => {
                    first_err.get_or_insert(io::Error::other(e.to_string()));
                }
            }
        }
        let elapsed = start.elapsed();
        let (client_cpu, process_cpu) = (
            cpu_time(Some(CLIENT_THREADS)).saturating_sub(cpu_start.0),
            cpu_time(None).saturating_sub(cpu_start.1),
        );
        if let Some(e) = first_err {
            return Err(e);
        }
        latencies.sort_unstable();
        Ok(LoadReport {
            msgs: latencies.len() as u64,
            elapsed,
            latencies,
            client_cpu,
            process_cpu,
        })
    })
}

/// One echo connection: read what comes, write it back, until end of stream.
pub fn echo_connection(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// Starts sigcoro's echo server (a coroutine per connection) on `listener`; it runs until the
/// returned runtime is dropped. `accepted` counts connections.
pub fn serve_sigcoro(listener: TcpListener, workers: usize, accepted: Arc<AtomicU64>) -> io::Result<Runtime> {
    let rt = Runtime::builder().workers(workers).name("echo-server").build()?;
    rt.spawn(move || {
        for conn in listener.incoming() {
            match conn {
                Ok(s) => {
                    accepted.fetch_add(1, Ordering::Relaxed);
                    sigcoro::spawn(move || echo_connection(s));
                }
                Err(e) => eprintln!("echo server: accept: {e}"),
            }
        }
    });
    Ok(rt)
}

fn usage() -> ! {
    eprintln!(
        "usage: echo_load [--addr 127.0.0.1:PORT] [--conns N] [--size BYTES] [--secs S] [--count MSGS] [--workers W]\n\
         without --addr, an in-process sigcoro echo server (2 workers) is started"
    );
    std::process::exit(2)
}

fn main() {
    let mut cfg = LoadConfig::default();
    let mut addr: Option<SocketAddr> = None;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().unwrap_or_else(|| usage());
        match a.as_str() {
            "--addr" => addr = Some(val().parse().unwrap_or_else(|_| usage())),
            "--conns" => cfg.conns = val().parse().unwrap_or_else(|_| usage()),
            "--size" => cfg.size = val().parse().unwrap_or_else(|_| usage()),
            "--secs" => cfg.duration = Duration::from_secs_f64(val().parse().unwrap_or_else(|_| usage())),
            "--count" => cfg.max_msgs = val().parse().unwrap_or_else(|_| usage()),
            "--workers" => cfg.workers = val().parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    if cfg.conns == 0 || cfg.size == 0 || cfg.workers == 0 {
        usage();
    }
    let mut _server = None;
    let addr = match addr {
        Some(a) => a,
        None => {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let a = listener.local_addr().expect("local_addr");
            _server = Some(serve_sigcoro(listener, 2, Arc::default()).expect("server"));
            println!("in-process sigcoro echo server on {a}");
            a
        }
    };
    println!(
        "{} connections, {}-byte messages, at most {:?} or {} messages, client workers {}",
        cfg.conns, cfg.size, cfg.duration, cfg.max_msgs, cfg.workers
    );
    let outcome = run_load(addr, &cfg);
    let in_process = _server.is_some();
    if let Some(server) = _server {
        server.shutdown();
    }
    match outcome {
        Ok(r) if in_process => println!("{}\n{}", r.line(), r.cpu_line()),
        Ok(r) => println!(
            "{}\nclient CPU {:.2} s ({:.1} us/msg); the server's is its own process's",
            r.line(),
            r.client_cpu.as_secs_f64(),
            r.us_per_msg(r.client_cpu)
        ),
        Err(e) => {
            eprintln!("echo_load: {e}");
            std::process::exit(1);
        }
    }
}
