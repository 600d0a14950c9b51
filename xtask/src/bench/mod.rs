//! `cargo xtask bench [--quick]`: every benchmark in one run, side by side.
//!
//! 1. Call overhead (`benches/overhead.rs`, criterion): one
//!    `mlockall(MCL_FUTURE)` + `munlockall()` pair through this crate, libc,
//!    rustix and nix; medians and the ratio to each peer, plus user-space
//!    instructions per pair counted by `valgrind --tool=callgrind`, which
//!    does not care how busy the machine is. Then the goals on what the
//!    crate's record of its locks costs, timed in pairs against libc:
//!    `lock_all(FUTURE)` + `unlock_all()` against `mlockall` + `munlockall`,
//!    and `LockGuard::new` + drop of one page against `mlock` + `munlock`.
//! 2. What `ONFAULT` saves (`benches/onfault.rs`): time and RSS of locking an
//!    untouched mapping of 16 MiB to 1 GiB, each case in a fresh process.
//! 3. Status queries (`benches/status.rs`, criterion), when that bench exists,
//!    then the goals' comparisons again, timed in pairs of calls back to back.
//! 4. Secret allocators side by side (`bench-peers/`, a workspace member of
//!    its own so that its peers never become the crate's dependencies): the
//!    crate's `Pool` and `LockedBuf` against libsodium's `sodium_malloc`,
//!    memsec and the `secrets` crate; create + drop of a 32-byte secret,
//!    and how many live secrets fit under an 8 MiB `RLIMIT_MEMLOCK` as an
//!    unprivileged user, with how each ended. Its table goes into both
//!    docs/benchmarks.md and docs/secrets.md, its figure is
//!    `docs/secrets.svg`. It installs the system libsodium first.
//!
//! `docs/benchmarks.md` is written by hand, except for its blocks between
//! `<!-- xtask bench: <name> -->` and `<!-- /xtask bench -->`: a full run
//! fills those in and draws `docs/onfault.svg`; it also fills the
//! `secrets` block of docs/secrets.md and draws `docs/secrets.svg`.
//! `--quick` is a CI-size run (few samples, mappings up to 256 MiB, up to
//! 20,000 live secrets) that checks that everything builds and runs; it
//! writes the filled pages and the figures under
//! `target/xtask-bench/` and leaves `docs/` alone. No number ever fails a
//! run: the goal tables say whether this machine met each bound.
//!
//! Here: the plan and the run from build to page; `run` builds the benches
//! and counts instructions, `parse` reads their output, `machine` describes
//! the machine, `report` makes the tables, `plot` the figures, `secrets`
//! builds, runs and reads `bench-peers`.

mod machine;
mod parse;
mod plot;
mod report;
mod run;
mod secrets;

pub(crate) use secrets::PACKAGES as PEER_PACKAGES;

use anyhow::Context as _;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

use crate::util;
use machine::Machine;
use report::Report;

const USAGE: &str = "usage: cargo xtask bench [--quick]";

/// The implementations of `benches/overhead.rs`, this crate first.
pub(super) const IMPLS: [&str; 4] = ["mlock", "libc", "rustix", "nix"];

/// The rows of `benches/status.rs`, in the order they are reported, with
/// what each measures.
pub(super) const STATUS_ROWS: [(&str, &str); 7] = [
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

/// The status goals: (numerator, denominator, bound).
pub(super) const STATUS_GOALS: [(&str, &str, f64); 2] =
    [("status", "floor", 1.05), ("reader", "pread", 1.08)];

/// The goals on the cost of the crate's record of its locks, timed in
/// pairs by `benches/overhead.rs`: (what is compared, the crate's side,
/// libc's side, bound on the ratio of their medians).
pub(super) const OVERHEAD_GOALS: [(&str, &str, &str, f64); 2] = [
    (
        "lock_all + unlock_all vs mlockall + munlockall (libc)",
        "lock_all",
        "mlockall",
        1.10,
    ),
    (
        "LockGuard new + drop vs mlock + munlock (libc)",
        "guard",
        "mlock",
        1.15,
    ),
];

/// `cargo xtask bench [--quick]`.
pub fn main(args: &mut lexopt::Parser) -> util::Result {
    use lexopt::prelude::*;
    let mut quick = false;
    while let Some(arg) = args.next()? {
        match arg {
            Long("quick") => quick = true,
            Short('h') | Long("help") => {
                println!("{USAGE}");
                return Ok(());
            }
            arg => return Err(util::unexpected(arg, USAGE)),
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
pub(super) struct Plan {
    pub(super) quick: bool,
    /// Arguments for the criterion benches.
    pub(super) criterion: &'static [&'static str],
    /// Pairs per callgrind run: the difference of two runs is divided by the
    /// difference of the counts, so start-up and the checked first call
    /// cancel out.
    pub(super) calls: (u64, u64),
    /// Rounds and pairs per batch of `overhead --interleaved`.
    pub(super) interleaved: (u64, u64),
    /// Pairs of calls per comparison that `benches/overhead.rs` and
    /// `benches/status.rs` time back to back after criterion
    /// (`MLOCK_BENCH_PAIRS`).
    pub(super) pairs: u64,
    /// Arguments for `benches/onfault.rs`.
    pub(super) onfault: &'static [&'static str],
    /// Arguments for `bench-peers`: runs and pairs of create + drop, and
    /// the most live secrets counted.
    pub(super) secrets: &'static [&'static str],
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
        pairs: 20_000,
        onfault: &["--bench", "--tsv"],
        secrets: &["--runs", "7", "--pairs", "5000", "--max", "100000"],
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
        pairs: 5_000,
        onfault: &["--bench", "--quick", "--tsv"],
        secrets: &["--runs", "3", "--pairs", "300", "--max", "20000"],
    };
}

fn run(plan: &Plan) -> util::Result {
    let machine = Machine::read();
    let benches = run::build()?;
    let peers_exe = secrets::build()?;
    let exe = |name: &str| -> util::Result<&PathBuf> {
        benches
            .get(name)
            .with_context(|| format!("cargo built no bench named {name:?}"))
    };
    let overhead_exe = exe("overhead")?;
    // <target>/release/deps/overhead-<hash>
    let target_dir = overhead_exe
        .ancestors()
        .nth(3)
        .context("bench executable outside a target directory")?;
    let out_dir = target_dir.join("xtask-bench");
    let criterion_home = out_dir.join("criterion");
    if criterion_home.exists() {
        fs::remove_dir_all(&criterion_home)
            .with_context(|| format!("removing {}", criterion_home.display()))?;
    }
    fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;

    // Criterion benches: overhead, then status if it exists.
    let mut criterion_names = vec!["overhead"];
    if benches.contains_key("status") {
        criterion_names.push("status");
    }
    let (mut overhead_paired, mut status_paired) = (Vec::new(), Vec::new());
    for name in &criterion_names {
        // Each ends with comparisons timed in pairs, which criterion's
        // files do not hold.
        let out = util::output(
            Command::new(exe(name)?)
                .args(plan.criterion)
                .env("CRITERION_HOME", &criterion_home)
                .env("MLOCK_BENCH_PAIRS", plan.pairs.to_string()),
        )?;
        print!("{out}");
        let paired = parse::paired(&out, &format!("benches/{name}.rs"))?;
        if *name == "status" {
            status_paired = paired;
        } else {
            overhead_paired = paired;
        }
    }
    let estimates = parse::read_criterion(&criterion_home)?;

    let interleaved = parse::interleaved(&util::output(
        Command::new(overhead_exe)
            .arg("--interleaved")
            .arg(plan.interleaved.0.to_string())
            .arg(plan.interleaved.1.to_string()),
    )?)?;
    let instructions = run::count_instructions(overhead_exe, plan, &out_dir)?;
    let parse_instructions = match benches.get("status") {
        Some(exe) => Some(run::count_parse_instructions(exe, plan, &out_dir)?),
        None => None,
    };

    let onfault_out = util::output(Command::new(exe("onfault")?).args(plan.onfault))?;
    let onfault = parse::onfault(&onfault_out)?;

    let peers = secrets::run(&peers_exe, plan.secrets)?;

    let load_after = Machine::loadavg();
    let report = Report {
        plan,
        machine,
        load_after,
        estimates,
        interleaved,
        instructions,
        onfault,
        overhead_paired,
        status_paired,
        parse_instructions,
    };
    for (name, text) in report.blocks() {
        println!("\n### {name}\n\n{text}");
    }
    let peers_table = peers.table();
    println!("\n### secrets\n\n{peers_table}");
    let peers_block = [("secrets", peers_table)];

    // The page's prose is written by hand; the run fills in its blocks.
    let page = util::root().join("docs").join("benchmarks.md");
    let template =
        fs::read_to_string(&page).with_context(|| format!("reading {}", page.display()))?;
    let docs = if plan.quick {
        out_dir.clone()
    } else {
        util::root().join("docs")
    };
    fs::create_dir_all(&docs).with_context(|| format!("creating {}", docs.display()))?;
    let md = docs.join("benchmarks.md");
    let svg = docs.join("onfault.svg");
    let filled = report::fill_page("benchmarks.md", &report.fill(&template)?, &peers_block)?;
    fs::write(&md, filled).with_context(|| format!("writing {}", md.display()))?;
    plot::plot(&report.onfault, &report.plot_caption(), &svg)?;
    eprintln!("xtask: wrote {} and {}", md.display(), svg.display());

    // docs/secrets.md: only its generated block changes.
    let page = util::root().join("docs").join("secrets.md");
    let template =
        fs::read_to_string(&page).with_context(|| format!("reading {}", page.display()))?;
    let md = docs.join("secrets.md");
    let svg = docs.join("secrets.svg");
    fs::write(
        &md,
        report::fill_page("secrets.md", &template, &peers_block)?,
    )
    .with_context(|| format!("writing {}", md.display()))?;
    plot::plot_secrets(&peers, &peers.caption(&report.machine.kernel), &svg)?;
    eprintln!("xtask: wrote {} and {}", md.display(), svg.display());
    Ok(())
}
