// sigcoro machine code for x86_64, System V ABI (Linux). Intel syntax, assembled by rustc's
// integrated assembler through `global_asm!` (src/context/boot.rs); no C compiler involved.
//
// The fused switch itself is not here: it is the inline template asm/x86_64_switch.inc, so the
// compiler inlines it and spills only the registers that are live at each call site.
//
// Registers, as this file and the switch template use them:
//
// | register    | ABI role            | here                                                       |
// |-------------|---------------------|------------------------------------------------------------|
// | rsp         | stack pointer       | a suspended context is one word, its rsp; [rsp] holds the  |
// |             |                     | address it resumes at                                      |
// | rbx, rbp    | callee-saved        | pushed by the switch (rustc cannot list them as clobbers)  |
// | r12-r15     | callee-saved        | clobbers of the switch: the compiler saves them if live    |
// | rsi         | 2nd argument        | the Link {{ ctx, parent }} of the context being switched   |
// | rdi         | 1st argument        | the word passed across a switch                            |
// | rdx, rax    | scratch             | the target rsp, resume addresses                           |
// | MXCSR, x87  | callee-saved (ctrl) | not switched: Rust never changes them (see the README)     |
//
// A resume enters a context with `call [ctx]` and the context leaves with `ret`: see
// asm/x86_64_switch.inc for both halves and the stack layouts. A suspended context:
//
//     [rsp + 16]  saved rbp
//     [rsp +  8]  saved rbx
//     [rsp +  0]  resume address      <- Link.ctx points here
//
// A context born by the signal-stack trick holds only the resume address, that of
// sigcoro_trampoline_start: the trampoline needs no registers and reads nothing from the stack it
// lands on, so that one word, stamped below another fresh stack's header, is a valid context
// there too (src/context/birth.rs clones it onto the rest of a batch of new stacks).

    .text

// sigcoro_boot_handler(signo: edi, info: rsi, uctx: rdx)
//
// The signal handler of the signal-stack trick. The kernel has built a signal frame on the new
// stack (installed with sigaltstack, handler flagged SA_ONSTACK) and called us on it. We leave a
// context in the red zone just below our frame, publish its address, and return: the kernel
// unwinds the frame with rt_sigreturn, but the words we left stay on the new stack, and jumping
// to them later enters sigcoro_trampoline_start there, outside any signal context.
//
// A stray delivery (the same signal sent from outside while a boot is under way) lands on some
// other stack: it fails the range check and is ignored.
    .p2align 4
    .globl sigcoro_boot_handler
    .hidden sigcoro_boot_handler
    .type sigcoro_boot_handler, @function
sigcoro_boot_handler:
    .cfi_startproc
    mov rax, qword ptr [rip + {boot_lo}]
    cmp rsp, rax
    jb 2f
    mov rax, qword ptr [rip + {boot_hi}]
    cmp rsp, rax
    jae 2f
    lea rax, [rip + sigcoro_trampoline_start]
    mov qword ptr [rsp - 16], rax
    lea rax, [rsp - 16]
    mov qword ptr [rip + {boot_sp}], rax
2:
    ret
    .cfi_endproc
    .size sigcoro_boot_handler, . - sigcoro_boot_handler

// sigcoro_trampoline_start, entered exactly once per stack, by a resume (`call [ctx]` on the
// resumer's stack) with rsi = the stack's Link, which is the start of its Header: the top of the
// usable stack, 64-byte aligned.
//
// It does what the resume half of the switch template does (save the resumer's rbp, record the
// resumer's rsp in Link.parent), then moves rsp up to the Header: the kernel's signal frame that
// sat above the boot context is dead, so those bytes are reused. Then it calls the Rust
// trampoline loop, which never returns. The return address column is undefined, so unwinders
// and backtraces stop cleanly here.
    .p2align 4
    .globl sigcoro_trampoline_start
    .hidden sigcoro_trampoline_start
    .type sigcoro_trampoline_start, @function
sigcoro_trampoline_start:
    .cfi_startproc
    .cfi_undefined rip
    push rbp
    mov qword ptr [rsi + {link_parent}], rsp
    mov rsp, rsi
    and rsp, -16
    mov rdi, rsi
    xor ebp, ebp
    call {trampoline_main}
    ud2
    .cfi_endproc
    .size sigcoro_trampoline_start, . - sigcoro_trampoline_start
