//! The slab of task records: records come from chunks of [`CHUNK`] bytes mapped at once, not
//! from the heap one by one.
//!
//! A storm of spawns on a fresh runtime needs a fresh record per spawn (the part of a task its
//! hot paths do not touch, about 120 bytes). From the heap of a worker thread that cost one
//! page fault per 4 KiB, plus (glibc) one `mprotect` per page as the thread's arena grows. A
//! chunk here is aligned to a huge page and marked `MADV_HUGEPAGE`, so where transparent huge
//! pages are enabled (`always` or `madvise`) its first touch faults in the whole 2 MiB at once,
//! about seventeen thousand records, and no further call is made until it is used up.
//!
//! Each thread keeps up to `2 * BATCH` free records of its own and trades them with the shared
//! chunks [`BATCH`] at a time under a lock. A chunk counts the records out of it (in tasks, or
//! in a thread's list); [`release_idle`] unmaps the chunks with none out.

use crate::sched::task::Record;
use std::cell::UnsafeCell;
use std::io;
use std::ptr::NonNull;
use std::sync::{Mutex, MutexGuard};

/// Bytes of a chunk, and its alignment: one huge page.
const CHUNK: usize = 2 << 20;
/// Bytes of one record in a chunk.
const SIZE: usize = size_of::<Record>();
/// Records in one chunk.
const PER_CHUNK: usize = CHUNK / SIZE;
/// Records a thread takes from the chunks, or gives back to them, in one go.
const BATCH: usize = 64;

const _: () = assert!(align_of::<Record>() <= 64 && PER_CHUNK >= BATCH);

/// One mapped chunk.
struct Chunk {
    /// Its address, a multiple of [`CHUNK`].
    base: usize,
    /// Records carved from its start so far; the rest was never touched.
    carved: usize,
    /// Records out of it: in tasks, or in a thread's list.
    out: usize,
    /// Addresses of records given back, taken again before any is carved.
    free: Vec<usize>,
}

impl Chunk {
    fn has_room(&self) -> bool {
        !self.free.is_empty() || self.carved < PER_CHUNK
    }
}

/// The chunks, by address.
struct Chunks {
    chunks: Vec<Chunk>,
    /// Every chunk before this one has no room.
    first_room: usize,
}

static CHUNKS: Mutex<Chunks> = Mutex::new(Chunks {
    chunks: Vec::new(),
    first_room: 0,
});

fn chunks() -> MutexGuard<'static, Chunks> {
    // Nothing panics with the lock held but a bug; the list stays consistent regardless.
    CHUNKS.lock().unwrap_or_else(|e| e.into_inner())
}

impl Chunks {
    /// Moves up to `n` records into `out`, mapping a chunk when none has room. Fails only when
    /// it got none.
    fn take(&mut self, out: &mut Vec<NonNull<Record>>, n: usize) -> io::Result<()> {
        let (start, want) = (out.len(), out.len() + n);
        while out.len() < want {
            let found = (self.first_room..self.chunks.len()).find(|&i| self.chunks[i].has_room());
            let i = match found {
                Some(i) => i,
                None => match self.map_chunk() {
                    Ok(i) => i,
                    Err(_) if out.len() > start => return Ok(()),
                    Err(e) => return Err(e),
                },
            };
            self.first_room = i;
            let c = &mut self.chunks[i];
            while out.len() < want
                && let Some(addr) = c.free.pop()
            {
                out.push(record_at(addr));
                c.out += 1;
            }
            let carve = (want - out.len()).min(PER_CHUNK - c.carved);
            // Highest first, so that popping them touches the chunk upwards.
            out.extend((c.carved..c.carved + carve).rev().map(|j| record_at(c.base + j * SIZE)));
            c.carved += carve;
            c.out += carve;
        }
        Ok(())
    }

    /// Takes back records that came out of the chunks.
    fn give(&mut self, records: impl IntoIterator<Item = NonNull<Record>>) {
        for rec in records {
            let addr = rec.as_ptr() as usize;
            let base = addr & !(CHUNK - 1);
            let i = self
                .chunks
                .binary_search_by_key(&base, |c| c.base)
                .expect("a task record comes from a chunk of the slab");
            let c = &mut self.chunks[i];
            c.free.push(addr);
            c.out -= 1;
            self.first_room = self.first_room.min(i);
        }
    }

    /// Maps a new chunk and enters it in order; returns its index.
    fn map_chunk(&mut self) -> io::Result<usize> {
        let base = map_aligned()?;
        let i = self.chunks.partition_point(|c| c.base < base);
        self.chunks.insert(
            i,
            Chunk {
                base,
                carved: 0,
                out: 0,
                free: Vec::new(),
            },
        );
        if self.first_room >= i {
            self.first_room = i;
        }
        Ok(i)
    }
}

fn record_at(addr: usize) -> NonNull<Record> {
    NonNull::new(addr as *mut Record).expect("a chunk is never at address 0")
}

/// Maps [`CHUNK`] bytes aligned to [`CHUNK`], and asks for huge pages on them.
fn map_aligned() -> io::Result<usize> {
    let len = 2 * CHUNK;
    // SAFETY: a fresh private anonymous mapping at an address of the kernel's choosing.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        let e = io::Error::last_os_error();
        return Err(crate::stack::limits::limit_error(
            &format!("mapping {len} bytes for task records"),
            len,
            e,
        ));
    }
    let start = p as usize;
    let base = (start + CHUNK - 1) & !(CHUNK - 1);
    // SAFETY: both ranges lie inside the mapping just made, which nothing else knows of; the
    // aligned chunk between them stays mapped. A failed unmap only leaves address space mapped.
    unsafe {
        if base > start {
            libc::munmap(p, base - start);
        }
        if start + len > base + CHUNK {
            libc::munmap((base + CHUNK) as *mut libc::c_void, start + len - base - CHUNK);
        }
        // Without transparent huge pages this fails, and the chunk faults in by 4 KiB pages.
        libc::madvise(base as *mut libc::c_void, CHUNK, libc::MADV_HUGEPAGE);
    }
    Ok(base)
}

/// A thread's free records, taken from the chunks and given back [`BATCH`] at a time.
struct Local {
    ready: Vec<NonNull<Record>>,
}

impl Drop for Local {
    fn drop(&mut self) {
        chunks().give(self.ready.drain(..));
    }
}

thread_local! {
    static LOCAL: UnsafeCell<Local> = const { UnsafeCell::new(Local { ready: Vec::new() }) };
}

/// Runs `f` on this thread's list, unless the thread is exiting. Preemption is held off: a
/// coroutine preempted inside would leave the list borrowed for the next one. Never inlined:
/// a migratable coroutine may resume on another thread between two spawns, and an inlined
/// thread-local address could be kept across that switch (see `crate::ground`).
#[inline(never)]
fn with_local<R>(f: impl FnOnce(&mut Local) -> R) -> Option<R> {
    let _off = crate::ground::Critical::enter();
    // SAFETY: the list is this thread's, nothing switches coroutines while `f` runs, and the
    // functions of this module passed as `f` never re-enter `with_local`.
    LOCAL.try_with(|l| f(unsafe { &mut *l.get() })).ok()
}

/// Memory for one record, uninitialised. Fails when a chunk was needed and the kernel refused
/// it; the error names the limit it ran into.
pub(crate) fn alloc() -> io::Result<NonNull<Record>> {
    let got = with_local(|l| {
        if let Some(rec) = l.ready.pop() {
            return Ok(rec);
        }
        chunks().take(&mut l.ready, BATCH)?;
        Ok(l.ready.pop().expect("took at least one record"))
    });
    match got {
        Some(got) => got,
        // The thread is exiting: one record straight from the chunks.
        None => {
            let mut one = Vec::with_capacity(1);
            chunks().take(&mut one, 1)?;
            Ok(one[0])
        }
    }
}

/// Gives back the memory of a record.
///
/// # Safety
///
/// `rec` came from [`alloc`], is not used after this, and its record was dropped already.
pub(crate) unsafe fn free(rec: NonNull<Record>) {
    let kept = with_local(|l| {
        l.ready.push(rec);
        if l.ready.len() > 2 * BATCH {
            chunks().give(l.ready.drain(..BATCH));
        }
    });
    if kept.is_none() {
        chunks().give([rec]);
    }
}

/// Gives this thread's free records back to the chunks, and unmaps every chunk with no record
/// out. A chunk whose records sit in another thread's list stays until that thread gives them
/// back (a worker does when it empties its cache of finished tasks, see `release_if_asked`).
pub(crate) fn release_idle() {
    let _off = crate::ground::Critical::enter();
    let mut chunks = chunks();
    if let Some(mine) = with_local(|l| std::mem::take(&mut l.ready)) {
        chunks.give(mine);
    }
    chunks.chunks.retain(|c| {
        if c.out > 0 {
            return true;
        }
        // SAFETY: no record of this chunk is out, so nothing points into it any more; the
        // addresses on its free list go with it. A failed unmap only leaves it mapped.
        unsafe { libc::munmap(c.base as *mut libc::c_void, CHUNK) };
        false
    });
    chunks.first_room = 0;
}

/// (records out of the slab, bytes of chunks mapped), process-wide: for tests.
pub(crate) fn counts() -> (usize, usize) {
    let chunks = chunks();
    let out = chunks.chunks.iter().map(|c| c.out).sum();
    (out, chunks.chunks.len() * CHUNK)
}

#[cfg(test)]
mod tests {
    use super::{BATCH, alloc, free};
    use std::collections::HashSet;

    #[test]
    fn freed_records_are_taken_again() {
        let first: Vec<_> = (0..BATCH).map(|_| alloc().unwrap()).collect();
        let set: HashSet<_> = first.iter().map(|r| r.as_ptr() as usize).collect();
        assert_eq!(set.len(), BATCH, "every record is distinct");
        // SAFETY: they came from `alloc`, hold no record, and are not used again.
        first.into_iter().for_each(|r| unsafe { free(r) });
        let again: HashSet<_> = (0..BATCH).map(|_| alloc().unwrap().as_ptr() as usize).collect();
        assert_eq!(again, set, "this thread's freed records come back first");
        for addr in again {
            // SAFETY: as above.
            unsafe { free(super::record_at(addr)) };
        }
    }
}
