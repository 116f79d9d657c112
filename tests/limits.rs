//! Limits of the process and of sigcoro: stack reservations are returned and reused when many
//! stack sizes come and go, and errors met at a limit name its real cause. Tests that set a
//! resource limit (`setrlimit`) or crash run in a child process.

mod common;

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

/// Recurses until the stack runs out.
fn recurse_forever(depth: u64) -> u64 {
    let mut local = [0u8; 512];
    local[depth as usize % 512] = depth as u8;
    black_box(&mut local);
    if black_box(depth) == u64::MAX {
        return 0;
    }
    recurse_forever(depth + 1) + u64::from(local[7])
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
