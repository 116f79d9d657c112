//! glibc's own context switches: `_setjmp`/`_longjmp` and `swapcontext`.
//!
//! Rust cannot call `setjmp` soundly (it has no `returns_twice`, so the optimiser may keep
//! values in registers or stack slots that the second return finds clobbered). The whole
//! setjmp/longjmp ping-pong therefore lives in one hand-written assembly function that Rust
//! calls once and that returns once: every `_setjmp` that returns twice is called from
//! assembly, and the only state that crosses a jump is in callee-saved registers that glibc's
//! `_setjmp` saves and `_longjmp` restores.
//!
//! `swapcontext` needs no such care: from each side it is a call that returns once.

use std::time::{Duration, Instant};

extern "C" {
    fn _setjmp(env: *mut u64) -> i32;
    fn _longjmp(env: *mut u64, val: i32) -> !;
    /// `n` round trips main -> co -> main, each side saving itself with `_setjmp` and
    /// jumping to the other with `_longjmp`. The co side runs on `co_stack_top` (16-aligned).
    fn sigcoro_peers_sjlj_pingpong(n: u64, main: *mut u64, co: *mut u64, co_stack_top: *mut u8);
}

core::arch::global_asm!(
    ".text",
    ".globl sigcoro_peers_sjlj_pingpong",
    ".type sigcoro_peers_sjlj_pingpong,@function",
    ".p2align 4",
    "sigcoro_peers_sjlj_pingpong:",
    "push rbp", "push rbx", "push r12", "push r13", "push r14", "push r15",
    "sub rsp, 8", // 16-align rsp for the calls below
    "mov r12, rdi", "mov r13, rsi", "mov r14, rdx", "mov r15, rcx",
    // Bootstrap: save main, then start the co side on its own stack.
    "mov rdi, r13", "call {setjmp}", "test eax, eax", "jnz 3f",
    "mov rsp, r15",
    // Co side: save co, jump to main; when main jumps back, save again and return to main.
    "2:",
    "mov rdi, r14", "call {setjmp}", "test eax, eax", "jnz 2b",
    "mov rdi, r13", "mov esi, 1", "call {longjmp}",
    // Main side: save main, jump to co; resumed here by the co side's longjmp.
    "3:",
    "mov rdi, r13", "call {setjmp}", "test eax, eax", "jnz 4f",
    "mov rdi, r14", "mov esi, 1", "call {longjmp}",
    "4:",
    "dec r12", "jnz 3b",
    "add rsp, 8",
    "pop r15", "pop r14", "pop r13", "pop r12", "pop rbx", "pop rbp",
    "ret",
    ".size sigcoro_peers_sjlj_pingpong, . - sigcoro_peers_sjlj_pingpong",
    setjmp = sym _setjmp,
    longjmp = sym _longjmp,
);

/// 16-aligned memory for a coroutine stack.
fn stack(bytes: usize) -> Vec<u128> {
    vec![0u128; bytes / 16]
}

/// `n` round trips of `_setjmp`+`_longjmp` between two stacks; returns the elapsed time.
pub fn sjlj_round_trips(n: u64) -> Duration {
    let mut main = [0u64; 32]; // jmp_buf is 200 bytes on x86_64 glibc
    let mut co = [0u64; 32];
    let mut st = stack(64 * 1024);
    let top = st.as_mut_ptr_range().end.cast::<u8>();
    let t = Instant::now();
    // SAFETY: n > 0 is required by the loop (`dec; jnz`); buffers and stack outlive the call,
    // which returns once on the caller's stack with callee-saved registers restored.
    unsafe { sigcoro_peers_sjlj_pingpong(n.max(1), main.as_mut_ptr(), co.as_mut_ptr(), top) };
    t.elapsed()
}

/// Contexts shared with the `makecontext` entry (which takes no pointer argument portably).
struct Ucs {
    main: libc::ucontext_t,
    co: libc::ucontext_t,
}

thread_local!(static UCS: std::cell::Cell<*mut Ucs> = const { std::cell::Cell::new(std::ptr::null_mut()) });

extern "C" fn uc_entry() {
    let ucs = UCS.with(|c| c.get());
    loop {
        // SAFETY: `ucs` points at the live `Ucs` of `swapcontext_round_trips`, which outlives
        // every resumption of this context.
        unsafe { libc::swapcontext(&mut (*ucs).co, &(*ucs).main) };
    }
}

/// `n` round trips of `swapcontext` main -> co -> main; returns the elapsed time.
pub fn swapcontext_round_trips(n: u64) -> Duration {
    let mut st = stack(64 * 1024);
    // SAFETY: zeroed ucontexts are filled by getcontext/makecontext before use; the stack and
    // `ucs` outlive the loop; the co context is never resumed after this function returns.
    unsafe {
        let mut ucs: Box<Ucs> = Box::new(std::mem::zeroed());
        assert_eq!(libc::getcontext(&mut ucs.co), 0);
        ucs.co.uc_stack.ss_sp = st.as_mut_ptr().cast();
        ucs.co.uc_stack.ss_size = st.len() * 16;
        ucs.co.uc_link = std::ptr::null_mut();
        libc::makecontext(&mut ucs.co, uc_entry, 0);
        let p: *mut Ucs = &mut *ucs;
        UCS.with(|c| c.set(p));
        let t = Instant::now();
        for _ in 0..n {
            libc::swapcontext(&mut (*p).main, &(*p).co);
        }
        let d = t.elapsed();
        UCS.with(|c| c.set(std::ptr::null_mut()));
        d
    }
}
