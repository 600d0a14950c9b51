//! The steps that read the code without running it: formatting, clippy
//! on every target, the oldest Rust the crate supports, the docs, and the
//! crates.io package.

use std::process::Command;

use super::steps::Step;
use super::target::{cargo_for, host_triple, NO_OS, TARGETS};
use crate::util;

/// The `#![no_std]` initramfs example, a package with its own workspace
/// (so `--workspace` and `fmt --all` do not reach it).
const STATIC_INIT: &str = "examples/static_init/Cargo.toml";

/// The crate's `rust-version` (Cargo.toml; a unit test keeps the two
/// equal): the oldest Rust that builds it, its dependencies included.
const MSRV: &str = "1.87";

/// The lint steps, in the order they run.
pub(super) fn steps() -> Vec<Step> {
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
    // The `#![no_std]` /init example is its own workspace: lint it per arch.
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
    steps
}

#[cfg(test)]
mod tests {
    use super::MSRV;

    #[test]
    fn the_checked_rust_version_is_the_one_cargo_toml_declares() {
        let manifest = std::fs::read_to_string(crate::util::root().join("Cargo.toml")).unwrap();
        let declared = manifest
            .lines()
            .find_map(|line| line.strip_prefix("rust-version = "))
            .map(|v| v.trim_matches('"'));
        assert_eq!(declared, Some(MSRV));
    }

    /// The integration tests start threads only through
    /// `tests/common/thread.rs`: most of them run in a forked child of the
    /// multi-threaded harness, where a `std::thread` start can wait forever
    /// on a lock another harness thread held at the fork (that file says
    /// which).
    #[test]
    fn the_tests_start_threads_through_their_fork_safe_helper() {
        let dir = crate::util::root().join("tests");
        let mut files = vec![];
        for sub in [dir.clone(), dir.join("common")] {
            for entry in std::fs::read_dir(sub).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("thread.rs") {
                    files.push(path);
                }
            }
        }
        assert!(files.len() > 10, "found only {files:?}");
        for path in files {
            let text = std::fs::read_to_string(&path).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                for call in ["thread::spawn(", "thread::scope(", "thread::Builder"] {
                    assert!(
                        !code.contains(call) || code.contains("common::thread::"),
                        "{}:{}: `{call}` from std; use common::thread (tests/common/thread.rs)",
                        path.display(),
                        n + 1
                    );
                }
            }
        }
    }
}
