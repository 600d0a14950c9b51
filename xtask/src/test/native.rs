//! The test steps that run on the host's own kernel: the suite for the
//! host's glibc and static musl targets, and the stub backend.

use super::libtest::{run_libtest, Policy};
use super::steps::Step;
use super::target::{host_triple, test_command, Target};
use crate::contract::QEMU_USER_ENV;
use crate::util;

/// The whole suite on a target the host runs natively.
pub(super) fn test_step(target: &'static Target) -> Step {
    Step::new("test", target.triple, move |tally| {
        run_libtest(&mut test_command(target)?, Policy::native(), tally)
    })
}

/// The stub backend that targets without the raw syscall layer get
/// (`riscv64gc-unknown-none-elf`, any non-Linux target), built on the host
/// with `MLOCK_FORCE_UNSUPPORTED=1` so that its answers can run:
/// tests/unsupported.rs checks that every call says `Unsupported`. It has
/// its own target directory, so the switch does not rebuild the others.
pub(super) fn stub_backend_step() -> Step {
    Step::new("test (stub backend)", host_triple(), |tally| {
        let mut cmd = util::cargo();
        cmd.env("MLOCK_FORCE_UNSUPPORTED", "1")
            .env_remove(QEMU_USER_ENV)
            .args(["test", "--test", "unsupported", "--target-dir"])
            .arg(util::root().join("target").join("stub-backend"));
        run_libtest(&mut cmd, Policy::native(), tally)
    })
}
