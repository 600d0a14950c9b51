//! Reading what the benches print and what criterion writes.

use anyhow::{ensure, Context as _};
use std::fs;
use std::path::Path;

use super::IMPLS;
use crate::util;

/// One criterion benchmark's median, with its 95 % confidence interval, in
/// nanoseconds.
pub(super) struct Estimate {
    pub(super) group: String,
    pub(super) function: String,
    pub(super) median: f64,
    pub(super) lower: f64,
    pub(super) upper: f64,
}

/// Reads every `<group>/<function>[/<value>]/new/` that criterion wrote.
pub(super) fn read_criterion(home: &Path) -> util::Result<Vec<Estimate>> {
    let mut found = Vec::new();
    let mut stack = vec![home.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            if path.file_name().is_some_and(|n| n == "new") && path.join("estimates.json").exists()
            {
                found.push(path);
            } else if path
                .file_name()
                .is_some_and(|n| n != "report" && n != "base")
            {
                stack.push(path);
            }
        }
    }
    let mut estimates = Vec::new();
    for dir in found {
        let read = |file: &str| {
            fs::read_to_string(dir.join(file))
                .with_context(|| format!("reading {}", dir.join(file).display()))
        };
        estimates.push(
            estimate(&read("benchmark.json")?, &read("estimates.json")?)
                .with_context(|| format!("in {}", dir.display()))?,
        );
    }
    ensure!(
        !estimates.is_empty(),
        "criterion wrote no estimates under {}",
        home.display()
    );
    Ok(estimates)
}

/// One benchmark's median from criterion's `benchmark.json` (its ids) and
/// `estimates.json` (its statistics).
fn estimate(benchmark: &str, estimates: &str) -> util::Result<Estimate> {
    let parse = |text: &str, file: &str| {
        serde_json::from_str::<serde_json::Value>(text).with_context(|| file.to_string())
    };
    let (bench, est) = (
        parse(benchmark, "benchmark.json")?,
        parse(estimates, "estimates.json")?,
    );
    let id = |key: &str| bench[key].as_str().map(str::to_string);
    let mut function = id("function_id").unwrap_or_default();
    if let Some(value) = id("value_str") {
        function = format!("{function}/{value}");
    }
    let median = &est["median"];
    let num = |v: &serde_json::Value, key: &str| {
        v[key].as_f64().with_context(|| format!("no median {key}"))
    };
    Ok(Estimate {
        group: id("group_id").unwrap_or_default(),
        function,
        median: num(median, "point_estimate")?,
        lower: num(&median["confidence_interval"], "lower_bound")?,
        upper: num(&median["confidence_interval"], "upper_bound")?,
    })
}

/// Parses `overhead --interleaved`: `impl wall_ns cpu_ns` per line.
pub(super) fn interleaved(text: &str) -> util::Result<Vec<(String, f64, f64)>> {
    let rows: Vec<(String, f64, f64)> = text
        .lines()
        .filter_map(|line| {
            let mut f = line.split('\t');
            let name = f.next()?.to_string();
            let wall = f.next()?.parse().ok()?;
            let cpu = f.next()?.parse().ok()?;
            Some((name, wall, cpu))
        })
        .collect();
    ensure!(
        rows.len() == IMPLS.len(),
        "overhead --interleaved printed {text:?}"
    );
    Ok(rows)
}

/// One comparison timed in pairs (`benches/overhead.rs`,
/// `benches/status.rs`): the median time of one call of `a` and of `b`, and the median of `a - b` within a pair,
/// in nanoseconds, and the ratio of the two medians.
pub(super) struct Paired {
    pub(super) a: String,
    pub(super) b: String,
    pub(super) a_ns: f64,
    pub(super) b_ns: f64,
    pub(super) diff_ns: f64,
    pub(super) ratio: f64,
}

/// The `paired` lines of a bench's output (`bench` names it in errors),
/// one per comparison:
/// `paired <a>/<b> <a_ns> ns vs <b_ns> ns, a-b <±diff> ns, ratio <a/b>`.
/// Other lines are skipped; a `paired` line of another shape is an error,
/// and so is output without any.
pub(super) fn paired(text: &str, bench: &str) -> util::Result<Vec<Paired>> {
    let mut rows = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.trim_start().strip_prefix("paired ") else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let row = match fields.as_slice() {
            [name, a_ns, "ns", "vs", b_ns, "ns,", "a-b", diff, "ns,", "ratio", ratio] => {
                let names = name
                    .split_once('/')
                    .filter(|(a, b)| !a.is_empty() && !b.is_empty())
                    .map(|(a, b)| (a.to_string(), b.to_string()));
                let num = |v: &str| v.parse::<f64>().ok().filter(|n| n.is_finite());
                match (names, num(a_ns), num(b_ns), num(diff), num(ratio)) {
                    (Some((a, b)), Some(a_ns), Some(b_ns), Some(diff_ns), Some(ratio)) => {
                        Some(Paired {
                            a,
                            b,
                            a_ns,
                            b_ns,
                            diff_ns,
                            ratio,
                        })
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        rows.push(row.with_context(|| format!("{bench} printed {line:?}"))?);
    }
    ensure!(!rows.is_empty(), "{bench} printed no `paired` lines");
    Ok(rows)
}

/// One row of `onfault --tsv`: the medians of one call at one size.
pub(super) struct OnfaultRow {
    pub(super) size: u64,
    pub(super) call: String,
    pub(super) median_ns: u64,
    pub(super) min_ns: u64,
    pub(super) max_ns: u64,
    pub(super) rss_after: u64,
    pub(super) locked_after: u64,
    pub(super) runs: u64,
}

pub(super) fn onfault(tsv: &str) -> util::Result<Vec<OnfaultRow>> {
    let mut rows = Vec::new();
    for line in tsv.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split('\t').collect();
        let n = |i: usize| -> util::Result<u64> {
            f.get(i)
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("bad onfault row {line:?}"))
        };
        rows.push(OnfaultRow {
            size: n(0)?,
            call: f.get(1).unwrap_or(&"").to_string(),
            median_ns: n(2)?,
            min_ns: n(3)?,
            max_ns: n(4)?,
            rss_after: n(6)?,
            locked_after: n(7)?,
            runs: n(8)?,
        });
    }
    ensure!(!rows.is_empty(), "benches/onfault.rs printed no rows");
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::{estimate, onfault, paired};

    #[test]
    fn estimates_as_criterion_writes_them() {
        let bench = r#"{"group_id":"overhead","function_id":"mlock","value_str":null,"full_id":"overhead/mlock"}"#;
        let est = r#"{"mean":{"confidence_interval":{"confidence_level":0.95,"lower_bound":9.0,"upper_bound":11.0},"point_estimate":10.0},"median":{"confidence_interval":{"confidence_level":0.95,"lower_bound":1.5e3,"upper_bound":1600.25},"point_estimate":1550.5,"standard_error":3.0}}"#;
        let e = estimate(bench, est).unwrap();
        assert_eq!(
            (e.group.as_str(), e.function.as_str()),
            ("overhead", "mlock")
        );
        assert_eq!((e.median, e.lower, e.upper), (1550.5, 1500.0, 1600.25));
        let bench = r#"{"group_id":"onfault","function_id":"lock","value_str":"16 MiB"}"#;
        assert_eq!(estimate(bench, est).unwrap().function, "lock/16 MiB");
        assert!(estimate(bench, r#"{"mean":{}}"#).is_err());
        assert!(estimate("not json", est).is_err());
    }

    #[test]
    fn onfault_rows() {
        let tsv = "size_bytes\tcall\tmedian_ns\tmin_ns\tmax_ns\trss_before_bytes\trss_after_bytes\tlocked_after_bytes\truns\n\
                   16777216\tlock_all(CURRENT|ONFAULT)\t120000\t110000\t130000\t2097152\t2162688\t19816448\t7\n";
        let rows = onfault(tsv).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].size, 16 << 20);
        assert_eq!(rows[0].call, "lock_all(CURRENT|ONFAULT)");
        assert_eq!((rows[0].median_ns, rows[0].runs), (120_000, 7));
        assert!(onfault("header only\n").is_err());
        assert!(onfault("h\n1\tx\tnot-a-number\n").is_err());
    }

    #[test]
    fn paired_lines_of_the_status_summary() {
        let out = "  goals: status/floor 1.010 (<= 1.03), reader/pread 1.008 (<= 1.05)\n\
                   \n\
                   timed in pairs (20000 pairs per comparison: ...; medians of a, of b and of a-b):\n\
                   \x20 paired status/floor    10555 ns vs   10576 ns, a-b    -21 ns, ratio 0.998\n\
                   \x20 paired reader/pread     6310 ns vs    6250 ns, a-b    +60 ns, ratio 1.010\n\
                   \x20 paired procfs/floor    30285 ns vs   10776 ns, a-b +19569 ns, ratio 2.810\n";
        let rows = paired(out, "benches/status.rs").unwrap();
        assert_eq!(rows.len(), 3);
        let r = &rows[0];
        assert_eq!((r.a.as_str(), r.b.as_str()), ("status", "floor"));
        assert_eq!(
            (r.a_ns, r.b_ns, r.diff_ns, r.ratio),
            (10555.0, 10576.0, -21.0, 0.998)
        );
        assert_eq!((rows[1].a.as_str(), rows[1].diff_ns), ("reader", 60.0));
        assert_eq!(rows[2].diff_ns, 19569.0);
        // No paired line at all, or one of another shape, is an error.
        assert!(paired("status summary\n  floor 10589 ns 1.000x\n", "b").is_err());
        assert!(paired(
            "  paired status/floor 10555 ns vs 10576 ns, ratio 0.998\n",
            "b"
        )
        .is_err());
        assert!(paired("  paired status 1 ns vs 2 ns, a-b -1 ns, ratio 0.5\n", "b").is_err());
        assert!(paired("  paired a/b x ns vs 2 ns, a-b -1 ns, ratio 0.5\n", "b").is_err());
    }

    #[test]
    fn paired_lines_of_the_overhead_bench() {
        let out = "timed in pairs (20000 pairs per comparison: ...; 4096-byte page):\n\
                   \x20 paired lock_all/mlockall      520 ns vs     390 ns, a-b   +128 ns, ratio 1.333\n\
                   \x20 paired guard/mlock          2150 ns vs    1500 ns, a-b   +640 ns, ratio 1.433\n";
        let rows = paired(out, "benches/overhead.rs").unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].a.as_str(), rows[0].b.as_str(), rows[0].diff_ns),
            ("lock_all", "mlockall", 128.0)
        );
        assert_eq!((rows[1].a.as_str(), rows[1].b.as_str()), ("guard", "mlock"));
        assert_eq!(
            (rows[1].a_ns, rows[1].b_ns, rows[1].ratio),
            (2150.0, 1500.0, 1.433)
        );
        let err = paired("criterion only\n", "benches/overhead.rs")
            .err()
            .unwrap();
        assert!(err.to_string().contains("benches/overhead.rs"), "{err}");
    }
}
