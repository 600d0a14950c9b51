//! `cargo xtask bench [--quick]`: every benchmark in one run, side by side.
//!
//! 1. Call overhead (`benches/overhead.rs`, criterion): one
//!    `mlockall(MCL_FUTURE)` + `munlockall()` pair through this crate, libc,
//!    rustix and nix; medians and the ratio to each peer, plus user-space
//!    instructions per pair counted by `valgrind --tool=callgrind`, which
//!    does not care how busy the machine is.
//! 2. What `ONFAULT` saves (`benches/onfault.rs`): time and RSS of locking an
//!    untouched mapping of 16 MiB to 1 GiB, each case in a fresh process.
//! 3. Status queries (`benches/status.rs`, criterion), when that bench exists.
//!
//! A full run writes `docs/benchmarks.md` and `docs/onfault.svg`. `--quick`
//! is a CI-size run (few samples, mappings up to 256 MiB) that checks that
//! everything builds and runs; it writes its report under
//! `target/xtask-bench/` and leaves `docs/` alone. No number ever fails a run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util;

const USAGE: &str = "usage: cargo xtask bench [--quick]";

/// The implementations of `benches/overhead.rs`, this crate first.
const IMPLS: [&str; 4] = ["mlock", "libc", "rustix", "nix"];

/// The rows of `benches/status.rs`, in the order they are reported, with
/// what each measures.
const STATUS_ROWS: [(&str, &str); 7] = [
    (
        "floor",
        "libc `open` + one `read` + `close`, nothing parsed",
    ),
    (
        "status",
        "`mlock::status()`: open, read, parse (procfs checked once per process)",
    ),
    (
        "pread",
        "libc `pread` at offset 0 of a kept descriptor, nothing parsed",
    ),
    (
        "reader",
        "`mlock::StatusReader::read()`: `pread` on a kept descriptor, parse",
    ),
    ("std_parse", "`std::fs::read_to_string` + `Status::parse`"),
    ("procfs", "the procfs crate: `Process::myself()?.status()?`"),
    ("parse", "`Status::parse` of text already read, no syscall"),
];

/// The status goals of issue 16: (numerator, denominator, bound).
const STATUS_GOALS: [(&str, &str, f64); 2] = [("status", "floor", 1.03), ("reader", "pread", 1.05)];

/// `cargo xtask bench [--quick]`.
pub fn main(args: &[String]) -> util::Result {
    let mut quick = false;
    for arg in args {
        match arg.as_str() {
            "--quick" => quick = true,
            other => return Err(format!("bench: unknown option {other:?}\n{USAGE}")),
        }
    }
    run(&if quick { Plan::QUICK } else { Plan::FULL })
}

/// The CI-size run, for the `cargo xtask test` step list: builds and runs
/// every benchmark with few samples and writes its report under
/// `target/xtask-bench/`. It fails only if something does not build or run.
pub fn quick() -> util::Result {
    run(&Plan::QUICK)
}

/// How much of each benchmark to run.
struct Plan {
    quick: bool,
    /// Arguments for the criterion benches.
    criterion: &'static [&'static str],
    /// Pairs per callgrind run: the difference of two runs is divided by the
    /// difference of the counts, so start-up and the checked first call
    /// cancel out.
    calls: (u64, u64),
    /// Rounds and pairs per batch of `overhead --interleaved`.
    interleaved: (u64, u64),
    /// Arguments for `benches/onfault.rs`.
    onfault: &'static [&'static str],
}

impl Plan {
    const FULL: Plan = Plan {
        quick: false,
        criterion: &[
            "--bench",
            "--noplot",
            "--warm-up-time",
            "2",
            "--measurement-time",
            "10",
            "--sample-size",
            "100",
        ],
        calls: (1_000, 11_000),
        interleaved: (2_000, 1_000),
        onfault: &["--bench", "--tsv"],
    };
    const QUICK: Plan = Plan {
        quick: true,
        criterion: &[
            "--bench",
            "--noplot",
            "--warm-up-time",
            "0.2",
            "--measurement-time",
            "0.5",
            "--sample-size",
            "10",
        ],
        calls: (100, 1_100),
        interleaved: (100, 200),
        onfault: &["--bench", "--quick", "--tsv"],
    };
}

fn run(plan: &Plan) -> util::Result {
    let machine = Machine::read();
    let benches = build()?;
    let exe = |name: &str| -> util::Result<&PathBuf> {
        benches
            .get(name)
            .ok_or_else(|| format!("cargo built no bench named {name:?}"))
    };
    let overhead_exe = exe("overhead")?;
    // <target>/release/deps/overhead-<hash>
    let target_dir = overhead_exe
        .ancestors()
        .nth(3)
        .ok_or("bench executable outside a target directory")?;
    let out_dir = target_dir.join("xtask-bench");
    let criterion_home = out_dir.join("criterion");
    if criterion_home.exists() {
        fs::remove_dir_all(&criterion_home)
            .map_err(|e| format!("removing {}: {e}", criterion_home.display()))?;
    }
    fs::create_dir_all(&out_dir).map_err(|e| format!("creating {}: {e}", out_dir.display()))?;

    // Criterion benches: overhead, then status if it exists.
    let mut criterion_names = vec!["overhead"];
    if benches.contains_key("status") {
        criterion_names.push("status");
    }
    let mut status_paired = None;
    for name in &criterion_names {
        let mut cmd = Command::new(exe(name)?);
        cmd.args(plan.criterion)
            .env("CRITERION_HOME", &criterion_home);
        if *name == "status" {
            // Its summary ends with the ratios timed in alternation, which
            // criterion's files do not hold.
            let out = util::output(&mut cmd)?;
            print!("{out}");
            status_paired = out
                .lines()
                .find_map(|l| l.trim_start().strip_prefix("paired "))
                .map(str::to_string);
        } else {
            util::run(&mut cmd)?;
        }
    }
    let estimates = read_criterion(&criterion_home)?;

    let interleaved = parse_interleaved(&util::output(
        Command::new(overhead_exe)
            .arg("--interleaved")
            .arg(plan.interleaved.0.to_string())
            .arg(plan.interleaved.1.to_string()),
    )?)?;
    let instructions = count_instructions(overhead_exe, plan, &out_dir)?;
    let parse_instructions = match benches.get("status") {
        Some(exe) => Some(count_parse_instructions(exe, plan, &out_dir)?),
        None => None,
    };

    let onfault_out = util::output(Command::new(exe("onfault")?).args(plan.onfault))?;
    let onfault = parse_onfault(&onfault_out)?;

    let load_after = Machine::loadavg();
    let report = Report {
        plan,
        machine,
        load_after,
        estimates,
        interleaved,
        instructions,
        onfault,
        status_paired,
        parse_instructions,
    };
    let tables = report.tables();
    println!("\n{tables}");

    let docs = if plan.quick {
        out_dir.clone()
    } else {
        util::root().join("docs")
    };
    fs::create_dir_all(&docs).map_err(|e| format!("creating {}: {e}", docs.display()))?;
    let md = docs.join("benchmarks.md");
    let svg = docs.join("onfault.svg");
    fs::write(&md, report.markdown(&tables))
        .map_err(|e| format!("writing {}: {e}", md.display()))?;
    plot(&report.onfault, &report.plot_caption(), &svg)?;
    eprintln!("xtask: wrote {} and {}", md.display(), svg.display());
    Ok(())
}

/// Builds the benches in the bench profile and returns their executables
/// by name.
fn build() -> util::Result<BTreeMap<String, PathBuf>> {
    let mut cmd = util::cargo();
    cmd.args([
        "bench",
        "--no-run",
        "--message-format=json-render-diagnostics",
        "--package",
        "mlock",
        "--bench",
        "overhead",
        "--bench",
        "onfault",
    ]);
    if util::root().join("benches/status.rs").exists() {
        cmd.args(["--bench", "status"]);
    }
    let out = util::output(&mut cmd)?;
    Ok(util::cargo_executables(&out)
        .into_iter()
        .filter(|built| built.kind == ["bench"])
        .map(|built| (built.name, built.executable))
        .collect())
}

/// One criterion benchmark's median, with its 95 % confidence interval, in
/// nanoseconds.
struct Estimate {
    group: String,
    function: String,
    median: f64,
    lower: f64,
    upper: f64,
}

/// Reads every `<group>/<function>[/<value>]/new/` that criterion wrote.
fn read_criterion(home: &Path) -> util::Result<Vec<Estimate>> {
    let mut found = Vec::new();
    let mut stack = vec![home.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = fs::read_dir(&dir).map_err(|e| format!("reading {}: {e}", dir.display()))?;
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
                .map_err(|e| format!("reading {}: {e}", dir.join(file).display()))
        };
        estimates.push(
            estimate(&read("benchmark.json")?, &read("estimates.json")?)
                .map_err(|e| format!("{e} in {}", dir.display()))?,
        );
    }
    if estimates.is_empty() {
        return Err(format!(
            "criterion wrote no estimates under {}",
            home.display()
        ));
    }
    Ok(estimates)
}

/// One benchmark's median from criterion's `benchmark.json` (its ids) and
/// `estimates.json` (its statistics).
fn estimate(benchmark: &str, estimates: &str) -> util::Result<Estimate> {
    let parse = |text: &str, file: &str| {
        serde_json::from_str::<serde_json::Value>(text).map_err(|e| format!("{file}: {e}"))
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
        v[key].as_f64().ok_or_else(|| format!("no median {key}"))
    };
    Ok(Estimate {
        group: id("group_id").unwrap_or_default(),
        function,
        median: num(median, "point_estimate")?,
        lower: num(&median["confidence_interval"], "lower_bound")?,
        upper: num(&median["confidence_interval"], "upper_bound")?,
    })
}

/// User-space instructions per `mlockall(MCL_FUTURE)` + `munlockall()` pair,
/// for each implementation, from two callgrind runs that count only inside
/// the bench's `pair_<impl>` function and what it calls (PLT, libc): the
/// difference of the totals over the difference of the pair counts.
fn count_instructions(exe: &Path, plan: &Plan, out_dir: &Path) -> util::Result<Vec<(String, f64)>> {
    util::ensure_debian_packages(&["valgrind"])?;
    let mut counts = Vec::new();
    for name in IMPLS {
        let mut totals = [0u64; 2];
        for (total, n) in totals.iter_mut().zip([plan.calls.0, plan.calls.1]) {
            let file = out_dir.join(format!("callgrind.{name}.{n}"));
            util::run(
                Command::new("valgrind")
                    .args(["-q", "--tool=callgrind"])
                    .arg(format!("--toggle-collect=*::pair_{name}"))
                    .arg(format!("--callgrind-out-file={}", file.display()))
                    .arg(exe)
                    .args(["--calls", name, &n.to_string()]),
            )?;
            *total = callgrind_total(&file)?;
        }
        let per_pair = (totals[1] as f64 - totals[0] as f64) / (plan.calls.1 - plan.calls.0) as f64;
        if per_pair <= 0.0 {
            return Err(format!(
                "callgrind counted no instructions in pair_{name}: \
                 was it inlined, or renamed in benches/overhead.rs?"
            ));
        }
        counts.push((name.to_string(), per_pair));
    }
    Ok(counts)
}

/// The instruction total of a callgrind output file (its `totals:` or
/// `summary:` line).
fn callgrind_total(file: &Path) -> util::Result<u64> {
    let text = fs::read_to_string(file).map_err(|e| format!("reading {}: {e}", file.display()))?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("no instruction total in {}", file.display()))
}

/// Instructions per `Status::parse` of this machine's `/proc/self/status`,
/// counted by callgrind inside the status bench's `parse_once` over two
/// runs, as for the call pair; and the size of the text parsed.
fn count_parse_instructions(exe: &Path, plan: &Plan, out_dir: &Path) -> util::Result<(f64, u64)> {
    let mut totals = [0u64; 2];
    let mut bytes = 0;
    for (total, n) in totals.iter_mut().zip([plan.calls.0, plan.calls.1]) {
        let file = out_dir.join(format!("callgrind.parse.{n}"));
        let out = util::output(
            Command::new("valgrind")
                .args(["-q", "--tool=callgrind", "--toggle-collect=*::parse_once"])
                .arg(format!("--callgrind-out-file={}", file.display()))
                .arg(exe)
                .args(["--parse-calls", &n.to_string()]),
        )?;
        bytes = out.trim().parse().unwrap_or(0);
        *total = callgrind_total(&file)?;
    }
    let per_parse = (totals[1] as f64 - totals[0] as f64) / (plan.calls.1 - plan.calls.0) as f64;
    if per_parse <= 0.0 {
        return Err("callgrind counted no instructions in parse_once".into());
    }
    Ok((per_parse, bytes))
}

/// Parses `overhead --interleaved`: `impl wall_ns cpu_ns` per line.
fn parse_interleaved(text: &str) -> util::Result<Vec<(String, f64, f64)>> {
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
    if rows.len() != IMPLS.len() {
        return Err(format!("overhead --interleaved printed {text:?}"));
    }
    Ok(rows)
}

/// One row of `onfault --tsv`: the medians of one call at one size.
struct OnfaultRow {
    size: u64,
    call: String,
    median_ns: u64,
    min_ns: u64,
    max_ns: u64,
    rss_after: u64,
    locked_after: u64,
    runs: u64,
}

fn parse_onfault(tsv: &str) -> util::Result<Vec<OnfaultRow>> {
    let mut rows = Vec::new();
    for line in tsv.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split('\t').collect();
        let n = |i: usize| -> util::Result<u64> {
            f.get(i)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("bad onfault row {line:?}"))
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
    if rows.is_empty() {
        return Err("benches/onfault.rs printed no rows".into());
    }
    Ok(rows)
}

/// Where the numbers were taken.
struct Machine {
    cpu: String,
    cores: usize,
    kernel: String,
    memory: String,
    swap: String,
    thp: String,
    rustc: String,
    commit: String,
    date: String,
    load_before: String,
}

impl Machine {
    fn read() -> Machine {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let field = |text: &str, key: &str| {
            text.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_else(|| "unknown".into())
        };
        let kib = |v: String| {
            v.trim_end_matches(" kB")
                .parse::<u64>()
                .map(|k| format!("{:.1} GiB", k as f64 / (1 << 20) as f64))
                .unwrap_or(v)
        };
        let quiet = |prog: &str, args: &[&str]| {
            Command::new(prog)
                .args(args)
                .current_dir(util::root())
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_else(|| "unknown".into())
        };
        Machine {
            cpu: field(&cpuinfo, "model name"),
            cores: cpuinfo
                .lines()
                .filter(|l| l.starts_with("processor"))
                .count(),
            kernel: format!(
                "Linux {} ({})",
                fs::read_to_string("/proc/sys/kernel/osrelease")
                    .unwrap_or_default()
                    .trim(),
                std::env::consts::ARCH
            ),
            memory: kib(field(&meminfo, "MemTotal")),
            swap: kib(field(&meminfo, "SwapTotal")),
            thp: fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "unknown".into()),
            rustc: quiet("rustc", &["-V"]),
            commit: quiet("git", &["rev-parse", "--short", "HEAD"]),
            date: quiet("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            load_before: Machine::loadavg(),
        }
    }

    /// The 1, 5 and 15 minute load averages.
    fn loadavg() -> String {
        fs::read_to_string("/proc/loadavg")
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|_| "unknown".into())
    }
}

struct Report<'a> {
    plan: &'a Plan,
    machine: Machine,
    load_after: String,
    estimates: Vec<Estimate>,
    /// Per implementation: median wall and CPU nanoseconds per pair, timed
    /// in turns.
    interleaved: Vec<(String, f64, f64)>,
    instructions: Vec<(String, f64)>,
    onfault: Vec<OnfaultRow>,
    /// The status bench's ratios to the floor timed in alternation: its
    /// `paired` line, which also says how they were timed.
    status_paired: Option<String>,
    /// Instructions per `Status::parse` of a real status file (callgrind).
    parse_instructions: Option<(f64, u64)>,
}

/// A duration in nanoseconds, with a unit that keeps 3 or 4 digits.
fn time(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.1} ns")
    } else if ns < 1e6 {
        format!("{:.2} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

/// An instruction count: whole when it is (callgrind's counts per pair
/// usually are), else with one decimal.
fn count(n: f64) -> String {
    if n.fract() == 0.0 {
        format!("{n:.0}")
    } else {
        format!("{n:.1}")
    }
}

/// A byte count in MiB or GiB.
fn bytes(b: u64) -> String {
    let mib = b as f64 / (1u64 << 20) as f64;
    if mib >= 1024.0 {
        format!("{:.2} GiB", mib / 1024.0)
    } else {
        format!("{mib:.1} MiB")
    }
}

/// Text for a Markdown table cell: a `|`, even in code, ends the cell
/// unless escaped.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// A mapping size: whole MiB or GiB.
fn size(b: u64) -> String {
    if b >= 1 << 30 {
        format!("{} GiB", b >> 30)
    } else {
        format!("{} MiB", b >> 20)
    }
}

impl Report<'_> {
    fn command(&self) -> &'static str {
        if self.plan.quick {
            "cargo xtask bench --quick"
        } else {
            "cargo xtask bench"
        }
    }

    /// The tables, in Markdown, which also reads well in a terminal.
    fn tables(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "### Call overhead: `mlockall(MCL_FUTURE)` + `munlockall()`\n\n\
             Per pair, three ways. **criterion**: the median wall-clock time \
             with its 95 % confidence interval; criterion measures the four \
             one after the other. **In turns**: rounds of {} pairs through each \
             implementation in turn, {} rounds, the median wall-clock and \
             thread CPU time (user plus kernel, without the time spent waiting \
             for a core); a burst of load on the machine falls on all four \
             alike. **Instructions**: user-space instructions from the call of \
             the pair to its return, the C library and PLT included, counted \
             by callgrind; they do not depend on the machine's load, and leave \
             out the kernel's work, which is the same for all four. Each ratio \
             is this crate's figure divided by the row's: below 1.00, this \
             crate is faster or runs fewer instructions.\n",
            self.plan.interleaved.1, self.plan.interleaved.0
        );
        let _ = writeln!(
            t,
            "| implementation | criterion [95 % CI] | ratio | in turns, wall | ratio | in turns, CPU | ratio | instructions | ratio |"
        );
        let _ = writeln!(t, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        let find = |f: &str| {
            self.estimates
                .iter()
                .find(|e| e.group == "overhead" && e.function == f)
        };
        let ratio = |ours: Option<f64>, theirs: Option<f64>| match (ours, theirs) {
            (Some(o), Some(t)) if t > 0.0 => format!("{:.2}", o / t),
            _ => "–".into(),
        };
        let turns = |name: &str| self.interleaved.iter().find(|r| r.0 == name);
        let instructions = |name: &str| {
            self.instructions
                .iter()
                .find(|(n, _)| n == name)
                .map(|x| x.1)
        };
        for name in IMPLS {
            let crit = find(name).map_or("–".into(), |e| {
                format!("{} [{} – {}]", time(e.median), time(e.lower), time(e.upper))
            });
            let crit_ratio = ratio(
                find("mlock").map(|e| e.median),
                find(name).map(|e| e.median),
            );
            let wall = turns(name).map_or("–".into(), |r| time(r.1));
            let wall_ratio = ratio(turns("mlock").map(|r| r.1), turns(name).map(|r| r.1));
            let cpu = turns(name).map_or("–".into(), |r| time(r.2));
            let cpu_ratio = ratio(turns("mlock").map(|r| r.2), turns(name).map(|r| r.2));
            let ins = instructions(name).map_or("–".into(), count);
            let ins_ratio = ratio(instructions("mlock"), instructions(name));
            let label = if name == "mlock" {
                "**mlock** (this crate)".to_string()
            } else {
                format!("`{name}`")
            };
            let _ = writeln!(
                t,
                "| {label} | {crit} | {crit_ratio} | {wall} | {wall_ratio} | {cpu} | {cpu_ratio} | {ins} | {ins_ratio} |"
            );
        }

        let sizes: Vec<u64> = {
            let mut s: Vec<u64> = self.onfault.iter().map(|r| r.size).collect();
            s.dedup();
            s
        };
        let runs = self.onfault.first().map_or(0, |r| r.runs);
        let _ = writeln!(
            t,
            "\n### What `ONFAULT` saves: locking an untouched mapping\n\n\
             A fresh process maps an anonymous region, does not touch it, and \
             locks it with one call. Median of {runs} runs (each in its own \
             process) for the time of the call; RSS and `VmLck` from \
             `/proc/self/status` right after it. `lock_all` also locks the \
             process's own few MiB of code, stack and heap.\n"
        );
        let _ = writeln!(
            t,
            "| mapping | call | time (median) | fastest – slowest | RSS after | VmLck after |"
        );
        let _ = writeln!(t, "|---:|---|---:|---:|---:|---:|");
        for &s in &sizes {
            for r in self.onfault.iter().filter(|r| r.size == s) {
                let _ = writeln!(
                    t,
                    "| {} | `{}` | {} | {} – {} | {} | {} |",
                    size(s),
                    cell(&r.call),
                    time(r.median_ns as f64),
                    time(r.min_ns as f64),
                    time(r.max_ns as f64),
                    bytes(r.rss_after),
                    bytes(r.locked_after)
                );
            }
        }
        if let (Some(first), Some(last)) = (sizes.first(), sizes.last()) {
            let _ = writeln!(
                t,
                "\nFrom {} to {} ({}× the size):\n",
                size(*first),
                size(*last),
                last / first
            );
            let _ = writeln!(t, "| call | time grows | RSS grows |");
            let _ = writeln!(t, "|---|---:|---:|");
            for call in self.onfault.iter().filter(|r| r.size == *first) {
                if let Some(big) = self
                    .onfault
                    .iter()
                    .find(|r| r.size == *last && r.call == call.call)
                {
                    let _ = writeln!(
                        t,
                        "| `{}` | {:.1}× | {:.1}× |",
                        cell(&call.call),
                        big.median_ns as f64 / call.median_ns.max(1) as f64,
                        big.rss_after as f64 / call.rss_after.max(1) as f64
                    );
                }
            }
        }

        // Every other criterion group: the status bench. Ratios to its
        // `floor` (the least any reader of the file can do) and of the
        // crate's own `status` to each row, where those rows exist.
        let mut groups: Vec<&str> = self
            .estimates
            .iter()
            .map(|e| e.group.as_str())
            .filter(|g| !g.starts_with("overhead"))
            .collect();
        groups.sort_unstable();
        groups.dedup();
        for group in groups {
            let mut rows: Vec<&Estimate> =
                self.estimates.iter().filter(|e| e.group == group).collect();
            let rank = |f: &str| STATUS_ROWS.iter().position(|(n, _)| *n == f);
            rows.sort_by(|a, b| {
                (rank(&a.function).unwrap_or(usize::MAX), &a.function)
                    .cmp(&(rank(&b.function).unwrap_or(usize::MAX), &b.function))
            });
            let floor = rows
                .iter()
                .find(|e| e.function == "floor")
                .map(|e| e.median);
            let ours = rows.iter().find(|e| e.function == group).map(|e| e.median);
            let _ = writeln!(
                t,
                "\n### Reading `/proc/self/status` (group `{group}`, benches/status.rs)\n\n\
                 Median time of one query and its 95 % confidence interval; \
                 `÷ floor`: this row's median over `floor`'s; `{group} ÷ this`: \
                 the crate's `{group}` median over this row's (below 1.00: the \
                 crate is faster).\n"
            );
            let _ = writeln!(
                t,
                "| benchmark | what it does | median | 95 % CI | ÷ floor | {group} ÷ this |"
            );
            let _ = writeln!(t, "|---|---|---:|---:|---:|---:|");
            for e in &rows {
                let what = rank(&e.function).map_or("", |i| STATUS_ROWS[i].1);
                let ratio = |r: Option<f64>, num: bool| {
                    r.map_or("–".into(), |r| {
                        format!("{:.2}", if num { e.median / r } else { r / e.median })
                    })
                };
                let _ = writeln!(
                    t,
                    "| `{}` | {what} | {} | {} – {} | {} | {} |",
                    e.function,
                    time(e.median),
                    time(e.lower),
                    time(e.upper),
                    ratio(floor, true),
                    ratio(ours, false),
                );
            }
            if let Some(paired) = &self.status_paired {
                let _ = writeln!(
                    t,
                    "\nTimed in alternation instead, so that load on the machine \
                     shifts every row alike {paired}."
                );
            }
            let _ = write!(t, "{}", self.status_goals(&rows));
        }
        t
    }

    /// The status goals against this machine's own floor: the absolute
    /// floor, bare `pread` and parse, then each ratio from criterion's
    /// medians and from the alternating rounds.
    fn status_goals(&self, rows: &[&Estimate]) -> String {
        let median = |f: &str| rows.iter().find(|e| e.function == f).map(|e| e.median);
        let (Some(floor), Some(pread), Some(parse)) =
            (median("floor"), median("pread"), median("parse"))
        else {
            return String::new();
        };
        let counted = self.parse_instructions.map_or(String::new(), |(n, bytes)| {
            format!(
                "; callgrind counts {} instructions per parse of a {bytes}-byte \
                 status, whatever the load",
                count(n.round())
            )
        });
        let mut t = format!(
            "\nOn this machine the floor is {}, a bare `pread` {} and the parse \
             alone {} ({:.1} % of the floor, {:.1} % of `pread`){counted}.\n\n\
             | goal | criterion medians | alternating rounds | met |\n\
             |---|---:|---:|---|\n",
            time(floor),
            time(pread),
            time(parse),
            100.0 * parse / floor,
            100.0 * parse / pread
        );
        for (num, den, bound) in STATUS_GOALS {
            let ratio = match (median(num), median(den)) {
                (Some(n), Some(d)) => Some(n / d),
                _ => None,
            };
            // The paired line reads `..., status/floor 1.012, ...`.
            let key = format!("{num}/{den} ");
            let alternating = self.status_paired.as_deref().and_then(|p| {
                let at = p.find(&key)? + key.len();
                p[at..].split([',', ' ', ')']).next()?.parse::<f64>().ok()
            });
            let show = |r: Option<f64>| r.map_or("–".into(), |r| format!("{r:.3}"));
            let met = match (ratio, alternating) {
                (Some(r), Some(a)) if r <= bound && a <= bound => "yes, both",
                (Some(r), _) if r <= bound => "criterion only",
                (_, Some(a)) if a <= bound => "alternating only",
                _ => "no",
            };
            let _ = writeln!(
                t,
                "| `{num}` ÷ `{den}` ≤ {bound:.2} | {} | {} | {met} |",
                show(ratio),
                show(alternating)
            );
        }
        t
    }

    fn plot_caption(&self) -> String {
        let runs = self.onfault.first().map_or(0, |r| r.runs);
        format!(
            "Locking an untouched anonymous mapping: median of {runs} runs, a fresh process each ({})",
            self.machine.kernel
        )
    }

    fn markdown(&self, tables: &str) -> String {
        let m = &self.machine;
        let mut s = String::new();
        let _ = writeln!(s, "# Benchmarks\n");
        if self.plan.quick {
            let _ = writeln!(
                s,
                "> A `--quick` run: few samples, small mappings. It checks that the \
                 benchmarks build and run; its numbers are not meant to be quoted.\n"
            );
        }
        let _ = writeln!(
            s,
            "Written by `{}` (see `xtask/src/bench.rs`). Every figure on this page \
             comes from one run, so each ratio compares numbers taken minutes apart \
             on the same machine. That machine was shared: other builds and virtual \
             machines ran on its {} cores at the same time (load average {} at the \
             start, {} at the end), so the times carry that noise. The \
             instruction counts do not.\n",
            self.command(),
            m.cores,
            m.load_before,
            self.load_after
        );
        let _ = writeln!(s, "## Machine\n");
        let _ = writeln!(s, "| | |\n|---|---|");
        let _ = writeln!(s, "| CPU | {} |", m.cpu);
        let _ = writeln!(s, "| cores | {} |", m.cores);
        let _ = writeln!(s, "| kernel | {} |", m.kernel);
        let _ = writeln!(s, "| memory | {}, swap {} |", m.memory, m.swap);
        let _ = writeln!(s, "| transparent huge pages | `{}` |", m.thp);
        let _ = writeln!(s, "| compiler | {} |", m.rustc);
        let _ = writeln!(s, "| commit | {} |", m.commit);
        let _ = writeln!(s, "| date | {} |", m.date);
        let _ = writeln!(s, "| command | `{}` |", self.command());
        let _ = writeln!(s, "\n## Results\n");
        let _ = writeln!(s, "![Time and RSS after locking an untouched mapping, with and without ONFAULT](onfault.svg)\n");
        s.push_str(&tables.replace("\n### ", "\n## ").replacen("### ", "## ", 1));
        let _ = writeln!(
            s,
            "\n## Reading the numbers\n\n\
             - The call-overhead pair does almost no work in the kernel: \
             `MCL_FUTURE` alone sets a flag on the memory map and `munlockall` \
             clears it. What differs between the implementations is the path to \
             the `syscall` instruction: this crate and rustix issue it inline; \
             libc and nix go through the C library (a PLT call, and `errno` on \
             failure). The kernel's part, about the same for all four, is most \
             of the time, so the time ratios sit near 1.00 and the instruction \
             counts show the user-space difference.\n\
             - Wall time includes the moments the thread waited for a core while \
             other processes ran; CPU time does not. Timing the four in turns \
             spreads changes in the machine's load over all of them; criterion, \
             which runs one after the other, can see one implementation in a \
             quiet minute and the next in a busy one.\n\
             - Without `ONFAULT`, `mlock` and `mlockall(MCL_CURRENT)` fault in \
             and zero every page before they return, so the time and the RSS grow \
             with the mapping. With `ONFAULT` the call only marks the mapping; \
             pages are locked as they are first touched. \
             `lock_all(CURRENT | ONFAULT)` still costs more than \
             `lock_on_fault`: it visits every mapping of the process, not one, \
             and locks the pages already present in them.\n\
             - `VmLck` counts the size of locked mappings, not resident pages: \
             it reads the same with `ONFAULT` as without. Look at `VmRSS` to see \
             what was faulted in.\n\n\
             ## Running them\n\n\
             - `cargo xtask bench` runs everything and rewrites this page and \
             `onfault.svg`; `cargo xtask bench --quick` is the CI-size run and \
             writes under `target/xtask-bench/`.\n\
             - One benchmark alone: `cargo bench --bench overhead` (add \
             `-- --interleaved <rounds> <pairs>` for the timing in turns), \
             `cargo bench --bench onfault` (`-- --quick` for sizes up to \
             256 MiB).\n\
             - The instruction counts: `valgrind --tool=callgrind \
             --toggle-collect='*::pair_<impl>' <overhead bench binary> --calls \
             <impl> <n>`, with `<impl>` one of `mlock`, `libc`, `rustix`, `nix`, \
             for two values of `n`; the difference of the totals divided by the \
             difference of the `n`s is one pair.\n\
             - Locking 1 GiB needs `CAP_IPC_LOCK` (root) or an \
             `RLIMIT_MEMLOCK` of at least that."
        );
        s
    }
}

/// Draws time and RSS against the mapping size, log-scaled, one line per
/// call.
fn plot(rows: &[OnfaultRow], caption: &str, path: &Path) -> util::Result {
    use plotters::prelude::*;

    let err = |e: &dyn std::fmt::Display| format!("drawing {}: {e}", path.display());
    const MIB: f64 = (1u64 << 20) as f64;
    let series: Vec<(&str, RGBColor, bool)> = vec![
        ("lock_all(CURRENT)", RGBColor(200, 40, 40), true),
        ("lock(region)", RGBColor(230, 140, 20), false),
        ("lock_all(CURRENT | ONFAULT)", RGBColor(30, 90, 200), true),
        ("lock_on_fault(region)", RGBColor(20, 150, 130), false),
    ];
    // The names the bench prints, in the order of `series`.
    let calls = [
        "lock_all(CURRENT)",
        "lock",
        "lock_all(CURRENT|ONFAULT)",
        "lock_on_fault",
    ];
    let points = |call: &str, y: &dyn Fn(&OnfaultRow) -> f64| -> Vec<(f64, f64)> {
        rows.iter()
            .filter(|r| r.call == call)
            .map(|r| (r.size as f64 / MIB, y(r)))
            .collect()
    };
    let sizes: Vec<f64> = {
        let mut s: Vec<f64> = rows.iter().map(|r| r.size as f64 / MIB).collect();
        s.sort_by(f64::total_cmp);
        s.dedup();
        s
    };
    let x_lo = sizes.first().copied().unwrap_or(1.0) / 1.4;
    let x_hi = sizes.last().copied().unwrap_or(1.0) * 1.4;
    let span = |vals: Vec<f64>| {
        let lo = vals.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = vals.iter().copied().fold(0.0, f64::max);
        (lo, hi)
    };
    // Time in microseconds, RSS in MiB.
    let (t_lo, t_hi) = span(rows.iter().map(|r| r.median_ns as f64 / 1e3).collect());
    let (r_lo, r_hi) = span(rows.iter().map(|r| r.rss_after as f64 / MIB).collect());
    let decades = |lo: f64, hi: f64| -> Vec<f64> {
        let mut v = Vec::new();
        let mut p = 10f64.powf(lo.log10().floor());
        while p <= hi * 1.0001 {
            if p >= lo * 0.9999 {
                v.push(p);
            }
            p *= 10.0;
        }
        v
    };
    // Whole decades, with room so that no point sits on the frame.
    let t_range = (
        10f64.powf((t_lo / 1.5).log10().floor()),
        10f64.powf((t_hi * 1.5).log10().ceil()),
    );
    let r_range = (r_lo / 2.0, r_hi * 2.5);
    let r_ticks: Vec<f64> = (0..=12)
        .map(|i| 4f64.powi(i) / 4.0)
        .filter(|v| *v >= r_range.0 && *v <= r_range.1)
        .collect();
    let t_ticks = decades(t_range.0, t_range.1);

    let fmt_size = |v: &f64| {
        if *v >= 1024.0 {
            format!("{} GiB", (v / 1024.0).round())
        } else {
            format!("{} MiB", v.round())
        }
    };
    let fmt_time = |v: &f64| {
        if *v >= 1e6 {
            format!("{} s", v / 1e6)
        } else if *v >= 1e3 {
            format!("{} ms", v / 1e3)
        } else {
            format!("{v} µs")
        }
    };
    let fmt_mib = |v: &f64| {
        if *v >= 1024.0 {
            format!("{} GiB", v / 1024.0)
        } else if *v >= 1.0 {
            format!("{v} MiB")
        } else {
            format!("{} KiB", v * 1024.0)
        }
    };

    let root = SVGBackend::new(path, (1200, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let root = root
        .titled(caption, ("sans-serif", 20))
        .map_err(|e| err(&e))?;
    let (left, right) = root.split_horizontally(600);

    for is_time in [true, false] {
        let (area, title, y_desc, (y_lo, y_hi), ticks): (_, _, _, _, &Vec<f64>) = if is_time {
            (
                &left,
                "Time of the call",
                "time (log scale)",
                t_range,
                &t_ticks,
            )
        } else {
            (
                &right,
                "Resident set (VmRSS) after the call",
                "RSS (log scale)",
                r_range,
                &r_ticks,
            )
        };
        let fmt_y: &dyn Fn(&f64) -> String = if is_time { &fmt_time } else { &fmt_mib };
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 18))
            .margin(14)
            .x_label_area_size(46)
            .y_label_area_size(78)
            .build_cartesian_2d(
                (x_lo..x_hi).log_scale().with_key_points(sizes.clone()),
                (y_lo..y_hi).log_scale().with_key_points(ticks.clone()),
            )
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("mapping size, untouched (log scale)")
            .y_desc(y_desc)
            .x_label_formatter(&fmt_size)
            .y_label_formatter(fmt_y)
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 15))
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(225, 225, 225))
            .draw()
            .map_err(|e| err(&e))?;
        for ((label, color, whole), call) in series.iter().zip(calls) {
            let y: &dyn Fn(&OnfaultRow) -> f64 = if is_time {
                &|r| r.median_ns as f64 / 1e3
            } else {
                &|r| r.rss_after as f64 / MIB
            };
            let data = points(call, y);
            let style = color.stroke_width(2);
            chart
                .draw_series(LineSeries::new(data.clone(), style))
                .map_err(|e| err(&e))?
                .label(*label)
                .legend(move |(x, y)| {
                    let line = PathElement::new(vec![(0, 0), (24, 0)], color.stroke_width(2));
                    let marker: DynElement<_, _> = if *whole {
                        Circle::new((12, 0), 4, color.filled()).into_dyn()
                    } else {
                        TriangleMarker::new((12, 0), 5, color.filled()).into_dyn()
                    };
                    EmptyElement::at((x, y)) + line + marker
                });
            if *whole {
                chart
                    .draw_series(data.iter().map(|&p| Circle::new(p, 4, color.filled())))
                    .map_err(|e| err(&e))?;
            } else {
                chart
                    .draw_series(
                        data.iter()
                            .map(|&p| TriangleMarker::new(p, 5, color.filled())),
                    )
                    .map_err(|e| err(&e))?;
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font(("sans-serif", 14))
            .background_style(WHITE.mix(0.9))
            .border_style(RGBColor(180, 180, 180))
            .draw()
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{cell, count, estimate, parse_onfault, size, time};

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
        let rows = parse_onfault(tsv).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].size, 16 << 20);
        assert_eq!(rows[0].call, "lock_all(CURRENT|ONFAULT)");
        assert_eq!((rows[0].median_ns, rows[0].runs), (120_000, 7));
        assert!(parse_onfault("header only\n").is_err());
        assert!(parse_onfault("h\n1\tx\tnot-a-number\n").is_err());
    }

    #[test]
    fn units() {
        assert_eq!(time(19.0), "19.0 ns");
        assert_eq!(time(1_430.0), "1.43 µs");
        assert_eq!(time(493_240_000.0), "493.24 ms");
        assert_eq!(size(16 << 20), "16 MiB");
        assert_eq!(size(1 << 30), "1 GiB");
        assert_eq!(count(19.0), "19");
        assert_eq!(count(19.5), "19.5");
        assert_eq!(
            cell("lock_all(CURRENT|ONFAULT)"),
            "lock_all(CURRENT\\|ONFAULT)"
        );
    }
}
