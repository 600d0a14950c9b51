//! Kernels and busybox from Debian's archive, fetched with `apt-get
//! download` through private apt lists and unpacked with `dpkg -x`; and,
//! the same way, the newer `qemu-system` an arch may need ([`fetch_qemu`]).
//!
//! Nothing touches the machine's own apt state: each architecture gets its
//! own lists, cache, status file and `sources.list` under
//! `target/vm/<arch>/<suite>/apt/`. apt checks the suite's `InRelease` signature
//! against Debian's archive keyring and each `.deb` against the hash in the
//! signed index, so what boots is exactly what Debian published.
//!
//! The result is cached: once `target/vm/<arch>/<suite>/fetched` names the
//! packages, later runs download nothing. Delete that directory to fetch
//! today's kernel again.

use anyhow::{bail, ensure, Context as _};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::arch::Arch;
use crate::util::{self, Result};

/// Debian's archive keyring, shipped by `debian-archive-keyring`.
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
/// Used when the machine's sources name no Debian mirror.
const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// What a boot needs from the archive, unpacked on the host.
pub struct Fetched {
    /// The kernel package's name and version, e.g. `linux-image-6.1.0-37-amd64 6.1.140-1`.
    pub kernel_package: String,
    /// The kernel image for `qemu -kernel`.
    pub kernel: PathBuf,
    /// The zram module and its dependencies, in load order, uncompressed.
    pub modules: Vec<PathBuf>,
    /// The static busybox binary.
    pub busybox: PathBuf,
    /// Where the packages are unpacked, for [`Fetched::driver_modules`].
    root: PathBuf,
}

impl Fetched {
    /// A block driver's module (`nbd`, `ublk_drv`) and its dependencies,
    /// in load order, decompressed into `dir/modules-<module>`: empty when
    /// the kernel has it built in, `None` when the kernel was built
    /// without it.
    pub fn driver_modules(&self, module: &str, dir: &Path) -> Result<Option<Vec<PathBuf>>> {
        let release = modules_release(&self.root)?;
        let builtin = fs::read_to_string(release.join("modules.builtin")).unwrap_or_default();
        let suffix = format!("/{module}.ko");
        if builtin.lines().any(|l| l.ends_with(&suffix)) {
            return Ok(Some(Vec::new()));
        }
        let mut index = std::collections::BTreeMap::new();
        index_modules(&release.join("kernel"), &mut index)?;
        if !index.contains_key(&module.replace('-', "_")) {
            return Ok(None);
        }
        module_with_deps(&self.root, module, &dir.join(format!("modules-{module}"))).map(Some)
    }
}

/// Fetches (unless cached) and unpacks the kernel metapackage's kernel and
/// `busybox-static` for `arch` from the first of `suites` whose index apt
/// can verify.
pub fn fetch(arch: &Arch, suites: &[&str], dir: &Path) -> Result<Fetched> {
    let stamp = dir.join("fetched");
    let root = dir.join("root");
    if stamp.is_file() {
        match unpacked(&stamp, &root, dir) {
            Ok(fetched) => return Ok(fetched),
            Err(e) => eprintln!(
                "xtask: {}: the cache is incomplete ({e}); fetching again",
                arch.name
            ),
        }
    }
    download(arch, suites, dir, &root)?;
    unpacked(&stamp, &root, dir)
}

/// What an earlier [`download`] left in `dir`.
fn unpacked(stamp: &Path, root: &Path, dir: &Path) -> Result<Fetched> {
    let kernel_package = fs::read_to_string(stamp)
        .with_context(|| format!("reading {}", stamp.display()))?
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    let kernel = find_kernel(root)?;
    let modules = module_with_deps(root, "zram", &dir.join("modules"))?;
    let busybox = ["bin/busybox", "usr/bin/busybox"]
        .iter()
        .map(|p| root.join(p))
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "busybox-static unpacked into {} has no busybox",
                root.display()
            )
        })?;
    Ok(Fetched {
        kernel_package,
        kernel,
        modules,
        busybox,
        root: root.to_path_buf(),
    })
}

/// Resolves the metapackage, downloads the kernel and busybox-static with
/// signature-checked private lists, and unpacks them into `root`. When the
/// mirror does not serve the kernel the metapackage names, the newest
/// older kernel of the same flavour in the index that it does serve is
/// used, with a warning.
fn download(arch: &Arch, suites: &[&str], dir: &Path, root: &Path) -> Result {
    // Removed first, written last: its presence means everything finished.
    let _ = fs::remove_file(dir.join("fetched"));
    let apt = dir.join("apt");
    let debs = dir.join("debs");
    make_private_apt(&apt)?;
    mkdir(&debs)?;

    let apt_cmd = |program: &str| private_apt(program, arch.debian, &apt);

    // The first suite whose signed index apt can verify. A mirror caught
    // between syncs serves a Packages file that does not match its signed
    // InRelease; apt refuses it, and the next suite is tried.
    let mut refused = Vec::new();
    let mut suite = None;
    for candidate in suites {
        let sources = format!(
            "deb [arch={a} signed-by={KEYRING}] {mirror} {candidate} main\n",
            a = arch.debian,
            mirror = mirror(),
        );
        write(&apt.join("sources.list"), sources.as_bytes())?;
        match util::run(apt_cmd("apt-get").arg("update")) {
            Ok(()) => {
                suite = Some(*candidate);
                break;
            }
            Err(e) => {
                eprintln!(
                    "xtask: {}: apt could not verify {candidate}'s index",
                    arch.name
                );
                refused.push(format!("{candidate}: {e}"));
            }
        }
    }
    let Some(suite) = suite else {
        bail!(
            "no suite's index could be verified for {}:\n  {}",
            arch.debian,
            refused.join("\n  ")
        );
    };
    if suite != suites[0] {
        eprintln!(
            "xtask: {}: WARNING: using {suite}'s kernel, not {}'s (whose index the mirror \
             served inconsistently)",
            arch.name, suites[0]
        );
    }

    let metapackage = format!("linux-image-{}", arch.kernel_flavour);
    let depends = util::output(apt_cmd("apt-cache").args(["depends", &metapackage]))?;
    let kernel = depends
        .lines()
        .filter_map(|line| line.trim().strip_prefix("Depends: "))
        .find(|dep| dep.starts_with("linux-image-") && !dep.starts_with('<'))
        .with_context(|| format!("{metapackage} depends on no linux-image package:\n{depends}"))?
        .to_string();
    eprintln!("xtask: {metapackage} resolves to {kernel}");

    // The mirror may not serve the package its index names (a 404 while
    // it syncs, or for good); then the older kernels of the same flavour
    // still in the index are tried, newest first.
    let pkgnames = util::output(apt_cmd("apt-cache").args(["pkgnames", "linux-image-"]))?;
    let others = flavour_kernels(&pkgnames, arch.kernel_flavour)
        .into_iter()
        .filter(|name| *name != kernel)
        .collect::<Vec<_>>();
    let mut candidates = vec![kernel.clone()];
    if !others.is_empty() {
        let madison = util::output(apt_cmd("apt-cache").arg("madison").args(&others))?;
        candidates.extend(newest_first(&madison));
    }

    // A stale download from an interrupted run would be unpacked too.
    clear(&debs)?;
    let mut failed: Vec<(String, String)> = Vec::new();
    let mut chosen = None;
    for candidate in &candidates {
        // Newer kernels split the package: the image package then only
        // depends on linux-binary-<abi> (vmlinuz), linux-modules-<abi> and
        // linux-base-<abi>, which are fetched too.
        let abi = candidate.trim_start_matches("linux-image-");
        let depends = util::output(apt_cmd("apt-cache").args(["depends", candidate]))?;
        let mut packages = vec![candidate.clone()];
        packages.extend(
            depends
                .lines()
                .filter_map(|line| line.trim().strip_prefix("Depends: "))
                .filter(|dep| dep.starts_with("linux-") && dep.ends_with(abi))
                .map(str::to_string),
        );
        match apt_download(
            apt_cmd("apt-get")
                .current_dir(&debs)
                .arg("download")
                .args(&packages),
        ) {
            Ok(()) => {
                chosen = Some(candidate.clone());
                break;
            }
            Err(e) => {
                // Whatever part of the set did download is not wanted.
                clear(&debs)?;
                failed.push((candidate.clone(), format!("{e:#}")));
            }
        }
    }
    let Some(kernel) = chosen else {
        let tried: Vec<&str> = failed.iter().map(|(name, _)| name.as_str()).collect();
        bail!(
            "the mirror serves none of {}'s kernel packages; tried {}; the first failed with: {}",
            arch.debian,
            tried.join(", "),
            failed
                .first()
                .map(|(_, e)| e.as_str())
                .unwrap_or("nothing to try"),
        );
    };
    if !failed.is_empty() {
        let missing: Vec<String> = failed
            .iter()
            .map(|(name, e)| format!("{name} ({e})"))
            .collect();
        eprintln!(
            "xtask: {}: WARNING: the mirror does not serve {}; using {kernel}, the newest that \
             downloads",
            arch.name,
            missing.join(", ")
        );
    }
    apt_download(
        apt_cmd("apt-get")
            .current_dir(&debs)
            .args(["download", "busybox-static"]),
    )?;

    // The modules decompressed from the previous kernel: `modules` and
    // each driver's `modules-<module>`.
    let old_modules = read_dir(dir)?.into_iter().filter(|p| {
        let name = p.file_name().unwrap_or_default().to_string_lossy();
        name == "modules" || name.starts_with("modules-")
    });
    for stale in std::iter::once(root.to_path_buf()).chain(old_modules) {
        if stale.exists() {
            fs::remove_dir_all(&stale).with_context(|| format!("removing {}", stale.display()))?;
        }
    }
    mkdir(root)?;
    let mut kernel_version = String::new();
    for deb in read_dir(&debs)? {
        util::run(Command::new("dpkg").arg("-x").arg(&deb).arg(root))?;
        let name = deb
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if let Some(rest) = name.strip_prefix(&format!("{kernel}_")) {
            let version = rest
                .split('_')
                .next()
                .unwrap_or_default()
                .replace("%3a", ":");
            kernel_version = format!("{kernel} {version} ({suite})");
        }
    }
    ensure!(
        !kernel_version.is_empty(),
        "apt-get download left no {kernel} package in {}",
        debs.display()
    );
    // Unpacked, the packages are not read again: removed, they leave
    // 70 to 100 MB an arch on the disk. A fetch after an interrupted one
    // downloads them again (there is no stamp yet).
    clear(&debs)?;
    // Written last: its presence means everything above finished.
    write(
        &dir.join("fetched"),
        format!("{kernel_version}\n").as_bytes(),
    )
}

/// The suite that serves a newer QEMU to Debian 12 machines.
const QEMU_SUITE: &str = "bookworm-backports";

/// A `qemu-system` emulator from [`QEMU_SUITE`], unpacked.
pub struct Qemu {
    /// The emulator.
    pub binary: PathBuf,
    /// Its firmware and data (`qemu -L`): `qemu-system-data`'s files.
    pub data: PathBuf,
}

impl Qemu {
    /// Where [`fetch_qemu`] unpacks `binary` (a `qemu-system-*` program,
    /// packaged under its own name).
    pub fn unpacked(binary: &str) -> Qemu {
        let root = qemu_dir(binary).join("root");
        Qemu {
            binary: root.join("usr/bin").join(binary),
            data: root.join("usr/share/qemu"),
        }
    }
}

/// `target/vm/qemu/<binary>/`: the unpacked packages (`root/`), their
/// private apt state and the stamp of a finished fetch.
fn qemu_dir(binary: &str) -> PathBuf {
    util::root()
        .join("target")
        .join("vm")
        .join("qemu")
        .join(binary)
}

/// Fetches (unless cached) the package `binary` and `qemu-system-data`
/// for this machine's architecture from [`QEMU_SUITE`], through private,
/// signature-checked apt lists as for the kernels, unpacks them, and
/// returns the emulator's version line. The emulator is run once
/// (`--version`): it uses the machine's shared libraries, which the
/// machine's own QEMU packages installed, and a missing one fails here.
pub fn fetch_qemu(binary: &str) -> Result<String> {
    let qemu = Qemu::unpacked(binary);
    let dir = qemu_dir(binary);
    let root = dir.join("root");
    let stamp = dir.join("fetched");
    if !(stamp.is_file() && qemu.binary.is_file()) {
        let _ = fs::remove_file(&stamp);
        let (apt, debs) = (dir.join("apt"), dir.join("debs"));
        make_private_apt(&apt)?;
        mkdir(&debs)?;
        clear(&debs)?;
        let host = util::output(Command::new("dpkg").arg("--print-architecture"))?;
        let host = host.trim();
        write(
            &apt.join("sources.list"),
            format!(
                "deb [arch={host} signed-by={KEYRING}] {} {QEMU_SUITE} main\n",
                mirror()
            )
            .as_bytes(),
        )?;
        util::run(private_apt("apt-get", host, &apt).arg("update"))?;
        apt_download(private_apt("apt-get", host, &apt).current_dir(&debs).args([
            "download",
            binary,
            "qemu-system-data",
        ]))?;
        if root.exists() {
            fs::remove_dir_all(&root).with_context(|| format!("removing {}", root.display()))?;
        }
        for deb in read_dir(&debs)? {
            util::run(Command::new("dpkg").arg("-x").arg(&deb).arg(&root))?;
        }
        clear(&debs)?;
        write(&stamp, format!("{QEMU_SUITE}\n").as_bytes())?;
    }
    let version = util::output(Command::new(&qemu.binary).arg("--version"))
        .with_context(|| format!("{} from {QEMU_SUITE} does not start", qemu.binary.display()))?;
    Ok(format!(
        "{} ({QEMU_SUITE})",
        version.lines().next().unwrap_or_default()
    ))
}

/// The directories and empty status file of a private apt state at `apt`.
fn make_private_apt(apt: &Path) -> Result {
    for sub in ["lists/partial", "cache/archives/partial", "sources.list.d"] {
        mkdir(&apt.join(sub))?;
    }
    write(&apt.join("status"), b"")
}

/// `program` (`apt-get`, `apt-cache`) on the private apt state at `apt`,
/// for the Debian architecture `debian`: its own lists, cache, status
/// file and `sources.list`, so the machine's apt state is not touched.
fn private_apt(program: &str, debian: &str, apt: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.arg("-q")
        .arg(format!("-oAPT::Architecture={debian}"))
        .arg(format!("-oAPT::Architectures={debian}"))
        .arg(format!(
            "-oDir::State::Lists={}",
            apt.join("lists").display()
        ))
        .arg(format!(
            "-oDir::State::status={}",
            apt.join("status").display()
        ))
        .arg(format!("-oDir::Cache={}", apt.join("cache").display()))
        .arg(format!(
            "-oDir::Etc::SourceList={}",
            apt.join("sources.list").display()
        ))
        .arg(format!(
            "-oDir::Etc::SourceParts={}",
            apt.join("sources.list.d").display()
        ))
        .arg("-oAcquire::IndexTargets::deb::DEP-11::DefaultEnabled=false")
        .arg("-oAPT::Sandbox::User=root");
    cmd
}

/// The Debian mirror the machine already uses, from its deb822 sources.
fn mirror() -> String {
    let sources = fs::read_to_string("/etc/apt/sources.list.d/debian.sources").unwrap_or_default();
    sources
        .lines()
        .filter_map(|line| line.strip_prefix("URIs:"))
        .flat_map(str::split_whitespace)
        .find(|uri| uri.trim_end_matches('/').ends_with("/debian"))
        .unwrap_or(DEFAULT_MIRROR)
        .to_string()
}

/// The kernel image: `/boot/vmlinuz-*` (or `vmlinux-*`), or
/// `/usr/lib/modules/<release>/vmlinuz` in newer packages.
fn find_kernel(root: &Path) -> Result<PathBuf> {
    let boot = root.join("boot");
    let in_boot = read_dir(&boot).unwrap_or_default().into_iter().find(|p| {
        let name = p.file_name().unwrap_or_default().to_string_lossy();
        name.starts_with("vmlinuz-") || name.starts_with("vmlinux-")
    });
    in_boot
        .or_else(|| {
            let release = modules_release(root).ok()?;
            Some(release.join("vmlinuz")).filter(|p| p.is_file())
        })
        .with_context(|| format!("no kernel image in {} or its lib/modules", boot.display()))
}

/// `lib/modules/<release>` (or `usr/lib/modules/<release>`).
fn modules_release(root: &Path) -> Result<PathBuf> {
    let modules_root = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|p| root.join(p))
        .find(|p| p.is_dir())
        .with_context(|| format!("no lib/modules in {}", root.display()))?;
    read_dir(&modules_root)?
        .into_iter()
        .find(|p| p.join("kernel").is_dir())
        .with_context(|| format!("no kernel modules under {}", modules_root.display()))
}

/// A module and the modules it depends on, in load order, decompressed
/// into `out` (busybox `insmod` takes plain `.ko` files).
///
/// The dependencies come from each module's own `depends=` modinfo field:
/// newer packages ship no `modules.dep` (depmod writes it on install).
fn module_with_deps(root: &Path, module: &str, out: &Path) -> Result<Vec<PathBuf>> {
    let release = modules_release(root)?;
    let mut index = std::collections::BTreeMap::new();
    index_modules(&release.join("kernel"), &mut index)?;
    let mut order = Vec::new();
    add_module(module, &index, &mut order, 0)?;

    mkdir(out)?;
    let mut loaded = Vec::new();
    for (i, (name, bytes)) in order.iter().enumerate() {
        let dst = out.join(format!("{i:02}-{name}.ko"));
        if !dst.is_file() {
            write(&dst, bytes)?;
        }
        loaded.push(dst);
    }
    Ok(loaded)
}

/// Maps each module's name (with `-` as `_`, as the kernel does) to its file.
fn index_modules(dir: &Path, index: &mut std::collections::BTreeMap<String, PathBuf>) -> Result {
    for entry in read_dir(dir)? {
        if entry.is_dir() {
            index_modules(&entry, index)?;
        } else {
            let file = entry.file_name().unwrap_or_default().to_string_lossy();
            if let Some((stem, _)) = file.split_once(".ko") {
                index.insert(stem.replace('-', "_"), entry.clone());
            }
        }
    }
    Ok(())
}

/// Appends `name`'s dependencies, then `name` itself, to `order` (once each).
fn add_module(
    name: &str,
    index: &std::collections::BTreeMap<String, PathBuf>,
    order: &mut Vec<(String, Vec<u8>)>,
    depth: usize,
) -> Result {
    let name = name.replace('-', "_");
    if order.iter().any(|(n, _)| *n == name) {
        return Ok(());
    }
    if depth > 16 {
        bail!("module dependencies nest too deep at {name}");
    }
    let path = index
        .get(&name)
        .with_context(|| format!("module {name} is neither built in nor shipped"))?;
    let bytes = module_bytes(path)?;
    for dep in modinfo(&bytes, "depends")
        .split(',')
        .filter(|d| !d.is_empty())
    {
        add_module(dep, index, order, depth + 1)?;
    }
    order.push((name, bytes));
    Ok(())
}

/// A module file's contents, decompressed.
fn module_bytes(path: &Path) -> Result<Vec<u8>> {
    let file = path.file_name().unwrap_or_default().to_string_lossy();
    if file.ends_with(".ko") {
        return fs::read(path).with_context(|| format!("reading {}", path.display()));
    }
    let tool = match file.rsplit('.').next() {
        Some("xz") => "xz",
        Some("zst") => "zstd",
        Some("gz") => "gzip",
        _ => bail!("unknown module compression: {}", path.display()),
    };
    let mut cmd = Command::new(tool);
    cmd.arg("-dc").arg(path);
    let out = cmd
        .output()
        .with_context(|| format!("could not start {tool}"))?;
    util::check_status(&cmd, out.status)?;
    Ok(out.stdout)
}

/// The value of `key=` in a module's `.modinfo` strings ("" if absent).
fn modinfo(module: &[u8], key: &str) -> String {
    let needle = format!("{key}=");
    module
        .split(|&b| b == 0)
        .find_map(|s| s.strip_prefix(needle.as_bytes()))
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

/// Runs an `apt-get download`, its output passed on; on failure the error
/// is apt's `E:` lines (the 404s), or the exit status if it printed none.
fn apt_download(cmd: &mut Command) -> Result {
    eprintln!("$ {}", util::describe(cmd));
    let out = cmd
        .output()
        .with_context(|| format!("could not start `{}`", util::describe(cmd)))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprint!("{}{stderr}", String::from_utf8_lossy(&out.stdout));
    if out.status.success() {
        return Ok(());
    }
    let errors: Vec<&str> = stderr
        .lines()
        .filter_map(|line| line.strip_prefix("E: "))
        .collect();
    if errors.is_empty() {
        util::check_status(cmd, out.status)
    } else {
        bail!("{}", errors.join("; "))
    }
}

/// The versioned kernel packages of `flavour` among `apt-cache pkgnames`
/// output: `linux-image-<abi>-<flavour>`, where each `-`-separated part of
/// the ABI starts with a digit (`6.12.117+deb13`, `6.1.0-37`). So
/// `-powerpc64le` takes no `-powerpc64le-64k` package, `amd64` no
/// `-rt-amd64` one, and `-dbg`, `-unsigned` and the metapackage are out.
fn flavour_kernels(pkgnames: &str, flavour: &str) -> Vec<String> {
    let suffix = format!("-{flavour}");
    pkgnames
        .lines()
        .map(str::trim)
        .filter(|name| !name.ends_with("-dbg") && !name.ends_with("-unsigned"))
        .filter(|name| {
            name.strip_prefix("linux-image-")
                .and_then(|rest| rest.strip_suffix(&suffix))
                .is_some_and(|abi| {
                    abi.split('-')
                        .all(|part| part.starts_with(|c: char| c.is_ascii_digit()))
                })
        })
        .map(str::to_string)
        .collect()
}

/// The packages of `apt-cache madison` output (`name | version | source`
/// lines), each once, newest version first.
fn newest_first(madison: &str) -> Vec<String> {
    let mut packages: Vec<(&str, &str)> = Vec::new();
    for line in madison.lines() {
        let mut fields = line.split('|').map(str::trim);
        let (Some(name), Some(version)) = (fields.next(), fields.next()) else {
            continue;
        };
        match packages.iter_mut().find(|(n, _)| *n == name) {
            Some(known) if compare_versions(version, known.1).is_gt() => known.1 = version,
            Some(_) => {}
            None => packages.push((name, version)),
        }
    }
    packages.sort_by(|a, b| compare_versions(b.1, a.1).then(a.0.cmp(b.0)));
    packages
        .into_iter()
        .map(|(name, _)| name.to_string())
        .collect()
}

/// Compares two Debian versions as dpkg does: the epoch numerically,
/// then the upstream version and the revision, each by [`compare_part`].
fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    /// Splits `[epoch:]upstream[-revision]`.
    fn split(v: &str) -> (u64, &str, &str) {
        let (epoch, rest) = match v.split_once(':') {
            Some((e, rest)) => (e.parse().unwrap_or(0), rest),
            None => (0, v),
        };
        let (upstream, revision) = rest.rsplit_once('-').unwrap_or((rest, ""));
        (epoch, upstream, revision)
    }
    let (ea, ua, ra) = split(a);
    let (eb, ub, rb) = split(b);
    ea.cmp(&eb)
        .then_with(|| compare_part(ua, ub))
        .then_with(|| compare_part(ra, rb))
}

/// dpkg's `verrevcmp`: alternating runs of non-digits, compared character
/// by character (`~` before everything, even the end; letters before other
/// characters), and digits, compared as numbers.
fn compare_part(a: &str, b: &str) -> std::cmp::Ordering {
    /// A non-digit's rank; `None` (the end, or a digit) ranks 0.
    fn rank(c: Option<u8>) -> i32 {
        match c {
            Some(b'~') => -1,
            Some(c) if c.is_ascii_digit() => 0,
            Some(c) if c.is_ascii_alphabetic() => i32::from(c),
            Some(c) => i32::from(c) + 256,
            None => 0,
        }
    }
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    while !a.is_empty() || !b.is_empty() {
        while a.first().is_some_and(|c| !c.is_ascii_digit())
            || b.first().is_some_and(|c| !c.is_ascii_digit())
        {
            let order = rank(a.first().copied()).cmp(&rank(b.first().copied()));
            if order.is_ne() {
                return order;
            }
            a = a.get(1..).unwrap_or_default();
            b = b.get(1..).unwrap_or_default();
        }
        let digits = |s: &[u8]| s.iter().take_while(|c| c.is_ascii_digit()).count();
        let (da, db) = (digits(a), digits(b));
        let number = |s: &[u8]| {
            let s = std::str::from_utf8(s)
                .unwrap_or_default()
                .trim_start_matches('0');
            (s.len(), s.to_string())
        };
        let order = number(&a[..da]).cmp(&number(&b[..db]));
        if order.is_ne() {
            return order;
        }
        a = &a[da..];
        b = &b[db..];
    }
    std::cmp::Ordering::Equal
}

/// Removes every file in `dir`.
fn clear(dir: &Path) -> Result {
    for entry in read_dir(dir)? {
        fs::remove_file(&entry).with_context(|| format!("removing {}", entry.display()))?;
    }
    Ok(())
}

/// Creates `dir` and its parents.
fn mkdir(dir: &Path) -> Result {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

/// Writes `bytes` to `path`.
fn write(path: &Path, bytes: &[u8]) -> Result {
    fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// The directory's entries, sorted by name.
fn read_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Picks only `s390x` / `powerpc64le` kernels, newest version first.
    #[test]
    fn kernel_candidates() {
        let pkgnames = "linux-image-s390x\nlinux-image-6.12.117+deb13-s390x\n\
                        linux-image-6.12.9+deb13-s390x\nlinux-image-6.12.107+deb13-s390x\n\
                        linux-image-6.12.117+deb13-s390x-dbg\nlinux-image-s390x-dbg\n\
                        linux-image-6.12.117+deb13-powerpc64le\n\
                        linux-image-6.12.117+deb13-powerpc64le-64k\n\
                        linux-image-6.12.117+deb13-amd64-unsigned\n\
                        linux-image-6.12.117+deb13-rt-amd64\nlinux-image-6.1.0-37-amd64\n";
        assert_eq!(
            flavour_kernels(pkgnames, "s390x"),
            [
                "linux-image-6.12.117+deb13-s390x",
                "linux-image-6.12.9+deb13-s390x",
                "linux-image-6.12.107+deb13-s390x"
            ]
        );
        assert_eq!(
            flavour_kernels(pkgnames, "powerpc64le"),
            ["linux-image-6.12.117+deb13-powerpc64le"]
        );
        assert_eq!(
            flavour_kernels(pkgnames, "powerpc64le-64k"),
            ["linux-image-6.12.117+deb13-powerpc64le-64k"]
        );
        assert_eq!(
            flavour_kernels(pkgnames, "amd64"),
            ["linux-image-6.1.0-37-amd64"]
        );

        let madison = " linux-image-6.12.9+deb13-s390x | 6.12.9-1 | http://deb.debian.org/debian trixie/main s390x Packages
linux-image-6.12.117+deb13-s390x | 6.12.117-1 | http://deb.debian.org/debian trixie/main s390x Packages
linux-image-6.12.107+deb13-s390x | 6.12.107-1 | http://deb.debian.org/debian trixie/main s390x Packages
linux-image-6.12.9+deb13-s390x | 6.12.9-1~bpo | http://deb.debian.org/debian trixie/main s390x Packages
";
        assert_eq!(
            newest_first(madison),
            [
                "linux-image-6.12.117+deb13-s390x",
                "linux-image-6.12.107+deb13-s390x",
                "linux-image-6.12.9+deb13-s390x"
            ]
        );
    }

    /// Agrees with `dpkg --compare-versions` on the cases that matter.
    #[test]
    fn debian_versions() {
        use std::cmp::Ordering::{Equal, Greater, Less};
        for (a, b, order) in [
            ("6.12.117-1", "6.12.107-1", Greater),
            ("6.12.9-1", "6.12.107-1", Less),
            ("6.12.117+deb13", "6.12.9+deb13", Greater),
            ("6.1.140-1", "6.1.140-1", Equal),
            ("6.1.140-1~bpo12+1", "6.1.140-1", Less),
            ("1:1.0-1", "2.0-1", Greater),
            ("1.0a-1", "1.0+b1-1", Less),
            ("1.0-1", "1.0-1+b1", Less),
            ("1.0~rc1-1", "1.0-1", Less),
            ("1.01-1", "1.1-1", Equal),
        ] {
            assert_eq!(compare_versions(a, b), order, "{a} vs {b}");
        }
    }
}
