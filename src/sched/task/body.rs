//! A task's body: the closure it runs, kept inline in the task's record when it is small, and
//! the one slot that holds the body until the coroutine takes it, then the outcome.

use super::Outcome;
use std::mem::{ManuallyDrop, MaybeUninit};

/// A task's whole work, type-erased: run the user's closure and deliver its outcome. A closure
/// of up to [`Body::INLINE`] bytes (most: a few captured values) is kept in the body itself,
/// so in the task's record, and spawning it takes no heap block; a larger one is boxed.
pub(crate) struct Body {
    /// The closure, or (boxed) the pointer to it.
    data: MaybeUninit<[usize; 3]>,
    /// Moves the closure out of `data` (or out of its box) and runs it (`true`) or drops it.
    op: unsafe fn(*mut u8, bool),
}

impl Body {
    /// Bytes of a closure kept inline.
    pub(crate) const INLINE: usize = size_of::<[usize; 3]>();

    /// The body that runs `f`.
    #[inline]
    pub(crate) fn new<F: FnOnce() + Send + 'static>(f: F) -> Body {
        let mut data = MaybeUninit::<[usize; 3]>::uninit();
        if size_of::<F>() <= Body::INLINE && align_of::<F>() <= align_of::<usize>() {
            // SAFETY: `data` has room for an `F` and is aligned enough for it (checked above).
            unsafe { data.as_mut_ptr().cast::<F>().write(f) };
            Body {
                data,
                op: inline_op::<F>,
            }
        } else {
            let f = Box::into_raw(Box::new(f));
            // SAFETY: `data` has room for a pointer and its alignment.
            unsafe { data.as_mut_ptr().cast::<*mut F>().write(f) };
            Body {
                data,
                op: boxed_op::<F>,
            }
        }
    }

    /// Runs the closure.
    #[inline]
    pub(crate) fn run(self) {
        let mut body = ManuallyDrop::new(self);
        // SAFETY: `op` matches how `data` was filled, and `data` is used up here, once: the
        // `ManuallyDrop` keeps `Drop` from using it again.
        unsafe { (body.op)(body.data.as_mut_ptr().cast(), true) }
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        // SAFETY: as in `run`; a body is either run or dropped.
        unsafe { (self.op)(self.data.as_mut_ptr().cast(), false) }
    }
}

/// What a task holds for its coroutine and its joiner: its body until its coroutine takes it
/// (or a shutdown drops it unrun), then, once it ended, its outcome until the joiner takes it.
/// The two never coexist, so they share the room, and a record stays small.
pub(crate) enum Work {
    Body(Body),
    Outcome(Outcome),
    Empty,
}

impl Work {
    /// Takes the body, if it is still here.
    pub(crate) fn take(&mut self) -> Option<Body> {
        match std::mem::replace(self, Work::Empty) {
            Work::Body(body) => Some(body),
            other => {
                *self = other;
                None
            }
        }
    }
}

/// `Body::op` for an inline closure.
///
/// # Safety
///
/// `data` holds an `F` written by `Body::new`, which is used up here.
unsafe fn inline_op<F: FnOnce()>(data: *mut u8, run: bool) {
    // SAFETY: per the contract.
    let f = unsafe { data.cast::<F>().read() };
    if run {
        f()
    }
}

/// `Body::op` for a boxed closure.
///
/// # Safety
///
/// `data` holds the pointer of a `Box<F>` made by `Body::new`, which is used up here.
unsafe fn boxed_op<F: FnOnce()>(data: *mut u8, run: bool) {
    // SAFETY: per the contract.
    let f = unsafe { Box::from_raw(data.cast::<*mut F>().read()) };
    if run {
        f()
    }
}

#[cfg(test)]
mod tests {
    use super::Body;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn bodies_small_and_large_run_once_or_drop_their_captures() {
        let ran = Arc::new(AtomicUsize::new(0));
        let small = ran.clone();
        let large = (ran.clone(), [7u8; 2 * Body::INLINE]);
        assert!(size_of_val(&large) > Body::INLINE, "the large one is boxed");
        Body::new(move || {
            small.fetch_add(1, Ordering::Relaxed);
        })
        .run();
        Body::new(move || {
            large.0.fetch_add(large.1[0] as usize, Ordering::Relaxed);
        })
        .run();
        assert_eq!(ran.load(Ordering::Relaxed), 8);
        assert_eq!(Arc::strong_count(&ran), 1, "running a body drops what it captured");
        let (small, large) = (ran.clone(), (ran.clone(), [0u8; 2 * Body::INLINE]));
        drop(Body::new(move || drop(small)));
        drop(Body::new(move || drop(large)));
        assert_eq!(
            Arc::strong_count(&ran),
            1,
            "dropping a body unrun drops what it captured"
        );
        assert_eq!(ran.load(Ordering::Relaxed), 8, "and does not run it");
    }
}
