//! Secret allocators side by side (`bench-peers/`): this crate's `Pool`
//! and `LockedBuf` against libsodium's `sodium_malloc`, memsec and the
//! `secrets` crate. Builds the program (after installing the system
//! libsodium it links), runs it, reads its machine-readable block and
//! makes the table that both docs/benchmarks.md and docs/secrets.md show.

use anyhow::{bail, ensure, Context as _};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

use crate::util;

/// The Debian packages the program needs to build: the system libsodium
/// and what finds it (the `secrets` crate's build script asks pkg-config).
pub(crate) const PACKAGES: [&str; 2] = ["libsodium-dev", "pkg-config"];

/// The workspace package of the program, and its binary.
const PACKAGE: &str = "mlock-bench-peers";
const BINARY: &str = "bench-peers";

/// The implementations, in the program's order (the crate's `Pool`, the
/// baseline of every ratio, first): id, label in the tables, short name in
/// the figure, whether it is this crate's.
pub(super) const PEERS: [(&str, &str, &str, bool); 6] = [
    (
        "pool",
        "**mlock** `Pool::new(7 MiB)`, `alloc::<32>()`",
        "mlock Pool",
        true,
    ),
    (
        "lockedbuf-anonymous",
        "**mlock** `LockedBuf::<32>`, `Backing::Anonymous`",
        "mlock LockedBuf, anonymous",
        true,
    ),
    (
        "lockedbuf-secretmem",
        "**mlock** `LockedBuf::<32>`, `Backing::SecretMem`",
        "mlock LockedBuf, secretmem",
        true,
    ),
    (
        "libsodium",
        "libsodium `sodium_malloc(32)` / `sodium_free`",
        "libsodium",
        false,
    ),
    (
        "memsec",
        "memsec `malloc::<[u8; 32]>()` / `free`",
        "memsec",
        false,
    ),
    (
        "secrets",
        "`secrets` `SecretBox::<[u8; 32]>::zero()`",
        "secrets",
        false,
    ),
];

/// One implementation's create + drop time: median, fastest and slowest
/// run, in nanoseconds per pair; or why it was not timed.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Time {
    Timed {
        median: f64,
        fastest: f64,
        slowest: f64,
    },
    NotTimed(String),
}

/// How one implementation's count ended.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Count {
    pub(super) alive: u64,
    /// `reached`, `error`, `panic`, `signal` or `failed`.
    pub(super) how: String,
    /// The error's name, the panic's message, the signal's name.
    pub(super) detail: String,
    pub(super) vmlck_kb: Option<u64>,
    pub(super) maps_added: Option<i64>,
}

/// What one run of the program measured.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Secrets {
    pub(super) runs: u64,
    pub(super) pairs: u64,
    pub(super) max: u64,
    pub(super) limit: u64,
    pub(super) uid: u64,
    pub(super) libsodium: String,
    /// In the order of [`PEERS`].
    pub(super) times: Vec<Time>,
    pub(super) counts: Vec<Count>,
}

/// Installs libsodium, builds the program (release profile, this
/// workspace's target directory) and returns its executable.
pub(super) fn build() -> util::Result<PathBuf> {
    util::ensure_debian_packages(&PACKAGES)?;
    let out = util::output(util::cargo().args([
        "build",
        "--release",
        "--package",
        PACKAGE,
        "--bin",
        BINARY,
        "--message-format=json-render-diagnostics",
    ]))?;
    util::cargo_executables(&out)
        .into_iter()
        .find(|b| b.name == BINARY && b.kind == ["bin"])
        .map(|b| b.executable)
        .with_context(|| format!("cargo built {PACKAGE} but reported no {BINARY} executable"))
}

/// Runs the program with `args` and reads what it measured; its output
/// passes through to the terminal.
pub(super) fn run(exe: &PathBuf, args: &[&str]) -> util::Result<Secrets> {
    let out = util::output(Command::new(exe).args(args))?;
    print!("{out}");
    parse(&out)
}

/// Reads the block between `secrets-bench` and `/secrets-bench`.
pub(super) fn parse(out: &str) -> util::Result<Secrets> {
    let mut lines = out
        .lines()
        .skip_while(|l| !l.starts_with("secrets-bench\t"))
        .take_while(|l| *l != "/secrets-bench");
    let head: Vec<&str> = lines
        .next()
        .context("bench-peers printed no `secrets-bench` line")?
        .split('\t')
        .collect();
    let setting = |key: &str| -> util::Result<&str> {
        head.iter()
            .position(|f| *f == key)
            .and_then(|i| head.get(i + 1))
            .copied()
            .with_context(|| format!("no `{key}` in the `secrets-bench` line"))
    };
    let number = |key: &str| -> util::Result<u64> {
        setting(key)?
            .parse()
            .with_context(|| format!("`{key}` in the `secrets-bench` line"))
    };
    let mut secrets = Secrets {
        runs: number("runs")?,
        pairs: number("pairs")?,
        max: number("max")?,
        limit: number("limit")?,
        uid: number("uid")?,
        libsodium: setting("libsodium")?.to_string(),
        times: Vec::new(),
        counts: Vec::new(),
    };
    let mut times = vec![None; PEERS.len()];
    let mut counts = vec![None; PEERS.len()];
    for line in lines {
        let f: Vec<&str> = line.split('\t').collect();
        let index = |id: &str| {
            PEERS
                .iter()
                .position(|p| p.0 == id)
                .with_context(|| format!("bench-peers measured an unknown `{id}`"))
        };
        let ns = |s: &str| -> util::Result<f64> {
            s.parse()
                .with_context(|| format!("not a time: {s:?} in {line:?}"))
        };
        match f.as_slice() {
            ["time", id, "-", "-", "-", why] => {
                times[index(id)?] = Some(Time::NotTimed(why.to_string()))
            }
            ["time", id, median, fastest, slowest] => {
                times[index(id)?] = Some(Time::Timed {
                    median: ns(median)?,
                    fastest: ns(fastest)?,
                    slowest: ns(slowest)?,
                })
            }
            ["count", id, alive, how, detail, vmlck, maps] => {
                counts[index(id)?] = Some(Count {
                    alive: alive
                        .parse()
                        .with_context(|| format!("not a count: {line:?}"))?,
                    how: how.to_string(),
                    detail: detail.to_string(),
                    vmlck_kb: vmlck.parse().ok(),
                    maps_added: maps.parse().ok(),
                })
            }
            _ => bail!("unexpected line from bench-peers: {line:?}"),
        }
    }
    for (i, (id, ..)) in PEERS.iter().enumerate() {
        ensure!(times[i].is_some(), "bench-peers printed no time for `{id}`");
        ensure!(
            counts[i].is_some(),
            "bench-peers printed no count for `{id}`"
        );
    }
    secrets.times = times.into_iter().flatten().collect();
    secrets.counts = counts.into_iter().flatten().collect();
    Ok(secrets)
}

/// A whole number with thousands separators: 100000 → 100,000.
pub(super) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A ratio with two or three significant digits.
fn ratio(r: f64) -> String {
    if r >= 100.0 {
        format!("{r:.0}")
    } else if r >= 10.0 {
        format!("{r:.1}")
    } else {
        format!("{r:.2}")
    }
}

/// The version of `name` in the workspace's Cargo.lock.
fn locked_version(name: &str) -> Option<String> {
    let lock = std::fs::read_to_string(util::root().join("Cargo.lock")).ok()?;
    let key = format!("name = \"{name}\"");
    lock.lines()
        .skip_while(|l| *l != key)
        .nth(1)?
        .strip_prefix("version = \"")
        .map(|v| v.trim_end_matches('"').to_string())
}

impl Count {
    /// How the count ended, for a table cell.
    pub(super) fn ending(&self) -> String {
        match self.how.as_str() {
            "reached" => "reached the run's maximum".into(),
            "error" => format!("error `{}`", self.detail),
            "panic" => match self.detail.rsplit_once(" (then ") {
                Some((message, signal)) => {
                    format!("panic “{message}”, then `{}`", signal.trim_end_matches(')'))
                }
                None => format!("panic “{}”", self.detail),
            },
            "signal" => format!("killed by `{}`", self.detail),
            _ => format!("failed: {}", self.detail),
        }
    }
}

impl Secrets {
    /// The Markdown table and its introduction, the same on both pages.
    pub(super) fn table(&self) -> String {
        let mut t = String::new();
        let versions = format!(
            "libsodium {} (the system library), memsec {}, secrets {} (on that libsodium)",
            self.libsodium,
            locked_version("memsec").unwrap_or_else(|| "?".into()),
            locked_version("secrets").unwrap_or_else(|| "?".into()),
        );
        let _ = writeln!(
            t,
            "Create + drop: median of {} runs of {} pairs, the implementations' runs \
             alternating, as root. Live secrets: a child process with `RLIMIT_MEMLOCK` \
             soft = hard = {} MiB as uid and gid {} (no `CAP_IPC_LOCK`) allocates 32-byte \
             secrets and keeps each alive until the first failure, at most {}; `VmLck` \
             and the lines of `/proc/self/maps` are read at the end. {versions}.\n",
            self.runs,
            thousands(self.pairs),
            self.limit >> 20,
            self.uid,
            thousands(self.max),
        );
        let _ = writeln!(
            t,
            "| implementation | create + drop, median | fastest – slowest run | ÷ `Pool` | live secrets | how it ended | `VmLck` at the end | mappings added |"
        );
        let _ = writeln!(t, "|---|---:|---:|---:|---:|---|---:|---:|");
        let pool = match self.times.first() {
            Some(Time::Timed { median, .. }) => Some(*median),
            _ => None,
        };
        for ((_, label, _, _), (time, count)) in
            PEERS.iter().zip(self.times.iter().zip(&self.counts))
        {
            let (median, spread, vs_pool) = match time {
                Time::Timed {
                    median,
                    fastest,
                    slowest,
                } => (
                    super::report::time(*median),
                    format!(
                        "{} – {}",
                        super::report::time(*fastest),
                        super::report::time(*slowest)
                    ),
                    pool.map_or("–".into(), |p| ratio(median / p)),
                ),
                Time::NotTimed(why) => (format!("not timed: `{why}`"), "–".into(), "–".into()),
            };
            let _ = writeln!(
                t,
                "| {label} | {median} | {spread} | {vs_pool} | {} | {} | {} | {} |",
                thousands(count.alive),
                super::report::cell(&count.ending()),
                count
                    .vmlck_kb
                    .map_or("–".into(), |kb| format!("{} kB", thousands(kb))),
                count.maps_added.map_or("–".into(), |m| {
                    let sign = if m < 0 { "−" } else { "" };
                    format!("{sign}{}", thousands(m.unsigned_abs()))
                }),
            );
        }
        t
    }

    /// The figure's title.
    pub(super) fn caption(&self, kernel: &str) -> String {
        format!(
            "32-byte secrets: create + drop (median of {} runs) and live secrets under an {} MiB RLIMIT_MEMLOCK as uid {} ({kernel})",
            self.runs,
            self.limit >> 20,
            self.uid
        )
    }
}

#[cfg(test)]
mod tests {
    use super::{parse, thousands, Count, Time, PEERS};

    const OUT: &str = "noise before\n\
        secrets-bench\truns\t3\tpairs\t300\tmax\t20000\tlimit\t8388608\tuid\t65534\tlibsodium\t1.0.18\n\
        time\tpool\t53.4\t47.0\t56.4\n\
        time\tlockedbuf-anonymous\t9025.4\t8517.0\t9265.5\n\
        time\tlockedbuf-secretmem\t-\t-\t-\tUnsupported\n\
        time\tlibsodium\t12352.7\t12248.0\t12602.7\n\
        time\tmemsec\t9909.6\t9751.9\t10509.2\n\
        time\tsecrets\t14148.0\t13988.1\t14748.7\n\
        count\tpool\t20000\treached\t\t7168\t4\n\
        count\tlockedbuf-anonymous\t128\terror\tTooManyLocks\t1536\t385\n\
        count\tlockedbuf-secretmem\t0\terror\tUnsupported\t0\t0\n\
        count\tlibsodium\t16375\tsignal\tSIGSEGV\t8192\t65497\n\
        count\tmemsec\t20000\treached\t\t8192\t65496\n\
        count\tsecrets\t16374\tpanic\tsecrets: error setting memory protection to NoAccess (then SIGABRT)\t-\t-\n\
        /secrets-bench\n\
        the table for people\n";

    #[test]
    fn the_block_is_read_whole() {
        let s = parse(OUT).unwrap();
        assert_eq!((s.runs, s.pairs, s.max, s.limit), (3, 300, 20_000, 8 << 20));
        assert_eq!(s.libsodium, "1.0.18");
        assert_eq!(s.times.len(), PEERS.len());
        assert_eq!(s.times[2], Time::NotTimed("Unsupported".into()));
        assert_eq!(
            s.counts[5],
            Count {
                alive: 16374,
                how: "panic".into(),
                detail: "secrets: error setting memory protection to NoAccess (then SIGABRT)"
                    .into(),
                vmlck_kb: None,
                maps_added: None,
            }
        );
        assert_eq!(
            s.counts[5].ending(),
            "panic “secrets: error setting memory protection to NoAccess”, then `SIGABRT`"
        );
        assert_eq!(s.counts[3].ending(), "killed by `SIGSEGV`");
        assert_eq!(s.counts[1].ending(), "error `TooManyLocks`");
        let table = s.table();
        assert!(table.contains(
            "| **mlock** `LockedBuf::<32>`, `Backing::Anonymous` | 9.03 µs | 8.52 µs – 9.27 µs | 169 | 128 | error `TooManyLocks` | 1,536 kB | 385 |"
        ));
        assert!(table.contains("| 1.00 | 20,000 | reached the run's maximum | 7,168 kB | 4 |"));
        assert!(table.contains("| not timed: `Unsupported` | – | – |"));
        assert!(parse("nothing\n").is_err());
        assert!(parse(&OUT.replace("time\tmemsec", "time\tother")).is_err());
    }

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(128), "128");
        assert_eq!(thousands(16375), "16,375");
        assert_eq!(thousands(100000), "100,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }

    #[test]
    fn both_pages_have_the_block() {
        for page in ["benchmarks.md", "secrets.md"] {
            let path = crate::util::root().join("docs").join(page);
            let text = std::fs::read_to_string(path).unwrap();
            super::super::report::fill_page(page, &text, &[("secrets", String::new())]).unwrap();
        }
    }
}
