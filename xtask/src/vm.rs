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

mod cpio;
mod dt007;
mod fetch;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::arch::{Arch, ARCHES};
use crate::util::{self, Result};

/// Debian packages the harness runs on the host, besides each arch's
/// linker ([`Arch::build_packages`]).
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
/// Examples the busybox `/init` runs.
const SCENARIO_EXAMPLES: &[&str] = &["vm_hold", "vm_secret"];
/// The example tests/doctor.rs runs. A test binary in the VM cannot build
/// it with cargo, so it is packed prebuilt and named by this variable.
const DOCTOR_EXAMPLE: &str = "doctor";
const DOCTOR_ENV: &str = "MLOCK_TEST_DOCTOR";

const USAGE: &str = "usage: cargo xtask vm [--arch x86_64|aarch64|riscv64] \
                     [--scenario dt007 [--repeat N] [--plot] [--mode M]...]";

/// `cargo xtask vm [--arch A] [--scenario dt007 [--repeat N] [--plot]]`.
pub fn main(args: &[String]) -> Result {
    let mut arches: Vec<&Arch> = Vec::new();
    let mut scenario = None;
    let mut repeat = 1;
    let mut plot = false;
    let mut modes: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (flag.as_str(), None),
        };
        if name == "--plot" {
            plot = true;
            continue;
        }
        let value = inline
            .or_else(|| it.next().cloned())
            .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))?;
        match name {
            "--arch" => arches.push(arch(&value)?),
            "--scenario" if value == "dt007" => scenario = Some(value),
            "--mode" => modes.push(value),
            "--repeat" => {
                repeat = value
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("--repeat: not a positive number: {value}"))?
            }
            _ => return Err(format!("unknown option {flag}\n{USAGE}")),
        }
    }
    if arches.is_empty() {
        arches = ARCHES.iter().collect();
    }
    match scenario {
        Some(_) => dt007::run(&arches, repeat, plot, &modes),
        None if repeat != 1 || plot || !modes.is_empty() => Err(format!(
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
        .ok_or_else(|| format!("unknown arch {name}: choose x86_64, aarch64 or riscv64"))
}

/// What one architecture proved, read off its consoles.
#[derive(Default)]
struct Report {
    arch: &'static str,
    kernel: String,
    /// Passed and failed tests.
    tests: Option<(u64, u64)>,
    /// Tests libtest reported as ignored.
    ignored: u64,
    /// VmSwap in kB of the locked and the unlocked twin.
    swap: Option<(u64, u64)>,
    /// The words after `protected=` and `control=`.
    core: Vec<Core>,
    /// `LockedBuf::new`'s backing in the suite boot and in the
    /// secrets-only boot.
    default_backing: (Option<String>, Option<String>),
    /// Passed and failed tests of the secrets-only boot.
    secrets_tests: Option<(u64, u64)>,
    secrets_time: Duration,
    /// VmLck in kB of the PID 1 example.
    pid1: Option<u64>,
    /// The dt007 boots, one per mode.
    dt007: Vec<(&'static str, dt007::Run)>,
    suite_time: Duration,
    pid1_time: Duration,
    /// Why the architecture failed; empty when it passed.
    problems: Vec<String>,
}

/// One `core-dump <arch>: backing=<b> protected=<p> control=<c>` line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Core {
    /// Whether it came from the secrets-only boot (`secretmem.enable=0`).
    secretmem_off: bool,
    backing: String,
    protected: String,
    control: String,
}

/// What the host prepares for one architecture before booting it.
struct Prepared {
    arch: &'static Arch,
    kernel_package: String,
    kernel: PathBuf,
    suite_initrd: PathBuf,
    pid1_initrd: Option<PathBuf>,
    dt007_initrd: PathBuf,
}

/// Fetches, builds and packs every architecture, then boots them all in
/// parallel, prints the summary lines and a table, and fails unless every
/// architecture proved everything.
pub fn run(arches: &[&'static Arch]) -> Result<util::Tally> {
    let start = Instant::now();
    let packages: Vec<&str> = HOST_PACKAGES
        .iter()
        .chain(ARCHES.iter().flat_map(|a| a.build_packages))
        .copied()
        .collect();
    util::ensure_debian_packages(&packages)?;
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
                    problems: vec![e],
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
        Err(format!("the VM tier failed:\n  {}", failures.join("\n  ")))
    }
}

/// Fetches the kernel, builds the static binaries and packs both initramfs
/// images for one architecture.
fn prepare(arch: &'static Arch, pid1_manifest: Option<&Path>) -> Result<Prepared> {
    let dir = util::root().join("target").join("vm").join(arch.name);
    let fetched = fetch::fetch(arch, &dir)?;
    eprintln!(
        "xtask: {}: {} ({})",
        arch.name,
        fetched.kernel_package,
        fetched.kernel.display()
    );
    util::ensure_rust_target(arch.triple)?;

    let tests = build_tests(arch)?;
    let examples: Vec<&str> = SCENARIO_EXAMPLES
        .iter()
        .chain(doctor_example())
        .chain(&dt007::EXAMPLES)
        .copied()
        .collect();
    let example_dir = build_examples(arch, &examples)?;
    let dt007_initrd = dt007::pack(arch, &fetched, &example_dir, &dir)?;

    let suite_initrd = dir.join("suite.cpio.gz");
    let mut archive = cpio::Archive::default();
    for d in [
        "bin", "dev", "etc", "modules", "proc", "sys", "tmp", "tests",
    ] {
        archive.dir(d);
    }
    archive.char_device("dev/console", 0o600, 5, 1);
    archive.char_device("dev/null", 0o666, 1, 3);
    archive.copy("bin/busybox", 0o755, &fetched.busybox)?;
    archive.copy("init", 0o755, &vm_script("init.sh"))?;
    archive.copy("etc/prelude.sh", 0o644, &vm_script("prelude.sh"))?;
    let mut conf = format!("ARCH={}\nHOLD_MIB={HOLD_MIB}\n", arch.name);
    if let Some(doctor) = doctor_example() {
        conf.push_str(&format!("export {DOCTOR_ENV}=/bin/{doctor}\n"));
    }
    archive.file("etc/vm.conf", 0o644, conf.as_bytes());
    for module in &fetched.modules {
        let name = module.file_name().unwrap_or_default().to_string_lossy();
        archive.copy(&format!("modules/{name}"), 0o644, module)?;
    }
    for (name, path) in &tests {
        archive.copy(&format!("tests/{name}"), 0o755, path)?;
    }
    for name in SCENARIO_EXAMPLES.iter().chain(doctor_example()) {
        archive.copy(&format!("bin/{name}"), 0o755, &example_dir.join(name))?;
    }
    archive.write_gzip(&suite_initrd)?;

    let pid1_initrd = if let Some(manifest) = pid1_manifest {
        let init = build_pid1(arch, manifest)?;
        let path = dir.join("pid1.cpio.gz");
        let mut archive = cpio::Archive::default();
        archive.dir("dev");
        archive.dir("proc");
        archive.char_device("dev/console", 0o600, 5, 1);
        archive.copy("init", 0o755, &init)?;
        archive.write_gzip(&path)?;
        Some(path)
    } else {
        None
    };

    Ok(Prepared {
        arch,
        kernel_package: fetched.kernel_package,
        kernel: fetched.kernel,
        suite_initrd,
        pid1_initrd,
        dt007_initrd,
    })
}

/// A script of `xtask/vm/` (the busybox `/init`s and what they source).
fn vm_script(name: &str) -> PathBuf {
    util::root().join("xtask").join("vm").join(name)
}

/// A cargo command for `arch`'s static binaries, in a target directory of
/// its own (its flags differ from the host's and QEMU user mode's builds).
fn cargo_for(arch: &Arch, subcommand: &str) -> Command {
    let mut cmd = util::cargo();
    cmd.arg(subcommand)
        .args(["--target", arch.triple])
        .env("CARGO_TARGET_DIR", build_dir())
        // TCG runs guest code 10-30 times slower than the host: optimize
        // the crate and its tests, keeping debug assertions and overflow
        // checks. Dependencies (criterion and the benchmarks' peers among
        // them) stay at opt-level 0: they cost compile time, not test time.
        .env("CARGO_PROFILE_TEST_OPT_LEVEL", "2")
        .env("CARGO_PROFILE_DEV_OPT_LEVEL", "2")
        .args(["--config", "profile.test.package.\"*\".opt-level=0"])
        .args(["--config", "profile.dev.package.\"*\".opt-level=0"])
        // Smaller binaries make a smaller initramfs in a 256 MiB VM.
        .env("CARGO_PROFILE_TEST_DEBUG", "0")
        .env("CARGO_PROFILE_TEST_STRIP", "debuginfo")
        .env("CARGO_PROFILE_DEV_DEBUG", "0")
        .env("CARGO_PROFILE_DEV_STRIP", "debuginfo")
        .env_remove("MLOCK_TEST_QEMU_USER");
    cmd.envs(arch.build_env());
    cmd
}

/// Builds every test target and returns (name in the VM, executable).
fn build_tests(arch: &Arch) -> Result<Vec<(String, PathBuf)>> {
    let json = util::output(cargo_for(arch, "test").args([
        "--tests",
        // Every test, including those behind optional features.
        "--all-features",
        "--no-run",
        "--message-format=json-render-diagnostics",
    ]))?;
    let mut tests: Vec<(String, PathBuf)> = util::cargo_executables(&json)
        .into_iter()
        .filter(|built| built.test)
        .map(|built| {
            let kind = if built.kind == ["lib"] { "lib-" } else { "" };
            (format!("{kind}{}", built.name), built.executable)
        })
        .collect();
    if tests.is_empty() {
        return Err(format!(
            "cargo built no test executables for {}",
            arch.triple
        ));
    }
    tests.sort();
    Ok(tests)
}

/// Builds `examples` as static release binaries; returns their directory.
fn build_examples(arch: &Arch, examples: &[&str]) -> Result<PathBuf> {
    let mut cmd = cargo_for(arch, "build");
    cmd.args(["--release", "--all-features"]);
    for example in examples {
        cmd.args(["--example", example]);
    }
    util::run(&mut cmd)?;
    Ok(build_dir()
        .join(arch.triple)
        .join("release")
        .join("examples"))
}

/// The doctor example, when it exists.
fn doctor_example() -> Option<&'static &'static str> {
    let source = util::root()
        .join("examples")
        .join(format!("{DOCTOR_EXAMPLE}.rs"));
    source.is_file().then_some(&DOCTOR_EXAMPLE)
}

/// Builds the `#![no_std]` PID 1 helper, a package of its own (see its
/// Cargo.toml), as a static release binary; returns its path.
fn build_pid1(arch: &Arch, manifest: &Path) -> Result<PathBuf> {
    let mut cmd = cargo_for(arch, "build");
    cmd.arg("--release").arg("--manifest-path").arg(manifest);
    util::run(&mut cmd)?;
    Ok(build_dir()
        .join(arch.triple)
        .join("release")
        .join(PID1_EXAMPLE))
}

/// The target directory of the VM builds.
fn build_dir() -> PathBuf {
    util::root().join("target").join("vm").join("build")
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
        Err(e) => report.problems.push(e),
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
        Err(e) => report.problems.push(e),
    }
    report.secrets_time = started.elapsed();

    let started = Instant::now();
    match &p.pid1_initrd {
        Some(initrd) => match boot(p, initrd, "rdinit=/init", PID1_TIMEOUT, "pid1 ") {
            Ok(console) => check_pid1(&console, &mut report),
            Err(e) => report.problems.push(e),
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

/// What a boot printed, and how it ended.
pub struct Console {
    /// The console's lines (kernel and `/init` alike).
    pub lines: Vec<String>,
    /// When each line reached the host, in seconds since QEMU started.
    pub times: Vec<f64>,
    /// QEMU was killed at the time limit.
    pub timed_out: bool,
    /// QEMU exited with status 0 (a power-off, or a reboot that
    /// `-no-reboot` turned into an exit).
    pub status_ok: bool,
}

/// Boots the kernel with `initrd`, echoes the console with a prefix, and
/// returns its lines. Fails on a timeout or a kernel panic.
fn boot(
    p: &Prepared,
    initrd: &Path,
    extra: &str,
    timeout: Duration,
    tag: &str,
) -> Result<Vec<String>> {
    let console = boot_console(p.arch, &p.kernel, initrd, extra, timeout, tag)?;
    if let Some(panic) = console.lines.iter().find(|l| l.contains("Kernel panic")) {
        return Err(format!("{tag}boot: kernel panic: {panic}"));
    }
    if console.timed_out {
        return Err(format!(
            "{tag}boot: no power-off within {} s (last console line: {:?})",
            timeout.as_secs(),
            console.lines.last().map(String::as_str).unwrap_or("")
        ));
    }
    if !console.status_ok {
        return Err(format!(
            "{tag}boot: {} exited with an error",
            p.arch.qemu_system
        ));
    }
    Ok(console.lines)
}

/// Boots `kernel` with `initrd` and `extra` on its command line, echoes
/// the console with a prefix, and returns what it printed, however the
/// boot ended; only a QEMU that cannot start is an error.
fn boot_console(
    arch: &Arch,
    kernel: &Path,
    initrd: &Path,
    extra: &str,
    timeout: Duration,
    tag: &str,
) -> Result<Console> {
    let append = format!(
        "console={} panic=-1 quiet {} {extra}",
        arch.console, arch.kernel_args
    );
    let mut cmd = Command::new(arch.qemu_system);
    cmd.args(["-accel", "tcg", "-m", MEMORY, "-smp", "1"])
        .args(arch.machine)
        .args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-serial",
            "stdio",
        ])
        .arg("-no-reboot")
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", append.trim_end()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    eprintln!("$ {}", util::describe(&cmd));
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("could not start {}: {e}", arch.qemu_system))?;

    let (send, receive) = mpsc::channel::<String>();
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|stream| {
        let send = send.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).split(b'\n').map_while(|l| l.ok()) {
                let line = String::from_utf8_lossy(&line).trim_end().to_string();
                if send.send(line).is_err() {
                    break;
                }
            }
        })
    })
    .collect();
    drop(send);

    let started = Instant::now();
    let deadline = started + timeout;
    let mut console = Vec::new();
    let mut times = Vec::new();
    let mut timed_out = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match receive.recv_timeout(left.min(Duration::from_millis(500))) {
            Ok(line) => {
                let at = started.elapsed().as_secs_f64();
                eprintln!("[{} {tag}vm {at:5.1}] {line}", arch.name);
                times.push(at);
                console.push(line);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if Instant::now() >= deadline {
            timed_out = true;
            let _ = child.kill();
            break;
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for {}: {e}", arch.qemu_system))?;
    for reader in readers {
        let _ = reader.join();
    }
    while let Ok(line) = receive.try_recv() {
        times.push(started.elapsed().as_secs_f64());
        console.push(line);
    }
    Ok(Console {
        lines: console,
        times,
        timed_out,
        status_ok: status.success(),
    })
}

/// The line that starts with `prefix`, with the prefix removed.
fn find_line<'a>(console: &'a [String], prefix: &str) -> Option<&'a str> {
    console.iter().rev().find_map(|l| l.strip_prefix(prefix))
}

/// The number that follows `key` in `text` (e.g. `VmSwap=` in `VmSwap=0 kB`).
fn number_after(text: &str, key: &str) -> Option<u64> {
    let rest = &text[text.find(key)? + key.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Checks the three summary lines of the scenario boot.
fn check_suite(console: &[String], r: &mut Report) {
    let arch = r.arch;
    if !console.iter().any(|l| l == "vm: done") {
        r.problems
            .push("the init script did not finish (no `vm: done` line)".into());
    }

    r.tests = check_tests(console, arch, &mut r.ignored, &mut r.problems);
    r.default_backing.0 = check_default_backing(console, arch, "secretmem", &mut r.problems);

    // swap-pressure <arch>: locked VmSwap=<n> kB unlocked VmSwap=<m> kB
    let prefix = format!("swap-pressure {arch}: ");
    match find_line(console, &prefix) {
        Some(rest) => {
            let (locked, unlocked) = rest.split_once(" unlocked ").unwrap_or((rest, ""));
            match (
                number_after(locked, "VmSwap="),
                number_after(unlocked, "VmSwap="),
            ) {
                (Some(n), Some(m)) => {
                    r.swap = Some((n, m));
                    // VmSwap=0 proves something only if the twin was locked.
                    let need = u64::from(HOLD_MIB) * 1024;
                    match find_line(console, "vm: locked twin: ")
                        .and_then(|l| number_after(l, "VmLck="))
                    {
                        Some(locked) if locked >= need => {}
                        Some(locked) => r.problems.push(format!(
                            "the locked twin had only VmLck={locked} kB (need {need} kB)"
                        )),
                        None => r
                            .problems
                            .push("missing line: vm: locked twin: VmLck=<n> kB".into()),
                    }
                    if n != 0 {
                        r.problems
                            .push(format!("the locked twin had {n} kB swapped out"));
                    }
                    let floor = u64::from(HOLD_MIB) * 1024 * MIN_SWAPPED_PERCENT / 100;
                    if m < floor {
                        r.problems.push(format!(
                            "the unlocked twin had only {m} kB swapped out (need {floor} kB): \
                             the memory hog did not create enough pressure to prove anything"
                        ));
                    }
                }
                _ => r.problems.push(format!("malformed line: {prefix}{rest}")),
            }
        }
        None => r.problems.push(format!(
            "missing line: swap-pressure {arch}: locked VmSwap=<n> kB unlocked VmSwap=<m> kB"
        )),
    }

    for backing in ["secretmem", "anonymous"] {
        check_core(console, r, backing);
    }
}

/// Checks the secrets-only boot (`memfd_secret` off): its tests line, the
/// fallback to anonymous memory, and its core dump.
fn check_secrets(console: &[String], r: &mut Report) {
    let arch = r.arch;
    if !console.iter().any(|l| l == "vm: done") {
        r.problems
            .push("secrets boot: the init script did not finish (no `vm: done` line)".into());
    }
    let mut ignored = 0;
    let mut problems = Vec::new();
    r.secrets_tests = check_tests(console, arch, &mut ignored, &mut problems);
    r.default_backing.1 = check_default_backing(console, arch, "anonymous", &mut problems);
    r.ignored += ignored;
    r.problems
        .extend(problems.into_iter().map(|p| format!("secrets boot: {p}")));
    check_core(console, r, "anonymous");
    if let Some(core) = r.core.last_mut() {
        core.secretmem_off = true;
    }
}

/// Checks `tests <arch>: N passed, M failed` against libtest's own result
/// lines; returns (passed, failed) and adds libtest's ignored count.
fn check_tests(
    console: &[String],
    arch: &str,
    ignored: &mut u64,
    problems: &mut Vec<String>,
) -> Option<(u64, u64)> {
    // tests <arch>: N passed, M failed
    let mut result = None;
    match find_line(console, &format!("tests {arch}: ")) {
        Some(rest) => match rest
            .split_once(" passed, ")
            .and_then(|(p, f)| Some((p.parse().ok()?, f.strip_suffix(" failed")?.parse().ok()?)))
        {
            Some((passed, failed)) => {
                result = Some((passed, failed));
                // Cross-check the script's sums with the host's own count
                // of libtest's result lines.
                let mut tally = util::Tally::default();
                tally.add_libtest_output(&console.join("\n"));
                *ignored = tally.ignored;
                if tally.passed != passed || tally.failed > failed {
                    problems.push(format!(
                        "the summary line says {passed} passed, {failed} failed, but libtest's \
                         result lines say {} passed, {} failed",
                        tally.passed, tally.failed
                    ));
                }
                if failed > 0 {
                    problems.push(format!(
                        "{failed} test(s) failed in the VM: {}",
                        failing_tests(console).join(", ")
                    ));
                }
                if passed == 0 {
                    problems.push("no test passed in the VM".into());
                }
            }
            None => problems.push(format!("malformed line: tests {arch}: {rest}")),
        },
        None => problems.push(format!("missing line: tests {arch}: N passed, M failed")),
    }
    result
}

/// Checks `secrets <arch>: default=<backing>`: the backing `LockedBuf::new`
/// chose in this boot must be `want`.
fn check_default_backing(
    console: &[String],
    arch: &str,
    want: &str,
    problems: &mut Vec<String>,
) -> Option<String> {
    let Some(rest) = find_line(console, &format!("secrets {arch}: default=")) else {
        problems.push(format!("missing line: secrets {arch}: default={want}"));
        return None;
    };
    if rest != want {
        problems.push(format!(
            "LockedBuf::new chose {rest:?}, expected {want} (kernel command line \
             secretmem.enable=1 turns memfd_secret on, =0 off)"
        ));
    }
    Some(rest.to_string())
}

/// Checks `core-dump <arch>: backing=<backing> protected=absent
/// control=present`.
fn check_core(console: &[String], r: &mut Report, backing: &str) {
    let prefix = format!("core-dump {}: backing={backing} ", r.arch);
    let Some(rest) = find_line(console, &prefix) else {
        r.problems.push(format!(
            "missing line: {prefix}protected=absent control=present"
        ));
        return;
    };
    let word = |key: &str| {
        rest.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .unwrap_or("?")
            .to_string()
    };
    let (protected, control) = (word("protected="), word("control="));
    if protected != "absent" {
        r.problems.push(format!(
            "the LockedBuf ({backing}) marker was {protected} in the core dump (must be absent)"
        ));
    }
    if control != "present" {
        r.problems.push(format!(
            "the ordinary marker was {control} in the {backing} core dump (must be present, \
             or the search proved nothing)"
        ));
    }
    r.core.push(Core {
        secretmem_off: false,
        backing: backing.to_string(),
        protected,
        control,
    });
}

/// The failing tests as `<test binary>::<test>`, read off libtest's
/// `test <name> ... FAILED` lines and the script's `vm: running <binary>`.
fn failing_tests(console: &[String]) -> Vec<String> {
    let mut binary = "";
    let mut failing = Vec::new();
    for line in console {
        if let Some(name) = line.strip_prefix("vm: running ") {
            binary = name;
        } else if let Some(died) = line
            .strip_prefix("vm: ")
            .filter(|l| l.contains(" exited with status "))
        {
            failing.push(format!("({died})"));
        } else if let Some(test) = line
            .strip_prefix("test ")
            .and_then(|l| l.strip_suffix(" ... FAILED"))
        {
            failing.push(format!("{binary}::{test}"));
        }
    }
    failing
}

/// Checks the PID 1 example's line: `mlock-init: locked VmLck=<n> kB`.
fn check_pid1(console: &[String], r: &mut Report) {
    match find_line(console, "mlock-init: ") {
        Some(rest) => match rest
            .strip_prefix("locked ")
            .and_then(|t| number_after(t, "VmLck="))
        {
            Some(n) => {
                r.pid1 = Some(n);
                if n == 0 {
                    r.problems
                        .push("PID 1 reported VmLck=0 kB after locking".into());
                }
            }
            None => r
                .problems
                .push(format!("PID 1 did not lock: mlock-init: {rest}")),
        },
        None => r
            .problems
            .push("missing line from the PID 1 example: mlock-init: locked VmLck=<n> kB".into()),
    }
}

/// The summary lines, exactly as the VMs printed them (or as the host
/// derives them for PID 1).
fn summary_lines(r: &Report) -> Vec<String> {
    let arch = r.arch;
    let mut lines = Vec::new();
    if let Some((p, f)) = r.tests {
        lines.push(format!("tests {arch}: {p} passed, {f} failed"));
    }
    if let Some((n, m)) = r.swap {
        lines.push(format!(
            "swap-pressure {arch}: locked VmSwap={n} kB unlocked VmSwap={m} kB"
        ));
    }
    if let Some(b) = &r.default_backing.0 {
        lines.push(format!("secrets {arch}: default={b}"));
    }
    if let Some(b) = &r.default_backing.1 {
        lines.push(format!("secrets {arch}: default={b} (secretmem.enable=0)"));
    }
    if let Some((p, f)) = r.secrets_tests {
        lines.push(format!(
            "tests {arch} (secretmem.enable=0): {p} passed, {f} failed"
        ));
    }
    for c in &r.core {
        lines.push(format!(
            "core-dump {arch}: backing={} protected={} control={}{}",
            c.backing,
            c.protected,
            c.control,
            if c.secretmem_off {
                " (secretmem.enable=0)"
            } else {
                ""
            }
        ));
    }
    if let Some(n) = r.pid1 {
        lines.push(format!("pid1 {arch}: locked {n} kB"));
    }
    for (mode, run) in &r.dt007 {
        lines.push(dt007::line(arch, mode, run));
    }
    lines
}

/// The final table: one row per architecture.
fn table(reports: &[Report]) -> String {
    let rows: Vec<[String; 8]> = reports
        .iter()
        .map(|r| {
            let core = if r.core.is_empty() {
                "-".to_string()
            } else {
                r.core
                    .iter()
                    .map(|c| {
                        let backing = match c.secretmem_off {
                            true => format!("{} (off)", c.backing),
                            false => c.backing.clone(),
                        };
                        match (c.protected.as_str(), c.control.as_str()) {
                            ("absent", "present") => format!("{backing}: absent"),
                            (p, c2) => format!("{backing}: {p}/{c2}"),
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            [
                r.arch.to_string(),
                r.kernel.clone(),
                r.tests.map_or("-".into(), |(p, f)| {
                    let (sp, sf) = r.secrets_tests.unwrap_or_default();
                    match r.ignored {
                        0 => format!("{p} + {sp} ok, {} failed", f + sf),
                        i => format!("{p} + {sp} ok, {} failed, {i} ignored", f + sf),
                    }
                }),
                r.swap.map_or("-".into(), |(n, m)| format!("{n} / {m} kB")),
                core,
                r.pid1.map_or("-".into(), |n| format!("{n} kB")),
                format!(
                    "{:.0} + {:.0} + {:.0} s",
                    r.suite_time.as_secs_f64(),
                    r.secrets_time.as_secs_f64(),
                    r.pid1_time.as_secs_f64()
                ),
                if r.problems.is_empty() {
                    "PASS"
                } else {
                    "FAIL"
                }
                .to_string(),
            ]
        })
        .collect();
    let header = [
        "arch",
        "kernel",
        "tests in the VM (+ secrets boot)",
        "VmSwap locked / unlocked",
        "core dump",
        "PID 1 VmLck",
        "boots",
        "result",
    ];
    util::text_table(&header, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn console(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    const PASSING: &str = "\
vm: running lock
test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s
tests x86_64: 3 passed, 0 failed
vm: locked twin: VmLck=41596 kB VmRSS=41584 kB
swap-pressure x86_64: locked VmSwap=0 kB unlocked VmSwap=40996 kB
secrets x86_64: default=secretmem
core-dump x86_64: backing=secretmem protected=absent control=present
core-dump x86_64: backing=anonymous protected=absent control=present
vm: done";

    fn checked(text: &str) -> Report {
        let mut report = Report {
            arch: "x86_64",
            ..Report::default()
        };
        check_suite(&console(text), &mut report);
        report
    }

    #[test]
    fn a_console_that_proves_everything_passes() {
        let r = checked(PASSING);
        assert_eq!(r.problems, Vec::<String>::new());
        assert_eq!(r.tests, Some((3, 0)));
        assert_eq!(r.ignored, 1);
        assert_eq!(r.swap, Some((0, 40996)));
        assert_eq!(r.core.len(), 2);
        assert!(r
            .core
            .iter()
            .all(|c| c.protected == "absent" && c.control == "present"));
        assert_eq!(r.default_backing.0.as_deref(), Some("secretmem"));
    }

    #[test]
    fn a_swapped_locked_twin_or_an_unswapped_unlocked_twin_fails() {
        let r = checked(&PASSING.replace("locked VmSwap=0 kB", "locked VmSwap=4 kB"));
        assert!(r
            .problems
            .iter()
            .any(|p| p.contains("locked twin had 4 kB")));
        let r = checked(&PASSING.replace("VmSwap=40996", "VmSwap=100"));
        assert!(r
            .problems
            .iter()
            .any(|p| p.contains("proved nothing") || p.contains("did not create enough pressure")));
        let r = checked(&PASSING.replace("VmLck=41596", "VmLck=0"));
        assert!(r.problems.iter().any(|p| p.contains("VmLck=0 kB")));
    }

    #[test]
    fn a_leaked_secret_or_a_blind_search_fails() {
        for backing in ["secretmem", "anonymous"] {
            let line = format!("backing={backing} protected=absent control=present");
            let r = checked(&PASSING.replace(&line, &line.replace("=absent", "=present")));
            assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
            assert!(r.problems[0].contains(backing));
            let r = checked(&PASSING.replace(&line, &line.replace("=present", "=absent")));
            assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
        }
        // Both backings must be dumped.
        let r = checked(&PASSING.replace("backing=anonymous", "backing=secretmem"));
        assert!(r
            .problems
            .iter()
            .any(|p| p.contains("missing line: core-dump x86_64: backing=anonymous")));
    }

    #[test]
    fn the_secrets_boot_must_fall_back_to_anonymous_memory() {
        let text = "\
vm: running secret
test result: ok. 13 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s
tests x86_64: 13 passed, 0 failed
secrets x86_64: default=anonymous
core-dump x86_64: backing=anonymous protected=absent control=present
vm: done";
        let mut r = Report {
            arch: "x86_64",
            ..Report::default()
        };
        check_secrets(&console(text), &mut r);
        assert_eq!(r.problems, Vec::<String>::new());
        assert_eq!(r.secrets_tests, Some((13, 0)));
        let mut r = Report {
            arch: "x86_64",
            ..Report::default()
        };
        check_secrets(
            &console(&text.replace("default=anonymous", "default=secretmem")),
            &mut r,
        );
        assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
        assert!(r.problems[0].starts_with("secrets boot: LockedBuf::new chose"));
        // The suite boot must have memfd_secret.
        let r = checked(&PASSING.replace("default=secretmem", "default=anonymous"));
        assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
    }

    #[test]
    fn missing_lines_and_failed_tests_are_reported() {
        let r = checked("vm: running lock\ntest a ... FAILED\nvm: done");
        // tests, secrets, swap-pressure, and two core-dump lines.
        assert_eq!(r.problems.len(), 5, "{:?}", r.problems);
        let text = PASSING
            .replace(
                "tests x86_64: 3 passed, 0 failed",
                "tests x86_64: 2 passed, 1 failed",
            )
            .replace("ok. 3 passed; 0 failed", "FAILED. 2 passed; 1 failed")
            .replace(
                "vm: running lock",
                "vm: running lock\ntest it_locks ... FAILED",
            );
        let r = checked(&text);
        assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
        assert!(r.problems[0].contains("lock::it_locks"));
        // The script's sums must agree with libtest's lines.
        let r = checked(&PASSING.replace("tests x86_64: 3 passed", "tests x86_64: 4 passed"));
        assert!(r.problems[0].contains("result lines say 3 passed"));
    }

    #[test]
    fn pid1_must_lock_something() {
        let mut r = Report::default();
        check_pid1(&console("mlock-init: locked VmLck=148 kB"), &mut r);
        assert_eq!((r.pid1, r.problems.len()), (Some(148), 0));
        let mut r = Report::default();
        check_pid1(&console("mlock-init: failed: no CAP_IPC_LOCK"), &mut r);
        assert_eq!((r.pid1, r.problems.len()), (None, 1));
    }
}
