//! Walks of live stacks (no frame pointers), checked against libgcc's unwinder, and walks from
//! a signal handler.

use super::{Refusal, Regs, Verdict, walk, walk_frames};
use crate::preempt::codemap::{self, CodeMap};
use std::ffi::{c_int, c_void};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// This thread's stack, `[lo, hi)`.
fn stack_bounds() -> (usize, usize) {
    let mut attr = std::mem::MaybeUninit::<libc::pthread_attr_t>::uninit();
    let (mut addr, mut size) = (std::ptr::null_mut(), 0);
    // SAFETY: queries this thread's attributes into a local, read back, then destroyed.
    unsafe {
        assert_eq!(libc::pthread_getattr_np(libc::pthread_self(), attr.as_mut_ptr()), 0);
        assert_eq!(libc::pthread_attr_getstack(attr.as_ptr(), &mut addr, &mut size), 0);
        libc::pthread_attr_destroy(attr.as_mut_ptr());
    }
    (addr as usize, addr as usize + size)
}

/// The region entry: calls `f` with the CFA `f`'s frame will have. A CFA is the caller's `rsp`
/// just before its `call`; this function's frame is fixed after its prologue (nothing is
/// pushed to pass two register arguments), so the `rsp` read here is the one at the call, and
/// the callee finds its return address at `rsp - 8`. `the_walk_matches_libgcc` checks that.
#[inline(never)]
fn region(f: &mut dyn FnMut(usize)) {
    let sp: usize;
    // SAFETY: reads rsp only.
    unsafe { std::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags)) };
    f(sp);
    black_box(());
}

#[inline(never)]
fn level1(act: &mut dyn FnMut()) {
    level2(act);
    black_box(());
}

#[inline(never)]
fn level2(act: &mut dyn FnMut()) {
    level3(act);
    black_box(());
}

#[inline(never)]
fn level3(act: &mut dyn FnMut()) {
    act();
    black_box(());
}

/// What a walk from [`probe`] found.
struct Probe {
    verdict: Verdict,
    /// `(pc, cfa)` of each frame the walk visited.
    frames: Vec<(usize, usize)>,
    /// The return addresses libgcc's unwinder reports from the same function.
    libgcc: Vec<usize>,
    /// The word at `region_cfa - 8`: the return address into [`region`], if the off-by-8
    /// reasoning holds.
    region_ra: usize,
}

/// Walks from here (its exact pc and registers) up to `region_cfa`.
#[inline(never)]
fn probe(region_cfa: usize) -> Probe {
    let (pc, sp, bp): (usize, usize, usize);
    // SAFETY: reads rip, rsp and rbp only.
    unsafe {
        std::arch::asm!(
            "lea {pc}, [rip]", "mov {sp}, rsp", "mov {bp}, rbp",
            pc = out(reg) pc, sp = out(reg) sp, bp = out(reg) bp,
            options(nomem, nostack, preserves_flags),
        )
    };
    let map = codemap::init().expect("code map");
    let (lo, hi) = stack_bounds();
    let mut frames = Vec::new();
    // SAFETY: the registers are this function's own, on this thread's stack [lo, hi).
    let verdict = unsafe {
        walk_frames(map, Regs { pc, sp, bp }, lo, hi, region_cfa, |pc, cfa| {
            frames.push((pc, cfa))
        })
    };
    let libgcc = libgcc_backtrace();
    // SAFETY: region_cfa - 8 lies in the live frames above this one on this thread's stack.
    let region_ra = unsafe { *((region_cfa - 8) as *const usize) };
    Probe {
        verdict,
        frames,
        libgcc,
        region_ra,
    }
}

fn describe(map: &CodeMap, pcs: impl IntoIterator<Item = usize>) -> String {
    let mut s = String::new();
    for pc in pcs {
        let (name, off) = map.function_at(pc.wrapping_sub(1)).unwrap_or(("?".into(), 0));
        s += &format!(
            "\n  {pc:#x} {name}+{} vouched={}",
            off + 1,
            map.vouched(pc.wrapping_sub(1))
        );
    }
    s
}

unsafe extern "C" {
    fn _Unwind_Backtrace(trace: extern "C" fn(*mut c_void, *mut c_void) -> c_int, arg: *mut c_void) -> c_int;
    fn _Unwind_GetIP(ctx: *mut c_void) -> usize;
}

extern "C" fn collect_ip(ctx: *mut c_void, arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the Vec passed by `libgcc_backtrace`, `ctx` libgcc's frame context.
    let (ips, ip) = unsafe { (&mut *arg.cast::<Vec<usize>>(), _Unwind_GetIP(ctx)) };
    ips.push(ip);
    c_int::from(ips.len() >= 64) // non-zero stops the trace
}

#[inline(never)]
fn libgcc_backtrace() -> Vec<usize> {
    let mut ips = Vec::with_capacity(64);
    // SAFETY: the callback only pushes to `ips`, which outlives the call.
    unsafe { _Unwind_Backtrace(collect_ip, (&raw mut ips).cast()) };
    ips
}

/// Runs `probe` at the bottom of region → closure → level1 → level2 → level3 → closure.
fn probe_in_chain() -> Probe {
    let mut result = None;
    region(&mut |cfa| level1(&mut || result = Some(probe(cfa))));
    result.expect("probed")
}

#[test]
fn a_vouched_chain_is_vouched() {
    let map = codemap::init().expect("code map");
    let p = probe_in_chain();
    let trace = describe(map, p.frames.iter().map(|f| f.0));
    assert_eq!(p.verdict, Verdict::Vouched, "{trace}");
    // probe, the inner closure, level3..1, the region closure (some may be tail calls).
    assert!(p.frames.len() >= 4, "{trace}");
}

#[test]
fn the_walk_matches_libgcc() {
    let map = codemap::init().expect("code map");
    let p = probe_in_chain();
    assert_eq!(p.verdict, Verdict::Vouched);
    let ours: Vec<usize> = p.frames[1..].iter().map(|f| f.0).collect();
    let libgcc = &p.libgcc;
    let msg = format!(
        "ours:{}\nlibgcc:{}",
        describe(map, ours.clone()),
        describe(map, libgcc.clone())
    );
    let at = libgcc.windows(ours.len()).position(|w| w == ours.as_slice());
    let at = at.unwrap_or_else(|| panic!("our return addresses are not libgcc's\n{msg}"));
    // The frame after ours is the region entry's: its return address is at region_cfa - 8.
    assert_eq!(libgcc.get(at + ours.len()), Some(&p.region_ra), "{msg}");
    let (name, _) = map.function_at(p.region_ra - 1).expect("named");
    assert!(name.ends_with("unwind::tests::region"), "{name}\n{msg}");
}

/// Every vouched range starts a function whose row there is the entry row (CFA = rsp + 8, the
/// return address at CFA - 8), and inside it the row is one the walk can follow.
#[test]
fn vouched_code_has_usable_rows() {
    use super::cfi::{CfiError, Rule};
    let map = codemap::init().expect("code map");
    let (mut unusable, mut missing) = (Vec::new(), 0);
    for &(start, end) in map.vouched_ranges() {
        let row = map.eh().row_for(start);
        let entry = row.is_ok_and(|r| r.usable() && !r.cfa_on_rbp() && r.cfa_off == 8 && r.ra == Rule::Offset(-8));
        let mid = start + (end - start) / 2;
        match map.eh().row_for(mid) {
            Ok(r) if r.usable() && entry => {}
            Err(CfiError::NoInfo) => missing += 1,
            other => unusable.push((start, mid, row, other)),
        }
    }
    let names: Vec<_> = unusable
        .iter()
        .take(10)
        .map(|u| (map.function_at(u.0), u.2, u.3))
        .collect();
    eprintln!(
        "{} vouched ranges, {missing} without unwind info",
        map.vouched_ranges().len()
    );
    assert!(unusable.is_empty(), "{} unusable: {names:?}", unusable.len());
}

/// A comparator called from core's sort: the sort's frames are not vouched.
#[test]
fn a_std_frame_in_the_chain_is_refused() {
    let map = codemap::init().expect("code map");
    let mut result = None;
    region(&mut |cfa| {
        let mut v: Vec<u64> = (0..300).map(|i| (i * 7919) % 301).collect();
        v.sort_by(|a, b| {
            if result.is_none() {
                result = Some(probe(cfa));
            }
            a.cmp(b)
        });
        black_box(&v);
    });
    let p = result.expect("probed");
    let trace = describe(map, p.frames.iter().map(|f| f.0));
    let Verdict::Refused(Refusal::NotVouched { pc }) = p.verdict else {
        panic!("{:?}{trace}", p.verdict);
    };
    let (name, _) = map.function_at(pc - 1).expect("named");
    assert!(
        name.starts_with("core::") || name.starts_with("alloc::"),
        "{name}{trace}"
    );
}

/// Prints the cost of a walk over five frames (bench, the inner closure, level3..1 and the
/// region closure: the walk visits six CFAs).
#[test]
fn walk_cost() {
    let map = codemap::init().expect("code map");
    let (lo, hi) = stack_bounds();
    let mut report = None;
    region(&mut |cfa| level1(&mut || report = Some(bench(map, lo, hi, cfa))));
    let (frames, ns) = report.expect("measured");
    eprintln!("walk of {frames} frames: {ns:.0} ns");
}

#[inline(never)]
fn bench(map: &CodeMap, lo: usize, hi: usize, region_cfa: usize) -> (usize, f64) {
    let (pc, sp, bp): (usize, usize, usize);
    // SAFETY: reads rip, rsp and rbp only.
    unsafe {
        std::arch::asm!(
            "lea {pc}, [rip]", "mov {sp}, rsp", "mov {bp}, rbp",
            pc = out(reg) pc, sp = out(reg) sp, bp = out(reg) bp,
            options(nomem, nostack, preserves_flags),
        )
    };
    let regs = Regs { pc, sp, bp };
    let mut frames = 0;
    // SAFETY: this function's own registers, on this thread's stack.
    let verdict = unsafe { walk_frames(map, regs, lo, hi, region_cfa, |_, _| frames += 1) };
    assert_eq!(verdict, Verdict::Vouched);
    const N: u32 = 20_000;
    let start = Instant::now();
    for _ in 0..N {
        // SAFETY: as above; the frames above this one are unchanged.
        black_box(unsafe { walk(map, black_box(regs), lo, hi, region_cfa) });
    }
    (frames, start.elapsed().as_nanos() as f64 / f64::from(N))
}

// The signal-driven test: the spinner's stack and region, and the handler's tallies.
static SIG_LO: AtomicUsize = AtomicUsize::new(0);
static SIG_HI: AtomicUsize = AtomicUsize::new(0);
static SIG_REGION: AtomicUsize = AtomicUsize::new(0);
static SIG_ACTIVE: AtomicBool = AtomicBool::new(false);
static SIG_STOP: AtomicBool = AtomicBool::new(false);
static SIG_SEEN: AtomicUsize = AtomicUsize::new(0);
static SIG_VOUCHED: AtomicUsize = AtomicUsize::new(0);
static SIG_REFUSED: AtomicUsize = AtomicUsize::new(0);
/// Refused as `NotVouched`, `PastRegion`, anything else.
static SIG_NOT_VOUCHED: AtomicUsize = AtomicUsize::new(0);
static SIG_PAST: AtomicUsize = AtomicUsize::new(0);
static SIG_OTHER: AtomicUsize = AtomicUsize::new(0);
/// Vouched although the interrupted instruction is not: must stay 0.
static SIG_WRONG: AtomicUsize = AtomicUsize::new(0);
/// The interrupted pc of the last refusal counted in SIG_OTHER, for the failure message.
static SIG_OTHER_PC: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_signal(_sig: c_int, _info: *mut libc::siginfo_t, ctx: *mut c_void) {
    SIG_SEEN.fetch_add(1, Relaxed);
    let Some(map) = codemap::get() else { return };
    if !SIG_ACTIVE.load(Relaxed) {
        return;
    }
    // SAFETY: an SA_SIGINFO handler's third argument is the interrupted ucontext_t.
    let g = unsafe { &(*ctx.cast::<libc::ucontext_t>()).uc_mcontext.gregs };
    let pc = g[libc::REG_RIP as usize] as usize;
    let regs = Regs {
        pc,
        sp: g[libc::REG_RSP as usize] as usize,
        bp: g[libc::REG_RBP as usize] as usize,
    };
    let (lo, hi, cfa) = (SIG_LO.load(Relaxed), SIG_HI.load(Relaxed), SIG_REGION.load(Relaxed));
    // SAFETY: the interrupted context of this thread, whose stack is [lo, hi).
    match unsafe { walk(map, regs, lo, hi, cfa) } {
        Verdict::Vouched => {
            SIG_VOUCHED.fetch_add(1, Relaxed);
            if !map.vouched(pc) {
                SIG_WRONG.fetch_add(1, Relaxed);
            }
        }
        Verdict::Refused(why) => {
            SIG_REFUSED.fetch_add(1, Relaxed);
            match why {
                Refusal::NotVouched { .. } => SIG_NOT_VOUCHED.fetch_add(1, Relaxed),
                Refusal::PastRegion => SIG_PAST.fetch_add(1, Relaxed),
                _ => {
                    SIG_OTHER_PC.store(pc, Relaxed);
                    SIG_OTHER.fetch_add(1, Relaxed)
                }
            };
        }
    }
}

#[inline(never)]
fn spin_vouched(n: u64) -> u64 {
    let mut x = n;
    for _ in 0..n {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        x ^= x >> 29;
    }
    x
}

#[inline(never)]
fn std_work(v: &mut [u64]) -> u64 {
    v.sort_by(|a, b| b.cmp(a));
    v.sort_unstable();
    let t = Instant::now();
    v.len() as u64 + t.elapsed().subsec_nanos() as u64
}

#[test]
fn walks_from_a_signal_handler() {
    codemap::init().expect("code map");
    let sig = libc::SIGRTMIN() + 5;
    // SAFETY: a fully initialised action for a signal no other test of this binary uses;
    // the old action is restored at the end.
    let old = unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_signal as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        let mut old: libc::sigaction = std::mem::zeroed();
        assert_eq!(libc::sigaction(sig, &action, &mut old), 0);
        old
    };
    let spinner = std::thread::spawn(|| {
        let (lo, hi) = stack_bounds();
        SIG_LO.store(lo, Relaxed);
        SIG_HI.store(hi, Relaxed);
        let mut v: Vec<u64> = (0..2000).map(|i| (i * 7919) % 2003).collect();
        let mut sum = 0u64;
        region(&mut |cfa| {
            SIG_REGION.store(cfa, Relaxed);
            SIG_ACTIVE.store(true, Relaxed);
            while !SIG_STOP.load(Relaxed) {
                sum = sum.wrapping_add(spin_vouched(5000));
                sum = sum.wrapping_add(std_work(&mut v));
            }
            SIG_ACTIVE.store(false, Relaxed);
        });
        black_box(sum);
    });
    use std::os::unix::thread::JoinHandleExt;
    let thread = spinner.as_pthread_t();
    while !SIG_ACTIVE.load(Relaxed) {
        std::thread::yield_now();
    }
    let sent = 3000;
    for _ in 0..sent {
        // SAFETY: the spinner is alive until SIG_STOP is set and it is joined.
        assert_eq!(unsafe { libc::pthread_kill(thread, sig) }, 0);
        std::thread::sleep(Duration::from_micros(20));
    }
    SIG_STOP.store(true, Relaxed);
    spinner.join().expect("spinner");
    // SAFETY: restores the action saved above.
    unsafe { libc::sigaction(sig, &old, std::ptr::null_mut()) };
    let (vouched, refused) = (SIG_VOUCHED.load(Relaxed), SIG_REFUSED.load(Relaxed));
    let counts = format!(
        "sent {sent}, seen {}, vouched {vouched}, refused {refused} (not vouched {}, past the region {}, other {} last at {:#x})",
        SIG_SEEN.load(Relaxed),
        SIG_NOT_VOUCHED.load(Relaxed),
        SIG_PAST.load(Relaxed),
        SIG_OTHER.load(Relaxed),
        SIG_OTHER_PC.load(Relaxed),
    );
    eprintln!("{counts}");
    assert!(vouched > 0 && SIG_NOT_VOUCHED.load(Relaxed) > 0, "{counts}");
    assert_eq!(SIG_WRONG.load(Relaxed), 0, "vouched at an unvouched pc: {counts}");
    assert_eq!(SIG_OTHER.load(Relaxed), 0, "{counts}");
}
