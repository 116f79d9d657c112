//! The `Interrupt` object: signalled from other threads and from signal handlers, callbacks at
//! safe points with the value, blocking, the eventfd, and binding POSIX signals.

mod common;

use common::{rt, rt_no_preempt};
use sigcoro::Interrupt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

#[test]
fn a_signal_from_another_thread_runs_the_callback_with_its_value() {
    let rt = rt(1);
    let (tx, rx) = mpsc::channel();
    let irq = rt.block_on(move || Interrupt::new(move |v| tx.send(v).unwrap()).unwrap());
    for v in [3, 9, 42] {
        let irq = irq.clone();
        std::thread::spawn(move || irq.signal(v)).join().unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), v);
    }
    // Zero counts as one.
    irq.signal(0);
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), 1);
}

#[test]
fn the_callback_interrupts_a_busy_coroutine_at_a_safe_point() {
    let rt = rt_no_preempt(1);
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let (irq_tx, irq_rx) = mpsc::channel();
    let spinner = rt.spawn(move || {
        let irq = Interrupt::new(move |_| {
            h.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        irq_tx.send(irq).unwrap();
        // Busy, no waiting: only safe points let the callback in.
        let mut cp = sigcoro::Checkpoints::every(256);
        while hits.load(Ordering::SeqCst) == 0 {
            cp.tick();
        }
        hits.load(Ordering::SeqCst)
    });
    let irq = irq_rx.recv().unwrap();
    irq.signal(5);
    assert_eq!(spinner.join().unwrap(), 1);
}

#[test]
fn blocked_interrupts_wait_for_unblock() {
    let rt = rt(1);
    let seen = Arc::new(AtomicI32::new(0));
    let s = seen.clone();
    rt.block_on(move || {
        let s2 = s.clone();
        let irq = Interrupt::new(move |v| s2.store(v, Ordering::SeqCst)).unwrap();
        {
            let _block = irq.scope_block();
            irq.signal(11);
            for _ in 0..100 {
                sigcoro::yield_now();
                sigcoro::checkpoint();
            }
            assert_eq!(s.load(Ordering::SeqCst), 0, "a blocked interrupt ran its callback");
        }
        for _ in 0..100 {
            if s.load(Ordering::SeqCst) != 0 {
                break;
            }
            sigcoro::yield_now();
        }
        assert_eq!(s.load(Ordering::SeqCst), 11);
    });
    assert_eq!(seen.load(Ordering::SeqCst), 11);
}

#[test]
fn the_eventfd_becomes_readable_and_autodrains() {
    let rt = rt(1);
    let (tx, rx) = mpsc::channel();
    let irq = rt.block_on(move || Interrupt::new(move |v| tx.send(v).unwrap()).unwrap());
    let fd = irq.as_raw_fd().unwrap();
    assert_eq!(irq.as_raw_fd().unwrap(), fd, "the descriptor is made once");
    irq.set_autodrain(false);
    irq.signal(2);
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), 2);
    assert!(readable(fd), "without autodrain the fd stays readable");
    irq.drain();
    assert!(!readable(fd));
    irq.set_autodrain(true);
    irq.signal(4);
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), 4);
    assert!(!readable(fd), "autodrain emptied it before the callback");
}

fn readable(fd: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: polling one valid descriptor without waiting.
    unsafe { libc::poll(&mut p, 1, 0) == 1 }
}

#[test]
fn a_bound_posix_signal_signals_the_interrupt() {
    let rt = rt(1);
    let (tx, rx) = mpsc::channel();
    let irq = rt.block_on(move || Interrupt::new(move |v| tx.send(v).unwrap()).unwrap());
    irq.bind_signal(libc::SIGUSR2).unwrap();
    // A second binding of the same signal is refused.
    let other = rt.block_on(|| Interrupt::new(|_| ()).unwrap());
    assert_eq!(
        other.bind_signal(libc::SIGUSR2).unwrap_err().kind(),
        std::io::ErrorKind::AlreadyExists
    );
    irq.set_signal_hysteresis(true);
    for _ in 0..3 {
        // SAFETY: raising a signal we installed a handler for.
        unsafe { libc::raise(libc::SIGUSR2) };
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), libc::SIGUSR2);
    }
    drop(irq);
    for sig in [
        libc::SIGKILL,
        libc::SIGSTOP,
        libc::SIGSEGV,
        sigcoro::boot_signal(),
        0,
        99,
    ] {
        let err = other.bind_signal(sig).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{sig}: {err}");
    }
}

#[test]
fn signalling_from_a_signal_handler_is_safe() {
    static TARGET: std::sync::OnceLock<Interrupt> = std::sync::OnceLock::new();
    extern "C" fn handler(_: libc::c_int) {
        if let Some(irq) = TARGET.get() {
            irq.signal(77);
        }
    }
    let rt = rt(1);
    let (tx, rx) = mpsc::channel();
    let irq = rt.block_on(move || Interrupt::new(move |v| tx.send(v).unwrap()).unwrap());
    assert!(TARGET.set(irq).is_ok());
    // SAFETY: a plain handler for SIGURG, which nothing else in this test binary uses.
    unsafe {
        libc::signal(libc::SIGURG, handler as *const () as usize);
        libc::raise(libc::SIGURG);
    }
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), 77);
}

#[test]
fn creating_an_interrupt_outside_a_runtime_fails() {
    let err = Interrupt::new(|_| ()).unwrap_err();
    assert!(err.to_string().contains("outside"), "{err}");
    let _ = AtomicBool::new(false);
}

#[test]
fn an_interrupt_outliving_its_runtime_is_harmless() {
    let rt = rt(1);
    let irq = rt.block_on(|| Interrupt::new(|_| ()).unwrap());
    drop(rt);
    // The worker is gone: signalling stores the value and touches nothing that went with it.
    for v in 1..100 {
        irq.signal(v);
    }
}

/// A callback that panics on its first value and reports every value it sees first.
fn panics_on_one(tx: mpsc::Sender<i32>) -> impl FnMut(i32) + Send + 'static {
    move |v| {
        tx.send(v).unwrap();
        if v == 1 {
            panic!("callback boom");
        }
    }
}

/// A bystander coroutine creates an interrupt whose callback panics on its first value, then
/// spins through safe points (where the callback runs) until told to stop. Returns how the
/// bystander ended, and the interrupt.
fn bystander_meets_a_panicking_callback() -> (Result<&'static str, String>, Interrupt, Vec<i32>) {
    let rt = rt_no_preempt(1);
    let (tx, rx) = mpsc::channel();
    let (irq_tx, irq_rx) = mpsc::channel();
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    let bystander = rt.spawn(move || {
        irq_tx.send(Interrupt::new(panics_on_one(tx)).unwrap()).unwrap();
        let mut cp = sigcoro::Checkpoints::every(64);
        while !d.load(Ordering::SeqCst) {
            cp.tick();
        }
        "survived"
    });
    let irq = irq_rx.recv().unwrap();
    irq.signal(1);
    let mut seen = vec![rx.recv_timeout(Duration::from_secs(30)).unwrap()];
    // A contained panic leaves the callback usable: a second value runs it again.
    irq.signal(2);
    if let Ok(v) = rx.recv_timeout(Duration::from_secs(5)) {
        seen.push(v);
    }
    done.store(true, Ordering::SeqCst);
    let ended = bystander.join().map_err(|p| {
        p.try_into_panic()
            .ok()
            .and_then(|p| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "<cancelled or other payload>".into())
    });
    (ended, irq, seen)
}

#[test]
fn a_panicking_callback_leaves_the_interrupted_coroutine_alone() {
    let (ended, irq, seen) = bystander_meets_a_panicking_callback();
    assert_eq!(ended, Ok("survived"), "the bystander was unwound");
    assert_eq!(seen, [1, 2], "the callback did not run again after its panic");
    assert_eq!(irq.panics(), 1);
    assert_eq!(irq.last_panic().as_deref(), Some("callback boom"));
}

/// The control of the test above: with containment switched off, the same program unwinds the
/// bystander with the callback's panic.
#[test]
fn control_an_uncontained_callback_panic_unwinds_the_bystander() {
    const TEST: &str = "control_an_uncontained_callback_panic_unwinds_the_bystander";
    if !common::is_child(TEST) {
        let out = common::child::run(TEST, Duration::from_secs(120), &[]);
        assert!(out.status.success(), "{out:?}");
        return;
    }
    sigcoro::interrupt::uncontained_callback_panics_for_tests();
    let (ended, irq, _) = bystander_meets_a_panicking_callback();
    assert_eq!(ended, Err("callback boom".to_string()));
    assert_eq!(irq.panics(), 0);
}

#[test]
fn a_panicking_callback_in_the_worker_loop_is_contained_and_reported() {
    const TEST: &str = "a_panicking_callback_in_the_worker_loop_is_contained_and_reported";
    if !common::is_child(TEST) {
        let out = common::child::run(TEST, Duration::from_secs(120), &[]);
        assert!(out.status.success(), "{out:?}");
        let lines: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| l.starts_with("sigcoro: an Interrupt callback"))
            .collect();
        assert_eq!(lines.len(), 1, "one report line per panic: {out:?}");
        assert!(lines[0].contains("callback boom"), "{out:?}");
        return;
    }
    let rt = rt(1);
    let (tx, rx) = mpsc::channel();
    let irq = rt.block_on(move || Interrupt::new(panics_on_one(tx)).unwrap());
    // Nothing runs on the worker now: the callback runs in its loop.
    irq.signal(1);
    assert_eq!(rx.recv_timeout(Duration::from_secs(30)).unwrap(), 1);
    // The worker lives on and answers.
    let rt = common::with_timeout(Duration::from_secs(30), move || {
        assert_eq!(rt.block_on(|| 7), 7);
        rt
    });
    irq.signal(2);
    assert_eq!(rx.recv_timeout(Duration::from_secs(30)), Ok(2), "not run again");
    assert_eq!(irq.panics(), 1);
    assert_eq!(irq.last_panic().as_deref(), Some("callback boom"));
    drop(rt);
}

/// The control of the test above: with containment switched off, the callback's panic kills
/// the worker thread and the next `block_on` never answers.
#[test]
fn control_an_uncontained_callback_panic_kills_the_worker_loop() {
    const TEST: &str = "control_an_uncontained_callback_panic_kills_the_worker_loop";
    if !common::is_child(TEST) {
        let out = common::child::run(TEST, Duration::from_secs(120), &[]);
        assert!(out.status.success(), "{out:?}");
        assert!(out.stdout.contains("NO ANSWER"), "{out:?}");
        return;
    }
    sigcoro::interrupt::uncontained_callback_panics_for_tests();
    let rt = rt(1);
    let (tx, rx) = mpsc::channel();
    let irq = rt.block_on(move || Interrupt::new(panics_on_one(tx)).unwrap());
    irq.signal(1);
    assert_eq!(rx.recv_timeout(Duration::from_secs(30)).unwrap(), 1);
    let (answer_tx, answer_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = answer_tx.send(rt.block_on(|| 7));
    });
    match answer_rx.recv_timeout(Duration::from_secs(5)) {
        Ok(v) => panic!("the worker answered {v}"),
        Err(_) => println!("NO ANSWER"),
    }
    // The runtime cannot shut down (its worker is gone): leave without dropping it.
    std::process::exit(0);
}
