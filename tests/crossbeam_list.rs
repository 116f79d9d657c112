//! Unbounded channels, on the scenarios of crossbeam-channel's `tests/list.rs` (crossbeam:
//! Copyright (c) 2019 The Crossbeam Project Developers, MIT or Apache-2.0), written anew for
//! sigcoro rather than copied. Each test runs on plain threads and in coroutines on one and on
//! two workers (`common::three_ways`).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use common::{ms, scope, sleep};
use sigcoro::select;
use sigcoro::sync::channel::{RecvError, RecvTimeoutError, SendError, TryRecvError, TrySendError, unbounded};

three_ways_tests! {
    fn smoke_and_len() {
        let (s, r) = unbounded();
        assert_eq!((s.capacity(), r.capacity()), (None, None));
        for i in 0..50 {
            assert_eq!((s.len(), r.len()), (i, i));
            s.try_send(i).unwrap();
        }
        assert!(!s.is_full() && !r.is_full() && !r.is_empty());
        for i in 0..50 {
            assert_eq!(r.try_recv(), Ok(i));
        }
        assert!(r.is_empty());
        assert_eq!(r.recv_timeout(ms(1)), Err(RecvTimeoutError::Timeout));
        assert_eq!(s.send_timeout(1, ms(1)), Ok(()), "never waits");
    }

    fn recv_waits_for_a_value() {
        let (s, r) = unbounded();
        scope(|sc| {
            sc.spawn(|| {
                assert_eq!(r.recv(), Ok(7));
                assert_eq!(r.recv(), Ok(8));
                assert_eq!(r.recv(), Err(RecvError));
            });
            sc.spawn(|| {
                sleep(ms(5));
                s.send(7).unwrap();
                s.send(8).unwrap();
                drop(s);
            });
        });
    }

    fn disconnection() {
        let (s, r) = unbounded::<i32>();
        s.send(1).unwrap();
        drop(s);
        assert_eq!(r.try_recv(), Ok(1));
        assert_eq!(r.try_recv(), Err(TryRecvError::Disconnected));
        let (s, r) = unbounded::<i32>();
        drop(r);
        assert_eq!(s.send(1), Err(SendError(1)));
        assert_eq!(s.try_send(2), Err(TrySendError::Disconnected(2)));
    }

    fn spsc_in_order() {
        const COUNT: usize = 20_000;
        let (s, r) = unbounded();
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
        let (s, r) = unbounded::<usize>();
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

    fn stress_timeouts() {
        const COUNT: usize = 50;
        let (s, r) = unbounded();
        scope(|sc| {
            sc.spawn(|| {
                for i in 0..COUNT {
                    if i % 2 == 0 {
                        sleep(ms(1));
                    }
                    s.send(i).unwrap();
                }
            });
            sc.spawn(|| {
                for i in 0..COUNT {
                    loop {
                        match r.recv_timeout(ms(1)) {
                            Ok(v) => break assert_eq!(v, i),
                            Err(RecvTimeoutError::Timeout) => {}
                            Err(e) => panic!("{e:?}"),
                        }
                    }
                }
            });
        });
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
        for (steps, extra) in [(10, 3), (200, 70), (0, 5)] {
            DROPS.store(0, Ordering::SeqCst);
            let (s, r) = unbounded();
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

    fn select_never_finds_an_unbounded_send_blocked() {
        let (s, r) = unbounded::<i32>();
        for i in 0..100 {
            select! {
                send(s, i) -> res => res.unwrap(),
                default => panic!(),
            }
        }
        assert_eq!(r.try_iter().count(), 100);
    }
}
