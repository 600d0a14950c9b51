//! The scenarios of the VM tier, by the name `cargo xtask vm --scenario`
//! takes, and which boot each one needs.

/// One thing the VM tier proves in a real kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Scenario {
    /// The integration test suite as root, in the suite boot, and again
    /// with `memfd_secret` off (the secrets boot).
    Suite,
    /// A locked process beside an unlocked twin under a memory hog, on
    /// zram swap: the locked one keeps `VmSwap: 0 kB`.
    SwapPressure,
    /// A `LockedBuf` marker stays out of a core dump, once per backing
    /// (and in the secrets boot, the anonymous fallback's).
    CoreDump,
    /// The `#![no_std]` example `static_init` locks itself as PID 1.
    Pid1,
    /// A userspace swap daemon serving the only swap, under memory
    /// pressure, once per protection mode (docs/swap-deadlock.md).
    SwapDeadlock,
}

impl Scenario {
    /// Every scenario, in the order they boot.
    pub(super) const ALL: [Scenario; 5] = [
        Scenario::Suite,
        Scenario::SwapPressure,
        Scenario::CoreDump,
        Scenario::Pid1,
        Scenario::SwapDeadlock,
    ];

    /// The name on the command line and on the suite boot's kernel
    /// command line (`mlock.run=`, read by `xtask/vm/init.sh`).
    pub(super) fn name(self) -> &'static str {
        match self {
            Scenario::Suite => "suite",
            Scenario::SwapPressure => "swap-pressure",
            Scenario::CoreDump => "core-dump",
            Scenario::Pid1 => "pid1",
            Scenario::SwapDeadlock => "swap-deadlock",
        }
    }

    /// The scenario called `name`.
    pub(super) fn by_name(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether it runs in the busybox suite boot (`xtask/vm/init.sh`).
    pub(super) fn in_suite_boot(self) -> bool {
        matches!(
            self,
            Scenario::Suite | Scenario::SwapPressure | Scenario::CoreDump
        )
    }

    /// Whether it runs in the secrets boot as well (`secretmem.enable=0`):
    /// the secret tests and one core dump prove the anonymous fallback.
    pub(super) fn in_secrets_boot(self) -> bool {
        matches!(self, Scenario::Suite | Scenario::CoreDump)
    }
}

/// The names of every scenario, for messages: `suite, swap-pressure, ...`.
pub(super) fn names() -> String {
    Scenario::ALL.map(Scenario::name).join(", ")
}

#[cfg(test)]
mod tests {
    use super::Scenario;

    #[test]
    fn every_name_reads_back() {
        for s in Scenario::ALL {
            assert_eq!(Scenario::by_name(s.name()), Some(s));
        }
        assert_eq!(Scenario::by_name("bogus"), None);
    }
}
