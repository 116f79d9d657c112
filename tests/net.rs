//! sigcoro::net over loopback: echo with many clients, timeouts, half-close, refused and
//! timed-out connects, shutdown waking a blocked reader or acceptor, cancellation of a blocked
//! reader, sockets moving between runtimes, UDP and Unix sockets, and a batch of events woken
//! while other threads drop registrations. Only 127.0.0.1 is contacted.
//! Everything asserts behaviour and counts; the few durations are lower bounds.

mod common;

use common::rt;
use sigcoro::net::{TcpListener, TcpStream, UdpSocket, UnixListener, UnixStream};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Serves echo on `listener` until `conns` connections have come and gone; returns the bytes
/// echoed.
fn echo_server(listener: TcpListener, conns: usize) -> usize {
    let total = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..conns)
        .map(|_| {
            let (mut s, _) = listener.accept().expect("accept");
            let total = total.clone();
            sigcoro::spawn(move || {
                let mut buf = [0u8; 1024];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            s.write_all(&buf[..n]).expect("echo write");
                            total.fetch_add(n, Ordering::Relaxed);
                        }
                        Err(e) => panic!("server read: {e}"),
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("connection coroutine");
    }
    total.load(Ordering::Relaxed)
}

#[test]
fn echo_server_with_many_clients() {
    const CLIENTS: usize = 200;
    const ROUNDS: usize = 50;
    let echoed = rt(2).block_on(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = sigcoro::spawn(move || echo_server(listener, CLIENTS));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                sigcoro::spawn(move || {
                    let mut s = TcpStream::connect(addr).unwrap();
                    s.set_nodelay(true).unwrap();
                    let mut sent = 0;
                    for r in 0..ROUNDS {
                        let msg: Vec<u8> = (0..(1 + (c * 7 + r * 13) % 700)).map(|i| (i + c + r) as u8).collect();
                        s.write_all(&msg).unwrap();
                        let mut back = vec![0u8; msg.len()];
                        s.read_exact(&mut back).unwrap();
                        assert_eq!(back, msg, "client {c} round {r}");
                        sent += msg.len();
                    }
                    sent
                })
            })
            .collect();
        let sent: usize = clients.into_iter().map(|h| h.join().unwrap()).sum();
        let echoed = server.join().unwrap();
        assert_eq!(sent, echoed);
        echoed
    });
    assert!(echoed > CLIENTS * ROUNDS);
}

#[test]
fn plain_threads_use_the_same_sockets() {
    // A sigcoro server driven by std threads using sigcoro's types outside any runtime.
    let runtime = rt(1);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = runtime.spawn(move || echo_server(listener, 4));
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                for i in 0..20u8 {
                    s.write_all(&[t, i, 7]).unwrap();
                    let mut b = [0; 3];
                    s.read_exact(&mut b).unwrap();
                    assert_eq!(b, [t, i, 7]);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(server.join().unwrap(), 4 * 20 * 3);
}

#[test]
fn read_timeout_gives_would_block_and_leaves_the_stream_usable() {
    rt(1).block_on(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        client.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        assert_eq!(client.read_timeout().unwrap(), Some(Duration::from_millis(50)));
        let start = Instant::now();
        let err = client.read(&mut [0; 8]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::WouldBlock, "{err}");
        assert!(start.elapsed() >= Duration::from_millis(50));
        // A zero timeout is refused, as in std.
        assert_eq!(
            client.set_read_timeout(Some(Duration::ZERO)).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        // The timeout is shared with clones, like a socket option.
        let clone = client.try_clone().unwrap();
        assert_eq!(clone.read_timeout().unwrap(), Some(Duration::from_millis(50)));
        server.write_all(b"late").unwrap();
        let mut b = [0; 4];
        client.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"late");
    });
    // The same on a plain thread.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    client.set_read_timeout(Some(Duration::from_millis(30))).unwrap();
    let err = (&client).read(&mut [0; 8]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WouldBlock);
}

#[test]
fn write_timeout_fires_when_the_peer_does_not_read() {
    rt(1).block_on(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, _) = listener.accept().unwrap();
        client.set_write_timeout(Some(Duration::from_millis(50))).unwrap();
        let chunk = vec![0u8; 1 << 16];
        let mut written = 0usize;
        let err = loop {
            match client.write(&chunk) {
                Ok(n) => written += n,
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), ErrorKind::WouldBlock, "{err}");
        assert!(written > 0);
    });
}

#[test]
fn half_close_delivers_eof_and_the_other_half_still_works() {
    rt(2).block_on(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = sigcoro::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut all = Vec::new();
            s.read_to_end(&mut all).unwrap(); // ends at the client's shutdown(Write)
            s.write_all(format!("got {} bytes", all.len()).as_bytes()).unwrap();
            all.len()
        });
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(&[1u8; 10_000]).unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let mut reply = String::new();
        c.read_to_string(&mut reply).unwrap();
        assert_eq!(reply, "got 10000 bytes");
        assert_eq!(server.join().unwrap(), 10_000);
        // Writing after our own shutdown fails with BrokenPipe (no SIGPIPE).
        assert_eq!(c.write(b"x").unwrap_err().kind(), ErrorKind::BrokenPipe);
    });
}

#[test]
fn connect_refused_is_reported() {
    // A port that was just free: bind, note it, close.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let err = rt(1).block_on(move || TcpStream::connect(addr).unwrap_err());
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    let err = TcpStream::connect(addr).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
}

/// A loopback listener with a backlog of 0 that never accepts: once its accept queue holds a
/// connection, the kernel drops further SYNs, so connects hang (and retry) without any packet
/// leaving the machine.
fn full_listener() -> (OwnedFd, SocketAddr) {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_listener.local_addr().unwrap();
    let fd = OwnedFd::from(std_listener);
    // SAFETY: re-listening on our own socket with a smaller backlog.
    assert_eq!(unsafe { libc::listen(fd.as_raw_fd(), 0) }, 0);
    (fd, addr)
}

#[test]
fn connect_timeout_times_out_against_a_full_backlog() {
    let (_listener, addr) = full_listener();
    let outcome = rt(1).block_on(move || {
        let mut held = Vec::new();
        for _ in 0..8 {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                Ok(s) => held.push(s),
                Err(e) => return (held.len(), e),
            }
        }
        panic!("8 connects into a backlog of 0 all succeeded");
    });
    let (accepted, err) = outcome;
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    assert!(accepted >= 1, "the backlog takes at least one connection");
    assert_eq!(
        TcpStream::connect_timeout(&addr, Duration::ZERO).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}

#[test]
fn shutdown_wakes_a_reader_blocked_on_a_clone() {
    rt(2).block_on(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, _) = listener.accept().unwrap();
        let reader_side = client.try_clone().unwrap();
        let reader = sigcoro::spawn(move || {
            let mut r = reader_side;
            r.read(&mut [0; 16])
        });
        // Let the reader park (a yield is enough on its worker; we sleep to be safe).
        sigcoro::sleep(Duration::from_millis(20));
        client.shutdown(Shutdown::Both).unwrap();
        assert_eq!(reader.join().unwrap().unwrap(), 0, "end of stream");
    });
}

#[test]
fn cancelling_a_blocked_reader_leaves_the_socket_usable() {
    rt(1).block_on(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = Arc::new(TcpStream::connect(listener.local_addr().unwrap()).unwrap());
        let (mut server, _) = listener.accept().unwrap();
        let c = client.clone();
        let blocked = sigcoro::spawn(move || (&*c).read(&mut [0; 4]).map(drop));
        sigcoro::sleep(Duration::from_millis(10));
        blocked.cancel();
        assert!(blocked.join().unwrap_err().is_cancelled());
        server.write_all(b"abcd").unwrap();
        let mut b = [0; 4];
        (&*client).read_exact(&mut b).unwrap();
        assert_eq!(&b, b"abcd");
    });
}

#[test]
fn concurrent_reader_and_writer_on_one_stream() {
    const BYTES: usize = 4 << 20;
    rt(2).block_on(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = sigcoro::spawn(move || echo_server(listener, 1));
        let stream = Arc::new(TcpStream::connect(addr).unwrap());
        let w = stream.clone();
        let writer = sigcoro::spawn(move || {
            let chunk: Vec<u8> = (0..8192).map(|i| i as u8).collect();
            let mut sent = 0;
            while sent < BYTES {
                (&*w).write_all(&chunk).unwrap();
                sent += chunk.len();
            }
            w.shutdown(Shutdown::Write).unwrap();
        });
        let mut got = 0usize;
        let mut buf = vec![0u8; 65536];
        loop {
            let n = (&*stream).read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            for (i, b) in buf[..n].iter().enumerate() {
                assert_eq!(*b, ((got + i) % 8192) as u8);
            }
            got += n;
        }
        writer.join().unwrap();
        assert_eq!(got, BYTES);
        assert_eq!(server.join().unwrap(), BYTES);
    });
}

#[test]
fn a_socket_outlives_its_runtime_and_works_in_another() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        for _ in 0..2 {
            let mut b = [0; 2];
            s.read_exact(&mut b).unwrap();
            s.write_all(&b).unwrap();
        }
    });
    let first = rt(1);
    let (stream, listener) = first.block_on(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.write_all(b"r1").unwrap();
        let mut b = [0; 2];
        s.read_exact(&mut b).unwrap(); // registers in the first runtime's worker
        assert_eq!(&b, b"r1");
        (s, listener)
    });
    assert_eq!(first.shutdown().alive, 0);
    let second = rt(2);
    second.block_on(move || {
        let mut s = stream;
        s.write_all(b"r2").unwrap();
        let mut b = [0; 2];
        s.read_exact(&mut b).unwrap(); // must register anew here, not wait on the dead worker
        assert_eq!(&b, b"r2");
        drop(listener);
    });
    peer.join().unwrap();
}

#[test]
fn udp_round_trip_and_timeout() {
    rt(2).block_on(|| {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let echo = sigcoro::spawn(move || {
            let mut buf = [0; 64];
            for _ in 0..10 {
                let (n, from) = b.recv_from(&mut buf).unwrap();
                b.send_to(&buf[..n], from).unwrap();
            }
        });
        for i in 0..10u8 {
            a.send_to(&[i; 5], b_addr).unwrap();
            let mut buf = [0; 64];
            let (n, from) = a.recv_from(&mut buf).unwrap();
            assert_eq!((n, from, buf[0]), (5, b_addr, i));
        }
        echo.join().unwrap();
        a.connect(b_addr).unwrap();
        assert_eq!(a.peer_addr().unwrap(), b_addr);
        a.set_read_timeout(Some(Duration::from_millis(30))).unwrap();
        assert_eq!(a.recv(&mut [0; 8]).unwrap_err().kind(), ErrorKind::WouldBlock);
        assert_ne!(a_addr, b_addr);
    });
}

#[test]
fn unix_sockets_echo_and_pair() {
    let dir = std::env::temp_dir().join(format!("sigcoro-net-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("echo.sock");
    let _ = std::fs::remove_file(&path);
    let p = path.clone();
    rt(2).block_on(move || {
        let listener = UnixListener::bind(&p).unwrap();
        let server = sigcoro::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).unwrap();
            s.write_all(&buf).unwrap();
            buf.len()
        });
        let mut c = UnixStream::connect(&p).unwrap();
        c.write_all(&[9u8; 300_000]).unwrap_or_else(|e| panic!("write: {e}"));
        c.shutdown(Shutdown::Write).unwrap();
        let mut back = Vec::new();
        c.read_to_end(&mut back).unwrap();
        assert_eq!(back.len(), 300_000);
        assert_eq!(server.join().unwrap(), 300_000);

        let (a, b) = UnixStream::pair().unwrap();
        let reader = sigcoro::spawn(move || {
            let mut s = String::new();
            (&b).read_to_string(&mut s).unwrap();
            s
        });
        (&a).write_all(b"over the pair").unwrap();
        drop(a);
        assert_eq!(reader.join().unwrap(), "over the pair");
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_raw_socket_can_be_adopted() {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_listener.local_addr().unwrap();
    rt(1).block_on(move || {
        let listener = TcpListener::from_std(std_listener).unwrap();
        let client = sigcoro::spawn(move || {
            let raw = std::net::TcpStream::connect(addr).unwrap();
            // SAFETY: we own the fd and hand it over.
            let mut s = unsafe { TcpStream::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(raw)) };
            s.write_all(b"adopted").unwrap();
        });
        let (mut s, peer) = listener.accept().unwrap();
        assert_eq!(peer.ip(), addr.ip());
        let mut got = String::new();
        s.read_to_string(&mut got).unwrap();
        assert_eq!(got, "adopted");
        client.join().unwrap();
    });
}

#[test]
fn a_short_read_then_end_of_stream_is_seen_at_once() {
    // After a read that drained the socket, the next read waits for an event instead of asking
    // the kernel; data and FIN that came together must still give the 0 at once.
    rt(1).block_on(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let mut buf = [0u8; 64];
        // A first short read, so that the socket is registered and marked drained.
        client.write_all(b"one").unwrap();
        assert_eq!(server.read(&mut buf).unwrap(), 3);
        client.write_all(b"hello").unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        sigcoro::sleep(Duration::from_millis(20)); // both have arrived and been dispatched
        assert_eq!(server.read(&mut buf).unwrap(), 5);
        assert_eq!(server.read(&mut buf).unwrap(), 0);
        assert_eq!(server.read(&mut buf).unwrap(), 0, "end of stream stays");
    });
}

#[test]
fn listener_shutdown_wakes_a_blocked_acceptor_with_an_error() {
    rt(2).block_on(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let clone = listener.try_clone().unwrap();
        let acceptor = sigcoro::spawn(move || clone.accept().map(drop));
        sigcoro::sleep(Duration::from_millis(20));
        listener.shutdown().unwrap();
        let err = acceptor.join().unwrap().unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL), "{err}");
        assert!(listener.accept().is_err(), "later accepts fail too");
    });
}

/// The reactor wakes the events of one epoll wait together, under one hold of its slab lock:
/// sockets of many coroutines, raw fds in the same batch, and registrations that plain threads
/// drop meanwhile (`Source::drop` takes that lock from their side) must all go through, with
/// no wake-up missed and no deadlock (a hang fails the test after 30 s). The drops overlap the
/// dispatches by timing, so a lock-order bug would be caught in some runs, not all: a guard,
/// not a proof.
#[test]
fn a_batch_of_events_wakes_every_waiter_while_other_threads_drop_registrations() {
    common::no_hang(batch_of_events_with_drops);
}

fn batch_of_events_with_drops() {
    const PAIRS: usize = 48;
    const PIPES: usize = 8;
    const ROUNDS: usize = 200;
    rt(2).block_on(|| {
        let (to_dropper, spares) = std::sync::mpsc::channel::<UnixStream>();
        let dropper = std::thread::spawn(move || {
            spares
                .iter()
                .map(|spare| {
                    std::thread::sleep(Duration::from_millis(1));
                    drop(spare);
                })
                .count()
        });
        let (registered, all_registered) = sigcoro::sync::channel::unbounded::<()>();
        let mut clients = Vec::new();
        let mut echoes = Vec::new();
        for _ in 0..PAIRS {
            let (a, b) = UnixStream::pair().unwrap();
            let spare = b.try_clone().unwrap();
            let (to_dropper, registered) = (to_dropper.clone(), registered.clone());
            echoes.push(sigcoro::spawn(move || {
                // Registered in this worker's reactor by a wait that times out, then dropped by
                // the plain thread while the echo runs.
                spare.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
                let err = (&spare).read(&mut [0u8; 1]).unwrap_err();
                assert_eq!(err.kind(), ErrorKind::WouldBlock);
                spare.set_read_timeout(None).unwrap(); // clones share their timeouts
                to_dropper.send(spare).unwrap();
                registered.send(()).unwrap();
                let (mut byte, mut echoed) = ([0u8; 1], 0);
                while (&b).read(&mut byte).unwrap() == 1 {
                    (&b).write_all(&byte).unwrap();
                    echoed += 1;
                }
                echoed
            }));
            clients.push(a);
        }
        drop(to_dropper);
        // The spares share their sockets with the echoes: no data before their waits are over.
        for _ in 0..PAIRS {
            all_registered.recv().unwrap();
        }
        let mut pipe_writers = Vec::new();
        let mut pipe_readers = Vec::new();
        for _ in 0..PIPES {
            let (mut r, w) = std::io::pipe().unwrap();
            pipe_readers.push(sigcoro::spawn(move || {
                let (mut buf, mut got) = ([0u8; 64], 0);
                while got < ROUNDS {
                    sigcoro::io::wait_readable(r.as_raw_fd()).unwrap();
                    got += r.read(&mut buf).unwrap();
                }
                got
            }));
            pipe_writers.push(w);
        }
        for round in 0..ROUNDS {
            for w in &mut pipe_writers {
                w.write_all(&[round as u8]).unwrap();
            }
            for c in &clients {
                (&*c).write_all(&[round as u8]).unwrap();
            }
            for c in &clients {
                let mut back = [0u8; 1];
                (&*c).read_exact(&mut back).unwrap();
                assert_eq!(back[0], round as u8);
            }
        }
        drop(clients);
        for echo in echoes {
            assert_eq!(echo.join().unwrap(), ROUNDS);
        }
        for reader in pipe_readers {
            assert_eq!(reader.join().unwrap(), ROUNDS);
        }
        assert_eq!(dropper.join().unwrap(), PAIRS);
    });
}
