//! `select!` and `select_biased!`, on the scenarios of crossbeam-channel's
//! `tests/select_macro.rs` (crossbeam: Copyright (c) 2019 The Crossbeam Project Developers,
//! MIT or Apache-2.0), written anew for sigcoro rather than copied. Each test runs on plain
//! threads and in coroutines on one and on two workers (`common::three_ways`).

mod common;

use std::any::Any;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{ms, scope, sleep};
use sigcoro::sync::channel::{Receiver, RecvError, SendError, Sender, after, bounded, never, unbounded};
use sigcoro::{select, select_biased};

three_ways_tests! {
    fn smoke() {
        let (s1, r1) = unbounded::<usize>();
        let (s2, r2) = unbounded::<usize>();
        s1.send(1).unwrap();
        select! {
            recv(r1) -> v => assert_eq!(v, Ok(1)),
            recv(r2) -> _ => panic!(),
        }
        s2.send(2).unwrap();
        select! {
            recv(r1) -> _ => panic!(),
            recv(r2) -> v => assert_eq!(v, Ok(2)),
        }
    }

    fn disconnected_arms_are_ready() {
        let (s1, r1) = unbounded::<i32>();
        let (s2, r2) = unbounded::<i32>();
        drop(s1);
        select! {
            recv(r1) -> v => assert!(v.is_err()),
            recv(r2) -> _ => panic!(),
        }
        drop(r2);
        select! {
            send(s2, 5) -> res => assert_eq!(res, Err(SendError(5))),
            default => panic!(),
        }
        scope(|sc| {
            sc.spawn(|| {
                sleep(ms(5));
                drop(s2);
            });
        });
        let (s3, r3) = bounded::<i32>(0);
        scope(|sc| {
            sc.spawn(|| {
                select! {
                    recv(r3) -> v => assert_eq!(v, Err(RecvError)),
                }
            });
            sc.spawn(|| {
                sleep(ms(5));
                drop(s3);
            });
        });
    }

    fn default_and_timeout() {
        let (s, r) = unbounded::<i32>();
        select! {
            recv(r) -> _ => panic!(),
            default => {}
        }
        select! {
            recv(r) -> _ => panic!(),
            default(ms(2)) => {}
        }
        s.send(3).unwrap();
        select! {
            recv(r) -> v => assert_eq!(v, Ok(3)),
            default => panic!(),
        }
        drop(s);
        select! {
            recv(r) -> v => assert!(v.is_err()),
            default(ms(10_000)) => panic!(),
        }
        select! { default => {} }
        select! { default(ms(1)) => {} }
    }

    fn unblocks_on_a_later_send_or_receive() {
        let (s1, r1) = bounded::<i32>(0);
        let (s2, r2) = bounded::<i32>(0);
        scope(|sc| {
            sc.spawn(|| {
                sleep(ms(5));
                s2.send(2).unwrap();
            });
            select! {
                recv(r1) -> _ => panic!(),
                recv(r2) -> v => assert_eq!(v, Ok(2)),
                default(ms(20_000)) => panic!(),
            }
        });
        scope(|sc| {
            sc.spawn(|| {
                sleep(ms(5));
                assert_eq!(r1.recv(), Ok(1));
            });
            select! {
                send(s1, 1) -> res => res.unwrap(),
                send(s2, 2) -> _ => panic!(),
                default(ms(20_000)) => panic!(),
            }
        });
    }

    fn both_ready() {
        let (s1, r1) = bounded(0);
        let (s2, r2) = bounded(0);
        scope(|sc| {
            sc.spawn(|| {
                sleep(ms(5));
                s1.send(1).unwrap();
                assert_eq!(r2.recv(), Ok(2));
            });
            for _ in 0..2 {
                select! {
                    recv(r1) -> v => assert_eq!(v, Ok(1)),
                    send(s2, 2) -> res => res.unwrap(),
                }
            }
        });
    }

    fn send_and_recv_on_the_same_channel() {
        let (s, r) = bounded::<i32>(0);
        select! {
            send(s, 0) -> _ => panic!(),
            recv(r) -> _ => panic!(),
            default(ms(2)) => {}
        }
        let (s, r) = unbounded::<i32>();
        select! {
            send(s, 0) -> res => res.unwrap(),
            recv(r) -> _ => panic!(),
            default(ms(2)) => panic!(),
        }
        assert_eq!(r.try_recv(), Ok(0));
    }

    fn matching_pairs() {
        const THREADS: usize = 8;
        let (s, r) = bounded::<usize>(0);
        scope(|sc| {
            for i in 0..THREADS {
                let (s, r) = (&s, &r);
                sc.spawn(move || {
                    select! {
                        recv(r) -> v => assert_ne!(v.unwrap(), i),
                        send(s, i) -> res => res.unwrap(),
                    }
                });
            }
        });
        assert_eq!(r.try_recv().ok(), None);
    }

    fn matching_with_leftover() {
        const THREADS: usize = 9;
        let (s, r) = bounded::<usize>(0);
        scope(|sc| {
            for i in 0..THREADS {
                let (s, r) = (&s, &r);
                sc.spawn(move || {
                    select! {
                        recv(r) -> v => assert_ne!(v.unwrap(), i),
                        send(s, i) -> res => res.unwrap(),
                    }
                });
            }
            s.send(!0).unwrap();
        });
        assert_eq!(r.try_recv().ok(), None);
    }

    fn stress_mixed() {
        const COUNT: usize = 2_000;
        let (s1, r1) = bounded::<usize>(5);
        let (s2, r2) = bounded::<usize>(0);
        let (s3, r3) = unbounded::<usize>();
        scope(|sc| {
            sc.spawn(|| {
                for i in 0..COUNT {
                    s1.send(i).unwrap();
                    assert_eq!(r3.recv(), Ok(i));
                    s2.send(i).unwrap();
                }
            });
            for i in 0..COUNT {
                for _ in 0..2 {
                    select! {
                        recv(r1) -> v => { assert_eq!(v, Ok(i)); s3.send(i).unwrap() }
                        recv(r2) -> v => assert_eq!(v, Ok(i)),
                    }
                }
            }
        });
    }

    fn stress_timeout_two_peers() {
        const COUNT: usize = 40;
        let (s, r) = bounded::<usize>(2);
        scope(|sc| {
            sc.spawn(|| {
                for i in 0..COUNT {
                    if i % 2 == 0 {
                        sleep(ms(1));
                    }
                    loop {
                        select! {
                            send(s, i) -> _ => break,
                            default(ms(1)) => {}
                        }
                    }
                }
            });
            sc.spawn(|| {
                for i in 0..COUNT {
                    if i % 2 == 0 {
                        sleep(ms(1));
                    }
                    loop {
                        select! {
                            recv(r) -> v => break assert_eq!(v, Ok(i)),
                            default(ms(1)) => {}
                        }
                    }
                }
            });
        });
    }

    fn channel_through_channel() {
        const COUNT: usize = 100;
        type T = Box<dyn Any + Send>;
        for cap in [0, 1, 2] {
            let (s, r) = bounded::<T>(cap);
            scope(|sc| {
                sc.spawn(move || {
                    let mut s = s;
                    for _ in 0..COUNT {
                        let (new_s, new_r) = bounded(cap);
                        let new_r: T = Box::new(Some(new_r));
                        select! { send(s, new_r) -> res => res.unwrap() }
                        s = new_s;
                    }
                });
                sc.spawn(move || {
                    let mut r = r;
                    for _ in 0..COUNT {
                        let mut v = select! { recv(r) -> v => v.unwrap() };
                        r = v.downcast_mut::<Option<Receiver<T>>>().unwrap().take().unwrap();
                    }
                });
            });
        }
    }

    fn linearizable_default_and_timeout() {
        // A value is moved from r1 to r2 while the selection runs: it must take one of them.
        const COUNT: usize = 2_000;
        for step in 0..4 {
            let (start_s, start_r) = bounded::<()>(0);
            let (end_s, end_r) = bounded::<()>(0);
            let ((s1, r1), (s2, r2)) = if step % 2 == 0 {
                (bounded::<i32>(1), bounded::<i32>(1))
            } else {
                (unbounded::<i32>(), unbounded::<i32>())
            };
            let zero_timeout = step >= 2;
            scope(|sc| {
                sc.spawn(|| {
                    for _ in 0..COUNT {
                        start_s.send(()).unwrap();
                        s1.send(1).unwrap();
                        if zero_timeout {
                            select! {
                                recv(r1) -> _ => {}
                                recv(r2) -> _ => {}
                                default(Duration::ZERO) => unreachable!(),
                            }
                        } else {
                            select! {
                                recv(r1) -> _ => {}
                                recv(r2) -> _ => {}
                                default => unreachable!(),
                            }
                        }
                        end_s.send(()).unwrap();
                        let _ = r2.try_recv();
                    }
                });
                for _ in 0..COUNT {
                    start_r.recv().unwrap();
                    s2.send(1).unwrap();
                    let _ = r1.try_recv();
                    end_r.recv().unwrap();
                }
            });
        }
    }

    fn fairness_of_ready_arms() {
        // Two arms always ready (the zero-capacity case is in `crossbeam_zero.rs`: here a
        // coroutine alone on its worker would hold it, never waiting, between preemptions).
        const COUNT: usize = 2_000;
        let (s1, r1) = unbounded::<()>();
        let (s2, r2) = bounded::<()>(1);
        for _ in 0..COUNT {
            s1.send(()).unwrap();
        }
        let mut hits = [0usize; 2];
        for _ in 0..COUNT {
            let _ = s2.try_send(());
            select! {
                recv(r1) -> _ => hits[0] += 1,
                recv(r2) -> _ => hits[1] += 1,
            }
        }
        assert!(hits.iter().all(|&h| h >= COUNT / 4), "{hits:?}");
    }

    fn biased_prefers_the_first_ready_arm() {
        let (s1, r1) = unbounded::<i32>();
        let (s2, r2) = unbounded::<i32>();
        for _ in 0..10 {
            s1.send(1).unwrap();
            s2.send(2).unwrap();
        }
        for _ in 0..10 {
            select_biased! {
                recv(r1) -> v => assert_eq!(v, Ok(1)),
                recv(r2) -> _ => panic!(),
            }
        }
        for _ in 0..10 {
            select_biased! {
                recv(r1) -> _ => panic!(),
                recv(r2) -> v => assert_eq!(v, Ok(2)),
            }
        }
        let (s3, _r3) = unbounded::<i32>();
        select_biased! {
            send(s3, 1) -> res => res.unwrap(),
            default => panic!(),
        }
    }

    fn arm_forms() {
        // Channel ends by value, by reference, by double reference, and as temporaries.
        let (s, r) = unbounded::<i32>();
        let (rs, rr) = (&s, &r);
        select! { send(s, 1) -> _ => {} }
        select! { send(rs, 2) -> _ => {} }
        select! { send(&rs, 3) -> _ => {} }
        select! { recv(r) -> v => assert_eq!(v, Ok(1)) }
        select! { recv(rr) -> v => assert_eq!(v, Ok(2)) }
        select! { recv(&rr) -> v => assert_eq!(v, Ok(3)) }
        select! {
            recv(never::<i32>()) -> _ => panic!(),
            recv(after(ms(1))) -> _ => {}
        }
        // Bodies: blocks with or without commas, expressions, control flow.
        let mut n = 0;
        for i in 0..3 {
            s.send(i).unwrap();
            select! {
                recv(r) -> v => {
                    if v == Ok(1) { continue; }
                    n += 1;
                }
                default => {}
            }
        }
        assert_eq!(n, 2);
        let f = || -> Result<i32, RecvError> {
            drop(s);
            let v = select! { recv(r) -> v => v? };
            Ok(v)
        };
        assert_eq!(f(), Err(RecvError));
    }

    fn send_values_are_lazy() {
        let evaluated = AtomicUsize::new(0);
        let val = |v: i32| {
            evaluated.fetch_add(1, Ordering::SeqCst);
            v
        };
        let (s1, _r1) = bounded::<i32>(0);
        let (s2, r2) = bounded::<i32>(1);
        for round in 0..5 {
            select! {
                send(s1, val(1)) -> _ => panic!(),
                send(s2, val(2)) -> res => res.unwrap(),
            }
            assert_eq!(evaluated.load(Ordering::SeqCst), round + 1);
            assert_eq!(r2.recv(), Ok(2));
        }
    }

    fn many_arms() {
        let chans: Vec<(Sender<usize>, Receiver<usize>)> = (0..32).map(|_| unbounded()).collect();
        chans[31].0.send(31).unwrap();
        let r = |i: usize| &chans[i].1;
        select! {
            recv(r(0)) -> _ => panic!(), recv(r(1)) -> _ => panic!(), recv(r(2)) -> _ => panic!(),
            recv(r(3)) -> _ => panic!(), recv(r(4)) -> _ => panic!(), recv(r(5)) -> _ => panic!(),
            recv(r(6)) -> _ => panic!(), recv(r(7)) -> _ => panic!(), recv(r(8)) -> _ => panic!(),
            recv(r(9)) -> _ => panic!(), recv(r(10)) -> _ => panic!(), recv(r(11)) -> _ => panic!(),
            recv(r(12)) -> _ => panic!(), recv(r(13)) -> _ => panic!(), recv(r(14)) -> _ => panic!(),
            recv(r(15)) -> _ => panic!(), recv(r(16)) -> _ => panic!(), recv(r(17)) -> _ => panic!(),
            recv(r(18)) -> _ => panic!(), recv(r(19)) -> _ => panic!(), recv(r(20)) -> _ => panic!(),
            recv(r(21)) -> _ => panic!(), recv(r(22)) -> _ => panic!(), recv(r(23)) -> _ => panic!(),
            recv(r(24)) -> _ => panic!(), recv(r(25)) -> _ => panic!(), recv(r(26)) -> _ => panic!(),
            recv(r(27)) -> _ => panic!(), recv(r(28)) -> _ => panic!(), recv(r(29)) -> _ => panic!(),
            recv(r(30)) -> _ => panic!(), recv(r(31)) -> v => assert_eq!(v, Ok(31)),
        }
    }
}
