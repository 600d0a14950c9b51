//! Call overhead: one cheap `mlockall(MCL_FUTURE)` + `munlockall()` pair,
//! through this crate and through each peer, measured in one run.
//!
//! `MCL_FUTURE` alone only sets a flag on the process's memory map, and
//! `munlockall` clears it again, so the kernel's share is small and the
//! user-space path (wrapper, PLT, errno) shows. Run it with
//! `cargo bench --bench overhead`, or all benchmarks with `cargo xtask bench`.
//!
//! Two groups: `overhead` times the pairs on the wall clock, `overhead_cpu`
//! on the thread's CPU time, which leaves out the time spent waiting for a
//! core on a busy machine.
//!
//! `overhead --calls <impl> <n>` runs `n` pairs through one implementation
//! and exits, without criterion: `cargo xtask bench` runs that under
//! `valgrind --tool=callgrind` to count user-space instructions per pair.

#[cfg(target_os = "linux")]
mod linux {
    use std::hint::black_box;
    use std::time::Duration;

    use criterion::measurement::{Measurement, ValueFormatter, WallTime};
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

    /// Runs `n` unchecked pairs through `name`, after one checked pair.
    pub fn calls(name: &str, n: u64) {
        check(name);
        for _ in 0..n {
            match name {
                "mlock" => drop(black_box(pair_mlock())),
                "libc" => drop(black_box(pair_libc())),
                "rustix" => drop(black_box(pair_rustix())),
                _ => drop(black_box(pair_nix())),
            }
        }
    }

    /// The CPU time of the calling thread, user plus kernel
    /// (`CLOCK_THREAD_CPUTIME_ID`). Unlike the wall clock it leaves out the
    /// time the thread waits while other processes run, which on a shared
    /// machine is most of the noise.
    pub struct ThreadCpuTime;

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

    impl Measurement for ThreadCpuTime {
        type Intermediate = Duration;
        type Value = Duration;

        fn start(&self) -> Duration {
            thread_cpu_time()
        }
        fn end(&self, start: Duration) -> Duration {
            thread_cpu_time().saturating_sub(start)
        }
        fn add(&self, a: &Duration, b: &Duration) -> Duration {
            *a + *b
        }
        fn zero(&self) -> Duration {
            Duration::ZERO
        }
        fn to_f64(&self, value: &Duration) -> f64 {
            value.as_nanos() as f64
        }
        fn formatter(&self) -> &dyn ValueFormatter {
            // Nanoseconds, like the wall clock: reuse its units.
            static WALL: WallTime = WallTime;
            WALL.formatter()
        }
    }

    /// The four pairs as one criterion group: `overhead` on the wall clock,
    /// `overhead_cpu` on [`ThreadCpuTime`].
    pub fn bench<M: Measurement>(c: &mut Criterion<M>, group: &str) {
        for name in IMPLS {
            check(name);
        }
        let mut group = c.benchmark_group(group);
        group.bench_function("mlock", |b| b.iter(pair_mlock));
        group.bench_function("libc", |b| b.iter(pair_libc));
        group.bench_function("rustix", |b| b.iter(pair_rustix));
        group.bench_function("nix", |b| b.iter(pair_nix));
        group.finish();
    }
}

#[cfg(target_os = "linux")]
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
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
    let mut c = criterion::Criterion::default().configure_from_args();
    linux::bench(&mut c, "overhead");
    c.final_summary();
    let mut c = criterion::Criterion::default()
        .with_measurement(linux::ThreadCpuTime)
        .configure_from_args();
    linux::bench(&mut c, "overhead_cpu");
    c.final_summary();
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("overhead: mlockall benchmarks run on Linux only");
}
