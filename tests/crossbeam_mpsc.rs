//! std's `mpsc` semantics on sigcoro's channels, on the scenarios of crossbeam-channel's
//! `tests/mpsc.rs` (itself a port of std's tests; crossbeam: Copyright (c) 2019 The Crossbeam
//! Project Developers, MIT or Apache-2.0), written anew for sigcoro rather than copied. Each
//! test runs on plain threads and in coroutines on one and on two workers
//! (`common::three_ways`).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use common::{ms, scope};
use sigcoro::sync::channel::{
    Receiver, RecvError, RecvTimeoutError, SendError, Sender, TryRecvError, TrySendError, bounded, unbounded,
};

/// std's `channel()`: unbounded.
fn channel<T>() -> (Sender<T>, Receiver<T>) {
    unbounded()
}

/// std's `sync_channel(n)`: bounded.
fn sync_channel<T>(n: usize) -> (Sender<T>, Receiver<T>) {
    bounded(n)
}

three_ways_tests! {
    fn smoke_and_shared() {
        let (tx, rx) = channel::<i32>();
        tx.send(1).unwrap();
        assert_eq!(rx.recv(), Ok(1));
        let tx2 = tx.clone();
        tx.send(2).unwrap();
        tx2.send(3).unwrap();
        assert_eq!((rx.recv(), rx.recv()), (Ok(2), Ok(3)));
    }

    fn port_gone_and_chan_gone() {
        let (tx, rx) = channel::<i32>();
        drop(rx);
        assert!(tx.send(1).is_err());
        let (tx, rx) = channel::<i32>();
        let tx2 = tx.clone();
        drop(tx);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty), "one sender is left");
        drop(tx2);
        assert_eq!(rx.recv(), Err(RecvError));
    }

    fn drop_full_and_drop_full_shared() {
        let (tx, _rx) = channel::<Box<i32>>();
        tx.send(Box::new(1)).unwrap();
        let (tx, _rx) = sync_channel::<Box<i32>>(1);
        tx.send(Box::new(1)).unwrap();
        drop(tx.clone());
    }

    fn concurrent_port_and_chan_gone() {
        let (tx, rx) = sync_channel::<i32>(0);
        scope(|sc| {
            sc.spawn(move || drop(rx));
            sc.spawn(move || while tx.send(1).is_ok() {});
        });
        let (tx, rx) = channel::<i32>();
        scope(|sc| {
            sc.spawn(move || {
                for _ in 0..100 {
                    tx.send(1).unwrap();
                }
            });
            sc.spawn(move || {
                let mut n = 0;
                while rx.recv().is_ok() {
                    n += 1;
                }
                assert_eq!(n, 100);
            });
        });
    }

    fn stress_shared() {
        const AMT: usize = 2_000;
        const PEERS: usize = 4;
        let (tx, rx) = channel::<usize>();
        let total = AtomicUsize::new(0);
        scope(|sc| {
            for _ in 0..PEERS {
                let tx = tx.clone();
                sc.spawn(move || {
                    for i in 0..AMT {
                        tx.send(i).unwrap();
                    }
                });
            }
            drop(tx);
            sc.spawn(|| {
                for v in rx.iter() {
                    total.fetch_add(v, Ordering::SeqCst);
                }
            });
        });
        assert_eq!(total.load(Ordering::SeqCst), PEERS * AMT * (AMT - 1) / 2);
    }

    fn oneshot_scenarios() {
        // Single-threaded: each end dropped, sent, received in every order.
        let (tx, rx) = sync_channel::<Box<i32>>(1);
        drop(rx);
        assert!(tx.send(Box::new(0)).is_err());
        let (tx, rx) = channel::<Box<i32>>();
        drop(tx);
        assert_eq!(rx.recv(), Err(RecvError));
        let (tx, rx) = channel::<Box<i32>>();
        tx.send(Box::new(10)).unwrap();
        assert_eq!(*rx.recv().unwrap(), 10);
        let (tx, rx) = channel::<i32>();
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        tx.send(10).unwrap();
        assert_eq!(rx.try_recv(), Ok(10));
        let (tx, rx) = channel::<i32>();
        drop(tx);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
        // Across threads or coroutines.
        for _ in 0..50 {
            let (tx, rx) = channel::<Box<i32>>();
            scope(|sc| {
                sc.spawn(move || assert_eq!(*rx.recv().unwrap(), 10));
                sc.spawn(move || tx.send(Box::new(10)).unwrap());
            });
            let (tx, rx) = channel::<Box<i32>>();
            scope(|sc| {
                sc.spawn(move || drop(tx));
                sc.spawn(move || assert!(rx.recv().is_err()));
            });
        }
    }

    fn stream_send_recv() {
        let (tx, rx) = channel::<Box<i32>>();
        scope(|sc| {
            sc.spawn(move || {
                for i in 0..100 {
                    tx.send(Box::new(i)).unwrap();
                }
            });
            sc.spawn(move || {
                for i in 0..100 {
                    assert_eq!(*rx.recv().unwrap(), i);
                }
            });
        });
    }

    fn recv_timeout() {
        let (tx, rx) = channel::<i32>();
        assert_eq!(rx.recv_timeout(ms(1)), Err(RecvTimeoutError::Timeout));
        tx.send(1).unwrap();
        assert_eq!(rx.recv_timeout(ms(1)), Ok(1));
        drop(tx);
        assert_eq!(rx.recv_timeout(ms(1)), Err(RecvTimeoutError::Disconnected));
        let (tx, rx) = channel::<i32>();
        scope(|sc| {
            sc.spawn(|| {
                for i in 0..20 {
                    tx.send(i).unwrap();
                }
            });
            let mut got = 0;
            while got < 20 {
                match rx.recv_timeout(ms(1)) {
                    Ok(v) => {
                        assert_eq!(v, got);
                        got += 1;
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(e) => panic!("{e:?}"),
                }
            }
        });
    }

    fn sync_channel_semantics() {
        let (tx, rx) = sync_channel::<i32>(1);
        assert_eq!(tx.try_send(1), Ok(()));
        assert_eq!(tx.try_send(2), Err(TrySendError::Full(2)));
        assert_eq!(rx.recv(), Ok(1));
        drop(rx);
        assert_eq!(tx.try_send(3), Err(TrySendError::Disconnected(3)));
        let (tx, rx) = sync_channel::<i32>(0);
        assert_eq!(tx.try_send(1), Err(TrySendError::Full(1)), "nobody receives");
        scope(|sc| {
            sc.spawn(|| assert_eq!(rx.recv(), Ok(5)));
            sc.spawn(|| tx.send(5).unwrap());
        });
        drop(rx);
        assert_eq!(tx.send(6), Err(SendError(6)));
    }

    fn try_iter_and_into_iter() {
        let (tx, rx) = channel::<i32>();
        for i in 0..5 {
            tx.send(i).unwrap();
        }
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
        assert_eq!(rx.try_iter().next(), None);
        tx.send(7).unwrap();
        drop(tx);
        assert_eq!(rx.into_iter().collect::<Vec<_>>(), vec![7]);
    }

    fn issue_32114_clone_then_drop_while_receiving() {
        let (tx, rx) = channel::<i32>();
        let _tx2 = tx.clone();
        drop(tx);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        _tx2.send(1).unwrap();
        assert_eq!(rx.recv(), Ok(1));
    }
}
