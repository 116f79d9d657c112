//! Buffered channels (`bounded(n)`, `n > 0`), on the scenarios of crossbeam-channel's
//! `tests/array.rs` (crossbeam: Copyright (c) 2019 The Crossbeam Project Developers, MIT or
//! Apache-2.0), written anew for sigcoro rather than copied. Each test runs on plain threads
//! and in coroutines on one and on two workers (`common::three_ways`).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use common::{ms, scope, sleep};
use sigcoro::select;
use sigcoro::sync::channel::Receiver;
use sigcoro::sync::channel::{
    RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError, bounded,
};

three_ways_tests! {
    fn smoke() {
        let (s, r) = bounded(1);
        s.send(7).unwrap();
        assert_eq!(r.try_recv(), Ok(7));
        s.send(8).unwrap();
        assert_eq!(r.recv(), Ok(8));
        assert_eq!(r.try_recv(), Err(TryRecvError::Empty));
        assert_eq!(r.recv_timeout(ms(1)), Err(RecvTimeoutError::Timeout));
    }

    fn capacity_len_empty_full() {
        for cap in 1..6 {
            let (s, r) = bounded::<()>(cap);
            assert_eq!((s.capacity(), r.capacity()), (Some(cap), Some(cap)));
            for i in 0..cap {
                assert_eq!((s.len(), r.len()), (i, i));
                assert!(!s.is_full() && !r.is_full());
                s.send(()).unwrap();
            }
            assert!(s.is_full() && r.is_full() && !r.is_empty());
            assert_eq!(s.try_send(()), Err(TrySendError::Full(())));
            for _ in 0..cap {
                r.recv().unwrap();
            }
            assert!(s.is_empty() && r.is_empty());
        }
    }

    fn send_waits_for_room() {
        let (s, r) = bounded(1);
        let (ack_s, ack_r) = bounded(1);
        scope(|sc| {
            sc.spawn(|| {
                s.send(7).unwrap();
                s.send(8).unwrap(); // waits for room
                ack_s.send(()).unwrap();
            });
            sc.spawn(|| {
                sleep(ms(5));
                assert_eq!(ack_r.try_recv(), Err(TryRecvError::Empty), "the second send waited");
                assert_eq!(r.recv(), Ok(7));
                ack_r.recv().unwrap();
                assert_eq!(r.recv(), Ok(8));
            });
        });
    }

    fn send_timeout_on_a_full_channel() {
        let (s, r) = bounded(1);
        s.send(1).unwrap();
        assert_eq!(s.send_timeout(2, ms(1)), Err(SendTimeoutError::Timeout(2)));
        assert_eq!(r.recv(), Ok(1));
        assert_eq!(s.send_timeout(3, ms(1)), Ok(()));
    }

    fn disconnection() {
        let (s, r) = bounded::<i32>(2);
        s.send(1).unwrap();
        s.send(2).unwrap();
        drop(s);
        assert_eq!(r.recv(), Ok(1), "values left are received first");
        assert_eq!(r.try_recv(), Ok(2));
        assert_eq!(r.recv(), Err(RecvError));
        let (s, r) = bounded::<i32>(1);
        drop(r);
        assert_eq!(s.send(1), Err(SendError(1)));
        assert_eq!(s.try_send(2), Err(TrySendError::Disconnected(2)));
        let (s, r) = bounded::<i32>(1);
        s.send(0).unwrap();
        scope(|sc| {
            sc.spawn(|| assert_eq!(s.send(1), Err(SendError(1))));
            sc.spawn(|| {
                sleep(ms(5));
                drop(r);
            });
        });
    }

    fn spsc_in_order() {
        const COUNT: usize = 10_000;
        let (s, r) = bounded(3);
        scope(|sc| {
            sc.spawn(|| {
                for i in 0..COUNT {
                    assert_eq!(r.recv(), Ok(i));
                }
                assert_eq!(r.recv(), Err(RecvError));
            });
            sc.spawn(move || {
                for i in 0..COUNT {
                    s.send(i).unwrap();
                }
            });
        });
    }

    fn mpmc_every_value_once() {
        const COUNT: usize = 2_000;
        const PEERS: usize = 4;
        let (s, r) = bounded::<usize>(3);
        let seen: Vec<AtomicUsize> = (0..COUNT).map(|_| AtomicUsize::new(0)).collect();
        scope(|sc| {
            for _ in 0..PEERS {
                sc.spawn(|| {
                    for _ in 0..COUNT {
                        seen[r.recv().unwrap()].fetch_add(1, Ordering::SeqCst);
                    }
                });
                sc.spawn(|| {
                    for i in 0..COUNT {
                        s.send(i).unwrap();
                    }
                });
            }
        });
        assert!(seen.iter().all(|c| c.load(Ordering::SeqCst) == PEERS));
    }

    fn stress_oneshot() {
        for _ in 0..200 {
            let (s, r) = bounded(1);
            scope(|sc| {
                sc.spawn(|| assert_eq!(r.recv(), Ok(0)));
                sc.spawn(|| s.send(0).unwrap());
            });
        }
    }

    fn drops_every_value_once() {
        static DROPS: AtomicUsize = AtomicUsize::new(0);
        #[derive(Debug, PartialEq)]
        struct D;
        impl Drop for D {
            fn drop(&mut self) {
                DROPS.fetch_add(1, Ordering::SeqCst);
            }
        }
        for (steps, extra) in [(10, 3), (50, 7), (0, 5)] {
            DROPS.store(0, Ordering::SeqCst);
            let (s, r) = bounded(8);
            scope(|sc| {
                sc.spawn(|| {
                    for _ in 0..steps {
                        r.recv().unwrap();
                    }
                });
                sc.spawn(|| {
                    for _ in 0..steps {
                        s.send(D).unwrap();
                    }
                });
            });
            for _ in 0..extra {
                s.send(D).unwrap();
            }
            assert_eq!(DROPS.load(Ordering::SeqCst), steps);
            drop((s, r));
            assert_eq!(DROPS.load(Ordering::SeqCst), steps + extra);
        }
    }

    fn linearizable_len() {
        const COUNT: usize = 5_000;
        let (s, r) = bounded::<()>(1);
        scope(|sc| {
            sc.spawn(|| {
                for _ in 0..COUNT {
                    s.send(()).unwrap();
                }
            });
            for _ in 0..COUNT {
                r.recv().unwrap();
                // Never more than the capacity, whatever the interleaving.
                assert!(r.len() <= 1);
            }
        });
    }

    fn select_on_full_and_empty() {
        let (s, r) = bounded::<i32>(1);
        select! {
            recv(r) -> _ => panic!(),
            send(s, 1) -> res => res.unwrap(),
        }
        select! {
            recv(r) -> v => assert_eq!(v, Ok(1)),
            send(s, 2) -> _ => panic!("no room... unless the receive came first"),
        }
    }

    fn channel_of_channels() {
        const COUNT: usize = 100;
        struct Link(Receiver<Link>);
        let (s, r) = bounded::<Link>(1);
        scope(|sc| {
            sc.spawn(move || {
                let mut s = s;
                for _ in 0..COUNT {
                    let (new_s, new_r) = bounded(1);
                    s.send(Link(new_r)).unwrap();
                    s = new_s;
                }
            });
            sc.spawn(move || {
                let mut r = r;
                for _ in 0..COUNT {
                    r = r.recv().unwrap().0;
                }
            });
        });
    }
}
