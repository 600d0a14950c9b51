//! Fuzzes the `/proc/<pid>/status` parser: any bytes, one shot and split
//! in three at offsets taken from the input, must give the same answer as
//! each other and as the independent oracle of the tests
//! (`tests/common/status_oracle.rs`), never panic, and never a size that
//! is not a whole number of kB. Where each recorded key starts at most one
//! line, as in the kernel's own text, the parse that `status()` makes of
//! the kernel's text (which stops after the six fields) must answer as
//! `Status::parse` does.
//!
//! `cargo +nightly fuzz run status -- -runs=N` (from the repository root).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mlock::status::StatusParser;
use mlock::Status;

#[path = "../../tests/common/status_oracle.rs"]
mod status_oracle;

fuzz_target!(|data: &[u8]| {
    // The first four bytes choose the cuts; the rest is the text.
    let (cuts, text) = data.split_at(data.len().min(4));
    let whole = Status::parse(text);
    assert_eq!(
        whole.map(|s| status_oracle::fields(&s)),
        status_oracle::oracle(text),
        "one shot"
    );
    let mut at = [0usize; 2];
    for (i, pair) in cuts.chunks(2).enumerate() {
        let n = pair.iter().fold(0usize, |n, &b| n << 8 | usize::from(b));
        at[i] = n % (text.len() + 1);
    }
    at.sort_unstable();
    let mut parser = StatusParser::new();
    parser.feed(&text[..at[0]]);
    parser.feed(&text[at[0]..at[1]]);
    parser.feed(&text[at[1]..]);
    assert_eq!(parser.finish(), whole, "cuts {at:?}");
    if keys_at_most_once(text) {
        let [kernel, whole] = mlock::status::fuzz_kernel_text(text);
        assert_eq!(kernel, whole, "the kernel's text");
    }
    if let Ok(s) = whole {
        for bytes in [
            s.locked_bytes(),
            s.pinned_bytes(),
            s.size_bytes(),
            s.rss_bytes(),
            s.swap_bytes(),
        ]
        .into_iter()
        .flatten()
        {
            assert_eq!(bytes % 1024, 0);
        }
    }
});

/// Whether each recorded key starts at most one line of `text` (the last
/// one even without its newline), as the kernel writes them.
fn keys_at_most_once(text: &[u8]) -> bool {
    let keys: [&[u8]; 6] = [b"VmLck:", b"VmPin:", b"VmSize:", b"VmRSS:", b"VmSwap:", b"CapEff:"];
    keys.iter().all(|key| {
        text.split(|&b| b == b'\n')
            .filter(|line| line.starts_with(key))
            .count()
            <= 1
    })
}
