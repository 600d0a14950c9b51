//! What a container run shows: the engine's refusal, an `execve` refused
//! in the container, the doctor's JSON report or the swap daemon's line,
//! as one outcome word with the figures that explain it.

use anyhow::Context as _;
use serde_json::Value;

use crate::util;

/// What one cell did.
pub(super) struct Observed {
    pub(super) outcome: &'static str,
    pub(super) details: String,
    /// The cgroup limit the doctor read, if it ran and found one.
    pub(super) cgroup_limit: Option<u64>,
}

/// A finished command's exit status and its output, stdout and stderr.
pub(super) struct Captured {
    pub(super) success: bool,
    pub(super) stdout: String,
    pub(super) stderr: String,
}

/// The outcome a run shows: the engine's refusal, an `execve` refused in
/// the container, the doctor's JSON, or the swap daemon's `mlockall:` line.
pub(super) fn observe(out: &Captured) -> Observed {
    let all = format!("{}{}", out.stdout, out.stderr);
    for needle in ["error setting rlimit", "unable to apply caps"] {
        if let Some(at) = all.find(needle) {
            let message = all[at..].lines().next().unwrap_or(needle);
            let message = message.split(": unknown").next().unwrap_or(message);
            return Observed {
                outcome: "refused-by-host",
                details: format!("the engine: {message}"),
                cgroup_limit: None,
            };
        }
    }
    if let Some(line) = all
        .lines()
        .find(|l| l.contains("exec /") && l.contains("operation not permitted"))
    {
        return Observed {
            outcome: "EPERM",
            details: format!(
                "the kernel refused execve: `{}`: the binary's file capability is outside the container's bounding set",
                line.trim()
            ),
            cgroup_limit: None,
        };
    }
    if let Some(json) = out.stdout.lines().find(|l| l.starts_with('{')) {
        if let Ok(report) = serde_json::from_str::<Value>(json) {
            return observe_doctor(&report);
        }
    }
    if let Some(line) = out.stdout.lines().find(|l| l.starts_with("mlockall: ")) {
        let outcome = if line == "mlockall: done" {
            "locked"
        } else if line.contains("(ENOMEM)") {
            "ENOMEM"
        } else if line.contains("(EPERM)") {
            "EPERM"
        } else {
            "unexpected"
        };
        let flusher = out
            .stdout
            .lines()
            .find(|l| l.starts_with("PR_SET_IO_FLUSHER: "))
            .map(|l| l.find(')').map_or(l, |end| &l[..=end]))
            .unwrap_or("");
        return Observed {
            outcome,
            details: format!("swap_daemon: `{line}`, `{flusher}`"),
            cgroup_limit: None,
        };
    }
    Observed {
        outcome: "unexpected",
        details: format!(
            "exit {}, output: {}",
            if out.success { "0" } else { "nonzero" },
            all.trim()
        ),
        cgroup_limit: None,
    }
}

/// The outcome and the figures that explain it, from the doctor's JSON.
fn observe_doctor(r: &Value) -> Observed {
    let size = |v: &Value| match v.as_u64() {
        Some(n) if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        Some(n) if n >= 1024 => format!("{} KiB", n / 1024),
        Some(n) => format!("{n} B"),
        None => "unlimited".into(),
    };
    let cap = match r["capabilities"]["cap_ipc_lock"].as_bool() {
        Some(true) => "yes",
        Some(false) => "no",
        None => "unknown",
    };
    let mut details = format!(
        "CAP_IPC_LOCK {cap}, RLIMIT_MEMLOCK {}, VmSize {}",
        size(&r["limits"]["memlock_soft"]),
        size(&r["memory"]["vm_size"]),
    );
    if let Some(limit) = r["cgroup"]["limit"].as_u64() {
        details.push_str(&format!(", cgroup limit {}", size(&Value::from(limit))));
    }
    let lock = &r["lock"];
    let outcome = if lock["locked"] == true {
        details.push_str(&format!(", VmLck {}", size(&lock["vm_lck_after"])));
        "locked"
    } else {
        match lock["error"].as_str() {
            Some("ENOMEM") => "ENOMEM",
            Some("EPERM") => "EPERM",
            _ => "unexpected",
        }
    };
    Observed {
        outcome,
        details,
        cgroup_limit: r["cgroup"]["limit"].as_u64(),
    }
}

/// A docker size: a number with an optional `k`, `m` or `g` (binary).
pub(super) fn parse_size(value: &str) -> util::Result<u64> {
    let lower = value.to_ascii_lowercase();
    let (digits, shift) = match lower.strip_suffix(['k', 'm', 'g']) {
        Some(d) => (
            d,
            match lower.chars().last() {
                Some('k') => 10,
                Some('m') => 20,
                _ => 30,
            },
        ),
        None => (lower.as_str(), 0),
    };
    digits
        .parse::<u64>()
        .map(|n| n << shift)
        .with_context(|| format!("not a size: {value}"))
}
