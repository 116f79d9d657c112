//! `lab`: the peers' rows of the context-switch lab (`cargo run --release --example
//! switch_lab -- --peers` in the main crate runs this as `sigcoro-peers lab --json`).
//!
//! Timing, repetitions, summaries and the JSON line format come from the lab's own harness
//! file, included below by path, so the peers and sigcoro are measured by the same code. The
//! workloads mirror `examples/switch_lab/sigcoro_flows.rs` one for one:
//!
//! - switch: corosensei and generator, driven by the harness's `round_trips` like sigcoro's.
//! - scheduler: two coroutines/tasks yielding on one worker (may with one worker, tokio's
//!   current-thread runtime), and a u64 ping-ponged over two unbounded channels.
//! - create: a coroutine/task created, run to its end and dropped or joined, one at a time.
//!
//! Flags: `--json` (JSON lines only, on stdout), `--reps N`, `--cpu N`, `--only GROUP,...`.

#[path = "../../../examples/switch_lab/harness.rs"]
pub(crate) mod harness;

use crate::may_rt;
use corosensei::stack::DefaultStack;
use corosensei::{Coroutine, CoroutineResult};
use generator::Gn;
use harness::{Config, Row, Stats};
use std::hint::black_box;
use std::time::{Duration, Instant};

struct Lab {
    cfg: Config,
    only: Vec<String>,
    pin: String,
    rows: Vec<Row>,
}

impl Lab {
    fn row(&mut self, group: &str, who: &str, name: &str, how: &str, measure: impl FnOnce(usize) -> Stats) {
        if !self.only.is_empty() && !self.only.iter().any(|g| g == group) {
            return;
        }
        eprint!("  {name:<48}");
        let before = harness::cpu_jiffies();
        let stats = measure(self.cfg.reps);
        let others = harness::others_busy_pct(&before, &harness::cpu_jiffies(), self.cfg.cpu);
        eprintln!("{:>10.1} ns", stats.median);
        let mut row = Row {
            group: group.into(),
            who: who.into(),
            name: name.into(),
            how: how.into(),
            pin: self.pin.clone(),
            note: String::new(),
            source: "peers".into(),
            stats,
        };
        if let Some(n) = harness::automatic_note(&stats) {
            harness::add_note(&mut row, &n);
        }
        if let Some(n) = others.and_then(harness::neighbour_note) {
            harness::add_note(&mut row, &n);
        }
        if self.cfg.json {
            println!("{}", row.to_json());
        }
        self.rows.push(row);
    }
}

/// Runs the lab's peer rows and exits.
pub fn main(args: &[String]) -> ! {
    let (cfg, rest) = Config::parse(args);
    let mut only = Vec::new();
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--only" => {
                only = it
                    .next()
                    .map(|g| g.split(',').map(String::from).collect())
                    .unwrap_or_default()
            }
            other => {
                eprintln!("sigcoro-peers lab: unknown argument {other:?}");
                eprintln!("usage: sigcoro-peers lab [--json] [--reps N] [--cpu N] [--only GROUP,...]");
                std::process::exit(2);
            }
        }
    }
    // Pin first: may's worker pins itself to the first CPU of the mask when it starts.
    harness::pin(cfg.cpu);
    may_rt::init();
    let mut lab = Lab {
        pin: format!("cpu{}", cfg.cpu),
        cfg,
        only,
        rows: Vec::new(),
    };

    lab.row(
        "switch",
        "corosensei",
        "corosensei switch",
        "corosensei Coroutine::resume + Yielder::suspend round trip of a u64, / 2",
        |r| {
            let mut co: Coroutine<u64, u64, ()> = Coroutine::new(|y, mut v| loop {
                v = y.suspend(v + 1);
            });
            harness::bench(r, 2.0, |n| {
                harness::round_trips(n, |v| match co.resume(v) {
                    CoroutineResult::Yield(v) => v,
                    CoroutineResult::Return(()) => unreachable!(),
                })
            })
        },
    );
    lab.row(
        "switch",
        "generator",
        "generator switch",
        "generator Gn::send + Scope::yield_ round trip of a u64, / 2",
        |r| {
            let mut g = Gn::<u64>::new_scoped(|mut s| {
                let mut v = 0u64;
                loop {
                    v = s.yield_(v + 1).unwrap_or(0);
                }
            });
            harness::bench(r, 2.0, |n| harness::round_trips(n, |v| g.send(v)))
        },
    );

    lab.row(
        "scheduler",
        "may",
        "may yield_now handoff",
        "two coroutines on may with 1 worker each calling yield_now: time / handoffs",
        |r| {
            harness::bench(r, 2.0, |n| {
                may_rt::in_coroutine(move || {
                    let t = Instant::now();
                    let yielder = move || (0..n).for_each(|_| may::coroutine::yield_now());
                    let (a, b) = (may_rt::spawn(yielder), may_rt::spawn(yielder));
                    a.join().unwrap();
                    b.join().unwrap();
                    t.elapsed()
                })
            })
        },
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    lab.row(
        "scheduler",
        "tokio",
        "tokio yield_now handoff",
        "two tasks on a current-thread runtime each awaiting task::yield_now: time / handoffs",
        |r| harness::bench(r, 2.0, |n| crate::sched::tokio_yield_handoffs(&rt, n)),
    );
    lab.row(
        "scheduler",
        "may",
        "may channel hop",
        "a u64 ping-ponged between two coroutines on may with 1 worker over may::sync::mpsc::channel: time / hops",
        |r| harness::bench(r, 2.0, may_channel),
    );
    lab.row(
        "scheduler",
        "tokio",
        "tokio channel hop",
        "a u64 ping-ponged between two tasks on a current-thread runtime over mpsc::unbounded_channel: time / hops",
        |r| harness::bench(r, 2.0, |n| tokio_channel(&rt, n)),
    );

    lab.row(
        "create",
        "may",
        "may spawn + join",
        "spawn an empty coroutine and join it, one at a time, from a coroutine on may with 1 worker (pooled stacks)",
        |r| {
            harness::bench(r, 1.0, |n| {
                may_rt::timed(move || {
                    for i in 0..n {
                        black_box(may_rt::spawn(move || black_box(i)).join().unwrap());
                    }
                })
            })
        },
    );
    lab.row(
        "create",
        "tokio",
        "tokio spawn + join (stackless)",
        "spawn an empty task and await it, one at a time, from a task on a current-thread runtime (no stack at all)",
        |r| {
            harness::bench(r, 1.0, |n| {
                rt.block_on(async move {
                    tokio::spawn(async move {
                        let t = Instant::now();
                        for i in 0..n {
                            black_box(tokio::spawn(async move { black_box(i) }).await.unwrap());
                        }
                        t.elapsed()
                    })
                    .await
                    .unwrap()
                })
            })
        },
    );
    lab.row(
        "create",
        "corosensei",
        "corosensei new + resume + drop (reused stack)",
        "Coroutine::with_stack on one DefaultStack, one resume to the end, into_stack: the closest to a pool",
        |r| {
            let mut stack = Some(DefaultStack::default());
            harness::bench(r, 1.0, |n| {
                harness::timed(|| {
                    for i in 0..n {
                        let st = stack.take().unwrap();
                        let mut co: Coroutine<u64, (), u64, _> = Coroutine::with_stack(st, |_, v| v + 1);
                        black_box(co.resume(black_box(i)));
                        stack = Some(co.into_stack());
                    }
                })
            })
        },
    );
    lab.row(
        "create",
        "corosensei",
        "corosensei new + resume + drop (fresh stack)",
        "Coroutine::new (a fresh 1 MiB DefaultStack: mmap + guard page), one resume to the end, drop (munmap)",
        |r| {
            harness::bench(r, 1.0, |n| {
                harness::timed(|| {
                    for i in 0..n {
                        let mut co: Coroutine<u64, (), u64> = Coroutine::new(|_, v| v + 1);
                        black_box(co.resume(black_box(i)));
                    }
                })
            })
        },
    );
    lab.row(
        "create",
        "generator",
        "generator new + resume + drop (fresh stack)",
        "Gn::new_scoped (a fresh mmap'd stack), one resume to the end, drop",
        |r| {
            harness::bench(r, 1.0, |n| {
                harness::timed(|| {
                    for i in 0..n {
                        let mut g = Gn::<()>::new_scoped(move |_| black_box(i) + 1);
                        black_box(g.resume());
                    }
                })
            })
        },
    );

    if !lab.cfg.json {
        for r in &lab.rows {
            println!(
                "{:<11} {:<46} {:>10.1} ns  ({:.1} .. {:.1})  {}",
                r.group, r.name, r.stats.median, r.stats.min, r.stats.max, r.note
            );
        }
    }
    std::process::exit(0)
}

/// `n` hops each way between a pinging coroutine and an echoing one; the ping side times them.
fn may_channel(n: u64) -> Duration {
    may_rt::in_coroutine(move || {
        use may::sync::mpsc::channel;
        let ((to_pong, pong_rx), (to_ping, ping_rx)) = (channel::<u64>(), channel::<u64>());
        let pong = may_rt::spawn(move || {
            while let Ok(v) = pong_rx.recv() {
                to_ping.send(v + 1).unwrap();
            }
        });
        let t = Instant::now();
        let mut v = 0u64;
        for _ in 0..n {
            to_pong.send(v).unwrap();
            v = ping_rx.recv().unwrap();
        }
        let d = t.elapsed();
        drop(to_pong);
        pong.join().unwrap();
        assert_eq!(v, n, "every hop happened");
        d
    })
}

fn tokio_channel(rt: &tokio::runtime::Runtime, n: u64) -> Duration {
    rt.block_on(async move {
        use tokio::sync::mpsc::unbounded_channel;
        let ((to_pong, mut pong_rx), (to_ping, mut ping_rx)) = (unbounded_channel::<u64>(), unbounded_channel::<u64>());
        let pong = tokio::spawn(async move {
            while let Some(v) = pong_rx.recv().await {
                to_ping.send(v + 1).unwrap();
            }
        });
        let ping = tokio::spawn(async move {
            let t = Instant::now();
            let mut v = 0u64;
            for _ in 0..n {
                to_pong.send(v).unwrap();
                v = ping_rx.recv().await.unwrap();
            }
            let d = t.elapsed();
            assert_eq!(v, n, "every hop happened");
            d
        });
        let d = ping.await.unwrap();
        pong.await.unwrap();
        d
    })
}
