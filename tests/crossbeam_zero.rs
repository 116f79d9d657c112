//! Rendezvous channels (`bounded(0)`), on the scenarios of crossbeam-channel's
//! `tests/zero.rs` (crossbeam: Copyright (c) 2019 The Crossbeam Project Developers, MIT or
//! Apache-2.0), written anew for sigcoro rather than copied. Each test runs on plain threads
//! and in coroutines on one and on two workers (`common::three_ways`). Handshakes replace
//! crossbeam's sleeps wherever an order matters.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use common::{ms, scope, sleep};
use sigcoro::select;
use sigcoro::sync::channel::{
    RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError, bounded,
};

three_ways_tests! {
    fn smoke() {
        let (s, r) = bounded(0);
        assert_eq!(s.try_send(7), Err(TrySendError::Full(7)));
        assert_eq!(r.try_recv(), Err(TryRecvError::Empty));
    }

    fn capacity_and_len() {
        let (s, r) = bounded::<()>(0);
        assert_eq!((s.capacity(), r.capacity()), (Some(0), Some(0)));
        assert_eq!((s.len(), r.len()), (0, 0));
        assert!(s.is_empty() && s.is_full() && r.is_empty() && r.is_full());
    }

    fn recv_waits_for_a_sender() {
        let (s, r) = bounded(0);
        scope(|sc| {
            sc.spawn(|| {
                assert_eq!(r.recv(), Ok(7));
                assert_eq!(r.recv(), Ok(8));
                assert_eq!(r.recv(), Ok(9));
                assert_eq!(r.recv(), Err(RecvError));
            });
            sc.spawn(|| {
                for i in 7..10 {
                    s.send(i).unwrap();
                }
                drop(s);
            });
        });
    }

    fn send_waits_for_a_receiver() {
        let (s, r) = bounded(0);
        let (ack_s, ack_r) = bounded(0);
        scope(|sc| {
            sc.spawn(|| {
                s.send(7).unwrap(); // completes only once taken
                ack_s.send(()).unwrap();
                assert_eq!(s.send(8), Err(SendError(8)));
            });
            sc.spawn(|| {
                sleep(ms(5));
                assert_eq!(ack_r.try_recv(), Err(TryRecvError::Empty), "the send waited");
                assert_eq!(r.recv(), Ok(7));
                ack_r.recv().unwrap();
                drop(r);
            });
        });
    }

    fn timeouts() {
        let (s, r) = bounded::<i32>(0);
        assert_eq!(r.recv_timeout(ms(2)), Err(RecvTimeoutError::Timeout));
        assert_eq!(s.send_timeout(1, ms(2)), Err(SendTimeoutError::Timeout(1)));
        scope(|sc| {
            sc.spawn(|| assert_eq!(r.recv_timeout(ms(20_000)), Ok(5)));
            sc.spawn(|| s.send_timeout(5, ms(20_000)).unwrap());
        });
        drop(s);
        assert_eq!(r.recv_timeout(ms(1)), Err(RecvTimeoutError::Disconnected));
    }

    fn try_recv_takes_a_blocked_sender() {
        let (s, r) = bounded(0);
        let (ready_s, ready_r) = bounded(1);
        scope(|sc| {
            sc.spawn(|| {
                ready_s.send(()).unwrap();
                s.send(7).unwrap();
            });
            sc.spawn(|| {
                ready_r.recv().unwrap();
                loop {
                    match r.try_recv() {
                        Ok(v) => break assert_eq!(v, 7),
                        Err(TryRecvError::Empty) => sleep(ms(1)),
                        Err(e) => panic!("{e:?}"),
                    }
                }
            });
        });
    }

    fn try_send_reaches_a_blocked_receiver() {
        let (s, r) = bounded(0);
        scope(|sc| {
            sc.spawn(|| assert_eq!(r.recv(), Ok(7)));
            sc.spawn(|| loop {
                match s.try_send(7) {
                    Ok(()) => break,
                    Err(TrySendError::Full(_)) => sleep(ms(1)),
                    Err(e) => panic!("{e:?}"),
                }
            });
        });
        drop(r);
        assert_eq!(s.try_send(8), Err(TrySendError::Disconnected(8)));
    }

    fn disconnection_wakes_blocked_ends() {
        let (s, r) = bounded::<()>(0);
        scope(|sc| {
            sc.spawn(|| assert_eq!(r.recv(), Err(RecvError)));
            sc.spawn(|| {
                sleep(ms(5));
                drop(s);
            });
        });
        let (s, r) = bounded::<i32>(0);
        scope(|sc| {
            sc.spawn(|| assert_eq!(s.send(1), Err(SendError(1))));
            sc.spawn(|| {
                sleep(ms(5));
                drop(r);
            });
        });
    }

    fn spsc() {
        const COUNT: usize = 2_000;
        let (s, r) = bounded(0);
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
        const COUNT: usize = 1_000;
        const PEERS: usize = 4;
        let (s, r) = bounded::<usize>(0);
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

    fn stress_timeouts_between_two_peers() {
        const COUNT: usize = 50;
        let (s, r) = bounded(0);
        scope(|sc| {
            sc.spawn(|| {
                for i in 0..COUNT {
                    if i % 2 == 0 {
                        sleep(ms(1));
                    }
                    while let Err(SendTimeoutError::Timeout(_)) = s.send_timeout(i, ms(1)) {}
                }
            });
            sc.spawn(|| {
                for i in 0..COUNT {
                    if i % 2 == 0 {
                        sleep(ms(1));
                    }
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
        #[derive(Debug)]
        struct D;
        impl Drop for D {
            fn drop(&mut self) {
                DROPS.fetch_add(1, Ordering::SeqCst);
            }
        }
        DROPS.store(0, Ordering::SeqCst);
        let (s, r) = bounded(0);
        scope(|sc| {
            sc.spawn(|| {
                for _ in 0..50 {
                    r.recv().unwrap();
                }
            });
            sc.spawn(|| {
                for _ in 0..50 {
                    s.send(D).unwrap();
                }
            });
        });
        assert_eq!(DROPS.load(Ordering::SeqCst), 50);
        assert_eq!(s.try_send(D).map_err(|e| e.is_full()), Err(true));
        assert_eq!(DROPS.load(Ordering::SeqCst), 51);
    }

    fn fairness_between_two_channels() {
        const COUNT: usize = 400;
        let (s1, r1) = bounded::<()>(0);
        let (s2, r2) = bounded::<()>(0);
        scope(|sc| {
            sc.spawn(|| {
                let mut hits = [0usize; 2];
                for _ in 0..COUNT {
                    select! {
                        recv(r1) -> _ => hits[0] += 1,
                        recv(r2) -> _ => hits[1] += 1,
                    }
                }
                assert!(hits.iter().all(|&h| h >= COUNT / 10), "{hits:?}");
            });
            let mut sent = 0;
            while sent < COUNT {
                select! {
                    send(s1, ()) -> _ => sent += 1,
                    send(s2, ()) -> _ => sent += 1,
                }
            }
        });
    }

    fn channel_through_channel() {
        const COUNT: usize = 100;
        type T = Box<dyn std::any::Any + Send>;
        let (s, r) = bounded::<T>(0);
        scope(|sc| {
            sc.spawn(move || {
                let mut s = s;
                for _ in 0..COUNT {
                    let (new_s, new_r) = bounded(0);
                    let new_r: T = Box::new(Some(new_r));
                    s.send(new_r).unwrap();
                    s = new_s;
                }
            });
            sc.spawn(move || {
                let mut r = r;
                for _ in 0..COUNT {
                    r = r
                        .recv()
                        .unwrap()
                        .downcast_mut::<Option<sigcoro::sync::channel::Receiver<T>>>()
                        .unwrap()
                        .take()
                        .unwrap()
                }
            });
        });
    }
}
