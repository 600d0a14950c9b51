//! The streaming parser of `/proc/<pid>/status`, in plain Rust: it finds
//! the letters `V` and `C` 64 bytes per step ([`candidates`]) and compares
//! the word from the newline before each with the six [`KEYS`]; other lines
//! are skipped. A line split between chunks is carried, and read alike.

use core::fmt;

use crate::Error;

/// The memory and capability fields of `/proc/self/status` this crate
/// reads: sizes in bytes (kB times 1024, checked), `None` where absent.
///
/// # References
/// - [`proc_pid_status(5)`](https://man7.org/linux/man-pages/man5/proc_pid_status.5.html)
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Status {
    /// The values, each in its key's slot ([`KEYS`]), 0 where absent.
    values: [u64; 8],
    /// Bit `s`: slot `s` holds a value.
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
    /// [`Error::Malformed`] when a recorded field (`VmLck`, `VmPin`, `VmSize`,
    /// `VmRSS`, `VmSwap`, `CapEff`) is not blanks, a decimal and ` kB`
    /// (`CapEff`: 1 to 16 hex digits), overflows `u64` in bytes, appears
    /// twice, or has a line over 64 bytes or cut off. Other lines are skipped.
    ///
    /// # References
    /// - [`proc_pid_status(5)`](https://man7.org/linux/man-pages/man5/proc_pid_status.5.html)
    pub fn parse(bytes: &[u8]) -> Result<Status, Error> {
        let mut parser = StatusParser::new();
        parser.feed(bytes);
        parser.finish()
    }

    fn get(&self, slot: usize) -> Option<u64> {
        let value = *self.values.get(slot)?;
        (self.present & (1 << slot) != 0).then_some(value)
    }

    /// `VmLck`: bytes locked with `mlock(2)`/`mlockall(2)`.
    #[must_use]
    pub fn locked_bytes(&self) -> Option<u64> {
        self.get(LOCKED)
    }

    /// `VmPin`: bytes pinned by the kernel or drivers (RDMA, io_uring).
    #[must_use]
    pub fn pinned_bytes(&self) -> Option<u64> {
        self.get(PINNED)
    }

    /// `VmSize`: the virtual size, which `mlockall(MCL_CURRENT)` must fit.
    #[must_use]
    pub fn size_bytes(&self) -> Option<u64> {
        self.get(SIZE)
    }

    /// `VmRSS`: bytes resident in RAM.
    #[must_use]
    pub fn rss_bytes(&self) -> Option<u64> {
        self.get(RSS)
    }

    /// `VmSwap`: bytes of anonymous memory swapped out (0 when all locked).
    #[must_use]
    pub fn swap_bytes(&self) -> Option<u64> {
        self.get(SWAP)
    }

    /// The effective capability set (`CapEff`), a bit mask (bit 14:
    /// `CAP_IPC_LOCK`; whether it counts: [`crate::limits::ipc_lock`]).
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

/// The longest recorded field line accepted (the kernel's are under 32).
const LINE_MAX: usize = 64;

/// A streaming parser of `/proc/<pid>/status`: feed it the text in chunks
/// of any size, then [`finish`](StatusParser::finish). It allocates
/// nothing: a line split between chunks is carried in a 64-byte buffer
/// (longer lines of other fields are skipped as they stream past). The
/// result is [`Status::parse`]'s of the whole text, however it is split.
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
    fields: Fields,
    /// The unfinished line (`carried` bytes, room for its newline).
    carry: [u8; LINE_MAX + 1],
    carried: u8,
    overlong: bool,
}

/// What the whole lines held; whether to stop once all six are in.
#[derive(Debug, Clone)]
struct Fields {
    status: Status,
    malformed: bool,
    until_complete: bool,
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
        let status = Status {
            values: [0; 8],
            present: 0,
        };
        let (malformed, until_complete) = (false, false);
        StatusParser {
            fields: Fields {
                status,
                malformed,
                until_complete,
            },
            carry: [0; LINE_MAX + 1],
            carried: 0,
            overlong: false,
        }
    }

    /// A parser of the kernel's own text: it stops once the six are in.
    pub(crate) const fn of_kernel_text() -> StatusParser {
        let mut parser = StatusParser::new();
        parser.fields.until_complete = true;
        parser
    }

    /// Whether the parser has stopped (done, or a field malformed).
    pub(crate) fn is_done(&self) -> bool {
        self.fields.is_done()
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
            text = rest.get(1..).unwrap_or_default();
        }
        // `text` starts a line; every line before its last newline is whole.
        let whole = text
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |nl| nl + 1);
        let (lines, tail) = text.split_at_checked(whole).unwrap_or_default();
        self.fields.scan(lines);
        self.keep(tail);
    }

    /// Keeps the start of an unfinished line, a byte at a time (no `memcpy`).
    fn keep(&mut self, part: &[u8]) {
        if self.is_done() {
            return;
        }
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

    /// Reads the carried line, now ended (a field over [`LINE_MAX`]: malformed).
    fn end_carried(&mut self) {
        let n = usize::from(core::mem::take(&mut self.carried));
        let overlong = core::mem::take(&mut self.overlong);
        if let Some(end) = self.carry.get_mut(n) {
            *end = b'\n';
        }
        let line = self.carry.get(..=n).unwrap_or_default();
        match overlong {
            false => self.fields.scan(line),
            true => self.fields.malformed |= is_field(line),
        }
    }

    /// Ends the text and returns what it held.
    ///
    /// # Errors
    /// [`Error::Malformed`] as for [`Status::parse`]; a recorded field with
    /// no newline at the end of the text was cut off.
    pub fn finish(self) -> Result<Status, Error> {
        self.result()
    }

    /// [`finish`](Self::finish) without moving the parser (a `memcpy`).
    pub(crate) fn result(&self) -> Result<Status, Error> {
        let cut = self
            .carry
            .get(..usize::from(self.carried))
            .unwrap_or_default();
        if self.fields.malformed || is_field(cut) {
            return Err(Error::Malformed);
        }
        Ok(self.fields.status)
    }
}

impl Fields {
    fn is_done(&self) -> bool {
        self.malformed || (self.until_complete && self.status.present == ALL)
    }

    /// Records the fields of `lines` (ending with a newline) until done.
    #[inline(never)]
    fn scan(&mut self, lines: &[u8]) {
        if lines.is_empty() || self.is_done() {
            return;
        }
        if let Some(s) = key_slot(word(lines, 0) << 8 | u64::from(b'\n')) {
            self.record(lines, 0, s);
            if self.is_done() {
                return;
            }
        }
        let last = lines.len().checked_sub(64);
        let mut base = 0;
        while base < lines.len() {
            // The 64 bytes from `base`; at the end the last 64, overlapping.
            let at = last.map_or(0, |last| base.min(last));
            let mut found = candidates(lines.get(at..).unwrap_or_default());
            while found != 0 {
                // Bit 8j + k: byte j of word k.
                let bit = found.trailing_zeros() as usize;
                found &= found - 1;
                let pos = at + 8 * (bit & 7) + (bit >> 3);
                // The newline before it, the key, its colon (none at 0).
                if let Some(s) = key_slot(word(lines, pos.wrapping_sub(1))) {
                    if pos >= base {
                        self.record(lines, pos, s);
                        if self.is_done() {
                            return;
                        }
                    }
                }
            }
            base += 64;
        }
    }

    /// Records slot `s`'s field from `start`: malformed if bad or seen before.
    #[inline(never)]
    fn record(&mut self, text: &[u8], start: usize, s: usize) {
        let end = text.len().min(start + LINE_MAX + 1);
        let value = text.get(start + colon(s)..end).unwrap_or_default();
        let bit = 1 << s;
        let written = match (WORD_LOADS, s == CAP_EFF) {
            (false, _) => None,
            (true, true) => value.first_chunk().map(hex_written),
            (true, false) => value.first_chunk().map(kb_padded),
        };
        let v = match written {
            Some((v, true)) => Some(v),
            _ => parse_value(value, s == CAP_EFF),
        };
        match (v, self.status.values.get_mut(s)) {
            (Some(v), Some(slot)) if self.status.present & bit == 0 => {
                *slot = v;
                self.status.present |= bit;
            }
            // Unparsable, or the field appeared twice.
            _ => self.malformed = true,
        }
    }
}

/// For the fuzzer: `text` parsed as the kernel's text, and by [`Status::parse`].
#[cfg(fuzzing)]
#[doc(hidden)]
pub fn fuzz_kernel_text(text: &[u8]) -> [Result<Status, Error>; 2] {
    let mut parser = StatusParser::of_kernel_text();
    parser.feed(text);
    [parser.finish(), Status::parse(text)]
}

/// Where the first 64 bytes of `block` hold a `V` or a `C`: bit `8j + k`
/// for byte `j` of word `k` (compares a compiler vectorizes).
#[inline(always)]
fn candidates(block: &[u8]) -> u64 {
    let mut hits = [0; 64];
    for (hit, &b) in hits.iter_mut().zip(block) {
        *hit = u8::from(b == b'V') | u8::from(b == b'C');
    }
    (0..8).fold(0, |found, k| found | word(&hits, 8 * k) << k)
}

/// The 8 bytes of `text` from `at`, little-endian, zeros past its end.
#[inline(always)]
fn word(text: &[u8], at: usize) -> u64 {
    let bytes = text.get(at..).unwrap_or_default();
    match bytes.first_chunk() {
        Some(bytes) => u64::from_le_bytes(*bytes),
        None => short_word(bytes),
    }
}

/// [`word`] of fewer than 8 bytes, out of line.
#[cold]
#[inline(never)]
fn short_word(bytes: &[u8]) -> u64 {
    bytes.iter().rev().fold(0, |w, &b| w << 8 | u64::from(b))
}

/// Each key as in the text (newline, key, colon), a little-endian word and
/// its mask, in its slot: bits 2 to 4 of its sixth byte (a test checks).
const KEYS: [(u64, u64); 8] = [
    key(b"\nVmSwap:"),
    key(b"\nCapEff:"),
    key(b"\nVmLck:\0"),
    key(b"\nVmPin:\0"),
    key(b"\nVmRSS:\0"),
    (u64::MAX, u64::MAX),
    key(b"\nVmSize:"),
    (u64::MAX, u64::MAX),
];
const SWAP: usize = 0;
const CAP_EFF: usize = 1;
const LOCKED: usize = 2;
const PINNED: usize = 3;
const RSS: usize = 4;
const SIZE: usize = 6;
const ALL: u64 = 1 << LOCKED | 1 << PINNED | 1 << SIZE | 1 << RSS | 1 << SWAP | 1 << CAP_EFF;

const fn key(text: &[u8; 8]) -> (u64, u64) {
    let short = (text[7] == 0) as u32;
    (u64::from_le_bytes(*text), u64::MAX >> (8 * short))
}

const fn slot(head: u64) -> usize {
    ((head >> 42) & 7) as usize
}

/// Whether `line` (perhaps cut short) starts with a recorded key.
fn is_field(line: &[u8]) -> bool {
    key_slot(word(line, 0) << 8 | u64::from(b'\n')).is_some()
}

/// The slot of the key that `head` (a newline, 7 bytes) starts with.
#[inline(always)]
fn key_slot(head: u64) -> Option<usize> {
    let s = slot(head);
    let (key, mask) = KEYS[s];
    (head & mask == key).then_some(s)
}

/// Where the value of slot `s` starts in its line.
#[inline(always)]
const fn colon(s: usize) -> usize {
    6 + (KEYS[s].1 >> 63) as usize
}

const fn splat(b: u8) -> u64 {
    u64::from_ne_bytes([b; 8])
}

/// A size padded as the kernel pads it (`\t%8lu kB\n`), with no branch.
#[inline(always)]
fn kb_padded(value: &[u8; 16]) -> (u64, bool) {
    let [tab, c0, c1, c2, c3, c4, c5, c6, c7, u0, u1, u2, u3, ..] = *value;
    let columns = u64::from_le_bytes([c0, c1, c2, c3, c4, c5, c6, c7]);
    // A space (0x20) with bit 4 set is 0 (0x30); each column must be 0x30
    // to 0x39, which 6 more leaves under 0x40.
    let as_digits = columns | splat(0x10);
    let all_digits = (as_digits & splat(0xf0) == splat(0x30))
        & (as_digits.wrapping_add(splat(0x06)) & splat(0xf0) == splat(0x30));
    // The columns that were spaces, as 0xff: first, and not the last.
    let low = ((as_digits ^ columns) >> 4).wrapping_mul(0xff);
    let right_aligned = ((as_digits ^ splat(b'0')) & low == 0)
        & (low & low.wrapping_add(1) == 0)
        & (low >> 56 == 0);
    let framed = (tab == b'\t') & (u32::from_le_bytes([u0, u1, u2, u3]) == KB_UNIT);
    // Pairs of digits, then fours, then all eight, a multiply each.
    let kb = (columns & splat(0x0f)).wrapping_mul(10 << 8 | 1) >> 8;
    let kb = (kb & 0x00ff_00ff_00ff_00ff).wrapping_mul(100 << 16 | 1) >> 16;
    let kb = (kb & 0x0000_ffff_0000_ffff).wrapping_mul(10_000 << 32 | 1) >> 32;
    (kb * 1024, framed & all_digits & right_aligned)
}

const KB_UNIT: u32 = u32::from_le_bytes(*b" kB\n");

/// Whether values are read in words: where an unaligned load is one load.
const WORD_LOADS: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

/// A mask as the kernel writes it (`\t%016llx\n`), as [`kb_padded`].
#[inline(always)]
fn hex_written(value: &[u8; 18]) -> (u64, bool) {
    let [tab, h0, h1, h2, h3, h4, h5, h6, h7, l0, l1, l2, l3, l4, l5, l6, l7, newline] = *value;
    let high = u64::from_le_bytes([h0, h1, h2, h3, h4, h5, h6, h7]);
    let low = u64::from_le_bytes([l0, l1, l2, l3, l4, l5, l6, l7]);
    let written = (tab == b'\t') & (newline == b'\n') & is_hex(high) & is_hex(low);
    (hex_digits(high) << 32 | hex_digits(low), written)
}

/// Whether each byte of `x` is `0`-`9` or `a`-`f` (bit 7 once at `lo`).
#[inline(always)]
fn is_hex(x: u64) -> bool {
    let at_least = |lo: u8| x.wrapping_add(splat(0x80 - lo));
    let digit = at_least(b'0') & !at_least(b'9' + 1);
    let letter = at_least(b'a') & !at_least(b'f' + 1);
    (x & splat(0x80) == 0) & ((digit | letter) & splat(0x80) == splat(0x80))
}

/// The eight hex digits of `x`, the first the most significant.
#[inline(always)]
fn hex_digits(x: u64) -> u64 {
    // A letter (bit 6) is its low nibble plus 9.
    let nibbles = (x & splat(0x0f)) + (x >> 6 & splat(0x01)) * 9;
    let n = nibbles.swap_bytes();
    let n = (n | n >> 4) & 0x00ff_00ff_00ff_00ff;
    let n = (n | n >> 8) & 0x0000_ffff_0000_ffff;
    (n | n >> 16) & 0xffff_ffff
}

const KB_MAX: u64 = u64::MAX / 1024;

/// Parses `<blanks><decimal> kB\n` (or `hex` digits and `\n`) byte by byte.
fn parse_value(value: &[u8], hex: bool) -> Option<u64> {
    let mut at = 0;
    while let Some(b' ' | b'\t') = value.get(at) {
        at += 1;
    }
    let start = at;
    let mut number: u64 = 0;
    while let Some(&b) = value.get(at) {
        let decimal = b.wrapping_sub(b'0');
        let letter = (b | 0x20).wrapping_sub(b'a');
        let digit = match decimal < 10 {
            true => decimal,
            false if hex && letter < 6 => letter + 10,
            false => break,
        };
        // A size fails before it could overflow; extra hex digits below.
        if !hex && number > KB_MAX {
            return None;
        }
        let scaled = if hex { number << 4 } else { number * 10 };
        number = scaled + u64::from(digit);
        at += 1;
    }
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
mod tests;
