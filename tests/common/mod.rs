//! Helpers shared by the integration tests: runtime builders, guards that turn a hang into a
//! failure, and spin loops without safe points.
//!
//! Each test binary compiles this module on its own and uses only part of it, hence the
//! `dead_code` and `unused_imports` allowances. Add a file per concern and one `pub mod` line
//! here.

#![allow(dead_code, unused_imports)]

pub mod child;
pub mod hang;
pub mod overflow;
pub mod runtime;
pub mod sound;
pub mod spin;
pub mod three_ways;

pub use child::{child_command, is_child};
pub use hang::{no_hang, watchdog, with_timeout};
pub use overflow::recurse_forever;
pub use runtime::{rt, rt_no_preempt, rt_preempt, rt_with, worker_index};
pub use spin::{spin, spin_until};
pub use three_ways::{ms, scope, sleep, three_ways};
