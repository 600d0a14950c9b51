//! `cargo xtask dist`: the doctor as an operator ships it. Static binaries
//! for `x86_64-unknown-linux-musl`, `aarch64-unknown-linux-musl` and
//! `riscv64gc-unknown-linux-gnu` (`+crt-static`), built with the `dist`
//! profile (release, stripped), copied to `target/doctor/doctor-<arch>`, one
//! line each: `dist doctor <triple> <bytes> <path>`. Copy one into a
//! running container with `docker cp` (docs/doctor.md).

use anyhow::{bail, Context as _};
use std::path::PathBuf;

use crate::arch::{self, Arch, ARCHES};
use crate::util;

const USAGE: &str = "usage: cargo xtask dist [--target T]...

Builds the static, stripped doctor for each arch (default: all seven) into
target/doctor/ and prints its size.";

/// Entry point for `cargo xtask dist`.
pub fn main(args: &mut lexopt::Parser) -> util::Result {
    use lexopt::prelude::*;
    // `--target T`, repeated; none means all seven.
    let mut only: Vec<&Arch> = Vec::new();
    while let Some(arg) = args.next()? {
        match arg {
            Long("target") => {
                let t = args.value()?.string()?;
                let Some(arch) = arch::by_triple(&t) else {
                    let known: Vec<&str> = ARCHES.iter().map(|a| a.triple).collect();
                    bail!("unknown target `{t}`; known: {}", known.join(", "));
                };
                only.push(arch);
            }
            Short('h') | Long("help") => {
                println!("{USAGE}");
                return Ok(());
            }
            arg => return Err(util::unexpected(arg, USAGE)),
        }
    }
    if only.is_empty() {
        only = ARCHES.iter().collect();
    }
    // Not target/dist: that is cargo's own directory for the profile.
    let out = util::root().join("target").join("doctor");
    std::fs::create_dir_all(&out).with_context(|| format!("mkdir {}", out.display()))?;
    for arch in only {
        let triple = arch.triple;
        let built = build(arch, &["doctor"])?;
        let dest = out.join(format!("doctor-{}", arch.name));
        std::fs::copy(&built[0], &dest)
            .with_context(|| format!("copy {} to {}", built[0].display(), dest.display()))?;
        let bytes = std::fs::metadata(&dest).map(|m| m.len()).unwrap_or(0);
        let shown = dest.strip_prefix(util::root()).unwrap_or(&dest);
        println!("dist doctor {triple} {bytes} {}", shown.display());
    }
    Ok(())
}

/// Builds `examples` static and stripped for `arch` (the `dist` profile),
/// installing the target and the packages its linker needs; returns their
/// paths, in order.
pub fn build(arch: &Arch, examples: &[&str]) -> util::Result<Vec<PathBuf>> {
    let triple = arch.triple;
    util::ensure_rust_target(triple)?;
    util::ensure_debian_packages(&arch.packages())?;
    let mut cmd = util::cargo();
    // Linker and rustflags; the runner does not matter for a build.
    cmd.envs(arch.build_env())
        .args(["build", "--profile", "dist", "--target", triple]);
    for example in examples {
        cmd.args(["--example", example]);
    }
    util::run(&mut cmd)?;
    let dir = util::root()
        .join("target")
        .join(triple)
        .join("dist")
        .join("examples");
    Ok(examples.iter().map(|e| dir.join(e)).collect())
}
