//! Builds the static test binaries, examples and test programs that go
//! into one architecture's VMs.

use anyhow::ensure;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::arch::Arch;
use crate::util::{self, Result};

/// The `#![no_std]` PID 1 example (its own package under `examples/`),
/// booted as `/init`.
const PID1_EXAMPLE: &str = "static_init";
pub(super) const PID1_MANIFEST: &str = "examples/static_init/Cargo.toml";
/// The package of the programs the VMs run (`test-programs/`).
const TEST_PROGRAMS: &str = "mlock-test-programs";
/// The example tests/doctor.rs runs. A test binary in the VM cannot build
/// it with cargo, so it is packed prebuilt and named by [`DOCTOR_ENV`].
///
/// [`DOCTOR_ENV`]: crate::contract::DOCTOR_ENV
const DOCTOR_EXAMPLE: &str = "doctor";

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
        // Nobody edits and rebuilds in this directory: incremental state
        // would only take disk (about 140 MB an arch).
        .env("CARGO_INCREMENTAL", "0")
        .env_remove(crate::contract::QEMU_USER_ENV);
    cmd.envs(arch.vm_env());
    cmd
}

/// Builds every test target and returns (name in the VM, executable).
pub(super) fn build_tests(arch: &Arch) -> Result<Vec<(String, PathBuf)>> {
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
    ensure!(
        !tests.is_empty(),
        "cargo built no test executables for {}",
        arch.triple
    );
    tests.sort();
    Ok(tests)
}

/// One arch's static release binaries, by name: examples of the crate and
/// programs of the `mlock-test-programs` package.
pub(super) struct Binaries {
    examples: PathBuf,
    programs: PathBuf,
    program_names: Vec<&'static str>,
}

impl Binaries {
    /// The binary called `name`.
    pub(super) fn path(&self, name: &str) -> PathBuf {
        let dir = if self.program_names.contains(&name) {
            &self.programs
        } else {
            &self.examples
        };
        dir.join(name)
    }
}

/// Builds `examples` (the crate's) and `programs` (the test programs') as
/// static release binaries.
pub(super) fn build_binaries(
    arch: &Arch,
    examples: &[&'static str],
    programs: &[&'static str],
) -> Result<Binaries> {
    if !examples.is_empty() {
        let mut cmd = cargo_for(arch, "build");
        cmd.args(["--release", "--all-features", "-p", "mlock"]);
        for example in examples {
            cmd.args(["--example", example]);
        }
        util::run(&mut cmd)?;
    }
    if !programs.is_empty() {
        let mut cmd = cargo_for(arch, "build");
        cmd.args(["--release", "-p", TEST_PROGRAMS]);
        for program in programs {
            cmd.args(["--bin", program]);
        }
        util::run(&mut cmd)?;
    }
    let release = build_dir().join(arch.triple).join("release");
    Ok(Binaries {
        examples: release.join("examples"),
        programs: release,
        program_names: programs.to_vec(),
    })
}

/// The PID 1 example's manifest, when it exists.
pub(super) fn pid1_manifest() -> Option<PathBuf> {
    Some(util::root().join(PID1_MANIFEST)).filter(|m| m.is_file())
}

/// The doctor example, when it exists.
pub(super) fn doctor_example() -> Option<&'static &'static str> {
    let source = util::root()
        .join("examples")
        .join(format!("{DOCTOR_EXAMPLE}.rs"));
    source.is_file().then_some(&DOCTOR_EXAMPLE)
}

/// Builds the `#![no_std]` PID 1 example, a package of its own (see its
/// Cargo.toml), as a static release binary; returns its path.
pub(super) fn build_pid1(arch: &Arch, manifest: &Path) -> Result<PathBuf> {
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
