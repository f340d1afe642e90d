//! Fault injection: a failpoint (the `fail` crate, as TiKV uses it) at every write, fsync,
//! rename, unlink and catalog update of the backup, restore, gc, delete and recover paths.
//! Each is named `<layer>.<object>.<step>` and written as `fault!("name", wrap)`, so
//! `tests/failpoints.rs` can list them from the source and walk every one.
//!
//! Without the `failpoints` cargo feature (every production build) they compile to nothing.
//! With it, `serve` arms them from `FAILPOINTS` (`name=return`, `name=panic`, …; see the
//! `fail` crate): `return` makes the step fail as an I/O error would, `panic` panics there.

/// Fails the enclosing function at failpoint `$name` when it is armed with `return`: the
/// injected I/O error goes through `$wrap` into the function's error type.
macro_rules! fault {
    ($name:literal, $wrap:expr) => {
        fail::fail_point!($name, |_| Err($wrap($crate::faults::injected($name))))
    };
}
pub(crate) use fault;

/// The I/O error an armed failpoint stands for.
#[cfg_attr(not(feature = "failpoints"), allow(dead_code))]
pub(crate) fn injected(name: &str) -> std::io::Error {
    std::io::Error::other(format!("injected fault at failpoint {name}"))
}
