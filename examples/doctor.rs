//! `cargo run --example doctor`: can this process keep its memory in RAM,
//! and if not, what exactly to change.
//!
//! It prints what the kernel will check (`CAP_IPC_LOCK`, `RLIMIT_MEMLOCK`,
//! the process's size), what [`mlock::limits::preflight`] predicts, then locks the
//! process with [`mlock::lock_with`] and reports what happened, how long it
//! took, and the configuration that fixes a failure: a binary's file
//! capability, docker, compose, Kubernetes, systemd.
//!
//! Run `cargo run --example doctor -- --help` for the flags and the exit
//! codes. The text output is for people; its layout may change. With
//! `--json` it prints the same report as one JSON object whose keys are
//! stable (documented in `docs/doctor.md`).

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use mlock::limits::{CgroupVersion, IpcLock, Limit};
use mlock::{Config, Error, Flags, Outcome, Requirement};

const USAGE: &str = "\
usage: doctor [--status] [--required] [--onfault] [--json]
       doctor --help

Reports whether this process can lock its memory into RAM, then locks it
with mlockall(CURRENT|FUTURE) and reports the outcome and the fix for a
failure.

options:
  --status     report only: predict the outcome, lock nothing
  --required   exit 1 when locking fails (with --status: when it is
               predicted to fail); without it a failure is reported and
               the exit status is 0, as for a best-effort daemon
  --onfault    add ONFAULT: lock each page on its first touch
  --json       print the report as one JSON object (keys: see
               docs/doctor.md), for health checks and inventories
  --help       print this help

exit status:
  0  the report was printed, and locking worked, or failed without
     --required
  1  --required, and locking failed or (with --status) would fail
  2  bad command line";

/// What the command line asked for.
#[derive(Debug, Default)]
struct Options {
    status_only: bool,
    required: bool,
    onfault: bool,
    json: bool,
}

/// Parses the arguments; `Err` carries the first one not understood.
fn parse(args: impl Iterator<Item = std::ffi::OsString>) -> Result<Option<Options>, String> {
    let mut options = Options::default();
    for arg in args {
        match arg.to_str() {
            Some("--status") => options.status_only = true,
            Some("--required") => options.required = true,
            Some("--onfault") => options.onfault = true,
            Some("--json") => options.json = true,
            Some("-h" | "--help") => return Ok(None),
            _ => return Err(arg.to_string_lossy().into_owned()),
        }
    }
    Ok(Some(options))
}

/// Prints a line to standard output, ignoring errors (a closed pipe must
/// not turn into a panic).
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// Width of the label column.
const LABEL: usize = 26;

/// One aligned `label  value` line.
fn row(label: &str, value: impl std::fmt::Display) {
    say!("  {label:<LABEL$}{value}");
}

/// Prints `text` as a paragraph indented by two spaces, wrapped at 78
/// columns (a word longer than the line stays whole).
fn paragraph(text: &str) {
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && 2 + line.len() + 1 + word.len() > 78 {
            say!("  {line}");
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        say!("  {line}");
    }
}

/// A byte count in the largest binary unit that keeps it readable.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut unit = 0;
    let mut scaled = n as f64;
    while scaled >= 1024.0 && unit + 1 < UNITS.len() {
        scaled /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else if scaled.fract() == 0.0 {
        format!("{scaled:.0} {}", UNITS[unit])
    } else {
        format!("{scaled:.1} {}", UNITS[unit])
    }
}

/// A limit value: a size, or `unlimited`.
fn limit_value(v: Option<u64>) -> String {
    v.map_or_else(|| "unlimited".to_string(), bytes)
}

/// An optional size from `/proc`.
fn proc_value(v: Option<u64>) -> String {
    v.map_or_else(|| "unknown".to_string(), bytes)
}

/// `CURRENT|FUTURE`-style names for a flag set.
fn flag_names(flags: Flags) -> String {
    let names: Vec<&str> = flags.iter_names().map(|(name, _)| name).collect();
    if names.is_empty() {
        "(none)".into()
    } else {
        names.join("|")
    }
}

/// The errno's symbolic name, for the short form of an error.
fn errno_name(e: Error) -> String {
    match e {
        Error::PermissionDenied => "EPERM".into(),
        Error::ResourceLimit => "ENOMEM".into(),
        Error::InvalidArgument => "EINVAL".into(),
        Error::WouldBlock => "EAGAIN".into(),
        Error::Interrupted => "EINTR".into(),
        Error::Unsupported => "ENOSYS".into(),
        Error::ProcUnavailable => "no /proc".into(),
        Error::Malformed => "malformed /proc".into(),
        other => match other.errno() {
            Some(n) => format!("errno {n}"),
            None => format!("{other:?}"),
        },
    }
}

/// A duration with a unit that suits it.
fn elapsed(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.0} us")
    } else if us < 1e6 {
        format!("{:.1} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

/// The kernel release (`uname -r`), from procfs.
fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown (/proc is not mounted)".into())
}

/// The sections that describe the process as it is.
fn report_environment() {
    say!("System");
    row("arch", std::env::consts::ARCH);
    row("kernel", kernel_release());
    row(
        "backend",
        if mlock::BACKEND_AVAILABLE {
            "raw syscalls"
        } else {
            "unsupported: every call returns Error::Unsupported"
        },
    );

    say!("Privileges");
    // The kernel counts the capability only in the initial user namespace.
    match mlock::limits::ipc_lock() {
        Ok(IpcLock::Honoured) => row(
            "CAP_IPC_LOCK",
            "yes (effective): RLIMIT_MEMLOCK does not apply",
        ),
        Ok(IpcLock::InChildNamespace) => row(
            "CAP_IPC_LOCK",
            "yes, but in a user namespace: RLIMIT_MEMLOCK still applies",
        ),
        Ok(IpcLock::Absent) => row("CAP_IPC_LOCK", "no: RLIMIT_MEMLOCK applies"),
        Err(e) => row("CAP_IPC_LOCK", format!("unknown ({})", errno_name(e))),
    }
    match mlock::limits::memlock_limit() {
        Ok(Limit { soft, hard }) => row(
            "RLIMIT_MEMLOCK",
            format!("soft {}, hard {}", limit_value(soft), limit_value(hard)),
        ),
        Err(e) => row("RLIMIT_MEMLOCK", format!("unknown ({})", errno_name(e))),
    }

    say!("Memory (/proc/self/status)");
    match mlock::status() {
        Ok(s) => {
            row("VmSize", proc_value(s.size_bytes()));
            row("VmLck", proc_value(s.locked_bytes()));
            row("VmSwap", proc_value(s.swap_bytes()));
        }
        Err(e) => row("unavailable", e.as_str()),
    }
    report_cgroup();
}

/// The preflight verdict for one flag set; returns whether it predicts
/// success.
fn report_preflight(flags: Flags) -> bool {
    let label = flag_names(flags);
    match mlock::limits::preflight(flags) {
        Ok(p) => match p.predicted_error() {
            None => {
                row(&label, "will succeed");
                if let Some(warning) = cgroup_warning(&p) {
                    row("", format!("warning: {warning}"));
                }
                true
            }
            Some(e) => {
                row(&label, format!("will fail: {}", errno_name(e)));
                let soft = limit_value(p.limit().soft);
                match e {
                    Error::PermissionDenied => {
                        row("", "CAP_IPC_LOCK does not apply, and the soft limit is 0");
                    }
                    Error::ResourceLimit => row(
                        "",
                        format!(
                            "CAP_IPC_LOCK does not apply, and VmSize {} exceeds the soft limit {soft}",
                            proc_value(p.size_bytes())
                        ),
                    ),
                    _ => {}
                }
                false
            }
        },
        Err(e) => {
            row(&label, format!("cannot tell: {}", errno_name(e)));
            false
        }
    }
}

/// How to grant what locking needs, in each place a daemon runs: `(where,
/// what)` pairs; empty for an error no configuration fixes (the kernel or
/// the target lacks the call, or the flags are wrong).
fn fixes(e: Error) -> Vec<(&'static str, String)> {
    match e {
        Error::PermissionDenied | Error::ResourceLimit | Error::WouldBlock => {}
        _ => return Vec::new(),
    }
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "<binary>".into());
    let mut out = vec![(
        "binary (file capability)",
        format!("sudo setcap cap_ipc_lock+ep {exe}"),
    )];
    if let Ok(Limit { soft, hard }) = mlock::limits::memlock_limit() {
        if soft != hard {
            out.push((
                "in the program",
                format!(
                    "mlock::limits::raise_memlock_limit() lifts the soft limit to the hard one ({})",
                    limit_value(hard)
                ),
            ));
        }
    }
    out.push(("shell (root raises hard)", "ulimit -l unlimited".into()));
    out.push((
        "docker",
        "docker run --cap-add=IPC_LOCK --ulimit memlock=-1:-1 ...".into(),
    ));
    out.push((
        "compose",
        "cap_add: [IPC_LOCK]; ulimits: {memlock: {soft: -1, hard: -1}}".into(),
    ));
    out.push((
        "Kubernetes",
        "securityContext: {capabilities: {add: [\"IPC_LOCK\"]}} (a pod spec cannot set the memlock limit; the capability makes it moot)".into(),
    ));
    out.push((
        "systemd unit",
        "AmbientCapabilities=CAP_IPC_LOCK and LimitMEMLOCK=infinity".into(),
    ));
    out
}

/// Prints the cause of `e` and how to fix it everywhere.
fn print_fix(e: Error) {
    say!("Fix");
    paragraph(e.as_str());
    for (place, fix) in fixes(e) {
        match fix.split_once(" (a pod spec") {
            Some((first, note)) => {
                row(place, first);
                row("", format!("(a pod spec{note}"));
            }
            None => row(place, fix),
        }
    }
}

/// The warning for a lock that would come near the cgroup's memory limit.
fn cgroup_warning(p: &mlock::limits::Preflight) -> Option<String> {
    if !p.near_cgroup_limit() {
        return None;
    }
    let limit = p.cgroup().and_then(|c| c.limit_bytes());
    Some(format!(
        "locking {} comes near the cgroup's memory limit {}: locked memory cannot be reclaimed, so the cgroup is OOM-killed instead of swapping; raise the limit (docker --memory, Kubernetes resources.limits.memory, systemd MemoryMax=)",
        proc_value(p.bytes_to_lock()),
        limit_value(limit),
    ))
}

/// The cgroup section of the text report.
fn report_cgroup() {
    match mlock::limits::cgroup_memory() {
        Ok(Some(c)) => {
            let version = match c.version() {
                CgroupVersion::V1 => "v1",
                CgroupVersion::V2 => "v2",
            };
            say!("Memory cgroup ({version})");
            let none = |v: Option<u64>| v.map_or_else(|| "none".to_string(), bytes);
            match c.version() {
                CgroupVersion::V1 => row("memory.limit_in_bytes", none(c.max_bytes())),
                CgroupVersion::V2 => {
                    row("memory.max", none(c.max_bytes()));
                    row("memory.high", none(c.high_bytes()));
                    row("memory.swap.max", none(c.swap_max_bytes()));
                }
            }
            row("in use", proc_value(c.current_bytes()));
        }
        Ok(None) => {
            say!("Memory cgroup");
            row("none", "no memory controller is mounted for this process");
        }
        Err(e) => {
            say!("Memory cgroup");
            row("unknown", errno_name(e));
        }
    }
}

/// Locks by the policy and reports; returns whether the process is locked.
fn lock(flags: Flags, required: bool) -> bool {
    let config = Config::new(flags).with_requirement(requirement(required));
    let policy = if required { "required" } else { "best-effort" };
    say!("Lock ({}, {policy})", flag_names(flags));
    let start = Instant::now();
    let outcome = mlock::lock_with(&config);
    let took = start.elapsed();
    let failure = match outcome {
        Ok(Outcome::Done(used)) => {
            row("result", format!("locked with {}", flag_names(used)));
            row("VmLck after", proc_value(mlock::locked_bytes().ok()));
            row("took", elapsed(took));
            return true;
        }
        Ok(Outcome::Failed(e)) | Err(e) => e,
        Ok(Outcome::Skipped | Outcome::NotReached) => unreachable!("lock_with ran"),
    };
    row("result", format!("failed: {}", errno_name(failure)));
    row("took", elapsed(took));
    if !required {
        row("policy", "best-effort: the program would run on unlocked");
    }
    print_fix(failure);
    false
}

/// An errno name for JSON, or `null`.
fn error_json(e: Option<Error>) -> Value {
    e.map_or(Value::Null, |e| Value::from(errno_name(e)))
}

/// The whole report as one JSON object (the keys are documented in
/// docs/doctor.md and stay stable). Locks unless `--status`; returns
/// whether locking worked or, with `--status`, is predicted to.
fn json_report(options: &Options, flags: Flags) -> (Value, bool) {
    let answer = mlock::limits::ipc_lock().ok();
    let ipc_lock = answer.map(|a| a != IpcLock::Absent);
    let counts = answer.is_some_and(IpcLock::lifts_limit);
    let limits = match mlock::limits::memlock_limit() {
        Ok(Limit { soft, hard }) => json!({ "memlock_soft": soft, "memlock_hard": hard }),
        Err(e) => json!({ "error": errno_name(e) }),
    };
    let memory = match mlock::status() {
        Ok(s) => json!({
            "vm_size": s.size_bytes(),
            "vm_rss": s.rss_bytes(),
            "vm_lck": s.locked_bytes(),
            "vm_swap": s.swap_bytes(),
        }),
        Err(e) => json!({ "error": errno_name(e) }),
    };
    let cgroup = match mlock::limits::cgroup_memory() {
        Ok(Some(c)) => json!({
            "version": match c.version() { CgroupVersion::V1 => 1, CgroupVersion::V2 => 2 },
            "max": c.max_bytes(),
            "high": c.high_bytes(),
            "swap_max": c.swap_max_bytes(),
            "current": c.current_bytes(),
            "limit": c.limit_bytes(),
        }),
        Ok(None) => Value::Null,
        Err(e) => json!({ "error": errno_name(e) }),
    };
    let swap_daemon = Flags::CURRENT | Flags::FUTURE;
    let mut warnings: Vec<String> = Vec::new();
    let mut verdicts = Vec::new();
    let mut predicted = false;
    for set in [swap_daemon, swap_daemon | Flags::ONFAULT] {
        let verdict = match mlock::limits::preflight(set) {
            Ok(p) => {
                if set == flags {
                    predicted = p.will_succeed();
                    warnings.extend(cgroup_warning(&p));
                }
                json!({
                    "flags": flag_names(set),
                    "will_succeed": p.will_succeed(),
                    "error": error_json(p.predicted_error()),
                    "bytes_to_lock": p.bytes_to_lock(),
                    "near_cgroup_limit": p.near_cgroup_limit(),
                })
            }
            Err(e) => json!({
                "flags": flag_names(set),
                "will_succeed": false,
                "error": errno_name(e),
            }),
        };
        verdicts.push(verdict);
    }
    let (lock, failure, ok) = if options.status_only {
        let failure = mlock::limits::preflight(flags)
            .ok()
            .and_then(|p| p.predicted_error());
        (Value::Null, failure, predicted)
    } else {
        let config = Config::new(flags).with_requirement(requirement(options.required));
        let start = Instant::now();
        let outcome = mlock::lock_with(&config);
        let micros = start.elapsed().as_micros() as u64;
        let (used, after, failure) = match outcome {
            Ok(Outcome::Done(used)) => (Some(used), mlock::locked_bytes().ok(), None),
            Ok(Outcome::Failed(e)) | Err(e) => (None, None, Some(e)),
            Ok(Outcome::Skipped | Outcome::NotReached) => unreachable!("lock_with ran"),
        };
        let lock = json!({
            "flags": flag_names(flags),
            "policy": if options.required { "required" } else { "best-effort" },
            "locked": used.is_some(),
            "flags_used": used.map(flag_names),
            "vm_lck_after": after,
            "error": error_json(failure),
            "micros": micros,
        });
        (lock, failure, used.is_some())
    };
    let fix = failure.map(|e| {
        let places: serde_json::Map<String, Value> = fixes(e)
            .into_iter()
            .map(|(place, fix)| (place.to_string(), Value::from(fix)))
            .collect();
        json!({ "error": errno_name(e), "cause": e.as_str(), "places": places })
    });
    let report = json!({
        "schema": 1,
        "arch": std::env::consts::ARCH,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|s| s.trim().to_string()),
        "backend": if mlock::BACKEND_AVAILABLE { "raw syscalls" } else { "unsupported" },
        "capabilities": {
            "cap_ipc_lock": ipc_lock,
            "cap_ipc_lock_counts": counts,
        },
        "limits": limits,
        "memory": memory,
        "cgroup": cgroup,
        "preflight": verdicts,
        "lock": lock,
        "fix": fix,
        "warnings": warnings,
    });
    (report, ok)
}

fn main() -> ExitCode {
    let options = match parse(std::env::args_os().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            say!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(arg) => {
            let _ = writeln!(
                std::io::stderr().lock(),
                "doctor: unknown argument `{arg}`\n\n{USAGE}"
            );
            return ExitCode::from(2);
        }
    };

    let swap_daemon = Flags::CURRENT | Flags::FUTURE;
    let flags = if options.onfault {
        swap_daemon | Flags::ONFAULT
    } else {
        swap_daemon
    };

    if options.json {
        let (report, ok) = json_report(&options, flags);
        say!("{report}");
        return if options.required && !ok {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        };
    }

    say!("mlock doctor: can this process keep its memory in RAM?");
    report_environment();
    say!("Preflight (predicted, nothing locked)");
    let plain = report_preflight(swap_daemon);
    let onfault = report_preflight(swap_daemon | Flags::ONFAULT);
    let predicted = if options.onfault { onfault } else { plain };

    let ok = if options.status_only {
        say!("Lock");
        row("skipped", "--status: nothing was locked");
        match mlock::limits::preflight(flags)
            .ok()
            .and_then(|p| p.predicted_error())
        {
            Some(e) => print_fix(e),
            None if !predicted => say!("  (the prediction failed; see above)"),
            None => {}
        }
        predicted
    } else {
        lock(flags, options.required)
    };

    if options.required && !ok {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `--required` as the crate's [`Requirement`].
fn requirement(required: bool) -> Requirement {
    if required {
        Requirement::Required
    } else {
        Requirement::BestEffort
    }
}
