//! Tests of `sigcoro::sync` with plain OS threads (no runtime): the primitives park threads
//! the same way they park coroutines.

mod common;

use common::no_hang;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use sigcoro::select;
use sigcoro::sync::channel::{
    self, RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};
use sigcoro::sync::{Barrier, Condvar, Mutex, RwLock, Select, Semaphore, WaitGroup, oneshot};

const MS: Duration = Duration::from_millis(1);

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn auto_traits() {
    assert_send_sync::<channel::Sender<String>>();
    assert_send_sync::<channel::Receiver<String>>();
    assert_send_sync::<Mutex<String>>();
    assert_send_sync::<RwLock<String>>();
    assert_send_sync::<Condvar>();
    assert_send_sync::<Barrier>();
    assert_send_sync::<Semaphore>();
    assert_send_sync::<WaitGroup>();
    assert_send_sync::<oneshot::Sender<String>>();
    assert_send_sync::<oneshot::Receiver<String>>();
}

// ---------------------------------------------------------------------------------------------
// Channels

/// `producers` threads send `per` values each (tagged with the producer) through the channel
/// to `consumers` threads. Checks every value arrives exactly once and that each consumer sees
/// each producer's values in order (FIFO).
fn mpmc(tx: channel::Sender<u64>, rx: channel::Receiver<u64>, producers: u64, per: u64, consumers: usize) {
    let total = producers * per;
    let senders: Vec<_> = (0..producers)
        .map(|p| {
            let tx = tx.clone();
            thread::spawn(move || {
                for i in 0..per {
                    tx.send(p * per + i).unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    let receivers: Vec<_> = (0..consumers)
        .map(|_| {
            let rx = rx.clone();
            thread::spawn(move || {
                let mut last = vec![None::<u64>; producers as usize];
                let mut got = Vec::new();
                for v in &rx {
                    let p = (v / per) as usize;
                    assert!(last[p].is_none_or(|l| l < v), "per-producer FIFO order broken");
                    last[p] = Some(v);
                    got.push(v);
                }
                got
            })
        })
        .collect();
    drop(rx);
    for s in senders {
        s.join().unwrap();
    }
    let mut seen = vec![false; total as usize];
    let (mut count, mut sum) = (0u64, 0u64);
    for r in receivers {
        for v in r.join().unwrap() {
            assert!(
                !std::mem::replace(&mut seen[v as usize], true),
                "value {v} received twice"
            );
            count += 1;
            sum += v;
        }
    }
    assert_eq!(count, total);
    assert_eq!(sum, total * (total - 1) / 2);
}

#[test]
fn million_messages_bounded_4x4() {
    let (tx, rx) = channel::bounded(256);
    no_hang(move || mpmc(tx, rx, 4, 250_000, 4));
}

#[test]
fn unbounded_4x4() {
    let (tx, rx) = channel::unbounded();
    no_hang(move || mpmc(tx, rx, 4, 50_000, 4));
}

#[test]
fn small_capacity_4x4() {
    let (tx, rx) = channel::bounded(1);
    no_hang(move || mpmc(tx, rx, 4, 5_000, 4));
}

#[test]
fn rendezvous_4x4() {
    let (tx, rx) = channel::bounded(0);
    no_hang(move || mpmc(tx, rx, 4, 5_000, 4));
}

#[test]
fn fifo_single_consumer() {
    let (tx, rx) = channel::bounded(3);
    let h = thread::spawn(move || (0..1000).for_each(|i| tx.send(i).unwrap()));
    assert!(rx.iter().eq(0..1000));
    h.join().unwrap();
}

#[test]
fn try_ops_and_lengths() {
    let (tx, rx) = channel::bounded(2);
    assert_eq!(tx.capacity(), Some(2));
    assert_eq!(rx.capacity(), Some(2));
    assert!(rx.is_empty());
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    tx.try_send(1).unwrap();
    tx.try_send(2).unwrap();
    assert!(tx.is_full());
    assert_eq!(tx.len(), 2);
    assert_eq!(tx.try_send(3), Err(TrySendError::Full(3)));
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), [1, 2]);
    drop(rx);
    let err = tx.try_send(4).unwrap_err();
    assert!(err.is_disconnected());
    assert_eq!(err.into_inner(), 4);

    let (tx, rx) = channel::unbounded::<i32>();
    assert_eq!(tx.capacity(), None);
    for i in 0..10_000 {
        tx.try_send(i).unwrap();
    }
    assert_eq!(rx.len(), 10_000);
    assert!(!tx.is_full());
    drop(tx);
    assert_eq!(rx.into_iter().count(), 10_000);

    let (tx, rx) = channel::bounded::<i32>(0);
    assert_eq!(tx.try_send(1), Err(TrySendError::Full(1)), "no receiver is waiting");
    assert_eq!(rx.len(), 0);
    assert!(tx.is_full() && rx.is_empty());
}

#[test]
fn receivers_drain_then_disconnect() {
    let (tx, rx) = channel::unbounded();
    let tx2 = tx.clone();
    tx.send(1).unwrap();
    tx2.send(2).unwrap();
    drop(tx);
    assert_eq!(rx.try_recv(), Ok(1));
    drop(tx2);
    assert_eq!(rx.recv(), Ok(2));
    assert_eq!(rx.recv(), Err(RecvError));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    assert_eq!(rx.recv_timeout(MS), Err(RecvTimeoutError::Disconnected));
}

#[test]
fn blocked_receivers_wake_on_disconnect() {
    for cap in [None, Some(0), Some(4)] {
        let (tx, rx) = match cap {
            None => channel::unbounded::<i32>(),
            Some(c) => channel::bounded(c),
        };
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let rx = rx.clone();
                thread::spawn(move || rx.recv())
            })
            .collect();
        thread::sleep(20 * MS);
        drop(tx);
        for w in waiters {
            assert_eq!(w.join().unwrap(), Err(RecvError));
        }
    }
}

#[test]
fn send_to_dropped_receiver_returns_value() {
    let (tx, rx) = channel::unbounded();
    drop(rx);
    let SendError(v) = tx.send(String::from("kept")).unwrap_err();
    assert_eq!(v, "kept");

    // Blocked senders get their values back when the last receiver goes.
    for cap in [0, 1] {
        let (tx, rx) = channel::bounded(cap);
        if cap == 1 {
            tx.send(String::from("buffered")).unwrap();
        }
        let blocked: Vec<_> = (0..3)
            .map(|i| {
                let tx = tx.clone();
                thread::spawn(move || tx.send(format!("v{i}")))
            })
            .collect();
        thread::sleep(20 * MS);
        let rx2 = rx.clone();
        drop(rx);
        drop(rx2);
        let mut back: Vec<String> = blocked
            .into_iter()
            .map(|h| h.join().unwrap().unwrap_err().into_inner())
            .collect();
        back.sort();
        assert_eq!(back, ["v0", "v1", "v2"]);
    }
}

#[test]
fn bounded_send_blocks_until_room() {
    let (tx, rx) = channel::bounded(1);
    tx.send(0).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    let h = thread::spawn(move || {
        tx.send(1).unwrap();
        d.store(true, Ordering::SeqCst);
    });
    thread::sleep(30 * MS);
    assert!(!done.load(Ordering::SeqCst), "send must wait while the channel is full");
    assert_eq!(rx.recv(), Ok(0));
    h.join().unwrap();
    assert!(done.load(Ordering::SeqCst));
    assert_eq!(rx.recv(), Ok(1));
}

#[test]
fn rendezvous_send_waits_for_receiver() {
    let (tx, rx) = channel::bounded(0);
    let taken = Arc::new(AtomicBool::new(false));
    let t = taken.clone();
    let h = thread::spawn(move || {
        tx.send(5).unwrap();
        assert!(t.load(Ordering::SeqCst), "send returned before the value was taken");
    });
    thread::sleep(30 * MS);
    assert!(!h.is_finished());
    taken.store(true, Ordering::SeqCst);
    assert_eq!(rx.recv(), Ok(5));
    h.join().unwrap();

    // try_send succeeds once a receiver waits.
    let (tx, rx) = channel::bounded(0);
    let h = thread::spawn(move || rx.recv());
    let start = Instant::now();
    while let Err(TrySendError::Full(_)) = tx.try_send(9) {
        assert!(start.elapsed() < Duration::from_secs(10));
        thread::sleep(MS);
    }
    assert_eq!(h.join().unwrap(), Ok(9));
}

#[test]
fn timeouts() {
    let (tx, rx) = channel::bounded::<i32>(1);
    let t = Instant::now();
    assert_eq!(rx.recv_timeout(30 * MS), Err(RecvTimeoutError::Timeout));
    assert!(t.elapsed() >= 30 * MS);
    let t = Instant::now();
    assert_eq!(rx.recv_deadline(t + 20 * MS), Err(RecvTimeoutError::Timeout));
    assert!(t.elapsed() >= 20 * MS);

    tx.send(1).unwrap();
    let t = Instant::now();
    let err = tx.send_timeout(2, 30 * MS).unwrap_err();
    assert!(t.elapsed() >= 30 * MS);
    assert!(err.is_timeout());
    assert_eq!(err, SendTimeoutError::Timeout(2));
    assert_eq!(tx.send_deadline(3, Instant::now()), Err(SendTimeoutError::Timeout(3)));

    // Rendezvous: the offered value is withdrawn on timeout and nothing is left behind.
    let (tx, rx) = channel::bounded(0);
    let t = Instant::now();
    assert_eq!(tx.send_timeout(7, 20 * MS), Err(SendTimeoutError::Timeout(7)));
    assert!(t.elapsed() >= 20 * MS);
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));

    // A value arriving before the timeout is received.
    let (tx, rx) = channel::unbounded();
    let h = thread::spawn(move || {
        thread::sleep(10 * MS);
        tx.send(8).unwrap();
        thread::sleep(50 * MS);
    });
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(8));
    h.join().unwrap();
}

#[test]
fn error_traits() {
    fn boxed<E: std::error::Error + Send + Sync + 'static>(e: E) -> Box<dyn std::error::Error + Send + Sync> {
        Box::new(e)
    }
    assert_eq!(boxed(SendError(1)).to_string(), "sending on a disconnected channel");
    assert_eq!(boxed(TrySendError::Full(1)).to_string(), "sending on a full channel");
    assert_eq!(format!("{:?}", TrySendError::Disconnected(1)), "Disconnected(..)");
    assert!(boxed(SendTimeoutError::Timeout(1)).to_string().contains("timed out"));
    assert!(boxed(RecvError).to_string().contains("disconnected"));
    assert_eq!(boxed(TryRecvError::Empty).to_string(), "receiving on an empty channel");
    assert!(boxed(RecvTimeoutError::Timeout).to_string().contains("timed out"));
    assert_eq!(SendTimeoutError::Disconnected("x").into_inner(), "x");
    assert_eq!(TryRecvError::from(RecvError), TryRecvError::Disconnected);
}

// ---------------------------------------------------------------------------------------------
// select! and Select

#[test]
fn select_picks_ready_arm() {
    let (_tx1, rx1) = channel::unbounded::<i32>();
    let (tx2, rx2) = channel::unbounded::<i32>();
    tx2.send(2).unwrap();
    let got = select! {
        recv(rx1) -> _ => panic!("rx1 is empty"),
        recv(rx2) -> v => v.unwrap(),
    };
    assert_eq!(got, 2);

    // A send arm on a full channel is skipped for one with room.
    let (full, _keep) = channel::bounded(1);
    full.send(0).unwrap();
    let (room, room_rx) = channel::bounded(1);
    select! {
        send(full, 1) -> _ => panic!("full channel"),
        send(&room, 2) -> r => r.unwrap(),
    }
    assert_eq!(room_rx.try_recv(), Ok(2));
}

#[test]
fn select_default_and_timeout() {
    let (tx, rx) = channel::unbounded::<i32>();
    let hit = select! {
        recv(rx) -> _ => false,
        default => true,
    };
    assert!(hit);

    let t = Instant::now();
    let hit = select! {
        recv(rx) -> _ => false,
        default(30 * MS) => true,
    };
    assert!(hit);
    assert!(t.elapsed() >= 30 * MS);

    tx.send(1).unwrap();
    let got = select! {
        recv(rx) -> v => v,
        default(Duration::from_secs(10)) => panic!("a value is ready"),
    };
    assert_eq!(got, Ok(1));

    // Only a default arm.
    let t = Instant::now();
    select! { default(10 * MS) => {} }
    assert!(t.elapsed() >= 10 * MS);
}

#[test]
fn select_waits_for_other_thread() {
    no_hang(|| {
        let (tx1, rx1) = channel::bounded::<i32>(0);
        let (tx2, rx2) = channel::unbounded::<&str>();
        let h = thread::spawn(move || {
            thread::sleep(20 * MS);
            tx2.send("late").unwrap();
        });
        let got = select! {
            recv(rx1) -> v => format!("{v:?}"),
            recv(rx2) -> v => v.unwrap().to_string(),
        };
        assert_eq!(got, "late");
        h.join().unwrap();
        drop(tx1);
        // rx1's sender is gone: the arm completes with an error.
        select! {
            recv(rx1) -> v => assert_eq!(v, Err(RecvError)),
            default(Duration::from_secs(10)) => panic!("disconnection must complete the arm"),
        }
    });
}

#[test]
fn select_send_to_disconnected_returns_value() {
    let (tx, rx) = channel::bounded::<String>(0);
    drop(rx);
    let back = select! {
        send(tx, String::from("mine")) -> r => r.unwrap_err().into_inner(),
    };
    assert_eq!(back, "mine");
}

#[test]
fn select_is_fair() {
    let (tx1, rx1) = channel::unbounded();
    let (tx2, rx2) = channel::unbounded();
    let mut hits = [0; 2];
    for i in 0..1000 {
        tx1.send(i).unwrap();
        tx2.send(i).unwrap();
        select! {
            recv(rx1) -> _ => hits[0] += 1,
            recv(rx2) -> _ => hits[1] += 1,
        }
    }
    assert!(hits[0] > 100 && hits[1] > 100, "unfair selection: {hits:?}");
}

#[test]
fn select_control_flow() {
    let (tx, rx) = channel::unbounded();
    for i in 0..5 {
        tx.send(i).unwrap();
    }
    drop(tx);
    let mut sum = 0;
    loop {
        select! {
            recv(rx) -> v => match v {
                Ok(v) => sum += v,
                Err(_) => break,
            },
        }
    }
    assert_eq!(sum, 10);
}

#[test]
fn select_rendezvous_between_two_selects() {
    no_hang(|| {
        for _ in 0..200 {
            let (tx, rx) = channel::bounded::<u32>(0);
            let (_other_tx, other_rx) = channel::bounded::<u32>(0);
            let h = thread::spawn(move || {
                select! {
                    send(tx, 42) -> r => r.unwrap(),
                }
            });
            let got = select! {
                recv(rx) -> v => v.unwrap(),
                recv(other_rx) -> _ => unreachable!(),
            };
            assert_eq!(got, 42);
            h.join().unwrap();
        }
    });
}

#[test]
fn select_stress_mpmc() {
    // Two producers select-send over two channels; two consumers select-receive over both.
    no_hang(|| {
        const PER: u64 = 20_000;
        let (tx1, rx1) = channel::bounded::<u64>(4);
        let (tx2, rx2) = channel::bounded::<u64>(0);
        let producers: Vec<_> = (0..2)
            .map(|p| {
                let (tx1, tx2) = (tx1.clone(), tx2.clone());
                thread::spawn(move || {
                    for i in 0..PER {
                        let v = p * PER + i;
                        select! {
                            send(tx1, v) -> r => r.unwrap(),
                            send(tx2, v) -> r => r.unwrap(),
                        }
                    }
                })
            })
            .collect();
        drop((tx1, tx2));
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let (rx1, rx2) = (rx1.clone(), rx2.clone());
                thread::spawn(move || {
                    let (mut open1, mut open2, mut count, mut sum) = (true, true, 0u64, 0u64);
                    while open1 || open2 {
                        let mut sel = Select::new();
                        let i1 = open1.then(|| sel.recv(&rx1));
                        let i2 = open2.then(|| sel.recv(&rx2));
                        let op = sel.select();
                        let i = op.index();
                        let got = if Some(i) == i1 { op.recv(&rx1) } else { op.recv(&rx2) };
                        match got {
                            Ok(v) => {
                                count += 1;
                                sum += v;
                            }
                            Err(_) if Some(i) == i1 => open1 = false,
                            Err(_) => open2 = false,
                        }
                        debug_assert!(i1 == Some(i) || i2 == Some(i));
                    }
                    (count, sum)
                })
            })
            .collect();
        for p in producers {
            p.join().unwrap();
        }
        let (count, sum) = consumers
            .into_iter()
            .map(|c| c.join().unwrap())
            .fold((0, 0), |(c, s), (c2, s2)| (c + c2, s + s2));
        let n = 2 * PER;
        assert_eq!(count, n);
        assert_eq!(sum, n * (n - 1) / 2);
    });
}

#[test]
fn select_builder_try_and_timeout() {
    let (tx, rx) = channel::bounded::<i32>(1);
    let mut sel = Select::new();
    sel.recv(&rx);
    assert!(sel.try_select().is_err());
    let mut sel = Select::new();
    let s = sel.send(&tx);
    let op = sel.select_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(op.index(), s);
    op.send(&tx, 3).unwrap();
    let mut sel = Select::new();
    let r = sel.recv(&rx);
    let op = sel.select_deadline(Instant::now() + Duration::from_secs(10)).unwrap();
    assert_eq!(op.index(), r);
    assert_eq!(op.recv(&rx), Ok(3));
    let t = Instant::now();
    let mut sel = Select::new();
    sel.recv(&rx);
    assert!(sel.select_timeout(20 * MS).is_err());
    assert!(t.elapsed() >= 20 * MS);
}

// ---------------------------------------------------------------------------------------------
// Mutex, RwLock, Condvar

#[test]
fn mutex_counter_8x100k() {
    let m = Arc::new(Mutex::new(0u64));
    no_hang(move || {
        let hs: Vec<_> = (0..8)
            .map(|_| {
                let m = m.clone();
                thread::spawn(move || {
                    for _ in 0..100_000 {
                        *m.lock() += 1;
                    }
                })
            })
            .collect();
        hs.into_iter().for_each(|h| h.join().unwrap());
        assert_eq!(*m.lock(), 800_000);
    });
}

#[test]
fn mutex_basics_and_no_poisoning() {
    let m = Arc::new(Mutex::new(vec![1]));
    {
        let g = m.try_lock().unwrap();
        assert!(m.try_lock().is_none());
        assert!(m.is_locked());
        assert_eq!(format!("{m:?}"), "Mutex { data: <locked>, .. }");
        drop(g);
    }
    let m2 = m.clone();
    let r = thread::spawn(move || {
        let mut g = m2.lock();
        g.push(2);
        panic!("holder panics");
    })
    .join();
    assert!(r.is_err());
    assert_eq!(*m.lock(), [1, 2], "no poisoning: the data is as the holder left it");
    let mut m = Arc::try_unwrap(m).unwrap();
    m.get_mut().push(3);
    assert_eq!(m.into_inner(), [1, 2, 3]);
}

#[test]
fn rwlock_readers_and_writer_invariant() {
    no_hang(|| {
        // The writer keeps both halves equal; readers must never see them differ, and no
        // reader may be inside while the writer is.
        let lock = Arc::new(RwLock::new((0u64, 0u64)));
        let readers_in = Arc::new(AtomicUsize::new(0));
        let writer_in = Arc::new(AtomicBool::new(false));
        let max_readers = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..6)
            .map(|_| {
                let (lock, readers_in, writer_in, max_readers, stop) = (
                    lock.clone(),
                    readers_in.clone(),
                    writer_in.clone(),
                    max_readers.clone(),
                    stop.clone(),
                );
                thread::spawn(move || {
                    let mut reads = 0u64;
                    while !stop.load(Ordering::Relaxed) || reads < 100 {
                        let g = lock.read();
                        let n = readers_in.fetch_add(1, Ordering::SeqCst) + 1;
                        max_readers.fetch_max(n, Ordering::Relaxed);
                        assert!(!writer_in.load(Ordering::SeqCst), "reader inside with a writer");
                        assert_eq!(g.0, g.1);
                        readers_in.fetch_sub(1, Ordering::SeqCst);
                        drop(g);
                        reads += 1;
                    }
                    reads
                })
            })
            .collect();
        for i in 1..=2_000u64 {
            let mut g = lock.write();
            writer_in.store(true, Ordering::SeqCst);
            assert_eq!(readers_in.load(Ordering::SeqCst), 0, "writer inside with readers");
            g.0 = i;
            g.1 = i;
            writer_in.store(false, Ordering::SeqCst);
        }
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            assert!(r.join().unwrap() >= 100);
        }
        assert_eq!(*lock.read(), (2_000, 2_000));
    });
}

#[test]
fn rwlock_writer_preference() {
    no_hang(|| {
        let lock = Arc::new(RwLock::new(0));
        let r1 = lock.read();
        assert!(lock.try_write().is_none());
        let l = lock.clone();
        let writer = thread::spawn(move || *l.write() += 1);
        // Once the writer waits, new readers must queue behind it.
        let start = Instant::now();
        while lock.try_read().is_some() {
            assert!(start.elapsed() < Duration::from_secs(10), "writer never queued");
            thread::sleep(MS);
        }
        drop(r1);
        writer.join().unwrap();
        assert_eq!(*lock.read(), 1);
        let mut lock = Arc::try_unwrap(lock).unwrap();
        *lock.get_mut() += 1;
        assert_eq!(lock.into_inner(), 2);
    });
}

#[test]
fn condvar_producer_consumer() {
    no_hang(|| {
        const PER: u64 = 5_000;
        const CAP: usize = 8;
        struct Shared {
            queue: Mutex<(VecDeque<u64>, usize)>, // (items, producers left)
            not_empty: Condvar,
            not_full: Condvar,
        }
        let sh = Arc::new(Shared {
            queue: Mutex::new((VecDeque::new(), 4)),
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
        });
        let producers: Vec<_> = (0..4u64)
            .map(|p| {
                let sh = sh.clone();
                thread::spawn(move || {
                    for i in 0..PER {
                        let mut g = sh.not_full.wait_while(sh.queue.lock(), |q| q.0.len() >= CAP);
                        g.0.push_back(p * PER + i);
                        drop(g);
                        sh.not_empty.notify_one();
                    }
                    sh.queue.lock().1 -= 1;
                    sh.not_empty.notify_all();
                })
            })
            .collect();
        let consumers: Vec<_> = (0..4)
            .map(|_| {
                let sh = sh.clone();
                thread::spawn(move || {
                    let (mut count, mut sum) = (0u64, 0u64);
                    loop {
                        let mut g = sh.not_empty.wait_while(sh.queue.lock(), |q| q.0.is_empty() && q.1 > 0);
                        match g.0.pop_front() {
                            Some(v) => {
                                drop(g);
                                sh.not_full.notify_one();
                                count += 1;
                                sum += v;
                            }
                            None => return (count, sum),
                        }
                    }
                })
            })
            .collect();
        producers.into_iter().for_each(|p| p.join().unwrap());
        let (count, sum) = consumers
            .into_iter()
            .map(|c| c.join().unwrap())
            .fold((0, 0), |(c, s), (c2, s2)| (c + c2, s + s2));
        let n = 4 * PER;
        assert_eq!(count, n);
        assert_eq!(sum, n * (n - 1) / 2);
    });
}

#[test]
fn condvar_timeout_and_notify_all() {
    let m = Mutex::new(0);
    let cv = Condvar::new();
    let t = Instant::now();
    let (g, res) = cv.wait_timeout(m.lock(), 30 * MS);
    assert!(res.timed_out());
    assert!(t.elapsed() >= 30 * MS);
    drop(g);
    let (g, res) = cv.wait_timeout_while(m.lock(), 10 * MS, |v| *v == 0);
    assert!(res.timed_out());
    drop(g);

    no_hang(|| {
        let sh = Arc::new((Mutex::new(false), Condvar::new(), AtomicUsize::new(0)));
        let waiters: Vec<_> = (0..5)
            .map(|_| {
                let sh = sh.clone();
                thread::spawn(move || {
                    let g = sh.0.lock();
                    sh.2.fetch_add(1, Ordering::SeqCst);
                    let g = sh.1.wait_while(g, |go| !*go);
                    assert!(*g);
                })
            })
            .collect();
        while sh.2.load(Ordering::SeqCst) < 5 {
            thread::sleep(MS);
        }
        *sh.0.lock() = true;
        sh.1.notify_all();
        waiters.into_iter().for_each(|w| w.join().unwrap());
    });
}

// ---------------------------------------------------------------------------------------------
// Barrier, Semaphore, WaitGroup, oneshot

#[test]
fn barrier_one_leader_per_generation() {
    no_hang(|| {
        const N: usize = 6;
        const ROUNDS: usize = 50;
        let barrier = Arc::new(Barrier::new(N));
        let leaders: Arc<Vec<AtomicUsize>> = Arc::new((0..ROUNDS).map(|_| AtomicUsize::new(0)).collect());
        let arrived: Arc<Vec<AtomicUsize>> = Arc::new((0..ROUNDS).map(|_| AtomicUsize::new(0)).collect());
        let hs: Vec<_> = (0..N)
            .map(|_| {
                let (barrier, leaders, arrived) = (barrier.clone(), leaders.clone(), arrived.clone());
                thread::spawn(move || {
                    for round in 0..ROUNDS {
                        arrived[round].fetch_add(1, Ordering::SeqCst);
                        if barrier.wait().is_leader() {
                            leaders[round].fetch_add(1, Ordering::SeqCst);
                        }
                        // Nobody leaves a round before everyone arrived in it.
                        assert_eq!(arrived[round].load(Ordering::SeqCst), N);
                    }
                })
            })
            .collect();
        hs.into_iter().for_each(|h| h.join().unwrap());
        for l in leaders.iter() {
            assert_eq!(l.load(Ordering::SeqCst), 1);
        }
        assert!(Barrier::new(0).wait().is_leader());
    });
}

#[test]
fn semaphore_never_exceeds_permits() {
    no_hang(|| {
        const PERMITS: usize = 3;
        let sem = Arc::new(Semaphore::new(PERMITS));
        let inside = Arc::new(AtomicUsize::new(0));
        let max = Arc::new(AtomicUsize::new(0));
        let hs: Vec<_> = (0..8)
            .map(|i| {
                let (sem, inside, max) = (sem.clone(), inside.clone(), max.clone());
                thread::spawn(move || {
                    for k in 0..2_000 {
                        let permit = if (i + k) % 3 == 0 {
                            match sem.try_acquire() {
                                Some(p) => p,
                                None => continue,
                            }
                        } else {
                            sem.acquire()
                        };
                        let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        max.fetch_max(n, Ordering::SeqCst);
                        assert!(n <= PERMITS);
                        if k % 64 == 0 {
                            thread::yield_now();
                        }
                        inside.fetch_sub(1, Ordering::SeqCst);
                        drop(permit);
                    }
                })
            })
            .collect();
        hs.into_iter().for_each(|h| h.join().unwrap());
        assert!(max.load(Ordering::SeqCst) <= PERMITS);
        assert_eq!(sem.available_permits(), PERMITS);
    });
}

#[test]
fn semaphore_timeout_add_and_forget() {
    let sem = Semaphore::new(1);
    let p = sem.acquire();
    let t = Instant::now();
    assert!(sem.acquire_timeout(20 * MS).is_none());
    assert!(t.elapsed() >= 20 * MS);
    sem.add_permits(2);
    assert_eq!(sem.available_permits(), 2);
    sem.acquire().forget();
    drop(p);
    assert_eq!(sem.available_permits(), 2);

    // A waiter is served by add_permits.
    no_hang(|| {
        let sem = Arc::new(Semaphore::new(0));
        let s = sem.clone();
        let h = thread::spawn(move || s.acquire_timeout(Duration::from_secs(10)).map(|p| p.forget()));
        thread::sleep(10 * MS);
        sem.add_permits(1);
        assert!(h.join().unwrap().is_some());
        assert_eq!(sem.available_permits(), 0);
    });
}

#[test]
fn waitgroup_waits_for_all() {
    no_hang(|| {
        let wg = WaitGroup::new();
        let count = Arc::new(AtomicUsize::new(0));
        for i in 0..8 {
            let (wg, count) = (wg.clone(), count.clone());
            thread::spawn(move || {
                thread::sleep(MS * (i % 3));
                count.fetch_add(1, Ordering::SeqCst);
                drop(wg);
            });
        }
        // A second waiter: returns when everyone else dropped or waits.
        let wg2 = wg.clone();
        let c2 = count.clone();
        let other = thread::spawn(move || {
            wg2.wait();
            c2.load(Ordering::SeqCst)
        });
        wg.wait();
        assert_eq!(count.load(Ordering::SeqCst), 8);
        assert_eq!(other.join().unwrap(), 8);
        WaitGroup::new().wait(); // alone: returns at once
    });
}

#[test]
fn oneshot_semantics() {
    let (tx, rx) = oneshot::channel();
    let h = thread::spawn(move || {
        thread::sleep(10 * MS);
        tx.send(String::from("hi")).unwrap();
    });
    assert_eq!(rx.recv().as_deref(), Ok("hi"));
    h.join().unwrap();

    let (tx, rx) = oneshot::channel::<i32>();
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    let t = Instant::now();
    assert_eq!(rx.recv_timeout(20 * MS), Err(RecvTimeoutError::Timeout));
    assert!(t.elapsed() >= 20 * MS);
    assert!(!tx.is_closed());
    tx.send(3).unwrap();
    assert_eq!(rx.try_recv(), Ok(3));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));

    let (tx, rx) = oneshot::channel::<i32>();
    let h = thread::spawn(move || rx.recv());
    thread::sleep(10 * MS);
    drop(tx);
    assert_eq!(h.join().unwrap(), Err(RecvError));

    let (tx, rx) = oneshot::channel();
    drop(rx);
    assert!(tx.is_closed());
    assert_eq!(tx.send(vec![1]), Err(vec![1]));
}
