//! The Linux targets of the matrix, and the cargo commands that build and
//! test for each: linker, rustflags, runner and the variables the tests read.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{ensure, Context as _};

use crate::arch::{self, Arch};
// The variable that tells tests/doctor.rs where the doctor example is; the
// one set only for runs whose runner is QEMU user mode, and removed
// everywhere else (tests/common/contract.rs).
use crate::contract::{DOCTOR_ENV, QEMU_USER_ENV};
use crate::util;

/// The no-OS target: the crate must build there (every call returns
/// `Error::Unsupported`), but nothing can run.
pub(super) const NO_OS: &str = "riscv64gc-unknown-none-elf";

/// A Linux target of the matrix: the host's own, or one arch's static
/// target (its settings are in [`crate::arch`]).
pub(super) struct Target {
    pub(super) triple: &'static str,
    /// The arch whose static target this is; `None` for the host's glibc
    /// target, which needs no settings.
    pub(super) arch: Option<&'static Arch>,
}

impl Target {
    /// Whether doctests run here (only on the host's default target; the
    /// foreign and static runs take the lib, bin and integration tests).
    fn doctests(&self) -> bool {
        self.arch.is_none()
    }

    /// The QEMU user-mode emulator of the runner, for foreign targets.
    pub(super) fn qemu(&self) -> Option<&'static str> {
        self.arch.and_then(|a| a.qemu_user)
    }
}

/// The Linux targets, in the order the matrix runs them.
pub(super) const TARGETS: &[Target] = &[
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
    Target {
        triple: arch::I686.triple,
        arch: Some(&arch::I686),
    },
    Target {
        triple: arch::ARMV7.triple,
        arch: Some(&arch::ARMV7),
    },
    Target {
        triple: arch::S390X.triple,
        arch: Some(&arch::S390X),
    },
    Target {
        triple: arch::POWERPC64LE.triple,
        arch: Some(&arch::POWERPC64LE),
    },
];

/// The triple of the machine we run on. The matrix is written for x86_64
/// Linux with glibc: every other target is built for and emulated.
pub(super) fn host_triple() -> &'static str {
    TARGETS[0].triple
}

/// Fails unless rustc's host is the one the matrix is written for.
pub(super) fn check_host() -> util::Result {
    let version = util::output(Command::new("rustc").arg("-vV"))?;
    let host = version
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .unwrap_or("unknown");
    ensure!(
        host == host_triple(),
        "`cargo xtask test` runs on an {} host (QEMU runs the other arches); this rustc's host is {host}",
        host_triple()
    );
    Ok(())
}

/// A cargo command for `target`: its linker, rustflags and runner, and the
/// QEMU marker exactly when the runner is QEMU.
pub(super) fn cargo_for(target: &Target) -> Command {
    let mut cmd = util::cargo();
    if let Some(arch) = target.arch {
        cmd.envs(arch.test_env());
    }
    if !target_args(target).is_empty() {
        // A foreign target's build has a directory of its own, which only
        // this matrix writes: line tables (enough for a panic's backtrace)
        // instead of full debug info, and no incremental state, take each
        // from about 780 to 340 MB. Eight of them sit beside the VM
        // tier's builds and kernels on one disk.
        cmd.env("CARGO_PROFILE_DEV_DEBUG", "line-tables-only")
            .env("CARGO_PROFILE_TEST_DEBUG", "line-tables-only")
            .env("CARGO_INCREMENTAL", "0");
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
pub(super) fn target_args(target: &Target) -> Vec<&'static str> {
    if target.triple == host_triple() {
        Vec::new()
    } else {
        vec!["--target", target.triple]
    }
}

/// `cargo test` of the whole suite on `target`, with the doctor example
/// built for tests/doctor.rs: the lib, bin and integration tests (and the
/// doctests and the workspace's other packages on the host).
pub(super) fn test_command(target: &Target) -> util::Result<Command> {
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
    // report names all failures; the matrix still ends after this step.
    cmd.arg("--no-fail-fast");
    cmd.env(DOCTOR_ENV, build_doctor(target)?);
    Ok(cmd)
}

/// Builds the doctor example, which tests/doctor.rs runs, as the test step
/// builds the tests (`cargo test --tests` builds no examples): same target,
/// linker, flags, features and profile. Returns the path cargo reports.
fn build_doctor(target: &Target) -> util::Result<PathBuf> {
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
        .context("cargo built the doctor example but reported no executable")
}
