//! Small files under `/proc` (and the cgroup files they point to), read
//! through stack buffers: the open that checks the file system, the
//! read of a whole small file, and a line-by-line reader for files of
//! unknown length (`/proc/self/mountinfo`). `status` opens its file here
//! too, and keeps its own streaming parser, which needs no line buffer.

use core::ffi::CStr;

use crate::sys::{self, Fd, OpenMode};
use crate::Error;

/// Opens `path` under `/proc` (`O_NOFOLLOW | O_CLOEXEC`) and checks with
/// `fstatfs(2)` that it is on procfs: a container or a test can mount
/// anything at `/proc`. A missing file, or a `/proc` that is not procfs,
/// is [`Error::ProcUnavailable`].
pub(crate) fn open_proc(path: &CStr, mode: OpenMode) -> Result<Fd, Error> {
    let fd = sys::open(path, mode).map_err(proc_error)?;
    if !sys::is_procfs(&fd)? {
        return Err(Error::ProcUnavailable);
    }
    Ok(fd)
}

/// [`open_proc`] for a file read over and over: the `fstatfs(2)` check
/// runs only until it passes once in this process, which `checked`
/// remembers (a [`sys::ForkLocal`], so that a forked child, which may
/// have unshared its mount namespace, checks again). Saves a system call
/// on every open after the first.
pub(crate) fn open_proc_once(
    path: &CStr,
    mode: OpenMode,
    checked: &sys::ForkLocal,
) -> Result<Fd, Error> {
    let fd = sys::open(path, mode).map_err(proc_error)?;
    if checked.get() == 0 {
        if !sys::is_procfs(&fd)? {
            return Err(Error::ProcUnavailable);
        }
        checked.set(1);
    }
    Ok(fd)
}

/// Whether procfs is mounted at `/proc`: `/proc/self/status` opens, and
/// `fstatfs(2)` says procfs. Answers `false`, not an error, when it does
/// not open.
///
/// The same two calls as [`open_proc`], with the errors read differently
/// (a file that does not open is an answer here). Written out rather than
/// as a match on `open_proc`'s result: that costs a static `/init` about
/// 120 bytes, which it does not have to spare (8,192 on aarch64).
pub(crate) fn is_mounted() -> Result<bool, Error> {
    if let Ok(fd) = sys::open(c"/proc/self/status", OpenMode::Read) {
        return sys::is_procfs(&fd);
    }
    Ok(false)
}

/// A missing file under `/proc` means `/proc` is not mounted.
pub(crate) fn proc_error(e: Error) -> Error {
    e.read_as(Error::NOT_FOUND, Error::ProcUnavailable)
}

/// Reads from `fd` to the end of the file into `buf` and returns the text.
/// A file that does not fit is [`Error::Malformed`]: every caller knows
/// the largest text the kernel writes there.
pub(crate) fn read_whole<'a>(fd: &Fd, buf: &'a mut [u8]) -> Result<&'a [u8], Error> {
    let mut len = 0;
    loop {
        let Some(rest) = buf.get_mut(len..) else {
            return Err(Error::Malformed);
        };
        if rest.is_empty() {
            return Err(Error::Malformed);
        }
        let n = sys::read(fd, rest)?;
        if n == 0 {
            return buf.get(..len).ok_or(Error::Malformed);
        }
        len += n;
    }
}

/// The longest line [`for_each_line`] hands out; longer lines are skipped
/// whole (no line the crate looks for comes near it).
pub(crate) const LINE_MAX: usize = 1024;

/// Calls `f` with each line of `fd`'s file (without its newline), read
/// through a stack buffer of [`LINE_MAX`] bytes, until `f` returns `true`
/// or the file ends. A line longer than the buffer is skipped.
pub(crate) fn for_each_line(fd: &Fd, mut f: impl FnMut(&[u8]) -> bool) -> Result<(), Error> {
    let mut buf = [0u8; LINE_MAX];
    let mut len = 0; // bytes held in `buf`
    let mut skipping = false; // inside a line too long to hold
    loop {
        let Some(rest) = buf.get_mut(len..) else {
            return Err(Error::Malformed);
        };
        let n = sys::read(fd, rest)?;
        let end = len + n;
        let mut start = 0;
        while let Some(pos) = buf
            .get(start..end)
            .and_then(|held| held.iter().position(|&b| b == b'\n'))
        {
            let line = buf.get(start..start + pos).unwrap_or_default();
            if !skipping && f(line) {
                return Ok(());
            }
            skipping = false;
            start += pos + 1;
        }
        if n == 0 {
            // A last line without a newline is still a line.
            let tail = buf.get(start..end).unwrap_or_default();
            if !skipping && !tail.is_empty() {
                f(tail);
            }
            return Ok(());
        }
        if start == 0 && end == buf.len() {
            // One line fills the buffer: drop it and skip to its end.
            skipping = true;
            len = 0;
        } else {
            buf.copy_within(start..end, 0);
            len = end - start;
        }
    }
}

/// Parses an unsigned decimal number followed by an optional newline, as
/// the kernel writes one.
pub(crate) fn parse_u64(text: &[u8]) -> Option<u64> {
    let digits = text.strip_suffix(b"\n").unwrap_or(text);
    if digits.is_empty() {
        return None;
    }
    let mut value: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::parse_u64;

    #[test]
    fn numbers_as_the_kernel_writes_them() {
        assert_eq!(parse_u64(b"0\n"), Some(0));
        assert_eq!(parse_u64(b"67108864\n"), Some(67_108_864));
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616\n"), None);
        assert_eq!(parse_u64(b"max\n"), None);
        assert_eq!(parse_u64(b"\n"), None);
        assert_eq!(parse_u64(b"1 2\n"), None);
    }
}
