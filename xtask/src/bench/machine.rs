//! Where the numbers were taken: the machine, the compiler, the commit and
//! the load.

use std::fs;
use std::process::Command;

use crate::util;

/// Where the numbers were taken.
pub(super) struct Machine {
    pub(super) cpu: String,
    pub(super) cores: usize,
    pub(super) kernel: String,
    pub(super) memory: String,
    pub(super) swap: String,
    pub(super) thp: String,
    pub(super) rustc: String,
    pub(super) commit: String,
    pub(super) date: String,
    pub(super) load_before: String,
}

impl Machine {
    pub(super) fn read() -> Machine {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let field = |text: &str, key: &str| {
            text.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_else(|| "unknown".into())
        };
        let kib = |v: String| {
            v.trim_end_matches(" kB")
                .parse::<u64>()
                .map(|k| format!("{:.1} GiB", k as f64 / (1 << 20) as f64))
                .unwrap_or(v)
        };
        let quiet = |prog: &str, args: &[&str]| {
            Command::new(prog)
                .args(args)
                .current_dir(util::root())
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_else(|| "unknown".into())
        };
        Machine {
            cpu: field(&cpuinfo, "model name"),
            cores: cpuinfo
                .lines()
                .filter(|l| l.starts_with("processor"))
                .count(),
            kernel: format!(
                "Linux {} ({})",
                fs::read_to_string("/proc/sys/kernel/osrelease")
                    .unwrap_or_default()
                    .trim(),
                std::env::consts::ARCH
            ),
            memory: kib(field(&meminfo, "MemTotal")),
            swap: kib(field(&meminfo, "SwapTotal")),
            thp: fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "unknown".into()),
            rustc: quiet("rustc", &["-V"]),
            commit: quiet("git", &["rev-parse", "--short", "HEAD"]),
            date: quiet("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            load_before: Machine::loadavg(),
        }
    }

    /// The 1, 5 and 15 minute load averages.
    pub(super) fn loadavg() -> String {
        fs::read_to_string("/proc/loadavg")
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|_| "unknown".into())
    }
}
