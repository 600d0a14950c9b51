//! `cargo run --example doctor`: can this process keep its memory in RAM,
//! and if not, what exactly to change.
//!
//! It prints what the kernel will check (`CAP_IPC_LOCK`, `RLIMIT_MEMLOCK`,
//! the process's size), what [`mlock::preflight`] predicts, then locks the
//! process with [`mlock::lock_with`] and reports what happened, how long it
//! took, and the configuration that fixes a failure: a binary's file
//! capability, docker, compose, Kubernetes, systemd.
//!
//! Run `cargo run --example doctor -- --help` for the flags and the exit
//! codes. The output is for people; its layout may change.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use mlock::{Config, Error, Flags, Limit, Outcome};

const USAGE: &str = "\
usage: doctor [--status] [--required] [--onfault]
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
}

/// Parses the arguments; `Err` carries the first one not understood.
fn parse(args: impl Iterator<Item = std::ffi::OsString>) -> Result<Option<Options>, String> {
    let mut options = Options::default();
    for arg in args {
        match arg.to_str() {
            Some("--status") => options.status_only = true,
            Some("--required") => options.required = true,
            Some("--onfault") => options.onfault = true,
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
    // preflight counts the capability only in the initial user namespace,
    // as the kernel does.
    let counts = mlock::preflight(Flags::FUTURE).is_ok_and(|p| p.has_ipc_lock());
    match mlock::has_ipc_lock() {
        Ok(true) if counts => row(
            "CAP_IPC_LOCK",
            "yes (effective): RLIMIT_MEMLOCK does not apply",
        ),
        Ok(true) => row(
            "CAP_IPC_LOCK",
            "yes, but in a user namespace: RLIMIT_MEMLOCK still applies",
        ),
        Ok(false) => row("CAP_IPC_LOCK", "no: RLIMIT_MEMLOCK applies"),
        Err(e) => row("CAP_IPC_LOCK", format!("unknown ({})", errno_name(e))),
    }
    match mlock::memlock_limit() {
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
}

/// The preflight verdict for one flag set; returns whether it predicts
/// success.
fn report_preflight(flags: Flags) -> bool {
    let label = flag_names(flags);
    match mlock::preflight(flags) {
        Ok(p) => match p.predicted_error() {
            None => {
                row(&label, "will succeed");
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

/// How to grant what locking needs, in each place a daemon runs.
fn print_fix(e: Error) {
    say!("Fix");
    paragraph(e.as_str());
    match e {
        Error::PermissionDenied | Error::ResourceLimit | Error::WouldBlock => {}
        // Nothing to configure: the kernel or the target lacks the call,
        // or the flags are wrong.
        _ => return,
    }
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "<binary>".into());
    row(
        "binary (file capability)",
        format!("sudo setcap cap_ipc_lock+ep {exe}"),
    );
    if let Ok(Limit { soft, hard }) = mlock::memlock_limit() {
        if soft != hard {
            row(
                "in the program",
                format!(
                    "mlock::raise_memlock_limit() lifts the soft limit to the hard one ({})",
                    limit_value(hard)
                ),
            );
        }
    }
    row("shell (root raises hard)", "ulimit -l unlimited");
    row(
        "docker",
        "docker run --cap-add=IPC_LOCK --ulimit memlock=-1:-1 ...",
    );
    row(
        "compose",
        "cap_add: [IPC_LOCK]; ulimits: {memlock: {soft: -1, hard: -1}}",
    );
    row(
        "Kubernetes",
        "securityContext: {capabilities: {add: [\"IPC_LOCK\"]}}",
    );
    row(
        "",
        "(a pod spec cannot set the memlock limit; the capability makes it moot)",
    );
    row(
        "systemd unit",
        "AmbientCapabilities=CAP_IPC_LOCK and LimitMEMLOCK=infinity",
    );
}

/// Locks by the policy and reports; returns whether the process is locked.
fn lock(flags: Flags, required: bool) -> bool {
    let config = Config::new(flags).required(required);
    let policy = if required { "required" } else { "best-effort" };
    say!("Lock ({}, {policy})", flag_names(flags));
    let start = Instant::now();
    let outcome = mlock::lock_with(&config);
    let took = start.elapsed();
    let failure = match outcome {
        Ok(Outcome::Locked { flags: used, bytes }) => {
            row("result", format!("locked with {}", flag_names(used)));
            row("VmLck after", proc_value(bytes));
            row("took", elapsed(took));
            return true;
        }
        Ok(Outcome::Unsupported) => Error::Unsupported,
        Ok(Outcome::Failed(e)) | Err(e) => e,
    };
    row("result", format!("failed: {}", errno_name(failure)));
    row("took", elapsed(took));
    if !required {
        row("policy", "best-effort: the program would run on unlocked");
    }
    print_fix(failure);
    false
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

    say!("mlock doctor: can this process keep its memory in RAM?");
    report_environment();
    say!("Preflight (predicted, nothing locked)");
    let plain = report_preflight(swap_daemon);
    let onfault = report_preflight(swap_daemon | Flags::ONFAULT);
    let predicted = if options.onfault { onfault } else { plain };

    let ok = if options.status_only {
        say!("Lock");
        row("skipped", "--status: nothing was locked");
        match mlock::preflight(flags)
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
