//! None of the crate's calls allocates: a counting global allocator sees
//! zero allocations across each of them. Counted per thread, so the
//! harness's other threads cannot disturb the count; the calls that change
//! process state run in a forked child.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::*;
use mlock::{Config, Flags, LockedBuf};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: defers every operation to the system allocator unchanged; the
// counter is a const-initialised thread-local, which does not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` and returns how many allocations this thread made meanwhile.
fn allocations(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

#[test]
fn locking_calls_do_not_allocate() {
    let result = in_child(|| {
        let data = vec![7u8; 64 * 1024];
        let n = allocations(|| {
            mlock::lock_all(Flags::FUTURE).unwrap();
            mlock::unlock_all().unwrap();
            mlock::lock(&data).unwrap();
            let _ = mlock::lock_on_fault(&data);
            mlock::unlock(&data).unwrap();
            drop(mlock::LockGuard::new(&data).unwrap());
            let mut key = LockedBuf::<32>::new().unwrap();
            key.as_mut()[0] = 1;
            drop(key);
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
    let n = allocations(|| {
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
fn the_counter_sees_allocations() {
    // Guards against a counter that never counts.
    let n = allocations(|| drop(std::hint::black_box(vec![1u8; 10])));
    assert_eq!(n, 1);
}
