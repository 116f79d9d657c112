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
