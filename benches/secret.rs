//! What the secret buffers cost: a `SealedBuf` borrow (two `mprotect(2)`
//! calls) against reading a `LockedBuf` directly, and creating and
//! dropping a buffer with each backing.
//!
//! - `cargo bench --bench secret`: prints nanoseconds per operation, the
//!   median of 7 runs, with each ratio beside its absolute baseline.
//! - Without `--bench` (as `cargo test --benches` runs it): a few
//!   iterations of each case, to check that it works.
//!
//! Creating buffers locks memory: a process without `CAP_IPC_LOCK` needs
//! a few pages of `RLIMIT_MEMLOCK`.

#[cfg(target_os = "linux")]
fn main() {
    use std::hint::black_box;
    use std::time::Instant;

    use mlock::secret::{Backing, LockedBuf, SealedBuf};

    let full = std::env::args().any(|a| a == "--bench");
    let (runs, borrows, creations) = if full {
        (7, 200_000, 5_000)
    } else {
        (1, 100, 10)
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
    }
    if !secretmem {
        println!("memfd_secret is not offered here: only the anonymous backing was measured");
    }
}

#[cfg(not(target_os = "linux"))]
fn main() {}
