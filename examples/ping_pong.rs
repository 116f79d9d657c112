//! Two coroutines on one worker handing control back and forth with `yield_now`.
//!
//! `cargo run --release --example ping_pong` prints the time per handoff.

use std::time::Instant;

fn main() {
    let rt = sigcoro::Runtime::builder().workers(1).build().expect("runtime");
    const N: u64 = 2_000_000;
    for rep in 0..5 {
        let ns = rt.block_on(|| {
            let start = Instant::now();
            let a = sigcoro::spawn(|| (0..N).for_each(|_| sigcoro::yield_now()));
            let b = sigcoro::spawn(|| (0..N).for_each(|_| sigcoro::yield_now()));
            a.join().unwrap();
            b.join().unwrap();
            start.elapsed().as_nanos() as f64 / (2 * N) as f64
        });
        println!("run {rep}: {ns:.1} ns per yield handoff");
    }
}
