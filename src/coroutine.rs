//! The asymmetric coroutine: `resume` it, and it runs until it `suspend`s or returns.
//!
//! Usable with no scheduler at all, as a generator or to measure switches:
//!
//! ```
//! use sigcoro::coroutine::{Coroutine, CoroutineResult};
//!
//! let mut counter = Coroutine::new(|yielder, start: u32| {
//!     let mut n = start;
//!     loop {
//!         let step = yielder.suspend(n);
//!         if step == 0 {
//!             return "done";
//!         }
//!         n += step;
//!     }
//! });
//! assert_eq!(counter.resume(10), CoroutineResult::Yield(10));
//! assert_eq!(counter.resume(5), CoroutineResult::Yield(15));
//! assert_eq!(counter.resume(0), CoroutineResult::Return("done"));
//! assert!(counter.is_finished());
//! ```
//!
//! # How values cross
//!
//! Every switch carries two words in registers: a value and a tag. A value whose type fits in a
//! word travels in it; a larger one stays in the sender's frame (alive, since the sender is
//! suspended) and the word carries its address, which the receiver reads from at once. The tag
//! says what the value is: an input or a request to unwind on the way in, a yield or the end on
//! the way out. On the end, the word points at the outcome (`thread::Result<R>`) in the entry's
//! frame on the coroutine's stack, which stays alive until the stack takes its next job.
//!
//! # Lifecycle of the stack
//!
//! `new` takes a booted stack from the thread's pool and hands its trampoline a job; the job's
//! entry moves the closure onto the coroutine's stack and waits for the first `resume`. When the
//! closure returns or panics, the entry suspends with the outcome, and the stack goes back to
//! the pool at once. Dropping a coroutine that has not finished resumes it one last time with an
//! unwind request: it unwinds from its suspension point, so its destructors run, and then ends
//! the same way.

use crate::context::boot::Job;
use crate::context::switch::{Link, Transfer, resume, suspend};
use crate::stack::{self, Stack, pool};
use std::cell::Cell;
use std::io;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::mem::{align_of, size_of};
use std::panic::{self, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};

/// What a [`Coroutine::resume`] came back with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CoroutineResult<Y, R> {
    /// The coroutine suspended itself with this value; resume it again for more.
    Yield(Y),
    /// The coroutine's closure returned this value; the coroutine is finished.
    Return(R),
}

/// Tags of the words that cross a switch.
mod tag {
    /// In: the value is the input. Out: the value is a yield.
    pub const VALUE: usize = 0;
    /// In: unwind and end. Out: the coroutine ended; the value points at its outcome.
    pub const END: usize = 1;
}

/// Puts `v` into a word: the value itself when it fits, else its address (the caller keeps
/// it alive and never drops it; the receiver reads it with [`decode`]).
fn encode<T>(v: &mut ManuallyDrop<T>) -> usize {
    if size_of::<T>() <= size_of::<usize>() && align_of::<T>() <= align_of::<usize>() {
        let mut word = 0usize;
        // SAFETY: `T` fits in the word; the value moves into it and the caller forgets `v`.
        unsafe { ptr::write((&raw mut word).cast::<T>(), ManuallyDrop::take(v)) };
        word
    } else {
        (v as *mut ManuallyDrop<T>) as usize
    }
}

/// Takes the `T` out of a word made by [`encode`].
///
/// # Safety
///
/// `word` came from `encode::<T>`, and if it is an address, its sender still waits, and this is
/// the only read.
unsafe fn decode<T>(word: usize) -> T {
    if size_of::<T>() <= size_of::<usize>() && align_of::<T>() <= align_of::<usize>() {
        // SAFETY: the word holds a `T` written by `encode`.
        unsafe { ptr::read((&raw const word).cast::<T>()) }
    } else {
        // SAFETY: the word is the address of a live `T` its sender gave up.
        unsafe { ptr::read(word as *const T) }
    }
}

/// The payload of the unwind that a dropped coroutine runs its destructors with.
struct ForcedUnwind;

/// The coroutine side's handle: suspend back to whoever resumed.
///
/// Only the coroutine's own closure gets one, by reference; it cannot leave the coroutine or
/// its thread.
pub struct Yielder<I, Y> {
    link: *mut Link,
    unwinding: Cell<bool>,
    _marker: PhantomData<fn(Y) -> I>,
}

impl<I, Y> std::fmt::Debug for Yielder<I, Y> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Yielder")
            .field("unwinding", &self.unwinding.get())
            .finish_non_exhaustive()
    }
}

impl<I, Y> Yielder<I, Y> {
    /// Suspends the coroutine, handing `value` to the resumer, whose `resume` returns
    /// [`CoroutineResult::Yield`]. Returns the input of the next `resume`.
    ///
    /// If the coroutine is dropped instead of resumed, this unwinds (with a private payload)
    /// so that the coroutine's destructors run. Catching that unwind does not stop it: the
    /// coroutine can no longer suspend, and every further `suspend` unwinds again.
    ///
    /// A coroutine that unwinds from a panic cannot suspend (from a destructor): the thread's
    /// panic count, which `std::thread::panicking` reads, is std's per OS thread, so the
    /// resumer would go on as if it were panicking. `suspend` then ends the process with a
    /// message saying so, as std does for a panic that cannot unwind. (A coroutine resumed by
    /// a resumer that unwinds, from one of its destructors, suspends as usual: the panic is
    /// the resumer's. If such a coroutine panics too and suspends while unwinding, that is not
    /// told apart.)
    // Always inlined: the switch then happens in the caller's own frame. A frame between the
    // caller and the switch costs mispredicted returns once resumed (the return-stack
    // predictor saw the resumer's calls, not this coroutine's).
    #[inline(always)]
    pub fn suspend(&self, value: Y) -> I {
        if self.unwinding.get() {
            panic::resume_unwind(Box::new(ForcedUnwind));
        }
        if std::thread::panicking() {
            // SAFETY: the link is the first field of the stack's header (`#[repr(C)]`), which
            // stays mapped while the coroutine runs on it.
            let header = unsafe { &*self.link.cast::<crate::stack::Header>() };
            if !header.resumer_panicking.get() {
                refuse_suspend_while_unwinding();
            }
        }
        let mut value = ManuallyDrop::new(value);
        let sent = Transfer {
            value: encode(&mut value),
            tag: tag::VALUE,
        };
        // SAFETY: we run on the coroutine's stack, resumed through `link` by the resumer that
        // now waits; it decodes `value` before it resumes us again.
        let got = unsafe { suspend(self.link, sent) };
        if got.tag == tag::END {
            self.unwinding.set(true);
            panic::resume_unwind(Box::new(ForcedUnwind));
        }
        // SAFETY: the resumer encoded an `I`, and waits while we read it.
        unsafe { decode(got.value) }
    }
}

/// The tests' control (`sigcoro::__test::switch_while_unwinding_for_tests`): coroutines switch
/// out while they unwind, unsound on purpose, so a test can show what the refusal prevents.
pub(crate) static SWITCH_WHILE_UNWINDING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Ends the process: a coroutine tried to suspend while it unwinds from a panic.
#[cold]
#[inline(never)]
fn refuse_suspend_while_unwinding() {
    if SWITCH_WHILE_UNWINDING.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    let msg: &[u8] = b"sigcoro: Yielder::suspend was called inside a destructor that runs while this \
coroutine unwinds from a panic. It cannot switch out there: the thread's panic state \
(std::thread::panicking) is shared, so the resumer would run as if it were panicking. Aborting.\n";
    // SAFETY: write(2) from a static buffer to stderr.
    unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
    std::process::abort()
}

/// A stackful coroutine that takes `I` on each resume, yields `Y`, and returns `R`.
///
/// Not `Send`: once started, its stack may hold thread-local addresses of the thread it runs on.
pub struct Coroutine<I, Y, R> {
    stack: Option<Stack>,
    id: u64,
    _marker: PhantomData<(NotSend, Signature<I, Y, R>)>,
}

/// Makes the types that hold it neither `Send` nor `Sync`.
type NotSend = *mut ();
/// Ties a coroutine to its input, yield and return types without owning any of them.
type Signature<I, Y, R> = fn(I) -> (Y, R);

impl<I, Y, R> Coroutine<I, Y, R> {
    /// Creates a coroutine with the default stack size ([`stack::DEFAULT_STACK_SIZE`]). It runs
    /// nothing until the first [`resume`](Self::resume), whose input becomes `f`'s second
    /// argument.
    ///
    /// # Panics
    ///
    /// When no stack can be had (memory or `vm.max_map_count` exhausted), with a message that
    /// names the limit. [`Builder::build`] returns that error instead.
    pub fn new<F>(f: F) -> Self
    where
        F: FnOnce(&Yielder<I, Y>, I) -> R + 'static,
    {
        match Builder::new().build(f) {
            Ok(co) => co,
            Err(e) => panic!("sigcoro: cannot create a coroutine: {e}"),
        }
    }

    /// A builder to set the stack size or a name (used in overflow reports).
    pub fn builder() -> Builder<I, Y, R> {
        Builder::new()
    }

    /// Runs the coroutine until it suspends or finishes.
    ///
    /// # Panics
    ///
    /// If the coroutine has already finished; and, re-raising its payload, if the coroutine
    /// panics (it is then finished).
    #[inline]
    pub fn resume(&mut self, input: I) -> CoroutineResult<Y, R> {
        let Some(stack) = &self.stack else {
            panic!("sigcoro: resume called on a coroutine that has already finished");
        };
        let link = stack.link();
        // SAFETY: the header of an owned stack stays mapped; its coroutine reads this when it
        // suspends while panicking (see `Yielder::suspend`).
        unsafe { (*stack.header()).resumer_panicking.set(std::thread::panicking()) };
        let mut input = ManuallyDrop::new(input);
        let sent = Transfer {
            value: encode(&mut input),
            tag: tag::VALUE,
        };
        // SAFETY: the coroutine is suspended (or waiting for its first input) in its link; it
        // takes the input before it suspends back to us.
        let got = unsafe { resume(link, sent) };
        // SAFETY: `got` is what the coroutine suspended with just now.
        unsafe { self.settle(got) }
    }

    /// What the coroutine suspended with: a yielded value, or its end (its stack then goes
    /// back to the pool, and a panic goes on in the resumer).
    ///
    /// # Safety
    ///
    /// `got` is what this coroutine's last switch out carried, read once.
    #[inline(always)]
    unsafe fn settle(&mut self, got: Transfer) -> CoroutineResult<Y, R> {
        if got.tag == tag::VALUE {
            // SAFETY: the coroutine encoded a `Y` and waits while we read it.
            return CoroutineResult::Yield(unsafe { decode(got.value) });
        }
        // SAFETY: the coroutine ended, and its outcome waits in its entry's frame.
        let outcome = unsafe { ptr::read(got.value as *const std::thread::Result<R>) };
        self.recycle_stack();
        match outcome {
            Ok(r) => CoroutineResult::Return(r),
            Err(payload) => panic::resume_unwind(payload),
        }
    }

    /// Starts loading this coroutine's stack header, which the next [`resume`](Self::resume)
    /// reads first (a hint: nothing waits for it).
    #[inline(always)]
    pub(crate) fn prefetch_header(&self) {
        if let Some(stack) = &self.stack {
            // The link and the flags after it span the header's first two lines.
            crate::ground::prefetch(stack.header() as usize);
            crate::ground::prefetch(stack.header() as usize + 64);
        }
    }

    /// Starts loading what the next [`resume`](Self::resume) of this suspended coroutine
    /// touches after the header: the registers the switch pops at its saved stack pointer and
    /// the frames above them that it returns into. Reads the header (prefetch that first).
    #[inline(always)]
    pub(crate) fn prefetch_context(&self) {
        if let Some(stack) = &self.stack {
            // A coroutine lives on one thread (neither `Send` nor `Sync`), and `&self` means no
            // `resume` (`&mut self`) runs it: it is switched out, and nothing writes its link.
            // SAFETY: an owned stack's header stays mapped; its link is quiet (above).
            let sp = unsafe { (*stack.link()).ctx };
            for line in 0..4 {
                crate::ground::prefetch(sp + 64 * line);
            }
        }
    }

    /// Whether the closure has returned or panicked (or the coroutine was never started and is
    /// being dropped).
    pub fn is_finished(&self) -> bool {
        self.stack.is_none()
    }

    /// The usable stack, `[lo, hi)`, while the coroutine has one.
    pub(crate) fn stack_bounds(&self) -> Option<(usize, usize)> {
        let stack = self.stack.as_ref()?;
        let hi = stack.header() as usize;
        Some((
            crate::stack::reserve::slot_base(hi, stack.stride()) + crate::stack::page_size(),
            hi,
        ))
    }

    /// Whether this coroutine's stack started from a clone of the signal-stack trick's context
    /// (`true`) or was born by the trick itself (`false`); `None` once it has finished. For
    /// the tests' controls; not part of the API.
    #[doc(hidden)]
    pub fn stack_born_by_clone(&self) -> Option<bool> {
        let stack = self.stack.as_ref()?;
        // SAFETY: the header of the stack we own stays mapped; a plain read of a flag written
        // at its birth.
        Some(unsafe { (*stack.header()).born_by_clone })
    }

    /// This coroutine's id, unique in the process; overflow reports name it.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The finished coroutine's stack is idle in its trampoline loop again: pool it.
    fn recycle_stack(&mut self) {
        if let Some(stack) = self.stack.take() {
            pool::give(stack);
        }
    }
}

impl<I, Y, R> Drop for Coroutine<I, Y, R> {
    fn drop(&mut self) {
        let Some(stack) = &self.stack else { return };
        // SAFETY: as in `resume`; the END tag asks the coroutine to unwind to its entry, which
        // then ends with an outcome we drop here.
        unsafe {
            let got = resume(
                stack.link(),
                Transfer {
                    value: 0,
                    tag: tag::END,
                },
            );
            debug_assert_eq!(got.tag, tag::END, "an unwinding coroutine cannot suspend");
            drop(ptr::read(got.value as *const std::thread::Result<R>));
        }
        self.recycle_stack();
    }
}

impl<I, Y, R> std::fmt::Debug for Coroutine<I, Y, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coroutine")
            .field("id", &self.id)
            .field("finished", &self.is_finished())
            .finish()
    }
}

/// Sets up a [`Coroutine`]: stack size and name.
#[derive(Debug)]
pub struct Builder<I, Y, R> {
    stack_size: usize,
    name: Option<String>,
    _marker: PhantomData<fn(I) -> (Y, R)>,
}

impl<I, Y, R> Default for Builder<I, Y, R> {
    fn default() -> Self {
        Self::new()
    }
}

impl<I, Y, R> Builder<I, Y, R> {
    /// A builder with the default stack size and no name.
    pub fn new() -> Self {
        Builder {
            stack_size: stack::DEFAULT_STACK_SIZE,
            name: None,
            _marker: PhantomData,
        }
    }

    /// The usable stack size in bytes, rounded up to whole pages. Checked by
    /// [`build`](Self::build): at least [`stack::min_stack_size`], at most
    /// [`stack::MAX_STACK_SIZE`].
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = bytes;
        self
    }

    /// A name for overflow reports (their first 63 bytes).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Creates the coroutine, or says why it cannot: a bad stack size, or memory or mappings
    /// exhausted (the error names the limit and the way out).
    pub fn build<F>(self, f: F) -> io::Result<Coroutine<I, Y, R>>
    where
        F: FnOnce(&Yielder<I, Y>, I) -> R + 'static,
    {
        let size = stack::validate_size(self.stack_size)?;
        let id = next_id();
        let stack = pool::take(size)?;
        let header = stack.header();
        // SAFETY: we own the idle stack; its header is ours to write.
        unsafe { (*header).set_owner(id, self.name.as_deref(), size) };
        let mut f = ManuallyDrop::new(f);
        let job = Job {
            run: entry::<F, I, Y, R>,
            data: (&raw mut f).cast(),
        };
        // SAFETY: the stack is idle in its trampoline loop, which takes `job`, enters `entry`,
        // moves `f` out of our frame and suspends back before we go on.
        unsafe {
            resume(
                stack.link(),
                Transfer {
                    value: &raw const job as usize,
                    tag: tag::VALUE,
                },
            )
        };
        Ok(Coroutine {
            stack: Some(stack),
            id,
            _marker: PhantomData,
        })
    }
}

/// A coroutine just started by [`start_checked`], and what its first run came back with.
pub(crate) type Started<I, Y, R> = (Coroutine<I, Y, R>, CoroutineResult<Y, R>);

/// For the scheduler: makes a coroutine and runs it at once with `input`, until it first
/// suspends or ends, in one switch (no separate hand-over of the closure). `on_stack` gets the
/// stack's bounds `[lo, hi)` before the closure runs. `size` was checked by
/// [`stack::validate_size`]; `id` and `name` go into overflow reports.
#[inline(always)]
pub(crate) fn start_checked<I, Y, R, F>(
    id: u64,
    name: Option<&str>,
    size: usize,
    f: F,
    input: I,
    on_stack: impl FnOnce(usize, usize),
) -> io::Result<Started<I, Y, R>>
where
    F: FnOnce(&Yielder<I, Y>, I) -> R + 'static,
{
    let stack = pool::take(size)?;
    // SAFETY: we own the idle stack; its header is ours to write.
    unsafe { (*stack.header()).set_owner(id, name, size) };
    let mut co = Coroutine {
        stack: Some(stack),
        id,
        _marker: PhantomData,
    };
    let (lo, hi) = co.stack_bounds().expect("a new coroutine has a stack");
    on_stack(lo, hi);
    let stack = co.stack.as_ref().expect("a new coroutine has a stack");
    // SAFETY: the header of an owned stack stays mapped (see `Coroutine::resume`).
    unsafe { (*stack.header()).resumer_panicking.set(std::thread::panicking()) };
    let link = stack.link();
    let mut start = ManuallyDrop::new((f, input));
    let job = Job {
        run: entry_started::<F, I, Y, R>,
        data: (&raw mut start).cast(),
    };
    // SAFETY: the stack is idle in its trampoline loop, which takes `job` and enters
    // `entry_started`; that moves `f` and `input` out of our frame at once and runs `f` until it
    // suspends or ends, switching back here.
    let got = unsafe {
        resume(
            link,
            Transfer {
                value: &raw const job as usize,
                tag: tag::VALUE,
            },
        )
    };
    // SAFETY: `got` is what the coroutine suspended with just now.
    let first = unsafe { co.settle(got) };
    Ok((co, first))
}

/// A coroutine's entry on its own stack, run by the trampoline loop.
///
/// Moves the closure in, waits for the first resume, runs the closure with every panic caught
/// (nothing unwinds into the trampoline or the assembly), and suspends with the outcome, which
/// the resumer reads out of this frame. Resumed once more with the stack's next job, it returns
/// that job to the loop. Touches no thread-local state before the first resume, so an unstarted
/// coroutine may change threads.
///
/// # Safety
///
/// `data` points at an `F` that the caller gives up; `link` is this stack's link.
unsafe fn entry<F, I, Y, R>(data: *mut u8, link: *mut Link) -> usize
where
    F: FnOnce(&Yielder<I, Y>, I) -> R,
{
    // SAFETY: the builder handed us its `F` and forgets its copy.
    let f = unsafe { ptr::read(data.cast::<F>()) };
    // SAFETY: `link` is our stack's; the builder resumed us through it and waits: back to the
    // builder, then wait for the first resume (or a drop).
    let first = unsafe {
        suspend(
            link,
            Transfer {
                value: 0,
                tag: tag::VALUE,
            },
        )
    };
    let body = |yielder: &Yielder<I, Y>| {
        if first.tag == tag::END {
            drop(f);
            return Err(());
        }
        // SAFETY: the first resume encoded an `I` and waits while we read it.
        Ok(f(yielder, unsafe { decode(first.value) }))
    };
    // SAFETY: the link is ours; we end by suspending through it.
    unsafe { run_to_end(link, body) }
}

/// The entry of a coroutine made by [`start_checked`]: runs at once, with no first suspension.
///
/// # Safety
///
/// `data` points at an `(F, I)` that the caller gives up; `link` is this stack's link.
unsafe fn entry_started<F, I, Y, R>(data: *mut u8, link: *mut Link) -> usize
where
    F: FnOnce(&Yielder<I, Y>, I) -> R,
{
    // SAFETY: the starter handed us its `(F, I)` and forgets its copy.
    let (f, input) = unsafe { ptr::read(data.cast::<(F, I)>()) };
    // SAFETY: the link is ours (the starter resumed us through it and waits); we end by
    // suspending through it.
    unsafe { run_to_end(link, |yielder| Ok(f(yielder, input))) }
}

/// Runs a coroutine's body with every panic caught (nothing unwinds into the trampoline or the
/// assembly) and suspends with the outcome, which the resumer reads out of this frame; resumed
/// once more with the stack's next job, returns that job to the trampoline loop. `body` returns
/// `Err(())` when it was asked to unwind before it ran.
///
/// # Safety
///
/// `link` is the running coroutine's own link, and its resumer waits on it.
#[inline(always)]
unsafe fn run_to_end<I, Y, R>(link: *mut Link, body: impl FnOnce(&Yielder<I, Y>) -> Result<R, ()>) -> usize {
    let yielder = Yielder {
        link,
        unwinding: Cell::new(false),
        _marker: PhantomData,
    };
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| body(&yielder)));
    let outcome: std::thread::Result<R> = match outcome {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(())) => Err(Box::new(ForcedUnwind)),
        Err(payload) => Err(payload),
    };
    let outcome = ManuallyDrop::new(outcome);
    // SAFETY: the resumer reads `outcome` (taking ownership) before this stack runs anything
    // else; it comes back here only with the next job.
    unsafe {
        suspend(
            link,
            Transfer {
                value: &raw const outcome as usize,
                tag: tag::END,
            },
        )
    }
    .value
}

/// Process-unique coroutine ids, handed to each thread in blocks to keep the counter cold.
/// Never inlined: its thread-local's address must not be kept across a migratable
/// coroutine's switch (see `crate::ground`).
#[inline(never)]
pub(crate) fn next_id() -> u64 {
    const BLOCK: u64 = 1024;
    let _off = crate::ground::RuntimeGuard::new();
    static NEXT_BLOCK: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static IDS: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
    }
    IDS.try_with(|ids| {
        let (next, end) = ids.get();
        if next < end {
            ids.set((next + 1, end));
            next
        } else {
            let start = NEXT_BLOCK.fetch_add(BLOCK, Ordering::Relaxed);
            ids.set((start + 1, start + BLOCK));
            start
        }
    })
    .unwrap_or_else(|_| NEXT_BLOCK.fetch_add(1, Ordering::Relaxed))
}
