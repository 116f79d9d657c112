//! Selections racing with other threads at chosen points: a hook runs after every failed
//! attempt of a pass, on the selecting thread, so a test can change the channels right between
//! two arms.

use std::cell::RefCell;
use std::time::Duration;

use crate::sync::Select;
use crate::sync::channel::{self, Receiver, Sender};

thread_local! {
    static HOOK: RefCell<Option<Box<dyn FnMut()>>> = RefCell::new(None);
}

/// Runs this thread's hook, if any (taken out while it runs).
pub(super) fn after_failed_attempt() {
    let Some(mut f) = HOOK.with(|h| h.borrow_mut().take()) else {
        return;
    };
    f();
    HOOK.with(|h| *h.borrow_mut() = Some(f));
}

fn set_hook(f: impl FnMut() + 'static) {
    HOOK.with(|h| *h.borrow_mut() = Some(Box::new(f)));
}

fn clear_hook() {
    HOOK.with(|h| *h.borrow_mut() = None);
}

/// `r1` holds a value; the hook, after the selection's first failed attempt (on `r2`), fills
/// `r2` and then empties `r1`: at every moment one of the two channels held a value, so a
/// selection that gives up is not linearizable (crossbeam's `linearizable_default`).
fn racing_pair(bounded: bool) -> (Sender<i32>, Receiver<i32>, Sender<i32>, Receiver<i32>) {
    let ((s1, r1), (s2, r2)) = if bounded {
        (channel::bounded(1), channel::bounded(1))
    } else {
        (channel::unbounded(), channel::unbounded())
    };
    s1.send(1).unwrap();
    let (s2h, r1h) = (s2.clone(), r1.clone());
    let mut fired = false;
    set_hook(move || {
        if !std::mem::replace(&mut fired, true) {
            s2h.send(2).unwrap();
            assert_eq!(r1h.try_recv(), Ok(1));
        }
    });
    (s1, r1, s2, r2)
}

#[test]
fn a_select_with_default_makes_a_second_pass() {
    for bounded in [false, true] {
        let (_s1, r1, _s2, r2) = racing_pair(bounded);
        let got = crate::select_biased! {
            recv(r2) -> v => v,
            recv(r1) -> v => v,
            default => panic!("took default although r1 or r2 always held a value"),
        };
        clear_hook();
        assert_eq!(got, Ok(2));
    }
}

#[test]
fn a_select_with_zero_timeout_makes_a_second_pass() {
    for bounded in [false, true] {
        let (_s1, r1, _s2, r2) = racing_pair(bounded);
        let got = crate::select_biased! {
            recv(r2) -> v => v,
            recv(r1) -> v => v,
            default(Duration::ZERO) => panic!("timed out although r1 or r2 always held a value"),
        };
        clear_hook();
        assert_eq!(got, Ok(2));
    }
}

#[test]
fn try_select_and_try_ready_make_a_second_pass() {
    for bounded in [false, true] {
        let (_s1, r1, _s2, r2) = racing_pair(bounded);
        let mut sel = Select::new_biased();
        let i2 = sel.recv(&r2);
        let _i1 = sel.recv(&r1);
        let op = sel.try_select().expect("r1 or r2 always held a value");
        clear_hook();
        assert_eq!(op.index(), i2);
        assert_eq!(op.recv(&r2), Ok(2));

        let (_s1, r1, _s2, r2) = racing_pair(bounded);
        let mut sel = Select::new_biased();
        let i2 = sel.recv(&r2);
        let _i1 = sel.recv(&r1);
        assert_eq!(sel.try_ready(), Ok(i2));
        clear_hook();
    }
}
