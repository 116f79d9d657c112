//! Which code of the running executable an asynchronous preemption may interrupt ("vouched"
//! code), found once from the executable's ELF symbol table, plus where its `.eh_frame_hdr` is
//! (for [`super::unwind`]).
//!
//! Vouched code is Rust code of the main executable outside the standard library's crates
//! ([`REFUSED_CRATES`]) and outside the global allocator. A function symbol is Rust if its name
//! is mangled the legacy way (`_ZN...17h<16 hex>E`, maybe with a `.llvm.N` or `.cold` suffix)
//! or the v0 way (`_R...`); it is refused if any crate root in its name is a refused crate
//! (which covers impls such as `<X as core::alloc::global::GlobalAlloc>::alloc`, and generic
//! std code instantiated in a user crate, which keeps its std path). The allocator shims
//! (`__rust_alloc`, ...) are unmangled, so refused like every C, assembly or PLT symbol. Code
//! covered by any refused symbol is refused even where a vouched symbol overlaps it (aliases
//! made by function merging), and gaps between symbols, shared objects and the vDSO are never
//! vouched.
//!
//! [`init`] reads the symbol table (allocating; never from a signal handler). [`get`] and
//! [`CodeMap::vouched`] are async-signal-safe: an atomic load, then a binary search over a
//! sorted slice with no allocation, no lock and no panicking index.

use super::unwind::cfi::EhFrame;
use std::ffi::CStr;
use std::sync::OnceLock;

/// Crates whose code is never vouched: the sysroot's (the test harness's included). A user
/// crate of the same name is refused too, which is merely conservative.
const REFUSED_CRATES: &[&[u8]] = &[
    b"std",
    b"core",
    b"alloc",
    b"panic_unwind",
    b"panic_abort",
    b"unwind",
    b"compiler_builtins",
    b"std_detect",
    b"rustc_demangle",
    b"addr2line",
    b"gimli",
    b"object",
    b"miniz_oxide",
    b"adler",
    b"adler2",
    b"test",
    b"getopts",
    b"proc_macro",
    b"rustc_std_workspace_core",
    b"rustc_std_workspace_alloc",
    b"rustc_std_workspace_std",
];

/// The executable's code map: vouched ranges, every function symbol, and its unwind tables.
pub(crate) struct CodeMap {
    /// Sorted, disjoint, merged `[start, end)` ranges of vouched code.
    vouched: Vec<(usize, usize)>,
    /// Every function symbol, sorted by start: `(start, end, name offset, name length)`.
    functions: Vec<(usize, usize, u32, u32)>,
    /// The function names, concatenated.
    names: Vec<u8>,
    /// The executable's `.eh_frame_hdr` search table and `.eh_frame`.
    eh: EhFrame,
}

static MAP: OnceLock<Result<CodeMap, &'static str>> = OnceLock::new();

/// Computes the map once (reads `/proc/self/exe`'s `.symtab`; `dl_iterate_phdr` for the main
/// object's load bias and `PT_GNU_EH_FRAME`). Never from a signal handler.
pub(crate) fn init() -> Result<&'static CodeMap, &'static str> {
    MAP.get_or_init(CodeMap::build).as_ref().map_err(|e| *e)
}

/// The map if [`init`] succeeded; async-signal-safe (one atomic load).
pub(crate) fn get() -> Option<&'static CodeMap> {
    MAP.get().and_then(|m| m.as_ref().ok())
}

impl CodeMap {
    /// Whether `pc` lies in vouched code. Async-signal-safe (binary search, no allocation).
    pub(crate) fn vouched(&self, pc: usize) -> bool {
        let i = self.vouched.partition_point(|&(start, _)| start <= pc);
        match self.vouched.get(i.wrapping_sub(1)) {
            Some(&(_, end)) => pc < end,
            None => false,
        }
    }

    /// The vouched ranges, for tests.
    #[cfg(test)]
    pub(crate) fn vouched_ranges(&self) -> &[(usize, usize)] {
        &self.vouched
    }

    /// The executable's unwind tables.
    pub(crate) fn eh(&self) -> &EhFrame {
        &self.eh
    }

    /// The function containing `pc`, demangled readably (legacy mangling; v0 stays raw), and
    /// `pc`'s offset in it. For reports; not async-signal-safe.
    pub(crate) fn function_at(&self, pc: usize) -> Option<(String, usize)> {
        let i = self.functions.partition_point(|f| f.0 <= pc);
        // Aliases and nested symbols share or overlap starts: look back a little.
        let f = self.functions[..i].iter().rev().take(8).find(|f| pc < f.1)?;
        let name = self.names.get(f.2 as usize..(f.2 + f.3) as usize)?;
        Some((demangle(name), pc - f.0))
    }

    fn build() -> Result<CodeMap, &'static str> {
        let mut main = MainObject::default();
        // SAFETY: the callback only reads the program headers it is handed and writes `main`.
        unsafe { libc::dl_iterate_phdr(Some(main_object), (&raw mut main).cast()) };
        if !main.seen {
            return Err("the loader did not report the main executable, so its code cannot be located");
        }
        let Some(hdr) = main.eh_frame_hdr else {
            return Err("the executable has no PT_GNU_EH_FRAME header, so its callers cannot be unwound");
        };
        let Some(&(lo, hi)) = main.loads.iter().find(|&&(lo, hi)| lo <= hdr && hdr < hi) else {
            return Err("the executable's .eh_frame_hdr lies outside its loaded segments");
        };
        // SAFETY: [lo, hi) is a PT_LOAD segment of the main executable, mapped readable (it
        // holds .eh_frame_hdr) until the process exits.
        let eh = unsafe { EhFrame::new(hdr, lo, hi)? };
        let symbols = read_symbols(main.bias)?;
        Ok(CodeMap::from_symbols(symbols, eh))
    }

    /// Classifies the function symbols `(start, end, name)` and builds the tables.
    fn from_symbols(mut symbols: Vec<Symbol>, eh: EhFrame) -> CodeMap {
        symbols.sort_unstable_by_key(|s| (s.0, s.1));
        let (mut good, mut bad) = (Vec::new(), Vec::new());
        let mut functions = Vec::with_capacity(symbols.len());
        let mut names = Vec::new();
        for (start, end, name) in &symbols {
            if is_vouched_symbol(name) {
                good.push((*start, *end));
            } else {
                bad.push((*start, *end));
            }
            functions.push((*start, *end, names.len() as u32, name.len() as u32));
            names.extend_from_slice(name);
        }
        CodeMap {
            vouched: subtract(&merge(good), &merge(bad)),
            functions,
            names,
            eh,
        }
    }
}

/// Sorted ranges merged where they touch or overlap.
fn merge(mut ranges: Vec<(usize, usize)>) -> Vec<(usize, usize)> {
    ranges.sort_unstable();
    let mut out: Vec<(usize, usize)> = Vec::with_capacity(ranges.len());
    for (s, e) in ranges {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// `good` minus `bad`, both sorted and merged.
fn subtract(good: &[(usize, usize)], bad: &[(usize, usize)]) -> Vec<(usize, usize)> {
    let mut out = Vec::with_capacity(good.len());
    let mut j = 0;
    for &(mut s, e) in good {
        while j < bad.len() && bad[j].1 <= s {
            j += 1;
        }
        let mut k = j;
        while s < e {
            match bad.get(k) {
                Some(&(bs, be)) if bs < e => {
                    if bs > s {
                        out.push((s, bs));
                    }
                    s = s.max(be);
                    k += 1;
                }
                _ => {
                    out.push((s, e));
                    break;
                }
            }
        }
    }
    out
}

#[derive(Default)]
struct MainObject {
    seen: bool,
    bias: usize,
    loads: Vec<(usize, usize)>,
    eh_frame_hdr: Option<usize>,
}

/// `dl_iterate_phdr`'s callback: records the main program's bias and segments, then stops.
///
/// # Safety
///
/// `info` must point at a valid `dl_phdr_info` and `data` at a [`MainObject`].
unsafe extern "C" fn main_object(info: *mut libc::dl_phdr_info, _size: libc::size_t, data: *mut libc::c_void) -> i32 {
    // SAFETY: dl_iterate_phdr hands us a valid info record and our own `MainObject`.
    let (info, main) = unsafe { (&*info, &mut *data.cast::<MainObject>()) };
    // SAFETY: dlpi_name is null or a NUL-terminated string (empty for the main program).
    let name = unsafe { info.dlpi_name.as_ref().map(|p| CStr::from_ptr(p).to_bytes()) };
    if main.seen || !name.unwrap_or(b"").is_empty() {
        return 1; // the main program comes first; stop after it
    }
    main.seen = true;
    main.bias = info.dlpi_addr as usize;
    for i in 0..info.dlpi_phnum as usize {
        // SAFETY: dlpi_phdr points at dlpi_phnum program headers.
        let ph = unsafe { &*info.dlpi_phdr.add(i) };
        let start = main.bias.wrapping_add(ph.p_vaddr as usize);
        match ph.p_type {
            libc::PT_LOAD if ph.p_flags & libc::PF_R != 0 => {
                main.loads.push((start, start.wrapping_add(ph.p_memsz as usize)))
            }
            libc::PT_GNU_EH_FRAME => main.eh_frame_hdr = Some(start),
            _ => {}
        }
    }
    1
}

/// A function symbol: `(start, end, name)` at run-time addresses.
type Symbol = (usize, usize, Vec<u8>);

/// ELF section type of a full symbol table.
const SHT_SYMTAB: u32 = 2;
/// ELF symbol type of a function.
const STT_FUNC: u8 = 2;

/// The executable's defined function symbols with a size, as `(start, end, name)` at their
/// run-time addresses.
fn read_symbols(bias: usize) -> Result<Vec<Symbol>, &'static str> {
    const UNREADABLE: &str = "the executable (/proc/self/exe) could not be read as a 64-bit ELF file";
    let file = std::fs::File::open("/proc/self/exe").map_err(|_| UNREADABLE)?;
    // SAFETY: the running executable cannot be written while it runs (ETXTBSY), so the mapping
    // stays as read; it is dropped before we return.
    let elf = unsafe { memmap2::Mmap::map(&file) }.map_err(|_| UNREADABLE)?;
    let elf: &[u8] = &elf;
    let u16_at = |o: usize| Some(u16::from_le_bytes(elf.get(o..o.checked_add(2)?)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(elf.get(o..o.checked_add(4)?)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(elf.get(o..o.checked_add(8)?)?.try_into().ok()?) as usize);
    if elf.get(0..6) != Some(b"\x7fELF\x02\x01") {
        return Err(UNREADABLE);
    }
    let header = || Some((u64_at(0x28)?, u16_at(0x3a)? as usize, u16_at(0x3c)? as usize));
    let (shoff, shentsize, shnum) = header().ok_or(UNREADABLE)?;
    let section = |i: usize| shoff + i * shentsize;
    let Some(symtab) = (0..shnum).find(|&i| u32_at(section(i) + 4) == Some(SHT_SYMTAB)) else {
        return Err(
            "the executable has no symbol table (stripped with strip = \"symbols\"), so Rust code cannot be told from C code",
        );
    };
    let tables = || {
        let (off, size) = (u64_at(section(symtab) + 0x18)?, u64_at(section(symtab) + 0x20)?);
        let strtab = u32_at(section(symtab) + 0x28)? as usize;
        Some((off, size, u64_at(section(strtab) + 0x18)?))
    };
    let (sym_off, sym_size, str_off) = tables().ok_or(UNREADABLE)?;
    let mut out = Vec::new();
    for s in (sym_off..sym_off.saturating_add(sym_size)).step_by(24) {
        let symbol = || {
            let (name, info, shndx) = (u32_at(s)? as usize, *elf.get(s + 4)?, u16_at(s + 6)?);
            let (value, size) = (u64_at(s + 8)?, u64_at(s + 16)?);
            Some((name, info, shndx, value, size))
        };
        let (name, info, shndx, value, size) = symbol().ok_or(UNREADABLE)?;
        if info & 0xf != STT_FUNC || size == 0 || shndx == 0 {
            continue; // not a defined function
        }
        let name = elf.get(str_off + name..).ok_or(UNREADABLE)?;
        let name = &name[..name.iter().position(|&b| b == 0).ok_or(UNREADABLE)?];
        let start = bias.wrapping_add(value);
        out.push((start, start.wrapping_add(size), name.to_vec()));
    }
    if out.is_empty() {
        return Err("the executable's symbol table lists no functions, so Rust code cannot be told from C code");
    }
    Ok(out)
}

/// Whether a function symbol names vouched code: Rust-mangled, of no refused crate.
pub(crate) fn is_vouched_symbol(name: &[u8]) -> bool {
    if let Some(rest) = name.strip_prefix(b"_ZN") {
        legacy_vouched(rest)
    } else if let Some(rest) = name.strip_prefix(b"_R") {
        v0_vouched(rest)
    } else {
        false
    }
}

/// The components of a legacy-mangled path (after `_ZN`), and what follows its `E`.
fn legacy_components(rest: &[u8]) -> Option<(Vec<&[u8]>, &[u8])> {
    let mut components = Vec::new();
    let mut i = 0;
    loop {
        match rest.get(i)? {
            b'E' => return Some((components, &rest[i + 1..])),
            b'0'..=b'9' => {
                let digits = rest[i..].iter().take_while(|b| b.is_ascii_digit()).count();
                let len: usize = std::str::from_utf8(&rest[i..i + digits]).ok()?.parse().ok()?;
                let start = i + digits;
                components.push(rest.get(start..start.checked_add(len)?)?);
                i = start + len;
            }
            _ => return None,
        }
    }
}

fn is_hash(component: &[u8]) -> bool {
    component.len() == 17 && component[0] == b'h' && component[1..].iter().all(u8::is_ascii_hexdigit)
}

fn legacy_vouched(rest: &[u8]) -> bool {
    let Some((components, suffix)) = legacy_components(rest) else {
        return false;
    };
    let (Some(first), Some(last)) = (components.first(), components.last()) else {
        return false;
    };
    if components.len() < 2 || !is_hash(last) || !(suffix.is_empty() || suffix[0] == b'.') {
        return false; // not Rust (C++ has no hash)
    }
    if REFUSED_CRATES.contains(first) {
        return false;
    }
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let path = &rest[..rest.len() - suffix.len()];
    !(0..path.len()).any(|p| {
        (p == 0 || !ident(path[p - 1]))
            && REFUSED_CRATES
                .iter()
                .any(|c| path[p..].starts_with(c) && path[p + c.len()..].starts_with(b".."))
    })
}

/// A v0 symbol (after `_R`) is vouched if it is well formed enough to be Rust and no crate
/// root `C[s<base62>_]<decimal>[_]<ident>` in it names a refused crate. Every `C` is tried as a
/// crate root, so none can be missed; a false match only refuses more.
fn v0_vouched(rest: &[u8]) -> bool {
    let body = rest.split(|&b| b == b'.').next().unwrap_or(b"");
    let start = body.iter().position(|b| !b.is_ascii_digit()).unwrap_or(body.len());
    if !matches!(body.get(start), Some(b'N' | b'C' | b'M' | b'X' | b'Y' | b'I' | b'B'))
        || !body.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
        || !body.contains(&b'C')
    {
        return false;
    }
    !(0..body.len())
        .any(|i| body[i] == b'C' && v0_crate_at(&body[i + 1..]).is_some_and(|c| REFUSED_CRATES.contains(&c)))
}

/// The identifier of a crate root whose `C` precedes `s`, if it parses as one.
fn v0_crate_at(mut s: &[u8]) -> Option<&[u8]> {
    if let Some(after) = s.strip_prefix(b"s") {
        let end = after.iter().position(|&b| b == b'_')?;
        s = &after[end + 1..];
    }
    let digits = s.iter().take_while(|b| b.is_ascii_digit()).count();
    let len: usize = std::str::from_utf8(s.get(..digits)?).ok()?.parse().ok()?;
    let mut ident = &s[digits..];
    if ident.first() == Some(&b'_') {
        ident = &ident[1..];
    }
    ident.get(..len)
}

/// A readable name: legacy Rust demangled (`a::b::<T as c::D>::f`, hash dropped); anything
/// else as it is.
fn demangle(name: &[u8]) -> String {
    let raw = || String::from_utf8_lossy(name).into_owned();
    let Some(rest) = name.strip_prefix(b"_ZN") else {
        return raw();
    };
    let Some((mut components, _)) = legacy_components(rest) else {
        return raw();
    };
    if components.last().is_some_and(|c| is_hash(c)) {
        components.pop();
    }
    let parts: Vec<String> = components.iter().map(|c| unescape(c)).collect();
    parts.join("::")
}

/// One legacy component: `$LT$` to `<`, `$u20$` to ` `, `..` to `::`, and so on.
fn unescape(c: &[u8]) -> String {
    let c = if c.starts_with(b"_$") { &c[1..] } else { c };
    let s = String::from_utf8_lossy(c);
    let mut out = String::with_capacity(s.len());
    let mut rest: &str = &s;
    while let Some(ch) = rest.chars().next() {
        if rest.starts_with("..") {
            out.push_str("::");
            rest = &rest[2..];
        } else if ch == '$' {
            let Some(end) = rest[1..].find('$') else {
                out.push_str(rest);
                break;
            };
            let code = &rest[1..1 + end];
            let decoded = match code {
                "SP" => Some('@'),
                "BP" => Some('*'),
                "RF" => Some('&'),
                "LT" => Some('<'),
                "GT" => Some('>'),
                "LP" => Some('('),
                "RP" => Some(')'),
                "C" => Some(','),
                _ => code
                    .strip_prefix('u')
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .and_then(char::from_u32),
            };
            match decoded {
                Some(d) => out.push(d),
                None => out.push_str(&rest[..end + 2]),
            }
            rest = &rest[end + 2..];
        } else {
            out.push(ch);
            rest = &rest[ch.len_utf8()..];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A legacy-mangled name of `path` with a hash, then `suffix`.
    fn legacy(path: &[&str], suffix: &str) -> String {
        let mut s = String::from("_ZN");
        for c in path {
            s += &format!("{}{c}", c.len());
        }
        s + "17h0123456789abcdefE" + suffix
    }

    #[test]
    fn symbols_are_classified() {
        let refused_impl = "_$LT$std..io..Stdout$u20$as$u20$core..fmt..Write$GT$";
        let global_alloc = "_$LT$sigcoro..A$u20$as$u20$core..alloc..global..GlobalAlloc$GT$";
        let legacy_table: &[(&[&str], &str, bool)] = &[
            // User crates.
            (&["sigcoro", "sched", "api", "spawn"], "", true),
            (&["sigcoro", "sched", "api", "spawn"], ".llvm.12345678", true),
            (&["sigcoro", "main"], ".cold.1", true),
            (&["sigcoro", "main"], ".cold", true),
            (&["mycrate", "std", "foo"], "", true),
            (&["mycore", "foo"], "", true),
            (&["hashbrown", "map", "foo"], "", true),
            (&["sigcoro", "main", "_$u7b$$u7b$closure$u7d$$u7d$"], "", true),
            (&["_$LT$sigcoro..Foo$u20$as$u20$sigcoro..Bar$GT$", "baz"], "", true),
            (
                &["_$LT$sigcoro..mystd..Foo$u20$as$u20$sigcoro..Bar$GT$", "baz"],
                "",
                true,
            ),
            (&["sigcoro", "Foo", "_$LT$impl$u20$Foo$GT$"], "", true),
            // Sysroot crates, first or inside an impl path.
            (&["std", "io", "stdio", "_print"], "", false),
            (&["core", "fmt", "write"], ".llvm.99", false),
            (&["alloc", "raw_vec", "finish_grow"], "", false),
            (&["compiler_builtins", "mem", "memcpy"], "", false),
            (&["gimli", "read", "foo"], "", false),
            (&["adler2", "foo"], "", false),
            (&[refused_impl, "write_str"], "", false),
            (&[global_alloc, "alloc"], "", false),
            (&[global_alloc, "dealloc"], ".llvm.1", false),
            (&["_$LT$$RF$std..Foo$u20$as$u20$sigcoro..Bar$GT$", "baz"], "", false),
            (&["_$LT$sigcoro..Foo$LT$alloc..vec..Vec$GT$$GT$", "baz"], "", false),
            (&["sigcoro", "drop_in_place$LT$core..Foo$GT$"], "", false),
            (
                &["_$LT$sigcoro..std..Foo$u20$as$u20$sigcoro..Bar$GT$", "baz"],
                "",
                false,
            ),
            // Malformed: no path before the hash, junk after the E.
            (&[], "", false),
            (&["sigcoro", "foo"], "v", false),
        ];
        for &(path, suffix, expected) in legacy_table {
            let name = legacy(path, suffix);
            assert_eq!(is_vouched_symbol(name.as_bytes()), expected, "{name}");
        }
        let table: &[(&str, bool)] = &[
            // Not Rust: C++ without the hash, a short hash, C, the allocator shims.
            ("_ZN7sigcoro3fooEv", false),
            ("_ZN3foo3barEi", false),
            ("_ZN7sigcoro3foo17h0123456789abcdeE", false),
            ("_ZN7sigcoro3foo17h0123456789abcdeg", false),
            ("__rust_alloc", false),
            ("__rg_alloc", false),
            ("__rdl_alloc", false),
            ("__rust_dealloc", false),
            ("__rust_realloc", false),
            ("malloc", false),
            ("main", false),
            ("_start", false),
            // v0.
            ("_RNvCs1234_7sigcoro4main", true),
            ("_RNvNtCs1234_7sigcoro5sched5spawn.llvm.77", true),
            ("_RNvCs1234_6mycore3foo", true),
            ("_RNvNtNtCsjrHSEGnQ3l9_3std2io5stdio6_print", false),
            (
                "_RNvXsf_NtNtCsjrHSEGnQ3l9_3std2io5stdioRNtB5_6StdoutNtB7_5Write9write_fmt",
                false,
            ),
            (
                "_RINvNtCsgEmfK2I1SDS_4core3ptr13drop_in_placeNtCs1_7sigcoro4ThingEB2_",
                false,
            ),
            (
                "_RNvXCs1_7sigcoroNtB2_5AllocNtNtNtCs2_4core5alloc6global11GlobalAlloc5alloc",
                false,
            ),
            ("_RNvC5alloc3foo", false),
            ("_RNvCs_14rustc_demangle3foo", false),
            ("_RNvCsgY6Mt91CT9J_14rustc_demangle3foo", false),
            ("_RNvCs1_4test3foo", false),
            ("_Rfoo", false),
            ("_R", false),
        ];
        for &(name, expected) in table {
            assert_eq!(is_vouched_symbol(name.as_bytes()), expected, "{name}");
        }
    }

    #[test]
    fn legacy_names_are_demangled() {
        assert_eq!(
            demangle(
                legacy(
                    &["_$LT$std..io..Stdout$u20$as$u20$core..fmt..Write$GT$", "write_str"],
                    ""
                )
                .as_bytes()
            ),
            "<std::io::Stdout as core::fmt::Write>::write_str"
        );
        assert_eq!(
            demangle(legacy(&["sigcoro", "main", "_$u7b$$u7b$closure$u7d$$u7d$"], ".llvm.5").as_bytes()),
            "sigcoro::main::{{closure}}"
        );
        assert_eq!(demangle(b"malloc"), "malloc");
    }

    #[test]
    fn ranges_are_merged_and_refused_code_cut_out() {
        assert_eq!(merge(vec![(5, 8), (1, 3), (3, 4), (7, 9)]), vec![(1, 4), (5, 9)]);
        let good = [(0, 10), (20, 30), (40, 50)];
        let bad = [(2, 3), (5, 6), (25, 45), (49, 60)];
        assert_eq!(subtract(&good, &bad), vec![(0, 2), (3, 5), (6, 10), (20, 25), (45, 49)]);
    }

    #[inline(never)]
    fn a_vouched_function() -> usize {
        std::hint::black_box(7)
    }

    #[test]
    fn the_running_executable_is_mapped() {
        let map = init().expect("code map");
        assert!(get().is_some());
        let here = a_vouched_function as *const () as usize;
        assert!(map.vouched(here));
        let (name, offset) = map.function_at(here + 1).expect("named");
        assert_eq!(offset, 1);
        assert!(name.ends_with("tests::a_vouched_function"), "{name}");
        // std in the executable, and libc in a shared object, are refused.
        let stdout = std::io::stdout as fn() -> std::io::Stdout as usize;
        assert!(!map.vouched(stdout));
        assert!(!map.vouched(libc::malloc as *const () as usize));
        assert!(!map.vouched(0));
        assert!(!map.vouched(usize::MAX));
    }
}
