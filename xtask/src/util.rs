//! What every command shares: running commands visibly, reading cargo's JSON
//! messages, and installing what a step needs on a fresh machine.

use anyhow::{anyhow, bail, Context as _};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::OnceLock;

/// An error that ends the run: the message says what failed and how.
pub type Result<T = ()> = anyhow::Result<T>;

/// The error for a command-line argument a command does not take, with
/// the command's usage.
pub fn unexpected(arg: lexopt::Arg<'_>, usage: &str) -> anyhow::Error {
    anyhow::anyhow!("{}\n\n{usage}", arg.unexpected())
}

/// The workspace root (the parent of `xtask/`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the root")
        .to_path_buf()
}

/// The cargo that runs us (`CARGO`), so child builds use the same toolchain.
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

/// Renders a command as a shell-like line, with the environment it sets.
pub fn describe(cmd: &Command) -> String {
    let mut line = String::new();
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            line.push_str(&key.to_string_lossy());
            line.push('=');
            line.push_str(&shell_quote(&value.to_string_lossy()));
            line.push(' ');
        }
    }
    line.push_str(&shell_quote(&cmd.get_program().to_string_lossy()));
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&shell_quote(&arg.to_string_lossy()));
    }
    line
}

/// Quotes `word` for a POSIX shell when it needs it, so a printed command
/// can be pasted back as it is.
fn shell_quote(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-+=/.,:@%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// Prints the command, runs it with its standard output where the caller
/// set it (ours by default) and its standard error passed through, and
/// fails with the command and its exit status unless it succeeds.
pub fn run(cmd: &mut Command) -> Result {
    run_keeping_stderr_tail(cmd, false, stderr_is_a_log()).map(drop)
}

/// Fails with the command and its exit status unless `status` is success.
pub fn check_status(cmd: &Command, status: ExitStatus) -> Result {
    if status.success() {
        Ok(())
    } else {
        Err(anyhow!("command failed ({status}): {}", describe(cmd)))
    }
}

/// Prints the command, runs it, and returns its standard output; standard
/// error passes through. Fails like [`run`].
pub fn output(cmd: &mut Command) -> Result<String> {
    let stdout = run_keeping_stderr_tail(cmd, true, stderr_is_a_log())?;
    Ok(String::from_utf8_lossy(&stdout).into_owned())
}

/// How many of a failed command's last standard-error lines its error
/// repeats.
const STDERR_TAIL_LINES: usize = 25;

/// Whether our standard error is not a terminal (CI's log, a file): then
/// a command's standard error goes through [`run_keeping_stderr_tail`]'s
/// pipe. On a terminal the command keeps it (and cargo its colours and
/// progress bar), and the reader has the lines before them anyway.
fn stderr_is_a_log() -> bool {
    use std::io::IsTerminal as _;
    !std::io::stderr().is_terminal()
}

/// Runs `cmd` with its standard error passed through and, when
/// `capture_stdout`, its standard output returned (otherwise it goes
/// where the caller set it, our own by default). With `keep_tail`, the
/// command's standard error goes through a pipe that copies each line on
/// and keeps the last [`STDERR_TAIL_LINES`]: a failure's error then ends
/// with them, so the cause (a compiler error, a full disk) is at the end
/// of a long log, beside the summary, not thousands of lines up.
fn run_keeping_stderr_tail(
    cmd: &mut Command,
    capture_stdout: bool,
    keep_tail: bool,
) -> Result<Vec<u8>> {
    use std::collections::VecDeque;
    use std::io::{BufRead as _, Read as _, Write as _};
    use std::process::Stdio;

    eprintln!("$ {}", describe(cmd));
    if capture_stdout {
        cmd.stdout(Stdio::piped());
    }
    cmd.stderr(if keep_tail {
        Stdio::piped()
    } else {
        Stdio::inherit()
    });
    let mut child = cmd
        .spawn()
        .with_context(|| format!("could not start `{}`", describe(cmd)))?;
    let tail = child.stderr.take().map(|pipe| {
        std::thread::spawn(move || {
            let mut tail = VecDeque::with_capacity(STDERR_TAIL_LINES);
            let mut reader = std::io::BufReader::new(pipe);
            let mut line = Vec::new();
            while matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
                let _ = std::io::stderr().write_all(&line);
                if tail.len() == STDERR_TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(String::from_utf8_lossy(&line).trim_end().to_string());
                line.clear();
            }
            tail
        })
    });
    let mut stdout = Vec::new();
    if let Some(mut pipe) = child.stdout.take() {
        pipe.read_to_end(&mut stdout)
            .with_context(|| format!("reading the output of `{}`", describe(cmd)))?;
    }
    let status = child
        .wait()
        .with_context(|| format!("waiting for `{}`", describe(cmd)))?;
    let tail = tail.and_then(|t| t.join().ok()).unwrap_or_default();
    if !status.success() && !tail.is_empty() {
        let lines: Vec<String> = tail.iter().map(|l| format!("    {l}")).collect();
        bail!(
            "command failed ({status}): {}\nits last lines on standard error:\n{}",
            describe(cmd),
            lines.join("\n")
        );
    }
    check_status(cmd, status)?;
    Ok(stdout)
}

/// The bytes free to us on the file system that holds `path`, from
/// `df` (coreutils), or `None` when `df` cannot say.
fn free_bytes(path: &Path) -> Option<u64> {
    let out = Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(path)
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)?
        .trim()
        .parse()
        .ok()
}

/// One line that says how much room is left where the builds go: printed
/// at the start of a run and after a failure, since a full disk makes
/// the compiler or the linker fail on whatever it writes next.
pub fn disk_line() -> String {
    let target = root().join("target");
    let at = if target.is_dir() { target } else { root() };
    match free_bytes(&at) {
        Some(free) => format!(
            "xtask: {:.1} GiB free on the file system of {}",
            free as f64 / (1u64 << 30) as f64,
            at.display()
        ),
        None => format!(
            "xtask: df could not say how much room is left at {}",
            at.display()
        ),
    }
}

/// One executable that cargo built, from a `compiler-artifact` message of
/// `--message-format=json` (or `json-render-diagnostics`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// The target's name: the crate, test, bench or example name.
    pub name: String,
    /// The target's kinds (`lib`, `bin`, `test`, `bench`, `example`, ...).
    pub kind: Vec<String>,
    /// Whether it was built with the test harness (`profile.test`).
    pub test: bool,
    pub executable: PathBuf,
}

/// The executables in cargo's JSON messages, one message a line, in the
/// order cargo printed them. Lines that are not JSON (none should be) and
/// artifacts without an executable (libraries, build scripts) are passed
/// over.
pub fn cargo_executables(messages: &str) -> Vec<Built> {
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter_map(|m| {
            let target = &m["target"];
            Some(Built {
                name: target["name"].as_str()?.to_string(),
                kind: target["kind"]
                    .as_array()?
                    .iter()
                    .filter_map(|k| Some(k.as_str()?.to_string()))
                    .collect(),
                test: m["profile"]["test"].as_bool().unwrap_or(false),
                executable: PathBuf::from(m["executable"].as_str()?),
            })
        })
        .collect()
}

/// A plain-text table: the header, then one line per row, each column
/// padded to its widest cell and two spaces apart.
pub fn text_table<R: AsRef<[String]>>(header: &[&str], rows: &[R]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row.as_ref()) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(padded.join("  ").trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.as_ref().iter().map(String::as_str).collect());
    }
    out
}

/// Whether `program` is on `PATH`.
pub fn have(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

/// Adds the rust target unless rustup already has it.
pub fn ensure_rust_target(target: &str) -> Result {
    let installed = output(Command::new("rustup").args(["target", "list", "--installed"]))?;
    if installed.lines().any(|line| line.trim() == target) {
        return Ok(());
    }
    eprintln!("xtask: installing rust target {target}");
    run(Command::new("rustup").args(["target", "add", target]))
}

/// Installs the Debian packages that are not installed yet. As root with
/// apt-get present it runs `apt-get update` once per run and installs them,
/// saying so; otherwise it fails with the exact command to run.
pub fn ensure_debian_packages(packages: &[&str]) -> Result {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|pkg| !debian_package_installed(pkg))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let install = format!(
        "apt-get install -y --no-install-recommends {}",
        missing.join(" ")
    );
    if !is_root() || !have("apt-get") {
        bail!(
            "missing Debian packages: {}. Install them with:\n    sudo apt-get update && sudo {install}",
            missing.join(" ")
        );
    }
    eprintln!(
        "xtask: installing missing Debian packages: {}",
        missing.join(" ")
    );
    static UPDATED: OnceLock<()> = OnceLock::new();
    if UPDATED.get().is_none() {
        run(Command::new("apt-get").args(["update", "-q"]))?;
        let _ = UPDATED.set(());
    }
    run(Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing))
}

/// Whether dpkg reports the package as installed.
fn debian_package_installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

/// Whether we run as root (uid 0), read from `/proc/self/status`.
/// Whether capability number `cap` is in this process's effective set
/// (`CapEff` of /proc/self/status).
pub fn has_capability(cap: u32) -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << cap) != 0)
}

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|uid| uid == "0"))
        })
        .unwrap_or(false)
}

/// Passed and failed checks of one step, summed over its runs. Steps that
/// only build count as 0/0. A step module (`vm`, `size`, `bench`) returns
/// one from its `run_all()` so `cargo xtask test` can put it in its summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub passed: u64,
    pub failed: u64,
    /// Tests marked `#[ignore]`: reported, never counted as passed.
    pub ignored: u64,
    /// Tests a filter left out (`--skip`): reported, never counted as passed.
    pub filtered: u64,
}

impl Tally {
    /// Adds another tally's counts to this one.
    pub fn add(&mut self, other: &Tally) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.ignored += other.ignored;
        self.filtered += other.filtered;
    }

    /// Adds the counts of every libtest `test result:` line in `text`, e.g.
    /// `test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; ...`.
    pub fn add_libtest_output(&mut self, text: &str) {
        for line in text.lines() {
            let Some(rest) = line.trim_start().strip_prefix("test result:") else {
                continue;
            };
            let words: Vec<&str> = rest.split_whitespace().collect();
            for pair in words.windows(2) {
                let Ok(n) = pair[0].parse::<u64>() else {
                    continue;
                };
                match pair[1].trim_end_matches([';', ',']) {
                    "passed" => self.passed += n,
                    "failed" => self.failed += n,
                    "ignored" => self.ignored += n,
                    "filtered" => self.filtered += n,
                    _ => {}
                }
            }
        }
    }
}

/// Installs the rustup toolchain `name` (minimal profile) unless rustup
/// has it already.
pub fn ensure_rust_toolchain(name: &str) -> Result {
    let installed = output(Command::new("rustup").args(["toolchain", "list"]))?;
    if installed
        .lines()
        .any(|line| line.starts_with(&format!("{name}-")))
    {
        return Ok(());
    }
    eprintln!("xtask: installing rust toolchain {name}");
    run(Command::new("rustup").args(["toolchain", "install", name, "--profile", "minimal"]))
}

/// Adds the rustup component (`clippy`, `rustfmt`, ...) to the active
/// toolchain unless it is there already.
pub fn ensure_rust_component(component: &str) -> Result {
    let installed = output(Command::new("rustup").args(["component", "list", "--installed"]))?;
    let prefix = format!("{component}-");
    if installed
        .lines()
        .any(|line| line.trim() == component || line.trim().starts_with(&prefix))
    {
        return Ok(());
    }
    eprintln!("xtask: installing rust component {component}");
    run(Command::new("rustup").args(["component", "add", component]))
}

#[cfg(test)]
mod tests {
    use super::{cargo_executables, describe, run_keeping_stderr_tail, Built, Tally};
    use std::process::Command;

    #[test]
    fn a_failed_command_s_error_ends_with_its_last_stderr_lines() {
        let script = "for i in $(seq 1 40); do echo line $i >&2; done; echo out; exit 3";
        let err = run_keeping_stderr_tail(Command::new("sh").args(["-c", script]), false, true)
            .unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.starts_with("command failed (exit status: 3): sh -c"),
            "{text}"
        );
        assert!(text.contains("\n    line 40"), "{text}");
        assert!(text.contains("\n    line 16\n"), "{text}");
        assert!(!text.contains("line 15\n"), "{text}");
        // Standard output is returned and standard error still kept apart.
        let script = "echo to-stderr >&2; echo to-stdout";
        let out = run_keeping_stderr_tail(Command::new("sh").args(["-c", script]), true, true);
        assert_eq!(out.unwrap(), b"to-stdout\n");
    }

    #[test]
    fn describe_prints_a_command_a_shell_can_run() {
        let mut cmd = Command::new("cargo");
        cmd.env("RUNNER", "qemu-riscv64 -L /usr/x")
            .env_remove("GONE")
            .args(["clippy", "-D warnings", "it's", ""]);
        assert_eq!(
            describe(&cmd),
            "RUNNER='qemu-riscv64 -L /usr/x' cargo clippy '-D warnings' 'it'\\''s' ''"
        );
    }

    #[test]
    fn tally_sums_libtest_result_lines() {
        let mut tally = Tally::default();
        tally.add_libtest_output(
            "running 3 tests\n\
             test a ... ok\n\
             test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s\n\
             test result: FAILED. 4 passed; 2 failed; 0 ignored; 0 measured; 3 filtered out; finished in 1.20s\n\
             not a result: 9 passed; 9 failed;\n",
        );
        assert_eq!(
            tally,
            Tally {
                passed: 7,
                failed: 2,
                ignored: 1,
                filtered: 3,
            }
        );
    }

    #[test]
    fn cargo_messages_give_their_executables() {
        // Abridged from `cargo test --no-run --message-format=json`.
        let messages = concat!(
            r#"{"reason":"compiler-artifact","package_id":"path+file:///w#mlock@0.1.0","target":{"kind":["lib"],"crate_types":["lib"],"name":"mlock","src_path":"/w/src/lib.rs","test":true},"profile":{"opt_level":"0","test":false},"features":[],"filenames":["/w/target/debug/deps/libmlock.rlib"],"executable":null,"fresh":true}"#,
            "\n",
            r#"{"reason":"compiler-artifact","package_id":"path+file:///w#mlock@0.1.0","target":{"kind":["lib"],"crate_types":["lib"],"name":"mlock","src_path":"/w/src/lib.rs","test":true},"profile":{"opt_level":"0","test":true},"features":[],"filenames":["/w/target/debug/deps/mlock-1"],"executable":"/w/target/debug/deps/mlock-1","fresh":false}"#,
            "\n",
            r#"{"reason":"compiler-artifact","package_id":"path+file:///w#mlock@0.1.0","target":{"kind":["bench"],"crate_types":["bin"],"name":"status","src_path":"/w/benches/status.rs","test":false},"profile":{"opt_level":"3","test":false},"features":[],"filenames":["/w/target/release/deps/status-2"],"executable":"/w/target/release/deps/status-2","fresh":false}"#,
            "\n",
            r#"{"reason":"build-finished","success":true}"#,
            "\n",
        );
        assert_eq!(
            cargo_executables(messages),
            [
                Built {
                    name: "mlock".into(),
                    kind: vec!["lib".into()],
                    test: true,
                    executable: "/w/target/debug/deps/mlock-1".into(),
                },
                Built {
                    name: "status".into(),
                    kind: vec!["bench".into()],
                    test: false,
                    executable: "/w/target/release/deps/status-2".into(),
                },
            ]
        );
    }
}
