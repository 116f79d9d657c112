//! Runtime builders: the test files' `rt(..)` in one place, and which worker runs the caller.

use sigcoro::Runtime;
use std::time::Duration;

/// A runtime of `workers` workers with the default preemption slice.
pub fn rt(workers: usize) -> Runtime {
    Runtime::builder().workers(workers).build().expect("runtime")
}

/// A runtime of `workers` workers without preemption: coroutines switch only where they wait,
/// so the order of a test's events is deterministic.
pub fn rt_no_preempt(workers: usize) -> Runtime {
    rt_with(workers, None)
}

/// A runtime of `workers` workers that preempts coroutines after `slice`.
pub fn rt_preempt(workers: usize, slice: Duration) -> Runtime {
    rt_with(workers, Some(slice))
}

/// A runtime of `workers` workers with the given preemption setting (`None`: off).
pub fn rt_with(workers: usize, preempt: Option<Duration>) -> Runtime {
    Runtime::builder()
        .workers(workers)
        .preempt(preempt)
        .build()
        .expect("runtime")
}

/// The index of the worker running the caller, from its thread's name (`prefix-N`;
/// `usize::MAX` on any other thread). Reads a thread-local: in a migratable coroutine, only at
/// its start.
pub fn worker_index() -> usize {
    let name = std::thread::current().name().unwrap_or("?").to_owned();
    name.rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX)
}
