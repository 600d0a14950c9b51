//! Secrets on the real kernel: which backing a buffer gets (memfd_secret or
//! anonymous, checked against the kernel's own answer), that its pages are
//! locked and marked "do not dump" (smaps `VmFlags`), the guard pages and
//! the canary (in children that must die by SIGSEGV or SIGABRT), what a
//! forked child gets, the no-access discipline of `SealedBuf`, that another
//! process cannot read a secretmem page, the failure paths (a small
//! `RLIMIT_MEMLOCK`, memfd_secret refused by seccomp), and the core-dump
//! switches. The VM tier (`cargo xtask vm`) runs this file in real 6.1 and
//! 6.12 kernels booted with and without secretmem, and proves the dump
//! exclusion by searching a real core file.
//!
//! Under QEMU user mode (`MLOCK_TEST_QEMU_USER=1`) memfd_secret answers
//! ENOSYS and madvise accepts advice it ignores; the tests assert exactly
//! that instead of the kernel's behaviour.

mod common;

use common::*;
use mlock::secret::{Backing, Guards, LockedBuf, Pool, SealedBuf};
use mlock::Error;

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
    run(|| {
        let before = vm_lck_kb();
        let mut key =
            LockedBuf::<48>::with_backing(Backing::Anonymous).map_err(|e| e.to_string())?;
        ensure(key.as_bytes() == &[0; 48], || "not zeroed at start".into())?;
        key.as_mut().copy_from_slice(&[0xA5; 48]);
        ensure(key.as_ref()[47] == 0xA5, || "write".into())?;
        let addr = key.as_ref().as_ptr() as usize;
        // Right-aligned against the trailing guard page.
        ensure((addr + 48).is_multiple_of(page_size()), || {
            "not end-aligned".into()
        })?;
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
        // Debug must not print the secret while it is there.
        let debug = format!("{key:?} {key:#?}");
        ensure(
            !debug.contains("165") && !debug.to_lowercase().contains("a5"),
            || format!("Debug leaks the secret: {debug}"),
        )?;
        // Moving the handle does not move the secret.
        let moved = key;
        ensure(moved.as_ref().as_ptr() as usize == addr, || "moved".into())?;
        let mut moved = moved;
        moved.clear();
        ensure(moved.as_bytes() == &[0; 48], || "clear left bytes".into())?;
        drop(moved);
        ensure(vm_lck_kb() == before, || "drop did not unlock".into())
    });
}

#[test]
fn locked_buf_reports_the_memlock_limit() {
    run(|| {
        set_memlock(0, 0);
        drop_to_nobody();
        let err = LockedBuf::<32>::new().unwrap_err();
        ensure(err == Error::PermissionDenied, || format!("{err:?}"))?;
        ensure(
            LockedBuf::<0>::new().unwrap_err() == Error::InvalidArgument,
            || "N = 0".into(),
        )
    });
}

#[test]
fn exclude_and_include_in_dump_toggle_the_dontdump_flag() {
    let map = Anon::new(2 * page_size());
    let dontdump = || vm_flags(map.addr as usize).split(' ').any(|f| f == "dd");
    mlock::secret::exclude_from_dump(map.slice()).unwrap();
    // QEMU user mode accepts the advice and drops it (see above).
    assert!(dontdump() || under_qemu_user());
    mlock::secret::include_in_dump(map.slice()).unwrap();
    assert!(!dontdump());
    // madvise wants a page-aligned start (QEMU checks that too).
    assert_eq!(
        mlock::secret::exclude_from_dump(&map.slice()[1..]),
        Err(Error::InvalidArgument)
    );
    assert_eq!(mlock::secret::exclude_from_dump(&[]), Ok(()));
}

#[test]
fn disable_core_dumps_clears_dumpable_and_the_core_limit() {
    run(|| {
        ensure(mlock::secret::is_dumpable() == Ok(true), || {
            "dumpable at start".into()
        })?;
        mlock::secret::disable_core_dumps().map_err(|e| e.to_string())?;
        ensure(mlock::secret::is_dumpable() == Ok(false), || {
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
}

// ---------------------------------------------------------------------------
// Helpers

/// One entry of `/proc/self/smaps`.
#[derive(Debug, Clone)]
struct Entry {
    start: usize,
    end: usize,
    perms: String,
    name: String,
    flags: Vec<String>,
    locked_kb: u64,
}

impl Entry {
    fn has(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
}

/// Every mapping of this process, from `/proc/self/smaps`.
fn smaps() -> Vec<Entry> {
    let text = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut entries: Vec<Entry> = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-') {
            if let (Ok(start), Ok(end)) =
                (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
            {
                let perms = words.next().unwrap_or("").to_string();
                let name = words.skip(3).collect::<Vec<_>>().join(" ");
                entries.push(Entry {
                    start,
                    end,
                    perms,
                    name,
                    flags: Vec::new(),
                    locked_kb: 0,
                });
                continue;
            }
        }
        let Some(entry) = entries.last_mut() else {
            continue;
        };
        if let Some(flags) = line.strip_prefix("VmFlags:") {
            entry.flags = flags.split_whitespace().map(str::to_string).collect();
        } else if let Some(kb) = line.strip_prefix("Locked:") {
            entry.locked_kb = kb.split_whitespace().next().unwrap().parse().unwrap();
        }
    }
    entries
}

/// The mapping that holds `addr`, and the ones right before and after it.
fn around(addr: usize) -> (Option<Entry>, Option<Entry>, Option<Entry>) {
    let all = smaps();
    match all.iter().position(|e| (e.start..e.end).contains(&addr)) {
        None => (None, None, None),
        Some(i) => (
            i.checked_sub(1).map(|j| all[j].clone()),
            Some(all[i].clone()),
            all.get(i + 1).cloned(),
        ),
    }
}

/// Whether this kernel (or emulator) offers `memfd_secret(2)`, from the
/// syscall itself, and what the environment says it must be:
/// - under QEMU user mode it must answer ENOSYS (QEMU 7.2 does not know it);
/// - `MLOCK_TEST_SECRETMEM=1|0` (the VM tier's boots) pins the answer;
/// - otherwise the host must offer it, or the run fails saying how.
fn secretmem_expected() -> bool {
    // SAFETY: memfd_secret takes flags only; a returned fd is closed.
    let fd = unsafe { libc::syscall(libc::SYS_memfd_secret, 0) };
    let errno = std::io::Error::last_os_error().raw_os_error();
    let offered = if fd >= 0 {
        // SAFETY: the descriptor was just returned to us.
        unsafe { libc::close(fd as i32) };
        true
    } else {
        assert_eq!(
            errno,
            Some(libc::ENOSYS),
            "memfd_secret failed otherwise than ENOSYS"
        );
        false
    };
    if under_qemu_user() {
        assert!(
            !offered,
            "QEMU user mode 7.2 was expected to answer memfd_secret with ENOSYS"
        );
        return false;
    }
    match std::env::var(common::contract::SECRETMEM_ENV).as_deref() {
        Ok("1") => assert!(
            offered,
            "MLOCK_TEST_SECRETMEM=1 but memfd_secret answers ENOSYS"
        ),
        Ok("0") => assert!(!offered, "MLOCK_TEST_SECRETMEM=0 but memfd_secret works"),
        Ok(other) => panic!("MLOCK_TEST_SECRETMEM must be 0 or 1, not {other:?}"),
        Err(_) => assert!(
            offered,
            "memfd_secret(2) answers ENOSYS on this kernel: build it with CONFIG_SECRETMEM=y \
             and, before 6.5, boot with secretmem.enable=1; or set MLOCK_TEST_SECRETMEM=0 to \
             test the fallback alone"
        ),
    }
    offered
}

/// The backings this kernel can give: both where memfd_secret works.
fn backings() -> Vec<Backing> {
    if secretmem_expected() {
        vec![Backing::SecretMem, Backing::Anonymous]
    } else {
        vec![Backing::Anonymous]
    }
}

/// Runs `body` in a forked child ([`run_forked`]) that must die by
/// `signal`, and returns what it wrote to stderr.
#[track_caller]
fn dies_by(signal: i32, what: &str, body: impl FnOnce()) -> String {
    let child = run_forked(body);
    if let Err(e) = child.killed_by(signal, what) {
        panic!("{e}");
    }
    child.stderr
}

/// [`run`] for one backing: a failure names it.
#[track_caller]
fn run_with(backing: Backing, scenario: impl FnOnce() -> Result<(), String>) {
    if let Err(e) = in_child(scenario) {
        panic!("{backing:?}: {e}");
    }
}

fn err(e: Error) -> String {
    format!("{e:?}: {e}")
}

// ---------------------------------------------------------------------------
// Backing

#[test]
fn new_takes_memfd_secret_where_the_kernel_offers_it() {
    let expected = secretmem_expected();
    run(|| {
        let before = vm_lck_kb();
        let mut key = LockedBuf::<48>::new().map_err(err)?;
        key.as_bytes_mut().fill(0x5a);
        let want = if expected {
            Backing::SecretMem
        } else {
            Backing::Anonymous
        };
        ensure(key.backing() == want, || {
            format!("got {:?}, want {want:?}", key.backing())
        })?;
        let addr = key.as_ref().as_ptr() as usize;
        let (before_entry, entry, after_entry) = around(addr);
        let entry = entry.ok_or("no mapping holds the secret")?;
        if expected {
            ensure(entry.name == "/secretmem (deleted)", || {
                format!("{entry:?}")
            })?;
            ensure(entry.perms == "rw-s", || format!("{entry:?}"))?;
        }
        // Anonymous pages are mlocked. Secretmem pages are unevictable and
        // charged to RLIMIT_MEMLOCK either way, but whether the mapping is
        // VM_LOCKED (`lo`, counted in VmLck) depends on the kernel: 6.1 and
        // 6.18 mark it, Debian's 6.12.117 does not (and charges the limit
        // when a page is first touched instead).
        let locked = entry.has("lo");
        ensure(
            (locked || want == Backing::SecretMem) && (under_qemu_user() || entry.has("dd")),
            || format!("VmFlags lack lo or dd: {entry:?}"),
        )?;
        ensure(key.fork_protected() != under_qemu_user(), || {
            format!(
                "fork_protected() = {} under QEMU user = {}",
                key.fork_protected(),
                under_qemu_user()
            )
        })?;
        // One data page, locked, between two guard pages.
        let page = page_size();
        ensure(
            entry.end - entry.start == page && entry.end == addr + 48,
            || format!("{entry:?} for a 48-byte secret at {addr:#x}"),
        )?;
        let counted = if locked { (page / 1024) as u64 } else { 0 };
        ensure(vm_lck_kb() == before + counted, || {
            format!("VmLck {} kB, was {before} kB, lo: {locked}", vm_lck_kb())
        })?;
        // PROT_NONE pages, or guard regions: read-write pages of their own
        // (the data's lock split them off) that smaps marks `gu`.
        // A PROT_NONE guard merges with a neighbouring PROT_NONE mapping
        // (another buffer's guard, a thread stack's), so it may be longer.
        let regions = key.guards() == Guards::Regions;
        for guard in [before_entry, after_entry] {
            let guard = guard.ok_or("no guard page")?;
            let len = guard.end - guard.start;
            let (marked, sized) = match regions {
                true => (guard.perms == "rw-p" && guard.has("gu"), len == page),
                false => (guard.perms.starts_with("---"), len >= page),
            };
            ensure(
                marked && sized && (guard.end == entry.start || guard.start == entry.end),
                || {
                    format!(
                        "not a guard page ({:?}) next to {entry:?}: {guard:?}",
                        key.guards()
                    )
                },
            )?;
        }
        drop(key);
        ensure(vm_lck_kb() == before, || {
            "drop did not release the lock".into()
        })
    });
}

#[test]
fn a_small_memlock_limit_is_resource_limit_with_either_backing() {
    // The largest secret whose canary and bytes fill one page, and one more
    // byte: const generics, so one pair per page size.
    let run_for: fn(Backing) -> Result<(), String> = match page_size() {
        4096 => one_page_limit::<4080, 4081>,
        16384 => one_page_limit::<16368, 16369>,
        65536 => one_page_limit::<65520, 65521>,
        other => panic!("no case for {other}-byte pages"),
    };
    for backing in backings() {
        run_with(backing, || run_for(backing));
    }
}

/// Under a one-page `RLIMIT_MEMLOCK` as nobody: a buffer of `FIT` bytes
/// (16 bytes of canary + `FIT` = one page) fits, a second one does not,
/// and neither does one of `OVER` = `FIT + 1` bytes (two pages).
fn one_page_limit<const FIT: usize, const OVER: usize>(backing: Backing) -> Result<(), String> {
    let page = page_size();
    assert!(FIT + 16 == page && OVER == FIT + 1);
    set_memlock(page as u64, page as u64);
    drop_to_nobody();
    let one = LockedBuf::<FIT>::with_backing(backing).map_err(err)?;
    let second = LockedBuf::<16>::with_backing(backing).map(|_| ());
    ensure(second == Err(Error::ResourceLimit), || {
        format!("{backing:?}: second buffer over the limit gave {second:?}")
    })?;
    drop(one);
    let two = LockedBuf::<OVER>::with_backing(backing).map(|_| ());
    ensure(two == Err(Error::ResourceLimit), || {
        format!("{backing:?}: two pages over a one-page limit gave {two:?}")
    })?;
    let sealed = SealedBuf::<OVER>::with_backing(backing).map(|_| ());
    ensure(sealed == Err(Error::ResourceLimit), || {
        format!("{backing:?}: sealed over the limit gave {sealed:?}")
    })
}

// ---------------------------------------------------------------------------
// Guard pages and canary

/// In a child: fills a buffer of `N` bytes, reads its last byte, then
/// writes one byte past the end, which must fault.
fn past_the_end<const N: usize>(backing: Backing, sealed: bool) -> Result<(), String> {
    let child = run_forked(|| {
        if sealed {
            let mut buf = SealedBuf::<N>::with_backing(backing).unwrap();
            let mut open = buf.write();
            open.fill(1);
            let end = open.as_mut_ptr_range().end;
            // SAFETY: deliberately out of bounds: the guard page must fault.
            unsafe { end.write_volatile(2) };
        } else {
            let mut buf = LockedBuf::<N>::with_backing(backing).unwrap();
            buf.as_bytes_mut().fill(1);
            assert_eq!(buf.as_bytes()[N - 1], 1);
            let end = buf.as_bytes_mut().as_mut_ptr_range().end;
            // SAFETY: as above.
            unsafe { end.write_volatile(2) };
        }
    });
    child.killed_by(libc::SIGSEGV, &format!("{backing:?} sealed={sealed} N={N}"))
}

#[test]
fn one_byte_past_the_end_faults_for_every_size() {
    for backing in backings() {
        for sealed in [false, true] {
            past_the_end::<1>(backing, sealed).unwrap();
            past_the_end::<15>(backing, sealed).unwrap();
            past_the_end::<17>(backing, sealed).unwrap();
            past_the_end::<100>(backing, sealed).unwrap();
            past_the_end::<4080>(backing, sealed).unwrap();
            past_the_end::<4096>(backing, sealed).unwrap();
            past_the_end::<5000>(backing, sealed).unwrap();
        }
    }
}

/// Writes the byte before the data page of a buffer whose canary and `N`
/// bytes fill exactly one page: the leading guard page, which must fault.
fn write_before_a_full_page<const N: usize>(backing: Backing) {
    assert_eq!(N + 16, page_size());
    let mut buf = LockedBuf::<N>::with_backing(backing).unwrap();
    let start = buf.as_bytes_mut().as_mut_ptr();
    assert_eq!(
        start as usize % page_size(),
        16,
        "the canary starts the page"
    );
    // SAFETY: deliberately out of bounds: 17 bytes before the secret is the
    // byte before the data page.
    unsafe { start.sub(17).write_volatile(1) };
}

/// Flips the byte just before a 32-byte secret (the canary's last byte,
/// mapped and writable), then drops the buffer, which checks the canary.
fn overwrite_the_canary_and_drop(backing: Backing, sealed: bool) {
    fn poke(start: *mut u8) {
        // SAFETY: deliberately out of bounds, into the canary.
        unsafe {
            start
                .sub(1)
                .write_volatile(0x77 ^ start.sub(1).read_volatile())
        };
    }
    if sealed {
        let mut buf = SealedBuf::<32>::with_backing(backing).unwrap();
        poke(buf.write().as_mut_ptr());
    } else {
        let mut buf = LockedBuf::<32>::with_backing(backing).unwrap();
        poke(buf.as_bytes_mut().as_mut_ptr());
    }
}

/// A canary mismatch on a thread other than the main one. Not run under
/// QEMU user mode (tests/common/contract.rs says why).
mod abort_from_a_thread {
    use super::*;

    /// A `SIGABRT` handler that returns, as a crash reporter's might.
    extern "C" fn return_from_sigabrt(_: libc::c_int) {}

    #[test]
    fn a_canary_mismatch_on_a_second_thread_ends_the_process_with_sigabrt() {
        for backing in backings() {
            for sealed in [false, true] {
                let what = format!("{backing:?} sealed={sealed}, from a second thread");
                dies_by(libc::SIGABRT, &what, || {
                    // The main thread waits in `join` (a futex) meanwhile.
                    common::thread::spawn(move || overwrite_the_canary_and_drop(backing, sealed))
                        .join()
                        .unwrap();
                });
            }
        }
    }

    #[test]
    fn a_returning_handler_or_a_blocked_sigabrt_does_not_stop_the_abort() {
        for backing in backings() {
            let what = format!("{backing:?}, SIGABRT handled and blocked");
            dies_by(libc::SIGABRT, &what, || {
                // SAFETY: installs a handler that does nothing and blocks
                // SIGABRT on this thread; both are undone only by the abort.
                unsafe {
                    libc::signal(
                        libc::SIGABRT,
                        return_from_sigabrt as *const () as libc::sighandler_t,
                    );
                    let mut set: libc::sigset_t = std::mem::zeroed();
                    libc::sigemptyset(&mut set);
                    libc::sigaddset(&mut set, libc::SIGABRT);
                    libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
                }
                common::thread::spawn(move || overwrite_the_canary_and_drop(backing, false))
                    .join()
                    .unwrap();
            });
        }
    }
}

#[test]
fn a_write_before_the_start_aborts_on_drop_with_a_message() {
    for backing in backings() {
        for sealed in [false, true] {
            let stderr = dies_by(
                libc::SIGABRT,
                &format!("{backing:?} sealed={sealed}"),
                || overwrite_the_canary_and_drop(backing, sealed),
            );
            assert!(
                stderr.contains(
                    "mlock: the canary in front of a LockedBuf or SealedBuf was overwritten"
                ),
                "stderr: {:?}",
                stderr
            );
        }
        // Further back than the canary, in front of a secret that fills
        // its page, lies the leading guard page.
        let underflow: fn(Backing) = match page_size() {
            4096 => write_before_a_full_page::<4080>,
            16384 => write_before_a_full_page::<16368>,
            65536 => write_before_a_full_page::<65520>,
            other => panic!("no case for {other}-byte pages"),
        };
        dies_by(libc::SIGSEGV, &format!("{backing:?} underflow"), || {
            underflow(backing)
        });
    }
}

// ---------------------------------------------------------------------------
// No-access discipline

#[test]
fn sealed_buffers_fault_outside_a_borrow_and_on_writes_through_a_read() {
    for backing in backings() {
        run_with(backing, || {
            let mut key = SealedBuf::<32>::with_backing(backing).map_err(err)?;
            key.with_mut(|b| b.fill(0x5a));
            ensure(key.with(|b| *b == [0x5a; 32]), || "round trip".into())?;
            let addr = key.read().as_ptr() as usize;
            let (_, entry, _) = around(addr);
            let entry = entry.ok_or("no mapping holds the secret")?;
            // Sealed, and still locked (secretmem: as far as the kernel
            // marks it, see `new_takes_memfd_secret_where_the_kernel_offers_it`).
            ensure(
                entry.perms.starts_with("---")
                    && (entry.has("lo") || backing == Backing::SecretMem),
                || format!("{entry:?}"),
            )?;
            ensure(
                format!("{key:?}").contains("SealedBuf") && !format!("{key:?}").contains("90"),
                || format!("Debug: {key:?}"),
            )?;
            key.clear();
            ensure(key.with(|b| *b == [0; 32]), || "clear".into())
        });
        // A pointer kept from a borrow faults once the borrow has ended.
        dies_by(libc::SIGSEGV, &format!("{backing:?} stale pointer"), || {
            let mut key = SealedBuf::<32>::with_backing(backing).unwrap();
            let p = key.write().as_ptr();
            // SAFETY: deliberately reads sealed memory: it must fault.
            let _ = unsafe { p.read_volatile() };
        });
        // A read borrow is PROT_READ: a write through it faults.
        dies_by(
            libc::SIGSEGV,
            &format!("{backing:?} write through read"),
            || {
                let mut key = SealedBuf::<32>::with_backing(backing).unwrap();
                let open = key.read();
                let p = open.as_ptr() as *mut u8;
                // SAFETY: deliberately writes read-only memory: it must fault.
                unsafe { p.write_volatile(1) };
            },
        );
    }
}

// ---------------------------------------------------------------------------
// Fork

#[test]
fn a_forked_child_never_sees_the_secret() {
    for backing in backings() {
        run_with(backing, || {
            let mut key = LockedBuf::<32>::with_backing(backing).map_err(err)?;
            key.as_bytes_mut().fill(0x5a);
            let addr = key.as_ref().as_ptr() as usize;
            let protected = key.fork_protected();
            // QEMU user mode accepts MADV_WIPEONFORK and ignores it: the
            // crate says so, and the child does see the secret there.
            ensure(protected != under_qemu_user(), || {
                format!("fork_protected() = {protected}")
            })?;
            in_child(|| {
                let (_, entry, _) = around(addr);
                match (backing, protected) {
                    // Absent: nothing there, or something of the child's
                    // own (its allocator may map into the hole).
                    (Backing::SecretMem, _) => ensure(
                        entry.as_ref().is_none_or(|e| !e.name.contains("secretmem")),
                        || format!("the secretmem mapping is in the child: {entry:?}"),
                    )?,
                    (Backing::Anonymous, true) => {
                        let entry = entry.ok_or("the wiped mapping is absent")?;
                        ensure(entry.has("wf") && !entry.has("lo"), || {
                            format!("child's VmFlags: {entry:?}")
                        })?;
                        ensure(key.as_bytes() == &[0; 32], || {
                            format!("the child reads {:?}", &key.as_bytes()[..4])
                        })?;
                    }
                    (Backing::Anonymous, false) => ensure(key.as_bytes() == &[0x5a; 32], || {
                        "under QEMU the child was expected to inherit the bytes".into()
                    })?,
                    (other, _) => return Err(format!("unknown backing {other:?}")),
                }
                // The child's copy of the handle drops without touching
                // absent memory or tripping the (wiped) canary. (A bitwise
                // copy: this child `_exit`s and never drops the original.)
                // SAFETY: `key` is valid and its original is never dropped
                // in this process.
                drop(unsafe { std::ptr::read(&key) });
                Ok(())
            })?;
            // The child's drop left the parent's secret alone.
            ensure(key.as_bytes() == &[0x5a; 32], || {
                "parent lost its secret".into()
            })
        });
    }
}

// ---------------------------------------------------------------------------
// Other processes

#[test]
fn another_process_cannot_read_a_secretmem_secret_through_proc_mem() {
    let expected = secretmem_expected();
    run(|| {
        let mut control = LockedBuf::<32>::with_backing(Backing::Anonymous).map_err(err)?;
        control.as_bytes_mut().fill(0x33);
        let control_addr = control.as_ref().as_ptr() as u64;
        let secret = LockedBuf::<32>::with_backing(Backing::SecretMem);
        let secret = match (secret, expected) {
            (Ok(s), true) => s,
            // Without memfd_secret (QEMU user mode, a kernel booted without
            // secretmem) the requirement must fail, and nothing is left to
            // read; the control read below still runs.
            (Err(Error::Unsupported), false) => {
                return read_other(control_addr, Some(0x33));
            }
            (other, _) => return Err(format!("required secretmem gave {:?}", other.map(|_| ()))),
        };
        let mut secret = secret;
        secret.as_bytes_mut().fill(0x5a);
        read_other(secret.as_ref().as_ptr() as u64, None)?;
        read_other(control_addr, Some(0x33))
    });
}

/// From a forked child, reads 32 bytes at `addr` of the parent through
/// `/proc/<parent>/mem`: they must be `want`, or (for `None`) the read must
/// fail with EIO.
fn read_other(addr: u64, want: Option<u8>) -> Result<(), String> {
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    in_child(|| {
        use std::os::unix::fs::FileExt;
        let mem = std::fs::File::open(format!("/proc/{parent}/mem")).map_err(|e| e.to_string())?;
        let mut buf = [0u8; 32];
        let read = mem.read_exact_at(&mut buf, addr);
        match (want, read) {
            (Some(byte), Ok(())) => ensure(buf == [byte; 32], || format!("read {buf:?}")),
            (None, Err(e)) => {
                ensure(e.raw_os_error() == Some(libc::EIO), || {
                    format!("reading the secretmem page failed with {e}, not EIO")
                })?;
                // process_vm_readv(2) is refused as well.
                let local = libc::iovec {
                    iov_base: buf.as_mut_ptr().cast(),
                    iov_len: buf.len(),
                };
                let remote = libc::iovec {
                    iov_base: addr as usize as *mut libc::c_void,
                    iov_len: buf.len(),
                };
                // SAFETY: `local` describes our own writable buffer; the
                // kernel validates `remote` against the other process.
                let n = unsafe { libc::process_vm_readv(parent, &local, 1, &remote, 1, 0) };
                ensure(n == -1, || {
                    format!("process_vm_readv read {n} bytes of the secretmem page: {buf:?}")
                })
            }
            (None, Ok(())) => Err(format!("another process read the secretmem page: {buf:?}")),
            (Some(_), Err(e)) => Err(format!("reading the control page: {e}")),
        }
    })
}

// ---------------------------------------------------------------------------
// Core dumps

fn core_limit() -> (libc::rlim_t, libc::rlim_t) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid out-parameter.
    unsafe { libc::getrlimit(libc::RLIMIT_CORE, &mut lim) };
    (lim.rlim_cur, lim.rlim_max)
}

/// Aborts a forked child and reports whether the kernel says it dumped core.
fn child_dumps_core() -> bool {
    // SAFETY: fork; the child only aborts.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: abort ends the process.
        unsafe { libc::abort() };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    libc::WCOREDUMP(status)
}

#[test]
fn the_core_dump_guard_restores_dumpable_and_the_soft_limit() {
    run(|| {
        let (_, hard) = core_limit();
        // A soft limit to restore that is neither 0 nor the hard limit.
        let soft = hard.min(1 << 20);
        let lim = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: `lim` is a valid rlimit; lowering needs no privilege.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_CORE, &lim) }, 0);
        ensure(mlock::secret::is_dumpable() == Ok(true), || {
            "dumpable at start".into()
        })?;
        let outer = mlock::secret::disable_core_dumps_with_guard().map_err(err)?;
        ensure(mlock::secret::is_dumpable() == Ok(false), || {
            "still dumpable".into()
        })?;
        ensure(core_limit() == (0, hard), || {
            format!("RLIMIT_CORE {:?}", core_limit())
        })?;
        ensure(!child_dumps_core(), || {
            "a core was dumped under the guard".into()
        })?;
        {
            let inner = mlock::secret::disable_core_dumps_with_guard().map_err(err)?;
            drop(inner);
            // The inner guard restores what it found: still off.
            ensure(mlock::secret::is_dumpable() == Ok(false), || {
                "inner restored too much".into()
            })?;
            ensure(core_limit() == (0, hard), || {
                "inner restored the limit".into()
            })?;
        }
        outer.restore().map_err(err)?;
        ensure(mlock::secret::is_dumpable() == Ok(true), || {
            "dumpable not restored".into()
        })?;
        ensure(core_limit() == (soft, hard), || {
            format!("RLIMIT_CORE {:?}", core_limit())
        })?;
        // Drop restores as well.
        drop(mlock::secret::disable_core_dumps_with_guard().map_err(err)?);
        ensure(
            mlock::secret::is_dumpable() == Ok(true) && core_limit() == (soft, hard),
            || "drop did not restore".into(),
        )
    });
}

/// Tests that make a system call fail, or stop in it, under a seccomp
/// filter: QEMU user mode implements no seccomp, so they run natively and in
/// the VMs (the harness filters `seccomp::` out of QEMU user runs).
mod seccomp {
    use super::*;

    #[test]
    fn memfd_secret_can_be_required_or_refused_and_seccomp_enosys_falls_back() {
        let expected = secretmem_expected();
        run(|| {
            let required = LockedBuf::<32>::with_backing(Backing::SecretMem);
            match (&required, expected) {
                (Ok(b), true) => ensure(b.backing() == Backing::SecretMem, || "backing".into())?,
                (Err(Error::Unsupported), false) => {}
                (other, _) => return Err(format!("required secretmem gave {other:?}")),
            }
            drop(required);
            let anon = LockedBuf::<32>::with_backing(Backing::Anonymous).map_err(err)?;
            ensure(anon.backing() == Backing::Anonymous, || {
                "forced anonymous".into()
            })?;
            // An older kernel, for real: seccomp makes memfd_secret say ENOSYS.
            // QEMU user mode cannot install filters; its memfd_secret already
            // says ENOSYS (checked by `secretmem_expected`).
            if !under_qemu_user() {
                fail_syscall_with(libc::SYS_memfd_secret, libc::ENOSYS, When::Always);
            }
            let fallback = LockedBuf::<32>::new().map_err(err)?;
            ensure(fallback.backing() == Backing::Anonymous, || {
                "no fallback".into()
            })?;
            let sealed = SealedBuf::<32>::new().map_err(err)?;
            ensure(sealed.backing() == Backing::Anonymous, || {
                "no sealed fallback".into()
            })?;
            let required = LockedBuf::<32>::with_backing(Backing::SecretMem).map(|b| b.backing());
            ensure(required == Err(Error::Unsupported), || {
                format!("required secretmem under ENOSYS gave {required:?}")
            })
        });
    }

    /// A kernel before 6.13, for real: seccomp refuses `MADV_GUARD_INSTALL`
    /// (EINVAL), and `mseal` says ENOSYS as before 6.10.
    #[test]
    fn without_guard_regions_or_mseal_the_fallbacks_hold() {
        run_with_seccomp(
            &[
                (libc::SYS_madvise, libc::EINVAL, When::ArgIs(2, 102)),
                (462, libc::ENOSYS, When::Always), // mseal
            ],
            || {
                let mut pool = Pool::with_backing(16 * 1024, Backing::Anonymous).map_err(err)?;
                let mut buf = LockedBuf::<32>::with_backing(Backing::Anonymous).map_err(err)?;
                let sealed = SealedBuf::<32>::with_backing(Backing::Anonymous).map_err(err)?;
                ensure_eq(
                    (pool.guards(), buf.guards(), sealed.guards()),
                    (Guards::Pages, Guards::Pages, Guards::Pages),
                    "guards when the kernel refuses guard markers",
                )?;
                ensure_eq(pool.mseal(), Err(Error::Unsupported), "Pool::mseal")?;
                ensure_eq(buf.mseal(), Err(Error::Unsupported), "LockedBuf::mseal")?;
                let key = pool.alloc::<32>().map_err(err)?;
                let addr = key.as_ref().as_ptr() as usize;
                let (before, entry, after) = around(addr);
                let (before, entry, after) = (
                    before.ok_or("no mapping before the pool")?,
                    entry.ok_or("the pool is not mapped")?,
                    after.ok_or("no mapping after the pool")?,
                );
                ensure(
                    before.perms == "---p" && after.perms == "---p" && entry.has("lo"),
                    || {
                        format!("PROT_NONE guards around the locked pool: {before:?} {entry:?} {after:?}")
                    },
                )?;
                let child = run_forked(|| {
                    // SAFETY: deliberately into the guard page: must fault.
                    unsafe { ((entry.end) as *const u8).read_volatile() };
                });
                child.killed_by(libc::SIGSEGV, "the pool's back guard page")
            },
        );
    }
}

// ---------------------------------------------------------------------------
// Pool

/// A pool of small secrets: density under an unprivileged limit, zeroing,
/// canaries on both sides, a full pool, fork, threads, guard regions and
/// `mseal`, and pools made after `lock_all` and after the swap-daemon
/// recipe.
mod pool {
    use super::*;
    use mlock::secret::PoolBuf;

    /// Lines of `/proc/self/maps`: the process's mappings.
    fn mappings() -> usize {
        std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .lines()
            .count()
    }

    /// Whether the kernel takes guard markers (`MADV_GUARD_INSTALL`, Linux
    /// 6.13+) in a fresh private anonymous mapping. QEMU user mode accepts
    /// every advice and applies none: no guard regions there.
    fn kernel_has_guard_regions() -> bool {
        if under_qemu_user() {
            return false;
        }
        let page = page_size();
        // SAFETY: a fresh private anonymous mapping of our own, advised
        // and unmapped here.
        unsafe {
            let at = libc::mmap(
                std::ptr::null_mut(),
                page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(at, libc::MAP_FAILED);
            let ok = libc::madvise(at, page, 102) == 0; // MADV_GUARD_INSTALL
            libc::munmap(at, page);
            ok
        }
    }

    /// Whether the kernel has `mseal(2)` (Linux 6.10+, 64-bit kernels, also
    /// for their 32-bit processes), asked with a length of 0, which seals
    /// nothing.
    fn kernel_has_mseal() -> bool {
        // SAFETY: mseal of an empty range changes nothing.
        let ret = unsafe { libc::syscall(462, 0usize, 0usize, 0usize) };
        ret == 0
    }

    /// The mapping that holds a pool's secret.
    fn mapping_of<const N: usize>(buf: &PoolBuf<'_, N>) -> Entry {
        let (_, entry, _) = around(buf.as_bytes().as_ptr() as usize);
        entry.expect("a pool secret lies in a mapping")
    }

    /// Any thread may allocate from a pool and drop its secrets.
    #[test]
    fn a_pool_and_its_secrets_are_send_and_sync() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Pool>();
        send_sync::<PoolBuf<'static, 32>>();
    }

    #[test]
    fn slots_are_zeroed_aligned_distinct_locked_and_given_back() {
        for backing in backings() {
            run_with(backing, || {
                let before = vm_lck_kb();
                let pool = Pool::with_backing(64 * 1024, backing).map_err(err)?;
                ensure_eq(pool.backing(), backing, "backing")?;
                // Secretmem counts in VmLck where the kernel marks the
                // mapping VM_LOCKED (6.1, 6.18; not Debian's 6.12 or 7.2,
                // which charge RLIMIT_MEMLOCK at the first touch instead).
                let counted = backing == Backing::Anonymous || vm_lck_kb() > before;
                ensure(!counted || vm_lck_kb() >= before + 64, || {
                    format!("VmLck {} kB after a 64 KiB pool, was {before}", vm_lck_kb())
                })?;
                let mut a = pool.alloc::<32>().map_err(err)?;
                let mut b = pool.alloc::<48>().map_err(err)?;
                ensure(a.as_bytes() == &[0; 32] && b.as_bytes() == &[0; 48], || {
                    "not zeroed".into()
                })?;
                let (pa, pb) = (a.as_ref().as_ptr() as usize, b.as_ref().as_ptr() as usize);
                ensure(pa % 16 == 0 && pb % 16 == 0, || format!("{pa:#x} {pb:#x}"))?;
                ensure(pb >= pa + 32 + 16 || pa >= pb + 48 + 16, || {
                    format!("slots overlap with their canaries: {pa:#x} {pb:#x}")
                })?;
                a.as_bytes_mut().fill(0xa5);
                b.as_mut().fill(0x3c);
                ensure(a.as_ref()[31] == 0xa5 && b.as_bytes()[47] == 0x3c, || {
                    "write".into()
                })?;
                let entry = mapping_of(&a);
                let dd = under_qemu_user() || entry.has("dd");
                // Secretmem: `lo` only where the kernel marks it VM_LOCKED.
                let lo = entry.has("lo") || backing == Backing::SecretMem;
                ensure(dd && lo, || format!("VmFlags {:?}", entry.flags))?;
                let debug = format!("{a:?} {pool:?}");
                ensure(!debug.contains("165") && !debug.contains("a5"), || {
                    format!("Debug leaks the secret: {debug}")
                })?;
                // A freed slot is zeroed and handed out again.
                drop(a);
                let again = pool.alloc::<32>().map_err(err)?;
                ensure_eq(again.as_ref().as_ptr() as usize, pa, "the freed slot")?;
                ensure(again.as_bytes() == &[0; 32], || {
                    "a reused slot is not zeroed".into()
                })?;
                b.clear();
                ensure(b.as_bytes() == &[0; 48], || "clear".into())?;
                let (zero, big) = (pool.alloc::<0>().map(drop), pool.alloc::<993>().map(drop));
                ensure(
                    zero == Err(Error::InvalidArgument) && big == Err(Error::InvalidArgument),
                    || "N = 0 and N > MAX_SECRET must be InvalidArgument".into(),
                )?;
                ensure(pool.alloc::<{ Pool::MAX_SECRET }>().is_ok(), || {
                    "MAX_SECRET fits".into()
                })?;
                drop((again, b));
                drop(pool);
                ensure(vm_lck_kb() == before, || {
                    format!(
                        "VmLck {} kB after the pool dropped, was {before}",
                        vm_lck_kb()
                    )
                })
            });
        }
    }

    #[test]
    fn a_hundred_thousand_32_byte_secrets_fit_7_mib_as_nobody_under_8_mib() {
        for backing in backings() {
            run_with(backing, || {
                set_memlock(8 << 20, 8 << 20);
                drop_to_nobody();
                let (maps, before) = (mappings(), vm_lck_kb());
                let pool = Pool::with_backing(7 << 20, backing).map_err(err)?;
                ensure(Pool::size_for(32, 100_000) <= 7 << 20, || {
                    format!("size_for(32, 100000) = {}", Pool::size_for(32, 100_000))
                })?;
                let mut keys = Vec::with_capacity(100_000);
                for i in 0..100_000u32 {
                    let mut key = pool.alloc::<32>().map_err(|e| format!("secret {i}: {e}"))?;
                    key.as_bytes_mut()[..4].copy_from_slice(&i.to_le_bytes());
                    keys.push(key);
                }
                let locked = vm_lck_kb() - before;
                let added = mappings().saturating_sub(maps);
                note(&format!(
                    "{backing:?}: 100000 secrets of 32 bytes in a 7 MiB pool: VmLck +{locked} kB, \
                     {added} mapping(s) added, guards {:?}",
                    pool.guards()
                ));
                ensure(added <= 16, || format!("{added} mappings added"))?;
                // Secretmem is charged to the limit either way, but shows
                // in VmLck only where the kernel marks it VM_LOCKED.
                let shown = backing == Backing::Anonymous || locked > 0;
                ensure(!shown || (7 * 1024..=8 * 1024).contains(&locked), || {
                    format!("VmLck grew by {locked} kB")
                })?;
                for (i, key) in keys.iter().enumerate() {
                    ensure(key.as_bytes()[..4] == (i as u32).to_le_bytes(), || {
                        format!("secret {i} changed")
                    })?;
                }
                // Filled to the last granule: then the pool says so.
                while pool.alloc::<32>().map(|k| keys.push(k)).is_ok() {}
                ensure_eq(pool.alloc::<32>().map(drop), Err(Error::PoolFull), "full")?;
                let full = keys.len();
                note(&format!(
                    "{backing:?}: the 7 MiB pool was full at {full} secrets"
                ));
                keys.swap_remove(4_321);
                ensure(
                    pool.alloc::<32>().is_ok_and(|k| k.as_bytes() == &[0; 32]),
                    || format!("a freed slot of a full pool ({full} secrets) was not handed out"),
                )
            });
        }
    }

    #[test]
    fn a_full_pool_is_an_error_that_names_the_fix() {
        run(|| {
            let pool = Pool::new(1).map_err(err)?;
            let mut keys = Vec::new();
            loop {
                match pool.alloc::<100>() {
                    Ok(k) => keys.push(k),
                    Err(e) => {
                        ensure_eq(e, Error::PoolFull, "the error of a full pool")?;
                        ensure(e.to_string().contains("Pool::size_for"), || e.to_string())?;
                        break;
                    }
                }
            }
            // A page holds its size less the key and the bitmap in
            // granules, 7 slots of 9 granules (100 + 32 bytes, rounded) per
            // bitmap word of 64: 27 slots in 4 KiB, 111 in 16 KiB.
            let page = page_size();
            let expected = (page - (16 + 8 * (page / 16).div_ceil(64)).next_multiple_of(16))
                / 16
                / 64
                * (64 / 9)
                + (page - (16 + 8 * (page / 16).div_ceil(64)).next_multiple_of(16)) / 16 % 64 / 9;
            ensure_eq(keys.len(), expected, "slots of 132 bytes in one page")?;
            // A smaller secret (3 granules) still fits the last word's
            // leftover where there are 3 granules left (4 KiB pages: 7),
            // and is PoolFull where there are not (16 KiB pages: 1).
            let granules = (page - (16 + 8 * (page / 16).div_ceil(64)).next_multiple_of(16)) / 16;
            let leftover = granules % 64 % 9;
            let gap = pool.alloc::<16>().map(drop);
            let want = if leftover >= 3 {
                Ok(())
            } else {
                Err(Error::PoolFull)
            };
            ensure_eq(gap, want, "a 48-byte slot in the leftover granules")
        });
    }

    /// Fills a pool of `Pool::size_for(N, count)` bytes: at least `count`
    /// secrets of `N` bytes fit.
    fn holds<const N: usize>(count: usize) -> Result<(), String> {
        let pool = Pool::new(Pool::size_for(N, count)).map_err(err)?;
        let mut keys = Vec::new();
        while let Ok(key) = pool.alloc::<N>() {
            keys.push(key);
        }
        ensure(keys.len() >= count, || {
            format!(
                "Pool::size_for({N}, {count}) = {} bytes held {} secrets",
                Pool::size_for(N, count),
                keys.len()
            )
        })
    }

    #[test]
    fn size_for_is_enough() {
        run(|| {
            holds::<1>(5_000)?;
            holds::<32>(1_000)?;
            holds::<100>(50)?;
            holds::<100>(20_000)?;
            holds::<{ Pool::MAX_SECRET }>(3)?;
            holds::<{ Pool::MAX_SECRET }>(3_000)
        });
    }

    /// In a child that must die by `SIGABRT`: a write one byte past the end
    /// of a pool secret (`past`) or one byte before its start, then the drop.
    fn overrun_and_drop(backing: Backing, past: bool) {
        let pool = Pool::with_backing(16 * 1024, backing).unwrap();
        let _neighbour = pool.alloc::<32>().unwrap();
        let mut key = pool.alloc::<24>().unwrap();
        let start = key.as_bytes_mut().as_mut_ptr();
        // SAFETY: deliberately out of bounds, into a canary inside the
        // pool's mapping.
        unsafe {
            let at = if past { start.add(24) } else { start.sub(1) };
            at.write_volatile(!at.read_volatile());
        }
    }

    #[test]
    fn a_write_past_either_end_aborts_when_the_secret_is_freed() {
        for backing in backings() {
            for past in [true, false] {
                let stderr = dies_by(libc::SIGABRT, "an overrun pool secret", || {
                    overrun_and_drop(backing, past)
                });
                assert!(
                    stderr.contains("canary beside a secret in a Pool was overwritten"),
                    "{backing:?} past={past}: stderr {stderr:?}"
                );
            }
        }
    }

    #[test]
    fn a_forked_child_reads_nothing_and_cannot_allocate() {
        for backing in backings() {
            run_with(backing, || {
                let pool = Pool::with_backing(16 * 1024, backing).map_err(err)?;
                let mut key = pool.alloc::<32>().map_err(err)?;
                key.as_bytes_mut().fill(0x5a);
                let addr = key.as_ref().as_ptr() as usize;
                let protected = pool.fork_protected();
                ensure(protected != under_qemu_user(), || {
                    format!("fork_protected() = {protected}")
                })?;
                in_child(|| {
                    let (_, entry, _) = around(addr);
                    match (backing, protected) {
                        (Backing::SecretMem, _) => ensure(
                            entry.as_ref().is_none_or(|e| !e.name.contains("secretmem")),
                            || format!("the secretmem pool is in the child: {entry:?}"),
                        )?,
                        (Backing::Anonymous, true) => ensure(key.as_bytes() == &[0; 32], || {
                            format!("the child reads {:?}", &key.as_bytes()[..4])
                        })?,
                        (Backing::Anonymous, false) => {}
                        (other, _) => return Err(format!("unknown backing {other:?}")),
                    }
                    let inherited = pool.alloc::<32>().map(drop);
                    ensure_eq(inherited, Err(Error::NotMapped), "alloc in the child")?;
                    // The child's copies drop without touching the pool.
                    // SAFETY: bitwise copies; this child `_exit`s and never
                    // drops the originals.
                    let (k, p) = unsafe { (std::ptr::read(&key), std::ptr::read(&pool)) };
                    drop(k);
                    drop(p);
                    Ok(())
                })?;
                ensure(key.as_bytes() == &[0x5a; 32], || {
                    "parent lost its secret".into()
                })
            });
        }
    }

    #[test]
    fn threads_share_one_pool_and_free_each_others_secrets() {
        run(|| {
            let pool = Pool::new(Pool::size_for(32, 4 * 2_000)).map_err(err)?;
            let handed: Vec<PoolBuf<'_, 32>> = common::thread::scope(|s| {
                let workers: Vec<_> = (0..4u8)
                    .map(|t| {
                        let pool = &pool;
                        s.spawn(move || {
                            let mut mine = Vec::new();
                            for round in 0..50 {
                                for _ in 0..2_000 {
                                    let mut k = pool.alloc::<32>().expect("room for every thread");
                                    k.as_bytes_mut().fill(t);
                                    mine.push(k);
                                }
                                assert!(mine.iter().all(|k| k.as_bytes() == &[t; 32]));
                                if round < 49 {
                                    mine.clear();
                                }
                            }
                            mine
                        })
                    })
                    .collect();
                workers
                    .into_iter()
                    .flat_map(|w| w.join().unwrap())
                    .collect()
            });
            let mut starts: Vec<usize> = handed
                .iter()
                .map(|k| k.as_ref().as_ptr() as usize)
                .collect();
            starts.sort_unstable();
            starts.dedup();
            ensure_eq(starts.len(), 8_000, "distinct live secrets")?;
            // Dropped on another thread than the one that allocated them.
            common::thread::scope(|s| {
                s.spawn(move || drop(handed));
            });
            let after = pool.alloc::<32>().map(drop);
            ensure(after.is_ok(), || "the pool after the threads".into())
        });
    }

    /// Makes a pool and a buffer, checks their guards against the kernel
    /// (guard regions where it takes them and the memory is not locked at
    /// birth) and that a touch of each guard page faults.
    fn guarded(locked_at_birth: bool) -> Result<(), String> {
        let regions = kernel_has_guard_regions() && !locked_at_birth;
        let pool = Pool::with_backing(64 * 1024, Backing::Anonymous).map_err(err)?;
        let buf = LockedBuf::<32>::with_backing(Backing::Anonymous).map_err(err)?;
        let want = if regions {
            Guards::Regions
        } else {
            Guards::Pages
        };
        ensure_eq((pool.guards(), buf.guards()), (want, want), "guards")?;
        let key = pool.alloc::<32>().map_err(err)?;
        let entry = mapping_of(&key);
        let page = page_size();
        if regions {
            // One mapping: the guard pages lie inside it.
            ensure(entry.end - entry.start == 64 * 1024 + 2 * page, || {
                format!("the pool's mapping: {entry:?}")
            })?;
        }
        let buf_back = buf.as_ref().as_ptr() as usize + 32;
        let (pool_front, pool_back) = if regions {
            (entry.start, entry.end - page)
        } else {
            (entry.start - page, entry.end)
        };
        // The kernel cannot read a guard page either: write(2) from one
        // fails with EFAULT (where a user access would die of SIGSEGV).
        let mut fds = [0; 2];
        // SAFETY: a pipe of our own, closed below.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let mut result = Ok(());
        for (at, what) in [
            (pool_front, "the pool's front guard"),
            (pool_back, "the pool's back guard"),
            (buf_back, "the buffer's back guard"),
            (buf_back - page, "the buffer's data (a control)"),
        ] {
            // SAFETY: write(2) reads one byte at `at`, or fails with EFAULT.
            let wrote = unsafe { libc::write(fds[1], at as *const _, 1) };
            let errno = std::io::Error::last_os_error().raw_os_error();
            let readable = what.ends_with("(a control)");
            if (wrote == 1) == readable && (readable || errno == Some(libc::EFAULT)) {
                continue;
            }
            result = Err(format!(
                "{what} at {at:#x}: write gave {wrote}, errno {errno:?}"
            ));
        }
        // SAFETY: the pipe's two descriptors, ours.
        unsafe { (libc::close(fds[0]), libc::close(fds[1])) };
        result?;
        // And a user access faults; the buffer's guards are not wiped in a
        // forked child, so the child can show it (a pool's are: its one
        // mapping is wiped whole, guards included).
        let child = run_forked(|| {
            // SAFETY: deliberately into a guard page: must fault.
            unsafe { (buf_back as *const u8).read_volatile() };
        });
        child.killed_by(libc::SIGSEGV, "the buffer's back guard")
    }

    #[test]
    fn guards_are_guard_regions_where_the_kernel_offers_them_and_fault() {
        run(|| {
            if !kernel_has_guard_regions() {
                note(
                    "MADV_GUARD_INSTALL is not offered here (before 6.13): PROT_NONE guards tested",
                );
            }
            guarded(false)
        });
    }

    #[test]
    fn guards_work_after_lock_all_current_and_future() {
        run(|| {
            mlock::lock_all(mlock::Flags::CURRENT | mlock::Flags::FUTURE).map_err(err)?;
            guarded(true)
        });
    }

    #[test]
    fn guards_work_after_the_swap_daemon_recipe() {
        use mlock::daemon::{harden_swap_daemon, Hardening, Stage};
        run(|| {
            let recipe = if cap_sys_resource() {
                Hardening::SWAP_DAEMON
            } else {
                note("no CAP_SYS_RESOURCE: the recipe runs without its IO_FLUSHER step");
                Hardening::SWAP_DAEMON.without(Stage::IoFlusher)
            };
            harden_swap_daemon(&recipe).map_err(|e| e.to_string())?;
            guarded(true)
        });
    }

    #[test]
    fn mseal_makes_munmap_and_mprotect_fail_where_the_kernel_has_it() {
        for backing in backings() {
            run_with(backing, || msealed(backing));
        }
    }

    fn msealed(backing: Backing) -> Result<(), String> {
        {
            let mut pool = Pool::with_backing(16 * 1024, backing).map_err(err)?;
            let mut buf = LockedBuf::<32>::with_backing(backing).map_err(err)?;
            if !kernel_has_mseal() {
                ensure_eq(pool.mseal(), Err(Error::Unsupported), "Pool::mseal")?;
                ensure_eq(buf.mseal(), Err(Error::Unsupported), "LockedBuf::mseal")?;
                ensure(!pool.is_msealed() && !buf.is_msealed(), || {
                    "marked sealed".into()
                })?;
                note("mseal(2) is not offered here (before 6.10): Unsupported tested");
                return Ok(());
            }
            pool.mseal().map_err(err)?;
            buf.mseal().map_err(err)?;
            ensure(pool.is_msealed() && buf.is_msealed(), || {
                "not marked sealed".into()
            })?;
            // A forked child's copies drop without touching the pages
            // (absent or wiped there, and still sealed).
            in_child(|| {
                // SAFETY: bitwise copies; this child `_exit`s and never
                // drops the originals.
                let (p, b) = unsafe { (std::ptr::read(&pool), std::ptr::read(&buf)) };
                drop(b);
                drop(p);
                Ok(())
            })?;
            let mut key = pool.alloc::<32>().map_err(err)?;
            key.as_bytes_mut().fill(7);
            buf.as_bytes_mut().fill(9);
            let page = page_size();
            let at = |p: *const u8| (p as usize) & !(page - 1);
            let (key_page, buf_page) = (at(key.as_ref().as_ptr()), at(buf.as_ref().as_ptr()));
            for (addr, what) in [(key_page, "pool"), (buf_page, "buffer")] {
                // SAFETY: calls the kernel must refuse on sealed pages.
                let (unmapped, reprotected) = unsafe {
                    (
                        libc::munmap(addr as *mut _, page),
                        libc::mprotect(addr as *mut _, page, libc::PROT_NONE),
                    )
                };
                let errno = std::io::Error::last_os_error().raw_os_error();
                ensure(
                    unmapped == -1 && reprotected == -1 && errno == Some(libc::EPERM),
                    || {
                        format!(
                            "{what}: munmap {unmapped}, mprotect {reprotected}, errno {errno:?}"
                        )
                    },
                )?;
            }
            drop(key);
            let before = vm_lck_kb();
            let buf_addr = buf.as_ref().as_ptr() as usize;
            drop(buf);
            drop(pool);
            // Still mapped and locked, and zeroed.
            ensure_eq(vm_lck_kb(), before, "VmLck after dropping sealed memory")?;
            // SAFETY: the sealed pages stay mapped for the life of the
            // process (just checked by the refused munmap).
            let left = unsafe { std::slice::from_raw_parts(buf_addr as *const u8, 32) };
            ensure(left == [0; 32], || {
                format!("sealed buffer after drop: {left:?}")
            })
        }
    }
}
