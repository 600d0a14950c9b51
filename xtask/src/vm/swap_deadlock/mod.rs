//! The swap-deadlock scenario: a userspace swap daemon under memory
//! pressure, in a real kernel, once per protection mode.
//!
//! Each boot runs `xtask/vm/swap-deadlock.sh` as `/init`: the kernel's NBD
//! driver with `examples/nbd_swap.rs` serving its only swap device (or,
//! with `--transport ublk`, `ublk_drv` with `examples/ublk_swap.rs`), a
//! memory hog that writes checkable pages well past RAM and reads them
//! back, and a locked watchdog that samples memory and, when swap I/O
//! stalls, dumps the blocked tasks' stacks (`sysrq w`) and crashes the
//! kernel. The kernel's hung-task detector is on too, set to panic. One
//! boot per mode, because a deadlocked kernel cannot go on.
//!
//! The host reads each console ([`verdict`]) and prints one line per boot:
//! `swap-deadlock <arch> <transport> <kernel> <mode>: <outcome> written=<MiB> MiB read=<MiB> MiB corrupt=<pages> [evidence]`.
//!
//! Here: what a boot is made of (configuration, image) and the boots of
//! one arch; `verdict` reads and judges a console, `plot` draws the figure.

mod plot;
mod verdict;

use std::path::{Path, PathBuf};

use super::boot::boot_console;
use super::build::Binaries;
use super::fetch::Fetched;
use super::pack::busybox_archive;
use crate::arch::Arch;
use crate::util::{self, Result};
use anyhow::Context as _;
use verdict::{classify, line, problem, row, Outcome};
pub(super) use verdict::{Run, TABLE_HEADER};

/// The protection modes of `nbd_swap --protect`, in the order they boot.
pub(super) const MODES: [&str; 3] = ["none", "lock", "harden"];
/// The modes `cargo xtask test` boots: the two ends, unprotected and
/// hardened. `lock` (locking alone) deadlocks in some rounds and survives
/// in others (docs/swap-deadlock.md), so one boot of it proves nothing
/// either way; `cargo xtask vm --scenario swap-deadlock` boots it.
pub(super) const TIER_MODES: [&str; 2] = ["none", "harden"];
/// What a swap-deadlock boot runs besides the daemon ([`Transport::daemon`]):
/// the hog and watchdog (a test program).
pub(super) const PROGRAMS: [&str; 1] = ["vm_swap_deadlock"];

/// How much the hog writes: about twice the VM's RAM (`MemTotal` is about
/// 200 MiB of the 256 MiB), so that about half of it goes through the
/// daemon.
const HOG_MIB: u32 = 400;
/// The swap device, and the most the daemon's store may hold compressed.
const SWAP_MIB: u32 = 512;
const STORE_MIB: u32 = 16;
/// Seconds without swap I/O after which the watchdog takes the evidence
/// and crashes the kernel, and the hung-task detector's timeout.
const STALL_S: u32 = 30;
const HUNG_S: u32 = 60;

/// How the daemon's block device reaches the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Transport {
    /// The kernel's NBD client (`nbd.ko`) over a socket pair.
    Nbd,
    /// The kernel's ublk driver (`ublk_drv`, Linux 6.0 and later) through
    /// io_uring.
    Ublk,
}

impl Transport {
    /// Every transport, `--transport`'s choices.
    pub(super) const ALL: [Transport; 2] = [Transport::Nbd, Transport::Ublk];

    /// Its word in the console lines and on the command line.
    pub(super) fn name(self) -> &'static str {
        match self {
            Transport::Nbd => "nbd",
            Transport::Ublk => "ublk",
        }
    }

    /// The transport called `name`.
    pub(super) fn by_name(name: &str) -> Option<Transport> {
        Transport::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The daemon that serves the swap device over it (an example).
    pub(super) fn daemon(self) -> &'static str {
        match self {
            Transport::Nbd => "nbd_swap",
            Transport::Ublk => "ublk_swap",
        }
    }

    /// The kernel module of its driver (loaded with its dependencies).
    pub(super) fn module(self) -> &'static str {
        match self {
            Transport::Nbd => "nbd",
            Transport::Ublk => "ublk_drv",
        }
    }
}

/// What the experiment runs: which modes, how often each, over which
/// transports, and whether to draw the figure.
#[derive(Clone, Debug)]
pub(super) struct Options {
    /// `nbd_swap --protect` values; [`MODES`] when empty. Any value the
    /// daemon takes, such as `harden-without-realtime`.
    pub(super) modes: Vec<String>,
    pub(super) repeat: usize,
    /// Draw `docs/swap-deadlock.svg` from the first `none` and `harden`
    /// boots of each transport, on the first kernel that ran both.
    pub(super) plot: bool,
    /// How the daemon's device reaches the kernel: `None` for every
    /// transport the kernel has a driver for (NBD everywhere, ublk from
    /// 6.0 where Debian builds it).
    pub(super) transport: Option<Transport>,
    /// The run of `cargo xtask test`: the experiment boots only the
    /// transports each arch names in
    /// [`crate::arch::Arch::swap_deadlock_tier`], in [`TIER_MODES`], and
    /// says `not run` for the others.
    pub(super) tier: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            modes: Vec::new(),
            repeat: 1,
            plot: false,
            transport: None,
            tier: false,
        }
    }
}

impl Options {
    /// The modes to boot, in order.
    pub(super) fn modes(&self) -> Vec<&str> {
        if self.modes.is_empty() && self.tier {
            TIER_MODES.to_vec()
        } else if self.modes.is_empty() {
            MODES.to_vec()
        } else {
            self.modes.iter().map(String::as_str).collect()
        }
    }

    /// The transports to try on each kernel, in order.
    pub(super) fn transports(&self) -> Vec<Transport> {
        match self.transport {
            Some(t) => vec![t],
            None => Transport::ALL.to_vec(),
        }
    }
}

/// The kernel's series (`6.1`) from a Debian kernel package name such as
/// `linux-image-6.1.0-28-amd64`; the whole name if it has none.
pub(super) fn kernel_series(package: &str) -> String {
    package
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .find_map(|word| {
            let mut parts = word.split('.');
            let (major, minor) = (parts.next()?, parts.next()?);
            (!major.is_empty() && !minor.is_empty()).then(|| format!("{major}.{minor}"))
        })
        .unwrap_or_else(|| package.to_string())
}

/// `swap-deadlock <arch> <transport> <kernel> <mode>`: which boot a line
/// or a table row is about.
fn label(arch: &Arch, transport: Transport, kernel: &str, mode: &str) -> String {
    format!(
        "swap-deadlock {} {} {kernel} {mode}",
        arch.name,
        transport.name()
    )
}

/// The console line of one run of `mode` over `transport` on the kernel
/// of `package`, as the VM tier prints it when the boot ends.
pub(super) fn run_line(
    arch: &Arch,
    transport: Transport,
    package: &str,
    mode: &str,
    run: &Run,
) -> String {
    line(&label(arch, transport, &kernel_series(package), mode), run)
}

/// `/etc/vm.conf` of the swap-deadlock boots.
fn conf(arch: &Arch, transport: Transport) -> String {
    format!(
        "ARCH={}\nTRANSPORT={}\nHOG_MIB={HOG_MIB}\nSWAP_MIB={SWAP_MIB}\nSTORE_MIB={STORE_MIB}\n\
         STALL_S={STALL_S}\nHUNG_S={HUNG_S}\n",
        arch.name,
        transport.name()
    )
}

/// Packs the swap-deadlock initramfs for `arch`: busybox, the script,
/// the transport's modules, its daemon and the hog.
pub(super) fn pack(
    arch: &Arch,
    fetched: &Fetched,
    binaries: &Binaries,
    transport: Transport,
    modules: &[PathBuf],
    dir: &Path,
) -> Result<PathBuf> {
    let path = match transport {
        Transport::Nbd => dir.join("swap-deadlock.cpio.gz"),
        _ => dir.join(format!("swap-deadlock-{}.cpio.gz", transport.name())),
    };
    let mut archive = busybox_archive(
        fetched,
        "swap-deadlock.sh",
        &[],
        &conf(arch, transport),
        modules,
    )?;
    for name in [transport.daemon()].iter().chain(&PROGRAMS) {
        archive.copy(&format!("bin/{name}"), 0o755, &binaries.path(name))?;
    }
    archive.write_gzip(&path)?;
    Ok(path)
}

/// The boots of one arch: its kernel, transport, and every run by mode.
pub(super) struct Runs {
    pub(super) arch: &'static Arch,
    pub(super) transport: Transport,
    /// The Debian package of the kernel, and its series (`6.1`).
    pub(super) package: String,
    pub(super) kernel: String,
    pub(super) by_mode: Vec<(String, Vec<Run>)>,
}

impl Runs {
    /// `swap-deadlock <arch> <transport> <kernel> <mode>`: which boot a
    /// line or a table row is about.
    fn label(&self, mode: &str) -> String {
        label(self.arch, self.transport, &self.kernel, mode)
    }

    /// One console line per run.
    pub(super) fn lines(&self) -> Vec<String> {
        self.by_mode
            .iter()
            .flat_map(|(mode, runs)| runs.iter().map(move |run| line(&self.label(mode), run)))
            .collect()
    }

    /// Why runs broke [`verdict::problem`]'s rules; empty when none did.
    pub(super) fn problems(&self) -> Vec<String> {
        self.by_mode
            .iter()
            .flat_map(|(mode, runs)| {
                runs.iter()
                    .filter_map(move |run| problem(&self.label(mode), mode, run))
            })
            .collect()
    }

    /// One table row per mode ([`TABLE_HEADER`]).
    pub(super) fn rows(&self) -> Vec<[String; 5]> {
        self.by_mode
            .iter()
            .map(|(mode, runs)| row(&self.label(mode), runs))
            .collect()
    }

    /// How many boots ran.
    pub(super) fn count(&self) -> usize {
        self.by_mode.iter().map(|(_, runs)| runs.len()).sum()
    }

    /// No runs yet of `modes` over `transport` on the kernel of `package`.
    pub(super) fn new(
        arch: &'static Arch,
        transport: Transport,
        package: &str,
        modes: &[&str],
    ) -> Runs {
        Runs {
            arch,
            transport,
            package: package.to_string(),
            kernel: kernel_series(package),
            by_mode: modes.iter().map(|m| (m.to_string(), Vec::new())).collect(),
        }
    }

    /// Records a run of `mode`, after the earlier rounds' runs of it.
    pub(super) fn push(&mut self, mode: &str, run: Run) {
        match self.by_mode.iter_mut().find(|(m, _)| m == mode) {
            Some((_, runs)) => runs.push(run),
            None => self.by_mode.push((mode.to_string(), vec![run])),
        }
    }
}

/// Boots `initrd` once in `mode` and reads the outcome off the console;
/// `tag` names the boot in the echoed console (the kernel, the
/// transport).
pub(super) fn boot(arch: &Arch, kernel: &Path, initrd: &Path, mode: &str, tag: &str) -> Run {
    let tag = format!("{tag}swap-deadlock {mode} ");
    let extra = format!("SWAP_DEADLOCK_MODE={mode}");
    match boot_console(
        arch,
        kernel,
        initrd,
        &extra,
        arch.swap_deadlock_timeout,
        &tag,
    ) {
        Ok(console) => classify(&console),
        Err(e) => Run {
            outcome: Outcome::Error(format!("{e:#}")),
            written: 0,
            read: 0,
            corrupt: 0,
            evidence: format!("[{e:#}]"),
            seconds: 0.0,
            samples: Vec::new(),
        },
    }
}

/// Draws `docs/swap-deadlock.svg` from the first `none` and `harden` boots
/// of each transport in `runs` (one kernel's): a row of two panels per
/// transport.
pub(super) fn draw(runs: &[&Runs]) -> Result {
    let first = runs.first().context("no swap-deadlock run to draw")?;
    let panels: Vec<(String, &Run)> = runs
        .iter()
        .flat_map(|r| {
            ["none", "harden"].into_iter().filter_map(move |mode| {
                let run = r.by_mode.iter().find(|(m, _)| m == mode)?.1.first()?;
                let title = format!(
                    "{}, --protect {mode}: {}",
                    r.transport.daemon(),
                    run.outcome.word()
                );
                Some((title, run))
            })
        })
        .collect();
    let daemons: Vec<&str> = runs.iter().map(|r| r.transport.daemon()).collect();
    let title = format!(
        "Swap deadlock: {} serving the only swap; a {HOG_MIB} MiB hog in a 256 MiB VM ({}, {})",
        daemons.join(" or "),
        first.arch.name,
        first.package
    );
    let path = util::root().join("docs").join("swap-deadlock.svg");
    plot::plot(&title, &panels, &path)?;
    eprintln!("xtask: wrote {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{Options, MODES, TIER_MODES};

    #[test]
    fn the_tier_boots_the_two_ends_and_a_run_asked_for_boots_every_mode() {
        let tier = Options {
            tier: true,
            ..Options::default()
        };
        assert_eq!(tier.modes(), TIER_MODES);
        assert_eq!(Options::default().modes(), MODES);
        let lock = Options {
            tier: true,
            modes: vec!["lock".into()],
            ..Options::default()
        };
        assert_eq!(lock.modes(), ["lock"]);
    }

    use super::{kernel_series, Transport};

    #[test]
    fn every_transport_reads_back() {
        for t in Transport::ALL {
            assert_eq!(Transport::by_name(t.name()), Some(t));
        }
        assert_eq!(Transport::by_name("iscsi"), None);
        assert_eq!(Transport::Ublk.daemon(), "ublk_swap");
        assert_eq!(Transport::Ublk.module(), "ublk_drv");
    }

    #[test]
    fn the_kernel_series_comes_from_the_package_name() {
        assert_eq!(kernel_series("linux-image-6.1.0-28-amd64"), "6.1");
        assert_eq!(kernel_series("linux-image-6.12.57+deb13-riscv64"), "6.12");
        assert_eq!(kernel_series("unknown"), "unknown");
    }
}
