//! I/O for coroutines: readiness through each worker's epoll instance.

pub(crate) mod reactor;
