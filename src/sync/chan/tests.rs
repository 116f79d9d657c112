//! Edge cases of the channels' blocked paths inside a runtime: values handed to a waiter that
//! is then cancelled or times out, cancelled blocked senders, wakeups across threads.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::sync::channel::{self, RecvTimeoutError, SendTimeoutError, TryRecvError};
use crate::{Runtime, spawn, yield_now};

fn one_worker() -> Runtime {
    Runtime::builder().workers(1).build().expect("runtime")
}

/// Lets every other runnable coroutine of this worker run until it blocks.
fn settle() {
    for _ in 0..4 {
        yield_now();
    }
}

#[test]
fn cancelled_receiver_gives_handed_value_back_to_queue() {
    // One yield: the receiver is still spinning (it yielded once and sits in the run queue)
    // when the value is handed to it. Four: it has parked.
    for yields in [1, 4] {
        one_worker().block_on(move || {
            let (tx, rx) = channel::unbounded::<u32>();
            let rx2 = rx.clone();
            let r = spawn(move || rx2.recv());
            for _ in 0..yields {
                yield_now(); // r blocks in recv
            }
            tx.send(1).unwrap(); // handed straight to r
            r.cancel(); // before r runs again
            tx.send(2).unwrap(); // nobody blocked: queued behind
            assert!(r.join().unwrap_err().is_cancelled());
            // The value comes back in front of the later one.
            assert_eq!(rx.try_recv(), Ok(1));
            assert_eq!(rx.try_recv(), Ok(2));
            assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        });
    }
}

#[test]
fn cancelled_receiver_passes_handed_value_to_next_receiver() {
    for cap in [None, Some(0), Some(2)] {
        one_worker().block_on(move || {
            let (tx, rx) = match cap {
                None => channel::unbounded::<u32>(),
                Some(c) => channel::bounded::<u32>(c),
            };
            let (rx1, rx2) = (rx.clone(), rx.clone());
            let r1 = spawn(move || rx1.recv());
            settle();
            let r2 = spawn(move || rx2.recv());
            settle(); // both block, r1 first
            assert_eq!(tx.try_send(7), Ok(())); // to r1, even on a rendezvous channel
            r1.cancel();
            assert!(r1.join().unwrap_err().is_cancelled());
            assert_eq!(r2.join().unwrap(), Ok(7));
            assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        });
    }
}

#[test]
fn spinning_receivers_fed_by_a_thread_get_every_value_once_in_order() {
    // Two receivers alone on a worker spin (announce, yield, look), replacing each other in
    // the spinner slot, while an OS thread sends: every value arrives exactly once, and each
    // receiver sees its values in the order they were sent.
    const N: u64 = 20_000;
    let (tx, rx) = channel::unbounded::<u64>();
    let rt = one_worker();
    let receivers = collectors(&rt, rx, 2);
    let sender = std::thread::spawn(move || {
        for v in 0..N {
            tx.send(v).unwrap();
            // Slower than the receivers, so that they mostly find the channel empty and spin.
            for _ in 0..(v % 7) * 64 {
                std::hint::spin_loop();
            }
        }
    });
    sender.join().unwrap();
    // One sender: its values are tagged 0 << 32 | seq, the values themselves.
    check_tagged(receivers.into_iter().map(|r| r.join().unwrap()), 1, N);
}

/// `n` coroutines on `rt` collecting what they receive from `rx` until it disconnects (the
/// caller's `rx` is consumed, so the senders' drop ends them).
fn collectors(rt: &Runtime, rx: channel::Receiver<u64>, n: usize) -> Vec<crate::JoinHandle<Vec<u64>>> {
    (0..n)
        .map(|_| {
            let rx = rx.clone();
            rt.spawn(move || rx.iter().collect::<Vec<u64>>())
        })
        .collect()
}

/// Disconnection while a receiver spins (announced, yielded once).
#[test]
fn a_spinner_sees_the_disconnection() {
    one_worker().block_on(|| {
        let (tx, rx) = channel::unbounded::<u32>();
        let r = spawn(move || rx.recv());
        yield_now(); // r announces and yields
        drop(tx);
        assert!(r.join().unwrap().is_err());
    });
}

/// A spinner cancelled before anything was handed to it must leave the slot.
#[test]
fn a_cancelled_spinner_leaves_the_slot() {
    for variant in 0..2 {
        one_worker().block_on(move || {
            let (tx, rx) = channel::unbounded::<u32>();
            let rx1 = rx.clone();
            let rx2 = rx.clone();
            let r1 = spawn(move || rx1.recv());
            let r2 = if variant == 1 {
                Some(spawn(move || rx2.recv()))
            } else {
                None
            };
            yield_now(); // r1 (and r2) announce and yield
            let victim = if variant == 1 { r2.as_ref().unwrap() } else { &r1 };
            victim.cancel();
            yield_now();
            tx.send(1).unwrap();
            tx.send(2).unwrap();
            if variant == 1 {
                assert!(r2.unwrap().join().unwrap_err().is_cancelled());
                assert_eq!(r1.join().unwrap(), Ok(1));
                assert_eq!(rx.try_recv(), Ok(2));
            } else {
                assert!(r1.join().unwrap_err().is_cancelled());
                assert_eq!(rx.try_recv(), Ok(1));
                assert_eq!(rx.try_recv(), Ok(2));
            }
        });
    }
}

/// A value sent while one receiver is blocked (linked) and another spins goes to the blocked
/// one: the spinner comes after the linked receivers.
#[test]
fn linked_receivers_are_served_before_the_spinner() {
    one_worker().block_on(|| {
        let (tx, rx) = channel::unbounded::<u32>();
        let (rx1, rx2) = (rx.clone(), rx.clone());
        let r1 = spawn(move || rx1.recv());
        settle(); // r1 spun, linked its node and parked
        let r2 = spawn(move || rx2.recv());
        yield_now(); // r2 announced itself in the spinner slot and yielded
        tx.send(1).unwrap();
        tx.send(2).unwrap();
        assert_eq!(r1.join().unwrap(), Ok(1));
        assert_eq!(r2.join().unwrap(), Ok(2));
    });
}

// Several receivers on two workers, senders on both workers and on OS threads; tagged values.
#[test]
fn spinners_across_workers_and_threads_get_every_value_once_in_order() {
    let _dog = Watchdog::new("spinners_across_workers", 120);
    for round in 0..3 {
        let rt = Runtime::builder().workers(2).build().expect("runtime");
        const PER: u64 = 20_000;
        let cap = [None, Some(1), Some(4)][round % 3];
        let (tx, rx) = match cap {
            None => channel::unbounded::<u64>(),
            Some(c) => channel::bounded::<u64>(c),
        };
        let receivers = collectors(&rt, rx, 4);
        let co_senders: Vec<_> = (0..2u64)
            .map(|id| {
                let tx = tx.clone();
                rt.spawn(move || {
                    for i in 0..PER {
                        tx.send(id << 32 | i).unwrap();
                        if i % 3 == 0 {
                            yield_now();
                        }
                    }
                })
            })
            .collect();
        let th_senders: Vec<_> = (2..4u64)
            .map(|id| {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    for i in 0..PER {
                        tx.send(id << 32 | i).unwrap();
                        for _ in 0..(i % 5) * 32 {
                            std::hint::spin_loop();
                        }
                    }
                })
            })
            .collect();
        drop(tx);
        th_senders.into_iter().for_each(|t| t.join().unwrap());
        co_senders.into_iter().for_each(|t| t.join().unwrap());
        let got = receivers.into_iter().map(|r| r.join().unwrap());
        check_tagged(got, 4, PER);
    }
}

/// As the mpmc stress, with a tiny preemption slice and busy receivers (signal preemption
/// lands anywhere outside the lock, including between the announcement and the yield).
#[test]
fn preempted_spinners_get_every_value_once_in_order() {
    let _dog = Watchdog::new("preempted_spinners", 120);
    for round in 0..2 {
        let rt = Runtime::builder()
            .workers(2)
            .preempt(Some(Duration::from_micros(20)))
            .build()
            .expect("runtime");
        const PER: u64 = 20_000;
        let (tx, rx) = if round % 2 == 0 {
            channel::unbounded::<u64>()
        } else {
            channel::bounded::<u64>(2)
        };
        let receivers: Vec<_> = (0..4)
            .map(|k| {
                let rx = rx.clone();
                rt.spawn(move || {
                    let mut out = Vec::new();
                    let mut x = 0u64;
                    while let Ok(v) = rx.recv() {
                        out.push(v);
                        for _ in 0..(v % 13) * (k + 1) * 20 {
                            x = x.wrapping_mul(31).wrapping_add(v);
                            std::hint::black_box(x);
                        }
                    }
                    out
                })
            })
            .collect();
        drop(rx);
        let co_senders: Vec<_> = (0..2u64)
            .map(|id| {
                let tx = tx.clone();
                rt.spawn(move || {
                    let mut x = 0u64;
                    for i in 0..PER {
                        tx.send(id << 32 | i).unwrap();
                        for _ in 0..(i % 11) * 30 {
                            x = x.wrapping_mul(31).wrapping_add(i);
                            std::hint::black_box(x);
                        }
                    }
                })
            })
            .collect();
        let th = {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for i in 0..PER {
                    tx.send(2u64 << 32 | i).unwrap();
                }
            })
        };
        drop(tx);
        th.join().unwrap();
        co_senders.into_iter().for_each(|t| t.join().unwrap());
        let got = receivers.into_iter().map(|r| r.join().unwrap());
        check_tagged(got, 3, PER);
    }
}

/// Checks what the receivers got of `senders` senders' `per` values each, tagged
/// `sender << 32 | seq`: each receiver saw every sender's values in order, and together they
/// got every value exactly once.
fn check_tagged(got: impl Iterator<Item = Vec<u64>>, senders: u64, per: u64) {
    let mut all = Vec::new();
    for got in got {
        let mut last = vec![None::<u64>; senders as usize];
        for &v in &got {
            let (id, i) = ((v >> 32) as usize, v & 0xffff_ffff);
            assert!(last[id].is_none_or(|l| l < i), "out of order");
            last[id] = Some(i);
        }
        all.extend(got);
    }
    all.sort_unstable();
    let want: Vec<u64> = (0..senders)
        .flat_map(|id| (0..per).map(move |i| id << 32 | i))
        .collect();
    assert!(all == want, "values lost or received twice");
}

/// Aborts the test process if a test outlives `secs`: a hang fails the suite instead of
/// stalling it.
struct Watchdog(Arc<std::sync::atomic::AtomicBool>);

impl Watchdog {
    fn new(name: &'static str, secs: u64) -> Self {
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let d = done.clone();
        std::thread::spawn(move || {
            let end = Instant::now() + Duration::from_secs(secs);
            while Instant::now() < end {
                if d.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            eprintln!("{name}: still running after {secs} s, a hang: aborting");
            std::process::abort();
        });
        Watchdog(done)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[test]
fn receiver_timing_out_after_handoff_keeps_value() {
    one_worker().block_on(|| {
        let (tx, rx) = channel::unbounded::<u32>();
        let r = spawn(move || rx.recv_timeout(Duration::from_millis(2)));
        settle();
        tx.send(5).unwrap();
        // Hold the worker past the receiver's deadline: it wakes late, but its value is there.
        let until = Instant::now() + Duration::from_millis(10);
        crate::no_preempt(|| while Instant::now() < until {});
        assert_eq!(r.join().unwrap(), Ok(5));
    });
}

#[test]
fn receiver_timeout_leaves_the_list() {
    one_worker().block_on(|| {
        let (tx, rx) = channel::unbounded::<u32>();
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(2)),
            Err(RecvTimeoutError::Timeout)
        );
        tx.send(3).unwrap(); // must not go to the departed receiver
        assert_eq!(rx.try_recv(), Ok(3));
    });
}

/// Counts drops, to check a value is neither lost nor dropped twice.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn cancelled_blocked_senders_drop_their_values_once() {
    for cap in [0, 1] {
        one_worker().block_on(move || {
            let drops = Arc::new(AtomicUsize::new(0));
            let (tx, rx) = channel::bounded::<Counted>(cap);
            if cap == 1 {
                tx.send(Counted(drops.clone())).unwrap(); // full
            }
            let (tx1, d1) = (tx.clone(), drops.clone());
            let s1 = spawn(move || tx1.send(Counted(d1)).is_ok());
            let (tx2, d2) = (tx.clone(), drops.clone());
            let s2 = spawn(move || tx2.send(Counted(d2)).is_ok());
            settle(); // both block, s1 first
            s1.cancel();
            assert!(s1.join().unwrap_err().is_cancelled());
            assert_eq!(
                drops.load(Ordering::SeqCst),
                1,
                "the cancelled sender's value is dropped"
            );
            // s2 is still queued and completes when a receiver comes.
            let first = rx.recv().unwrap();
            drop(first);
            if cap == 1 {
                drop(rx.recv().unwrap()); // s2's value, moved into the queue
            }
            assert!(s2.join().unwrap());
            assert_eq!(rx.try_recv().err(), Some(TryRecvError::Empty));
            assert_eq!(drops.load(Ordering::SeqCst), 3 - usize::from(cap == 0));
        });
    }
}

#[test]
fn blocked_senders_complete_in_order() {
    one_worker().block_on(|| {
        let (tx, rx) = channel::bounded::<u32>(1);
        tx.send(0).unwrap();
        let senders: Vec<_> = (1..=3)
            .map(|i| {
                let tx = tx.clone();
                let h = spawn(move || tx.send(i).unwrap());
                settle();
                h
            })
            .collect();
        assert_eq!(rx.len(), 1);
        let got: Vec<u32> = (0..4).map(|_| rx.recv().unwrap()).collect();
        assert_eq!(got, [0, 1, 2, 3]);
        senders.into_iter().for_each(|h| h.join().unwrap());
    });
}

#[test]
fn blocked_waiters_fail_on_disconnect() {
    one_worker().block_on(|| {
        let (tx, rx) = channel::unbounded::<u32>();
        let r = spawn(move || rx.recv());
        settle();
        drop(tx);
        assert!(r.join().unwrap().is_err());

        let (tx, rx) = channel::bounded::<String>(0);
        let s = spawn(move || tx.send_timeout("back".into(), Duration::from_secs(10)));
        settle();
        drop(rx);
        match s.join().unwrap() {
            Err(SendTimeoutError::Disconnected(v)) => assert_eq!(v, "back"),
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn ping_pong_across_threads_and_workers() {
    const N: u64 = 20_000;
    // A coroutine and a plain thread.
    let rt = one_worker();
    let (to_thread, thread_rx) = channel::unbounded::<u64>();
    let (to_co, co_rx) = channel::bounded::<u64>(0);
    let t = std::thread::spawn(move || {
        for v in thread_rx.iter() {
            to_co.send(v + 1).unwrap();
        }
    });
    let v = rt.block_on(move || {
        let mut v = 0;
        for _ in 0..N {
            to_thread.send(v).unwrap();
            v = co_rx.recv().unwrap();
        }
        v
    });
    t.join().unwrap();
    assert_eq!(v, N);

    // Two coroutines on two workers.
    let rt = Runtime::builder().workers(2).build().expect("runtime");
    let (to_b, b_rx) = channel::unbounded::<u64>();
    let (to_a, a_rx) = channel::unbounded::<u64>();
    let b = rt.spawn(move || {
        for v in b_rx.iter() {
            to_a.send(v + 1).unwrap();
        }
    });
    let a = rt.spawn(move || {
        let mut v = 0;
        for _ in 0..N {
            to_b.send(v).unwrap();
            v = a_rx.recv().unwrap();
        }
        v
    });
    assert_eq!(a.join().unwrap(), N);
    b.join().unwrap();
}

#[test]
fn many_pairs_on_one_worker() {
    // Ten ping-pong pairs share a worker: its run queue is busy, so waiters stop spinning and
    // park; every value still arrives, in order.
    const N: u64 = 2_000;
    one_worker().block_on(|| {
        let pairs: Vec<_> = (0..10)
            .map(|_| {
                let (to_b, b_rx) = channel::unbounded::<u64>();
                let (to_a, a_rx) = channel::bounded::<u64>(1);
                let b = spawn(move || {
                    for v in b_rx.iter() {
                        to_a.send(v + 1).unwrap();
                    }
                });
                let a = spawn(move || {
                    let mut v = 0;
                    for _ in 0..N {
                        to_b.send(v).unwrap();
                        let got = a_rx.recv().unwrap();
                        assert_eq!(got, v + 1);
                        v = got;
                    }
                    v
                });
                (a, b)
            })
            .collect();
        for (a, b) in pairs {
            assert_eq!(a.join().unwrap(), N);
            b.join().unwrap();
        }
    });
}

#[test]
fn select_sends_to_blocked_receiver_on_rendezvous() {
    one_worker().block_on(|| {
        let (tx, rx) = channel::bounded::<u32>(0);
        let r = spawn(move || rx.recv());
        settle(); // r blocks (parked)
        let sent = crate::select! {
            send(tx, 9) -> res => res.is_ok(),
            default => false,
        };
        assert!(sent, "a blocked receiver makes a rendezvous send ready");
        assert_eq!(r.join().unwrap(), Ok(9));
    });
}
