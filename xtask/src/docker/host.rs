//! What this host's `dockerd` may grant a container (its capabilities and
//! its hard `RLIMIT_MEMLOCK`), and so which settings its engine refuses.

use std::fs;

use anyhow::Context as _;

use crate::contract::{CAP_IPC_LOCK, CAP_SYS_RESOURCE};
use crate::util;

/// What the host's `dockerd` may grant a container, read from its
/// `/proc/<pid>` files: the engine's children (runc) can set no more.
pub(super) struct HostLimits {
    pid: u32,
    /// `CapBnd` and `CapEff` of dockerd.
    bounding: u64,
    effective: u64,
    /// The highest capability number this kernel knows.
    last_cap: u32,
    /// dockerd's hard `RLIMIT_MEMLOCK` in bytes; `None` is unlimited.
    memlock_hard: Option<u64>,
}

impl HostLimits {
    pub(super) fn of_dockerd(pid: u32) -> util::Result<HostLimits> {
        let status = fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("read /proc/{pid}/status (dockerd)"))?;
        let caps = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
                .with_context(|| format!("no {key} in /proc/{pid}/status"))
        };
        let limits = fs::read_to_string(format!("/proc/{pid}/limits"))
            .with_context(|| format!("read /proc/{pid}/limits (dockerd)"))?;
        let hard = limits
            .lines()
            .find(|l| l.starts_with("Max locked memory"))
            .and_then(|l| l.split_whitespace().nth(4))
            .with_context(|| format!("no `Max locked memory` in /proc/{pid}/limits"))?;
        let last_cap = fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(40);
        Ok(HostLimits {
            pid,
            bounding: caps("CapBnd:")?,
            effective: caps("CapEff:")?,
            last_cap,
            memlock_hard: hard.parse().ok(),
        })
    }

    fn has(&self, set: u64, cap: u32) -> bool {
        set & (1 << cap) != 0
    }

    /// Why this host's engine will refuse a container with these flags,
    /// or `None` if it can start it.
    pub(super) fn refuses(&self, flags: &[String]) -> Option<String> {
        let mut reasons = Vec::new();
        for flag in flags {
            let flag = flag.trim_start_matches("--");
            if flag == "privileged" {
                let missing: Vec<u32> = (0..=self.last_cap)
                    .filter(|&c| !self.has(self.bounding, c))
                    .collect();
                if !missing.is_empty() {
                    reasons.push(format!(
                        "--privileged needs every capability, and dockerd (pid {}) lacks {}",
                        self.pid,
                        missing
                            .iter()
                            .map(|c| cap_name(*c))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            } else if let Some(cap) = flag.strip_prefix("cap-add=") {
                let number = match cap {
                    "IPC_LOCK" => CAP_IPC_LOCK,
                    "SYS_RESOURCE" => CAP_SYS_RESOURCE,
                    _ => continue,
                };
                if !self.has(self.bounding, number) {
                    reasons.push(format!(
                        "--cap-add={cap}: dockerd (pid {}) lacks CAP_{cap} in its bounding set",
                        self.pid
                    ));
                }
            } else if let Some(value) = flag
                .strip_prefix("ulimit=memlock=")
                .or_else(|| flag.strip_prefix("ulimit memlock="))
            {
                let hard = value.split(':').nth(1).unwrap_or(value);
                let wanted: Option<u64> = if hard == "-1" {
                    None
                } else {
                    hard.parse().ok()
                };
                let above = match (wanted, self.memlock_hard) {
                    (_, None) => false,
                    (None, Some(_)) => true,
                    (Some(w), Some(h)) => w > h,
                };
                if above && !self.has(self.effective, CAP_SYS_RESOURCE) {
                    reasons.push(format!(
                        "memlock={value} is above dockerd's hard RLIMIT_MEMLOCK ({} bytes), and dockerd (pid {}) lacks CAP_SYS_RESOURCE to raise it",
                        self.memlock_hard.unwrap_or(0),
                        self.pid
                    ));
                }
            }
        }
        // `--ulimit memlock=...` is two words in the table.
        let joined = flags.join(" ");
        if let Some(value) = joined.split("--ulimit memlock=").nth(1) {
            let value = value.split_whitespace().next().unwrap_or("");
            let as_one = vec![format!("--ulimit=memlock={value}")];
            if let Some(why) = self.refuses(&as_one) {
                reasons.push(why);
            }
        }
        if reasons.is_empty() {
            None
        } else {
            Some(reasons.join("; "))
        }
    }
}

fn cap_name(cap: u32) -> String {
    match cap {
        CAP_IPC_LOCK => "CAP_IPC_LOCK".into(),
        CAP_SYS_RESOURCE => "CAP_SYS_RESOURCE".into(),
        n => format!("capability {n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::{HostLimits, CAP_SYS_RESOURCE};

    fn words(flags: &str) -> Vec<String> {
        flags.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn a_host_without_cap_sys_resource_refuses_what_needs_it() {
        let all: u64 = (1 << 41) - 1;
        let without = all & !(1 << CAP_SYS_RESOURCE);
        let host = HostLimits {
            pid: 1,
            bounding: without,
            effective: without,
            last_cap: 40,
            memlock_hard: Some(8 << 20),
        };
        for refused in [
            "--ulimit memlock=-1:-1",
            "--ulimit memlock=16777216:16777216",
            "--privileged",
            "--cap-add=IPC_LOCK --cap-add=SYS_RESOURCE",
            "--ulimit=memlock=-1:-1",
        ] {
            assert!(host.refuses(&words(refused)).is_some(), "{refused}");
        }
        for allowed in [
            "",
            "--ulimit memlock=65536:65536 --cap-add=IPC_LOCK",
            "--ulimit memlock=8388608:8388608",
            "--user 65534 --memory 8m",
        ] {
            assert_eq!(host.refuses(&words(allowed)), None, "{allowed}");
        }
        let root = HostLimits {
            bounding: all,
            effective: all,
            ..host
        };
        for flags in [
            "--ulimit memlock=-1:-1",
            "--privileged",
            "--cap-add=SYS_RESOURCE",
        ] {
            assert_eq!(root.refuses(&words(flags)), None, "{flags}");
        }
    }
}
