//! The Docker engine: the daemon (found running, or started here and
//! shut down at the end), the images, and the runs of one cell each.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};

use super::compose;
use super::observe::{observe, parse_size, Captured, Observed};
use super::table::Cell;
use crate::util;

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

/// The Docker engine: the daemon (started here or found running) and the
/// client.
pub(super) struct Engine {
    docker: PathBuf,
    /// The daemon this run started (its pid from `/var/run/docker.pid`),
    /// shut down on drop.
    started: Option<(u32, Child)>,
}

const PID_FILE: &str = "/var/run/docker.pid";

impl Engine {
    /// Finds a running engine, or starts `dockerd` (as root).
    pub(super) fn start() -> util::Result<Engine> {
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
    pub(super) fn pid(&self) -> util::Result<u32> {
        read_pid_file().with_context(|| format!("no pid in {PID_FILE}"))
    }

    /// Builds every image the cells run: the doctor, the swap daemon, the
    /// doctor with a file capability (built and imported), and busybox.
    pub(super) fn build_images(
        &self,
        work: &Path,
        doctor: &Path,
        swap_daemon: &Path,
    ) -> util::Result {
        self.build_image(work, IMAGE_DOCTOR, doctor, "doctor", false)?;
        self.build_image(work, IMAGE_SWAP_DAEMON, swap_daemon, "swap_daemon", false)?;
        self.build_image(work, IMAGE_FILE_CAP_BUILD, doctor, "doctor", true)?;
        self.import_file_cap_image(work, doctor)?;
        self.build_image(work, IMAGE_BUSYBOX, Path::new(BUSYBOX), "busybox", false)
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
    pub(super) fn run_cell(&self, cell: &Cell) -> util::Result<Observed> {
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
    pub(super) fn run_docker_cp(&self, cell: &Cell, doctor: &Path) -> util::Result<Observed> {
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
    pub(super) fn run_compose(&self, work: &Path) -> util::Result<Observed> {
        let compose = compose::from_page()?;
        let file = work.join("docker-compose.yml");
        fs::write(&file, compose.with_image(IMAGE_DOCTOR)?)
            .with_context(|| format!("write {}", file.display()))?;
        let service = &compose.service;
        let mut cmd = Command::new("docker-compose");
        cmd.arg("-f").arg(&file).args([
            "-p",
            COMPOSE_PROJECT,
            "run",
            "--rm",
            "-T",
            service,
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

    pub(super) fn cleanup_images(&self) {
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
    /// Shuts down the daemon this run started: SIGTERM to the pid in
    /// `/var/run/docker.pid`, then waits for it (SIGKILL after 20 s).
    fn drop(&mut self) {
        let Some((pid, mut child)) = self.started.take() else {
            return;
        };
        eprintln!("xtask docker: shutting down the dockerd it started (pid {pid})");
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
            eprintln!("xtask docker: dockerd (pid {pid}) did not exit in 20 s: SIGKILL");
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        let _ = child.wait();
    }
}

fn read_pid_file() -> Option<u32> {
    fs::read_to_string(PID_FILE).ok()?.trim().parse().ok()
}

/// Prints the command and runs it, capturing its output.
pub(super) fn capture(cmd: &mut Command) -> util::Result<Captured> {
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
