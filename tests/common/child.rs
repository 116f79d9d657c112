//! Tests that need a process of their own (a process-wide setting, a signal that kills, a
//! crash) re-run their test binary with only themselves selected, and the child does the work.

use std::process::Command;

/// Names the test a child process was started for.
const CHILD_ENV: &str = "SIGCORO_TEST_CHILD";

/// Whether this process is the child that `test` started to do its work.
pub fn is_child(test: &str) -> bool {
    std::env::var(CHILD_ENV).as_deref() == Ok(test)
}

/// A command that re-runs this test binary as `test`'s child: only `test`, on one thread, its
/// output not captured.
pub fn child_command(test: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("the test binary's path"));
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, test);
    cmd
}
