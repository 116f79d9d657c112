//! sigcoro::signal: kill reaches a waiting coroutine, standard signals coalesce and real-time
//! ones queue in order with their values, every Signals gets its own copy while one shared
//! Signals hands each delivery to one waiter, refused signals say why, the old disposition comes
//! back, and ctrl_c (in a child process, since SIGINT kills by default).
//!
//! No thread's signal mask is changed by sigcoro (only its dispatcher thread blocks
//! everything), so these run in the test process; each test uses signals of its own.

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

/// Queues `sig` with `value` to this very thread (sigqueue's siginfo, thread-directed).
fn queue_to_this_thread(sig: i32, value: usize) {
    // SAFETY: siginfo_t is plain data; we fill the SI_QUEUE layout (pid, uid, value at 16/20/24).
    unsafe {
        let mut si: libc::siginfo_t = std::mem::zeroed();
        let p = (&raw mut si).cast::<u8>();
        p.cast::<i32>().write(sig);
        p.add(8).cast::<i32>().write(libc::SI_QUEUE);
        p.add(16).cast::<i32>().write(libc::getpid());
        p.add(20).cast::<u32>().write(libc::getuid());
        p.add(24).cast::<usize>().write(value);
        let r = libc::syscall(
            libc::SYS_rt_tgsigqueueinfo,
            libc::getpid(),
            gettid(),
            sig,
            &raw const si,
        );
        assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
    }
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
        queue_to_this_thread(rt_sig, v);
    }
    // Each signal was forwarded to the dispatcher before its call returned, and the dispatcher
    // takes pending signals lowest number first: once the marker (sent last, highest number)
    // has arrived, everything before it has been handed to `signals`, which nobody has
    // received from yet.
    queue_to_this_thread(marker_sig, 99);
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
        queue_to_this_thread(sig, 1);
        // The other subscription gets its copy.
        assert_eq!(other.recv_timeout(Duration::from_secs(10)).unwrap().value(), Some(1));
        // Exactly one of the two waiters of the shared subscription got it.
        let start = Instant::now();
        while received.load(Ordering::Acquire) == 0 && start.elapsed() < Duration::from_secs(10) {
            sigcoro::sleep(Duration::from_millis(1));
        }
        sigcoro::sleep(Duration::from_millis(20));
        assert_eq!(received.load(Ordering::Acquire), 1);
        queue_to_this_thread(sig, 2);
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
