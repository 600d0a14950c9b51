//! What the kernel says is locked: `/proc/self/status`, read into a stack
//! buffer and parsed as it streams, with no allocation.

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
    /// [`Error::Malformed`] when a field this type reads is not as the kernel
    /// writes it: a value that is not a decimal number of `kB`, that
    /// overflows `u64` in bytes, that appears twice, or whose line is cut off
    /// (the last line of the kernel's text always ends in a newline). Other
    /// lines are skipped, whatever they hold.
    pub fn parse(bytes: &[u8]) -> Result<Status, Error> {
        let mut parser = Parser::new();
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

impl Field {
    fn from_key(key: &[u8]) -> Option<Field> {
        Some(match key {
            b"VmLck" => Field::Locked,
            b"VmPin" => Field::Pinned,
            b"VmSize" => Field::Size,
            b"VmRSS" => Field::Rss,
            b"VmSwap" => Field::Swap,
            b"CapEff" => Field::CapEff,
            _ => return None,
        })
    }
}

/// The longest line of a recorded field the parser accepts. The kernel's
/// are under 30 bytes (`VmSize:\t18446744073709551615 kB`); a longer one is
/// malformed. Other lines may be any length: they are skipped as they
/// stream past.
const LINE_MAX: usize = 64;

/// An incremental parser: feed it the file in chunks of any size.
///
/// A line that spans two chunks is carried over in a small fixed buffer;
/// only its first [`LINE_MAX`] bytes are kept, which is enough to tell
/// whether it is a field we record.
#[derive(Debug)]
pub(crate) struct Parser {
    status: Status,
    carry: heapless::Vec<u8, LINE_MAX>,
    /// The carried line is longer than `carry` holds.
    overlong: bool,
    error: Option<Error>,
}

impl Parser {
    pub(crate) fn new() -> Parser {
        Parser {
            status: Status::default(),
            carry: heapless::Vec::new(),
            overlong: false,
            error: None,
        }
    }

    /// Consumes the next chunk of the file.
    pub(crate) fn feed(&mut self, mut chunk: &[u8]) {
        while self.error.is_none() {
            let Some(nl) = chunk.iter().position(|&b| b == b'\n') else {
                self.carry_over(chunk);
                return;
            };
            let (line, rest) = (&chunk[..nl], &chunk[nl + 1..]);
            if self.carry.is_empty() && !self.overlong {
                self.line(line, line.len() > LINE_MAX);
            } else {
                self.carry_over(line);
                let carry = core::mem::take(&mut self.carry);
                self.line(&carry, self.overlong);
                self.overlong = false;
            }
            chunk = rest;
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

    /// Ends the input; a line without its newline was cut off.
    pub(crate) fn finish(mut self) -> Result<Status, Error> {
        if self.error.is_none() && (!self.carry.is_empty() || self.overlong) {
            let carry = core::mem::take(&mut self.carry);
            if field_of(&carry).is_some() {
                self.error = Some(Error::Malformed);
            }
        }
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.status),
        }
    }

    /// Handles one complete line (without its newline). `too_long` says the
    /// line exceeds [`LINE_MAX`], in which case `line` may hold only its
    /// start.
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

/// Splits a line into a recorded field and the text after its colon.
fn field_of(line: &[u8]) -> Option<(Field, &[u8])> {
    let colon = line.iter().position(|&b| b == b':')?;
    let field = Field::from_key(&line[..colon])?;
    Some((field, &line[colon + 1..]))
}

/// Skips the spaces and tabs the kernel pads values with.
fn trim_start(s: &[u8]) -> &[u8] {
    let blank = s.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    &s[blank..]
}

/// Parses `<blanks><decimal> kB` into bytes, checked.
fn parse_kb(value: &[u8]) -> Option<u64> {
    let value = trim_start(value);
    let digits = value.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || &value[digits..] != b" kB" {
        return None;
    }
    let mut kb: u64 = 0;
    for &d in &value[..digits] {
        kb = kb.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    kb.checked_mul(1024)
}

/// Parses `<blanks><hex>` (at most 16 digits, as in `CapEff`).
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

/// The size of the stack buffer the file is read through.
const READ_CHUNK: usize = 1024;

/// Opens `/proc/self/status` and checks that it is procfs.
pub(crate) fn open_status() -> Result<Fd, Error> {
    let fd = sys::open(c"/proc/self/status", OpenMode::Read).map_err(proc_error)?;
    if !sys::is_procfs(&fd)? {
        return Err(Error::ProcUnavailable);
    }
    Ok(fd)
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
/// stack buffer, into the parser.
pub(crate) fn read_status(fd: &Fd, positional: bool) -> Result<Status, Error> {
    let mut buf = [0u8; READ_CHUNK];
    let mut parser = Parser::new();
    let mut offset: u64 = 0;
    loop {
        let n = if positional {
            sys::pread(fd, &mut buf, offset)?
        } else {
            sys::read(fd, &mut buf)?
        };
        if n == 0 {
            return parser.finish();
        }
        parser.feed(&buf[..n]);
        offset += n as u64;
    }
}

/// Reads and parses `/proc/self/status`.
///
/// One `openat`, one `fstatfs` (to check that `/proc` really is procfs),
/// one or more `read`s into a stack buffer, one `close`. No allocation.
///
/// # Errors
/// - [`Error::ProcUnavailable`]: `/proc` is not mounted, or is not procfs.
/// - [`Error::Malformed`]: see [`Status::parse`].
/// - [`Error::Unsupported`] on a target without the raw backend.
///
/// # References
/// - [`proc_pid_status(5)`](https://man7.org/linux/man-pages/man5/proc_pid_status.5.html)
pub fn status() -> Result<Status, Error> {
    let fd = open_status()?;
    read_status(&fd, false)
}

/// `VmLck` of this process, in bytes.
///
/// # Errors
/// As [`status`]; [`Error::Malformed`] if the kernel wrote no `VmLck` line.
pub fn locked_bytes() -> Result<u64, Error> {
    status()?.locked_bytes().ok_or(Error::Malformed)
}

/// Whether any memory of this process is locked (`VmLck` > 0). Answers
/// `false` when `/proc` cannot be read.
#[must_use]
pub fn is_locked() -> bool {
    matches!(locked_bytes(), Ok(n) if n > 0)
}
