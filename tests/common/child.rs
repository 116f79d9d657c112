//! Tests that need a process of their own (a process-wide setting, a signal that kills, a
//! crash) re-run their test binary with only themselves selected, and the child does the work.

use std::fmt;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

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

/// How a child ended, and what it printed.
pub struct Outcome {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl fmt::Debug for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "child {:?} after {:.1?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.elapsed, self.stdout, self.stderr
        )
    }
}

/// A resource limit for [`run`]: `RLIMIT_*` and the value set as both the soft and the hard
/// limit in the child.
pub type Limit = (libc::__rlimit_resource_t, libc::rlim_t);

/// Re-runs this binary with only `test` selected, as its child, without core dumps and with
/// `limits` set (by `setrlimit` between fork and exec); kills it after `timeout`, which fails
/// the test (it is a hang guard, never a measure of speed).
pub fn run(test: &str, timeout: Duration, limits: &[Limit]) -> Outcome {
    run_full(test, timeout, limits, &[])
}

/// [`run`] without limits, with the variables `env` set in the child.
pub fn run_with_env(test: &str, timeout: Duration, env: &[(&str, &str)]) -> Outcome {
    run_full(test, timeout, &[], env)
}

/// [`run`] with the variables `env` set in the child too.
pub fn run_full(test: &str, timeout: Duration, limits: &[Limit], env: &[(&str, &str)]) -> Outcome {
    let mut cmd = child_command(test);
    cmd.envs(env.iter().copied());
    cmd.arg("--include-ignored")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut all = vec![(libc::RLIMIT_CORE, 0)];
    all.extend_from_slice(limits);
    // SAFETY: the hook runs between fork and exec, where only async-signal-safe calls are
    // allowed: setrlimit is one, and it touches nothing of the parent's state (the vector was
    // made before the fork and is only read).
    unsafe {
        cmd.pre_exec(move || {
            for &(resource, value) in &all {
                let limit = libc::rlimit {
                    rlim_cur: value,
                    rlim_max: value,
                };
                if libc::setrlimit(resource, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let (status, stdout, stderr, elapsed) = spawn_and_wait(&mut cmd, timeout);
    let out = Outcome {
        status: status.unwrap_or_else(|| ExitStatus::from_raw(libc::SIGKILL)),
        stdout,
        stderr,
        elapsed,
    };
    assert!(status.is_some(), "the child did not finish within {timeout:?}: {out:?}");
    out
}

/// Spawns `cmd` (its stdout and stderr piped), reads both to the end and waits for it; kills it
/// after `timeout` (the status is then `None`). Returns the status, stdout, stderr and how long
/// it ran.
pub fn spawn_and_wait(cmd: &mut Command, timeout: Duration) -> (Option<ExitStatus>, String, String, Duration) {
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawning the child");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped")));
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the child") {
            break Some(status);
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(10));
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    (status, stdout, stderr, start.elapsed())
}
