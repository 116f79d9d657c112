//! The switch: a resumer enters a suspended context, which later leaves back to it.
//!
//! The machine code is the inline template `asm/x86_64_switch.inc`. Inline, no function call
//! happens and the compiler saves only the registers live around each use. Entering is a
//! `call` and leaving a `ret` to just after it, so the return-stack predictor sees matched pairs
//! and neither direction mispredicts: a context always suspends back to the stack it was
//! resumed from. Two words cross every switch in registers, a value and a tag, so small values
//! never touch memory on the way.
//!
//! MXCSR and the x87 control word are callee-saved by the ABI but are not switched: Rust code
//! never changes them, and reloading both costs about 4 ns per switch. Code that changes them
//! (through FFI) must restore them before it suspends.

use core::arch::asm;
use core::mem::offset_of;

/// The two saved stack pointers of a context pair. `ctx` is valid while the context is
/// suspended, `parent` while it runs (it is where it will suspend back to).
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct Link {
    /// The suspended context's rsp; `[ctx]` is the address it resumes at.
    pub ctx: usize,
    /// The rsp of whoever resumed it, valid while it runs.
    pub parent: usize,
}

/// What crosses a switch: a value word and a tag word, both carried in registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Transfer {
    pub value: usize,
    pub tag: usize,
}

/// Resumes the context suspended in `link`, passing `sent`; returns what it passes when it
/// suspends back.
///
/// # Safety
///
/// `link.ctx` must be a context that is suspended (left by [`suspend`], or born by the boot
/// handler) on a stack that is still mapped, and nothing else may resume it meanwhile.
#[inline(always)]
pub(crate) unsafe fn resume(link: *mut Link, sent: Transfer) -> Transfer {
    let (value, tag, sp): (usize, usize, usize);
    // SAFETY: the caller guarantees `link.ctx` is a live suspended context. The template pushes
    // rbx, calls into the context, and pops rbx when it returns here; every other register is
    // declared clobbered.
    unsafe {
        asm!(
            include_str!("../../asm/x86_64_switch.inc"),
            resume = const 1,
            ctx = const offset_of!(Link, ctx),
            parent = const offset_of!(Link, parent),
            inout("rdi") sent.value => value,
            inout("rcx") sent.tag => tag,
            inout("rsi") link => sp,
            inout("rdx") (*link).ctx => _,
            out("r12") _, out("r13") _, out("r14") _, out("r15") _,
            clobber_abi("sysv64"),
        );
        (*link).ctx = sp;
    }
    Transfer { value, tag }
}

/// Suspends the running context back to whoever resumed it, passing `sent`; returns what the
/// next [`resume`] of `link` passes.
///
/// # Safety
///
/// The caller must be running on the stack of the context `link` describes, resumed through
/// `link` (so `link.parent` is its resumer, waiting). Whoever resumes it later must do so while
/// every frame on this stack is still alive.
#[inline(always)]
pub(crate) unsafe fn suspend(link: *mut Link, sent: Transfer) -> Transfer {
    let (value, tag): (usize, usize);
    // SAFETY: the caller guarantees we run in the context `link` describes; the template saves
    // rbp, rbx and the resume address on our stack, and every other register is clobbered.
    unsafe {
        asm!(
            include_str!("../../asm/x86_64_switch.inc"),
            resume = const 0,
            ctx = const offset_of!(Link, ctx),
            parent = const offset_of!(Link, parent),
            inout("rdi") sent.value => value,
            inout("rcx") sent.tag => tag,
            inout("rdx") link => _,
            out("r12") _, out("r13") _, out("r14") _, out("r15") _,
            clobber_abi("sysv64"),
        );
    }
    Transfer { value, tag }
}
