//! What a failed stack reservation ran into: the mapping count, the address-space limit, strict
//! overcommit, or memory itself, so that the error names the real cause and its way out.

use std::io;

/// How close to `vm.max_map_count` the process must be for a refusal to be blamed on it: one
/// new reservation is one mapping, a guard page by `mprotect` two.
const MAP_SLACK: usize = 8;

/// Wraps a failed mmap/madvise/mprotect of `wanted` bytes (0 when it maps nothing new) in an
/// error that names what was being done and, for `ENOMEM`, which limit the kernel hit.
pub(crate) fn limit_error(what: &str, wanted: usize, err: io::Error) -> io::Error {
    let maps = count_maps();
    let max_maps = read("/proc/sys/vm/max_map_count").and_then(|s| s.parse::<usize>().ok());
    let show = |v: Option<usize>| v.map_or_else(|| "?".to_string(), |v| v.to_string());
    let cause = if err.raw_os_error() == Some(libc::ENOMEM) {
        diagnose(wanted, maps, max_maps)
    } else {
        format!(
            "The process has {} memory mappings against vm.max_map_count = {}. Ways out: raise \
             vm.max_map_count (sysctl -w vm.max_map_count=N), use smaller stacks, or run fewer \
             coroutines at once",
            show(maps),
            show(max_maps)
        )
    };
    io::Error::new(err.kind(), format!("{what} failed: {err}. {cause}"))
}

/// Which limit an `ENOMEM` came from, in the order the kernel checks them.
fn diagnose(wanted: usize, maps: Option<usize>, max_maps: Option<usize>) -> String {
    if let (Some(m), Some(max)) = (maps, max_maps)
        && m + MAP_SLACK >= max
    {
        return format!(
            "The process has {m} memory mappings against vm.max_map_count = {max}, so the kernel \
             refuses new ones. Ways out: raise vm.max_map_count (sysctl -w vm.max_map_count=N), or \
             run fewer coroutines at once"
        );
    }
    if let Some(limit) = address_space_limit() {
        let size = vm_size();
        if size.is_none_or(|s| s.saturating_add(wanted) > limit) {
            let size = size.map_or_else(|| "?".to_string(), |s| s.to_string());
            return format!(
                "The process's address-space limit (RLIMIT_AS, `ulimit -v`) is {limit} bytes and \
                 {size} are mapped, so {wanted} more do not fit (coroutine stacks take address space \
                 when they are reserved; their memory is committed only as they use it). Ways out: \
                 raise the limit (ulimit -v), use smaller stacks (Builder::stack_size, \
                 RuntimeBuilder::stack_size), or run fewer coroutines at once"
            );
        }
    }
    if read("/proc/sys/vm/overcommit_memory").as_deref() == Some("2") {
        return format!(
            "vm.overcommit_memory = 2 (strict accounting) counts every reserved stack in full \
             against CommitLimit (see /proc/meminfo), although a stack is committed only as it \
             is used; {wanted} more bytes did not fit. Ways out: use smaller stacks, run fewer \
             coroutines at once, or allow overcommit (sysctl -w vm.overcommit_memory=0)"
        );
    }
    format!(
        "The process has {} memory mappings against vm.max_map_count = {} and no address-space \
         limit in the way: the kernel is short of memory. Ways out: free memory, use smaller \
         stacks, or run fewer coroutines at once",
        maps.map_or_else(|| "?".to_string(), |v| v.to_string()),
        max_maps.map_or_else(|| "?".to_string(), |v| v.to_string()),
    )
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

fn count_maps() -> Option<usize> {
    std::fs::read_to_string("/proc/self/maps")
        .ok()
        .map(|s| s.lines().count())
}

/// The soft `RLIMIT_AS` in bytes, if there is one.
fn address_space_limit() -> Option<usize> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut lim) } != 0 || lim.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    Some(lim.rlim_cur as usize)
}

/// The process's mapped address space in bytes (`VmSize`), if /proc says.
fn vm_size() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = status.lines().find_map(|l| l.strip_prefix("VmSize:"))?;
    let kb: usize = kb.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024)
}
