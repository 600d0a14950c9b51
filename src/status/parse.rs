//! The streaming parser of `/proc/<pid>/status`: [`Status`] and
//! [`StatusParser`], pure functions of the bytes fed in, with no I/O.
//!
//! # How the parser is fast
//!
//! Every recorded key starts with `V` or `C`, two letters that in the
//! kernel's text stand almost only at the start of a line. The parser looks
//! for those two bytes 64 at a time (`sys::bytes_either`: SSE2 or NEON
//! where the target has them, eight at a time in plain integer arithmetic
//! elsewhere), and checks each one found: the byte before it must be a
//! newline and the next few must be a recorded key, which one 8-byte
//! compare against a table tells (`KEYS`). Lines that are not recorded
//! fields are never walked byte by byte.
//!
//! A size as the kernel writes it (`%8lu kB`: a tab, eight columns, the
//! unit) is read as two words where an unaligned word is one load (x86_64,
//! aarch64): one integer test that the columns are spaces then digits, three
//! multiplies for the number (`kb_as_the_kernel_pads`). Any other value,
//! and `CapEff`, goes through one small byte loop (`parse_value`) that
//! reads every form the rules allow; the word reading never answers
//! differently, it only answers fewer forms.
//!
//! Nothing stops early: every line of the text is still looked at, so a
//! duplicate or malformed field anywhere is still found. (Stopping once
//! all six fields were seen would save the scan of the lines after
//! `CapEff`, about two fifths of the text, but a second `VmLck` there would
//! then go unnoticed.)

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
    present: u8,
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
        parser.result()
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
        }
    }

    /// Consumes the next chunk of the text. After a malformed field the
    /// rest is ignored, and [`finish`](StatusParser::finish) reports it.
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.malformed {
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
        if !scan(&mut self.status, lines) {
            self.malformed = true;
        }
        self.keep(tail);
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
        let ok = if overlong {
            !is_field(line)
        } else {
            scan(&mut self.status, line)
        };
        if !ok {
            self.malformed = true;
        }
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
        let cut = self.carry.get(..usize::from(self.carried));
        if self.malformed || cut.is_some_and(is_field) {
            return Err(Error::Malformed);
        }
        Ok(self.status)
    }
}

/// Records every field of `lines` (empty, or ending with a newline, so
/// that every line in it is whole). `false`: a recorded field was
/// malformed.
///
/// The candidates are the bytes `V` and `C`, found 64 bytes at a time;
/// [`record`] checks each and skips those that start no recorded field.
fn scan(status: &mut Status, lines: &[u8]) -> bool {
    // Where the last 64 bytes start, if there are 64.
    let last = lines.len().checked_sub(64);
    let mut base = 0;
    loop {
        let found = match last {
            // The 64 bytes from `base`; at the end, the last 64, which
            // overlap the blocks already seen: their bits are shifted out.
            Some(last) => {
                let at = base.min(last);
                lines
                    .get(at..)
                    .and_then(<[u8]>::first_chunk)
                    .map_or(0, |block| candidates(block) >> (base - at))
            }
            None => candidates_in_short(lines),
        };
        if !record_each(status, lines, base, found) {
            return false;
        }
        base += 64;
        if base >= lines.len() {
            return true;
        }
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

/// [`record`] at `base` plus each bit set in `found`.
fn record_each(status: &mut Status, lines: &[u8], base: usize, mut found: u64) -> bool {
    while found != 0 {
        let pos = base + found.trailing_zeros() as usize;
        found &= found - 1;
        if !record(status, lines, pos) {
            return false;
        }
    }
    true
}

/// Bit `i` set where `block[i]` may start a recorded key: wherever it is
/// `V` or `C`.
#[inline(always)]
fn candidates(block: &[u8; 64]) -> u64 {
    sys::bytes_either(block, b'V', b'C')
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

/// Records the field whose line starts at `pos` of `text`, if the line is
/// a recorded field; the line ends with a newline in `text`. `false`: the
/// field is malformed.
#[inline(always)]
fn record(status: &mut Status, text: &[u8], pos: usize) -> bool {
    match key_slot(head(text, pos)) {
        None => true,
        Some(s) => store(status, text, pos, s),
    }
}

/// [`record`] of a recorded field, whose key is in slot `s`.
#[inline(never)]
fn store(status: &mut Status, text: &[u8], pos: usize, s: usize) -> bool {
    // The value follows the colon: the key's bytes less the newline.
    let colon = if KEYS[s].1 >> 56 == 0 { 6 } else { 7 };
    // The newline may stand at most LINE_MAX bytes from `pos`.
    let end = text.len().min(pos + LINE_MAX + 1);
    let value = text.get(pos + colon..end).unwrap_or_default();
    let hex = s == CAP_EFF;
    let parsed = match hex {
        false if WORD_LOADS => kb_as_the_kernel_pads(value),
        _ => None,
    };
    let parsed = parsed.or_else(|| parse_value(value, hex));
    let bit = 1 << s;
    match parsed {
        Some(v) if status.present & bit == 0 => {
            status.present |= bit;
            if let Some(slot) = status.values.get_mut(s) {
                *slot = v;
            }
            true
        }
        // Unparsable, or the field appeared twice.
        _ => false,
    }
}

/// Whether [`kb_as_the_kernel_pads`] reads sizes: where a word of text at
/// any address is one load (x86_64, aarch64). The base riscv64 ISA does
/// not promise fast unaligned loads, so its compiler reads such a word a
/// byte at a time; there the byte loop is about as fast, and smaller.
const WORD_LOADS: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

/// [`parse_value`] of a value as the kernel pads one under 10^8 kB: a tab,
/// the number right-aligned in eight columns (`%8lu`), ` kB` and the
/// newline, read as two words with no loop over their bytes. `None` for
/// any other value, which [`parse_value`] then reads: never a different
/// answer.
#[inline(always)]
fn kb_as_the_kernel_pads(value: &[u8]) -> Option<u64> {
    let (&tab, rest) = value.first_chunk::<16>()?.split_first()?;
    let (columns, rest) = rest.split_first_chunk::<8>()?;
    let unit = rest.first_chunk::<4>()?;
    let columns = u64::from_le_bytes(*columns);
    // A space (0x20) with bit 4 set reads as the digit 0 (0x30); each
    // column must then be a digit: 0x30 to 0x39, which 6 more leaves
    // under 0x40 (a byte over 0xf9 that would carry is caught first).
    let as_digits = columns | splat(0x10);
    let all_digits = as_digits & splat(0xf0) == splat(0x30)
        && as_digits.wrapping_add(splat(0x06)) & splat(0xf0) == splat(0x30);
    // The columns that were below 0x30, as 0xff: each was a space (now
    // 0x30 exactly), they come first, and the last column is a digit.
    let low = ((as_digits ^ columns) >> 4).wrapping_mul(0xff);
    let right_aligned =
        (as_digits ^ splat(b'0')) & low == 0 && low & low.wrapping_add(1) == 0 && low >> 56 == 0;
    if tab != b'\t' || unit != b" kB\n" || !all_digits || !right_aligned {
        return None;
    }
    // Pairs of digits, then fours, then all eight, in a multiply each
    // (the first column the most significant; a space reads as 0).
    let kb = (columns & splat(0x0f)).wrapping_mul(10 << 8 | 1) >> 8;
    let kb = (kb & 0x00ff_00ff_00ff_00ff).wrapping_mul(100 << 16 | 1) >> 16;
    let kb = (kb & 0x0000_ffff_0000_ffff).wrapping_mul(10_000 << 32 | 1) >> 32;
    Some(kb * 1024)
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
    use super::{kb_as_the_kernel_pads, parse_value};

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
