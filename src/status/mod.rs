//! What the kernel says is locked: `/proc/self/status`, read into a stack
//! buffer and parsed as it streams, with no allocation.
//!
//! The file is a few hundred bytes to a few KiB (`Cpus_allowed_list`,
//! `Mems_allowed` and `Groups` grow with the machine). It is read through a
//! fixed buffer; a line that spans two reads is carried over in a small
//! fixed buffer, and only the six fields this crate records are parsed,
//! strictly, as the kernel writes them.
//!
//! Two halves: `parse`, the pure streaming parser ([`Status`],
//! [`StatusParser`]), which knows nothing of files; and `read`, which
//! opens and reads the file through `procfs` and feeds the parser
//! ([`status`], [`StatusReader`]).
//!
//! # The kernel's own text
//!
//! [`Status::parse`] and [`StatusParser::new`] look at every line of the
//! bytes they are given, so a duplicate or malformed field anywhere is
//! found. What [`status()`] and [`StatusReader`] read comes from procfs
//! (checked with `fstatfs(2)`), where the kernel's own rules hold:
//! `proc_pid_status()` in `fs/proc/array.c` writes each key once, the sizes
//! (`task_mem()`) before `CapEff` (`task_cap()`), and escapes the newlines
//! in the process's name. Those two rely on that: the parse stops after
//! the line that completes the six fields. The two fifths of the text
//! after `CapEff` can hold none of them, and a text longer than the read
//! buffer (many CPUs or groups) needs no further `read` once `CapEff` is
//! in. For any text the kernel writes the answer is the one
//! [`Status::parse`] of the whole text gives; the unit tests, the fuzzer
//! and `tests/status.rs` (which reads the real file while its layout
//! changes) compare the two.

mod parse;
mod read;

#[cfg(fuzzing)]
#[doc(hidden)]
pub use parse::fuzz_kernel_text;
pub use parse::{Status, StatusParser};
pub use read::{is_locked, locked_bytes, status, StatusReader};
