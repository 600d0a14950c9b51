extern crate std;
use std::format;
use std::string::String;
use std::vec::Vec;

use super::{candidates, hex_written, kb_padded, parse_value, Status, StatusParser};
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

const VALUES: [&str; 6] = [
    "\t       8 kB",
    "\t       0 kB",
    "\t    9000 kB",
    "\t     900 kB",
    "\t       0 kB",
    "\t000001fffeffffff",
];

/// The kernel-text parse of `text` fed in chunks of `chunk` bytes.
fn kernel_parse(text: &[u8], chunk: usize) -> Result<Status, Error> {
    let mut parser = StatusParser::of_kernel_text();
    for part in text.chunks(chunk) {
        parser.feed(part);
    }
    parser.finish()
}

#[test]
fn the_kernel_text_parse_stops_after_the_six_fields() {
    // A second VmLck after CapEff, past the 64 bytes after it: the kernel
    // never writes one.
    let extra = "Cpus_allowed_list:\t0-1\nMems_allowed:\t1\nMems_allowed_list:\t0\n\
                 VmLck:\t      16 kB\n";
    let text = kernel_text("demo", &VALUES, extra);
    assert_eq!(Status::parse(text.as_bytes()), Err(Error::Malformed));
    for chunk in 1..=text.len() {
        // Stopped at CapEff: the first VmLck stands.
        let kernel = kernel_parse(text.as_bytes(), chunk);
        assert_eq!(
            kernel.map(|s| s.locked_bytes()),
            Ok(Some(8 * 1024)),
            "chunk {chunk}"
        );
    }
    // Without the duplicate the two agree, however the text is split.
    let text = kernel_text("demo", &VALUES, "");
    let full = Status::parse(text.as_bytes());
    assert_eq!(
        full.map(|s| s.effective_capabilities()),
        Ok(Some(0x1ff_feff_ffff))
    );
    for chunk in 1..=text.len() {
        assert_eq!(kernel_parse(text.as_bytes(), chunk), full, "chunk {chunk}");
    }
}

#[test]
fn a_malformed_field_before_the_last_one_stops_the_kernel_text_parse() {
    let mut values = VALUES;
    values[1] = "\t      x0 kB";
    let text = kernel_text("demo", &values, "");
    assert_eq!(kernel_parse(text.as_bytes(), 2048), Err(Error::Malformed));
    assert_eq!(Status::parse(text.as_bytes()), Err(Error::Malformed));
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

#[test]
fn candidates_are_found_in_every_block() {
    // Blocks of `V` and `C`, their neighbours and any byte, cut at every
    // length.
    let mut next = lcg(64);
    for round in 0..100_000 {
        let len = (next() % 65) as usize;
        let block: Vec<u8> = (0..len)
            .map(|_| match next() % 8 {
                0 => b'V',
                1 => b'C',
                2 => b'W',
                3 => b'D',
                4 => b'U',
                5 => b'B',
                6 => b'\n',
                _ => next() as u8,
            })
            .collect();
        let mut padded = [0; 64];
        padded[..len].copy_from_slice(&block);
        let (wide, short) = (candidates(&padded), candidates(&block));
        for at in 0..64 {
            let bit = |found: u64| found >> (8 * (at % 8) + at / 8) & 1 == 1;
            let b = block.get(at).copied();
            let exact = b == Some(b'V') || b == Some(b'C');
            assert_eq!(bit(short), exact, "round {round}: {b:?} at {at}");
            assert_eq!(bit(wide), exact, "round {round}: {b:?} at {at}");
        }
        // Nothing past the end.
        let past = (len..64).fold(0u64, |m, at| m | 1 << (8 * (at % 8) + at / 8));
        assert_eq!(wide & past, 0, "round {round}");
        assert_eq!(short & past, 0, "round {round}");
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

#[test]
fn every_key_is_in_its_slot() {
    for (s, &(key, _)) in super::KEYS.iter().enumerate() {
        assert!(key == u64::MAX || super::slot(key) == s, "slot {s}");
    }
}
