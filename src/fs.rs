//! Whole-file reads and writes that keep the worker free: `std::fs` calls run through
//! [`crate::blocking()`], so a coroutine waiting for the disk parks instead of stalling the
//! other coroutines of its worker.
//!
//! Regular files are always "ready" to epoll, so there is no readiness to wait for: the only
//! way to overlap file I/O with other coroutines is another thread.
//!
//! ```
//! let dir = std::env::temp_dir().join(format!("sigcoro-fs-doc-{}", std::process::id()));
//! let text = sigcoro::run(move || {
//!     sigcoro::fs::write(&dir, "hello").unwrap();
//!     let text = sigcoro::fs::read_to_string(&dir).unwrap();
//!     std::fs::remove_file(&dir).unwrap();
//!     text
//! });
//! assert_eq!(text, "hello");
//! ```

use crate::blocking::blocking;
use std::io;
use std::path::Path;

/// Reads the whole file at `path`, as [`std::fs::read`], on a helper thread.
pub fn read<P: AsRef<Path>>(path: P) -> io::Result<Vec<u8>> {
    let path = path.as_ref();
    blocking(|| std::fs::read(path))
}

/// Reads the whole file at `path` as UTF-8, as [`std::fs::read_to_string`], on a helper
/// thread.
pub fn read_to_string<P: AsRef<Path>>(path: P) -> io::Result<String> {
    let path = path.as_ref();
    blocking(|| std::fs::read_to_string(path))
}

/// Writes `contents` as the whole file at `path` (created or truncated), as
/// [`std::fs::write`], on a helper thread.
pub fn write<P: AsRef<Path>, C: AsRef<[u8]>>(path: P, contents: C) -> io::Result<()> {
    let (path, contents) = (path.as_ref(), contents.as_ref());
    blocking(|| std::fs::write(path, contents))
}
