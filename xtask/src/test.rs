//! `cargo xtask test`: the project's one test command.
//!
//! With no arguments it runs the whole matrix in order and stops at the first
//! failing step: formatting, clippy for every target, docs, the test suite on
//! the host (glibc and static musl) and under QEMU user mode (aarch64 and
//! riscv64), a no-OS build, the crates.io package (`cargo package`,
//! `cargo publish --dry-run`), and the later tiers (real kernels, size, the container
//! table on Docker, quick benchmarks). `--target T` runs only that
//! target's tests.
//!
//! Before anything runs, it installs what the chosen steps need (rust targets
//! and components, Debian packages) or fails saying what to install: a
//! missing prerequisite is never a silent skip.
//!
//! At the end it prints one line per step (step, target, passed, failed,
//! seconds) and then `xtask: N passed, M failed`, which CI reads.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use crate::arch::{self, Arch};
use crate::util::{self, Tally};

// Set only for runs whose runner is QEMU user mode, and removed everywhere
// else (tests/common/contract.rs).
use crate::contract::QEMU_USER_ENV;

/// The no-OS target: the crate must build there (every call returns
/// `Error::Unsupported`), but nothing can run.
const NO_OS: &str = "riscv64gc-unknown-none-elf";

/// The `#![no_std]` initramfs helper, a package with its own workspace
/// (so `--workspace` and `fmt --all` do not reach it).
const STATIC_INIT: &str = "examples/static_init/Cargo.toml";

/// The crate's `rust-version` (Cargo.toml; a unit test keeps the two
/// equal): the oldest Rust that builds it, its dependencies included.
const MSRV: &str = "1.87";

/// A Linux target of the matrix: the host's own, or one arch's static
/// target (its settings are in [`crate::arch`]).
struct Target {
    triple: &'static str,
    /// The arch whose static target this is; `None` for the host's glibc
    /// target, which needs no settings.
    arch: Option<&'static Arch>,
}

impl Target {
    /// Whether doctests run here (only on the host's default target; the
    /// foreign and static runs take the lib, bin and integration tests).
    fn doctests(&self) -> bool {
        self.arch.is_none()
    }

    /// The QEMU user-mode emulator of the runner, for foreign targets.
    fn qemu(&self) -> Option<&'static str> {
        self.arch.and_then(|a| a.qemu_user)
    }
}

/// The Linux targets, in the order the matrix runs them.
const TARGETS: &[Target] = &[
    Target {
        triple: "x86_64-unknown-linux-gnu",
        arch: None,
    },
    Target {
        triple: arch::X86_64.triple,
        arch: Some(&arch::X86_64),
    },
    Target {
        triple: arch::AARCH64.triple,
        arch: Some(&arch::AARCH64),
    },
    Target {
        triple: arch::RISCV64.triple,
        arch: Some(&arch::RISCV64),
    },
];

/// One row of the summary.
struct Row {
    step: &'static str,
    target: String,
    tally: Tally,
    seconds: f64,
}

/// What a step does; it adds what it counted to the tally it is given.
type Action = Box<dyn FnOnce(&mut Tally) -> util::Result>;

struct Step {
    name: &'static str,
    /// The target triple, or a short label (`host`, `all`) for steps that
    /// are not about one target.
    target: String,
    action: Action,
}

impl Step {
    fn new(
        name: &'static str,
        target: &str,
        action: impl FnOnce(&mut Tally) -> util::Result + 'static,
    ) -> Step {
        Step {
            name,
            target: target.to_string(),
            action: Box::new(action),
        }
    }
}

const USAGE: &str = "usage: cargo xtask test [--target T]...

Without --target, runs the whole matrix (fmt, clippy, doc, tests on every
target, builds) and stops at the first failure. With --target, runs only that
target's tests: natively for the host (and its status tests once more without
the default features), under QEMU user mode when foreign (for riscv64 also
optimized with the V extension, on an emulated CPU that has it).";

/// Entry point for `cargo xtask test [--target T]...`.
pub fn main(args: &[String]) -> util::Result {
    let mut only: Vec<String> = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            "--target" => match args.next() {
                Some(t) => only.push(t.clone()),
                None => return Err(format!("--target needs a value\n\n{USAGE}")),
            },
            other => match other.strip_prefix("--target=") {
                Some(t) => only.push(t.to_string()),
                None => return Err(format!("unknown argument `{other}`\n\n{USAGE}")),
            },
        }
    }
    for t in &only {
        if t != NO_OS && !TARGETS.iter().any(|target| target.triple == *t) {
            let known: Vec<&str> = TARGETS.iter().map(|t| t.triple).collect();
            return Err(format!(
                "unknown target `{t}`; known: {}, {NO_OS}",
                known.join(", ")
            ));
        }
    }
    check_host()?;

    let steps = if only.is_empty() {
        let all: Vec<&'static Target> = TARGETS.iter().collect();
        let mut steps = vec![setup_step(all, true, true)];
        steps.extend(full_matrix());
        steps
    } else {
        let chosen: Vec<&'static Target> = TARGETS
            .iter()
            .filter(|t| only.iter().any(|o| o == t.triple))
            .collect();
        let no_os = only.iter().any(|o| o == NO_OS);
        let mut steps = vec![setup_step(chosen.clone(), no_os, false)];
        let vector: Vec<Step> = chosen
            .iter()
            .filter_map(|t| t.arch.and_then(vector_step))
            .collect();
        steps.extend(chosen.into_iter().map(test_step));
        steps.extend(vector);
        if no_os {
            steps.push(no_os_build());
            steps.push(stub_backend_test());
        }
        steps
    };
    run_steps(steps)
}

/// The whole matrix, in the order it runs.
///
/// The later tiers (real kernels, the size report, the container table,
/// the quick benchmark run) come last, each a module with
/// `pub fn run_all() -> util::Result<util::Tally>` (or `util::Result` for a
/// step that only builds or reports) and one `Step` here; each does its own
/// set-up (qemu-system, cpio, musl-tools, ...) inside `run_all()` through
/// `util::ensure_debian_packages`.
fn full_matrix() -> Vec<Step> {
    let mut steps = vec![Step::new("fmt", "all", |_| {
        util::run(util::cargo().args(["fmt", "--all", "--", "--check"]))?;
        util::run(util::cargo().args(["fmt", "--manifest-path", STATIC_INIT, "--", "--check"]))
    })];

    // Lints: the host (with the xtask), every Linux target, the no-OS lib.
    steps.push(Step::new("clippy", host_triple(), |_| {
        util::run(util::cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))
    }));
    for target in TARGETS.iter().filter(|t| t.triple != host_triple()) {
        steps.push(Step::new("clippy", target.triple, move |_| {
            util::run(
                cargo_for(target)
                    .args(["clippy", "--target", target.triple, "--all-targets"])
                    .args(["--", "-D", "warnings"]),
            )
        }));
    }
    // The `#![no_std]` /init helper is its own workspace: lint it per arch.
    for target in TARGETS.iter().filter(|t| t.triple != host_triple()) {
        steps.push(Step::new("clippy static_init", target.triple, move |_| {
            util::run(
                cargo_for(target)
                    .args(["clippy", "--manifest-path", STATIC_INIT])
                    .args(["--target", target.triple, "--", "-D", "warnings"]),
            )
        }));
    }
    steps.push(Step::new("clippy", NO_OS, |_| {
        util::run(
            util::cargo().args(["clippy", "--target", NO_OS, "--lib", "--", "-D", "warnings"]),
        )
    }));

    // The oldest Rust the crate says it builds with (`rust-version`), in
    // each feature set; its own target directory.
    steps.push(Step::new("check (rust-version)", host_triple(), |_| {
        util::ensure_rust_toolchain(MSRV)?;
        for features in [&[][..], &["--features", "serde"]] {
            util::run(
                Command::new("rustup")
                    .current_dir(util::root())
                    .env("CARGO_TARGET_DIR", util::root().join("target").join("msrv"))
                    .args(["run", MSRV, "cargo", "check", "--lib"])
                    .args(features),
            )?;
        }
        Ok(())
    }));

    steps.push(Step::new("doc", host_triple(), |_| {
        util::run(
            util::cargo()
                .env("RUSTDOCFLAGS", "-D warnings")
                .args(["doc", "--no-deps"]),
        )
    }));

    // The crates.io package: what it holds builds on its own, and a
    // publish would be accepted (`--dry-run` uploads nothing). The work
    // tree may hold uncommitted changes during development.
    steps.push(Step::new("package", "crates.io", |_| {
        util::run(util::cargo().args(["package", "-p", "mlock", "--allow-dirty"]))?;
        util::run(util::cargo().args(["publish", "--dry-run", "-p", "mlock", "--allow-dirty"]))
    }));

    // Tests: host first, then the static and the emulated targets.
    steps.extend(TARGETS.iter().map(test_step));
    // The vector extension's case (riscv64 V): optimized, so that the
    // compiler vectorizes, under an emulated CPU that has it.
    steps.extend(arch::ARCHES.iter().filter_map(vector_step));
    // Builds that run nothing: no OS.
    steps.push(no_os_build());
    steps.push(stub_backend_test());

    // The later tiers, in this order.
    steps.push(Step::new("vm", "all", |t| {
        *t = crate::vm::run_all()?;
        Ok(())
    }));
    steps.push(Step::new("size", arch::X86_64.triple, |_| {
        crate::size::run_all()
    }));
    steps.push(Step::new("docker", arch::X86_64.triple, |t| {
        *t = crate::docker::run_all()?;
        Ok(())
    }));
    steps.push(Step::new("bench --quick", host_triple(), |_| {
        crate::bench::quick()
    }));

    steps
}

/// The test step of one Linux target: natively for the host's arch, under
/// the target's QEMU runner otherwise.
fn test_step(target: &'static Target) -> Step {
    Step::new("test", target.triple, move |tally| {
        let mut cmd = cargo_for(target);
        cmd.arg("test").args(target_args(target));
        if target.triple == host_triple() {
            cmd.arg("--workspace");
        }
        if !target.doctests() {
            cmd.args(["--lib", "--bins", "--tests"]);
        }
        // The `serde` feature's tests (tests/serde_config.rs) compile to
        // nothing without it.
        cmd.args(["--features", "mlock/serde"]);
        // Run every test binary of the target even when one fails, so the
        // report names all failures; the matrix still stops after this step.
        cmd.arg("--no-fail-fast");
        cmd.env(DOCTOR_ENV, build_doctor(target)?);
        run_libtest(&mut cmd, tally)
    })
}

/// The test binaries of the vector step: the locking, status and secret
/// paths, whose syscalls run inside loops the compiler may vectorize.
const VECTOR_TESTS: &[&str] = &["lock", "status", "secret", "daemon"];

/// The suites of [`VECTOR_TESTS`] and the crate's unit tests, built with
/// the arch's vector extension and `--release` (the compiler vectorizes
/// only when it optimizes), run under QEMU user mode with a CPU that has
/// it. The step also counts the vector instructions in the built lock
/// suite and fails if there are none: a build without them would test
/// nothing here.
fn vector_step(arch: &'static Arch) -> Option<Step> {
    let env = arch.vector_test_env()?;
    Some(Step::new("test +v (release)", arch.triple, move |tally| {
        let target_dir = util::root().join("target").join("vector");
        let cargo = |extra: &[&str]| {
            let mut cmd = util::cargo();
            cmd.envs(env.iter().cloned())
                .env(QEMU_USER_ENV, "1")
                .env(crate::vm::VECTOR_ENV, "1")
                .env("RUST_TEST_THREADS", "1")
                .args(["test", "--release", "--target", arch.triple, "--target-dir"])
                .arg(&target_dir)
                .args(["--features", "mlock/serde", "--lib"]);
            for test in VECTOR_TESTS {
                cmd.args(["--test", test]);
            }
            cmd.args(extra);
            cmd
        };
        // Build first, to learn from cargo which binary is the lock suite.
        let json = util::output(&mut cargo(&[
            "--no-run",
            "--message-format=json-render-diagnostics",
        ]))?;
        let lock_suite = util::cargo_executables(&json)
            .into_iter()
            .find(|b| b.test && b.name == "lock")
            .map(|b| b.executable)
            .ok_or("cargo built the lock suite but reported no executable")?;
        run_libtest(&mut cargo(&["--no-fail-fast"]), tally)?;
        let vector_ops = count_vector_instructions(arch, &lock_suite)?;
        eprintln!("xtask: {vector_ops} vector instructions in the +v lock suite");
        if vector_ops == 0 {
            return Err(format!(
                "the {} lock suite built with `{}` has no vector instruction: the step tested nothing",
                arch.triple, arch.vector_rustflags
            ));
        }
        Ok(())
    }))
}

/// How many `vset*` instructions (each vector loop sets its vector length
/// first) `binary` holds, by `objdump` of the arch's cross binutils.
fn count_vector_instructions(arch: &Arch, binary: &std::path::Path) -> util::Result<usize> {
    let objdump = arch.linker.replace("-gcc", "-objdump");
    let text = util::output(Command::new(&objdump).arg("-d").arg(binary))?;
    Ok(text.lines().filter(|line| line.contains("\tvset")).count())
}

// The variable that tells tests/doctor.rs where the doctor example is.
use crate::contract::DOCTOR_ENV;

/// Builds the doctor example, which tests/doctor.rs runs, as the test step
/// builds the tests (`cargo test --tests` builds no examples): same target,
/// linker, flags, features and profile. Returns the path cargo reports.
fn build_doctor(target: &Target) -> util::Result<std::path::PathBuf> {
    let json = util::output(
        cargo_for(target)
            .args(["build", "--example", "doctor", "--features", "mlock/serde"])
            .args(target_args(target))
            .arg("--message-format=json-render-diagnostics"),
    )?;
    util::cargo_executables(&json)
        .into_iter()
        .find(|b| b.name == "doctor" && b.kind.iter().any(|k| k == "example"))
        .map(|b| b.executable)
        .ok_or_else(|| "cargo built the doctor example but reported no executable".into())
}

/// The stub backend that targets without the raw syscall layer get
/// (`riscv64gc-unknown-none-elf`, any non-Linux target), built on the host
/// with `MLOCK_FORCE_UNSUPPORTED=1` so that its answers can run:
/// tests/unsupported.rs checks that every call says `Unsupported`. It has
/// its own target directory, so the switch does not rebuild the others.
fn stub_backend_test() -> Step {
    Step::new("test (stub backend)", host_triple(), |tally| {
        let mut cmd = util::cargo();
        cmd.env("MLOCK_FORCE_UNSUPPORTED", "1")
            .env_remove(QEMU_USER_ENV)
            .args(["test", "--test", "unsupported", "--target-dir"])
            .arg(util::root().join("target").join("stub-backend"));
        run_libtest(&mut cmd, tally)
    })
}

fn no_os_build() -> Step {
    Step::new("build", NO_OS, |_| {
        util::run(util::cargo().args(["build", "--target", NO_OS, "--lib"]))
    })
}

/// A cargo command for `target`: its linker, rustflags and runner, and the
/// QEMU marker exactly when the runner is QEMU.
fn cargo_for(target: &Target) -> Command {
    let mut cmd = util::cargo();
    if let Some(arch) = target.arch {
        cmd.envs(arch.test_env());
    }
    if target.qemu().is_some() {
        cmd.env(QEMU_USER_ENV, "1");
        // One test thread under the emulator: the suite forks children
        // (locking is process-wide), and a fork while another emulated
        // thread holds one of QEMU's or libstd's locks can leave the child
        // waiting forever. Natively the children are written to avoid that;
        // under QEMU the emulator's own locks are out of our hands.
        cmd.env("RUST_TEST_THREADS", "1");
    } else {
        cmd.env_remove(QEMU_USER_ENV);
    }
    cmd
}

/// `--target T` for a foreign or static target; nothing for the host, so
/// its builds share `target/debug` with the lints, the docs and the xtask.
fn target_args(target: &Target) -> Vec<&'static str> {
    if target.triple == host_triple() {
        Vec::new()
    } else {
        vec!["--target", target.triple]
    }
}

/// The triple of the machine we run on. The matrix is written for x86_64
/// Linux with glibc: every other target is built for and emulated.
fn host_triple() -> &'static str {
    TARGETS[0].triple
}

/// Fails unless rustc's host is the one the matrix is written for.
fn check_host() -> util::Result {
    let version = util::output(Command::new("rustc").arg("-vV"))?;
    let host = version
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .unwrap_or("unknown");
    if host != host_triple() {
        return Err(format!(
            "`cargo xtask test` runs on an {} host (QEMU runs the other arches); this rustc's host is {host}",
            host_triple()
        ));
    }
    Ok(())
}

/// The first step: installs what the chosen steps need (timed, so a fresh
/// machine's downloads show in the summary).
fn setup_step(targets: Vec<&'static Target>, no_os: bool, lints: bool) -> Step {
    Step::new("setup", "all", move |_| setup(&targets, no_os, lints))
}

/// Installs what the chosen targets need, or fails saying what to install.
fn setup(targets: &[&Target], no_os: bool, lints: bool) -> util::Result {
    if lints {
        util::ensure_rust_component("rustfmt")?;
        util::ensure_rust_component("clippy")?;
    }
    for target in targets {
        util::ensure_rust_target(target.triple)?;
    }
    if no_os {
        util::ensure_rust_target(NO_OS)?;
    }
    let mut packages: Vec<&str> = Vec::new();
    for pkg in targets
        .iter()
        .filter_map(|t| t.arch)
        .flat_map(Arch::packages)
    {
        if !packages.contains(&pkg) {
            packages.push(pkg);
        }
    }
    util::ensure_debian_packages(&packages)?;
    // The packages are installed: their programs must now be on PATH.
    for target in targets {
        for program in target.arch.map(Arch::programs).unwrap_or_default() {
            if !util::have(program) {
                return Err(format!(
                    "`{program}` (needed for {}) is not on PATH although its Debian package is installed",
                    target.triple
                ));
            }
        }
    }
    Ok(())
}

/// How long one target's `cargo test` (build and run) may take before it
/// is killed. A normal run takes one or two minutes; a test that hangs (a
/// forked child waiting forever, say) must not eat CI's 90 minutes.
const TEST_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Runs a `cargo test` command, echoing its standard output line by line
/// (so the harness's own `test result:` lines reach the log) while adding
/// them to `tally`. Standard error (cargo's progress) passes through.
///
/// The command runs in a process group of its own, which every process
/// below it inherits (no test creates its own group or session), so that
/// after [`TEST_TIMEOUT`] one signal to the group kills the whole tree,
/// orphans reparented to init included. Being a group of its own, it does
/// not get the terminal's Ctrl-C; when the xtask dies of one, the tests'
/// next write to the closed stdout pipe ends them.
fn run_libtest(cmd: &mut Command, tally: &mut Tally) -> util::Result {
    eprintln!("$ {}", util::describe(cmd));
    let mut child = cmd
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("could not start `{}`: {e}", util::describe(cmd)))?;
    // `process_group(0)`: the group's id is the child's pid.
    let pgid = child.id();
    let (finished, watch) = mpsc::channel::<()>();
    let watchdog = thread::spawn(move || match watch.recv_timeout(TEST_TIMEOUT) {
        Err(RecvTimeoutError::Timeout) => {
            kill_group(pgid);
            true
        }
        _ => false,
    });

    let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
    let mut out = std::io::stdout().lock();
    let mut line = Vec::new();
    // Test output need not be UTF-8: read bytes, and stop at EOF or on a
    // read error (the child is waited for below either way).
    while let Ok(n) = stdout.read_until(b'\n', &mut line) {
        if n == 0 {
            break;
        }
        tally.add_libtest_output(&String::from_utf8_lossy(&line));
        // Best effort: a closed stdout must not hide the test results.
        let _ = out.write_all(&line);
        let _ = out.flush();
        line.clear();
    }
    drop(out);
    let status = child.wait();
    let _ = finished.send(());
    let timed_out = watchdog.join().unwrap_or(false);
    let status = status.map_err(|e| format!("waiting for `{}`: {e}", util::describe(cmd)))?;
    if timed_out {
        return Err(format!(
            "timed out after {} minutes, killed with its test processes: {}",
            TEST_TIMEOUT.as_secs() / 60,
            util::describe(cmd)
        ));
    }
    util::check_status(cmd, status)
}

/// Kills the process group `pgid` (cargo, the QEMU runners, the test
/// binaries and their forked children: all of them inherit the group that
/// [`run_libtest`] gave cargo) with `kill -KILL -- -<pgid>`.
fn kill_group(pgid: u32) {
    eprintln!(
        "xtask: test run exceeded {} minutes; killing its process group {pgid}",
        TEST_TIMEOUT.as_secs() / 60
    );
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .status();
}

/// Runs the steps in order, stopping at the first failure; prints the
/// summary either way.
fn run_steps(steps: Vec<Step>) -> util::Result {
    let mut rows: Vec<Row> = Vec::new();
    let mut failure = None;
    let total = steps.len();
    for (i, step) in steps.into_iter().enumerate() {
        eprintln!("\nxtask: [{}/{total}] {} {}", i + 1, step.name, step.target);
        let start = Instant::now();
        let mut tally = Tally::default();
        let result = (step.action)(&mut tally);
        if result.is_err() && tally.failed == 0 {
            // The step failed without a failing test to show for it (a lint,
            // a build, a crashed test binary): count the step itself.
            tally.failed = 1;
        }
        rows.push(Row {
            step: step.name,
            target: step.target,
            tally,
            seconds: start.elapsed().as_secs_f64(),
        });
        if let Err(e) = result {
            failure = Some(e);
            break;
        }
    }
    print_summary(&rows);
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn print_summary(rows: &[Row]) {
    let step_width = rows.iter().map(|r| r.step.len()).max().unwrap_or(0).max(4);
    let target_width = rows
        .iter()
        .map(|r| r.target.len())
        .max()
        .unwrap_or(0)
        .max(6);
    println!();
    println!(
        "{:<step_width$}  {:<target_width$}  {:>6}  {:>6}  {:>7}",
        "step", "target", "passed", "failed", "seconds"
    );
    let mut sum = Tally::default();
    let mut seconds = 0.0;
    for row in rows {
        println!(
            "{:<step_width$}  {:<target_width$}  {:>6}  {:>6}  {:>7.1}",
            row.step, row.target, row.tally.passed, row.tally.failed, row.seconds
        );
        sum.passed += row.tally.passed;
        sum.failed += row.tally.failed;
        sum.ignored += row.tally.ignored;
        seconds += row.seconds;
    }
    println!(
        "{:<step_width$}  {:<target_width$}  {:>6}  {:>6}  {:>7.1}",
        "total", "", sum.passed, sum.failed, seconds
    );
    for row in rows.iter().filter(|r| r.tally.ignored > 0) {
        println!(
            "note: {} {}: {} test(s) marked #[ignore] did not run",
            row.step, row.target, row.tally.ignored
        );
    }
    println!("xtask: {} passed, {} failed", sum.passed, sum.failed);
}

#[cfg(test)]
mod tests {
    use super::{kill_group, MSRV};

    #[test]
    fn the_checked_rust_version_is_the_one_cargo_toml_declares() {
        let manifest = std::fs::read_to_string(crate::util::root().join("Cargo.toml")).unwrap();
        let declared = manifest
            .lines()
            .find_map(|line| line.strip_prefix("rust-version = "))
            .map(|v| v.trim_matches('"'));
        assert_eq!(declared, Some(MSRV));
    }
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};

    /// Whether `pid` has ended: gone, or a zombie waiting for its reaper.
    fn ended(pid: &str) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        }
    }

    #[test]
    fn killing_the_group_kills_children_and_orphans() {
        // A shell that starts a grandchild in the background, says its pid
        // and waits: the shape of cargo, a test binary and its fork.
        let mut child = Command::new("sh")
            .args(["-c", "sleep 300 & echo $!; wait"])
            .stdout(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let grandchild = line.trim().to_string();
        assert!(!ended(&grandchild));
        kill_group(child.id());
        let status = child.wait().unwrap();
        assert!(!status.success());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !ended(&grandchild) {
            assert!(
                std::time::Instant::now() < deadline,
                "sleep {grandchild} outlived its group"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
