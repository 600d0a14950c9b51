//! The first step: what the chosen steps need on this machine (rust
//! targets and components, Debian packages), installed or named.

use anyhow::ensure;

use super::steps::Step;
use super::target::{host_triple, Target, NO_OS};
use crate::arch::Arch;
use crate::util;

/// The first step: installs what the chosen steps need (timed, so a fresh
/// machine's downloads show in the summary).
pub(super) fn setup_step(targets: Vec<&'static Target>, no_os: bool, lints: bool) -> Step {
    Step::new("setup", "all", move |_| setup(&targets, no_os, lints))
}

/// Installs what the chosen targets need, or fails saying what to install.
fn setup(targets: &[&Target], no_os: bool, lints: bool) -> util::Result {
    eprintln!("{}", util::disk_line());
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
    // The workspace's `bench-peers` links the system libsodium: clippy on
    // the workspace runs its dependencies' build scripts (which ask
    // pkg-config for it), and the host's tests build and link it.
    if lints || targets.iter().any(|t| t.triple == host_triple()) {
        packages.extend(crate::bench::PEER_PACKAGES);
    }
    util::ensure_debian_packages(&packages)?;
    // The packages are installed: their programs must now be on PATH.
    for target in targets {
        for program in target.arch.map(Arch::programs).unwrap_or_default() {
            ensure!(
                util::have(program),
                "`{program}` (needed for {}) is not on PATH although its Debian package is installed",
                    target.triple
            );
        }
    }
    Ok(())
}
