//! `cargo xtask vm [--arch A]... [--suite S]... [--scenario S]...`: the
//! crate's promises, proved in real Linux kernels under `qemu-system`.
//!
//! QEMU user mode runs guest code on the host kernel and has no `mlock2`,
//! so it cannot show what locking does to memory. Here each architecture
//! boots two generations of Debian's own kernels under TCG
//! ([`Arch::kernels`]): bookworm's 6.1 and trixie's 6.12 for amd64 and
//! arm64, trixie's 6.12 and forky's (testing, 7.2 in December 2026) for
//! riscv64; and arm64 once more with 16 KiB pages (`aarch64-16k`,
//! trixie's `linux-image-arm64-16k`, the same binaries). Each init-script
//! boot prints the page size the kernel gave it (`page-size <arch>
//! <kernel>: <bytes>`, from `AT_PAGESZ`), checked against the arch's. Each
//! kernel is booted once per boot its scenarios need ([`Scenario`]):
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
//!    mode and transport (`swap-deadlock`, see docs/swap-deadlock.md): over
//!    NBD on every kernel, and over ublk on every kernel that ships
//!    `ublk_drv` (6.12 and later here); a kernel without it prints a
//!    `not run` line for ublk.
//!
//! The boots are independent jobs: [`PARALLEL_VMS`] of them run at once,
//! while the next kernel is fetched, built and packed.
//!
//! Each scenario ends in summary lines on the console; the host parses
//! them and fails on a kernel panic, a timeout, a missing line or a line
//! that does not prove the promise.
//!
//! Here: the options, the plan of kernels, the job queue and how each
//! kernel's finished boots are read;
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
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context as _};

use crate::arch::{Arch, ARCHES, VM_ARCHES};
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
    "qemu-system-ppc",
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

/// The suite boot's `memfd_secret` parameter: on, or, for an arch whose
/// kernel has no secretmem ([`Arch::secretmem`]), `secretmem.enable=0`
/// (which the kernel ignores), so that the tests expect the fallback.
fn suite_cmdline(arch: &Arch) -> &'static str {
    if arch.secretmem {
        SUITE_CMDLINE
    } else {
        "secretmem.enable=0"
    }
}

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
    "usage: cargo xtask vm [--arch A]... [--suite S]... [--scenario S]... [--repeat N] [--plot]
                      [--mode M]... [--transport T]

Boots Debian's kernels under qemu-system and proves the crate's promises there.
  --arch A       x86_64, aarch64, aarch64-16k (arm64 with 16 KiB pages),
                 riscv64, i686, armv7, s390x, powerpc64le or powerpc64le-64k
                 (64 KiB pages) (repeatable; default: all nine)
  --suite S      the Debian suite whose kernel boots: bookworm (6.1; x86_64,
                 aarch64 and i686), trixie (6.12) or forky (testing; riscv64)
                 (repeatable; default: each arch's two)
  --scenario S   suite, swap-pressure, core-dump, pid1 or swap-deadlock
                 (repeatable; default: all)
  --repeat N     boot each swap-deadlock mode N times
  --plot         draw docs/swap-deadlock.svg from the first kernel that ran
                 both transports
  --mode M       a swap-deadlock mode (`nbd_swap --protect` value; repeatable;
                 default: none, lock, harden)
  --transport T  the swap-deadlock daemon's transport: nbd (nbd_swap) or ublk
                 (ublk_swap; needs a kernel with ublk_drv, which bookworm's 6.1
                 lacks). Default: both, ublk where the kernel has it";

/// `cargo xtask vm`: reads the options and runs the chosen scenarios.
pub fn main(args: &mut lexopt::Parser) -> Result {
    use lexopt::prelude::*;
    let mut arches: Vec<&'static Arch> = Vec::new();
    let mut scenarios: Vec<Scenario> = Vec::new();
    let mut options = swap_deadlock::Options::default();
    let mut suites: Vec<String> = Vec::new();
    while let Some(arg) = args.next()? {
        match arg {
            Long("arch") => {
                let name = args.value()?.string()?;
                arches.push(crate::arch::by_name(&name).with_context(|| {
                    let known: Vec<&str> = VM_ARCHES.iter().map(|a| a.name).collect();
                    format!("unknown arch {name}: choose {}", known.join(", "))
                })?);
            }
            Long("scenario") => {
                let name = args.value()?.string()?;
                scenarios.push(Scenario::by_name(&name).with_context(|| {
                    format!("unknown scenario {name}: choose {}", scenario::names())
                })?);
            }
            Long("suite") => {
                let name = args.value()?.string()?;
                ensure!(
                    VM_ARCHES
                        .iter()
                        .flat_map(|a| a.kernels)
                        .any(|k| k[0] == name),
                    "unknown suite {name}: choose bookworm, trixie or forky"
                );
                suites.push(name);
            }
            Long("mode") => options.modes.push(args.value()?.string()?),
            Long("repeat") => {
                options.repeat = args.value()?.parse()?;
                ensure!(options.repeat > 0, "--repeat: not a positive number");
            }
            Long("plot") => options.plot = true,
            Long("transport") => {
                let name = args.value()?.string()?;
                options.transport =
                    Some(swap_deadlock::Transport::by_name(&name).with_context(|| {
                        format!("unknown transport {name}: choose nbd or ublk")
                    })?);
            }
            Short('h') | Long("help") => {
                println!("{USAGE}");
                return Ok(());
            }
            arg => return Err(util::unexpected(arg, USAGE)),
        }
    }
    if arches.is_empty() {
        arches = VM_ARCHES.iter().collect();
    }
    if scenarios.is_empty() {
        scenarios = Scenario::ALL.to_vec();
    }
    let swap_options = options.repeat != 1
        || options.plot
        || !options.modes.is_empty()
        || options.transport.is_some();
    ensure!(
        !swap_options || scenarios.contains(&Scenario::SwapDeadlock),
        "--repeat, --plot, --mode and --transport go with the swap-deadlock scenario\n\n{USAGE}"
    );
    run(&arches, &suites, &scenarios, &options).map(drop)
}

/// Every scenario on every kernel of every architecture: the step
/// `cargo xtask test` runs. The tally counts the tests run inside the VMs
/// plus one entry per scenario check ([`Report::checks`]) and
/// swap-deadlock boot.
pub fn run_all() -> Result<util::Tally> {
    let arches: Vec<&'static Arch> = VM_ARCHES.iter().collect();
    let options = swap_deadlock::Options {
        tier: true,
        ..swap_deadlock::Options::default()
    };
    run(&arches, &[], &Scenario::ALL, &options)
}

/// How many VMs boot at once. Each is one TCG thread; three on the 2-core
/// machines keep the CPUs busy while a VM waits on its console, and leave
/// a swap-deadlock boot's watchdog (30 s without swap I/O) enough CPU
/// not to mistake a slow daemon for a stalled one.
const PARALLEL_VMS: usize = 3;

/// One kernel of one architecture, fetched, with the image of each boot
/// its scenarios need.
struct Machine {
    arch: &'static Arch,
    /// The kernel package and version, and its series (`6.12`).
    kernel_package: String,
    series: String,
    kernel: PathBuf,
    suite_initrd: Option<PathBuf>,
    /// The suite boot's kernel parameters: which scenarios it runs.
    suite_cmdline: String,
    pid1_initrd: Option<PathBuf>,
    /// The swap-deadlock image of each transport the kernel has a driver for.
    swap_deadlock: Vec<(swap_deadlock::Transport, PathBuf)>,
    /// `swap-deadlock <arch> <transport> <kernel>: not run (<why>)` for
    /// each transport it has no driver for (ublk before 6.0).
    not_run: Vec<String>,
}

impl Machine {
    /// `x86_64 6.12`: how summary lines and echoed consoles name it.
    fn name(&self) -> String {
        format!("{} {}", self.arch.name, self.series)
    }
}

/// A boot whose console is read as a whole: the suite, secrets and PID 1
/// boots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ConsoleBoot {
    Suite,
    Secrets,
    Pid1,
}

/// One boot of a [`Machine`].
#[derive(Clone, Debug, PartialEq)]
enum Job {
    Console(ConsoleBoot),
    SwapDeadlock {
        transport: swap_deadlock::Transport,
        mode: String,
        round: usize,
    },
}

/// How a boot ended: its console, or its judged swap-deadlock run.
enum Ended {
    Console(ConsoleBoot, Result<Vec<String>>),
    Run {
        transport: swap_deadlock::Transport,
        mode: String,
        round: usize,
        run: swap_deadlock::Run,
    },
}

/// A finished boot of the machine at `machine` in the plan.
struct Done {
    machine: usize,
    ended: Ended,
    time: Duration,
}

/// What one kernel proved: its report and its swap-deadlock runs, one
/// per transport.
struct Proved {
    report: Report,
    runs: Vec<swap_deadlock::Runs>,
    not_run: Vec<String>,
}

/// Fetches, builds and packs every kernel of every architecture and boots
/// them, [`PARALLEL_VMS`] at a time, while the next kernel is prepared;
/// then prints the summary lines and the tables, and fails unless every
/// kernel proved everything it ran.
fn run(
    arches: &[&'static Arch],
    suites: &[String],
    scenarios: &[Scenario],
    options: &swap_deadlock::Options,
) -> Result<util::Tally> {
    let start = Instant::now();
    util::ensure_debian_packages(&host_packages())?;

    // The plan: every chosen kernel of every chosen arch, in the order
    // they are printed.
    let plan: Vec<(&'static Arch, &'static [&'static str])> = arches
        .iter()
        .flat_map(|&arch| arch.kernels.iter().map(move |&k| (arch, k)))
        .filter(|(_, k)| suites.is_empty() || suites.iter().any(|s| s == k[0]))
        .collect();
    ensure!(
        !plan.is_empty(),
        "no kernel of the chosen arches comes from {}",
        suites.join(" or ")
    );

    // The slowest emulated arches are prepared first, so their boots start
    // first and do not finish last.
    let mut order: Vec<usize> = (0..plan.len()).collect();
    order.sort_by_key(|&i| {
        std::cmp::Reverse(VM_ARCHES.iter().position(|a| a.name == plan[i].0.name))
    });

    let mut prepare_time = Duration::ZERO;
    let mut prepared: Vec<Option<std::result::Result<Arc<Machine>, String>>> =
        (0..plan.len()).map(|_| None).collect();
    let done: Mutex<Vec<Done>> = Mutex::new(Vec::new());
    let (jobs, queue) = mpsc::channel::<(usize, Arc<Machine>, Job)>();
    let queue = Mutex::new(queue);
    std::thread::scope(|scope| {
        let (queue, done) = (&queue, &done);
        for _ in 0..PARALLEL_VMS {
            scope.spawn(move || loop {
                let next = queue.lock().expect("the job queue").recv();
                let Ok((index, machine, job)) = next else {
                    return;
                };
                let started = Instant::now();
                let ended = boot_job(&machine, job);
                if let Ended::Run {
                    transport,
                    mode,
                    run,
                    ..
                } = &ended
                {
                    let line = swap_deadlock::run_line(
                        machine.arch,
                        *transport,
                        &machine.kernel_package,
                        mode,
                        run,
                    );
                    println!("{line}");
                }
                done.lock().expect("the finished boots").push(Done {
                    machine: index,
                    ended,
                    time: started.elapsed(),
                });
            });
        }
        for &i in &order {
            let (arch, kernel_suites) = plan[i];
            let started = Instant::now();
            let machine = prepare(arch, kernel_suites, scenarios, options);
            prepare_time += started.elapsed();
            prepared[i] = Some(match machine {
                Ok(m) => {
                    let m = Arc::new(m);
                    for job in jobs_of(&m, scenarios, options) {
                        jobs.send((i, m.clone(), job)).expect("the VM workers");
                    }
                    Ok(m)
                }
                Err(e) => Err(format!("{}: {e:#}", kernel_suites[0])),
            });
        }
        // The workers end once the queue is empty and closed.
        drop(jobs);
    });

    let mut done = done.into_inner().expect("the finished boots");
    let results: Vec<Proved> = prepared
        .into_iter()
        .zip(&plan)
        .enumerate()
        .map(|(i, (machine, (arch, _)))| {
            let mine: Vec<Done> = extract(&mut done, |d| d.machine == i);
            match machine.expect("every kernel was prepared") {
                Ok(m) => prove(&m, scenarios, options, mine),
                Err(problem) => Proved {
                    report: Report {
                        arch: arch.name,
                        name: arch.name.to_string(),
                        problems: vec![problem],
                        ..Report::default()
                    },
                    runs: Vec::new(),
                    not_run: Vec::new(),
                },
            }
        })
        .collect();

    println!();
    for p in &results {
        for line in p.report.summary_lines() {
            println!("{line}");
        }
        for line in p.runs.iter().flat_map(swap_deadlock::Runs::lines) {
            println!("{line}");
        }
        for line in &p.not_run {
            println!("{line}");
        }
    }
    if scenarios.iter().any(|s| *s != Scenario::SwapDeadlock) {
        let rows: Vec<_> = results.iter().map(|p| p.report.row()).collect();
        println!();
        print!("{}", util::text_table(&report::TABLE_HEADER, &rows));
    }
    let swap_rows: Vec<[String; 5]> = results
        .iter()
        .flat_map(|p| p.runs.iter().flat_map(swap_deadlock::Runs::rows))
        .collect();
    if !swap_rows.is_empty() {
        println!();
        print!(
            "{}",
            util::text_table(&swap_deadlock::TABLE_HEADER, &swap_rows)
        );
    }
    println!(
        "vm: {} kernel(s) in {:.0} s (fetch, build and pack {:.0} s; boots overlap the builds)",
        results.len(),
        start.elapsed().as_secs_f64(),
        prepare_time.as_secs_f64()
    );
    if options.plot {
        // The first kernel that ran both transports, else the first that
        // ran any.
        let first = results
            .iter()
            .find(|p| p.runs.len() > 1)
            .or_else(|| results.iter().find(|p| !p.runs.is_empty()))
            .context("--plot: no swap-deadlock run to draw")?;
        swap_deadlock::draw(&first.runs.iter().collect::<Vec<_>>())?;
    }

    let mut failures = Vec::new();
    let mut tally = util::Tally::default();
    for p in &results {
        let (name, report) = (&p.report.name, &p.report);
        failures.extend(report.problems.iter().map(|e| format!("{name}: {e}")));
        for runs in &p.runs {
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

/// Removes the items of `v` that match `keep` and returns them, in order.
fn extract<T>(v: &mut Vec<T>, keep: impl Fn(&T) -> bool) -> Vec<T> {
    let (mine, rest): (Vec<T>, Vec<T>) = v.drain(..).partition(|d| keep(d));
    *v = rest;
    mine
}

/// The boots `m` needs for `scenarios`: the suite, secrets and PID 1 boots,
/// then each swap-deadlock boot, round by round.
fn jobs_of(m: &Machine, scenarios: &[Scenario], options: &swap_deadlock::Options) -> Vec<Job> {
    let mut jobs = Vec::new();
    if m.suite_initrd.is_some() {
        jobs.push(Job::Console(ConsoleBoot::Suite));
        if m.arch.secretmem && scenarios.iter().any(|s| s.in_secrets_boot()) {
            jobs.push(Job::Console(ConsoleBoot::Secrets));
        }
    }
    if m.pid1_initrd.is_some() {
        jobs.push(Job::Console(ConsoleBoot::Pid1));
    }
    for round in 0..options.repeat {
        for (transport, _) in &m.swap_deadlock {
            for mode in options.modes() {
                jobs.push(Job::SwapDeadlock {
                    transport: *transport,
                    mode: mode.to_string(),
                    round,
                });
            }
        }
    }
    jobs
}

/// Boots `m` once for `job`.
fn boot_job(m: &Machine, job: Job) -> Ended {
    let (arch, kernel, series) = (m.arch, m.kernel.as_path(), &m.series);
    let (boot_kind, initrd, cmdline, timeout, tag) = match job {
        Job::Console(ConsoleBoot::Suite) => (
            ConsoleBoot::Suite,
            &m.suite_initrd,
            m.suite_cmdline.as_str(),
            SUITE_TIMEOUT,
            format!("{series} "),
        ),
        Job::Console(ConsoleBoot::Secrets) => (
            ConsoleBoot::Secrets,
            &m.suite_initrd,
            SECRETS_CMDLINE,
            SECRETS_TIMEOUT,
            format!("{series} secrets "),
        ),
        Job::Console(ConsoleBoot::Pid1) => (
            ConsoleBoot::Pid1,
            &m.pid1_initrd,
            "rdinit=/init",
            PID1_TIMEOUT,
            format!("{series} pid1 "),
        ),
        Job::SwapDeadlock {
            transport,
            mode,
            round,
        } => {
            let initrd = m
                .swap_deadlock
                .iter()
                .find(|(t, _)| *t == transport)
                .map(|(_, i)| i.as_path())
                .expect("a job's image was packed");
            let tag = format!("{series} {} ", transport.name());
            let run = swap_deadlock::boot(arch, kernel, initrd, &mode, &tag);
            return Ended::Run {
                transport,
                mode,
                round,
                run,
            };
        }
    };
    let initrd = initrd.as_deref().expect("a job's image was packed");
    Ended::Console(
        boot_kind,
        boot(arch, kernel, initrd, cmdline, timeout, &tag),
    )
}

/// Reads what `m`'s finished boots proved.
fn prove(
    m: &Machine,
    scenarios: &[Scenario],
    options: &swap_deadlock::Options,
    mut done: Vec<Done>,
) -> Proved {
    let mut report = Report {
        arch: m.arch.name,
        name: m.name(),
        kernel: m.kernel_package.clone(),
        scenarios: scenarios.to_vec(),
        ..Report::default()
    };
    // In boot order (suite, secrets, PID 1, then the rounds), whichever
    // worker finished first.
    done.sort_by_key(|d| match d.ended {
        Ended::Console(kind, _) => kind as usize,
        Ended::Run { round, .. } => 3 + round,
    });
    let mut runs: Vec<swap_deadlock::Runs> = m
        .swap_deadlock
        .iter()
        .map(|(t, _)| swap_deadlock::Runs::new(m.arch, *t, &m.kernel_package, &options.modes()))
        .collect();
    for d in done {
        match d.ended {
            Ended::Run {
                transport,
                mode,
                run,
                ..
            } => {
                if let Some(r) = runs.iter_mut().find(|r| r.transport == transport) {
                    r.push(&mode, run);
                }
            }
            Ended::Console(kind, console) => {
                match (kind, console) {
                    (_, Err(e)) => report.problems.push(format!("{e:#}")),
                    (ConsoleBoot::Suite, Ok(c)) => check_suite(&c, &mut report),
                    (ConsoleBoot::Secrets, Ok(c)) => check_secrets(&c, &mut report),
                    (ConsoleBoot::Pid1, Ok(c)) => check_pid1(&c, &mut report),
                }
                *match kind {
                    ConsoleBoot::Suite => &mut report.suite_time,
                    ConsoleBoot::Secrets => &mut report.secrets_time,
                    ConsoleBoot::Pid1 => &mut report.pid1_time,
                } = d.time;
            }
        }
    }
    if scenarios.contains(&Scenario::Pid1) && m.pid1_initrd.is_none() {
        report.problems.push(format!(
            "{} does not exist, so the PID 1 boot did not run",
            build::PID1_MANIFEST
        ));
    }
    Proved {
        report,
        runs,
        not_run: m.not_run.clone(),
    }
}

/// Fetches one kernel of `arch` (from the first of `suites` apt can
/// verify), builds the static binaries the scenarios need and packs the
/// image of each boot.
fn prepare(
    arch: &'static Arch,
    suites: &[&str],
    scenarios: &[Scenario],
    options: &swap_deadlock::Options,
) -> Result<Machine> {
    let has = |s: Scenario| scenarios.contains(&s);
    let suite_boot = scenarios.iter().any(|s| s.in_suite_boot());
    let dir = util::root()
        .join("target")
        .join("vm")
        .join(arch.name)
        .join(suites[0]);
    let fetched = fetch::fetch(arch, suites, &dir)?;
    if arch.qemu_backported {
        let version = fetch::fetch_qemu(arch.qemu_system)?;
        eprintln!("xtask: {}: boots under {version}", arch.name);
    }
    let series = swap_deadlock::kernel_series(&fetched.kernel_package);
    eprintln!(
        "xtask: {} {series}: {} ({})",
        arch.name,
        fetched.kernel_package,
        fetched.kernel.display()
    );
    // Before any build: which transports this kernel has a driver for. A
    // transport asked for by name that it lacks (ublk in the 6.1
    // kernels) is an error now, not a boot that waits for a device; by
    // default it is reported as not run.
    let mut transports = Vec::new();
    let mut not_run = Vec::new();
    if !arch.secretmem && scenarios.iter().any(|s| s.in_secrets_boot()) {
        not_run.push(format!(
            "secrets {} {series}: not run ({}'s kernel has no memfd_secret: the suite boot \
             tests the anonymous backing alone)",
            arch.name, arch.name
        ));
    }
    let in_tier = |t: &swap_deadlock::Transport| arch.swap_deadlock_tier.contains(&t.name());
    if has(Scenario::SwapDeadlock) && options.tier {
        for t in options.transports().iter().filter(|t| !in_tier(t)) {
            not_run.push(format!(
                "swap-deadlock {} {} {series}: not run in this tier (`cargo xtask vm --arch {} \
                 --scenario swap-deadlock` runs it)",
                arch.name,
                t.name(),
                arch.name
            ));
        }
    }
    if has(Scenario::SwapDeadlock) {
        for t in options
            .transports()
            .into_iter()
            .filter(|t| !options.tier || in_tier(t))
        {
            match fetched.driver_modules(t.module(), &dir)? {
                Some(modules) => transports.push((t, modules)),
                None if options.transport.is_some() => bail!(
                    "--transport {}: {} has no {} module, built in or shipped, so it cannot \
                     serve swap-deadlock's swap (choose another kernel with --suite)",
                    t.name(),
                    fetched.kernel_package,
                    t.module()
                ),
                None => not_run.push(format!(
                    "swap-deadlock {} {} {series}: not run ({} has no {} module)",
                    arch.name,
                    t.name(),
                    fetched.kernel_package,
                    t.module()
                )),
            }
        }
    }
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
    if !transports.is_empty() {
        examples.extend(transports.iter().map(|(t, _)| t.daemon()));
        programs.extend(swap_deadlock::PROGRAMS);
    }
    let binaries = build_binaries(arch, &examples, &programs)?;

    let suite_initrd = suite_boot
        .then(|| pack::suite_image(arch, &series, &fetched, &tests, &binaries, &dir))
        .transpose()?;
    let pid1_initrd = match pid1_manifest() {
        Some(manifest) if has(Scenario::Pid1) => {
            Some(pack::pid1_image(&build_pid1(arch, &manifest)?, &dir)?)
        }
        _ => None,
    };
    let swap_deadlock = transports
        .iter()
        .map(|(t, modules)| {
            swap_deadlock::pack(arch, &fetched, &binaries, *t, modules, &dir).map(|p| (*t, p))
        })
        .collect::<Result<Vec<_>>>()?;
    let run: Vec<&str> = scenarios
        .iter()
        .filter(|s| s.in_suite_boot())
        .map(|s| s.name())
        .collect();
    Ok(Machine {
        arch,
        kernel_package: fetched.kernel_package,
        series,
        kernel: fetched.kernel,
        suite_initrd,
        pid1_initrd,
        swap_deadlock,
        not_run,
        suite_cmdline: format!("{} mlock.run={}", suite_cmdline(arch), run.join(",")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use swap_deadlock::{Options, Transport};

    #[test]
    fn the_first_three_arches_boot_two_kernel_generations_the_others_one() {
        for arch in &ARCHES[..3] {
            assert_eq!(arch.kernels.len(), 2, "{}", arch.name);
            assert_ne!(arch.kernels[0][0], arch.kernels[1][0], "{}", arch.name);
        }
        for arch in &ARCHES[3..] {
            assert_eq!(arch.kernels.len(), 1, "{}", arch.name);
        }
    }

    fn machine(transports: &[Transport]) -> Machine {
        Machine {
            arch: &ARCHES[0],
            kernel_package: "linux-image-6.12.117+deb13-amd64 6.12.117-1 (trixie)".into(),
            series: "6.12".into(),
            kernel: PathBuf::new(),
            suite_initrd: Some(PathBuf::new()),
            suite_cmdline: String::new(),
            pid1_initrd: Some(PathBuf::new()),
            swap_deadlock: transports.iter().map(|t| (*t, PathBuf::new())).collect(),
            not_run: Vec::new(),
        }
    }

    #[test]
    fn each_transport_the_kernel_has_boots_every_mode_every_round() {
        let options = Options {
            repeat: 2,
            ..Options::default()
        };
        let both = jobs_of(
            &machine(&[Transport::Nbd, Transport::Ublk]),
            &Scenario::ALL,
            &options,
        );
        // Suite, secrets, PID 1, then 2 rounds of 2 transports by 3 modes.
        assert_eq!(both.len(), 3 + 2 * 2 * 3);
        let consoles = [ConsoleBoot::Suite, ConsoleBoot::Secrets, ConsoleBoot::Pid1];
        assert_eq!(&both[..3], &consoles.map(Job::Console));
        let nbd_only = jobs_of(&machine(&[Transport::Nbd]), &Scenario::ALL, &options);
        assert_eq!(nbd_only.len(), 3 + 2 * 3);
        assert!(nbd_only.iter().all(|j| !matches!(
            j,
            Job::SwapDeadlock {
                transport: Transport::Ublk,
                ..
            }
        )));
    }
}
