//! Waits inside destructors that run while a coroutine unwinds (a panic, or
//! `JoinHandle::cancel`). A coroutine cannot park then (std's panic count is per OS thread, so
//! any coroutine resumed in its place would see `std::thread::panicking()` true): a wait that
//! would have to park ends the process at once with a message naming the call, instead of the
//! silent spin it was; `sleep` blocks the thread instead of spinning; waits that need not park
//! work. Each aborting case runs in a child process and has a control: the same program whose
//! destructor runs without unwinding, where the wait works. And a coroutine that is not
//! unwinding never sees `panicking()` true because another one is, with a control that lets
//! the unwinding one switch out (the unsoundness the refusal prevents).

mod common;

use common::child::{self, Outcome};
use common::{is_child, rt_no_preempt, rt_preempt};
use sigcoro::sync::Mutex;
use sigcoro::sync::channel;
use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// Runs its closure when dropped.
struct OnDrop<F: FnOnce()>(Option<F>);

/// A guard that runs `f` when dropped.
fn on_drop<F: FnOnce()>(f: F) -> OnDrop<F> {
    OnDrop(Some(f))
}

impl<F: FnOnce()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f()
        }
    }
}

/// How the coroutine whose destructor waits ends its body.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum End {
    /// Normally: the destructor runs without unwinding (the controls).
    Return,
    /// Cancelled while it waits (`JoinHandle::cancel`).
    Cancel,
    /// By a panic.
    Panic,
}

impl End {
    fn from_env() -> End {
        match std::env::var("UNWIND_END").as_deref() {
            Ok("cancel") => End::Cancel,
            Ok("panic") => End::Panic,
            _ => End::Return,
        }
    }

    fn env(self) -> &'static str {
        match self {
            End::Return => "return",
            End::Cancel => "cancel",
            End::Panic => "panic",
        }
    }
}

/// On a one-worker runtime: spawns a coroutine that holds a guard running `in_drop`, then waits
/// on a channel; the main coroutine then ends it as `end` says. `setup` runs first, in the main
/// coroutine, and its value goes to `in_drop`. Prints "DROP DONE" when the destructor's wait
/// returned.
fn wait_in_a_destructor<S: Send + 'static>(
    end: End,
    setup: impl FnOnce() -> S + Send + 'static,
    in_drop: impl FnOnce(S) + Send + 'static,
) {
    rt_no_preempt(1).block_on(move || {
        let state = setup();
        let (go_tx, go_rx) = channel::bounded::<()>(1);
        let mut pending = Some((state, in_drop));
        let victim = sigcoro::spawn(move || {
            let _guard = on_drop(move || {
                if let Some((state, in_drop)) = pending.take() {
                    in_drop(state);
                    println!("DROP DONE");
                }
            });
            let _ = go_rx.recv();
            if end == End::Panic {
                panic!("the victim panics");
            }
        });
        // Let the victim reach its wait.
        sigcoro::yield_now();
        match end {
            End::Cancel => victim.cancel(),
            End::Return | End::Panic => go_tx.send(()).unwrap(),
        }
        let ended = victim.join();
        println!("VICTIM ENDED: {}", if ended.is_ok() { "ok" } else { "err" });
    });
}

/// Runs `test` in a child with `UNWIND_END` = `end`: an unwinding end must abort with the
/// message naming `call`; a normal end (the control) must finish with the wait done.
fn expect(test: &str, end: End, call: &str) {
    let out: Outcome = child::run_with_env(test, Duration::from_secs(60), &[("UNWIND_END", end.env())]);
    if end == End::Return {
        assert!(out.status.success(), "{out:?}");
        assert!(out.stdout.contains("DROP DONE"), "{out:?}");
        assert!(!out.stderr.contains("would have to wait"), "{out:?}");
    } else {
        assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{out:?}");
        let line = format!("sigcoro: {call} would have to wait inside a destructor that runs while");
        assert!(out.stderr.contains(&line), "no line {line:?}: {out:?}");
        assert!(!out.stdout.contains("DROP DONE"), "{out:?}");
    }
}

/// A coroutine that sleeps a while, then ends with 7.
fn sleeper() -> sigcoro::JoinHandle<u32> {
    sigcoro::spawn(|| {
        sigcoro::sleep(Duration::from_millis(50));
        7
    })
}

#[test]
fn join_in_a_destructor_while_unwinding_aborts_naming_join() {
    const TEST: &str = "join_in_a_destructor_while_unwinding_aborts_naming_join";
    if is_child(TEST) {
        wait_in_a_destructor(End::from_env(), sleeper, |h| assert_eq!(h.join().unwrap(), 7));
        return;
    }
    expect(TEST, End::Cancel, "JoinHandle::join");
    expect(TEST, End::Panic, "JoinHandle::join");
    expect(TEST, End::Return, "JoinHandle::join");
}

#[test]
fn recv_in_a_destructor_while_unwinding_aborts_naming_the_channel() {
    const TEST: &str = "recv_in_a_destructor_while_unwinding_aborts_naming_the_channel";
    if is_child(TEST) {
        wait_in_a_destructor(
            End::from_env(),
            || {
                let (tx, rx) = channel::bounded::<u32>(1);
                sigcoro::spawn(move || {
                    sigcoro::sleep(Duration::from_millis(50));
                    let _ = tx.send(5);
                });
                rx
            },
            |rx| assert_eq!(rx.recv().unwrap(), 5),
        );
        return;
    }
    expect(TEST, End::Cancel, "a channel send or recv (sigcoro::sync::channel)");
    expect(TEST, End::Return, "a channel send or recv (sigcoro::sync::channel)");
}

#[test]
fn a_contended_lock_in_a_destructor_while_unwinding_aborts_naming_lock() {
    const TEST: &str = "a_contended_lock_in_a_destructor_while_unwinding_aborts_naming_lock";
    if is_child(TEST) {
        wait_in_a_destructor(
            End::from_env(),
            || {
                let m = Arc::new(Mutex::new(0u32));
                let holder = m.clone();
                // Holds the lock across a sleep: the destructor's lock is contended.
                sigcoro::spawn(move || {
                    let mut g = holder.lock();
                    sigcoro::sleep(Duration::from_millis(50));
                    *g += 1;
                });
                sigcoro::yield_now();
                m
            },
            |m| assert_eq!(*m.lock(), 1),
        );
        return;
    }
    expect(TEST, End::Cancel, "sigcoro::sync::Mutex::lock");
    expect(TEST, End::Return, "sigcoro::sync::Mutex::lock");
}

#[test]
fn a_scope_in_a_destructor_while_unwinding_aborts_naming_scope() {
    const TEST: &str = "a_scope_in_a_destructor_while_unwinding_aborts_naming_scope";
    if is_child(TEST) {
        wait_in_a_destructor(
            End::from_env(),
            || (),
            |()| {
                let n = AtomicUsize::new(0);
                sigcoro::scope(|s| {
                    s.spawn(|| {
                        sigcoro::sleep(Duration::from_millis(20));
                        n.fetch_add(1, Ordering::SeqCst);
                    });
                });
                assert_eq!(n.load(Ordering::SeqCst), 1);
            },
        );
        return;
    }
    expect(TEST, End::Panic, "sigcoro::scope (waiting for its coroutines)");
    expect(TEST, End::Return, "sigcoro::scope (waiting for its coroutines)");
}

#[test]
fn waits_that_need_no_parking_work_while_unwinding() {
    let done = Arc::new(AtomicUsize::new(0));
    let d = done.clone();
    rt_no_preempt(1).block_on(move || {
        let finished = sigcoro::spawn(|| 3u32);
        sigcoro::yield_now();
        let m = Arc::new(Mutex::new(0u32));
        let (tx, rx) = channel::bounded::<u32>(2);
        let victim = sigcoro::spawn(move || {
            let _guard = on_drop(move || {
                // A joined coroutine that has ended, a send with room, a recv of a value
                // there, an uncontended lock, a yield, a safe point, a spawn: none parks.
                assert_eq!(finished.join().unwrap(), 3);
                tx.send(4).unwrap();
                assert_eq!(rx.recv().unwrap(), 4);
                *m.lock() += 1;
                sigcoro::yield_now();
                sigcoro::checkpoint();
                let d = d.clone();
                sigcoro::spawn(move || {
                    d.fetch_add(1, Ordering::SeqCst);
                });
            });
            sigcoro::park();
        });
        sigcoro::yield_now();
        victim.cancel();
        assert!(victim.join().unwrap_err().is_cancelled());
        sigcoro::yield_now();
    });
    assert_eq!(
        done.load(Ordering::SeqCst),
        1,
        "the coroutine spawned in the destructor ran"
    );
}

/// This thread's voluntary context switches and CPU time (user + system, in microseconds).
fn thread_usage() -> (i64, i64) {
    // SAFETY: getrusage fills a zeroed struct for this thread.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_THREAD, &mut ru), 0);
        ru
    };
    let micros = |t: libc::timeval| t.tv_sec * 1_000_000 + t.tv_usec;
    (ru.ru_nvcsw, micros(ru.ru_utime) + micros(ru.ru_stime))
}

/// A cancelled coroutine whose destructor sleeps `SLEEP`: returns the voluntary context
/// switches and the CPU microseconds of the worker thread during that sleep.
fn sleep_in_a_destructor() -> (i64, i64) {
    const SLEEP: Duration = Duration::from_millis(200);
    let seen = Arc::new(std::sync::Mutex::new((0, 0)));
    let s = seen.clone();
    rt_no_preempt(1).block_on(move || {
        let victim = sigcoro::spawn(move || {
            let _guard = on_drop(move || {
                let (switches, cpu) = thread_usage();
                sigcoro::sleep(SLEEP);
                let (switches2, cpu2) = thread_usage();
                *s.lock().unwrap() = (switches2 - switches, cpu2 - cpu);
            });
            sigcoro::park();
        });
        sigcoro::yield_now();
        victim.cancel();
        assert!(victim.join().unwrap_err().is_cancelled());
    });
    *seen.lock().unwrap()
}

#[test]
fn sleep_in_a_destructor_while_unwinding_sleeps_the_thread_without_spinning() {
    let (switches, cpu) = sleep_in_a_destructor();
    // The thread slept in the kernel (a voluntary switch) and did not burn its sleep on a CPU.
    assert!(switches >= 1, "no voluntary context switch: {switches}");
    assert!(cpu < 100_000, "{cpu} us of CPU during a 200 ms sleep");
}

/// The control of the test above: with the old behaviour, the sleep spins: the thread never
/// gives up its CPU voluntarily during it.
#[test]
fn control_sleep_in_a_destructor_spun_before() {
    const TEST: &str = "control_sleep_in_a_destructor_spun_before";
    if is_child(TEST) {
        sigcoro::__test::spin_while_unwinding_for_tests();
        let (switches, cpu) = sleep_in_a_destructor();
        println!("SWITCHES {switches} CPU {cpu}");
        assert_eq!(switches, 0, "the old sleep slept in the kernel");
        assert!(cpu > 0);
        return;
    }
    let out = child::run(TEST, Duration::from_secs(60), &[]);
    assert!(out.status.success(), "{out:?}");
}

/// The control of the aborting tests: with the refusal switched off, a join in a destructor
/// while unwinding spins instead (the old hang), here bounded by the child's timeout.
#[test]
fn control_join_in_a_destructor_spun_before() {
    const TEST: &str = "control_join_in_a_destructor_spun_before";
    if is_child(TEST) {
        sigcoro::__test::spin_while_unwinding_for_tests();
        let spins = Arc::new(AtomicUsize::new(0));
        let s = spins.clone();
        rt_no_preempt(1).block_on(move || {
            let stop = Arc::new(AtomicBool::new(false));
            let st = stop.clone();
            // Never ends on its own: the destructor's join can only spin.
            let stuck = sigcoro::spawn(move || {
                while !st.load(Ordering::SeqCst) {
                    sigcoro::sleep(Duration::from_millis(1));
                }
            });
            let victim = sigcoro::spawn(move || {
                let _guard = on_drop(move || {
                    // The old join: park returns at once while unwinding, so this loops. A
                    // plain thread reports it after a while and ends the process.
                    let s = s.clone();
                    std::thread::spawn(move || {
                        while s.load(Ordering::SeqCst) == 0 {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        std::thread::sleep(Duration::from_millis(300));
                        println!("SPINNING, no message");
                        std::process::exit(0);
                    });
                    spins.fetch_add(1, Ordering::SeqCst);
                    let _ = stuck.join();
                    stop.store(true, Ordering::SeqCst);
                });
                sigcoro::park();
            });
            sigcoro::yield_now();
            victim.cancel();
            let _ = victim.join();
        });
        unreachable!("the join cannot return");
    }
    let out = child::run(TEST, Duration::from_secs(60), &[]);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("SPINNING, no message"), "{out:?}");
    assert!(!out.stderr.contains("would have to wait"), "{out:?}");
}

/// On a one-worker runtime with preemption: a coroutine unwinds (cancelled, or by a panic)
/// through a destructor that yields, takes safe points and computes past its slice, while a
/// bystander coroutine of the same worker keeps checking `std::thread::panicking()`. Returns
/// how often the bystander looked and how often it saw true.
fn bystander_watches_an_unwind(end: End) -> (usize, usize) {
    let looks = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(AtomicUsize::new(0));
    let (l, s) = (looks.clone(), seen.clone());
    rt_preempt(1, Duration::from_millis(1)).block_on(move || {
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let bystander = sigcoro::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                l.fetch_add(1, Ordering::SeqCst);
                if std::thread::panicking() {
                    s.fetch_add(1, Ordering::SeqCst);
                }
                sigcoro::yield_now();
            }
        });
        let (go_tx, go_rx) = channel::bounded::<()>(1);
        let victim = sigcoro::spawn(move || {
            let _guard = on_drop(|| {
                let deadline = std::time::Instant::now() + Duration::from_millis(20);
                while std::time::Instant::now() < deadline {
                    sigcoro::yield_now();
                    sigcoro::checkpoint();
                }
            });
            let _ = go_rx.recv();
            if end == End::Panic {
                panic!("the victim panics");
            }
        });
        sigcoro::yield_now();
        match end {
            End::Cancel => victim.cancel(),
            _ => go_tx.send(()).unwrap(),
        }
        let _ = victim.join();
        stop.store(true, Ordering::SeqCst);
        bystander.join().unwrap();
    });
    (looks.load(Ordering::SeqCst), seen.load(Ordering::SeqCst))
}

#[test]
fn a_bystander_never_sees_panicking_because_another_coroutine_unwinds() {
    for end in [End::Cancel, End::Panic] {
        let (looks, seen) = bystander_watches_an_unwind(end);
        assert!(looks > 0, "{end:?}: the bystander never ran");
        assert_eq!(
            seen, 0,
            "{end:?}: the bystander saw panicking() true {seen} times of {looks}"
        );
    }
}

/// The control of the test above: a coroutine that switches out while it unwinds (switched on
/// for the test) shows its panic state to the bystander.
#[test]
fn control_switching_out_while_unwinding_shows_the_panic_to_a_bystander() {
    const TEST: &str = "control_switching_out_while_unwinding_shows_the_panic_to_a_bystander";
    if is_child(TEST) {
        sigcoro::__test::switch_while_unwinding_for_tests();
        let (looks, seen) = bystander_watches_an_unwind(End::Cancel);
        println!("BYSTANDER SAW PANICKING {seen} of {looks}");
        assert!(seen > 0);
        return;
    }
    let out = child::run(TEST, Duration::from_secs(60), &[]);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("BYSTANDER SAW PANICKING"), "{out:?}");
}

#[test]
fn a_generator_cannot_suspend_while_it_unwinds_from_a_panic() {
    const TEST: &str = "a_generator_cannot_suspend_while_it_unwinds_from_a_panic";
    if is_child(TEST) {
        use sigcoro::coroutine::{Coroutine, CoroutineResult};
        let panics = End::from_env() == End::Panic;
        let mut co = Coroutine::new(move |y, _: ()| {
            let _guard = on_drop(|| {
                y.suspend(1u32);
            });
            if panics {
                panic!("the generator panics");
            }
            2u32
        });
        assert_eq!(co.resume(()), CoroutineResult::Yield(1));
        println!("DROP DONE (suspended in a destructor without unwinding)");
        assert_eq!(co.resume(()), CoroutineResult::Return(2));
        return;
    }
    let out = child::run_with_env(TEST, Duration::from_secs(60), &[("UNWIND_END", "panic")]);
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{out:?}");
    assert!(
        out.stderr
            .contains("sigcoro: Yielder::suspend was called inside a destructor"),
        "{out:?}"
    );
    // The control: the same generator without the panic suspends in its destructor.
    let out = child::run_with_env(TEST, Duration::from_secs(60), &[("UNWIND_END", "return")]);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("DROP DONE"), "{out:?}");
}
