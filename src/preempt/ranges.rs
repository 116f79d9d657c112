//! Code where an asynchronous preemption must not land, found once at start-up.
//!
//! - Every shared object's executable segments (libc, the dynamic loader, the vDSO, and any
//!   other library): they may hold process-wide or thread-owned locks (malloc's arenas, stdio,
//!   the loader lock) that another coroutine of the same thread would then take again.
//! - The Rust standard library's functions inside the executable (from its symbol table):
//!   `std` holds thread-owned locks of its own, such as stdout's reentrant lock around the
//!   formatting of a `println!`, whose user `Display` code a second coroutine on the same
//!   thread would re-enter.
//!
//! The handler checks the interrupted instruction and, walking the frame-pointer chain, every
//! return address between it and the coroutine's entry. Without a symbol table (a stripped
//! executable) or without frame pointers, asynchronous preemption is switched off and only safe
//! points preempt; [`Ranges::async_ok`] says which.

use std::ffi::CStr;
use std::sync::OnceLock;

/// Sorted, merged `[start, end)` address ranges of code that must not be interrupted.
pub(crate) struct Ranges {
    ranges: Vec<(usize, usize)>,
    /// Why asynchronous preemption is off, if it is.
    pub off_reason: Option<&'static str>,
}

static RANGES: OnceLock<Ranges> = OnceLock::new();

/// The ranges, computed on first use (never from a signal handler: call [`init`] first).
pub(crate) fn init() -> &'static Ranges {
    RANGES.get_or_init(Ranges::find)
}

/// The ranges if [`init`] has run; async-signal-safe.
pub(crate) fn get() -> Option<&'static Ranges> {
    RANGES.get()
}

impl Ranges {
    /// Whether asynchronous preemption may be used at all.
    pub(crate) fn async_ok(&self) -> bool {
        self.off_reason.is_none()
    }

    /// Whether `pc` lies in code that must not be interrupted. Async-signal-safe.
    pub(crate) fn contains(&self, pc: usize) -> bool {
        let i = self.ranges.partition_point(|&(start, _)| start <= pc);
        i > 0 && pc < self.ranges[i - 1].1
    }

    fn find() -> Ranges {
        let mut objects = Objects::default();
        // SAFETY: the callback only reads the program headers it is handed.
        unsafe { libc::dl_iterate_phdr(Some(collect_object), (&raw mut objects).cast()) };
        let mut ranges = objects.shared;
        let mut off_reason = None;
        match std_functions(objects.main_bias) {
            Some(std) if !std.is_empty() => ranges.extend(std),
            _ => off_reason = Some("the executable has no symbol table (stripped), so std's code cannot be told apart"),
        }
        if off_reason.is_none() && !frame_pointers_work() {
            off_reason = Some("the code is built without frame pointers (build with -C force-frame-pointers=yes)");
        }
        ranges.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(ranges.len());
        for (s, e) in ranges {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        Ranges {
            ranges: merged,
            off_reason,
        }
    }
}

#[derive(Default)]
struct Objects {
    main_bias: usize,
    seen_main: bool,
    shared: Vec<(usize, usize)>,
}

unsafe extern "C" fn collect_object(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut libc::c_void,
) -> i32 {
    // SAFETY: dl_iterate_phdr hands us a valid info record and our own `Objects`.
    let (info, objects) = unsafe { (&*info, &mut *data.cast::<Objects>()) };
    // SAFETY: dlpi_name is a NUL-terminated string (empty for the main program).
    let name = unsafe {
        info.dlpi_name
            .as_ref()
            .map(|p| CStr::from_ptr(p).to_bytes())
            .unwrap_or(b"")
    };
    if !objects.seen_main && name.is_empty() {
        objects.seen_main = true;
        objects.main_bias = info.dlpi_addr as usize;
        return 0;
    }
    for i in 0..info.dlpi_phnum as usize {
        // SAFETY: dlpi_phdr points at dlpi_phnum program headers.
        let ph = unsafe { &*info.dlpi_phdr.add(i) };
        if ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_X != 0 {
            let start = info.dlpi_addr as usize + ph.p_vaddr as usize;
            objects.shared.push((start, start + ph.p_memsz as usize));
        }
    }
    0
}

/// ELF section type of a full symbol table.
const SHT_SYMTAB: u32 = 2;

/// The address ranges of the standard library's functions in the running executable, from its
/// ELF symbol table; `None` if it cannot be read.
fn std_functions(bias: usize) -> Option<Vec<(usize, usize)>> {
    let file = std::fs::File::open("/proc/self/exe").ok()?;
    // SAFETY: the running executable cannot be written while it runs (ETXTBSY), so the mapping
    // stays as read; it is dropped before we return.
    let elf = unsafe { memmap2::Mmap::map(&file) }.ok()?;
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| {
        elf.get(o..o + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    };
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
    };
    if elf.get(0..4)? != b"\x7fELF" || elf[4] != 2 {
        return None;
    }
    let (shoff, shentsize, shnum) = (u64_at(0x28)?, u16_at(0x3a)? as usize, u16_at(0x3c)? as usize);
    let section = |i: usize| shoff + i * shentsize;
    let symtab = (0..shnum).find(|&i| u32_at(section(i) + 4) == Some(SHT_SYMTAB))?;
    let (sym_off, sym_size) = (u64_at(section(symtab) + 0x18)?, u64_at(section(symtab) + 0x20)?);
    let strtab = u32_at(section(symtab) + 0x28)? as usize;
    let str_off = u64_at(section(strtab) + 0x18)?;
    let mut out = Vec::new();
    for s in (sym_off..sym_off + sym_size).step_by(24) {
        let (name, info, value, size) = (u32_at(s)? as usize, *elf.get(s + 4)?, u64_at(s + 8)?, u64_at(s + 16)?);
        if info & 0xf != 2 || size == 0 || value == 0 {
            continue; // not a defined function
        }
        let name = elf.get(str_off + name..)?;
        let name = &name[..name.iter().position(|&b| b == 0)?];
        if is_std_symbol(name) {
            out.push((bias + value, bias + value + size));
        }
    }
    Some(out)
}

/// Whether a mangled symbol names a function of the `std` crate (legacy or v0 mangling).
fn is_std_symbol(name: &[u8]) -> bool {
    if let Some(rest) = name.strip_prefix(b"_ZN") {
        // Legacy: `_ZN3std...`, or an impl `_ZN<n>_$LT$std..Type...`.
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let rest = &rest[digits..];
        return rest.starts_with(b"std") && digits == 1 && rest.get(3).is_some_and(|b| b.is_ascii_digit())
            || rest.starts_with(b"_$LT$std..");
    }
    if name.starts_with(b"_R") {
        // v0: the first crate root `C<disambiguator>_<len><name>` (or `C<len><name>`) is the
        // crate the item belongs to.
        let mut i = 2;
        while i < name.len() {
            if name[i] == b'C' {
                let mut j = i + 1;
                if name.get(j) == Some(&b's') {
                    while j < name.len() && name[j] != b'_' {
                        j += 1;
                    }
                    j += 1;
                }
                let digits = name[j.min(name.len())..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .count();
                if digits > 0 {
                    let len: usize = std::str::from_utf8(&name[j..j + digits])
                        .ok()
                        .and_then(|d| d.parse().ok())
                        .unwrap_or(0);
                    let start = j + digits;
                    return name.get(start..start + len) == Some(b"std");
                }
            }
            i += 1;
        }
    }
    false
}

/// Whether this build keeps frame pointers: a called function's saved frame pointer must be
/// its caller's frame pointer.
fn frame_pointers_work() -> bool {
    #[inline(never)]
    fn callee(caller_fp: usize) -> bool {
        let fp: usize;
        // SAFETY: reads rbp only.
        unsafe { std::arch::asm!("mov {}, rbp", out(reg) fp, options(nomem, nostack, preserves_flags)) };
        // SAFETY: with frame pointers, [rbp] holds the caller's rbp; without them we only
        // compare, after checking that fp lies on our own stack near here.
        let here = &raw const fp as usize;
        fp > here && fp - here < 4096 && unsafe { *(fp as *const usize) } == caller_fp
    }
    #[inline(never)]
    fn caller() -> bool {
        let fp: usize;
        // SAFETY: reads rbp only.
        unsafe { std::arch::asm!("mov {}, rbp", out(reg) fp, options(nomem, nostack, preserves_flags)) };
        std::hint::black_box(callee(std::hint::black_box(fp)))
    }
    caller()
}

#[cfg(test)]
mod tests {
    use super::is_std_symbol;

    #[test]
    fn std_symbols_are_recognised() {
        assert!(is_std_symbol(b"_RNvNtNtCsjrHSEGnQ3l9_3std2io5stdio6_print"));
        assert!(is_std_symbol(
            b"_RNvXsf_NtNtCsjrHSEGnQ3l9_3std2io5stdioRNtB5_6StdoutNtB7_5Write9write_fmt"
        ));
        assert!(!is_std_symbol(
            b"_RINvNtCsgEmfK2I1SDS_4core3ptr13drop_in_placeNtCs1_3std4Thing"
        ));
        assert!(is_std_symbol(b"_ZN3std2io5stdio6_print17h0123456789abcdefE"));
        assert!(is_std_symbol(
            b"_ZN60_$LT$std..io..stdio..StdoutLock$u20$as$u20$std..io..Write$GT$9write_all17hE"
        ));
        assert!(!is_std_symbol(b"_ZN7sigcoro5sched3api5spawn17hE"));
        assert!(!is_std_symbol(b"_ZN5stdio3foo17hE"));
        assert!(!is_std_symbol(b"_ZN4core3fmt5write17hE"));
    }
}
