//! `cargo xtask test`: the project's one test command.
//!
//! With no arguments it runs the whole matrix in order and ends at the
//! first failing step: formatting, clippy for every target, the oldest
//! supported Rust, docs, the crates.io package (`cargo package`, `cargo
//! publish --dry-run`), the test suite on the host (glibc and static musl)
//! and under QEMU user mode (aarch64 and riscv64), a no-OS build, and the
//! later tiers
//! (real kernels, size, the container table on Docker, quick benchmarks).
//! `--target T` runs only that target's tests.
//!
//! Before anything runs, it installs what the chosen steps need (rust targets
//! and components, Debian packages) or fails saying what to install: a
//! missing prerequisite is never a silent skip. Natively as root with every
//! capability every test must run (`--include-ignored`); under QEMU user mode the tests it cannot
//! run are left out by name, each said on its own line.
//!
//! At the end it prints one line per step (step, target, passed, failed,
//! ignored, filtered out, seconds) and then
//! `xtask: N passed, M failed, I ignored, F filtered out`, which CI reads.
//!
//! Here: the command line and the list of steps; `steps` runs them and
//! prints the summary, `setup` installs, `lints` reads the code, `native`
//! and `qemu_user` run the suites, `builds` builds, `libtest` runs one
//! `cargo test` and checks its result lines, `target` makes the cargo
//! commands of each target.

mod builds;
mod libtest;
mod lints;
mod native;
mod qemu_user;
mod setup;
mod steps;
mod target;

use anyhow::ensure;

use crate::arch;
use crate::util;
use steps::{run_steps, Step};
use target::{check_host, host_triple, Target, NO_OS, TARGETS};

const USAGE: &str = "usage: cargo xtask test [--target T]...

Without --target, runs the whole matrix (fmt, clippy, doc, tests on every
target, builds, real kernels, size, containers, quick benchmarks) and ends at
the first failure. With --target, runs only that target's tests: natively for
the host (and its status tests once more without the default features), under
QEMU user mode when foreign (for riscv64 also optimized with the V extension,
on an emulated CPU that has it).";

/// Entry point for `cargo xtask test [--target T]...`.
pub fn main(args: &mut lexopt::Parser) -> util::Result {
    use lexopt::prelude::*;
    let mut only: Vec<String> = Vec::new();
    while let Some(arg) = args.next()? {
        match arg {
            Long("target") => only.push(args.value()?.string()?),
            Short('h') | Long("help") => {
                println!("{USAGE}");
                return Ok(());
            }
            arg => return Err(util::unexpected(arg, USAGE)),
        }
    }
    for t in &only {
        let known: Vec<&str> = TARGETS.iter().map(|t| t.triple).collect();
        ensure!(
            t == NO_OS || known.contains(&t.as_str()),
            "unknown target `{t}`; known: {}, {NO_OS}",
            known.join(", ")
        );
    }
    check_host()?;
    let steps = if only.is_empty() {
        full_matrix()
    } else {
        chosen_targets(&only)
    };
    run_steps(steps)
}

/// The whole matrix, in the order it runs.
fn full_matrix() -> Vec<Step> {
    let mut steps = vec![setup::setup_step(TARGETS.iter().collect(), true, true)];
    steps.extend(lints::steps());
    // Tests: host first, then the static and the emulated targets.
    steps.extend(TARGETS.iter().map(test_step));
    // The vector extension's case (riscv64 V): optimized, so that the
    // compiler vectorizes, under an emulated CPU that has it.
    steps.extend(arch::ARCHES.iter().filter_map(qemu_user::vector_step));
    // Builds that run nothing, and the stub backend's answers.
    steps.push(builds::no_os_step());
    steps.push(native::stub_backend_step());
    // The later tiers, each a module whose `run_all()` does its own set-up.
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

/// The steps of `--target T`: those targets' tests (with riscv64's vector
/// build, the no-OS build and stub backend
/// where they apply).
fn chosen_targets(only: &[String]) -> Vec<Step> {
    let chosen: Vec<&'static Target> = TARGETS
        .iter()
        .filter(|t| only.iter().any(|o| o == t.triple))
        .collect();
    let no_os = only.iter().any(|o| o == NO_OS);
    let mut steps = vec![setup::setup_step(chosen.clone(), no_os, false)];
    steps.extend(chosen.iter().copied().map(test_step));
    steps.extend(
        chosen
            .iter()
            .filter_map(|t| t.arch.and_then(qemu_user::vector_step)),
    );
    if no_os {
        steps.push(builds::no_os_step());
        steps.push(native::stub_backend_step());
    }
    steps
}

/// The test step of one Linux target: natively for the host's arch, under
/// the target's QEMU runner otherwise.
fn test_step(target: &'static Target) -> Step {
    match target.qemu() {
        Some(_) => qemu_user::test_step(target),
        None => native::test_step(target),
    }
}
