//! The `select!` macro (exported at the crate root).

/// Waits on several channel operations and runs the arm of the one that completes, like
/// crossbeam's `select!`.
///
/// Arms, separated by commas (optional after a `{ block }`):
///
/// - `recv(rx) -> res => expr`: `res` is a pattern for `Result<T, RecvError>` (an error means
///   the channel is empty and disconnected).
/// - `send(tx, value) -> res => expr`: `res` is a pattern for `Result<(), SendError<T>>` (an
///   error holds the value: every receiver is gone).
/// - `default => expr`: runs if no operation is ready right now (the select never waits).
/// - `default(timeout) => expr`: runs if no operation completes within the `Duration`.
///
/// Without a `default` arm the select waits as long as it takes. If several operations are
/// ready, one is picked without favouring any arm ([`select_biased!`](crate::select_biased)
/// picks the first); only that one happens. `rx`/`tx` may be channel ends, references to
/// them, or expressions that make one (a temporary such as `channel::after(d)` lives until the
/// select ends). As in crossbeam, a `send` arm's value expression is evaluated only if that arm
/// is selected (room for it was reserved: the send then never waits), after every other
/// operation was given up. The value expression and the arm bodies run in the enclosing
/// function, so `return`, `break`, `continue` and `?` work in them (a send whose value
/// expression leaves that way gives its reserved room back). At most 32 `recv`/`send` arms.
///
/// ```
/// use std::time::Duration;
/// use sigcoro::select;
/// use sigcoro::sync::channel;
///
/// let (tx1, rx1) = channel::unbounded();
/// let (tx2, rx2) = channel::bounded(0);
/// std::thread::spawn(move || tx1.send(10).unwrap());
///
/// select! {
///     recv(rx1) -> msg => assert_eq!(msg, Ok(10)),
///     send(tx2, "nobody receives") -> res => panic!("unexpected {res:?}"),
/// }
///
/// let got = select! {
///     recv(rx2) -> _ => "value",
///     default(Duration::from_millis(10)) => "timed out",
/// };
/// assert_eq!(got, "timed out");
///
/// select! {
///     recv(rx2) -> _ => unreachable!(),
///     default => {}
/// }
/// ```
#[macro_export]
macro_rules! select {
    // Stage 1, `@list`: split the arms, normalising each to `(kind args (res) { body })`.
    (@list $b:tt () $arms:tt) => {
        $crate::select!(@case $b $arms [] [])
    };
    (@list $b:tt (default => $($tail:tt)*) $arms:tt) => {
        $crate::select!(@list $b (default() => $($tail)*) $arms)
    };
    (@list $b:tt ($kind:ident $args:tt $(-> $res:pat)? => { $($body:tt)* }, $($tail:tt)*)
        [$($arms:tt)*]) => {
        $crate::select!(@list $b ($($tail)*) [$($arms)* ($kind $args ($($res)?) { $($body)* })])
    };
    (@list $b:tt ($kind:ident $args:tt $(-> $res:pat)? => { $($body:tt)* } $($tail:tt)*)
        [$($arms:tt)*]) => {
        $crate::select!(@list $b ($($tail)*) [$($arms)* ($kind $args ($($res)?) { $($body)* })])
    };
    (@list $b:tt ($kind:ident $args:tt $(-> $res:pat)? => $body:expr, $($tail:tt)*)
        [$($arms:tt)*]) => {
        $crate::select!(@list $b ($($tail)*) [$($arms)* ($kind $args ($($res)?) { $body })])
    };
    (@list $b:tt ($kind:ident $args:tt $(-> $res:pat)? => $body:expr $(,)?) [$($arms:tt)*]) => {
        $crate::select!(@list $b () [$($arms)* ($kind $args ($($res)?) { $body })])
    };
    (@list $b:tt ($($tail:tt)*) $arms:tt) => {
        ::core::compile_error!(::core::concat!(
            "select!: expected `recv(rx) -> res => body`, `send(tx, value) -> res => body`, ",
            "`default => body` or `default(timeout) => body`, found `",
            ::core::stringify!($($tail)*),
            "`"
        ))
    };

    // Stage 2, `@case`: check each arm's arguments; collect operations and the default.
    (@case $b:tt [] $ops:tt $def:tt) => {
        $crate::select!(@pair $b $ops $def [
            __a0 __a1 __a2 __a3 __a4 __a5 __a6 __a7 __a8 __a9 __a10 __a11 __a12 __a13 __a14
            __a15 __a16 __a17 __a18 __a19 __a20 __a21 __a22 __a23 __a24 __a25 __a26 __a27
            __a28 __a29 __a30 __a31
        ] [])
    };
    (@case $b:tt [(recv ($rx:expr $(,)?) ($res:pat) $body:tt) $($rest:tt)*] [$($ops:tt)*] $def:tt) => {
        $crate::select!(@case $b [$($rest)*] [$($ops)* (recv ($rx) ($res) $body)] $def)
    };
    (@case $b:tt [(send ($tx:expr, $value:expr $(,)?) ($res:pat) $body:tt) $($rest:tt)*]
        [$($ops:tt)*] $def:tt) => {
        $crate::select!(@case $b [$($rest)*] [$($ops)* (send ($tx) ($value) ($res) $body)] $def)
    };
    (@case $b:tt [(default () () $body:tt) $($rest:tt)*] $ops:tt []) => {
        $crate::select!(@case $b [$($rest)*] $ops [($crate::sync::__select::Mode::Try) $body])
    };
    (@case $b:tt [(default ($timeout:expr $(,)?) () $body:tt) $($rest:tt)*] $ops:tt []) => {
        $crate::select!(@case $b [$($rest)*] $ops
            [($crate::sync::__select::Mode::Timeout($timeout)) $body])
    };
    (@case $b:tt [(default $($arm:tt)*) $($rest:tt)*] $ops:tt [$($def:tt)+]) => {
        ::core::compile_error!("select!: only one `default` arm is allowed")
    };
    (@case $b:tt [($kind:ident $args:tt $($arm:tt)*) $($rest:tt)*] $ops:tt $def:tt) => {
        ::core::compile_error!(::core::concat!(
            "select!: invalid `", ::core::stringify!($kind), "` arm (arguments `",
            ::core::stringify!($args), "`); expected `recv(rx) -> res`, `send(tx, value) -> res`, ",
            "`default` or `default(timeout)`"
        ))
    };

    // Stage 3, `@pair`: give every operation a local variable name.
    (@pair $b:tt [] $def:tt $ids:tt [$($done:tt)*]) => {
        $crate::select!(@gen $b [$($done)*] $def)
    };
    (@pair $b:tt [$op:tt $($ops:tt)*] $def:tt [$id:ident $($ids:ident)*] [$($done:tt)*]) => {
        $crate::select!(@pair $b [$($ops)*] $def [$($ids)*] [$($done)* ($id $op)])
    };
    (@pair $b:tt $ops:tt $def:tt [] $done:tt) => {
        ::core::compile_error!("select!: at most 32 `recv`/`send` arms")
    };

    // Stage 4, `@gen`: build the `Select`, run it, run the selected arm.
    (@gen $b:tt $ops:tt []) => {
        $crate::select!(@emit $b $ops ($crate::sync::__select::Mode::Block) {
            ::core::unreachable!("a blocking select completes an operation")
        })
    };
    (@gen $b:tt $ops:tt [$mode:tt $default:tt]) => {
        $crate::select!(@emit $b $ops $mode $default)
    };
    (@emit $b:tt [$(($id:ident $op:tt))*] ($($mode:tt)*) $default:tt) => {{
        // Each arm: (its channel end, borrowed so that a temporary lives until the end; its
        // receive slot; its index).
        $( $crate::select!(@decl $id $op); )*
        let __selected = {
            let mut __sel = if $b {
                $crate::sync::Select::new_biased()
            } else {
                $crate::sync::Select::new()
            };
            $( $crate::select!(@add __sel $id $op); )*
            __sel.run_macro($($mode)*)
        };
        match __selected {
            $( ::core::option::Option::Some((__i, __tok)) if __i == $id.2 => {
                $crate::select!(@finish __tok $id $op)
            } )*
            _ => $default,
        }
    }};
    (@decl $id:ident (recv ($rx:expr) $($rest:tt)*)) => {
        #[allow(unused_mut)]
        let mut $id = (&$rx, ::core::option::Option::None, 0usize);
    };
    (@decl $id:ident (send ($tx:expr) $($rest:tt)*)) => {
        #[allow(unused_mut)]
        let mut $id = (&$tx, (), 0usize);
    };
    (@add $sel:ident $id:ident (recv $($rest:tt)*)) => {
        $id.2 = $sel.recv_into($id.0, &mut $id.1);
    };
    (@add $sel:ident $id:ident (send $($rest:tt)*)) => {
        $id.2 = $sel.send($id.0);
    };
    (@finish $tok:ident $id:ident (recv $rx:tt ($res:pat) $body:tt)) => {{
        let _ = $tok;
        let $res = $crate::sync::__select::recv_result($id.1);
        $body
    }};
    (@finish $tok:ident $id:ident (send $tx:tt ($value:expr) ($res:pat) $body:tt)) => {{
        let $res = $crate::sync::__select::SendGuard::new($id.0, $tok).send($value);
        $body
    }};

    // Entry point.
    ($($tokens:tt)*) => {
        $crate::select!(@list false ($($tokens)*) [])
    };
}

/// [`select!`](crate::select), except that when several operations are ready it picks the one
/// written first, as crossbeam's `select_biased!`.
///
/// ```
/// use sigcoro::select_biased;
/// use sigcoro::sync::channel;
///
/// let (tx1, rx1) = channel::unbounded();
/// let (tx2, rx2) = channel::unbounded();
/// tx1.send(1).unwrap();
/// tx2.send(2).unwrap();
/// let got = select_biased! {
///     recv(rx1) -> v => v.unwrap(),
///     recv(rx2) -> v => v.unwrap(),
/// };
/// assert_eq!(got, 1);
/// ```
#[macro_export]
macro_rules! select_biased {
    ($($tokens:tt)*) => {
        $crate::select!(@list true ($($tokens)*) [])
    };
}
