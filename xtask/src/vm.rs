//! `cargo xtask vm [--arch A]... [--scenario S]...`: the crate's promises,
//! proved in real Linux kernels under `qemu-system`.
//!
//! QEMU user mode runs guest code on the host kernel and has no `mlock2`,
//! so it cannot show what locking does to memory. Here each architecture
//! boots Debian's own kernel (bookworm's 6.1 for amd64 and arm64, trixie's
//! 6.12 for riscv64, or forky's when a mirror serves trixie's index out of
//! step with its signature) under TCG, once per boot its scenarios need
//! ([`Scenario`]):
//!
//! 1. the suite boot: a busybox `/init` (`xtask/vm/init.sh`) that runs the
//!    whole integration test suite as root (`suite`), then a locked process
//!    beside an unlocked twin on zram swap (`swap-pressure`), then a core
//!    dump for each `LockedBuf` backing (`core-dump`), with
//!    `secretmem.enable=1` (the 6.1 kernels keep `memfd_secret` off
//!    without it);
//! 2. the secrets boot: the same initramfs with `secretmem.enable=0
//!    mlock.vm=secrets`: only tests/secret.rs and one core dump, proving
//!    the anonymous fallback in a real kernel;
//! 3. the crate's `#![no_std]` example `static_init` as `/init`, which
//!    locks itself as PID 1 and powers off (`pid1`);
//! 4. a userspace swap daemon serving the only swap, once per protection
//!    mode (`swap-deadlock`, see docs/swap-deadlock.md), over NBD or, with
//!    `--transport ublk`, over ublk.
//!
//! Each scenario ends in summary lines on the console; the host parses
//! them and fails on a kernel panic, a timeout, a missing line or a line
//! that does not prove the promise.
//!
//! Here: the options, the run over the arches and the boots of one arch;
//! `scenario` names what can run, `fetch` gets the kernels, `build` the
//! binaries, `cpio` and `pack` make the initramfs images, `boot` runs
//! QEMU, `check` reads the suite, secrets and PID 1 consoles into a
//! `report`, and `swap_deadlock` is the swap-daemon experiment.

mod boot;
mod build;
mod check;
mod cpio;
mod fetch;
mod pack;
mod report;
mod scenario;
mod swap_deadlock;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context as _};

use crate::arch::{Arch, ARCHES};
use crate::util::{self, Result};
use boot::boot;
use build::{build_binaries, build_pid1, build_tests, doctor_example, pid1_manifest};
use check::{check_pid1, check_secrets, check_suite};
use report::Report;
use scenario::Scenario;

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

/// Bounds for the suite boot, the secrets boot and the PID 1 boot.
const SUITE_TIMEOUT: Duration = Duration::from_secs(420);
const SECRETS_TIMEOUT: Duration = Duration::from_secs(180);
const PID1_TIMEOUT: Duration = Duration::from_secs(120);
/// Kernel parameters of the suite boot and of the secrets boot (read by
/// init.sh): `memfd_secret` on, then off.
const SUITE_CMDLINE: &str = "secretmem.enable=1";
const SECRETS_CMDLINE: &str = "secretmem.enable=0 mlock.vm=secrets";

/// What the harness needs on the host: QEMU, the archive keyring, the
/// decompressors, and every arch's linker ([`Arch::build_packages`]).
fn host_packages() -> Vec<&'static str> {
    HOST_PACKAGES
        .iter()
        .chain(ARCHES.iter().flat_map(|a| a.build_packages))
        .copied()
        .collect()
}

const USAGE: &str =
    "usage: cargo xtask vm [--arch A]... [--scenario S]... [--repeat N] [--plot] [--mode M]...
                      [--transport T]

Boots Debian's kernels under qemu-system and proves the crate's promises there.
  --arch A       x86_64, aarch64 or riscv64 (repeatable; default: all three)
  --scenario S   suite, swap-pressure, core-dump, pid1 or swap-deadlock
                 (repeatable; default: all)
  --repeat N     boot each swap-deadlock mode N times
  --plot         draw docs/swap-deadlock.svg from the first arch's boots
  --mode M       a swap-deadlock mode (`nbd_swap --protect` value; repeatable;
                 default: none, lock, harden)
  --transport T  the swap-deadlock daemon's transport: nbd (nbd_swap, the
                 default) or ublk (ublk_swap; needs a kernel with ublk_drv,
                 which of the three only riscv64's 6.12 has)";

/// `cargo xtask vm`: reads the options and runs the chosen scenarios.
pub fn main(args: &mut lexopt::Parser) -> Result {
    use lexopt::prelude::*;
    let mut arches: Vec<&'static Arch> = Vec::new();
    let mut scenarios: Vec<Scenario> = Vec::new();
    let mut options = swap_deadlock::Options::default();
    while let Some(arg) = args.next()? {
        match arg {
            Long("arch") => {
                let name = args.value()?.string()?;
                arches.push(crate::arch::by_name(&name).with_context(|| {
                    format!("unknown arch {name}: choose x86_64, aarch64 or riscv64")
                })?);
            }
            Long("scenario") => {
                let name = args.value()?.string()?;
                scenarios.push(Scenario::by_name(&name).with_context(|| {
                    format!("unknown scenario {name}: choose {}", scenario::names())
                })?);
            }
            Long("mode") => options.modes.push(args.value()?.string()?),
            Long("repeat") => {
                options.repeat = args.value()?.parse()?;
                ensure!(options.repeat > 0, "--repeat: not a positive number");
            }
            Long("plot") => options.plot = true,
            Long("transport") => {
                let name = args.value()?.string()?;
                options.transport = swap_deadlock::Transport::by_name(&name)
                    .with_context(|| format!("unknown transport {name}: choose nbd or ublk"))?;
            }
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
    if scenarios.is_empty() {
        scenarios = Scenario::ALL.to_vec();
    }
    let swap_options = options.repeat != 1
        || options.plot
        || !options.modes.is_empty()
        || options.transport != swap_deadlock::Transport::Nbd;
    ensure!(
        !swap_options || scenarios.contains(&Scenario::SwapDeadlock),
        "--repeat, --plot, --mode and --transport go with the swap-deadlock scenario\n\n{USAGE}"
    );
    run(&arches, &scenarios, &options).map(drop)
}

/// Every scenario on all three architectures: the step `cargo xtask test`
/// runs. The tally counts the tests run inside the VMs plus one entry per
/// scenario check ([`Report::checks`]) and swap-deadlock boot.
pub fn run_all() -> Result<util::Tally> {
    let arches: Vec<&'static Arch> = ARCHES.iter().collect();
    run(&arches, &Scenario::ALL, &swap_deadlock::Options::default())
}

/// What the host prepares for one architecture before booting it: the
/// kernel, and the initramfs image of each boot the scenarios need.
struct Prepared {
    arch: &'static Arch,
    kernel_package: String,
    kernel: PathBuf,
    suite_initrd: Option<PathBuf>,
    pid1_initrd: Option<PathBuf>,
    swap_deadlock_initrd: Option<PathBuf>,
}

/// Fetches, builds and packs every architecture, then boots them all in
/// parallel, prints the summary lines and the tables, and fails unless
/// every architecture proved everything it ran.
fn run(
    arches: &[&'static Arch],
    scenarios: &[Scenario],
    options: &swap_deadlock::Options,
) -> Result<util::Tally> {
    let start = Instant::now();
    util::ensure_debian_packages(&host_packages())?;

    // A pipeline: while one architecture's VMs boot (one TCG thread
    // each), the next one is fetched and built.
    let mut prepare_time = Duration::ZERO;
    let mut results: Vec<(Report, Option<swap_deadlock::Runs>)> = std::thread::scope(|scope| {
        let mut booting = Vec::new();
        let mut failed = Vec::new();
        for &arch in arches {
            let started = Instant::now();
            let prepared = prepare(arch, scenarios, options.transport);
            prepare_time += started.elapsed();
            match prepared {
                Ok(p) => booting.push(scope.spawn(move || boot_arch(&p, scenarios, options))),
                Err(e) => failed.push((
                    Report {
                        arch: arch.name,
                        problems: vec![format!("{e:#}")],
                        ..Report::default()
                    },
                    None,
                )),
            }
        }
        booting
            .into_iter()
            .map(|h| h.join().expect("a VM thread panicked"))
            .chain(failed)
            .collect()
    });
    results.sort_by_key(|(r, _)| ARCHES.iter().position(|a| a.name == r.arch));

    println!();
    for (report, runs) in &results {
        for line in report.summary_lines() {
            println!("{line}");
        }
        for line in runs.iter().flat_map(swap_deadlock::Runs::lines) {
            println!("{line}");
        }
    }
    if scenarios.iter().any(|s| *s != Scenario::SwapDeadlock) {
        let rows: Vec<_> = results.iter().map(|(r, _)| r.row()).collect();
        println!();
        print!("{}", util::text_table(&report::TABLE_HEADER, &rows));
    }
    let swap_rows: Vec<[String; 5]> = results
        .iter()
        .flat_map(|(_, runs)| runs.iter().flat_map(swap_deadlock::Runs::rows))
        .collect();
    if !swap_rows.is_empty() {
        println!();
        print!(
            "{}",
            util::text_table(&swap_deadlock::TABLE_HEADER, &swap_rows)
        );
    }
    println!(
        "vm: {} arch(es) in {:.0} s (fetch, build and pack {:.0} s; boots overlap the builds)",
        results.len(),
        start.elapsed().as_secs_f64(),
        prepare_time.as_secs_f64()
    );
    if options.plot {
        let first = results.iter().find_map(|(_, runs)| runs.as_ref());
        swap_deadlock::draw(first.context("--plot: no swap-deadlock run to draw")?)?;
    }

    let mut failures = Vec::new();
    let mut tally = util::Tally::default();
    for (report, runs) in &results {
        let arch = report.arch;
        failures.extend(report.problems.iter().map(|p| format!("{arch}: {p}")));
        if let Some(runs) = runs {
            failures.extend(runs.problems());
            tally.passed += runs.count() as u64;
        }
        let (passed, failed) = report.tests.unwrap_or_default();
        let (secrets_passed, secrets_failed) = report.secrets_tests.unwrap_or_default();
        tally.passed += passed + secrets_passed + report.checks();
        tally.failed += failed + secrets_failed;
        tally.ignored += report.ignored;
    }
    if failures.is_empty() {
        Ok(tally)
    } else {
        Err(anyhow!("the VM tier failed:\n  {}", failures.join("\n  ")))
    }
}

/// Fetches the kernel, builds the static binaries the scenarios need and
/// packs their initramfs images for one architecture.
fn prepare(
    arch: &'static Arch,
    scenarios: &[Scenario],
    transport: swap_deadlock::Transport,
) -> Result<Prepared> {
    let has = |s: Scenario| scenarios.contains(&s);
    let suite_boot = scenarios.iter().any(|s| s.in_suite_boot());
    let dir = util::root().join("target").join("vm").join(arch.name);
    let fetched = fetch::fetch(arch, &dir)?;
    eprintln!(
        "xtask: {}: {} ({})",
        arch.name,
        fetched.kernel_package,
        fetched.kernel.display()
    );
    // Before any build: a kernel without the transport's driver (ublk in
    // the 6.1 kernels) is an error now, not a boot that waits for a device.
    let driver_modules = if has(Scenario::SwapDeadlock) {
        fetched
            .driver_modules(transport.module(), &dir)
            .with_context(|| {
                format!(
                    "--transport {}: {} cannot serve swap-deadlock's swap",
                    transport.name(),
                    arch.name
                )
            })?
    } else {
        Vec::new()
    };
    util::ensure_rust_target(arch.triple)?;

    // The secrets boot runs tests/secret.rs for the core-dump scenario too.
    let tests = if has(Scenario::Suite) || has(Scenario::CoreDump) {
        build_tests(arch)?
    } else {
        Vec::new()
    };
    let mut examples: Vec<&'static str> = Vec::new();
    let mut programs: Vec<&'static str> = Vec::new();
    if has(Scenario::Suite) {
        examples.extend(doctor_example());
    }
    if suite_boot {
        programs.extend(pack::SUITE_PROGRAMS);
    }
    if has(Scenario::SwapDeadlock) {
        examples.push(transport.daemon());
        programs.extend(swap_deadlock::PROGRAMS);
    }
    let binaries = build_binaries(arch, &examples, &programs)?;

    let suite_initrd = suite_boot
        .then(|| pack::suite_image(arch, &fetched, &tests, &binaries, &dir))
        .transpose()?;
    let pid1_initrd = match pid1_manifest() {
        Some(manifest) if has(Scenario::Pid1) => {
            Some(pack::pid1_image(&build_pid1(arch, &manifest)?, &dir)?)
        }
        _ => None,
    };
    let swap_deadlock_initrd = has(Scenario::SwapDeadlock)
        .then(|| swap_deadlock::pack(arch, &fetched, &binaries, transport, &driver_modules, &dir))
        .transpose()?;
    Ok(Prepared {
        arch,
        kernel_package: fetched.kernel_package,
        kernel: fetched.kernel,
        suite_initrd,
        pid1_initrd,
        swap_deadlock_initrd,
    })
}

/// Boots one architecture's VMs in turn, as its scenarios need, and
/// checks their consoles.
fn boot_arch(
    p: &Prepared,
    scenarios: &[Scenario],
    options: &swap_deadlock::Options,
) -> (Report, Option<swap_deadlock::Runs>) {
    let (arch, kernel) = (p.arch, p.kernel.as_path());
    let mut report = Report {
        arch: arch.name,
        kernel: p.kernel_package.clone(),
        scenarios: scenarios.to_vec(),
        ..Report::default()
    };

    if let Some(initrd) = &p.suite_initrd {
        let run: Vec<&str> = scenarios
            .iter()
            .filter(|s| s.in_suite_boot())
            .map(|s| s.name())
            .collect();
        let cmdline = format!("{SUITE_CMDLINE} mlock.run={}", run.join(","));
        let started = Instant::now();
        match boot(arch, kernel, initrd, &cmdline, SUITE_TIMEOUT, "") {
            Ok(console) => check_suite(&console, &mut report),
            Err(e) => report.problems.push(format!("{e:#}")),
        }
        report.suite_time = started.elapsed();

        if scenarios.iter().any(|s| s.in_secrets_boot()) {
            let started = Instant::now();
            match boot(
                arch,
                kernel,
                initrd,
                SECRETS_CMDLINE,
                SECRETS_TIMEOUT,
                "secrets ",
            ) {
                Ok(console) => check_secrets(&console, &mut report),
                Err(e) => report.problems.push(format!("{e:#}")),
            }
            report.secrets_time = started.elapsed();
        }
    }

    if scenarios.contains(&Scenario::Pid1) {
        let started = Instant::now();
        match &p.pid1_initrd {
            Some(initrd) => match boot(arch, kernel, initrd, "rdinit=/init", PID1_TIMEOUT, "pid1 ")
            {
                Ok(console) => check_pid1(&console, &mut report),
                Err(e) => report.problems.push(format!("{e:#}")),
            },
            None => report.problems.push(format!(
                "{} does not exist, so the PID 1 boot did not run",
                build::PID1_MANIFEST
            )),
        }
        report.pid1_time = started.elapsed();
    }

    let runs = p
        .swap_deadlock_initrd
        .as_ref()
        .map(|initrd| swap_deadlock::boot_all(arch, &p.kernel_package, kernel, initrd, options));
    (report, runs)
}
