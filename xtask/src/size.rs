//! `cargo xtask size`: how big the static `#![no_std]` `/init` example is,
//! against the same work in C and in Rust with std.
//!
//! Builds, stripped and statically linked:
//! - `static_init` (`examples/static_init`, its own package) for every
//!   arch, release, non-PIE (`-C relocation-model=static`);
//! - `c-musl-baseline` (`xtask/size/baseline.c`) with
//!   `musl-gcc -static -Os -s`;
//! - `rust-std-baseline` (`xtask/size/baseline.rs`) with rustc for
//!   `x86_64-unknown-linux-musl`: `opt-level=z`, `panic=abort`, LTO, one
//!   codegen unit, stripped, the settings `static_init` is built with.
//!
//! Prints `size <name> <target> <bytes>` for each, then the ratios and the
//! goals (`static_init` at most 8 KiB on each arch, under half the C
//! baseline). Then it runs each binary once (the foreign arches under QEMU
//! user mode) and checks its line. It fails only when a binary does not
//! build or does not run: size is a goal, reported, never asserted.

use anyhow::{anyhow, Context as _};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::arch::{self, ARCHES};
use crate::util;

/// One built binary.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// `static_init`, `c-musl-baseline` or `rust-std-baseline`.
    pub name: &'static str,
    /// The Rust target triple it is built for.
    pub target: &'static str,
    /// Its size on disk, stripped.
    pub bytes: u64,
    /// Where it is.
    pub path: PathBuf,
}

/// The host target of the baselines.
const HOST_MUSL: &str = arch::X86_64.triple;

/// What the machine needs besides each arch's linker and QEMU user mode
/// (see [`crate::arch`]): musl-gcc for the C baseline.
const PACKAGES: &[&str] = &["musl-tools"];

/// The size goals: reported, not asserted.
const GOAL_BYTES: u64 = 8 * 1024;

/// `cargo xtask size`.
pub fn main(args: &mut lexopt::Parser) -> util::Result {
    use lexopt::prelude::*;
    let usage = format!("usage: cargo xtask size\n\n{SUMMARY}");
    if let Some(arg) = args.next()? {
        return match arg {
            Short('h') | Long("help") => {
                println!("{usage}");
                Ok(())
            }
            arg => Err(util::unexpected(arg, &usage)),
        };
    }
    report().map(drop)
}

const SUMMARY: &str =
    "Builds static_init (all seven arches), a C baseline (musl-gcc -static -Os -s)
and a Rust-with-std baseline (x86_64 musl, opt-level=z, panic=abort), all
stripped; prints `size <name> <target> <bytes>` and the ratios; runs each
binary once. Fails only if a binary does not build or does not run.";

/// The step of `cargo xtask test`.
pub fn run_all() -> util::Result {
    report().map(drop)
}

/// Builds every artifact, prints the size lines, ratios and goals, runs
/// each binary once, and returns the artifacts.
///
/// # Errors
/// When a tool cannot be installed, a binary does not build, or a binary
/// does not run and print its `VmLck` line.
pub fn report() -> util::Result<Vec<Artifact>> {
    let mut packages = PACKAGES.to_vec();
    for pkg in ARCHES.iter().flat_map(arch::Arch::packages) {
        if !packages.contains(&pkg) {
            packages.push(pkg);
        }
    }
    util::ensure_debian_packages(&packages)?;
    let out = out_dir();
    std::fs::create_dir_all(&out).with_context(|| format!("create {}", out.display()))?;

    let mut artifacts = Vec::new();
    for arch in ARCHES {
        util::ensure_rust_target(arch.triple)?;
        let path = build_static_init(arch.triple, &arch.size_env())?;
        artifacts.push(artifact("static_init", arch.triple, path)?);
    }
    artifacts.push(artifact("c-musl-baseline", HOST_MUSL, build_c(&out)?)?);
    artifacts.push(artifact(
        "rust-std-baseline",
        HOST_MUSL,
        build_rust_std(&out)?,
    )?);

    for a in &artifacts {
        println!("size {} {} {}", a.name, a.target, a.bytes);
    }
    print_ratios(&artifacts);

    for a in &artifacts {
        let line = run(a)?;
        println!("run {} {}: {line}", a.name, a.target);
    }
    Ok(artifacts)
}

/// Where the baselines and `static_init`'s target directory go.
fn out_dir() -> PathBuf {
    util::root().join("target").join("size")
}

/// Builds the release `static_init` for `target` with cargo's `env`
/// (linker, rustflags: [`arch::Arch::size_env`]), in `target/size`;
/// returns the binary's path. Stripping is in the package's release
/// profile.
pub fn build_static_init(target: &str, env: &[(String, String)]) -> util::Result<PathBuf> {
    let manifest = util::root()
        .join("examples")
        .join("static_init")
        .join("Cargo.toml");
    let target_dir = out_dir().join("static_init");
    util::run(
        util::cargo()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("CARGO_TARGET_DIR", &target_dir)
            .args(["build", "--release", "--target", target])
            .arg("--manifest-path")
            .arg(&manifest),
    )?;
    Ok(target_dir.join(target).join("release").join("static_init"))
}

/// `musl-gcc -static -Os -s xtask/size/baseline.c`.
fn build_c(out: &Path) -> util::Result<PathBuf> {
    let source = util::root().join("xtask").join("size").join("baseline.c");
    let binary = out.join("c-musl-baseline");
    util::run(
        Command::new("musl-gcc")
            .args(["-static", "-Os", "-s", "-o"])
            .arg(&binary)
            .arg(&source),
    )?;
    Ok(binary)
}

/// `rustc` on `xtask/size/baseline.rs` for x86_64 musl.
fn build_rust_std(out: &Path) -> util::Result<PathBuf> {
    util::ensure_rust_target(HOST_MUSL)?;
    let source = util::root().join("xtask").join("size").join("baseline.rs");
    let binary = out.join("rust-std-baseline");
    util::run(
        Command::new("rustc")
            .args(["--edition", "2021", "--target", HOST_MUSL])
            .args(["-C", "opt-level=z", "-C", "panic=abort", "-C", "lto"])
            .args(["-C", "codegen-units=1", "-C", "strip=symbols"])
            .args(["-C", "linker=rust-lld", "-o"])
            .arg(&binary)
            .arg(&source),
    )?;
    Ok(binary)
}

fn artifact(name: &'static str, target: &'static str, path: PathBuf) -> util::Result<Artifact> {
    let bytes = std::fs::metadata(&path)
        .with_context(|| format!("{name} for {target} was not built at {}", path.display()))?
        .len();
    Ok(Artifact {
        name,
        target,
        bytes,
        path,
    })
}

/// The ratios of `static_init` on x86_64 to the baselines, and the goals:
/// at most 8 KiB on every arch, under half the C baseline.
fn print_ratios(artifacts: &[Artifact]) {
    let find = |name: &str| {
        artifacts
            .iter()
            .find(|a| a.name == name && a.target == HOST_MUSL)
            .map(|a| a.bytes)
    };
    let (Some(ours), Some(c), Some(std)) = (
        find("static_init"),
        find("c-musl-baseline"),
        find("rust-std-baseline"),
    ) else {
        return;
    };
    let ratio = |base: u64| ours as f64 / base as f64;
    println!(
        "ratio static_init/c-musl-baseline {HOST_MUSL} {:.3}",
        ratio(c)
    );
    println!(
        "ratio static_init/rust-std-baseline {HOST_MUSL} {:.4}",
        ratio(std)
    );
    let verdict = |met: bool| if met { "met" } else { "NOT met" };
    for arch in ARCHES {
        let Some(bytes) = artifacts
            .iter()
            .find(|a| a.name == "static_init" && a.target == arch.triple)
            .map(|a| a.bytes)
        else {
            continue;
        };
        println!(
            "goal static_init <= {GOAL_BYTES} bytes on {}: {} ({bytes} bytes, {} to spare)",
            arch.triple,
            verdict(bytes <= GOAL_BYTES),
            GOAL_BYTES as i64 - bytes as i64
        );
    }
    println!(
        "goal static_init < half of c-musl-baseline: {} ({ours} < {})",
        verdict(2 * ours < c),
        c / 2
    );
}

/// Runs one binary (under QEMU for a foreign arch) and returns its line;
/// fails unless it exits 0 and prints the line its kind prints.
fn run(a: &Artifact) -> util::Result<String> {
    // The binaries are static: the emulator needs no `-L` prefix.
    let mut cmd = match arch::by_triple(a.target).and_then(|arch| arch.qemu_user) {
        Some(qemu) => {
            let mut cmd = Command::new(qemu);
            cmd.arg(&a.path);
            cmd
        }
        None => Command::new(&a.path),
    };
    let stdout = util::output(&mut cmd)?;
    let line = stdout.lines().next().unwrap_or_default().trim().to_string();
    let expected = if a.name == "static_init" {
        "mlock-init: locked VmLck="
    } else {
        "VmLck:"
    };
    if line.starts_with(expected) {
        Ok(line)
    } else {
        Err(anyhow!(
            "{} for {} ran, but printed {stdout:?} instead of a line starting {expected:?}{}",
            a.name,
            a.target,
            if util::is_root() {
                ""
            } else {
                " (locking needs root or CAP_IPC_LOCK: run `cargo xtask size` as root)"
            }
        ))
    }
}
