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
//! in the process's name. With the default feature `fast-status` those two
//! rely on that:
//!
//! - the parse stops after the line that completes the six fields: the two
//!   fifths of the text after `CapEff` can hold none of them, and a text
//!   longer than the read buffer (many CPUs or groups) needs no further
//!   `read`;
//! - they remember where the six lines started (`status()` for the whole
//!   process, each reader for itself). A poller reads texts of one layout
//!   again and again: the lines before the sizes change length only with
//!   the name, `FDSize` and the like, and the kernel pads the sizes. So the
//!   next parse looks there first: where each key stands at its place and
//!   each value is as the kernel writes it, the six are read there, in
//!   straight-line code, and nothing else is looked at. Anything else, and
//!   the text is scanned, and the new places remembered.
//!
//! For any text the kernel writes, both give the answer a scan of the whole
//! text gives; the unit tests and the fuzzer compare them over stale
//! layouts and every form of value, and the tests read the real file while
//! its layout changes.

mod parse;
mod read;

#[cfg(fuzzing)]
#[doc(hidden)]
pub use parse::fuzz_kernel_text;
use parse::Layout;
pub use parse::{Status, StatusParser};
pub use read::{is_locked, locked_bytes, status, StatusReader};
