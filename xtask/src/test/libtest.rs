//! Runs a `cargo test` command and holds it to what its libtest result
//! lines say: the arguments each kind of run gets (`--include-ignored`,
//! `--skip`), a time limit for the whole process tree, and the counts.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::Duration;

use anyhow::{bail, ensure, Context as _};

use crate::contract::{CAP_SYS_RESOURCE, QEMU_USER_32_NOT_RUN, QEMU_USER_NOT_RUN};
use crate::util::{self, Tally};

/// How long one `cargo test` (build and run) may take before it is
/// killed. A normal run takes one or two minutes; a test that hangs (a
/// forked child waiting forever, say) must not eat CI's 90 minutes.
const TEST_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// What a run asks of libtest.
#[derive(Clone, Debug, Default)]
pub(super) struct Policy {
    /// Every test must run: libtest gets `--include-ignored`, and a test
    /// reported as ignored fails the run. Natively as root with every
    /// capability (inside the VMs, `xtask/vm/init.sh` does the same).
    must_run: bool,
    /// Tests this kind of run cannot run, with the reason: each goes to
    /// libtest as `--skip <name>`. Without `--exact`, on purpose: libtest
    /// then skips every test whose path contains the name, so an entry is
    /// a module (`seccomp::`, with its `::`, matching only the tests inside
    /// it) or a test's whole path, never a bare word that other names
    /// contain. (`--exact` would make a module entry skip nothing.)
    skip: Vec<(&'static str, &'static str)>,
}

impl Policy {
    /// A run on the host's kernel: every test must run as root with
    /// `CAP_SYS_RESOURCE`. Root in a container or sandbox often lacks it
    /// (its bounding set drops it): the tests `#[ignore]`d for it then stay
    /// ignored, are counted so, and run in the VMs.
    pub(super) fn native() -> Policy {
        let every_capability = util::is_root() && util::has_capability(CAP_SYS_RESOURCE);
        if util::is_root() && !every_capability {
            println!(
                "natively as root without CAP_SYS_RESOURCE: the tests ignored for it are \
                 counted as ignored here, and run in the VMs"
            );
        }
        Policy {
            must_run: every_capability,
            skip: Vec::new(),
        }
    }

    /// A run under QEMU user mode: without the tests it cannot run
    /// (tests/common/contract.rs), each named with its reason, and for a
    /// 32-bit guest without those it cannot run for one either.
    pub(super) fn qemu_user(pointer_width: u32) -> Policy {
        let extra = if pointer_width == 32 {
            QEMU_USER_32_NOT_RUN
        } else {
            &[]
        };
        Policy {
            must_run: false,
            skip: QEMU_USER_NOT_RUN.iter().chain(extra).copied().collect(),
        }
    }

    /// The libtest arguments, after cargo's `--`.
    fn args(&self) -> Vec<&'static str> {
        let mut args = Vec::new();
        if self.must_run {
            args.push("--include-ignored");
        }
        for (name, _) in &self.skip {
            args.extend(["--skip", name]);
        }
        args
    }
}

/// Runs a `cargo test` command under `policy`, echoing its standard output
/// line by line (so libtest's `test result:` lines reach the log) while
/// counting them into `tally`. Standard error (cargo's progress) passes
/// through. Fails when the command fails, when a test failed, and, when
/// every test must run, when one was reported as ignored.
///
/// The command runs in a process group of its own, which every process
/// below it inherits (no test creates a process group of its own), so that
/// after [`TEST_TIMEOUT`] one signal to the group kills the whole tree,
/// orphans reparented to init included. Being a group of its own, it does
/// not get the terminal's Ctrl-C; when the xtask dies of one, the tests'
/// next write to the closed stdout pipe ends them.
pub(super) fn run_libtest(cmd: &mut Command, policy: Policy, tally: &mut Tally) -> util::Result {
    cmd.arg("--").args(policy.args());
    for (name, reason) in &policy.skip {
        println!("not run under QEMU user mode: {name} ({reason})");
    }
    eprintln!("$ {}", util::describe(cmd));
    let mut child = cmd
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .with_context(|| format!("could not start `{}`", util::describe(cmd)))?;
    // `process_group(0)`: the group's id is the child's pid.
    let pgid = child.id();
    let (finished, watch) = mpsc::channel::<()>();
    let watchdog = thread::spawn(move || match watch.recv_timeout(TEST_TIMEOUT) {
        Err(RecvTimeoutError::Timeout) => {
            kill_group(pgid);
            true
        }
        _ => false,
    });

    let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
    let mut out = std::io::stdout().lock();
    let mut results = Results::default();
    let mut line = Vec::new();
    // Test output need not be UTF-8: read bytes, and end at EOF or on a
    // read error (the child is waited for below either way).
    while let Ok(n) = stdout.read_until(b'\n', &mut line) {
        if n == 0 {
            break;
        }
        results.add_line(&String::from_utf8_lossy(&line));
        // Best effort: a closed stdout must not hide the test results.
        let _ = out.write_all(&line);
        let _ = out.flush();
        line.clear();
    }
    drop(out);
    let status = child.wait();
    let _ = finished.send(());
    let timed_out = watchdog.join().unwrap_or(false);
    tally.add(&results.tally);
    let status = status.with_context(|| format!("waiting for `{}`", util::describe(cmd)))?;
    if timed_out {
        bail!(
            "timed out after {} minutes, killed with its test processes: {}",
            TEST_TIMEOUT.as_secs() / 60,
            util::describe(cmd)
        );
    }
    util::check_status(cmd, status)?;
    results.check(policy)
}

/// What a run's standard output said: the counts of its `test result:`
/// lines, and the tests reported as ignored.
#[derive(Debug, Default)]
struct Results {
    tally: Tally,
    ignored: Vec<String>,
}

impl Results {
    fn add_line(&mut self, line: &str) {
        self.tally.add_libtest_output(line);
        // `test <name> ... ignored` or `test <name> ... ignored, <reason>`.
        if let Some((name, verdict)) = line
            .strip_prefix("test ")
            .and_then(|rest| rest.split_once(" ... "))
        {
            if verdict.trim_end().starts_with("ignored") {
                self.ignored.push(name.to_string());
            }
        }
    }

    /// Fails on failed tests, and on ignored ones where every test must run.
    fn check(&self, policy: Policy) -> util::Result {
        ensure!(
            self.tally.failed == 0,
            "{} test(s) failed (see the lines above)",
            self.tally.failed
        );
        ensure!(
            !policy.must_run || self.tally.ignored == 0,
            "{} test(s) reported as ignored in a run where every test must run \
             (--include-ignored): {}",
            self.tally.ignored,
            self.ignored.join(", ")
        );
        Ok(())
    }
}

/// Kills the process group `pgid` (cargo, the QEMU runners, the test
/// binaries and their forked children: all of them inherit the group that
/// [`run_libtest`] gave cargo) with `kill -KILL -- -<pgid>`.
fn kill_group(pgid: u32) {
    eprintln!(
        "xtask: test run exceeded {} minutes; killing its process group {pgid}",
        TEST_TIMEOUT.as_secs() / 60
    );
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .status();
}

#[cfg(test)]
mod tests {
    use super::{kill_group, Policy, Results};
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};

    #[test]
    fn each_policy_gives_libtest_its_arguments() {
        let must_run = Policy {
            must_run: true,
            skip: Vec::new(),
        };
        assert_eq!(must_run.args(), ["--include-ignored"]);
        let qemu = Policy {
            must_run: false,
            skip: vec![("seccomp::", "no seccomp"), ("lock::a", "why")],
        };
        assert_eq!(qemu.args(), ["--skip", "seccomp::", "--skip", "lock::a"]);
        assert!(Policy::default().args().is_empty());
        let (q64, q32) = (Policy::qemu_user(64), Policy::qemu_user(32));
        assert_eq!(q64.skip.len(), crate::contract::QEMU_USER_NOT_RUN.len());
        assert_eq!(
            q32.skip.len(),
            q64.skip.len() + crate::contract::QEMU_USER_32_NOT_RUN.len()
        );
    }

    #[test]
    fn an_ignored_test_fails_a_run_where_every_test_must_run() {
        let mut results = Results::default();
        for line in [
            "test a ... ok\n",
            "test needs_root ... ignored, needs root\n",
            "test result: ok. 1 passed; 0 failed; 1 ignored; 0 measured; 2 filtered out; finished in 0.01s\n",
        ] {
            results.add_line(line);
        }
        assert_eq!(results.ignored, ["needs_root"]);
        assert_eq!(results.tally.filtered, 2);
        assert!(results.check(Policy::default()).is_ok());
        let must_run = Policy {
            must_run: true,
            skip: Vec::new(),
        };
        let err = results.check(must_run).unwrap_err().to_string();
        assert!(err.contains("needs_root"), "{err}");
    }

    /// Whether `pid` has ended: gone, or a zombie waiting for its reaper.
    fn ended(pid: &str) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        }
    }

    #[test]
    fn killing_the_group_kills_children_and_orphans() {
        // A shell that starts a grandchild in the background, says its pid
        // and waits: the shape of cargo, a test binary and its fork.
        let mut child = Command::new("sh")
            .args(["-c", "sleep 300 & echo $!; wait"])
            .stdout(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let grandchild = line.trim().to_string();
        assert!(!ended(&grandchild));
        kill_group(child.id());
        let status = child.wait().unwrap();
        assert!(!status.success());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !ended(&grandchild) {
            assert!(
                std::time::Instant::now() < deadline,
                "sleep {grandchild} outlived its group"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
