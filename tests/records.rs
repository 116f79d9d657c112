//! Task records come from a slab of large chunks: finished tasks' records are kept and reused
//! by the next spawns, and `release_idle_memory` gives them back and unmaps the chunks left
//! unused.
//!
//! The slab is process-wide, so this file holds a single test that spawns in its own process
//! while it counts; the other runs in a child process.

mod common;

use common::child;
use common::is_child;
use sigcoro::__test::task_record_counts;
use sigcoro::stack::release_idle_memory;
use std::time::Duration;

/// Spawns `n` empty coroutines and joins them all.
fn storm(n: usize) {
    let handles: Vec<_> = (0..n).map(|i| sigcoro::spawn(move || i)).collect();
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.join().unwrap(), i);
    }
}

#[test]
fn records_are_reused_and_released() {
    const N: usize = 40_000;
    let rt = sigcoro::Runtime::builder().workers(1).build().unwrap();
    rt.block_on(|| {
        let (out0, mapped0) = task_record_counts();
        storm(N);
        let (out1, mapped1) = task_record_counts();
        assert!(out1 >= out0 + N, "the joined tasks' records are kept: {out0} -> {out1}");
        assert!(mapped1 > mapped0, "a storm maps chunks of records");

        storm(N);
        assert_eq!(
            task_record_counts(),
            (out1, mapped1),
            "a second storm reuses the kept records: no record taken, no chunk mapped"
        );

        release_idle_memory();
        let (out2, mapped2) = task_record_counts();
        assert!(
            out2 + N <= out1,
            "the kept records went back to the slab: {out1} -> {out2}"
        );
        assert!(
            mapped2 <= mapped0.max(mapped1 / 4),
            "the chunks left without records in use are unmapped: {mapped1} -> {mapped2} bytes"
        );

        // After a release, spawns map chunks again and work as before.
        storm(N);
        let (out3, mapped3) = task_record_counts();
        assert!(out3 >= out2 + N && mapped3 > mapped2);
    });
}

/// The process's mapped address space in bytes.
fn vm_size() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb = status.lines().find_map(|l| l.strip_prefix("VmSize:")).unwrap();
    kb.trim().trim_end_matches("kB").trim().parse::<u64>().unwrap() * 1024
}

/// Sets the soft address-space limit (the hard one stays).
fn set_address_space_limit(bytes: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and fill the struct we own.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_AS, &mut lim), 0);
        lim.rlim_cur = bytes.min(lim.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_AS, &lim), 0);
    }
}

#[test]
fn spawns_past_an_address_space_limit_fail_with_an_error_naming_it() {
    const TEST: &str = "spawns_past_an_address_space_limit_fail_with_an_error_naming_it";
    const MAX: usize = 100_000;
    if is_child(TEST) {
        sigcoro::Runtime::builder().workers(1).build().unwrap().block_on(|| {
            let mut handles = Vec::with_capacity(MAX);
            // Room for the heap's small blocks, none for a new chunk of records (2 MiB, mapped
            // as 4 to be aligned). Spawning takes no stack: a task gets one when it first runs.
            set_address_space_limit(vm_size() + (1 << 20));
            let failure = (0..MAX).find_map(|i| match sigcoro::Builder::new().spawn(move || i) {
                Ok(h) => {
                    handles.push(h);
                    None
                }
                Err(e) => Some(format!("#{i}: {e}")),
            });
            set_address_space_limit(u64::MAX);
            println!("FAILED AT {}", failure.as_deref().unwrap_or("none"));
            // The tasks spawned before the failure run and end as usual.
            for (i, h) in handles.into_iter().enumerate() {
                assert_eq!(h.join().unwrap(), i);
            }
            println!("ALL JOINED");
        });
        return;
    }
    let out = child::run(TEST, Duration::from_secs(120), &[]);
    assert!(out.status.success() && out.stdout.contains("ALL JOINED"), "{out:?}");
    let line = out.stdout.lines().find(|l| l.contains("FAILED AT")).unwrap();
    assert!(line.contains("task records") && line.contains("RLIMIT_AS"), "{line}");
}
