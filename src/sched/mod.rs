//! The per-worker scheduler: tasks, run queues, parking, timers, and the std::thread-shaped API.

pub(crate) mod coroutine_local;
pub(crate) mod green;
pub(crate) mod harness;
pub(crate) mod park;
pub(crate) mod recycle;
pub(crate) mod safepoint;
pub(crate) mod scope;
pub(crate) mod stats;
pub(crate) mod task;
pub(crate) mod timers;
pub(crate) mod value;
pub(crate) mod worker;
