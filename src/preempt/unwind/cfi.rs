//! A minimal DWARF call-frame-information interpreter for x86_64 `.eh_frame`, found through
//! `.eh_frame_hdr`'s sorted search table.
//!
//! Everything here runs in a signal handler: no allocation, no lock, no panic (no slice
//! indexing, only checked or wrapping arithmetic), bounded work (a binary search, then at most
//! [`MAX_OPS`] instructions), and every read of the tables is checked against the bounds of
//! the `PT_LOAD` segment that holds them ([`Mem`]).
//!
//! The row computed for a pc tracks only what the walk needs: the CFA rule (`rsp` or `rbp` plus
//! an offset), and the rules for `rbp` (undefined, same value, or saved at CFA + N) and for the
//! return address (column 16, which must be saved at CFA + N). Supported: every
//! `advance_loc`, `set_loc`, `offset`, `offset_extended(_sf)`, `GNU_negative_offset_extended`,
//! `restore(_extended)`, `undefined`, `same_value`, `register`, `remember_state`/
//! `restore_state` (8 deep), `def_cfa(_sf)`, `def_cfa_register`, `def_cfa_offset(_sf)`,
//! `GNU_args_size`, `expression`/`val_expression`/`val_offset(_sf)` (for registers other than
//! `rbp` and the return address), `nop`. A rule the walk cannot follow (a CFA on another
//! register or by expression; `rbp` or the return address by register or expression) makes
//! the final row unsupported, and so does any other opcode.

/// At most this many CFI instructions are executed for one row (CIE and FDE together).
const MAX_OPS: u32 = 4096;
/// Depth of the `remember_state` stack.
const STATE_DEPTH: usize = 8;
/// DWARF register numbers on x86_64.
const RBP: u64 = 6;
const RSP: u64 = 7;
const RA: u64 = 16;

/// A readable range `[lo, hi)` of the process's memory that stays mapped for good.
#[derive(Clone, Copy)]
pub(crate) struct Mem {
    lo: usize,
    hi: usize,
}

impl Mem {
    /// Reads `N` bytes at `addr` if they lie inside the range.
    fn bytes<const N: usize>(&self, addr: usize) -> Option<[u8; N]> {
        let end = addr.checked_add(N)?;
        if addr < self.lo || end > self.hi {
            return None;
        }
        // SAFETY: [addr, addr + N) lies inside [lo, hi), which `EhFrame::new`'s caller
        // guaranteed stays mapped readable; the read is unaligned-safe.
        Some(unsafe { (addr as *const [u8; N]).read_unaligned() })
    }

    fn u8(&self, addr: usize) -> Option<u8> {
        self.bytes::<1>(addr).map(|b| b[0])
    }

    fn i32(&self, addr: usize) -> Option<i32> {
        self.bytes(addr).map(i32::from_le_bytes)
    }

    fn u32(&self, addr: usize) -> Option<u32> {
        self.bytes(addr).map(u32::from_le_bytes)
    }
}

/// A reader over `[pos, end)` of a [`Mem`].
struct Cursor {
    mem: Mem,
    pos: usize,
    end: usize,
}

impl Cursor {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let next = self.pos.checked_add(N)?;
        if next > self.end {
            return None;
        }
        let b = self.mem.bytes::<N>(self.pos)?;
        self.pos = next;
        Some(b)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|b| b[0])
    }

    fn uleb(&mut self) -> Option<u64> {
        let (mut value, mut shift) = (0u64, 0u32);
        loop {
            let b = self.u8()?;
            if shift < 64 {
                value |= u64::from(b & 0x7f) << shift;
            }
            shift = shift.saturating_add(7);
            if b & 0x80 == 0 {
                return Some(value);
            }
        }
    }

    fn sleb(&mut self) -> Option<i64> {
        let (mut value, mut shift) = (0i64, 0u32);
        loop {
            let b = self.u8()?;
            if shift < 64 {
                value |= i64::from(b & 0x7f) << shift;
            }
            shift = shift.saturating_add(7);
            if b & 0x80 == 0 {
                if shift < 64 && b & 0x40 != 0 {
                    value |= -1i64 << shift;
                }
                return Some(value);
            }
        }
    }

    fn skip(&mut self, n: u64) -> Option<()> {
        let next = self.pos.checked_add(usize::try_from(n).ok()?)?;
        if next > self.end {
            return None;
        }
        self.pos = next;
        Some(())
    }

    /// A pointer in encoding `enc`: absolute with pcrel applied if `apply` (pc_begin,
    /// set_loc, the personality), the bare value otherwise (pc_range). Only `pcrel` or
    /// absolute application with `udata`/`sdata` 2, 4 or 8 bytes is supported; `indirect`
    /// is left unresolved (only the personality uses it, and it is skipped).
    fn pointer(&mut self, enc: u8, apply: bool) -> Option<usize> {
        let at = self.pos;
        let value = match enc & 0x0f {
            0x00 | 0x04 | 0x0c => u64::from_le_bytes(self.take()?) as usize,
            0x02 => u16::from_le_bytes(self.take()?) as usize,
            0x03 => u32::from_le_bytes(self.take()?) as usize,
            0x0a => i16::from_le_bytes(self.take()?) as isize as usize,
            0x0b => i32::from_le_bytes(self.take()?) as isize as usize,
            _ => return None,
        };
        match enc & 0x70 {
            _ if !apply => Some(value),
            0x00 => Some(value),
            0x10 => Some(value.wrapping_add(at)),
            _ => None,
        }
    }
}

/// The executable's `.eh_frame_hdr` search table and the segment holding it and `.eh_frame`.
pub(crate) struct EhFrame {
    mem: Mem,
    /// Address of `.eh_frame_hdr` (the base of its `datarel` entries).
    hdr: usize,
    /// Address of the search table: `count` pairs of `i32` (initial location, FDE), sorted.
    table: usize,
    count: usize,
}

impl EhFrame {
    /// Reads the header at `hdr`; refuses encodings other than the ones linkers emit
    /// (`eh_frame_ptr` pcrel|sdata4, `fde_count` udata4, table datarel|sdata4).
    ///
    /// # Safety
    ///
    /// `[lo, hi)` must stay mapped readable for the rest of the process (a `PT_LOAD` segment
    /// of the main executable) and contain `hdr`.
    pub(crate) unsafe fn new(hdr: usize, lo: usize, hi: usize) -> Result<EhFrame, &'static str> {
        const BAD: &str = "the executable's .eh_frame_hdr has an unsupported format";
        let mem = Mem { lo, hi };
        let head = mem.bytes::<4>(hdr).ok_or(BAD)?;
        if head != [1, 0x1b, 0x03, 0x3b] {
            return Err(BAD);
        }
        let field = hdr.wrapping_add(4);
        let eh_frame = (mem.i32(field).ok_or(BAD)? as isize as usize).wrapping_add(field);
        let count = mem.u32(hdr.wrapping_add(8)).ok_or(BAD)? as usize;
        let table = hdr.wrapping_add(12);
        let last = (count.wrapping_sub(1))
            .checked_mul(8)
            .and_then(|o| table.checked_add(o));
        if count == 0 || mem.u8(eh_frame).is_none() || last.and_then(|l| mem.bytes::<8>(l)).is_none() {
            return Err("the executable's .eh_frame or its search table lies outside its segment");
        }
        Ok(EhFrame { mem, hdr, table, count })
    }

    /// The address of the FDE whose table entry is the last starting at or before `pc`.
    fn find_fde(&self, pc: usize) -> Option<usize> {
        let entry = |i: usize| -> Option<(usize, usize)> {
            let at = self.table.checked_add(i.checked_mul(8)?)?;
            let start = (self.mem.i32(at)? as isize as usize).wrapping_add(self.hdr);
            let fde = (self.mem.i32(at + 4)? as isize as usize).wrapping_add(self.hdr);
            Some((start, fde))
        };
        // The first index whose start is > pc, in at most log2(count) + 1 steps.
        let (mut lo, mut hi) = (0usize, self.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if entry(mid)?.0 <= pc {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        entry(lo.checked_sub(1)?).map(|e| e.1)
    }

    /// The CFI row that holds at `pc`.
    pub(crate) fn row_for(&self, pc: usize) -> Result<Row, CfiError> {
        let fde_at = self.find_fde(pc).ok_or(CfiError::NoInfo)?;
        let fde = self.parse_fde(fde_at).ok_or(CfiError::Unsupported)?;
        if pc < fde.pc_begin || pc - fde.pc_begin >= fde.pc_range {
            return Err(CfiError::NoInfo);
        }
        let mut run = Interp {
            row: Row::INITIAL,
            init: Row::INITIAL,
            stack: [Row::INITIAL; STATE_DEPTH],
            depth: 0,
            loc: fde.pc_begin,
            target: pc,
            caf: fde.cie.code_align,
            daf: fde.cie.data_align,
            enc: fde.cie.enc,
            ops: 0,
        };
        let initial = Cursor {
            mem: self.mem,
            pos: fde.cie.instructions,
            end: fde.cie.end,
        };
        if !run.execute(initial)? {
            run.init = run.row;
            let body = Cursor {
                mem: self.mem,
                pos: fde.instructions,
                end: fde.end,
            };
            run.execute(body)?;
        }
        Ok(run.row)
    }

    /// A record's `(start of content, end)` from its length field at `at`.
    fn record(&self, at: usize) -> Option<(usize, usize)> {
        match self.mem.u32(at)? {
            0 => None,
            0xffff_ffff => {
                let len = u64::from_le_bytes(self.mem.bytes(at.checked_add(4)?)?);
                Some((at + 12, (at + 12).checked_add(usize::try_from(len).ok()?)?))
            }
            len => Some((at + 4, (at + 4).checked_add(len as usize)?)),
        }
    }

    fn parse_fde(&self, at: usize) -> Option<Fde> {
        let (start, end) = self.record(at)?;
        let mut c = Cursor {
            mem: self.mem,
            pos: start,
            end,
        };
        let id = u32::from_le_bytes(c.take()?);
        if id == 0 {
            return None; // a CIE, not an FDE
        }
        let cie = self.parse_cie(start.checked_sub(id as usize)?)?;
        let pc_begin = c.pointer(cie.enc, true)?;
        let pc_range = c.pointer(cie.enc & 0x0f, false)?;
        if cie.augmented {
            let len = c.uleb()?;
            c.skip(len)?;
        }
        Some(Fde {
            cie,
            pc_begin,
            pc_range,
            instructions: c.pos,
            end,
        })
    }

    fn parse_cie(&self, at: usize) -> Option<Cie> {
        let (start, end) = self.record(at)?;
        let mut c = Cursor {
            mem: self.mem,
            pos: start,
            end,
        };
        if u32::from_le_bytes(c.take()?) != 0 {
            return None;
        }
        let version = c.u8()?;
        if version != 1 && version != 3 {
            return None;
        }
        let mut aug = [0u8; 8];
        let mut n = 0;
        loop {
            let b = c.u8()?;
            if b == 0 {
                break;
            }
            *aug.get_mut(n)? = b;
            n += 1;
        }
        let code_align = c.uleb()?;
        let data_align = c.sleb()?;
        let ra = if version == 1 { u64::from(c.u8()?) } else { c.uleb()? };
        if ra != RA {
            return None;
        }
        let augs = aug.get(..n)?;
        let mut enc = 0u8; // absptr, the default
        let augmented = augs.first() == Some(&b'z');
        if augmented {
            let len = c.uleb()?;
            let data_end = c.pos.checked_add(usize::try_from(len).ok()?)?;
            for &a in augs.get(1..)? {
                match a {
                    b'R' => enc = c.u8()?,
                    b'P' => {
                        let penc = c.u8()?;
                        match penc & 0x0f {
                            0x01 => drop(c.uleb()?),
                            0x09 => drop(c.sleb()?),
                            _ => drop(c.pointer(penc & 0x0f, false)?),
                        }
                    }
                    b'L' => drop(c.u8()?),
                    b'S' => {}
                    _ => return None,
                }
            }
            if c.pos > data_end {
                return None;
            }
            c.pos = data_end;
        } else if n != 0 {
            return None;
        }
        Some(Cie {
            code_align,
            data_align,
            enc,
            augmented,
            instructions: c.pos,
            end,
        })
    }
}

struct Cie {
    code_align: u64,
    data_align: i64,
    /// The `R` pointer encoding of pc_begin, pc_range and set_loc.
    enc: u8,
    augmented: bool,
    instructions: usize,
    end: usize,
}

struct Fde {
    cie: Cie,
    pc_begin: usize,
    pc_range: usize,
    instructions: usize,
    end: usize,
}

/// Why no row was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CfiError {
    /// No FDE covers the pc.
    NoInfo,
    /// The FDE or CIE is malformed or uses something outside the subset.
    Unsupported,
}

/// A register's rule in a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rule {
    Undefined,
    Same,
    /// Saved at CFA + N.
    Offset(i64),
    /// Any rule the walk cannot follow (another register, an expression, a value).
    Other,
}

/// The part of a CFI row the walk uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Row {
    /// The CFA's register (DWARF number), or `u64::MAX` for an expression.
    pub cfa_reg: u64,
    pub cfa_off: i64,
    pub rbp: Rule,
    pub ra: Rule,
}

impl Row {
    /// Before the CIE's instructions: callee-saved rbp keeps its value.
    const INITIAL: Row = Row {
        cfa_reg: RSP,
        cfa_off: 8,
        rbp: Rule::Same,
        ra: Rule::Undefined,
    };

    /// Whether the walk can follow it: CFA on rsp or rbp, rbp followed, RA saved.
    pub(crate) fn usable(&self) -> bool {
        (self.cfa_reg == RSP || self.cfa_reg == RBP) && self.rbp != Rule::Other && matches!(self.ra, Rule::Offset(_))
    }

    pub(crate) fn cfa_on_rbp(&self) -> bool {
        self.cfa_reg == RBP
    }
}

struct Interp {
    row: Row,
    /// The row after the CIE's initial instructions, for `restore`.
    init: Row,
    stack: [Row; STATE_DEPTH],
    depth: usize,
    loc: usize,
    target: usize,
    caf: u64,
    daf: i64,
    enc: u8,
    ops: u32,
}

impl Interp {
    fn set(&mut self, reg: u64, rule: Rule) {
        match reg {
            RBP => self.row.rbp = rule,
            RA => self.row.ra = rule,
            _ => {}
        }
    }

    fn restore(&mut self, reg: u64) {
        match reg {
            RBP => self.row.rbp = self.init.rbp,
            RA => self.row.ra = self.init.ra,
            _ => {}
        }
    }

    /// `factor * data_align`, or `None` on overflow.
    fn scaled(&self, factor: i64) -> Option<i64> {
        factor.checked_mul(self.daf)
    }

    /// Moves to `new`; `true` if that passes the target (the row is final).
    fn advance_to(&mut self, new: Option<usize>) -> Result<bool, CfiError> {
        let new = new.ok_or(CfiError::Unsupported)?;
        if new > self.target {
            return Ok(true);
        }
        self.loc = new;
        Ok(false)
    }

    fn advance(&mut self, delta: u64) -> Result<bool, CfiError> {
        let step = delta.checked_mul(self.caf).and_then(|d| usize::try_from(d).ok());
        self.advance_to(step.and_then(|d| self.loc.checked_add(d)))
    }

    /// Runs instructions until they end (`false`) or pass the target (`true`).
    fn execute(&mut self, mut c: Cursor) -> Result<bool, CfiError> {
        use CfiError::Unsupported as U;
        while c.pos < c.end {
            self.ops += 1;
            if self.ops > MAX_OPS {
                return Err(U);
            }
            let op = c.u8().ok_or(U)?;
            let low = u64::from(op & 0x3f);
            let done = match op >> 6 {
                1 => self.advance(low)?,
                2 => {
                    let off = self.scaled(c.uleb().ok_or(U)? as i64).ok_or(U)?;
                    self.set(low, Rule::Offset(off));
                    false
                }
                3 => {
                    self.restore(low);
                    false
                }
                _ => self.extended(op, &mut c).ok_or(U)??,
            };
            if done {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The opcodes with no operand in their low bits. `None` for a malformed operand.
    fn extended(&mut self, op: u8, c: &mut Cursor) -> Option<Result<bool, CfiError>> {
        match op {
            0x00 => {}
            0x01 => return Some(self.advance_to(c.pointer(self.enc, true))),
            0x02 => return Some(self.advance(u64::from(c.u8()?))),
            0x03 => return Some(self.advance(u64::from(u16::from_le_bytes(c.take()?)))),
            0x04 => return Some(self.advance(u64::from(u32::from_le_bytes(c.take()?)))),
            0x05 | 0x11 | 0x2f => {
                let reg = c.uleb()?;
                let off = match op {
                    0x05 => self.scaled(c.uleb()? as i64)?,
                    0x11 => self.scaled(c.sleb()?)?,
                    _ => self.scaled(c.uleb()? as i64)?.checked_neg()?,
                };
                self.set(reg, Rule::Offset(off));
            }
            0x06 => self.restore(c.uleb()?),
            0x07 => self.set(c.uleb()?, Rule::Undefined),
            0x08 => self.set(c.uleb()?, Rule::Same),
            0x09 => {
                let reg = c.uleb()?;
                c.uleb()?;
                self.set(reg, Rule::Other);
            }
            0x0a => {
                let slot = self.stack.get_mut(self.depth);
                let Some(slot) = slot else {
                    return Some(Err(CfiError::Unsupported));
                };
                *slot = self.row;
                self.depth += 1;
            }
            0x0b => {
                self.depth = self.depth.checked_sub(1)?;
                self.row = *self.stack.get(self.depth)?;
            }
            0x0c => {
                self.row.cfa_reg = c.uleb()?;
                self.row.cfa_off = i64::try_from(c.uleb()?).ok()?;
            }
            0x12 => {
                self.row.cfa_reg = c.uleb()?;
                self.row.cfa_off = self.scaled(c.sleb()?)?;
            }
            0x0d => self.row.cfa_reg = c.uleb()?,
            0x0e => self.row.cfa_off = i64::try_from(c.uleb()?).ok()?,
            0x13 => self.row.cfa_off = self.scaled(c.sleb()?)?,
            0x0f => {
                let len = c.uleb()?;
                c.skip(len)?;
                self.row.cfa_reg = u64::MAX;
            }
            0x10 | 0x16 => {
                let reg = c.uleb()?;
                let len = c.uleb()?;
                c.skip(len)?;
                self.set(reg, Rule::Other);
            }
            0x14 | 0x15 => {
                let reg = c.uleb()?;
                if op == 0x14 {
                    c.uleb()?;
                } else {
                    c.sleb()?;
                }
                self.set(reg, Rule::Other);
            }
            0x2e => drop(c.uleb()?),
            _ => return Some(Err(CfiError::Unsupported)),
        }
        Some(Ok(false))
    }
}
