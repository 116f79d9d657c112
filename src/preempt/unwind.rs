//! STUB (replaced by the unwinder helper's module at merge).
#![allow(dead_code)]
use super::codemap::CodeMap;

#[derive(Clone, Copy)]
pub(crate) struct Regs {
    pub pc: usize,
    pub sp: usize,
    pub bp: usize,
}
pub(crate) enum Verdict {
    Vouched,
    Refused,
}
/// # Safety
/// stub
pub(crate) unsafe fn walk(map: &CodeMap, regs: Regs, _lo: usize, _hi: usize, _region_cfa: usize) -> Verdict {
    if map.vouched(regs.pc) {
        Verdict::Vouched
    } else {
        Verdict::Refused
    }
}
