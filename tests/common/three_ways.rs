//! Runs a channel test three ways: on plain threads, and in coroutines on one and on two
//! workers. Inside a test body, [`scope`], [`sleep`] and [`ms`] do the right thing for where
//! the body runs (threads spawn threads, coroutines spawn coroutines).

use std::time::Duration;

use super::{no_hang, rt};

/// Whether the caller is a coroutine.
pub fn in_coroutine() -> bool {
    sigcoro::stack_remaining().is_some()
}

/// Runs `body` on a plain thread, then as the root coroutine of a one-worker and of a
/// two-worker runtime; each run must end within `no_hang`'s limit.
pub fn three_ways(body: fn()) {
    no_hang(body);
    for workers in [1, 2] {
        no_hang(move || rt(workers).block_on(body));
    }
}

/// Declares `#[test]` functions whose bodies run [`three_ways`].
#[macro_export]
macro_rules! three_ways_tests {
    ($($(#[$meta:meta])* fn $name:ident() $body:block)*) => {
        $(
            $(#[$meta])*
            #[test]
            fn $name() {
                fn body() $body
                $crate::common::three_ways(body);
            }
        )*
    };
}

/// Spawns threads or coroutines (whichever the caller is) that may borrow from the caller.
pub enum Spawner<'s, 'env> {
    Thread(&'s std::thread::Scope<'s, 'env>),
    Coroutine(&'s sigcoro::Scope<'s, 'env>),
}

impl<'s> Spawner<'s, '_> {
    /// Spawns `f`; the scope joins it (and propagates its panic) at its end.
    pub fn spawn<F: FnOnce() + Send + 's>(&self, f: F) {
        match self {
            Spawner::Thread(s) => drop(s.spawn(f)),
            Spawner::Coroutine(s) => drop(s.spawn(f)),
        }
    }
}

/// A scope of threads (on a thread) or of coroutines (in a coroutine).
pub fn scope<'env, F>(f: F)
where
    F: for<'s> FnOnce(&Spawner<'s, 'env>),
{
    if in_coroutine() {
        sigcoro::scope(|s| f(&Spawner::Coroutine(s)));
    } else {
        std::thread::scope(|s| f(&Spawner::Thread(s)));
    }
}

/// Sleeps the calling thread or coroutine.
pub fn sleep(d: Duration) {
    if in_coroutine() {
        sigcoro::sleep(d);
    } else {
        std::thread::sleep(d);
    }
}

/// `n` milliseconds.
pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
