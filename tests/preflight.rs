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
//! Each scenario is a case of its own (libtest-mimic, `harness = false`),
//! run one after another on the main thread. A limit at or above
//! `VmSize` must fit under the hard `RLIMIT_MEMLOCK`, which a process
//! without `CAP_SYS_RESOURCE` cannot raise (8 MiB here); a single-threaded
//! process is about 3 MiB, where the harness's threads, their stacks and
//! malloc arenas would make it 150 MiB. Forking from one thread also
//! means no other thread can hold a lock the child needs. A scenario this
//! machine cannot set up (a limit above the hard one without
//! `CAP_SYS_RESOURCE`, a user namespace under QEMU user mode) is reported
//! as ignored, with the reason; `cargo xtask vm`, as root with every
//! capability, runs every one.

mod common;

use common::*;
use libtest_mimic::{Arguments, Failed, Trial};
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
        // Run although it cannot be set up here (`--include-ignored`):
        // the kernel must refuse the limit, and the case fails.
        let got = try_set_memlock(limit);
        ensure(got == Err(Error::NeedsCapSysResource), || {
            format!("{why} (wanted {limit:?}), yet setting it returned {got:?}")
        })?;
        return Err(format!("this case cannot be set up here: {why}"));
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
        // Under QEMU user mode EINVAL: the emulator's own threads make the
        // process multi-threaded (the case is ignored there).
        let e = std::io::Error::last_os_error();
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

/// One generated case: its name, and what this machine lacks to set it up,
/// if anything (the case is then reported as ignored, with that in its
/// kind, and fails if run with `--include-ignored`).
fn case(
    name: String,
    cannot: Option<&'static str>,
    body: impl FnOnce() -> Result<(), String> + Send + 'static,
) -> Trial {
    let ignored = cannot.is_some();
    let trial = Trial::test(name, move || in_child(body).map_err(Failed::from));
    match cannot {
        Some(lacks) => trial.with_kind(lacks).with_ignored_flag(ignored),
        None => trial,
    }
}

fn main() {
    let mut args = Arguments::from_args();
    // One thread: the cases fork from the main thread (see the file).
    args.test_threads = Some(1);
    let qemu = under_qemu_user();
    let size = mlock::status().unwrap().size_bytes().unwrap();
    let hard = hard_limit();
    // A case this machine cannot set up, known before it runs.
    let limit_out_of_reach =
        |soft: Soft| unavailable(soft.bytes(size, hard)).map(|_| "needs CAP_SYS_RESOURCE");
    let mut trials = Vec::new();
    for soft in LIMITS {
        for flags in FLAG_SETS {
            for privileged in [false, true] {
                let who = if privileged { "root" } else { "nobody" };
                trials.push(case(
                    format!("{soft:?} {flags:?} {who}"),
                    limit_out_of_reach(soft),
                    move || scenario(flags, soft, privileged),
                ));
            }
        }
    }
    // unshare(CLONE_NEWUSER) is EINVAL under QEMU user mode, whose own
    // threads make the process multi-threaded.
    let namespace = qemu.then_some("not under QEMU user mode");
    for soft in [Soft::Zero, Soft::Small, Soft::Hard] {
        for flags in FLAG_SETS {
            trials.push(case(
                format!("no /proc, {soft:?} {flags:?}"),
                limit_out_of_reach(soft),
                move || scenario_without_proc(flags, soft),
            ));
            trials.push(case(
                format!("own user namespace, {soft:?} {flags:?}"),
                limit_out_of_reach(soft).or(namespace),
                move || scenario_user_namespace(flags, soft),
            ));
        }
    }
    trials.push(case("fix text".into(), None, scenario_fix_text));
    println!(
        "preflight vs lock_all: VmSize {size} B, hard RLIMIT_MEMLOCK {hard:?}, \
         CAP_SYS_RESOURCE {}, QEMU user mode {qemu}; a case ignored as \
         [needs CAP_SYS_RESOURCE] wants a soft limit above the hard one",
        cap_sys_resource()
    );
    libtest_mimic::run(&args, trials).exit();
}
