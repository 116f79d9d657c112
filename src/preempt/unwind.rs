//! Whether an interrupted coroutine may be switched out: the signal handler walks the
//! interrupted frame and its callers with the executable's own `.eh_frame` (code is built
//! without frame pointers) and asks [`CodeMap::vouched`] about each.
//!
//! # Async-signal safety
//!
//! [`walk`] and everything it calls allocate nothing, take no lock and cannot panic (no
//! slice indexing, no `unwrap`, only checked or wrapping arithmetic): the code map is a sorted
//! slice searched with `partition_point`; the unwind tables are read through
//! [`cfi::Mem`], which checks every read against the `PT_LOAD` segment holding them; the
//! interrupted stack is read only at 8-byte aligned words inside `[stack_lo, stack_hi)`. The
//! work is bounded: at most [`MAX_FRAMES`] frames, each a binary search in the code map, one
//! in `.eh_frame_hdr`'s table, and at most 4096 CFI instructions ([`cfi`]); the CFA must grow
//! strictly from frame to frame.
//!
//! # CFI subset
//!
//! See [`cfi`]: a CFA of `rsp` or `rbp` plus an offset, `rbp` undefined, unchanged or saved at
//! CFA + N, the return address saved at CFA + N; the usual opcodes of compilers' x86_64 output
//! (advance, offset, restore, remember/restore state, def_cfa variants, GNU_args_size), and
//! rules by register or expression for registers the walk does not track. Anything else
//! refuses ([`Refusal::UnsupportedCfi`]), which only costs a preemption.

pub(crate) mod cfi;
#[cfg(test)]
mod tests;

use super::codemap::CodeMap;
use cfi::{CfiError, Rule};

/// At most this many frames are walked.
pub(crate) const MAX_FRAMES: usize = 256;

/// The registers the walk starts from.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Regs {
    pub pc: usize,
    pub sp: usize,
    pub bp: usize,
}

/// The walk's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Every frame up to the region runs vouched code.
    Vouched,
    Refused(Refusal),
}

/// Why a walk refused. `pc` is the frame's pc: exact for the first frame, a return address
/// for the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The frame's code is not vouched (std, C, a shared object, a gap).
    NotVouched { pc: usize },
    /// No FDE covers the frame's code.
    NoUnwindInfo { pc: usize },
    /// The frame's CFI is malformed or outside the supported subset.
    UnsupportedCfi { pc: usize },
    /// A CFA or a saved register lies outside the stack, or the CFA did not grow.
    OffStack,
    /// A CFA passed the region's without equalling it.
    PastRegion,
    /// More than [`MAX_FRAMES`] frames.
    TooDeep,
}

/// Whether the interrupted point `regs` (the first frame: its pc is exact, not a return
/// address) and every caller up to and including the frame whose CFA equals `region_cfa` run
/// vouched code. The frame with that CFA is the user closure's, called by the region entry
/// function; its return address (into the region entry, sigcoro code) is not checked. A CFA
/// that passes `region_cfa` without equalling it: [`Refusal::PastRegion`].
///
/// A frame's CFA is the value `rsp` had in its caller just before the `call` instruction, so
/// `region_cfa` is the region entry's `rsp` at its call of the closure (the closure sees
/// `rsp == region_cfa - 8` on entry, the return address at `region_cfa - 8`).
///
/// Async-signal-safe; see the module documentation.
///
/// # Safety
///
/// `regs` come from the interrupted context of the calling thread's own coroutine, whose
/// stack `[stack_lo, stack_hi)` is mapped readable; every stack read is checked to lie inside
/// it.
pub(crate) unsafe fn walk(map: &CodeMap, regs: Regs, stack_lo: usize, stack_hi: usize, region_cfa: usize) -> Verdict {
    // SAFETY: the caller's guarantees are ours.
    unsafe { walk_frames(map, regs, stack_lo, stack_hi, region_cfa, |_, _| {}) }
}

/// [`walk`], calling `visit(pc, cfa)` for each frame found, the region's included.
///
/// # Safety
///
/// As for [`walk`].
pub(crate) unsafe fn walk_frames(
    map: &CodeMap,
    regs: Regs,
    stack_lo: usize,
    stack_hi: usize,
    region_cfa: usize,
    mut visit: impl FnMut(usize, usize),
) -> Verdict {
    use Refusal::*;
    let refuse = Verdict::Refused;
    let (mut pc, mut sp, mut bp) = (regs.pc, regs.sp, Some(regs.bp));
    // The first frame's pc is exact; a caller's return address may be the first byte of the
    // next function (after a call that does not return), so its call is looked up at ra - 1.
    let mut lookup = pc;
    let word = |addr: Option<usize>| {
        // SAFETY: `stack_word` reads only inside [stack_lo, stack_hi), which the caller
        // guarantees is this thread's mapped stack.
        addr.and_then(|a| unsafe { stack_word(a, stack_lo, stack_hi) })
    };
    for _ in 0..MAX_FRAMES {
        if !map.vouched(lookup) {
            return refuse(NotVouched { pc });
        }
        let row = match map.eh().row_for(lookup) {
            Ok(row) if row.usable() => row,
            Err(CfiError::NoInfo) => return refuse(NoUnwindInfo { pc }),
            _ => return refuse(UnsupportedCfi { pc }),
        };
        let base = if row.cfa_on_rbp() { bp } else { Some(sp) };
        let Some(base) = base else {
            return refuse(UnsupportedCfi { pc });
        };
        let Some(cfa) = base.checked_add_signed(row.cfa_off as isize) else {
            return refuse(OffStack);
        };
        if cfa <= sp || cfa <= stack_lo || cfa > stack_hi {
            return refuse(OffStack);
        }
        visit(pc, cfa);
        if cfa == region_cfa {
            return Verdict::Vouched;
        }
        if cfa > region_cfa {
            return refuse(PastRegion);
        }
        let Rule::Offset(ra_off) = row.ra else {
            return refuse(UnsupportedCfi { pc });
        };
        let Some(ra) = word(cfa.checked_add_signed(ra_off as isize)) else {
            return refuse(OffStack);
        };
        bp = match row.rbp {
            Rule::Same => bp,
            Rule::Undefined => None,
            Rule::Offset(off) => match word(cfa.checked_add_signed(off as isize)) {
                Some(saved) => Some(saved),
                None => return refuse(OffStack),
            },
            Rule::Other => return refuse(UnsupportedCfi { pc }),
        };
        (pc, sp, lookup) = (ra, cfa, ra.wrapping_sub(1));
    }
    refuse(TooDeep)
}

/// The word at `addr` if it is 8-byte aligned and inside `[lo, hi)`.
///
/// # Safety
///
/// `[lo, hi)` must be mapped readable.
unsafe fn stack_word(addr: usize, lo: usize, hi: usize) -> Option<usize> {
    if !addr.is_multiple_of(8) || addr < lo || addr.checked_add(8)? > hi {
        return None;
    }
    // SAFETY: aligned and inside the readable range, by the checks above and the contract.
    Some(unsafe { (addr as *const usize).read_volatile() })
}
