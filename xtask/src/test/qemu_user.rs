//! The test steps that run under QEMU user mode: the suite of each foreign
//! target, and riscv64's vector-extension build, each without the tests
//! QEMU user mode cannot run (tests/common/contract.rs).

use std::path::Path;
use std::process::Command;

use anyhow::{ensure, Context as _};

use super::libtest::{run_libtest, Policy};
use super::steps::Step;
use super::target::{test_command, Target};
use crate::arch::Arch;
use crate::contract::{QEMU_USER_ENV, VECTOR_ENV};
use crate::util;

/// The whole suite on a foreign target, under its QEMU runner.
pub(super) fn test_step(target: &'static Target) -> Step {
    Step::new("test", target.triple, move |tally| {
        let width = target.arch.map_or(64, |a| a.pointer_width);
        run_libtest(&mut test_command(target)?, Policy::qemu_user(width), tally)
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
pub(super) fn vector_step(arch: &'static Arch) -> Option<Step> {
    let env = arch.vector_test_env()?;
    Some(Step::new("test +v (release)", arch.triple, move |tally| {
        let target_dir = util::root().join("target").join("vector");
        let cargo = |extra: &[&str]| {
            let mut cmd = util::cargo();
            cmd.envs(env.iter().cloned())
                .env(QEMU_USER_ENV, "1")
                .env(VECTOR_ENV, "1")
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
            .context("cargo built the lock suite but reported no executable")?;
        run_libtest(
            &mut cargo(&["--no-fail-fast"]),
            Policy::qemu_user(arch.pointer_width),
            tally,
        )?;
        let vector_ops = count_vector_instructions(arch, &lock_suite)?;
        eprintln!("xtask: {vector_ops} vector instructions in the +v lock suite");
        ensure!(
            vector_ops != 0,
            "the {} lock suite built with `{}` has no vector instruction: the step tested nothing",
            arch.triple,
            arch.vector_rustflags
        );
        Ok(())
    }))
}

/// How many `vset*` instructions (each vector loop sets its vector length
/// first) `binary` holds, by `objdump` of the arch's cross binutils.
fn count_vector_instructions(arch: &Arch, binary: &Path) -> util::Result<usize> {
    let objdump = arch.linker.replace("-gcc", "-objdump");
    let text = util::output(Command::new(&objdump).arg("-d").arg(binary))?;
    Ok(text.lines().filter(|line| line.contains("\tvset")).count())
}
