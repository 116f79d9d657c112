//! The scheduler and runtime: spawn/join, FIFO interleaving, parking, sleeping, cancellation,
//! shutdown, thread-locals, coroutine-locals, scopes, and multi-worker stress through the sync
//! primitives. Everything asserts behaviour and counts, never wall-clock bounds.

use sigcoro::sync::{Mutex, channel};
mod common;

use common::{rt, rt_no_preempt};
use sigcoro::{Runtime, coroutine_local};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

type Log = Arc<StdMutex<Vec<String>>>;
type Handles = Arc<StdMutex<Vec<Option<sigcoro::JoinHandle<u32>>>>>;

fn say(log: &Log, line: String) {
    log.lock().unwrap().push(line);
}

/// Seed 003's libcoro example, ported: three coroutines recursing and yielding, then a line of
/// coroutines each spawning the next. Our run queue is FIFO (libcoro's was LIFO), so the first
/// part interleaves 0, 1, 2 where libcoro printed 2, 1, 0; a coroutine woken by a join runs
/// next, so "Finished N" follows each coroutine's end, and the second part matches libcoro's
/// output line for line.
#[test]
fn libcoro_example_interleaves_fifo() {
    fn recursive(log: &Log, deep: u32, id: u32) {
        say(log, format!("{id}: recursive step {deep}"));
        sigcoro::yield_now();
        if deep < 2 {
            recursive(log, deep + 1, id);
        }
        say(log, format!("{id}: finish recursive step {deep}"));
    }
    fn tree(log: Log, handles: Handles, id: u32) -> u32 {
        say(&log, format!("{id}: coro line is started"));
        sigcoro::yield_now();
        if id > 1 {
            say(&log, format!("{id}: coro line end"));
        } else {
            say(&log, format!("{id}: coro line next"));
            let (l, h) = (log.clone(), handles.clone());
            handles
                .lock()
                .unwrap()
                .push(Some(sigcoro::spawn(move || tree(l, h, id + 1))));
        }
        sigcoro::yield_now();
        id
    }

    let log: Log = Arc::default();
    let l = log.clone();
    // A deterministic interleaving: no preemption.
    let rt = rt_no_preempt(1);
    rt.block_on(move || {
        say(&l, "Start main".into());
        let coros: Vec<_> = (0..3u32)
            .map(|id| {
                let l = l.clone();
                sigcoro::spawn(move || {
                    say(&l, format!("{id}: coro is started"));
                    sigcoro::yield_now();
                    recursive(&l, 0, id);
                    id
                })
            })
            .collect();
        for c in coros {
            say(&l, format!("Finished {}", c.join().unwrap()));
        }
        say(&l, "Finished simple".into());
        let handles: Handles = Arc::default();
        let (l2, h2) = (l.clone(), handles.clone());
        handles
            .lock()
            .unwrap()
            .push(Some(sigcoro::spawn(move || tree(l2, h2, 0))));
        let mut next = 0;
        loop {
            let h = {
                let mut hs = handles.lock().unwrap();
                if next == hs.len() {
                    break;
                }
                next += 1;
                hs[next - 1].take().expect("joined once")
            };
            say(&l, format!("Finished {}", h.join().unwrap()));
        }
        say(&l, "Finish main".into());
    });
    let mut expected = vec!["Start main".to_string()];
    expected.extend((0..3).map(|i| format!("{i}: coro is started")));
    for step in 0..3 {
        expected.extend((0..3).map(|i| format!("{i}: recursive step {step}")));
    }
    for i in 0..3 {
        expected.extend((0..3).rev().map(|step| format!("{i}: finish recursive step {step}")));
        expected.push(format!("Finished {i}"));
    }
    expected.push("Finished simple".into());
    expected.extend(
        [
            "0: coro line is started",
            "0: coro line next",
            "1: coro line is started",
            "Finished 0",
            "1: coro line next",
            "2: coro line is started",
            "Finished 1",
            "2: coro line end",
            "Finished 2",
            "Finish main",
        ]
        .map(String::from),
    );
    assert_eq!(*log.lock().unwrap(), expected);
}

#[test]
fn spawn_join_values_and_panics() {
    let rt = rt(2);
    let sum = rt.block_on(|| {
        (0..1000u64)
            .map(|i| sigcoro::spawn(move || i * 2))
            .map(|h| h.join().unwrap())
            .sum::<u64>()
    });
    assert_eq!(sum, 999_000);
    // Many panics at once: each reaches its joiner, with its payload, and nothing else.
    let outcomes = rt.block_on(|| {
        let hs: Vec<_> = (0..500u32)
            .map(|i| {
                sigcoro::spawn(move || {
                    sigcoro::yield_now();
                    if i % 2 == 0 {
                        panic!("coroutine {i} fails");
                    }
                    i
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join()).collect::<Vec<_>>()
    });
    for (i, o) in outcomes.into_iter().enumerate() {
        match o {
            Ok(v) => assert_eq!(v as usize, i),
            Err(e) => {
                assert!(i % 2 == 0 && e.is_panic());
                assert_eq!(
                    *e.into_panic().downcast::<String>().unwrap(),
                    format!("coroutine {i} fails")
                );
            }
        }
    }
    // block_on re-raises a panic.
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rt.block_on(|| panic!("top"))));
    assert_eq!(*caught.unwrap_err().downcast::<&str>().unwrap(), "top");
    assert_eq!(rt.shutdown().alive, 0);
}

#[test]
fn names_ids_and_current() {
    let rt = rt(1);
    let (name, id, id2) = rt.block_on(|| {
        let h = sigcoro::Builder::new().name("worker-7").spawn(|| {
            let me = sigcoro::current();
            (me.name().map(String::from), me.id())
        });
        let h = h.unwrap();
        let id2 = h.thread().id();
        let (name, id) = h.join().unwrap();
        (name, id, id2)
    });
    assert_eq!(name.as_deref(), Some("worker-7"));
    assert_eq!(id, id2);
}

#[test]
fn apis_outside_a_runtime_say_so() {
    for (what, f) in [
        ("yield_now", Box::new(sigcoro::yield_now) as Box<dyn Fn()>),
        ("sleep_until", Box::new(|| sigcoro::sleep(Duration::from_millis(1)))),
        ("park", Box::new(sigcoro::park)),
        ("current", Box::new(|| drop(sigcoro::current()))),
        ("spawn", Box::new(|| drop(sigcoro::spawn(|| ())))),
    ] {
        let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_err();
        let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(msg.contains("outside") && msg.contains(what), "{what}: {msg}");
    }
    let err = sigcoro::Builder::new().spawn(|| ()).unwrap_err();
    assert!(err.to_string().contains("outside a runtime"), "{err}");
    assert!(Runtime::builder().workers(0).build().is_err());
    let err = Runtime::builder().stack_size(100).build().unwrap_err();
    assert!(err.to_string().contains("too small"), "{err}");
}

#[test]
fn park_unpark_tokens_and_sleep_keeps_them() {
    let rt = rt(2);
    rt.block_on(|| {
        // A token set before park makes park return at once.
        sigcoro::current().unpark();
        sigcoro::park();
        // sleep does not eat a token: the park after it returns at once.
        sigcoro::current().unpark();
        sigcoro::sleep(Duration::from_millis(2));
        sigcoro::park();
        // park_timeout returns after its deadline without a token.
        let t = Instant::now();
        sigcoro::park_timeout(Duration::from_millis(5));
        assert!(t.elapsed() >= Duration::from_millis(5));
    });
    // Unparking from a plain thread wakes a coroutine parked on a worker.
    let flag = Arc::new(AtomicUsize::new(0));
    let f = flag.clone();
    let h = rt.spawn(move || {
        while f.load(Ordering::Acquire) == 0 {
            sigcoro::park();
        }
        7
    });
    std::thread::sleep(Duration::from_millis(5));
    flag.store(1, Ordering::Release);
    h.thread().unpark();
    assert_eq!(h.join().unwrap(), 7);
}

#[test]
fn sleepers_wake_in_deadline_order() {
    const N: u64 = 100_000;
    let order = Arc::new(StdMutex::new(Vec::with_capacity(N as usize)));
    let o = order.clone();
    // Timer order, not preemption, is under test: a preempted sleeper would record late.
    let rt = rt_no_preempt(1);
    rt.block_on(move || {
        // Far enough ahead that the sleepers arm their timers before the first is due, on a
        // machine that is not too busy; those that arm too late (the deadline passed before they
        // slept) wake at once and are left out of the order checked below.
        let base = Instant::now() + Duration::from_secs(3);
        let hs: Vec<_> = (0..N)
            .map(|i| {
                let o = o.clone();
                // A scrambled but deterministic deadline in 0..200 ms past the base.
                let offset = i.wrapping_mul(2_654_435_761) % 200_000;
                sigcoro::spawn(move || {
                    let deadline = base + Duration::from_micros(offset);
                    let in_time = Instant::now() < deadline;
                    sigcoro::sleep_until(deadline);
                    o.lock().unwrap().push((offset, in_time));
                })
            })
            .collect();
        hs.into_iter().for_each(|h| h.join().unwrap());
    });
    let order = order.lock().unwrap();
    assert_eq!(order.len(), N as usize);
    let in_time: Vec<u64> = order.iter().filter(|(_, t)| *t).map(|(o, _)| *o).collect();
    assert!(
        in_time.len() >= N as usize / 10,
        "only {} of {N} sleepers armed before their deadline: nothing to check",
        in_time.len()
    );
    assert!(
        in_time.windows(2).all(|w| w[0] <= w[1]),
        "sleepers woke out of deadline order"
    );
}

#[test]
fn thread_locals_never_change_under_a_coroutine() {
    thread_local! {
        static WORKER: Cell<u64> = const { Cell::new(0) };
    }
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let rt = rt(4);
    let bad = rt.block_on(|| {
        let hs: Vec<_> = (0..400)
            .map(|_| {
                sigcoro::spawn(|| {
                    let mine = WORKER.with(|w| {
                        if w.get() == 0 {
                            w.set(NEXT.fetch_add(1, Ordering::Relaxed));
                        }
                        w.get()
                    });
                    (0..1000)
                        .filter(|_| {
                            sigcoro::yield_now();
                            WORKER.with(Cell::get) != mine
                        })
                        .count()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum::<usize>()
    });
    assert_eq!(bad, 0);
}

coroutine_local! {
    static COUNTER: Cell<u32> = Cell::new(0);
}

#[test]
fn coroutine_locals_are_per_coroutine() {
    let values = rt(2).block_on(|| {
        let hs: Vec<_> = (0..50u32)
            .map(|i| {
                sigcoro::spawn(move || {
                    for _ in 0..i {
                        COUNTER.with(|c| c.set(c.get() + 1));
                        sigcoro::yield_now();
                    }
                    COUNTER.with(Cell::get)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect::<Vec<_>>()
    });
    assert_eq!(values, (0..50).collect::<Vec<_>>());
}

#[test]
fn scoped_coroutines_borrow_and_are_joined() {
    rt(2).block_on(|| {
        let mut data = vec![1u64, 2, 3, 4];
        let total = AtomicU64::new(0);
        sigcoro::scope(|s| {
            for x in data.iter_mut() {
                let total = &total;
                s.spawn(move || {
                    sigcoro::yield_now();
                    *x *= 10;
                    total.fetch_add(*x, Ordering::Relaxed);
                });
            }
            let h = s.spawn(|| 5);
            assert_eq!(h.join().unwrap(), 5);
        });
        assert_eq!(data, [10, 20, 30, 40]);
        assert_eq!(total.load(Ordering::Relaxed), 100);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            sigcoro::scope(|s| {
                s.spawn(|| panic!("inner"));
            })
        }));
        assert!(r.is_err());
    });
}

struct DropFlag(Arc<AtomicUsize>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn cancellation_unwinds_at_the_next_wait() {
    let rt = rt(2);
    let drops = Arc::new(AtomicUsize::new(0));
    let lock = Arc::new(Mutex::new(0u32));
    // A coroutine parked while holding a lock: cancelling unwinds it, the guard is released.
    let (d, l) = (drops.clone(), lock.clone());
    let h = rt.spawn(move || {
        let _flag = DropFlag(d);
        let _guard = l.lock();
        loop {
            sigcoro::park();
        }
    });
    while lock.try_lock().is_some() {
        std::thread::sleep(Duration::from_millis(1));
    }
    h.cancel();
    assert!(h.join().unwrap_err().is_cancelled());
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    assert!(lock.try_lock().is_some(), "the cancelled coroutine released its lock");
    // A coroutine that catches the unwind cannot swallow it.
    let h = rt.spawn(|| {
        let r = std::panic::catch_unwind(|| sigcoro::sleep(Duration::from_secs(60)));
        assert!(r.is_err());
        sigcoro::yield_now();
        "swallowed"
    });
    std::thread::sleep(Duration::from_millis(5));
    h.cancel();
    assert!(h.join().unwrap_err().is_cancelled());
}

#[test]
fn shutdown_unwinds_parked_coroutines() {
    let rt = rt(2);
    let drops = Arc::new(AtomicUsize::new(0));
    let spawned_after = Arc::new(StdMutex::new(None));
    for i in 0..100 {
        let d = drops.clone();
        let s = spawned_after.clone();
        rt.spawn(move || {
            let _flag = DropFlag(d);
            let _probe = SpawnProbe(s);
            if i % 2 == 0 {
                sigcoro::park();
            } else {
                sigcoro::sleep(Duration::from_secs(3600));
            }
        });
    }
    while rt.alive() < 100 || drops.load(Ordering::SeqCst) > 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(20));
    let report = rt.shutdown();
    assert_eq!(report.alive, 100);
    assert_eq!(drops.load(Ordering::SeqCst), 100);
    let msg = spawned_after.lock().unwrap().clone().expect("a probe ran");
    assert!(msg.contains("shut down"), "{msg}");
}

/// Tries to spawn from a destructor that runs during shutdown, and records the error.
struct SpawnProbe(Arc<StdMutex<Option<String>>>);
impl Drop for SpawnProbe {
    fn drop(&mut self) {
        if let Err(e) = sigcoro::Builder::new().spawn(|| ()) {
            *self.0.lock().unwrap() = Some(e.to_string());
        }
    }
}

#[test]
fn a_million_messages_across_four_workers() {
    const PRODUCERS: u64 = 8;
    const PER: u64 = 125_000;
    let (sum, count) = rt(4).block_on(|| {
        let (tx, rx) = channel::bounded::<u64>(1024);
        let (out_tx, out_rx) = channel::unbounded::<(u64, u64)>();
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let tx = tx.clone();
                sigcoro::spawn(move || (0..PER).for_each(|i| tx.send(p * PER + i).unwrap()))
            })
            .collect();
        drop(tx);
        let consumers: Vec<_> = (0..8)
            .map(|_| {
                let (rx, out) = (rx.clone(), out_tx.clone());
                sigcoro::spawn(move || {
                    let (mut s, mut n) = (0u64, 0u64);
                    for v in rx.iter() {
                        s += v;
                        n += 1;
                    }
                    out.send((s, n)).unwrap();
                })
            })
            .collect();
        drop(out_tx);
        producers.into_iter().for_each(|h| h.join().unwrap());
        consumers.into_iter().for_each(|h| h.join().unwrap());
        out_rx.iter().fold((0, 0), |(s, n), (s2, n2)| (s + s2, n + n2))
    });
    let total = PRODUCERS * PER;
    assert_eq!(count, total);
    assert_eq!(sum, total * (total - 1) / 2);
}

#[test]
fn mutex_contention_between_coroutines_on_two_workers() {
    let n = rt(2).block_on(|| {
        let m = Arc::new(Mutex::new(0u64));
        let hs: Vec<_> = (0..64)
            .map(|_| {
                let m = m.clone();
                sigcoro::spawn(move || {
                    for i in 0..2000 {
                        let mut g = m.lock();
                        *g += 1;
                        if i % 64 == 0 {
                            sigcoro::yield_now();
                        }
                    }
                })
            })
            .collect();
        hs.into_iter().for_each(|h| h.join().unwrap());
        *m.lock()
    });
    assert_eq!(n, 64 * 2000);
}

#[test]
fn select_waits_on_coroutines() {
    rt(2).block_on(|| {
        let (tx1, rx1) = channel::unbounded::<u32>();
        let (_tx2, rx2) = channel::unbounded::<u32>();
        let h = sigcoro::spawn(move || {
            sigcoro::sleep(Duration::from_millis(5));
            tx1.send(9).unwrap();
        });
        let got = sigcoro::select! {
            recv(rx1) -> v => v.unwrap(),
            recv(rx2) -> v => v.unwrap() + 100,
        };
        assert_eq!(got, 9);
        h.join().unwrap();
        let timed_out = sigcoro::select! {
            recv(rx2) -> _ => false,
            default(Duration::from_millis(5)) => true,
        };
        assert!(timed_out);
    });
}

/// A worker that spawns several coroutines while another worker sleeps idle hands that worker
/// some of them at once (they have not started, so they may go anywhere): a spawn storm uses
/// every worker, not only the spawner's.
#[test]
fn spawned_coroutines_spread_to_an_idle_worker() {
    let rt = rt_no_preempt(2);
    let spread = rt.block_on(|| {
        // The other worker has nothing to do: it goes idle. Retry a bounded number of times
        // in case this machine is slow to get it there.
        (0..100).any(|_| {
            sigcoro::sleep(Duration::from_millis(10));
            let names: std::collections::HashSet<String> = (0..8)
                .map(|_| sigcoro::spawn(|| std::thread::current().name().unwrap().to_owned()))
                .collect::<Vec<_>>()
                .into_iter()
                .map(|h| h.join().unwrap())
                .collect();
            names.len() == 2
        })
    });
    assert!(spread, "no spawned coroutine ever ran on the idle worker");
}

/// Coroutines that keep spawning (and handing tasks to the idle worker) while the runtime
/// shuts down: every spawned closure either runs or is dropped unrun, none is stranded.
#[test]
fn spawns_racing_a_shutdown_lose_no_closure() {
    struct Count(Arc<AtomicUsize>);
    impl Drop for Count {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    for _ in 0..20 {
        let made = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicUsize::new(0));
        let rt = rt(2);
        let (m, d) = (made.clone(), dropped.clone());
        drop(rt.spawn(move || {
            loop {
                for _ in 0..64 {
                    let count = Count(d.clone());
                    m.fetch_add(1, Ordering::SeqCst);
                    // Fails (and drops the closure) once the shutdown began.
                    if let Ok(h) = sigcoro::Builder::new().spawn(move || drop(count)) {
                        drop(h);
                    }
                }
                sigcoro::yield_now(); // unwinds once cancelled by the shutdown
            }
        }));
        std::thread::sleep(Duration::from_millis(5));
        rt.shutdown();
        assert_eq!(made.load(Ordering::SeqCst), dropped.load(Ordering::SeqCst));
    }
}
