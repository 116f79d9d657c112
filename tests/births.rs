//! Stacks whose context is a clone of the signal-stack trick's behave exactly like stacks born
//! by the trick: values in and out, panics and unwinding, overflow reports, backtraces,
//! thread-locals, many spawns.
//!
//! Which way stacks are born is a process-wide setting, and stacks are pooled, so every test
//! here runs its body twice, each time in a fresh child process (this binary re-executed with
//! only that test selected): once as the runtime does it (the first stack of each batch by the
//! trick, the others cloned, the body running on a cloned stack) and once with every birth
//! forced through the trick (the hidden `births_by_trick_only`, the control). Both must pass,
//! and each child checks the births it asked for happened.

mod common;
use common::recurse_forever;

use common::{child_command, is_child};
use sigcoro::coroutine::{Builder, Coroutine, CoroutineResult, Yielder};
use sigcoro::stack::{birth_counts, births_by_trick_only};
use std::cell::{Cell, RefCell};
use std::hint::black_box;
use std::os::unix::process::ExitStatusExt;
use std::panic::{self, AssertUnwindSafe};
use std::process::Output;
use std::rc::Rc;
use std::time::Duration;

/// The child's birth mode: "clone" (the runtime's way) or "trick" (the control).
const MODE_ENV: &str = "SIGCORO_TEST_BIRTHS";
const MODES: [&str; 2] = ["clone", "trick"];

fn trick_mode() -> bool {
    std::env::var(MODE_ENV).as_deref() == Ok("trick")
}

/// Runs `test`'s child once per birth mode; returns what each child did.
fn run_both(test: &str) -> Vec<(&'static str, Output)> {
    MODES
        .iter()
        .map(|&mode| {
            let out = child_command(test)
                .env(MODE_ENV, mode)
                .env("RUST_BACKTRACE", "0")
                .output()
                .expect("running the child");
            (mode, out)
        })
        .collect()
}

/// As the child of `test`: sets the birth mode, runs `body`, and checks the births it made
/// were of that mode. As the test: runs both children and requires both to pass.
fn both_ways(test: &str, body: impl FnOnce()) {
    if is_child(test) {
        let trick = trick_mode();
        births_by_trick_only(trick);
        body();
        let (by_trick, cloned) = birth_counts();
        eprintln!("child: stacks born by the trick {by_trick}, cloned {cloned}");
        assert!(by_trick > 0, "some stack was born by the trick");
        if trick {
            assert_eq!(cloned, 0, "the control births every stack by the trick");
        } else {
            assert!(cloned > 0, "some stack was cloned");
        }
        return;
    }
    for (mode, out) in run_both(test) {
        assert!(
            out.status.success(),
            "{test} with {mode} births: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A coroutine on a fresh stack, and the others made on the way (kept alive until dropped).
type Fresh<T> = (T, Vec<T>);

/// Makes coroutines with `make`, keeping them all unstarted (so every one takes a new stack),
/// until one sits on a stack born this child's way: cloned, or by the trick in the control.
/// Returns it, and the others to drop later.
fn on_fresh_stack<T>(make: impl Fn() -> T, born_by_clone: impl Fn(&T) -> Option<bool>) -> Fresh<T> {
    let want = !trick_mode();
    let mut others = Vec::new();
    for _ in 0..4096 {
        let co = make();
        if born_by_clone(&co) == Some(want) {
            return (co, others);
        }
        others.push(co);
    }
    panic!("no stack born by clone = {want} in 4096 new coroutines");
}

/// A coroutine on a fresh stack of this child's birth mode.
fn fresh<I, Y, R>(make: impl Fn() -> Coroutine<I, Y, R>) -> Fresh<Coroutine<I, Y, R>> {
    on_fresh_stack(make, Coroutine::stack_born_by_clone)
}

fn payload_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------

#[test]
fn values_cross_a_cloned_stack_both_ways() {
    both_ways("values_cross_a_cloned_stack_both_ways", || {
        let (mut co, _others) = fresh(|| {
            Coroutine::new(|y: &Yielder<u64, String>, first: u64| {
                let mut sum = first;
                for i in 0..10 {
                    sum += y.suspend(format!("step {i}, sum {sum}"));
                }
                let big = [sum; 64];
                big.to_vec()
            })
        });
        let mut input = 1;
        for i in 0..10u64 {
            match co.resume(input) {
                CoroutineResult::Yield(s) => assert!(s.starts_with(&format!("step {i}, ")), "{s}"),
                CoroutineResult::Return(_) => panic!("returned early"),
            }
            input = i + 2;
        }
        let CoroutineResult::Return(v) = co.resume(100) else {
            panic!("should have returned")
        };
        // 1 + (2 + .. + 10) + 100
        assert_eq!(v, vec![155u64; 64]);
        assert!(co.is_finished());
    });
}

#[test]
fn panics_unwind_through_a_cloned_stack() {
    both_ways("panics_unwind_through_a_cloned_stack", || {
        struct Logged(u32, Rc<RefCell<Vec<u32>>>);
        impl Drop for Logged {
            fn drop(&mut self) {
                self.1.borrow_mut().push(self.0);
            }
        }
        fn nest(depth: u32, log: &Rc<RefCell<Vec<u32>>>) {
            let _g = Logged(depth, log.clone());
            if depth == 0 {
                panic!("boom at the bottom");
            }
            nest(depth - 1, log);
        }
        // A panic inside: guards drop innermost first, the payload reaches the resumer.
        let log = Rc::new(RefCell::new(Vec::new()));
        let l = log.clone();
        let (mut co, _others) = fresh(move || {
            let l = l.clone();
            Coroutine::new(move |_: &Yielder<(), ()>, ()| nest(3, &l))
        });
        let err = panic::catch_unwind(AssertUnwindSafe(|| co.resume(()))).expect_err("the panic");
        assert_eq!(payload_text(&*err), "boom at the bottom");
        assert_eq!(*log.borrow(), vec![0, 1, 2, 3]);
        assert!(co.is_finished());

        // A suspended coroutine dropped: its stack unwinds from the suspension point.
        let dropped = Rc::new(Cell::new(0));
        let d = dropped.clone();
        let (mut co, others) = fresh(move || {
            let d = d.clone();
            Coroutine::new(move |y: &Yielder<(), ()>, ()| {
                struct Count(Rc<Cell<u32>>);
                impl Drop for Count {
                    fn drop(&mut self) {
                        self.0.set(self.0.get() + 1);
                    }
                }
                let _a = Count(d.clone());
                let _b = Count(d.clone());
                y.suspend(());
                unreachable!("never resumed after the suspend");
            })
        });
        assert_eq!(co.resume(()), CoroutineResult::Yield(()));
        drop(co);
        assert_eq!(dropped.get(), 2);
        drop(others);
        // The stacks went back to the pool and serve again.
        let mut again = Coroutine::new(|_: &Yielder<(), ()>, ()| 7);
        assert_eq!(again.resume(()), CoroutineResult::Return(7));
    });
}

#[test]
fn backtraces_on_a_cloned_stack_end_at_the_entry() {
    both_ways("backtraces_on_a_cloned_stack_end_at_the_entry", || {
        let (mut co, _others) =
            fresh(|| Coroutine::new(|_: &Yielder<(), ()>, ()| std::backtrace::Backtrace::force_capture().to_string()));
        let CoroutineResult::Return(trace) = co.resume(()) else {
            unreachable!()
        };
        assert!(
            trace.contains("sigcoro_trampoline_start"),
            "the trace ends at the trampoline:\n{trace}"
        );
        assert!(
            trace.contains("backtraces_on_a_cloned_stack_end_at_the_entry"),
            "the trace holds the coroutine's own frames:\n{trace}"
        );
        assert!(
            !trace.contains("run_test") && !trace.contains("lang_start"),
            "nothing of the resumer's stack:\n{trace}"
        );
    });
}

thread_local! {
    static HERE: Cell<u64> = const { Cell::new(0) };
}

#[test]
fn thread_locals_on_a_cloned_stack_are_the_threads() {
    both_ways("thread_locals_on_a_cloned_stack_are_the_threads", || {
        let outside = HERE.with(|h| h as *const Cell<u64> as usize);
        let (mut co, _others) = fresh(|| {
            Coroutine::new(|y: &Yielder<(), usize>, ()| {
                let inside = HERE.with(|h| {
                    h.set(h.get() + 41);
                    h as *const Cell<u64> as usize
                });
                y.suspend(inside);
                HERE.with(|h| h.set(h.get() + 1));
                inside
            })
        });
        HERE.with(|h| h.set(0));
        assert_eq!(co.resume(()), CoroutineResult::Yield(outside));
        assert_eq!(HERE.with(Cell::get), 41);
        assert_eq!(co.resume(()), CoroutineResult::Return(outside));
        assert_eq!(HERE.with(Cell::get), 42);
    });
}

#[test]
fn many_spawns_all_alive_at_once() {
    both_ways("many_spawns_all_alive_at_once", || {
        for workers in [1, 2] {
            let rt = sigcoro::Runtime::builder().workers(workers).build().expect("runtime");
            let total = rt.block_on(|| {
                // Every coroutine sleeps before it ends, so all 3,000 hold a stack at once.
                let handles: Vec<_> = (0..3000u64)
                    .map(|i| {
                        sigcoro::spawn(move || {
                            let before = HERE.with(|h| h as *const Cell<u64> as usize);
                            sigcoro::sleep(Duration::from_millis(20));
                            sigcoro::yield_now();
                            assert_eq!(before, HERE.with(|h| h as *const Cell<u64> as usize));
                            black_box(i) * 2
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
            });
            assert_eq!(total, 2 * (0..3000).sum::<u64>());
            rt.shutdown();
        }
        let (_, cloned) = birth_counts();
        if !trick_mode() {
            assert!(cloned >= 2000, "most of the 6,000 stacks were cloned: {cloned}");
        }
    });
}

#[test]
fn cloned_and_trick_born_stacks_in_one_process_behave_alike() {
    // In the cloning mode one process holds both kinds: the same work on each gives the same
    // results, and panics cross each the same way.
    both_ways("cloned_and_trick_born_stacks_in_one_process_behave_alike", || {
        let mut cos: Vec<Coroutine<u64, u64, u64>> = (0..600)
            .map(|_| {
                Coroutine::new(|y: &Yielder<u64, u64>, mut x: u64| {
                    for _ in 0..3 {
                        x = y.suspend(x * 3) + 1;
                    }
                    if x == 13 {
                        panic!("thirteen");
                    }
                    x
                })
            })
            .collect();
        let kinds: Vec<bool> = cos.iter().map(|c| c.stack_born_by_clone().unwrap()).collect();
        assert!(kinds.iter().any(|&k| !k), "some stack born by the trick");
        assert_eq!(
            kinds.iter().any(|&k| k),
            !trick_mode(),
            "cloned stacks only when cloning"
        );
        let mut outcomes: [Vec<String>; 2] = [Vec::new(), Vec::new()];
        for (i, (co, cloned)) in cos.iter_mut().zip(&kinds).enumerate() {
            let start = (i % 5) as u64;
            let run = panic::catch_unwind(AssertUnwindSafe(|| {
                let mut v = co.resume(start);
                let mut seen = Vec::new();
                while let CoroutineResult::Yield(y) = v {
                    seen.push(y);
                    v = co.resume(y);
                }
                let CoroutineResult::Return(r) = v else { unreachable!() };
                format!("{start}: {seen:?} -> {r}")
            }));
            let text = run.unwrap_or_else(|p| format!("{start}: panicked {}", payload_text(&*p)));
            outcomes[usize::from(*cloned)].push(text);
        }
        if !trick_mode() {
            // The same outcomes on either kind of stack, one per starting value.
            assert!(outcomes.iter().all(|o| o.len() >= 5), "{outcomes:?}");
            let key = |v: &Vec<String>| {
                let mut k: Vec<String> = v.iter().take(50).cloned().collect();
                k.sort();
                k.dedup();
                k
            };
            assert_eq!(key(&outcomes[0]), key(&outcomes[1]));
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Overflow reports: the child crashes on purpose.

#[test]
fn overflow_of_a_cloned_stack_is_reported() {
    const TEST: &str = "overflow_of_a_cloned_stack_is_reported";
    if is_child(TEST) {
        births_by_trick_only(trick_mode());
        let (mut co, _others) = fresh(|| {
            Builder::new()
                .name("births-deep")
                .stack_size(64 * 1024)
                .build(|_: &Yielder<(), ()>, ()| recurse_forever(0))
                .expect("building the coroutine")
        });
        eprintln!(
            "child: the overflowing stack was born by clone: {}",
            co.stack_born_by_clone().expect("unstarted")
        );
        co.resume(());
        unreachable!("the coroutine cannot return");
    }
    for (mode, out) in run_both(TEST) {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGABRT),
            "{mode}: {:?}\n{stderr}",
            out.status
        );
        let cloned = mode == "clone";
        assert!(
            stderr.contains(&format!("born by clone: {cloned}")),
            "{mode}: the child ran on the stack it meant to:\n{stderr}"
        );
        assert!(
            stderr.contains("coroutine 'births-deep'") && stderr.contains("has overflowed its stack of"),
            "{mode}: the overflow report:\n{stderr}"
        );
        assert!(!stderr.contains("thread '"), "{mode}: not a thread overflow:\n{stderr}");
    }
}
