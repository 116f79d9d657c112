//! Behaviour tests of the foundation: `sigcoro::coroutine` on pooled, guarded stacks born by
//! the signal-stack trick. Crashing cases (stack overflows) live in `tests/crash.rs`.

mod common;

use common::with_timeout;
use sigcoro::coroutine::{Builder, Coroutine, CoroutineResult, Yielder};
use sigcoro::stack::{self, DEFAULT_STACK_SIZE, MAX_STACK_SIZE, min_stack_size, thread_stats};
use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::hint::black_box;
use std::io;
use std::mem::MaybeUninit;
use std::panic::{self, AssertUnwindSafe};
use std::ptr;
use std::rc::Rc;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use CoroutineResult::{Return, Yield};

/// Counts its drops in a shared counter.
struct DropCount(Rc<Cell<u32>>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

/// The text of a panic payload (`panic!` with or without format arguments).
fn payload_text(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<not a string>".to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// Values crossing resume and suspend.

#[test]
fn small_values_cross_both_ways() {
    // u64 in, u64 out, u64 returned: all in the word.
    let mut co = Coroutine::new(|y: &Yielder<u64, u64>, mut v: u64| {
        for _ in 0..3 {
            v = y.suspend(v.wrapping_mul(3)) + 1;
        }
        v + u64::MAX / 2
    });
    assert_eq!(co.resume(1), Yield(3));
    assert_eq!(co.resume(10), Yield(33));
    assert_eq!(co.resume(u64::MAX - 1), Yield(u64::MAX.wrapping_mul(3)));
    assert_eq!(co.resume(0), Return(1 + u64::MAX / 2));
    assert!(co.is_finished());

    // Differently typed small values: a byte in, a float out, a char returned.
    let mut co = Coroutine::new(|y: &Yielder<i8, f64>, first: i8| {
        let second = y.suspend(f64::from(first) / 2.0);
        let third = y.suspend(-0.0);
        char::from(b'a' + (second + third) as u8)
    });
    assert_eq!(co.resume(-7), Yield(-3.5));
    match co.resume(2) {
        Yield(z) => assert!(z == 0.0 && z.is_sign_negative()),
        other => panic!("expected a yield, got {other:?}"),
    }
    assert_eq!(co.resume(3), Return('f'));

    // Owning word-sized values (a Box and an Option<Box>) move across without leaks or copies.
    let mut co = Coroutine::new(|y: &Yielder<Box<u32>, Option<Box<u32>>>, b: Box<u32>| {
        let b2 = y.suspend(Some(Box::new(*b + 1)));
        let _ = y.suspend(None);
        (*b2, Box::new(7u8))
    });
    assert_eq!(co.resume(Box::new(41)), Yield(Some(Box::new(42))));
    assert_eq!(co.resume(Box::new(5)), Yield(None));
    assert_eq!(co.resume(Box::new(0)), Return((5, Box::new(7))));
}

#[test]
fn large_values_cross_both_ways() {
    // [u64; 8] (64 bytes) in every direction.
    let mut co = Coroutine::new(|y: &Yielder<[u64; 8], [u64; 8]>, mut a: [u64; 8]| {
        for round in 0..2u64 {
            for (i, x) in a.iter_mut().enumerate() {
                *x = *x * 10 + i as u64 + round;
            }
            a = y.suspend(a);
        }
        a.map(|x| x + 1)
    });
    assert_eq!(co.resume([1; 8]), Yield([10, 11, 12, 13, 14, 15, 16, 17]));
    assert_eq!(co.resume([2; 8]), Yield([21, 22, 23, 24, 25, 26, 27, 28]));
    assert_eq!(co.resume([9; 8]), Return([10; 8]));

    // Strings (24 bytes, owning heap memory).
    let mut co = Coroutine::new(|y: &Yielder<String, String>, mut s: String| {
        loop {
            if s == "stop" {
                return format!("stopped after {}", s.len());
            }
            s = y.suspend(s.to_uppercase() + "!");
        }
    });
    assert_eq!(co.resume("hello".to_string()), Yield("HELLO!".to_string()));
    assert_eq!(co.resume("x".repeat(1000)), Yield("X".repeat(1000) + "!"));
    assert_eq!(co.resume("stop".to_string()), Return("stopped after 4".to_string()));

    // 16-byte-aligned and 64-byte-aligned values.
    #[derive(Clone, Copy, Debug, PartialEq)]
    #[repr(align(64))]
    struct Aligned([u8; 64]);
    let mut co = Coroutine::new(|y: &Yielder<u128, Aligned>, v: u128| {
        let w = y.suspend(Aligned([v as u8; 64]));
        Aligned([(w >> 120) as u8; 64])
    });
    match co.resume(0x1234) {
        Yield(a) => {
            assert_eq!(a, Aligned([0x34; 64]));
            assert_eq!(ptr::from_ref(&a) as usize % 64, 0);
        }
        other => panic!("expected a yield, got {other:?}"),
    }
    assert_eq!(co.resume(0xAB << 120), Return(Aligned([0xAB; 64])));
}

#[test]
fn values_crossing_are_dropped_exactly_once() {
    // A large value that counts its drops: each one sent is received and dropped once.
    struct Big {
        _pad: [u64; 6],
        _count: DropCount,
    }
    let drops = Rc::new(Cell::new(0));
    let d = drops.clone();
    let big = move || Big {
        _pad: [7; 6],
        _count: DropCount(d.clone()),
    };
    let make = big.clone();
    let mut co = Coroutine::new(move |y: &Yielder<Big, Big>, first: Big| {
        drop(first);
        let second = y.suspend(make());
        drop(second);
        let _third = y.suspend(make());
        make()
    });
    // Each resume sends one Big and gets one back; all four resumes' worth are dropped here.
    for step in 0..3 {
        let got = co.resume(big());
        assert!(matches!(got, Yield(_) | Return(_)), "step {step}");
    }
    assert!(co.is_finished());
    assert_eq!(drops.get(), 6, "3 sent in, 3 sent out, each dropped once");
}

#[test]
fn zero_sized_values_cross() {
    let mut co = Coroutine::new(|y: &Yielder<(), ()>, ()| {
        y.suspend(());
        y.suspend(());
    });
    assert_eq!(co.resume(()), Yield(()));
    assert_eq!(co.resume(()), Yield(()));
    assert_eq!(co.resume(()), Return(()));

    // A zero-sized type with a destructor is moved, not copied: it drops exactly once each time.
    thread_local! {
        static ZST_DROPS: Cell<u32> = const { Cell::new(0) };
    }
    #[derive(Debug, PartialEq)]
    struct Token;
    impl Drop for Token {
        fn drop(&mut self) {
            ZST_DROPS.with(|c| c.set(c.get() + 1));
        }
    }
    assert_eq!(size_of::<Token>(), 0);
    let mut co = Coroutine::new(|y: &Yielder<Token, Token>, t: Token| {
        drop(t);
        let t = y.suspend(Token);
        drop(t);
        Token
    });
    let first = co.resume(Token);
    assert_eq!(ZST_DROPS.with(Cell::get), 1);
    drop(first);
    assert_eq!(ZST_DROPS.with(Cell::get), 2);
    let last = co.resume(Token);
    assert_eq!(ZST_DROPS.with(Cell::get), 3);
    drop(last);
    assert_eq!(ZST_DROPS.with(Cell::get), 4);
}

#[test]
fn suspend_from_deep_inside_nested_calls() {
    fn walk(y: &Yielder<(), u32>, depth: u32) {
        if depth == 0 {
            return;
        }
        let local = black_box([depth; 32]);
        y.suspend(local[31]);
        walk(y, depth - 1);
        y.suspend(local[0] + 100);
    }
    let mut co = Coroutine::new(|y: &Yielder<(), u32>, ()| walk(y, 50));
    let mut seen = Vec::new();
    while let Yield(v) = co.resume(()) {
        seen.push(v);
    }
    let expected: Vec<u32> = (1..=50).rev().chain((1..=50).map(|d| d + 100)).collect();
    assert_eq!(seen, expected);
}

// ---------------------------------------------------------------------------------------------
// Nesting.

#[test]
fn nesting_three_levels() {
    // inner yields 1, 2, 3; middle turns each into x * 10 and passes it up; outer adds 1.
    let mut outer = Coroutine::new(|y_outer: &Yielder<(), u32>, ()| {
        let mut middle = Coroutine::new(|y_middle: &Yielder<(), u32>, ()| {
            let mut inner = Coroutine::new(|y_inner: &Yielder<(), u32>, ()| {
                for i in 1..=3 {
                    y_inner.suspend(i);
                }
                "inner done"
            });
            loop {
                match inner.resume(()) {
                    Yield(v) => y_middle.suspend(v * 10),
                    Return(s) => return s.len() as u32,
                }
            }
        });
        let mut total = 0;
        loop {
            match middle.resume(()) {
                Yield(v) => {
                    total += v;
                    y_outer.suspend(v + 1);
                }
                Return(len) => return total + len,
            }
        }
    });
    assert_eq!(outer.resume(()), Yield(11));
    assert_eq!(outer.resume(()), Yield(21));
    assert_eq!(outer.resume(()), Yield(31));
    assert_eq!(outer.resume(()), Return(60 + "inner done".len() as u32));
}

#[test]
fn a_coroutine_is_resumed_by_different_resumers() {
    // `shared` is resumed alternately by the test thread and from inside `driver`: each suspend
    // must go back to whoever resumed it this time.
    let shared = Rc::new(RefCell::new(Coroutine::new(|y: &Yielder<u32, u32>, mut v: u32| {
        loop {
            v = y.suspend(v + 1);
        }
    })));
    let s = shared.clone();
    let mut driver = Coroutine::new(move |y: &Yielder<u32, u32>, v: u32| {
        let mut v = v;
        loop {
            let got = match s.borrow_mut().resume(v * 100) {
                Yield(x) => x,
                Return(()) => unreachable!(),
            };
            v = y.suspend(got);
        }
    });
    assert_eq!(shared.borrow_mut().resume(1), Yield(2));
    assert_eq!(driver.resume(3), Yield(301));
    assert_eq!(shared.borrow_mut().resume(5), Yield(6));
    assert_eq!(driver.resume(7), Yield(701));
    // Dropping the driver drops its clone of `shared` while `shared` stays suspended.
    drop(driver);
    assert_eq!(shared.borrow_mut().resume(9), Yield(10));
}

#[test]
fn dropping_a_suspended_coroutine_from_inside_another() {
    let drops = Rc::new(Cell::new(0));
    let d = drops.clone();
    let mut outer = Coroutine::new(move |y: &Yielder<(), &'static str>, ()| {
        let d2 = d.clone();
        let mut inner: Coroutine<(), (), ()> = Coroutine::new(move |yi, ()| {
            let _guard = DropCount(d2);
            yi.suspend(());
            unreachable!("the inner coroutine is dropped, never resumed again");
        });
        assert_eq!(inner.resume(()), Yield(()));
        y.suspend("inner suspended");
        drop(inner);
        assert_eq!(d.get(), 1);
        "inner dropped"
    });
    assert_eq!(outer.resume(()), Yield("inner suspended"));
    assert_eq!(drops.get(), 0);
    assert_eq!(outer.resume(()), Return("inner dropped"));
    assert_eq!(drops.get(), 1);
}

// ---------------------------------------------------------------------------------------------
// Panics.

#[test]
fn a_panic_reaches_the_resumer_with_its_payload() {
    let mut co = Coroutine::new(|y: &Yielder<u32, u32>, n: u32| {
        let n = y.suspend(n + 1);
        panic!("boom {n}");
    });
    assert_eq!(co.resume(1), Yield(2));
    let err = panic::catch_unwind(AssertUnwindSafe(|| co.resume(42))).expect_err("the coroutine panicked");
    assert_eq!(err.downcast_ref::<String>().map(String::as_str), Some("boom 42"));
    assert!(co.is_finished());

    // A payload of any type, by panic_any, arrives as itself.
    #[derive(Debug, PartialEq)]
    struct Custom(u64, &'static str);
    let mut co = Coroutine::new(|_: &Yielder<(), ()>, ()| -> u8 { panic::panic_any(Custom(7, "seven")) });
    let err = panic::catch_unwind(AssertUnwindSafe(|| co.resume(()))).expect_err("the coroutine panicked");
    assert_eq!(err.downcast_ref::<Custom>(), Some(&Custom(7, "seven")));
    assert!(co.is_finished());

    // The panicking coroutine's locals were dropped on its way out.
    let drops = Rc::new(Cell::new(0));
    let d = drops.clone();
    let mut co = Coroutine::new(move |y: &Yielder<(), ()>, ()| {
        let _a = DropCount(d.clone());
        y.suspend(());
        let _b = DropCount(d);
        panic!("with two locals alive");
    });
    co.resume(());
    assert!(panic::catch_unwind(AssertUnwindSafe(|| co.resume(()))).is_err());
    assert_eq!(drops.get(), 2);
}

#[test]
fn a_panic_crosses_nested_coroutines() {
    let mut outer = Coroutine::new(|_: &Yielder<(), ()>, ()| {
        let mut inner: Coroutine<(), (), ()> = Coroutine::new(|_, ()| panic::panic_any(99u16));
        inner.resume(());
        unreachable!("the inner panic goes on through the outer coroutine");
    });
    let err = panic::catch_unwind(AssertUnwindSafe(|| outer.resume(()))).expect_err("panicked");
    assert_eq!(err.downcast_ref::<u16>(), Some(&99));
    assert!(outer.is_finished());
}

#[test]
fn resuming_a_finished_coroutine_panics() {
    let mut co = Coroutine::new(|_: &Yielder<(), ()>, ()| 5);
    assert_eq!(co.resume(()), Return(5));
    let err = panic::catch_unwind(AssertUnwindSafe(|| co.resume(()))).expect_err("resume after the end");
    let msg = payload_text(&*err);
    assert!(msg.contains("already finished"), "message: {msg}");

    // Also after the coroutine ended by panicking.
    let mut co: Coroutine<(), (), ()> = Coroutine::new(|_, ()| panic!("first"));
    assert!(panic::catch_unwind(AssertUnwindSafe(|| co.resume(()))).is_err());
    let err = panic::catch_unwind(AssertUnwindSafe(|| co.resume(()))).expect_err("resume after the panic");
    let msg = payload_text(&*err);
    assert!(msg.contains("already finished"), "message: {msg}");
}

#[test]
fn backtraces_inside_coroutines_stop_cleanly() {
    // The unwinder must stop at the coroutine's entry, not wander into the resumer's stack.
    let mut outer = Coroutine::new(|_: &Yielder<(), ()>, ()| {
        let mut inner =
            Coroutine::new(|_: &Yielder<(), ()>, ()| std::backtrace::Backtrace::force_capture().to_string());
        match inner.resume(()) {
            Return(s) => s,
            Yield(()) => unreachable!(),
        }
    });
    let Return(trace) = outer.resume(()) else {
        unreachable!()
    };
    assert!(
        trace.contains("sigcoro_trampoline_start"),
        "the trace ends at the trampoline:\n{trace}"
    );
    assert!(
        !trace.contains("run_test") && !trace.contains("lang_start"),
        "nothing of the resumer's stack:\n{trace}"
    );
}

// ---------------------------------------------------------------------------------------------
// Dropping unfinished coroutines.

#[test]
fn dropping_a_suspended_coroutine_unwinds_its_stack() {
    // Guards in several frames drop innermost first; code after the suspend never runs.
    fn nest(y: &Yielder<(), ()>, depth: u32, log: &Rc<RefCell<Vec<u32>>>, after: &Cell<bool>) {
        struct Logged(u32, Rc<RefCell<Vec<u32>>>);
        impl Drop for Logged {
            fn drop(&mut self) {
                self.1.borrow_mut().push(self.0);
            }
        }
        let _g = Logged(depth, log.clone());
        if depth == 0 {
            y.suspend(());
            after.set(true);
        } else {
            nest(y, depth - 1, log, after);
        }
    }
    let log = Rc::new(RefCell::new(Vec::new()));
    let after = Rc::new(Cell::new(false));
    let (l, a) = (log.clone(), after.clone());
    let mut co = Coroutine::new(move |y: &Yielder<(), ()>, ()| nest(y, 4, &l, &a));
    assert_eq!(co.resume(()), Yield(()));
    assert!(log.borrow().is_empty());
    drop(co);
    assert_eq!(*log.borrow(), [0, 1, 2, 3, 4]);
    assert!(!after.get(), "code after the suspension point must not run");

    // A suspended coroutine holding heap memory and a counter.
    let drops = Rc::new(Cell::new(0));
    let d = drops.clone();
    let mut co = Coroutine::new(move |y: &Yielder<u32, u32>, mut v: u32| {
        let _count = DropCount(d);
        let _heap = vec![String::from("on the heap"); 10];
        loop {
            v = y.suspend(v + 1);
        }
    });
    assert_eq!(co.resume(1), Yield(2));
    assert_eq!(co.resume(2), Yield(3));
    drop(co);
    assert_eq!(drops.get(), 1);
}

#[test]
fn dropping_a_never_resumed_coroutine_drops_its_closure() {
    let drops = Rc::new(Cell::new(0));
    let ran = Rc::new(Cell::new(false));
    let (d, r) = (DropCount(drops.clone()), ran.clone());
    let co = Coroutine::new(move |_: &Yielder<(), ()>, ()| {
        r.set(true);
        drop(d);
    });
    assert_eq!(drops.get(), 0, "the closure state lives until the coroutine is dropped");
    drop(co);
    assert_eq!(drops.get(), 1);
    assert!(!ran.get(), "the closure body never ran");
}

#[test]
fn dropping_suspended_coroutines_while_the_resumer_unwinds() {
    // The resumer panics with suspended coroutines alive: their drops, run by its unwinding,
    // unwind each coroutine's stack in turn (a nested unwind on another stack).
    let drops = Rc::new(Cell::new(0));
    let d = drops.clone();
    let result = panic::catch_unwind(AssertUnwindSafe(move || {
        let mut cos: Vec<_> = (0..3)
            .map(|_| {
                let d = d.clone();
                Coroutine::new(move |y: &Yielder<(), ()>, ()| {
                    let _guard = DropCount(d);
                    y.suspend(());
                })
            })
            .collect();
        for co in &mut cos {
            assert_eq!(co.resume(()), Yield(()));
        }
        panic::panic_any("the resumer panics");
    }));
    let payload = result.expect_err("the resumer panicked");
    assert_eq!(
        payload.downcast_ref::<&str>(),
        Some(&"the resumer panics"),
        "the resumer's payload is untouched"
    );
    assert_eq!(drops.get(), 3);

    // A destructor run by a dropped coroutine's unwinding may itself run coroutines.
    struct RunsACoroutine(Rc<Cell<u32>>);
    impl Drop for RunsACoroutine {
        fn drop(&mut self) {
            let mut co = Coroutine::new(|y: &Yielder<u32, u32>, v: u32| y.suspend(v * 2) + 1);
            assert_eq!(co.resume(20), Yield(40));
            assert_eq!(co.resume(1), Return(2));
            let mut suspended = Coroutine::new(|y: &Yielder<(), ()>, ()| y.suspend(()));
            suspended.resume(());
            self.0.set(self.0.get() + 1);
        }
    }
    let d = drops.clone();
    let mut co = Coroutine::new(move |y: &Yielder<(), ()>, ()| {
        let _runs = RunsACoroutine(d);
        y.suspend(());
    });
    co.resume(());
    drop(co);
    assert_eq!(drops.get(), 4);
}

#[test]
fn catching_the_forced_unwind_does_not_keep_a_coroutine_alive() {
    with_timeout(Duration::from_secs(30), || {
        // Catches the forced unwind once, then tries to suspend again: that unwinds again.
        let drops = Rc::new(Cell::new(0));
        let caught = Rc::new(Cell::new(0));
        let after = Rc::new(Cell::new(false));
        let (d, c, a) = (drops.clone(), caught.clone(), after.clone());
        let mut co = Coroutine::new(move |y: &Yielder<(), u32>, ()| {
            let _outer = DropCount(d.clone());
            let r = panic::catch_unwind(AssertUnwindSafe(|| {
                let _inner = DropCount(d.clone());
                y.suspend(1);
            }));
            assert!(r.is_err(), "suspend unwinds when the coroutine is dropped");
            c.set(c.get() + 1);
            y.suspend(2);
            a.set(true);
        });
        assert_eq!(co.resume(()), Yield(1));
        drop(co);
        assert_eq!(caught.get(), 1);
        assert_eq!(drops.get(), 2, "both guards dropped");
        assert!(!after.get());

        // Keeps catching, several times, then returns normally: it still ends.
        let caught = Rc::new(Cell::new(0));
        let c = caught.clone();
        let mut co = Coroutine::new(move |y: &Yielder<(), ()>, ()| {
            for _ in 0..5 {
                if panic::catch_unwind(AssertUnwindSafe(|| y.suspend(()))).is_err() {
                    c.set(c.get() + 1);
                }
            }
            String::from("returned after catching")
        });
        assert_eq!(co.resume(()), Yield(()));
        drop(co);
        assert_eq!(
            caught.get(),
            5,
            "every further suspend unwinds at once, without switching"
        );
    });
}

// ---------------------------------------------------------------------------------------------
// Scale and pooling.

#[test]
fn a_hundred_thousand_live_coroutines() {
    const N: u64 = 100_000;
    let mut cos: Vec<_> = (0..N)
        .map(|i| {
            Coroutine::new(move |y: &Yielder<u64, u64>, first: u64| {
                let second = y.suspend(first * 3 + i);
                first + second + i
            })
        })
        .collect();
    for (i, co) in cos.iter_mut().enumerate() {
        let i = i as u64;
        assert_eq!(co.resume(i), Yield(4 * i));
    }
    for (i, co) in cos.iter_mut().enumerate().rev() {
        let i = i as u64;
        assert_eq!(co.resume(7), Return(2 * i + 7));
        assert!(co.is_finished());
    }
}

#[test]
fn finished_stacks_are_reused_from_the_pool() {
    let run_one = |k: u64| {
        let mut co = Coroutine::new(|y: &Yielder<u64, u64>, v: u64| y.suspend(v) + 1);
        assert_eq!(co.resume(k), Yield(k));
        assert_eq!(co.resume(k), Return(k + 1));
    };
    for k in 0..100 {
        run_one(k);
    }
    let before = thread_stats();
    assert!(before.booted + before.adopted > 0 && before.idle > 0, "{before:?}");
    for k in 0..10_000 {
        run_one(k);
    }
    // Suspended and then dropped (unwound) coroutines give their stacks back too.
    for _ in 0..1_000 {
        let mut co = Coroutine::new(|y: &Yielder<(), ()>, ()| y.suspend(()));
        co.resume(());
    }
    let after = thread_stats();
    assert_eq!(after.booted, before.booted, "no stack booted: {before:?} -> {after:?}");
    assert_eq!(
        after.adopted, before.adopted,
        "no stack taken from other threads: {before:?} -> {after:?}"
    );
    assert_eq!(after.taken, before.taken + 11_000);
    assert_eq!(after.idle, before.idle);
}

#[test]
fn coroutines_on_many_threads_at_once() {
    const THREADS: usize = 8;
    const PER_THREAD: u64 = 10_000;
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                let t = t as u64;
                let mut cos: Vec<_> = (0..PER_THREAD)
                    .map(|i| {
                        Coroutine::new(move |y: &Yielder<u64, u64>, v: u64| {
                            let w = y.suspend(v + t);
                            w * 2 + i
                        })
                    })
                    .collect();
                let ids: Vec<u64> = cos.iter().map(Coroutine::id).collect();
                for co in &mut cos {
                    assert_eq!(co.resume(t * 1000), Yield(t * 1001));
                }
                for (i, co) in cos.iter_mut().enumerate() {
                    assert_eq!(co.resume(t), Return(t * 2 + i as u64));
                }
                (ids, thread_stats())
            })
        })
        .collect();
    let mut all = HashSet::new();
    for h in handles {
        let (ids, stats) = h.join().expect("a worker thread panicked");
        assert_eq!(stats.taken, PER_THREAD);
        all.extend(ids);
    }
    assert_eq!(
        all.len(),
        THREADS * PER_THREAD as usize,
        "ids are unique across threads"
    );
}

#[test]
fn coroutines_and_yielders_stay_on_their_thread() {
    // A started coroutine may hold addresses of its thread's thread-locals: neither it nor its
    // yielder may be sent to or shared with another thread. Checked at compile time: if a type
    // were `Send` (or `Sync`), `some_item` would be ambiguous and this would not compile.
    trait AmbiguousIfImpl<A> {
        fn some_item() {}
    }
    impl<T: ?Sized> AmbiguousIfImpl<()> for T {}
    struct IfSend;
    struct IfSync;
    impl<T: ?Sized + Send> AmbiguousIfImpl<IfSend> for T {}
    impl<T: ?Sized + Sync> AmbiguousIfImpl<IfSync> for T {}
    <Coroutine<u32, u32, u32> as AmbiguousIfImpl<_>>::some_item();
    <Yielder<u32, u32> as AmbiguousIfImpl<_>>::some_item();
}

// ---------------------------------------------------------------------------------------------
// Builder, ids, thread-locals.

#[test]
fn bad_stack_sizes_are_rejected_with_a_reason() {
    let min = min_stack_size();
    let cases = [
        (0, "too small"),
        (1, "too small"),
        (4096, "too small"),
        (min - 1, "too small"),
        (MAX_STACK_SIZE + 1, "larger than the limit"),
    ];
    for (size, why) in cases {
        let err = Builder::<(), (), ()>::new()
            .stack_size(size)
            .build(|_, ()| ())
            .expect_err("a bad size");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "size {size}: {err}");
        let msg = err.to_string();
        assert!(msg.contains(why), "size {size}: {msg}");
        assert!(
            msg.contains(&format!("{size} bytes")),
            "the message names the size asked for: {msg}"
        );
    }
    let msg = Coroutine::<(), (), ()>::builder()
        .stack_size(1)
        .build(|_, ()| ())
        .unwrap_err()
        .to_string();
    assert!(msg.contains(&min.to_string()), "the message names the minimum: {msg}");
}

#[test]
fn stack_size_limits_themselves_work() {
    let min = min_stack_size();
    let page = 4096;
    assert!(min >= 16 * 1024 && min.is_multiple_of(page), "min_stack_size() = {min}");
    // SAFETY: getauxval has no preconditions.
    let frame = unsafe { libc::getauxval(libc::AT_MINSIGSTKSZ) } as usize;
    assert!(min > frame, "min {min} leaves room above the signal frame ({frame})");

    // The smallest stack runs real code.
    let co = Builder::new().stack_size(min).build(|y: &Yielder<u64, u64>, v: u64| {
        let buf = black_box([v as u8; 2048]);
        let sum: u64 = buf.iter().map(|&b| u64::from(b)).sum();
        let w = y.suspend(sum);
        format!("{w}")
    });
    let mut co = co.expect("the minimum size is accepted");
    assert_eq!(co.resume(3), Yield(3 * 2048));
    assert_eq!(co.resume(12), Return("12".to_string()));

    // A size that is not a page multiple is rounded up, and a big stack holds deep use.
    let mut co = Builder::new()
        .stack_size(4 * 1024 * 1024 + 1)
        .build(|_: &Yielder<(), ()>, ()| {
            fn deep(n: u32) -> u64 {
                let local = black_box([u64::from(n); 64]);
                if n == 0 { local[0] } else { deep(n - 1) + local[63] }
            }
            deep(3000)
        })
        .expect("4 MiB + 1 byte");
    assert_eq!(co.resume(()), Return((1..=3000).sum()));

    // The stack holds (at least) the bytes asked for: a frame of nearly all of them fits.
    // (Not inlined into the coroutine's entry frame: see the cold-pages case in tests/crash.rs.)
    #[inline(never)]
    fn use_stack<const N: usize>() -> u8 {
        let mut local = [0u8; N];
        local[N - 1] = 1;
        black_box(&mut local)[N - 1]
    }
    let mut co = Builder::new()
        .build(|_: &Yielder<(), ()>, ()| use_stack::<{ 240 * 1024 }>())
        .expect("build");
    assert_eq!(co.resume(()), Return(1), "a 240 KiB frame on the default 256 KiB stack");
    let mut co = Builder::new()
        .stack_size(128 * 1024)
        .build(|_: &Yielder<(), ()>, ()| use_stack::<{ 120 * 1024 }>())
        .expect("build");
    assert_eq!(co.resume(()), Return(1), "a 120 KiB frame on a 128 KiB stack");

    // The largest size is accepted (the address space is reserved, not committed).
    let mut co = Builder::new()
        .stack_size(MAX_STACK_SIZE)
        .build(|_: &Yielder<(), ()>, ()| 1)
        .expect("MAX_STACK_SIZE");
    assert_eq!(co.resume(()), Return(1));
    assert_eq!(DEFAULT_STACK_SIZE, 256 * 1024);
}

#[test]
fn names_on_the_builder() {
    let mut co = Coroutine::builder()
        .name("worker-7")
        .build(|y: &Yielder<(), u8>, ()| y.suspend(1))
        .expect("named");
    assert_eq!(co.resume(()), Yield(1));
    assert_eq!(co.resume(()), Return(()));
    // Long and non-ASCII names are fine (overflow reports cut them at a character boundary).
    for name in ["é".repeat(40), "x".repeat(1000), String::new(), "名前".to_string()] {
        let mut co = Builder::new()
            .name(name)
            .stack_size(64 * 1024)
            .build(|_: &Yielder<(), ()>, ()| 2)
            .expect("named");
        assert_eq!(co.resume(()), Return(2));
    }
}

#[test]
fn ids_are_unique() {
    let cos: Vec<Coroutine<(), (), ()>> = (0..5_000).map(|_| Coroutine::new(|_, ()| ())).collect();
    let ids: HashSet<u64> = cos.iter().map(Coroutine::id).collect();
    assert_eq!(ids.len(), cos.len());
    assert!(!ids.contains(&0));
    // Ids are not reused after a coroutine ends.
    drop(cos);
    let later: Vec<u64> = (0..5_000)
        .map(|_| Coroutine::<(), (), ()>::new(|_, ()| ()).id())
        .collect();
    assert!(later.iter().all(|id| !ids.contains(id)));
    assert_eq!(later.iter().collect::<HashSet<_>>().len(), later.len());
    let debug = format!("{:?}", Coroutine::<(), (), ()>::new(|_, ()| ()));
    assert!(debug.contains("id") && debug.contains("finished: false"), "{debug}");
}

#[test]
fn thread_locals_are_those_of_the_resuming_thread() {
    thread_local! {
        static TL: Cell<u64> = const { Cell::new(0) };
    }
    let tl_addr = || TL.with(|c| ptr::from_ref(c) as usize);
    let mut co = Coroutine::new(move |y: &Yielder<(), (u64, usize)>, ()| {
        y.suspend((TL.get(), tl_addr()));
        TL.set(TL.get() + 1);
        y.suspend((TL.get(), tl_addr()));
    });
    TL.set(11);
    assert_eq!(co.resume(()), Yield((11, tl_addr())));
    TL.set(22);
    assert_eq!(co.resume(()), Yield((23, tl_addr())));
    assert_eq!(TL.get(), 23, "the coroutine wrote this thread's value");

    // On several threads at once, each coroutine sees its own thread's value.
    let handles: Vec<_> = (1..=4u64)
        .map(|t| {
            thread::spawn(move || {
                TL.set(t * 100);
                let mut cos: Vec<_> = (0..50)
                    .map(|_| {
                        Coroutine::new(|y: &Yielder<(), u64>, ()| {
                            y.suspend(TL.get());
                            TL.get()
                        })
                    })
                    .collect();
                for co in &mut cos {
                    assert_eq!(co.resume(()), Yield(t * 100));
                }
                TL.set(t * 100 + 1);
                for co in &mut cos {
                    assert_eq!(co.resume(()), Return(t * 100 + 1));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread");
    }
}

// ---------------------------------------------------------------------------------------------
// Signals: the boot signal API and the thread's own signal state.

#[test]
fn the_boot_signal_must_be_real_time() {
    let current = sigcoro::boot_signal();
    assert!(
        (libc::SIGRTMIN()..=libc::SIGRTMAX()).contains(&current),
        "boot_signal() = {current}"
    );
    for sig in [
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGSEGV,
        libc::SIGKILL,
        0,
        -1,
        libc::SIGRTMIN() - 1,
        libc::SIGRTMAX() + 1,
    ] {
        let err = sigcoro::set_boot_signal(sig).expect_err("not a real-time signal");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "signal {sig}: {err}");
        assert!(err.to_string().contains("real-time"), "signal {sig}: {err}");
    }
    assert_eq!(sigcoro::boot_signal(), current, "a rejected signal changes nothing");
    // Choosing the current one again is accepted and changes nothing.
    sigcoro::set_boot_signal(current).expect("the current boot signal");
    assert_eq!(sigcoro::boot_signal(), current);
}

fn current_altstack() -> libc::stack_t {
    let mut st = MaybeUninit::<libc::stack_t>::zeroed();
    // SAFETY: sigaltstack with a null new stack only reads the current one into `st`.
    let rc = unsafe { libc::sigaltstack(ptr::null(), st.as_mut_ptr()) };
    assert_eq!(rc, 0, "sigaltstack: {}", io::Error::last_os_error());
    // SAFETY: initialised by the successful call above.
    unsafe { st.assume_init() }
}

fn current_sigmask() -> Vec<libc::c_int> {
    let mut set = MaybeUninit::<libc::sigset_t>::zeroed();
    // SAFETY: a null new set only reads the thread's mask into `set`.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, ptr::null(), set.as_mut_ptr()) };
    assert_eq!(rc, 0);
    (1..=libc::SIGRTMAX())
        .filter(|&s| {
            // SAFETY: `set` was filled in by the call above; sigismember only reads it.
            unsafe { libc::sigismember(set.as_ptr(), s) == 1 }
        })
        .collect()
}

#[test]
fn the_threads_alternate_signal_stack_survives_booting() {
    // A fresh thread, and a stack size no other test uses, so this thread really boots stacks
    // by the signal-stack trick instead of adopting idle ones. (The boot signal's action is
    // process-wide, and other tests boot concurrently: tests/crash.rs checks it in a process
    // of its own.)
    const SIZE: usize = 200 * 1024 + 12 * 1024;
    thread::spawn(|| {
        let before = current_altstack();
        let mask_before = current_sigmask();
        let stats_before = thread_stats();

        let mut cos: Vec<_> = (0..100)
            .map(|i| {
                Builder::new()
                    .stack_size(SIZE)
                    .build(move |y: &Yielder<u32, u32>, v: u32| y.suspend(v + i) * 2)
                    .expect("build")
            })
            .collect();
        for co in &mut cos {
            assert!(matches!(co.resume(1), Yield(_)));
        }
        drop(cos);
        sigcoro::__bench::reboot_one_for_bench(SIZE).expect("reboot");
        let stats_after = thread_stats();
        assert!(
            stats_after.booted > stats_before.booted,
            "stacks were booted here: {stats_after:?}"
        );

        let after = current_altstack();
        eprintln!(
            "alternate stack before: sp {:p} size {} flags {}; after: sp {:p} size {} flags {}",
            before.ss_sp, before.ss_size, before.ss_flags, after.ss_sp, after.ss_size, after.ss_flags
        );
        if before.ss_flags & libc::SS_DISABLE == 0 {
            assert_eq!(
                (after.ss_sp, after.ss_size, after.ss_flags),
                (before.ss_sp, before.ss_size, before.ss_flags),
                "the alternate signal stack std gave this thread is restored exactly"
            );
        } else {
            // No alternate stack before (not std's usual setup): sigcoro gives the thread one
            // for its overflow handler.
            assert_eq!(after.ss_flags & libc::SS_DISABLE, 0, "an alternate stack was installed");
        }
        assert_eq!(current_sigmask(), mask_before, "the signal mask is restored");
    })
    .join()
    .expect("the thread");
}

#[test]
fn coroutines_booted_from_inside_a_coroutine() {
    // A stack size no other test uses: the inner coroutines are booted while running on a
    // coroutine stack, which must not disturb the outer one or the thread's signal state.
    const SIZE: usize = 96 * 1024;
    let before = current_altstack();
    let mut outer = Builder::new()
        .stack_size(SIZE)
        .build(|y: &Yielder<(), u64>, ()| {
            let mut sum = 0;
            for round in 0..3u64 {
                let mut inner: Vec<_> = (0..40u64)
                    .map(|i| {
                        Builder::new()
                            .stack_size(SIZE + 4096)
                            .build(move |_: &Yielder<(), ()>, ()| i * round)
                            .expect("inner")
                    })
                    .collect();
                for co in &mut inner {
                    if let Return(v) = co.resume(()) {
                        sum += v;
                    }
                }
                y.suspend(sum);
            }
            sum
        })
        .expect("outer");
    assert_eq!(outer.resume(()), Yield(0));
    assert_eq!(outer.resume(()), Yield(780));
    assert_eq!(outer.resume(()), Yield(780 * 3));
    assert_eq!(outer.resume(()), Return(780 * 3));
    let after = current_altstack();
    assert_eq!(
        (after.ss_sp, after.ss_size, after.ss_flags),
        (before.ss_sp, before.ss_size, before.ss_flags)
    );
    let _ = stack::guards_are_lightweight().expect("known after the first stack");
}
