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
/// ready, one is picked without favouring any arm; only that one happens. `rx`/`tx` may be
/// channel ends or references to them. Unlike crossbeam, every `send` value expression is
/// evaluated before the select starts, and the values of the arms not selected are dropped.
/// The arm bodies run in the enclosing function, so `return`, `break`, `continue` and `?`
/// work in them. At most 32 `recv`/`send` arms.
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
    (@list () $arms:tt) => {
        $crate::select!(@case $arms [] [])
    };
    (@list (default => $($tail:tt)*) $arms:tt) => {
        $crate::select!(@list (default() => $($tail)*) $arms)
    };
    (@list ($kind:ident $args:tt $(-> $res:pat)? => { $($body:tt)* }, $($tail:tt)*)
        [$($arms:tt)*]) => {
        $crate::select!(@list ($($tail)*) [$($arms)* ($kind $args ($($res)?) { $($body)* })])
    };
    (@list ($kind:ident $args:tt $(-> $res:pat)? => { $($body:tt)* } $($tail:tt)*)
        [$($arms:tt)*]) => {
        $crate::select!(@list ($($tail)*) [$($arms)* ($kind $args ($($res)?) { $($body)* })])
    };
    (@list ($kind:ident $args:tt $(-> $res:pat)? => $body:expr, $($tail:tt)*)
        [$($arms:tt)*]) => {
        $crate::select!(@list ($($tail)*) [$($arms)* ($kind $args ($($res)?) { $body })])
    };
    (@list ($kind:ident $args:tt $(-> $res:pat)? => $body:expr $(,)?) [$($arms:tt)*]) => {
        $crate::select!(@list () [$($arms)* ($kind $args ($($res)?) { $body })])
    };
    (@list ($($tail:tt)*) $arms:tt) => {
        ::core::compile_error!(::core::concat!(
            "select!: expected `recv(rx) -> res => body`, `send(tx, value) -> res => body`, ",
            "`default => body` or `default(timeout) => body`, found `",
            ::core::stringify!($($tail)*),
            "`"
        ))
    };

    // Stage 2, `@case`: check each arm's arguments; collect operations and the default.
    (@case [] $ops:tt $def:tt) => {
        $crate::select!(@pair $ops $def [
            __a0 __a1 __a2 __a3 __a4 __a5 __a6 __a7 __a8 __a9 __a10 __a11 __a12 __a13 __a14
            __a15 __a16 __a17 __a18 __a19 __a20 __a21 __a22 __a23 __a24 __a25 __a26 __a27
            __a28 __a29 __a30 __a31
        ] [])
    };
    (@case [(recv ($rx:expr $(,)?) ($res:pat) $body:tt) $($rest:tt)*] [$($ops:tt)*] $def:tt) => {
        $crate::select!(@case [$($rest)*]
            [$($ops)* (($crate::sync::__select::RecvArm::new(&$rx)) ($res) $body)] $def)
    };
    (@case [(send ($tx:expr, $value:expr $(,)?) ($res:pat) $body:tt) $($rest:tt)*]
        [$($ops:tt)*] $def:tt) => {
        $crate::select!(@case [$($rest)*]
            [$($ops)* (($crate::sync::__select::SendArm::new(&$tx, $value)) ($res) $body)] $def)
    };
    (@case [(default () () $body:tt) $($rest:tt)*] $ops:tt []) => {
        $crate::select!(@case [$($rest)*] $ops [($crate::sync::__select::Mode::Try) $body])
    };
    (@case [(default ($timeout:expr $(,)?) () $body:tt) $($rest:tt)*] $ops:tt []) => {
        $crate::select!(@case [$($rest)*] $ops
            [($crate::sync::__select::Mode::Timeout($timeout)) $body])
    };
    (@case [(default $($arm:tt)*) $($rest:tt)*] $ops:tt [$($def:tt)+]) => {
        ::core::compile_error!("select!: only one `default` arm is allowed")
    };
    (@case [($kind:ident $args:tt $($arm:tt)*) $($rest:tt)*] $ops:tt $def:tt) => {
        ::core::compile_error!(::core::concat!(
            "select!: invalid `", ::core::stringify!($kind), "` arm (arguments `",
            ::core::stringify!($args), "`); expected `recv(rx) -> res`, `send(tx, value) -> res`, ",
            "`default` or `default(timeout)`"
        ))
    };

    // Stage 3, `@pair`: give every operation a local variable name.
    (@pair [] $def:tt $ids:tt [$($done:tt)*]) => {
        $crate::select!(@gen [$($done)*] $def)
    };
    (@pair [$op:tt $($ops:tt)*] $def:tt [$id:ident $($ids:ident)*] [$($done:tt)*]) => {
        $crate::select!(@pair [$($ops)*] $def [$($ids)*] [$($done)* ($id $op)])
    };
    (@pair $ops:tt $def:tt [] $done:tt) => {
        ::core::compile_error!("select!: at most 32 `recv`/`send` arms")
    };

    // Stage 4, `@gen`: build the `Select`, run it, run the selected arm.
    (@gen $ops:tt []) => {
        $crate::select!(@emit $ops ($crate::sync::__select::Mode::Block) {
            ::core::unreachable!("a blocking select completes an operation")
        })
    };
    (@gen $ops:tt [$mode:tt $default:tt]) => {
        $crate::select!(@emit $ops $mode $default)
    };
    (@emit [$(($id:ident (($($ctor:tt)*) ($res:pat) $body:tt)))*] ($($mode:tt)*) $default:tt) => {{
        $( let mut $id = $($ctor)*; )*
        let __selected = {
            #[allow(unused_mut)]
            let mut __sel = $crate::sync::Select::new();
            $( $id.add_to(&mut __sel); )*
            __sel.run($($mode)*)
        };
        match __selected {
            $( ::core::option::Option::Some(__i) if __i == $id.index() => {
                let $res = $id.into_result();
                $body
            } )*
            _ => $default,
        }
    }};

    // Entry point.
    ($($tokens:tt)*) => {
        $crate::select!(@list ($($tokens)*) [])
    };
}
