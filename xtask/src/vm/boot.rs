//! Boots a kernel and an initramfs under `qemu-system` and collects its
//! console.

use anyhow::{bail, ensure, Context as _};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::fetch::Qemu;
use crate::arch::Arch;
use crate::util::{self, Result};

/// RAM of each VM. Small, so that a memory hog forces swapping quickly.
const MEMORY: &str = "256M";

/// What a boot printed, and how it ended.
pub(super) struct Console {
    /// The console's lines (kernel and `/init` alike).
    pub lines: Vec<String>,
    /// When each line reached the host, in seconds since QEMU started.
    pub times: Vec<f64>,
    /// QEMU was killed at the time limit.
    pub timed_out: bool,
    /// QEMU exited with status 0 (a power-off, or a reboot that
    /// `-no-reboot` turned into an exit).
    pub status_ok: bool,
}

/// Boots the kernel with `initrd`, echoes the console with a prefix, and
/// returns its lines. Fails on a timeout or a kernel panic.
pub(super) fn boot(
    arch: &Arch,
    kernel: &Path,
    initrd: &Path,
    extra: &str,
    timeout: Duration,
    tag: &str,
) -> Result<Vec<String>> {
    let console = boot_console(arch, kernel, initrd, extra, timeout, tag)?;
    if let Some(panic) = console.lines.iter().find(|l| l.contains("Kernel panic")) {
        bail!("{tag}boot: kernel panic: {panic}");
    }
    if console.timed_out {
        bail!(
            "{tag}boot: no power-off within {} s (last console line: {:?})",
            timeout.as_secs(),
            console.lines.last().map(String::as_str).unwrap_or("")
        );
    }
    ensure!(
        console.status_ok,
        "{tag}boot: {} exited with an error",
        arch.qemu_system
    );
    Ok(console.lines)
}

/// Boots `kernel` with `initrd` and `extra` on its command line, echoes
/// the console with a prefix, and returns what it printed, however the
/// boot ended; only a QEMU that cannot start is an error.
pub(super) fn boot_console(
    arch: &Arch,
    kernel: &Path,
    initrd: &Path,
    extra: &str,
    timeout: Duration,
    tag: &str,
) -> Result<Console> {
    let append = format!(
        "console={} panic=-1 quiet {} {extra}",
        arch.console, arch.kernel_args
    );
    let mut cmd = if arch.qemu_backported {
        let qemu = Qemu::unpacked(arch.qemu_system);
        let mut cmd = Command::new(qemu.binary);
        cmd.arg("-L").arg(qemu.data);
        cmd
    } else {
        Command::new(arch.qemu_system)
    };
    cmd.args(["-accel", "tcg", "-m", MEMORY, "-smp", "1"])
        .args(arch.machine)
        .args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-serial",
            "stdio",
        ])
        .arg("-no-reboot")
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", append.trim_end()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    eprintln!("$ {}", util::describe(&cmd));
    let mut child = cmd
        .spawn()
        .with_context(|| format!("could not start {}", arch.qemu_system))?;

    let (send, receive) = mpsc::channel::<String>();
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|stream| {
        let send = send.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).split(b'\n').map_while(|l| l.ok()) {
                let line = String::from_utf8_lossy(&line).trim_end().to_string();
                if send.send(line).is_err() {
                    break;
                }
            }
        })
    })
    .collect();
    drop(send);

    let started = Instant::now();
    let deadline = started + timeout;
    let mut console = Vec::new();
    let mut times = Vec::new();
    let mut timed_out = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match receive.recv_timeout(left.min(Duration::from_millis(500))) {
            Ok(line) => {
                let at = started.elapsed().as_secs_f64();
                eprintln!("[{} {tag}vm {at:5.1}] {line}", arch.name);
                times.push(at);
                console.push(line);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if Instant::now() >= deadline {
            timed_out = true;
            let _ = child.kill();
            break;
        }
    }
    let status = child
        .wait()
        .with_context(|| format!("waiting for {}", arch.qemu_system))?;
    for reader in readers {
        let _ = reader.join();
    }
    while let Ok(line) = receive.try_recv() {
        times.push(started.elapsed().as_secs_f64());
        console.push(line);
    }
    Ok(Console {
        lines: console,
        times,
        timed_out,
        status_ok: status.success(),
    })
}
