//! Channel semantics that crossbeam-channel users rely on: what a panicking destructor, a
//! non-blocking selection and a rendezvous selection do. The ports of crossbeam's own test
//! files are `tests/crossbeam_*.rs`.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::rt_no_preempt;
use sigcoro::sync::channel;

/// Counts its drops; the ones marked `bomb` panic in their destructor.
struct Bomb {
    bomb: bool,
    drops: Arc<AtomicUsize>,
}

impl Drop for Bomb {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
        if self.bomb {
            panic!("bomb");
        }
    }
}

/// Fills a channel with five values, two of which panic when dropped, drops the last
/// receiver, and checks that the panic comes out once and every value was dropped.
fn panicking_destructors_propagate_once(cap: Option<usize>) {
    let drops = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = match cap {
        Some(c) => channel::bounded(c),
        None => channel::unbounded(),
    };
    for i in 0..5 {
        let bomb = i == 1 || i == 3;
        tx.send(Bomb {
            bomb,
            drops: drops.clone(),
        })
        .unwrap();
    }
    let res = catch_unwind(AssertUnwindSafe(|| drop(rx)));
    let payload = res.expect_err("the destructor's panic propagates");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"bomb"));
    assert_eq!(drops.load(Ordering::SeqCst), 5, "every value is dropped");
    // The channel still works for the senders: every receiver is gone.
    let v = Bomb {
        bomb: false,
        drops: drops.clone(),
    };
    assert!(tx.send(v).is_err());
    assert_eq!(drops.load(Ordering::SeqCst), 6);
}

#[test]
fn panicking_destructors_in_a_dropped_channel_propagate_once() {
    panicking_destructors_propagate_once(None);
    panicking_destructors_propagate_once(Some(8));
}

#[test]
fn panicking_destructors_in_a_dropped_channel_propagate_once_in_a_coroutine() {
    rt_no_preempt(1).block_on(|| {
        panicking_destructors_propagate_once(None);
        panicking_destructors_propagate_once(Some(8));
    });
}
