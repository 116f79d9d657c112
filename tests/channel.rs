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

// ---------------------------------------------------------------------------------------------
// Rendezvous channels: a selection waiting to send is a sender

use sigcoro::sync::channel::{RecvTimeoutError, TryRecvError};
use sigcoro::{select, spawn, yield_now};
use std::time::Duration;

/// Lets every other runnable coroutine of this worker run until it blocks.
fn settle() {
    for _ in 0..8 {
        yield_now();
    }
}

/// How a receiver that may not wait takes a value on a rendezvous channel.
#[derive(Clone, Copy, Debug)]
enum NonBlocking {
    TryRecv,
    ZeroTimeout,
    SelectDefault,
}

fn receive_without_waiting(rx: &channel::Receiver<i32>, how: NonBlocking) -> Option<i32> {
    match how {
        NonBlocking::TryRecv => rx.try_recv().ok(),
        NonBlocking::ZeroTimeout => rx.recv_timeout(Duration::ZERO).ok(),
        NonBlocking::SelectDefault => select! {
            recv(rx) -> v => v.ok(),
            default => None,
        },
    }
}

#[test]
fn a_sender_blocked_in_a_select_is_seen_by_non_blocking_receives() {
    for how in [
        NonBlocking::TryRecv,
        NonBlocking::ZeroTimeout,
        NonBlocking::SelectDefault,
    ] {
        rt_no_preempt(1).block_on(move || {
            let (tx, rx) = channel::bounded::<i32>(0);
            let (_tx2, rx2) = channel::bounded::<i32>(0);
            let sender = spawn(move || {
                select! {
                    send(tx, 7) -> res => res.is_ok(),
                    recv(rx2) -> _ => false,
                }
            });
            settle(); // the selection parks
            assert_eq!(receive_without_waiting(&rx, how), Some(7), "{how:?}");
            assert!(sender.join().unwrap(), "{how:?}: the send arm was selected");
            assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
        });
    }
}

#[test]
fn a_sender_blocked_in_a_plain_send_is_seen_by_non_blocking_receives() {
    for how in [
        NonBlocking::TryRecv,
        NonBlocking::ZeroTimeout,
        NonBlocking::SelectDefault,
    ] {
        rt_no_preempt(1).block_on(move || {
            let (tx, rx) = channel::bounded::<i32>(0);
            let sender = spawn(move || tx.send(7).is_ok());
            settle();
            assert_eq!(receive_without_waiting(&rx, how), Some(7), "{how:?}");
            assert!(sender.join().unwrap());
        });
    }
}

#[test]
fn a_select_sender_is_seen_by_a_receiver_on_another_worker_thread() {
    // The receiver is a plain thread; the selection a coroutine that parks.
    common::no_hang(|| {
        let rt = rt_no_preempt(1);
        let (tx, rx) = channel::bounded::<i32>(0);
        let (ready_tx, ready_rx) = channel::bounded::<()>(1);
        let sender = rt.spawn(move || {
            ready_tx.send(()).unwrap();
            select! { send(tx, 5) -> res => res.unwrap() }
        });
        ready_rx.recv().unwrap();
        // The selection is parked or about to: a blocking receive always gets the value.
        assert_eq!(rx.recv_timeout(Duration::from_secs(20)), Ok(5));
        sender.join().unwrap();
        assert_eq!(rx.recv_timeout(Duration::ZERO), Err(RecvTimeoutError::Disconnected));
    });
}

/// How a sender that may not wait offers a value on a rendezvous channel.
#[derive(Clone, Copy, Debug)]
enum NonBlockingSend {
    TrySend,
    ZeroTimeout,
    SelectDefault,
}

fn send_without_waiting(tx: &channel::Sender<i32>, v: i32, how: NonBlockingSend) -> bool {
    match how {
        NonBlockingSend::TrySend => tx.try_send(v).is_ok(),
        NonBlockingSend::ZeroTimeout => tx.send_timeout(v, Duration::ZERO).is_ok(),
        NonBlockingSend::SelectDefault => select! {
            send(tx, v) -> res => res.is_ok(),
            default => false,
        },
    }
}

#[test]
fn a_receiver_blocked_in_a_select_is_seen_by_non_blocking_sends() {
    use NonBlockingSend::*;
    for how in [TrySend, ZeroTimeout, SelectDefault] {
        rt_no_preempt(1).block_on(move || {
            let (tx, rx) = channel::bounded::<i32>(0);
            let (_tx2, rx2) = channel::bounded::<i32>(0);
            let receiver = spawn(move || {
                select! {
                    recv(rx) -> v => v.ok(),
                    recv(rx2) -> _ => None,
                }
            });
            settle(); // the selection parks
            assert!(send_without_waiting(&tx, 9, how), "{how:?}");
            assert_eq!(receiver.join().unwrap(), Some(9), "{how:?}");
            assert_eq!(tx.try_send(1), Err(channel::TrySendError::Disconnected(1)));
        });
    }
}

#[test]
fn a_select_with_both_sides_of_a_rendezvous_channel_does_not_pair_with_itself() {
    rt_no_preempt(1).block_on(|| {
        let (tx, rx) = channel::bounded::<i32>(0);
        let got = select! {
            send(tx, 1) -> _ => "sent",
            recv(rx) -> _ => "received",
            default => "nothing",
        };
        assert_eq!(got, "nothing");
        let (tx2, rx2) = (tx.clone(), rx.clone());
        let selector = spawn(move || {
            select! {
                send(tx2, 1) -> _ => "sent",
                recv(rx2) -> _ => "received",
                default(Duration::from_millis(30)) => "nothing",
            }
        });
        settle();
        // Not paired with itself while parked; a receive here takes its send.
        assert_eq!(rx.try_recv(), Ok(1));
        assert_eq!(selector.join().unwrap(), "sent");
    });
}

// ---------------------------------------------------------------------------------------------
// Send arms evaluate their value only when chosen

#[test]
fn a_send_value_is_evaluated_only_for_the_chosen_arm() {
    use std::cell::Cell;
    let evaluated = Cell::new(0);
    let value = |v: i32| {
        evaluated.set(evaluated.get() + 1);
        v
    };
    let (full_tx, _full_rx) = channel::bounded::<i32>(1);
    full_tx.send(0).unwrap();
    let (zero_tx, _zero_rx) = channel::bounded::<i32>(0);
    let got = select! {
        send(full_tx, value(1)) -> _ => "full",
        send(zero_tx, value(2)) -> _ => "zero",
        default => "default",
    };
    assert_eq!((got, evaluated.get()), ("default", 0));

    let (tx, rx) = channel::unbounded::<i32>();
    let got = select! {
        send(full_tx, value(1)) -> _ => "full",
        send(tx, value(3)) -> res => { res.unwrap(); "open" }
    };
    assert_eq!((got, evaluated.get()), ("open", 1));
    assert_eq!(rx.try_recv(), Ok(3));

    // Disconnected: the arm is chosen, its value evaluated and handed back.
    drop(rx);
    let got = select! {
        send(tx, value(4)) -> res => res.unwrap_err().into_inner(),
        default => 0,
    };
    assert_eq!((got, evaluated.get()), (4, 2));
}

/// A send arm's value expression that panics.
fn no_value() -> i32 {
    panic!("no value")
}

#[test]
fn a_send_value_that_panics_or_leaves_gives_the_room_back() {
    let (tx, rx) = channel::bounded::<i32>(1);
    let res = catch_unwind(AssertUnwindSafe(|| {
        select! {
            send(tx, no_value()) -> _ => {},
        }
    }));
    assert!(res.is_err());
    assert_eq!(
        tx.try_send(1),
        Ok(()),
        "the room reserved for the panicking arm came back"
    );
    assert_eq!(rx.try_recv(), Ok(1));
    let f = || -> Option<()> {
        select! {
            send(tx, None?) -> _ => {},
        }
        Some(())
    };
    assert_eq!(f(), None);
    assert_eq!(tx.try_send(2), Ok(()));
    assert!(tx.is_full());
}

#[test]
fn a_receiving_selection_selects_again_when_the_claiming_senders_value_panics() {
    rt_no_preempt(1).block_on(|| {
        let (tx, rx) = channel::bounded::<i32>(0);
        let (tx2, rx2) = channel::unbounded::<i32>();
        let receiver = spawn(move || {
            select! {
                recv(rx) -> v => v.ok(),
                recv(rx2) -> v => v.ok().map(|v| v * 10),
            }
        });
        settle(); // the selection parks
        let res = catch_unwind(AssertUnwindSafe(|| {
            select! {
                send(tx, no_value()) -> _ => {},
                default => panic!("the waiting receiver makes the send ready"),
            }
        }));
        assert_eq!(res.unwrap_err().downcast_ref::<&str>(), Some(&"no value"));
        // The claimed selection went back to waiting on both arms.
        tx2.send(4).unwrap();
        assert_eq!(receiver.join().unwrap(), Some(40));
        assert_eq!(tx.try_send(1), Err(channel::TrySendError::Disconnected(1)));
    });
}

#[test]
fn a_rendezvous_claimer_is_released_when_the_value_panics() {
    rt_no_preempt(1).block_on(|| {
        let (tx, rx) = channel::bounded::<i32>(0);
        let sender = spawn(move || {
            select! {
                send(tx, no_value()) -> _ => {},
            }
        });
        settle();
        // Claims the selection, which panics computing its value: nothing to receive.
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
        assert!(sender.join().is_err());
    });
}

// ---------------------------------------------------------------------------------------------
// Every channel call is a safe point

#[test]
fn a_try_polling_loop_lets_the_workers_other_coroutines_run() {
    // One worker, preemption at safe points: the pollers never wait, so only the safe point
    // in `try_recv`/`try_send`/`select!` with `default` hands the worker to the coroutine
    // that makes them succeed.
    common::no_hang(|| {
        let rt = common::rt_preempt(1, Duration::from_millis(1));
        rt.block_on(|| {
            let (tx, rx) = channel::unbounded::<u32>();
            let poller = spawn(move || {
                loop {
                    if let Ok(v) = rx.try_recv() {
                        return v;
                    }
                }
            });
            let sender = spawn(move || tx.send(7).unwrap());
            assert_eq!(poller.join().unwrap(), 7);
            sender.join().unwrap();

            let (tx, rx) = channel::bounded::<u32>(1);
            tx.send(0).unwrap();
            let poller = spawn(move || while tx.try_send(1).is_err() {});
            let taker = spawn(move || (rx.recv().unwrap(), rx.recv().unwrap()));
            poller.join().unwrap();
            assert_eq!(taker.join().unwrap(), (0, 1));

            let (tx, rx) = channel::bounded::<u32>(0);
            let poller = spawn(move || {
                loop {
                    select! {
                        recv(rx) -> v => return v.unwrap(),
                        default => {}
                    }
                }
            });
            let sender = spawn(move || tx.send(3).unwrap());
            assert_eq!(poller.join().unwrap(), 3);
            sender.join().unwrap();
        });
    });
}

// ---------------------------------------------------------------------------------------------
// Types: variance and unwind safety, checked at compile time

/// Each compiles only while its type is covariant in `T`: `Receiver` and its iterators, and
/// `RwLockReadGuard` (as std's). `Sender` is invariant on purpose: see its `compile_fail` doc
/// test.
#[allow(dead_code)]
mod covariance {
    use sigcoro::sync::RwLockReadGuard;
    use sigcoro::sync::channel::{IntoIter, Iter, Receiver, TryIter};

    fn receiver<'a>(x: Receiver<&'static str>) -> Receiver<&'a str> {
        x
    }
    fn iter<'a, 'r>(x: Iter<'r, &'static str>) -> Iter<'r, &'a str> {
        x
    }
    fn try_iter<'a, 'r>(x: TryIter<'r, &'static str>) -> TryIter<'r, &'a str> {
        x
    }
    fn into_iter<'a>(x: IntoIter<&'static str>) -> IntoIter<&'a str> {
        x
    }
    fn read_guard<'a, 'r>(x: RwLockReadGuard<'r, &'static str>) -> RwLockReadGuard<'r, &'a str> {
        x
    }
}

fn assert_unwind_safe<T: std::panic::UnwindSafe + std::panic::RefUnwindSafe>() {}

#[test]
fn channel_ends_are_unwind_safe_and_receivers_covariant() {
    assert_unwind_safe::<channel::Sender<std::cell::Cell<u8>>>();
    assert_unwind_safe::<channel::Receiver<std::cell::Cell<u8>>>();
    let (tx, rx) = channel::unbounded::<&'static str>();
    tx.send("static").unwrap();
    let short: channel::Receiver<&str> = rx;
    assert_eq!(short.recv(), Ok("static"));
    assert!(!short.is_full());
    let (tx, rx) = channel::bounded::<u8>(1);
    tx.send(1).unwrap();
    assert!(rx.is_full() && tx.is_full());
}

// ---------------------------------------------------------------------------------------------
// Timer channels: after, at, tick, never

use std::time::Instant;

fn timer_channels() {
    const MS: Duration = Duration::from_millis(1);
    let far = channel::after(Duration::from_secs(3600));
    assert_eq!(far.try_recv(), Err(TryRecvError::Empty));
    assert_eq!((far.len(), far.capacity()), (0, Some(1)));
    assert_eq!(far.recv_timeout(MS), Err(RecvTimeoutError::Timeout));

    let start = Instant::now();
    let soon = channel::after(2 * MS);
    let due = soon.recv().unwrap();
    assert!(
        due >= start + 2 * MS && Instant::now() >= due,
        "not delivered before it is due"
    );
    assert_eq!(soon.try_recv(), Err(TryRecvError::Empty), "one message only");
    assert_eq!(
        soon.recv_timeout(3 * MS),
        Err(RecvTimeoutError::Timeout),
        "never disconnected"
    );

    let past = Instant::now();
    let at = channel::at(past);
    assert_eq!(at.len(), 1);
    assert!(at.is_full());
    assert_eq!(at.try_recv(), Ok(past));
    assert!(at.is_empty());

    let ticker = channel::tick(MS);
    let ticks: Vec<Instant> = (0..3).map(|_| ticker.recv().unwrap()).collect();
    assert!(ticks.windows(2).all(|w| w[1] >= w[0] + MS), "{ticks:?}");

    let never = channel::never::<i32>();
    assert_eq!(never.try_recv(), Err(TryRecvError::Empty));
    assert_eq!(never.recv_timeout(MS), Err(RecvTimeoutError::Timeout));

    // A selection parks until a timer's message is due, and takes it.
    let (_tx, rx) = channel::unbounded::<i32>();
    let start = Instant::now();
    let due = select! {
        recv(rx) -> _ => panic!("nothing is sent"),
        recv(never) -> _ => panic!("never delivers"),
        recv(channel::after(3 * MS)) -> due => due.unwrap(),
    };
    assert!(due >= start + 3 * MS);
    let mut sel = sigcoro::sync::Select::new();
    let t = sel.recv(&ticker);
    sel.recv(&never);
    assert_eq!(sel.ready(), t);
    assert!(ticker.try_recv().is_ok());
}

#[test]
fn timer_channels_from_a_thread() {
    common::no_hang(timer_channels);
}

#[test]
fn timer_channels_in_coroutines() {
    common::no_hang(|| {
        for workers in [1, 2] {
            let rt = common::rt(workers);
            rt.block_on(timer_channels);
            let hs: Vec<_> = (0..4).map(|_| rt.spawn(timer_channels)).collect();
            hs.into_iter().for_each(|h| h.join().unwrap());
        }
    });
}

// ---------------------------------------------------------------------------------------------
// A selection cancelled after a claim gives it back

#[test]
fn a_cancelled_receiving_selection_gives_a_claimed_value_back() {
    rt_no_preempt(1).block_on(|| {
        let (tx, rx) = channel::bounded::<i32>(0);
        let rx2 = rx.clone();
        let selection = spawn(move || {
            select! { recv(rx2) -> v => v.ok() }
        });
        settle(); // parked, waiting to receive
        selection.cancel(); // it unwinds when it runs next
        assert_eq!(tx.try_send(5), Ok(()), "claims the waiting selection");
        assert!(selection.join().unwrap_err().is_cancelled());
        assert_eq!(rx.try_recv(), Ok(5), "the value came back to the channel");
    });
}

#[test]
fn a_cancelled_sending_selection_releases_its_claimer() {
    rt_no_preempt(1).block_on(|| {
        let (tx, rx) = channel::bounded::<i32>(0);
        let selection = spawn(move || {
            select! { send(tx, 5) -> res => res.is_ok() }
        });
        settle(); // parked, waiting to send
        selection.cancel();
        // Claims the selection and waits for its value, which never comes: released.
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
        assert!(selection.join().unwrap_err().is_cancelled());
    });
}
