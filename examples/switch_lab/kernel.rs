//! Handoffs that go through the kernel: two threads waking each other with a futex, two
//! processes ping-ponging a byte over pipes, and the floor under both, one trivial syscall.

use crate::harness::{self, Stats};
use std::hint::black_box;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The first argument that makes this binary the far end of the pipe rows.
pub const PIPE_CHILD_ARG: &str = "--pipe-child";

/// `n` calls of `getppid`, the cheapest syscall there is (nothing cached in user space).
pub fn syscall_loop(n: u64) -> Duration {
    let t = Instant::now();
    for _ in 0..n {
        // SAFETY: getppid has no arguments and no side effects.
        black_box(unsafe { libc::syscall(libc::SYS_getppid) });
    }
    t.elapsed()
}

/// Whose turn it is in the futex ping-pong.
const PING: u32 = 0;
const PONG: u32 = 1;
const QUIT: u32 = 2;

fn futex_wait(word: &AtomicU32, expected: u32) {
    // SAFETY: FUTEX_WAIT on a live, aligned u32 that only this process uses; it returns at
    // once if the word no longer holds `expected`, and spurious returns are handled by callers.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            std::ptr::null::<libc::timespec>(),
        )
    };
}

fn futex_wake(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE on a live, aligned u32; it only wakes waiters on that address.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            1,
        )
    };
}

/// Two OS threads handing a turn back and forth through a futex, never spinning: each handoff
/// is a store, a `FUTEX_WAKE` and the other side's return from `FUTEX_WAIT`. The measuring
/// thread is restricted to `ping_cpus`, the other to `pong_cpus` (empty: leave the mask as
/// the process started). One iteration is a round trip: two handoffs.
pub fn futex_threads(reps: usize, ping_cpus: &[usize], pong_cpus: &[usize]) -> Stats {
    let all = harness::allowed_cpus();
    let mask = |cpus: &[usize]| if cpus.is_empty() { all.clone() } else { cpus.to_vec() };
    harness::set_affinity(&mask(ping_cpus)).expect("setting the measuring thread's CPUs");
    let turn = Arc::new(AtomicU32::new(PING));
    let pong_turn = turn.clone();
    let pong_mask = mask(pong_cpus);
    let pong = std::thread::spawn(move || {
        harness::set_affinity(&pong_mask).expect("setting the other thread's CPUs");
        loop {
            match pong_turn.load(Ordering::Acquire) {
                PONG => {
                    pong_turn.store(PING, Ordering::Release);
                    futex_wake(&pong_turn);
                }
                QUIT => return,
                _ => futex_wait(&pong_turn, PING),
            }
        }
    });
    let stats = harness::bench(reps, 2.0, |n| {
        let t = Instant::now();
        for _ in 0..n {
            turn.store(PONG, Ordering::Release);
            futex_wake(&turn);
            while turn.load(Ordering::Acquire) != PING {
                futex_wait(&turn, PONG);
            }
        }
        t.elapsed()
    });
    turn.store(QUIT, Ordering::Release);
    futex_wake(&turn);
    pong.join().expect("the futex thread");
    stats
}

/// The far end of the pipe rows: echo each byte from stdin to stdout until stdin closes.
pub fn pipe_child() -> ! {
    let (mut input, mut output) = (std::io::stdin().lock(), std::io::stdout().lock());
    let mut b = [0u8; 1];
    while let Ok(1) = input.read(&mut b) {
        // A 1-byte write into the line-buffered stdout, then flush: one write(2) per byte.
        if output.write_all(&b).and_then(|_| output.flush()).is_err() {
            break;
        }
    }
    std::process::exit(0)
}

/// Two processes (this one and a child running this binary as [`pipe_child`]) passing one
/// byte back and forth over two pipes. The child inherits the CPUs of the measuring thread,
/// which are `cpus` (empty: all). One iteration is a round trip: two handoffs.
pub fn pipe_processes(reps: usize, cpus: &[usize]) -> Stats {
    let all = harness::allowed_cpus();
    harness::set_affinity(if cpus.is_empty() { &all } else { cpus }).expect("setting CPUs");
    let exe = std::env::current_exe().expect("the lab's own path");
    let mut child: Child = Command::new(exe)
        .arg(PIPE_CHILD_ARG)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting the pipe child (this binary)");
    let mut to = child.stdin.take().expect("child stdin");
    let mut from = child.stdout.take().expect("child stdout");
    let stats = harness::bench(reps, 2.0, |n| {
        let mut b = [7u8; 1];
        let t = Instant::now();
        for _ in 0..n {
            to.write_all(&b).expect("writing to the pipe child");
            from.read_exact(&mut b).expect("reading from the pipe child");
        }
        t.elapsed()
    });
    drop(to);
    let _ = child.wait();
    stats
}
