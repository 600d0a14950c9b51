//! What one kernel's suite, secrets and PID 1 boots proved, and how it is
//! printed: the summary lines and a table row.

use std::time::Duration;

use super::scenario::Scenario;

/// What one kernel of one architecture proved, read off its consoles.
#[derive(Default)]
pub(super) struct Report {
    pub(super) arch: &'static str,
    /// The arch and the kernel's series, as the summary lines name them:
    /// `x86_64 6.12`.
    pub(super) name: String,
    /// The kernel package and its version.
    pub(super) kernel: String,
    /// The scenarios that ran.
    pub(super) scenarios: Vec<Scenario>,
    /// The page size each init-script boot read from `AT_PAGESZ`.
    pub(super) page_size: Option<usize>,
    /// Passed and failed tests.
    pub(super) tests: Option<(u64, u64)>,
    /// Tests libtest reported as ignored.
    pub(super) ignored: u64,
    /// VmSwap in kB of the locked and the unlocked twin.
    pub(super) swap: Option<(u64, u64)>,
    /// The words after `protected=` and `control=`.
    pub(super) core: Vec<Core>,
    /// `LockedBuf::new`'s backing in the suite boot and in the
    /// secrets-only boot.
    pub(super) default_backing: (Option<String>, Option<String>),
    /// Passed and failed tests of the secrets-only boot.
    pub(super) secrets_tests: Option<(u64, u64)>,
    pub(super) secrets_time: Duration,
    /// VmLck in kB of the PID 1 example.
    pub(super) pid1: Option<u64>,
    pub(super) suite_time: Duration,
    pub(super) pid1_time: Duration,
    /// Why the kernel's boots failed; empty when they passed.
    pub(super) problems: Vec<String>,
}

/// One `core-dump <arch>: backing=<b> protected=<p> control=<c>` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Core {
    /// Whether it came from the secrets-only boot (`secretmem.enable=0`).
    pub(super) secretmem_off: bool,
    pub(super) backing: String,
    pub(super) protected: String,
    pub(super) control: String,
}

/// The header of [`Report::row`]'s table.
pub(super) const TABLE_HEADER: [&str; 8] = [
    "arch",
    "kernel",
    "tests in the VM (+ secrets boot)",
    "VmSwap locked / unlocked",
    "core dump",
    "PID 1 VmLck",
    "boots",
    "result",
];

impl Report {
    /// The summary lines, exactly as the VMs printed them (or as the host
    /// derives them for PID 1).
    pub(super) fn summary_lines(&self) -> Vec<String> {
        let r = self;
        let arch = &r.name;
        let mut lines = Vec::new();
        if let Some(bytes) = r.page_size {
            lines.push(format!("page-size {arch}: {bytes}"));
        }
        if let Some((p, f)) = r.tests {
            lines.push(format!("tests {arch}: {p} passed, {f} failed"));
        }
        if let Some((n, m)) = r.swap {
            lines.push(format!(
                "swap-pressure {arch}: locked VmSwap={n} kB unlocked VmSwap={m} kB"
            ));
        }
        if let Some(b) = &r.default_backing.0 {
            lines.push(format!("secrets {arch}: default={b}"));
        }
        if let Some(b) = &r.default_backing.1 {
            lines.push(format!("secrets {arch}: default={b} (secretmem.enable=0)"));
        }
        if let Some((p, f)) = r.secrets_tests {
            lines.push(format!(
                "tests {arch} (secretmem.enable=0): {p} passed, {f} failed"
            ));
        }
        for c in &r.core {
            lines.push(format!(
                "core-dump {arch}: backing={} protected={} control={}{}",
                c.backing,
                c.protected,
                c.control,
                if c.secretmem_off {
                    " (secretmem.enable=0)"
                } else {
                    ""
                }
            ));
        }
        if let Some(n) = r.pid1 {
            lines.push(format!("pid1 {arch}: locked {n} kB"));
        }
        lines
    }

    /// Its row of the table at the end ([`TABLE_HEADER`]).
    pub(super) fn row(&self) -> [String; 8] {
        let r = self;
        let core = if r.core.is_empty() {
            "-".to_string()
        } else {
            r.core
                .iter()
                .map(|c| {
                    let backing = match c.secretmem_off {
                        true => format!("{} (off)", c.backing),
                        false => c.backing.clone(),
                    };
                    match (c.protected.as_str(), c.control.as_str()) {
                        ("absent", "present") => format!("{backing}: absent"),
                        (p, c2) => format!("{backing}: {p}/{c2}"),
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        [
            r.arch.to_string(),
            r.kernel.clone(),
            r.tests.map_or("-".into(), |(p, f)| {
                let (sp, sf) = r.secrets_tests.unwrap_or_default();
                match r.ignored {
                    0 => format!("{p} + {sp} ok, {} failed", f + sf),
                    i => format!("{p} + {sp} ok, {} failed, {i} ignored", f + sf),
                }
            }),
            r.swap.map_or("-".into(), |(n, m)| format!("{n} / {m} kB")),
            core,
            r.pid1.map_or("-".into(), |n| format!("{n} kB")),
            format!(
                "{:.0} + {:.0} + {:.0} s",
                r.suite_time.as_secs_f64(),
                r.secrets_time.as_secs_f64(),
                r.pid1_time.as_secs_f64()
            ),
            if r.problems.is_empty() {
                "PASS"
            } else {
                "FAIL"
            }
            .to_string(),
        ]
    }

    /// How many scenario checks passed, besides the tests: one per
    /// swap-pressure line, core-dump line, secrets-boot backing line and PID 1
    /// line that proved its promise.
    pub(super) fn checks(&self) -> u64 {
        if !self.problems.is_empty() {
            return 0;
        }
        let backings = [&self.default_backing.0, &self.default_backing.1];
        (self.swap.is_some() as u64)
            + self.core.len() as u64
            + backings.iter().filter(|b| b.is_some()).count() as u64
            + (self.pid1.is_some() as u64)
    }
}
