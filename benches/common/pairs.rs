//! Timing in pairs, shared by the benchmarks that check a goal against a
//! baseline (`benches/overhead.rs`, `benches/status.rs`): the cost of a
//! system call differs threefold between machines of one kind, so each
//! side is timed back to back with the other, and the medians are taken
//! in one run.

use std::time::Instant;

/// Pairs per comparison when `MLOCK_BENCH_PAIRS` does not say.
const PAIRS: usize = 20_000;

/// How many pairs each comparison times: `MLOCK_BENCH_PAIRS` (which
/// `cargo xtask bench --quick` lowers), else 20,000.
pub fn pair_count() -> usize {
    match std::env::var("MLOCK_BENCH_PAIRS") {
        Ok(n) => n
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .unwrap_or_else(|| panic!("MLOCK_BENCH_PAIRS={n:?}: want a count above 0")),
        Err(_) => PAIRS,
    }
}

/// One comparison timed in pairs: the median time of one call of side
/// `a`, of one call of side `b`, and of the difference `a - b` within a
/// pair, in nanoseconds.
pub struct Paired {
    pub a_ns: f64,
    pub b_ns: f64,
    pub diff_ns: f64,
}

/// The median of `v` (sorted in place; the upper middle of an even
/// count).
fn median(v: &mut [f64]) -> f64 {
    v.sort_unstable_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Times `pairs` pairs of calls: `call(true)` (side `a`) and `call(false)`
/// (side `b`) back to back, `a` first in every other pair, each call timed
/// alone. A change in the machine's load (others' builds on a shared
/// machine) falls on both calls of a pair alike, so the median of the
/// differences within the pairs is the cost of `a` over `b`, which an
/// absolute time, and a ratio of medians taken seconds apart, is not. A
/// tenth as many pairs run first, untimed, to warm the caches and the
/// branch predictors.
pub fn time_pairs(mut call: impl FnMut(bool), pairs: usize) -> Paired {
    for k in 0..pairs / 10 {
        call(k % 2 == 0);
        call(k % 2 != 0);
    }
    let (mut ta, mut tb, mut diff) = (
        Vec::with_capacity(pairs),
        Vec::with_capacity(pairs),
        Vec::with_capacity(pairs),
    );
    for k in 0..pairs {
        let a_first = k % 2 == 0;
        let t0 = Instant::now();
        call(a_first);
        let t1 = Instant::now();
        call(!a_first);
        let t2 = Instant::now();
        let (x, y) = ((t1 - t0).as_nanos() as f64, (t2 - t1).as_nanos() as f64);
        let (x, y) = if a_first { (x, y) } else { (y, x) };
        ta.push(x);
        tb.push(y);
        diff.push(x - y);
    }
    Paired {
        a_ns: median(&mut ta),
        b_ns: median(&mut tb),
        diff_ns: median(&mut diff),
    }
}
