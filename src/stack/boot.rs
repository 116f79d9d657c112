//! Booting new stacks in batches: carve slots from a reservation, write each one's header,
//! and give each its first context, the first of a batch by the signal-stack trick
//! (`context::boot`), the others from a clone of the context the trick left there
//! (`context::birth` says why that context, and not the frame parked after the first entry, is
//! what can be cloned). Each is entered once, so it parks idle in its trampoline loop; the pages
//! the kernel's signal frame dirtied are returned, so a booted idle stack costs one page.

use super::reserve;
use super::{HEADER_SIZE, Header, Stack, page_size};
use crate::context::birth::{self, Image};
use crate::context::boot::{born_by_trick, enter};
use std::io;
use std::ptr::NonNull;

/// Gives `n` fresh stacks of `stride` bytes their first context and appends them, idle, to
/// `out`: the first by the signal-stack trick, the others from a clone of the context the trick
/// left there (see `context::birth`), unless the trick's image is refused or the hidden
/// control sends every birth through the trick.
pub(crate) fn boot_stacks(stride: usize, n: usize, out: &mut Vec<Stack>) -> io::Result<()> {
    super::overflow::ensure_handler();
    let slots = reserve::carve(stride, n)?;
    let Some((first, rest)) = slots.split_first() else {
        return Ok(());
    };
    if birth::trick_only() {
        boot_slots(&slots, stride, out)?;
        return Ok(());
    }
    match boot_slots(std::slice::from_ref(first), stride, out)? {
        Some(image) => {
            // How deep the trick-born stack parked: every clone must park exactly as deep,
            // since its first entry ran the same instructions from the same state.
            let parked = parked_depth(out.last().expect("the trick's stack").header());
            for &slot in rest {
                let header = (slot + stride - HEADER_SIZE) as *mut Header;
                // SAFETY: the slot was just carved for us alone, guard installed, and its
                // context is not born yet; the image is the trick's, captured before entry.
                let ctx = unsafe {
                    header.write(Header::new(stride));
                    (*header).born_by_clone = true;
                    image.stamp(header as usize)
                };
                // SAFETY: `ctx` is the trick's context, cloned onto this fresh stack.
                let stack = unsafe { enter_idle(header, ctx) };
                assert_eq!(
                    parked_depth(stack.header()),
                    parked,
                    "a cloned stack parked unlike the trick-born one it was cloned from"
                );
                out.push(stack);
            }
            birth::count(0, rest.len());
            Ok(())
        }
        None => boot_slots(rest, stride, out).map(drop),
    }
}

/// Boots fresh slots (guards installed) by the trick and appends them, idle, to `out`. Returns
/// the image of the first slot's context as the trick left it, if it may be cloned.
fn boot_slots(slots: &[usize], stride: usize, out: &mut Vec<Stack>) -> io::Result<Option<Image>> {
    let ranges: Vec<(usize, usize)> = slots
        .iter()
        .map(|&slot| {
            let header = (slot + stride - HEADER_SIZE) as *mut Header;
            // SAFETY: the slot was just carved for us alone: its header area is mapped.
            unsafe { header.write(Header::new(stride)) };
            (slot + page_size(), header as usize)
        })
        .collect();
    // SAFETY: the slots are ours, fresh and mapped, headers (and so links) written.
    let contexts = unsafe { born_by_trick(&ranges) }?;
    let mut image = None;
    for (i, (&slot, &sp)) in slots.iter().zip(&contexts).enumerate() {
        let header = (slot + stride - HEADER_SIZE) as *mut Header;
        if i == 0 {
            // SAFETY: `sp` is the context the handler published for this slot's stack, which
            // nothing has resumed yet.
            image = unsafe { Image::capture(sp, slot + page_size(), header as usize) };
        }
        // SAFETY: `sp` is the context the boot handler left on this slot's stack.
        let stack = unsafe { enter_idle(header, sp) };
        // The kernel's signal frame dirtied pages the idle trampoline does not use.
        reserve::release_cold_pages(&stack);
        out.push(stack);
    }
    birth::count(slots.len(), 0);
    Ok(image)
}

/// Bytes between an idle stack's saved context and its header.
fn parked_depth(header: *mut Header) -> usize {
    // SAFETY: the header of an idle stack we own is mapped; `ctx` is its saved rsp.
    header as usize - unsafe { (*header).link.ctx }
}

/// Enters a newly born context once (see `context::boot::enter`) and returns the idle stack.
///
/// # Safety
///
/// `header` is the written header of a fresh slot that we own, and `ctx` a context on its stack
/// that resumes at the trampoline: the one the boot handler left, or its clone.
unsafe fn enter_idle(header: *mut Header, ctx: usize) -> Stack {
    // SAFETY: per the contract; the `Link` is the header's first field, at its address.
    unsafe {
        enter(&raw mut (*header).link, ctx);
        // The stack is born and idle, and we own it.
        Stack::from_header(NonNull::new_unchecked(header))
    }
}

/// Boots an idle stack of this thread's pool again, guard page included, exactly as a fresh
/// one: what the `cold creation` benchmark measures without growing memory.
#[doc(hidden)]
pub fn reboot_one_for_bench(size: usize) -> io::Result<()> {
    let size = super::validate_size(size)?;
    let stack = super::pool::take(size)?;
    let stride = stack.stride();
    let slot = reserve::slot_base(stack.into_header().as_ptr() as usize, stride);
    reserve::install_guard(slot)?;
    let mut out = Vec::with_capacity(1);
    boot_slots(&[slot], stride, &mut out)?;
    out.into_iter().for_each(super::pool::give);
    Ok(())
}
