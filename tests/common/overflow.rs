//! A recursion that runs a stack out, for the tests whose child overflows on purpose.

use std::hint::black_box;

/// Recurses until the stack runs out. The local array (black-boxed) and the use of the
/// result after the call keep the compiler from turning it into a loop; the condition on a
/// black-boxed value keeps it from seeing the recursion as unconditional.
pub fn recurse_forever(depth: u64) -> u64 {
    let mut local = [0u8; 512];
    local[depth as usize % 512] = depth as u8;
    black_box(&mut local);
    if black_box(depth) == u64::MAX {
        return 0;
    }
    recurse_forever(depth + 1) + u64::from(local[7])
}
