//! Prepares one architecture for booting: fetches its kernel, builds its
//! binaries, and packs them into initramfs images.

use std::path::{Path, PathBuf};

use super::build::{build_binaries, build_pid1, build_tests, doctor_example};
use super::fetch::Fetched;
use super::{cpio, dt007, fetch, DOCTOR_ENV, HOLD_MIB, SCENARIO_PROGRAMS, VECTOR_ENV};
use crate::arch::Arch;
use crate::util::{self, Result};

/// What the host prepares for one architecture before booting it.
pub(super) struct Prepared {
    pub(super) arch: &'static Arch,
    pub(super) kernel_package: String,
    pub(super) kernel: PathBuf,
    pub(super) suite_initrd: PathBuf,
    pub(super) pid1_initrd: Option<PathBuf>,
    pub(super) dt007_initrd: PathBuf,
}

/// Fetches the kernel, builds the static binaries and packs both initramfs
/// images for one architecture.
pub(super) fn prepare(arch: &'static Arch, pid1_manifest: Option<&Path>) -> Result<Prepared> {
    let dir = util::root().join("target").join("vm").join(arch.name);
    let fetched = fetch::fetch(arch, &dir)?;
    eprintln!(
        "xtask: {}: {} ({})",
        arch.name,
        fetched.kernel_package,
        fetched.kernel.display()
    );
    util::ensure_rust_target(arch.triple)?;

    let tests = build_tests(arch)?;
    let examples: Vec<&str> = doctor_example()
        .into_iter()
        .chain(&dt007::EXAMPLES)
        .copied()
        .collect();
    let programs: Vec<&str> = SCENARIO_PROGRAMS
        .iter()
        .chain(&dt007::PROGRAMS)
        .copied()
        .collect();
    let binaries = build_binaries(arch, &examples, &programs)?;
    let dt007_initrd = dt007::pack(arch, &fetched, &binaries, &dir)?;

    let suite_initrd = dir.join("suite.cpio.gz");
    let mut conf = format!("ARCH={}\nHOLD_MIB={HOLD_MIB}\n", arch.name);
    if let Some(doctor) = doctor_example() {
        conf.push_str(&format!("export {DOCTOR_ENV}=/bin/{doctor}\n"));
    }
    if !arch.vector_cpu.is_empty() {
        // Built with the vector extension, on a CPU that has it: the
        // suite checks the CPU says so (tests/lock.rs).
        conf.push_str(&format!("export {VECTOR_ENV}=1\n"));
    }
    let mut archive = busybox_archive(&fetched, "init.sh", &["tests"], &conf, &fetched.modules)?;
    for (name, path) in &tests {
        archive.copy(&format!("tests/{name}"), 0o755, path)?;
    }
    for name in SCENARIO_PROGRAMS.iter().chain(doctor_example()) {
        archive.copy(&format!("bin/{name}"), 0o755, &binaries.path(name))?;
    }
    archive.write_gzip(&suite_initrd)?;

    let pid1_initrd = if let Some(manifest) = pid1_manifest {
        let init = build_pid1(arch, manifest)?;
        let path = dir.join("pid1.cpio.gz");
        let mut archive = cpio::Archive::default();
        archive.dir("dev");
        archive.dir("proc");
        archive.char_device("dev/console", 0o600, 5, 1);
        archive.copy("init", 0o755, &init)?;
        archive.write_gzip(&path)?;
        Some(path)
    } else {
        None
    };

    Ok(Prepared {
        arch,
        kernel_package: fetched.kernel_package,
        kernel: fetched.kernel,
        suite_initrd,
        pid1_initrd,
        dt007_initrd,
    })
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
