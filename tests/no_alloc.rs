//! None of the crate's calls allocates: a counting global allocator sees
//! zero allocations across each of them. Counted per thread, so the
//! harness's other threads cannot disturb the count; the calls that change
//! process state run in a forked child.

mod common;

#[path = "common/counting_alloc.rs"]
mod counting_alloc;

use common::*;
use counting_alloc::allocations;
use mlock::secret::{Backing, LockedBuf, SealedBuf};
use mlock::{Config, Error, Flags, Outcome};

#[test]
fn locking_calls_do_not_allocate() {
    let result = in_child(|| {
        let data = vec![7u8; 64 * 1024];
        let ((on_fault, outcome, empty), n) = allocations(|| {
            mlock::lock_all(Flags::FUTURE).unwrap();
            mlock::unlock_all().unwrap();
            mlock::lock(&data).unwrap();
            let on_fault = mlock::lock_on_fault(&data);
            mlock::unlock(&data).unwrap();
            drop(mlock::LockGuard::new(&data).unwrap());
            let mut key = LockedBuf::<32>::new().unwrap();
            key.as_mut()[0] = 1;
            drop(key);
            drop(LockedBuf::<32>::with_backing(Backing::Anonymous).unwrap());
            let mut sealed = SealedBuf::<32>::new().unwrap();
            sealed.with_mut(|b| b[0] = 1);
            drop(sealed);
            drop(mlock::secret::disable_core_dumps_with_guard().unwrap());
            mlock::limits::memlock_limit().unwrap();
            mlock::limits::raise_memlock_limit().unwrap();
            mlock::limits::ipc_lock().unwrap();
            mlock::daemon::audit_threads().unwrap();
            mlock::secret::is_dumpable().unwrap();
            let outcome = mlock::lock_with(&Config::new(Flags::FUTURE)).unwrap();
            let empty = mlock::lock_all(Flags::empty());
            mlock::secret::disable_core_dumps().unwrap();
            (on_fault, outcome, empty)
        });
        ensure(n == 0, || format!("{n} allocations"))?;
        // The calls did their work (QEMU user mode has no mlock2).
        let want = if under_qemu_user() {
            Err(Error::Unsupported)
        } else {
            Ok(())
        };
        ensure_eq(on_fault, want, "lock_on_fault")?;
        ensure_eq(outcome, Outcome::Done(Flags::FUTURE), "lock_with(FUTURE)")?;
        ensure_eq(empty, Err(Error::InvalidArgument), "lock_all(empty)")
    });
    result.unwrap();
}

#[test]
fn status_calls_do_not_allocate() {
    let text = std::fs::read("/proc/self/status").unwrap();
    let ((locked, garbage, text), n) = allocations(|| {
        mlock::status().unwrap();
        mlock::locked_bytes().unwrap();
        let locked = mlock::is_locked();
        mlock::Status::parse(&text).unwrap();
        // Not a line the parser knows: no field, no error.
        let garbage = mlock::Status::parse(&[0xff; 300]).map(|s| s.locked_bytes());
        (locked, garbage, mlock::Error::ResourceLimit.as_str())
    });
    assert_eq!(n, 0, "{n} allocations");
    assert_eq!(locked, Ok(false), "nothing is locked in the harness");
    assert_eq!(garbage, Ok(None));
    assert!(text.contains("RLIMIT_MEMLOCK"), "{text}");
}

#[test]
fn preflight_and_cgroup_reads_do_not_allocate() {
    let ((preflight, cgroup), n) = allocations(|| {
        let preflight = mlock::limits::preflight(mlock::Flags::CURRENT | mlock::Flags::FUTURE);
        (
            preflight.map(drop),
            mlock::limits::cgroup_memory().map(drop),
        )
    });
    assert_eq!(n, 0, "{n} allocations");
    // Both read what they need (this machine has /proc and a cgroup).
    assert_eq!(preflight, Ok(()));
    assert_eq!(cgroup, Ok(()));
}

#[test]
fn the_counter_sees_allocations() {
    // Guards against a counter that never counts.
    let ((), n) = allocations(|| drop(std::hint::black_box(vec![1u8; 10])));
    assert_eq!(n, 1);
}
