//! Call overhead: one cheap `mlockall(MCL_FUTURE)` + `munlockall()` pair,
//! through this crate and through each peer, measured in one run; then the
//! cost of the crate's record of the locks it holds, timed in pairs against
//! libc.
//!
//! `MCL_FUTURE` alone only sets a flag on the process's memory map, and
//! `munlockall` clears it again, so the kernel's share is small and the
//! user-space path (wrapper, PLT, errno) shows. Run it with
//! `cargo bench --bench overhead`, or all benchmarks with `cargo xtask bench`.
//!
//! After criterion it times two comparisons in pairs, the goals on what the
//! record costs (`lock_all` and `unlock_all` update it; a [`LockGuard`]
//! enters its range on `new` and consults it on drop):
//!
//! - `lock_all/mlockall`: `mlock::lock_all(Flags::FUTURE)` +
//!   `mlock::unlock_all()` against libc's `mlockall(MCL_FUTURE)` +
//!   `munlockall()`; goal: within 1.10x.
//! - `guard/mlock`: `mlock::LockGuard::new(page)` + its drop against libc's
//!   `mlock(page)` + `munlock(page)`, over one touched, page-aligned page of
//!   an anonymous mapping (the runtime page size); goal: within 1.15x.
//!
//! For each, 20,000 pairs (`MLOCK_BENCH_PAIRS` sets another count) of the
//! crate's two calls and libc's two back to back, which side goes first
//! alternating, each side timed alone; it prints the median time of each
//! side, the median of the differences within a pair (what the crate costs
//! over libc, in nanoseconds) and the ratio of the two medians, in the form
//! `benches/status.rs` prints its pairs. A burst of load from other
//! processes falls on both sides of a pair alike; and the cost of a system
//! call differs threefold between machines of one kind, so the absolute
//! times are printed beside the ratio. `overhead --paired [<pairs>]` times
//! only these comparisons, without criterion.
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
//!
//! [`LockGuard`]: mlock::LockGuard

#[cfg(target_os = "linux")]
#[path = "common/pairs.rs"]
mod pairs;

#[cfg(target_os = "linux")]
mod linux {
    use std::hint::black_box;

    pub use super::pairs::pair_count;
    use super::pairs::time_pairs;
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

    /// One page of an anonymous private mapping, page-aligned and touched
    /// (so that `mlock` finds it present and has nothing to fault in),
    /// unmapped on drop.
    pub struct Page {
        ptr: *mut u8,
        len: usize,
    }

    impl Page {
        /// Maps and touches one page of the runtime page size.
        pub fn map() -> Page {
            // SAFETY: sysconf has no preconditions.
            let len = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
            let len = usize::try_from(len).expect("sysconf(_SC_PAGESIZE)");
            // SAFETY: a fresh anonymous mapping, no address hint.
            let ptr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            assert!(ptr != libc::MAP_FAILED, "mmap of one page failed");
            let ptr = ptr.cast::<u8>();
            // SAFETY: the page is mapped readable and writable.
            unsafe { ptr.write_volatile(1) };
            Page { ptr, len }
        }

        pub fn bytes(&self) -> &[u8] {
            // SAFETY: `len` bytes at `ptr` stay mapped, initialised (zero
            // or written) and unaliased by writes until `self` drops.
            unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
        }
    }

    impl Drop for Page {
        fn drop(&mut self) {
            // SAFETY: the mapping is ours, and no borrow of it outlives `self`.
            unsafe { libc::munmap(self.ptr.cast(), self.len) };
        }
    }

    /// This crate: lock one region through a [`mlock::LockGuard`] (its
    /// range entered in the record, then `mlock`) and drop it (the record
    /// consulted, `munlock`, the entry removed).
    #[inline(never)]
    fn guard_mlock(page: &[u8]) -> Result<(), mlock::Error> {
        let guard = mlock::LockGuard::new(page)?;
        drop(black_box(guard));
        Ok(())
    }

    /// libc: `mlock` + `munlock` of the same region, nothing recorded.
    #[inline(never)]
    fn guard_libc(page: &[u8]) -> (libc::c_int, libc::c_int) {
        let (addr, len) = (page.as_ptr().cast::<libc::c_void>(), page.len());
        // SAFETY: the region is mapped and ours; locking it reads and
        // writes no memory.
        unsafe { (libc::mlock(addr, len), libc::munlock(addr, len)) }
    }

    /// One `LockGuard` pair and one libc pair over `page`, checked, as
    /// [`check`] checks the `mlockall` pairs.
    fn check_guard(page: &[u8]) {
        let fail = |side: &str, e: String| {
            eprintln!(
                "overhead: mlock + munlock of one {}-byte page through {side} failed: {e}",
                page.len()
            );
            eprintln!(
                "overhead: it needs CAP_IPC_LOCK or an RLIMIT_MEMLOCK of at least one page (`ulimit -l`)"
            );
            std::process::exit(1);
        };
        if let Err(e) = guard_mlock(page) {
            fail("mlock::LockGuard", e.to_string());
        }
        if guard_libc(page) != (0, 0) {
            fail("libc", std::io::Error::last_os_error().to_string());
        }
    }

    /// Times the two goal comparisons in `pairs` pairs each, after one
    /// checked call of every side, and prints one line per comparison,
    /// `paired <a>/<b> <a> ns vs <b> ns, a-b <diff> ns, ratio <a/b>`, the
    /// form `cargo xtask bench` reads.
    pub fn paired(pairs: usize) {
        check("mlock");
        check("libc");
        let page = Page::map();
        let page = page.bytes();
        check_guard(page);
        println!(
            "\ntimed in pairs ({pairs} pairs per comparison: the crate's calls and libc's \
             back to back, the crate first in every other pair; medians of the crate, of \
             libc and of the difference within a pair; {}-byte page):",
            page.len()
        );
        let all = time_pairs(
            |crate_side| {
                if crate_side {
                    let _ = black_box(pair_mlock());
                } else {
                    let _ = black_box(pair_libc());
                }
            },
            pairs,
        );
        let guard = time_pairs(
            |crate_side| {
                if crate_side {
                    let _ = black_box(guard_mlock(black_box(page)));
                } else {
                    let _ = black_box(guard_libc(black_box(page)));
                }
            },
            pairs,
        );
        for (name, p) in [("lock_all/mlockall", all), ("guard/mlock", guard)] {
            println!(
                "  paired {name:<17} {:>7.0} ns vs {:>7.0} ns, a-b {:>+6.0} ns, ratio {:.3}",
                p.a_ns,
                p.b_ns,
                p.diff_ns,
                p.a_ns / p.b_ns
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
    // Without it (`cargo test --benches`) criterion only checks that each
    // benchmark runs, and the pairs are not timed.
    let bench_mode = std::env::args().any(|a| a == "--bench");
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
    if args.first().map(String::as_str) == Some("--paired") {
        let pairs = match args.get(1).map(|n| n.parse::<usize>()) {
            None => linux::pair_count(),
            Some(Ok(n)) if n > 0 => n,
            Some(_) => {
                eprintln!("usage: overhead --paired [<pairs per comparison>]");
                std::process::exit(2);
            }
        };
        linux::paired(pairs);
        return;
    }
    let mut c = criterion::Criterion::default().configure_from_args();
    linux::bench(&mut c);
    c.final_summary();
    if bench_mode {
        linux::paired(linux::pair_count());
    }
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("overhead: mlockall benchmarks run on Linux only");
}
