//! `/proc/self/status`: the parser on every kind of bad input, split at
//! every offset, and over a large generated corpus against an independent
//! oracle; `status()` against std's reading; `/proc` unmounted and replaced
//! for real in a private mount namespace; the polling reader across
//! `fork`; and zero allocations.

mod common;

use common::*;
use mlock::status::{StatusParser, StatusReader};
use mlock::{Error, Flags, Status};

#[path = "common/counting_alloc.rs"]
mod counting_alloc;
#[path = "common/status_oracle.rs"]
mod status_oracle;
use counting_alloc::allocations;
use status_oracle::{fields, oracle};

const KB: u64 = 1024;

/// A status text as the kernel writes it, with every recorded field.
const SAMPLE: &str = "Name:\tcat\nUmask:\t0022\nState:\tR (running)\nTgid:\t4242\n\
Pid:\t4242\nPPid:\t1\nUid:\t0\t0\t0\t0\nGroups:\t0 \nVmPeak:\t    8196 kB\n\
VmSize:\t    8196 kB\nVmLck:\t      12 kB\nVmPin:\t       0 kB\nVmHWM:\t     960 kB\n\
VmRSS:\t     960 kB\nRssAnon:\t      88 kB\nVmData:\t     360 kB\nVmSwap:\t       4 kB\n\
Threads:\t1\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\n\
CapEff:\t000001ffffffffff\nCapBnd:\t000001ffffffffff\nCpus_allowed:\tff\n\
Cpus_allowed_list:\t0-7\nvoluntary_ctxt_switches:\t0\n";

fn parse(text: &str) -> Result<Status, Error> {
    Status::parse(text.as_bytes())
}

/// `SAMPLE` with the line of `key` replaced by `line` (or removed).
fn sample_with(key: &str, line: Option<&str>) -> String {
    let mut out = String::new();
    for l in SAMPLE.lines() {
        if l.split(':').next() == Some(key) {
            if let Some(line) = line {
                out.push_str(line);
                out.push('\n');
            }
        } else {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

#[test]
fn parses_every_recorded_field() {
    let s = parse(SAMPLE).unwrap();
    assert_eq!(s.locked_bytes(), Some(12 * KB));
    assert_eq!(s.pinned_bytes(), Some(0));
    assert_eq!(s.size_bytes(), Some(8196 * KB));
    assert_eq!(s.rss_bytes(), Some(960 * KB));
    assert_eq!(s.swap_bytes(), Some(4 * KB));
    assert_eq!(s.effective_capabilities(), Some(0x1ff_ffff_ffff));
    assert_eq!(s.cap_eff_has_ipc_lock(), Some(true));
    let no_caps = sample_with("CapEff", Some("CapEff:\t0000000000000000"));
    assert_eq!(parse(&no_caps).unwrap().cap_eff_has_ipc_lock(), Some(false));
    // Only bit 14 counts.
    let only_ipc_lock = sample_with("CapEff", Some("CapEff:\t0000000000004000"));
    assert_eq!(
        parse(&only_ipc_lock).unwrap().cap_eff_has_ipc_lock(),
        Some(true)
    );
}

#[test]
fn absent_fields_are_none_not_errors() {
    // A kernel thread's status has no Vm* lines.
    let s = parse("Name:\tkthreadd\nState:\tS (sleeping)\nCapEff:\t000001ffffffffff\n").unwrap();
    assert_eq!(s.locked_bytes(), None);
    assert_eq!(s.size_bytes(), None);
    assert_eq!(s.swap_bytes(), None);
    assert_eq!(s.cap_eff_has_ipc_lock(), Some(true));
    assert_eq!(parse("").unwrap(), Status::default());
    let s = parse(&sample_with("VmPin", None)).unwrap();
    assert_eq!((s.pinned_bytes(), s.locked_bytes()), (None, Some(12 * KB)));
}

#[test]
fn values_at_and_over_the_u64_edge() {
    // The largest kB value whose bytes fit: u64::MAX / 1024.
    let max_kb = u64::MAX / 1024;
    let s = parse(&format!("VmLck:\t{max_kb} kB\n")).unwrap();
    assert_eq!(s.locked_bytes(), Some(max_kb * 1024));
    // One more overflows only when multiplied by 1024.
    let over = max_kb + 1;
    assert_eq!(
        parse(&format!("VmLck:\t{over} kB\n")),
        Err(Error::Malformed)
    );
    // Overflows u64 itself, and a very long run of digits.
    assert_eq!(
        parse("VmSize:\t18446744073709551616 kB\n"),
        Err(Error::Malformed)
    );
    assert_eq!(
        parse("VmSize:\t99999999999999999999999 kB\n"),
        Err(Error::Malformed)
    );
    // Leading zeros are digits like any other.
    assert_eq!(
        parse("VmSwap:\t0000000000000000000000000000000000000007 kB\n")
            .unwrap()
            .swap_bytes(),
        Some(7 * KB)
    );
    assert_eq!(parse("VmLck:\t0 kB\n").unwrap().locked_bytes(), Some(0));
}

#[test]
fn negative_non_numeric_and_odd_units_are_malformed() {
    for value in [
        "-4 kB", "+4 kB", "4.5 kB", "0x10 kB", "four kB", " kB", "", "\t", "4", "4 ", "4 kb",
        "4 KB", "4 MB", "4kB", "4  kB", "4\tkB", "4 kB ", "4 kB\r", "4 kBytes", "4 kB x", "4 4 kB",
        "١٢ kB", "4\0 kB",
    ] {
        for key in ["VmLck", "VmPin", "VmSize", "VmRSS", "VmSwap"] {
            let text = sample_with(key, Some(&format!("{key}:\t{value}")));
            assert_eq!(parse(&text), Err(Error::Malformed), "{key}: {value:?}");
        }
    }
    for value in [
        "",
        "-1",
        "0x1",
        "g",
        "00000000000000000",
        "1 ",
        "1 kB",
        " 1 2",
    ] {
        let text = sample_with("CapEff", Some(&format!("CapEff:\t{value}")));
        assert_eq!(parse(&text), Err(Error::Malformed), "CapEff: {value:?}");
    }
    // Blanks before the value are the kernel's padding.
    assert_eq!(
        parse("VmLck: \t \t 3 kB\n").unwrap().locked_bytes(),
        Some(3 * KB)
    );
    // A key without a colon is no field.
    assert_eq!(parse("VmLck\t3 kB\n").unwrap().locked_bytes(), None);
}

#[test]
fn lookalike_keys_are_other_fields() {
    for line in [
        "VmLcked:\t99 kB",
        "VmLck :\t99 kB",
        " VmLck:\t99 kB",
        "vmlck:\t99 kB",
        "VMLCK:\t99 kB",
        "VmLc:\t99 kB",
        "XVmLck:\t99 kB",
        "VmLck\0:\t99 kB",
        "CapEffective:\tffff",
        "VmSizeX:\tgarbage",
        "VmSwapped: -1 kB",
    ] {
        let text = format!("{line}\n{SAMPLE}{line}\n");
        assert_eq!(
            parse(&text).unwrap(),
            parse(SAMPLE).unwrap(),
            "{line:?} changed the result"
        );
    }
}

#[test]
fn a_duplicate_field_is_malformed() {
    for key in ["VmLck", "VmPin", "VmSize", "VmRSS", "VmSwap", "CapEff"] {
        let line = SAMPLE
            .lines()
            .find(|l| l.starts_with(&format!("{key}:")))
            .unwrap();
        // Same value or not, twice is not what the kernel writes.
        let text = format!("{SAMPLE}{line}\n");
        assert_eq!(parse(&text), Err(Error::Malformed), "{key} twice");
    }
    // A duplicate of an unrecorded field is not our business.
    assert!(parse(&format!("{SAMPLE}Threads:\t2\n")).is_ok());
}

#[test]
fn a_truncated_last_line_is_malformed_only_for_a_recorded_field() {
    // Cut within, or just before the newline of, a recorded field.
    for text in [
        "Name:\tx\nVmLck:\t    12 kB",
        "Name:\tx\nVmLck:\t    12",
        "Name:\tx\nVmLck:",
        "Name:\tx\nVmLck:\t",
        "Name:\tx\nCapEff:\t0000",
    ] {
        assert_eq!(parse(text), Err(Error::Malformed), "{text:?}");
    }
    // A cut key cannot be told apart from another key; a cut unrecorded
    // line is ignored.
    let s = parse("VmLck:\t4 kB\nVmLc").unwrap();
    assert_eq!(s.locked_bytes(), Some(4 * KB));
    assert!(parse("VmLck:\t4 kB\nThreads:\t1").is_ok());
    // Every prefix of the sample: a recorded field is either whole or an
    // error, never a wrong number.
    let whole = parse(SAMPLE).unwrap();
    for cut in 0..SAMPLE.len() {
        if let Ok(s) = Status::parse(&SAMPLE.as_bytes()[..cut]) {
            for (got, want) in [
                (s.locked_bytes(), whole.locked_bytes()),
                (s.size_bytes(), whole.size_bytes()),
                (s.rss_bytes(), whole.rss_bytes()),
                (s.swap_bytes(), whole.swap_bytes()),
                (s.pinned_bytes(), whole.pinned_bytes()),
                (s.effective_capabilities(), whole.effective_capabilities()),
            ] {
                assert!(got.is_none() || got == want, "cut at {cut}: {got:?}");
            }
        }
    }
}

#[test]
fn arbitrary_binary_bytes_are_skipped_or_malformed() {
    let mut bytes: Vec<u8> = (0..=255u8).cycle().take(64 * 1024).collect();
    assert!(Status::parse(&bytes).is_ok(), "no recorded key in there");
    // Binary around real fields does not change them.
    bytes.extend_from_slice(b"\n");
    bytes.extend_from_slice(SAMPLE.as_bytes());
    bytes.extend_from_slice(&[0xff, 0x00, 0x80, b'\n', 0xc3, 0x28]);
    assert_eq!(Status::parse(&bytes).unwrap(), parse(SAMPLE).unwrap());
    // Binary in a recorded value is malformed.
    let bad = b"VmLck:\t\xff\xfe kB\n";
    assert_eq!(Status::parse(bad), Err(Error::Malformed));
}

#[test]
fn a_100_kb_line_is_skipped_and_split_anywhere() {
    let long: String = "0,".repeat(50 * 1024);
    let text = format!("Name:\tx\nCpus_allowed_list:\t{long}\n{SAMPLE}Groups:\t{long}\n");
    assert!(text.len() > 200 * 1024);
    assert_eq!(parse(&text).unwrap(), parse(SAMPLE).unwrap());
    // A recorded field 100 KB long is not the kernel's.
    let huge = format!("VmLck:{}1 kB\n", " ".repeat(100 * 1024));
    assert_eq!(parse(&huge), Err(Error::Malformed));
    let digits = format!("VmLck:\t{} kB\n", "0".repeat(100 * 1024));
    assert_eq!(parse(&digits), Err(Error::Malformed));
    // Fed in 7-byte and 4096-byte chunks, the same.
    for size in [7, 4096] {
        let mut p = StatusParser::new();
        for chunk in text.as_bytes().chunks(size) {
            p.feed(chunk);
        }
        assert_eq!(
            p.finish().unwrap(),
            parse(SAMPLE).unwrap(),
            "chunks of {size}"
        );
        let mut p = StatusParser::new();
        for chunk in huge.as_bytes().chunks(size) {
            p.feed(chunk);
        }
        assert_eq!(p.finish(), Err(Error::Malformed), "chunks of {size}");
    }
}

#[test]
fn the_field_line_length_bound_is_exact() {
    // 64 bytes is accepted, 65 is not, in one piece or carried over.
    let line = |len: usize| {
        let pad = len - "VmLck:1 kB".len();
        format!("VmLck:{}1 kB\n", " ".repeat(pad))
    };
    for (len, ok) in [(63, true), (64, true), (65, false), (200, false)] {
        let text = line(len);
        for split in 0..=text.len() {
            let mut p = StatusParser::new();
            p.feed(&text.as_bytes()[..split]);
            p.feed(&text.as_bytes()[split..]);
            assert_eq!(p.finish().is_ok(), ok, "line of {len}, split at {split}");
        }
    }
}

/// Feeds `text` in the pieces between `cuts` (sorted offsets).
fn parse_split(text: &[u8], cuts: &[usize]) -> Result<Status, Error> {
    let mut p = StatusParser::new();
    let mut from = 0;
    for &cut in cuts {
        p.feed(&text[from..cut]);
        from = cut;
    }
    p.feed(&text[from..]);
    p.finish()
}

#[test]
fn real_status_split_at_every_offset_matches_the_one_shot_parse() {
    let text = std::fs::read("/proc/self/status").expect("read /proc/self/status");
    let whole = Status::parse(&text).expect("the kernel's own text parses");
    assert!(whole.locked_bytes().is_some() && whole.size_bytes().is_some());
    for cut in 0..=text.len() {
        assert_eq!(parse_split(&text, &[cut]), Ok(whole), "split at {cut}");
    }
    // Three pieces: every pair of cuts within a window over each recorded
    // line, and empty pieces.
    for a in 0..text.len() {
        for b in a..(a + 80).min(text.len()) {
            assert_eq!(parse_split(&text, &[a, b]), Ok(whole), "cuts {a}, {b}");
        }
    }
    // One byte at a time.
    let cuts: Vec<usize> = (1..text.len()).collect();
    assert_eq!(parse_split(&text, &cuts), Ok(whole));
    // The same for the sample, whose fields are all present.
    let sample = SAMPLE.as_bytes();
    for cut in 0..=sample.len() {
        assert_eq!(parse_split(sample, &[cut]), parse(SAMPLE), "split at {cut}");
    }
}

// ---------------------------------------------------------------------------
// The generated corpus: an independent, obviously-correct oracle written
// with std, and the crate's parser must agree with it on every input, one
// shot and split. Counted, and the count printed.

/// splitmix64: a small, fast, deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Pieces the generator builds lines from: real and lookalike keys,
/// separators, values at the edges, units, and junk.
const KEYS: &[&str] = &[
    "VmLck",
    "VmPin",
    "VmSize",
    "VmRSS",
    "VmSwap",
    "CapEff",
    "VmLcked",
    "VmLc",
    "VmSizeX",
    "CapEf",
    "CapEffs",
    "Name",
    "Cpus_allowed_list",
    "vmlck",
    " VmLck",
    "VmLck ",
    "",
    ":",
];
const SEPARATORS: &[&str] = &[":\t", ":", ": ", ":  \t ", ":\t\t", "", "::", "\t", ":\n"];
const NUMBERS: &[&str] = &[
    "0",
    "1",
    "12",
    "8196",
    "18014398509481983",
    "18014398509481984",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999",
    // 2^120: in kB, its bytes overflow even a u128 (the oracle checks).
    "1329227995784915872903807060280344576",
    "-1",
    "+1",
    "1.5",
    "0x10",
    "000001ffffffffff",
    "ffffffffffffffff",
    "10000000000000000",
    "00000000000000000",
    "4000",
    "g",
    "",
];
const UNITS: &[&str] = &[
    " kB", " kB", " kB", "", " kb", "kB", "  kB", " kB ", " MB", "\tkB", " kB\r",
];

fn generate(rng: &mut Rng, real: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match rng.below(4) {
        // Lines built from the pieces above.
        0 | 1 => {
            for _ in 0..rng.below(40) {
                out.extend_from_slice(rng.pick(KEYS).as_bytes());
                out.extend_from_slice(rng.pick(SEPARATORS).as_bytes());
                for _ in 0..rng.below(3) {
                    out.extend_from_slice(b"   ");
                }
                out.extend_from_slice(rng.pick(NUMBERS).as_bytes());
                out.extend_from_slice(rng.pick(UNITS).as_bytes());
                if rng.below(20) == 0 {
                    out.extend_from_slice(&vec![b'x'; rng.below(300)]);
                }
                if rng.below(30) != 0 {
                    out.push(b'\n');
                }
            }
        }
        // The real file, mutated: byte flips, cuts, insertions, copies.
        2 => {
            out.extend_from_slice(real);
            for _ in 0..1 + rng.below(6) {
                if out.is_empty() {
                    break;
                }
                let at = rng.below(out.len());
                match rng.below(6) {
                    0 => out[at] = rng.next() as u8,
                    1 => out.truncate(at),
                    2 => {
                        out.remove(at);
                    }
                    3 => out.insert(at, *rng.pick(b"\n:\t 0123456789kBVmLckCapEf-x\0\xff")),
                    4 => {
                        let end = (at + rng.below(64)).min(out.len());
                        let copy = out[at..end].to_vec();
                        let to = rng.below(out.len());
                        out.splice(to..to, copy);
                    }
                    _ => out[at] = out[at].wrapping_add(1),
                }
            }
        }
        // Raw random bytes, with newlines and colons salted in.
        _ => {
            for _ in 0..rng.below(512) {
                let b = rng.next() as u8;
                out.push(match b % 8 {
                    0 => b'\n',
                    1 => b':',
                    _ => b,
                });
            }
        }
    }
    out
}

/// The number of generated inputs; `MLOCK_STATUS_CORPUS` overrides it.
/// Under QEMU user mode, which runs the parser some 15 times slower, a
/// tenth as many by default.
fn corpus_size() -> u64 {
    let default = if under_qemu_user() { 20_000 } else { 200_000 };
    std::env::var("MLOCK_STATUS_CORPUS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn generated_corpus_agrees_with_the_oracle_one_shot_and_split() {
    let real = std::fs::read("/proc/self/status").expect("read /proc/self/status");
    let mut rng = Rng(0x6d6c_6f63_6b21);
    let (mut ran, mut ok, mut malformed) = (0u64, 0u64, 0u64);
    for _ in 0..corpus_size() {
        let input = generate(&mut rng, &real);
        let want = oracle(&input);
        let got = Status::parse(&input);
        assert_eq!(
            got.map(|s| fields(&s)),
            want,
            "input {:?}",
            String::from_utf8_lossy(&input)
        );
        // The same, fed in three random pieces.
        let mut cuts = [rng.below(input.len() + 1), rng.below(input.len() + 1)];
        cuts.sort_unstable();
        assert_eq!(
            parse_split(&input, &cuts),
            got,
            "cuts {cuts:?} of {:?}",
            String::from_utf8_lossy(&input)
        );
        match got {
            Ok(_) => ok += 1,
            Err(_) => malformed += 1,
        }
        ran += 1;
    }
    println!("status corpus: {ran} inputs ({ok} parsed, {malformed} malformed), all agree");
    assert!(
        ok > ran / 10 && malformed > ran / 10,
        "the corpus covers both outcomes"
    );
}

// ---------------------------------------------------------------------------
// The real file.

#[test]
fn status_agrees_with_std() {
    // In a single-threaded child, so that no other thread maps memory
    // between the readings. std's reading allocates: warm the heap first.
    run(|| {
        let _ = status_kb("VmSize");
        let s = mlock::status().map_err(|e| e.to_string())?;
        let (lck, size, rss) = (vm_lck_kb(), status_kb("VmSize"), status_kb("VmRSS"));
        ensure(
            s.locked_bytes() == Some(lck * KB) && s.size_bytes() == Some(size * KB),
            || format!("crate {s:?}, std VmLck {lck} kB VmSize {size} kB"),
        )?;
        ensure(
            s.rss_bytes()
                .is_some_and(|r| r > 0 && r <= (rss + 1024) * KB),
            || format!("crate {s:?}, std VmRSS {rss} kB"),
        )?;
        let caps = mlock::limits::has_ipc_lock().map_err(|e| e.to_string())?;
        ensure(s.cap_eff_has_ipc_lock() == Some(caps), || {
            format!(
                "CapEff says {:?}, capget says {caps}",
                s.cap_eff_has_ipc_lock()
            )
        })?;
        let bytes = mlock::locked_bytes().map_err(|e| e.to_string())?;
        ensure(bytes == lck * KB, || format!("locked_bytes {bytes}"))
    });
}

#[test]
fn status_sees_a_lock_and_the_reader_follows_it() {
    run(|| {
        let mut reader = StatusReader::open().map_err(|e| e.to_string())?;
        let map = Anon::new(1 << 20);
        let before = reader.read().map_err(|e| e.to_string())?;
        mlock::lock(map.slice()).map_err(|e| format!("lock: {e}"))?;
        let fresh = mlock::status().map_err(|e| e.to_string())?;
        let polled = reader.read().map_err(|e| e.to_string())?;
        let std_kb = vm_lck_kb();
        ensure(
            fresh.locked_bytes() == Some(std_kb * KB) && polled.locked_bytes() == Some(std_kb * KB),
            || format!("status {fresh:?} reader {polled:?} std {std_kb} kB"),
        )?;
        ensure(
            polled.locked_bytes().unwrap() >= before.locked_bytes().unwrap() + (1 << 20),
            || format!("reader did not see 1 MiB more locked: {before:?} -> {polled:?}"),
        )?;
        ensure(mlock::is_locked() == Ok(true), || {
            "is_locked after lock".into()
        })?;
        mlock::unlock(map.slice()).map_err(|e| e.to_string())?;
        let after = reader.read().map_err(|e| e.to_string())?;
        ensure(after.locked_bytes() == before.locked_bytes(), || {
            format!("after unlock {after:?}, before {before:?}")
        })
    });
}

#[test]
fn a_reader_carried_across_fork_describes_the_child() {
    run(|| {
        // The parent locks 1 MiB; its child inherits no lock (fork(2)).
        let map = Anon::new(1 << 20);
        mlock::lock(map.slice()).map_err(|e| format!("lock: {e}"))?;
        let mut reader = StatusReader::open().map_err(|e| e.to_string())?;
        let parent = reader.read().map_err(|e| e.to_string())?;
        let parent_lck = parent.locked_bytes().unwrap();
        ensure(parent_lck >= 1 << 20, || {
            format!("parent VmLck {parent_lck}")
        })?;
        // A raw descriptor to /proc/self/status, kept across the fork,
        // shows why the reader must reopen.
        // SAFETY: the path is NUL-terminated.
        let raw = unsafe {
            libc::open(
                c"/proc/self/status".as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            )
        };
        ensure(raw >= 0, || "open /proc/self/status".into())?;
        let parent_pid = reader.pid();
        in_child(|| {
            // SAFETY: getpid has no preconditions.
            let me = unsafe { libc::getpid() } as u32;
            ensure(reader.pid() == parent_pid && me != parent_pid, || {
                "pids".into()
            })?;
            let mut buf = vec![0u8; 8192];
            // SAFETY: `raw` is open and `buf` is valid for its length.
            let n = unsafe { libc::pread(raw, buf.as_mut_ptr().cast(), buf.len(), 0) };
            ensure(n > 0, || "pread of the inherited descriptor".into())?;
            let stale = Status::parse(&buf[..n as usize]).map_err(|e| e.to_string())?;
            ensure(stale.locked_bytes() == Some(parent_lck), || {
                format!(
                    "the inherited descriptor shows {:?}, not the parent's {parent_lck}",
                    stale.locked_bytes()
                )
            })?;
            let mine = reader.read().map_err(|e| e.to_string())?;
            let std_kb = vm_lck_kb();
            ensure(mine.locked_bytes() == Some(std_kb * KB), || {
                format!("child's reader says {mine:?}, std says {std_kb} kB")
            })?;
            ensure(mine.locked_bytes() != Some(parent_lck), || {
                "child's reader returned the parent's VmLck".into()
            })?;
            ensure(reader.pid() == me, || {
                "reader did not take the child's pid".into()
            })?;
            // And it keeps working, now on the child's own descriptor.
            let again = reader.read().map_err(|e| e.to_string())?;
            ensure(again.locked_bytes() == mine.locked_bytes(), || {
                "second read in the child".into()
            })
        })?;
        // The parent's reader is untouched by the child's reopening.
        let still = reader.read().map_err(|e| e.to_string())?;
        ensure(
            still.locked_bytes() == Some(parent_lck) && reader.pid() == parent_pid,
            || format!("parent after the child: {still:?}"),
        )
    });
}

// ---------------------------------------------------------------------------
// No /proc, for real: a private mount namespace in a forked child.

#[test]
fn without_proc_status_says_so_and_locking_still_works() {
    run(|| {
        private_mount_namespace()?;
        unmount_proc()?;
        every_reading_refuses("without /proc")?;
        let message = Error::ProcUnavailable.to_string();
        ensure(message.contains("/proc is not mounted"), || message.clone())?;
        // Locking does not need /proc.
        mlock::lock_all(Flags::CURRENT).map_err(|e| format!("lock_all without /proc: {e}"))?;
        // Mount a fresh procfs in this namespace to check it took.
        let mounted = mlock::boot::mount_proc().map_err(|e| format!("mount_proc: {e}"))?;
        ensure(mounted, || "mount_proc found /proc already mounted".into())?;
        let lck = mlock::locked_bytes().map_err(|e| e.to_string())?;
        let size = mlock::status().unwrap().size_bytes().unwrap();
        ensure(lck * 2 > size, || {
            format!("VmLck {lck} is not most of VmSize {size} after lock_all")
        })?;
        mlock::unlock_all().map_err(|e| e.to_string())
    });
}

/// Fails unless `StatusReader::open` says `ProcUnavailable`.
fn reader_refuses(when: &str) -> Result<(), String> {
    let reader = StatusReader::open().map(drop);
    ensure_eq(
        reader,
        Err(Error::ProcUnavailable),
        &format!("StatusReader::open {when}"),
    )
}

/// Fails unless every reading of `/proc/self/status` says
/// `ProcUnavailable` (and `is_locked` says no).
fn every_reading_refuses(when: &str) -> Result<(), String> {
    ensure_eq(
        mlock::status(),
        Err(Error::ProcUnavailable),
        &format!("status() {when}"),
    )?;
    reader_refuses(when)?;
    ensure_eq(
        mlock::locked_bytes(),
        Err(Error::ProcUnavailable),
        &format!("locked_bytes() {when}"),
    )?;
    ensure_eq(
        mlock::is_locked(),
        Err(Error::ProcUnavailable),
        &format!("is_locked() {when}"),
    )
}

/// In a private mount namespace, covers `/proc` with an empty tmpfs and
/// creates `/proc/self` in it, ready for a fake `status`.
fn tmpfs_at_proc() -> Result<(), String> {
    private_mount_namespace()?;
    // SAFETY: valid NUL-terminated strings.
    let rc = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            c"/proc".as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    ensure(rc == 0, || {
        format!("mount tmpfs: {}", std::io::Error::last_os_error())
    })?;
    std::fs::create_dir_all("/proc/self").map_err(|e| e.to_string())
}

/// A fake status that parses fine, and claims memory is locked.
const FAKE_STATUS: &str = "Name:\tfake\nVmLck:\t  999 kB\n";

#[test]
fn a_tmpfs_at_proc_is_not_procfs() {
    // The parent has seen the real procfs, so `status()` here remembers
    // that; the forked child must not inherit it, as its /proc differs.
    mlock::status().unwrap();
    run(|| {
        tmpfs_at_proc()?;
        std::fs::write("/proc/self/status", FAKE_STATUS).map_err(|e| e.to_string())?;
        every_reading_refuses("with a tmpfs at /proc")
    });
}

/// `status()` checks for procfs once per process (the documented limit):
/// on a kernel, a fake mounted by the process itself after its first call
/// is read, while `StatusReader::open` checks again and refuses it. Under
/// QEMU user mode, which ignores `madvise`, nothing is remembered and
/// `status()` refuses it too.
#[test]
fn status_checks_procfs_once_per_process_and_the_reader_every_time() {
    run(|| {
        mlock::status().map_err(|e| e.to_string())?;
        tmpfs_at_proc()?;
        std::fs::write("/proc/self/status", FAKE_STATUS).map_err(|e| e.to_string())?;
        reader_refuses("with a tmpfs at /proc")?;
        let got = mlock::status();
        if under_qemu_user() {
            ensure(got == Err(Error::ProcUnavailable), || {
                format!("under QEMU user mode status() read the fake: {got:?}")
            })
        } else {
            ensure(
                got.as_ref().ok().and_then(Status::locked_bytes) == Some(999 * KB),
                || format!("status() checked procfs again after its first call: {got:?}"),
            )
        }
    });
}

#[test]
fn a_symlink_at_proc_self_status_is_refused() {
    run(|| {
        tmpfs_at_proc()?;
        std::os::unix::fs::symlink("/etc/hostname", "/proc/self/status")
            .map_err(|e| e.to_string())?;
        // open(2) with O_NOFOLLOW refuses a symlink as the last component
        // with ELOOP (40 on x86_64, aarch64 and riscv64), whatever it
        // points to.
        let eloop = Err(Error::Os(libc::ELOOP));
        ensure_eq(mlock::status().map(drop), eloop, "status() via a symlink")?;
        ensure_eq(
            StatusReader::open().map(drop),
            eloop,
            "StatusReader::open via a symlink",
        )
    });
}

// ---------------------------------------------------------------------------
// Zero allocations.

#[test]
fn status_parse_reader_and_preflight_do_not_allocate() {
    let text = std::fs::read("/proc/self/status").unwrap();
    let long = format!("Groups:\t{}\n{SAMPLE}", "1 ".repeat(8192)).into_bytes();
    let mut reader = StatusReader::open().unwrap();
    let ((), n) = allocations(|| {
        mlock::status().unwrap();
        mlock::locked_bytes().unwrap();
        let _ = mlock::is_locked();
        Status::parse(&text).unwrap();
        Status::parse(&long).unwrap();
        let _ = Status::parse(b"VmLck:\t99999999999999999999 kB\n");
        let mut p = StatusParser::new();
        for chunk in long.chunks(5) {
            p.feed(chunk);
        }
        p.finish().unwrap();
        let mut r = StatusReader::open().unwrap();
        r.read().unwrap();
        reader.read().unwrap();
        for flags in [
            Flags::CURRENT,
            Flags::FUTURE,
            Flags::CURRENT | Flags::FUTURE | Flags::ONFAULT,
            Flags::ONFAULT,
        ] {
            let p = mlock::limits::preflight(flags).unwrap();
            let _ = (p.will_succeed(), p.fix(), p.size_bytes(), p.limit());
        }
    });
    assert_eq!(n, 0, "status, parse, the reader and preflight allocated");
    // The counter works: this allocates.
    let (v, n) = allocations(|| vec![0u8; 10]);
    assert_eq!((v.len(), n), (10, 1));
}

#[test]
fn the_reader_after_fork_does_not_allocate_either() {
    let mut reader = StatusReader::open().unwrap();
    run(move || {
        let (res, n) = allocations(|| reader.read().map(|s| s.locked_bytes()));
        ensure(n == 0 && res.is_ok(), || {
            format!("{n} allocations, {res:?}")
        })
    });
}
