//! `preflight` against the real outcome: in forked children, as root and
//! as an unprivileged user (setuid 65534), with `RLIMIT_MEMLOCK` at 0, far
//! below `VmSize`, one byte below it, exactly at it, within a page above
//! it, far above it and unlimited, for every flag set `lock_all` accepts
//! and two it refuses, with and without `/proc`, and in a user namespace
//! of its own (where `CAP_IPC_LOCK` is effective but does not count, as
//! for a container's root). The prediction must be
//! exactly what `lock_all` then returns, in every scenario.
//!
//! Under QEMU user mode (`MLOCK_TEST_QEMU_USER=1`) `VmSize` is the
//! emulator's, and so is the `total_vm` the host kernel checks: the same
//! expectations hold there.
//!
//! This binary has no libtest harness (`harness = false`): it runs its
//! scenarios one after another from a single thread. A limit at or above
//! `VmSize` must fit under the hard `RLIMIT_MEMLOCK`, which a process
//! without `CAP_SYS_RESOURCE` cannot raise (8 MiB here); a single-threaded
//! process is about 3 MiB, where the harness's threads, their stacks and
//! malloc arenas would make it 150 MiB. Forking from one thread also
//! means no other thread can hold a lock the child needs. A scenario
//! that still cannot be set up (the emulator's `VmSize` under QEMU, or
//! `unlimited` without `CAP_SYS_RESOURCE`) checks that the kernel refuses
//! the limit, and is listed loudly in the output as not reproduced here;
//! `cargo xtask vm`, as root with every capability, reproduces it.

mod common;

use common::*;
use mlock::limits::Preflight;
use mlock::{Error, Flags};

const C: Flags = Flags::CURRENT;
const F: Flags = Flags::FUTURE;
const O: Flags = Flags::ONFAULT;

/// Every valid set, then two the kernel refuses with EINVAL.
const FLAG_SETS: [Flags; 8] = [
    C,
    F,
    C.union(F),
    C.union(O),
    F.union(O),
    C.union(F).union(O),
    O,
    Flags::empty(),
];

/// The soft limit of a scenario, from the child's `VmSize` in bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Soft {
    Zero,
    Small,
    SizeMinusOne,
    Size,
    SizePlusPartPage,
    /// The hard limit as it is: the most an unprivileged setup can grant.
    Hard,
    Unlimited,
}

const LIMITS: [Soft; 7] = [
    Soft::Zero,
    Soft::Small,
    Soft::SizeMinusOne,
    Soft::Size,
    Soft::SizePlusPartPage,
    Soft::Hard,
    Soft::Unlimited,
];

impl Soft {
    /// The limit in bytes (`None`: unlimited).
    fn bytes(self, size: u64, hard: Option<u64>) -> Option<u64> {
        match self {
            Soft::Zero => Some(0),
            Soft::Small => Some(64 * 1024),
            Soft::SizeMinusOne => Some(size - 1),
            Soft::Size => Some(size),
            Soft::SizePlusPartPage => Some(size + page_size() as u64 - 1),
            Soft::Hard => hard,
            Soft::Unlimited => None,
        }
    }
}

/// What the kernel must answer, worked out here from its rules in
/// `mm/mlock.c` (EINVAL, then EPERM, then `total_vm > limit >> PAGE_SHIFT`
/// in pages), independently of the crate.
fn expected(flags: Flags, privileged: bool, soft: Option<u64>, size: u64) -> Option<Error> {
    let page = page_size() as u64;
    if !flags.is_valid() {
        return Some(Error::InvalidArgument);
    }
    if privileged {
        return None;
    }
    match soft {
        Some(0) => Some(Error::PermissionDenied),
        Some(soft) if flags.contains(C) && size.div_ceil(page) > soft / page => {
            Some(Error::ResourceLimit)
        }
        _ => None,
    }
}

/// The hard `RLIMIT_MEMLOCK` (`None`: unlimited).
fn hard_limit() -> Option<u64> {
    mlock::limits::memlock_limit().expect("prlimit64").hard
}

/// What one scenario needs that this process cannot set up, if anything.
fn unavailable(soft: Option<u64>) -> Option<String> {
    let hard = hard_limit();
    let fits = match (soft, hard) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(s), Some(h)) => s <= h,
    };
    if fits || cap_sys_resource() {
        return None;
    }
    Some(format!(
        "the soft RLIMIT_MEMLOCK wanted is above the hard limit {hard:?}, and raising it \
         needs CAP_SYS_RESOURCE, which this process lacks"
    ))
}

/// Sets `RLIMIT_MEMLOCK` soft and hard, without panicking.
fn try_set_memlock(limit: Option<u64>) -> Result<(), Error> {
    mlock::limits::set_memlock_limit(mlock::limits::Limit {
        soft: limit,
        hard: limit,
    })
    .map(drop)
}

/// One scenario, in a forked child: set the limit from the current
/// `VmSize`, optionally drop to nobody, predict, lock, unlock, compare.
/// Nothing between the reading of `VmSize` and `lock_all` maps memory, so
/// `VmSize` holds still.
fn scenario(flags: Flags, soft: Soft, privileged: bool) -> Result<(), String> {
    let (size, limit) = size_and_limit(soft)?;
    if let Some(why) = unavailable(limit) {
        // Not reproducible here: the kernel must refuse the limit.
        let got = try_set_memlock(limit);
        return ensure(got == Err(Error::NeedsCapSysResource), || {
            format!("{why} (wanted {limit:?}), yet setting it returned {got:?}")
        })
        .and(Err(format!("{NOT_HERE}{why}")));
    }
    try_set_memlock(limit).map_err(|e| format!("setting RLIMIT_MEMLOCK {limit:?}: {e}"))?;
    if !privileged {
        drop_to_nobody();
    }
    let check = mlock::limits::preflight(flags);
    let real = mlock::lock_all(flags);
    let _ = mlock::unlock_all();
    // From here on, allocating is safe again.
    let context = format!(
        "flags {flags:?}, limit {limit:?}, VmSize {size}, {}",
        if privileged { "root" } else { "uid 65534" }
    );
    compare(&context, check, real, flags, privileged, limit, size)
}

/// Checks a prediction three ways: against the real outcome, against the
/// kernel's rules for the inputs the scenario set up, and in its numbers.
fn compare(
    context: &str,
    check: Result<Preflight, Error>,
    real: Result<(), Error>,
    flags: Flags,
    privileged: bool,
    limit: Option<u64>,
    size: u64,
) -> Result<(), String> {
    let check = check.map_err(|e| format!("{context}: preflight failed: {e}"))?;
    ensure(check.predicted_error() == real.err(), || {
        format!(
            "{context}: predicted {:?}, lock_all returned {real:?}",
            check.predicted_error()
        )
    })?;
    let want = expected(flags, privileged, limit, size);
    ensure(real.err() == want, || {
        format!("{context}: lock_all returned {real:?}, the kernel's rules say {want:?}")
    })?;
    numbers_agree(&check, flags, privileged, limit, Some(size))
        .map_err(|m| format!("{context}: {m}"))
}

/// Runs the calls a scenario makes once, to no effect (empty flags are
/// refused before any syscall), so that under QEMU user mode the emulator
/// has translated their code, and mapped what that takes, before the
/// scenario reads `VmSize`.
fn warm_up() {
    let _ = mlock::limits::preflight(Flags::empty());
    let _ = mlock::lock_all(Flags::empty());
    let _ = mlock::status();
}

/// After [`warm_up`]: the `VmSize` a scenario starts from, and the soft
/// limit `soft` means for it.
fn size_and_limit(soft: Soft) -> Result<(u64, Option<u64>), String> {
    warm_up();
    let size = mlock::status()
        .map_err(|e| format!("status: {e}"))?
        .size_bytes()
        .ok_or("no VmSize")?;
    Ok((size, soft.bytes(size, hard_limit())))
}

/// Starts the message of a scenario this machine cannot set up.
const NOT_HERE: &str = "not reproducible here: ";

/// The numbers in the report are the ones the scenario set up.
fn numbers_agree(
    check: &Preflight,
    flags: Flags,
    privileged: bool,
    limit: Option<u64>,
    size: Option<u64>,
) -> Result<(), String> {
    ensure(check.flags() == flags, || {
        format!("flags {:?}", check.flags())
    })?;
    ensure(check.ipc_lock().lifts_limit() == privileged, || {
        format!("ipc_lock {:?}", check.ipc_lock())
    })?;
    ensure(
        check.limit().soft == limit && check.limit().hard == limit,
        || format!("limit {:?}", check.limit()),
    )?;
    // QEMU maps memory of its own as it translates guest code it has not
    // run before, so the emulator's VmSize may have grown a little since
    // the scenario read it; a real kernel's stands still.
    let size_ok = match (check.size_bytes(), size) {
        (Some(got), Some(want)) if under_qemu_user() => (want..want + (64 << 20)).contains(&got),
        (got, want) => got == want,
    };
    ensure(size_ok, || {
        format!("size_bytes {:?}, wanted {size:?}", check.size_bytes())
    })?;
    ensure(check.locked_bytes() == size.map(|_| 0), || {
        format!("locked_bytes {:?}", check.locked_bytes())
    })?;
    ensure(
        check.will_succeed() == check.predicted_error().is_none(),
        || "will_succeed disagrees with predicted_error".into(),
    )?;
    ensure(
        check.fix() == check.predicted_error().as_ref().map(Error::as_str),
        || format!("fix {:?}", check.fix()),
    )
}

/// Without `/proc` the prediction still comes where it does not depend on
/// `VmSize`, and is `ProcUnavailable` where it does; either way it never
/// contradicts `lock_all`.
fn scenario_without_proc(flags: Flags, soft: Soft) -> Result<(), String> {
    private_mount_namespace()?;
    unmount_proc()?;
    ensure(mlock::status() == Err(Error::ProcUnavailable), || {
        "/proc is still there".into()
    })?;
    // Only limits that need no VmSize to set up.
    let limit = soft.bytes(0, hard_limit());
    try_set_memlock(limit).map_err(|e| format!("setting RLIMIT_MEMLOCK {limit:?}: {e}"))?;
    drop_to_nobody();
    let check = mlock::limits::preflight(flags);
    let real = mlock::lock_all(flags);
    let _ = mlock::unlock_all();
    let context = format!("no /proc, flags {flags:?}, limit {limit:?}, uid 65534");
    match check {
        Ok(check) => {
            ensure(check.predicted_error() == real.err(), || {
                format!(
                    "{context}: predicted {:?}, lock_all returned {real:?}",
                    check.predicted_error()
                )
            })?;
            numbers_agree(&check, flags, false, limit, None).map_err(|m| format!("{context}: {m}"))
        }
        // Only where the answer needs VmSize: CURRENT, a finite nonzero
        // limit, no capability.
        Err(Error::ProcUnavailable) => ensure(
            flags.is_valid() && flags.contains(C) && matches!(limit, Some(l) if l > 0),
            || format!("{context}: ProcUnavailable where VmSize is not needed"),
        ),
        Err(e) => Err(format!("{context}: preflight failed: {e}")),
    }
}

/// In a user namespace of its own the process holds every capability,
/// `CAP_IPC_LOCK` included, as `capget(2)` reports it, but the kernel's
/// `capable()` asks about the initial namespace, so `RLIMIT_MEMLOCK` still
/// applies: what a container's root sees. `preflight` must not be fooled.
fn scenario_user_namespace(flags: Flags, soft: Soft) -> Result<(), String> {
    let (size, limit) = size_and_limit(soft)?;
    try_set_memlock(limit).map_err(|e| format!("setting RLIMIT_MEMLOCK {limit:?}: {e}"))?;
    // SAFETY: unshare takes flags only; this forked child is one thread.
    if unsafe { libc::unshare(libc::CLONE_NEWUSER) } != 0 {
        let e = std::io::Error::last_os_error();
        if under_qemu_user() && e.raw_os_error() == Some(libc::EINVAL) {
            // The emulator runs threads of its own, and a process with
            // more than one thread cannot change user namespace.
            return Err(format!(
                "{NOT_HERE}unshare(CLONE_NEWUSER) is EINVAL under QEMU user mode, whose \
                 threads make the process multi-threaded"
            ));
        }
        return Err(format!("unshare(CLONE_NEWUSER): {e}"));
    }
    // The kernel's meaning: effective, but not in the initial namespace.
    let answer = mlock::limits::ipc_lock().map_err(|e| e.to_string())?;
    let check = mlock::limits::preflight(flags);
    let real = mlock::lock_all(flags);
    let _ = mlock::unlock_all();
    let context = format!("own user namespace, flags {flags:?}, limit {limit:?}, VmSize {size}");
    ensure(answer == mlock::limits::IpcLock::InChildNamespace, || {
        format!("{context}: ipc_lock answers {answer:?} in a new user namespace")
    })?;
    compare(&context, check, real, flags, false, limit, size)
}

/// With `RLIMIT_MEMLOCK` at 0, the report names the fix.
fn scenario_fix_text() -> Result<(), String> {
    try_set_memlock(Some(0)).map_err(|e| e.to_string())?;
    drop_to_nobody();
    let check = mlock::limits::preflight(C | F).map_err(|e| e.to_string())?;
    ensure(!check.will_succeed(), || "will succeed with limit 0".into())?;
    let fix = check.fix().unwrap_or_default();
    ensure(
        fix.contains("CAP_IPC_LOCK") && fix.contains("EPERM"),
        || format!("fix text: {fix}"),
    )
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("preflight_agrees_with_lock_all: test");
        return;
    }
    let qemu = under_qemu_user();
    let hard = hard_limit();
    let size = mlock::status().unwrap().size_bytes().unwrap();
    println!(
        "preflight vs lock_all: VmSize {size} B, hard RLIMIT_MEMLOCK {hard:?}, \
         CAP_SYS_RESOURCE {}, QEMU user mode {qemu}",
        cap_sys_resource()
    );
    let (mut passed, mut failed, mut not_here) = (0, 0, Vec::new());
    let mut record = |name: String, outcome: Result<(), String>| match outcome {
        Ok(()) => passed += 1,
        Err(m) if m.starts_with(NOT_HERE) => {
            not_here.push(format!("{name}: {}", &m[NOT_HERE.len()..]))
        }
        Err(m) => {
            failed += 1;
            println!("FAILED {name}: {m}");
        }
    };
    for soft in LIMITS {
        for flags in FLAG_SETS {
            for privileged in [false, true] {
                let who = if privileged { "root" } else { "nobody" };
                record(
                    format!("{soft:?} {flags:?} {who}"),
                    in_child(|| scenario(flags, soft, privileged)),
                );
            }
        }
    }
    for soft in [Soft::Zero, Soft::Small, Soft::Hard] {
        for flags in FLAG_SETS {
            record(
                format!("no /proc, {soft:?} {flags:?}"),
                in_child(|| scenario_without_proc(flags, soft)),
            );
        }
    }
    for soft in [Soft::Zero, Soft::Small, Soft::Hard] {
        for flags in FLAG_SETS {
            record(
                format!("own user namespace, {soft:?} {flags:?}"),
                in_child(|| scenario_user_namespace(flags, soft)),
            );
        }
    }
    record("fix text".into(), in_child(scenario_fix_text));
    // One line per reason, with the scenarios it stopped.
    let mut reasons: Vec<(String, Vec<String>)> = Vec::new();
    for line in &not_here {
        let (name, why) = line.split_once(": ").unwrap_or((line, ""));
        match reasons.iter_mut().find(|(r, _)| r == why) {
            Some((_, names)) => names.push(name.to_string()),
            None => reasons.push((why.to_string(), vec![name.to_string()])),
        }
    }
    for (why, names) in &reasons {
        println!(
            "NOT REPRODUCED HERE ({} scenarios; `cargo xtask vm` runs them as root with every \
             capability): {why}\n  {}",
            names.len(),
            names.join(", ")
        );
    }
    let result = if failed == 0 { "ok" } else { "FAILED" };
    // The libtest line that log readers (`cargo xtask vm`) look for.
    println!("test preflight_agrees_with_lock_all ... {result}");
    println!(
        "\ntest result: {result}. {passed} passed; {failed} failed; 0 ignored; 0 measured; \
         0 filtered out ({} scenarios not reproducible here, listed above)",
        not_here.len()
    );
    if failed > 0 {
        std::process::exit(101);
    }
}
