//! Building the benches and counting their instructions with callgrind.

use anyhow::{bail, Context as _};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Plan, IMPLS};
use crate::util;

/// Builds the benches in the bench profile and returns their executables
/// by name.
pub(super) fn build() -> util::Result<BTreeMap<String, PathBuf>> {
    let mut cmd = util::cargo();
    cmd.args([
        "bench",
        "--no-run",
        "--message-format=json-render-diagnostics",
        "--package",
        "mlock",
        "--bench",
        "overhead",
        "--bench",
        "onfault",
    ]);
    if util::root().join("benches/status.rs").exists() {
        cmd.args(["--bench", "status"]);
    }
    let out = util::output(&mut cmd)?;
    Ok(util::cargo_executables(&out)
        .into_iter()
        .filter(|built| built.kind == ["bench"])
        .map(|built| (built.name, built.executable))
        .collect())
}

/// User-space instructions per `mlockall(MCL_FUTURE)` + `munlockall()` pair,
/// for each implementation, from two callgrind runs that count only inside
/// the bench's `pair_<impl>` function and what it calls (PLT, libc): the
/// difference of the totals over the difference of the pair counts.
pub(super) fn count_instructions(
    exe: &Path,
    plan: &Plan,
    out_dir: &Path,
) -> util::Result<Vec<(String, f64)>> {
    util::ensure_debian_packages(&["valgrind"])?;
    let mut counts = Vec::new();
    for name in IMPLS {
        let mut totals = [0u64; 2];
        for (total, n) in totals.iter_mut().zip([plan.calls.0, plan.calls.1]) {
            let file = out_dir.join(format!("callgrind.{name}.{n}"));
            util::run(
                Command::new("valgrind")
                    .args(["-q", "--tool=callgrind"])
                    .arg(format!("--toggle-collect=*::pair_{name}"))
                    .arg(format!("--callgrind-out-file={}", file.display()))
                    .arg(exe)
                    .args(["--calls", name, &n.to_string()]),
            )?;
            *total = callgrind_total(&file)?;
        }
        let per_pair = (totals[1] as f64 - totals[0] as f64) / (plan.calls.1 - plan.calls.0) as f64;
        if per_pair <= 0.0 {
            bail!(
                "callgrind counted no instructions in pair_{name}: \
                 was it inlined, or renamed in benches/overhead.rs?"
            );
        }
        counts.push((name.to_string(), per_pair));
    }
    Ok(counts)
}

/// The instruction total of a callgrind output file (its `totals:` or
/// `summary:` line).
fn callgrind_total(file: &Path) -> util::Result<u64> {
    let text = fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no instruction total in {}", file.display()))
}

/// Instructions per `Status::parse` of this machine's `/proc/self/status`,
/// counted by callgrind inside the status bench's `parse_once` over two
/// runs, as for the call pair; and the size of the text parsed.
pub(super) fn count_parse_instructions(
    exe: &Path,
    plan: &Plan,
    out_dir: &Path,
) -> util::Result<(f64, u64)> {
    let mut totals = [0u64; 2];
    let mut bytes = 0;
    for (total, n) in totals.iter_mut().zip([plan.calls.0, plan.calls.1]) {
        let file = out_dir.join(format!("callgrind.parse.{n}"));
        let out = util::output(
            Command::new("valgrind")
                .args(["-q", "--tool=callgrind", "--toggle-collect=*::parse_once"])
                .arg(format!("--callgrind-out-file={}", file.display()))
                .arg(exe)
                .args(["--parse-calls", &n.to_string()]),
        )?;
        bytes = out.trim().parse().unwrap_or(0);
        *total = callgrind_total(&file)?;
    }
    let per_parse = (totals[1] as f64 - totals[0] as f64) / (plan.calls.1 - plan.calls.0) as f64;
    if per_parse <= 0.0 {
        bail!("callgrind counted no instructions in parse_once");
    }
    Ok((per_parse, bytes))
}
