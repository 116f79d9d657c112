//! Waits for Ctrl-C in a coroutine while others keep working, then stops them cleanly.
//!
//! ```sh
//! cargo run --example ctrl_c          # press Ctrl-C (or: kill -INT <pid>)
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

fn main() {
    let ticks = sigcoro::run(|| {
        let ticks = Arc::new(AtomicU64::new(0));
        let t = ticks.clone();
        let ticker = sigcoro::spawn(move || {
            loop {
                sigcoro::sleep(Duration::from_millis(100));
                t.fetch_add(1, Ordering::Relaxed);
            }
        });
        println!("pid {}: ticking; press Ctrl-C to stop", std::process::id());
        sigcoro::signal::ctrl_c().expect("subscribing to SIGINT");
        ticker.cancel();
        assert!(ticker.join().unwrap_err().is_cancelled());
        ticks.load(Ordering::Relaxed)
    });
    println!("Ctrl-C received after {ticks} ticks of 100 ms; bye");
}
