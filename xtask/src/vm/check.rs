//! Reads the summary lines off a VM's console and records what they
//! prove, or why they do not.

use super::pack::HOLD_MIB;
use super::report::{Core, Report};
use super::scenario::Scenario;
use crate::util;

/// The unlocked twin must have at least this share of its memory swapped
/// out, or the swap-pressure scenario proved nothing.
const MIN_SWAPPED_PERCENT: u64 = 50;

/// The line that starts with `prefix`, with the prefix removed.
pub(super) fn find_line<'a>(console: &'a [String], prefix: &str) -> Option<&'a str> {
    console.iter().rev().find_map(|l| l.strip_prefix(prefix))
}

/// The number that follows `key` in `text` (e.g. `VmSwap=` in `VmSwap=0 kB`).
pub(super) fn number_after(text: &str, key: &str) -> Option<u64> {
    let rest = &text[text.find(key)? + key.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Checks the summary lines of the suite boot, for the scenarios that
/// ran ([`Report::scenarios`]).
pub(super) fn check_suite(console: &[String], r: &mut Report) {
    let arch = r.name.clone();
    if !console.iter().any(|l| l == "vm: done") {
        r.problems
            .push("the init script did not finish (no `vm: done` line)".into());
    }
    check_page_size(console, r, "");
    let ran = |s: Scenario| r.scenarios.contains(&s);
    let (suite, swap_pressure, core_dump) = (
        ran(Scenario::Suite),
        ran(Scenario::SwapPressure),
        ran(Scenario::CoreDump),
    );

    // An arch whose kernel has no secretmem boots the suite with the
    // anonymous backing alone.
    let secretmem = crate::arch::by_name(r.arch).is_none_or(|a| a.secretmem);
    let backings: &[&str] = if secretmem {
        &["secretmem", "anonymous"]
    } else {
        &["anonymous"]
    };
    if suite {
        r.tests = check_tests(console, &arch, &mut r.ignored, &mut r.problems);
        r.default_backing.0 = check_default_backing(console, &arch, backings[0], &mut r.problems);
    }
    if swap_pressure {
        check_swap_pressure(console, r);
    }
    if core_dump {
        for backing in backings {
            check_core(console, r, backing);
        }
    }
}

/// Checks `swap-pressure <arch> <kernel>: locked VmSwap=<n> kB unlocked VmSwap=<m> kB`.
fn check_swap_pressure(console: &[String], r: &mut Report) {
    let arch = r.name.clone();

    // swap-pressure <arch> <kernel>: locked VmSwap=<n> kB unlocked VmSwap=<m> kB
    let prefix = format!("swap-pressure {arch}: ");
    match find_line(console, &prefix) {
        Some(rest) => {
            let (locked, unlocked) = rest.split_once(" unlocked ").unwrap_or((rest, ""));
            match (
                number_after(locked, "VmSwap="),
                number_after(unlocked, "VmSwap="),
            ) {
                (Some(n), Some(m)) => {
                    r.swap = Some((n, m));
                    // VmSwap=0 proves something only if the twin was locked.
                    let need = u64::from(HOLD_MIB) * 1024;
                    match find_line(console, "vm: locked twin: ")
                        .and_then(|l| number_after(l, "VmLck="))
                    {
                        Some(locked) if locked >= need => {}
                        Some(locked) => r.problems.push(format!(
                            "the locked twin had only VmLck={locked} kB (need {need} kB)"
                        )),
                        None => r
                            .problems
                            .push("missing line: vm: locked twin: VmLck=<n> kB".into()),
                    }
                    if n != 0 {
                        r.problems
                            .push(format!("the locked twin had {n} kB swapped out"));
                    }
                    let floor = u64::from(HOLD_MIB) * 1024 * MIN_SWAPPED_PERCENT / 100;
                    if m < floor {
                        r.problems.push(format!(
                            "the unlocked twin had only {m} kB swapped out (need {floor} kB): \
                             the memory hog did not create enough pressure to prove anything"
                        ));
                    }
                }
                _ => r.problems.push(format!("malformed line: {prefix}{rest}")),
            }
        }
        None => r.problems.push(format!(
            "missing line: swap-pressure {arch}: locked VmSwap=<n> kB unlocked VmSwap=<m> kB"
        )),
    }
}

/// Checks the secrets-only boot (`memfd_secret` off): its tests line, the
/// fallback to anonymous memory, and its core dump.
pub(super) fn check_secrets(console: &[String], r: &mut Report) {
    let arch = r.name.clone();
    if !console.iter().any(|l| l == "vm: done") {
        r.problems
            .push("secrets boot: the init script did not finish (no `vm: done` line)".into());
    }
    check_page_size(console, r, "secrets boot: ");
    let mut ignored = 0;
    let mut problems = Vec::new();
    r.secrets_tests = check_tests(console, &arch, &mut ignored, &mut problems);
    r.default_backing.1 = check_default_backing(console, &arch, "anonymous", &mut problems);
    r.ignored += ignored;
    r.problems
        .extend(problems.into_iter().map(|p| format!("secrets boot: {p}")));
    check_core(console, r, "anonymous");
    if let Some(core) = r.core.last_mut() {
        core.secretmem_off = true;
    }
}

/// Checks `page-size <arch> <kernel>: <bytes>` (`AT_PAGESZ` in the VM)
/// against the page size of the arch's kernel.
fn check_page_size(console: &[String], r: &mut Report, boot: &str) {
    let key = format!("page-size {}: ", r.name);
    let want = crate::arch::by_name(r.arch).map(|a| a.page_size);
    let got = console
        .iter()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse::<usize>().ok());
    match (got, want) {
        (Some(got), Some(want)) if got == want => r.page_size = Some(got),
        (got, want) => r.problems.push(format!(
            "{boot}no `{key}{}` line (read {got:?})",
            want.map_or("?".to_string(), |w| w.to_string())
        )),
    }
}

/// Checks `tests <arch> <kernel>: N passed, M failed` against libtest's own result
/// lines; returns (passed, failed) and adds libtest's ignored count.
fn check_tests(
    console: &[String],
    arch: &str,
    ignored: &mut u64,
    problems: &mut Vec<String>,
) -> Option<(u64, u64)> {
    // tests <arch> <kernel>: N passed, M failed
    let mut result = None;
    match find_line(console, &format!("tests {arch}: ")) {
        Some(rest) => match rest
            .split_once(" passed, ")
            .and_then(|(p, f)| Some((p.parse().ok()?, f.strip_suffix(" failed")?.parse().ok()?)))
        {
            Some((passed, failed)) => {
                result = Some((passed, failed));
                // Cross-check the script's sums with the host's own count
                // of libtest's result lines.
                let mut tally = util::Tally::default();
                tally.add_libtest_output(&console.join("\n"));
                *ignored = tally.ignored;
                // Every test binary runs with --include-ignored here.
                if tally.ignored > 0 {
                    problems.push(format!(
                        "{} test(s) reported as ignored, though every test must run in the VM \
                         (--include-ignored)",
                        tally.ignored
                    ));
                }
                if tally.passed != passed || tally.failed > failed {
                    problems.push(format!(
                        "the summary line says {passed} passed, {failed} failed, but libtest's \
                         result lines say {} passed, {} failed",
                        tally.passed, tally.failed
                    ));
                }
                if failed > 0 {
                    problems.push(format!(
                        "{failed} test(s) failed in the VM: {}",
                        failing_tests(console).join(", ")
                    ));
                }
                if passed == 0 {
                    problems.push("no test passed in the VM".into());
                }
            }
            None => problems.push(format!("malformed line: tests {arch}: {rest}")),
        },
        None => problems.push(format!("missing line: tests {arch}: N passed, M failed")),
    }
    result
}

/// Checks `secrets <arch> <kernel>: default=<backing>`: the backing `LockedBuf::new`
/// chose in this boot must be `want`.
fn check_default_backing(
    console: &[String],
    arch: &str,
    want: &str,
    problems: &mut Vec<String>,
) -> Option<String> {
    let Some(rest) = find_line(console, &format!("secrets {arch}: default=")) else {
        problems.push(format!("missing line: secrets {arch}: default={want}"));
        return None;
    };
    if rest != want {
        problems.push(format!(
            "LockedBuf::new chose {rest:?}, expected {want} (kernel command line \
             secretmem.enable=1 turns memfd_secret on, =0 off)"
        ));
    }
    Some(rest.to_string())
}

/// Checks `core-dump <arch> <kernel>: backing=<backing> protected=absent
/// control=present`.
fn check_core(console: &[String], r: &mut Report, backing: &str) {
    let prefix = format!("core-dump {}: backing={backing} ", r.name);
    let Some(rest) = find_line(console, &prefix) else {
        r.problems.push(format!(
            "missing line: {prefix}protected=absent control=present"
        ));
        return;
    };
    let word = |key: &str| {
        rest.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .unwrap_or("?")
            .to_string()
    };
    let (protected, control) = (word("protected="), word("control="));
    if protected != "absent" {
        r.problems.push(format!(
            "the LockedBuf ({backing}) marker was {protected} in the core dump (must be absent)"
        ));
    }
    if control != "present" {
        r.problems.push(format!(
            "the ordinary marker was {control} in the {backing} core dump (must be present, \
             or the search proved nothing)"
        ));
    }
    r.core.push(Core {
        secretmem_off: false,
        backing: backing.to_string(),
        protected,
        control,
    });
}

/// The failing tests as `<test binary>::<test>`, read off libtest's
/// `test <name> ... FAILED` lines and the script's `vm: running <binary>`.
fn failing_tests(console: &[String]) -> Vec<String> {
    let mut binary = "";
    let mut failing = Vec::new();
    for line in console {
        if let Some(name) = line.strip_prefix("vm: running ") {
            binary = name;
        } else if let Some(died) = line
            .strip_prefix("vm: ")
            .filter(|l| l.contains(" exited with status "))
        {
            failing.push(format!("({died})"));
        } else if let Some(test) = line
            .strip_prefix("test ")
            .and_then(|l| l.strip_suffix(" ... FAILED"))
        {
            failing.push(format!("{binary}::{test}"));
        }
    }
    failing
}

/// Checks the PID 1 example's line: `mlock-init: locked VmLck=<n> kB`.
pub(super) fn check_pid1(console: &[String], r: &mut Report) {
    match find_line(console, "mlock-init: ") {
        Some(rest) => match rest
            .strip_prefix("locked ")
            .and_then(|t| number_after(t, "VmLck="))
        {
            Some(n) => {
                r.pid1 = Some(n);
                if n == 0 {
                    r.problems
                        .push("PID 1 reported VmLck=0 kB after locking".into());
                }
            }
            None => r
                .problems
                .push(format!("PID 1 did not lock: mlock-init: {rest}")),
        },
        None => r
            .problems
            .push("missing line from the PID 1 example: mlock-init: locked VmLck=<n> kB".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn console(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    const PASSING: &str = "\
page-size x86_64 6.12: 4096
vm: running lock
test result: ok. 3 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s
tests x86_64 6.12: 3 passed, 0 failed
vm: locked twin: VmLck=41596 kB VmRSS=41584 kB
swap-pressure x86_64 6.12: locked VmSwap=0 kB unlocked VmSwap=40996 kB
secrets x86_64 6.12: default=secretmem
core-dump x86_64 6.12: backing=secretmem protected=absent control=present
core-dump x86_64 6.12: backing=anonymous protected=absent control=present
vm: done";

    fn checked(text: &str) -> Report {
        let mut report = Report {
            arch: "x86_64",
            name: "x86_64 6.12".into(),
            scenarios: Scenario::ALL.to_vec(),
            ..Report::default()
        };
        check_suite(&console(text), &mut report);
        report
    }

    #[test]
    fn a_console_that_proves_everything_passes() {
        let r = checked(PASSING);
        assert_eq!(r.problems, Vec::<String>::new());
        assert_eq!(r.tests, Some((3, 0)));
        assert_eq!(r.ignored, 0);
        let ignored = checked(&PASSING.replace("0 failed; 0 ignored", "0 failed; 1 ignored"));
        assert_eq!(ignored.ignored, 1);
        assert!(
            ignored.problems[0].contains("ignored"),
            "{:?}",
            ignored.problems
        );
        assert_eq!(r.swap, Some((0, 40996)));
        assert_eq!(r.core.len(), 2);
        assert!(r
            .core
            .iter()
            .all(|c| c.protected == "absent" && c.control == "present"));
        assert_eq!(r.default_backing.0.as_deref(), Some("secretmem"));
    }

    #[test]
    fn a_swapped_locked_twin_or_an_unswapped_unlocked_twin_fails() {
        let r = checked(&PASSING.replace("locked VmSwap=0 kB", "locked VmSwap=4 kB"));
        assert!(r
            .problems
            .iter()
            .any(|p| p.contains("locked twin had 4 kB")));
        let r = checked(&PASSING.replace("VmSwap=40996", "VmSwap=100"));
        assert!(r
            .problems
            .iter()
            .any(|p| p.contains("proved nothing") || p.contains("did not create enough pressure")));
        let r = checked(&PASSING.replace("VmLck=41596", "VmLck=0"));
        assert!(r.problems.iter().any(|p| p.contains("VmLck=0 kB")));
    }

    #[test]
    fn a_leaked_secret_or_a_blind_search_fails() {
        for backing in ["secretmem", "anonymous"] {
            let line = format!("backing={backing} protected=absent control=present");
            let r = checked(&PASSING.replace(&line, &line.replace("=absent", "=present")));
            assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
            assert!(r.problems[0].contains(backing));
            let r = checked(&PASSING.replace(&line, &line.replace("=present", "=absent")));
            assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
        }
        // Both backings must be dumped.
        let r = checked(&PASSING.replace("backing=anonymous", "backing=secretmem"));
        assert!(r
            .problems
            .iter()
            .any(|p| p.contains("missing line: core-dump x86_64 6.12: backing=anonymous")));
    }

    #[test]
    fn the_secrets_boot_must_fall_back_to_anonymous_memory() {
        let text = "\
page-size x86_64 6.12: 4096
vm: running secret
test result: ok. 13 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s
tests x86_64 6.12: 13 passed, 0 failed
secrets x86_64 6.12: default=anonymous
core-dump x86_64 6.12: backing=anonymous protected=absent control=present
vm: done";
        let mut r = Report {
            arch: "x86_64",
            name: "x86_64 6.12".into(),
            ..Report::default()
        };
        check_secrets(&console(text), &mut r);
        assert_eq!(r.problems, Vec::<String>::new());
        assert_eq!(r.secrets_tests, Some((13, 0)));
        let mut r = Report {
            arch: "x86_64",
            name: "x86_64 6.12".into(),
            ..Report::default()
        };
        check_secrets(
            &console(&text.replace("default=anonymous", "default=secretmem")),
            &mut r,
        );
        assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
        assert!(r.problems[0].starts_with("secrets boot: LockedBuf::new chose"));
        // The suite boot must have memfd_secret.
        let r = checked(&PASSING.replace("default=secretmem", "default=anonymous"));
        assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
    }

    #[test]
    fn missing_lines_and_failed_tests_are_reported() {
        let r = checked("vm: running lock\ntest a ... FAILED\nvm: done");
        // page-size, tests, secrets, swap-pressure, and two core-dump lines.
        assert_eq!(r.problems.len(), 6, "{:?}", r.problems);
        // A page size that is not the arch's.
        let r = checked(&PASSING.replace(
            "page-size x86_64 6.12: 4096",
            "page-size x86_64 6.12: 16384",
        ));
        assert_eq!(
            r.problems,
            ["no `page-size x86_64 6.12: 4096` line (read Some(16384))"]
        );
        let text = PASSING
            .replace(
                "tests x86_64 6.12: 3 passed, 0 failed",
                "tests x86_64 6.12: 2 passed, 1 failed",
            )
            .replace("ok. 3 passed; 0 failed", "FAILED. 2 passed; 1 failed")
            .replace(
                "vm: running lock",
                "vm: running lock\ntest it_locks ... FAILED",
            );
        let r = checked(&text);
        assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
        assert!(r.problems[0].contains("lock::it_locks"));
        // The script's sums must agree with libtest's lines.
        let r =
            checked(&PASSING.replace("tests x86_64 6.12: 3 passed", "tests x86_64 6.12: 4 passed"));
        assert!(r.problems[0].contains("result lines say 3 passed"));
    }

    #[test]
    fn pid1_must_lock_something() {
        let mut r = Report::default();
        check_pid1(&console("mlock-init: locked VmLck=148 kB"), &mut r);
        assert_eq!((r.pid1, r.problems.len()), (Some(148), 0));
        let mut r = Report::default();
        check_pid1(&console("mlock-init: failed: no CAP_IPC_LOCK"), &mut r);
        assert_eq!((r.pid1, r.problems.len()), (None, 1));
    }
}
