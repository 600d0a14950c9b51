//! The steps that build without running anything: the no-OS target, and
//! every Linux target without the default features.

use super::steps::Step;
use super::target::{cargo_for, target_args, NO_OS, TARGETS};
use crate::util;

/// The library for the no-OS target.
pub(super) fn no_os_step() -> Step {
    Step::new("build", NO_OS, |_| {
        util::run(util::cargo().args(["build", "--target", NO_OS, "--lib"]))
    })
}

/// `--no-default-features` builds, one per Linux target.
pub(super) fn no_default_features_steps() -> Vec<Step> {
    TARGETS
        .iter()
        .map(|target| {
            Step::new("build --no-default-features", target.triple, move |_| {
                util::run(
                    cargo_for(target)
                        .arg("build")
                        .args(target_args(target))
                        .arg("--no-default-features"),
                )
            })
        })
        .collect()
}
