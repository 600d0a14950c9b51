//! The privilege matrix: duende's Docker table (no capabilities,
//! `CAP_IPC_LOCK`, unlimited memlock, privileged), reproduced without
//! Docker. Each cell is a process set up for real (an unprivileged uid,
//! with or without `CAP_IPC_LOCK`, `RLIMIT_MEMLOCK` at 8 MiB, 0 or
//! unlimited), which runs `preflight` and then `lock_all(CURRENT | FUTURE)`
//! and reports back. Each cell is a case of its own (libtest-mimic): it
//! asserts the cell's outcome, that `preflight` predicted it, and that the
//! error names the fix, and prints its row of the table to stderr. A cell
//! this environment cannot set up is reported as ignored, with what it
//! lacks.
//!
//! `CAP_IPC_LOCK` comes two ways: kept across `setuid` (`PR_SET_KEEPCAPS`,
//! then `capset`: what `setcap cap_ipc_lock+ep` or docker `--cap-add`
//! give), and ambient across `execve` (`PR_CAP_AMBIENT_RAISE`: what
//! systemd's `AmbientCapabilities=` gives), where the cell re-executes this
//! test binary as its probe (`main` runs the probe when the variable is
//! set).

mod common;

use std::os::unix::process::CommandExt;
use std::process::Command;

use common::*;
use mlock::{Error, Flags};

const MIB: u64 = 1 << 20;
/// The kernel's default `RLIMIT_MEMLOCK` since Linux 5.16.
const DEFAULT_LIMIT: u64 = 8 * MIB;
/// capabilities(7).
use common::contract::CAP_IPC_LOCK;
/// Set in the environment of the re-executed probe.
const PROBE_ENV: &str = "MLOCK_PRIVILEGE_MATRIX_PROBE";
/// Starts the probe's report line in its stdout.
const PROBE_MARK: &str = "matrix-probe: ";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Who {
    /// uid 65534, every capability dropped.
    Nobody,
    /// uid 65534, `CAP_IPC_LOCK` kept across setuid and made effective.
    NobodyKeptIpcLock,
    /// uid 65534, `CAP_IPC_LOCK` ambient, after an `execve`.
    NobodyAmbientIpcLock,
    /// uid 0 with root's capabilities: the "privileged" cell.
    Root,
}

impl Who {
    fn label(self) -> &'static str {
        match self {
            Who::Nobody => "uid 65534, no capabilities",
            Who::NobodyKeptIpcLock => "uid 65534 + CAP_IPC_LOCK (kept, capset)",
            Who::NobodyAmbientIpcLock => "uid 65534 + CAP_IPC_LOCK (ambient, execve)",
            Who::Root => "root (privileged)",
        }
    }

    fn has_ipc_lock(self) -> bool {
        self != Who::Nobody
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum MemLock {
    Default,
    Zero,
    Unlimited,
}

impl MemLock {
    fn bytes(self) -> u64 {
        match self {
            MemLock::Default => DEFAULT_LIMIT,
            MemLock::Zero => 0,
            MemLock::Unlimited => u64::MAX,
        }
    }

    fn label(self) -> &'static str {
        match self {
            MemLock::Default => "8 MiB (default)",
            MemLock::Zero => "0",
            MemLock::Unlimited => "unlimited",
        }
    }
}

/// What a cell's process saw.
#[derive(Debug, PartialEq)]
struct Observation {
    has_ipc_lock: bool,
    predicted: Option<Error>,
    preflight_fix: Option<String>,
    result: Result<(), Error>,
    vm_size_kb: u64,
    vm_lck_kb: u64,
}

/// The kernel's answer to the cell, as the crate names it.
fn error_from_name(name: &str) -> Option<Error> {
    [
        Error::PermissionDenied,
        Error::ResourceLimit,
        Error::InvalidArgument,
        Error::WouldBlock,
        Error::Unsupported,
    ]
    .into_iter()
    .find(|e| format!("{e:?}") == name)
}

impl Observation {
    /// Runs in the cell's process: preflight, then lock, then VmLck.
    fn take() -> Observation {
        let flags = Flags::CURRENT | Flags::FUTURE;
        let pre = mlock::limits::preflight(flags).expect("preflight");
        let vm_size_kb = status_kb("VmSize");
        let result = mlock::lock_all(flags);
        Observation {
            has_ipc_lock: mlock::limits::ipc_lock().expect("capget").lifts_limit(),
            predicted: pre.predicted_error(),
            preflight_fix: pre.fix().map(str::to_owned),
            result,
            vm_size_kb,
            vm_lck_kb: vm_lck_kb(),
        }
    }

    /// One line: fields separated by tabs (no field holds a tab).
    fn encode(&self) -> String {
        let opt = |e: Option<Error>| e.map_or("-".to_owned(), |e| format!("{e:?}"));
        format!(
            "{}\t{}\t{}\t{}\t{}\t{}",
            self.has_ipc_lock,
            opt(self.predicted),
            self.preflight_fix.as_deref().unwrap_or("-"),
            opt(self.result.err()),
            self.vm_size_kb,
            self.vm_lck_kb,
        )
    }

    fn decode(line: &str) -> Observation {
        let f: Vec<&str> = line.trim_end_matches('\n').split('\t').collect();
        assert_eq!(f.len(), 6, "probe line: {line:?}");
        let opt =
            |s: &str| (s != "-").then(|| error_from_name(s).unwrap_or_else(|| panic!("error {s}")));
        Observation {
            has_ipc_lock: f[0].parse().unwrap(),
            predicted: opt(f[1]),
            preflight_fix: (f[2] != "-").then(|| f[2].to_owned()),
            result: opt(f[3]).map_or(Ok(()), Err),
            vm_size_kb: f[4].parse().unwrap(),
            vm_lck_kb: f[5].parse().unwrap(),
        }
    }
}

/// Sets `RLIMIT_MEMLOCK` to `limit` for soft and hard; `Err` with the
/// reason when this process may not.
fn set_limit(limit: MemLock) -> Result<(), String> {
    let lim = libc::rlimit {
        rlim_cur: limit.bytes() as libc::rlim_t,
        rlim_max: limit.bytes() as libc::rlim_t,
    };
    // SAFETY: `lim` is a valid rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) } == 0 {
        Ok(())
    } else {
        Err(format!(
            "setrlimit(RLIMIT_MEMLOCK, {}): {}",
            limit.label(),
            std::io::Error::last_os_error()
        ))
    }
}

/// Becomes uid/gid 65534, keeping the permitted capabilities, and sets the
/// effective, permitted and inheritable sets to `caps` (a bit mask of the
/// first 32 capabilities).
fn become_nobody_with(caps: u32) -> std::io::Result<()> {
    let check = |rc: libc::c_int| {
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    // SAFETY: plain syscalls on integers and a null list.
    unsafe {
        check(libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0))?;
        check(libc::setgroups(0, std::ptr::null()))?;
        check(libc::setgid(NOBODY))?;
        check(libc::setuid(NOBODY))?;
    }
    set_capabilities(caps)?;
    Ok(())
}

/// Sets a cell up in this (forked) process. Only the ambient cell is set up
/// in the `pre_exec` of its probe instead.
fn set_up(who: Who, limit: MemLock) -> Result<(), String> {
    set_limit(limit)?;
    match who {
        Who::Nobody => drop_to_nobody(),
        Who::NobodyKeptIpcLock => {
            become_nobody_with(1 << CAP_IPC_LOCK).map_err(|e| format!("capset: {e}"))?
        }
        Who::Root => {}
        Who::NobodyAmbientIpcLock => unreachable!("set up before execve"),
    }
    Ok(())
}

/// Runs `body` in a forked child and returns its stdout-like report (a
/// pipe), or the child's failure.
fn in_child_report(body: impl FnOnce() -> Result<String, String>) -> Result<String, String> {
    let out = std::sync::Mutex::new(String::new());
    in_child(|| {
        let line = body()?;
        *out.lock().unwrap() = line.clone();
        // The parent reads the report from the child's verdict message.
        Err(format!("{PROBE_MARK}{line}"))
    })
    .map(|()| unreachable!("the child always reports"))
    .or_else(|message| match message.strip_prefix(PROBE_MARK) {
        Some(line) => Ok(line.to_owned()),
        None => Err(message),
    })
}

/// Runs the ambient cell: this test binary, re-executed as its own probe
/// (`probe_entry_point`), as uid 65534 with `CAP_IPC_LOCK` ambient.
fn run_ambient(limit: MemLock) -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(&exe);
    // With the variable set, `main` runs the probe instead of the cells.
    cmd.env(PROBE_ENV, "1");
    // SAFETY: the closure runs in the forked child before execve and only
    // makes syscalls (no allocation, no locks taken).
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: limit.bytes() as libc::rlim_t,
                rlim_max: limit.bytes() as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            become_nobody_with(1 << CAP_IPC_LOCK)?;
            let raise = libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE,
                CAP_IPC_LOCK as libc::c_ulong,
                0,
                0,
            );
            if raise != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let output = cmd
        .output()
        .map_err(|e| format!("{}: {e}", exe.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find_map(|l| l.split_once(PROBE_MARK).map(|(_, report)| report))
        .map(str::to_owned)
        .ok_or_else(|| {
            format!(
                "the probe reported nothing ({}):\n{stdout}\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            )
        })
}

/// What the kernel must answer in a cell.
fn expected(who: Who, limit: MemLock, vm_size_kb: u64) -> Result<(), Error> {
    if who.has_ipc_lock() {
        return Ok(());
    }
    match limit {
        MemLock::Zero => Err(Error::PermissionDenied),
        MemLock::Unlimited => Ok(()),
        // MCL_CURRENT must fit the whole VmSize under the limit.
        MemLock::Default if vm_size_kb * 1024 > DEFAULT_LIMIT => Err(Error::ResourceLimit),
        MemLock::Default => Ok(()),
    }
}

/// The words each failure's fix must contain.
fn fix_words(e: Error) -> &'static [&'static str] {
    match e {
        Error::PermissionDenied => &[
            "CAP_IPC_LOCK",
            "setcap cap_ipc_lock+ep",
            "--cap-add=IPC_LOCK",
        ],
        Error::ResourceLimit => &[
            "RLIMIT_MEMLOCK",
            "ulimit -l unlimited",
            "LimitMEMLOCK=infinity",
        ],
        _ => &[],
    }
}

fn check(who: Who, limit: MemLock, o: &Observation) -> Result<(), String> {
    let want = expected(who, limit, o.vm_size_kb);
    ensure(o.result == want, || {
        format!("lock_all: got {:?}, want {want:?}", o.result)
    })?;
    ensure(o.predicted == o.result.err(), || {
        format!(
            "preflight predicted {:?}, lock_all gave {:?}",
            o.predicted, o.result
        )
    })?;
    ensure(o.has_ipc_lock == who.has_ipc_lock(), || {
        format!(
            "CAP_IPC_LOCK is {}, want {}",
            o.has_ipc_lock,
            who.has_ipc_lock()
        )
    })?;
    match o.result {
        Ok(()) => ensure(o.vm_lck_kb > 0 && o.preflight_fix.is_none(), || {
            format!(
                "locked, but VmLck {} kB, fix {:?}",
                o.vm_lck_kb, o.preflight_fix
            )
        }),
        Err(e) => {
            ensure(o.vm_lck_kb == 0, || {
                format!("failed, but VmLck {} kB", o.vm_lck_kb)
            })?;
            ensure(o.preflight_fix.as_deref() == Some(e.as_str()), || {
                "preflight's fix is not the error's".into()
            })?;
            for word in fix_words(e) {
                ensure(e.as_str().contains(word), || {
                    format!("the fix for {e:?} lacks {word:?}: {e}")
                })?;
            }
            Ok(())
        }
    }
}

/// A short form of the fix: the first remedy it names.
fn fix_summary(e: Error) -> &'static str {
    match e {
        Error::PermissionDenied => "grant CAP_IPC_LOCK (setcap, --cap-add=IPC_LOCK, AmbientCapabilities)",
        Error::ResourceLimit => "raise RLIMIT_MEMLOCK (ulimit -l, --ulimit memlock=-1:-1, LimitMEMLOCK) or grant CAP_IPC_LOCK",
        _ => "see Error::as_str",
    }
}

/// One cell: set it up, observe, check; its row of the table goes to
/// stderr.
fn cell(who: Who, limit: MemLock) -> Result<(), String> {
    let name = format!("{} | {}", who.label(), limit.label());
    let line = if who == Who::NobodyAmbientIpcLock {
        run_ambient(limit)
    } else {
        in_child_report(|| {
            set_up(who, limit)?;
            Ok(Observation::take().encode())
        })
    };
    let o = Observation::decode(&line.map_err(|e| format!("{name}: cell failed: {e}"))?);
    let show = |r: Result<(), Error>| match r {
        Ok(()) => "succeeds".to_owned(),
        Err(e) => format!("{e:?} ({})", e.errno().map_or(String::new(), errno_name)),
    };
    // On a line of its own, after libtest's "test <cell> ...".
    eprintln!(
        "\n| {name} | {} | {} | {} kB | {} |",
        show(o.predicted.map_or(Ok(()), Err)),
        show(o.result),
        o.vm_lck_kb,
        o.result.err().map_or("-", fix_summary),
    );
    check(who, limit, &o).map_err(|e| format!("{name}: {e}"))
}

fn main() {
    if std::env::var_os(PROBE_ENV).is_some() {
        // The re-executed probe of the ambient cell.
        println!("{PROBE_MARK}{}", Observation::take().encode());
        return;
    }
    // A process bigger than the default limit, as a real daemon is: 16 MiB
    // of address space, never touched, which every cell's child inherits
    // (the harness's threads made the test process this big before).
    // SAFETY: a fresh anonymous mapping, which nothing else refers to.
    let reserved = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            16 * MIB as usize,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(reserved, libc::MAP_FAILED, "mmap of the 16 MiB reservation");
    let mut args = libtest_mimic::Arguments::from_args();
    // One cell at a time, forked from the main thread: the rows print in
    // order, and no other thread holds a lock a cell's child needs.
    args.test_threads = Some(1);
    let qemu = under_qemu_user();
    let can_raise = cap_sys_resource();
    eprintln!(
        "privilege matrix (lock_all(CURRENT | FUTURE), uid 65534 = nobody), one row a cell:\n\
         | process | RLIMIT_MEMLOCK | preflight predicts | lock_all(CURRENT\\|FUTURE) | VmLck after | fix the error names |\n\
         |---|---|---|---|---|---|"
    );
    let mut trials = Vec::new();
    for who in [
        Who::Nobody,
        Who::NobodyKeptIpcLock,
        Who::NobodyAmbientIpcLock,
        Who::Root,
    ] {
        for limit in [MemLock::Default, MemLock::Zero, MemLock::Unlimited] {
            // What a cell needs that this environment lacks, known up front.
            // Under QEMU user mode the probe, a foreign-arch binary, could
            // only be executed through binfmt_misc.
            let lacks = if limit == MemLock::Unlimited && !can_raise {
                Some("needs CAP_SYS_RESOURCE")
            } else if who == Who::NobodyAmbientIpcLock && qemu {
                Some("not under QEMU user mode")
            } else {
                None
            };
            let name = format!("{} | {}", who.label(), limit.label());
            let trial = libtest_mimic::Trial::test(name, move || {
                cell(who, limit).map_err(libtest_mimic::Failed::from)
            });
            trials.push(match lacks {
                Some(lacks) => trial.with_kind(lacks).with_ignored_flag(true),
                None => trial,
            });
        }
    }
    libtest_mimic::run(&args, trials).exit();
}

fn errno_name(errno: i32) -> String {
    match errno {
        libc::EPERM => "EPERM".into(),
        libc::ENOMEM => "ENOMEM".into(),
        libc::EINVAL => "EINVAL".into(),
        libc::EAGAIN => "EAGAIN".into(),
        libc::ENOSYS => "ENOSYS".into(),
        other => format!("errno {other}"),
    }
}
