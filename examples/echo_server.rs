//! An echo server on 127.0.0.1: one coroutine per connection, written as blocking code.
//!
//! ```sh
//! cargo run --release --example echo_server -- [PORT] [WORKERS]     # default 7878, a worker per core
//! cargo run --release --example echo_load -- --addr 127.0.0.1:7878  # drive it (another shell)
//! ```
//!
//! Stops on Ctrl-C (SIGINT) or SIGTERM, printing how many connections it served.

use sigcoro::net::{TcpListener, TcpStream};
use sigcoro::signal::{SIGINT, SIGTERM, Signals};
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

fn serve(mut conn: TcpStream, bytes: Arc<AtomicU64>) {
    let mut buf = [0u8; 4096];
    loop {
        let n = match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if conn.write_all(&buf[..n]).is_err() {
            return;
        }
        bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().map_or(7878, |p| p.parse().expect("PORT is a number"));
    let mut builder = sigcoro::Runtime::builder();
    if let Some(w) = args.next() {
        builder = builder.workers(w.parse().expect("WORKERS is a number"));
    }
    let rt = builder.build().expect("runtime");
    let (conns, bytes) = rt.block_on(move || {
        // Subscribe first, so a Ctrl-C from now on becomes a message.
        let stop = Signals::new(&[SIGINT, SIGTERM]).expect("signals");
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind 127.0.0.1");
        println!("echo server on {}; Ctrl-C to stop", listener.local_addr().unwrap());
        let conns = Arc::new(AtomicU64::new(0));
        let bytes = Arc::new(AtomicU64::new(0));
        let (c, b) = (conns.clone(), bytes.clone());
        let acceptor = sigcoro::spawn(move || {
            for conn in listener.incoming() {
                match conn {
                    Ok(s) => {
                        let _ = s.set_nodelay(true);
                        c.fetch_add(1, Ordering::Relaxed);
                        let b = b.clone();
                        sigcoro::spawn(move || serve(s, b));
                    }
                    Err(e) => eprintln!("accept: {e}"),
                }
            }
        });
        let sig = stop.recv();
        println!("signal {}: stopping", sig.number());
        acceptor.cancel();
        (conns.load(Ordering::Relaxed), bytes.load(Ordering::Relaxed))
    });
    let report = rt.shutdown();
    println!(
        "served {conns} connections, echoed {bytes} bytes; {} coroutines were still open",
        report.alive
    );
}
