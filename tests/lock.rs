//! Locking on the real kernel: each scenario runs in a forked child and
//! checks its effect through `/proc/self/status` (VmLck) or smaps.

mod common;

use common::*;
use mlock::{Error, Flags};

const MIB: usize = 1 << 20;

#[test]
fn lock_all_current_locks_most_of_vmsize_and_unlock_all_clears_it() {
    run(|| {
        ensure(vm_lck_kb() == 0, || "VmLck was not 0 at start".into())?;
        mlock::lock_all(Flags::CURRENT).map_err(|e| format!("lock_all: {e}"))?;
        let (lck, size) = (vm_lck_kb(), status_kb("VmSize"));
        ensure(lck * 2 > size, || {
            format!("VmLck {lck} kB is not most of VmSize {size} kB")
        })?;
        // The crate's own reading agrees with std's.
        let mine = mlock::locked_bytes().map_err(|e| e.to_string())?;
        ensure(
            mine == vm_lck_kb() * 1024 && mlock::is_locked() == Ok(true),
            || format!("crate says {mine} bytes, std {} kB", vm_lck_kb()),
        )?;
        mlock::unlock_all().map_err(|e| format!("unlock_all: {e}"))?;
        ensure(vm_lck_kb() == 0, || {
            format!("VmLck {} kB after unlock_all", vm_lck_kb())
        })?;
        ensure(mlock::is_locked() == Ok(false), || {
            "is_locked after unlock_all".into()
        })
    });
}

#[test]
fn lock_all_future_locks_later_mappings() {
    run(|| {
        mlock::lock_all(Flags::FUTURE).map_err(|e| format!("lock_all: {e}"))?;
        ensure(vm_lck_kb() == 0, || {
            "FUTURE alone locked current pages".into()
        })?;
        let map = Anon::new(4 * MIB);
        let lck = vm_lck_kb();
        ensure(lck as usize >= 4 * 1024, || {
            format!("VmLck {lck} kB after a 4 MiB mmap under MCL_FUTURE")
        })?;
        // Without ONFAULT the new mapping is populated at once.
        expect_rss_locked(
            map.addr as usize,
            4096,
            4096,
            "a 4 MiB mmap under MCL_FUTURE",
        )
    });
}

#[test]
fn lock_all_onfault_locks_pages_only_when_touched() {
    run(|| {
        let map = Anon::new(8 * MIB);
        mlock::lock_all(Flags::CURRENT | Flags::ONFAULT).map_err(|e| format!("lock_all: {e}"))?;
        expect_rss_locked(map.addr as usize, 0, 0, "untouched under ONFAULT")?;
        let pages = MIB / page_size();
        map.touch(pages);
        expect_rss_locked(map.addr as usize, 1024, 1024, "after touching 1 MiB")
    });
}

#[test]
fn locked_slice_adds_its_pages() {
    run(|| {
        let map = Anon::new(MIB);
        let before = vm_lck_kb();
        mlock::lock(&map.slice()[..256 * 1024]).map_err(|e| format!("lock: {e}"))?;
        let added = vm_lck_kb() - before;
        ensure(added == 256, || format!("lock of 256 KiB added {added} kB"))?;
        expect_rss_locked(map.addr as usize, 256, 256, "mlock of 256 KiB")?;
        mlock::unlock(&map.slice()[..256 * 1024]).map_err(|e| format!("unlock: {e}"))?;
        ensure(vm_lck_kb() == before, || "unlock did not undo lock".into())
    });
}

#[test]
fn lock_guard_unlocks_on_drop() {
    run(|| {
        let map = Anon::new(MIB);
        let before = vm_lck_kb();
        {
            let guard = mlock::LockGuard::new(map.slice()).map_err(|e| e.to_string())?;
            ensure(guard.region().len() == MIB, || "guard region".into())?;
            ensure(vm_lck_kb() == before + 1024, || "guard did not lock".into())?;
        }
        ensure(vm_lck_kb() == before, || {
            "guard did not unlock on drop".into()
        })
    });
}

#[test]
fn lock_on_fault_defers_locking_or_reports_unsupported_under_qemu() {
    run(|| {
        let map = Anon::new(4 * MIB);
        let result = mlock::lock_on_fault(map.slice());
        if under_qemu_user() {
            // QEMU user mode does not implement mlock2: the crate must say
            // so, and must not have locked anything through mlock instead.
            ensure(result == Err(Error::Unsupported), || {
                format!("under QEMU user mode wanted Unsupported, got {result:?}")
            })?;
            ensure(result.unwrap_err().errno() == Some(libc::ENOSYS), || {
                "errno".into()
            })?;
            ensure(vm_lck_kb() == 0, || "fell back to mlock".into())?;
            // The plain form still works there, through mlock.
            mlock::lock(map.slice()).map_err(|e| format!("lock: {e}"))?;
            return ensure(vm_lck_kb() >= 4096, || "mlock under QEMU".into());
        }
        result.map_err(|e| format!("lock_on_fault: {e}"))?;
        expect_rss_locked(map.addr as usize, 0, 0, "untouched")?;
        // VmLck counts the whole range at once, touched or not: the kernel
        // charges locked_vm for the VMA, not for resident pages.
        ensure(vm_lck_kb() >= 4096, || format!("VmLck {} kB", vm_lck_kb()))?;
        map.touch(MIB / page_size());
        expect_rss_locked(map.addr as usize, 1024, 1024, "after touching 1 MiB")
    });
}

#[test]
fn zero_length_and_overflowing_ranges() {
    // Neither reaches the kernel, so neither changes process state.
    assert_eq!(mlock::lock(&[]), Ok(()));
    assert_eq!(mlock::lock_on_fault(&[]), Ok(()));
    assert_eq!(mlock::unlock(&[]), Ok(()));
    let near_end = (usize::MAX - 100) as *const u8;
    // SAFETY: the range is rejected before any syscall; nothing is locked.
    unsafe {
        assert_eq!(mlock::lock_raw(near_end, 4096), Err(Error::InvalidArgument));
        assert_eq!(
            mlock::lock_on_fault_raw(near_end, 4096),
            Err(Error::InvalidArgument)
        );
        assert_eq!(
            mlock::unlock_raw(near_end, 4096),
            Err(Error::InvalidArgument)
        );
        assert_eq!(mlock::lock_raw(near_end, 0), Ok(()));
    }
}

#[test]
fn invalid_flags_are_rejected_before_the_kernel_and_the_kernel_agrees() {
    for flags in [
        Flags::empty(),
        Flags::ONFAULT,
        Flags::from_bits_retain(1 << 12),
        Flags::CURRENT | Flags::from_bits_retain(1 << 12),
    ] {
        assert!(!flags.is_valid());
        let err = mlock::lock_all(flags).unwrap_err();
        assert_eq!(err, Error::InvalidArgument, "{flags:?}");
        assert_eq!(err.errno(), Some(libc::EINVAL));
    }
    // The kernel rejects the same sets; checked through libc, so that the
    // crate's pre-check is not the only witness. None of these locks.
    for bits in [0, libc::MCL_ONFAULT, 1 << 12] {
        // SAFETY: mlockall with invalid flags fails without side effects.
        let rc = unsafe { libc::mlockall(bits) };
        assert_eq!(rc, -1, "mlockall({bits:#x}) succeeded");
        assert_eq!(
            std::io::Error::last_os_error().raw_os_error(),
            Some(libc::EINVAL)
        );
    }
}

/// Fails unless `err` is `want`, carries `errno`, and its message (the
/// fix it names) holds each of `fix`.
fn expect_error(err: Error, want: Error, errno: i32, fix: &[&str]) -> Result<(), String> {
    ensure_eq(err, want, "error")?;
    ensure_eq(err.errno(), Some(errno), "errno")?;
    let text = err.to_string();
    ensure(fix.iter().all(|word| text.contains(word)), || {
        format!("the message lacks one of {fix:?}: {text}")
    })
}

#[test]
fn eperm_without_capability_and_zero_limit() {
    run(|| {
        set_memlock(0, 0);
        drop_to_nobody();
        let err = mlock::lock_all(Flags::CURRENT | Flags::FUTURE).unwrap_err();
        expect_error(
            err,
            Error::PermissionDenied,
            libc::EPERM,
            &["CAP_IPC_LOCK", "setcap"],
        )?;
        // A region lock fails the same way.
        let map = Anon::new(MIB);
        let err = mlock::lock(map.slice()).unwrap_err();
        ensure(err == Error::PermissionDenied, || format!("lock: {err:?}"))
    });
}

#[test]
fn enomem_when_vmsize_exceeds_the_limit() {
    run(|| {
        set_memlock(64 * 1024, 64 * 1024);
        drop_to_nobody();
        let err = mlock::lock_all(Flags::CURRENT).unwrap_err();
        expect_error(
            err,
            Error::ResourceLimit,
            libc::ENOMEM,
            &["RLIMIT_MEMLOCK", "ulimit -l"],
        )?;
        ensure(vm_lck_kb() == 0, || {
            "a failed mlockall left pages locked".into()
        })?;
        // FUTURE alone only sets a flag: it succeeds under the same limit.
        mlock::lock_all(Flags::FUTURE).map_err(|e| format!("FUTURE: {e}"))
    });
}

#[test]
fn future_mappings_beyond_the_limit_fail_with_eagain() {
    run(|| {
        set_memlock(MIB as u64, MIB as u64);
        drop_to_nobody();
        mlock::lock_all(Flags::FUTURE).map_err(|e| format!("lock_all: {e}"))?;
        // SAFETY: a fresh anonymous mapping; it is expected to fail.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                8 * MIB,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        let errno = std::io::Error::last_os_error().raw_os_error();
        // The kernel says EAGAIN. QEMU user mode reserves guest memory its own
        // way and reports the host's refusal as ENOMEM.
        let want = if under_qemu_user() {
            libc::ENOMEM
        } else {
            libc::EAGAIN
        };
        ensure(addr == libc::MAP_FAILED && errno == Some(want), || {
            format!("mmap beyond RLIMIT_MEMLOCK under MCL_FUTURE: {addr:?} {errno:?}")
        })
    });
}

#[test]
fn locks_are_not_inherited_across_fork() {
    run(|| {
        mlock::lock_all(Flags::CURRENT | Flags::FUTURE).map_err(|e| e.to_string())?;
        ensure(vm_lck_kb() > 0, || "parent not locked".into())?;
        in_child(|| {
            ensure(vm_lck_kb() == 0, || {
                format!("child of fork has VmLck {} kB", vm_lck_kb())
            })?;
            // MCL_FUTURE is not inherited either: a new mapping stays unlocked.
            let _map = Anon::new(MIB);
            ensure(vm_lck_kb() == 0, || "child inherited MCL_FUTURE".into())
        })
    });
}

/// Runs `cat /proc/self/status` (a native program) from a process that
/// holds `CURRENT | FUTURE`, and returns the VmLck the new image reports.
fn vm_lck_after_exec() -> Result<u64, String> {
    mlock::lock_all(Flags::CURRENT | Flags::FUTURE).map_err(|e| e.to_string())?;
    ensure(vm_lck_kb() > 0, || "not locked before exec".into())?;
    let out = std::process::Command::new("cat")
        .arg("/proc/self/status")
        .output()
        .map_err(|e| format!("exec cat: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("VmLck:"))
        .ok_or("no VmLck in the exec'd program's status")?;
    line.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("bad line {line}"))
}

#[test]
fn execve_clears_locks_and_mcl_future() {
    // A kernel API description of mlockall claims MCL_FUTURE survives
    // execve. On Linux it does not: exec builds a new mm without VM_LOCKED
    // defaults, so the new image (whose every mapping is "future") has
    // nothing locked.
    run(|| {
        let lck = vm_lck_after_exec()?;
        ensure(lck == 0, || format!("exec'd program has VmLck {lck} kB"))
    });
}

#[test]
fn a_panicking_child_reports_its_message() {
    // The child must not hang in std's panic hook (see `in_child`).
    let verdict = in_child(|| panic!("scenario exploded"));
    assert_eq!(verdict, Err("scenario exploded".to_string()));
}

#[test]
fn error_variants_map_errno_both_ways() {
    let cases = [
        (libc::EPERM, Error::PermissionDenied),
        (libc::ENOMEM, Error::ResourceLimit),
        (libc::EINVAL, Error::InvalidArgument),
        (libc::EAGAIN, Error::WouldBlock),
        (libc::EINTR, Error::Interrupted),
        (libc::ENOSYS, Error::Unsupported),
    ];
    for (errno, variant) in cases {
        assert_eq!(Error::from_errno(errno), variant);
        assert_eq!(variant.errno(), Some(errno));
        assert!(!variant.as_str().is_empty());
        assert_eq!(variant.to_string(), variant.as_str());
    }
    assert_eq!(Error::from_errno(libc::EBADF), Error::Os(libc::EBADF));
    assert_eq!(Error::Os(libc::EBADF).errno(), Some(libc::EBADF));
    assert!(Error::Os(libc::EBADF).to_string().contains("errno 9"));
    assert_eq!(Error::ProcUnavailable.errno(), Some(libc::ENOENT));
    assert_eq!(Error::Malformed.errno(), None);
    // Error is a std error, usable with `?` into Box<dyn Error>.
    let boxed: Box<dyn std::error::Error> = Box::new(Error::ResourceLimit);
    assert!(boxed.to_string().contains("LimitMEMLOCK=infinity"));
}

#[test]
fn flags_are_const_and_take_values_from_the_kernel_headers() {
    static F: Flags = Flags::CURRENT.union(Flags::FUTURE);
    const _: () = assert!(F.contains(Flags::CURRENT) && !F.contains(Flags::ONFAULT));
    assert_eq!(F.bits(), (libc::MCL_CURRENT | libc::MCL_FUTURE) as u32);
    assert_eq!(Flags::ONFAULT.bits(), libc::MCL_ONFAULT as u32);
    assert_eq!(F | Flags::ONFAULT, Flags::all());
    assert!(!Flags::empty().is_valid());
    assert!(Flags::FUTURE.union(Flags::ONFAULT).is_valid());
}

// Locks that others hold: the crate's own locks compose. The kernel does not
// count locks (one munlock clears the lock of every page in its range), so
// each case below checks, through smaps `Locked:`, that dropping a guard or
// calling `unlock` leaves alone the pages another holder keeps locked.

/// `Locked:` in kB of the mapping that starts at `addr`.
fn locked_kb(addr: usize) -> u64 {
    smaps_rss_locked_kb(addr).1
}

/// Fails unless the mapping that starts at `addr` has `want` kB `Locked:`.
fn expect_locked(addr: usize, want: u64, what: &str) -> Result<(), String> {
    let got = locked_kb(addr);
    ensure(got == want, || {
        format!("{what}: Locked {got} kB, wanted {want} kB")
    })
}

/// Fails unless the mapping that starts at `addr` has `rss` kB `Rss:` and
/// `locked` kB `Locked:` in smaps.
fn expect_rss_locked(addr: usize, rss: u64, locked: u64, what: &str) -> Result<(), String> {
    let got = smaps_rss_locked_kb(addr);
    ensure(got == (rss, locked), || {
        format!(
            "{what}: Rss {} kB, Locked {} kB; wanted {rss} and {locked}",
            got.0, got.1
        )
    })
}

/// The page that holds `ptr`.
fn page_of(ptr: *const u8) -> usize {
    ptr as usize & !(page_size() - 1)
}

#[test]
fn a_guard_dropped_under_lock_all_leaves_the_buffer_locked() {
    run(|| {
        let before = Anon::new(MIB);
        mlock::lock_all(Flags::CURRENT | Flags::FUTURE).map_err(|e| format!("lock_all: {e}"))?;
        let after = Anon::new(MIB);
        for (map, when) in [(&before, "mapped before"), (&after, "mapped after")] {
            expect_locked(map.addr as usize, 1024, &format!("{when} lock_all"))?;
            drop(mlock::LockGuard::new(map.slice()).map_err(|e| format!("guard: {e}"))?);
            expect_locked(
                map.addr as usize,
                1024,
                &format!("{when} lock_all, a dropped 1 MiB guard"),
            )?;
        }
        // Once lock_all is undone, a guard unlocks what it locked again.
        mlock::unlock_all().map_err(|e| format!("unlock_all: {e}"))?;
        guard_locks_then_unlocks(&before, "after unlock_all")
    });
}

/// A guard over all of `map` locks it (1 MiB), and its drop unlocks it,
/// when nothing else holds it.
fn guard_locks_then_unlocks(map: &Anon, when: &str) -> Result<(), String> {
    let guard = mlock::LockGuard::new(map.slice()).map_err(|e| format!("{when}: {e}"))?;
    expect_locked(map.addr as usize, 1024, &format!("{when}, a live guard"))?;
    drop(guard);
    expect_locked(map.addr as usize, 0, &format!("{when}, a dropped guard"))
}

#[test]
fn an_explicit_unlock_under_lock_all_unlocks_the_region() {
    run(|| {
        let map = Anon::new(MIB);
        let other = Anon::new(MIB);
        mlock::lock_all(Flags::CURRENT | Flags::FUTURE).map_err(|e| format!("lock_all: {e}"))?;
        mlock::lock(map.slice()).map_err(|e| format!("lock: {e}"))?;
        // munlock(2) after mlockall(2) is a carve-out, as in the kernel.
        mlock::unlock(map.slice()).map_err(|e| format!("unlock: {e}"))?;
        expect_locked(map.addr as usize, 0, "unlock under lock_all")?;
        // SAFETY: the range is our own mapping; nothing outside the crate
        // locked it.
        unsafe { mlock::unlock_raw(other.addr, other.len) }
            .map_err(|e| format!("unlock_raw: {e}"))?;
        expect_locked(other.addr as usize, 0, "unlock_raw under lock_all")?;
        // A guard's drop is no explicit unlock: it leaves them locked.
        let guarded = Anon::new(MIB);
        drop(mlock::LockGuard::new(guarded.slice()).map_err(|e| format!("guard: {e}"))?);
        expect_locked(
            guarded.addr as usize,
            1024,
            "a guard dropped under lock_all",
        )
    });
}

#[test]
fn an_inner_guard_dropped_leaves_the_outer_guards_pages_locked() {
    run(|| {
        let map = Anon::new(MIB);
        let outer = mlock::LockGuard::new(map.slice()).map_err(|e| format!("outer: {e}"))?;
        // The same page twice (different bytes), then one byte of it.
        for inner in [
            &map.slice()[100..200],
            &map.slice()[..page_size()],
            &map.slice()[5..6],
        ] {
            drop(mlock::LockGuard::new(inner).map_err(|e| format!("inner: {e}"))?);
            expect_locked(map.addr as usize, 1024, "an inner guard dropped")?;
        }
        // Neither does `unlock` of part of a guarded region unlock it.
        mlock::unlock(&map.slice()[..page_size()]).map_err(|e| format!("unlock: {e}"))?;
        expect_locked(map.addr as usize, 1024, "unlock under a guard")?;
        // Two guards over identical ranges: the first drop keeps the lock.
        let twin = mlock::LockGuard::new(map.slice()).map_err(|e| format!("twin: {e}"))?;
        drop(twin);
        expect_locked(map.addr as usize, 1024, "twin dropped")?;
        // An inner guard that outlives the outer one keeps its page, and
        // only its page.
        let inner = mlock::LockGuard::new(&map.slice()[..10]).map_err(|e| e.to_string())?;
        drop(outer);
        let kb = (page_size() / 1024) as u64;
        expect_locked(
            map.addr as usize,
            kb,
            "outer dropped under a live inner guard",
        )?;
        drop(inner);
        expect_locked(map.addr as usize, 0, "the last guard dropped")
    });
}

#[test]
fn overlapping_guards_each_unlock_only_what_no_other_holds() {
    run(|| {
        let page = page_size();
        let kb = (page / 1024) as u64;
        let map = Anon::new(8 * page);
        let slice = map.slice();
        // The guards split the mapping into several VMAs, so count VmLck
        // (the locked VMAs' size; mlock faults every page in).
        let base = vm_lck_kb();
        // Pages 0-2, 2-4 and 6-7 (the last by a byte range that starts
        // mid-page).
        let a = mlock::LockGuard::new(&slice[..3 * page]).map_err(|e| e.to_string())?;
        let b = mlock::LockGuard::new(&slice[2 * page..5 * page]).map_err(|e| e.to_string())?;
        let c = mlock::LockGuard::new(&slice[6 * page + 10..]).map_err(|e| e.to_string())?;
        let locked = |want: u64, what: &str| {
            let got = vm_lck_kb() - base;
            ensure(got == want * kb, || {
                format!("{what}: VmLck grew by {got} kB, wanted {want} pages")
            })
        };
        locked(7, "three guards")?;
        // Pages 0 and 1 go; page 2 stays, as b holds it.
        drop(a);
        locked(5, "a dropped")?;
        // unlock of everything leaves b's and c's pages.
        mlock::unlock(slice).map_err(|e| e.to_string())?;
        locked(5, "unlock of the whole mapping")?;
        drop(c);
        locked(3, "c dropped")?;
        drop(b);
        locked(0, "all dropped")
    });
}

/// A guard over a secret's bytes, and `unlock` of them, on a buffer of the
/// given backing: the secret's page stays locked.
fn secret_page_stays_locked(backing: mlock::secret::Backing) -> Result<(), String> {
    let mut key =
        mlock::secret::LockedBuf::<32>::with_backing(backing).map_err(|e| e.to_string())?;
    key.as_mut().copy_from_slice(&[7; 32]);
    let page = page_of(key.as_ref().as_ptr());
    // An anonymous buffer's page is mlocked. A secretmem page is
    // unevictable either way, but whether the kernel marks its mapping
    // VM_LOCKED (and smaps counts it as Locked) depends on the kernel (6.1
    // and 6.18 do, Debian's 6.12 does not): what must hold is that nothing
    // below changes the figure.
    let kb = locked_kb(page);
    let one_page = (page_size() / 1024) as u64;
    ensure(
        kb == one_page || backing == mlock::secret::Backing::SecretMem,
        || format!("{backing:?}: a new LockedBuf has Locked {kb} kB"),
    )?;
    // A guard over a secret's pages needs no mlock(2): they are locked
    // already. (mlock of memfd_secret memory would fail with ENOMEM, since
    // the kernel cannot populate it, and name a limit as the fix.) So it
    // succeeds with either backing, and its drop leaves the page locked.
    let guard =
        mlock::LockGuard::new(key.as_ref()).map_err(|e| format!("{backing:?}: guard: {e}"))?;
    drop(guard);
    expect_locked(page, kb, &format!("{backing:?}: a guard over the secret"))?;
    mlock::unlock(key.as_ref()).map_err(|e| format!("unlock: {e}"))?;
    expect_locked(page, kb, &format!("{backing:?}: unlock of the secret"))?;
    // unlock_all locks the secret's page again (a secretmem page is never
    // unlocked by the kernel in the first place).
    mlock::unlock_all().map_err(|e| format!("unlock_all: {e}"))?;
    expect_locked(page, kb, &format!("{backing:?}: unlock_all"))?;

    let mut sealed =
        mlock::secret::SealedBuf::<32>::with_backing(backing).map_err(|e| e.to_string())?;
    let opened = sealed.read();
    let page = page_of(opened.as_ptr());
    let kb = locked_kb(page);
    ensure(
        kb == one_page || backing == mlock::secret::Backing::SecretMem,
        || format!("{backing:?}: a new SealedBuf has Locked {kb} kB"),
    )?;
    let guard = mlock::LockGuard::new(&opened[..])
        .map_err(|e| format!("{backing:?}: sealed guard: {e}"))?;
    drop(guard);
    mlock::unlock(&opened[..]).map_err(|e| format!("sealed unlock: {e}"))?;
    drop(opened);
    expect_locked(
        page,
        kb,
        &format!("{backing:?}: a guard or unlock over a SealedBuf"),
    )
}

#[test]
fn a_guard_or_unlock_over_a_locked_buf_leaves_the_secret_locked() {
    run(|| secret_page_stays_locked(mlock::secret::Backing::Anonymous));
}

#[test]
fn a_guard_or_unlock_over_a_secretmem_buf_leaves_the_secret_locked() {
    run(|| {
        // QEMU 7.2 user mode does not implement memfd_secret, nor do the
        // kernels the VMs boot with it off or without it (32-bit arm,
        // powerpc): the crate says so rather than falling back.
        let off = std::env::var(common::contract::SECRETMEM_ENV).is_ok_and(|v| v == "0");
        if under_qemu_user() || off {
            let err =
                mlock::secret::LockedBuf::<32>::with_backing(mlock::secret::Backing::SecretMem)
                    .unwrap_err();
            return ensure(err == Error::Unsupported, || format!("got {err:?}"));
        }
        secret_page_stays_locked(mlock::secret::Backing::SecretMem)
    });
}

#[test]
fn unlock_all_keeps_what_guards_hold_and_unlocks_the_rest() {
    run(|| {
        let held = Anon::new(MIB);
        let loose = Anon::new(MIB);
        let guard = mlock::LockGuard::new(held.slice()).map_err(|e| e.to_string())?;
        mlock::lock(loose.slice()).map_err(|e| e.to_string())?;
        mlock::unlock_all().map_err(|e| format!("unlock_all: {e}"))?;
        expect_locked(held.addr as usize, 1024, "unlock_all, the guarded mapping")?;
        expect_locked(loose.addr as usize, 0, "unlock_all, the plain lock")?;
        drop(guard);
        expect_locked(held.addr as usize, 0, "the guard dropped")
    });
}

#[test]
fn a_forked_child_is_not_under_its_parents_lock_all() {
    run(|| {
        mlock::lock_all(Flags::CURRENT | Flags::FUTURE).map_err(|e| e.to_string())?;
        // The child inherits no lock, so its guards unlock as usual.
        in_child(|| {
            let map = Anon::new(MIB);
            guard_locks_then_unlocks(&map, "in the child")
        })
    });
}

#[test]
fn the_record_is_bounded_and_says_so_when_full() {
    run(|| {
        let pages = 130;
        let map = Anon::new(pages * page_size());
        let mut guards = Vec::new();
        let err = loop {
            let i = guards.len();
            ensure(i < pages, || "no limit on the record".into())?;
            let page = &map.slice()[i * page_size()..(i + 1) * page_size()];
            match mlock::LockGuard::new(page) {
                Ok(guard) => guards.push(guard),
                Err(e) => break e,
            }
        };
        ensure(err == Error::TooManyLocks && guards.len() == 128, || {
            format!("after {} guards: {err:?}", guards.len())
        })?;
        ensure(
            err.errno().is_none() && err.as_str().contains("guard"),
            || "message".into(),
        )?;
        // An identical range shares its entry, and a freed entry is reused.
        let shared = mlock::LockGuard::new(guards[0].region()).map_err(|e| e.to_string())?;
        drop(shared);
        guards.pop();
        let last = &map.slice()[129 * page_size()..];
        mlock::LockGuard::new(last)
            .map(drop)
            .map_err(|e| e.to_string())
    });
}

#[test]
fn unlock_raw_of_unmapped_memory_is_not_mapped_and_says_so() {
    run(|| {
        // The crate's first call in a process maps the page of its lock
        // record: make it now, so that it cannot land in the hole.
        mlock::unlock(&[0u8; 1]).map_err(|e| format!("unlock: {e}"))?;
        // Two pages mapped, then unmapped: the range is now a hole in this
        // single-threaded child, which maps nothing in between.
        // SAFETY: a fresh private anonymous mapping, unmapped before use.
        let hole = unsafe {
            let at = libc::mmap(
                std::ptr::null_mut(),
                8192,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            ensure(at != libc::MAP_FAILED, || "mmap".into())?;
            ensure(libc::munmap(at, 8192) == 0, || "munmap".into())?;
            at as *const u8
        };
        // SAFETY: munlock of a hole changes no memory; the kernel answers
        // ENOMEM.
        let got = unsafe { mlock::unlock_raw(hole, 8192) };
        ensure_eq(got, Err(Error::NotMapped), "unlock_raw of a hole")?;
        // munlock's ENOMEM is not a limit: the fix must not be one.
        let text = Error::NotMapped.to_string();
        ensure(
            text.contains("not mapped") && !text.contains("RLIMIT_MEMLOCK"),
            || text.clone(),
        )
    });
}

/// riscv64's vector extension: Linux does not keep `v0`-`v31` across a
/// system call, so the crate's syscalls declare them clobbered, and code
/// the compiler vectorizes around them must still be right. Where the
/// suite is built with `+v` for a CPU that has V (`MLOCK_TEST_VECTOR`, set
/// by `cargo xtask test`'s vector step and in the riscv64 VM), the CPU must
/// say so (`AT_HWCAP`); on every arch, work of the kind the compiler
/// vectorizes, interleaved with the crate's locking and status calls,
/// gives the answer of the same work done one element at a time.
#[test]
fn vectorizable_work_around_the_crates_syscalls_gives_the_scalar_answer() {
    if std::env::var_os(common::contract::VECTOR_ENV).is_some() {
        #[cfg(target_arch = "riscv64")]
        {
            // SAFETY: getauxval reads the process's auxiliary vector.
            let hwcap = unsafe { libc::getauxval(libc::AT_HWCAP) };
            assert!(
                hwcap & (1 << (b'V' - b'A')) != 0,
                "MLOCK_TEST_VECTOR is set, but AT_HWCAP {hwcap:#x} has no V"
            );
        }
        #[cfg(not(target_arch = "riscv64"))]
        panic!("MLOCK_TEST_VECTOR is set on an arch without a vector case");
    }
    run(|| {
        let data: Vec<u32> = (0..4096u32)
            .map(|i| i.wrapping_mul(2_654_435_761))
            .collect();
        let bytes: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
        let mut fast = [0u32; 8];
        let mut slow = [0u32; 8];
        for round in 0..32u32 {
            for chunk in data.chunks_exact(8) {
                for (acc, x) in fast.iter_mut().zip(chunk) {
                    *acc = acc.wrapping_add((x ^ round).rotate_left(3));
                }
            }
            // System calls between the rounds, with the accumulator live.
            let guard = mlock::LockGuard::new(&bytes).map_err(|e| format!("guard: {e}"))?;
            let locked = mlock::locked_bytes().map_err(|e| format!("locked_bytes: {e}"))?;
            drop(guard);
            ensure(locked > 0, || format!("VmLck {locked} under a guard"))?;
            for chunk in data.chunks_exact(8) {
                for (acc, x) in slow.iter_mut().zip(chunk) {
                    let x = std::hint::black_box(*x);
                    *acc = acc.wrapping_add((x ^ round).rotate_left(3));
                }
            }
        }
        ensure_eq(fast, slow, "the accumulators")
    });
}

/// Tests that make a system call fail, or stop in it, under a seccomp
/// filter: QEMU user mode implements no seccomp, so they run natively and in
/// the VMs (the harness filters `seccomp::` out of QEMU user runs).
mod seccomp {
    use super::*;

    #[test]
    fn kernel_without_mlock2_plain_lock_falls_back_and_onfault_is_unsupported() {
        run(|| {
            if !under_qemu_user() {
                // A real kernel without mlock2 (before 4.4), made for real.
                fail_syscall_with(libc::SYS_mlock2, libc::ENOSYS, When::Always);
            }
            let map = Anon::new(MIB);
            let err = mlock::lock_on_fault(map.slice()).unwrap_err();
            ensure(err == Error::Unsupported, || format!("on-fault: {err:?}"))?;
            ensure(err.errno() == Some(libc::ENOSYS), || "errno".into())?;
            ensure(vm_lck_kb() == 0, || "silently downgraded to mlock".into())?;
            mlock::lock(map.slice()).map_err(|e| format!("plain lock: {e}"))?;
            ensure(vm_lck_kb() == 1024, || format!("VmLck {} kB", vm_lck_kb()))
        });
    }
}
