//! Preemption is sound with mimalloc as the global allocator.
//!
//! mimalloc keeps per-thread heaps that its code updates without locks. A coroutine switched
//! out in the middle of a `malloc` or `free` leaves that heap half-updated, and the next
//! coroutine of the same worker thread allocates from it: the old signal-driven preemption
//! crashed such a stress every time. The default mode preempts only at safe points, so the
//! stress here (coroutines that allocate and free constantly, with stretches of several slices
//! between their `checkpoint`s) must end with every round's checksum right, and with
//! preemptions taken at safe points.
//!
//! The control runs the same workload with signals preempting anywhere
//! (`preempt_anywhere_for_tests`) and requires it to fail: a crash, a hang ended by the
//! watchdog, or a wrong checksum. Both run in a child process (see `tests/common/sound.rs`).

mod common;

use common::sound::{self, Mode, Verdict};
use std::time::Duration;

#[global_allocator]
static A: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The stress: 8 coroutines on 2 workers, then 6 on 1, at a 50 us slice.
fn stress(mode: Mode) {
    let slice = Duration::from_micros(50);
    sound::alloc_churn(mode, 2, 8, slice, Duration::from_millis(1000));
    sound::alloc_churn(mode, 1, 6, slice, Duration::from_millis(1000));
}

#[test]
fn mimalloc_stress_is_sound_by_default() {
    const TEST: &str = "mimalloc_stress_is_sound_by_default";
    if let Some(mode) = sound::child_mode(TEST) {
        return stress(mode);
    }
    sound::expect_sound(TEST);
}

#[test]
fn control_mimalloc_stress_fails_when_preempted_anywhere() {
    const TEST: &str = "control_mimalloc_stress_fails_when_preempted_anywhere";
    if let Some(mode) = sound::child_mode(TEST) {
        return stress(mode);
    }
    sound::expect_unsound(TEST, 3, |out| match out.verdict() {
        Verdict::Crashed(_) | Verdict::Hung => true,
        Verdict::WrongResult => out.stderr.contains("checksum mismatch"),
        Verdict::Passed | Verdict::Other => false,
    });
}
