//! The context-switch lab: every way this machine passes control from one flow of execution
//! to another, measured in one run with one method, from a few cycles to tens of microseconds.
//!
//! ```sh
//! cargo run --release --example switch_lab                 # sigcoro, glibc and the kernel (~10 s)
//! cargo run --release --example switch_lab -- --peers      # also corosensei, generator, may, tokio (~16 s)
//! cargo run --release --example switch_lab -- --json       # also print the JSON lines
//! ```
//!
//! Flags: `--peers`, `--json`, `--reps N` (timed runs per row, default 15), `--cpu N` (the CPU
//! pinned rows run on, default 0), `--only GROUP,...` (switch, switch+mask, scheduler,
//! threads, processes, create, reference).
//!
//! It prints the machine, a table (median, fastest and slowest run, ratio to the fastest row,
//! where it ran), what each row measures and notes where a figure deserves care; it writes
//! `target/switch_lab.jsonl` (one JSON object per row) and `target/switch_lab.svg` (a bar
//! chart on a log scale). With `--peers` it runs `benches/peers` (a separate crate, so sigcoro
//! never depends on its peers) as `sigcoro-peers lab --json`, which measures its rows with this
//! lab's own harness file (`examples/switch_lab/harness.rs`, included there by `#[path]`), and
//! merges them in. See `docs/switch_lab.md` for a reference run and what the rows mean.

#[path = "switch_lab/glibc.rs"]
mod glibc;
#[path = "switch_lab/harness.rs"]
mod harness;
#[path = "switch_lab/kernel.rs"]
mod kernel;
#[path = "switch_lab/machine.rs"]
mod machine;
#[path = "switch_lab/report.rs"]
mod report;
#[path = "switch_lab/sigcoro_flows.rs"]
mod sigcoro_flows;

use harness::{Config, Row, Stats};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// The groups, in the order the table shows them.
const GROUPS: [&str; 7] = [
    "switch",
    "switch+mask",
    "scheduler",
    "threads",
    "processes",
    "create",
    "reference",
];

/// Collects rows, printing progress on stderr.
struct Lab {
    cfg: Config,
    only: Vec<String>,
    vm: bool,
    rows: Vec<Row>,
}

impl Lab {
    fn wants(&self, group: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|g| g == group)
    }

    /// Measures one row with `measure` and records it.
    fn row(&mut self, group: &str, who: &str, name: &str, pin: &str, how: &str, measure: impl FnOnce(usize) -> Stats) {
        if !self.wants(group) {
            return;
        }
        eprint!("  {name:<48}");
        let before = harness::cpu_jiffies();
        let stats = measure(self.cfg.reps);
        let others = harness::others_busy_pct(&before, &harness::cpu_jiffies(), self.cfg.cpu);
        eprintln!("{:>12}", report::fmt_ns(stats.median));
        let mut row = Row {
            group: group.into(),
            who: who.into(),
            name: name.into(),
            how: how.into(),
            pin: pin.into(),
            note: String::new(),
            source: "switch_lab".into(),
            stats,
        };
        if let Some(n) = harness::automatic_note(&stats) {
            harness::add_note(&mut row, &n);
        }
        // Only rows that keep to one CPU leave the others to someone else.
        if pin == format!("cpu{}", self.cfg.cpu)
            && let Some(n) = others.and_then(harness::neighbour_note)
        {
            harness::add_note(&mut row, &n);
        }
        if self.vm && pin.contains('+') {
            harness::add_note(
                &mut row,
                "crosses vCPUs: waking a halted vCPU is an interrupt through the hypervisor, so this is a VM \
                 figure, and the host's scheduling of vCPUs moves it",
            );
        }
        if pin == "none" {
            harness::add_note(
                &mut row,
                "unpinned: the kernel places the two sides; together on one CPU this matches the same-core row, \
                 apart it pays the cross-CPU wake-up, so runs and machines differ",
            );
        }
        self.rows.push(row);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(kernel::PIPE_CHILD_ARG) {
        kernel::pipe_child();
    }
    let (cfg, rest) = Config::parse(&args);
    let (mut peers, mut only) = (false, Vec::new());
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--peers" => peers = true,
            "--only" => {
                only = it
                    .next()
                    .map(|g| g.split(',').map(String::from).collect())
                    .unwrap_or_default()
            }
            "-h" | "--help" => {
                println!("usage: switch_lab [--peers] [--json] [--reps N] [--cpu N] [--only GROUP,...]");
                println!("groups: {}", GROUPS.join(", "));
                return;
            }
            other => {
                eprintln!("switch_lab: unknown argument {other:?} (try --help)");
                std::process::exit(2);
            }
        }
    }
    let started = Instant::now();
    let m = machine::Machine::probe();
    let cpu = cfg.cpu;
    let other = m.allowed.iter().copied().find(|&c| c != cpu);
    if !m.allowed.contains(&cpu) {
        eprintln!(
            "switch_lab: CPU {cpu} is not available to this process (it may use {:?})",
            m.allowed
        );
        std::process::exit(2);
    }

    println!("sigcoro context-switch lab");
    m.describe().iter().for_each(|l| println!("{l}"));
    println!(
        "method:  per row, grow the iteration count until a run lasts ~{} ms, one warm-up run, then {} timed \
         runs;\n         median, fastest and slowest run, in ns per operation; pinned rows run on CPU {cpu}",
        harness::TARGET.as_millis(),
        cfg.reps
    );
    if cfg!(debug_assertions) {
        println!("warning: a debug build; run with --release for meaningful figures");
    }
    if m.busy_pct > 10.0 {
        println!(
            "warning: the CPUs were {:.0}% busy before the run: other processes compete for them, so figures \
             will be slower and noisier than on an idle machine",
            m.busy_pct
        );
    }
    println!();

    // Build the peers before measuring anything, so their compilation does not disturb the rows.
    let peers_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers");
    let peers_ok = peers && build_peers(&peers_dir);

    let mut lab = Lab {
        cfg: cfg.clone(),
        only,
        vm: m.is_vm(),
        rows: Vec::new(),
    };
    let here = format!("cpu{cpu}");
    let pair = other.map(|o| format!("cpu{cpu}+cpu{o}"));
    eprintln!("measuring (median per row as it completes):");

    harness::pin(cpu);
    lab.row(
        "switch",
        "sigcoro",
        "sigcoro switch",
        &here,
        "Coroutine::resume + Yielder::suspend round trip of a u64, / 2",
        sigcoro_flows::switch,
    );
    lab.row(
        "switch",
        "glibc",
        "glibc _setjmp/_longjmp",
        &here,
        "_setjmp + _longjmp each way between two stacks, from an assembly loop, / 2",
        |r| harness::bench(r, 2.0, glibc::sjlj_round_trips),
    );
    lab.row(
        "switch",
        "glibc",
        "glibc swapcontext",
        &here,
        "swapcontext there and back (makecontext'd stack), / 2; includes one rt_sigprocmask each way",
        |r| harness::bench(r, 2.0, glibc::swapcontext_round_trips),
    );

    lab.row(
        "switch+mask",
        "sigcoro",
        "sigcoro switch + mask swap (1 syscall)",
        &here,
        "the sigcoro switch plus one pthread_sigmask(SIG_SETMASK, new, old) per one-way switch",
        sigcoro_flows::switch_mask_swap,
    );
    lab.row("switch+mask", "sigcoro", "sigcoro switch + sigsetjmp-style mask", &here, "the sigcoro switch plus the leaving side's mask saved and the arriving side's restored (2 pthread_sigmask calls per one-way switch, as sigsetjmp(..,1) + siglongjmp)", sigcoro_flows::switch_sigsetjmp_style);
    lab.row(
        "switch+mask",
        "glibc",
        "glibc sigsetjmp(..,1)/siglongjmp",
        &here,
        "sigsetjmp(env, 1) + siglongjmp each way between two stacks, from an assembly loop, / 2",
        |r| harness::bench(r, 2.0, glibc::sigsetjmp_round_trips),
    );

    // Workers inherit the CPU mask of the thread that builds the runtime.
    if lab.wants("scheduler") || lab.wants("create") {
        let rt = sigcoro::Runtime::builder()
            .workers(1)
            .build()
            .expect("a 1-worker runtime");
        let worker = format!("cpu{cpu}");
        lab.row(
            "scheduler",
            "sigcoro",
            "sigcoro yield_now handoff",
            &worker,
            "two coroutines on a 1-worker Runtime each calling yield_now: time / handoffs",
            |r| sigcoro_flows::yield_handoff(&rt, r),
        );
        lab.row(
            "scheduler",
            "sigcoro",
            "sigcoro channel hop",
            &worker,
            "a u64 ping-ponged between two coroutines on a 1-worker Runtime over sync::channel::unbounded: time / hops",
            |r| sigcoro_flows::channel_hop(&rt, r),
        );
        lab.row(
            "create",
            "sigcoro",
            "sigcoro spawn + join",
            &worker,
            "spawn an empty coroutine and join it, one at a time, from a coroutine on a 1-worker Runtime",
            |r| sigcoro_flows::spawn_join(&rt, r),
        );
        rt.shutdown();
    }

    lab.row("threads", "kernel", "futex threads, same core", &here, "two OS threads handing a turn back and forth with FUTEX_WAKE/FUTEX_WAIT, both pinned to one CPU: time / handoffs", |r| kernel::futex_threads(r, &[cpu], &[cpu]));
    if let (Some(o), Some(pair)) = (other, &pair) {
        lab.row(
            "threads",
            "kernel",
            "futex threads, two cores",
            pair,
            "the same, one thread pinned to each of two CPUs",
            |r| kernel::futex_threads(r, &[cpu], &[o]),
        );
    }
    lab.row(
        "threads",
        "kernel",
        "futex threads, unpinned",
        "none",
        "the same, both threads free to run on any CPU",
        |r| kernel::futex_threads(r, &[], &[]),
    );
    harness::pin(cpu);

    lab.row("processes", "kernel", "pipe processes, same core", &here, "one byte ping-ponged over two pipes between this process and a child (this binary), both on one CPU: time / handoffs", |r| kernel::pipe_processes(r, &[cpu]));
    lab.row(
        "processes",
        "kernel",
        "pipe processes, unpinned",
        "none",
        "the same, both processes free to run on any CPU",
        |r| kernel::pipe_processes(r, &[]),
    );
    harness::pin(cpu);

    lab.row("create", "sigcoro", "sigcoro new + resume + drop (pooled)", &here, "Coroutine::new, one resume that runs it to the end, drop: the stack comes from and goes back to the thread's pool", sigcoro_flows::create_pooled);
    lab.row("create", "sigcoro", "sigcoro signal-stack boot (cold)", &here, "a stack's first context by the signal-stack trick (guard, sigaltstack, sigaction, signal to self, sigsuspend, trampoline, restore): __bench::reboot_one_for_bench", sigcoro_flows::create_cold);

    lab.row(
        "reference",
        "kernel",
        "one syscall (getppid)",
        &here,
        "the cheapest round trip into the kernel and back: the unit of the mask and kernel rows",
        |r| harness::bench(r, 1.0, kernel::syscall_loop),
    );
    lab.row(
        "reference",
        "kernel",
        "clock read (Instant::now)",
        &here,
        "one Instant::now() (clock_gettime through the vDSO); the harness reads it twice per run",
        |r| harness::bench(r, 1.0, clock_loop),
    );

    let mut rows = lab.rows;
    if peers_ok {
        rows.extend(run_peers(&peers_dir, &cfg, &lab.only));
    } else if peers {
        println!("note: the peers could not be built; their rows are missing (see the cargo output above)\n");
    }
    rows.sort_by_key(|r| GROUPS.iter().position(|g| *g == r.group).unwrap_or(GROUPS.len()));
    if rows.is_empty() {
        println!("no rows measured (check --only)");
        return;
    }

    print!("{}", report::table(&rows));
    let end_load = machine::load();
    println!(
        "\nload average at the end: {end_load} (the lab itself keeps about one CPU busy); whole run {:.0} s",
        started.elapsed().as_secs_f64()
    );

    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let _ = std::fs::create_dir_all(&target);
    let jsonl: String = rows.iter().map(|r| r.to_json() + "\n").collect();
    if cfg.json {
        print!("\n{jsonl}");
    }
    let title = vec![
        format!("{} | {}", m.cpu, m.kernel),
        format!(
            "{} logical CPUs{} | pinned rows on CPU {cpu} | {} runs per row | CPUs {:.0}% busy before the run, \
             load average {} at start",
            m.online,
            if m.is_vm() { ", virtual machine" } else { "" },
            cfg.reps,
            m.busy_pct,
            m.load
        ),
    ];
    for (name, body) in [
        ("switch_lab.jsonl", jsonl),
        ("switch_lab.svg", report::svg(&rows, &title)),
    ] {
        let path = target.join(name);
        match std::fs::write(&path, body) {
            Ok(()) => println!("wrote {}", path.display()),
            Err(e) => println!("could not write {}: {e}", path.display()),
        }
    }
}

fn clock_loop(n: u64) -> std::time::Duration {
    harness::timed(|| {
        for _ in 0..n {
            std::hint::black_box(Instant::now());
        }
    })
}

/// `cargo build --release` of the peer crate, its output shown as it goes.
fn build_peers(dir: &Path) -> bool {
    eprintln!("building the peers (benches/peers, a separate crate)...");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--quiet", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status();
    matches!(status, Ok(s) if s.success())
}

/// Runs `sigcoro-peers lab --json` with this run's settings and reads its rows.
fn run_peers(dir: &Path, cfg: &Config, only: &[String]) -> Vec<Row> {
    eprintln!("measuring the peers (cargo run --release --manifest-path benches/peers/Cargo.toml -- lab --json):");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["run", "--release", "--quiet", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .args([
            "--",
            "lab",
            "--json",
            "--reps",
            &cfg.reps.to_string(),
            "--cpu",
            &cfg.cpu.to_string(),
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(Stdio::inherit());
    if !only.is_empty() {
        cmd.args(["--only", &only.join(",")]);
    }
    match cmd.output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(Row::from_json)
            .collect(),
        Ok(out) => {
            println!("note: the peers run failed ({}); their rows are missing\n", out.status);
            Vec::new()
        }
        Err(e) => {
            println!("note: could not run the peers: {e}; their rows are missing\n");
            Vec::new()
        }
    }
}
