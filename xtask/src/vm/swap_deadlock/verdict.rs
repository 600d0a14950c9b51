//! Reads one swap-deadlock boot's console into its outcome, with the
//! evidence for it (the blocked tasks' stacks, the OOM victim, the stall),
//! and judges the outcome against what each protection mode must do.

use std::fmt::Write as _;

use super::super::boot::Console;
use super::super::check::number_after;

/// A hardened run must push at least this much through the daemon, or it
/// proved nothing.
pub const MIN_SERVED_MIB: f64 = 32.0;

/// What one boot ended in.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The hog verified every page, `swapoff` succeeded, the VM powered off.
    Survived,
    /// The daemon or the hog blocked on swap I/O, as the kernel reported.
    Deadlock,
    /// The OOM killer ended a process (its name).
    OomKilled(String),
    /// The hog read back pages that differ from what it wrote.
    Corrupt,
    /// No outcome within the host's time limit, or a stall the kernel's
    /// report does not pin on the daemon or the hog.
    Timeout,
    /// The scenario could not run (the daemon never served, swapon failed).
    Error(String),
}

impl Outcome {
    /// The word of the summary line.
    pub fn word(&self) -> String {
        match self {
            Outcome::Survived => "survived".into(),
            Outcome::Deadlock => "deadlock".into(),
            Outcome::OomKilled(_) => "oom-killed".into(),
            Outcome::Corrupt => "corrupt".into(),
            Outcome::Timeout => "timeout".into(),
            Outcome::Error(_) => "error".into(),
        }
    }
}

/// One boot, read off its console.
#[derive(Clone, Debug)]
pub struct Run {
    pub outcome: Outcome,
    /// Bytes the daemon served, from its last counters line.
    pub written: u64,
    pub read: u64,
    /// Pages the hog found corrupt.
    pub corrupt: u64,
    /// Why the outcome is what it is: the blocked task and its top frames,
    /// the OOM victim, the stall.
    pub evidence: String,
    /// Seconds from boot to power-off or crash.
    pub seconds: f64,
    /// (seconds, free MiB, swap used MiB, served MiB) every half second.
    pub samples: Vec<Sample>,
}

/// One point of the picture.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Sample {
    pub t: f64,
    pub free_mib: f64,
    pub swap_mib: f64,
    pub served_mib: f64,
}

/// The value after `key` (`written=`) in `line`, up to the next space.
fn value<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|w| w.strip_prefix(key))
}

/// A line without the kernel's `[   12.345678] ` timestamp.
fn untimed(line: &str) -> &str {
    match line.strip_prefix('[').and_then(|r| r.split_once("] ")) {
        Some((stamp, rest)) if stamp.trim().parse::<f64>().is_ok() => rest,
        _ => line,
    }
}

/// A task whose stack the kernel printed: its name, its state (`D` for
/// blocked; `sysrq t` prints sleeping and running tasks too), its frames
/// (innermost first), and whether the hung-task detector named it.
#[derive(Debug, Default, PartialEq)]
struct Blocked {
    name: String,
    state: String,
    frames: Vec<String>,
    hung_task: bool,
}

/// The function of a stack-trace line (` __schedule+0x2e5/0x8c0`,
/// `[<ffffffff8000>] schedule+0x5a/0xd0`, and 32-bit arm's
/// ` __schedule from schedule+0x28/0xf0`, which names the function and
/// its caller), without unreliable (`? `) ones.
fn frame(line: &str) -> Option<String> {
    let mut l = line.trim();
    if l.starts_with("? ") {
        return None;
    }
    if let Some(rest) = l.strip_prefix("[<").and_then(|r| r.split_once(">] ")) {
        l = rest.1;
    }
    if let Some((function, caller)) = l.split_once(" from ") {
        // The caller line is checked like any other frame, so that a
        // line that merely contains " from " is not taken for one.
        return frame(caller).and(Some(function.to_string()));
    }
    let (name, offset) = l.split_once('+')?;
    let ok = offset.starts_with("0x")
        && !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    ok.then(|| name.to_string())
}

/// Every `task:<name> state:D` block of `sysrq w` or a hung-task report.
fn blocked_tasks(lines: &[&str]) -> Vec<Blocked> {
    let mut tasks: Vec<Blocked> = Vec::new();
    let mut hung: Vec<String> = Vec::new();
    let mut in_task = false;
    for line in lines.iter().map(|l| untimed(l)) {
        if let Some(rest) = line.strip_prefix("INFO: task ") {
            if let Some((name, _)) = rest.rsplit_once(':') {
                hung.push(name.to_string());
            }
        } else if let Some(rest) = line.strip_prefix("task:") {
            let (name, state) = rest.split_once(" state:").unwrap_or((rest, ""));
            let name = name.trim().to_string();
            let hung_task = hung.contains(&name);
            tasks.push(Blocked {
                state: state.split_whitespace().next().unwrap_or("").to_string(),
                name,
                frames: Vec::new(),
                hung_task,
            });
            in_task = true;
        } else if in_task {
            let t = line.trim();
            if matches!(t, "Call Trace:" | "Call trace:" | "<TASK>" | "</TASK>")
                || t.starts_with("? ")
            {
                continue;
            }
            match (frame(line), tasks.last_mut()) {
                (Some(f), Some(task)) => task.frames.push(f),
                _ => in_task = false,
            }
        }
    }
    tasks
}

/// The scenario's own processes: the daemon's threads (`nbd_swap`,
/// `nbd-serve`, `ublk_swap`, `ublk-queue`, ...) and the hog
/// (`vm_swap_deadlock`, which the kernel cuts to 15 characters).
fn is_ours(name: &str) -> bool {
    name.starts_with("nbd") || name.starts_with("ublk") || name.starts_with("vm_swap_dead")
}

/// A counters line of either daemon: `nbd_swap: t_ms=...` or
/// `ublk_swap: t_ms=...`.
fn is_daemon_line(line: &str) -> bool {
    line.starts_with("nbd_swap: t_ms=") || line.starts_with("ublk_swap: t_ms=")
}

/// A frame on the way to or inside swap I/O, or memory reclaim.
fn is_swap_path(frame: &str) -> bool {
    [
        "swap",
        "reclaim",
        "try_to_free",
        "shrink_",
        "mempool_alloc",
        "nbd_",
        "ublk_",
        "io_uring",
        "folio_wait",
        "wait_on_page",
    ]
    .iter()
    .any(|k| frame.contains(k))
}

/// Scheduler frames every blocked stack starts with; the evidence skips them.
fn is_scheduler(frame: &str) -> bool {
    frame.contains("schedule")
        || frame.starts_with("__switch_to")
        || frame.starts_with("__pfx_")
        || frame == "context_switch"
}

/// `name: f1 < f2 < f3 < f4` (the first frames after the scheduler's).
fn describe(task: &Blocked) -> String {
    let top: Vec<&str> = task
        .frames
        .iter()
        .map(String::as_str)
        .filter(|f| !is_scheduler(f))
        .take(4)
        .collect();
    format!("{}: {}", task.name, top.join(" < "))
}

/// Reads one boot's console.
pub fn classify(console: &Console) -> Run {
    let lines: Vec<&str> = console.lines.iter().map(String::as_str).collect();
    let daemon_line = lines.iter().rev().find(|l| is_daemon_line(l));
    let written = daemon_line
        .and_then(|l| number_after(l, "written="))
        .unwrap_or(0);
    let read = daemon_line
        .and_then(|l| number_after(l, "read="))
        .unwrap_or(0);
    let hog = lines.iter().rev().find(|l| l.starts_with("hog: pages="));
    let corrupt = hog.and_then(|l| number_after(l, "corrupt=")).unwrap_or(0);
    let end = lines
        .iter()
        .rev()
        .find(|l| l.starts_with("swap-deadlock-end "));
    let oom = lines.iter().find_map(|l| {
        let l = untimed(l);
        let rest = l.strip_prefix("Out of memory: Killed process ")?;
        let start = rest.find('(')? + 1;
        let len = rest[start..].find(')')?;
        Some(rest[start..start + len].to_string())
    });
    let panicked = lines.iter().any(|l| l.contains("Kernel panic"));
    let stall = lines.iter().find(|l| l.starts_with("swap-deadlock-stall:"));
    let blocked = blocked_tasks(&lines);
    let ours: Vec<&Blocked> = blocked
        .iter()
        .filter(|t| t.state == "D" && is_ours(&t.name) && t.frames.iter().any(|f| is_swap_path(f)))
        .collect();

    let (outcome, evidence) = if let Some(e) = end.and_then(|l| value(l, "error=")) {
        (Outcome::Error(e.to_string()), format!("[{e}]"))
    } else if corrupt > 0 {
        (Outcome::Corrupt, format!("[{}]", hog.unwrap_or(&"")))
    } else if let Some(victim) = oom {
        let evidence = format!("[victim {victim}]");
        (Outcome::OomKilled(victim), evidence)
    } else if let Some(first) = ours.first() {
        let source = if first.hung_task {
            "hung task"
        } else {
            "sysrq w after the stall"
        };
        let more = match ours.len() {
            1 => String::new(),
            n => format!("; {} more of ours blocked", n - 1),
        };
        (
            Outcome::Deadlock,
            format!("[{source}: {}{more}]", describe(first)),
        )
    } else if !console.timed_out
        && !panicked
        && hog.is_some()
        && end.is_some_and(|l| value(l, "hog=") == Some("0") && value(l, "swapoff=") == Some("ok"))
        && console.status_ok
    {
        (Outcome::Survived, String::new())
    } else {
        let why = match (stall, blocked.iter().find(|t| t.state == "D")) {
            (Some(_), Some(t)) => format!("stalled; blocked: {}", describe(t)),
            (Some(_), None) => "stalled; no blocked task reported".into(),
            (None, _) if console.timed_out => "no power-off in time".into(),
            (None, Some(t)) if panicked => format!("panic; blocked: {}", describe(t)),
            (None, _) if panicked => "kernel panic".into(),
            (None, _) => format!(
                "ended without a verdict: {}",
                end.copied().unwrap_or("no swap-deadlock-end line")
            ),
        };
        (Outcome::Timeout, format!("[{why}]"))
    };
    Run {
        outcome,
        written,
        read,
        corrupt,
        evidence,
        seconds: console.times.last().copied().unwrap_or(0.0),
        samples: samples(console),
    }
}

/// The memory samples and the daemon's counters, each at the time its
/// line reached the host, merged into one series.
fn samples(console: &Console) -> Vec<Sample> {
    const MIB: f64 = (1u64 << 20) as f64;
    let mut out = Vec::new();
    let mut served = 0.0;
    for (line, &t) in console.lines.iter().zip(&console.times) {
        if is_daemon_line(line) {
            let bytes = number_after(line, "written=").unwrap_or(0)
                + number_after(line, "read=").unwrap_or(0);
            served = bytes as f64 / MIB;
        } else if line.starts_with("swap-deadlock-sample ") {
            out.push(Sample {
                t,
                free_mib: number_after(line, "memfree_kb=").unwrap_or(0) as f64 / 1024.0,
                swap_mib: number_after(line, "swapused_kb=").unwrap_or(0) as f64 / 1024.0,
                served_mib: served,
            });
        }
    }
    out
}

/// `<label>: <outcome> written=<MiB> MiB read=<MiB> MiB corrupt=<pages> [evidence]`,
/// where the label names the boot: `swap-deadlock <arch> <transport>
/// <kernel> <mode>` (see [`super::label`]).
pub fn line(label: &str, run: &Run) -> String {
    let mut s = format!(
        "{label}: {} written={:.1} MiB read={:.1} MiB corrupt={}",
        run.outcome.word(),
        mib(run.written),
        mib(run.read),
        run.corrupt
    );
    if !run.evidence.is_empty() {
        let _ = write!(s, " {}", run.evidence);
    }
    s
}

/// Bytes in MiB.
fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

/// MiB the daemon served in a run, written and read.
pub fn served_mib(run: &Run) -> f64 {
    mib(run.written + run.read)
}

/// What the scenario requires of one run in `cargo xtask test`: `harden`
/// survives having served enough, `none` deadlocks. `lock` is the
/// experiment: whatever it does is reported, not judged.
pub fn problem(label: &str, mode: &str, run: &Run) -> Option<String> {
    let served = served_mib(run);
    match mode {
        "harden" if run.outcome != Outcome::Survived => {
            Some(format!("{label} did not survive: {}", line(label, run)))
        }
        "harden" if served < MIN_SERVED_MIB => Some(format!(
            "{label} served only {served:.1} MiB (need {MIN_SERVED_MIB} MiB): \
             the hog did not push enough through the daemon to prove anything"
        )),
        "none" if run.outcome != Outcome::Deadlock => Some(format!(
            "{label} did not deadlock, so the scenario no longer reproduces the deadlock: {}",
            line(label, run)
        )),
        _ => None,
    }
}

/// The header of [`row`]'s table.
pub const TABLE_HEADER: [&str; 5] = [
    "boot",
    "runs",
    "outcomes",
    "served MiB (median)",
    "boot s (median)",
];

/// One row of the table at the end: one boot (arch, transport, kernel,
/// mode) with the outcome of each of its runs (several with `--repeat`).
pub fn row(label: &str, runs: &[Run]) -> [String; 5] {
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    [
        label.to_string(),
        runs.len().to_string(),
        counts(runs),
        format!("{:.0}", median(runs.iter().map(served_mib).collect())),
        format!("{:.0}", median(runs.iter().map(|r| r.seconds).collect())),
    ]
}

/// `survived 4, deadlock 1`: how often each outcome came, in a fixed order.
pub fn counts(runs: &[Run]) -> String {
    let mut seen: Vec<(String, usize)> = Vec::new();
    for r in runs {
        let word = r.outcome.word();
        match seen.iter_mut().find(|(w, _)| *w == word) {
            Some((_, n)) => *n += 1,
            None => seen.push((word, 1)),
        }
    }
    seen.sort_by_key(|(w, _)| {
        [
            "survived",
            "deadlock",
            "oom-killed",
            "corrupt",
            "timeout",
            "error",
        ]
        .iter()
        .position(|x| x == w)
    });
    seen.iter()
        .map(|(w, n)| format!("{w} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn console(text: &str, timed_out: bool, status_ok: bool) -> Console {
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        let times = (0..lines.len()).map(|i| i as f64 * 0.5).collect();
        Console {
            lines,
            times,
            timed_out,
            status_ok,
        }
    }

    const SURVIVED: &str = "\
vm: kernel 6.1.0 on x86_64, MemTotal: 204000 kB, mode harden
swap-deadlock-sample memfree_kb=100000 swapused_kb=0 pswpin=0 pswpout=0
nbd_swap: t_ms=5000 written=104857600 read=52428800 pages=25600 compressed=900000 in_flight=0 requests=900 errors=0
swap-deadlock-sample memfree_kb=3000 swapused_kb=200000 pswpin=12800 pswpout=51200
hog: pages=102400 verified=102400 corrupt=0 in 20.1 s
nbd_swap: t_ms=9000 written=209715200 read=104857600 pages=0 compressed=0 in_flight=0 requests=1900 errors=0 final
swap-deadlock-end hog=0 swapoff=ok daemon=0
vm: done";

    #[test]
    fn the_ublk_daemons_counters_count_the_same() {
        let ublk = SURVIVED.replace("nbd_swap: ", "ublk_swap: ");
        let run = classify(&console(&ublk, false, true));
        assert_eq!(run.outcome, Outcome::Survived);
        assert_eq!((run.written, run.read), (200 << 20, 100 << 20));
        assert_eq!(run.samples[1].served_mib, 150.0);
        assert!(is_ours("ublk-queue") && is_ours("ublk_swap"));
        assert!(is_swap_path("ublk_queue_rq"));
    }

    #[test]
    fn a_verified_run_that_powers_off_survived() {
        let run = classify(&console(SURVIVED, false, true));
        assert_eq!(run.outcome, Outcome::Survived);
        assert_eq!(
            (run.written, run.read, run.corrupt),
            (200 << 20, 100 << 20, 0)
        );
        let label = "swap-deadlock x86_64 nbd 6.1 harden";
        assert_eq!(
            line(label, &run),
            "swap-deadlock x86_64 nbd 6.1 harden: survived written=200.0 MiB read=100.0 MiB corrupt=0"
        );
        assert_eq!(problem(label, "harden", &run), None);
        assert!(problem(label, "none", &run)
            .unwrap()
            .contains("did not deadlock"));
        assert_eq!(run.samples.len(), 2);
        assert_eq!(run.samples[1].served_mib, 150.0);
        // Without the power-off it is not a survival.
        assert_eq!(
            classify(&console(SURVIVED, true, false)).outcome,
            Outcome::Timeout
        );
    }

    const SYSRQ_X86: &str = "\
nbd_swap: t_ms=5000 written=77824 read=0 pages=19 compressed=900 in_flight=1 requests=5 errors=0
swap-deadlock-stall: no swap I/O for 30 s (pswpin=0 pswpout=19, free memory steady at 2380 kB): dumping blocked tasks, then crashing the kernel
[   40.101000] sysrq: Show Blocked State
[   40.102000] task:kswapd0         state:D stack:0     pid:30    ppid:2      flags:0x00004000
[   40.103000] Call Trace:
[   40.103100]  <TASK>
[   40.103200]  __schedule+0x34d/0x9e0
[   40.103300]  schedule+0x5a/0xd0
[   40.103400]  io_schedule_timeout+0x4a/0x70
[   40.103500]  mempool_alloc+0x13b/0x180
[   40.103600]  </TASK>
[   40.104000] task:nbd-serve       state:D stack:0     pid:70    ppid:1      flags:0x00004000
[   40.104100] Call Trace:
[   40.104200]  <TASK>
[   40.104300]  __schedule+0x34d/0x9e0
[   40.104400]  ? __pfx_foo+0x10/0x10
[   40.104500]  schedule+0x5a/0xd0
[   40.104600]  io_schedule_timeout+0x4a/0x70
[   40.104700]  mempool_alloc+0x13b/0x180
[   40.104800]  __swap_writepage+0x11/0x90
[   40.104900]  shrink_folio_list+0x6b2/0xb80
[   40.105000]  try_to_free_pages+0xd7/0x200
[   40.105100]  </TASK>
[   43.200000] sysrq: Trigger a crash
[   43.200100] Kernel panic - not syncing: sysrq triggered crash";

    #[test]
    fn a_stall_with_the_daemon_blocked_on_swap_is_a_deadlock() {
        let run = classify(&console(SYSRQ_X86, false, true));
        assert_eq!(run.outcome, Outcome::Deadlock, "{run:?}");
        assert_eq!(
            run.evidence,
            "[sysrq w after the stall: nbd-serve: mempool_alloc < __swap_writepage < \
             shrink_folio_list < try_to_free_pages]"
        );
        assert_eq!(run.written, 77824);
        assert_eq!(
            problem("swap-deadlock x86_64 nbd 6.1 none", "none", &run),
            None
        );
        assert!(
            problem("swap-deadlock x86_64 nbd 6.1 harden", "harden", &run)
                .unwrap()
                .contains("did not survive")
        );
    }

    #[test]
    fn hung_task_reports_and_other_arches_stack_formats_parse() {
        let riscv = "\
[  100.0] INFO: task nbd_swap:61 blocked for more than 30 seconds.
[  100.1] task:nbd_swap        state:D stack:0     pid:61    ppid:1      flags:0x00000000
[  100.2] Call Trace:
[  100.3] [<ffffffff80a2b6c8>] __schedule+0x2a8/0x8e0
[  100.4] [<ffffffff80a2bd4e>] schedule+0x2e/0xc0
[  100.5] [<ffffffff80123456>] folio_wait_bit_common+0x10/0x20
[  100.6] [<ffffffff80123457>] swap_read_folio+0x10/0x20
[  100.7] Kernel panic - not syncing: hung_task: blocked tasks";
        let run = classify(&console(riscv, false, true));
        assert_eq!(run.outcome, Outcome::Deadlock);
        assert_eq!(
            run.evidence,
            "[hung task: nbd_swap: folio_wait_bit_common < swap_read_folio]"
        );
        let arm = riscv
            .replace("Call Trace:", "Call trace:")
            .replace("[<ffffffff80a2b6c8>] ", " ")
            .replace("[<ffffffff80a2bd4e>] ", " ");
        assert_eq!(
            classify(&console(&arm, false, true)).outcome,
            Outcome::Deadlock
        );
        // 32-bit arm names each function and its caller.
        let arm32 = "\
[   42.600000] sysrq: Show Blocked State
[   42.607349] task:nbd-serve       state:D stack:0     pid:146   tgid:137   ppid:1      flags:0x00000004
[   42.607434] Call trace:
[   42.607443]  __schedule from schedule+0x28/0xf0
[   42.607501]  schedule from schedule_timeout+0x98/0x158
[   42.607541]  schedule_timeout from io_schedule_timeout+0x44/0x54
[   42.607585]  io_schedule_timeout from mempool_alloc_noprof+0x120/0x158
[   42.607633]  mempool_alloc_noprof from bio_alloc_bioset+0x1a0/0x470
[   42.607681]  bio_alloc_bioset from __swap_writepage+0x74/0x380
[   47.217005] sysrq: Trigger a crash";
        let run = classify(&console(arm32, false, true));
        assert_eq!(run.outcome, Outcome::Deadlock, "{run:?}");
        assert_eq!(
            run.evidence,
            "[sysrq w after the stall: nbd-serve: mempool_alloc_noprof < bio_alloc_bioset]"
        );
        assert_eq!(frame(" a line from the console"), None);
        // The daemon's main thread asleep in NBD_DO_IT (sysrq t) is not
        // blocked.
        let asleep = riscv
            .replace("state:D", "state:S")
            .replace("folio_wait_bit_common", "nbd_ioctl");
        assert_eq!(
            classify(&console(&asleep, false, true)).outcome,
            Outcome::Timeout
        );
        // A kworker alone is not the daemon: the stall is not pinned on us.
        let kworker = riscv.replace("nbd_swap", "kworker/0:1");
        let run = classify(&console(&kworker, false, true));
        assert_eq!(run.outcome, Outcome::Timeout);
        assert!(
            run.evidence.contains("kworker/0:1: folio_wait_bit_common"),
            "{}",
            run.evidence
        );
    }

    #[test]
    fn oom_corrupt_and_setup_errors_are_named() {
        let oom = "[ 50.0] Out of memory: Killed process 80 (vm_swap_deadloc) total-vm:409600kB\n\
                   hog: pages=1 verified=1 corrupt=0 in 1.0 s";
        let run = classify(&console(oom, false, true));
        assert_eq!(run.outcome, Outcome::OomKilled("vm_swap_deadloc".into()));
        assert_eq!(run.evidence, "[victim vm_swap_deadloc]");
        let bad = SURVIVED.replace("verified=102400 corrupt=0", "verified=102398 corrupt=2");
        let run = classify(&console(&bad, false, true));
        assert_eq!((run.outcome, run.corrupt), (Outcome::Corrupt, 2));
        let run = classify(&console(
            "swap-deadlock-end error=swapon-failed\nvm: done",
            false,
            true,
        ));
        assert_eq!(run.outcome, Outcome::Error("swapon-failed".into()));
    }

    #[test]
    fn repeated_runs_are_counted_per_outcome() {
        let s = classify(&console(SURVIVED, false, true));
        let d = classify(&console(SYSRQ_X86, false, true));
        assert_eq!(counts(&[d.clone(), s.clone(), d]), "survived 1, deadlock 2");
        assert_eq!(
            row("swap-deadlock x86_64 nbd 6.1 none", &[s])[2],
            "survived 1"
        );
    }
}
