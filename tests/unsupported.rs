//! What a target without the raw backend gets: every call answers
//! `Unsupported`, nothing panics.
//!
//! `cargo xtask test` runs this binary twice on the host: once as built
//! (the backend is there, and `BACKEND_AVAILABLE` must say so on every
//! supported target), and once with `MLOCK_FORCE_UNSUPPORTED=1`, which
//! makes build.rs select the stub backend that no-OS targets such as
//! `riscv64gc-unknown-none-elf` get.

use mlock::secret::{Backing, LockedBuf, SealedBuf};
use mlock::{Config, Error, Flags, Outcome};

#[test]
fn backend_matches_the_build() {
    let forced = std::env::var_os("MLOCK_FORCE_UNSUPPORTED").is_some_and(|v| v == "1");
    let supported_target = cfg!(all(
        target_os = "linux",
        any(
            target_arch = "x86_64",
            target_arch = "aarch64",
            target_arch = "riscv64",
            target_arch = "x86",
            target_arch = "arm",
            target_arch = "s390x",
            all(target_arch = "powerpc64", target_endian = "little")
        )
    ));
    assert_eq!(mlock::BACKEND_AVAILABLE, supported_target && !forced);
}

#[test]
fn the_backend_answers_or_every_call_is_unsupported() {
    if mlock::BACKEND_AVAILABLE {
        // The real backend answers the read-only calls; the other test
        // binaries cover what it does.
        assert!(mlock::limits::memlock_limit().is_ok());
        assert!(mlock::limits::ipc_lock().is_ok());
        assert!(mlock::secret::is_dumpable().is_ok());
        assert!(mlock::status().is_ok());
        assert!(mlock::limits::cgroup_memory().is_ok());
        return;
    }
    let u = Err(Error::Unsupported);
    assert_eq!(mlock::lock_all(Flags::CURRENT), u);
    assert_eq!(mlock::unlock_all(), u);
    let data = [0u8; 64];
    assert_eq!(mlock::lock(&data), u);
    assert_eq!(mlock::lock_on_fault(&data), u);
    assert_eq!(mlock::unlock(&data), u);
    // SAFETY: `data` is this function's own; nothing else holds it locked.
    unsafe {
        assert_eq!(mlock::lock_raw(data.as_ptr(), data.len()), u);
        assert_eq!(mlock::lock_on_fault_raw(data.as_ptr(), data.len()), u);
        assert_eq!(mlock::unlock_raw(data.as_ptr(), data.len()), u);
    }
    assert_eq!(mlock::secret::exclude_from_dump(&data), u);
    assert_eq!(mlock::secret::disable_core_dumps(), u);
    assert_eq!(mlock::secret::is_dumpable(), Err(Error::Unsupported));
    assert_eq!(mlock::limits::memlock_limit(), Err(Error::Unsupported));
    assert_eq!(
        mlock::limits::raise_memlock_limit(),
        Err(Error::Unsupported)
    );
    assert_eq!(mlock::limits::ipc_lock(), Err(Error::Unsupported));
    assert_eq!(mlock::status(), Err(Error::Unsupported));
    assert_eq!(mlock::daemon::audit_threads(), Err(Error::Unsupported));
    assert_eq!(mlock::locked_bytes(), Err(Error::Unsupported));
    assert_eq!(mlock::is_locked(), Err(Error::Unsupported));
    assert_eq!(LockedBuf::<16>::new().unwrap_err(), Error::Unsupported);
    let anon = LockedBuf::<16>::with_backing(Backing::Anonymous);
    assert_eq!(anon.unwrap_err(), Error::Unsupported);
    assert_eq!(SealedBuf::<16>::new().unwrap_err(), Error::Unsupported);
    assert_eq!(
        mlock::secret::disable_core_dumps_with_guard().unwrap_err(),
        Error::Unsupported
    );
    assert_eq!(mlock::boot::mount_proc(), Err(Error::Unsupported));
    assert_eq!(
        mlock::boot::write_all(mlock::boot::Output::STDOUT, b"x"),
        Err(Error::Unsupported)
    );
    // Invalid flags are still rejected as such; valid ones are unsupported.
    assert_eq!(mlock::lock_all(Flags::empty()), Err(Error::InvalidArgument));
    assert_eq!(
        mlock::lock_with(&Config::SWAP_DAEMON),
        Ok(Outcome::Failed(Error::Unsupported))
    );
    assert_eq!(
        mlock::lock_with(&Config::SWAP_DAEMON.with_requirement(mlock::Requirement::Required)),
        Err(Error::Unsupported)
    );
    // Preflight predicts what lock_all will say.
    let check = mlock::limits::preflight(Flags::CURRENT | Flags::FUTURE).unwrap();
    assert_eq!(check.predicted_error(), Some(Error::Unsupported));
    assert!(!check.will_succeed());
    assert_eq!(check.cgroup(), None);
    assert!(!check.near_cgroup_limit());
    assert_eq!(mlock::limits::cgroup_memory(), Err(Error::Unsupported));
    assert_eq!(
        mlock::status::StatusReader::open().unwrap_err(),
        Error::Unsupported
    );
    // The swap-daemon kit.
    assert_eq!(mlock::daemon::set_io_flusher(), u);
    assert_eq!(mlock::daemon::is_io_flusher(), Err(Error::Unsupported));
    assert_eq!(mlock::daemon::oom_score_adj(), Err(Error::Unsupported));
    assert_eq!(mlock::daemon::set_oom_score_adj(-100), u);
    assert_eq!(mlock::daemon::set_realtime(10), u);
    assert_eq!(mlock::daemon::is_realtime(), Err(Error::Unsupported));
    let mut region = [0u8; 64];
    // Pre-faulting falls back to touching the pages, which needs no kernel.
    assert_eq!(
        mlock::daemon::prefault(&mut region),
        Ok(mlock::daemon::Prefault::Touched)
    );
    // Best-effort hardening reports each kernel step as unsupported.
    let report = mlock::daemon::harden_swap_daemon(&mlock::daemon::Hardening::default()).unwrap();
    assert_eq!(
        report.step(mlock::daemon::Stage::Lock),
        mlock::Outcome::Failed(Error::Unsupported)
    );
    let realtime = mlock::daemon::harden_swap_daemon(
        &mlock::daemon::Hardening::default().with_realtime(10, mlock::Requirement::BestEffort),
    )
    .unwrap();
    assert_eq!(
        realtime.realtime,
        mlock::Outcome::Failed(Error::Unsupported)
    );
    assert!(!report.is_complete());
    // Parsing needs no backend.
    let status = mlock::Status::parse(b"VmLck:\t 4 kB\n").unwrap();
    assert_eq!(status.locked_bytes(), Some(4096));
}
