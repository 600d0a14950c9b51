//! What the kernel says is locked: `/proc/self/status`, read into a stack
//! buffer and parsed as it streams, with no allocation: `parse` is the
//! pure streaming parser ([`Status`], [`StatusParser`]), `read` opens the
//! file through `procfs` and feeds it ([`status`], [`StatusReader`]).
//!
//! # The kernel's own text
//!
//! [`Status::parse`] and [`StatusParser::new`] look at every line of the
//! bytes they are given, so a duplicate or malformed field anywhere is
//! found. [`status()`] and [`StatusReader`] read procfs (checked with
//! `fstatfs(2)`), where `proc_pid_status()` in `fs/proc/array.c` writes
//! each key once, the sizes (`task_mem()`) before `CapEff` (`task_cap()`),
//! and escapes newlines in the process's name; so they stop after the six
//! fields, and a text over the read buffer (many CPUs or groups) needs no
//! further `read` once `CapEff` is in. For any text the kernel writes the
//! answer is that of [`Status::parse`]; the unit tests, the fuzzer and
//! `tests/status.rs` compare them.

mod parse;
mod read;

#[cfg(fuzzing)]
#[doc(hidden)]
pub use parse::fuzz_kernel_text;
pub use parse::{Status, StatusParser};
pub use read::{is_locked, locked_bytes, status, StatusReader};
