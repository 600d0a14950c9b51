//! Reading `/proc/self/status`: this crate against the floor and its peers,
//! measured in one run.
//!
//! - `floor`: bare `open`, one `read` into an uninitialised 4 KiB buffer
//!   and `close` through libc, parsing nothing. No reader of the file can
//!   do less.
//! - `status`: [`mlock::status`] (`openat`, `read`, `close`, and the
//!   parse; the `fstatfs` check that `/proc` is procfs runs once per
//!   process).
//! - `pread`: bare `pread` at offset 0 of a descriptor kept open on the
//!   same file, through libc, parsing nothing: the floor of a poller.
//! - `reader`: [`mlock::status::StatusReader::read`] on a kept descriptor
//!   (`pread` at offset 0 and the parse; the process ID it checks against
//!   a fork is remembered, with no `getpid` after the first call).
//! - `std_parse`: `std::fs::read_to_string` + [`mlock::Status::parse`].
//! - `procfs`: the procfs crate, `Process::myself()?.status()?`.
//! - `parse`: [`mlock::Status::parse`] of text read once, no syscall.
//!
//! Run it with `cargo bench --bench status`; at the end it prints each
//! time per call with its ratio to `floor`, then the comparisons timed in
//! pairs: for each, 20,000 pairs (`MLOCK_BENCH_PAIRS` sets another count)
//! of one call of each function back to back, which one goes first
//! alternating, each call timed alone; it prints the median time of each
//! function, the median of the differences within a pair (the crate's cost
//! over the floor, in nanoseconds) and the ratio of the two medians. Load
//! from other processes on a shared machine falls on both calls of a pair
//! alike, as it does not on criterion's rows, measured one after the other
//! seconds apart. Goals (reported, never asserted): `status` within 1.05x
//! of `floor`, `reader` within 1.08x of `pread`, `parse` of this process's
//! status (about 1.4 KB) within 0.2 µs, `status` at least 2x faster than
//! `procfs`.
//! The floor itself differs threefold between machines of one kind (the
//! cost of a system call does), so the absolute `floor`, `pread` and
//! `parse` are printed beside the ratios.

#[cfg(target_os = "linux")]
#[path = "common/pairs.rs"]
mod pairs;

#[cfg(target_os = "linux")]
mod linux {
    use std::hint::black_box;

    use super::pairs::time_pairs;
    pub use super::pairs::{pair_count, Paired};
    use std::path::PathBuf;

    use criterion::Criterion;

    /// The functions measured, by the name criterion reports them under.
    pub const NAMES: [&str; 7] = [
        "floor",
        "status",
        "pread",
        "reader",
        "std_parse",
        "procfs",
        "parse",
    ];

    /// The least any reader does: open, one read, close, nothing parsed.
    #[inline(never)]
    fn floor() -> isize {
        // Not zeroed first, as a C reader's stack buffer is not: zeroing
        // 4 KiB would cost the floor time that no reader has to spend.
        let mut buf = std::mem::MaybeUninit::<[u8; 4096]>::uninit();
        // SAFETY: the path is NUL-terminated; `buf` is valid for writes of
        // its 4096 bytes, initialised or not, and nothing reads them; the
        // descriptor is ours to close.
        unsafe {
            let fd = libc::open(
                c"/proc/self/status".as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            );
            assert!(fd >= 0, "open /proc/self/status");
            let n = libc::read(fd, buf.as_mut_ptr().cast(), 4096);
            libc::close(fd);
            black_box(&buf);
            n
        }
    }

    /// A descriptor kept open on `/proc/self/status`, as a poller keeps one.
    pub struct Kept(i32);

    impl Kept {
        pub fn open() -> Kept {
            // SAFETY: the path is NUL-terminated.
            let fd = unsafe {
                libc::open(
                    c"/proc/self/status".as_ptr(),
                    libc::O_RDONLY | libc::O_CLOEXEC,
                )
            };
            assert!(fd >= 0, "open /proc/self/status");
            Kept(fd)
        }

        /// The least a poller does: one `pread` at offset 0 into a buffer
        /// it keeps, nothing parsed.
        #[inline(never)]
        pub fn pread(&self, buf: &mut [u8; 4096]) -> isize {
            // SAFETY: `buf` is valid for writes of its length; the
            // descriptor is open.
            let n = unsafe { libc::pread(self.0, buf.as_mut_ptr().cast(), buf.len(), 0) };
            black_box(&buf);
            n
        }
    }

    impl Drop for Kept {
        fn drop(&mut self) {
            // SAFETY: the descriptor is ours.
            unsafe { libc::close(self.0) };
        }
    }

    pub fn bench(c: &mut Criterion) {
        let mut group = c.benchmark_group("status");
        group.bench_function("floor", |b| b.iter(floor));
        group.bench_function("status", |b| b.iter(|| mlock::status().unwrap()));
        let kept = Kept::open();
        let mut buf = [0u8; 4096];
        group.bench_function("pread", |b| b.iter(|| kept.pread(&mut buf)));
        let mut reader = mlock::status::StatusReader::open().unwrap();
        group.bench_function("reader", |b| b.iter(|| reader.read().unwrap()));
        group.bench_function("std_parse", |b| {
            b.iter(|| {
                let text = std::fs::read_to_string("/proc/self/status").unwrap();
                mlock::Status::parse(text.as_bytes()).unwrap()
            })
        });
        group.bench_function("procfs", |b| {
            b.iter(|| {
                procfs::process::Process::myself()
                    .unwrap()
                    .status()
                    .unwrap()
            })
        });
        let text = std::fs::read("/proc/self/status").unwrap();
        group.bench_function("parse", |b| {
            b.iter(|| mlock::Status::parse(black_box(&text)).unwrap())
        });
        group.finish();
    }

    /// One parse of `text`, not inlined, so that callgrind can count the
    /// instructions inside it (`--toggle-collect='*::parse_once'`).
    #[inline(never)]
    pub fn parse_once(text: &[u8]) -> mlock::Status {
        mlock::Status::parse(black_box(text)).unwrap()
    }

    /// `n` parses of this process's `/proc/self/status`, read once;
    /// prints the length of the text.
    pub fn parse_calls(n: u64) {
        let text = std::fs::read("/proc/self/status").unwrap();
        for _ in 0..n {
            black_box(parse_once(&text));
        }
        println!("{}", text.len());
    }

    /// Where criterion keeps its results (`<target dir>/criterion`).
    fn criterion_dir() -> PathBuf {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
        std::env::var_os("CRITERION_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| target.join("criterion"))
    }

    /// The time per call, in ns, that criterion printed for one function
    /// of this run, from its `estimates.json`: the slope of its linear fit
    /// where it made one, else the mean
    /// (`{"mean":{...,"point_estimate":X,...},...,"slope":{...}}`).
    fn estimate_ns(name: &str) -> Option<f64> {
        let path = criterion_dir().join(format!("status/{name}/new/estimates.json"));
        let json = std::fs::read_to_string(path).ok()?;
        let point = |key: &str| -> Option<f64> {
            let at = &json[json.find(&format!("\"{key}\":{{"))?..];
            let value = &at[at.find("\"point_estimate\":")? + "\"point_estimate\":".len()..];
            let end = value.find([',', '}'])?;
            value[..end].trim().parse().ok()
        };
        point("slope").or_else(|| point("mean"))
    }

    /// The comparisons timed in pairs, `(a, b)`: the goals (`status`
    /// against `floor`, `reader` against `pread`), the reader against the
    /// floor, and the procfs crate against the floor and against `status`.
    pub const COMPARISONS: [(Subject, Subject); 5] = [
        (Subject::Status, Subject::Floor),
        (Subject::Reader, Subject::Pread),
        (Subject::Reader, Subject::Floor),
        (Subject::Procfs, Subject::Floor),
        (Subject::Procfs, Subject::Status),
    ];

    /// A function timed in pairs, named as in [`NAMES`].
    #[derive(Clone, Copy)]
    pub enum Subject {
        Floor,
        Status,
        Pread,
        Reader,
        Procfs,
    }

    impl Subject {
        fn name(self) -> &'static str {
            match self {
                Subject::Floor => "floor",
                Subject::Status => "status",
                Subject::Pread => "pread",
                Subject::Reader => "reader",
                Subject::Procfs => "procfs",
            }
        }
    }

    /// What the subjects keep between calls: the reader, and the
    /// descriptor and buffer of the bare `pread`.
    struct Subjects {
        reader: mlock::status::StatusReader,
        kept: Kept,
        buf: [u8; 4096],
    }

    impl Subjects {
        /// One call of `s`, its result kept from the optimiser.
        fn call(&mut self, s: Subject) {
            match s {
                Subject::Floor => {
                    black_box(floor());
                }
                Subject::Status => {
                    black_box(mlock::status().unwrap());
                }
                Subject::Pread => {
                    black_box(self.kept.pread(&mut self.buf));
                }
                Subject::Reader => {
                    black_box(self.reader.read().unwrap());
                }
                Subject::Procfs => {
                    black_box(
                        procfs::process::Process::myself()
                            .unwrap()
                            .status()
                            .unwrap(),
                    );
                }
            }
        }
    }

    /// One comparison of `a` and `b`, timed in pairs.
    fn time_subjects(subjects: &mut Subjects, a: Subject, b: Subject, pairs: usize) -> Paired {
        time_pairs(|first| subjects.call(if first { a } else { b }), pairs)
    }

    /// Every comparison of [`COMPARISONS`], timed in `pairs` pairs, one
    /// comparison after the other.
    pub fn paired(pairs: usize) -> Vec<Paired> {
        let mut subjects = Subjects {
            reader: mlock::status::StatusReader::open().unwrap(),
            kept: Kept::open(),
            buf: [0u8; 4096],
        };
        COMPARISONS
            .iter()
            .map(|&(a, b)| time_subjects(&mut subjects, a, b, pairs))
            .collect()
    }

    /// Prints each time per call and its ratio to the floor, the goals,
    /// and the comparisons timed in pairs: one line each,
    /// `paired <a>/<b> <a> ns vs <b> ns, a-b <diff> ns, ratio <a/b>`, the
    /// form `cargo xtask bench` reads.
    pub fn summary() {
        let Some(floor) = estimate_ns("floor") else {
            return;
        };
        println!("\nstatus summary (criterion's time per call; ratio to floor):");
        for name in NAMES {
            if let Some(ns) = estimate_ns(name) {
                println!("  {name:<10} {:>9.0} ns  {:.3}x", ns, ns / floor);
            }
        }
        if let (Some(status), Some(pread), Some(reader), Some(procfs), Some(parse)) = (
            estimate_ns("status"),
            estimate_ns("pread"),
            estimate_ns("reader"),
            estimate_ns("procfs"),
            estimate_ns("parse"),
        ) {
            println!(
                "  goals: status/floor {:.3} (<= 1.05), reader/pread {:.3} (<= 1.08), \
                 procfs/status {:.2} (>= 2), parse {:.0} ns (<= 200); floor {:.2} us, \
                 pread {:.2} us",
                status / floor,
                reader / pread,
                procfs / status,
                parse,
                floor / 1e3,
                pread / 1e3
            );
        }
        let pairs = pair_count();
        println!(
            "\ntimed in pairs ({pairs} pairs per comparison: one call of a and one of b \
             back to back, a first in every other pair; medians of a, of b and of a-b \
             within a pair):"
        );
        for (&(a, b), p) in COMPARISONS.iter().zip(paired(pairs)) {
            let name = format!("{}/{}", a.name(), b.name());
            println!(
                "  paired {name:<13} {:>7.0} ns vs {:>7.0} ns, a-b {:>+6.0} ns, ratio {:.3}",
                p.a_ns,
                p.b_ns,
                p.diff_ns,
                p.a_ns / p.b_ns
            );
        }
    }
}

#[cfg(target_os = "linux")]
fn main() {
    // `status --parse-calls <n>`: only `n` parses, for callgrind to count.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--parse-calls") {
        let Some(Ok(n)) = args.get(1).map(|n| n.parse::<u64>()) else {
            eprintln!("usage: status --parse-calls <count>");
            std::process::exit(2);
        };
        linux::parse_calls(n);
        return;
    }
    let mut c = criterion::Criterion::default().configure_from_args();
    linux::bench(&mut c);
    c.final_summary();
    linux::summary();
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("benches/status.rs measures /proc/self/status: Linux only");
    std::process::exit(1);
}
