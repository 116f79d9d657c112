//! A coroutine's return value on its way to the joiner, with its type erased: kept inline in
//! the task when it fits three words (most values do: `()`, integers, `Vec`, `String`), boxed
//! otherwise. Joining a coroutine that returns a small value then costs no allocation.

use std::mem::{self, MaybeUninit};

/// Room for a value kept inline.
type Slot = MaybeUninit<[usize; 3]>;

/// A value of a type fixed at creation, which only its creator's `JoinHandle<T>` names again.
pub(crate) struct Value {
    slot: Slot,
    /// Drops the value held (inline or boxed).
    drop: unsafe fn(&mut Slot),
}

// SAFETY: `Value::new` takes only `Send` values.
unsafe impl Send for Value {}

/// Whether a `T` is kept inline rather than boxed.
const fn inline<T>() -> bool {
    mem::size_of::<T>() <= mem::size_of::<Slot>() && mem::align_of::<T>() <= mem::align_of::<Slot>()
}

impl Value {
    /// Holds `v`.
    #[inline]
    pub(crate) fn new<T: Send + 'static>(v: T) -> Value {
        let mut slot = Slot::uninit();
        if inline::<T>() {
            // SAFETY: `T` fits the slot's size and alignment.
            unsafe { slot.as_mut_ptr().cast::<T>().write(v) };
        } else {
            // SAFETY: the slot holds a word.
            unsafe { slot.as_mut_ptr().cast::<*mut T>().write(Box::into_raw(Box::new(v))) };
        }
        Value {
            slot,
            drop: drop_held::<T>,
        }
    }

    /// The value, as the `T` it was made from.
    ///
    /// # Safety
    ///
    /// `T` is the type this value was made with.
    #[inline]
    pub(crate) unsafe fn take<T>(self) -> T {
        let this = mem::ManuallyDrop::new(self);
        // SAFETY: per the contract the slot holds a `T` (or a box of one), made by `new::<T>`;
        // `this` is never dropped, so the value is moved out exactly once.
        unsafe {
            if inline::<T>() {
                this.slot.as_ptr().cast::<T>().read()
            } else {
                *Box::from_raw(this.slot.as_ptr().cast::<*mut T>().read())
            }
        }
    }
}

impl Drop for Value {
    fn drop(&mut self) {
        // SAFETY: `drop` was made for the type the slot holds, and runs once.
        unsafe { (self.drop)(&mut self.slot) }
    }
}

/// Drops the `T` a slot holds.
///
/// # Safety
///
/// The slot holds a `T` as [`Value::new::<T>`] left it, and is not used again.
unsafe fn drop_held<T>(slot: &mut Slot) {
    // SAFETY: per the contract.
    unsafe {
        if inline::<T>() {
            slot.as_mut_ptr().cast::<T>().drop_in_place();
        } else {
            drop(Box::from_raw(slot.as_ptr().cast::<*mut T>().read()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Value;
    use std::sync::Arc;

    #[test]
    fn small_and_large_values_come_back() {
        // SAFETY: each value is taken as the type it was made with.
        unsafe {
            assert_eq!(Value::new(7u8).take::<u8>(), 7);
            assert_eq!(Value::new(String::from("hi")).take::<String>(), "hi");
            assert_eq!(Value::new([9u64; 16]).take::<[u64; 16]>(), [9; 16]);
            Value::new(()).take::<()>();
            assert_eq!(Value::new(1u128).take::<u128>(), 1); // over-aligned: boxed
        }
    }

    #[test]
    fn untaken_values_are_dropped_once() {
        let small = Arc::new(());
        let big = Arc::new(());
        drop(Value::new(small.clone()));
        drop(Value::new([Some(big.clone()), Some(big.clone()), None, None]));
        assert_eq!(Arc::strong_count(&small), 1);
        assert_eq!(Arc::strong_count(&big), 1);
    }
}
