//! Limits, capability and the lock policy, on the real kernel, each
//! scenario in a forked child.

mod common;

use common::*;
use mlock::limits::Limit;
use mlock::{Config, Error, Flags, Outcome};

#[test]
fn memlock_limit_reads_what_setrlimit_set() {
    run(|| {
        // Keep the hard limit: raising it needs CAP_SYS_RESOURCE, which a
        // container's root may lack.
        set_memlock(64 * 1024, 1 << 20);
        let limit = mlock::limits::memlock_limit().map_err(|e| e.to_string())?;
        ensure(
            limit
                == Limit {
                    soft: Some(64 * 1024),
                    hard: Some(1 << 20),
                },
            || format!("{limit:?}"),
        )
    });
}

#[test]
fn raise_memlock_limit_lifts_soft_to_hard_without_privilege() {
    run(|| {
        set_memlock(0, 1 << 20);
        drop_to_nobody();
        let raised = mlock::limits::raise_memlock_limit().map_err(|e| e.to_string())?;
        let want = Limit {
            soft: Some(1 << 20),
            hard: Some(1 << 20),
        };
        ensure(raised == want, || format!("raised to {raised:?}"))?;
        ensure(mlock::limits::memlock_limit() == Ok(want), || {
            "not in force".into()
        })?;
        // Raising the hard limit needs CAP_SYS_RESOURCE.
        let err = mlock::limits::set_memlock_limit(Limit {
            soft: None,
            hard: None,
        })
        .unwrap_err();
        ensure(err == Error::NeedsCapSysResource, || format!("{err:?}"))?;
        ensure(err.to_string().contains("CAP_SYS_RESOURCE"), || {
            err.to_string()
        })
    });
}

#[test]
fn ipc_lock_follows_the_effective_set() {
    use mlock::limits::{ipc_lock, IpcLock};
    run(|| {
        ensure(ipc_lock() == Ok(IpcLock::Honoured), || {
            format!("root: {:?}", ipc_lock())
        })?;
        drop_to_nobody();
        ensure(ipc_lock() == Ok(IpcLock::Absent), || {
            format!("nobody: {:?}", ipc_lock())
        })
    });
}

#[test]
fn lock_with_reports_the_flags_that_took_effect() {
    run(|| {
        let outcome = mlock::lock_with(&Config::SWAP_DAEMON).map_err(|e| e.to_string())?;
        ensure(
            outcome == Outcome::Done(Flags::CURRENT | Flags::FUTURE),
            || format!("{outcome:?}"),
        )?;
        // Locked now: the crate's reading and the file's agree (FUTURE
        // locks what each read allocates, so the two can differ a little).
        let ours = mlock::locked_bytes().map_err(|e| e.to_string())?;
        let lck = vm_lck_kb();
        ensure(ours > 0 && lck > 0 && ours / 1024 <= lck, || {
            format!("locked_bytes {ours}, VmLck {lck} kB")
        })
    });
}

#[test]
fn best_effort_reports_failure_and_required_returns_it() {
    run(|| {
        set_memlock(0, 0);
        drop_to_nobody();
        let best = mlock::lock_with(&Config::SWAP_DAEMON);
        ensure(best == Ok(Outcome::Failed(Error::PermissionDenied)), || {
            format!("best-effort: {best:?}")
        })?;
        let required =
            mlock::lock_with(&Config::SWAP_DAEMON.with_requirement(mlock::Requirement::Required));
        ensure(required == Err(Error::PermissionDenied), || {
            format!("required: {required:?}")
        })
    });
}

#[test]
fn invalid_flags_are_an_error_even_best_effort() {
    for flags in [Flags::empty(), Flags::ONFAULT] {
        assert_eq!(
            mlock::lock_with(&Config::new(flags)),
            Err(Error::InvalidArgument)
        );
    }
}

/// Tests that make a system call fail, or stop in it, under a seccomp
/// filter: QEMU user mode implements no seccomp, so they run natively and in
/// the VMs (the harness filters `seccomp::` out of QEMU user runs).
mod seccomp {
    use super::*;

    #[test]
    fn onfault_rejected_by_the_kernel_is_retried_without_it() {
        let flags = Flags::CURRENT | Flags::FUTURE | Flags::ONFAULT;
        run(|| {
            if under_qemu_user() {
                // QEMU user mode cannot install seccomp filters; it passes
                // MCL_ONFAULT to the host kernel, which accepts it.
                let outcome = mlock::lock_with(&Config::new(flags)).map_err(|e| e.to_string())?;
                return ensure(outcome == Outcome::Done(flags), || format!("{outcome:?}"));
            }
            // A kernel before 4.4 answers EINVAL to MCL_ONFAULT; make this one
            // do so for real.
            fail_syscall_with(
                libc::SYS_mlockall,
                libc::EINVAL,
                When::ArgHasBits(0, libc::MCL_ONFAULT as u32),
            );
            let outcome = mlock::lock_with(&Config::new(flags)).map_err(|e| e.to_string())?;
            ensure(
                outcome == Outcome::Done(Flags::CURRENT | Flags::FUTURE) && vm_lck_kb() > 0,
                || format!("retry: {outcome:?}"),
            )?;
            mlock::unlock_all().map_err(|e| e.to_string())?;
            let no_retry = Config::new(flags).with_onfault_retry(false);
            let outcome = mlock::lock_with(&no_retry);
            ensure(
                outcome == Ok(Outcome::Failed(Error::InvalidArgument)),
                || format!("no retry: {outcome:?}"),
            )
        });
    }
}
