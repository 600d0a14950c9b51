//! Secrets on the real kernel: LockedBuf's pages are locked and marked
//! "do not dump" (smaps `VmFlags: dd`), and core dumps can be disabled for
//! the process. The VM tier (`cargo xtask vm`) proves the dump exclusion by
//! searching a real core file.

mod common;

use common::*;
use mlock::{Error, LockedBuf};

/// The `VmFlags` of the mapping that holds `addr`, from `/proc/self/smaps`.
fn vm_flags(addr: usize) -> String {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut inside = false;
    for line in smaps.lines() {
        if let Some((range, _)) = line.split_once(' ') {
            if let Some((start, end)) = range.split_once('-') {
                if let (Ok(start), Ok(end)) = (
                    usize::from_str_radix(start, 16),
                    usize::from_str_radix(end, 16),
                ) {
                    inside = (start..end).contains(&addr);
                    continue;
                }
            }
        }
        if inside {
            if let Some(flags) = line.strip_prefix("VmFlags:") {
                return flags.trim().to_string();
            }
        }
    }
    panic!("no mapping holds {addr:#x}");
}

#[test]
fn locked_buf_is_locked_excluded_from_dumps_and_cleared() {
    let result = in_child(|| {
        let before = vm_lck_kb();
        let mut key = LockedBuf::<48>::new().map_err(|e| e.to_string())?;
        ensure(key.as_bytes() == &[0; 48], || "not zeroed at start".into())?;
        key.as_mut().copy_from_slice(&[0xA5; 48]);
        ensure(key.as_ref()[47] == 0xA5, || "write".into())?;
        let addr = key.as_ref().as_ptr() as usize;
        ensure(addr % page_size() == 0, || "not page aligned".into())?;
        let flags = vm_flags(addr);
        // QEMU user mode answers MADV_DONTDUMP with success and drops it
        // (its madvise passes almost no advice to the host), so only the
        // lock shows there; the VM tier proves the dump exclusion.
        let dd = under_qemu_user() || flags.split(' ').any(|f| f == "dd");
        ensure(dd && flags.split(' ').any(|f| f == "lo"), || {
            format!("VmFlags {flags} lack dd (dontdump) or lo (locked)")
        })?;
        ensure(vm_lck_kb() == before + (page_size() / 1024) as u64, || {
            format!("VmLck {} kB, was {before} kB", vm_lck_kb())
        })?;
        // Moving the handle does not move the secret.
        let moved = key;
        ensure(moved.as_ref().as_ptr() as usize == addr, || "moved".into())?;
        let mut moved = moved;
        moved.clear();
        ensure(moved.as_bytes() == &[0; 48], || "clear left bytes".into())?;
        ensure(!format!("{moved:?}").contains("165"), || {
            "Debug leaks".into()
        })?;
        drop(moved);
        ensure(vm_lck_kb() == before, || "drop did not unlock".into())
    });
    result.unwrap();
}

#[test]
fn locked_buf_reports_the_memlock_limit() {
    let result = in_child(|| {
        set_memlock(0, 0);
        drop_to_nobody();
        let err = LockedBuf::<32>::new().unwrap_err();
        ensure(err == Error::PermissionDenied, || format!("{err:?}"))?;
        ensure(
            LockedBuf::<0>::new().unwrap_err() == Error::InvalidArgument,
            || "N = 0".into(),
        )
    });
    result.unwrap();
}

#[test]
fn exclude_and_include_in_dump_toggle_the_dontdump_flag() {
    let map = Anon::new(2 * page_size());
    let dontdump = || vm_flags(map.addr as usize).split(' ').any(|f| f == "dd");
    mlock::exclude_from_dump(map.slice()).unwrap();
    // QEMU user mode accepts the advice and drops it (see above).
    assert!(dontdump() || under_qemu_user());
    mlock::include_in_dump(map.slice()).unwrap();
    assert!(!dontdump());
    // madvise wants a page-aligned start (QEMU checks that too).
    assert_eq!(
        mlock::exclude_from_dump(&map.slice()[1..]),
        Err(Error::InvalidArgument)
    );
    assert_eq!(mlock::exclude_from_dump(&[]), Ok(()));
}

#[test]
fn disable_core_dumps_clears_dumpable_and_the_core_limit() {
    let result = in_child(|| {
        ensure(mlock::is_dumpable() == Ok(true), || {
            "dumpable at start".into()
        })?;
        mlock::disable_core_dumps().map_err(|e| e.to_string())?;
        ensure(mlock::is_dumpable() == Ok(false), || {
            "still dumpable".into()
        })?;
        let mut lim = libc::rlimit {
            rlim_cur: 1,
            rlim_max: 1,
        };
        // SAFETY: `lim` is a valid out-parameter.
        unsafe { libc::getrlimit(libc::RLIMIT_CORE, &mut lim) };
        ensure(lim.rlim_cur == 0 && lim.rlim_max == 0, || {
            format!("RLIMIT_CORE {} {}", lim.rlim_cur, lim.rlim_max)
        })?;
        // A crash now leaves no core: the kernel reports no dump.
        // SAFETY: fork; the grandchild only aborts.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: abort ends the process.
            unsafe { libc::abort() };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        ensure(
            libc::WIFSIGNALED(status) && !libc::WCOREDUMP(status),
            || format!("wait status {status:#x}"),
        )
    });
    result.unwrap();
}
