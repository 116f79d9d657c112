//! A reader-writer lock that parks coroutines.

use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::Mutex as StdMutex;

use super::waiters::{OnUnwind, WaitQueue, lock};
use crate::sched::park::{current_unparker, park_until};

/// A reader-writer lock like `std::sync::RwLock`, whose waiters park. No poisoning (see
/// [`Mutex`](super::Mutex)).
///
/// Writers are preferred: once a writer waits, new readers queue behind it, so a stream of
/// readers cannot starve writers. Ownership is handed over directly on release: a releasing
/// writer admits all the readers that queued during its turn (they share the next turn), else
/// the next writer; the last reader out admits the next writer. So neither side starves. A
/// consequence: taking a second read lock while holding one can deadlock if a writer arrived
/// in between (as with std's lock on most platforms).
///
/// ```
/// use sigcoro::sync::RwLock;
///
/// let lock = RwLock::new(vec![1, 2]);
/// {
///     let a = lock.read();
///     let b = lock.read(); // readers share
///     assert_eq!(a.len() + b.len(), 4);
/// }
/// lock.write().push(3);
/// assert_eq!(*lock.read(), [1, 2, 3]);
/// ```
pub struct RwLock<T: ?Sized> {
    state: StdMutex<State>,
    data: UnsafeCell<T>,
}

struct State {
    /// Active readers.
    readers: usize,
    /// Whether a writer is active.
    writer: bool,
    /// Waiting readers and writers; an entry removed by the releaser is granted the lock.
    read_q: WaitQueue,
    write_q: WaitQueue,
}

impl State {
    /// Grants the lock to whoever should have it next, after a release or a departure.
    fn dispatch(&mut self) {
        if self.writer {
            return;
        }
        if self.readers == 0
            && let Some(w) = self.write_q.pop_front()
        {
            self.writer = true;
            w.unparker.unpark();
            return;
        }
        if self.write_q.is_empty() {
            self.readers += self.read_q.len();
            self.read_q.wake_all_remove();
        }
    }
}

// SAFETY: readers share `&T` across threads (needs `T: Sync`), a writer gets `&mut T` from
// whichever thread holds it (needs `T: Send`); the lock keeps the two exclusive.
unsafe impl<T: ?Sized + Send + Sync> Sync for RwLock<T> {}
// SAFETY: owning the lock owns the `T`.
unsafe impl<T: ?Sized + Send> Send for RwLock<T> {}

impl<T> RwLock<T> {
    /// A new unlocked lock holding `value`.
    pub const fn new(value: T) -> Self {
        RwLock {
            state: StdMutex::new(State {
                readers: 0,
                writer: false,
                read_q: WaitQueue::new(),
                write_q: WaitQueue::new(),
            }),
            data: UnsafeCell::new(value),
        }
    }

    /// Consumes the lock and returns the value.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized> RwLock<T> {
    /// Locks for reading, waiting while a writer holds or waits for the lock.
    pub fn read(&self) -> RwLockReadGuard<'_, T> {
        let mut st = lock(&self.state);
        if !st.writer && st.write_q.is_empty() {
            st.readers += 1;
        } else {
            let id = st.read_q.push(current_unparker());
            drop(st);
            self.wait_granted(id, false);
        }
        RwLockReadGuard::new(self)
    }

    /// Locks for writing, waiting while anyone else holds it.
    pub fn write(&self) -> RwLockWriteGuard<'_, T> {
        let mut st = lock(&self.state);
        if !st.writer && st.readers == 0 && st.write_q.is_empty() {
            st.writer = true;
        } else {
            let id = st.write_q.push(current_unparker());
            drop(st);
            self.wait_granted(id, true);
        }
        RwLockWriteGuard {
            lock: self,
            _not_send: PhantomData,
        }
    }

    /// Locks for reading if that is possible right now.
    pub fn try_read(&self) -> Option<RwLockReadGuard<'_, T>> {
        let mut st = lock(&self.state);
        if st.writer || !st.write_q.is_empty() {
            return None;
        }
        st.readers += 1;
        Some(RwLockReadGuard::new(self))
    }

    /// Locks for writing if the lock is free right now.
    pub fn try_write(&self) -> Option<RwLockWriteGuard<'_, T>> {
        let mut st = lock(&self.state);
        if st.writer || st.readers > 0 || !st.write_q.is_empty() {
            return None;
        }
        st.writer = true;
        Some(RwLockWriteGuard {
            lock: self,
            _not_send: PhantomData,
        })
    }

    /// A mutable reference to the value; no locking is needed since the borrow is exclusive.
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    /// Parks until the queued entry `id` has been granted the lock (removed from its queue).
    fn wait_granted(&self, id: u64, write: bool) {
        let guard = OnUnwind::new(|| {
            let mut st = lock(&self.state);
            let queue = if write { &mut st.write_q } else { &mut st.read_q };
            if queue.remove(id).is_none() {
                // Granted meanwhile: release what we were given.
                if write {
                    st.writer = false;
                } else {
                    st.readers -= 1;
                }
            }
            st.dispatch();
        });
        loop {
            park_until(
                None,
                if write {
                    "sigcoro::sync::RwLock::write"
                } else {
                    "sigcoro::sync::RwLock::read"
                },
            );
            let st = lock(&self.state);
            let queue = if write { &st.write_q } else { &st.read_q };
            if !queue.contains(id) {
                drop(st);
                guard.disarm();
                return;
            }
        }
    }

    fn write_unlock(&self) {
        let mut st = lock(&self.state);
        st.writer = false;
        // Readers that queued during this write go first (phase-fair), then the next writer.
        if st.read_q.is_empty() {
            st.dispatch();
        } else {
            st.readers += st.read_q.len();
            st.read_q.wake_all_remove();
        }
    }
}

impl<T: Default> Default for RwLock<T> {
    fn default() -> Self {
        RwLock::new(T::default())
    }
}

impl<T> From<T> for RwLock<T> {
    fn from(value: T) -> Self {
        RwLock::new(value)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RwLock");
        match self.try_read() {
            Some(guard) => d.field("data", &&*guard),
            None => d.field("data", &format_args!("<locked>")),
        };
        d.finish_non_exhaustive()
    }
}

/// Shared access to an [`RwLock`]; releases it when dropped.
///
/// Covariant in `T`, as std's: it only reads the data, through a pointer, and reaches the lock's
/// state, which does not depend on `T`, separately.
///
/// ```
/// fn shorten<'a, 'g>(g: sigcoro::sync::RwLockReadGuard<'g, &'static str>) -> sigcoro::sync::RwLockReadGuard<'g, &'a str> {
///     g
/// }
/// let lock = sigcoro::sync::RwLock::new("x");
/// assert_eq!(*shorten(lock.read()), "x");
/// ```
#[must_use = "if unused the RwLock will immediately unlock"]
pub struct RwLockReadGuard<'a, T: ?Sized> {
    data: NonNull<T>,
    state: &'a StdMutex<State>,
    _borrow: PhantomData<&'a T>,
    _not_send: PhantomData<*const ()>,
}

impl<'a, T: ?Sized> RwLockReadGuard<'a, T> {
    /// The guard of a read lock just taken on `lock`.
    fn new(lock: &'a RwLock<T>) -> Self {
        RwLockReadGuard {
            // SAFETY: `UnsafeCell::get` never returns null.
            data: unsafe { NonNull::new_unchecked(lock.data.get()) },
            state: &lock.state,
            _borrow: PhantomData,
            _not_send: PhantomData,
        }
    }
}

// SAFETY: the guard only gives `&T`, shareable across threads when `T: Sync`.
unsafe impl<T: ?Sized + Sync> Sync for RwLockReadGuard<'_, T> {}

impl<T: ?Sized> Deref for RwLockReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: while a read guard exists no writer is active, so only shared references to
        // the data are live; the lock outlives the guard ('a).
        unsafe { self.data.as_ref() }
    }
}

impl<T: ?Sized> Drop for RwLockReadGuard<'_, T> {
    fn drop(&mut self) {
        let mut st = lock(self.state);
        st.readers -= 1;
        st.dispatch();
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLockReadGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// Exclusive access to an [`RwLock`]; releases it when dropped.
#[must_use = "if unused the RwLock will immediately unlock"]
pub struct RwLockWriteGuard<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: a shared write guard only gives `&T`, shareable across threads when `T: Sync`.
unsafe impl<T: ?Sized + Sync> Sync for RwLockWriteGuard<'_, T> {}

impl<T: ?Sized> Deref for RwLockWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the write guard is the only holder of the lock.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> DerefMut for RwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the write guard is the only holder, and `&mut self` the only access through it.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for RwLockWriteGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.write_unlock();
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLockWriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
