//! Execution contexts: how a stack gets its first one, and how control passes between them.
//!
//! A context is one word, the saved stack pointer of a suspended flow (the layout is in
//! `asm/x86_64.S`). [`boot`] creates the first context of a fresh stack by the signal-stack
//! trick, once per batch of new stacks; [`birth`] clones the context the trick left onto the
//! batch's other stacks; [`switch`](switch::switch) saves one context and resumes another in a
//! few instructions. This layer knows nothing of coroutines.

pub(crate) mod birth;
pub(crate) mod boot;
pub(crate) mod switch;

pub use boot::{boot_signal, set_boot_signal};
