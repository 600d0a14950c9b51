//! `cargo xtask docker`: the container table the README links
//! (docs/containers.md), run on a real Docker engine.
//!
//! It installs Debian's `docker.io` and `docker-compose` (and `libcap2-bin`
//! for `setcap`) when they are missing, starts `dockerd` when none is
//! running (and shuts down the one it started, by `/var/run/docker.pid`), and
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
//!
//! Here: the run over the cells and the verdicts; `table` reads the page,
//! `compose` its Compose file, `engine` drives Docker, `host` says what
//! this host's engine refuses, `observe` reads what a run showed.

mod compose;
mod engine;
mod host;
mod observe;
mod table;

use std::fs;
use std::time::Instant;

use anyhow::{ensure, Context as _};

use crate::util::{self, Tally};
use engine::Engine;
use host::HostLimits;
use table::{readme_cells, Cell, TABLE_PAGE};

const USAGE: &str = "usage: cargo xtask docker

Runs the container table (docs/containers.md) on a real Docker engine (installed and
started if needed) and compares each cell with the table's claim.";

/// The arch whose static binaries the images are built around.
const ARCH: &crate::arch::Arch = &crate::arch::X86_64;

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

fn run_cells(engine: &Engine, cells: &[Cell]) -> util::Result<Tally> {
    let built = crate::dist::build(ARCH, &["doctor", "swap_daemon"])?;
    let work = util::root().join("target").join("docker");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).with_context(|| format!("mkdir {}", work.display()))?;
    engine.build_images(&work, &built[0], &built[1])?;
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
    if cell.name == "compose" {
        Ok(compose::from_page()?.flags())
    } else {
        Ok(cell.flags.clone())
    }
}
