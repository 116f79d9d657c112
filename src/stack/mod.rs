//! Coroutine stacks: sizes, the header at the top of each stack, and the owning handle.
//!
//! A stack is one slot of a large reservation (see the private `reserve` module):
//!
//! ```text
//!   slot base                                                        slot base + stride
//!   | guard page | usable stack, grows down <-------------------- | Header (128 bytes) |
//! ```
//!
//! Memory is committed by the kernel page by page as the coroutine touches it, so an idle
//! coroutine costs about one page whatever its stack size. The guard page comes from
//! `MADV_GUARD_INSTALL` (Linux 6.13+), which adds no kernel mapping, or from `mprotect` on older
//! kernels. The header holds the two saved contexts and what an overflow report needs.

pub(crate) mod boot;
pub(crate) mod limits;
pub(crate) mod overflow;
pub(crate) mod pool;
pub(crate) mod reserve;

use crate::context::switch::Link;
use std::io;
use std::ptr::NonNull;
use std::sync::OnceLock;

#[doc(hidden)]
pub use crate::context::birth::{birth_counts, births_by_trick_only};
pub use pool::{PoolStats, release_idle_memory, thread_stats};
pub use reserve::guards_are_lightweight;

/// The default stack size: 256 KiB of address space per coroutine, of which only the pages a
/// coroutine touches are ever committed. Deep recursion or large arrays on the stack need more
/// (set it per coroutine with `stack_size`).
pub const DEFAULT_STACK_SIZE: usize = 256 * 1024;

/// The largest stack size accepted: 1 GiB, Go's limit too. Anything larger is almost certainly
/// a unit mistake, and a million of them would not fit in the address space.
pub const MAX_STACK_SIZE: usize = 1 << 30;

/// Bytes kept for the [`Header`] at the top of every stack.
pub(crate) const HEADER_SIZE: usize = 128;

/// How many bytes of a coroutine name the header keeps for overflow reports.
const NAME_CAP: usize = 63;

/// The top of every stack: the saved contexts and what an overflow report prints.
///
/// The fields are plain words: the owning thread writes them, and the only other reader is the
/// overflow handler running on that same thread.
#[repr(C, align(64))]
pub(crate) struct Header {
    /// The saved contexts of the coroutine side and of its resumer. First: the trampoline
    /// finds it at the Header's address.
    pub link: Link,
    /// Bytes of the whole slot, guard page included.
    pub stride: usize,
    /// Usable bytes, as the user asked for them (rounded up to pages).
    pub size: usize,
    /// The id of the coroutine running on this stack, for overflow reports.
    pub id: u64,
    name_len: u8,
    name: [u8; NAME_CAP],
    /// Whether the coroutine's resumer was unwinding (`std::thread::panicking`) when it
    /// resumed the coroutine last: a suspend while panicking hands that state back to it, which
    /// is right only then. Written by the resumer, read by the coroutine, on one thread.
    pub resumer_panicking: std::cell::Cell<bool>,
    /// Whether this stack's context is a clone of the trick's (`context::birth`), not born by
    /// the trick itself: for the tests' controls only.
    pub born_by_clone: bool,
}

const _: () = assert!(std::mem::size_of::<Header>() == HEADER_SIZE);

impl Header {
    /// A header for a fresh slot of `stride` bytes, before its context is born.
    pub(crate) fn new(stride: usize) -> Header {
        Header {
            link: Link::default(),
            stride,
            size: stride - page_size() - HEADER_SIZE,
            id: 0,
            name_len: 0,
            name: [0; NAME_CAP],
            resumer_panicking: std::cell::Cell::new(false),
            born_by_clone: false,
        }
    }

    /// Records who runs on this stack and the stack size they asked for, for overflow reports;
    /// long names are cut at a character boundary.
    pub(crate) fn set_owner(&mut self, id: u64, name: Option<&str>, size: usize) {
        self.id = id;
        self.size = size;
        let name = name.unwrap_or("");
        let mut len = name.len().min(NAME_CAP);
        while !name.is_char_boundary(len) {
            len -= 1;
        }
        self.name[..len].copy_from_slice(&name.as_bytes()[..len]);
        self.name_len = len as u8;
    }

    /// The recorded name, as bytes (empty when unnamed).
    pub(crate) fn name_bytes(&self) -> &[u8] {
        &self.name[..self.name_len as usize]
    }
}

/// An owned stack whose context has been born (by the signal-stack trick, or cloned from the
/// context the trick left on another stack) and now waits in the trampoline loop for a job. It moves between threads freely while idle: the trampoline loop
/// holds no thread-local state.
pub(crate) struct Stack {
    header: NonNull<Header>,
}

// SAFETY: an idle stack is plain memory plus a context parked in the trampoline loop, which
// touches no thread-local state; whoever runs a job on it does so on one thread at a time.
unsafe impl Send for Stack {}

impl Stack {
    /// # Safety
    ///
    /// `header` must be the header of a booted stack slot that nobody else owns.
    pub(crate) unsafe fn from_header(header: NonNull<Header>) -> Stack {
        Stack { header }
    }

    /// The header at the top of this stack.
    pub(crate) fn header(&self) -> *mut Header {
        self.header.as_ptr()
    }

    /// The link of this stack's context pair.
    pub(crate) fn link(&self) -> *mut Link {
        // SAFETY: the header of an owned stack stays mapped; we only form a pointer.
        unsafe { &raw mut (*self.header()).link }
    }

    /// Gives up ownership, returning the header address.
    pub(crate) fn into_header(self) -> NonNull<Header> {
        self.header
    }

    /// Bytes of the whole slot, guard included: the key pools are sorted by.
    pub(crate) fn stride(&self) -> usize {
        // SAFETY: we own a booted stack, whose header was written before boot and stays mapped.
        unsafe { (*self.header()).stride }
    }
}

/// The page size: 4 KiB, fixed on x86_64 Linux, the one target (a unit test checks it against
/// `sysconf`). A constant, so rounding to pages costs a mask, not a division.
pub(crate) const fn page_size() -> usize {
    4096
}

/// The smallest stack accepted: the kernel's signal frame for this CPU
/// (`getauxval(AT_MINSIGSTKSZ)`, which grows with AVX-512 and AMX state) plus 8 KiB for the
/// handler and the code it interrupts, at least 16 KiB. Every new stack receives a signal frame
/// when it is born, and a preemption signal may land on it later.
pub fn min_stack_size() -> usize {
    static MIN: OnceLock<usize> = OnceLock::new();
    *MIN.get_or_init(|| {
        // SAFETY: getauxval has no preconditions; it returns 0 for an unknown type.
        let frame = unsafe { libc::getauxval(libc::AT_MINSIGSTKSZ) } as usize;
        let frame = if frame == 0 { libc::MINSIGSTKSZ } else { frame };
        round_to_page(frame + 8 * 1024).max(16 * 1024)
    })
}

fn round_to_page(n: usize) -> usize {
    let page = page_size();
    n.div_ceil(page) * page
}

/// Checks a requested stack size and rounds it up to whole pages.
pub(crate) fn validate_size(size: usize) -> io::Result<usize> {
    let min = min_stack_size();
    if size < min {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "stack size {size} bytes is too small: a stack must hold the kernel's signal frame \
                 for this CPU (AT_MINSIGSTKSZ) plus headroom, at least {min} bytes here"
            ),
        ));
    }
    if size > MAX_STACK_SIZE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "stack size {size} bytes is larger than the limit of {MAX_STACK_SIZE} bytes (1 GiB); \
                 stacks are committed lazily, so a few hundred KiB is plenty for most coroutines"
            ),
        ));
    }
    Ok(round_to_page(size))
}

/// The slot stride for a validated usable size: guard page, stack, header.
pub(crate) fn stride_for(size: usize) -> usize {
    page_size() + round_to_page(size + HEADER_SIZE)
}

/// The tests' control only: stops reporting overflows that the kernel signals as a failed
/// signal-frame push (SIGSEGV with `SI_KERNEL` and no address), so a test can show that such
/// overflows would otherwise die as a bare "Segmentation fault". Not part of the API.
#[doc(hidden)]
pub fn disable_frame_push_reports_for_tests() {
    overflow::FRAME_PUSH_REPORTS_OFF.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// The tests' control for returned reservations: switches returning idle reservations off,
/// as before they were returned, so a test can show that many stack sizes then exhaust the
/// table. Process-wide; not part of the API.
#[doc(hidden)]
pub fn keep_stack_reservations_for_tests() {
    reserve::RECLAIM_OFF.store(true, std::sync::atomic::Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_page_size_is_the_kernels() {
        // SAFETY: sysconf has no preconditions.
        let kernel = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        assert_eq!(super::page_size(), kernel);
    }
}
