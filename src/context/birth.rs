//! Births at scale: one stack of a batch is born by the signal-stack trick, the others start
//! from a clone of the context the trick left.
//!
//! # What the trick leaves, and why it is that context that is cloned
//!
//! The boot handler (`sigcoro_boot_handler`, asm/x86_64.S) leaves exactly one word below the
//! kernel's signal frame: the address of `sigcoro_trampoline_start`. That word is the whole
//! context. It saves no register, and `sigcoro_trampoline_start` reads nothing from the stack
//! it lands on: it takes the stack's `Link` from the resume (rsi), records the resumer there,
//! moves rsp up to the `Header` and calls [`trampoline_main`](super::boot). The signal frame
//! above the word is dead once the handler has returned (`rt_sigreturn` consumed it, and the
//! trampoline reuses its bytes). So the trick's context holds no address into its own stack:
//! cloned onto another fresh stack, it needs only its own address (the saved rsp) relocated,
//! and entering the clone runs the very instructions that entering the trick's context runs.
//!
//! The frame the trampoline parks in *after* that first entry is another matter, and is not
//! what is cloned: it is `trampoline_main`'s frame, laid out by the compiler, holding the
//! `Header` address in a callee-saved register (an absolute address into its own stack), the
//! first resumer's r12-r15 and rbx pushed by its prologue (dead values, which may point
//! anywhere, other slots included), and, in debug builds, spilled locals. Relocating it would
//! mean guessing which words are pointers into the stack, which no inspection can tell from a
//! dead value or an integer that happens to fall in the range. The signal frame cannot be
//! cloned either (it is the kernel's, and dead). So every stack starts from the trick's own
//! context, the one state of the birth that is defined by our assembly alone, and parks through
//! the same first resume as a stack born by the trick; only the signal delivery is shared.
//!
//! The image is checked when it is captured: a trick that left anything but that one word
//! (another handler ran, the layout changed) is refused, and its batch is born by the trick.
//!
//! The clone goes just below the `Header`, on the page the header and the parked frame dirty
//! anyway, not as deep as the trick left it (the kernel's frame is `AT_MINSIGSTKSZ` deep): a
//! cloned stack touches one page and needs no pages returned after its birth.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

unsafe extern "C" {
    /// Where every stack's first resume enters (asm/x86_64.S); never called from Rust.
    fn sigcoro_trampoline_start();
}

/// Words of the trick's context, from its saved rsp up: the resume address only.
const IMAGE_WORDS: usize = 1;

/// Where a clone's context goes: this many bytes below its stack's top (its `Header`).
const CLONE_DEPTH: usize = 8 * IMAGE_WORDS;

/// The hidden control: every birth goes through the trick.
static TRICK_ONLY: AtomicBool = AtomicBool::new(false);
static BY_TRICK: AtomicU64 = AtomicU64::new(0);
static CLONED: AtomicU64 = AtomicU64::new(0);

/// The context the signal-stack trick left on a fresh stack, captured before its first entry.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Image {
    words: [usize; IMAGE_WORDS],
}

impl Image {
    /// Reads the context the trick left at `ctx` on the stack `lo..hi`, before anything has
    /// resumed it. `None` if it is not the trampoline's entry, nothing else: then nothing is
    /// cloned from it.
    ///
    /// # Safety
    ///
    /// `ctx` is the context the boot handler published for the stack `lo..hi`, which is mapped
    /// and has not been resumed yet.
    pub(crate) unsafe fn capture(ctx: usize, lo: usize, hi: usize) -> Option<Image> {
        if ctx < lo || ctx + 8 * IMAGE_WORDS > hi || !ctx.is_multiple_of(8) {
            return None;
        }
        // SAFETY: the words lie inside the mapped stack, where the handler wrote them.
        let words: [usize; IMAGE_WORDS] = unsafe { (ctx as *const [usize; IMAGE_WORDS]).read() };
        let entry = sigcoro_trampoline_start as *const () as usize;
        // No word may be an address into the stack it was born on: there would be nothing
        // to relocate it by that we could trust. The entry is code, so this holds.
        let own = |w: usize| (lo..hi).contains(&w);
        (words[0] == entry && !words.iter().copied().any(own)).then_some(Image { words })
    }

    /// Writes this context onto the fresh stack whose top (its `Link`, at the stack's header)
    /// is `top`, relocated to just below it, and returns the clone's saved rsp, for its
    /// `Link.ctx`.
    ///
    /// # Safety
    ///
    /// `top` is the top of a fresh stack that we own, mapped and writable below it, whose
    /// context has not been born yet.
    pub(crate) unsafe fn stamp(&self, top: usize) -> usize {
        let ctx = top - CLONE_DEPTH;
        // SAFETY: the words just below the header lie in the owned, unused stack.
        unsafe { (ctx as *mut [usize; IMAGE_WORDS]).write(self.words) };
        ctx
    }
}

/// Whether births must all go through the trick (the hidden control is set).
pub(crate) fn trick_only() -> bool {
    TRICK_ONLY.load(Ordering::Relaxed)
}

/// Counts births: `by_trick` by the signal-stack trick, `cloned` from a trick's context.
pub(crate) fn count(by_trick: usize, cloned: usize) {
    BY_TRICK.fetch_add(by_trick as u64, Ordering::Relaxed);
    CLONED.fetch_add(cloned as u64, Ordering::Relaxed);
}

/// The tests' and benchmarks' control: with `true`, every stack born from now on is born by
/// the signal-stack trick, none cloned (the behaviour before cloning). Process-wide; stacks
/// already born stay as they are. Not part of the API.
#[doc(hidden)]
pub fn births_by_trick_only(on: bool) {
    TRICK_ONLY.store(on, Ordering::Relaxed);
}

/// How many stacks this process has had born so far: `(by the trick, cloned)`. Not part of
/// the API.
#[doc(hidden)]
pub fn birth_counts() -> (u64, u64) {
    (BY_TRICK.load(Ordering::Relaxed), CLONED.load(Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;
    /// The bytes a stack's header takes at its top (as `stack::HEADER_SIZE`).
    const HEADER_SIZE: usize = 128;

    /// A fake stack: 64 words, a context at word 8, a header-sized area at the top.
    fn fake(word: usize) -> (Vec<usize>, usize, usize, usize) {
        let mut stack = vec![0usize; 64];
        stack[8] = word;
        let lo = stack.as_ptr() as usize;
        let hi = lo + 64 * 8 - HEADER_SIZE;
        (stack, lo, hi, lo + 8 * 8)
    }

    #[test]
    fn only_the_trampolines_entry_is_captured() {
        let entry = sigcoro_trampoline_start as *const () as usize;
        let (stack, lo, hi, ctx) = fake(entry);
        // SAFETY: `ctx` and its word lie in `stack`, which lives until the end of the test.
        let image = unsafe { Image::capture(ctx, lo, hi) }.expect("the trick's context");
        assert_eq!(image.words, [entry]);
        // SAFETY: as above.
        unsafe {
            assert!(Image::capture(ctx + 1, lo, hi).is_none(), "misaligned");
            assert!(Image::capture(hi, lo, hi).is_none(), "outside the stack");
        }
        drop(stack);
        for other in [0, entry + 1, ctx] {
            let (stack, lo, hi, ctx) = fake(other);
            // SAFETY: as above, for this fake stack.
            assert!(unsafe { Image::capture(ctx, lo, hi) }.is_none(), "{other:#x} refused");
            drop(stack);
        }
    }

    #[test]
    fn a_clone_sits_just_below_the_header() {
        let entry = sigcoro_trampoline_start as *const () as usize;
        let image = Image { words: [entry] };
        let mut stack = vec![0usize; 32];
        let top = stack.as_mut_ptr().wrapping_add(16) as usize;
        // SAFETY: the words below `top` lie in `stack`; nothing is written at or above it.
        let ctx = unsafe { image.stamp(top) };
        assert_eq!(ctx, top - CLONE_DEPTH);
        assert_eq!(stack[15], entry);
        assert!(stack[16..].iter().all(|&w| w == 0), "the header is left alone");
    }
}
