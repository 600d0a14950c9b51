//! The start-up of a process that serves a swap device (a ublk or
//! zram-backed helper), with the crate's whole recipe:
//!
//! ```text
//! cargo run --example swap_daemon              # best-effort: report and go on
//! cargo run --example swap_daemon -- --strict  # every step required
//! cargo run --example swap_daemon -- --no-stack-prefault  # to compare [stack]
//! ```
//!
//! It hardens itself with `harden_swap_daemon`, prints the report and what
//! the kernel says (VmLck, the main thread's `[stack]`), then starts an I/O
//! worker: a thread spawned now inherits IO_FLUSHER, and its stack is
//! locked and populated as it is mapped (`MCL_FUTURE`).

use std::process::ExitCode;

use mlock::daemon::{harden_swap_daemon, Hardening};
use mlock::{Config, Requirement};

fn main() -> ExitCode {
    let strict = std::env::args().any(|a| a == "--strict");
    let stack_bytes = if std::env::args().any(|a| a == "--no-stack-prefault") {
        0
    } else {
        mlock::daemon::DEFAULT_STACK_PREFAULT
    };
    let requirement = if strict {
        Requirement::Required
    } else {
        Requirement::BestEffort
    };
    let recipe = Hardening::new(Config::SWAP_DAEMON.with_requirement(requirement))
        .with_io_flusher(requirement)
        .with_oom_score_adj(mlock::daemon::OOM_SCORE_ADJ_MIN, requirement)
        .with_stack_prefault(stack_bytes)
        .with_realtime(mlock::daemon::DEFAULT_REALTIME_PRIORITY, requirement);

    let report = match harden_swap_daemon(&recipe) {
        Ok(report) => report,
        Err(e) => {
            // A required step failed: say which, why, what to do, and what
            // the steps before it did.
            eprintln!("swap_daemon: cannot start: {e}");
            eprintln!("{}", e.report);
            return ExitCode::FAILURE;
        }
    };
    println!("{report}");
    for (stage, error) in report.failures() {
        eprintln!("swap_daemon: warning: {stage} failed, running without it: {error}");
    }
    if let Some(bytes) = report.locked_bytes {
        println!("VmLck: {} kB", bytes / 1024);
    }
    println!("[stack]: {}", stack_rss_and_locked());

    // The I/O path. A real daemon would loop on its ublk queue here.
    let worker = std::thread::spawn(|| {
        // Inherited from the main thread, which set it before the spawn.
        let flusher = mlock::daemon::is_io_flusher();
        format!("worker: IO_FLUSHER {flusher:?}")
    });
    println!("{}", worker.join().expect("worker"));
    if report.is_complete() {
        println!("swap_daemon: hardened");
    } else {
        println!("swap_daemon: running with the warnings above");
    }
    ExitCode::SUCCESS
}

/// `Rss` and `Locked` of the main thread's stack, from `/proc/self/smaps`.
fn stack_rss_and_locked() -> String {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return "no /proc".into();
    };
    let mut lines = smaps.lines().skip_while(|l| !l.ends_with("[stack]"));
    lines.next();
    let field = |name: &str, lines: &[&str]| {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(name))
            .map_or("?".to_owned(), |v| v.trim().to_owned())
    };
    let entry: Vec<&str> = lines
        .take_while(|l| !l.contains('-') || l.contains(':'))
        .collect();
    format!(
        "Rss {}, Locked {}",
        field("Rss:", &entry),
        field("Locked:", &entry)
    )
}
