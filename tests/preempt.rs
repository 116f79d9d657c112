//! Preemption: in the default mode no signal is ever sent, safe points take the interrupt, and a
//! coroutine that never reaches one is reported as a hog; inside `preemptible` regions spinning
//! coroutines are switched out asynchronously and share a worker fairly; nothing is switched
//! inside `no_preempt`. Tests assert counts and invariants; bounded waits only guard against
//! hangs, and the controls run in child processes.

use sigcoro::Runtime;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn rt(workers: usize, slice: Duration) -> Runtime {
    Runtime::builder()
        .workers(workers)
        .preempt(Some(slice))
        .build()
        .expect("runtime")
}

/// Spins without calls or safe points until `stop`, counting blocks of work, inside an
/// asynchronous preemption region.
fn spin(stop: &AtomicBool, work: &AtomicU64) {
    // SAFETY: arithmetic and atomics on shared counters: no thread-owned state.
    unsafe { sigcoro::preemptible(|| spin_plain(stop, work)) }
}

/// Spins without calls or safe points until `stop`, counting blocks of work.
fn spin_plain(stop: &AtomicBool, work: &AtomicU64) {
    let mut x = 1u64;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..2048 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        }
        work.fetch_add(1, Ordering::Relaxed);
    }
    std::hint::black_box(x);
}

/// Sets `stop` after `limit`, so a broken preemption fails the test instead of hanging it.
fn watchdog(stop: Arc<AtomicBool>, limit: Duration) -> std::thread::JoinHandle<bool> {
    std::thread::spawn(move || {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if stop.load(Ordering::Relaxed) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        stop.store(true, Ordering::Relaxed);
        true
    })
}

#[test]
fn a_spinning_coroutine_in_a_region_is_preempted_and_others_progress() {
    let rt = rt(1, Duration::from_millis(1));
    let stop = Arc::new(AtomicBool::new(false));
    let dog = watchdog(stop.clone(), Duration::from_secs(30));
    let (s, work) = (stop.clone(), Arc::new(AtomicU64::new(0)));
    let w = work.clone();
    let spinner = rt.spawn(move || spin(&s, &w));
    // The ticker runs on the same (only) worker: it progresses only if the spinner is switched out.
    let s = stop.clone();
    let ticks = rt.spawn(move || {
        let mut n = 0;
        while n < 20 && !s.load(Ordering::Relaxed) {
            sigcoro::sleep(Duration::from_millis(1));
            n += 1;
        }
        n
    });
    let n = ticks.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    spinner.join().unwrap();
    assert!(!dog.join().unwrap(), "the watchdog had to stop the spinner");
    assert_eq!(n, 20);
    let stats = rt.preemptions();
    assert!(stats.asynchronous > 0, "{stats:?}");
    assert!(spinner_thread_work(&work) > 0);
}

fn spinner_thread_work(w: &AtomicU64) -> u64 {
    w.load(Ordering::Relaxed)
}

#[test]
fn spinning_coroutines_in_regions_share_a_worker() {
    const HOGS: usize = 4;
    let rt = rt(1, Duration::from_millis(1));
    let stop = Arc::new(AtomicBool::new(false));
    let work: Arc<Vec<AtomicU64>> = Arc::new((0..HOGS).map(|_| AtomicU64::new(0)).collect());
    let handles: Vec<_> = (0..HOGS)
        .map(|i| {
            let (s, w) = (stop.clone(), work.clone());
            rt.spawn(move || spin(&s, &w[i]))
        })
        .collect();
    // Let each get many slices.
    std::thread::sleep(Duration::from_millis(400));
    stop.store(true, Ordering::Relaxed);
    handles.into_iter().for_each(|h| h.join().unwrap());
    let counts: Vec<u64> = work.iter().map(|w| w.load(Ordering::Relaxed)).collect();
    let total: u64 = counts.iter().sum();
    for &c in &counts {
        assert!(
            c * 10 > total,
            "one hog got less than a tenth of the worker: {counts:?}, {:?}",
            rt.preemptions()
        );
    }
}

#[test]
fn no_preemption_inside_no_preempt() {
    let rt = rt(1, Duration::from_micros(100));
    let inside = Arc::new(AtomicBool::new(false));
    let seen_inside = Arc::new(AtomicUsize::new(0));
    let (i1, i2, seen) = (inside.clone(), inside.clone(), seen_inside.clone());
    let guarded = rt.spawn(move || {
        for _ in 0..20 {
            sigcoro::no_preempt(|| {
                i1.store(true, Ordering::SeqCst);
                let end = Instant::now() + Duration::from_millis(3);
                let mut x = 0u64;
                while Instant::now() < end {
                    x = x.wrapping_add(1);
                    sigcoro::checkpoint();
                }
                std::hint::black_box(x);
                i1.store(false, Ordering::SeqCst);
            });
        }
        sigcoro::current().preemptions()
    });
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    let observer = rt.spawn(move || {
        while !d.load(Ordering::SeqCst) {
            if i2.load(Ordering::SeqCst) {
                seen.fetch_add(1, Ordering::SeqCst);
            }
            sigcoro::yield_now();
        }
    });
    let stats = guarded.join().unwrap();
    done.store(true, Ordering::SeqCst);
    observer.join().unwrap();
    assert_eq!(
        seen_inside.load(Ordering::SeqCst),
        0,
        "another coroutine ran inside a no_preempt region"
    );
    // Leaving each region honoured the interrupt that arrived inside it.
    assert!(stats.at_safe_points + stats.asynchronous > 0, "{stats:?}");
}

#[test]
fn checkpoints_take_the_interrupt() {
    let rt = rt(1, Duration::from_micros(200));
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let hog = rt.spawn(move || {
        let mut cp = sigcoro::Checkpoints::every(64);
        while !s.load(Ordering::Relaxed) {
            cp.tick();
        }
        sigcoro::current().preemptions()
    });
    let s = stop.clone();
    let other = rt.spawn(move || {
        for _ in 0..50 {
            sigcoro::yield_now();
        }
        s.store(true, Ordering::Relaxed);
    });
    other.join().unwrap();
    let stats = hog.join().unwrap();
    assert!(stats.at_safe_points + stats.asynchronous > 0, "{stats:?}");
}

/// Coroutines hammer malloc, println! and a std Mutex (guarded with no_preempt, as the docs
/// require) under a 50 us slice, plus blocking reads of a pipe, a system call that a signal
/// cuts short unless `SA_RESTART` restarts it. The run must end (no hang), without a panic or an
/// EINTR.
#[test]
fn malloc_println_and_locks_survive_a_50us_slice() {
    const COROUTINES: usize = 8;
    let rt = rt(2, Duration::from_micros(50));
    let shared = Arc::new(std::sync::Mutex::new(Vec::<u64>::new()));
    let eintr = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_millis(1500);
    // One pipe per coroutine, fed a byte every millisecond by a plain thread.
    let pipes: Vec<[libc::c_int; 2]> = (0..COROUTINES)
        .map(|_| {
            let mut fds = [0; 2];
            // SAFETY: pipe fills the two descriptors.
            assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
            fds
        })
        .collect();
    let writers: Vec<libc::c_int> = pipes.iter().map(|p| p[1]).collect();
    let feeder = std::thread::spawn(move || {
        while Instant::now() < deadline + Duration::from_millis(200) {
            for &w in &writers {
                // SAFETY: writing one byte to a pipe we own.
                unsafe { libc::write(w, b"x".as_ptr().cast(), 1) };
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        writers
    });
    let handles: Vec<_> = (0..COROUTINES as u64)
        .map(|id| {
            let (shared, eintr) = (shared.clone(), eintr.clone());
            let reader = pipes[id as usize][0];
            rt.spawn(move || {
                let mut rounds = 0u64;
                while Instant::now() < deadline {
                    let v: Vec<u64> = (0..(rounds % 97 + 1)).map(|x| x * id).collect();
                    let s = format!("{v:?}");
                    if rounds.is_multiple_of(50) {
                        println!("coroutine {id} round {rounds}: {} bytes", s.len());
                    }
                    sigcoro::no_preempt(|| shared.lock().unwrap().push(v.iter().sum()));
                    if rounds.is_multiple_of(20) {
                        let mut byte = 0u8;
                        // SAFETY: a blocking read of one byte into a local.
                        if unsafe { libc::read(reader, (&raw mut byte).cast(), 1) } < 0
                            && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
                        {
                            eintr.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    let mut x = rounds;
                    for _ in 0..20_000 {
                        x = x.wrapping_mul(31).wrapping_add(7);
                    }
                    std::hint::black_box(x);
                    rounds += 1;
                }
                rounds
            })
        })
        .collect();
    let rounds: u64 = handles
        .into_iter()
        .map(|h| h.join().expect("no coroutine panicked"))
        .sum();
    for fd in feeder.join().unwrap().into_iter().chain(pipes.iter().map(|p| p[0])) {
        // SAFETY: closing descriptors we own, once.
        unsafe { libc::close(fd) };
    }
    assert!(rounds > 0);
    assert_eq!(shared.lock().unwrap().len() as u64, rounds);
    assert_eq!(eintr.load(Ordering::Relaxed), 0, "a system call failed with EINTR");
    let stats = rt.preemptions();
    assert!(stats.asynchronous + stats.at_safe_points > 0, "{stats:?}");
}

#[test]
fn a_bad_slice_is_refused() {
    for bad in [Duration::from_micros(1), Duration::from_secs(3600), Duration::MAX] {
        let err = Runtime::builder().preempt(Some(bad)).build().unwrap_err();
        assert!(err.to_string().contains("lies outside"), "{err}");
    }
    // Off means off: a spinner is never preempted (it stops itself).
    let rt = Runtime::builder().workers(1).preempt(None).build().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let h = rt.spawn(move || {
        let end = Instant::now() + Duration::from_millis(30);
        while Instant::now() < end {
            std::hint::black_box(&s);
        }
        sigcoro::current().preemptions()
    });
    assert_eq!(h.join().unwrap(), sigcoro::PreemptStats::default());
    assert_eq!(rt.preemptions().signals, 0);
}

/// A coroutine preempted once is switched out by its worker's own alarm from then on, and a
/// sleeper beside CPU-bound coroutines is woken by it too (the test bounds only the run).
#[test]
fn worker_alarms_end_slices_and_wake_sleepers_beside_spinners() {
    let rt = rt(1, Duration::from_millis(1));
    let stop = Arc::new(AtomicBool::new(false));
    let work: Arc<Vec<AtomicU64>> = Arc::new((0..2).map(|_| AtomicU64::new(0)).collect());
    let dog = watchdog(stop.clone(), Duration::from_secs(20));
    let hogs: Vec<_> = (0..2)
        .map(|i| {
            let (s, w) = (stop.clone(), work.clone());
            rt.spawn(move || spin(&s, &w[i]))
        })
        .collect();
    let sleeper = rt.spawn(|| {
        for _ in 0..50 {
            sigcoro::sleep(Duration::from_millis(1));
        }
        sigcoro::current().preemptions()
    });
    sleeper.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    hogs.into_iter().for_each(|h| h.join().unwrap());
    assert!(!dog.join().unwrap(), "the watchdog had to stop the spinners");
    let stats = rt.preemptions();
    assert!(stats.alarms > 0, "no alarm went off: {stats:?}");
    assert!(stats.asynchronous >= stats.alarms.min(50), "{stats:?}");
    assert!(work.iter().all(|w| w.load(Ordering::Relaxed) > 0));
}

/// A coroutine that was preempted and then blocks its worker on purpose through `blocking`
/// (run inline: it is alone) is not cut short by the worker's alarm: `poll` times out normally.
#[test]
fn inline_blocking_after_preemption_sees_no_eintr() {
    let rt = rt(1, Duration::from_millis(1));
    let stop = Arc::new(AtomicBool::new(false));
    let dog = watchdog(stop.clone(), Duration::from_secs(20));
    let result = rt.block_on(move || {
        let mut x = 1u64;
        let me = sigcoro::current();
        // SAFETY: arithmetic, and reads of counters through a handle made outside.
        unsafe {
            sigcoro::preemptible(|| {
                while me.preemptions().asynchronous < 3 && !stop.load(Ordering::Relaxed) {
                    for _ in 0..2048 {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    }
                }
            })
        };
        std::hint::black_box(x);
        stop.store(true, Ordering::Relaxed);
        let mut fds = [0; 2];
        // SAFETY: pipe fills the two descriptors.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let polled = sigcoro::blocking(move || {
            let mut pfd = libc::pollfd {
                fd: fds[0],
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd; nothing ever arrives, so this waits its 50 ms.
            let n = unsafe { libc::poll(&mut pfd, 1, 50) };
            (n, std::io::Error::last_os_error().raw_os_error())
        });
        for fd in fds {
            // SAFETY: closing descriptors we own, once.
            unsafe { libc::close(fd) };
        }
        polled
    });
    dog.join().unwrap();
    assert_eq!(result.0, 0, "poll did not time out normally: errno {:?}", result.1);
}

/// Coroutines of one worker spawning and joining in tight loops under the shortest slice:
/// preemption lands inside spawns and joins over and over (in a region, where sigcoro's own
/// code is vouched code), and nothing is lost or counted twice (the runtime's per-worker
/// structures are never switched away from half-updated).
#[test]
fn spawn_and_join_survive_asynchronous_preemption() {
    const COROUTINES: u64 = 4;
    const ROUNDS: u64 = 400;
    const BATCH: u64 = 1_000;
    let rt = rt(1, Duration::from_micros(20));
    let handles: Vec<_> = (0..COROUTINES)
        .map(|c| {
            // SAFETY: spawns, joins and arithmetic: no thread-owned state of the test's own.
            rt.spawn(move || unsafe {
                sigcoro::preemptible(|| {
                    let mut sum = 0u64;
                    for r in 0..ROUNDS {
                        // A batch of spawns, then (once they ran) a batch of joins that do not wait:
                        // two long stretches without a safe point, where only signals preempt.
                        let batch: Vec<_> = (0..BATCH).map(|i| sigcoro::spawn(move || r * BATCH + i + c)).collect();
                        sigcoro::yield_now();
                        sum += batch.into_iter().map(|h| h.join().unwrap()).sum::<u64>();
                    }
                    sum
                })
            })
        })
        .collect();
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let expected: u64 = (0..COROUTINES)
        .map(|c| (0..ROUNDS * BATCH).map(|i| i + c).sum::<u64>())
        .sum();
    assert_eq!(total, expected);
    let stats = rt.preemptions();
    eprintln!("{stats:?}");
    assert!(stats.signals + stats.alarms > 0, "no signal came: {stats:?}");
    let report = rt.shutdown();
    assert_eq!(report.alive, 0, "every spawn was counted once and every end once");
}

/// The default mode never signals a worker: a coroutine spinning without a safe point keeps
/// its worker, and is reported as a hog (by id, name and entry function), while a coroutine
/// with checkpoints on another runtime is preempted at them.
#[test]
fn safe_point_mode_sends_no_signal_and_reports_hogs() {
    let rt = Runtime::builder()
        .workers(1)
        .preempt(Some(Duration::from_millis(1)))
        .report_hogs(true)
        .build()
        .expect("runtime");
    let stop = Arc::new(AtomicBool::new(false));
    let dog = watchdog(stop.clone(), Duration::from_secs(20));
    let (s, work) = (stop.clone(), Arc::new(AtomicU64::new(0)));
    let w = work.clone();
    let spinner = rt
        .builder_spawn(sigcoro::Builder::new().name("spinner"), move || spin_plain(&s, &w))
        .unwrap();
    // Wait (bounded by the watchdog) until the timer thread reports it.
    while rt.hogs().is_empty() && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(1));
    }
    stop.store(true, Ordering::Relaxed);
    spinner.join().unwrap();
    assert!(!dog.join().unwrap(), "the hog was never reported");
    let hogs = rt.hogs();
    let hog = &hogs[0];
    assert_eq!(hog.name.as_deref(), Some("spinner"), "{hog:?}");
    assert!(
        hog.entry.contains("safe_point_mode_sends_no_signal_and_reports_hogs"),
        "{hog:?}"
    );
    assert!(hog.held_for >= Duration::from_millis(2), "{hog:?}");
    assert_eq!(hog.worker, 0);
    let stats = rt.preemptions();
    assert_eq!(
        (stats.signals, stats.alarms, stats.asynchronous),
        (0, 0, 0),
        "{stats:?}"
    );
    assert!(stats.hogs >= 1, "{stats:?}");
}

/// A hog that finally reaches a safe point counts the episode in its own stats.
#[test]
fn a_hog_counts_its_episode_when_it_reaches_a_safe_point() {
    let rt = rt(1, Duration::from_millis(1));
    let h = rt.spawn(|| {
        let end = Instant::now() + Duration::from_millis(20);
        let mut x = 0u64;
        while Instant::now() < end {
            x = x.wrapping_add(1);
        }
        std::hint::black_box(x);
        sigcoro::checkpoint();
        sigcoro::current().preemptions()
    });
    let stats = h.join().unwrap();
    assert_eq!(stats.hogs, 1, "{stats:?}");
    assert_eq!(stats.at_safe_points, 1, "{stats:?}");
}

/// Shutdown does not wait for the timer thread's next look, however long the slice.
#[test]
fn shutdown_is_prompt_with_a_long_slice() {
    let rt = rt(1, sigcoro::MAX_PREEMPT_SLICE);
    rt.block_on(|| sigcoro::sleep(Duration::from_millis(5)));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        rt.shutdown();
        tx.send(()).unwrap();
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("shutdown with a one-minute slice hung");
}

// --- Child processes: the controls, SIGCORO_PREEMPT, and overflow with preemption on ---------

const CHILD_ENV: &str = "SIGCORO_PREEMPT_TEST_CHILD";

/// How a child ended and what it wrote on stderr.
#[derive(Debug)]
struct Child {
    status: std::process::ExitStatus,
    stderr: String,
}

/// Re-runs this binary with only `test` selected and `env` set, as its child; kills it after
/// `timeout` (then its status says so: killed by SIGKILL). Core dumps are off.
fn run_child(test: &str, env: &[(&str, &str)], timeout: Duration) -> Child {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, test)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    // SAFETY: between fork and exec only setrlimit runs, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            let none = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &none);
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn the child");
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut err, &mut s).ok();
        s
    });
    let end = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > end {
            child.kill().ok();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Child {
        status,
        stderr: reader.join().unwrap(),
    }
}

fn is_child(test: &str) -> bool {
    std::env::var(CHILD_ENV).as_deref() == Ok(test)
}

/// The exit code of a child whose spinner was never preempted.
const STARVED: i32 = 86;

/// The region test's program, in a child: a call-free spinner in a region, a sleeper beside it
/// on one worker; exits 0 when the sleeper got its 20 ticks, [`STARVED`] after 3 s without.
fn region_spinner_child() -> ! {
    let rt = rt(1, Duration::from_millis(1));
    let stop = Arc::new(AtomicBool::new(false));
    let (s, work) = (stop.clone(), Arc::new(AtomicU64::new(0)));
    let _spinner = rt.spawn(move || spin(&s, &work));
    let ticks = rt.spawn(|| (0..20).for_each(|_| sigcoro::sleep(Duration::from_millis(1))));
    let end = Instant::now() + Duration::from_secs(3);
    while !ticks.is_finished() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: ends the process at once, without unwinding into a runtime that cannot stop.
    unsafe { libc::_exit(if ticks.is_finished() { 0 } else { STARVED }) }
}

/// The same program as `a_spinning_coroutine_in_a_region_is_preempted_and_others_progress`, in
/// children: it passes as it is, and starves with preemption switched off by
/// `SIGCORO_PREEMPT=off`, or with regions' asynchronous preemption switched off by
/// `SIGCORO_PREEMPT=noasync` (which says so on stderr).
#[test]
fn control_a_region_spinner_starves_its_neighbour_without_asynchronous_preemption() {
    const TEST: &str = "control_a_region_spinner_starves_its_neighbour_without_asynchronous_preemption";
    if is_child(TEST) {
        region_spinner_child();
    }
    let limit = Duration::from_secs(60);
    let on = run_child(TEST, &[], limit);
    assert_eq!(on.status.code(), Some(0), "{on:?}");
    let off = run_child(TEST, &[("SIGCORO_PREEMPT", "off")], limit);
    assert_eq!(off.status.code(), Some(STARVED), "{off:?}");
    let noasync = run_child(TEST, &[("SIGCORO_PREEMPT", "noasync")], limit);
    assert_eq!(noasync.status.code(), Some(STARVED), "{noasync:?}");
    assert!(
        noasync
            .stderr
            .contains("preemptible regions run with safe-point preemption only: SIGCORO_PREEMPT=noasync"),
        "{noasync:?}"
    );
}

/// Recurses with 256-byte frames until less than a signal frame's room is left, then spins
/// there: the next preemption signal finds no room for its frame.
#[inline(never)]
fn deep(n: u64) -> u64 {
    let buf = std::hint::black_box([n as u8; 256]);
    if sigcoro::stack_remaining().unwrap() < 1024 {
        let mut x = n;
        loop {
            x = std::hint::black_box(x.wrapping_mul(3).wrapping_add(1));
        }
    }
    deep(n + 1).wrapping_add(buf[n as usize % 256] as u64)
}

/// The overflow test's program: a coroutine fills its stack inside a region under a 50 us
/// slice.
fn overflow_child(reports_off: bool) -> ! {
    if reports_off {
        sigcoro::stack::disable_frame_push_reports_for_tests();
    }
    let rt = rt(1, Duration::from_micros(50));
    let h = rt
        .builder_spawn(sigcoro::Builder::new().name("deep"), || {
            // SAFETY: arithmetic and recursion on its own stack: no thread-owned state.
            unsafe { sigcoro::preemptible(|| deep(0)) }
        })
        .unwrap();
    let _ = h.join();
    unreachable!("the coroutine cannot come back");
}

/// A coroutine whose stack is too full for a preemption signal's frame is reported as an
/// overflow every time, never a bare SIGSEGV (the kernel's own, with no address). The control,
/// with those reports switched off, dies of a bare SIGSEGV.
#[test]
fn overflow_inside_a_region_is_reported() {
    const TEST: &str = "overflow_inside_a_region_is_reported";
    if is_child(TEST) {
        overflow_child(std::env::var("REPORTS_OFF").is_ok());
    }
    use std::os::unix::process::ExitStatusExt;
    for _ in 0..3 {
        let out = run_child(TEST, &[], Duration::from_secs(60));
        assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{out:?}");
        assert!(out.stderr.contains("coroutine 'deep'"), "{out:?}");
        assert!(out.stderr.contains("has overflowed its stack of"), "{out:?}");
    }
    // The control dies of a bare SIGSEGV. (In an unoptimised build the handler's own frames
    // are large, and a signal that found room for its frame may run the handler into the
    // guard page instead, which is reported as an overflow: up to three children.)
    let bare_segv = |c: &Child| c.status.signal() == Some(libc::SIGSEGV) && !c.stderr.contains("has overflowed");
    let controls: Vec<Child> = (0..3)
        .map(|_| run_child(TEST, &[("REPORTS_OFF", "1")], Duration::from_secs(60)))
        .take_while(|c| !bare_segv(c))
        .collect();
    assert!(
        controls.len() < 3,
        "the control never died of a bare SIGSEGV: {controls:?}"
    );
}

/// Socket operations are safe points also when they never wait: a coroutine that writes a
/// byte into a socket pair and reads it back, in a loop that never parks, still ends its
/// slices, so a neighbour on its one worker gets turns while the loop runs (an accept loop in
/// a burst of connections, or a connection whose pipelined requests are always there, is
/// such a loop).
#[test]
fn socket_operations_that_never_wait_are_safe_points() {
    let (turns, _) = socket_loop(Some(Duration::from_millis(1)));
    assert!(turns >= 3, "the neighbour had {turns} turns while the socket loop ran");
}

/// The control: with preemption off, the same loop keeps its worker until it ends.
#[test]
fn control_without_preemption_a_socket_loop_keeps_its_worker() {
    let (turns, rounds) = socket_loop(None);
    assert_eq!(turns, 0, "the neighbour ran during the loop without preemption");
    assert_eq!(rounds, SOCKET_ROUNDS, "the loop ended early");
}

const SOCKET_ROUNDS: u64 = 50_000;

/// Runs the socket loop beside a yielding neighbour on a one-worker runtime, until the
/// neighbour had 3 turns or `SOCKET_ROUNDS` rounds went by; returns the neighbour's turns
/// during the loop and the rounds run.
fn socket_loop(slice: Option<Duration>) -> (u64, u64) {
    use std::io::{Read, Write};
    let rt = Runtime::builder().workers(1).preempt(slice).build().expect("runtime");
    rt.block_on(|| {
        let turns = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let neighbour = {
            let (turns, stop) = (turns.clone(), stop.clone());
            sigcoro::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    turns.fetch_add(1, Ordering::Relaxed);
                    sigcoro::yield_now();
                }
            })
        };
        let (mut a, mut b) = sigcoro::net::UnixStream::pair().expect("socket pair");
        let mut byte = [0u8];
        let mut rounds = 0;
        while rounds < SOCKET_ROUNDS && turns.load(Ordering::Relaxed) < 3 {
            a.write_all(&[7]).unwrap();
            b.read_exact(&mut byte).unwrap();
            rounds += 1;
        }
        let during = turns.load(Ordering::Relaxed);
        stop.store(true, Ordering::Relaxed);
        neighbour.join().unwrap();
        (during, rounds)
    })
}
