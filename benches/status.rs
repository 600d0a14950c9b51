//! Reading `/proc/self/status`: this crate against the floor and its peers,
//! measured in one run.
//!
//! - `floor`: bare `open` + one `read` into a 4 KiB buffer + `close`
//!   through libc, parsing nothing. No reader of the file can do less.
//! - `status`: [`mlock::status`] (`openat`, `read`, `close`, and the
//!   streaming parse; the `fstatfs` check that `/proc` is procfs runs once
//!   per process).
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
//! time per call with its ratio to `floor`, then the ratios measured in
//! alternation (rounds of 100 calls of each in turn, median of 200
//! rounds), which a shared machine's changing load cannot skew. Goals
//! (reported, never asserted): `status` within 1.03x of `floor`, `reader`
//! within 1.05x of `pread`, `status` at least 2x faster than `procfs`.
//! The floor itself differs threefold between machines of one kind (the
//! cost of a system call does), so the absolute `floor`, `pread` and
//! `parse` are printed beside the ratios.

#[cfg(target_os = "linux")]
mod linux {
    use std::hint::black_box;
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
        let mut buf = [0u8; 4096];
        // SAFETY: the path is NUL-terminated; `buf` is valid for writes of
        // its length; the descriptor is ours to close.
        unsafe {
            let fd = libc::open(
                c"/proc/self/status".as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            );
            assert!(fd >= 0, "open /proc/self/status");
            let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
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

    /// Ratios measured in alternation: rounds of `batch` calls of each
    /// function in turn, so that a change in the machine's load (others'
    /// builds on a shared machine) hits all of them alike. Returns the
    /// median over the rounds of `status / floor`, `reader / pread`,
    /// `reader / floor` and `procfs / floor`.
    pub fn paired(rounds: usize, batch: usize) -> [f64; 4] {
        let mut reader = mlock::status::StatusReader::open().unwrap();
        let kept = Kept::open();
        let mut buf = [0u8; 4096];
        let time = |f: &mut dyn FnMut()| {
            let start = std::time::Instant::now();
            for _ in 0..batch {
                f();
            }
            start.elapsed().as_secs_f64()
        };
        let mut ratios = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
        for _ in 0..rounds {
            let floor_t = time(&mut || {
                black_box(floor());
            });
            let status_t = time(&mut || {
                black_box(mlock::status().unwrap());
            });
            let pread_t = time(&mut || {
                black_box(kept.pread(&mut buf));
            });
            let reader_t = time(&mut || {
                black_box(reader.read().unwrap());
            });
            let procfs_t = time(&mut || {
                black_box(
                    procfs::process::Process::myself()
                        .unwrap()
                        .status()
                        .unwrap(),
                );
            });
            ratios[0].push(status_t / floor_t);
            ratios[1].push(reader_t / pread_t);
            ratios[2].push(reader_t / floor_t);
            ratios[3].push(procfs_t / floor_t);
        }
        ratios.map(|mut r| {
            r.sort_by(f64::total_cmp);
            r[r.len() / 2]
        })
    }

    /// Prints each time per call and its ratio to the floor, the goals,
    /// and the ratios timed in alternation.
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
                "  goals: status/floor {:.3} (<= 1.03), reader/pread {:.3} (<= 1.05), \
                 procfs/status {:.2} (>= 2); floor {:.2} us, pread {:.2} us, parse {:.0} ns",
                status / floor,
                reader / pread,
                procfs / status,
                floor / 1e3,
                pread / 1e3,
                parse
            );
        }
        let [status, reader_pread, reader, procfs] = paired(200, 100);
        println!(
            "  paired (200 alternating rounds of 100 calls, median ratio): \
             status/floor {status:.3}, reader/pread {reader_pread:.3}, \
             reader/floor {reader:.3}, procfs/floor {procfs:.3} (procfs/status {:.2})",
            procfs / status
        );
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
