//! The independent oracle for the `/proc/<pid>/status` parser: plain std
//! code that splits lines and parses values the obvious way. The generated
//! corpus in `tests/status.rs` and the fuzz target in `fuzz/` both check
//! the crate's parser against it; each includes this file with `#[path]`.

use mlock::{Error, Status};

/// What the oracle expects: the six fields, or malformed.
pub fn oracle(text: &[u8]) -> Result<[Option<u64>; 6], Error> {
    const KEYS: [&[u8]; 6] = [
        b"VmLck", b"VmPin", b"VmSize", b"VmRSS", b"VmSwap", b"CapEff",
    ];
    let mut out = [None; 6];
    let mut lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
    // What follows the last newline is unterminated.
    let last = lines.pop().unwrap_or_default();
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let Some(k) = KEYS.iter().position(|key| *key == &line[..colon]) else {
            continue;
        };
        if line.len() > 64 || out[k].is_some() {
            return Err(Error::Malformed);
        }
        let value = std::str::from_utf8(&line[colon + 1..]).map_err(|_| Error::Malformed)?;
        let value = value.trim_start_matches([' ', '\t']);
        let parsed = if k == 5 {
            let ok = !value.is_empty()
                && value.len() <= 16
                && value.bytes().all(|b| b.is_ascii_hexdigit());
            ok.then(|| u64::from_str_radix(value, 16).ok()).flatten()
        } else {
            value
                .strip_suffix(" kB")
                .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|d| d.parse::<u128>().ok())
                .and_then(|kb| kb.checked_mul(1024))
                .and_then(|b| u64::try_from(b).ok())
        };
        out[k] = Some(parsed.ok_or(Error::Malformed)?);
    }
    if let Some(colon) = last.iter().position(|&b| b == b':') {
        if KEYS.contains(&&last[..colon]) {
            return Err(Error::Malformed);
        }
    }
    Ok(out)
}

pub fn fields(s: &Status) -> [Option<u64>; 6] {
    [
        s.locked_bytes(),
        s.pinned_bytes(),
        s.size_bytes(),
        s.rss_bytes(),
        s.swap_bytes(),
        s.effective_capabilities(),
    ]
}
