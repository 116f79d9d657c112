//! # sigcoro
//!
//! Stackful coroutines (green threads) for Linux x86_64. Their stacks are born through the
//! signal-stack trick (`sigaltstack` plus a trampoline, as in GNU Pth and libcoro), control
//! passes between them through a few inline instructions, one scheduler per worker thread runs
//! them with an API shaped like `std::thread`, and a timer thread preempts the ones that run too
//! long, at safe points or from a signal handler where that is safe.
//!
//! Most programs need only the items at the crate root: [`run`] or [`Runtime`], then [`spawn`],
//! [`JoinHandle`], [`sleep`], [`yield_now`], [`park`], [`scope`]. Without a scheduler,
//! [`coroutine::Coroutine`] is an asymmetric coroutine (a generator):
//!
//! ```
//! use sigcoro::coroutine::{Coroutine, CoroutineResult};
//!
//! let mut squares = Coroutine::new(|y, n: u64| {
//!     for i in 0..n {
//!         y.suspend(i * i);
//!     }
//!     n
//! });
//! let mut seen = Vec::new();
//! while let CoroutineResult::Yield(sq) = squares.resume(4) {
//!     seen.push(sq);
//! }
//! assert_eq!(seen, [0, 1, 4, 9]);
//! ```
//!
//! ## Modules, bottom layer first
//!
//! A module imports only modules of its own layer or below; `ARCHITECTURE.md` in the
//! repository gives the rule, how the code keeps it, and how one spawn and one preemption go
//! from the API to the switch. Modules without a link are private; what they offer is
//! re-exported at the crate root.
//!
//! | layer | module | owns |
//! | --- | --- | --- |
//! | 0 | `ground` | the state every layer needs: the running task's header, the interrupt flags, the no-preempt depths and guards, the one internal lock, the preemption signal |
//! | 1 | `context` | a fresh stack's first context (the signal-stack trick) and the switch; [`boot_signal`], [`set_boot_signal`] |
//! | 1 | [`stack`] | stacks: sizes, guard pages, the reservations they are carved from, batch booting, the per-thread pool, the overflow report, statistics, [`stack::release_idle_memory`] |
//! | 2 | [`coroutine`] | asymmetric coroutines on pooled stacks, usable without a scheduler: [`coroutine::Coroutine`], [`coroutine::Yielder`] |
//! | 3 | `sched` | green threads: [`spawn`], [`Builder`], [`JoinHandle`], [`current`] (`green`), the harness that starts and finishes tasks, task state, workers (loop, queues, slices, alarm, callbacks, poller), safe points ([`checkpoint`]), parking, sleeping, timers, [`scope`], [`coroutine_local!`] |
//! | 4 | [`preempt`] | preemption: the timer thread, hog reports, [`no_preempt`] regions, and the opt-in asynchronous regions ([`preemptible`]: the signal handler, the `.eh_frame` walk) |
//! | 5 | [`io`] | the reactor each worker polls, and waits on raw descriptors ([`io::wait_readable`], [`io::close`]) |
//! | 6 | [`interrupt`] | [`Interrupt`]: notifications from any thread or signal handler, run at the owning worker's next safe point |
//! | 6 | [`sync`] | channels, [`select!`], and locks and the like that park coroutines, not threads |
//! | 6 | [`net`] | TCP, UDP and Unix sockets with std's shapes, parking on `EAGAIN` |
//! | 6 | [`blocking`](mod@blocking) | [`blocking()`]: foreign work on helper threads while the worker runs other coroutines |
//! | 6 | [`fs`] | whole-file reads and writes through [`blocking()`] |
//! | 6 | [`signal`] | POSIX signals received as messages ([`signal::Signals`], [`signal::ctrl_c`]) |
//! | 7 | `runtime` | [`Runtime`] and its builder, the worker threads, [`Runtime::block_on`], shutdown, [`run`]; wires the reactor into the workers |
//!
//! ## What the runtime uses of the process
//!
//! - A real-time signal, [`boot_signal`] (`SIGRTMAX() - 1` unless [`set_boot_signal`] picks
//!   another), sent by a thread to itself while it boots a new stack.
//! - `SIGRTMAX() - 2`, blocked in every worker's mask except inside [`preemptible`] regions,
//!   and sent to a worker only while it runs one, to switch out a coroutine that ignored the
//!   interrupt flag past its slice (see [`preempt`]). The default mode sends no signal.
//! - Handlers for SIGSEGV and SIGBUS that report coroutine stack overflows and pass every other
//!   fault to the handler installed before them.
//! - MXCSR and the x87 control word are not saved by a switch: code that changes them must
//!   restore them before it suspends.

#![warn(missing_docs, missing_debug_implementations, clippy::undocumented_unsafe_blocks)]

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
compile_error!(
    "sigcoro supports x86_64 Linux only: its context switch, signal trampoline and stack \
     handling are written for that ABI and kernel"
);

pub mod blocking;
mod context;
pub mod coroutine;
pub mod fs;
mod ground;
pub mod interrupt;
pub mod io;
pub mod net;
pub mod preempt;
mod runtime;
mod sched;
pub mod signal;
pub mod stack;
pub mod sync;

pub use blocking::blocking;
pub use context::{boot_signal, set_boot_signal};
pub use interrupt::Interrupt;
pub use preempt::{Checkpoints, HogReport, NoPreemptGuard, PreemptStats, checkpoint, no_preempt, preemptible};
pub use runtime::{
    DEFAULT_PREEMPT_SLICE, MAX_PREEMPT_SLICE, MIN_PREEMPT_SLICE, Runtime, RuntimeBuilder, ShutdownReport, run,
};
pub use sched::coroutine_local::CoroutineLocal;
pub use sched::green::{
    Builder, GreenThread, JoinError, JoinHandle, current, park, park_timeout, sleep, sleep_until, spawn,
    stack_remaining, yield_now,
};
pub use sched::scope::{Scope, ScopedJoinHandle, scope};

/// The tests' controls: switches that turn a fix off in a child process, so a test can show
/// the failure the fix prevents. Not part of the API.
#[doc(hidden)]
pub mod __test {
    pub use crate::sched::park::{spin_while_unwinding_for_tests, switch_while_unwinding_for_tests};
    pub use crate::sched::worker::spent_slices_go_on_for_tests;

    /// The slab of task records, process-wide: (records out of it, in tasks or in threads'
    /// free lists; bytes of chunks mapped).
    pub fn task_record_counts() -> (usize, usize) {
        crate::sched::recycle::slab::counts()
    }
}

/// Internals exposed for the benchmarks only; not part of the API.
#[doc(hidden)]
pub mod __bench {
    pub use crate::stack::boot::reboot_one_for_bench;
}
