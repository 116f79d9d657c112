//! Limits of the process and of sigcoro: stack reservations are returned and reused when many
//! stack sizes come and go, and errors met at a limit name its real cause. Tests that set a
//! resource limit (`setrlimit`) or crash run in a child process.

mod common;
use common::recurse_forever;

use common::child::{self, Outcome};
use common::{is_child, rt};
use std::hint::black_box;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

/// Distinct stack sizes to go through: without returning reservations, two per size (a first
/// one of 16 slots, then one of 32 for a full batch) ran into the table's limit of 8192 near
/// 4,100 sizes.
const SIZES: usize = 4500;

/// Spawns and joins one coroutine of each of `SIZES` distinct stack sizes, one at a time, on
/// the current runtime: nothing stays alive. Returns the first spawn or start error, with its
/// index.
fn try_churn_stack_sizes() -> Result<(), (usize, String)> {
    let min = sigcoro::stack::min_stack_size();
    for k in 0..SIZES {
        let size = min + k * 4096;
        let handle = sigcoro::Builder::new()
            .stack_size(size)
            .spawn(move || black_box(k))
            .map_err(|e| (k, e.to_string()))?;
        // The stack is taken when the coroutine first runs: a failure then ends its join.
        let got = handle.join().map_err(|e| (k, e.to_string()))?;
        assert_eq!(got, k);
    }
    Ok(())
}

fn churn_stack_sizes() {
    if let Err((k, e)) = try_churn_stack_sizes() {
        panic!("spawn with stack size #{k}: {e}");
    }
}

#[test]
fn many_distinct_stack_sizes_keep_spawning_working() {
    let rt = rt(1);
    rt.block_on(churn_stack_sizes);
    // And again, on the reservations returned by the first round.
    rt.block_on(churn_stack_sizes);
}

/// The control of the test above: with reservations never returned (as before), the same
/// churn runs into the table's limit.
#[test]
fn control_without_returned_reservations_many_sizes_exhaust_the_table() {
    const TEST: &str = "control_without_returned_reservations_many_sizes_exhaust_the_table";
    if is_child(TEST) {
        sigcoro::stack::keep_stack_reservations_for_tests();
        let rt = rt(1);
        let (k, e) = rt
            .block_on(try_churn_stack_sizes)
            .expect_err("the table should run out");
        assert!(k > 1000, "failed early, at size #{k}: {e}");
        println!("CONTROL-FAILED-AS-EXPECTED at #{k}: {e}");
        return;
    }
    let out: Outcome = child::run(TEST, Duration::from_secs(300), &[]);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("CONTROL-FAILED-AS-EXPECTED"), "{out:?}");
    assert!(out.stdout.contains("stack reservations, its limit"), "{out:?}");
}

#[test]
fn overflows_are_reported_after_reservations_were_returned_and_reused() {
    const TEST: &str = "overflows_are_reported_after_reservations_were_returned_and_reused";
    if is_child(TEST) {
        let rt = rt(1);
        rt.block_on(churn_stack_sizes);
        // The overflow handler reads the table of reservations, whose entries were cleared and
        // written again: it must find this stack's.
        rt.block_on(|| {
            let handle = sigcoro::Builder::new()
                .name("deep-after-churn")
                .stack_size(96 * 1024)
                .spawn(|| recurse_forever(0))
                .unwrap();
            let _ = handle.join();
        });
        unreachable!("the coroutine cannot return");
    }
    let out: Outcome = child::run(TEST, Duration::from_secs(300), &[]);
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{out:?}");
    assert!(
        out.stderr.contains("coroutine 'deep-after-churn'") && out.stderr.contains("has overflowed its stack of"),
        "{out:?}"
    );
}

/// Builds a runtime of 8 workers under `ulimit -n 12`: it needs two descriptors per worker.
#[test]
fn runtime_build_under_a_low_descriptor_limit_says_what_it_was_creating() {
    const TEST: &str = "runtime_build_under_a_low_descriptor_limit_says_what_it_was_creating";
    if is_child(TEST) {
        match sigcoro::Runtime::builder().workers(8).build() {
            Ok(rt) => println!("BUILT {}", rt.workers()),
            Err(e) => println!("BUILD FAILED: {e}"),
        }
        return;
    }
    let out = child::run(TEST, Duration::from_secs(60), &[(libc::RLIMIT_NOFILE, 12)]);
    assert!(out.status.success(), "{out:?}");
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("BUILD FAILED"))
        .unwrap_or_else(|| panic!("{out:?}"));
    assert!(line.contains("Runtime::build: creating the "), "{line}");
    assert!(line.contains("of worker "), "{line}");
    assert!(
        line.contains("RLIMIT_NOFILE") && line.contains("limit of 12 open descriptors"),
        "{line}"
    );
    // The control: the same build with the usual limit works.
    let out = child::run(TEST, Duration::from_secs(60), &[]);
    assert!(out.status.success() && out.stdout.contains("BUILT 8"), "{out:?}");
}

/// Coroutines of 16 MiB stacks, kept alive until `COUNT` run or a start fails: returns the
/// first failure's message.
fn big_stacks_until_failure() -> Option<String> {
    const COUNT: usize = 192;
    rt(1).block_on(|| {
        let (tx, rx) = sigcoro::sync::channel::unbounded::<()>();
        let mut handles = Vec::new();
        let mut failure = None;
        for i in 0..COUNT {
            let rx = rx.clone();
            let h = sigcoro::Builder::new()
                .stack_size(16 << 20)
                .spawn(move || {
                    let _ = rx.recv();
                })
                .unwrap();
            // Let it start (its stack is taken then).
            sigcoro::yield_now();
            if h.is_finished() {
                failure = Some(format!("#{i}: {}", h.join().unwrap_err()));
                break;
            }
            handles.push(h);
        }
        drop(tx);
        for h in handles {
            h.join().unwrap();
        }
        failure
    })
}

#[test]
fn stacks_under_an_address_space_limit_blame_it_not_the_map_count() {
    const TEST: &str = "stacks_under_an_address_space_limit_blame_it_not_the_map_count";
    if is_child(TEST) {
        match big_stacks_until_failure() {
            Some(e) => println!("FAILED AT {e}"),
            None => println!("ALL STARTED"),
        }
        return;
    }
    let out = child::run(TEST, Duration::from_secs(120), &[(libc::RLIMIT_AS, 1 << 30)]);
    assert!(out.status.success(), "{out:?}");
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("FAILED AT"))
        .unwrap_or_else(|| panic!("{out:?}"));
    assert!(line.contains("RLIMIT_AS") && line.contains("ulimit -v"), "{line}");
    assert!(!line.contains("max_map_count"), "blames the map count: {line}");
    // The control: without the limit the same coroutines all start (3 GiB of address space,
    // committed lazily), so the limit was the cause.
    let out = child::run(TEST, Duration::from_secs(120), &[]);
    assert!(out.status.success() && out.stdout.contains("ALL STARTED"), "{out:?}");
}

/// A coroutine left parked when its runtime is dropped: the shutdown cancels it, and its
/// destructor spawns (with `sigcoro::spawn`, or, for the control, the old way: `Builder::spawn`
/// and a panic on its error, which in a destructor during unwinding aborts the process).
#[test]
fn spawn_in_a_destructor_during_shutdown_gives_a_handle_that_says_why() {
    const TEST: &str = "spawn_in_a_destructor_during_shutdown_gives_a_handle_that_says_why";
    if is_child(TEST) {
        let old_way = std::env::var("OLD_WAY").is_ok();
        struct SpawnsOnDrop(bool);
        impl Drop for SpawnsOnDrop {
            fn drop(&mut self) {
                let h = if self.0 {
                    sigcoro::Builder::new().spawn(|| 1).unwrap()
                } else {
                    sigcoro::spawn(|| 1)
                };
                match h.join() {
                    Ok(v) => println!("SPAWNED AND RAN {v}"),
                    Err(e) => println!("SPAWN AT SHUTDOWN: cancelled={} {e}", e.is_cancelled()),
                }
            }
        }
        let rt = rt(1);
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        rt.spawn(move || {
            let _guard = SpawnsOnDrop(old_way);
            started_tx.send(()).unwrap();
            sigcoro::park();
            // Unparked spuriously: park again until the shutdown cancels us.
            loop {
                sigcoro::park();
            }
        });
        started_rx.recv().unwrap();
        drop(rt);
        println!("SHUT DOWN");
        return;
    }
    let out = child::run(TEST, Duration::from_secs(60), &[]);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("SPAWN AT SHUTDOWN: cancelled=true"), "{out:?}");
    assert!(
        out.stdout
            .contains("never started: it was spawned while its runtime was shutting down"),
        "{out:?}"
    );
    assert!(out.stdout.contains("SHUT DOWN"), "{out:?}");
    // The control: the old way aborts the process.
    let out = child::run_with_env(TEST, Duration::from_secs(60), &[("OLD_WAY", "1")]);
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{out:?}");
    assert!(!out.stdout.contains("SHUT DOWN"), "{out:?}");
}
