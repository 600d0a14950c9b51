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

mod parse;
mod read;

#[cfg(fuzzing)]
#[doc(hidden)]
pub use parse::fuzz_kernel_text;
use parse::Layout;
pub use parse::{Status, StatusParser};
pub use read::{is_locked, locked_bytes, status, StatusReader};
