//! glibc's own ways to switch stacks: `_setjmp`/`_longjmp`, `sigsetjmp(.., 1)`/`siglongjmp`
//! (which also save and restore the signal mask), and `swapcontext`. The approach is the one of
//! `benches/peers/src/glibc.rs`.
//!
//! Rust cannot call `setjmp` soundly (it has no `returns_twice`: the optimiser may keep values
//! in registers or stack slots that the second return finds clobbered). So each setjmp/longjmp
//! ping-pong lives in one hand-written assembly function that Rust calls once and that returns
//! once: every `setjmp` that returns twice is called from assembly, and the only state that
//! crosses a jump is in callee-saved registers, which `setjmp` saves and `longjmp` restores.
//!
//! `swapcontext` needs no such care: from each side it is a call that returns once.

use std::cell::Cell;
use std::time::{Duration, Instant};

// These are glibc's own symbols with glibc's x86_64 signatures (a jmp_buf is an array of
// words), and the two ping-pong functions defined below in assembly.
unsafe extern "C" {
    /// glibc's `sigsetjmp` (a macro for this symbol): saves the registers, and the signal mask
    /// when `savemask` is not 0 (one `rt_sigprocmask` call).
    fn __sigsetjmp(env: *mut u64, savemask: i32) -> i32;
    /// Restores the mask if `env` saved one (one `rt_sigprocmask` call), then the registers.
    fn siglongjmp(env: *mut u64, val: i32) -> !;
    fn _setjmp(env: *mut u64) -> i32;
    fn _longjmp(env: *mut u64, val: i32) -> !;
    /// `n` round trips main -> co -> main, each side saving itself with `_setjmp` and jumping
    /// to the other with `_longjmp`. The co side runs on `co_stack_top` (16-aligned).
    fn switch_lab_sjlj_pingpong(n: u64, main: *mut u64, co: *mut u64, co_stack_top: *mut u8);
    /// The same with `sigsetjmp(env, 1)` and `siglongjmp`.
    fn switch_lab_sigsjlj_pingpong(n: u64, main: *mut u64, co: *mut u64, co_stack_top: *mut u8);
}

/// Defines a ping-pong function `$name` that saves with `call $setjmp` (after `mov esi,
/// $save`) and jumps with `call $longjmp`.
macro_rules! pingpong {
    ($name:literal, $save:literal, $setjmp:path, $longjmp:path) => {
        core::arch::global_asm!(
            ".text",
            concat!(".globl ", $name),
            concat!(".type ", $name, ",@function"),
            ".p2align 4",
            concat!($name, ":"),
            "push rbp", "push rbx", "push r12", "push r13", "push r14", "push r15",
            "sub rsp, 8", // 16-align rsp for the calls below
            "mov r12, rdi", "mov r13, rsi", "mov r14, rdx", "mov r15, rcx",
            // Bootstrap: save main, then start the co side on its own stack.
            "mov rdi, r13", concat!("mov esi, ", $save), "call {setjmp}", "test eax, eax", "jnz 3f",
            "mov rsp, r15",
            // Co side: save co, jump to main; when main jumps back, save again and jump back.
            "2:",
            "mov rdi, r14", concat!("mov esi, ", $save), "call {setjmp}", "test eax, eax", "jnz 2b",
            "mov rdi, r13", "mov esi, 1", "call {longjmp}",
            // Main side: save main, jump to co; resumed here by the co side's longjmp.
            "3:",
            "mov rdi, r13", concat!("mov esi, ", $save), "call {setjmp}", "test eax, eax", "jnz 4f",
            "mov rdi, r14", "mov esi, 1", "call {longjmp}",
            "4:",
            "dec r12", "jnz 3b",
            "add rsp, 8",
            "pop r15", "pop r14", "pop r13", "pop r12", "pop rbx", "pop rbp",
            "ret",
            concat!(".size ", $name, ", . - ", $name),
            setjmp = sym $setjmp,
            longjmp = sym $longjmp,
        );
    };
}

// `_setjmp` ignores its second argument register.
pingpong!("switch_lab_sjlj_pingpong", "0", _setjmp, _longjmp);
pingpong!("switch_lab_sigsjlj_pingpong", "1", __sigsetjmp, siglongjmp);

/// 16-aligned memory for a coroutine stack.
fn stack(bytes: usize) -> Vec<u128> {
    vec![0u128; bytes / 16]
}

/// `n` round trips of `_setjmp` + `_longjmp` between two stacks; returns the elapsed time.
pub fn sjlj_round_trips(n: u64) -> Duration {
    sjlj(n, false)
}

/// `n` round trips of `sigsetjmp(.., 1)` + `siglongjmp`: two `rt_sigprocmask` calls each way.
pub fn sigsetjmp_round_trips(n: u64) -> Duration {
    sjlj(n, true)
}

fn sjlj(n: u64, mask: bool) -> Duration {
    // sigjmp_buf is 200 bytes on x86_64 glibc (registers, a flag, and a 128-byte mask).
    let mut main = [0u64; 32];
    let mut co = [0u64; 32];
    let mut st = stack(64 * 1024);
    let top = st.as_mut_ptr_range().end.cast::<u8>();
    let f = if mask {
        switch_lab_sigsjlj_pingpong
    } else {
        switch_lab_sjlj_pingpong
    };
    let t = Instant::now();
    // SAFETY: the loop needs n > 0 (`dec; jnz`); the buffers and the stack outlive the call,
    // which returns once, on the caller's stack, with the callee-saved registers restored.
    unsafe { f(n.max(1), main.as_mut_ptr(), co.as_mut_ptr(), top) };
    t.elapsed()
}

/// The contexts shared with the `makecontext` entry (which takes no pointer argument portably).
struct Ucs {
    main: libc::ucontext_t,
    co: libc::ucontext_t,
}

thread_local!(static UCS: Cell<*mut Ucs> = const { Cell::new(std::ptr::null_mut()) });

extern "C" fn uc_entry() {
    let ucs = UCS.with(|c| c.get());
    loop {
        // SAFETY: `ucs` points at the live `Ucs` of `swapcontext_round_trips`, which outlives
        // every resumption of this context.
        unsafe { libc::swapcontext(&raw mut (*ucs).co, &raw const (*ucs).main) };
    }
}

/// `n` round trips of `swapcontext` main -> co -> main; returns the elapsed time.
pub fn swapcontext_round_trips(n: u64) -> Duration {
    let mut st = stack(64 * 1024);
    // SAFETY: the zeroed ucontexts are filled by getcontext/makecontext before use; the stack
    // and `ucs` outlive the loop; the co context is never resumed after this function returns
    // (it is abandoned mid-loop, holding nothing that needs dropping).
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
            libc::swapcontext(&raw mut (*p).main, &raw const (*p).co);
        }
        let d = t.elapsed();
        UCS.with(|c| c.set(std::ptr::null_mut()));
        d
    }
}
