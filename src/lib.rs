//! # sigcoro
//!
//! Stackful coroutines (green threads) for Linux x86_64 whose stacks are born through the
//! signal-stack trick (`sigaltstack` plus a trampoline, as in GNU Pth and libcoro) and switched
//! by a few inline instructions.
//!
//! This layer is the foundation: [`coroutine::Coroutine`], an asymmetric coroutine usable with
//! no scheduler (generators, switch benchmarks), on pooled, guarded, lazily committed stacks.
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
//! ## What the runtime uses of the process
//!
//! - A real-time signal, [`boot_signal`] (`SIGRTMAX() - 1` unless [`set_boot_signal`] picks
//!   another), sent by a thread to itself while it boots a new stack.
//! - Handlers for SIGSEGV and SIGBUS that report coroutine stack overflows and pass every other
//!   fault to the handler installed before them.
//! - MXCSR and the x87 control word are not saved by a switch: code that changes them must
//!   restore them before it suspends.

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
compile_error!(
    "sigcoro supports x86_64 Linux only: its context switch, signal trampoline and stack \
     handling are written for that ABI and kernel"
);

pub mod blocking;
mod context;
pub mod coroutine;
pub mod fs;
pub mod interrupt;
pub mod io;
pub mod net;
mod overflow;
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
pub use sched::api::{
    Builder, GreenThread, JoinError, JoinHandle, current, park, park_timeout, sleep, sleep_until, spawn,
    stack_remaining, yield_now,
};
pub use sched::local::CoroutineLocal;
pub use sched::scope::{Scope, ScopedJoinHandle, scope};

/// Internals exposed for the benchmarks only; not part of the API.
#[doc(hidden)]
pub mod __bench {
    pub use crate::context::boot::reboot_one_for_bench;
}
