//! Joining a coroutine that has not started yet and waits at either end of the joiner's run
//! queue: the joiner runs it in its own place. These tests pin down the order that gives, and
//! that a coroutine started that way is settled like any other when it yields, parks, sleeps,
//! panics, is cancelled or is preempted. Everything asserts behaviour and counts, never time.

mod common;

use common::{rt_with, spin_until, with_timeout};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Log = Arc<Mutex<Vec<&'static str>>>;

fn logger(log: &Log, line: &'static str) -> impl FnOnce() + Send + 'static {
    let log = log.clone();
    move || log.lock().unwrap().push(line)
}

/// Runs `f` on a fresh one-worker runtime in another thread, failing (instead of hanging) if it
/// has not finished after a minute (a joiner that never woke up).
fn on_one_worker(preempt: Option<Duration>, f: impl FnOnce() + Send + 'static) {
    with_timeout(Duration::from_secs(60), move || rt_with(1, preempt).block_on(f));
}

#[test]
fn join_runs_a_queued_coroutine_at_either_end_in_place() {
    on_one_worker(None, || {
        let log: Log = Arc::default();
        let a = sigcoro::spawn(logger(&log, "a"));
        let b = sigcoro::spawn(logger(&log, "b"));
        let c = sigcoro::spawn(logger(&log, "c"));
        // `c` is at the back: it runs now, before `a` and `b` queued ahead of it.
        c.join().unwrap();
        assert_eq!(*log.lock().unwrap(), ["c"]);
        // `a` is at the front: the same.
        a.join().unwrap();
        assert_eq!(*log.lock().unwrap(), ["c", "a"]);
        b.join().unwrap();
        assert_eq!(*log.lock().unwrap(), ["c", "a", "b"]);

        // One in the middle waits for its turn: the worker runs the queue in order.
        let (x, y, z) = (
            sigcoro::spawn(logger(&log, "x")),
            sigcoro::spawn(logger(&log, "y")),
            sigcoro::spawn(logger(&log, "z")),
        );
        y.join().unwrap();
        assert_eq!(log.lock().unwrap()[3..], ["x", "y"]);
        x.join().unwrap();
        z.join().unwrap();
        assert_eq!(log.lock().unwrap()[3..], ["x", "y", "z"]);
    });
}

#[test]
fn a_coroutine_started_by_its_joiner_can_yield_park_sleep_and_wait() {
    on_one_worker(None, || {
        let steps = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = sigcoro::sync::channel::unbounded::<u32>();
        let s = steps.clone();
        let worker = sigcoro::spawn(move || {
            let me = sigcoro::current();
            sigcoro::yield_now();
            s.fetch_add(1, Ordering::SeqCst);
            me.unpark();
            sigcoro::park(); // the token is there: returns at once
            sigcoro::park_timeout(Duration::from_millis(1));
            sigcoro::sleep(Duration::from_millis(1));
            s.fetch_add(1, Ordering::SeqCst);
            let got: u32 = rx.iter().sum(); // parks until the sender below is done
            s.fetch_add(1, Ordering::SeqCst);
            got
        });
        let sender = sigcoro::spawn(move || (1..=100).for_each(|i| tx.send(i).unwrap()));
        // `sender` is at the back, `worker` at the front: both run in place, one after the other.
        assert_eq!(worker.join().unwrap(), 5050);
        sender.join().unwrap();
        assert_eq!(steps.load(Ordering::SeqCst), 3);
    });
}

#[test]
fn panics_and_cancellations_of_coroutines_started_in_place_reach_the_joiner() {
    on_one_worker(None, || {
        let h = sigcoro::spawn(|| -> u32 { panic!("boom in place") });
        let err = h.join().unwrap_err();
        assert!(err.is_panic());
        assert_eq!(*err.into_panic().downcast::<&str>().unwrap(), "boom in place");

        // Cancelled before it ever ran: it starts, and unwinds at its first wait.
        let dropped = Arc::new(AtomicBool::new(false));
        struct SetOnDrop(Arc<AtomicBool>);
        impl Drop for SetOnDrop {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let guard = SetOnDrop(dropped.clone());
        let h = sigcoro::spawn(move || {
            let _guard = guard;
            loop {
                sigcoro::park();
            }
        });
        h.cancel();
        assert!(h.join().unwrap_err().is_cancelled());
        assert!(dropped.load(Ordering::SeqCst), "its destructors ran");
    });
}

#[test]
fn a_cancelled_joiner_unwinds_instead_of_running_the_coroutine() {
    on_one_worker(None, || {
        let (ran, seen) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(true)));
        let (r, s) = (ran.clone(), seen.clone());
        /// Records, as the joiner unwinds, whether the coroutine it joined has run.
        struct Look(Arc<AtomicBool>, Arc<AtomicBool>);
        impl Drop for Look {
            fn drop(&mut self) {
                self.1.store(self.0.load(Ordering::SeqCst), Ordering::SeqCst);
            }
        }
        let joiner = sigcoro::spawn(move || {
            // Cancelled before it first waits: its join below is where it notices.
            let _look = Look(r.clone(), s);
            let target = sigcoro::spawn(move || r.store(true, Ordering::SeqCst));
            target.join().unwrap();
        });
        let joiner = Arc::new(Mutex::new(Some(joiner)));
        let j = joiner.clone();
        std::thread::spawn(move || j.lock().unwrap().as_ref().unwrap().cancel());
        let joiner = loop {
            // Wait until the thread has cancelled it and let go of the handle.
            if let Some(h) = joiner.lock().unwrap().take_if(|_| Arc::strong_count(&joiner) == 1) {
                break h;
            }
            std::thread::yield_now();
        };
        assert!(joiner.join().unwrap_err().is_cancelled());
        assert!(
            !seen.load(Ordering::SeqCst),
            "the joiner unwound before the coroutine ran"
        );
        // The coroutine was detached by the unwinding joiner, and runs in its turn all the same.
        sigcoro::yield_now();
        assert!(ran.load(Ordering::SeqCst));
    });
}

#[test]
fn chains_of_joins_nest_and_unwind() {
    fn chain(depth: u32) -> u32 {
        if depth == 0 {
            sigcoro::yield_now(); // the innermost suspends: every level settles it in turn
            return 0;
        }
        sigcoro::spawn(move || chain(depth - 1)).join().unwrap() + 1
    }
    on_one_worker(None, || assert_eq!(chain(2000), 2000));
}

#[test]
fn a_spinner_started_by_its_joiner_is_preempted_and_others_go_on() {
    on_one_worker(Some(Duration::from_millis(1)), || {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let spinner = sigcoro::spawn(move || {
            // SAFETY: a load of an atomic in a loop: no thread-owned state.
            unsafe { sigcoro::preemptible(|| spin_until(&s)) };
            sigcoro::current().preemptions()
        });
        // Queued behind the spinner: it runs only if the spinner, started in place by the join
        // below, is preempted and requeued.
        let stopper = sigcoro::spawn(move || stop.store(true, Ordering::Relaxed));
        let stats = spinner.join().unwrap();
        assert!(stats.asynchronous >= 1, "{stats:?}");
        stopper.join().unwrap();
    });
}

#[test]
fn a_scoped_coroutine_can_join_a_sibling_while_the_scope_waits() {
    for preempt in [None, Some(Duration::from_millis(1))] {
        on_one_worker(preempt, || {
            let total = sigcoro::scope(|s| {
                let a = s.spawn(|| {
                    sigcoro::sleep(Duration::from_millis(5));
                    40
                });
                let b = s.spawn(move || a.join().unwrap() + 2);
                // Leave `b` unjoined: the scope waits for `a` while `b` joins it too.
                drop(b);
                1
            });
            assert_eq!(total, 1);
        });
    }
}

#[test]
fn a_cancelled_scope_owner_waits_for_its_coroutines_without_spinning() {
    // One worker and no preemption: an owner that spun instead of parking would never let
    // the scoped coroutine run, and this would hang (the helper fails it after a minute).
    on_one_worker(None, || {
        let finished = Arc::new(AtomicBool::new(false));
        let f = finished.clone();
        let owner = sigcoro::spawn(move || {
            sigcoro::scope(|s| {
                s.spawn(|| sigcoro::sleep(Duration::from_millis(20)));
            });
            f.store(true, Ordering::SeqCst); // the scope ended; the next wait unwinds
            sigcoro::yield_now();
        });
        sigcoro::yield_now(); // the owner starts and waits for its scope
        owner.cancel();
        assert!(owner.join().unwrap_err().is_cancelled());
        assert!(finished.load(Ordering::SeqCst), "the scope waited for its coroutine");
    });
}
