//! What the figures were measured on: CPU, cores, kernel, virtualisation, clock, load.

use std::process::Command;

/// The machine, as far as an unprivileged process can tell.
pub struct Machine {
    pub cpu: String,
    /// Online logical CPUs, and the ones this process may use.
    pub online: usize,
    pub allowed: Vec<usize>,
    /// Threads per core, from /proc/cpuinfo's `siblings` and `cpu cores` (1 without SMT).
    pub smt: usize,
    pub kernel: String,
    /// The `hypervisor` CPU flag: the CPU says it runs under a hypervisor.
    pub hypervisor_flag: bool,
    /// `systemd-detect-virt --vm` and `--container`, when the tool exists.
    pub virt_vm: Option<String>,
    pub virt_container: Option<String>,
    pub clocksource: String,
    /// The cost of one `Instant::now()`, in ns (the median of a few batches).
    pub clock_read_ns: f64,
    /// The CPU-vulnerability mitigations in force (they set the price of a syscall).
    pub mitigations: String,
    pub load: String,
    /// The share of all CPUs' time spent busy over half a second before the run, in percent.
    pub busy_pct: f64,
}

impl Machine {
    pub fn probe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |name: &str| {
            cpuinfo.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == name).then(|| v.trim().to_string())
            })
        };
        let cpu = field("model name").unwrap_or_else(|| "unknown CPU".into());
        let hypervisor_flag = field("flags").is_some_and(|f| f.split_whitespace().any(|x| x == "hypervisor"));
        let smt = match (field("siblings"), field("cpu cores")) {
            (Some(s), Some(c)) => match (s.parse::<usize>(), c.parse::<usize>()) {
                (Ok(s), Ok(c)) if c > 0 => (s / c).max(1),
                _ => 1,
            },
            _ => 1,
        };
        // SAFETY: sysconf only reads a system value.
        let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize;
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| format!("Linux {}", s.trim()))
            .unwrap_or_else(|_| "unknown kernel".into());
        let detect = |flag: &str| {
            let out = Command::new("systemd-detect-virt").arg(flag).output().ok()?;
            let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
            (!s.is_empty()).then_some(s)
        };
        let clocksource = std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        Machine {
            cpu,
            online,
            allowed: crate::harness::allowed_cpus(),
            smt,
            kernel,
            hypervisor_flag,
            virt_vm: detect("--vm"),
            virt_container: detect("--container"),
            clocksource,
            clock_read_ns: clock_read_ns(),
            mitigations: mitigations(),
            load: load(),
            busy_pct: busy_pct(std::time::Duration::from_millis(500)),
        }
    }

    /// Whether the figures come from a virtual machine.
    pub fn is_vm(&self) -> bool {
        self.hypervisor_flag || self.virt_vm.as_deref().is_some_and(|v| v != "none")
    }

    /// A few lines for the top of the report.
    pub fn describe(&self) -> Vec<String> {
        let virt = match (&self.virt_vm, self.hypervisor_flag) {
            (Some(v), _) if v != "none" => format!("yes: a {v} guest (systemd-detect-virt --vm)"),
            (_, true) => "yes: the CPU reports the `hypervisor` flag".into(),
            (Some(_), false) => "no (systemd-detect-virt --vm says none)".into(),
            (None, false) => "no `hypervisor` flag (systemd-detect-virt not found)".into(),
        };
        let container = match self.virt_container.as_deref() {
            Some("none") | None => String::new(),
            Some(c) => format!(", inside a {c} container"),
        };
        vec![
            format!("cpu:     {}", self.cpu),
            format!(
                "cores:   {} logical CPUs online ({} thread{} per core), this process may use {:?}",
                self.online,
                self.smt,
                if self.smt == 1 { "" } else { "s" },
                self.allowed
            ),
            format!("kernel:  {}", self.kernel),
            format!("vm:      {virt}{container}"),
            format!(
                "clock:   {} clocksource, Instant::now() costs {:.0} ns",
                self.clocksource, self.clock_read_ns
            ),
            format!(
                "mitig.:  {} (CPU-vulnerability mitigations: they set the price of a syscall)",
                self.mitigations
            ),
            format!(
                "load:    CPUs {:.0}% busy over the 0.5 s before the run; load average {} (1, 5, 15 min)",
                self.busy_pct, self.load
            ),
        ]
    }
}

/// The entries of /sys/devices/system/cpu/vulnerabilities that are not "Not affected", each
/// with the first clause of its state.
fn mitigations() -> String {
    let Ok(dir) = std::fs::read_dir("/sys/devices/system/cpu/vulnerabilities") else {
        return "unknown".into();
    };
    let mut found: Vec<String> = dir
        .flatten()
        .filter_map(|e| {
            let state = std::fs::read_to_string(e.path()).ok()?;
            let state = state.trim().split(';').next()?.trim().to_string();
            (state != "Not affected").then(|| format!("{} ({state})", e.file_name().to_string_lossy()))
        })
        .collect();
    found.sort();
    if found.is_empty() {
        "none".into()
    } else {
        found.join(", ")
    }
}

/// The 1, 5 and 15 minute load averages.
pub fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// How busy all CPUs are over `window`, in percent (this process sleeps meanwhile).
pub fn busy_pct(window: std::time::Duration) -> f64 {
    let sum = |v: Vec<(u64, u64)>| v.iter().fold((0, 0), |(b, t), &(cb, ct)| (b + cb, t + ct));
    let (b0, t0) = sum(crate::harness::cpu_jiffies());
    std::thread::sleep(window);
    let (b1, t1) = sum(crate::harness::cpu_jiffies());
    if t1 > t0 {
        100.0 * (b1 - b0) as f64 / (t1 - t0) as f64
    } else {
        0.0
    }
}

fn clock_read_ns() -> f64 {
    let mut per: Vec<f64> = (0..5)
        .map(|_| {
            let n = 100_000u32;
            let t = std::time::Instant::now();
            for _ in 0..n {
                std::hint::black_box(std::time::Instant::now());
            }
            t.elapsed().as_nanos() as f64 / f64::from(n)
        })
        .collect();
    per.sort_by(f64::total_cmp);
    per[2]
}
