//! The step that builds without running anything: the no-OS target.

use super::steps::Step;
use super::target::NO_OS;
use crate::util;

/// The library for the no-OS target.
pub(super) fn no_os_step() -> Step {
    Step::new("build", NO_OS, |_| {
        util::run(util::cargo().args(["build", "--target", NO_OS, "--lib"]))
    })
}
