//! The generated part of docs/benchmarks.md: the tables, filled into the
//! page's marked blocks.

use anyhow::Context as _;
use std::fmt::Write as _;

use super::machine::Machine;
use super::parse::{Estimate, OnfaultRow, Paired};
use super::{Plan, IMPLS, OVERHEAD_GOALS, STATUS_GOALS, STATUS_ROWS};
use crate::util;

pub(super) struct Report<'a> {
    pub(super) plan: &'a Plan,
    pub(super) machine: Machine,
    pub(super) load_after: String,
    pub(super) estimates: Vec<Estimate>,
    /// Per implementation: median wall and CPU nanoseconds per pair, timed
    /// in turns.
    pub(super) interleaved: Vec<(String, f64, f64)>,
    pub(super) instructions: Vec<(String, f64)>,
    pub(super) onfault: Vec<OnfaultRow>,
    /// The overhead bench's goal comparisons timed in pairs of calls, the
    /// crate's side against libc's.
    pub(super) overhead_paired: Vec<Paired>,
    /// The status bench's comparisons timed in pairs of calls (empty when
    /// that bench did not run).
    pub(super) status_paired: Vec<Paired>,
    /// Instructions per `Status::parse` of a real status file (callgrind).
    pub(super) parse_instructions: Option<(f64, u64)>,
}

/// A duration in nanoseconds, with a unit that keeps 3 or 4 digits.
pub(super) fn time(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.1} ns")
    } else if ns < 1e6 {
        format!("{:.2} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

/// A difference in nanoseconds, with its sign (a true minus, as in the
/// tables' `a − b`).
fn signed_time(ns: f64) -> String {
    let sign = if ns < 0.0 { "−" } else { "+" };
    format!("{sign}{}", time(ns.abs()))
}

/// An instruction count: whole when it is (callgrind's counts per pair
/// usually are), else with one decimal.
fn count(n: f64) -> String {
    if n.fract() == 0.0 {
        format!("{n:.0}")
    } else {
        format!("{n:.1}")
    }
}

/// A byte count in MiB or GiB.
fn bytes(b: u64) -> String {
    let mib = b as f64 / (1u64 << 20) as f64;
    if mib >= 1024.0 {
        format!("{:.2} GiB", mib / 1024.0)
    } else {
        format!("{mib:.1} MiB")
    }
}

/// Text for a Markdown table cell: a `|`, even in code, ends the cell
/// unless escaped.
pub(super) fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// A mapping size: whole MiB or GiB.
fn size(b: u64) -> String {
    if b >= 1 << 30 {
        format!("{} GiB", b >> 30)
    } else {
        format!("{} MiB", b >> 20)
    }
}

impl Report<'_> {
    fn command(&self) -> &'static str {
        if self.plan.quick {
            "cargo xtask bench --quick"
        } else {
            "cargo xtask bench"
        }
    }

    /// The generated blocks of docs/benchmarks.md, by marker name, in
    /// Markdown, which also reads well in a terminal.
    pub(super) fn blocks(&self) -> Vec<(&'static str, String)> {
        let [machine, overhead, record, onfault, status] = BLOCKS;
        vec![
            (machine, self.machine_table()),
            (overhead, self.overhead_table()),
            (record, self.record_goals()),
            (onfault, self.onfault_tables()),
            (status, self.status_tables()),
        ]
    }

    /// Where and how the numbers were taken; a `--quick` run says so first.
    fn machine_table(&self) -> String {
        let m = &self.machine;
        let mut s = String::new();
        if self.plan.quick {
            let _ = writeln!(
                s,
                "> A `--quick` run: few samples, small mappings. It checks that the \
                 benchmarks build and run; its numbers are not meant to be quoted.\n"
            );
        }
        let _ = writeln!(s, "| | |\n|---|---|");
        let _ = writeln!(s, "| CPU | {} |", m.cpu);
        let _ = writeln!(s, "| cores | {} |", m.cores);
        let _ = writeln!(s, "| kernel | {} |", m.kernel);
        let _ = writeln!(s, "| memory | {}, swap {} |", m.memory, m.swap);
        let _ = writeln!(s, "| transparent huge pages | `{}` |", m.thp);
        let _ = writeln!(
            s,
            "| load average | {} at the start, {} at the end |",
            m.load_before, self.load_after
        );
        let _ = writeln!(s, "| compiler | {} |", m.rustc);
        let _ = writeln!(s, "| commit | {} |", m.commit);
        let _ = writeln!(s, "| date | {} |", m.date);
        let _ = writeln!(s, "| command | `{}` |", self.command());
        s
    }

    /// The call-overhead table: criterion, in turns, instructions.
    fn overhead_table(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "In turns: {} rounds of {} pairs.\n",
            self.plan.interleaved.0, self.plan.interleaved.1
        );
        let _ = writeln!(
            t,
            "| implementation | criterion [95 % CI] | ratio | in turns, wall | ratio | in turns, CPU | ratio | instructions | ratio |"
        );
        let _ = writeln!(t, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        let find = |f: &str| {
            self.estimates
                .iter()
                .find(|e| e.group == "overhead" && e.function == f)
        };
        let ratio = |ours: Option<f64>, theirs: Option<f64>| match (ours, theirs) {
            (Some(o), Some(t)) if t > 0.0 => format!("{:.2}", o / t),
            _ => "–".into(),
        };
        let turns = |name: &str| self.interleaved.iter().find(|r| r.0 == name);
        let instructions = |name: &str| {
            self.instructions
                .iter()
                .find(|(n, _)| n == name)
                .map(|x| x.1)
        };
        for name in IMPLS {
            let crit = find(name).map_or("–".into(), |e| {
                format!("{} [{} – {}]", time(e.median), time(e.lower), time(e.upper))
            });
            let crit_ratio = ratio(
                find("mlock").map(|e| e.median),
                find(name).map(|e| e.median),
            );
            let wall = turns(name).map_or("–".into(), |r| time(r.1));
            let wall_ratio = ratio(turns("mlock").map(|r| r.1), turns(name).map(|r| r.1));
            let cpu = turns(name).map_or("–".into(), |r| time(r.2));
            let cpu_ratio = ratio(turns("mlock").map(|r| r.2), turns(name).map(|r| r.2));
            let ins = instructions(name).map_or("–".into(), count);
            let ins_ratio = ratio(instructions("mlock"), instructions(name));
            let label = if name == "mlock" {
                "**mlock** (this crate)".to_string()
            } else {
                format!("`{name}`")
            };
            let _ = writeln!(
                t,
                "| {label} | {crit} | {crit_ratio} | {wall} | {wall_ratio} | {cpu} | {cpu_ratio} | {ins} | {ins_ratio} |"
            );
        }
        t
    }

    /// The goals on what the crate's record of its locks costs: per goal,
    /// the median of the crate's side and of libc's, the median of the
    /// difference within a pair beside what the bound allows over libc's
    /// median, the ratio of the medians, and whether it is within the
    /// bound. The absolute times stand beside the ratio because the cost of
    /// a system call, and so the ratio, differs between machines.
    fn record_goals(&self) -> String {
        let mut t = format!(
            "Timed in pairs: {} pairs per comparison, each the crate's two calls and \
             libc's two back to back, which side goes first alternating, each side \
             timed alone.\n\n\
             | goal | crate, median | libc, median | crate − libc, median of the pairs (the bound allows) | crate ÷ libc | bound | met |\n\
             |---|---:|---:|---:|---:|---:|---|\n",
            self.plan.pairs
        );
        for (goal, ours, libc, bound) in OVERHEAD_GOALS {
            let Some(p) = self
                .overhead_paired
                .iter()
                .find(|p| p.a == ours && p.b == libc)
            else {
                let _ = writeln!(t, "| {goal} | – | – | – | – | ≤ {bound:.2} | not timed |");
                continue;
            };
            let met = if p.ratio <= bound { "yes" } else { "no" };
            let _ = writeln!(
                t,
                "| {goal} | {} | {} | {} ({}) | {:.3} | ≤ {bound:.2} | {met} |",
                time(p.a_ns),
                time(p.b_ns),
                signed_time(p.diff_ns),
                time((bound - 1.0) * p.b_ns),
                p.ratio
            );
        }
        t
    }

    /// The `ONFAULT` tables: every call at every size, then how each grows.
    fn onfault_tables(&self) -> String {
        let mut t = String::new();
        let sizes: Vec<u64> = {
            let mut s: Vec<u64> = self.onfault.iter().map(|r| r.size).collect();
            s.dedup();
            s
        };
        let runs = self.onfault.first().map_or(0, |r| r.runs);
        let _ = writeln!(t, "Median of {runs} runs.\n");
        let _ = writeln!(
            t,
            "| mapping | call | time (median) | fastest – slowest | RSS after | VmLck after |"
        );
        let _ = writeln!(t, "|---:|---|---:|---:|---:|---:|");
        for &s in &sizes {
            for r in self.onfault.iter().filter(|r| r.size == s) {
                let _ = writeln!(
                    t,
                    "| {} | `{}` | {} | {} – {} | {} | {} |",
                    size(s),
                    cell(&r.call),
                    time(r.median_ns as f64),
                    time(r.min_ns as f64),
                    time(r.max_ns as f64),
                    bytes(r.rss_after),
                    bytes(r.locked_after)
                );
            }
        }
        if let (Some(first), Some(last)) = (sizes.first(), sizes.last()) {
            let _ = writeln!(
                t,
                "\nFrom {} to {} ({}× the size):\n",
                size(*first),
                size(*last),
                last / first
            );
            let _ = writeln!(t, "| call | time grows | RSS grows |");
            let _ = writeln!(t, "|---|---:|---:|");
            for call in self.onfault.iter().filter(|r| r.size == *first) {
                if let Some(big) = self
                    .onfault
                    .iter()
                    .find(|r| r.size == *last && r.call == call.call)
                {
                    let _ = writeln!(
                        t,
                        "| `{}` | {:.1}× | {:.1}× |",
                        cell(&call.call),
                        big.median_ns as f64 / call.median_ns.max(1) as f64,
                        big.rss_after as f64 / call.rss_after.max(1) as f64
                    );
                }
            }
        }
        t
    }

    /// Every other criterion group: the status bench. Ratios to its
    /// `floor` (the least any reader of the file can do) and of the crate's
    /// own `status` to each row, where those rows exist.
    fn status_tables(&self) -> String {
        let mut t = String::new();
        let mut groups: Vec<&str> = self
            .estimates
            .iter()
            .map(|e| e.group.as_str())
            .filter(|g| !g.starts_with("overhead"))
            .collect();
        groups.sort_unstable();
        groups.dedup();
        if groups.is_empty() {
            let _ = writeln!(t, "benches/status.rs did not run.");
        }
        for group in groups {
            let mut rows: Vec<&Estimate> =
                self.estimates.iter().filter(|e| e.group == group).collect();
            let rank = |f: &str| STATUS_ROWS.iter().position(|(n, _)| *n == f);
            rows.sort_by(|a, b| {
                (rank(&a.function).unwrap_or(usize::MAX), &a.function)
                    .cmp(&(rank(&b.function).unwrap_or(usize::MAX), &b.function))
            });
            let floor = rows
                .iter()
                .find(|e| e.function == "floor")
                .map(|e| e.median);
            let ours = rows.iter().find(|e| e.function == group).map(|e| e.median);
            let _ = writeln!(
                t,
                "| benchmark | what it does | median | 95 % CI | ÷ floor | {group} ÷ this |"
            );
            let _ = writeln!(t, "|---|---|---:|---:|---:|---:|");
            for e in &rows {
                let what = rank(&e.function).map_or("", |i| STATUS_ROWS[i].1);
                let ratio = |r: Option<f64>, num: bool| {
                    r.map_or("–".into(), |r| {
                        format!("{:.2}", if num { e.median / r } else { r / e.median })
                    })
                };
                let _ = writeln!(
                    t,
                    "| `{}` | {what} | {} | {} – {} | {} | {} |",
                    e.function,
                    time(e.median),
                    time(e.lower),
                    time(e.upper),
                    ratio(floor, true),
                    ratio(ours, false),
                );
            }
            let _ = write!(t, "{}", self.status_pairs());
            let _ = write!(t, "{}", self.status_goals(&rows));
        }
        t
    }

    /// The comparisons timed in pairs: per comparison, the median of each
    /// side, of the difference within a pair, and their ratio.
    fn status_pairs(&self) -> String {
        if self.status_paired.is_empty() {
            return String::new();
        }
        let mut t = format!(
            "\nTimed in pairs instead: {} pairs per comparison, each one call of `a` \
             and one of `b` back to back, which goes first alternating, each call \
             timed alone. Load on the machine falls on both calls of a pair alike, \
             so the median of the differences within the pairs is what `a` costs \
             over `b`.\n\n\
             | `a` | `b` | median of `a` | median of `b` | `a` − `b`, median of the pairs | `a` ÷ `b` |\n\
             |---|---|---:|---:|---:|---:|\n",
            self.plan.pairs
        );
        for p in &self.status_paired {
            let _ = writeln!(
                t,
                "| `{}` | `{}` | {} | {} | {} | {:.3} |",
                p.a,
                p.b,
                time(p.a_ns),
                time(p.b_ns),
                signed_time(p.diff_ns),
                p.ratio
            );
        }
        t
    }

    /// The status goals against this machine's own floor: the absolute
    /// floor, bare `pread` and parse, then each ratio from criterion's
    /// medians and from the pairs, and the cost over the goal's base in
    /// the pairs beside what the bound allows.
    fn status_goals(&self, rows: &[&Estimate]) -> String {
        let median = |f: &str| rows.iter().find(|e| e.function == f).map(|e| e.median);
        let (Some(floor), Some(pread), Some(parse)) =
            (median("floor"), median("pread"), median("parse"))
        else {
            return String::new();
        };
        let counted = self.parse_instructions.map_or(String::new(), |(n, bytes)| {
            format!(
                "; callgrind counts {} instructions per parse of a {bytes}-byte \
                 status, whatever the load",
                count(n.round())
            )
        });
        let mut t = format!(
            "\nOn this machine the floor is {}, a bare `pread` {} and the parse \
             alone {} ({:.1} % of the floor, {:.1} % of `pread`){counted}.\n\n\
             | goal | criterion medians | in pairs | cost over the base in pairs (the bound allows) | met |\n\
             |---|---:|---:|---:|---|\n",
            time(floor),
            time(pread),
            time(parse),
            100.0 * parse / floor,
            100.0 * parse / pread
        );
        for (num, den, bound) in STATUS_GOALS {
            let ratio = match (median(num), median(den)) {
                (Some(n), Some(d)) => Some(n / d),
                _ => None,
            };
            let pair = self.status_paired.iter().find(|p| p.a == num && p.b == den);
            let paired = pair.map(|p| p.ratio);
            let show = |r: Option<f64>| r.map_or("–".into(), |r| format!("{r:.3}"));
            let cost = pair.map_or("–".into(), |p| {
                format!(
                    "{} ({})",
                    signed_time(p.diff_ns),
                    time((bound - 1.0) * p.b_ns)
                )
            });
            let met = match (ratio, paired) {
                (Some(r), Some(a)) if r <= bound && a <= bound => "yes, both",
                (Some(r), _) if r <= bound => "criterion only",
                (_, Some(a)) if a <= bound => "in pairs only",
                _ => "no",
            };
            let _ = writeln!(
                t,
                "| `{num}` ÷ `{den}` ≤ {bound:.2} | {} | {} | {cost} | {met} |",
                show(ratio),
                show(paired)
            );
        }
        t
    }

    pub(super) fn plot_caption(&self) -> String {
        let runs = self.onfault.first().map_or(0, |r| r.runs);
        format!(
            "Locking an untouched anonymous mapping: median of {runs} runs, a fresh process each ({})",
            self.machine.kernel
        )
    }

    /// `template` (docs/benchmarks.md) with every generated block
    /// replaced: the lines between `<!-- xtask bench: <name> -->` and the
    /// next `<!-- /xtask bench -->`. Fails when a block's markers are
    /// missing, so that the page and the code cannot drift apart silently.
    pub(super) fn fill(&self, template: &str) -> util::Result<String> {
        fill(template, &self.blocks())
    }
}

/// The names of the generated blocks, in the page's order.
const BLOCKS: [&str; 5] = ["machine", "overhead", "record", "onfault", "status"];

/// The marker that closes a generated block.
const END: &str = "<!-- /xtask bench -->";

/// `template` (docs/benchmarks.md) with each named block's lines replaced
/// by its text.
fn fill(template: &str, blocks: &[(&str, String)]) -> util::Result<String> {
    fill_page("benchmarks.md", template, blocks)
}

/// `template`, the text of `docs/<page>`, with each named block's lines
/// replaced by its text; fails when a block's markers are missing.
pub(super) fn fill_page(
    page: &str,
    template: &str,
    blocks: &[(&str, String)],
) -> util::Result<String> {
    let mut out = template.to_string();
    for (name, text) in blocks {
        let begin = format!("<!-- xtask bench: {name} -->");
        let start = out
            .find(&begin)
            .with_context(|| format!("docs/{page} has no `{begin}` line"))?
            + begin.len();
        let end = out[start..]
            .find(END)
            .with_context(|| format!("docs/{page} has no `{END}` after `{begin}`"))?
            + start;
        out.replace_range(start..end, &format!("\n{}\n", text.trim_end()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::machine::Machine;
    use super::super::parse::{Estimate, Paired};
    use super::super::Plan;
    use super::{cell, count, fill, signed_time, size, time, Report, BLOCKS};

    #[test]
    fn units() {
        assert_eq!(time(19.0), "19.0 ns");
        assert_eq!(time(1_430.0), "1.43 µs");
        assert_eq!(time(493_240_000.0), "493.24 ms");
        assert_eq!(size(16 << 20), "16 MiB");
        assert_eq!(size(1 << 30), "1 GiB");
        assert_eq!(signed_time(60.0), "+60.0 ns");
        assert_eq!(signed_time(-21.0), "−21.0 ns");
        assert_eq!(signed_time(19_569.0), "+19.57 µs");
        assert_eq!(count(19.0), "19");
        assert_eq!(count(19.5), "19.5");
        assert_eq!(
            cell("lock_all(CURRENT|ONFAULT)"),
            "lock_all(CURRENT\\|ONFAULT)"
        );
    }

    #[test]
    fn blocks_replace_what_stands_between_their_markers() {
        let page = "# B\n\nprose\n<!-- xtask bench: a -->\nold\nold\n<!-- /xtask bench -->\n\
                    more prose\n<!-- xtask bench: b -->\n<!-- /xtask bench -->\nend\n";
        let blocks = [("a", "| x |\n".to_string()), ("b", "y".to_string())];
        let filled = fill(page, &blocks).unwrap();
        assert_eq!(
            filled,
            "# B\n\nprose\n<!-- xtask bench: a -->\n| x |\n<!-- /xtask bench -->\n\
             more prose\n<!-- xtask bench: b -->\ny\n<!-- /xtask bench -->\nend\n"
        );
        // Filling again changes nothing.
        assert_eq!(fill(&filled, &blocks).unwrap(), filled);
        assert!(fill(page, &[("c", String::new())]).is_err());
    }

    #[test]
    fn the_page_has_every_block() {
        let page = crate::util::root().join("docs").join("benchmarks.md");
        let page = std::fs::read_to_string(page).unwrap();
        let blocks: Vec<(&str, String)> = BLOCKS.iter().map(|b| (*b, String::new())).collect();
        fill(&page, &blocks).unwrap();
    }

    #[test]
    fn the_goal_table_carries_criterion_the_pairs_and_the_cost() {
        let unknown = || "unknown".to_string();
        let estimate = |function: &str, median: f64| Estimate {
            group: "status".into(),
            function: function.into(),
            median,
            lower: median,
            upper: median,
        };
        let pair = |a: &str, b: &str, a_ns: f64, b_ns: f64, diff_ns: f64| Paired {
            a: a.into(),
            b: b.into(),
            a_ns,
            b_ns,
            diff_ns,
            ratio: a_ns / b_ns,
        };
        let report = Report {
            plan: &Plan::QUICK,
            machine: Machine {
                cpu: unknown(),
                cores: 2,
                kernel: unknown(),
                memory: unknown(),
                swap: unknown(),
                thp: unknown(),
                rustc: unknown(),
                commit: unknown(),
                date: unknown(),
                load_before: unknown(),
            },
            load_after: unknown(),
            estimates: vec![
                estimate("floor", 10_000.0),
                estimate("status", 10_200.0),
                estimate("pread", 6_000.0),
                estimate("reader", 6_600.0),
                estimate("parse", 100.0),
            ],
            interleaved: Vec::new(),
            instructions: Vec::new(),
            onfault: Vec::new(),
            overhead_paired: vec![
                pair("lock_all", "mlockall", 520.0, 390.0, 128.0),
                pair("guard", "mlock", 1_700.0, 1_500.0, 190.0),
            ],
            status_paired: vec![
                pair("status", "floor", 10_100.0, 10_000.0, 90.0),
                pair("reader", "pread", 6_040.0, 6_000.0, -12.0),
            ],
            parse_instructions: Some((1756.0, 1423)),
        };
        let block = report.status_tables();
        assert!(block.contains("On this machine the floor is 10.00 µs, a bare `pread` 6.00 µs and the parse alone 100.0 ns"));
        assert!(block.contains("Timed in pairs instead: 5000 pairs per comparison"));
        assert!(block.contains("| `status` | `floor` | 10.10 µs | 10.00 µs | +90.0 ns | 1.010 |"));
        assert!(block.contains(
            "| `status` ÷ `floor` ≤ 1.05 | 1.020 | 1.010 | +90.0 ns (500.0 ns) | yes, both |"
        ));
        assert!(block.contains(
            "| `reader` ÷ `pread` ≤ 1.08 | 1.100 | 1.007 | −12.0 ns (480.0 ns) | in pairs only |"
        ));
        let record = report.record_goals();
        assert!(record.contains("Timed in pairs: 5000 pairs per comparison"));
        assert!(record.contains(
            "| lock_all + unlock_all vs mlockall + munlockall (libc) | 520.0 ns | 390.0 ns \
             | +128.0 ns (39.0 ns) | 1.333 | ≤ 1.10 | no |"
        ));
        assert!(record.contains(
            "| LockGuard new + drop vs mlock + munlock (libc) | 1.70 µs | 1.50 µs \
             | +190.0 ns (225.0 ns) | 1.133 | ≤ 1.15 | yes |"
        ));
        let none = Report {
            overhead_paired: Vec::new(),
            ..report
        };
        assert!(none
            .record_goals()
            .contains("| LockGuard new + drop vs mlock + munlock (libc) | – | – | – | – | ≤ 1.15 | not timed |"));
    }
}
