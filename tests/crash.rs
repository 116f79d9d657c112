//! Tests that crash on purpose, each in a child process.
//!
//! Every test here runs twice: as itself it re-executes this test binary with
//! `--exact <its name>` and `SIGCORO_TEST_CHILD=<its name>` in the environment, and checks how
//! that child died (exit status, stderr). As the child, the same function does the crashing
//! work instead. The child's core dumps are turned off.

mod common;
use common::recurse_forever;

use common::child::Outcome;
use common::is_child;
use sigcoro::coroutine::{Builder, Coroutine, CoroutineResult, Yielder};
use sigcoro::stack::{guards_are_lightweight, thread_stats};
use std::os::unix::process::ExitStatusExt;
use std::thread;
use std::time::{Duration, Instant};

/// Re-runs this binary with only `test` selected, as its child, without core dumps; kills it
/// after `timeout`.
fn run_child(test: &str, timeout: Duration) -> Outcome {
    common::child::run(test, timeout, &[])
}

fn assert_aborted(out: &Outcome) {
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGABRT),
        "expected death by SIGABRT: {out:?}"
    );
}

// ---------------------------------------------------------------------------------------------

#[test]
fn overflow_of_a_named_coroutine_is_reported() {
    const TEST: &str = "overflow_of_a_named_coroutine_is_reported";
    if is_child(TEST) {
        let mut co = Builder::new()
            .name("deep-recursion")
            .stack_size(64 * 1024)
            .build(|_: &Yielder<(), ()>, ()| recurse_forever(0))
            .expect("building the coroutine");
        eprintln!("child: resuming coroutine {} for its overflow", co.id());
        co.resume(());
        unreachable!("the coroutine cannot return");
    }
    let out = run_child(TEST, Duration::from_secs(60));
    assert_aborted(&out);
    assert!(out.stderr.contains("coroutine 'deep-recursion'"), "{out:?}");
    assert!(out.stderr.contains("has overflowed its stack of"), "{out:?}");
    // The report gives the stack size: at least the 64 KiB asked for, rounded to pages.
    let size: usize = out
        .stderr
        .split("has overflowed its stack of ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a stack size in the report: {out:?}"));
    assert!(
        (64 * 1024..64 * 1024 + 2 * 4096).contains(&size),
        "reported size {size}: {out:?}"
    );
    assert!(
        !out.stderr.contains("thread '"),
        "not mistaken for a thread overflow: {out:?}"
    );
}

#[test]
fn overflow_of_an_unnamed_coroutine_is_reported() {
    const TEST: &str = "overflow_of_an_unnamed_coroutine_is_reported";
    if is_child(TEST) {
        // Run a few coroutines first, so the overflowing one is not the first of its stack.
        for i in 0..10u64 {
            let mut co = Coroutine::new(move |_: &Yielder<(), ()>, ()| i);
            assert_eq!(co.resume(()), CoroutineResult::Return(i));
        }
        let mut co = Coroutine::new(|_: &Yielder<(), ()>, ()| recurse_forever(0));
        eprintln!("child: coroutine id {}", co.id());
        co.resume(());
        unreachable!("the coroutine cannot return");
    }
    let out = run_child(TEST, Duration::from_secs(60));
    assert_aborted(&out);
    assert!(out.stderr.contains("<unnamed>"), "{out:?}");
    assert!(out.stderr.contains("(id "), "{out:?}");
    let id = out
        .stderr
        .split("child: coroutine id ")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .unwrap_or_else(|| panic!("the child printed its coroutine's id: {out:?}"));
    assert!(
        out.stderr.contains(&format!("(id {id})")),
        "the report names the same id {id}: {out:?}"
    );
    assert!(out.stderr.contains("has overflowed its stack of"), "{out:?}");
}

#[test]
fn long_names_are_cut_at_a_character_boundary_in_reports() {
    const TEST: &str = "long_names_are_cut_at_a_character_boundary_in_reports";
    if is_child(TEST) {
        // 40 two-byte characters: 80 bytes, of which the report keeps whole characters only.
        let mut co = Builder::new()
            .name("é".repeat(40))
            .stack_size(32 * 1024)
            .build(|_: &Yielder<(), ()>, ()| recurse_forever(0))
            .expect("building the coroutine");
        co.resume(());
        unreachable!("the coroutine cannot return");
    }
    let out = run_child(TEST, Duration::from_secs(60));
    assert_aborted(&out);
    let quoted = out
        .stderr
        .split("coroutine '")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .unwrap_or_else(|| panic!("a quoted name in the report: {out:?}"));
    assert!(
        !quoted.is_empty() && quoted.chars().all(|c| c == 'é'),
        "valid UTF-8, whole characters: {quoted:?}"
    );
    assert!(quoted.len() < 80, "cut: {quoted:?}");
}

#[test]
fn std_overflow_report_still_works_after_coroutines_on_the_thread() {
    const TEST: &str = "std_overflow_report_still_works_after_coroutines_on_the_thread";
    if is_child(TEST) {
        let thread = thread::Builder::new()
            .name("plain-std-thread".into())
            .spawn(|| {
                let action = boot_signal_action();
                // Boot stacks on this very thread (a fresh process: nothing to adopt), run
                // some coroutines to the end, drop some suspended, and keep one suspended.
                let mut cos: Vec<_> = (0..20u64)
                    .map(|i| Coroutine::new(move |y: &Yielder<u64, u64>, v: u64| y.suspend(v + i) + 1))
                    .collect();
                for co in &mut cos {
                    assert!(matches!(co.resume(1), CoroutineResult::Yield(_)));
                }
                for co in &mut cos[..10] {
                    assert!(matches!(co.resume(1), CoroutineResult::Return(2)));
                }
                let keep = cos.pop();
                drop(cos);
                let stats = thread_stats();
                assert!(stats.booted > 0, "this thread booted stacks: {stats:?}");
                assert_eq!(boot_signal_action(), action, "the boot signal's action is restored");
                eprintln!("child: {stats:?}; now overflowing the thread's own stack");
                let n = recurse_forever(0);
                drop(keep);
                n
            })
            .expect("spawning the thread");
        let _ = thread.join();
        unreachable!("the thread cannot return");
    }
    let out = run_child(TEST, Duration::from_secs(60));
    assert_aborted(&out);
    assert!(out.stderr.contains("has overflowed its stack"), "{out:?}");
    // std's report: "thread 'NAME' has overflowed its stack" (newer versions add the thread
    // id after the name).
    let report = out
        .stderr
        .lines()
        .find(|l| l.contains("has overflowed its stack"))
        .unwrap_or_default();
    assert!(
        report.starts_with("thread 'plain-std-thread'"),
        "std's own report: {out:?}"
    );
    assert!(
        !out.stderr.contains("sigcoro: coroutine"),
        "not mistaken for a coroutine overflow: {out:?}"
    );
}

/// The handler and flags of the boot signal, less `SA_RESTORER`, which glibc adds to every
/// action it installs (a restored default action differs from a pristine one only by it).
fn boot_signal_action() -> (usize, libc::c_int) {
    const SA_RESTORER: libc::c_int = 0x0400_0000;
    let mut act = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: a null new action only reads the current one into `act`.
    let rc = unsafe { libc::sigaction(sigcoro::boot_signal(), std::ptr::null(), act.as_mut_ptr()) };
    assert_eq!(rc, 0);
    // SAFETY: filled in by the successful call above.
    let act = unsafe { act.assume_init() };
    (act.sa_sigaction, act.sa_flags & !SA_RESTORER)
}

#[test]
fn stacks_whose_entry_frame_spans_pages_survive_going_cold() {
    const TEST: &str = "stacks_whose_entry_frame_spans_pages_survive_going_cold";
    if is_child(TEST) {
        // A finished coroutine's stack parks in its entry's frame, which holds the outcome: a
        // 6,000-byte return value makes that frame span two pages or more. Returning the idle
        // stacks' cold pages to the kernel must leave that frame alone; reusing them proves it.
        const N: usize = 64;
        let mut cos: Vec<_> = (0..N)
            .map(|_| {
                Builder::new()
                    .build(|_: &Yielder<(), ()>, ()| [7u8; 6000])
                    .expect("build")
            })
            .collect();
        for co in &mut cos {
            assert!(matches!(co.resume(()), CoroutineResult::Return(a) if a[5999] == 7));
        }
        drop(cos);
        sigcoro::stack::release_idle_memory();
        for i in 0..N as u32 {
            let mut co = Builder::new()
                .build(move |y: &Yielder<u32, u32>, v: u32| y.suspend(i) + v)
                .expect("build");
            assert_eq!(co.resume(1), CoroutineResult::Yield(i));
            assert_eq!(co.resume(2), CoroutineResult::Return(3));
        }
        return;
    }
    let out = run_child(TEST, Duration::from_secs(120));
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn overflow_on_a_foreign_thread_that_adopted_its_stack_is_reported() {
    const TEST: &str = "overflow_on_a_foreign_thread_that_adopted_its_stack_is_reported";
    if is_child(TEST) {
        // A std thread boots stacks and exits: they go to the process-wide reserve.
        thread::spawn(|| {
            for i in 0..10u64 {
                let mut co = Coroutine::new(move |_: &Yielder<(), ()>, ()| i);
                assert_eq!(co.resume(()), CoroutineResult::Return(i));
            }
        })
        .join()
        .expect("the std thread");
        // A thread made by pthread_create, as C code or a host runtime makes them, has no
        // alternate signal stack. It adopts one of those stacks, and its coroutine overflows.
        extern "C" fn foreign(_: *mut libc::c_void) -> *mut libc::c_void {
            let mut co = Coroutine::new(|_: &Yielder<(), ()>, ()| recurse_forever(0));
            eprintln!("child: foreign thread: {:?}; overflowing", thread_stats());
            co.resume(());
            std::ptr::null_mut()
        }
        let mut tid: libc::pthread_t = 0;
        // SAFETY: `foreign` has the signature pthread_create expects and ignores its argument;
        // the thread is joined before `tid` goes away.
        unsafe {
            assert_eq!(
                libc::pthread_create(&mut tid, std::ptr::null(), foreign, std::ptr::null_mut()),
                0
            );
            libc::pthread_join(tid, std::ptr::null_mut());
        }
        unreachable!("the coroutine cannot return");
    }
    let out = run_child(TEST, Duration::from_secs(60));
    assert_aborted(&out);
    assert!(out.stderr.contains("has overflowed its stack of"), "{out:?}");
}

#[test]
fn coroutines_can_be_created_while_a_thread_exits() {
    const TEST: &str = "coroutines_can_be_created_while_a_thread_exits";
    if is_child(TEST) {
        struct RunsACoroutineOnDrop;
        impl Drop for RunsACoroutineOnDrop {
            fn drop(&mut self) {
                let mut co = Coroutine::new(|y: &Yielder<u32, u32>, v: u32| y.suspend(v) * 2);
                assert_eq!(co.resume(4), CoroutineResult::Yield(4));
                assert_eq!(co.resume(5), CoroutineResult::Return(10));
                println!("child: a coroutine ran in a thread-local destructor");
            }
        }
        thread_local! {
            static LATE: RunsACoroutineOnDrop = const { RunsACoroutineOnDrop };
        }
        thread::spawn(|| {
            // Touched first, so destroyed after sigcoro's own thread-locals.
            LATE.with(|_| ());
            let mut co = Coroutine::new(|_: &Yielder<(), ()>, ()| 1);
            assert_eq!(co.resume(()), CoroutineResult::Return(1));
        })
        .join()
        .expect("the thread");
        return;
    }
    let out = run_child(TEST, Duration::from_secs(60));
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stdout.contains("a coroutine ran in a thread-local destructor"),
        "{out:?}"
    );
}

/// Mappings of this process now.
fn map_count() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .expect("/proc/self/maps")
        .lines()
        .count()
}

/// A `/proc/self/status` field in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_million_live_coroutines_under_the_default_map_count() {
    const TEST: &str = "a_million_live_coroutines_under_the_default_map_count";
    if is_child(TEST) {
        a_million_live_coroutines();
        return;
    }
    let out = run_child(TEST, Duration::from_secs(300));
    println!("{out:?}");
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("all coroutines finished"), "{out:?}");
}

/// The child's work for [`a_million_live_coroutines_under_the_default_map_count`].
fn a_million_live_coroutines() {
    let max_map_count: usize = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .expect("/proc/sys/vm/max_map_count")
        .trim()
        .parse()
        .expect("a number");
    println!("vm.max_map_count = {max_map_count}; mappings at start: {}", map_count());

    // The first coroutine settles which kind of guard pages this kernel gives.
    let mut first = Coroutine::new(|y: &Yielder<u32, u32>, v: u32| y.suspend(v) + 1);
    let lightweight = guards_are_lightweight().expect("known after the first stack");
    let n: u32 = if lightweight {
        1_000_000
    } else {
        println!(
            "note: this kernel lacks MADV_GUARD_INSTALL (Linux 6.13+): guards use mprotect, two mappings per stack; only 30,000 coroutines are required"
        );
        30_000
    };
    let rss_start = status_kib("VmRSS");

    let t = Instant::now();
    let mut cos = Vec::with_capacity(n as usize);
    assert_eq!(first.resume(0), CoroutineResult::Yield(0));
    cos.push(first);
    for i in 1..n {
        let mut co = Coroutine::new(move |y: &Yielder<u32, u32>, v: u32| {
            let w = y.suspend(v ^ i);
            v.wrapping_add(w).wrapping_add(i)
        });
        assert_eq!(
            co.resume(i.wrapping_mul(3)),
            CoroutineResult::Yield(i.wrapping_mul(3) ^ i)
        );
        cos.push(co);
    }
    let created = t.elapsed();
    let maps = map_count();
    let rss = status_kib("VmRSS");
    println!(
        "{n} coroutines created and suspended in {created:.2?} ({:.2} us each); mappings: {maps} \
         (limit {max_map_count}); RSS {} MiB (+{:.1} KiB per coroutine), page tables {} MiB",
        created.as_secs_f64() * 1e6 / f64::from(n),
        rss / 1024,
        (rss - rss_start) as f64 / f64::from(n),
        status_kib("VmPTE") / 1024,
    );
    if lightweight {
        assert!(
            maps < max_map_count / 4,
            "{maps} mappings for {n} stacks: the guards split the reservations"
        );
    } else {
        assert!(maps < max_map_count, "{maps} mappings");
    }

    let t = Instant::now();
    for (i, co) in cos.iter_mut().enumerate() {
        let i = i as u32;
        let expected = if i == 0 {
            8
        } else {
            i.wrapping_mul(3).wrapping_add(7).wrapping_add(i)
        };
        assert_eq!(co.resume(7), CoroutineResult::Return(expected), "coroutine {i}");
        assert!(co.is_finished());
    }
    let finished = t.elapsed();
    let t = Instant::now();
    drop(cos);
    println!(
        "all coroutines finished in {finished:.2?}, dropped in {:.2?}; stats {:?}",
        t.elapsed(),
        thread_stats()
    );
}
