//! `cargo xtask docker`: the container table the README links
//! (docs/containers.md), run on a real Docker engine.
//!
//! It installs Debian's `docker.io` and `docker-compose` (and `libcap2-bin`
//! for `setcap`) when they are missing, starts `dockerd` when none is
//! running (and stops the one it started, by `/var/run/docker.pid`), and
//! builds `FROM scratch` images around the static x86_64 doctor and the
//! swap-daemon example (`DOCKER_BUILDKIT=0`; nothing is ever pulled). Then
//! it runs every row of the container table that the README links
//! (docs/containers.md: `| cell | docker run flags | outcome |`, and the
//! Compose file there) and compares what happened with what the row
//! claims:
//!
//! ```text
//! container <name>: <outcome> [details]
//! containers: N passed, M failed
//! ```
//!
//! The outcome is `locked`, `ENOMEM`, `EPERM` or `refused-by-host (<why>)`:
//! the engine would not start the container. A row may claim two outcomes,
//! `locked` and `refused-by-host`, for a setting only some hosts allow (an
//! unlimited `RLIMIT_MEMLOCK`, `--privileged`, adding a capability): which
//! one is expected is decided by what this host's `dockerd` process really
//! has (its capabilities and its hard limit, from `/proc/<pid>`). Containers
//! run with `--rm`; the images, the Compose project's network and a daemon
//! it started are removed at the end, also when a cell fails.

use anyhow::{anyhow, bail, ensure, Context as _};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{self, Tally};

const USAGE: &str = "usage: cargo xtask docker

Runs the container table (docs/containers.md) on a real Docker engine (installed and
started if needed) and compares each cell with the table's claim.";

/// The arch whose static binaries the images are built around.
const ARCH: &crate::arch::Arch = &crate::arch::X86_64;

/// Image names; removed at the end.
const IMAGE_DOCTOR: &str = "mlock-xtask/doctor";
const IMAGE_FILE_CAP: &str = "mlock-xtask/doctor-file-cap";
const IMAGE_FILE_CAP_BUILD: &str = "mlock-xtask/doctor-file-cap-build";
const IMAGE_SWAP_DAEMON: &str = "mlock-xtask/swap-daemon";
/// A static busybox (Debian's `busybox-static`), to keep a container
/// running while the doctor is copied into it.
const IMAGE_BUSYBOX: &str = "mlock-xtask/busybox";
const BUSYBOX: &str = "/bin/busybox";
/// The container the `docker-cp` cell copies the doctor into.
const CP_CONTAINER: &str = "mlock-xtask-cp";

/// The Compose project name (its network is removed at the end).
const COMPOSE_PROJECT: &str = "mlockxtask";

/// Entry point for `cargo xtask docker`.
pub fn main(args: &mut lexopt::Parser) -> util::Result {
    use lexopt::prelude::*;
    match args.next()? {
        None => run_all().map(|_| ()),
        Some(Short('h') | Long("help")) => {
            println!("{USAGE}");
            Ok(())
        }
        Some(arg) => Err(util::unexpected(arg, USAGE)),
    }
}

/// The whole step: engine, images, cells, clean-up.
pub fn run_all() -> util::Result<Tally> {
    let start = Instant::now();
    let cells = readme_cells()?;
    util::ensure_debian_packages(&[
        "docker.io",
        "docker-compose",
        "libcap2-bin",
        "busybox-static",
    ])?;
    let engine = Engine::start()?;
    let result = run_cells(&engine, &cells);
    engine.cleanup_images();
    drop(engine);
    let tally = result?;
    println!(
        "containers: {} passed, {} failed",
        tally.passed, tally.failed
    );
    eprintln!("xtask docker: {:.1} s", start.elapsed().as_secs_f64());
    ensure!(
        tally.failed == 0,
        "{} container cell(s) differ from the claims of {TABLE_PAGE} (see the lines above)",
        tally.failed
    );
    Ok(tally)
}

/// One row of the container table.
#[derive(Debug, Clone)]
struct Cell {
    name: String,
    /// `docker run` flags (empty for none; unused for `compose`).
    flags: Vec<String>,
    /// The outcomes the table names for it, in order.
    claims: Vec<&'static str>,
}

const OUTCOMES: [&str; 4] = ["locked", "ENOMEM", "EPERM", "refused-by-host"];

/// Reads the container table (the README links it: docs/containers.md):
/// the table whose header starts
/// `| cell |`; each row `| \`name\` | \`flags\` or none | outcome text |`.
fn readme_cells() -> util::Result<Vec<Cell>> {
    parse_table(&read_table_page()?)
}

fn parse_table(text: &str) -> util::Result<Vec<Cell>> {
    let mut lines = text.lines().skip_while(|l| !l.starts_with("| cell |"));
    if lines.next().is_none() {
        bail!("{TABLE_PAGE} has no container table (a table whose header starts `| cell |`)");
    }
    let mut cells = Vec::new();
    for line in lines.skip(1) {
        if !line.starts_with('|') {
            break;
        }
        let columns: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
        let [name, flags, outcome] = columns[..] else {
            bail!("{TABLE_PAGE}: a table row needs 3 columns: {line}");
        };
        let name = name.trim_matches('`').to_string();
        // The flags are the first code span of the column; prose (`none`,
        // `the Compose file below`) means none.
        let flags = match flags.strip_prefix('`').and_then(|f| f.split('`').next()) {
            Some(code) => code.split_whitespace().map(str::to_string).collect(),
            None => Vec::new(),
        };
        // The claims are the outcome words in code spans: `locked`, ...
        let mut claims: Vec<(usize, &'static str)> = OUTCOMES
            .iter()
            .filter_map(|o| outcome.find(&format!("`{o}`")).map(|at| (at, *o)))
            .collect();
        claims.sort();
        ensure!(
            !claims.is_empty(),
            "{TABLE_PAGE}: no outcome in table row {line}"
        );
        cells.push(Cell {
            name,
            flags,
            claims: claims.into_iter().map(|(_, o)| o).collect(),
        });
    }
    Ok(cells)
}

/// What one cell did.
struct Observed {
    outcome: &'static str,
    details: String,
    /// The cgroup limit the doctor read, if it ran and found one.
    cgroup_limit: Option<u64>,
}

fn run_cells(engine: &Engine, cells: &[Cell]) -> util::Result<Tally> {
    let built = crate::dist::build(ARCH, &["doctor", "swap_daemon"])?;
    let work = util::root().join("target").join("docker");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).with_context(|| format!("mkdir {}", work.display()))?;
    engine.build_image(&work, IMAGE_DOCTOR, &built[0], "doctor", false)?;
    engine.build_image(&work, IMAGE_SWAP_DAEMON, &built[1], "swap_daemon", false)?;
    engine.build_image(&work, IMAGE_FILE_CAP_BUILD, &built[0], "doctor", true)?;
    engine.import_file_cap_image(&work, &built[0])?;
    engine.build_image(&work, IMAGE_BUSYBOX, Path::new(BUSYBOX), "busybox", false)?;
    let host = HostLimits::of_dockerd(engine.pid()?)?;

    let mut tally = Tally::default();
    for cell in cells {
        let started = Instant::now();
        let observed = if cell.name == "compose" {
            engine.run_compose(&work)?
        } else if cell.name == "docker-cp" {
            engine.run_docker_cp(cell, &built[0])?
        } else {
            engine.run_cell(cell)?
        };
        // What the table claims for this host.
        let refusal = host.refuses(&effective_flags(cell)?);
        let expected = match (&refusal, cell.claims.as_slice()) {
            (Some(_), claims) if claims.contains(&"refused-by-host") => "refused-by-host",
            (None, [only]) => only,
            (None, claims) => claims
                .iter()
                .copied()
                .find(|c| *c != "refused-by-host")
                .unwrap_or("refused-by-host"),
            (Some(_), [first, ..]) => first,
            (Some(_), []) => "refused-by-host",
        };
        let shown = match (observed.outcome, &refusal) {
            ("refused-by-host", Some(why)) => {
                format!("refused-by-host ({why}; {})", observed.details)
            }
            ("refused-by-host", None) => format!("refused-by-host ({})", observed.details),
            (outcome, _) => format!("{outcome} ({})", observed.details),
        };
        let seconds = started.elapsed().as_secs_f64();
        if observed.outcome == expected {
            tally.passed += 1;
            println!("container {}: {shown}", cell.name);
        } else {
            tally.failed += 1;
            println!(
                "container {}: {shown} MISMATCH: {TABLE_PAGE} claims {expected} here",
                cell.name
            );
        }
        eprintln!("xtask docker: cell {} took {seconds:.1} s", cell.name);
    }
    Ok(tally)
}

/// The `docker run` flags a cell amounts to (for `compose`, read from the
/// Compose file of docs/containers.md).
fn effective_flags(cell: &Cell) -> util::Result<Vec<String>> {
    if cell.name != "compose" {
        return Ok(cell.flags.clone());
    }
    let yaml = readme_compose()?;
    let mut flags = Vec::new();
    if let Some(caps) = yaml.lines().find_map(|l| l.trim().strip_prefix("cap_add:")) {
        for cap in caps.trim().trim_matches(['[', ']']).split(',') {
            flags.push(format!("--cap-add={}", cap.trim()));
        }
    }
    if let Some(memlock) = yaml.lines().find_map(|l| l.trim().strip_prefix("memlock:")) {
        let number = |key: &str| {
            memlock
                .split(key)
                .nth(1)
                .and_then(|rest| rest.split([',', '}']).next())
                .map(str::trim)
                .unwrap_or("")
                .to_string()
        };
        flags.push(format!(
            "--ulimit=memlock={}:{}",
            number("soft:"),
            number("hard:")
        ));
    }
    Ok(flags)
}

/// The page that holds the container table and the Compose file.
const TABLE_PAGE: &str = "docs/containers.md";

fn read_table_page() -> util::Result<String> {
    let path = util::root().join(TABLE_PAGE);
    fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))
}

/// The Compose file of docs/containers.md: the first ```yaml block with `services:`.
fn readme_compose() -> util::Result<String> {
    let text = read_table_page()?;
    let mut rest = text.as_str();
    while let Some(at) = rest.find("```yaml\n") {
        let block = &rest[at + 8..];
        let end = block.find("```").unwrap_or(block.len());
        if block[..end].contains("services:") {
            return Ok(block[..end].to_string());
        }
        rest = &block[end..];
    }
    Err(anyhow!(
        "{TABLE_PAGE} has no ```yaml block with a Compose `services:` file"
    ))
}

/// What the host's `dockerd` may grant a container, read from its
/// `/proc/<pid>` files: the engine's children (runc) can set no more.
struct HostLimits {
    pid: u32,
    /// `CapBnd` and `CapEff` of dockerd.
    bounding: u64,
    effective: u64,
    /// The highest capability number this kernel knows.
    last_cap: u32,
    /// dockerd's hard `RLIMIT_MEMLOCK` in bytes; `None` is unlimited.
    memlock_hard: Option<u64>,
}

use crate::contract::{CAP_IPC_LOCK, CAP_SYS_RESOURCE};

impl HostLimits {
    fn of_dockerd(pid: u32) -> util::Result<HostLimits> {
        let status = fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("read /proc/{pid}/status (dockerd)"))?;
        let caps = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
                .with_context(|| format!("no {key} in /proc/{pid}/status"))
        };
        let limits = fs::read_to_string(format!("/proc/{pid}/limits"))
            .with_context(|| format!("read /proc/{pid}/limits (dockerd)"))?;
        let hard = limits
            .lines()
            .find(|l| l.starts_with("Max locked memory"))
            .and_then(|l| l.split_whitespace().nth(4))
            .with_context(|| format!("no `Max locked memory` in /proc/{pid}/limits"))?;
        let last_cap = fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(40);
        Ok(HostLimits {
            pid,
            bounding: caps("CapBnd:")?,
            effective: caps("CapEff:")?,
            last_cap,
            memlock_hard: hard.parse().ok(),
        })
    }

    fn has(&self, set: u64, cap: u32) -> bool {
        set & (1 << cap) != 0
    }

    /// Why this host's engine will refuse a container with these flags,
    /// or `None` if it can start it.
    fn refuses(&self, flags: &[String]) -> Option<String> {
        let mut reasons = Vec::new();
        for flag in flags {
            let flag = flag.trim_start_matches("--");
            if flag == "privileged" {
                let missing: Vec<u32> = (0..=self.last_cap)
                    .filter(|&c| !self.has(self.bounding, c))
                    .collect();
                if !missing.is_empty() {
                    reasons.push(format!(
                        "--privileged needs every capability, and dockerd (pid {}) lacks {}",
                        self.pid,
                        missing
                            .iter()
                            .map(|c| cap_name(*c))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            } else if let Some(cap) = flag.strip_prefix("cap-add=") {
                let number = match cap {
                    "IPC_LOCK" => CAP_IPC_LOCK,
                    "SYS_RESOURCE" => CAP_SYS_RESOURCE,
                    _ => continue,
                };
                if !self.has(self.bounding, number) {
                    reasons.push(format!(
                        "--cap-add={cap}: dockerd (pid {}) lacks CAP_{cap} in its bounding set",
                        self.pid
                    ));
                }
            } else if let Some(value) = flag
                .strip_prefix("ulimit=memlock=")
                .or_else(|| flag.strip_prefix("ulimit memlock="))
            {
                let hard = value.split(':').nth(1).unwrap_or(value);
                let wanted: Option<u64> = if hard == "-1" {
                    None
                } else {
                    hard.parse().ok()
                };
                let above = match (wanted, self.memlock_hard) {
                    (_, None) => false,
                    (None, Some(_)) => true,
                    (Some(w), Some(h)) => w > h,
                };
                if above && !self.has(self.effective, CAP_SYS_RESOURCE) {
                    reasons.push(format!(
                        "memlock={value} is above dockerd's hard RLIMIT_MEMLOCK ({} bytes), and dockerd (pid {}) lacks CAP_SYS_RESOURCE to raise it",
                        self.memlock_hard.unwrap_or(0),
                        self.pid
                    ));
                }
            }
        }
        // `--ulimit memlock=...` is two words in the table.
        let joined = flags.join(" ");
        if let Some(value) = joined.split("--ulimit memlock=").nth(1) {
            let value = value.split_whitespace().next().unwrap_or("");
            let as_one = vec![format!("--ulimit=memlock={value}")];
            if let Some(why) = self.refuses(&as_one) {
                reasons.push(why);
            }
        }
        if reasons.is_empty() {
            None
        } else {
            Some(reasons.join("; "))
        }
    }
}

fn cap_name(cap: u32) -> String {
    match cap {
        CAP_IPC_LOCK => "CAP_IPC_LOCK".into(),
        CAP_SYS_RESOURCE => "CAP_SYS_RESOURCE".into(),
        n => format!("capability {n}"),
    }
}

/// The Docker engine: the daemon (started here or found running) and the
/// client.
struct Engine {
    docker: PathBuf,
    /// The daemon this run started (its pid from `/var/run/docker.pid`),
    /// stopped on drop.
    started: Option<(u32, Child)>,
}

const PID_FILE: &str = "/var/run/docker.pid";

impl Engine {
    /// Finds a running engine, or starts `dockerd` (as root).
    fn start() -> util::Result<Engine> {
        // Debian's client, whatever else is on PATH.
        let docker = ["/usr/bin/docker"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from("docker"));
        let mut engine = Engine {
            docker,
            started: None,
        };
        if engine.running() {
            eprintln!("xtask docker: using the running Docker engine");
            return Ok(engine);
        }
        ensure!(
            util::is_root(),
            "no Docker engine is running, and starting one needs root. Start it with:\n    sudo dockerd &"
        );
        let log_path = util::root().join("target").join("docker-dockerd.log");
        let log = fs::File::create(&log_path)
            .with_context(|| format!("create {}", log_path.display()))?;
        let mut cmd = Command::new("dockerd");
        cmd.stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        eprintln!("$ {} (log: {})", util::describe(&cmd), log_path.display());
        let mut child = cmd.spawn().context("could not start `dockerd`")?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if engine.running() {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                let tail = fs::read_to_string(&log_path).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(15).collect();
                bail!(
                    "dockerd exited ({status}) before it answered; run `dockerd` by hand to see why. Last lines of {}:\n{}",
                    log_path.display(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "dockerd did not answer within 60 s (log: {})",
                    log_path.display()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let pid = read_pid_file().unwrap_or(child.id());
        eprintln!("xtask docker: started dockerd (pid {pid})");
        engine.started = Some((pid, child));
        Ok(engine)
    }

    fn docker(&self) -> Command {
        let mut cmd = Command::new(&self.docker);
        cmd.env("DOCKER_BUILDKIT", "0");
        cmd
    }

    /// Whether a daemon answers on the socket.
    fn running(&self) -> bool {
        self.docker()
            .args(["version", "--format", "{{.Server.Version}}"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// The daemon's pid (`/var/run/docker.pid`).
    fn pid(&self) -> util::Result<u32> {
        read_pid_file().with_context(|| format!("no pid in {PID_FILE}"))
    }

    /// `FROM scratch` with `binary` as `/<name>`, its entry point; with
    /// `file_cap`, the binary carries `cap_ipc_lock+ep` in the build
    /// context (the classic builder's `COPY` does not keep it: see
    /// docs/containers.md).
    fn build_image(
        &self,
        work: &Path,
        tag: &str,
        binary: &Path,
        name: &str,
        file_cap: bool,
    ) -> util::Result {
        let context = work.join(tag.replace('/', "-"));
        fs::create_dir_all(&context).with_context(|| format!("mkdir {}", context.display()))?;
        let copy = context.join(name);
        fs::copy(binary, &copy).with_context(|| format!("copy {}", binary.display()))?;
        if file_cap {
            util::run(Command::new("setcap").arg("cap_ipc_lock+ep").arg(&copy))?;
        }
        fs::write(
            context.join("Dockerfile"),
            format!("FROM scratch\nCOPY {name} /{name}\nENTRYPOINT [\"/{name}\"]\n"),
        )
        .context("write Dockerfile")?;
        util::run(
            self.docker()
                .args(["build", "--quiet", "--pull=false", "-t", tag])
                .arg(&context)
                .stdout(Stdio::null()),
        )
    }

    /// The doctor with `cap_ipc_lock+ep`, as an image that keeps it: a tar
    /// made with the xattr (`tar --xattrs`), loaded with `docker import`.
    fn import_file_cap_image(&self, work: &Path, binary: &Path) -> util::Result {
        let root = work.join("file-cap-root");
        fs::create_dir_all(&root).with_context(|| format!("mkdir {}", root.display()))?;
        let copy = root.join("doctor");
        fs::copy(binary, &copy).with_context(|| format!("copy {}", binary.display()))?;
        util::run(Command::new("setcap").arg("cap_ipc_lock+ep").arg(&copy))?;
        let tar = work.join("file-cap.tar");
        util::run(
            Command::new("tar")
                .args(["--xattrs", "--xattrs-include=security.capability", "-C"])
                .arg(&root)
                .arg("-cf")
                .arg(&tar)
                .arg("doctor"),
        )?;
        util::run(
            self.docker()
                .args(["import", "-c", "ENTRYPOINT [\"/doctor\"]"])
                .arg(&tar)
                .arg(IMAGE_FILE_CAP)
                .stdout(Stdio::null()),
        )
    }

    /// `docker run --rm` of one cell, and what came of it.
    fn run_cell(&self, cell: &Cell) -> util::Result<Observed> {
        let (image, args): (&str, &[&str]) = match cell.name.as_str() {
            "nonroot-file-cap" | "nonroot-file-cap-no-add" => (IMAGE_FILE_CAP, &["--json"]),
            "nonroot-file-cap-build" => (IMAGE_FILE_CAP_BUILD, &["--json"]),
            name if name.starts_with("swap-daemon") => (IMAGE_SWAP_DAEMON, &[]),
            _ => (IMAGE_DOCTOR, &["--json"]),
        };
        let mut cmd = self.docker();
        cmd.args(["run", "--rm", "--pull=never"])
            .args(&cell.flags)
            .arg(image)
            .args(args);
        let out = capture(&mut cmd)?;
        let mut observed = observe(&out);
        // `--memory N`: the doctor must have read N as its cgroup's limit.
        if let Some(value) = cell
            .flags
            .iter()
            .position(|f| f == "--memory")
            .and_then(|i| cell.flags.get(i + 1))
        {
            let wanted = parse_size(value)?;
            if observed.cgroup_limit != Some(wanted) {
                observed.details.push_str(&format!(
                    "; the doctor read the cgroup limit {:?}, not --memory {value} ({wanted} bytes)",
                    observed.cgroup_limit
                ));
                observed.outcome = "unexpected";
            }
        }
        Ok(observed)
    }

    /// The static doctor copied into a running container (`docker cp`) and
    /// run there (`docker exec`), as docs/doctor.md tells an operator.
    fn run_docker_cp(&self, cell: &Cell, doctor: &Path) -> util::Result<Observed> {
        self.remove_container(CP_CONTAINER);
        let mut start = self.docker();
        start
            .args(["run", "-d", "--rm", "--pull=never", "--name", CP_CONTAINER])
            .args(&cell.flags)
            .args([IMAGE_BUSYBOX, "sleep", "60"])
            .stdout(Stdio::null());
        util::run(&mut start)?;
        let result = util::run(
            self.docker()
                .arg("cp")
                .arg(doctor)
                .arg(format!("{CP_CONTAINER}:/doctor")),
        )
        .and_then(|()| {
            capture(
                self.docker()
                    .args(["exec", CP_CONTAINER, "/doctor", "--json"]),
            )
        });
        self.remove_container(CP_CONTAINER);
        Ok(observe(&result?))
    }

    /// `docker rm -f`, quietly; for clean-up.
    fn remove_container(&self, name: &str) {
        self.quietly(&["rm", "-f", name]);
    }

    /// Runs a docker command for clean-up: its output and its failure do
    /// not matter (the thing may not exist).
    fn quietly(&self, args: &[&str]) {
        let _ = self
            .docker()
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// The Compose file of docs/containers.md, its image replaced by the doctor's, run
    /// with `docker-compose run`.
    fn run_compose(&self, work: &Path) -> util::Result<Observed> {
        let yaml = readme_compose()?;
        let image_line = yaml
            .lines()
            .find(|l| l.trim_start().starts_with("image:"))
            .context("the Compose file of docs/containers.md names no image")?;
        let indent = &image_line[..image_line.len() - image_line.trim_start().len()];
        let yaml = yaml.replace(image_line, &format!("{indent}image: {IMAGE_DOCTOR}"));
        let file = work.join("docker-compose.yml");
        fs::write(&file, &yaml).with_context(|| format!("write {}", file.display()))?;
        let service = yaml
            .lines()
            .skip_while(|l| !l.starts_with("services:"))
            .nth(1)
            .map(|l| l.trim().trim_end_matches(':').to_string())
            .context("the Compose file of docs/containers.md has no service")?;
        let mut cmd = Command::new("docker-compose");
        cmd.arg("-f").arg(&file).args([
            "-p",
            COMPOSE_PROJECT,
            "run",
            "--rm",
            "-T",
            &service,
            "--json",
        ]);
        let out = capture(&mut cmd);
        let _ = Command::new("docker-compose")
            .arg("-f")
            .arg(&file)
            .args(["-p", COMPOSE_PROJECT, "down"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        Ok(observe(&out?))
    }

    fn cleanup_images(&self) {
        for image in [
            IMAGE_DOCTOR,
            IMAGE_FILE_CAP,
            IMAGE_FILE_CAP_BUILD,
            IMAGE_SWAP_DAEMON,
            IMAGE_BUSYBOX,
        ] {
            self.quietly(&["rmi", "-f", image]);
        }
    }
}

impl Drop for Engine {
    /// Stops the daemon this run started: SIGTERM to the pid in
    /// `/var/run/docker.pid`, then waits for it (SIGKILL after 20 s).
    fn drop(&mut self) {
        let Some((pid, mut child)) = self.started.take() else {
            return;
        };
        eprintln!("xtask docker: stopping the dockerd it started (pid {pid})");
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            if pid == child.id() && matches!(child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if Path::new(&format!("/proc/{pid}/status")).exists()
            && child.try_wait().ok().flatten().is_none()
        {
            eprintln!("xtask docker: dockerd (pid {pid}) did not stop in 20 s: SIGKILL");
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        let _ = child.wait();
    }
}

/// A docker size: a number with an optional `k`, `m` or `g` (binary).
fn parse_size(value: &str) -> util::Result<u64> {
    let lower = value.to_ascii_lowercase();
    let (digits, shift) = match lower.strip_suffix(['k', 'm', 'g']) {
        Some(d) => (
            d,
            match lower.chars().last() {
                Some('k') => 10,
                Some('m') => 20,
                _ => 30,
            },
        ),
        None => (lower.as_str(), 0),
    };
    digits
        .parse::<u64>()
        .map(|n| n << shift)
        .with_context(|| format!("not a size: {value}"))
}

fn read_pid_file() -> Option<u32> {
    fs::read_to_string(PID_FILE).ok()?.trim().parse().ok()
}

/// A finished command's exit status and its output, stdout and stderr.
struct Captured {
    success: bool,
    stdout: String,
    stderr: String,
}

/// Prints the command and runs it, capturing its output.
fn capture(cmd: &mut Command) -> util::Result<Captured> {
    eprintln!("$ {}", util::describe(cmd));
    let out = cmd
        .output()
        .with_context(|| format!("could not start `{}`", util::describe(cmd)))?;
    Ok(Captured {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// The outcome a run shows: the engine's refusal, an `execve` refused in
/// the container, the doctor's JSON, or the swap daemon's `mlockall:` line.
fn observe(out: &Captured) -> Observed {
    let all = format!("{}{}", out.stdout, out.stderr);
    for needle in ["error setting rlimit", "unable to apply caps"] {
        if let Some(at) = all.find(needle) {
            let message = all[at..].lines().next().unwrap_or(needle);
            let message = message.split(": unknown").next().unwrap_or(message);
            return Observed {
                outcome: "refused-by-host",
                details: format!("the engine: {message}"),
                cgroup_limit: None,
            };
        }
    }
    if let Some(line) = all
        .lines()
        .find(|l| l.contains("exec /") && l.contains("operation not permitted"))
    {
        return Observed {
            outcome: "EPERM",
            details: format!(
                "the kernel refused execve: `{}`: the binary's file capability is outside the container's bounding set",
                line.trim()
            ),
            cgroup_limit: None,
        };
    }
    if let Some(json) = out.stdout.lines().find(|l| l.starts_with('{')) {
        if let Ok(report) = serde_json::from_str::<Value>(json) {
            return observe_doctor(&report);
        }
    }
    if let Some(line) = out.stdout.lines().find(|l| l.starts_with("mlockall: ")) {
        let outcome = if line == "mlockall: done" {
            "locked"
        } else if line.contains("(ENOMEM)") {
            "ENOMEM"
        } else if line.contains("(EPERM)") {
            "EPERM"
        } else {
            "unexpected"
        };
        let flusher = out
            .stdout
            .lines()
            .find(|l| l.starts_with("PR_SET_IO_FLUSHER: "))
            .map(|l| l.find(')').map_or(l, |end| &l[..=end]))
            .unwrap_or("");
        return Observed {
            outcome,
            details: format!("swap_daemon: `{line}`, `{flusher}`"),
            cgroup_limit: None,
        };
    }
    Observed {
        outcome: "unexpected",
        details: format!(
            "exit {}, output: {}",
            if out.success { "0" } else { "nonzero" },
            all.trim()
        ),
        cgroup_limit: None,
    }
}

/// The outcome and the figures that explain it, from the doctor's JSON.
fn observe_doctor(r: &Value) -> Observed {
    let size = |v: &Value| match v.as_u64() {
        Some(n) if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        Some(n) if n >= 1024 => format!("{} KiB", n / 1024),
        Some(n) => format!("{n} B"),
        None => "unlimited".into(),
    };
    let cap = match r["capabilities"]["cap_ipc_lock"].as_bool() {
        Some(true) => "yes",
        Some(false) => "no",
        None => "unknown",
    };
    let mut details = format!(
        "CAP_IPC_LOCK {cap}, RLIMIT_MEMLOCK {}, VmSize {}",
        size(&r["limits"]["memlock_soft"]),
        size(&r["memory"]["vm_size"]),
    );
    if let Some(limit) = r["cgroup"]["limit"].as_u64() {
        details.push_str(&format!(", cgroup limit {}", size(&Value::from(limit))));
    }
    let lock = &r["lock"];
    let outcome = if lock["locked"] == true {
        details.push_str(&format!(", VmLck {}", size(&lock["vm_lck_after"])));
        "locked"
    } else {
        match lock["error"].as_str() {
            Some("ENOMEM") => "ENOMEM",
            Some("EPERM") => "EPERM",
            _ => "unexpected",
        }
    };
    Observed {
        outcome,
        details,
        cgroup_limit: r["cgroup"]["limit"].as_u64(),
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_table, HostLimits, CAP_SYS_RESOURCE};

    fn words(flags: &str) -> Vec<String> {
        flags.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn a_host_without_cap_sys_resource_refuses_what_needs_it() {
        let all: u64 = (1 << 41) - 1;
        let without = all & !(1 << CAP_SYS_RESOURCE);
        let host = HostLimits {
            pid: 1,
            bounding: without,
            effective: without,
            last_cap: 40,
            memlock_hard: Some(8 << 20),
        };
        for refused in [
            "--ulimit memlock=-1:-1",
            "--ulimit memlock=16777216:16777216",
            "--privileged",
            "--cap-add=IPC_LOCK --cap-add=SYS_RESOURCE",
            "--ulimit=memlock=-1:-1",
        ] {
            assert!(host.refuses(&words(refused)).is_some(), "{refused}");
        }
        for allowed in [
            "",
            "--ulimit memlock=65536:65536 --cap-add=IPC_LOCK",
            "--ulimit memlock=8388608:8388608",
            "--user 65534 --memory 8m",
        ] {
            assert_eq!(host.refuses(&words(allowed)), None, "{allowed}");
        }
        let root = HostLimits {
            bounding: all,
            effective: all,
            ..host
        };
        for flags in [
            "--ulimit memlock=-1:-1",
            "--privileged",
            "--cap-add=SYS_RESOURCE",
        ] {
            assert_eq!(root.refuses(&words(flags)), None, "{flags}");
        }
    }

    #[test]
    fn the_table_parses_into_cells_with_their_claims() {
        let text = "intro\n\n| cell | `docker run` flags | outcome |\n|---|---|---|\n\
| `default` | none | `locked` (not `EPERM`) |\n\
| `unlimited` | `--ulimit memlock=-1:-1` (unlimited) | `locked`; `refused-by-host` where root lacks it |\n\nafter\n";
        let cells = parse_table(text).unwrap();
        assert_eq!(cells.len(), 2);
        assert_eq!(cells[0].name, "default");
        assert!(cells[0].flags.is_empty());
        assert_eq!(cells[0].claims, ["locked", "EPERM"]);
        assert_eq!(cells[1].flags, ["--ulimit", "memlock=-1:-1"]);
        assert_eq!(cells[1].claims, ["locked", "refused-by-host"]);
    }
}
