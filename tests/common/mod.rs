//! Helpers shared by several integration-test binaries; each binary uses only some of them.

pub mod sound;
