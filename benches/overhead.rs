//! Call overhead: one cheap `mlockall(MCL_FUTURE)` + `munlockall()` pair,
//! through this crate and through each peer, measured in one run.
//!
//! `MCL_FUTURE` alone only sets a flag on the process's memory map, and
//! `munlockall` clears it again, so the kernel's share is small and the
//! user-space path (wrapper, PLT, errno) shows. Run it with
//! `cargo bench --bench overhead`, or all benchmarks with `cargo xtask bench`.
//!
//! `overhead --interleaved <rounds> <batch>` times the four in turns instead:
//! each round runs a batch of pairs through every implementation, starting
//! with a different one each round, and prints the median wall-clock and
//! thread CPU time per pair. A burst of load from other processes then falls
//! on all four alike, which criterion's one-after-the-other runs cannot
//! promise on a shared machine.
//!
//! `overhead --calls <impl> <n>` runs `n` pairs through one implementation
//! and exits, without criterion: `cargo xtask bench` runs that under
//! `valgrind --tool=callgrind` to count user-space instructions per pair.

#[cfg(target_os = "linux")]
mod linux {
    use std::hint::black_box;
    use std::time::{Duration, Instant};

    use criterion::Criterion;

    // Each pair passes its flags as a constant, as a caller would: where a
    // wrapper validates its flags (this crate does), the check then folds
    // away at compile time. The results go through `black_box`.

    /// The implementations compared, by the name criterion reports them under.
    pub const IMPLS: [&str; 4] = ["mlock", "libc", "rustix", "nix"];

    /// This crate: inline-asm syscalls, errors as a returned enum.
    #[inline(never)]
    fn pair_mlock() -> (Result<(), mlock::Error>, Result<(), mlock::Error>) {
        (mlock::lock_all(mlock::Flags::FUTURE), mlock::unlock_all())
    }

    /// libc: the C library's wrappers, reached through the PLT; errors in
    /// the thread-local `errno`.
    #[inline(never)]
    fn pair_libc() -> (libc::c_int, libc::c_int) {
        // SAFETY: mlockall and munlockall touch no user memory; MCL_FUTURE
        // only changes how later mappings are treated.
        unsafe { (libc::mlockall(libc::MCL_FUTURE), libc::munlockall()) }
    }

    /// rustix: its own raw-syscall backend on Linux.
    #[inline(never)]
    fn pair_rustix() -> (rustix::io::Result<()>, rustix::io::Result<()>) {
        (
            rustix::mm::mlockall(rustix::mm::MlockAllFlags::FUTURE),
            rustix::mm::munlockall(),
        )
    }

    /// nix: safe wrappers over libc, errors read back from `errno`.
    #[inline(never)]
    fn pair_nix() -> (nix::Result<()>, nix::Result<()>) {
        use nix::sys::mman::{mlockall, munlockall, MlockAllFlags};
        (mlockall(MlockAllFlags::MCL_FUTURE), munlockall())
    }

    /// One pair through `name`, checked: a failing call would measure the
    /// error path instead, so every implementation must succeed once first.
    fn check(name: &str) {
        let ok = match name {
            "mlock" => {
                let (a, b) = pair_mlock();
                a.and(b).map_err(|e| e.to_string())
            }
            "libc" => match pair_libc() {
                (0, 0) => Ok(()),
                _ => Err(std::io::Error::last_os_error().to_string()),
            },
            "rustix" => {
                let (a, b) = pair_rustix();
                a.and(b).map_err(|e| e.to_string())
            }
            "nix" => {
                let (a, b) = pair_nix();
                a.and(b).map_err(|e| e.to_string())
            }
            other => Err(format!(
                "unknown implementation {other:?}; one of {IMPLS:?}"
            )),
        };
        if let Err(e) = ok {
            eprintln!("overhead: mlockall(MCL_FUTURE) + munlockall() through {name} failed: {e}");
            eprintln!("overhead: it needs CAP_IPC_LOCK or a nonzero RLIMIT_MEMLOCK (`ulimit -l`)");
            std::process::exit(1);
        }
    }

    /// Runs `n` unchecked pairs through `name`.
    fn run(name: &str, n: u64) {
        match name {
            "mlock" => (0..n).for_each(|_| {
                let _ = black_box(pair_mlock());
            }),
            "libc" => (0..n).for_each(|_| {
                let _ = black_box(pair_libc());
            }),
            "rustix" => (0..n).for_each(|_| {
                let _ = black_box(pair_rustix());
            }),
            _ => (0..n).for_each(|_| {
                let _ = black_box(pair_nix());
            }),
        }
    }

    /// Runs `n` unchecked pairs through `name`, after one checked pair.
    pub fn calls(name: &str, n: u64) {
        check(name);
        run(name, n);
    }

    /// The CPU time of the calling thread, user plus kernel
    /// (`CLOCK_THREAD_CPUTIME_ID`): unlike the wall clock it leaves out the
    /// time the thread waits for a core while other processes run.
    fn thread_cpu_time() -> Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec.
        let ret = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        assert_eq!(ret, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }

    fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }

    /// `rounds` rounds of `batch` pairs through each implementation in turn,
    /// the first one rotating; prints `impl wall_ns cpu_ns` per pair, the
    /// medians over the rounds.
    pub fn interleaved(rounds: usize, batch: u64) {
        for name in IMPLS {
            check(name);
        }
        let mut wall = vec![Vec::with_capacity(rounds); IMPLS.len()];
        let mut cpu = vec![Vec::with_capacity(rounds); IMPLS.len()];
        for round in 0..rounds {
            for k in 0..IMPLS.len() {
                let i = (round + k) % IMPLS.len();
                let (wall_start, cpu_start) = (Instant::now(), thread_cpu_time());
                run(IMPLS[i], batch);
                let cpu_time = thread_cpu_time().saturating_sub(cpu_start);
                let wall_time = wall_start.elapsed();
                wall[i].push(wall_time.as_nanos() as f64 / batch as f64);
                cpu[i].push(cpu_time.as_nanos() as f64 / batch as f64);
            }
        }
        for (i, name) in IMPLS.iter().enumerate() {
            println!(
                "{name}\t{:.1}\t{:.1}",
                median(wall[i].clone()),
                median(cpu[i].clone())
            );
        }
    }

    /// The four pairs as one criterion group, `overhead`.
    pub fn bench(c: &mut Criterion) {
        for name in IMPLS {
            check(name);
        }
        let mut group = c.benchmark_group("overhead");
        group.bench_function("mlock", |b| b.iter(pair_mlock));
        group.bench_function("libc", |b| b.iter(pair_libc));
        group.bench_function("rustix", |b| b.iter(pair_rustix));
        group.bench_function("nix", |b| b.iter(pair_nix));
        group.finish();
    }
}

#[cfg(target_os = "linux")]
fn main() {
    // `cargo bench` puts `--bench` first; the modes below may follow it.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.first().map(String::as_str) == Some("--calls") {
        let (Some(name), Some(Ok(n))) = (args.get(1), args.get(2).map(|n| n.parse::<u64>())) else {
            eprintln!(
                "usage: overhead --calls <{}> <count>",
                linux::IMPLS.join("|")
            );
            std::process::exit(2);
        };
        linux::calls(name, n);
        return;
    }
    if args.first().map(String::as_str) == Some("--interleaved") {
        let (Some(Ok(rounds)), Some(Ok(batch))) = (
            args.get(1).map(|n| n.parse::<usize>()),
            args.get(2).map(|n| n.parse::<u64>()),
        ) else {
            eprintln!("usage: overhead --interleaved <rounds> <pairs per batch>");
            std::process::exit(2);
        };
        linux::interleaved(rounds.max(1), batch.max(1));
        return;
    }
    let mut c = criterion::Criterion::default().configure_from_args();
    linux::bench(&mut c);
    c.final_summary();
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("overhead: mlockall benchmarks run on Linux only");
}
