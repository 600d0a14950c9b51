//! Secret allocators side by side, in one run: this crate's `Pool` and
//! `LockedBuf` (both backings), libsodium's `sodium_malloc`, memsec's
//! `malloc` and the `secrets` crate's `SecretBox`.
//!
//! 1. **Create + drop** of one 32-byte secret: nanoseconds per pair, the
//!    median of several runs of many pairs; the runs of the
//!    implementations alternate, so a change in the machine's load falls
//!    on all of them.
//! 2. **Live secrets under an 8 MiB `RLIMIT_MEMLOCK`**, as an unprivileged
//!    user: for each implementation a child process (this program again,
//!    `--child`) sets the limit, becomes uid and gid 65534, and allocates
//!    32-byte secrets, keeping each alive, until the first failure or
//!    `--max`. It reports how it ended (an error returned, a panic, a
//!    signal, or the maximum reached), `VmLck` at the end and the mappings
//!    added, through a pipe that keeps its count if a signal kills it.
//!
//! `bench-peers [--runs R] [--pairs P] [--max M]` prints a machine-readable
//! block (between `secrets-bench` and `/secrets-bench`, tab-separated),
//! which `cargo xtask bench` reads, then a table for people. Run it as root
//! (to drop to uid 65534) or as a user without `CAP_IPC_LOCK`, on a Linux
//! host whose hard `RLIMIT_MEMLOCK` is at least 8 MiB or that has
//! `CAP_SYS_RESOURCE`.

mod child;
mod peers;
mod sodium;

use std::os::unix::process::ExitStatusExt as _;
use std::process::{Command, ExitCode, Stdio};

use peers::{Peer, Timing};

const USAGE: &str = "usage: bench-peers [--runs R] [--pairs P] [--max M]";

/// What a run measures: how many runs of how many pairs, and the most
/// secrets counted.
struct Plan {
    runs: usize,
    pairs: u32,
    max: usize,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        let peer = args.get(1).and_then(|id| Peer::from_id(id));
        let max = args.get(2).and_then(|m| m.parse().ok());
        match (peer, max) {
            (Some(peer), Some(max)) => child::main(peer, max),
            _ => {
                eprintln!("usage: bench-peers --child <implementation> <max>");
                return ExitCode::from(2);
            }
        }
    }
    let plan = match parse(&args) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("bench-peers: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&plan) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-peers: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The command line: `--runs`, `--pairs`, `--max`, each with a number.
fn parse(args: &[String]) -> Result<Plan, String> {
    let mut plan = Plan {
        runs: 7,
        pairs: 5_000,
        max: 100_000,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || -> Result<u64, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .filter(|&v| v > 0)
                .ok_or_else(|| format!("{flag} takes a positive number"))
        };
        match flag.as_str() {
            "--runs" => plan.runs = value()? as usize,
            "--pairs" => plan.pairs = u32::try_from(value()?).map_err(|e| e.to_string())?,
            "--max" => plan.max = value()? as usize,
            "-h" | "--help" => return Err("help".into()),
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    Ok(plan)
}

/// One implementation's create + drop timing: the median, fastest and
/// slowest run in nanoseconds per pair, or why it could not be timed.
type Timed = Result<(f64, f64, f64), String>;

/// How one implementation's count ended.
struct Counted {
    alive: usize,
    /// `reached`, `error`, `panic`, `signal` or `failed`.
    how: String,
    detail: String,
    vmlck_kb: Option<u64>,
    maps_added: Option<i64>,
}

fn run(plan: &Plan) -> Result<(), String> {
    let timing = Timing::new()?;
    let mut timed: Vec<Timed> = Vec::new();
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); Peer::ALL.len()];
    // A warm-up of a tenth of a run each; an implementation that fails
    // here (secretmem not offered) is reported, not timed.
    let warm = (plan.pairs / 10).max(1);
    let usable: Vec<Result<(), String>> = Peer::ALL
        .iter()
        .map(|&p| timing.pairs(p, warm).map(|_| ()))
        .collect();
    for _ in 0..plan.runs {
        for (i, &peer) in Peer::ALL.iter().enumerate() {
            if usable[i].is_ok() {
                samples[i].push(timing.pairs(peer, plan.pairs)?);
            }
        }
    }
    for (i, s) in samples.iter_mut().enumerate() {
        timed.push(match &usable[i] {
            Err(e) => Err(e.clone()),
            Ok(()) => {
                s.sort_by(f64::total_cmp);
                Ok((s[s.len() / 2], s[0], s[s.len() - 1]))
            }
        });
    }
    drop(timing);

    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut counted = Vec::new();
    for peer in Peer::ALL {
        eprintln!("bench-peers: counting {} ...", peer.id());
        counted.push(count(&exe, peer, plan.max)?);
    }

    print_block(plan, &timed, &counted);
    print_table(plan, &timed, &counted);
    Ok(())
}

/// Runs the counting child for `peer` and reads its report.
fn count(exe: &std::path::Path, peer: Peer, max: usize) -> Result<Counted, String> {
    let out = Command::new(exe)
        .args(["--child", peer.id(), &max.to_string()])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("running the counting child: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut before = None;
    let mut alive = 0;
    let mut end: Option<Vec<&str>> = None;
    for line in text.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        match fields[0] {
            "before" => before = fields.get(1).and_then(|v| v.parse::<i64>().ok()),
            "n" => alive = fields.get(1).and_then(|v| v.parse().ok()).unwrap_or(alive),
            "end" if fields.len() == 6 => end = Some(fields),
            _ => {}
        }
    }
    let signal = out.status.signal().map(signal_name);
    Ok(match end {
        Some(f) => Counted {
            alive: f[3].parse().unwrap_or(alive),
            how: f[1].to_string(),
            detail: match (f[1], &signal) {
                // The panic ended in an abort: say so.
                ("panic", Some(sig)) => format!("{} (then {sig})", f[2]),
                _ => f[2].to_string(),
            },
            vmlck_kb: f[4].parse().ok(),
            maps_added: f[5]
                .parse::<i64>()
                .ok()
                .zip(before)
                .map(|(after, before)| after - before),
        },
        // No report: killed before it could write one (SIGKILL), or the
        // child failed to start counting.
        None => Counted {
            alive,
            how: if signal.is_some() { "signal" } else { "failed" }.into(),
            detail: signal.unwrap_or_else(|| format!("exit status {}", out.status)),
            vmlck_kb: None,
            maps_added: None,
        },
    })
}

/// A signal's name, for the signals a counting child may die of.
fn signal_name(signal: i32) -> String {
    match signal {
        libc::SIGSEGV => "SIGSEGV".into(),
        libc::SIGBUS => "SIGBUS".into(),
        libc::SIGABRT => "SIGABRT".into(),
        libc::SIGKILL => "SIGKILL".into(),
        libc::SIGILL => "SIGILL".into(),
        libc::SIGFPE => "SIGFPE".into(),
        libc::SIGTRAP => "SIGTRAP".into(),
        n => format!("signal {n}"),
    }
}

/// The machine-readable block, tab-separated:
/// `secrets-bench` with the plan's settings and libsodium's version; a
/// `time` line per implementation (median, fastest, slowest in ns per
/// pair, or `-` and the reason); a `count` line per implementation (alive,
/// how, detail, VmLck kB, mappings added; `-` where unknown);
/// `/secrets-bench`.
fn print_block(plan: &Plan, timed: &[Timed], counted: &[Counted]) {
    println!(
        "secrets-bench\truns\t{}\tpairs\t{}\tmax\t{}\tlimit\t{}\tuid\t{}\tlibsodium\t{}",
        plan.runs,
        plan.pairs,
        plan.max,
        child::LIMIT,
        child::NOBODY,
        sodium::version()
    );
    for (peer, t) in Peer::ALL.iter().zip(timed) {
        match t {
            Ok((median, lo, hi)) => {
                println!("time\t{}\t{median:.1}\t{lo:.1}\t{hi:.1}", peer.id())
            }
            Err(e) => println!("time\t{}\t-\t-\t-\t{e}", peer.id()),
        }
    }
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    for (peer, c) in Peer::ALL.iter().zip(counted) {
        println!(
            "count\t{}\t{}\t{}\t{}\t{}\t{}",
            peer.id(),
            c.alive,
            c.how,
            c.detail.replace('\t', " "),
            opt(c.vmlck_kb.map(|v| v.to_string())),
            opt(c.maps_added.map(|v| v.to_string())),
        );
    }
    println!("/secrets-bench");
}

/// The same figures for people: ratios to the crate's `Pool`.
fn print_table(plan: &Plan, timed: &[Timed], counted: &[Counted]) {
    println!(
        "\ncreate + drop of a 32-byte secret: median of {} runs of {} pairs; \
         live secrets: RLIMIT_MEMLOCK 8 MiB, uid 65534, at most {}\n",
        plan.runs, plan.pairs, plan.max
    );
    let pool = timed[0].as_ref().ok().map(|t| t.0);
    let rows: Vec<[String; 7]> = Peer::ALL
        .iter()
        .zip(timed.iter().zip(counted))
        .map(|(peer, (t, c))| {
            let (time, ratio) = match (t, pool) {
                (Ok((m, _, _)), Some(p)) => (format!("{m:.0} ns"), format!("{:.1}x", m / p)),
                (Ok((m, _, _)), None) => (format!("{m:.0} ns"), "-".into()),
                (Err(e), _) => (format!("not timed: {e}"), "-".into()),
            };
            let ended = if c.detail.is_empty() {
                c.how.clone()
            } else {
                format!("{}: {}", c.how, c.detail)
            };
            [
                peer.label().to_string(),
                time,
                ratio,
                c.alive.to_string(),
                ended,
                c.vmlck_kb.map_or("-".into(), |v| format!("{v} kB")),
                c.maps_added.map_or("-".into(), |v| v.to_string()),
            ]
        })
        .collect();
    let header = [
        "implementation",
        "create + drop",
        "/ Pool",
        "live",
        "how it ended",
        "VmLck",
        "mappings added",
    ];
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
}
