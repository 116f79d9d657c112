//! The context-switch lab's timing harness and row format, shared literally by two crates:
//! `examples/switch_lab.rs` (sigcoro, glibc and the kernel) includes it as its `harness` module,
//! and the peer crate (`benches/peers/src/lab.rs`: corosensei, generator, may, tokio) includes
//! the same file with `#[path]`. Every figure in the lab is therefore calibrated, warmed up,
//! repeated, summarised and written out by this code, whoever is measured.
//!
//! Method: a workload is a closure `run(n) -> Duration` that does `n` iterations and returns
//! the time they took (so it can time just its hot loop, e.g. inside a coroutine on a worker).
//! The harness grows `n` until one repetition lasts about [`TARGET`], runs one warm-up
//! repetition at that size, then [`Config::reps`] timed ones; each repetition gives one
//! sample in ns per operation, and a row reports their median, p10/p90, min and max.
//!
//! Written for both editions (the main crate is 2024, the peer crate 2021), with no
//! dependencies beyond std and libc.

// Each crate uses a different part of this shared file.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Time one repetition should last.
pub const TARGET: Duration = Duration::from_millis(30);

/// Timed repetitions per row unless `--reps` says otherwise.
pub const DEFAULT_REPS: usize = 15;

/// The flags both crates understand: `--reps N`, `--cpu N`, `--json`.
#[derive(Clone, Debug)]
pub struct Config {
    pub reps: usize,
    /// The CPU that pinned rows run on.
    pub cpu: usize,
    pub json: bool,
}

impl Config {
    /// Parses the shared flags out of `args`, returning the ones it does not know.
    pub fn parse(args: &[String]) -> (Config, Vec<String>) {
        let mut cfg = Config {
            reps: DEFAULT_REPS,
            cpu: 0,
            json: false,
        };
        let mut rest = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--json" => cfg.json = true,
                "--reps" => {
                    cfg.reps = it
                        .next()
                        .and_then(|v| v.parse().ok())
                        .filter(|&r| r >= 3)
                        .expect("--reps takes a number, at least 3")
                }
                "--cpu" => {
                    cfg.cpu = it
                        .next()
                        .and_then(|v| v.parse().ok())
                        .expect("--cpu takes a CPU number")
                }
                _ => rest.push(a.clone()),
            }
        }
        (cfg, rest)
    }
}

/// Summary of the repetitions, in ns per operation.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub median: f64,
    pub p10: f64,
    pub p90: f64,
    pub min: f64,
    pub max: f64,
    pub reps: usize,
    /// Iterations per repetition.
    pub iters: u64,
}

impl Stats {
    /// Median, p10/p90 (nearest rank), min and max of `samples`.
    pub fn from_samples(mut samples: Vec<f64>, iters: u64) -> Stats {
        assert!(!samples.is_empty(), "no samples");
        samples.sort_by(f64::total_cmp);
        let n = samples.len();
        let median = if n % 2 == 1 {
            samples[n / 2]
        } else {
            (samples[n / 2 - 1] + samples[n / 2]) / 2.0
        };
        let rank = |p: f64| samples[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
        Stats {
            median,
            p10: rank(0.10),
            p90: rank(0.90),
            min: samples[0],
            max: samples[n - 1],
            reps: n,
            iters,
        }
    }

    /// (p90 - p10) / median: how much the typical runs disagree, one outlier at each end
    /// left out.
    pub fn spread(&self) -> f64 {
        (self.p90 - self.p10) / self.median
    }
}

/// Calibrates `n` so that `run(n)` lasts about [`TARGET`], runs one warm-up repetition at that
/// size, then `reps` timed ones. `ops` is how many reported operations one iteration holds
/// (2 when an iteration is a round trip and the figure is one way).
pub fn bench(reps: usize, ops: f64, mut run: impl FnMut(u64) -> Duration) -> Stats {
    let mut n = 1u64;
    loop {
        let d = run(n);
        if d >= TARGET / 4 {
            n = ((n as f64 * TARGET.as_secs_f64() / d.as_secs_f64()) as u64).max(1);
            break;
        }
        n = n.saturating_mul(if d < Duration::from_micros(100) { 16 } else { 4 });
    }
    run(n); // warm-up at the final size
    let samples = (0..reps).map(|_| run(n).as_nanos() as f64 / (n as f64 * ops)).collect();
    Stats::from_samples(samples, n)
}

/// Times `n` round trips of `resume`, feeding each result into the next call: the driver of
/// every "switch" row, whoever implements the switch.
#[inline(never)]
pub fn round_trips(n: u64, mut resume: impl FnMut(u64) -> u64) -> Duration {
    let mut v = 0u64;
    let t = Instant::now();
    for _ in 0..n {
        v = resume(black_box(v));
    }
    let d = t.elapsed();
    black_box(v);
    d
}

/// Times `f`.
pub fn timed(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

/// The CPUs this process may run on (its affinity mask when it started).
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity fills the local.
    let set = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) != 0 {
            return vec![0];
        }
        set
    };
    (0..libc::CPU_SETSIZE as usize)
        .filter(|&c| {
            // SAFETY: CPU_ISSET reads the set we own, at an index within its size.
            unsafe { libc::CPU_ISSET(c, &set) }
        })
        .collect()
}

/// Restricts the calling thread to `cpus`. Threads and processes it creates afterwards inherit
/// the mask.
pub fn set_affinity(cpus: &[usize]) -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes within it; the pointer
    // given to sched_setaffinity is to a live local of the size passed.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Pins the calling thread to one CPU, panicking with the reason if it cannot.
pub fn pin(cpu: usize) {
    if let Err(e) = set_affinity(&[cpu]) {
        panic!("cannot pin to CPU {cpu}: {e} (pick another with --cpu)");
    }
}

/// Busy and total jiffies per CPU (index = CPU number), from /proc/stat.
pub fn cpu_jiffies() -> Vec<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let mut out = Vec::new();
    for line in stat.lines() {
        let mut f = line.split_whitespace();
        let Some(cpu) = f
            .next()
            .and_then(|c| c.strip_prefix("cpu"))
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        // user nice system idle iowait irq softirq steal: idle and iowait are not busy.
        let v: Vec<u64> = f.take(8).filter_map(|x| x.parse().ok()).collect();
        if v.len() < 5 {
            continue;
        }
        if out.len() <= cpu {
            out.resize(cpu + 1, (0, 0));
        }
        let total: u64 = v.iter().sum();
        out[cpu] = (total - v[3] - v[4], total);
    }
    out
}

/// How busy the CPUs other than `mine` were between two [`cpu_jiffies`] samples, in percent
/// of their time (`None` if there are no others or no time passed).
pub fn others_busy_pct(before: &[(u64, u64)], after: &[(u64, u64)], mine: usize) -> Option<f64> {
    let (mut busy, mut total) = (0u64, 0u64);
    for (cpu, (a, b)) in before.iter().zip(after).enumerate() {
        if cpu != mine {
            busy += b.0.saturating_sub(a.0);
            total += b.1.saturating_sub(a.1);
        }
    }
    (total > 0).then(|| 100.0 * busy as f64 / total as f64)
}

/// The note for a row pinned to one CPU while the others were busy: on machines whose CPUs
/// share a physical core (SMT siblings, or vCPUs on one host core) that slows the pinned row
/// even though nothing else runs on its CPU.
pub fn neighbour_note(busy_pct: f64) -> Option<String> {
    (busy_pct > 20.0).then(|| {
        format!(
            "the other CPUs were {busy_pct:.0}% busy meanwhile: where CPUs share a core (SMT, or vCPUs on one \
             host core) that slows a pinned row too"
        )
    })
}

/// One line of the lab's output.
#[derive(Clone, Debug, Default)]
pub struct Row {
    /// Which kind of handoff: `switch`, `switch+mask`, `scheduler`, `threads`, `processes`,
    /// `create`, `reference`.
    pub group: String,
    /// Who does it: `sigcoro`, `glibc`, `kernel`, `corosensei`, `generator`, `may`, `tokio`.
    pub who: String,
    /// The row's short name.
    pub name: String,
    /// How it is measured, in a sentence.
    pub how: String,
    /// Where it ran: `cpu0`, `cpu0+cpu1` (one thread on each), `none` (the kernel chooses).
    pub pin: String,
    /// Anything that makes the figure less trustworthy (empty if nothing).
    pub note: String,
    /// `switch_lab` or `peers`.
    pub source: String,
    pub stats: Stats,
}

fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

impl Row {
    /// The row as one JSON object on one line (ns per operation).
    pub fn to_json(&self) -> String {
        let mut o = String::from("{");
        let strs = [
            ("group", &self.group),
            ("who", &self.who),
            ("name", &self.name),
            ("how", &self.how),
            ("pin", &self.pin),
            ("note", &self.note),
            ("source", &self.source),
        ];
        for (k, v) in strs {
            json_str(&mut o, k);
            o.push(':');
            json_str(&mut o, v);
            o.push(',');
        }
        let s = &self.stats;
        let _ = write!(
            o,
            "\"median_ns\":{:.3},\"p10_ns\":{:.3},\"p90_ns\":{:.3},\"min_ns\":{:.3},\"max_ns\":{:.3},\
             \"reps\":{},\"iters\":{}}}",
            s.median, s.p10, s.p90, s.min, s.max, s.reps, s.iters
        );
        o
    }

    /// Reads a line written by [`Row::to_json`]; `None` if it is not one.
    pub fn from_json(line: &str) -> Option<Row> {
        let mut p = Parser {
            s: line.trim().as_bytes(),
            i: 0,
        };
        p.eat(b'{')?;
        let mut row = Row::default();
        let mut have_median = false;
        loop {
            let key = p.string()?;
            p.eat(b':')?;
            if p.peek()? == b'"' {
                let v = p.string()?;
                match key.as_str() {
                    "group" => row.group = v,
                    "who" => row.who = v,
                    "name" => row.name = v,
                    "how" => row.how = v,
                    "pin" => row.pin = v,
                    "note" => row.note = v,
                    "source" => row.source = v,
                    _ => {}
                }
            } else {
                let v = p.number()?;
                let s = &mut row.stats;
                match key.as_str() {
                    "median_ns" => {
                        s.median = v;
                        have_median = true
                    }
                    "p10_ns" => s.p10 = v,
                    "p90_ns" => s.p90 = v,
                    "min_ns" => s.min = v,
                    "max_ns" => s.max = v,
                    "reps" => s.reps = v as usize,
                    "iters" => s.iters = v as u64,
                    _ => {}
                }
            }
            match p.peek()? {
                b',' => p.i += 1,
                b'}' => break,
                _ => return None,
            }
        }
        (have_median && !row.name.is_empty()).then_some(row)
    }
}

/// Just enough JSON to read back one flat object of strings and numbers.
struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&mut self) -> Option<u8> {
        while self.s.get(self.i)?.is_ascii_whitespace() {
            self.i += 1;
        }
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        (self.peek()? == b).then(|| self.i += 1)
    }

    fn string(&mut self) -> Option<String> {
        self.eat(b'"')?;
        let mut out = Vec::new();
        loop {
            let b = *self.s.get(self.i)?;
            self.i += 1;
            match b {
                b'"' => return String::from_utf8(out).ok(),
                b'\\' => {
                    let e = *self.s.get(self.i)?;
                    self.i += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let hex = std::str::from_utf8(self.s.get(self.i..self.i + 4)?).ok()?;
                            self.i += 4;
                            let c = char::from_u32(u32::from_str_radix(hex, 16).ok()?)?;
                            out.extend_from_slice(c.to_string().as_bytes());
                        }
                        other => out.push(other),
                    }
                }
                b => out.push(b),
            }
        }
    }

    fn number(&mut self) -> Option<f64> {
        self.peek()?;
        let start = self.i;
        while self
            .s
            .get(self.i)
            .is_some_and(|b| b.is_ascii_digit() || b"+-.eE".contains(b))
        {
            self.i += 1;
        }
        std::str::from_utf8(&self.s[start..self.i]).ok()?.parse().ok()
    }
}

/// Notes that follow from a row's own figures: a figure too small for the loop to resolve, or
/// repetitions that disagree.
pub fn automatic_note(s: &Stats) -> Option<String> {
    if s.median < 1.0 {
        return Some("under 1 ns: a few cycles; the loop around it is part of the figure".into());
    }
    if s.median < 5.0 {
        return Some(
            "a few cycles: code alignment, the CPU's clock speed and the loop around it move this \
             figure; compare it with rows of the same run, not across machines"
                .into(),
        );
    }
    if s.spread() > 0.25 {
        return Some(format!(
            "noisy: p10 to p90 of the runs span {:.0}% of the median (other load, or the VM)",
            100.0 * s.spread()
        ));
    }
    None
}

/// Appends `extra` to a row's note, separated by "; ".
pub fn add_note(row: &mut Row, extra: &str) {
    if !row.note.is_empty() {
        row.note.push_str("; ");
    }
    row.note.push_str(extra);
}
