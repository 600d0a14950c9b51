//! The streaming parser of `/proc/<pid>/status`: [`Status`] and
//! [`StatusParser`], pure functions of the bytes fed in, with no I/O.
//!
//! # How the parser is fast
//!
//! Every recorded key starts with `V` or `C`, two letters that in the
//! kernel's text stand almost only at the start of a line. The parser looks
//! for those two bytes 64 at a time (`sys::search`: SSE2 or NEON where the
//! target has them, AVX2 where an x86_64 CPU has it and the `fast-status`
//! feature is on, eight at a time in plain integer arithmetic elsewhere),
//! and checks each one found: the byte before it must be a newline and the
//! next few must be a recorded key, which one 8-byte compare against a
//! table tells (`KEYS`). Lines that are not recorded fields are never
//! walked byte by byte.
//!
//! A size as the kernel writes it (`%8lu kB`: a tab, eight columns, the
//! unit) is read as two words where an unaligned word is one load (x86_64,
//! aarch64): one integer test that the columns are spaces then digits, three
//! multiplies for the number (`kb_padded`). With `fast-status`, `CapEff` as
//! the kernel writes it (`%016llx`) is read as two words too
//! (`hex_written`). Any other value goes through one small byte loop
//! (`parse_value`) that reads every form the rules allow; the word readings
//! never answer differently, they only answer fewer forms.
//!
//! # The kernel's own text
//!
//! How [`status`](crate::status()) and
//! [`StatusReader`](crate::status::StatusReader) use what the kernel
//! guarantees of its text is in the `status` module's docs; here it is
//! [`StatusParser::of_kernel_text`], [`Layout`] and
//! [`Status::parse_kernel_text`].

use core::fmt;

use crate::sys;
use crate::Error;

/// The memory and capability fields of `/proc/self/status` this crate reads.
///
/// Sizes are in bytes (the kernel writes kB, and the parser multiplies by
/// 1024, checked). Each accessor answers `None` when the field is absent:
/// kernel threads have no `Vm*` lines, and old kernels lack some fields.
///
/// # References
/// - [`proc_pid_status(5)`](https://man7.org/linux/man-pages/man5/proc_pid_status.5.html)
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Status {
    /// The recorded values, each in the slot of its key (see [`KEYS`]);
    /// 0 where absent, so that equal statuses compare and hash equal.
    values: [u64; 8],
    /// Bit `s` is set when slot `s` holds a value.
    present: u64,
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
        Status::parse_whole(bytes, false).0
    }

    /// [`Status::parse`]; with `until_complete`, of the kernel's own text,
    /// as [`StatusParser::of_kernel_text`] parses it. The whole text at
    /// once: no line is carried, so the parser's buffer is not needed.
    /// Also answers where the recorded lines start.
    fn parse_whole(bytes: &[u8], until_complete: bool) -> (Result<Status, Error>, Layout) {
        let whole = bytes
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |nl| nl + 1);
        let (lines, cut) = bytes.split_at_checked(whole).unwrap_or_default();
        let mut status = Status::default();
        let mut layout = Layout::UNKNOWN;
        let result = match scan(&mut status, &mut layout, lines, until_complete) {
            Scanned::Complete => Ok(status),
            Scanned::All if cut.is_empty() || !is_field(cut) => Ok(status),
            // Malformed, or a recorded field cut off.
            _ => Err(Error::Malformed),
        };
        (result, layout)
    }

    /// Parses the kernel's own text of `/proc/<pid>/status`, whole, as
    /// [`StatusParser::of_kernel_text`] does, using and updating `layout`:
    /// where the recorded lines started in the last text parsed with it.
    ///
    /// A poller reads texts of one layout again and again: the lines before
    /// the sizes change length only when the process's name, its number of
    /// descriptors (`FDSize`) or the like does, and the kernel pads the
    /// sizes to eight columns. Where each recorded key stands at its place
    /// in `layout` (the newline before it, the key, the colon), the six
    /// values are read there, and nothing else of the text is looked at:
    /// the kernel writes each key once and escapes the newlines of the
    /// name, so a key found at a line's start is the one line of that key.
    /// Anywhere else, or with a value that is not as the kernel pads it,
    /// the text is scanned as [`Status::parse`] scans it, and `layout`
    /// learns the new places.
    pub(crate) fn parse_kernel_text(bytes: &[u8], layout: &mut Layout) -> Result<Status, Error> {
        if let Some(status) = FAST.then(|| layout.read(bytes)).flatten() {
            return Ok(status);
        }
        let (result, found) = Status::parse_whole(bytes, true);
        *layout = found;
        result
    }

    /// The value in `slot`, if the text had its field.
    #[inline]
    fn get(&self, slot: usize) -> Option<u64> {
        let value = *self.values.get(slot)?;
        (self.present & (1 << slot) != 0).then_some(value)
    }

    /// `VmLck`: bytes locked with `mlock(2)`/`mlockall(2)`.
    #[must_use]
    pub fn locked_bytes(&self) -> Option<u64> {
        self.get(LOCKED)
    }

    /// `VmPin`: bytes pinned by the kernel or drivers (for example by
    /// RDMA or io_uring registered buffers); these cannot move either.
    #[must_use]
    pub fn pinned_bytes(&self) -> Option<u64> {
        self.get(PINNED)
    }

    /// `VmSize`: the total virtual size of the process; what
    /// `mlockall(MCL_CURRENT)` must fit under `RLIMIT_MEMLOCK`.
    #[must_use]
    pub fn size_bytes(&self) -> Option<u64> {
        self.get(SIZE)
    }

    /// `VmRSS`: bytes resident in RAM.
    #[must_use]
    pub fn rss_bytes(&self) -> Option<u64> {
        self.get(RSS)
    }

    /// `VmSwap`: bytes of anonymous memory swapped out. 0 for a fully
    /// locked process.
    #[must_use]
    pub fn swap_bytes(&self) -> Option<u64> {
        self.get(SWAP)
    }

    /// Whether `CAP_IPC_LOCK` is in the effective set as `CapEff` shows it
    /// (bit 14), in whatever user namespace the process is: the bit
    /// [`limits::ipc_lock_in_effective_set`](crate::limits::ipc_lock_in_effective_set)
    /// reads. Whether the kernel honours it for locking is
    /// [`limits::has_ipc_lock`](crate::limits::has_ipc_lock).
    #[must_use]
    pub fn cap_eff_has_ipc_lock(&self) -> Option<bool> {
        self.effective_capabilities()
            .map(|caps| caps & (1 << crate::limits::CAP_IPC_LOCK) != 0)
    }

    /// The effective capability set (`CapEff`), as a bit mask.
    #[must_use]
    pub fn effective_capabilities(&self) -> Option<u64> {
        self.get(CAP_EFF)
    }
}

impl fmt::Debug for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Status")
            .field("locked", &self.locked_bytes())
            .field("pinned", &self.pinned_bytes())
            .field("size", &self.size_bytes())
            .field("rss", &self.rss_bytes())
            .field("swap", &self.swap_bytes())
            .field("cap_eff", &self.effective_capabilities())
            .finish()
    }
}

/// Where each recorded field's line starts in a text of the kernel, by
/// slot: 0 where not known (a text's first line is `Name:`, never a
/// recorded field). Kept by a poller between reads: see
/// [`Status::parse_kernel_text`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout(pub(crate) [u16; 8]);

impl Layout {
    /// Nothing known.
    pub(crate) const UNKNOWN: Layout = Layout([0; 8]);

    /// The six fields read at the places `self` holds, if each of their
    /// keys stands at its place in `text`, and each value is as the
    /// kernel writes it.
    ///
    /// Straight-line code, one branch at the end: it runs right after the
    /// `read`, when the CPU has forgotten the parser's branches.
    fn read(&self, text: &[u8]) -> Option<Status> {
        let mut status = Status::default();
        let mut all = true;
        for s in SLOTS {
            let pos = usize::from(self.0.get(s).copied().unwrap_or(0));
            // The newline before the key, the key, its colon; 0 (no key)
            // past the text, and no hint at position 0.
            let head = text
                .get(pos.wrapping_sub(1)..)
                .and_then(<[u8]>::first_chunk)
                .map_or(0, |head| u64::from_le_bytes(*head));
            let (key, mask) = KEYS[s];
            let (v, ok) = value_as_the_kernel_writes(text, pos, s);
            all &= (pos != 0) & (head & mask == key) & ok;
            if let Some(slot) = status.values.get_mut(s) {
                *slot = v;
            }
        }
        status.present = ALL;
        all.then_some(status)
    }
}

/// For the fuzzer alone (`cargo fuzz` builds with `--cfg fuzzing`): the
/// parse of `text` as [`status`](crate::status()) parses the kernel's text,
/// with the layout learnt from `learn`, beside the scan of `text` that
/// answers without a layout.
#[cfg(fuzzing)]
#[doc(hidden)]
pub fn fuzz_kernel_text(learn: &[u8], text: &[u8]) -> [Result<Status, Error>; 2] {
    let mut layout = Layout::UNKNOWN;
    let _ = Status::parse_kernel_text(learn, &mut layout);
    [
        Status::parse_kernel_text(text, &mut layout),
        Status::parse_whole(text, true).0,
    ]
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
/// use mlock::status::StatusParser;
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
    /// The start of the line the last chunk left unfinished (`carried`
    /// bytes of it), and room for the newline that ends it.
    carry: [u8; LINE_MAX + 1],
    carried: u8,
    /// The unfinished line is longer than [`LINE_MAX`]; `carry` holds its
    /// start.
    overlong: bool,
    /// A recorded field was malformed: the rest is ignored.
    malformed: bool,
    /// Stop once every recorded field was seen: set for the kernel's own
    /// text (see [`StatusParser::of_kernel_text`]).
    until_complete: bool,
    /// `until_complete`, and every recorded field was seen: the rest is
    /// ignored.
    complete: bool,
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
                values: [0; 8],
                present: 0,
            },
            carry: [0; LINE_MAX + 1],
            carried: 0,
            overlong: false,
            malformed: false,
            until_complete: false,
            complete: false,
        }
    }

    /// A parser of the kernel's own text, read from procfs, that stops at
    /// the end of the line that completes the set of recorded fields: the
    /// kernel writes each of them once, and `CapEff` after the sizes
    /// (`proc_pid_status()` in `fs/proc/array.c` calls `task_mem()` once,
    /// then `task_cap()` once), so the lines after it hold none. The lines
    /// it reads are checked as [`StatusParser::new`]'s are.
    pub(crate) const fn of_kernel_text() -> StatusParser {
        let mut parser = StatusParser::new();
        parser.until_complete = true;
        parser
    }

    /// Whether the parser has stopped: every recorded field was seen (by
    /// a parser [`of_kernel_text`](Self::of_kernel_text)), or one was
    /// malformed. What it is fed next is ignored.
    pub(crate) fn is_done(&self) -> bool {
        self.malformed || (FAST && self.complete)
    }

    /// Consumes the next chunk of the text. After a malformed field the
    /// rest is ignored, and [`finish`](StatusParser::finish) reports it.
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.is_done() {
            return;
        }
        let mut text = chunk;
        if self.carried != 0 || self.overlong {
            // Finish the line the last chunk left unfinished.
            let Some(nl) = text.iter().position(|&b| b == b'\n') else {
                self.keep(text);
                return;
            };
            let (end, rest) = text.split_at_checked(nl).unwrap_or_default();
            self.keep(end);
            self.end_carried();
            if self.is_done() {
                return;
            }
            text = rest.get(1..).unwrap_or_default();
        }
        // `text` starts a line; every line before its last newline is whole.
        let whole = text
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |nl| nl + 1);
        let (lines, tail) = text.split_at_checked(whole).unwrap_or_default();
        let mut unused = Layout::UNKNOWN;
        let scanned = scan(&mut self.status, &mut unused, lines, self.until_complete);
        self.note(scanned);
        if !self.is_done() {
            self.keep(tail);
        }
    }

    /// Notes how a [`scan`] ended.
    fn note(&mut self, scanned: Scanned) {
        match scanned {
            Scanned::All => {}
            Scanned::Complete => self.complete = true,
            Scanned::Malformed => self.malformed = true,
        }
    }

    /// Keeps the start of an unfinished line for the next chunk. A byte
    /// at a time: the tail of a chunk is short, and a copy loop would call
    /// `memcpy`, which a static `no_std` binary otherwise does without.
    fn keep(&mut self, part: &[u8]) {
        for &b in part {
            let n = usize::from(self.carried);
            match self.carry.get_mut(n) {
                Some(slot) if n < LINE_MAX => {
                    *slot = b;
                    self.carried += 1;
                }
                _ => {
                    self.overlong = true;
                    return;
                }
            }
        }
    }

    /// Records the carried line, which the newline just found ends.
    fn end_carried(&mut self) {
        let n = usize::from(core::mem::take(&mut self.carried));
        let overlong = core::mem::take(&mut self.overlong);
        if let Some(end) = self.carry.get_mut(n) {
            *end = b'\n';
        }
        let line = self.carry.get(..=n).unwrap_or_default();
        // A recorded field over LINE_MAX bytes is malformed whatever its
        // value; any other line is scanned like the lines of a chunk.
        let mut unused = Layout::UNKNOWN;
        let scanned = match overlong {
            false => scan(&mut self.status, &mut unused, line, self.until_complete),
            true if is_field(line) => Scanned::Malformed,
            true => Scanned::All,
        };
        self.note(scanned);
    }

    /// Ends the text and returns what it held.
    ///
    /// # Errors
    /// [`Error::Malformed`] as described for [`Status::parse`]: a recorded
    /// field whose line has no newline at the end of the text was cut off
    /// (any other unfinished line is ignored).
    pub fn finish(self) -> Result<Status, Error> {
        self.result()
    }

    /// [`finish`](Self::finish) without moving the parser.
    pub(crate) fn result(&self) -> Result<Status, Error> {
        let cut = match self.carried {
            0 => None,
            n => self.carry.get(..usize::from(n)),
        };
        if self.malformed || cut.is_some_and(is_field) {
            return Err(Error::Malformed);
        }
        Ok(self.status)
    }
}

/// How [`scan`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scanned {
    /// Every line was looked at.
    All,
    /// Every recorded field was seen, and the scan was to stop then.
    Complete,
    /// A recorded field was malformed.
    Malformed,
}

/// Records every field of `lines` (empty, or ending with a newline, so
/// that every line in it is whole); with `until_complete`, stops after the
/// line that completes the set of recorded fields.
///
/// The candidates are the bytes `V` and `C`, found 64 bytes at a time;
/// [`record`] checks each and skips those that start no recorded field.
fn scan(status: &mut Status, layout: &mut Layout, lines: &[u8], until_complete: bool) -> Scanned {
    let mut scan = Scan {
        status,
        layout,
        lines,
        until_complete,
    };
    sys::search(&mut scan, b'V', b'C')
}

/// What [`scan`] searches, and where it records what it finds.
struct Scan<'a> {
    status: &'a mut Status,
    /// Where each field's line started, if under 64 KiB into `lines`.
    layout: &'a mut Layout,
    lines: &'a [u8],
    until_complete: bool,
}

impl Scan<'_> {
    /// [`record`] at `base` plus each bit set in `found`.
    #[inline(always)]
    fn record_each(&mut self, base: usize, mut found: u64) -> Option<Scanned> {
        while found != 0 {
            let pos = base + found.trailing_zeros() as usize;
            found &= found - 1;
            if let Some(s) = key_slot(head(self.lines, pos)) {
                if !store(self.status, self.lines, pos, s) {
                    return Some(Scanned::Malformed);
                }
                if let Some(at) = self.layout.0.get_mut(s).filter(|_| FAST) {
                    *at = u16::try_from(pos).unwrap_or(0);
                }
                if FAST && self.until_complete && self.status.present == ALL {
                    return Some(Scanned::Complete);
                }
            }
        }
        None
    }
}

impl sys::Search for Scan<'_> {
    type Output = Scanned;

    #[inline(always)]
    fn run(&mut self, candidates: impl Fn(&[u8; 64]) -> u64) -> Scanned {
        match FAST {
            true => self.run_fast(candidates),
            false => self.run_small(candidates),
        }
    }
}

impl Scan<'_> {
    /// [`sys::Search::run`] as a loop over whole blocks, then the rest:
    /// faster than [`Scan::run_small`], and bigger.
    #[inline(always)]
    fn run_fast(&mut self, candidates: impl Fn(&[u8; 64]) -> u64) -> Scanned {
        let lines = self.lines;
        let mut base = 0;
        while let Some(block) = lines.get(base..).and_then(<[u8]>::first_chunk) {
            if let Some(end) = self.record_each(base, candidates(block)) {
                return end;
            }
            base += 64;
        }
        if base == lines.len() {
            return Scanned::All;
        }
        // The last bytes: the last 64 of `lines`, which overlap the blocks
        // already seen (their bits are shifted out), or all of a short text.
        let found = match lines.len().checked_sub(64) {
            Some(at) => lines
                .get(at..)
                .and_then(<[u8]>::first_chunk)
                .map_or(0, |block| candidates(block) >> (base - at)),
            None => candidates_in_short(lines),
        };
        self.record_each(base, found).unwrap_or(Scanned::All)
    }

    /// [`sys::Search::run`] as one loop, the last block overlapping.
    #[inline(always)]
    fn run_small(&mut self, candidates: impl Fn(&[u8; 64]) -> u64) -> Scanned {
        let lines = self.lines;
        // Where the last 64 bytes start, if there are 64.
        let last = lines.len().checked_sub(64);
        let mut base = 0;
        while base < lines.len() {
            let found = match last {
                // The 64 bytes from `base`; at the end, the last 64, which
                // overlap the blocks already seen: their bits are shifted
                // out.
                Some(last) => {
                    let at = base.min(last);
                    lines
                        .get(at..)
                        .and_then(<[u8]>::first_chunk)
                        .map_or(0, |block| candidates(block) >> (base - at))
                }
                None => candidates_in_short(lines),
            };
            if let Some(end) = self.record_each(base, found) {
                return end;
            }
            base += 64;
        }
        Scanned::All
    }
}

/// The candidates of `lines` under 64 bytes long, a byte at a time: out
/// of the loop above, which it would slow.
#[cold]
#[inline(never)]
fn candidates_in_short(lines: &[u8]) -> u64 {
    lines.iter().enumerate().fold(0, |found, (i, &b)| {
        found | (u64::from(b == b'V' || b == b'C') << i)
    })
}

/// The recorded keys as they stand in the text: the newline before them,
/// the key, its colon. Each fits one 8-byte word, and bits 2 to 4 of their
/// sixth byte (the key's fifth letter) differ: that is the slot of each in
/// [`KEYS`], and in [`Status`].
const KEY_TEXT: [&[u8]; 6] = [
    b"\nVmLck:",
    b"\nVmPin:",
    b"\nVmSize:",
    b"\nVmRSS:",
    b"\nVmSwap:",
    b"\nCapEff:",
];

/// The slot of a line's head: see [`KEY_TEXT`].
#[inline(always)]
const fn slot(head: u64) -> usize {
    ((head >> 42) & 7) as usize
}

/// Each slot's key, as a little-endian word, and the mask of its 7 or 8
/// bytes. The two empty slots hold a key no head matches: all ones (a
/// head holds a newline, or a `V` or `C`, in its first two bytes).
const KEYS: [(u64, u64); 8] = {
    let mut keys = [(u64::MAX, u64::MAX); 8];
    let mut k = 0;
    while k < KEY_TEXT.len() {
        let text = KEY_TEXT[k];
        let mut word = [0u8; 8];
        let mut i = 0;
        while i < text.len() {
            word[i] = text[i];
            i += 1;
        }
        let word = u64::from_le_bytes(word);
        let s = slot(word);
        assert!(keys[s].0 == u64::MAX, "two keys in one slot");
        keys[s] = (word, u64::MAX >> (8 * (8 - text.len())));
        k += 1;
    }
    keys
};

/// The slot of each field.
const LOCKED: usize = slot_of(0);
const PINNED: usize = slot_of(1);
const SIZE: usize = slot_of(2);
const RSS: usize = slot_of(3);
const SWAP: usize = slot_of(4);
const CAP_EFF: usize = slot_of(5);

/// The slots of the recorded fields.
const SLOTS: [usize; 6] = [LOCKED, PINNED, SIZE, RSS, SWAP, CAP_EFF];

/// [`Status::present`] once every recorded field was seen.
const ALL: u64 = 1 << LOCKED | 1 << PINNED | 1 << SIZE | 1 << RSS | 1 << SWAP | 1 << CAP_EFF;

const fn slot_of(key: usize) -> usize {
    let mut word = 0;
    let mut i = 0;
    while i < KEY_TEXT[key].len() {
        word |= (KEY_TEXT[key][i] as u64) << (8 * i);
        i += 1;
    }
    slot(word)
}

/// The 8 bytes of `text` from `pos - 1` as a little-endian word, a newline
/// standing before position 0; 0 (which starts no key) where `text` ends
/// sooner. A line of `text` that holds a recorded key holds 8 bytes from
/// the newline before it: the key, its colon, and at least a newline.
#[inline(always)]
fn head(text: &[u8], pos: usize) -> u64 {
    match text
        .get(pos.wrapping_sub(1)..)
        .and_then(<[u8]>::first_chunk)
    {
        Some(bytes) => u64::from_le_bytes(*bytes),
        None if pos == 0 => first_head(text),
        None => 0,
    }
}

/// [`head`] at position 0 of `line`: a newline, then its first 7 bytes,
/// zeros past its end.
#[cold]
#[inline(never)]
fn first_head(line: &[u8]) -> u64 {
    let first = line.get(..7).unwrap_or(line);
    let bytes = first
        .iter()
        .rev()
        .fold(0, |word, &b| word << 8 | u64::from(b));
    bytes << 8 | u64::from(b'\n')
}

/// Whether `line` (perhaps without its newline, perhaps shorter than a
/// key) starts with a recorded key.
fn is_field(line: &[u8]) -> bool {
    key_slot(first_head(line)).is_some()
}

/// The slot of the recorded key that `head` starts with, if any.
#[inline(always)]
fn key_slot(head: u64) -> Option<usize> {
    let s = slot(head);
    let (key, mask) = KEYS[s];
    (head & mask == key).then_some(s)
}

/// Records the field whose line starts at `pos` of `text` (a line that
/// ends with a newline in `text`), whose key is in slot `s`. `false`: the
/// field is malformed, or was seen before.
#[inline(never)]
fn store(status: &mut Status, text: &[u8], pos: usize, s: usize) -> bool {
    let v = match FAST {
        // Read in words in straight-line code; by the rules out of line.
        true => match value_as_the_kernel_writes(text, pos, s) {
            (v, true) => Some(v),
            (_, false) => value_by_the_rules(text, pos, s),
        },
        // The smaller code: sizes in words where a word is one load, the
        // rest by the rules, all in line.
        false => {
            let value = line_value(text, pos, s);
            let words = match value.first_chunk() {
                Some(value) if WORD_LOADS && s != CAP_EFF => Some(kb_padded(value)),
                _ => None,
            };
            match words {
                Some((v, true)) => Some(v),
                _ => parse_value(value, s == CAP_EFF),
            }
        }
    };
    let bit = 1 << s;
    match (v, status.values.get_mut(s)) {
        (Some(v), Some(slot)) if status.present & bit == 0 => {
            *slot = v;
            status.present |= bit;
            true
        }
        // Unparsable, or the field appeared twice.
        _ => false,
    }
}

/// The value of the field in slot `s` whose line starts at `pos` of `text`,
/// read in words as the kernel writes it ([`kb_padded`], [`hex_written`]),
/// with no branch: the value, and whether it was written so.
#[inline(always)]
fn value_as_the_kernel_writes(text: &[u8], pos: usize, s: usize) -> (u64, bool) {
    let value = text.get(pos + colon(s)..).unwrap_or_default();
    match s == CAP_EFF {
        true => value.first_chunk().map_or((0, false), hex_written),
        false => value.first_chunk().map_or((0, false), kb_padded),
    }
}

/// The value of the field in slot `s` whose line starts at `pos` of `text`
/// and ends with a newline at most [`LINE_MAX`] bytes on, read by the
/// rules ([`parse_value`]): out of line, for values the words did not read.
#[cold]
#[inline(never)]
fn value_by_the_rules(text: &[u8], pos: usize, s: usize) -> Option<u64> {
    parse_value(line_value(text, pos, s), s == CAP_EFF)
}

/// The value of the field in slot `s` whose line starts at `pos` of `text`,
/// up to where its newline may stand at the most ([`LINE_MAX`] bytes from
/// `pos`).
#[inline(always)]
fn line_value(text: &[u8], pos: usize, s: usize) -> &[u8] {
    let end = text.len().min(pos + LINE_MAX + 1);
    text.get(pos + colon(s)..end).unwrap_or_default()
}

/// How far the value of the key in slot `s` stands from its line's start:
/// the key's bytes less the newline before it.
#[inline(always)]
const fn colon(s: usize) -> usize {
    if KEYS[s].1 >> 56 == 0 {
        6
    } else {
        7
    }
}

/// Whether the `fast-status` feature is on: the code that reads a text
/// faster, at the cost of size ([`Layout::read`], [`hex_written`]).
const FAST: bool = cfg!(feature = "fast-status");

/// Whether [`kb_padded`] reads sizes: where a word of text at
/// any address is one load (x86_64, aarch64). The base riscv64 ISA does
/// not promise fast unaligned loads, so its compiler reads such a word a
/// byte at a time; there the byte loop is about as fast, and smaller.
const WORD_LOADS: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

/// [`parse_value`] of a value as the kernel pads one under 10^8 kB (a tab,
/// the number right-aligned in eight columns, `%8lu`, ` kB` and the
/// newline), read from its first 16 bytes as two words, with no loop over
/// them and no branch: the number of bytes, and whether the value is padded
/// so. Where it is not, [`parse_value`] reads it: never a different answer.
#[inline(always)]
fn kb_padded(value: &[u8; 16]) -> (u64, bool) {
    let [tab, c0, c1, c2, c3, c4, c5, c6, c7, u0, u1, u2, u3, ..] = *value;
    let columns = u64::from_le_bytes([c0, c1, c2, c3, c4, c5, c6, c7]);
    // A space (0x20) with bit 4 set reads as the digit 0 (0x30); each
    // column must then be a digit: 0x30 to 0x39, which 6 more leaves
    // under 0x40 (a byte over 0xf9 that would carry is caught first).
    let as_digits = columns | splat(0x10);
    let all_digits = (as_digits & splat(0xf0) == splat(0x30))
        & (as_digits.wrapping_add(splat(0x06)) & splat(0xf0) == splat(0x30));
    // The columns that were below 0x30, as 0xff: each was a space (now
    // 0x30 exactly), they come first, and the last column is a digit.
    let low = ((as_digits ^ columns) >> 4).wrapping_mul(0xff);
    let right_aligned = ((as_digits ^ splat(b'0')) & low == 0)
        & (low & low.wrapping_add(1) == 0)
        & (low >> 56 == 0);
    let framed = (tab == b'\t') & (u32::from_le_bytes([u0, u1, u2, u3]) == KB_UNIT);
    // Pairs of digits, then fours, then all eight, in a multiply each
    // (the first column the most significant; a space reads as 0).
    let kb = (columns & splat(0x0f)).wrapping_mul(10 << 8 | 1) >> 8;
    let kb = (kb & 0x00ff_00ff_00ff_00ff).wrapping_mul(100 << 16 | 1) >> 16;
    let kb = (kb & 0x0000_ffff_0000_ffff).wrapping_mul(10_000 << 32 | 1) >> 32;
    (kb * 1024, framed & all_digits & right_aligned)
}

/// ` kB` and the newline, as a little-endian word.
const KB_UNIT: u32 = u32::from_le_bytes(*b" kB\n");

/// [`parse_value`] of a capability mask as the kernel writes one (a tab,
/// sixteen lowercase hex digits, `%016llx`, the newline), read from its
/// first 18 bytes as two words, with no branch: the mask, and whether the
/// value is written so. Where it is not, [`parse_value`] reads it: never a
/// different answer.
#[inline(always)]
fn hex_written(value: &[u8; 18]) -> (u64, bool) {
    let [tab, h0, h1, h2, h3, h4, h5, h6, h7, l0, l1, l2, l3, l4, l5, l6, l7, newline] = *value;
    let high = u64::from_le_bytes([h0, h1, h2, h3, h4, h5, h6, h7]);
    let low = u64::from_le_bytes([l0, l1, l2, l3, l4, l5, l6, l7]);
    let written = (tab == b'\t') & (newline == b'\n') & is_hex(high) & is_hex(low);
    (hex_digits(high) << 32 | hex_digits(low), written)
}

/// Whether each byte of `x` is `0` to `9` or `a` to `f`. For bytes under
/// 0x80, adding `0x80 - lo` sets bit 7 exactly where a byte is at least
/// `lo`, with no carry out of the byte.
#[inline(always)]
fn is_hex(x: u64) -> bool {
    let at_least = |lo: u8| x.wrapping_add(splat(0x80 - lo));
    let digit = at_least(b'0') & !at_least(b'9' + 1);
    let letter = at_least(b'a') & !at_least(b'f' + 1);
    (x & splat(0x80) == 0) & ((digit | letter) & splat(0x80) == splat(0x80))
}

/// The eight hex digits of `x` (checked by [`is_hex`]), the first byte the
/// most significant, as a number.
#[inline(always)]
fn hex_digits(x: u64) -> u64 {
    // A digit's value is its low nibble; a letter's is its low nibble plus
    // 9, and only letters have bit 6.
    let nibbles = (x & splat(0x0f)) + (x >> 6 & splat(0x01)) * 9;
    // The first digit in the top byte, then each pair, four, eight merged.
    let n = nibbles.swap_bytes();
    let n = (n | n >> 4) & 0x00ff_00ff_00ff_00ff;
    let n = (n | n >> 8) & 0x0000_ffff_0000_ffff;
    (n | n >> 16) & 0xffff_ffff
}

/// `b` in each byte of a word.
const fn splat(b: u8) -> u64 {
    u64::from_ne_bytes([b; 8])
}

/// The most kB whose count of bytes fits a `u64`.
const KB_MAX: u64 = u64::MAX / 1024;

/// Parses `<blanks><decimal> kB` and the newline after it into bytes,
/// checked; or with `hex`, `<blanks><hex>` (1 to 16 digits, as in
/// `CapEff`) and the newline after it. A byte at a time, any padding.
fn parse_value(value: &[u8], hex: bool) -> Option<u64> {
    let mut at = 0;
    while let Some(b' ' | b'\t') = value.get(at) {
        at += 1;
    }
    let start = at;
    let mut number: u64 = 0;
    while let Some(&b) = value.get(at) {
        // 0-9, and with `hex` a-f and A-F (`letter` 0 to 5).
        let decimal = b.wrapping_sub(b'0');
        let letter = (b | 0x20).wrapping_sub(b'a');
        let digit = match decimal < 10 {
            true => decimal,
            false if hex && letter < 6 => letter + 10,
            false => break,
        };
        // Hex digits past the 16th shift out, but fail below. A size
        // over the most kB whose bytes fit a u64 fails at once, before
        // the next digit could overflow.
        if !hex && number > KB_MAX {
            return None;
        }
        let scaled = if hex { number << 4 } else { number * 10 };
        number = scaled + u64::from(digit);
        at += 1;
    }
    // No digit at all, too many, or anything but the unit and newline
    // after them.
    let digits = at - start;
    let rest = value.get(at..).unwrap_or_default();
    match hex {
        true => (digits > 0 && digits <= 16 && rest.first() == Some(&b'\n')).then_some(number),
        false => {
            (digits > 0 && number <= KB_MAX && rest.starts_with(b" kB\n")).then(|| number * 1024)
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::format;
    use std::string::String;

    use super::{hex_written, kb_padded, parse_value, Layout, Status, StatusParser, FAST};
    use crate::Error;

    /// A text as the kernel writes one, with `name`, each recorded value as
    /// given (the text after the colon, up to the newline), and `extra`
    /// lines at the end.
    fn kernel_text(name: &str, values: &[&str; 6], extra: &str) -> String {
        let [lck, pin, size, rss, swap, cap] = values;
        format!(
            "Name:\t{name}\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t77\n\
             FDSize:\t64\nGroups:\t \nVmPeak:\t    9000 kB\nVmSize:{size}\n\
             VmLck:{lck}\nVmPin:{pin}\nVmHWM:\t     900 kB\nVmRSS:{rss}\n\
             RssAnon:\t     100 kB\nVmData:\t     500 kB\nVmStk:\t     132 kB\n\
             VmExe:\t      20 kB\nVmLib:\t    1500 kB\nVmPTE:\t      40 kB\n\
             VmSwap:{swap}\nCoreDumping:\t0\nThreads:\t1\n\
             CapInh:\t0000000000000000\nCapPrm:\t000001fffeffffff\nCapEff:{cap}\n\
             CapBnd:\t000001fffeffffff\nCpus_allowed:\t3\n{extra}\
             voluntary_ctxt_switches:\t5\n"
        )
    }

    #[test]
    fn the_kernel_text_parse_stops_after_the_six_fields() {
        let padded = [
            "\t       8 kB",
            "\t       0 kB",
            "\t    9000 kB",
            "\t     900 kB",
        ];
        let values = [
            padded[0],
            padded[1],
            padded[2],
            padded[3],
            padded[1],
            "\t000001fffeffffff",
        ];
        // A second VmLck after CapEff: the kernel never writes one.
        let text = kernel_text("demo", &values, "VmLck:\t      16 kB\n");
        assert_eq!(Status::parse(text.as_bytes()), Err(Error::Malformed));
        let mut parser = StatusParser::of_kernel_text();
        parser.feed(text.as_bytes());
        let kernel = parser.finish();
        let (whole, _) = Status::parse_whole(text.as_bytes(), true);
        if FAST {
            // Stopped at CapEff: the first VmLck stands.
            assert_eq!(kernel.map(|s| s.locked_bytes()), Ok(Some(8 * 1024)));
            assert_eq!(whole, kernel);
        } else {
            // Without `fast-status` every line is read, as `Status::parse`
            // reads them.
            assert_eq!(kernel, Err(Error::Malformed));
        }
        // Without the duplicate the three agree.
        let text = kernel_text("demo", &values, "");
        let full = Status::parse(text.as_bytes());
        assert_eq!(
            full.map(|s| s.effective_capabilities()),
            Ok(Some(0x1ff_feff_ffff))
        );
        let mut parser = StatusParser::of_kernel_text();
        parser.feed(text.as_bytes());
        assert_eq!(parser.finish(), full);
        assert_eq!(Status::parse_whole(text.as_bytes(), true).0, full);
    }

    #[test]
    fn a_padded_line_at_a_remembered_place_is_no_key() {
        // `VmHWM` and `VmRSS` swapped: at the place `VmRSS` had stands a
        // line as long, its value padded as the kernel pads one, and every
        // other line stands where it stood. Only the key tells it is not
        // `VmRSS`.
        let values = [
            "\t       8 kB",
            "\t       0 kB",
            "\t    9000 kB",
            "\t     800 kB",
            "\t       0 kB",
            "\t000001fffeffffff",
        ];
        let text = kernel_text("demo", &values, "");
        let mut layout = Layout::UNKNOWN;
        let first = Status::parse_kernel_text(text.as_bytes(), &mut layout);
        assert_eq!(first.map(|s| s.rss_bytes()), Ok(Some(800 * 1024)));
        let (hwm, rss) = ("VmHWM:\t     900 kB\n", "VmRSS:\t     800 kB\n");
        let swapped = text.replace(&format!("{hwm}{rss}"), &format!("{rss}{hwm}"));
        assert_ne!(swapped, text);
        let second = Status::parse_kernel_text(swapped.as_bytes(), &mut layout);
        assert_eq!(second.map(|s| s.rss_bytes()), Ok(Some(800 * 1024)));
        assert_eq!(second, Status::parse(swapped.as_bytes()));
    }

    #[test]
    fn a_stale_layout_never_changes_the_answer() {
        // Texts of one kernel's shape whose lines move (the name's length)
        // and whose values take every form: padded as the kernel pads them,
        // wider than the padding, padded otherwise, malformed; CapEff in
        // either case, short, or bad; fields missing. Each is parsed with
        // the layout the last one left: the answer must be the scan's.
        let sizes = [
            "\t       0 kB",
            "\t12345678 kB",
            "\t123456789 kB",
            "\t 12 kB",
            "\t      12kB",
            "\t     x12 kB",
            "\t        kB",
        ];
        let caps = [
            "\t000001fffeffffff",
            "\t000001FFFEFFFFFF",
            "\t1ff",
            "\t000001fffeffffffff",
            "\t000001fffeffffgf",
        ];
        let mut next = lcg(2026);
        let mut layout = Layout::UNKNOWN;
        let (mut hinted, mut scanned) = (0, 0);
        let mut name = "demo";
        for round in 0..20_000 {
            // Now and then a new name, which moves every later line.
            if next().is_multiple_of(8) {
                name = &"abcdefghijklmnopqrstuvwxyz"[..(next() % 17) as usize];
            }
            let mut pick = |common: usize, all: &[&'static str]| -> &'static str {
                // Mostly the kernel's own form, so that the hint is used.
                let r = next() as usize;
                all[if !r.is_multiple_of(8) {
                    common
                } else {
                    (r >> 3) % all.len()
                }]
            };
            let mut values = [
                pick(0, &sizes),
                pick(0, &sizes),
                pick(1, &sizes),
                pick(1, &sizes),
                pick(0, &sizes),
                pick(0, &caps),
            ];
            let text = match next() % 16 {
                // A field missing.
                0 => {
                    let missing = (next() % 6) as usize;
                    let keys = [
                        "VmLck:", "VmPin:", "VmSize:", "VmRSS:", "VmSwap:", "CapEff:",
                    ];
                    values[missing] = "";
                    kernel_text(name, &values, "").replace(&format!("\n{}\n", keys[missing]), "\n")
                }
                _ => kernel_text(name, &values, ""),
            };
            let before = layout;
            let answer = Status::parse_kernel_text(text.as_bytes(), &mut layout);
            let (expected, found) = Status::parse_whole(text.as_bytes(), true);
            assert_eq!(answer, expected, "round {round}: {text:?}");
            if layout == before && answer.is_ok() {
                hinted += 1;
            } else {
                scanned += 1;
                assert_eq!(layout, found, "round {round}: the layout learnt");
            }
        }
        // Both ways were taken, many times.
        if FAST {
            assert!(hinted > 2_000 && scanned > 2_000, "{hinted} {scanned}");
        }
    }

    /// [`kb_padded`] of the start of `value`, as `Some` where it reads it.
    fn kb_as_the_kernel_pads(value: &[u8]) -> Option<u64> {
        let (kb, padded) = kb_padded(value.first_chunk()?);
        padded.then_some(kb)
    }

    /// [`hex_written`] of the start of `value`, as `Some` where it reads it.
    fn hex_as_the_kernel_writes(value: &[u8]) -> Option<u64> {
        let (mask, written) = hex_written(value.first_chunk()?);
        written.then_some(mask)
    }

    fn parse_kb(value: &[u8]) -> Option<u64> {
        parse_value(value, false)
    }

    /// Knuth's MMIX LCG from `seed`, its high bits: values that hit every
    /// case.
    fn lcg(mut state: u64) -> impl FnMut() -> u64 {
        move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            state >> 33
        }
    }

    /// `parse_kb` by the rules alone: blanks, digits, ` kB`, newline.
    fn kb_by_the_rules(value: &[u8]) -> Option<u64> {
        let digits_at = value.iter().position(|&b| b != b' ' && b != b'\t')?;
        let digits = &value[digits_at..];
        let n = digits.iter().take_while(|b| b.is_ascii_digit()).count();
        if n == 0 || !digits[n..].starts_with(b" kB\n") {
            return None;
        }
        let mut kb: u64 = 0;
        for &d in &digits[..n] {
            kb = kb.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        }
        kb.checked_mul(1024)
    }

    #[test]
    fn sizes_read_by_the_rules() {
        // A tab, eight columns, the unit: every mix of spaces, digits and
        // odd bytes, with the unit right or wrong.
        let columns: [u8; 6] = [b' ', b'0', b'7', b'9', b'\t', b'x'];
        let mut next = lcg(61);
        for round in 0..300_000 {
            let mut value = *b"\t        0 kB\nVmPin:\t";
            for c in value[1..9].iter_mut() {
                *c = columns[(next() % 6) as usize];
            }
            if round % 7 == 0 {
                value[9 + (next() % 4) as usize] = b'K';
            }
            assert_eq!(
                parse_kb(&value),
                kb_by_the_rules(&value),
                "{:?}",
                core::str::from_utf8(&value)
            );
        }
        assert_eq!(parse_kb(b"\t12345678 kB\n"), Some(12_345_678 * 1024));
        assert_eq!(parse_kb(b"\t       0 kB\n"), Some(0));
        assert_eq!(parse_kb(b"\t        kB\n"), None);
        assert_eq!(parse_kb(b"\t         kB\n"), None);
        assert_eq!(parse_kb(b"\t 1 2 3 4 kB\n"), None);
    }

    #[test]
    fn padded_sizes_read_as_the_byte_loop_reads_them() {
        // Eight columns of bytes around the edges of the digits, the
        // space and the tab (a space is 0x20, a digit 0x30 to 0x39; 0x21
        // to 0x29 and 0x3a to 0x3f look like digits to a careless mask).
        let bytes = *b" 0159\t!)*/:?x\x80\xfa\xff";
        let mut next = lcg(7);
        let mut fast = 0;
        for round in 0..300_000 {
            let mut value = *b"\t       0 kB\nVmPin:\t";
            // Mostly spaces then digits, as the kernel pads them; else any.
            let spaces = (next() % 9) as usize;
            for (i, c) in value[1..9].iter_mut().enumerate() {
                let r = next();
                *c = match r % 4 {
                    0 => bytes[(r >> 8) as usize % bytes.len()],
                    _ if i < spaces => b' ',
                    _ => b'0' + (r >> 8) as u8 % 10,
                };
            }
            if round % 5 == 0 {
                value[(next() % 14) as usize] = bytes[(next() as usize) % bytes.len()];
            }
            let padded = kb_as_the_kernel_pads(&value);
            if padded.is_some() {
                fast += 1;
            }
            assert!(
                padded.is_none() || padded == parse_kb(&value),
                "{:?}",
                core::str::from_utf8(&value)
            );
        }
        assert!(fast > 20_000, "the padded reading took {fast} values");
        assert_eq!(
            kb_as_the_kernel_pads(b"\t12345678 kB\nVmPin:"),
            Some(12_345_678 * 1024)
        );
        assert_eq!(kb_as_the_kernel_pads(b"\t       0 kB\nVmPin:"), Some(0));
        assert_eq!(kb_as_the_kernel_pads(b"\t       0 kB\n"), None);
    }

    #[test]
    fn capabilities_as_the_kernel_writes_them_read_as_the_byte_loop_reads_them() {
        // Sixteen columns around the edges of the hex digits.
        let bytes = *b"0123456789abcdefABCDEF/:@G`gx \t\n\x80\xff";
        let mut next = lcg(16);
        let mut fast = 0;
        for round in 0..300_000 {
            let mut value = *b"\t0000000000000000\nCapBnd:";
            for c in value[1..17].iter_mut() {
                let r = next();
                *c = match r % 8 {
                    0 => bytes[(r >> 8) as usize % bytes.len()],
                    _ => b"0123456789abcdef"[(r >> 8) as usize % 16],
                };
            }
            if round % 5 == 0 {
                value[(next() % 19) as usize] = bytes[(next() as usize) % bytes.len()];
            }
            let word = hex_as_the_kernel_writes(&value);
            if word.is_some() {
                fast += 1;
            }
            assert!(
                word.is_none() || word == parse_value(&value, true),
                "{:?}",
                core::str::from_utf8(&value)
            );
        }
        assert!(fast > 20_000, "the word reading took {fast} values");
        assert_eq!(
            hex_as_the_kernel_writes(b"\t000001fffeffffff\n"),
            Some(0x0000_01ff_feff_ffff)
        );
        assert_eq!(
            hex_as_the_kernel_writes(b"\tfedcba9876543210\n"),
            Some(0xfedc_ba98_7654_3210)
        );
        assert_eq!(hex_as_the_kernel_writes(b"\t000001fffeffffff"), None);
    }

    #[test]
    fn capabilities_read_by_the_rules() {
        let hex = |value: &[u8]| parse_value(value, true);
        assert_eq!(hex(b"\t000001fffeffffff\n"), Some(0x0000_01ff_feff_ffff));
        assert_eq!(hex(b"\tFFFFFFFFFFFFFFFF\n"), Some(u64::MAX));
        assert_eq!(hex(b" \t 0\n"), Some(0));
        assert_eq!(hex(b"\tabcdef\n"), Some(0xab_cdef));
        // Seventeen digits, even leading zeros; none; a digit of another
        // base; no newline.
        assert_eq!(hex(b"\t00000000000000000\n"), None);
        assert_eq!(hex(b"\t\n"), None);
        assert_eq!(hex(b"\t12g4\n"), None);
        assert_eq!(hex(b"\t1234"), None);
        assert_eq!(hex(b"\t1234 \n"), None);
    }
}
