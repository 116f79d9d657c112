//! A coroutine woken by a timer inside another's slice may take that slice's preemption flag;
//! the one that made way for it must then not go on in the spent slice, which the timer thread
//! flags only once: it would never be flagged again and would keep its worker for good while
//! the woken one waits in the queue (default, safe-point mode).
//!
//! Two workloads: the one where it was found (two workers, turn-taking coroutines whose park
//! timers sometimes fire inside a spinner's slice; its control depends on that timing and runs
//! by hand), and the same sequence forced step by step on one worker, whose control starves in
//! every run (CI runs it, release and debug).

mod common;

use common::child;
use common::sound::{HUNG_EXIT, Watchdog};
use common::spin::{chunk, chunk_of};
use common::worker_index;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// Two workers, 1 ms slices. Two "turn" coroutines, one per worker, take turns: the one whose
/// turn it is computes 100 chunks with a `checkpoint()` each, hands the turn over and unparks
/// the other; the other waits in `park_timeout(10 ms)`, so its timer often wakes it inside the
/// slice of a spinner that shares its worker (a coroutine computing with a `checkpoint()` per
/// chunk), and it may take that slice's flag. 200 turns are needed; a watchdog ends the process
/// with [`HUNG_EXIT`] if no turn is taken for 3 s.
fn workload() {
    let rt = sigcoro::Runtime::builder()
        .workers(2)
        .preempt(Some(Duration::from_millis(1)))
        .name("starve")
        .build()
        .unwrap();
    let turns = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let dog = Watchdog::arm("the turns", Duration::from_secs(3), Duration::from_secs(50));
    let turn = Arc::new(AtomicUsize::new(0));
    let handles: Arc<std::sync::Mutex<[Option<sigcoro::GreenThread>; 2]>> = Default::default();
    let ready = Arc::new(AtomicUsize::new(0));
    let turner = |_: usize| {
        let (turns, stop, turn, handles, ready) = (
            turns.clone(),
            stop.clone(),
            turn.clone(),
            handles.clone(),
            ready.clone(),
        );
        let progress = dog.progress();
        rt.spawn(move || {
            let me = worker_index();
            handles.lock().unwrap()[me] = Some(sigcoro::current());
            ready.fetch_add(1, Ordering::SeqCst);
            while ready.load(Ordering::SeqCst) < 2 {
                sigcoro::sleep(Duration::from_millis(1));
            }
            let mut x = me as u64;
            while !stop.load(Ordering::SeqCst) {
                if turn.load(Ordering::SeqCst) != me {
                    sigcoro::park_timeout(Duration::from_millis(10));
                    continue;
                }
                for _ in 0..100 {
                    x = chunk(x);
                    sigcoro::checkpoint();
                }
                turn.store(1 - me, Ordering::SeqCst);
                progress.step();
                if turns.fetch_add(1, Ordering::SeqCst) + 1 >= 200 {
                    stop.store(true, Ordering::SeqCst);
                }
                let other = handles.lock().unwrap()[1 - me].clone();
                if let Some(other) = other {
                    other.unpark();
                }
            }
            let all = handles.lock().unwrap().clone();
            all.iter().flatten().for_each(sigcoro::GreenThread::unpark);
            x
        })
    };
    // Spawned from outside, they go to the two workers in turn.
    let turners = [turner(0), turner(1)];
    while ready.load(Ordering::SeqCst) < 2 {
        std::thread::sleep(Duration::from_millis(1));
    }
    // A spinner started from a coroutine, which joins it.
    let s = stop.clone();
    let spinner = rt.spawn(move || {
        sigcoro::spawn(move || {
            let mut x = 3u64;
            while !s.load(Ordering::SeqCst) {
                x = chunk(x);
                sigcoro::checkpoint();
            }
            x
        })
        .join()
        .unwrap()
    });
    for t in turners {
        t.join().unwrap();
    }
    spinner.join().unwrap();
    println!("TURNS {}", turns.load(Ordering::SeqCst));
}

#[test]
fn a_woken_coroutine_that_ends_the_slice_does_not_starve_behind_the_spinner() {
    const TEST: &str = "a_woken_coroutine_that_ends_the_slice_does_not_starve_behind_the_spinner";
    if child::is_child(TEST) {
        return workload();
    }
    // Three children, each must take its 200 turns.
    for _ in 0..3 {
        let out = child::run(TEST, Duration::from_secs(60), &[]);
        assert!(out.status.success() && out.stdout.contains("TURNS 2"), "{out:?}");
    }
}

/// The control: with the spinner left in the spent slice (the hidden switch), a turn
/// coroutine starves in at least one of five children. It needs a timer-woken coroutine to be
/// computing when its slice ends, which the machine's timing decides: it starved within 5
/// children in about 8 release runs and then in none of 5 in a clean CI run, so it is run by
/// hand (`cargo test --release --test starvation -- --ignored`), not by CI; the one-worker
/// control below shows the same failure in every run.
#[test]
#[ignore = "timing-dependent reproduction; run by hand with --ignored"]
fn control_a_turn_starves_when_spent_slices_go_on() {
    const TEST: &str = "control_a_turn_starves_when_spent_slices_go_on";
    if child::is_child(TEST) {
        sigcoro::__test::spent_slices_go_on_for_tests();
        return workload();
    }
    let mut seen = Vec::new();
    for _ in 0..5 {
        let out = child::run(TEST, Duration::from_secs(60), &[]);
        if out.status.code() == Some(HUNG_EXIT) && out.stderr.contains("made no progress") {
            return;
        }
        seen.push(format!("{out:?}"));
    }
    panic!("the control never starved in 5 children:\n{}", seen.join("\n"));
}

/// The same starvation, step by step on one worker. A spinner computes with a `checkpoint()`
/// every few microseconds. A sleeper sleeps 300 us, so its timer is due inside the spinner's
/// slice (DEADLINE only: the spinner makes way), then computes for 3 ms with checkpoints, so it
/// takes that slice's PREEMPT and goes to the back of the queue. Then the spinner resumes: in a
/// new slice (fixed), which ends and gives the sleeper its turn back; or in the spent slice
/// (the control), which the timer thread never flags again, and the sleeper never runs again.
/// 20 rounds are needed; a watchdog ends the process with [`HUNG_EXIT`] if none ends for 3 s.
fn one_worker_workload() {
    const ROUNDS: usize = 20;
    /// Arithmetic between two checkpoints: a few microseconds optimised, tens unoptimised,
    /// well below the sleep, so the spinner takes DEADLINE soon after it is raised.
    const SMALL_CHUNK: u32 = 2_000;
    let rt = sigcoro::Runtime::builder()
        .workers(1)
        .preempt(Some(Duration::from_millis(1)))
        .name("starve1")
        .build()
        .unwrap();
    let dog = Watchdog::arm("the sleeper's rounds", Duration::from_secs(3), Duration::from_secs(50));
    let progress = dog.progress();
    let stop = Arc::new(AtomicBool::new(false));
    rt.block_on(move || {
        let s = stop.clone();
        let spinner = sigcoro::spawn(move || {
            let mut x = 3u64;
            while !s.load(Ordering::SeqCst) {
                x = chunk_of(x, SMALL_CHUNK);
                sigcoro::checkpoint();
            }
            x
        });
        let sleeper = sigcoro::spawn(move || {
            let mut x = 5u64;
            for _ in 0..ROUNDS {
                sigcoro::sleep(Duration::from_micros(300));
                let end = std::time::Instant::now() + Duration::from_millis(3);
                while std::time::Instant::now() < end {
                    x = chunk_of(x, SMALL_CHUNK);
                    sigcoro::checkpoint();
                }
                progress.step();
            }
            stop.store(true, Ordering::SeqCst);
            x
        });
        sleeper.join().unwrap();
        spinner.join().unwrap();
    });
    println!("ROUNDS {ROUNDS}");
}

#[test]
fn a_timer_woken_coroutine_that_ends_the_slice_gets_its_turns_on_one_worker() {
    const TEST: &str = "a_timer_woken_coroutine_that_ends_the_slice_gets_its_turns_on_one_worker";
    if child::is_child(TEST) {
        return one_worker_workload();
    }
    for _ in 0..2 {
        let out = child::run(TEST, Duration::from_secs(60), &[]);
        assert!(out.status.success() && out.stdout.contains("ROUNDS 20"), "{out:?}");
    }
}

/// The control: with the spinner left in the spent slice (the hidden switch), the sleeper
/// starves; the watchdog ends the child.
#[test]
fn control_one_worker_a_timer_woken_coroutine_starves_when_spent_slices_go_on() {
    const TEST: &str = "control_one_worker_a_timer_woken_coroutine_starves_when_spent_slices_go_on";
    if child::is_child(TEST) {
        sigcoro::__test::spent_slices_go_on_for_tests();
        return one_worker_workload();
    }
    let out = child::run(TEST, Duration::from_secs(60), &[]);
    assert!(
        out.status.code() == Some(HUNG_EXIT) && out.stderr.contains("made no progress"),
        "the control did not starve: {out:?}"
    );
}
