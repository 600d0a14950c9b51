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
use mlock::secret::{Backing, LockedBuf, SealedBuf};
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
        for guard in [before_entry, after_entry] {
            let guard = guard.ok_or("no guard page")?;
            ensure(
                guard.perms.starts_with("---")
                    && guard.end - guard.start == page
                    && (guard.end == entry.start || guard.start == entry.end),
                || format!("not a guard page next to {entry:?}: {guard:?}"),
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
    for backing in backings() {
        run_with(backing, || {
            let page = page_size() as u64;
            ensure(page == 4096, || {
                format!("the sizes below assume 4 KiB pages, not {page} bytes")
            })?;
            set_memlock(page, page);
            drop_to_nobody();
            // 16 bytes of canary + (page - 16) fit one page ...
            let one = LockedBuf::<4080>::with_backing(backing).map_err(err)?;
            // ... a second buffer does not fit the rest of the limit,
            let second = LockedBuf::<16>::with_backing(backing).map(|_| ());
            ensure(second == Err(Error::ResourceLimit), || {
                format!("{backing:?}: second buffer over the limit gave {second:?}")
            })?;
            drop(one);
            // ... and neither does one that needs two pages.
            let two = LockedBuf::<4081>::with_backing(backing).map(|_| ());
            ensure(two == Err(Error::ResourceLimit), || {
                format!("{backing:?}: two pages over a one-page limit gave {two:?}")
            })?;
            let sealed = SealedBuf::<4081>::with_backing(backing).map(|_| ());
            ensure(sealed == Err(Error::ResourceLimit), || {
                format!("{backing:?}: sealed over the limit gave {sealed:?}")
            })
        });
    }
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
                    std::thread::spawn(move || overwrite_the_canary_and_drop(backing, sealed))
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
                std::thread::spawn(move || overwrite_the_canary_and_drop(backing, false))
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
        let page = page_size();
        if page == 4096 {
            dies_by(libc::SIGSEGV, &format!("{backing:?} underflow"), || {
                let mut buf = LockedBuf::<4080>::with_backing(backing).unwrap();
                let start = buf.as_bytes_mut().as_mut_ptr();
                // SAFETY: deliberately out of bounds: 17 bytes before the
                // secret is the byte before the data page.
                unsafe { start.sub(17).write_volatile(1) };
            });
        }
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
                    (Backing::SecretMem, _) => ensure(entry.is_none(), || {
                        format!("the secretmem mapping is in the child: {entry:?}")
                    })?,
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

fn core_limit() -> (u64, u64) {
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
}
