//! `coroutine_local!`: storage per coroutine, where `thread_local!` is shared by every
//! coroutine of a worker.
//!
//! Values live in the running task, keyed by the address of their static, made on first use in
//! that coroutine, and dropped on the coroutine's own stack when it ends (also when it is
//! cancelled).

use super::park::current_task;
use std::any::Any;

/// A key for per-coroutine values; declare one with [`coroutine_local!`](crate::coroutine_local).
pub struct CoroutineLocal<T: 'static> {
    init: fn() -> T,
}

impl<T: 'static> std::fmt::Debug for CoroutineLocal<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoroutineLocal")
            .field("type", &std::any::type_name::<T>())
            .finish_non_exhaustive()
    }
}

/// The values of one task, by key address. Boxed, so references stay put while others are
/// added.
pub(crate) type Locals = Vec<(usize, Box<dyn Any>)>;

impl<T: 'static> CoroutineLocal<T> {
    #[doc(hidden)]
    pub const fn new(init: fn() -> T) -> Self {
        CoroutineLocal { init }
    }

    /// Runs `f` with this coroutine's value, made by the initialiser on first use.
    ///
    /// # Panics
    ///
    /// Outside a coroutine of a runtime.
    pub fn with<R>(&'static self, f: impl FnOnce(&T) -> R) -> R {
        let task = current_task().unwrap_or_else(|| {
            panic!("sigcoro: a coroutine_local! value was used outside a coroutine of a sigcoro runtime")
        });
        let key = self as *const Self as usize;
        // SAFETY: only the running task touches its locals, and no borrow of the vector is held
        // across user code: we copy out a pointer into a box, whose contents never move.
        let found = unsafe {
            (*task.locals.get())
                .as_ref()
                .and_then(|locals| locals.iter().find(|(k, _)| *k == key))
                .map(|(_, v)| v.as_ref() as *const dyn Any)
        };
        let value = match found {
            Some(p) => p,
            None => {
                let boxed: Box<dyn Any> = Box::new((self.init)());
                let p = boxed.as_ref() as *const dyn Any;
                // SAFETY: as above; the initialiser (which may use other keys) has returned.
                unsafe { (*task.locals.get()).get_or_insert_default().push((key, boxed)) };
                p
            }
        };
        // SAFETY: the box lives until the task ends, which cannot happen during `f`.
        let value = unsafe { &*value };
        f(value
            .downcast_ref::<T>()
            .expect("a coroutine-local key holds its own type"))
    }
}

/// Declares per-coroutine statics, as `thread_local!` declares per-thread ones.
///
/// ```
/// use std::cell::Cell;
/// sigcoro::coroutine_local! {
///     static REQUESTS: Cell<u32> = Cell::new(0);
/// }
/// let rt = sigcoro::Runtime::builder().workers(1).build().unwrap();
/// let counts = rt.block_on(|| {
///     let a = sigcoro::spawn(|| { REQUESTS.with(|r| r.set(r.get() + 5)); sigcoro::yield_now(); REQUESTS.with(Cell::get) });
///     let b = sigcoro::spawn(|| { sigcoro::yield_now(); REQUESTS.with(Cell::get) });
///     (a.join().unwrap(), b.join().unwrap())
/// });
/// assert_eq!(counts, (5, 0));
/// ```
#[macro_export]
macro_rules! coroutine_local {
    () => {};
    ($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty = $init:expr; $($rest:tt)*) => {
        $(#[$attr])*
        $vis static $name: $crate::CoroutineLocal<$t> = $crate::CoroutineLocal::new({
            fn __sigcoro_init() -> $t {
                $init
            }
            __sigcoro_init
        });
        $crate::coroutine_local!($($rest)*);
    };
    ($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty = $init:expr) => {
        $crate::coroutine_local!($(#[$attr])* $vis static $name: $t = $init;);
    };
}
