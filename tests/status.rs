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
    let no_caps = sample_with("CapEff", Some("CapEff:\t0000000000000000"));
    assert_eq!(parse(&no_caps).unwrap().effective_capabilities(), Some(0));
    let only_ipc_lock = sample_with("CapEff", Some("CapEff:\t0000000000004000"));
    assert_eq!(
        parse(&only_ipc_lock).unwrap().effective_capabilities(),
        Some(1 << 14)
    );
}

#[test]
fn absent_fields_are_none_not_errors() {
    // A kernel thread's status has no Vm* lines.
    let s = parse("Name:\tkthreadd\nState:\tS (sleeping)\nCapEff:\t000001ffffffffff\n").unwrap();
    assert_eq!(s.locked_bytes(), None);
    assert_eq!(s.size_bytes(), None);
    assert_eq!(s.swap_bytes(), None);
    assert_eq!(s.effective_capabilities(), Some(0x1ff_ffff_ffff));
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
        let answer = mlock::limits::ipc_lock().map_err(|e| e.to_string())?;
        let in_cap_eff = s.effective_capabilities().map(|caps| caps & (1 << 14) != 0);
        let in_capget = answer != mlock::limits::IpcLock::Absent;
        ensure(in_cap_eff == Some(in_capget), || {
            format!("CapEff says {in_cap_eff:?}, capget says {answer:?}")
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
/// a fake mounted by the process itself after its first call is read,
/// while `StatusReader::open` checks again and refuses it. (Under QEMU user
/// mode, which ignores `madvise`, the crate tells processes apart by
/// `getpid`, and remembers the check all the same.)
#[test]
fn status_checks_procfs_once_per_process_and_the_reader_every_time() {
    run(|| {
        mlock::status().map_err(|e| e.to_string())?;
        tmpfs_at_proc()?;
        std::fs::write("/proc/self/status", FAKE_STATUS).map_err(|e| e.to_string())?;
        reader_refuses("with a tmpfs at /proc")?;
        let got = mlock::status();
        ensure(
            got.as_ref().ok().and_then(Status::locked_bytes) == Some(999 * KB),
            || format!("status() checked procfs again after its first call: {got:?}"),
        )
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

// ---------------------------------------------------------------------------
// The kernel's text as its layout changes: `status()` and a kept
// `StatusReader` read the kernel's own text and stop after its six
// recorded lines. Each scenario below moves those lines for real, or
// changes the values at their places, and after every change both
// readings must agree with std's.

/// The recorded keys, in the order of [`status_oracle::fields`].
const RECORDED: [&str; 6] = ["VmLck", "VmPin", "VmSize", "VmRSS", "VmSwap", "CapEff"];

/// Where each recorded line of `text` starts (the offset of its first
/// byte), found with std by splitting lines at their first colon.
type Places = [Option<usize>; 6];

fn places(text: &[u8]) -> Places {
    let mut found = [None; 6];
    let mut at = 0;
    for line in text.split_inclusive(|&b| b == b'\n') {
        let key = line.split(|&b| b == b':').next().unwrap_or_default();
        if let Some(k) = RECORDED.iter().position(|r| r.as_bytes() == key) {
            found[k] = Some(at);
        }
        at += line.len();
    }
    found
}

/// Whether each recorded value of `text` is written as the kernel pads one
/// that fits its column: a tab, a size in eight columns and ` kB`, or a tab
/// and sixteen hex digits for `CapEff`. The scenarios must also reach
/// values out of their column (`VmSize` past 10^8 kB).
fn padded(text: &[u8]) -> bool {
    let text = String::from_utf8_lossy(text);
    RECORDED.iter().all(|key| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .is_some_and(|v| {
                let width = if *key == "CapEff" { 17 } else { 12 };
                v.len() == width && v.starts_with('\t') && (*key == "CapEff" || v.ends_with(" kB"))
            })
    })
}

/// A field of `/proc/self/status` that is a plain number (`FDSize`), or
/// the first of a slash-separated pair (`SigQ`), read with std.
fn status_number(text: &[u8], key: &str) -> u64 {
    String::from_utf8_lossy(text)
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().split('/').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no numeric {key} in /proc/self/status"))
}

/// The number of decimal digits of `n`.
fn digits(n: u64) -> u32 {
    n.checked_ilog10().unwrap_or(0) + 1
}

/// How many times [`Agreement::check`] reads again when the six fields
/// moved while it read (a page fault between two readings moves `VmRSS`).
const ATTEMPTS: u32 = 50;

/// `status()`, a kept [`StatusReader`] and std's reading of
/// `/proc/self/status` (parsed by the oracle), compared back to back, with
/// a count of the kinds of text each reading met.
///
/// The counts come from the texts themselves: a reading of a text whose
/// six lines stand where they stood in the text the same reader read last,
/// each value padded ([`padded`]), is one in place (`in_place`); one after
/// the lines moved (`moved`), or of a value out of its column
/// (`unpadded`), is the other kinds. Each check calls `status()` twice and
/// the reader twice, so that a text whose layout just changed is read both
/// as new and as seen before.
///
/// Each call's `read(2)`/`pread(2)` calls are counted too (`syscr:` of
/// `/proc/self/io`), and must be what [`expected_reads`] says.
struct Agreement {
    reader: StatusReader,
    /// `/proc/self/io`, kept open for [`reads_so_far`].
    io: std::fs::File,
    /// std's two readings, kept so that reading does not grow the heap.
    before: Vec<u8>,
    after: Vec<u8>,
    /// The places in the last text `status()` and the reader read, when
    /// known (not after an attempt during which the text changed).
    status_saw: Option<Places>,
    reader_saw: Option<Places>,
    in_place: u32,
    /// Of `in_place`, the first readings after a change that left the
    /// places as they were: the same places hold new values.
    kept: u32,
    moved: u32,
    unpadded: u32,
    checks: u32,
    retries: u32,
}

impl Agreement {
    fn new() -> Result<Agreement, String> {
        Ok(Agreement {
            reader: StatusReader::open().map_err(|e| format!("StatusReader::open: {e}"))?,
            io: std::fs::File::open("/proc/self/io").map_err(|e| {
                format!("/proc/self/io (the kernel's CONFIG_TASK_IO_ACCOUNTING): {e}")
            })?,
            before: Vec::with_capacity(1 << 20),
            after: Vec::with_capacity(1 << 20),
            status_saw: None,
            reader_saw: None,
            in_place: 0,
            kept: 0,
            moved: 0,
            unpadded: 0,
            checks: 0,
            retries: 0,
        })
    }

    /// Reads `/proc/self/status` with std into `buf`.
    fn read_std(buf: &mut Vec<u8>) -> Result<(), String> {
        use std::io::Read;
        buf.clear();
        std::fs::File::open("/proc/self/status")
            .and_then(|mut f| f.read_to_end(buf))
            .map(drop)
            .map_err(|e| format!("std reading /proc/self/status: {e}"))
    }

    /// Reads the status with std, then twice with `status()`, twice with
    /// the reader, then with std again; when std's two readings agree (the
    /// six fields and their places did not move meanwhile), every crate
    /// reading must equal them, field by field. `what` names the change
    /// just made, for the failure message.
    fn check(&mut self, what: &str) -> Result<(), String> {
        for attempt in 1..=ATTEMPTS {
            Agreement::read_std(&mut self.before)?;
            let io = &self.io;
            let statuses = [counted(io, mlock::status)?, counted(io, mlock::status)?];
            let reader = &mut self.reader;
            let readings = [
                counted(io, || reader.read())?,
                counted(io, || reader.read())?,
            ];
            Agreement::read_std(&mut self.after)?;
            let want = oracle(&self.before);
            let at = places(&self.before);
            let len = self.before.len();
            if want != oracle(&self.after) || at != places(&self.after) || len != self.after.len() {
                // Something moved while we read: nothing can be said.
                self.status_saw = None;
                self.reader_saw = None;
                self.retries += 1;
                continue;
            }
            let text = || String::from_utf8_lossy(&self.before).into_owned();
            let want = want.map_err(|e| {
                format!(
                    "{what}: std's reading of the kernel's text ({len} bytes) does not parse ({e}):\n{}",
                    text()
                )
            })?;
            let got = [
                ("status(), first call", statuses[0]),
                ("status(), second call", statuses[1]),
                ("StatusReader::read, first call", readings[0]),
                ("StatusReader::read, second call", readings[1]),
            ];
            let reads = expected_reads(&self.before);
            // A field can move and come back between std's two readings
            // (VmRSS a page up and down again, as QEMU user mode's own
            // allocations do): a disagreement is read again, and only one
            // that lasts through every attempt fails.
            let disagree = got
                .iter()
                .any(|(_, (g, _))| g.map(|s| fields(&s)) != Ok(want));
            if disagree && attempt < ATTEMPTS {
                self.status_saw = None;
                self.reader_saw = None;
                self.retries += 1;
                continue;
            }
            for (who, (got, made)) in got {
                let got = got.map(|s| fields(&s));
                if got != Ok(want) {
                    return Err(format!(
                        "{what}: {who} read {got:?}, std read {want:?} \
                         (fields {RECORDED:?}) from the same {len}-byte text:\n{}",
                        text()
                    ));
                }
                ensure(made == reads, || {
                    format!(
                        "{what}: {who} made {made} reads of the {len}-byte text, not {reads} \
                         (CapEff at byte {:?})",
                        at[5]
                    )
                })?;
            }
            // What kind of text each of the four readings met.
            let padded = padded(&self.before);
            for saw in [&mut self.status_saw, &mut self.reader_saw] {
                for call in 0..2 {
                    if call == 1 || *saw == Some(at) {
                        if padded {
                            self.in_place += 1;
                            self.kept += u32::from(call == 0);
                        } else {
                            self.unpadded += 1;
                        }
                    } else {
                        self.moved += 1;
                    }
                }
                *saw = Some(at);
            }
            self.checks += 1;
            return Ok(());
        }
        Err(format!(
            "{what}: the six fields moved during each of {ATTEMPTS} back-to-back readings"
        ))
    }

    /// The places of the recorded lines in std's last reading.
    fn places(&self) -> Places {
        places(&self.before)
    }
}

/// The size of the buffer the crate reads the status through.
const READ_CHUNK: usize = 2048;

/// How many reads of `text` the crate makes through its 2 KiB buffer. A
/// read of procfs's `status` returns as much of the text as asked, or all
/// that is left (a `seq_file` formatted whole on the first read). The
/// crate stops after the read that holds the end of the `CapEff` line, the
/// last recorded line the kernel writes.
fn expected_reads(text: &[u8]) -> u64 {
    let start = places(text)[5].expect("a CapEff line");
    let end = start + text[start..].iter().position(|&b| b == b'\n').unwrap_or(0) + 1;
    ((end - 1) / READ_CHUNK + 1) as u64
}

/// How many `read(2)` and `pread(2)` calls this process has made, from the
/// `syscr:` line of `/proc/self/io` (open in `io`); the kernel counts the
/// `pread` that reads it after it returns, so the next count includes it.
fn reads_so_far(io: &std::fs::File) -> Result<u64, String> {
    let mut buf = [0u8; 512];
    let n = std::os::unix::fs::FileExt::read_at(io, &mut buf, 0)
        .map_err(|e| format!("reading /proc/self/io: {e}"))?;
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .find_map(|l| l.strip_prefix("syscr:")?.trim().parse().ok())
        .ok_or_else(|| "no syscr in /proc/self/io".into())
}

/// Calls `f`, and counts the reads it made ([`reads_so_far`]).
fn counted<T>(io: &std::fs::File, f: impl FnOnce() -> T) -> Result<(T, u64), String> {
    let first = reads_so_far(io)?;
    let out = f();
    let reads = reads_so_far(io)? - first - 1;
    Ok((out, reads))
}

/// Sets this thread's name (`comm`, at most 15 bytes) with
/// `prctl(PR_SET_NAME)`.
fn set_name(name: &[u8]) -> Result<(), String> {
    let mut buf = [0u8; 16];
    buf.get_mut(..name.len())
        .ok_or("a comm holds at most 15 bytes")?
        .copy_from_slice(name);
    // SAFETY: `buf` is a NUL-terminated string of at most 16 bytes.
    let rc = unsafe { libc::prctl(libc::PR_SET_NAME, buf.as_ptr() as libc::c_ulong, 0, 0, 0) };
    ensure(rc == 0, || {
        format!("prctl(PR_SET_NAME): {}", std::io::Error::last_os_error())
    })
}

/// A process name that the kernel writes in `len` bytes (1 to 30): up to
/// 15 letters, then ever more of them replaced by newlines, each of which
/// the kernel writes as the two bytes `\n`.
fn name_written_in(len: usize) -> Vec<u8> {
    let newlines = len.saturating_sub(15);
    let letters = len.min(15) - newlines;
    let mut name = vec![b'\n'; newlines];
    name.extend_from_slice(&b"abcdefghijklmno"[..letters]);
    name
}

/// The process name through every length its line can have, from 1 byte
/// to 30 and back, then from 1 byte to each other length and back (every
/// shift from -29 to 29 bytes), while 1 MiB is locked; then names holding
/// the text of a recorded line.
///
/// `Name:` is the text's first line, so every other line moves with its
/// length. The shifts of 19 and 20 bytes, the length of most size lines,
/// bring a neighbouring line exactly onto the place of another (`VmPin:`
/// onto `VmLck:`'s, whose values differ while memory is locked): the
/// crate must tell them apart by their keys. The kernel escapes newlines and backslashes in the name
/// (`proc_task_name()` in `fs/proc/array.c`), so a name cannot forge a line
/// of its own: what the crate's stop after `CapEff` relies on.
fn through_every_name(watch: &mut Agreement) -> Result<(), String> {
    let map = Anon::new(1 << 20);
    mlock::lock(map.slice()).map_err(|e| format!("lock 1 MiB: {e}"))?;
    let lengths = (1..=30)
        .chain((1..30).rev())
        .chain((2..=30).flat_map(|len| [len, 1]));
    let mut last = 0;
    for len in lengths {
        let name = name_written_in(len);
        set_name(&name)?;
        let before = watch.places();
        watch.check(&format!("named {:?}", String::from_utf8_lossy(&name)))?;
        ensure(last == len || watch.places() != before, || {
            format!("renaming to {len} bytes did not move the recorded lines")
        })?;
        last = len;
    }
    let lck = status_kb("VmLck");
    ensure(lck >= 1024 && lck != status_kb("VmPin"), || {
        format!("VmLck {lck} kB with 1 MiB locked, VmPin the same")
    })?;
    mlock::unlock(map.slice()).map_err(|e| format!("unlock: {e}"))?;
    for name in [
        &b"\nVmLck:\t1 kB"[..],
        b"x\nCapEff:\tffff",
        b"\\\\\\",
        b"\n\nVmSwap:\t99 kB",
    ] {
        set_name(name)?;
        watch.check(&format!("named {:?}", String::from_utf8_lossy(name)))?;
    }
    set_name(b"layout")
}

/// Opens descriptors at ever higher numbers (`dup2(2)`), so that the
/// kernel grows the process's descriptor table and `FDSize:` (its size,
/// a power of two, written before the sizes) gains digits: 64, then 128
/// or more, then 1024 or more. Each added digit moves the six lines by one
/// byte; a growth within a digit count (128 to 256) leaves them in place.
fn through_descriptor_tables(watch: &mut Agreement) -> Result<(), String> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit to fill, then to set.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
    let hard = limit.rlim_max;
    ensure(hard > 1100, || {
        format!("the hard RLIMIT_NOFILE is {hard}: descriptor 1100 must be possible for FDSize to reach four digits (raise it with `ulimit -Hn`)")
    })?;
    let null = std::fs::File::open("/dev/null").map_err(|e| e.to_string())?;
    let first = status_number(&watch.before, "FDSize");
    let mut sizes = vec![first];
    for target in [70, 130, 260, 520, 1040, 2080, 4160, 8320, 16400] {
        if target >= hard {
            break;
        }
        // SAFETY: duplicates an open descriptor onto an unused number,
        // closed below.
        let fd = unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), target as i32) };
        ensure(fd == target as i32, || {
            format!("dup2 to {target}: {}", std::io::Error::last_os_error())
        })?;
        watch.check(&format!("descriptor {target} open"))?;
        sizes.push(status_number(&watch.before, "FDSize"));
        // SAFETY: `fd` is the duplicate made above, owned by nothing else.
        unsafe { libc::close(fd) };
    }
    let last = *sizes.last().unwrap_or(&first);
    ensure(digits(last) > digits(first), || {
        format!("FDSize went {sizes:?}: it never gained a digit")
    })
}

/// Locks and unlocks ever more of a mapping: `VmLck` goes from a few kB to
/// MiB and back. The kernel pads each size to eight columns (`%8lu`), so
/// its line keeps its length and nothing moves: the same places must give
/// the new value each time.
fn through_locks(watch: &mut Agreement) -> Result<(), String> {
    let map = Anon::new(4 << 20);
    let base = status_kb("VmLck");
    for kb in [4, 40, 400, 4096] {
        let region = &map.slice()[..kb * 1024];
        mlock::lock(region).map_err(|e| format!("lock {kb} kB: {e}"))?;
        watch.check(&format!("{kb} kB locked"))?;
        let locked = status_kb("VmLck");
        ensure(locked >= base + kb as u64, || {
            format!("VmLck {locked} kB after locking {kb} kB over {base} kB")
        })?;
    }
    mlock::unlock(map.slice()).map_err(|e| format!("unlock: {e}"))?;
    watch.check("unlocked")?;
    ensure_eq(status_kb("VmLck"), base, "VmLck after unlocking, in kB")
}

/// Faults in pages of a fresh mapping, 1 MiB at a time, until `VmRSS`
/// (and `VmHWM`) has crossed the next power of ten in kB. The values gain
/// a digit in their padded columns: nothing moves, and the same places
/// must give each new value. The mapping is as large as that needs
/// and no larger (a few MiB in the VMs' 256 MiB, up to about 90 MiB on a
/// host whose test process is just past 10 MiB), since a private writable
/// mapping is charged against the machine's memory when it is made.
fn through_resident_sizes(watch: &mut Agreement) -> Result<(), String> {
    const MIB: usize = 1 << 20;
    let first = status_kb("VmRSS");
    let boundary = 10u64.pow(digits(first));
    let mib = ((boundary - first) / 1024) as usize + 2;
    let map = Anon::new(mib * MIB);
    let mut last = first;
    for touched in 1..=mib {
        map.touch(touched * MIB / page_size());
        watch.check(&format!("{touched} MiB touched"))?;
        last = status_kb("VmRSS");
        if digits(last) > digits(first) {
            return Ok(());
        }
    }
    Err(format!(
        "VmRSS went from {first} kB to {last} kB after {mib} MiB touched, without gaining a digit"
    ))
}

/// Reserves address space (`PROT_NONE`, `MAP_NORESERVE`: no memory) until
/// `VmSize` needs more digits than the eight columns the kernel pads it to
/// (at 10^8 kB, about 95 GiB), then gives it back, twice. The longer value
/// moves every line after it (and `VmPeak` before it stays long), and it
/// is not padded, so even where the keys stand at their places the value
/// is read by the scan.
///
/// A 32-bit process has at most 4 GiB of address space (4,194,304 kB,
/// seven digits), so its `VmSize` never outgrows the column: there it
/// grows by a digit inside the column instead.
fn through_virtual_sizes(watch: &mut Agreement) -> Result<(), String> {
    let column = if cfg!(target_pointer_width = "64") {
        8
    } else {
        0
    };
    for round in 0..2 {
        let size = status_kb("VmSize");
        let next = 10u64.pow(digits(size).max(column));
        let len = ((next - size + 1024) * 1024) as usize;
        // SAFETY: a fresh private reservation that aliases nothing.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        ensure(addr != libc::MAP_FAILED, || {
            format!(
                "reserving {len} bytes of address space: {}",
                std::io::Error::last_os_error()
            )
        })?;
        watch.check(&format!("{len} bytes reserved (round {round})"))?;
        let grown = status_kb("VmSize");
        // SAFETY: the reservation made above, used by nothing.
        unsafe { libc::munmap(addr, len) };
        ensure(digits(grown) > digits(size).max(column), || {
            format!("VmSize is {grown} kB after reserving {len} bytes over {size} kB")
        })?;
        watch.check(&format!("{len} bytes given back (round {round})"))?;
    }
    Ok(())
}

/// Queues blocked real-time signals to this process until `SigQ:` (the
/// signals queued for this real user ID) gains a digit, then takes them
/// back with `sigtimedwait(2)`. `SigQ` stands after the five sizes and
/// before `CapEff`: only `CapEff` moves, the other five stay in place.
///
/// Under QEMU user mode the emulator takes each host signal at once and
/// queues it for the guest itself, so the host's `SigQ` does not grow:
/// there the readings are compared, but no move is expected.
fn through_signal_queues(watch: &mut Agreement) -> Result<(), String> {
    let sig = libc::SIGRTMIN() + 1;
    // SAFETY: plain signal-mask calls on a local set.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, owned sigset; blocking one real-time signal
    // in this single-threaded child only queues it.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    let queued = status_number(&watch.before, "SigQ");
    let target = 10u64.pow(digits(queued)) + 8;
    let before = watch.places();
    for _ in queued..target {
        // SAFETY: a blocked signal to this process: it is only queued.
        let rc = unsafe { libc::kill(libc::getpid(), sig) };
        ensure(rc == 0, || {
            format!("queueing a signal: {}", std::io::Error::last_os_error())
        })?;
    }
    watch.check(&format!("{} signals queued", target - queued))?;
    let after = watch.places();
    if !under_qemu_user() {
        ensure(after[..5] == before[..5] && after[5] != before[5], || {
            format!("queueing signals moved the recorded lines from {before:?} to {after:?}; only CapEff should move")
        })?;
    }
    let zero = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `set` and `zero` are valid; the info is not wanted.
    while unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &zero) } == sig {}
    watch.check("the signals taken back")
}

/// `status()` and a kept `StatusReader` agree field by field with std's
/// reading of `/proc/self/status` while the layout of the kernel's text
/// changes for real between calls: a new process name of every length
/// (`prctl(PR_SET_NAME)`, which moves every later line), a descriptor
/// table grown past 64 and 1024 entries (`FDSize` gains digits), memory
/// locked and unlocked (`VmLck` changes in place), pages faulted in
/// (`VmRSS` gains digits in place), address space reserved past 10^8 kB
/// (`VmSize` outgrows its padded column) and signals queued (`SigQ` moves
/// `CapEff` alone). Each helper's comment says why its change moves the
/// lines or not.
///
/// It relies on the kernel formatting the file afresh on every read from
/// its start, on each recorded key being written once at a line's start,
/// on newlines in the name being escaped, and on sizes padded to eight
/// columns; and on `/proc/self/io` counting each `read(2)` and `pread(2)`,
/// by which every reading of these texts under 2 KiB is seen to take one.
/// The counts show that the texts read both kept the places of the last
/// text and moved them.
///
/// In a forked child: it renames, locks and maps for the whole process.
#[test]
fn status_and_a_kept_reader_agree_with_std_while_the_layout_changes() {
    run(|| {
        let mut watch = Agreement::new()?;
        watch.check("at the start")?;
        through_every_name(&mut watch)?;
        through_descriptor_tables(&mut watch)?;
        through_locks(&mut watch)?;
        through_resident_sizes(&mut watch)?;
        through_virtual_sizes(&mut watch)?;
        through_signal_queues(&mut watch)?;
        watch.check("at the end")?;
        let Agreement {
            in_place,
            kept,
            moved,
            unpadded,
            checks,
            retries,
            ..
        } = watch;
        // A 32-bit process's sizes never outgrow their column (see
        // `through_virtual_sizes`).
        let unpadded_wanted = if cfg!(target_pointer_width = "64") {
            4
        } else {
            0
        };
        ensure(
            moved >= 60 && kept >= 20 && unpadded >= unpadded_wanted,
            || {
                format!(
                    "{checks} checks ({retries} retried): {in_place} readings in place \
                 ({kept} first after a change), {moved} after the lines moved, \
                 {unpadded} of an unpadded value"
                )
            },
        )
    });
}

/// Sets this process's supplementary groups with `setgroups(2)`, which
/// needs `CAP_SETGID`: fails saying so.
fn set_groups(groups: &[libc::gid_t]) -> Result<(), String> {
    // SAFETY: `groups` is valid for its length.
    let rc = unsafe { libc::setgroups(groups.len(), groups.as_ptr()) };
    ensure(rc == 0, || {
        format!(
            "setgroups(2) with {} groups: {}; this test must run as root (CAP_SETGID)",
            groups.len(),
            std::io::Error::last_os_error()
        )
    })
}

/// Groups whose entries on the `Groups:` line take `bytes` bytes (at least
/// 20): the kernel writes each group in decimal and a space after it, so
/// `bytes / 5` four-digit IDs, `bytes % 5` of them made five-digit.
fn groups_taking(bytes: usize) -> Vec<libc::gid_t> {
    let (n, longer) = (bytes / 5, bytes % 5);
    assert!(
        longer <= n,
        "{bytes} bytes of groups cannot be made of 4- and 5-digit IDs"
    );
    (0..n as libc::gid_t)
        .map(|i| {
            if (i as usize) < longer {
                10_000 + i
            } else {
                1000 + i
            }
        })
        .collect()
}

/// A real status text over the 2 KiB the crate reads it through: thousands
/// of supplementary groups (`setgroups(2)`) fill the `Groups:` line, which
/// the kernel writes before the sizes, so the six recorded lines stand
/// past the first read. `status()` and a kept reader must agree with std
/// as the text streams through several reads, and as each reading stops
/// after `CapEff`, the last recorded line the kernel writes.
///
/// First the `Groups:` line grows one byte at a time (the kernel writes
/// `%u ` per group, so a four-digit ID made five-digit adds one byte), so
/// that the text's length passes 2047, 2048 and 2049 bytes and a 2048-byte
/// boundary falls at every offset of every recorded line (counted, and
/// checked); then 3,000, 10,000 and 65,536 (`NGROUPS_MAX`) groups. The
/// reads each call makes are counted (`syscr:` of `/proc/self/io`): a
/// reading stops at the read that completes the `CapEff` line, even when
/// the text is exactly 2048 bytes ([`expected_reads`]). The failure
/// message names the group count and the text's length.
///
/// In a forked child that is root: the groups are the process's.
#[test]
fn a_status_over_the_read_buffer_agrees_with_std() {
    const CHUNK: usize = 2048;
    run(|| {
        let mut watch = Agreement::new()?;
        // Where a multiple of CHUNK fell inside each recorded line: the
        // offsets into it, and its length.
        let mut cut_at: [std::collections::BTreeSet<usize>; 6] = Default::default();
        let mut line_len = [0; 6];
        let mut lengths = std::collections::BTreeSet::new();
        // A second sweep if the first missed a length: other lines (VmRSS,
        // say) can gain a digit at the very step the groups gain a byte.
        let around_chunk = |lengths: &std::collections::BTreeSet<usize>| {
            (CHUNK - 1..=CHUNK + 1).all(|l| lengths.contains(&l))
        };
        for _sweep in 0..2 {
            if around_chunk(&lengths) {
                break;
            }
            for bytes in 20..=2200 {
                let groups = groups_taking(bytes);
                set_groups(&groups)?;
                watch.check(&format!("{} groups", groups.len()))?;
                let text = &watch.before;
                lengths.insert(text.len());
                for (k, start) in watch.places().into_iter().enumerate() {
                    let start = start.ok_or_else(|| format!("no {} line", RECORDED[k]))?;
                    let len = text[start..].iter().position(|&b| b == b'\n').unwrap_or(0) + 1;
                    line_len[k] = len;
                    let next = (start / CHUNK + 1) * CHUNK;
                    if next < start + len {
                        cut_at[k].insert(next - start);
                    }
                }
            }
        }
        for (k, cuts) in cut_at.iter().enumerate() {
            let len = line_len[k];
            ensure(cuts.len() == len - 1, || {
                format!(
                    "a read ended at only {} of the {} inner offsets of the {}-byte {} line: {cuts:?}",
                    cuts.len(),
                    len - 1,
                    len,
                    RECORDED[k]
                )
            })?;
        }
        ensure(around_chunk(&lengths), || {
            format!(
                "the text was never 2047, 2048 and 2049 bytes long: {:?}..{:?}",
                lengths.first(),
                lengths.last()
            )
        })?;
        for n in [3_000, 10_000, 65_536] {
            let groups: Vec<libc::gid_t> = (100_000..100_000 + n).collect();
            set_groups(&groups)?;
            watch.check(&format!("{n} groups"))?;
            ensure(watch.places()[0].is_some_and(|at| at > CHUNK), || {
                format!("with {n} groups VmLck stands at {:?}", watch.places()[0])
            })?;
        }
        set_groups(&[])?;
        watch.check("no groups")
    });
}
