//! Receiver iterators, on the scenarios of crossbeam-channel's `tests/iter.rs` (crossbeam:
//! Copyright (c) 2019 The Crossbeam Project Developers, MIT or Apache-2.0), written anew for
//! sigcoro rather than copied. Each test runs on plain threads and in coroutines on one and on
//! two workers (`common::three_ways`).

mod common;

use common::{ms, scope, sleep};
use sigcoro::sync::channel::{bounded, unbounded};

three_ways_tests! {
    fn nested_recv_iter() {
        let (s, r) = unbounded::<i32>();
        let (total_s, total_r) = unbounded::<i32>();
        scope(|sc| {
            sc.spawn(|| {
                let mut acc = 0;
                for x in r.iter() {
                    acc += x;
                }
                total_s.send(acc).unwrap();
            });
            s.send(3).unwrap();
            s.send(1).unwrap();
            s.send(2).unwrap();
            drop(s);
            assert_eq!(total_r.recv(), Ok(6));
        });
    }

    fn recv_iter_break() {
        let (s, r) = unbounded::<i32>();
        let (count_s, count_r) = unbounded();
        scope(|sc| {
            sc.spawn(|| {
                let mut count = 0;
                for x in r.iter() {
                    if count >= 3 {
                        break;
                    }
                    count += x;
                }
                count_s.send(count).unwrap();
            });
            for _ in 0..4 {
                s.send(2).unwrap();
            }
            let _ = s.send(2);
            assert_eq!(count_r.recv(), Ok(4));
        });
    }

    fn recv_try_iter() {
        let (request_s, request_r) = unbounded::<()>();
        let (response_s, response_r) = unbounded::<i32>();
        scope(|sc| {
            sc.spawn(move || {
                let mut count = 0;
                loop {
                    for x in response_r.try_iter() {
                        count += x;
                        if count == 6 {
                            return;
                        }
                    }
                    request_s.send(()).unwrap();
                    sleep(ms(1));
                }
            });
            for _ in request_r.iter() {
                if response_s.send(2).is_err() {
                    break;
                }
            }
        });
    }

    fn recv_into_iter_owned_and_borrowed() {
        let (s, r) = bounded::<i32>(3);
        s.send(1).unwrap();
        s.send(2).unwrap();
        drop(s);
        let mut it = (&r).into_iter();
        assert_eq!(it.next(), Some(1));
        let mut owned = r.into_iter();
        assert_eq!(owned.next(), Some(2));
        assert_eq!(owned.next(), None);
    }
}
