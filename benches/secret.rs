//! What the secret buffers cost: a `SealedBuf` borrow (two `mprotect(2)`
//! calls) against reading a `LockedBuf` directly, creating and dropping a
//! buffer with each backing, a 32-byte secret from a `Pool` against a
//! `LockedBuf<32>`, and guard regions against `PROT_NONE` guard pages
//! (time of new + drop, mappings per live buffer or pool): the second in a
//! child whose seccomp filter refuses `MADV_GUARD_INSTALL` as a kernel
//! before 6.13 does.
//!
//! - `cargo bench --bench secret`: prints nanoseconds per operation, the
//!   median of 7 runs, with each ratio beside its absolute baseline.
//! - Without `--bench` (as `cargo test --benches` runs it): a few
//!   iterations of each case, to check that it works.
//!
//! Creating buffers locks memory: a process without `CAP_IPC_LOCK` needs
//! a few pages of `RLIMIT_MEMLOCK`.

#[cfg(target_os = "linux")]
#[path = "../tests/common/mod.rs"]
mod common;

#[cfg(target_os = "linux")]
fn main() {
    use std::hint::black_box;
    use std::time::Instant;

    use mlock::secret::{Backing, Guards, LockedBuf, Pool, SealedBuf};

    let full = std::env::args().any(|a| a == "--bench");
    let (runs, borrows, creations, allocations) = if full {
        (7, 200_000, 5_000, 1_000_000)
    } else {
        (1, 100, 10, 100)
    };

    /// Median nanoseconds per operation of `op`, run `n` times per run.
    fn time(runs: usize, n: u32, mut op: impl FnMut()) -> f64 {
        let mut samples: Vec<f64> = (0..runs)
            .map(|_| {
                let start = Instant::now();
                for _ in 0..n {
                    op();
                }
                start.elapsed().as_nanos() as f64 / f64::from(n)
            })
            .collect();
        samples.sort_by(f64::total_cmp);
        samples[samples.len() / 2]
    }

    let secretmem = LockedBuf::<32>::with_backing(Backing::SecretMem).is_ok();
    let backings: &[Backing] = if secretmem {
        &[Backing::SecretMem, Backing::Anonymous]
    } else {
        &[Backing::Anonymous]
    };
    println!("secret: {runs} run(s), median ns per operation; 32-byte buffers");
    for &backing in backings {
        let mut locked = LockedBuf::<32>::with_backing(backing).expect("LockedBuf");
        locked.as_bytes_mut().fill(1);
        let mut sealed = SealedBuf::<32>::with_backing(backing).expect("SealedBuf");
        sealed.with_mut(|b| b.fill(1));
        let direct = time(runs, borrows, || {
            black_box(black_box(&locked).as_bytes()[31]);
        });
        let read = time(runs, borrows, || {
            black_box(sealed.with(|b| b[31]));
        });
        let write = time(runs, borrows, || {
            sealed.with_mut(|b| b[31] = black_box(2));
        });
        println!("{backing:?}: LockedBuf read: {direct:.1} ns (baseline)");
        println!(
            "{backing:?}: SealedBuf::with (read borrow): {read:.0} ns ({:.0}x the baseline of {direct:.1} ns)",
            read / direct
        );
        println!(
            "{backing:?}: SealedBuf::with_mut (write borrow): {write:.0} ns ({:.0}x the baseline of {direct:.1} ns)",
            write / direct
        );
        let create_locked = time(runs, creations, || {
            black_box(LockedBuf::<32>::with_backing(backing).expect("LockedBuf"));
        });
        let create_sealed = time(runs, creations, || {
            black_box(SealedBuf::<32>::with_backing(backing).expect("SealedBuf"));
        });
        println!("{backing:?}: LockedBuf new + drop: {create_locked:.0} ns");
        println!("{backing:?}: SealedBuf new + drop: {create_sealed:.0} ns");
        let pool = Pool::with_backing(64 * 1024, backing).expect("Pool");
        let pooled = time(runs, allocations, || {
            black_box(pool.alloc::<32>().expect("a free slot"));
        });
        println!(
            "{backing:?}: Pool alloc + drop: {pooled:.1} ns; LockedBuf new + drop is {:.0}x that \
             ({create_locked:.0} ns)",
            create_locked / pooled
        );
    }

    /// New + drop of a `LockedBuf<32>` and of a 64 KiB `Pool`, and the
    /// mappings that 100 live buffers and one pool add, with the guards
    /// this process gets.
    fn guards_line(runs: usize, creations: u32) {
        let maps = || {
            std::fs::read_to_string("/proc/self/maps")
                .unwrap()
                .lines()
                .count()
        };
        let anon = Backing::Anonymous;
        let guards = LockedBuf::<32>::with_backing(anon)
            .expect("LockedBuf")
            .guards();
        let buf = time(runs, creations, || {
            black_box(LockedBuf::<32>::with_backing(anon).expect("LockedBuf"));
        });
        let pool = time(runs, creations, || {
            black_box(Pool::with_backing(64 * 1024, anon).expect("Pool"));
        });
        let before = maps();
        let live: Vec<_> = (0..100)
            .map(|_| LockedBuf::<32>::with_backing(anon).expect("LockedBuf"))
            .collect();
        let per_buf = (maps() - before) as f64 / live.len() as f64;
        drop(live);
        let before = maps();
        let one = Pool::with_backing(64 * 1024, anon).expect("Pool");
        let per_pool = maps() - before;
        drop(one);
        println!(
            "guards {guards:?}: LockedBuf new + drop {buf:.0} ns, {per_buf:.2} mappings per live \
             buffer; Pool (64 KiB) new + drop {pool:.0} ns, {per_pool} mapping(s)"
        );
    }
    guards_line(runs, creations);
    let regions = LockedBuf::<32>::with_backing(Backing::Anonymous)
        .map(|b| b.guards() == Guards::Regions)
        .unwrap_or(false);
    if regions && !common::under_qemu_user() {
        // The same in a child whose kernel refuses guard markers, as one
        // before 6.13 does: PROT_NONE guard pages.
        let child = common::run_forked(|| {
            common::fail_syscall_with(
                libc::SYS_madvise,
                libc::EINVAL,
                common::When::ArgIs(2, 102), // MADV_GUARD_INSTALL
            );
            guards_line(runs, creations);
        });
        // The child printed its line to the stdout it shares.
        assert!(
            libc::WIFEXITED(child.status) && libc::WEXITSTATUS(child.status) == 0,
            "the child: {}",
            child.stderr
        );
    } else {
        println!("guard regions are not offered here: PROT_NONE guards only");
    }
    if !secretmem {
        println!("memfd_secret is not offered here: only the anonymous backing was measured");
    }
}

#[cfg(not(target_os = "linux"))]
fn main() {}
