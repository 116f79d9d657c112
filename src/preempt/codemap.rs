//! STUB (replaced by the code-map helper's module at merge).
#![allow(dead_code)]

pub(crate) struct CodeMap;

pub(crate) fn init() -> Result<&'static CodeMap, &'static str> {
    static MAP: CodeMap = CodeMap;
    Ok(&MAP)
}

pub(crate) fn get() -> Option<&'static CodeMap> {
    static MAP: CodeMap = CodeMap;
    Some(&MAP)
}

impl CodeMap {
    pub(crate) fn vouched(&self, _pc: usize) -> bool {
        false
    }
    pub(crate) fn function_at(&self, _pc: usize) -> Option<(String, usize)> {
        None
    }
}
