//! What the kernel says is locked: `/proc/self/status`, read into a stack
//! buffer and parsed as it streams, with no allocation.
//!
//! The file is a few hundred bytes to a few KiB (`Cpus_allowed_list`,
//! `Mems_allowed` and `Groups` grow with the machine). It is read through a
//! fixed buffer; a line that spans two reads is carried over in a small
//! fixed buffer, and only the six fields this crate records are parsed,
//! strictly, as the kernel writes them.

use crate::sys::{self, Fd, OpenMode};
use crate::Error;

/// The memory and capability fields of `/proc/self/status` this crate reads.
///
/// Sizes are in bytes (the kernel writes kB, and the parser multiplies by
/// 1024, checked). Each accessor answers `None` when the field is absent:
/// kernel threads have no `Vm*` lines, and old kernels lack some fields.
///
/// # References
/// - [`proc_pid_status(5)`](https://man7.org/linux/man-pages/man5/proc_pid_status.5.html)
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Status {
    locked: Option<u64>,
    pinned: Option<u64>,
    size: Option<u64>,
    rss: Option<u64>,
    swap: Option<u64>,
    cap_eff: Option<u64>,
}

impl Status {
    /// Parses the text of a `/proc/<pid>/status` file.
    ///
    /// ```
    /// let text = b"Name:\tdemo\nVmSize:\t    2048 kB\nVmLck:\t       8 kB\n";
    /// let status = mlock::Status::parse(text)?;
    /// assert_eq!(status.locked_bytes(), Some(8 * 1024));
    /// assert_eq!(status.size_bytes(), Some(2048 * 1024));
    /// assert_eq!(status.swap_bytes(), None);
    /// # Ok::<(), mlock::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Malformed`] when a field this type records (`VmLck`,
    /// `VmPin`, `VmSize`, `VmRSS`, `VmSwap`, `CapEff`) is not as the kernel
    /// writes it: a value that is not blanks, a decimal number and ` kB`
    /// (or, for `CapEff`, up to 16 hex digits), that overflows `u64` in
    /// bytes, a field that appears twice, a field line longer than 64
    /// bytes, or a field line cut off (the kernel ends every line with a
    /// newline). Every other line is skipped, whatever it holds: a key that
    /// only starts like a recorded one (`VmLcked:`) is another key.
    ///
    /// # References
    /// - [`proc_pid_status(5)`](https://man7.org/linux/man-pages/man5/proc_pid_status.5.html)
    pub fn parse(bytes: &[u8]) -> Result<Status, Error> {
        let mut parser = StatusParser::new();
        parser.feed(bytes);
        parser.finish()
    }

    /// `VmLck`: bytes locked with `mlock(2)`/`mlockall(2)`.
    #[must_use]
    pub fn locked_bytes(&self) -> Option<u64> {
        self.locked
    }

    /// `VmPin`: bytes pinned by the kernel or drivers (for example by
    /// RDMA or io_uring registered buffers); these cannot move either.
    #[must_use]
    pub fn pinned_bytes(&self) -> Option<u64> {
        self.pinned
    }

    /// `VmSize`: the total virtual size of the process; what
    /// `mlockall(MCL_CURRENT)` must fit under `RLIMIT_MEMLOCK`.
    #[must_use]
    pub fn size_bytes(&self) -> Option<u64> {
        self.size
    }

    /// `VmRSS`: bytes resident in RAM.
    #[must_use]
    pub fn rss_bytes(&self) -> Option<u64> {
        self.rss
    }

    /// `VmSwap`: bytes of anonymous memory swapped out. 0 for a fully
    /// locked process.
    #[must_use]
    pub fn swap_bytes(&self) -> Option<u64> {
        self.swap
    }

    /// Whether `CAP_IPC_LOCK` is in the effective set (`CapEff`, bit 14).
    #[must_use]
    pub fn has_ipc_lock(&self) -> Option<bool> {
        self.cap_eff
            .map(|caps| caps & (1 << crate::limits::CAP_IPC_LOCK) != 0)
    }

    /// The effective capability set (`CapEff`), as a bit mask.
    #[must_use]
    pub fn effective_capabilities(&self) -> Option<u64> {
        self.cap_eff
    }
}

/// A field this parser records.
#[derive(Clone, Copy)]
enum Field {
    Locked,
    Pinned,
    Size,
    Rss,
    Swap,
    CapEff,
}

/// The longest line of a recorded field the parser accepts. The kernel's
/// are under 32 bytes (`VmSize:\t18014398509481983 kB`); a longer one is
/// malformed. Other lines may be any length: they are skipped as they
/// stream past.
const LINE_MAX: usize = 64;

/// A streaming parser of `/proc/<pid>/status`: feed it the text in chunks
/// of any size, as they are read, then [`finish`](StatusParser::finish).
///
/// It needs no buffer for the whole file and allocates nothing: a line
/// that spans two chunks is carried over in a fixed 64-byte buffer, which
/// holds any line of a field [`Status`] records (longer lines of other
/// fields are skipped as they stream past). The result is the same as
/// [`Status::parse`] of the whole text, however it is split.
///
/// ```
/// use mlock::StatusParser;
///
/// let mut parser = StatusParser::new();
/// parser.feed(b"Name:\tdemo\nVmL");
/// parser.feed(b"ck:\t      16 kB\n");
/// assert_eq!(parser.finish()?.locked_bytes(), Some(16 * 1024));
/// # Ok::<(), mlock::Error>(())
/// ```
///
/// # References
/// - [`proc_pid_status(5)`](https://man7.org/linux/man-pages/man5/proc_pid_status.5.html)
#[derive(Debug, Clone)]
pub struct StatusParser {
    status: Status,
    carry: heapless::Vec<u8, LINE_MAX>,
    /// The carried line is longer than `carry` holds.
    overlong: bool,
    error: Option<Error>,
}

impl Default for StatusParser {
    fn default() -> StatusParser {
        StatusParser::new()
    }
}

impl StatusParser {
    /// A parser that has seen no text yet.
    #[must_use]
    pub const fn new() -> StatusParser {
        StatusParser {
            status: Status {
                locked: None,
                pinned: None,
                size: None,
                rss: None,
                swap: None,
                cap_eff: None,
            },
            carry: heapless::Vec::new(),
            overlong: false,
            error: None,
        }
    }

    /// Consumes the next chunk of the text. After a malformed field the
    /// rest is ignored, and [`finish`](StatusParser::finish) reports it.
    pub fn feed(&mut self, mut chunk: &[u8]) {
        if self.error.is_some() {
            return;
        }
        if !self.carry.is_empty() || self.overlong {
            // Finish the line the last chunk left unfinished.
            let Some(nl) = find_newline(chunk) else {
                self.carry_over(chunk);
                return;
            };
            self.carry_over(chunk.get(..nl).unwrap_or_default());
            let carry = core::mem::take(&mut self.carry);
            let overlong = core::mem::take(&mut self.overlong);
            self.line(&carry, overlong);
            chunk = chunk.get(nl + 1..).unwrap_or_default();
        }
        // Every line but the last is whole in `chunk`.
        let tail = for_each_line(chunk, |line| {
            self.line(line, line.len() > LINE_MAX);
            self.error.is_none()
        });
        if let Some(tail) = tail {
            self.carry_over(tail);
        }
    }

    /// Keeps the start of an unfinished line for the next chunk.
    fn carry_over(&mut self, part: &[u8]) {
        let room = LINE_MAX - self.carry.len();
        if part.len() > room {
            self.overlong = true;
        }
        let keep = &part[..part.len().min(room)];
        // `keep` fits in the remaining room, so this cannot fail.
        let _ = self.carry.extend_from_slice(keep);
    }

    /// Ends the text and returns what it held.
    ///
    /// # Errors
    /// [`Error::Malformed`] as described for [`Status::parse`]: a recorded
    /// field whose line has no newline at the end of the text was cut off
    /// (any other unfinished line is ignored).
    pub fn finish(self) -> Result<Status, Error> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if field_of(&self.carry).is_some() {
            return Err(Error::Malformed);
        }
        Ok(self.status)
    }

    /// Handles one complete line (without its newline). `too_long` says the
    /// line exceeds [`LINE_MAX`], in which case `line` may hold only its
    /// start.
    #[inline]
    fn line(&mut self, line: &[u8], too_long: bool) {
        let Some((field, value)) = field_of(line) else {
            return;
        };
        let parsed = if too_long {
            None
        } else {
            match field {
                Field::CapEff => parse_hex(value),
                _ => parse_kb(value),
            }
        };
        let slot = match field {
            Field::Locked => &mut self.status.locked,
            Field::Pinned => &mut self.status.pinned,
            Field::Size => &mut self.status.size,
            Field::Rss => &mut self.status.rss,
            Field::Swap => &mut self.status.swap,
            Field::CapEff => &mut self.status.cap_eff,
        };
        match (parsed, &slot) {
            (Some(v), None) => *slot = Some(v),
            // Unparsable, or the field appeared twice.
            _ => self.error = Some(Error::Malformed),
        }
    }
}

/// A mask with the high bit of each byte of `word` set where that byte is
/// a newline, and no other bit. Exact for every byte: no carry crosses
/// from one byte to the next.
#[inline(always)]
fn newline_mask(word: [u8; 8]) -> u64 {
    const LOW7: u64 = u64::from_ne_bytes([0x7f; 8]);
    const NEWLINES: u64 = u64::from_ne_bytes([b'\n'; 8]);
    let x = u64::from_le_bytes(word) ^ NEWLINES;
    // A byte of `x` is zero exactly where the text has a newline: adding
    // 0x7f to its low seven bits sets its high bit unless they are all
    // zero, and `| x` covers its own high bit.
    !(((x & LOW7).wrapping_add(LOW7)) | x | LOW7)
}

/// Calls `line` on each newline-terminated line of `text` that starts with
/// `V` or `C` (without its newline), eight bytes at a time, until it
/// returns `false`. Returns the unterminated rest after the last newline,
/// or `None` when stopped.
#[inline]
fn for_each_line<'a>(text: &'a [u8], mut line: impl FnMut(&'a [u8]) -> bool) -> Option<&'a [u8]> {
    let mut start = 0;
    let mut at = 0;
    let mut words = text.chunks_exact(8);
    for word in &mut words {
        let Ok(word) = <[u8; 8]>::try_from(word) else {
            break;
        };
        // Words are read little-endian: the lowest set bit is the first
        // newline in memory.
        let mut mask = newline_mask(word);
        while mask != 0 {
            let nl = at + (mask.trailing_zeros() / 8) as usize;
            if starts_candidate(text, start) && !line(&text[start..nl]) {
                return None;
            }
            start = nl + 1;
            mask &= mask - 1;
        }
        at += 8;
    }
    for (i, &b) in words.remainder().iter().enumerate() {
        if b == b'\n' {
            if starts_candidate(text, start) && !line(&text[start..at + i]) {
                return None;
            }
            start = at + i + 1;
        }
    }
    Some(&text[start..])
}

/// Whether the line at `start` may hold a recorded key: every one starts
/// with `V` or `C`, and most lines with neither.
#[inline(always)]
fn starts_candidate(text: &[u8], start: usize) -> bool {
    matches!(text.get(start), Some(b'V' | b'C'))
}

/// The index of the first newline in `s`, eight bytes at a time.
#[inline]
fn find_newline(s: &[u8]) -> Option<usize> {
    let mut words = s.chunks_exact(8);
    let mut at = 0;
    for word in &mut words {
        let Ok(word) = <[u8; 8]>::try_from(word) else {
            break;
        };
        let found = newline_mask(word);
        if found != 0 {
            return Some(at + (found.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    let tail = words.remainder();
    tail.iter().position(|&b| b == b'\n').map(|i| at + i)
}

/// The recorded keys with their colon, each as a little-endian word and
/// the mask of its bytes, for [`field_of`].
const KEYS: [(u64, u64, usize, Field); 6] = [
    key(b"VmLck:", Field::Locked),
    key(b"VmPin:", Field::Pinned),
    key(b"VmSize:", Field::Size),
    key(b"VmRSS:", Field::Rss),
    key(b"VmSwap:", Field::Swap),
    key(b"CapEff:", Field::CapEff),
];

const fn key(with_colon: &[u8], field: Field) -> (u64, u64, usize, Field) {
    let mut word = [0u8; 8];
    let mut mask = [0u8; 8];
    let mut i = 0;
    while i < with_colon.len() {
        word[i] = with_colon[i];
        mask[i] = 0xff;
        i += 1;
    }
    (
        u64::from_le_bytes(word),
        u64::from_le_bytes(mask),
        with_colon.len(),
        field,
    )
}

/// Splits a line into a recorded field and the text after its colon.
///
/// A key is what precedes the first colon, and no recorded key holds a
/// colon, so a line is a recorded field exactly when it starts with one of
/// the keys followed by a colon: at most 7 bytes, compared as one word.
#[inline]
fn field_of(line: &[u8]) -> Option<(Field, &[u8])> {
    let mut head = [0u8; 8];
    match line.get(..8) {
        Some(first) => head.copy_from_slice(first),
        None => head[..line.len()].copy_from_slice(line),
    }
    // Zero padding never matches: every pattern ends in a colon.
    let head = u64::from_le_bytes(head);
    let &(_, _, len, field) = KEYS
        .iter()
        .find(|&&(word, mask, _, _)| head & mask == word)?;
    Some((field, line.get(len..)?))
}

/// Skips the spaces and tabs the kernel pads values with.
fn trim_start(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    s
}

/// Parses `<blanks><decimal> kB` into bytes, checked.
fn parse_kb(value: &[u8]) -> Option<u64> {
    let value = trim_start(value);
    let mut rest = value;
    let mut kb: u64 = 0;
    while let [d @ b'0'..=b'9', tail @ ..] = rest {
        kb = kb.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        rest = tail;
    }
    // No digit at all, or anything but the unit after them.
    if rest.len() == value.len() || rest != b" kB" {
        return None;
    }
    kb.checked_mul(1024)
}

/// Parses `<blanks><hex>` (1 to 16 digits, as in `CapEff`).
fn parse_hex(value: &[u8]) -> Option<u64> {
    let value = trim_start(value);
    if value.is_empty() || value.len() > 16 {
        return None;
    }
    let mut bits: u64 = 0;
    for &d in value {
        let nibble = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            b'A'..=b'F' => d - b'A' + 10,
            _ => return None,
        };
        bits = (bits << 4) | u64::from(nibble);
    }
    Some(bits)
}

/// The size of the stack buffer the file is read through: one read holds
/// the whole file on most machines (about 1.4 KiB); larger files take
/// more reads, parsed as they stream.
const READ_CHUNK: usize = 2048;

/// Set once `/proc` has been seen to be procfs in this process; clear
/// again in a forked child, which may have another `/proc`.
static PROC_CHECKED: sys::ForkLocalFlag = sys::ForkLocalFlag::new();

/// Opens `/proc/self/status` and checks, with `fstatfs(2)`, that it is
/// procfs. A container or a test can mount anything at `/proc`.
pub(crate) fn open_status() -> Result<Fd, Error> {
    let fd = open_status_file()?;
    check_procfs(&fd)?;
    Ok(fd)
}

/// Opens `/proc/self/status`, unchecked.
fn open_status_file() -> Result<Fd, Error> {
    sys::open(c"/proc/self/status", OpenMode::Read).map_err(proc_error)
}

/// Fails unless `fd` is on procfs; remembers a pass in [`PROC_CHECKED`].
fn check_procfs(fd: &Fd) -> Result<(), Error> {
    if !sys::is_procfs(fd)? {
        return Err(Error::ProcUnavailable);
    }
    PROC_CHECKED.set();
    Ok(())
}

/// A missing file under `/proc` means `/proc` is not mounted.
pub(crate) fn proc_error(e: Error) -> Error {
    // ProcUnavailable's errno is ENOENT, which `from_errno` maps to `Os`.
    if matches!(e, Error::Os(_)) && e.errno() == Error::ProcUnavailable.errno() {
        Error::ProcUnavailable
    } else {
        e
    }
}

/// Reads an open status file from its start, chunk by chunk, through a
/// stack buffer, into the parser: with `read` from where a fresh
/// descriptor stands, or with `pread` from offset 0.
///
/// A read that returns fewer bytes than asked, ending in a newline, is the
/// last: procfs serves `status` from a `seq_file` that the kernel formats
/// whole on the first read, and a read returns everything that is left up
/// to the size asked. That saves the extra `read` that would only
/// return 0. Anything else (a full buffer, a cut line) reads on to the
/// end.
pub(crate) fn read_status(fd: &Fd, positional: bool) -> Result<Status, Error> {
    let mut buf = [0u8; READ_CHUNK];
    let mut parser = StatusParser::new();
    let mut offset: u64 = 0;
    loop {
        let n = if positional {
            sys::pread(fd, &mut buf, offset)?
        } else {
            sys::read(fd, &mut buf)?
        };
        let Some(data) = buf.get(..n) else {
            // The kernel never returns more than asked.
            return Err(Error::Malformed);
        };
        parser.feed(data);
        if n < buf.len() && (n == 0 || data.last() == Some(&b'\n')) {
            return parser.finish();
        }
        offset += n as u64;
    }
}

/// Reads and parses `/proc/self/status`.
///
/// One `openat`, one `read` into a stack buffer (more for a file over
/// 2 KiB), one `close`. No allocation. To poll, [`StatusReader`] saves the
/// `openat` and the `close`.
///
/// **Is `/proc` procfs?** A container or a test can mount anything at
/// `/proc`. The first call in a process checks the file with `fstatfs(2)`
/// and remembers the answer only if it is procfs; a child of `fork(2)`
/// checks again on its first call, since it may have unshared its mount
/// namespace. (The remembered flag lives in a page marked
/// `MADV_WIPEONFORK`, `madvise(2)`, which the kernel zero-fills in a forked
/// child; where that advice is missing, as before Linux 4.14 or under an
/// emulator that ignores advice, every call checks.) A process that itself
/// mounts something else over `/proc` after its first call is not caught
/// by later calls; [`StatusReader::open`] checks every time.
///
/// # Errors
/// - [`Error::ProcUnavailable`]: `/proc` is not mounted, or is not procfs.
/// - [`Error::Malformed`]: see [`Status::parse`].
/// - [`Error::Unsupported`] on a target without the raw backend.
///
/// # References
/// - [`proc_pid_status(5)`](https://man7.org/linux/man-pages/man5/proc_pid_status.5.html)
pub fn status() -> Result<Status, Error> {
    let fd = open_status_file()?;
    if !PROC_CHECKED.is_set() {
        check_procfs(&fd)?;
    }
    read_status(&fd, false)
}

/// `VmLck` of this process, in bytes.
///
/// # Errors
/// As [`status`]; [`Error::Malformed`] if the kernel wrote no `VmLck` line.
///
/// # References
/// - [`proc_pid_status(5)`](https://man7.org/linux/man-pages/man5/proc_pid_status.5.html)
pub fn locked_bytes() -> Result<u64, Error> {
    status()?.locked_bytes().ok_or(Error::Malformed)
}

/// Whether any memory of this process is locked (`VmLck` > 0). Answers
/// `false` when `/proc` cannot be read.
///
/// # References
/// - [`proc_pid_status(5)`](https://man7.org/linux/man-pages/man5/proc_pid_status.5.html)
#[must_use]
pub fn is_locked() -> bool {
    matches!(locked_bytes(), Ok(n) if n > 0)
}

/// A `/proc/self/status` kept open, for a daemon that polls it.
///
/// [`StatusReader::read`] re-reads the open descriptor with `pread(2)` at
/// offset 0: the kernel formats the file afresh on each read from the
/// start, and the `openat` and `close` of [`status`] are saved (about 0.6x
/// of its cost).
///
/// **Fork.** A descriptor opened on `/proc/self/status` names the process
/// that opened it, not whoever reads it later: after `fork(2)`, a child
/// reading the parent's descriptor would get the *parent's* `VmLck`. The
/// reader records the process ID when it opens, and [`read`] compares it
/// with `getpid(2)`; in a different process it reopens `/proc/self/status`
/// first, so every read describes the process that calls it. (The
/// descriptor itself is close-on-exec.)
///
/// ```no_run
/// let mut reader = mlock::StatusReader::open()?;
/// let status = reader.read()?;
/// println!("locked: {:?} bytes", status.locked_bytes());
/// # Ok::<(), mlock::Error>(())
/// ```
///
/// [`read`]: StatusReader::read
///
/// # References
/// - [`proc_pid_status(5)`](https://man7.org/linux/man-pages/man5/proc_pid_status.5.html)
/// - [`pread(2)`](https://man7.org/linux/man-pages/man2/pread.2.html)
#[derive(Debug)]
pub struct StatusReader {
    fd: Fd,
    pid: u32,
}

impl StatusReader {
    /// Opens `/proc/self/status` and checks that it is procfs, every time
    /// (unlike [`status`], which checks once per process).
    ///
    /// # Errors
    /// - [`Error::ProcUnavailable`]: `/proc` is not mounted, or is not
    ///   procfs.
    /// - [`Error::Unsupported`] on a target without the raw backend.
    ///
    /// # References
    /// - [`open(2)`](https://man7.org/linux/man-pages/man2/open.2.html)
    /// - [`statfs(2)`](https://man7.org/linux/man-pages/man2/statfs.2.html)
    pub fn open() -> Result<StatusReader, Error> {
        let pid = sys::getpid();
        Ok(StatusReader {
            fd: open_status()?,
            pid,
        })
    }

    /// Reads and parses the status of the calling process: one `getpid`
    /// and one `pread` (more for a file over 2 KiB). In a child of
    /// `fork(2)` the first call reopens the file for the child.
    ///
    /// # Errors
    /// - [`Error::Malformed`]: see [`Status::parse`].
    /// - [`Error::ProcUnavailable`]: reopening after a fork found no procfs
    ///   at `/proc`.
    ///
    /// # References
    /// - [`pread(2)`](https://man7.org/linux/man-pages/man2/pread.2.html)
    /// - [`proc_pid_status(5)`](https://man7.org/linux/man-pages/man5/proc_pid_status.5.html)
    pub fn read(&mut self) -> Result<Status, Error> {
        let pid = sys::getpid();
        if pid != self.pid {
            self.fd = open_status()?;
            self.pid = pid;
        }
        read_status(&self.fd, true)
    }

    /// The process ID this reader's descriptor describes: the one that
    /// opened it, or that last called [`read`](StatusReader::read).
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.pid
    }
}
