//! An HTTP/1.1 server on 127.0.0.1 answering TechEmpower's plaintext test: one coroutine per
//! connection, written as blocking code, with keep-alive and pipelining.
//!
//! ```sh
//! cargo run --release --example http_server -- [PORT] [WORKERS]   # default 8080, a worker per core
//! wrk -t2 -c256 -d5s http://127.0.0.1:8080/plaintext                # drive it (another shell)
//! ```
//!
//! Each connection reads what the client sent, answers every complete request in the buffer
//! (parsed with `httparse`) and writes all the answers in one write, so a pipelining client
//! costs one `read` and one `write` per batch. Every request gets `Hello, World!` with the
//! `Server`, `Date`, `Content-Type` and `Content-Length` headers. `benches/peers` reuses this
//! file (its `http` servers: sigcoro's, and tokio running the same [`respond`] loop), so it
//! sticks to what both editions accept. Stops on Ctrl-C (SIGINT) or SIGTERM.

#![allow(dead_code)]

use sigcoro::net::{TcpListener, TcpStream};
use std::cell::Cell;
use std::io::{self, Read, Write};
use std::time::{SystemTime, UNIX_EPOCH};

/// The plaintext body.
const BODY: &[u8] = b"Hello, World!";
/// Requests read at most this many bytes at a time; a request larger than the buffer is refused.
const READ_BUF: usize = 4096;
/// Headers a request may have.
const MAX_HEADERS: usize = 16;

thread_local! {
    /// The `Date` header's value and the second it was made for: formatting it once a second
    /// per thread, as the TechEmpower servers do.
    static DATE: Cell<(u64, [u8; 29])> = const { Cell::new((u64::MAX, [0; 29])) };
}

/// The current time as an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`), cached per second.
pub fn http_date() -> [u8; 29] {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with(|d| {
        let (at, date) = d.get();
        if at == secs {
            return date;
        }
        let date = format_date(secs);
        d.set((secs, date));
        date
    })
}

/// Formats `secs` since the epoch (UTC) as an HTTP date.
fn format_date(secs: u64) -> [u8; 29] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
    ];
    let days = secs / 86_400;
    let (hh, mm, ss) = ((secs % 86_400) / 3600, (secs % 3600) / 60, secs % 60);
    // Howard Hinnant's civil_from_days, for days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u64;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as usize;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as u64;
    let mut out = [b' '; 29];
    out[..3].copy_from_slice(DAYS[(days % 7) as usize]);
    out[3] = b',';
    let two = |v: u64| [b'0' + (v / 10) as u8, b'0' + (v % 10) as u8];
    out[5..7].copy_from_slice(&two(day));
    out[8..11].copy_from_slice(MONTHS[month - 1]);
    out[12..14].copy_from_slice(&two(year / 100));
    out[14..16].copy_from_slice(&two(year % 100));
    out[17..19].copy_from_slice(&two(hh));
    out[19] = b':';
    out[20..22].copy_from_slice(&two(mm));
    out[22] = b':';
    out[23..25].copy_from_slice(&two(ss));
    out[26..29].copy_from_slice(b"GMT");
    out
}

/// Answers every complete request at the front of `input`, appending the responses to `out`;
/// returns how many bytes of `input` they took (the rest is an incomplete request), or an error
/// for a malformed request.
pub fn respond(input: &[u8], out: &mut Vec<u8>) -> Result<usize, httparse::Error> {
    let mut used = 0;
    let mut date = None;
    while used < input.len() {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&input[used..])? {
            httparse::Status::Partial => break,
            httparse::Status::Complete(n) => {
                used += n;
                let date = *date.get_or_insert_with(http_date);
                out.extend_from_slice(b"HTTP/1.1 200 OK\r\nServer: sigcoro\r\nDate: ");
                out.extend_from_slice(&date);
                out.extend_from_slice(b"\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\n");
                out.extend_from_slice(BODY);
            }
        }
    }
    Ok(used)
}

/// One connection: read, answer every complete request in one write, until end of stream or
/// an error.
pub fn serve_connection(mut conn: TcpStream) {
    let _ = conn.set_nodelay(true);
    let mut buf = vec![0u8; READ_BUF];
    let mut filled = 0;
    let mut out = Vec::with_capacity(READ_BUF);
    loop {
        let n = match conn.read(&mut buf[filled..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        filled += n;
        let Ok(used) = respond(&buf[..filled], &mut out) else {
            return; // malformed: drop the connection
        };
        if used == 0 && filled == buf.len() {
            return; // a request larger than the buffer
        }
        buf.copy_within(used..filled, 0);
        filled -= used;
        if !out.is_empty() {
            if conn.write_all(&out).is_err() {
                return;
            }
            out.clear();
        }
    }
}

/// Accepts connections on `listener` for ever, a coroutine each.
pub fn accept_loop(listener: TcpListener) {
    for conn in listener.incoming() {
        match conn {
            Ok(s) => drop(sigcoro::spawn(move || serve_connection(s))),
            Err(e) => eprintln!("accept: {e}"),
        }
    }
}

fn main() {
    use sigcoro::signal::{SIGINT, SIGTERM, Signals};
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().map_or(8080, |p| p.parse().expect("PORT is a number"));
    let mut builder = sigcoro::Runtime::builder();
    if let Some(w) = args.next() {
        builder = builder.workers(w.parse().expect("WORKERS is a number"));
    }
    let rt = builder.name("http").build().expect("runtime");
    rt.block_on(move || -> io::Result<()> {
        // Subscribe first, so a Ctrl-C from now on becomes a message.
        let stop = Signals::new(&[SIGINT, SIGTERM])?;
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        println!("http server on http://{}/; Ctrl-C to stop", listener.local_addr()?);
        io::stdout().flush()?;
        let acceptor = sigcoro::spawn(move || accept_loop(listener));
        let sig = stop.recv();
        println!("signal {}: stopping", sig.number());
        acceptor.cancel();
        Ok(())
    })
    .expect("http server");
    let _ = rt.shutdown();
}

#[cfg(test)]
mod tests {
    #[test]
    fn pipelined_requests_are_answered_together_and_a_partial_one_waits() {
        let one = b"GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n";
        let mut input = [&one[..], &one[..], b"GET /plain"].concat();
        let mut out = Vec::new();
        let used = super::respond(&input, &mut out).unwrap();
        assert_eq!(used, 2 * one.len());
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches("HTTP/1.1 200 OK\r\n").count(), 2);
        assert_eq!(text.matches("\r\nContent-Length: 13\r\n\r\nHello, World!").count(), 2);
        assert!(text.contains("\r\nServer: sigcoro\r\nDate: "));
        input.drain(..used);
        let mut out = Vec::new();
        assert_eq!(super::respond(&input, &mut out).unwrap(), 0);
        assert!(out.is_empty());
        assert!(super::respond(b"NOT HTTP\r\n\r\n", &mut out).is_err());
    }

    #[test]
    fn dates() {
        assert_eq!(&super::format_date(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(&super::format_date(951_782_400), b"Tue, 29 Feb 2000 00:00:00 GMT");
    }
}
