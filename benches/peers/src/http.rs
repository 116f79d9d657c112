//! `http-serve PEER PORT [WORKERS] [SECS]`: one HTTP/1.1 plaintext server (TechEmpower's
//! "Hello, World!") on 127.0.0.1:PORT with WORKERS threads (default 2), for `http.sh` to drive
//! with wrk. It exits by itself after SECS seconds (default 600) if nobody stopped it.
//!
//! Peers:
//! - `sigcoro`: `examples/http_server.rs` (included below), a coroutine per connection.
//! - `tokio-raw`: tokio's multi-thread runtime, a task per connection, running the very same
//!   `respond` loop (httparse, every complete request of the buffer answered in one write).
//! - `may_minihttp`: may_minihttp's server with may's WORKERS workers.
//! - `hyper`: hyper 1.x's HTTP/1 connection on tokio's multi-thread runtime, with pipeline
//!   flushing on (several pipelined responses go out in one write).

#[path = "../../../examples/http_server.rs"]
mod server;

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

/// A loopback listener with a deep backlog (the same for every server).
fn listener(port: u16) -> std::net::TcpListener {
    let l = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind 127.0.0.1");
    // SAFETY: re-listening on our own socket with a larger backlog (capped by somaxconn).
    unsafe { libc::listen(l.as_raw_fd(), 4096) };
    l
}

/// Runs one server until SECS pass; never returns.
pub fn serve(args: &[String]) -> ! {
    let usage = "usage: sigcoro-peers http-serve <sigcoro|tokio-raw|may_minihttp|hyper> PORT [WORKERS] [SECS]";
    let peer = args.first().map(String::as_str).unwrap_or_else(|| panic!("{usage}"));
    let port: u16 = args.get(1).and_then(|p| p.parse().ok()).expect(usage);
    let workers: usize = args.get(2).map_or(2, |w| w.parse().expect(usage));
    let secs: u64 = args.get(3).map_or(600, |s| s.parse().expect(usage));
    match peer {
        "sigcoro" => {
            let l = sigcoro::net::TcpListener::from_std(listener(port)).expect("sigcoro listener");
            let rt = sigcoro::Runtime::builder()
                .workers(workers)
                .name("http")
                .build()
                .expect("sigcoro runtime");
            drop(rt.spawn(move || server::accept_loop(l)));
            std::mem::forget(rt);
        }
        "tokio-raw" => tokio_raw(listener(port), workers),
        "hyper" => hyper_server(listener(port), workers),
        "may_minihttp" => {
            may::config().set_workers(workers);
            let l = listener(port);
            drop(l); // may_minihttp binds by itself; the port is free again
            let server =
                may_minihttp::HttpServiceFactory::start(MinihttpFactory, ("127.0.0.1", port)).expect("may_minihttp");
            std::mem::forget(server);
        }
        _ => panic!("{usage}"),
    }
    println!("READY {peer} {port}");
    std::thread::sleep(Duration::from_secs(secs));
    std::process::exit(0)
}

fn tokio_raw(l: std::net::TcpListener, workers: usize) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    l.set_nonblocking(true).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.spawn(async move {
        let l = tokio::net::TcpListener::from_std(l).expect("tokio listener");
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut filled = 0;
                let mut out = Vec::with_capacity(4096);
                loop {
                    let n = match s.read(&mut buf[filled..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    filled += n;
                    let Ok(used) = server::respond(&buf[..filled], &mut out) else {
                        return;
                    };
                    if used == 0 && filled == buf.len() {
                        return;
                    }
                    buf.copy_within(used..filled, 0);
                    filled -= used;
                    if !out.is_empty() {
                        if s.write_all(&out).await.is_err() {
                            return;
                        }
                        out.clear();
                    }
                }
            });
        }
    });
    std::mem::forget(rt);
}

fn hyper_server(l: std::net::TcpListener, workers: usize) {
    use http_body_util::Full;
    use hyper::body::Bytes;
    l.set_nonblocking(true).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.spawn(async move {
        let l = tokio::net::TcpListener::from_std(l).expect("tokio listener");
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    let date = String::from_utf8_lossy(&server::http_date()).into_owned();
                    let resp = hyper::Response::builder()
                        .header("Server", "hyper")
                        .header("Date", date)
                        .header("Content-Type", "text/plain")
                        .body(Full::new(Bytes::from_static(b"Hello, World!")))
                        .expect("response");
                    Ok::<_, std::convert::Infallible>(resp)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .pipeline_flush(true)
                    .serve_connection(hyper_util::rt::TokioIo::new(s), service)
                    .await;
            });
        }
    });
    std::mem::forget(rt);
}

#[derive(Clone)]
struct Minihttp;

impl may_minihttp::HttpService for Minihttp {
    fn call(&mut self, _req: may_minihttp::Request, rsp: &mut may_minihttp::Response) -> io::Result<()> {
        rsp.header("Content-Type: text/plain").body("Hello, World!");
        Ok(())
    }
}

struct MinihttpFactory;

impl may_minihttp::HttpServiceFactory for MinihttpFactory {
    type Service = Minihttp;

    fn new_service(&self, _: usize) -> Minihttp {
        Minihttp
    }
}
