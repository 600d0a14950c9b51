//! What the kernel says is locked: `/proc/self/status`, read into a stack
//! buffer and parsed as it streams, with no allocation. `parse` is the
//! parser ([`Status`], [`StatusParser`]); `read` opens the file and feeds
//! it ([`status`], [`StatusReader`]).
//!
//! # The kernel's own text
//!
//! [`Status::parse`] looks at every line, so a duplicate or malformed
//! field anywhere is found. [`status()`] and [`StatusReader`] read procfs,
//! where `proc_pid_status()` (`fs/proc/array.c`) writes each key once, the
//! sizes before `CapEff`, and escapes newlines in the name: they stop
//! after the six fields, with the answer [`Status::parse`] gives (the unit
//! tests, the fuzzer and `tests/status.rs` compare the two).

mod parse;
mod read;

#[cfg(fuzzing)]
#[doc(hidden)]
pub use parse::fuzz_kernel_text;
pub use parse::{Status, StatusParser};
pub use read::{is_locked, locked_bytes, status, StatusReader};
