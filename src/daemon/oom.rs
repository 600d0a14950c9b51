//! The OOM killer's view of this process: `/proc/self/oom_score_adj`, read
//! and written with raw syscalls and formatted without `core::fmt`.

use crate::sys::{self, OpenMode};
use crate::{procfs, Error};

/// The lowest `oom_score_adj`: the OOM killer never picks the process.
pub const OOM_SCORE_ADJ_MIN: i32 = -1000;
/// The highest `oom_score_adj`: the OOM killer picks the process first.
pub const OOM_SCORE_ADJ_MAX: i32 = 1000;

const PATH: &core::ffi::CStr = c"/proc/self/oom_score_adj";

/// Reads `/proc/self/oom_score_adj`: how the OOM killer's choice is biased
/// for this process, from [`OOM_SCORE_ADJ_MIN`] (never killed) to
/// [`OOM_SCORE_ADJ_MAX`] (killed first); 0 is neutral.
///
/// # Errors
/// - [`Error::ProcUnavailable`]: `/proc` is not mounted, or is not procfs.
/// - [`Error::Malformed`]: the file does not hold one decimal number in
///   range, as the kernel writes it.
/// - [`Error::Unsupported`] on a target without the raw backend.
///
/// # References
/// - [`proc_pid_oom_score_adj(5)`](https://man7.org/linux/man-pages/man5/proc_pid_oom_score_adj.5.html)
pub fn oom_score_adj() -> Result<i32, Error> {
    let fd = open(OpenMode::Read)?;
    // "-1000\n" is the longest valid text; a longer read is malformed.
    let mut buf = [0u8; 16];
    parse(procfs::read_whole(&fd, &mut buf)?)
}

/// Writes `value` to `/proc/self/oom_score_adj`.
///
/// A swap daemon lowers it (to [`OOM_SCORE_ADJ_MIN`], say) so that the OOM
/// killer, which runs exactly when memory is short, does not kill the
/// process that the kernel's own swap-out depends on.
///
/// Raising the value is always allowed. Lowering it below the floor
/// (`oom_score_adj_min`: the last value a process with `CAP_SYS_RESOURCE`
/// set, inherited across `fork`, 0 by default) needs `CAP_SYS_RESOURCE`.
///
/// # Errors
/// - [`Error::InvalidArgument`]: `value` is outside
///   [`OOM_SCORE_ADJ_MIN`]`..=`[`OOM_SCORE_ADJ_MAX`]; checked before any
///   syscall.
/// - [`Error::NeedsCapSysResource`]
///   (`EACCES` from the write): lowering below the floor without
///   `CAP_SYS_RESOURCE`.
/// - [`Error::NotDumpable`] (`EACCES` from the open): the file belongs to
///   root because the process is not dumpable (after a `setuid` or with file capabilities;
///   `PR_SET_DUMPABLE` 1 gives it back to the process's uid).
/// - [`Error::ProcUnavailable`]: `/proc` is not mounted, or is not procfs.
/// - [`Error::Unsupported`] on a target without the raw backend.
///
/// # References
/// - [`proc_pid_oom_score_adj(5)`](https://man7.org/linux/man-pages/man5/proc_pid_oom_score_adj.5.html)
/// - [`capabilities(7)`](https://man7.org/linux/man-pages/man7/capabilities.7.html)
#[doc(alias = "oom_score_adj")]
pub fn set_oom_score_adj(value: i32) -> Result<(), Error> {
    if !(OOM_SCORE_ADJ_MIN..=OOM_SCORE_ADJ_MAX).contains(&value) {
        return Err(Error::InvalidArgument);
    }
    let mut text = [0u8; 8];
    let text = format(value, &mut text);
    let fd = open(OpenMode::Write)?;
    // procfs takes the number in one write, or fails it whole.
    match sys::write(fd.borrow(), text) {
        Ok(n) if n == text.len() => Ok(()),
        Ok(_) => Err(Error::ShortWrite),
        // The write is refused with EACCES below the floor.
        Err(e) => Err(e.read_as(Error::ACCESS_DENIED, Error::NeedsCapSysResource)),
    }
}

/// Opens the file, and checks that it is on procfs before trusting it.
/// procfs refuses the open with `EACCES` only when the file is not the
/// process's own: a process that is not dumpable has its `/proc/self`
/// files owned by root.
fn open(mode: OpenMode) -> Result<sys::Fd, Error> {
    procfs::open_proc(PATH, mode).map_err(|e| e.read_as(Error::ACCESS_DENIED, Error::NotDumpable))
}

/// Parses the kernel's text: an optional `-`, decimal digits, a newline.
fn parse(text: &[u8]) -> Result<i32, Error> {
    let text = text.strip_suffix(b"\n").ok_or(Error::Malformed)?;
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    if digits.is_empty() || digits.len() > 4 {
        return Err(Error::Malformed);
    }
    let mut value: i32 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(Error::Malformed);
        }
        value = value * 10 + i32::from(d - b'0');
    }
    let value = if negative { -value } else { value };
    if (OOM_SCORE_ADJ_MIN..=OOM_SCORE_ADJ_MAX).contains(&value) {
        Ok(value)
    } else {
        Err(Error::Malformed)
    }
}

/// Formats `value` (in range) as decimal with a trailing newline, into the
/// end of `buf`; returns the text.
fn format(value: i32, buf: &mut [u8; 8]) -> &[u8] {
    let mut start = buf.len() - 1;
    buf[start] = b'\n';
    let mut rest = value.unsigned_abs();
    loop {
        start -= 1;
        // `rest % 10` is a single digit.
        buf[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if value < 0 {
        start -= 1;
        buf[start] = b'-';
    }
    &buf[start..]
}

#[cfg(test)]
mod tests {
    use super::{format, parse};
    use crate::Error;

    #[test]
    fn format_and_parse_agree_over_the_whole_range() {
        for v in -1000..=1000 {
            let mut buf = [0u8; 8];
            assert_eq!(parse(format(v, &mut buf)), Ok(v));
        }
        let mut buf = [0u8; 8];
        assert_eq!(format(-1000, &mut buf), b"-1000\n");
        assert_eq!(format(0, &mut buf), b"0\n");
    }

    #[test]
    fn parse_rejects_what_the_kernel_never_writes() {
        for bad in [
            &b""[..],
            b"\n",
            b"-\n",
            b"12",
            b"1001\n",
            b"-1001\n",
            b"99999\n",
            b"+5\n",
            b"5 \n",
        ] {
            assert_eq!(parse(bad), Err(Error::Malformed), "{bad:?}");
        }
    }
}
