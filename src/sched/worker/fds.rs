//! Errors of the descriptors a runtime makes, naming what was being made and the limit.

use std::io;

/// The last OS error, saying that `what` (e.g. "the epoll instance of worker 3") could not be
/// created, and, for `EMFILE`/`ENFILE`, the limit that was hit and how many descriptors the
/// process holds.
pub(crate) fn creating(what: &str) -> io::Error {
    let err = io::Error::last_os_error();
    let why = match err.raw_os_error() {
        Some(libc::EMFILE) => {
            let (soft, hard) = nofile_limit();
            format!(
                ": the process has used up its limit of {soft} open descriptors (RLIMIT_NOFILE, \
                 `ulimit -n`; hard limit {hard}); a runtime needs two per worker (an eventfd and an \
                 epoll instance). Raise the limit, use fewer workers, or close descriptors"
            )
        }
        Some(libc::ENFILE) => ": the system-wide limit of open files (fs.file-max) is reached; raise it (sysctl -w \
             fs.file-max=N) or close files"
            .to_string(),
        _ => String::new(),
    };
    io::Error::new(
        err.kind(),
        format!("sigcoro: Runtime::build: creating {what} failed: {err}{why}"),
    )
}

/// The soft and hard `RLIMIT_NOFILE`, as text ("unlimited" for none, "?" if unknown).
fn nofile_limit() -> (String, String) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return ("?".into(), "?".into());
    }
    let show = |v: libc::rlim_t| {
        if v == libc::RLIM_INFINITY {
            "unlimited".to_string()
        } else {
            v.to_string()
        }
    };
    (show(lim.rlim_cur), show(lim.rlim_max))
}
