//! The `doctor` example, run as a user runs it: as root, and as an
//! unprivileged user (uid 65534) with a tiny `RLIMIT_MEMLOCK`. Each case
//! checks the exit code and the lines a user reads.
//!
//! The doctor binary comes from `MLOCK_TEST_DOCTOR`, its path: `cargo
//! xtask test` builds the example for the target it tests (with that
//! target's linker and flags) and sets the variable for every target, the
//! QEMU-user ones included; the VMs of `cargo xtask vm`, which have no
//! cargo, set it to the doctor they carry. Without the variable (a plain
//! `cargo test` on the host) this test builds the example itself with
//! `cargo build --example doctor` for the target and profile it was built
//! for, and takes the binary's path from cargo's JSON messages; under QEMU
//! user mode it fails instead, naming the command to run. It runs in its
//! own process, so its locking cannot disturb the harness.
//!
//! Under QEMU user mode (`MLOCK_TEST_QEMU_USER=1`) this test binary is
//! emulated, but the doctor it starts is a foreign binary that the host
//! kernel cannot execute (no binfmt_misc handler is registered on these
//! machines; the test checks). It is run through the same runner cargo used
//! for this test (`CARGO_TARGET_<TRIPLE>_RUNNER`), so the doctor is
//! emulated too and the same assertions hold.
#![cfg(target_os = "linux")]

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::{under_qemu_user, NOBODY};

// The variable that names a prebuilt doctor (set by `cargo xtask test`
// and `cargo xtask vm`).
use common::contract::DOCTOR_ENV;

/// The doctor (`MLOCK_TEST_DOCTOR`, or built by [`build_doctor`]), copied
/// where uid 65534 may execute it. Once per test binary.
fn doctor() -> &'static Path {
    static DOCTOR: OnceLock<PathBuf> = OnceLock::new();
    DOCTOR.get_or_init(|| {
        let built = match std::env::var_os(DOCTOR_ENV) {
            Some(prebuilt) => PathBuf::from(prebuilt),
            None => build_doctor(),
        };
        assert!(
            built.is_file(),
            "{DOCTOR_ENV}={} names no file; `cargo xtask test` builds the doctor and sets it",
            built.display()
        );

        // The target directory may not be searchable by uid 65534: copy the
        // binary to a private directory that is.
        remove_stale_copies();
        let dir = std::env::temp_dir().join(format!("{COPY_PREFIX}{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the doctor's directory");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
            .expect("chmod the doctor's directory");
        let copy = dir.join("doctor");
        std::fs::copy(&built, &copy)
            .unwrap_or_else(|e| panic!("copy {} to {}: {e}", built.display(), copy.display()));
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755))
            .expect("chmod the doctor");
        copy
    })
}

/// The name of the directory the doctor is copied to, before the pid of
/// the test binary that copied it.
const COPY_PREFIX: &str = "mlock-doctor-test-";

/// Removes the copies earlier test runs left behind: the directories whose
/// process is gone (no `/proc/<pid>`). Nothing removes a directory on exit,
/// since a test binary has no hook that runs after its last test. Best
/// effort: a copy of a live process, or one that cannot be removed, stays.
fn remove_stale_copies() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(COPY_PREFIX)) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The target triple this test binary was compiled for, from its own cfg
/// (the Linux targets `cargo xtask test` runs).
fn this_target() -> String {
    let arch = match std::env::consts::ARCH {
        "riscv64" => "riscv64gc",
        "x86" => "i686",
        "arm" => "armv7",
        "powerpc64" if cfg!(target_endian = "little") => "powerpc64le",
        arch => arch,
    };
    let libc = match (cfg!(target_env = "musl"), cfg!(target_arch = "arm")) {
        (true, false) => "musl",
        (true, true) => "musleabihf",
        (false, false) => "gnu",
        (false, true) => "gnueabihf",
    };
    format!("{arch}-unknown-linux-{libc}")
}

/// Builds the doctor with cargo (plain `cargo test`, where no
/// `MLOCK_TEST_DOCTOR` is set) for this test's target and profile, and
/// returns the path cargo reports for it. `--target` is passed only when
/// this test was not built for cargo's host, so that a plain `cargo test`
/// shares its build directory.
fn build_doctor() -> PathBuf {
    let target = this_target();
    assert!(
        !under_qemu_user(),
        "{DOCTOR_ENV} is not set: under QEMU user mode the doctor must be cross-built for \
         {target}; run `cargo xtask test --target {target}`, which builds it and sets {DOCTOR_ENV}"
    );
    let cargo = env!("CARGO");
    let version = Command::new(cargo)
        .arg("-vV")
        .output()
        .unwrap_or_else(|e| panic!("{DOCTOR_ENV} is not set and `{cargo} -vV` cannot start ({e}): set {DOCTOR_ENV} to a doctor built with `cargo build --example doctor`"));
    let host = String::from_utf8_lossy(&version.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .expect("`cargo -vV` names its host");
    let mut cmd = Command::new(cargo);
    cmd.current_dir(env!("CARGO_MANIFEST_DIR")).args([
        "build",
        "--example",
        "doctor",
        "--message-format=json-render-diagnostics",
    ]);
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    if target != host {
        cmd.args(["--target", &target]);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?} ({e}); or set {DOCTOR_ENV}"));
    assert!(
        out.status.success(),
        "building the doctor example failed ({cmd:?}):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|m| {
            m["reason"] == "compiler-artifact"
                && m["target"]["name"] == "doctor"
                && m["target"]["kind"][0] == "example"
        })
        .and_then(|m| m["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("{cmd:?} reported no doctor executable"))
}

/// The command that starts the doctor: directly on the host, through the
/// QEMU runner under QEMU user mode.
fn doctor_command(wrapper: &[&str]) -> Command {
    let mut words: Vec<String> = wrapper.iter().map(|w| w.to_string()).collect();
    if under_qemu_user() {
        words.extend(qemu_runner());
    }
    let Some((program, args)) = words.split_first() else {
        return Command::new(doctor());
    };
    let mut cmd = Command::new(program);
    cmd.args(args).arg(doctor());
    cmd
}

/// The QEMU runner cargo used for this test, as words: the one
/// `CARGO_TARGET_<TRIPLE>_RUNNER` (cargo passes its environment on) for
/// this test's target.
fn qemu_runner() -> Vec<String> {
    let var = format!(
        "CARGO_TARGET_{}_RUNNER",
        this_target().to_uppercase().replace('-', "_")
    );
    let runner = std::env::var(&var).unwrap_or_else(|_| {
        panic!("MLOCK_TEST_QEMU_USER=1 but {var} is not set; run this through `cargo xtask test`")
    });
    runner.split_whitespace().map(str::to_string).collect()
}

/// Who runs the doctor.
#[derive(Clone, Copy)]
enum As {
    /// This process's user (root, with `CAP_IPC_LOCK`).
    Root,
    /// uid/gid 65534 with no capabilities and `RLIMIT_MEMLOCK` soft and
    /// hard set to this many bytes.
    Nobody(u64),
    /// Root in a user namespace of its own (`unshare --user
    /// --map-root-user`, as a rootless container runs): every capability
    /// there, but `CAP_IPC_LOCK` does not lift `RLIMIT_MEMLOCK`, set to this
    /// many bytes. Under QEMU user mode the emulated process cannot enter
    /// a user namespace (the emulator's threads make it multi-threaded), so
    /// the host's unshare(1) does it there.
    UserNamespace(u64),
}

/// What a run printed and how it ended.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The value column of the first row whose label is `label`.
    fn row(&self, label: &str) -> Option<&str> {
        self.stdout.lines().find_map(|line| {
            line.trim_start()
                .strip_prefix(label)
                .filter(|rest| rest.starts_with("  "))
                .map(str::trim)
        })
    }

    fn assert_contains(&self, needle: &str) {
        assert!(
            self.stdout.contains(needle),
            "doctor's output lacks {needle:?}:\n{}",
            self.stdout
        );
    }

    fn assert_code(&self, code: i32) {
        assert_eq!(
            self.code,
            Some(code),
            "doctor's exit code; stdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        assert!(
            !self.stderr.contains("panicked"),
            "doctor panicked:\n{}",
            self.stderr
        );
    }
}

fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "tests/doctor.rs runs the doctor as root and as uid 65534: run it as root (cargo xtask test does)"
    );
}

fn run(who: As, args: &[&str]) -> Run {
    require_root();
    let (mut cmd, limit) = match who {
        As::Root => (doctor_command(&[]), None),
        As::Nobody(limit) => {
            let mut cmd = doctor_command(&[]);
            // std drops the supplementary groups, then sets gid and uid,
            // which clears every capability; the hook below runs after
            // that, as uid 65534.
            cmd.uid(NOBODY).gid(NOBODY);
            (cmd, Some(limit))
        }
        // Under QEMU user mode the host's unshare(1) makes the namespace
        // (the emulated child cannot: see `As::UserNamespace`); elsewhere,
        // and in the VMs, which have no unshare(1), the child makes it.
        As::UserNamespace(limit) if under_qemu_user() => (
            doctor_command(&["unshare", "--user", "--map-root-user"]),
            Some(limit),
        ),
        As::UserNamespace(limit) => {
            let mut cmd = doctor_command(&[]);
            // SAFETY: the hook makes raw system calls only (unshare, open,
            // write, close) on constant data, and allocates nothing.
            unsafe { cmd.pre_exec(enter_user_namespace) };
            (cmd, Some(limit))
        }
    };
    cmd.args(args);
    collect(cmd, limit)
}

/// Runs the prepared command, with `RLIMIT_MEMLOCK` set to `limit` bytes
/// (soft and hard) between fork and exec, and collects what it printed.
fn collect(mut cmd: Command, limit: Option<u64>) -> Run {
    if let Some(limit) = limit {
        let hook = move || {
            let lim = libc::rlimit {
                rlim_cur: limit as libc::rlim_t,
                rlim_max: limit as libc::rlim_t,
            };
            // SAFETY: setrlimit reads a valid rlimit struct; it is async-
            // signal-safe, as code between fork and exec must be.
            if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) } == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        };
        // SAFETY: the hook only calls setrlimit (see above) and allocates
        // nothing.
        unsafe { cmd.pre_exec(hook) };
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("start {cmd:?}: {e}"));
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Between fork and exec: a new user namespace in which this process is
/// root, mapped to root outside (what `unshare --user --map-root-user`
/// does), so that its capabilities survive the exec.
fn enter_user_namespace() -> std::io::Result<()> {
    // SAFETY: unshare takes flags only; the forked child has one thread.
    if unsafe { libc::unshare(libc::CLONE_NEWUSER) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    write_proc(c"/proc/self/setgroups", b"deny")?;
    write_proc(c"/proc/self/uid_map", b"0 0 1")?;
    write_proc(c"/proc/self/gid_map", b"0 0 1")
}

/// Writes `data` to a `/proc` file with raw calls (async-signal-safe).
fn write_proc(path: &std::ffi::CStr, data: &[u8]) -> std::io::Result<()> {
    // SAFETY: `path` is NUL-terminated and outlives the call.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `data` is valid for reads of its length; `fd` is ours.
    let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
    let result = if n == data.len() as isize {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    };
    // SAFETY: `fd` is open and used by nothing else.
    unsafe { libc::close(fd) };
    result
}

/// The fixes a user is told about for EPERM and ENOMEM.
fn assert_fixes(run: &Run) {
    for fix in [
        "setcap cap_ipc_lock+ep",
        "docker run --cap-add=IPC_LOCK --ulimit memlock=-1:-1",
        "cap_add: [IPC_LOCK]",
        "securityContext: {capabilities: {add: [\"IPC_LOCK\"]}}",
        "AmbientCapabilities=CAP_IPC_LOCK",
        "LimitMEMLOCK=infinity",
    ] {
        run.assert_contains(fix);
    }
}

#[test]
fn under_qemu_the_host_cannot_exec_the_doctor_directly() {
    if !under_qemu_user() {
        // On the host the doctor is native; every other test runs it
        // directly, so there is nothing to establish here.
        let out = Command::new(doctor())
            .arg("--help")
            .output()
            .expect("run doctor");
        assert!(out.status.success());
        return;
    }
    // The reason the other tests go through the runner: without a
    // binfmt_misc handler for this arch, the host kernel refuses a foreign
    // ELF with ENOEXEC. (glibc's spawn then hands the file to /bin/sh as a
    // script, which fails too; musl reports ENOEXEC.) With a handler,
    // direct execution works, and the runner is merely its explicit form.
    // binfmt_misc's handlers are named after QEMU's emulators.
    let emulator = match std::env::consts::ARCH {
        "powerpc64" => "ppc64le",
        arch => arch,
    };
    let handler = Path::new("/proc/sys/fs/binfmt_misc").join(format!("qemu-{emulator}"));
    let has_handler = std::fs::read_to_string(&handler).is_ok_and(|s| s.starts_with("enabled"));
    let result = Command::new(doctor()).arg("--help").output();
    let ran = matches!(&result, Ok(out)
        if out.status.success() && String::from_utf8_lossy(&out.stdout).contains("usage: doctor"));
    if has_handler {
        assert!(
            ran,
            "{} is enabled, but the foreign doctor did not run: {result:?}",
            handler.display()
        );
    } else {
        assert!(
            !ran,
            "no binfmt_misc handler at {}, yet the foreign doctor ran",
            handler.display()
        );
        if let Err(e) = &result {
            assert_eq!(
                e.raw_os_error(),
                Some(libc::ENOEXEC),
                "exec failed, but not with ENOEXEC: {e}"
            );
        }
    }
}

#[test]
fn help_lists_flags_and_exit_codes() {
    let run = run(As::Root, &["--help"]);
    run.assert_code(0);
    for text in [
        "--status",
        "--required",
        "--onfault",
        "--help",
        "exit status",
        "  2  bad command line",
    ] {
        run.assert_contains(text);
    }
}

#[test]
fn a_bad_flag_prints_usage_and_exits_2() {
    let run = run(As::Root, &["--status", "--frobnicate"]);
    run.assert_code(2);
    assert!(run.stdout.is_empty(), "stdout: {}", run.stdout);
    assert!(
        run.stderr.contains("unknown argument `--frobnicate`"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("usage: doctor"), "{}", run.stderr);
}

#[test]
fn root_reports_and_locks() {
    let run = run(As::Root, &[]);
    run.assert_code(0);
    assert_eq!(run.row("arch"), Some(std::env::consts::ARCH));
    assert_eq!(run.row("backend"), Some("raw syscalls"));
    assert!(
        run.row("CAP_IPC_LOCK")
            .is_some_and(|v| v.starts_with("yes")),
        "{}",
        run.stdout
    );
    assert!(
        run.row("RLIMIT_MEMLOCK")
            .is_some_and(|v| v.starts_with("soft ")),
        "{}",
        run.stdout
    );
    for field in ["VmSize", "VmLck", "VmSwap"] {
        let value = run.row(field).unwrap_or_default();
        assert!(
            value.ends_with('B'),
            "{field}: {value:?} in\n{}",
            run.stdout
        );
    }
    assert_eq!(run.row("CURRENT|FUTURE"), Some("will succeed"));
    assert_eq!(run.row("CURRENT|FUTURE|ONFAULT"), Some("will succeed"));
    assert_eq!(run.row("result"), Some("locked with CURRENT|FUTURE"));
    let after = run.row("VmLck after").unwrap_or_default();
    assert!(
        after.ends_with('B') && after != "0 B",
        "VmLck after: {after:?}\n{}",
        run.stdout
    );
    assert!(run.row("took").is_some(), "{}", run.stdout);
    assert!(!run.stdout.contains("Fix"), "{}", run.stdout);
}

#[test]
fn root_onfault_required_locks_with_onfault() {
    // mlockall(MCL_ONFAULT) is implemented by QEMU user mode too (only
    // mlock2 is not), so this holds there as well.
    let run = run(As::Root, &["--onfault", "--required"]);
    run.assert_code(0);
    run.assert_contains("Lock (CURRENT|FUTURE|ONFAULT, required)");
    assert_eq!(
        run.row("result"),
        Some("locked with CURRENT|FUTURE|ONFAULT")
    );
}

#[test]
fn status_locks_nothing() {
    let run = run(As::Root, &["--status", "--required"]);
    run.assert_code(0);
    assert_eq!(run.row("skipped"), Some("--status: nothing was locked"));
    assert_eq!(run.row("VmLck"), Some("0 B"));
    assert!(run.row("result").is_none(), "{}", run.stdout);
}

#[test]
fn nobody_with_a_tiny_limit_is_told_why_and_how_to_fix_it() {
    let run = run(As::Nobody(64 * 1024), &[]);
    // Best-effort: the failure is reported, the exit code is 0.
    run.assert_code(0);
    assert!(
        run.row("CAP_IPC_LOCK").is_some_and(|v| v.starts_with("no")),
        "{}",
        run.stdout
    );
    assert_eq!(run.row("RLIMIT_MEMLOCK"), Some("soft 64 KiB, hard 64 KiB"));
    assert_eq!(run.row("CURRENT|FUTURE"), Some("will fail: ENOMEM"));
    run.assert_contains("CAP_IPC_LOCK does not apply, and VmSize");
    run.assert_contains("exceeds the soft limit 64 KiB");
    assert_eq!(run.row("result"), Some("failed: ENOMEM"));
    run.assert_contains("best-effort: the program would run on unlocked");
    run.assert_contains("out of lockable memory (ENOMEM)");
    assert_fixes(&run);
}

#[test]
fn nobody_with_a_tiny_limit_and_required_exits_1() {
    let run = run(As::Nobody(64 * 1024), &["--required"]);
    run.assert_code(1);
    assert_eq!(run.row("result"), Some("failed: ENOMEM"));
    assert_fixes(&run);
}

#[test]
fn nobody_with_a_zero_limit_gets_eperm() {
    let run = run(As::Nobody(0), &["--required", "--onfault"]);
    run.assert_code(1);
    assert_eq!(run.row("RLIMIT_MEMLOCK"), Some("soft 0 B, hard 0 B"));
    assert_eq!(run.row("CURRENT|FUTURE|ONFAULT"), Some("will fail: EPERM"));
    assert_eq!(run.row("result"), Some("failed: EPERM"));
    run.assert_contains("permission denied (EPERM)");
    assert_fixes(&run);
}

#[test]
fn nobody_status_required_exits_1_on_a_predicted_failure() {
    let run = run(As::Nobody(64 * 1024), &["--status", "--required"]);
    run.assert_code(1);
    assert_eq!(run.row("skipped"), Some("--status: nothing was locked"));
    assert_eq!(run.row("VmLck"), Some("0 B"));
    assert_fixes(&run);
}

#[test]
fn root_of_a_user_namespace_is_told_the_capability_does_not_count() {
    let run = run(As::UserNamespace(64 * 1024), &["--required"]);
    run.assert_code(1);
    assert_eq!(
        run.row("CAP_IPC_LOCK"),
        Some("yes, but in a user namespace: RLIMIT_MEMLOCK still applies")
    );
    assert_eq!(run.row("CURRENT|FUTURE"), Some("will fail: ENOMEM"));
    assert_eq!(run.row("result"), Some("failed: ENOMEM"));
    assert_fixes(&run);
}

/// Runs the doctor as root with `--json` and the given flags, parses its
/// output (one JSON object), and checks the exit code.
fn run_json(who: As, args: &[&str], code: i32) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let run = run(who, &all);
    run.assert_code(code);
    assert_eq!(run.stdout.lines().count(), 1, "one line: {}", run.stdout);
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", run.stdout))
}

/// The documented top-level keys (docs/doctor.md), all always present.
const JSON_KEYS: [&str; 12] = [
    "schema",
    "arch",
    "kernel",
    "backend",
    "capabilities",
    "limits",
    "memory",
    "cgroup",
    "preflight",
    "lock",
    "fix",
    "warnings",
];

#[test]
fn json_root_reports_and_locks() {
    let report = run_json(As::Root, &[], 0);
    let keys: Vec<&str> = report
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    for key in JSON_KEYS {
        assert!(keys.contains(&key), "no {key} in {report}");
    }
    assert_eq!(keys.len(), JSON_KEYS.len(), "undocumented keys in {report}");
    assert_eq!(report["schema"], 1);
    assert_eq!(report["arch"], std::env::consts::ARCH);
    assert_eq!(report["backend"], "raw syscalls");
    assert_eq!(report["capabilities"]["cap_ipc_lock"], true);
    assert_eq!(report["capabilities"]["cap_ipc_lock_counts"], true);
    assert!(
        report["limits"]["memlock_soft"].is_u64() || report["limits"]["memlock_soft"].is_null()
    );
    assert!(
        report["memory"]["vm_size"].as_u64().unwrap_or(0) > 0,
        "{report}"
    );
    assert_eq!(report["memory"]["vm_lck"], 0);
    assert_eq!(report["preflight"][0]["flags"], "CURRENT|FUTURE");
    assert_eq!(report["preflight"][0]["will_succeed"], true);
    assert_eq!(report["preflight"][1]["flags"], "CURRENT|FUTURE|ONFAULT");
    assert_eq!(report["lock"]["locked"], true, "{report}");
    assert_eq!(report["lock"]["flags_used"], "CURRENT|FUTURE");
    assert!(
        report["lock"]["vm_lck_after"].as_u64().unwrap_or(0) > 0,
        "{report}"
    );
    assert!(report["lock"]["error"].is_null());
    assert!(report["fix"].is_null(), "{report}");
}

#[test]
fn json_nobody_with_a_tiny_limit_carries_the_error_and_the_fixes() {
    let report = run_json(As::Nobody(64 * 1024), &["--required"], 1);
    assert_eq!(report["capabilities"]["cap_ipc_lock"], false);
    assert_eq!(report["limits"]["memlock_soft"], 64 * 1024);
    assert_eq!(report["limits"]["memlock_hard"], 64 * 1024);
    assert_eq!(report["preflight"][0]["will_succeed"], false);
    assert_eq!(report["preflight"][0]["error"], "ENOMEM");
    assert_eq!(report["lock"]["locked"], false);
    assert_eq!(report["lock"]["error"], "ENOMEM");
    assert_eq!(report["lock"]["policy"], "required");
    assert_eq!(report["fix"]["error"], "ENOMEM");
    let docker = report["fix"]["places"]["docker"]
        .as_str()
        .unwrap_or_default();
    assert!(docker.contains("--cap-add=IPC_LOCK"), "{report}");
    assert!(report["fix"]["cause"]
        .as_str()
        .is_some_and(|c| c.contains("ENOMEM")));
}

#[test]
fn json_status_locks_nothing_and_zero_limit_is_eperm() {
    let report = run_json(As::Nobody(0), &["--status", "--required"], 1);
    assert!(report["lock"].is_null(), "{report}");
    assert_eq!(report["preflight"][0]["error"], "EPERM");
    assert_eq!(report["fix"]["error"], "EPERM");
}

/// Runs the doctor as root inside `cgroup` (it moves itself there between
/// fork and exec).
fn run_in_cgroup(cgroup: &common::cgroup::TestCgroup, args: &[&str]) -> Run {
    require_root();
    let procs = std::ffi::CString::new(cgroup.0.join("cgroup.procs").to_str().expect("UTF-8 path"))
        .expect("no NUL");
    let mut cmd = doctor_command(&[]);
    cmd.args(args);
    let hook = move || {
        // The pid in decimal, formatted into a stack buffer (no
        // allocation between fork and exec).
        let mut digits = [0u8; 12];
        let mut out = &mut digits[..];
        // SAFETY: getpid has no preconditions.
        let _ = write!(out, "{}", unsafe { libc::getpid() });
        let left = out.len();
        let end = digits.len() - left;
        write_proc(&procs, &digits[..end])
    };
    // SAFETY: the hook makes raw calls only (getpid, open, write, close)
    // and allocates nothing.
    unsafe { cmd.pre_exec(hook) };
    collect(cmd, None)
}

#[test]
fn json_and_text_in_a_cgroup_near_its_limit_warn() {
    use common::cgroup::{hierarchy, max_file, TestCgroup};
    let h = hierarchy(false).unwrap_or_else(|e| panic!("{e}"));
    // How much the doctor will lock: its VmSize, from a run outside.
    let before = run_json(As::Root, &["--status"], 0);
    let size = before["preflight"][0]["bytes_to_lock"]
        .as_u64()
        .expect("bytes_to_lock");
    let page = common::page_size() as u64;

    // A limit a fifth above that: near (the warning, from three quarters
    // of the limit on), with room to run. Under QEMU user mode the
    // emulator's VmSize differs a little from run to run: the margin
    // between 3/4 and 5/6 of the limit absorbs that.
    let near = (size * 6 / 5) / page * page;
    let cgroup = TestCgroup::new(&h, "doctor-near").unwrap_or_else(|e| panic!("{e}"));
    cgroup
        .write(max_file(&h), &near.to_string())
        .unwrap_or_else(|e| panic!("{e}"));
    let run = run_in_cgroup(&cgroup, &["--json", "--status"]);
    run.assert_code(0);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(report["cgroup"]["max"], near, "{report}");
    assert_eq!(report["cgroup"]["limit"], near, "{report}");
    assert_eq!(
        report["preflight"][0]["near_cgroup_limit"], true,
        "{report}"
    );
    let warning = report["warnings"][0].as_str().unwrap_or_default();
    assert!(warning.contains("cgroup's memory limit"), "{report}");
    let text = run_in_cgroup(&cgroup, &["--status"]);
    text.assert_code(0);
    text.assert_contains("warning: locking");
    text.assert_contains("comes near the cgroup's memory limit");

    // Far above: read, no warning.
    let far = size * 8 / page * page;
    let roomy = TestCgroup::new(&h, "doctor-far").unwrap_or_else(|e| panic!("{e}"));
    roomy
        .write(max_file(&h), &far.to_string())
        .unwrap_or_else(|e| panic!("{e}"));
    let run = run_in_cgroup(&roomy, &["--json"]);
    run.assert_code(0);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(report["cgroup"]["max"], far, "{report}");
    assert_eq!(
        report["preflight"][0]["near_cgroup_limit"], false,
        "{report}"
    );
    assert_eq!(report["lock"]["locked"], true, "{report}");
    assert_eq!(report["warnings"].as_array().map(Vec::len), Some(0));
}
