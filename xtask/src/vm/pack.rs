//! The initramfs images of the suite and PID 1 boots, and the busybox
//! start every scripted image shares.

use std::path::{Path, PathBuf};

use super::build::{doctor_example, Binaries};
use super::cpio;
use super::fetch::Fetched;
use crate::arch::Arch;
use crate::contract::{DOCTOR_ENV, VECTOR_ENV};
use crate::util::{self, Result};

/// Test programs the suite boot's `/init` runs.
pub(super) const SUITE_PROGRAMS: [&str; 2] = ["vm_hold", "vm_secret"];
/// How much each twin of the swap-pressure scenario holds.
pub(super) const HOLD_MIB: u32 = 40;

/// Packs the suite boot's image: busybox, `xtask/vm/init.sh`, zram's
/// modules, the test binaries under `/tests`, the suite programs and the
/// doctor. `/etc/vm.conf` names the arch, the kernel's series (`6.12`),
/// the hold size and the variables the suite reads
/// (tests/common/contract.rs).
pub(super) fn suite_image(
    arch: &Arch,
    series: &str,
    fetched: &Fetched,
    tests: &[(String, PathBuf)],
    binaries: &Binaries,
    dir: &Path,
) -> Result<PathBuf> {
    let path = dir.join("suite.cpio.gz");
    let mut conf = format!("ARCH={}\nKERNEL={series}\nHOLD_MIB={HOLD_MIB}\n", arch.name);
    if let Some(doctor) = doctor_example() {
        conf.push_str(&format!("export {DOCTOR_ENV}=/bin/{doctor}\n"));
    }
    if !arch.vector_cpu.is_empty() {
        // Built with the vector extension, on a CPU that has it: the
        // suite checks the CPU says so (tests/lock.rs).
        conf.push_str(&format!("export {VECTOR_ENV}=1\n"));
    }
    let mut archive = busybox_archive(fetched, "init.sh", &["tests"], &conf, &fetched.modules)?;
    for (name, test) in tests {
        archive.copy(&format!("tests/{name}"), 0o755, test)?;
    }
    for name in SUITE_PROGRAMS.iter().chain(doctor_example()) {
        let binary = binaries.path(name);
        if binary.is_file() {
            archive.copy(&format!("bin/{name}"), 0o755, &binary)?;
        }
    }
    archive.write_gzip(&path)?;
    Ok(path)
}

/// Packs the PID 1 boot's image: `init` alone, with `/dev/console`.
pub(super) fn pid1_image(init: &Path, dir: &Path) -> Result<PathBuf> {
    let path = dir.join("pid1.cpio.gz");
    let mut archive = cpio::Archive::default();
    archive.dir("dev");
    archive.dir("proc");
    archive.char_device("dev/console", 0o600, 5, 1);
    archive.copy("init", 0o755, init)?;
    archive.write_gzip(&path)?;
    Ok(path)
}

/// The start of a busybox initramfs: its directories (`extra_dirs` beside
/// the usual ones), `/dev/console` and `/dev/null`, busybox, the script
/// `init` of `xtask/vm/` as `/init` with the prelude it sources, `conf` as
/// `/etc/vm.conf`, and `modules` under `/modules`.
pub(super) fn busybox_archive(
    fetched: &Fetched,
    init: &str,
    extra_dirs: &[&str],
    conf: &str,
    modules: &[PathBuf],
) -> Result<cpio::Archive> {
    let mut archive = cpio::Archive::default();
    for d in ["bin", "dev", "etc", "modules", "proc", "sys", "tmp"]
        .iter()
        .chain(extra_dirs)
    {
        archive.dir(d);
    }
    archive.char_device("dev/console", 0o600, 5, 1);
    archive.char_device("dev/null", 0o666, 1, 3);
    archive.copy("bin/busybox", 0o755, &fetched.busybox)?;
    archive.copy("init", 0o755, &vm_script(init))?;
    archive.copy("etc/prelude.sh", 0o644, &vm_script("prelude.sh"))?;
    archive.file("etc/vm.conf", 0o644, conf.as_bytes());
    for module in modules {
        let name = module.file_name().unwrap_or_default().to_string_lossy();
        archive.copy(&format!("modules/{name}"), 0o644, module)?;
    }
    Ok(archive)
}

/// A script of `xtask/vm/` (the busybox `/init`s and what they source).
pub(super) fn vm_script(name: &str) -> PathBuf {
    util::root().join("xtask").join("vm").join(name)
}
