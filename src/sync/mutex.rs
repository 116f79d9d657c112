//! A mutual-exclusion lock that parks coroutines.

use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::Mutex as StdMutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};

use super::waiters::{OnUnwind, WaitQueue, lock, unpark};
use crate::sched::park::{current_unparker, park_until};

/// A mutual-exclusion lock like `std::sync::Mutex`, whose waiters park (a coroutine waiting
/// for it lets its worker run other coroutines).
///
/// There is no poisoning: if a holder panics, the guard's drop unlocks the mutex and the next
/// locker sees the data as the panicking holder left it. [`lock`](Self::lock) therefore returns
/// the guard directly, not a `Result`.
///
/// An uncontended lock or unlock is one atomic operation. Waiters queue in FIFO order and the
/// oldest is woken on unlock, but a locker arriving just then may take the lock first
/// (barging keeps the lock fast under contention); the woken waiter then keeps its place.
///
/// ```
/// use std::sync::Arc;
/// use sigcoro::sync::Mutex;
///
/// let counter = Arc::new(Mutex::new(0));
/// let handles: Vec<_> = (0..4)
///     .map(|_| {
///         let counter = Arc::clone(&counter);
///         std::thread::spawn(move || *counter.lock() += 1)
///     })
///     .collect();
/// for h in handles {
///     h.join().unwrap();
/// }
/// assert_eq!(*counter.lock(), 4);
/// ```
pub struct Mutex<T: ?Sized> {
    locked: AtomicBool,
    /// Number of queued waiters; read by `unlock` to skip the queue when it is empty.
    waiters: AtomicUsize,
    queue: StdMutex<WaitQueue>,
    data: UnsafeCell<T>,
}

// SAFETY: the mutex gives access to `data` to one holder at a time, so sharing the mutex only
// moves `T` between threads, which `T: Send` allows.
unsafe impl<T: ?Sized + Send> Sync for Mutex<T> {}
// SAFETY: as above; owning the mutex owns the `T`.
unsafe impl<T: ?Sized + Send> Send for Mutex<T> {}

impl<T> Mutex<T> {
    /// A new unlocked mutex holding `value`.
    pub const fn new(value: T) -> Self {
        Mutex {
            locked: AtomicBool::new(false),
            waiters: AtomicUsize::new(0),
            queue: StdMutex::new(WaitQueue::new()),
            data: UnsafeCell::new(value),
        }
    }

    /// Consumes the mutex and returns the value.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Locks the mutex, waiting (parking) while another holder has it.
    ///
    /// In a destructor that runs while the coroutine unwinds (a panic, or a cancellation), a `lock` that
    /// would have to wait ends the process with a message naming it (see "Waiting in destructors" at
    /// [`JoinHandle::cancel`](crate::JoinHandle::cancel)).
    pub fn lock(&self) -> MutexGuard<'_, T> {
        if !self.try_acquire() {
            self.lock_slow();
        }
        MutexGuard {
            mutex: self,
            _not_send: PhantomData,
        }
    }

    /// Locks the mutex if it is free right now.
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        // Not `then_some`: a guard built eagerly and dropped would unlock someone else's lock.
        self.try_acquire().then(|| MutexGuard {
            mutex: self,
            _not_send: PhantomData,
        })
    }

    /// Whether the mutex is locked right now (a snapshot, for diagnostics).
    pub fn is_locked(&self) -> bool {
        self.locked.load(SeqCst)
    }

    /// A mutable reference to the value; no locking is needed since the borrow is exclusive.
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    fn try_acquire(&self) -> bool {
        self.locked.compare_exchange(false, true, SeqCst, SeqCst).is_ok()
    }

    #[cold]
    fn lock_slow(&self) {
        // Register first, then retry: `unlock` clears `locked` before it reads `waiters` and we
        // bump `waiters` before we read `locked` (all SeqCst), so either our retry sees the lock
        // free or the unlocker sees us queued and wakes the front waiter.
        let id = {
            let mut q = lock(&self.queue);
            let id = q.push(current_unparker());
            self.waiters.fetch_add(1, SeqCst);
            id
        };
        let guard = OnUnwind::new(|| self.leave(id));
        loop {
            if self.try_acquire() {
                guard.disarm();
                let mut q = lock(&self.queue);
                q.remove(id);
                self.waiters.fetch_sub(1, SeqCst);
                return;
            }
            park_until(None, "sigcoro::sync::Mutex::lock");
        }
    }

    /// A waiter unwinds out of `lock_slow`: leave the queue, and if it was the front (the one
    /// `unlock` wakes), wake the next one so the wakeup is not lost.
    fn leave(&self, id: u64) {
        let mut q = lock(&self.queue);
        let was_front = q.front().is_some_and(|w| w.id == id);
        if q.remove(id).is_some() {
            self.waiters.fetch_sub(1, SeqCst);
        }
        let next = if was_front {
            q.front().map(|w| w.unparker.clone())
        } else {
            None
        };
        drop(q);
        unpark(next);
    }

    fn unlock(&self) {
        self.locked.store(false, SeqCst);
        if self.waiters.load(SeqCst) > 0 {
            let next = lock(&self.queue).front().map(|w| w.unparker.clone());
            unpark(next);
        }
    }
}

impl<T: Default> Default for Mutex<T> {
    fn default() -> Self {
        Mutex::new(T::default())
    }
}

impl<T> From<T> for Mutex<T> {
    fn from(value: T) -> Self {
        Mutex::new(value)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Mutex");
        match self.try_lock() {
            Some(guard) => d.field("data", &&*guard),
            None => d.field("data", &format_args!("<locked>")),
        };
        d.finish_non_exhaustive()
    }
}

/// Proof of holding a [`Mutex`]; unlocks it when dropped.
#[must_use = "if unused the Mutex will immediately unlock"]
pub struct MutexGuard<'a, T: ?Sized> {
    pub(super) mutex: &'a Mutex<T>,
    /// Like std's guard, not `Send`: it is released where it was taken.
    _not_send: PhantomData<*const ()>,
}

// SAFETY: a shared guard only gives `&T`, which may be shared across threads when `T: Sync`.
unsafe impl<T: ?Sized + Sync> Sync for MutexGuard<'_, T> {}

impl<T: ?Sized> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while this holder owns the lock, so no other reference
        // to the data is live.
        unsafe { &*self.mutex.data.get() }
    }
}

impl<T: ?Sized> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this the only access through the guard.
        unsafe { &mut *self.mutex.data.get() }
    }
}

impl<T: ?Sized> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        self.mutex.unlock();
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Display> fmt::Display for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}
