//! Process-wide stack reservations: large anonymous mappings carved into equal slots.
//!
//! A guard made with `mprotect` splits a mapping in two, and `vm.max_map_count` (65530 by
//! default) then caps a process near 32,700 stacks. Here each reservation holds many slots and
//! each slot's guard page is installed with `madvise(MADV_GUARD_INSTALL)` (Linux 6.13+), which
//! creates no new mapping, so a million guarded stacks need a few hundred mappings. On older
//! kernels the guard falls back to `mprotect`.
//!
//! Reservations are never unmapped: the overflow handler must be able to read the table of
//! them from a signal handler at any time, and unused slots cost address space only. Idle
//! booted stacks that threads give back wait here for other threads.
//!
//! The chunk table is a fixed array of atomics appended under the lock and read without it,
//! which is what an async-signal-safe reader needs.

use super::{HEADER_SIZE, Header, Stack, page_size};
use memmap2::{MmapMut, MmapOptions};
use std::io;
use std::mem::ManuallyDrop;
use std::ptr::NonNull;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};

/// `madvise` advice that installs guard pages without splitting the mapping (Linux 6.13+).
const MADV_GUARD_INSTALL: libc::c_int = 102;

/// Most reservations the process may make. With reservations growing to 1 GiB each this is
/// terabytes of stacks; the table lives in zero pages until used.
const MAX_CHUNKS: usize = 8192;
/// Slots in the first reservation of a size; each next one doubles, up to [`MAX_CHUNK_BYTES`].
const FIRST_CHUNK_SLOTS: usize = 16;
const MAX_CHUNK_BYTES: usize = 1 << 30;

struct ChunkEntry {
    base: AtomicUsize,
    len: AtomicUsize,
    stride: AtomicUsize,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY_CHUNK: ChunkEntry = ChunkEntry {
    base: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    stride: AtomicUsize::new(0),
};
static CHUNKS: [ChunkEntry; MAX_CHUNKS] = [EMPTY_CHUNK; MAX_CHUNKS];
static CHUNK_COUNT: AtomicUsize = AtomicUsize::new(0);

/// Per slot size: where the next fresh slot comes from, and booted stacks waiting for a thread.
struct SizeClass {
    stride: usize,
    bump_next: usize,
    bump_end: usize,
    next_chunk_slots: usize,
    idle: Vec<NonNull<Header>>,
}

struct Reserve {
    classes: Vec<SizeClass>,
    maps: Vec<MmapMut>,
}

// SAFETY: the header pointers in `idle` are owned stacks waiting for a thread; the mutex
// serialises every access to them.
unsafe impl Send for Reserve {}

static RESERVE: Mutex<Reserve> = Mutex::new(Reserve {
    classes: Vec::new(),
    maps: Vec::new(),
});

fn lock() -> std::sync::MutexGuard<'static, Reserve> {
    RESERVE.lock().unwrap_or_else(|e| e.into_inner())
}

impl Reserve {
    fn class(&mut self, stride: usize) -> &mut SizeClass {
        let i = match self.classes.iter().position(|c| c.stride == stride) {
            Some(i) => i,
            None => {
                self.classes.push(SizeClass {
                    stride,
                    bump_next: 0,
                    bump_end: 0,
                    next_chunk_slots: (MAX_CHUNK_BYTES / stride).clamp(1, FIRST_CHUNK_SLOTS),
                    idle: Vec::new(),
                });
                self.classes.len() - 1
            }
        };
        &mut self.classes[i]
    }
}

/// Moves up to `max` booted idle stacks of `stride` into `out`; returns how many.
pub(crate) fn take_idle(stride: usize, max: usize, out: &mut Vec<Stack>) -> usize {
    let mut r = lock();
    let class = r.class(stride);
    let n = max.min(class.idle.len());
    let from = class.idle.len() - n;
    // SAFETY: every header in `idle` is a booted stack given back by its owner.
    out.extend(class.idle.drain(from..).map(|h| unsafe { Stack::from_header(h) }));
    n
}

/// Idle stacks of one size the process keeps with their pages committed; past that, the pages
/// of every further stack given back are returned to the kernel (its top page stays).
const WARM_IDLE: usize = 1 << 17;

/// Returns the cold pages of every idle stack the process holds.
pub(crate) fn release_all_idle() {
    let r = lock();
    for class in &r.classes {
        for &h in &class.idle {
            // SAFETY: every header in `idle` is an owned idle stack; we borrow it briefly.
            let stack = ManuallyDrop::new(unsafe { Stack::from_header(h) });
            release_cold_pages(&stack);
        }
    }
}

/// Takes back booted idle stacks.
pub(crate) fn give_idle(stacks: impl IntoIterator<Item = Stack>) {
    let mut r = lock();
    for stack in stacks {
        let stride = stack.stride();
        let class = r.class(stride);
        if class.idle.len() >= WARM_IDLE {
            release_cold_pages(&stack);
        }
        class.idle.push(stack.into_header());
    }
}

/// Returns the pages of an idle stack below its saved context to the kernel. Failure only
/// means the memory stays committed, so it is ignored.
pub(crate) fn release_cold_pages(stack: &Stack) {
    let page = page_size();
    // SAFETY: the header of an owned idle stack is mapped; `ctx` is its saved stack pointer.
    let live_page = unsafe { (*stack.header()).link.ctx } & !(page - 1);
    let low = slot_base(stack.header() as usize, stack.stride()) + page;
    if live_page > low {
        // SAFETY: [low, live_page) is inside this idle stack's slot, which we own, and lies
        // wholly below the page holding its saved context: no live frame is there. (The idle
        // context waits in the last coroutine's entry, whose frame may span several pages.)
        unsafe { libc::madvise(low as *mut libc::c_void, live_page - low, libc::MADV_DONTNEED) };
    }
}

/// The start of the slot whose header is at `header`.
pub(crate) fn slot_base(header: usize, stride: usize) -> usize {
    header + HEADER_SIZE - stride
}

/// Carves `n` fresh slots of `stride` bytes, with their guard pages installed. Returns the slot
/// bases; the caller boots them.
pub(crate) fn carve(stride: usize, n: usize) -> io::Result<Vec<usize>> {
    let mut r = lock();
    let mut slots = Vec::with_capacity(n);
    while slots.len() < n {
        let class = r.class(stride);
        if class.bump_next == class.bump_end {
            let slots_in_chunk = class.next_chunk_slots;
            let grown = (slots_in_chunk * 2).min((MAX_CHUNK_BYTES / stride).max(1));
            class.next_chunk_slots = grown.max(slots_in_chunk);
            let map = new_chunk(stride, slots_in_chunk)?;
            let base = map.as_ptr() as usize;
            let class = r.class(stride);
            class.bump_next = base;
            class.bump_end = base + stride * slots_in_chunk;
            r.maps.push(map);
        }
        let class = r.class(stride);
        let base = class.bump_next;
        class.bump_next += stride;
        slots.push(base);
    }
    install_guards(&slots)?;
    Ok(slots)
}

fn new_chunk(stride: usize, slots: usize) -> io::Result<MmapMut> {
    let len = stride * slots;
    if CHUNK_COUNT.load(Ordering::Relaxed) == MAX_CHUNKS {
        return Err(io::Error::new(
            io::ErrorKind::OutOfMemory,
            format!("sigcoro has made {MAX_CHUNKS} stack reservations, its limit; use fewer or smaller stacks"),
        ));
    }
    let map = MmapOptions::new()
        .len(len)
        .stack()
        .no_reserve_swap()
        .map_anon()
        .map_err(|e| limit_error(&format!("reserving {len} bytes for {slots} coroutine stacks"), e))?;
    // Transparent huge pages would commit 2 MiB where a coroutine touches 4 KiB.
    // SAFETY: the range is exactly the mapping just made.
    unsafe { libc::madvise(map.as_ptr() as *mut libc::c_void, len, libc::MADV_NOHUGEPAGE) };
    let i = CHUNK_COUNT.load(Ordering::Relaxed);
    CHUNKS[i].base.store(map.as_ptr() as usize, Ordering::Relaxed);
    CHUNKS[i].len.store(len, Ordering::Relaxed);
    CHUNKS[i].stride.store(stride, Ordering::Relaxed);
    CHUNK_COUNT.store(i + 1, Ordering::Release);
    Ok(map)
}

/// 0: not tried yet, 1: `MADV_GUARD_INSTALL` works, 2: fall back to `mprotect`.
static GUARD_MODE: AtomicU8 = AtomicU8::new(0);

/// Makes the page at `base` a guard: any access faults with SIGSEGV.
pub(crate) fn install_guard(base: usize) -> io::Result<()> {
    let page = page_size();
    let addr = base as *mut libc::c_void;
    if GUARD_MODE.load(Ordering::Relaxed) != 2 {
        // SAFETY: `base` is the first page of a slot we own in a private anonymous mapping.
        if unsafe { libc::madvise(addr, page, MADV_GUARD_INSTALL) } == 0 {
            GUARD_MODE.store(1, Ordering::Relaxed);
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if GUARD_MODE.load(Ordering::Relaxed) == 1 || err.raw_os_error() != Some(libc::EINVAL) {
            return Err(limit_error("installing a stack guard page", err));
        }
        GUARD_MODE.store(2, Ordering::Relaxed);
    }
    // SAFETY: as above; PROT_NONE on our own page.
    if unsafe { libc::mprotect(addr, page, libc::PROT_NONE) } != 0 {
        return Err(limit_error(
            "protecting a stack guard page (mprotect: this kernel lacks MADV_GUARD_INSTALL, so each stack costs two mappings)",
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// `process_madvise`'s pidfd meaning the caller's own process (`PIDFD_SELF_THREAD`, Linux
/// 6.15+): no descriptor to open, and a forked child cannot reach its parent through it.
const PIDFD_SELF_THREAD: libc::c_int = -10000;
/// Most ranges one `process_madvise` takes (`UIO_MAXIOV`).
const MAX_IOV: usize = 1024;
/// Cleared when `process_madvise` on ourselves is refused (older kernels): one by one then.
static GUARD_BATCHES: AtomicBool = AtomicBool::new(true);

/// Makes the first page of each slot in `slots` a guard: with one `process_madvise` per
/// [`MAX_IOV`] slots once `MADV_GUARD_INSTALL` is known to work (a system call per stack is
/// about half the cost of a cloned birth), else one by one with [`install_guard`].
pub(crate) fn install_guards(slots: &[usize]) -> io::Result<()> {
    let page = page_size();
    let mut rest = slots;
    while !rest.is_empty() && GUARD_MODE.load(Ordering::Relaxed) == 1 && GUARD_BATCHES.load(Ordering::Relaxed) {
        let n = rest.len().min(MAX_IOV);
        let iov: Vec<libc::iovec> = rest[..n]
            .iter()
            .map(|&base| libc::iovec {
                iov_base: base as *mut libc::c_void,
                iov_len: page,
            })
            .collect();
        // SAFETY: each range is the first page of a slot we own in a private anonymous
        // mapping, as for `install_guard`; the kernel reads `n` iovecs from our vector.
        let done = unsafe {
            libc::syscall(
                libc::SYS_process_madvise,
                PIDFD_SELF_THREAD,
                iov.as_ptr(),
                n,
                MADV_GUARD_INSTALL,
                0,
            )
        };
        if done < 0 {
            // Out of memory or mappings: the slot-by-slot path reports it. Anything else means
            // this kernel does not take the call (before 6.15), so never again.
            let errno = io::Error::last_os_error().raw_os_error();
            if !matches!(errno, Some(libc::ENOMEM | libc::EAGAIN)) {
                GUARD_BATCHES.store(false, Ordering::Relaxed);
            }
            break;
        }
        let done = (done as usize / page).min(n);
        if done == 0 {
            break; // no progress: let the slot-by-slot path say why
        }
        rest = &rest[done..];
    }
    rest.iter().try_for_each(|&base| install_guard(base))
}

/// Whether guard pages come from `MADV_GUARD_INSTALL` (true) or `mprotect` (false); `None`
/// before the first stack is made.
pub fn guards_are_lightweight() -> Option<bool> {
    match GUARD_MODE.load(Ordering::Relaxed) {
        1 => Some(true),
        2 => Some(false),
        _ => None,
    }
}

/// Wraps a failed mmap/madvise/mprotect in an error that names the limits a user can raise.
pub(crate) fn limit_error(what: &str, err: io::Error) -> io::Error {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "?".into())
    };
    let maps = std::fs::read_to_string("/proc/self/maps")
        .map(|s| s.lines().count().to_string())
        .unwrap_or_else(|_| "?".into());
    io::Error::new(
        err.kind(),
        format!(
            "{what} failed: {err}. The process has {maps} memory mappings against vm.max_map_count = {}, \
             and vm.overcommit_memory = {}. Ways out: raise vm.max_map_count (sysctl -w vm.max_map_count=N), \
             use smaller stacks, free memory, or run fewer coroutines at once",
            read("/proc/sys/vm/max_map_count"),
            read("/proc/sys/vm/overcommit_memory"),
        ),
    )
}

/// If `addr` lies in the guard page of one of our stack slots, returns that slot's header.
///
/// Async-signal-safe: atomics and arithmetic only.
pub(crate) fn guard_hit(addr: usize) -> Option<*const Header> {
    let page = page_size_for_signal();
    let n = CHUNK_COUNT.load(Ordering::Acquire);
    for chunk in &CHUNKS[..n] {
        let base = chunk.base.load(Ordering::Relaxed);
        let len = chunk.len.load(Ordering::Relaxed);
        if addr < base || addr >= base + len {
            continue;
        }
        let stride = chunk.stride.load(Ordering::Relaxed);
        let slot = base + (addr - base) / stride * stride;
        return (addr - slot < page).then_some((slot + stride - HEADER_SIZE) as *const Header);
    }
    None
}

/// The page size without `OnceLock` initialisation (which could lock) from a signal handler.
fn page_size_for_signal() -> usize {
    // SAFETY: sysconf(_SC_PAGESIZE) reads a value glibc cached at startup; it does not lock.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}
