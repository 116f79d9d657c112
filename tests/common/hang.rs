//! Guards that turn a hang (a coroutine that never wakes, a deadlock) into a test failure.

use std::panic;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Runs `f` on a fresh thread and fails the test if it has not finished within `limit`. A
/// panic inside `f` reaches the caller with its own payload.
pub fn with_timeout<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let handle = thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => {
            handle.join().expect("the test thread ended cleanly");
            v
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("the test did not finish within {limit:?} (hang?)"),
        Err(mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
            Err(payload) => panic::resume_unwind(payload),
            Ok(()) => unreachable!("the thread sent nothing but ended cleanly"),
        },
    }
}

/// [`with_timeout`] with 30 s, for tests whose failure mode is a deadlock.
pub fn no_hang<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    with_timeout(Duration::from_secs(30), f)
}

/// Sets `stop` after `limit`, so spinning work that should have been stopped by the test
/// itself ends anyway and the test fails instead of hanging. Its thread returns whether it was
/// the one that set `stop`; it returns early (false) once `stop` is set by someone else.
pub fn watchdog(stop: Arc<AtomicBool>, limit: Duration) -> thread::JoinHandle<bool> {
    thread::spawn(move || {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if stop.load(Ordering::Relaxed) {
                return false;
            }
            thread::sleep(Duration::from_millis(5));
        }
        stop.store(true, Ordering::Relaxed);
        true
    })
}

/// Aborts the process if the test is still running after `secs` seconds (a hang in a test that
/// runs in the test binary itself, where only the whole process can be ended). Dropping it
/// disarms it.
pub struct AbortAfter(Arc<AtomicBool>);

impl AbortAfter {
    pub fn new(secs: u64, what: &'static str) -> AbortAfter {
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        thread::spawn(move || {
            let end = Instant::now() + Duration::from_secs(secs);
            while !d.load(Ordering::SeqCst) {
                if Instant::now() > end {
                    eprintln!("watchdog: {what} still running after {secs} s");
                    std::process::abort();
                }
                thread::sleep(Duration::from_millis(20));
            }
        });
        AbortAfter(done)
    }
}

impl Drop for AbortAfter {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Runs the tests that take it one at a time: tests that count which worker ran what must not
/// share the CPUs with another test's spinning workers.
pub fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}
