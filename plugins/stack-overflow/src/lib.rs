//! Hostile: `sync` recurses without end until the host's stack limit traps.
//!
//! The recursion keeps its state in wasm locals (no shadow-stack frame) and combines results
//! with a non-associative step, so the compiler can turn it neither into a loop nor into a
//! silent overwrite of linear memory: the native stack limit is what stops it.

use syncore_plugin_sdk::{export_actuator, Actuator, ObjectView, Outcome};

/// Recurses `n` times; `n` comes from the object so it cannot be folded away.
fn deep(n: u64, salt: u64) -> u64 {
    if n == 0 {
        return salt;
    }
    deep(n - 1, salt ^ n).wrapping_mul(31).rotate_left(3)
}

/// Overflows the stack.
struct Overflow;

impl Actuator for Overflow {
    fn sync(object: &ObjectView) -> Outcome {
        let depth = u64::MAX - object.version;
        Outcome::ok_with([("depth", deep(depth, object.version) as i64)])
    }
}

export_actuator!(Overflow);
