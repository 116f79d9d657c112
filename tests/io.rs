//! sigcoro::io on raw fds: pipes through wait_readable, timeouts, readers and writers of one fd
//! woken separately, sigcoro::io::close waking coroutines and threads with an error, regular
//! files, bad fds, timerfd, and many waiters at once. Counts and behaviour, no time bounds
//! beyond lower ones.

mod common;

use common::rt;
use sigcoro::io::{close, wait_readable, wait_readable_timeout, wait_writable};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A non-blocking pipe.
fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: a plain syscall writing two fds into a local array.
    assert_eq!(
        unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) },
        0
    );
    // SAFETY: fresh fds we own.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn write_fd(fd: RawFd, bytes: &[u8]) -> isize {
    // SAFETY: writing from a valid slice.
    unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) }
}

fn read_fd(fd: RawFd, buf: &mut [u8]) -> isize {
    // SAFETY: reading into a valid slice.
    unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) }
}

#[test]
fn a_pipe_through_wait_readable() {
    let (r, w) = pipe();
    let got = rt(2).block_on(move || {
        let rfd = r.as_raw_fd();
        let reader = sigcoro::spawn(move || {
            let mut out = Vec::new();
            let mut buf = [0u8; 64];
            loop {
                wait_readable(rfd).unwrap();
                match read_fd(rfd, &mut buf) {
                    0 => break,
                    n if n > 0 => out.extend_from_slice(&buf[..n as usize]),
                    _ => assert_eq!(std::io::Error::last_os_error().kind(), ErrorKind::WouldBlock),
                }
            }
            drop(r);
            out
        });
        for i in 0..20u8 {
            sigcoro::sleep(Duration::from_millis(1));
            wait_writable(w.as_raw_fd()).unwrap();
            assert_eq!(write_fd(w.as_raw_fd(), &[i; 3]), 3);
        }
        drop(w); // end of file for the reader
        reader.join().unwrap()
    });
    let want: Vec<u8> = (0..20u8).flat_map(|i| [i; 3]).collect();
    assert_eq!(got, want);
}

#[test]
fn wait_readable_times_out_on_an_empty_pipe() {
    let (r, _w) = pipe();
    let fd = r.as_raw_fd();
    rt(1).block_on(move || {
        let start = Instant::now();
        let err = wait_readable_timeout(fd, Duration::from_millis(40)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TimedOut);
        assert!(start.elapsed() >= Duration::from_millis(40));
    });
    // And on a plain thread.
    let err = wait_readable_timeout(fd, Duration::from_millis(20)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut);
}

#[test]
fn close_wakes_a_waiting_coroutine_with_an_error() {
    let (r, w) = pipe();
    // One worker: once the waiter has said it is about to wait, this coroutine runs again only
    // after the waiter has parked inside wait_readable.
    rt(1).block_on(move || {
        let fd = r.as_raw_fd();
        let parked = Arc::new(AtomicBool::new(false));
        let p = parked.clone();
        let waiter = sigcoro::spawn(move || {
            p.store(true, Ordering::Release);
            wait_readable(fd)
        });
        while !parked.load(Ordering::Acquire) {
            sigcoro::sleep(Duration::from_millis(1));
        }
        sigcoro::sleep(Duration::from_millis(20));
        close(r).unwrap();
        let err = waiter.join().unwrap().unwrap_err();
        assert!(err.to_string().contains("closed by sigcoro::io::close"), "{err}");
        drop(w);
    });
}

#[test]
fn close_wakes_a_waiting_thread_with_an_error() {
    let (r, _w) = pipe();
    let fd = r.as_raw_fd();
    let tid = Arc::new(std::sync::atomic::AtomicI32::new(0));
    let t = tid.clone();
    let waiter = std::thread::spawn(move || {
        // SAFETY: a plain syscall.
        t.store(unsafe { libc::syscall(libc::SYS_gettid) } as i32, Ordering::Release);
        wait_readable(fd)
    });
    while tid.load(Ordering::Acquire) == 0 {
        std::thread::yield_now();
    }
    // Wait until the thread blocks in poll (x86_64: poll is 7, ppoll 271): it has announced its
    // wait by then.
    let syscall = format!("/proc/self/task/{}/syscall", tid.load(Ordering::Acquire));
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        let now = std::fs::read_to_string(&syscall).unwrap_or_default();
        if now.starts_with("7 ") || now.starts_with("271 ") {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    close(r).unwrap();
    let err = waiter.join().unwrap().unwrap_err();
    assert!(err.to_string().contains("closed by sigcoro::io::close"), "{err}");
}

#[test]
fn reader_and_writer_of_one_fd_wake_separately() {
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    // Fill a's send buffer so that it is not writable.
    let chunk = [0u8; 4096];
    let mut filled = 0;
    while let Ok(n) = (&a).write(&chunk) {
        filled += n;
    }
    assert!(filled > 0);
    let afd = a.as_raw_fd();
    rt(1).block_on(move || {
        let readable = Arc::new(AtomicBool::new(false));
        let writable = Arc::new(AtomicBool::new(false));
        let (r2, w2) = (readable.clone(), writable.clone());
        let reader = sigcoro::spawn(move || {
            wait_readable(afd).unwrap();
            r2.store(true, Ordering::Release);
        });
        let writer = sigcoro::spawn(move || {
            wait_writable(afd).unwrap();
            w2.store(true, Ordering::Release);
        });
        sigcoro::sleep(Duration::from_millis(10));
        assert!(!readable.load(Ordering::Acquire) && !writable.load(Ordering::Acquire));
        (&b).write_all(b"wake the reader").unwrap();
        reader.join().unwrap();
        sigcoro::sleep(Duration::from_millis(10));
        assert!(
            !writable.load(Ordering::Acquire),
            "the writer must still wait: a's buffer is full"
        );
        // Drain what a sent, making room.
        let mut buf = vec![0u8; 65536];
        let mut drained = 0;
        while drained < filled {
            match (&b).read(&mut buf) {
                Ok(n) => drained += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => sigcoro::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        writer.join().unwrap();
        assert!(writable.load(Ordering::Acquire));
        drop((a, b));
    });
}

#[test]
fn regular_files_are_always_ready_and_bad_fds_fail() {
    let file = std::fs::File::open("/proc/self/status").unwrap();
    let fd = file.as_raw_fd();
    rt(1).block_on(move || {
        wait_readable(fd).unwrap();
        wait_writable(fd).unwrap();
        drop(file);
        let err = wait_readable(-1).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBADF));
    });
}

#[test]
fn timerfd_wakes_its_waiter() {
    // SAFETY: plain syscalls on a fresh timerfd we own.
    let tfd = unsafe {
        let fd = libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC);
        assert!(fd >= 0);
        let spec = libc::itimerspec {
            it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
            it_value: libc::timespec {
                tv_sec: 0,
                tv_nsec: 15_000_000,
            },
        };
        assert_eq!(libc::timerfd_settime(fd, 0, &spec, std::ptr::null_mut()), 0);
        OwnedFd::from_raw_fd(fd)
    };
    let expirations = rt(1).block_on(move || {
        wait_readable(tfd.as_raw_fd()).unwrap();
        let mut n = 0u64;
        let mut f = std::fs::File::from(tfd);
        let mut b = [0u8; 8];
        f.read_exact(&mut b).unwrap();
        n += u64::from_ne_bytes(b);
        n
    });
    assert_eq!(expirations, 1);
}

#[test]
fn many_coroutines_each_wait_on_their_own_pipe() {
    const N: usize = 300;
    let woke = Arc::new(AtomicUsize::new(0));
    let w2 = woke.clone();
    rt(2).block_on(move || {
        let pipes: Vec<_> = (0..N).map(|_| pipe()).collect();
        let mut writers = Vec::new();
        let mut handles = Vec::new();
        for (r, w) in pipes {
            let woke = w2.clone();
            handles.push(sigcoro::spawn(move || {
                wait_readable(r.as_raw_fd()).unwrap();
                let mut b = [0u8; 1];
                assert_eq!(read_fd(r.as_raw_fd(), &mut b), 1);
                woke.fetch_add(1, Ordering::Relaxed);
            }));
            writers.push(w);
        }
        sigcoro::sleep(Duration::from_millis(10));
        for w in &writers {
            assert_eq!(write_fd(w.as_raw_fd(), b"x"), 1);
        }
        for h in handles {
            h.join().unwrap();
        }
    });
    assert_eq!(woke.load(Ordering::Relaxed), N);
}
