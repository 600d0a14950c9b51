//! None of the crate's calls allocates: a counting global allocator sees
//! zero allocations across each of them. Counted per thread, so the
//! harness's other threads cannot disturb the count; the calls that change
//! process state run in a forked child.

mod common;

#[path = "common/counting_alloc.rs"]
mod counting_alloc;

use common::*;
use counting_alloc::allocations;
use mlock::{Backing, Config, Flags, LockedBuf, SealedBuf};

#[test]
fn locking_calls_do_not_allocate() {
    let result = in_child(|| {
        let data = vec![7u8; 64 * 1024];
        let ((), n) = allocations(|| {
            mlock::lock_all(Flags::FUTURE).unwrap();
            mlock::unlock_all().unwrap();
            mlock::lock(&data).unwrap();
            let _ = mlock::lock_on_fault(&data);
            mlock::unlock(&data).unwrap();
            drop(mlock::LockGuard::new(&data).unwrap());
            let mut key = LockedBuf::<32>::new().unwrap();
            key.as_mut()[0] = 1;
            drop(key);
            drop(LockedBuf::<32>::with_backing(Backing::Anonymous).unwrap());
            let mut sealed = SealedBuf::<32>::new().unwrap();
            sealed.with_mut(|b| b[0] = 1);
            drop(sealed);
            drop(mlock::disable_core_dumps_with_guard().unwrap());
            mlock::memlock_limit().unwrap();
            mlock::raise_memlock_limit().unwrap();
            mlock::has_ipc_lock().unwrap();
            mlock::is_dumpable().unwrap();
            let _ = mlock::lock_with(&Config::new(Flags::FUTURE)).unwrap();
            let _ = mlock::lock_all(Flags::empty());
            mlock::disable_core_dumps().unwrap();
        });
        ensure(n == 0, || format!("{n} allocations"))
    });
    result.unwrap();
}

#[test]
fn status_calls_do_not_allocate() {
    let text = std::fs::read("/proc/self/status").unwrap();
    let ((), n) = allocations(|| {
        mlock::status().unwrap();
        mlock::locked_bytes().unwrap();
        let _ = mlock::is_locked();
        mlock::Status::parse(&text).unwrap();
        let _ = mlock::Status::parse(&[0xff; 300]);
        let _ = mlock::Error::ResourceLimit.as_str();
    });
    assert_eq!(n, 0, "{n} allocations");
}

#[test]
fn preflight_and_cgroup_reads_do_not_allocate() {
    let ((), n) = allocations(|| {
        let _ = mlock::preflight(mlock::Flags::CURRENT | mlock::Flags::FUTURE);
        let _ = mlock::cgroup_memory();
    });
    assert_eq!(n, 0, "{n} allocations");
}

#[test]
fn the_counter_sees_allocations() {
    // Guards against a counter that never counts.
    let ((), n) = allocations(|| drop(std::hint::black_box(vec![1u8; 10])));
    assert_eq!(n, 1);
}
