//! sigcoro::signal: kill reaches a waiting coroutine, standard signals coalesce and real-time
//! ones queue in order with their values, every Signals gets its own copy while one shared
//! Signals hands each delivery to one waiter, refused signals say why, the old disposition comes
//! back, and ctrl_c (in a child process, since SIGINT kills by default).
//!
//! sigcoro changes no thread's mask for standard signals (only its dispatcher thread blocks
//! everything); real-time signals are blocked in every thread so that only the dispatcher takes
//! them, in order. These run in the test process, each with signals of its own, except those
//! that need a process of their own (the order of real-time signals and its control).

mod common;

use common::{child_command, is_child, rt};
use sigcoro::signal::{SIGINT, SIGUSR1, SIGUSR2, SIGWINCH, Signals};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn gettid() -> i32 {
    // SAFETY: a plain syscall.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// Sends `sig` to this very thread: its handler runs before the call returns.
fn to_this_thread(sig: i32) {
    // SAFETY: a plain syscall to our own thread.
    assert_eq!(
        unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), gettid(), sig) },
        0
    );
}

/// Queues `sig` with `value` to this process (`sigqueue`, process-directed).
fn queue_to_this_process(sig: i32, value: usize) {
    // SAFETY: a plain libc call to our own process.
    let r = unsafe {
        libc::sigqueue(
            libc::getpid(),
            sig,
            libc::sigval {
                sival_ptr: value as *mut libc::c_void,
            },
        )
    };
    assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
}

#[test]
fn kill_reaches_a_waiting_coroutine() {
    let got = rt(2).block_on(|| {
        let signals = Signals::new(&[SIGUSR1]).unwrap();
        let waiter = sigcoro::spawn(move || signals.recv());
        sigcoro::sleep(Duration::from_millis(20));
        // SAFETY: a plain syscall, to our own process.
        assert_eq!(unsafe { libc::kill(libc::getpid(), SIGUSR1) }, 0);
        waiter.join().unwrap()
    });
    assert_eq!(got.number(), SIGUSR1);
    assert_eq!(got.code(), libc::SI_USER);
    assert_eq!(got.sender_pid(), Some(std::process::id()));
}

#[test]
fn standard_signals_coalesce_and_real_time_ones_queue() {
    let (rt_sig, marker_sig) = (libc::SIGRTMIN() + 3, libc::SIGRTMIN() + 4);
    let signals = Signals::new(&[SIGUSR2, rt_sig]).unwrap();
    let marker = Signals::new(&[marker_sig]).unwrap();
    for _ in 0..5 {
        to_this_thread(SIGUSR2);
    }
    for v in 1..=5 {
        queue_to_this_process(rt_sig, v);
    }
    // Each SIGUSR2 was forwarded to the dispatcher before its call returned, the real-time
    // signals wait in the process's queue (every thread blocks them), and the dispatcher takes
    // pending signals lowest number first: once the marker (sent last, highest number) has
    // arrived, everything before it has been handed to `signals`, which nobody has received
    // from yet.
    queue_to_this_process(marker_sig, 99);
    assert_eq!(
        marker
            .recv_timeout(Duration::from_secs(10))
            .expect("the marker")
            .value(),
        Some(99)
    );
    let mut seen = Vec::new();
    while let Some(s) = signals.try_recv() {
        seen.push(s);
    }
    let usr2 = seen.iter().filter(|s| s.number() == SIGUSR2).count();
    assert_eq!(usr2, 1, "five SIGUSR2 sent while none was received coalesce: {seen:?}");
    let values: Vec<_> = seen
        .iter()
        .filter(|s| s.number() == rt_sig)
        .map(|s| s.value())
        .collect();
    assert_eq!(values, (1..=5).map(|v| Some(v as u64)).collect::<Vec<_>>());
    assert_eq!(seen[0].code(), libc::SI_TKILL);
    assert!(signals.try_recv().is_none());
}

#[test]
fn every_subscription_gets_a_copy_and_a_shared_one_gives_each_to_one_waiter() {
    let sig = libc::SIGRTMIN() + 5;
    rt(2).block_on(move || {
        let shared = Arc::new(Signals::new(&[sig]).unwrap());
        let other = Signals::new(&[sig]).unwrap();
        let received = Arc::new(AtomicUsize::new(0));
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let (s, r) = (shared.clone(), received.clone());
                sigcoro::spawn(move || {
                    s.recv();
                    r.fetch_add(1, Ordering::AcqRel);
                })
            })
            .collect();
        sigcoro::sleep(Duration::from_millis(20));
        queue_to_this_process(sig, 1);
        // The other subscription gets its copy.
        assert_eq!(other.recv_timeout(Duration::from_secs(10)).unwrap().value(), Some(1));
        // Exactly one of the two waiters of the shared subscription got it.
        let start = Instant::now();
        while received.load(Ordering::Acquire) == 0 && start.elapsed() < Duration::from_secs(10) {
            sigcoro::sleep(Duration::from_millis(1));
        }
        sigcoro::sleep(Duration::from_millis(20));
        assert_eq!(received.load(Ordering::Acquire), 1);
        queue_to_this_process(sig, 2);
        for w in waiters {
            w.join().unwrap();
        }
        assert_eq!(received.load(Ordering::Acquire), 2);
        assert_eq!(other.recv_timeout(Duration::from_secs(10)).unwrap().value(), Some(2));
    });
}

#[test]
fn recv_timeout_and_try_recv_return_none_when_nothing_comes() {
    let signals = Signals::new(&[libc::SIGRTMIN() + 7]).unwrap();
    assert!(signals.try_recv().is_none());
    let start = Instant::now();
    assert!(signals.recv_timeout(Duration::from_millis(30)).is_none());
    assert!(start.elapsed() >= Duration::from_millis(30));
    assert_eq!(signals.signals(), &[libc::SIGRTMIN() + 7]);
}

#[test]
fn refused_signals_say_why() {
    let cases = [
        (libc::SIGKILL, "cannot be caught"),
        (libc::SIGSTOP, "cannot be caught"),
        (libc::SIGSEGV, "fault"),
        (libc::SIGBUS, "fault"),
        (libc::SIGFPE, "fault"),
        (libc::SIGILL, "fault"),
        (sigcoro::boot_signal(), "boot coroutine stacks"),
        (libc::SIGRTMAX() - 2, "reserved by sigcoro for preemption"),
        (0, "does not exist"),
        (libc::SIGRTMAX() + 1, "does not exist"),
        (32, "C library"),
    ];
    for (sig, why) in cases {
        let err = Signals::new(&[SIGUSR1, sig]).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains(why), "signal {sig}: {err}");
    }
}

#[test]
fn the_previous_disposition_comes_back() {
    fn current(sig: i32) -> usize {
        // SAFETY: querying the action into a zeroed struct.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            libc::sigaction(sig, std::ptr::null(), &mut old);
            old.sa_sigaction
        }
    }
    let before = current(SIGWINCH);
    let a = Signals::new(&[SIGWINCH]).unwrap();
    let b = Signals::new(&[SIGWINCH]).unwrap();
    assert_ne!(current(SIGWINCH), before);
    drop(a);
    assert_ne!(current(SIGWINCH), before, "b still wants it");
    drop(b);
    assert_eq!(current(SIGWINCH), before);
}

/// ctrl_c in a child process: the child holds a Signals for SIGINT (so an early SIGINT does
/// not kill it), says it is ready, and waits in ctrl_c; the parent sends SIGINT until the
/// child reports it and exits (bounded).
#[test]
fn ctrl_c_returns_on_sigint() {
    const TEST: &str = "ctrl_c_returns_on_sigint";
    if is_child(TEST) {
        let guard = Signals::new(&[SIGINT]).unwrap();
        rt(1).block_on(|| {
            println!("ready");
            sigcoro::signal::ctrl_c().unwrap();
            println!("got ctrl-c");
        });
        drop(guard);
        return;
    }
    let mut child = child_command(TEST).stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = lines.by_ref().map_while(Result::ok).any(|l| l.contains("ready"));
    assert!(ready, "the child never got ready");
    let pid = child.id() as i32;
    // Read to the end (closing the pipe early would fail the child's own output).
    let reader = std::thread::spawn(move || {
        let all: Vec<String> = lines.map_while(Result::ok).collect();
        all.iter().any(|l| l.contains("got ctrl-c"))
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid, SIGINT) };
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = match child.try_wait().unwrap() {
        Some(s) => s,
        None => {
            child.kill().unwrap();
            panic!("the child did not end after SIGINTs");
        }
    };
    assert!(reader.join().unwrap(), "the child did not report ctrl-c");
    assert!(status.success(), "{status:?}");
}

/// Values queued to the process, one after another, from a plain thread while a runtime's
/// workers run: how many, and the signal.
const IN_ORDER: usize = 1000;

/// Subscribes to `sig`, queues `IN_ORDER` values to the process from a thread (two workers
/// idle meanwhile, other threads that could take it), and returns the values in the order
/// received.
fn queue_and_receive(sig: i32) -> Vec<u64> {
    let signals = Signals::new(&[sig]).unwrap();
    let rt = rt(2);
    let busy = rt.spawn(|| sigcoro::sleep(Duration::from_millis(1)));
    std::thread::spawn(move || {
        for v in 1..=IN_ORDER {
            queue_to_this_process(sig, v);
        }
    })
    .join()
    .unwrap();
    busy.join().unwrap();
    (0..IN_ORDER)
        .map(|i| {
            signals
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|| panic!("value #{i} never came"))
                .value()
                .unwrap()
        })
        .collect()
}

fn first_out_of_order(got: &[u64]) -> Option<usize> {
    got.windows(2).position(|w| w[0] >= w[1])
}

#[test]
fn real_time_values_arrive_in_the_order_sent() {
    const TEST: &str = "real_time_values_arrive_in_the_order_sent";
    if is_child(TEST) {
        let sig = libc::SIGRTMIN() + 9;
        for round in 0..5 {
            let got = queue_and_receive(sig);
            assert_eq!(got.len(), IN_ORDER);
            if let Some(i) = first_out_of_order(&got) {
                panic!(
                    "round {round}: out of order at {i}: {:?}",
                    &got[i.saturating_sub(3)..(i + 4).min(got.len())]
                );
            }
            assert_eq!(got, (1..=IN_ORDER as u64).collect::<Vec<_>>());
        }
        return;
    }
    let out = common::child::run(TEST, Duration::from_secs(120), &[]);
    assert!(out.status.success(), "{out:?}");
}

/// The control of the test above: with real-time signals neither blocked nor ordered (the old
/// way), the same program receives values out of order within a few rounds.
#[test]
fn control_unordered_real_time_values_can_arrive_out_of_order() {
    const TEST: &str = "control_unordered_real_time_values_can_arrive_out_of_order";
    if is_child(TEST) {
        sigcoro::signal::unordered_real_time_signals_for_tests();
        let sig = libc::SIGRTMIN() + 9;
        for round in 0..50 {
            let got = queue_and_receive(sig);
            if let Some(i) = first_out_of_order(&got) {
                println!(
                    "OUT-OF-ORDER in round {round} at {i}: {:?}",
                    &got[i.saturating_sub(3)..(i + 4).min(got.len())]
                );
                return;
            }
        }
        panic!("50 rounds stayed in order without the fix");
    }
    let out = common::child::run(TEST, Duration::from_secs(300), &[]);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("OUT-OF-ORDER"), "{out:?}");
}

/// Whether thread `tid` of this process blocks `sig` (its `SigBlk` in /proc).
fn thread_blocks(tid: i32, sig: i32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).unwrap();
    let hex = status.lines().find_map(|l| l.strip_prefix("SigBlk:")).unwrap();
    u64::from_str_radix(hex.trim(), 16).unwrap() & (1 << (sig - 1)) != 0
}

#[test]
fn a_real_time_subscription_blocks_its_signal_in_every_thread_and_no_standard_one() {
    const TEST: &str = "a_real_time_subscription_blocks_its_signal_in_every_thread_and_no_standard_one";
    if !is_child(TEST) {
        let out = common::child::run(TEST, Duration::from_secs(120), &[]);
        assert!(out.status.success(), "{out:?}");
        return;
    }
    let sig = libc::SIGRTMIN() + 10;
    // A thread started before the subscription, waiting in a blocking call.
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let older = std::thread::spawn(move || {
        tx.send(gettid()).unwrap();
        let _ = stop_rx.recv();
    });
    let older_tid = rx.recv().unwrap();
    assert!(!thread_blocks(older_tid, sig) && !thread_blocks(gettid(), sig));
    let signals = Signals::new(&[sig, SIGUSR1]).unwrap();
    assert!(thread_blocks(gettid(), sig), "the subscribing thread");
    assert!(thread_blocks(older_tid, sig), "a thread started before");
    assert!(!thread_blocks(older_tid, SIGUSR1) && !thread_blocks(gettid(), SIGUSR1));
    stop_tx.send(()).unwrap();
    older.join().unwrap();
    drop(signals);
}

/// A thread that blocks a real-time signal while a subscription asks every thread to block it
/// gets the request queued (it may only be blocking it for a moment, as inside
/// `pthread_create`); when it unblocks the signal after the last `Signals` is gone, the request
/// meets sigcoro's handler, not the default action, which would end the process.
#[test]
fn a_late_request_to_block_meets_the_handler_after_the_subscription_is_gone() {
    const TEST: &str = "a_late_request_to_block_meets_the_handler_after_the_subscription_is_gone";
    if !is_child(TEST) {
        let out = common::child::run(TEST, Duration::from_secs(60), &[]);
        assert!(out.status.success(), "{out:?}");
        assert!(out.stdout.contains("SURVIVED"), "{out:?}");
        return;
    }
    let sig = libc::SIGRTMIN() + 11;
    let mask = move |how| {
        // SAFETY: a sigset_t built by sigemptyset/sigaddset; changes this thread's mask only.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, sig);
            libc::pthread_sigmask(how, &set, std::ptr::null_mut());
        }
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let other = std::thread::spawn(move || {
        mask(libc::SIG_BLOCK);
        tx.send(gettid()).unwrap();
        go_rx.recv().unwrap();
        mask(libc::SIG_UNBLOCK);
        // The queued request is delivered as the mask changes.
    });
    let tid = rx.recv().unwrap();
    let signals = Signals::new(&[sig]).unwrap();
    // The request waits in the thread's own queue.
    let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).unwrap();
    let pnd = status.lines().find_map(|l| l.strip_prefix("SigPnd:")).unwrap();
    assert_ne!(
        u64::from_str_radix(pnd.trim(), 16).unwrap() & (1 << (sig - 1)),
        0,
        "{status}"
    );
    drop(signals);
    go_tx.send(()).unwrap();
    other.join().unwrap();
    println!("SURVIVED");
}
