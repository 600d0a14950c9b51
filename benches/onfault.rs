//! What `ONFAULT` saves: a process maps a region it does not touch, then
//! locks it four ways, and we measure the call's time and the resident set
//! (RSS) after it.
//!
//! The calls: `lock_all(CURRENT)`, `lock_all(CURRENT | ONFAULT)`,
//! `lock(region)` (`mlock`) and `lock_on_fault(region)`
//! (`mlock2(MLOCK_ONFAULT)`). Without `ONFAULT` the kernel faults in and
//! zeroes every page before it returns, so time and RSS grow with the size;
//! with it, pages are locked as they are first touched, and the call only
//! marks the mapping.
//!
//! Each case runs in a fresh process (this binary re-executes itself with
//! `--case`), so one case's locks and faulted pages cannot help the next.
//!
//! - `cargo bench --bench onfault`: 16 MiB to 1 GiB, 7 runs per case.
//! - `... -- --quick`: up to 256 MiB, 2 runs per case.
//! - `... -- --tsv`: tab-separated medians, for `cargo xtask bench`.
//! - Without `--bench` (as `cargo test --benches` runs it): one small case of
//!   each call, to check that it works.
//!
//! Locking 1 GiB needs `CAP_IPC_LOCK` or an `RLIMIT_MEMLOCK` that large; a
//! case that fails says so and the run fails.

#[cfg(target_os = "linux")]
mod linux {
    use std::process::Command;
    use std::time::{Duration, Instant};

    use mlock::{Flags, Status};

    const MIB: u64 = 1 << 20;

    /// The four calls, in the order they are reported.
    pub const CALLS: [&str; 4] = [
        "lock_all(CURRENT)",
        "lock_all(CURRENT|ONFAULT)",
        "lock",
        "lock_on_fault",
    ];

    /// One case's measurement, as the child prints it.
    #[derive(Clone, Copy)]
    struct Sample {
        time: Duration,
        rss_before: u64,
        rss_after: u64,
        locked_after: u64,
    }

    fn fail(msg: impl std::fmt::Display) -> ! {
        eprintln!("onfault: {msg}");
        std::process::exit(1);
    }

    fn status() -> Status {
        mlock::status().unwrap_or_else(|e| fail(format_args!("reading /proc/self/status: {e}")))
    }

    /// The child: maps `bytes` without touching them, locks them with `call`,
    /// and prints `time_ns rss_before rss_after locked_after` in bytes.
    pub fn case(call: &str, bytes: usize) {
        // SAFETY: a fresh private anonymous mapping; it aliases nothing and is
        // never unmapped (the process exits right after the measurement).
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            fail(format_args!(
                "mmap of {bytes} bytes: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: the mapping is `bytes` long, readable, and lives until exit.
        // Making the slice reads nothing, so no page is faulted in.
        let region = unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), bytes) };

        let before = status();
        let start = Instant::now();
        let result = match call {
            "lock_all(CURRENT)" => mlock::lock_all(Flags::CURRENT),
            "lock_all(CURRENT|ONFAULT)" => mlock::lock_all(Flags::CURRENT | Flags::ONFAULT),
            "lock" => mlock::lock(region),
            "lock_on_fault" => mlock::lock_on_fault(region),
            other => fail(format_args!("unknown call {other:?}; one of {CALLS:?}")),
        };
        let time = start.elapsed();
        let after = status();
        if let Err(e) = result {
            fail(format_args!("{call} on {bytes} bytes: {e}"));
        }
        let field = |v: Option<u64>, name: &str| {
            v.unwrap_or_else(|| fail(format_args!("/proc/self/status has no {name}")))
        };
        println!(
            "{} {} {} {}",
            time.as_nanos(),
            field(before.rss_bytes(), "VmRSS"),
            field(after.rss_bytes(), "VmRSS"),
            field(after.locked_bytes(), "VmLck"),
        );
    }

    /// Runs one case in a fresh process of this same binary.
    fn spawn(call: &str, bytes: u64) -> Sample {
        let exe = std::env::current_exe()
            .unwrap_or_else(|e| fail(format_args!("finding this binary: {e}")));
        let out = Command::new(&exe)
            .args(["--case", call, &bytes.to_string()])
            .output()
            .unwrap_or_else(|e| fail(format_args!("starting {}: {e}", exe.display())));
        if !out.status.success() {
            fail(format_args!(
                "case {call} {bytes} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let nums: Vec<u64> = text
            .split_whitespace()
            .map(|n| {
                n.parse()
                    .unwrap_or_else(|_| fail(format_args!("bad case output {text:?}")))
            })
            .collect();
        let [ns, rss_before, rss_after, locked_after] = nums[..] else {
            fail(format_args!("bad case output {text:?}"));
        };
        Sample {
            time: Duration::from_nanos(ns),
            rss_before,
            rss_after,
            locked_after,
        }
    }

    fn median<T: Ord + Copy>(mut v: Vec<T>) -> T {
        v.sort_unstable();
        v[v.len() / 2]
    }

    /// Runs every call at every size `runs` times, interleaved so that a
    /// burst of load on the machine spreads over all cases, and prints the
    /// medians.
    pub fn drive(sizes_mib: &[u64], runs: usize, tsv: bool) {
        let mut samples: Vec<Vec<Vec<Sample>>> =
            vec![vec![Vec::new(); CALLS.len()]; sizes_mib.len()];
        for _ in 0..runs {
            for (s, &mib) in sizes_mib.iter().enumerate() {
                for (c, call) in CALLS.iter().enumerate() {
                    samples[s][c].push(spawn(call, mib * MIB));
                }
            }
        }
        if tsv {
            println!("size_bytes\tcall\tmedian_ns\tmin_ns\tmax_ns\trss_before_bytes\trss_after_bytes\tlocked_after_bytes\truns");
        } else {
            println!(
                "ONFAULT: an untouched mapping, locked in a fresh process; median of {runs} runs"
            );
            println!(
                "{:>9}  {:<26} {:>12} {:>12} {:>12}",
                "size", "call", "time", "RSS after", "VmLck after"
            );
        }
        for (s, &mib) in sizes_mib.iter().enumerate() {
            for (c, call) in CALLS.iter().enumerate() {
                let v = &samples[s][c];
                let ns: Vec<u64> = v.iter().map(|x| x.time.as_nanos() as u64).collect();
                let med = median(ns.clone());
                let rss_before = median(v.iter().map(|x| x.rss_before).collect());
                let rss_after = median(v.iter().map(|x| x.rss_after).collect());
                let locked = median(v.iter().map(|x| x.locked_after).collect());
                if tsv {
                    println!(
                        "{}\t{call}\t{med}\t{}\t{}\t{rss_before}\t{rss_after}\t{locked}\t{}",
                        mib * MIB,
                        ns.iter().min().unwrap_or(&0),
                        ns.iter().max().unwrap_or(&0),
                        v.len()
                    );
                } else {
                    println!(
                        "{:>5} MiB  {call:<26} {:>9.3} ms {:>8.1} MiB {:>8.1} MiB",
                        mib,
                        med as f64 / 1e6,
                        rss_after as f64 / MIB as f64,
                        locked as f64 / MIB as f64,
                    );
                }
            }
        }
    }
}

#[cfg(target_os = "linux")]
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    if args.first().map(String::as_str) == Some("--case") {
        let (Some(call), Some(Ok(bytes))) = (args.get(1), args.get(2).map(|b| b.parse::<usize>()))
        else {
            eprintln!("usage: onfault --case <call> <bytes>");
            std::process::exit(2);
        };
        linux::case(call, bytes);
    } else if !has("--bench") {
        // `cargo test --benches`: check that every call works, quickly.
        linux::drive(&[16], 1, false);
    } else if has("--quick") {
        linux::drive(&[16, 64, 256], 2, has("--tsv"));
    } else {
        linux::drive(&[16, 64, 256, 1024], 7, has("--tsv"));
    }
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("onfault: mlock benchmarks run on Linux only");
}
