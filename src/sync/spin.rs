//! A small spin lock for the channels' internal state.
//!
//! Its critical sections are a few dozen instructions that run no user code, so a waiter spins
//! briefly (then yields its thread) instead of sleeping, and unlocking is a plain release store,
//! not a locked read-modify-write as in `std::sync::Mutex`.
//!
//! A coroutine must never be preempted while it holds the lock: every coroutine of its worker
//! that then wanted the lock would spin on a holder that cannot run again. So the lock guard
//! holds a [`Critical`] section (preemption held off on this thread) entered before locking and
//! left after unlocking; [`SpinGuard::unlock`] hands it back to keep preemption off a little
//! longer. Nothing waits while the lock is held, which is what a `Critical` section needs.

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::ground::Critical;

/// Spins this many times (with growing pauses) before a contended lock yields its thread.
const SPIN_ROUNDS: u32 = 6;

/// A test-and-test-and-set lock around a `T`.
pub(super) struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the lock hands out access to the value to one holder at a time, with acquire/release
// ordering between holders, like `std::sync::Mutex`; the value may move between threads.
unsafe impl<T: Send> Sync for SpinLock<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for SpinLock<T> {}

impl<T> SpinLock<T> {
    pub(super) const fn new(value: T) -> Self {
        SpinLock {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// The value, through exclusive access to the lock (no locking needed).
    pub(super) fn get_mut(&mut self) -> &mut T {
        self.value.get_mut()
    }

    /// Locks, with preemption held off until the guard is dropped.
    #[inline]
    pub(super) fn lock(&self) -> SpinGuard<'_, T> {
        let off = Critical::enter();
        if self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_contended();
        }
        SpinGuard {
            lock: self,
            off: Some(off),
        }
    }

    #[cold]
    #[inline(never)]
    fn lock_contended(&self) {
        let mut round = 0;
        loop {
            while self.locked.load(Ordering::Relaxed) {
                if round < SPIN_ROUNDS {
                    for _ in 0..(1 << round) {
                        std::hint::spin_loop();
                    }
                    round += 1;
                } else {
                    // The holder may be a thread the kernel descheduled: let it run.
                    std::thread::yield_now();
                }
            }
            if self
                .locked
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
    }
}

/// Access to a [`SpinLock`]'s value; unlocks when dropped, then lets preemption in again.
pub(super) struct SpinGuard<'g, T> {
    lock: &'g SpinLock<T>,
    /// Always `Some` until [`SpinGuard::unlock`] takes it; dropped after the unlock.
    off: Option<Critical>,
}

impl<T> SpinGuard<'_, T> {
    /// Unlocks, and returns the guard that still holds preemption off.
    #[inline]
    pub(super) fn unlock(mut self) -> Critical {
        let off = self.off.take().expect("a locked guard holds off preemption");
        drop(self);
        off
    }
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: we hold the lock, so nobody else accesses the value.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: we hold the lock, so nobody else accesses the value.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn excludes_across_threads() {
        let lock = Arc::new(SpinLock::new(0u64));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let lock = lock.clone();
                std::thread::spawn(move || {
                    for _ in 0..100_000 {
                        let mut v = lock.lock();
                        // A non-atomic read-modify-write: lost updates would show.
                        let x = *v;
                        *v = x + 1;
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(*lock.lock(), 400_000);
    }
}
