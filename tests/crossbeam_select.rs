//! The `Select` builder (two-phase, reusable, biased, `ready`), on the scenarios of
//! crossbeam-channel's `tests/select.rs` and `tests/ready.rs` (crossbeam: Copyright (c) 2019
//! The Crossbeam Project Developers, MIT or Apache-2.0), written anew for sigcoro rather than
//! copied. Each test runs on plain threads and in coroutines on one and on two workers
//! (`common::three_ways`).

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use common::{ms, scope, sleep};
use sigcoro::sync::Select;
use sigcoro::sync::channel::{RecvError, SendError, bounded, never, unbounded};

three_ways_tests! {
    fn smoke() {
        let (s1, r1) = unbounded::<i32>();
        let (s2, r2) = unbounded::<i32>();
        s1.send(1).unwrap();
        let mut sel = Select::new();
        let i1 = sel.recv(&r1);
        let i2 = sel.recv(&r2);
        let op = sel.select();
        assert_eq!(op.index(), i1);
        assert_eq!(op.recv(&r1), Ok(1));
        s2.send(2).unwrap();
        let op = sel.select(); // reused
        assert_eq!(op.index(), i2);
        assert_eq!(op.recv(&r2), Ok(2));
    }

    fn try_select_timeout_and_deadline() {
        let (s, r) = bounded::<i32>(1);
        let mut sel = Select::new();
        let i = sel.recv(&r);
        assert!(sel.try_select().is_err());
        assert!(sel.select_timeout(ms(2)).is_err());
        assert!(sel.select_deadline(Instant::now() + ms(2)).is_err());
        s.send(1).unwrap();
        let op = sel.select_timeout(ms(10_000)).unwrap();
        assert_eq!((op.index(), op.recv(&r)), (i, Ok(1)));
        drop(s);
        let op = sel.try_select().unwrap();
        assert_eq!(op.recv(&r), Err(RecvError), "disconnected arms are ready");
    }

    fn sends_are_completed_with_their_value() {
        let (s1, r1) = bounded::<i32>(1);
        let (s2, r2) = bounded::<i32>(0);
        let mut sel = Select::new();
        let i1 = sel.send(&s1);
        let _i2 = sel.send(&s2);
        let op = sel.select();
        assert_eq!(op.index(), i1);
        op.send(&s1, 10).unwrap();
        assert_eq!(r1.recv(), Ok(10));
        drop(r2);
        let mut sel = Select::new();
        sel.send(&s2);
        let op = sel.select();
        assert_eq!(op.send(&s2, 3), Err(SendError(3)));
    }

    fn unblocks() {
        let (s1, r1) = bounded::<i32>(0);
        let (s2, r2) = bounded::<i32>(0);
        scope(|sc| {
            sc.spawn(|| {
                sleep(ms(5));
                s2.send(2).unwrap();
            });
            let mut sel = Select::new();
            sel.recv(&r1);
            let i2 = sel.recv(&r2);
            let op = sel.select_timeout(ms(20_000)).unwrap();
            assert_eq!(op.index(), i2);
            assert_eq!(op.recv(&r2), Ok(2));
        });
        scope(|sc| {
            sc.spawn(|| assert_eq!(r1.recv(), Ok(1)));
            let mut sel = Select::new();
            let i1 = sel.send(&s1);
            sel.send(&s2);
            let op = sel.select();
            assert_eq!(op.index(), i1);
            op.send(&s1, 1).unwrap();
        });
    }

    fn remove_and_biased() {
        let (s1, r1) = unbounded::<i32>();
        let (s2, r2) = unbounded::<i32>();
        let (s3, r3) = unbounded::<i32>();
        for s in [&s1, &s2, &s3] {
            s.send(1).unwrap();
            s.send(2).unwrap();
        }
        let mut sel = Select::new_biased();
        let i1 = sel.recv(&r1);
        let i2 = sel.recv(&r2);
        let i3 = sel.recv(&r3);
        let op = sel.select();
        assert_eq!(op.index(), i1);
        op.recv(&r1).unwrap();
        sel.remove(i1);
        let op = sel.select();
        assert_eq!(op.index(), i2, "biased: the first arm left");
        op.recv(&r2).unwrap();
        sel.remove(i2);
        assert_eq!(sel.try_ready(), Ok(i3));
        let op = sel.select();
        assert_eq!((op.index(), op.recv(&r3)), (i3, Ok(1)));
        let removed_twice = catch_unwind(AssertUnwindSafe(|| sel.remove(i2)));
        assert!(removed_twice.is_err());
    }

    fn ready_does_not_perform() {
        let (s, r) = unbounded::<i32>();
        let (s0, r0) = bounded::<i32>(0);
        let mut sel = Select::new();
        let ir = sel.recv(&r);
        assert!(sel.try_ready().is_err());
        assert!(sel.ready_timeout(ms(2)).is_err());
        s.send(5).unwrap();
        assert_eq!(sel.ready(), ir);
        assert_eq!(sel.ready(), ir, "ready again: nothing was taken");
        assert_eq!(r.try_recv(), Ok(5));
        let mut sel = Select::new();
        let is0 = sel.send(&s0);
        assert!(sel.try_ready().is_err(), "nobody receives");
        scope(|sc| {
            sc.spawn(|| assert_eq!(r0.recv(), Ok(7)));
            assert_eq!(sel.ready_deadline(Instant::now() + ms(20_000)), Ok(is0));
            s0.send(7).unwrap();
        });
    }

    fn send_and_recv_on_one_rendezvous_channel_do_not_pair() {
        let (s, r) = bounded::<i32>(0);
        let mut sel = Select::new();
        sel.send(&s);
        sel.recv(&r);
        assert!(sel.select_timeout(ms(2)).is_err());
        assert!(sel.ready_timeout(ms(2)).is_err());
    }

    fn matching_pairs_through_selections() {
        const PEERS: usize = 8;
        let (s, r) = bounded::<usize>(0);
        scope(|sc| {
            for i in 0..PEERS {
                let (s, r) = (&s, &r);
                sc.spawn(move || {
                    let mut sel = Select::new();
                    let is = sel.send(s);
                    let ir = sel.recv(r);
                    let op = sel.select();
                    match op.index() {
                        x if x == is => op.send(s, i).unwrap(),
                        x if x == ir => assert_ne!(op.recv(r).unwrap(), i),
                        _ => unreachable!(),
                    }
                });
            }
        });
        assert!(r.try_recv().is_err());
    }

    fn stress_recv_from_two_channels() {
        const COUNT: usize = 2_000;
        let (s1, r1) = unbounded::<usize>();
        let (s2, r2) = bounded::<usize>(5);
        let (s3, r3) = bounded::<()>(100);
        scope(|sc| {
            sc.spawn(|| {
                for i in 0..COUNT {
                    s1.send(i).unwrap();
                    r3.recv().unwrap();
                    s2.send(i).unwrap();
                    r3.recv().unwrap();
                }
            });
            for i in 0..COUNT {
                for _ in 0..2 {
                    let mut sel = Select::new();
                    let i1 = sel.recv(&r1);
                    let i2 = sel.recv(&r2);
                    let op = sel.select();
                    let v = if op.index() == i1 { op.recv(&r1) } else { assert_eq!(op.index(), i2); op.recv(&r2) };
                    assert_eq!(v, Ok(i));
                    s3.send(()).unwrap();
                }
            }
        });
    }

    fn selected_operation_misuse_panics() {
        let (s, r) = unbounded::<i32>();
        let (s2, r2) = unbounded::<i32>();
        s.send(1).unwrap();
        let mut sel = Select::new();
        sel.recv(&r);
        let op = sel.select();
        assert!(catch_unwind(AssertUnwindSafe(|| op.recv(&r2))).is_err(), "another channel");
        let mut sel = Select::new();
        sel.send(&s2);
        let op = sel.select();
        assert!(catch_unwind(AssertUnwindSafe(|| drop(op))).is_err(), "dropped uncompleted");
        // Its room came back: the channel still works.
        s2.send(4).unwrap();
        assert_eq!(r2.recv(), Ok(4));
        let never = never::<i32>();
        let mut sel = Select::new();
        sel.recv(&never);
        assert!(sel.try_select().is_err());
    }
}
