//! `cargo xtask vm [--arch x86_64|aarch64|riscv64]`: the crate's promises,
//! proved in real Linux kernels under `qemu-system`.
//!
//! QEMU user mode runs guest code on the host kernel and has no `mlock2`,
//! so it cannot show what locking does to memory. Here each architecture
//! boots Debian's own kernel (bookworm's 6.1 for amd64 and arm64, trixie's
//! 6.12 for riscv64, or forky's when a mirror serves trixie's index out of
//! step with its signature) under TCG, twice:
//!
//! 1. with a busybox `/init` (`xtask/vm/init.sh`) that runs the whole
//!    integration test suite as root, then a swap-pressure scenario on zram
//!    swap, then a core-dump scenario for each `LockedBuf` backing, with
//!    `secretmem.enable=1` (the 6.1 kernels keep `memfd_secret` off
//!    without it);
//! 2. the same initramfs with `secretmem.enable=0 mlock.vm=secrets`: only
//!    tests/secret.rs and one core dump, proving the anonymous fallback in
//!    a real kernel;
//! 3. with the crate's `#![no_std]` example `static_init` as `/init`, which
//!    locks itself as PID 1 and powers off.
//!
//! Each scenario ends in one summary line on the console; the host parses
//! them and fails on a kernel panic, a timeout, a missing line or a line
//! that does not prove the promise.

//!
//! Here: the options, the run over the arches and the boots of one arch;
//! `fetch` gets the kernels, `build` the binaries, `cpio` and `pack` make
//! the initramfs images, `boot` runs QEMU, `check` reads the consoles,
//! `report` prints what they proved, `dt007` is the NBD swap scenario.

mod boot;
mod build;
mod check;
mod cpio;
mod dt007;
mod fetch;
mod pack;
mod report;

use anyhow::{anyhow, ensure, Context as _};
use std::time::{Duration, Instant};

use crate::arch::{Arch, ARCHES};
use crate::util::{self, Result};
use boot::boot;
use check::{check_pid1, check_secrets, check_suite};
use pack::{prepare, Prepared};
use report::{summary_lines, table, Report};

/// Debian packages the harness runs on the host, besides each arch's
/// linker ([`host_packages`] adds those).
const HOST_PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "qemu-system-arm",
    "qemu-system-misc",
    "qemu-system-data",
    "debian-archive-keyring",
    "xz-utils",
    "zstd",
];

/// RAM of each VM. Small, so that a memory hog forces swapping quickly.
const MEMORY: &str = "256M";
/// How much each twin of the swap-pressure scenario holds.
const HOLD_MIB: u32 = 40;
/// The unlocked twin must have at least this share of its memory swapped
/// out, or the scenario proved nothing.
const MIN_SWAPPED_PERCENT: u64 = 50;
/// Bounds for the boot that runs the scenarios, and for the PID 1 boot.
const SUITE_TIMEOUT: Duration = Duration::from_secs(420);
const SECRETS_TIMEOUT: Duration = Duration::from_secs(180);
/// Kernel parameters of the suite boot and of the secrets-only boot (read
/// by init.sh): `memfd_secret` on, then off.
const SUITE_CMDLINE: &str = "secretmem.enable=1";
const SECRETS_CMDLINE: &str = "secretmem.enable=0 mlock.vm=secrets";
const PID1_TIMEOUT: Duration = Duration::from_secs(120);
/// The `#![no_std]` PID 1 helper (its own package under `examples/`),
/// booted as `/init`.
const PID1_EXAMPLE: &str = "static_init";
/// The package of the programs the VMs run (`test-programs/`).
const TEST_PROGRAMS: &str = "mlock-test-programs";
/// Test programs the busybox `/init` runs.
const SCENARIO_PROGRAMS: &[&str] = &["vm_hold", "vm_secret"];
/// The example tests/doctor.rs runs. A test binary in the VM cannot build
/// it with cargo, so it is packed prebuilt and named by this variable.
const DOCTOR_EXAMPLE: &str = "doctor";
// The variables the VMs' suite reads (tests/common/contract.rs).
use crate::contract::DOCTOR_ENV;
pub(crate) use crate::contract::VECTOR_ENV;

/// What the harness needs on the host: QEMU, the archive keyring, the
/// decompressors, and every arch's linker ([`Arch::build_packages`]).
fn host_packages() -> Vec<&'static str> {
    HOST_PACKAGES
        .iter()
        .chain(ARCHES.iter().flat_map(|a| a.build_packages))
        .copied()
        .collect()
}

const USAGE: &str = "usage: cargo xtask vm [--arch x86_64|aarch64|riscv64] \
                     [--scenario dt007 [--repeat N] [--plot] [--mode M]...]";

/// `cargo xtask vm [--arch A] [--scenario dt007 [--repeat N] [--plot]]`.
pub fn main(args: &mut lexopt::Parser) -> Result {
    use lexopt::prelude::*;
    let mut arches: Vec<&Arch> = Vec::new();
    let mut scenario = None;
    let mut repeat = 1;
    let mut plot = false;
    let mut modes: Vec<String> = Vec::new();
    while let Some(arg) = args.next()? {
        match arg {
            Long("arch") => arches.push(arch(&args.value()?.string()?)?),
            Long("scenario") => {
                let value = args.value()?.string()?;
                ensure!(value == "dt007", "unknown scenario {value}\n{USAGE}");
                scenario = Some(value);
            }
            Long("mode") => modes.push(args.value()?.string()?),
            Long("repeat") => {
                repeat = args.value()?.parse()?;
                ensure!(repeat > 0, "--repeat: not a positive number: {repeat}");
            }
            Long("plot") => plot = true,
            Short('h') | Long("help") => {
                println!("{USAGE}");
                return Ok(());
            }
            arg => return Err(util::unexpected(arg, USAGE)),
        }
    }
    if arches.is_empty() {
        arches = ARCHES.iter().collect();
    }
    match scenario {
        Some(_) => dt007::run(&arches, repeat, plot, &modes),
        None if repeat != 1 || plot || !modes.is_empty() => Err(anyhow!(
            "--repeat, --plot and --mode go with --scenario dt007\n{USAGE}"
        )),
        None => run(&arches).map(|_| ()),
    }
}

/// All three architectures: the step `cargo xtask test` runs. The tally
/// counts the tests run inside the VMs plus one entry per scenario
/// (swap pressure, core dump, secrets-only boot, PID 1) and architecture.
pub fn run_all() -> Result<util::Tally> {
    run(&ARCHES.iter().collect::<Vec<_>>())
}

fn arch(name: &str) -> Result<&'static Arch> {
    crate::arch::by_name(name)
        .with_context(|| format!("unknown arch {name}: choose x86_64, aarch64 or riscv64"))
}

/// Fetches, builds and packs every architecture, then boots them all in
/// parallel, prints the summary lines and a table, and fails unless every
/// architecture proved everything.
pub fn run(arches: &[&'static Arch]) -> Result<util::Tally> {
    let start = Instant::now();
    util::ensure_debian_packages(&host_packages())?;
    let pid1_manifest = util::root()
        .join("examples")
        .join(PID1_EXAMPLE)
        .join("Cargo.toml");
    let has_pid1 = pid1_manifest.is_file();

    // A pipeline: while one architecture's VMs boot (one TCG thread
    // each), the next one is fetched and built.
    let mut prepare_time = Duration::ZERO;
    let mut reports: Vec<Report> = std::thread::scope(|scope| {
        let mut booting = Vec::new();
        let mut failed = Vec::new();
        for &arch in arches {
            let started = Instant::now();
            let prepared = prepare(arch, has_pid1.then_some(pid1_manifest.as_path()));
            prepare_time += started.elapsed();
            match prepared {
                Ok(p) => booting.push(scope.spawn(move || boot_and_check(&p))),
                Err(e) => failed.push(Report {
                    arch: arch.name,
                    problems: vec![format!("{e:#}")],
                    ..Report::default()
                }),
            }
        }
        booting
            .into_iter()
            .map(|h| h.join().expect("a VM thread panicked"))
            .chain(failed)
            .collect()
    });
    reports.sort_by_key(|r| ARCHES.iter().position(|a| a.name == r.arch));

    let total = start.elapsed();
    println!();
    for r in &reports {
        for line in summary_lines(r) {
            println!("{line}");
        }
    }
    println!();
    print!("{}", table(&reports));
    let dt007_rows: Vec<_> = reports
        .iter()
        .flat_map(|r| {
            r.dt007
                .iter()
                .map(|(mode, run)| (r.arch, *mode, vec![run.clone()]))
        })
        .collect();
    println!();
    print!("{}", dt007::table(&dt007_rows));
    println!(
        "vm: {} arch(es) in {:.0} s (fetch, build and pack {:.0} s; boots overlap the builds)",
        reports.len(),
        total.as_secs_f64(),
        prepare_time.as_secs_f64()
    );

    let failures: Vec<String> = reports
        .iter()
        .flat_map(|r| r.problems.iter().map(move |p| format!("{}: {p}", r.arch)))
        .collect();
    if failures.is_empty() {
        let mut tally = util::Tally::default();
        for r in &reports {
            let (passed, failed) = r.tests.unwrap_or_default();
            let (secrets_passed, secrets_failed) = r.secrets_tests.unwrap_or_default();
            tally.passed += passed + secrets_passed + 4 + r.dt007.len() as u64;
            tally.failed += secrets_failed;
            tally.failed += failed;
            tally.ignored += r.ignored;
        }
        Ok(tally)
    } else {
        Err(anyhow!("the VM tier failed:\n  {}", failures.join("\n  ")))
    }
}

/// Boots both VMs of one architecture and checks their summary lines.
fn boot_and_check(p: &Prepared) -> Report {
    let arch = p.arch;
    let mut report = Report {
        arch: arch.name,
        kernel: p.kernel_package.clone(),
        ..Report::default()
    };

    let started = Instant::now();
    match boot(p, &p.suite_initrd, SUITE_CMDLINE, SUITE_TIMEOUT, "") {
        Ok(console) => check_suite(&console, &mut report),
        Err(e) => report.problems.push(format!("{e:#}")),
    }
    report.suite_time = started.elapsed();

    let started = Instant::now();
    match boot(
        p,
        &p.suite_initrd,
        SECRETS_CMDLINE,
        SECRETS_TIMEOUT,
        "secrets ",
    ) {
        Ok(console) => check_secrets(&console, &mut report),
        Err(e) => report.problems.push(format!("{e:#}")),
    }
    report.secrets_time = started.elapsed();

    let started = Instant::now();
    match &p.pid1_initrd {
        Some(initrd) => match boot(p, initrd, "rdinit=/init", PID1_TIMEOUT, "pid1 ") {
            Ok(console) => check_pid1(&console, &mut report),
            Err(e) => report.problems.push(format!("{e:#}")),
        },
        None => report.problems.push(format!(
            "examples/{PID1_EXAMPLE}/Cargo.toml does not exist, so the PID 1 boot did not run"
        )),
    }
    report.pid1_time = started.elapsed();

    for mode in dt007::MODES {
        let run = dt007::boot(arch, &p.kernel, &p.dt007_initrd, mode);
        report
            .problems
            .extend(dt007::problem(arch.name, mode, &run));
        report.dt007.push((mode, run));
    }
    report
}
