//! Process-wide preemption settings: the `SIGCORO_PREEMPT` environment variable, and whether
//! asynchronous preemption can work in this process at all.
//!
//! `SIGCORO_PREEMPT` switches preemption for a whole process without a rebuild, as Go's
//! `GODEBUG=asyncpreemptoff=1` does:
//!
//! | value | effect |
//! | --- | --- |
//! | unset, empty or `on` | as the program asked |
//! | `noasync` | [`preemptible`](super::preemptible) regions are preempted at safe points only |
//! | `off` | no preemption at all: every runtime behaves as if built with `preempt(None)` |
//!
//! Any other value is reported once on stderr and ignored.

use std::sync::OnceLock;

/// The environment variable read once per process.
pub const ENV_VAR: &str = "SIGCORO_PREEMPT";

/// What `SIGCORO_PREEMPT` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EnvSetting {
    AsAsked,
    NoAsync,
    Off,
}

/// `SIGCORO_PREEMPT`, read on first use.
pub(crate) fn env() -> EnvSetting {
    static SETTING: OnceLock<EnvSetting> = OnceLock::new();
    *SETTING.get_or_init(|| match std::env::var(ENV_VAR) {
        Err(_) => EnvSetting::AsAsked,
        Ok(v) => match v.trim() {
            "" | "on" => EnvSetting::AsAsked,
            "noasync" => EnvSetting::NoAsync,
            "off" => EnvSetting::Off,
            other => {
                eprintln!("sigcoro: ignoring {ENV_VAR}={other:?}: the values are on, noasync and off");
                EnvSetting::AsAsked
            }
        },
    })
}

/// Whether asynchronous preemption inside [`preemptible`](super::preemptible) regions can work
/// in this process, or why not. Safe points preempt either way.
///
/// It needs the executable's symbol table (to tell Rust code outside the standard library from
/// everything else) and its `.eh_frame_hdr` (to find the callers of an interrupted instruction
/// without frame pointers); cargo keeps both in every default profile. It is off when
/// `SIGCORO_PREEMPT` is `noasync` or `off`.
pub fn async_preemption() -> Result<(), &'static str> {
    static AVAILABLE: OnceLock<Result<(), &'static str>> = OnceLock::new();
    match env() {
        EnvSetting::NoAsync => return Err("SIGCORO_PREEMPT=noasync turns asynchronous preemption off"),
        EnvSetting::Off => return Err("SIGCORO_PREEMPT=off turns preemption off"),
        EnvSetting::AsAsked => {}
    }
    *AVAILABLE.get_or_init(|| {
        super::codemap::init()?;
        super::handler::install().map_err(|_| "the preemption signal's handler could not be installed")
    })
}
