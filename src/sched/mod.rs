//! The per-worker scheduler: tasks, run queues, parking, timers, and the std::thread-shaped API.

pub(crate) mod api;
pub(crate) mod local;
pub(crate) mod park;
pub(crate) mod recycle;
pub(crate) mod scope;
pub(crate) mod task;
pub(crate) mod timer;
pub(crate) mod value;
pub(crate) mod worker;
