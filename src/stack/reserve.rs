//! Process-wide stack reservations: large anonymous mappings carved into equal slots.
//!
//! A guard made with `mprotect` splits a mapping in two, and `vm.max_map_count` (65530 by
//! default) then caps a process near 32,700 stacks. Here each reservation holds many slots and
//! each slot's guard page is installed with `madvise(MADV_GUARD_INSTALL)` (Linux 6.13+), which
//! creates no new mapping, so a million guarded stacks need a few hundred mappings. On older
//! kernels the guard falls back to `mprotect`. Idle booted stacks that threads give back wait
//! here for other threads.
//!
//! A reservation whose every carved slot waits here idle (no coroutine, no thread's pool holds
//! one of its stacks) is returned to the kernel when a new one is needed and the table of them
//! is full, or when the kernel refuses a new mapping: a process that went through many stack
//! sizes keeps working. Its idle stacks are forgotten (their parked contexts own nothing).
//!
//! The overflow handler reads the table of reservations from a signal handler at any time, so
//! the table is a fixed array of entries written under the lock and read without it: each entry
//! is a seqlock (a sequence number, odd while the entry changes, around plain atomic words).
//! An entry is cleared before its mapping is unmapped, and a reader skips an entry that
//! changed under it. That is sound because the only entries that ever change are those of a
//! reservation being made (none of its stacks exists yet) or being returned (none of its
//! stacks is alive), and a fault the handler must report comes from a live stack: the handler
//! reports only a fault whose thread's stack pointer lies in the same reservation, so the
//! header it then reads cannot be unmapped under it. A returned reservation's idle stacks are
//! dropped from the reserve under the same lock, so none is handed out or looked up again.

use super::limits::limit_error;
use super::{HEADER_SIZE, Header, Stack, page_size};
use memmap2::{MmapMut, MmapOptions};
use std::collections::{HashMap, HashSet};
use std::io;
use std::mem::ManuallyDrop;
use std::ptr::NonNull;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering, fence};

/// `madvise` advice that installs guard pages without splitting the mapping (Linux 6.13+).
const MADV_GUARD_INSTALL: libc::c_int = 102;

/// Most reservations the process may hold at once. With reservations growing to 1 GiB each
/// this is terabytes of stacks; the table lives in zero pages until used.
const MAX_CHUNKS: usize = 8192;
/// Slots in the first reservation of a size; each next one doubles, up to [`MAX_CHUNK_BYTES`].
const FIRST_CHUNK_SLOTS: usize = 16;
const MAX_CHUNK_BYTES: usize = 1 << 30;

/// One reservation as the overflow handler sees it; `len == 0` marks a free entry.
struct ChunkEntry {
    /// Even while the entry is stable, odd while it is written.
    seq: AtomicUsize,
    base: AtomicUsize,
    len: AtomicUsize,
    stride: AtomicUsize,
}

impl ChunkEntry {
    /// Writes the entry (the caller holds the reserve's lock, the one writer).
    fn write(&self, base: usize, len: usize, stride: usize) {
        let seq = self.seq.load(Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        self.base.store(base, Ordering::Relaxed);
        self.len.store(len, Ordering::Relaxed);
        self.stride.store(stride, Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(2), Ordering::Release);
    }

    /// `(base, len, stride)` of a used entry, or `None` for a free entry or one that changed
    /// while read (see the module docs for why skipping it is right). Async-signal-safe.
    fn read(&self) -> Option<(usize, usize, usize)> {
        let before = self.seq.load(Ordering::Acquire);
        if before & 1 == 1 {
            return None;
        }
        let base = self.base.load(Ordering::Relaxed);
        let len = self.len.load(Ordering::Relaxed);
        let stride = self.stride.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        (self.seq.load(Ordering::Relaxed) == before && len != 0 && stride != 0).then_some((base, len, stride))
    }
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY_CHUNK: ChunkEntry = ChunkEntry {
    seq: AtomicUsize::new(0),
    base: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    stride: AtomicUsize::new(0),
};
static CHUNKS: [ChunkEntry; MAX_CHUNKS] = [EMPTY_CHUNK; MAX_CHUNKS];
/// Entries ever used: readers look at `CHUNKS[..CHUNKS_USED]`, free ones included.
static CHUNKS_USED: AtomicUsize = AtomicUsize::new(0);

/// Set by [`super::keep_stack_reservations_for_tests`]: reservations are never returned.
pub(crate) static RECLAIM_OFF: AtomicBool = AtomicBool::new(false);

/// A reservation the process holds: its mapping and its entry in [`CHUNKS`].
struct Chunk {
    map: MmapMut,
    stride: usize,
    slots: usize,
    entry: usize,
}

impl Chunk {
    fn contains(&self, addr: usize) -> bool {
        let base = self.map.as_ptr() as usize;
        addr >= base && addr < base + self.map.len()
    }
}

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
    chunks: Vec<Chunk>,
    /// Entries of [`CHUNKS`] freed by returned reservations, to use again.
    free_entries: Vec<usize>,
}

// SAFETY: the header pointers in `idle` are owned stacks waiting for a thread; the mutex
// serialises every access to them.
unsafe impl Send for Reserve {}

static RESERVE: Mutex<Reserve> = Mutex::new(Reserve {
    classes: Vec::new(),
    chunks: Vec::new(),
    free_entries: Vec::new(),
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

/// Carves up to `n` fresh slots of `stride` bytes, with their guard pages installed. Returns
/// the slot bases (at least one, or the error); the caller boots them.
pub(crate) fn carve(stride: usize, n: usize) -> io::Result<Vec<usize>> {
    let mut r = lock();
    let mut slots = Vec::with_capacity(n);
    while slots.len() < n {
        match r.carve_one(stride) {
            Ok(base) => slots.push(base),
            // The slots carved so far are good: boot those rather than strand them.
            Err(_) if !slots.is_empty() => break,
            Err(e) => return Err(e),
        }
    }
    // (Should this fail, the slots stay carved and unused: their reservation is never
    // returned. It fails only when the kernel is out of memory or mappings.)
    install_guards(&slots)?;
    Ok(slots)
}

impl Reserve {
    fn carve_one(&mut self, stride: usize) -> io::Result<usize> {
        let class = self.class(stride);
        if class.bump_next == class.bump_end {
            let slots = class.next_chunk_slots;
            let grown = (slots * 2).min((MAX_CHUNK_BYTES / stride).max(1)).max(slots);
            let (base, slots) = self.new_chunk(stride, slots)?;
            // Making the chunk may have returned others, and this class with them: look again.
            let class = self.class(stride);
            class.next_chunk_slots = grown;
            class.bump_next = base;
            class.bump_end = base + stride * slots;
        }
        // Its guard page comes with the batch's (`install_guards`).
        let class = self.class(stride);
        let base = class.bump_next;
        class.bump_next += stride;
        Ok(base)
    }

    /// Maps a reservation of up to `slots` slots of `stride` bytes and enters it in the table;
    /// returns its base and its slots. When the kernel refuses the mapping for want of memory
    /// (or address space, or mappings), returns idle reservations first, then asks for fewer
    /// slots, down to one. Returns idle reservations first when the table is full, too.
    fn new_chunk(&mut self, stride: usize, mut slots: usize) -> io::Result<(usize, usize)> {
        let map = loop {
            let len = stride * slots;
            match map_chunk(len) {
                Ok(map) => break map,
                Err(e) if e.raw_os_error() == Some(libc::ENOMEM) && self.reclaim() > 0 => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOMEM) && slots > 1 => slots /= 2,
                Err(e) => {
                    let what = format!("reserving {len} bytes for {slots} coroutine stacks");
                    return Err(limit_error(&what, len, e));
                }
            }
        };
        let len = stride * slots;
        let entry = match self.take_entry() {
            Some(entry) => entry,
            None if self.reclaim() > 0 => self.take_entry().expect("a returned reservation freed its entry"),
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::OutOfMemory,
                    format!(
                        "sigcoro holds {MAX_CHUNKS} stack reservations, its limit, and each has a \
                         stack in use (by a coroutine, or idle in a thread's pool); use fewer or \
                         smaller stacks, or fewer distinct stack sizes at once"
                    ),
                ));
            }
        };
        let base = map.as_ptr() as usize;
        CHUNKS[entry].write(base, len, stride);
        if entry == CHUNKS_USED.load(Ordering::Relaxed) {
            CHUNKS_USED.store(entry + 1, Ordering::Release);
        }
        self.chunks.push(Chunk {
            map,
            stride,
            slots,
            entry,
        });
        Ok((base, slots))
    }

    fn take_entry(&mut self) -> Option<usize> {
        self.free_entries.pop().or_else(|| {
            let used = CHUNKS_USED.load(Ordering::Relaxed);
            (used < MAX_CHUNKS).then_some(used)
        })
    }

    /// Returns to the kernel every reservation all of whose carved slots wait here idle: their
    /// stacks are forgotten, their table entries cleared (before the unmapping) and freed.
    /// Returns how many went.
    fn reclaim(&mut self) -> usize {
        if RECLAIM_OFF.load(Ordering::Relaxed) {
            return 0;
        }
        let Reserve {
            classes,
            chunks,
            free_entries,
        } = self;
        let mut by_stride: HashMap<usize, Vec<usize>> = HashMap::new();
        for (i, chunk) in chunks.iter().enumerate() {
            by_stride.entry(chunk.stride).or_default().push(i);
        }
        let mut retired = vec![false; chunks.len()];
        for class in classes.iter_mut() {
            let Some(mine) = by_stride.get(&class.stride) else {
                continue;
            };
            let mut idle = vec![0usize; mine.len()];
            for h in &class.idle {
                if let Some(k) = mine.iter().position(|&i| chunks[i].contains(h.as_ptr() as usize)) {
                    idle[k] += 1;
                }
            }
            let mut any = false;
            for (k, &i) in mine.iter().enumerate() {
                let chunk = &chunks[i];
                let (base, end) = (
                    chunk.map.as_ptr() as usize,
                    chunk.map.as_ptr() as usize + chunk.map.len(),
                );
                let current = class.bump_end == end;
                let carved = if current {
                    (class.bump_next - base) / chunk.stride
                } else {
                    chunk.slots
                };
                if idle[k] == carved {
                    retired[i] = true;
                    any = true;
                    if current {
                        class.bump_next = 0;
                        class.bump_end = 0;
                    }
                }
            }
            if any {
                class.idle.retain(|h| {
                    let addr = h.as_ptr() as usize;
                    !mine.iter().any(|&i| retired[i] && chunks[i].contains(addr))
                });
            }
        }
        let mut gone = 0;
        for (chunk, retire) in std::mem::take(chunks).into_iter().zip(retired) {
            if retire {
                // Cleared first: the fault handler never sees an entry for unmapped memory.
                CHUNKS[chunk.entry].write(0, 0, 0);
                free_entries.push(chunk.entry);
                drop(chunk.map);
                gone += 1;
            } else {
                chunks.push(chunk);
            }
        }
        let mapped: HashSet<usize> = chunks.iter().map(|c| c.stride).collect();
        classes.retain(|c| !c.idle.is_empty() || mapped.contains(&c.stride));
        gone
    }
}

fn map_chunk(len: usize) -> io::Result<MmapMut> {
    let map = MmapOptions::new().len(len).stack().no_reserve_swap().map_anon()?;
    // Transparent huge pages would commit 2 MiB where a coroutine touches 4 KiB.
    // SAFETY: the range is exactly the mapping just made.
    unsafe { libc::madvise(map.as_ptr() as *mut libc::c_void, len, libc::MADV_NOHUGEPAGE) };
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
            return Err(limit_error("installing a stack guard page", 0, err));
        }
        GUARD_MODE.store(2, Ordering::Relaxed);
    }
    // SAFETY: as above; PROT_NONE on our own page.
    if unsafe { libc::mprotect(addr, page, libc::PROT_NONE) } != 0 {
        return Err(limit_error(
            "protecting a stack guard page (mprotect: this kernel lacks MADV_GUARD_INSTALL, so each stack costs two mappings)",
            0,
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

/// If `addr` lies in the guard page of one of our stack slots and `sp`, the stack pointer of
/// the thread that faulted, lies in the same reservation, returns that slot's header.
///
/// Async-signal-safe: atomics and arithmetic only. The header is then safe to read: the thread
/// runs on a stack of that reservation (a stack pointer elsewhere in it would already be
/// undefined behaviour), so not every carved slot of it is idle in the reserve, and a
/// reservation is returned only when every one is. Without the `sp` test, a stray access to the
/// guard of an idle stack could find an entry whose reservation another thread is returning.
pub(crate) fn guard_hit(addr: usize, sp: usize) -> Option<*const Header> {
    let page = page_size_for_signal();
    let n = CHUNKS_USED.load(Ordering::Acquire);
    for chunk in &CHUNKS[..n] {
        let Some((base, len, stride)) = chunk.read() else {
            continue;
        };
        if addr < base || addr >= base + len {
            continue;
        }
        if sp < base || sp >= base + len {
            return None;
        }
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
