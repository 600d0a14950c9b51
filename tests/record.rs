//! The crate's record of held locks (`LockGuard`, `LockedBuf`, `SealedBuf`,
//! `lock_all`) under threads, `fork(2)`, PID reuse and signal handlers.
//!
//! Covered: a fork child starts with an empty record and no `lock_all` in
//! force, whatever its parent's threads were doing at the fork (holding
//! guards, inside `lock_all`, holding 128 ranges); a process that has its
//! ancestor's PID (nested PID namespaces) neither waits for the ancestor's
//! record, nor believes the ancestor's `lock_all`, nor touches inherited
//! secret buffers it does not own; the crate's calls, made from a signal
//! handler that interrupted its thread in the middle of a guard's drop, do
//! their work instead of hanging, and a guard dropped there is unlocked; a
//! secret buffer leaves the record before its pages are unmapped; a guard
//! whose `mlock` fails leaves no page locked that no one holds; a
//! `SCHED_FIFO` thread on the CPU of another thread in the middle of a
//! guard's drop does not wait for it; an explicit
//! unlock under `lock_all` unlocks (the kernel splits the mapping); the
//! record holds 128 ranges; and a thread stress run keeps each page's lock
//! in step with the live guards.
//!
//! Interleavings are forced, not hoped for: a seccomp user-notification
//! supervisor (`common::notify`) stops one thread inside a chosen syscall
//! (the `munlock` of a guard drop, the `mlockall` of `lock_all`, the
//! `mlock` of a new guard, the first call after a buffer's `munmap`) and
//! lets it go, or fails the call, when the test says. Each scenario runs
//! in a forked child with a deadline (`notify::within`): a hang becomes a
//! failure that says so. Every check reads the kernel's own view: smaps
//! (`Locked:`, `VmFlags`) or `VmLck`.
//!
//! The supervised tests are in the module `seccomp`, the PID-reuse tests in
//! `pid_reuse`: QEMU user mode can run neither (it has no seccomp, and it
//! ignores the `madvise` advice a per-process record relies on, so the
//! crate tells processes apart by `getpid` there). The harness filters
//! both out of QEMU user runs; run there anyway, they fail saying why.

mod common;

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use common::notify::{self, within, Listener, Rule};
use common::*;
use mlock::secret::{Backing, LockedBuf, SealedBuf};
use mlock::{Error, Flags, LockGuard};

/// How long a scenario may run before it counts as hung (the VMs emulate
/// the CPU and are about ten times slower than this machine).
const DEADLINE: Duration = Duration::from_secs(30);
/// How long a nested child (a fork of the scenario) may run.
const NESTED: Duration = Duration::from_secs(15);
/// How long to wait for a thread to reach a call or a handler to finish.
const WAIT: Duration = Duration::from_secs(8);

fn kb(pages: usize) -> u64 {
    (pages * page_size() / 1024) as u64
}

/// The page that holds `ptr`.
fn page_of(ptr: *const u8) -> usize {
    ptr as usize & !(page_size() - 1)
}

/// One mapping of `/proc/self/smaps`.
#[derive(Debug)]
struct Vma {
    start: usize,
    end: usize,
    locked_kb: u64,
    flags: Vec<String>,
}

impl Vma {
    /// `VM_LOCKED` (`lo` in `VmFlags`).
    fn locked(&self) -> bool {
        self.flags.iter().any(|f| f == "lo")
    }
}

/// Every mapping of this process, as smaps shows it.
fn vmas() -> Vec<Vma> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("read /proc/self/smaps");
    let mut out: Vec<Vma> = Vec::new();
    for line in smaps.lines() {
        let head = line.split_once(' ').map_or(line, |(h, _)| h);
        if let Some((start, end)) = head.split_once('-') {
            if let (Ok(start), Ok(end)) = (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            ) {
                out.push(Vma {
                    start,
                    end,
                    locked_kb: 0,
                    flags: Vec::new(),
                });
                continue;
            }
        }
        let Some(vma) = out.last_mut() else { continue };
        if let Some(v) = line.strip_prefix("Locked:") {
            vma.locked_kb = v
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
        } else if let Some(v) = line.strip_prefix("VmFlags:") {
            vma.flags = v.split_whitespace().map(str::to_string).collect();
        }
    }
    out
}

/// The mapping that starts at `addr`.
fn vma_at(addr: usize) -> Option<Vma> {
    vmas().into_iter().find(|v| v.start == addr)
}

/// Fails unless the page at `addr` is unlocked: the mapping that holds it
/// has no `Locked:` pages. (Once unlocked, a mapping may merge with an
/// unlocked neighbour and no longer start at `addr`.)
fn expect_unlocked_page(addr: usize, what: &str) -> Result<(), String> {
    let vma = vmas()
        .into_iter()
        .find(|v| v.start <= addr && addr < v.end)
        .ok_or_else(|| format!("{what}: nothing mapped at {addr:#x}"))?;
    ensure(vma.locked_kb == 0, || {
        format!(
            "{what}: Locked {} kB in the mapping {:#x}-{:#x}, wanted 0",
            vma.locked_kb, vma.start, vma.end
        )
    })
}

/// Fails unless a mapping starts at `addr` with `want` kB `Locked:`.
fn expect_locked(addr: usize, want: u64, what: &str) -> Result<(), String> {
    let vma = vma_at(addr).ok_or_else(|| format!("{what}: no mapping starts at {addr:#x}"))?;
    ensure(vma.locked_kb == want, || {
        format!("{what}: Locked {} kB, wanted {want} kB", vma.locked_kb)
    })
}

/// Whether the mapping that holds `addr` is `VM_LOCKED`.
fn page_locked(addr: usize) -> bool {
    vmas()
        .iter()
        .find(|v| v.start <= addr && addr < v.end)
        .is_some_and(Vma::locked)
}

/// Maps one fresh read-write page at exactly `addr` (which must be free:
/// `MAP_FIXED_NOREPLACE`) and faults it in. Never unmapped.
fn fresh_page_at(addr: usize) -> Result<&'static [u8], String> {
    let page = page_size();
    // SAFETY: MAP_FIXED_NOREPLACE maps only where nothing is mapped, so no
    // existing memory is replaced.
    let got = unsafe {
        libc::mmap(
            addr as *mut libc::c_void,
            page,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    };
    if got as usize != addr {
        return Err(format!(
            "mmap of a fresh page at {addr:#x}: got {got:?} ({})",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: the page was just mapped read-write and is never unmapped,
    // so the slice may live for the rest of the process.
    unsafe {
        got.cast::<u8>().write_volatile(1);
        Ok(std::slice::from_raw_parts(got.cast::<u8>(), page))
    }
}

/// An [`Anon`] that lives for the rest of the (forked) process.
fn leaked(len: usize) -> &'static Anon {
    Box::leak(Box::new(Anon::new(len)))
}

/// Runs `scenario` in a forked child with a deadline, under a kernel that
/// can stop a call for a supervisor (not QEMU user mode, which has no
/// seccomp: the test fails there, saying so).
#[track_caller]
fn supervised(scenario: impl FnOnce() -> Result<(), String>) {
    if under_qemu_user() {
        cannot_run_here(
            "QEMU user mode has no seccomp (seccomp(2) is ENOSYS, PR_SET_SECCOMP EINVAL), and \
             this interleaving is forced by a seccomp user-notification supervisor",
        );
    }
    run(|| {
        ensure(notify::kernel_has_user_notif_continue(), || {
            "this kernel predates seccomp user notification with CONTINUE (Linux 5.5)".into()
        })?;
        within(DEADLINE, scenario).map(drop)
    });
}

/// The backings this kernel offers, saying which one it does not.
fn backings() -> Vec<Backing> {
    let secretmem = in_child(|| {
        LockedBuf::<32>::with_backing(Backing::SecretMem)
            .map(drop)
            .map_err(|e| format!("{e:?}"))
    });
    match secretmem {
        Ok(()) => vec![Backing::SecretMem, Backing::Anonymous],
        Err(e) => {
            // The VMs say whether the kernel was booted with it on.
            let booted_on = std::env::var(common::contract::SECRETMEM_ENV).is_ok_and(|v| v == "1");
            assert!(!booted_on, "memfd_secret was turned on at boot, yet: {e}");
            note(&format!(
                "memfd_secret is not available here ({e}): the SecretMem case runs where the \
                 kernel offers it (6.5+, or secretmem.enable=1)"
            ));
            vec![Backing::Anonymous]
        }
    }
}

/// `Ok` if no case failed, else every failure, one a line.
fn all_passed(failures: Vec<String>) -> Result<(), String> {
    ensure(failures.is_empty(), || failures.join("\n"))
}

/// Waits until `cond` holds, up to `limit`; returns whether it did.
fn wait_until(limit: Duration, cond: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !cond() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

// The supervisor itself.

// A fork child starts with an empty record.

#[test]
fn a_fork_child_locks_fresh_memory_where_its_parent_has_a_secret_buffer() {
    let backings = backings();
    run(|| {
        within(DEADLINE, || {
            let mut failures = Vec::new();
            for backing in backings {
                let buf = LockedBuf::<32>::with_backing(backing)
                    .map_err(|e| format!("{backing:?}: {e}"))?;
                let data = page_of(buf.as_ref().as_ptr());
                let child = within(NESTED, || {
                    // A secretmem buffer is MADV_DONTFORK (nothing mapped
                    // here), an anonymous one WIPEONFORK (the child's own
                    // zeroed page): either way, fresh memory of the child's.
                    // SAFETY: the range is the child's copy of the buffer,
                    // which the child never uses.
                    unsafe { libc::munmap(data as *mut libc::c_void, page_size()) };
                    let fresh = fresh_page_at(data)?;
                    let guard = LockGuard::new(fresh).map_err(|e| format!("guard: {e}"))?;
                    expect_locked(
                        data,
                        kb(1),
                        "a guard over fresh memory at the address of the parent's buffer",
                    )?;
                    drop(guard);
                    expect_unlocked_page(data, "that guard dropped")
                });
                failures.extend(child.err().map(|e| format!("{backing:?}: {e}")));
                drop(buf);
            }
            all_passed(failures)
        })
        .map(drop)
    });
}

#[test]
fn a_fork_child_unlocks_pages_that_a_thread_of_its_parent_holds() {
    run(|| {
        within(DEADLINE, || {
            let map = Anon::new(4 * page_size());
            let addr = map.addr as usize;
            let barrier = Barrier::new(2);
            let region = map.slice();
            common::thread::scope(|s| {
                let holder = s.spawn(|| {
                    let guard = LockGuard::new(region).expect("the parent thread's guard");
                    barrier.wait();
                    barrier.wait();
                    drop(guard);
                });
                barrier.wait();
                let child = within(NESTED, || {
                    expect_locked(addr, 0, "in the child, before it locks")?;
                    let guard = LockGuard::new(map.slice()).map_err(|e| format!("guard: {e}"))?;
                    expect_locked(addr, kb(4), "the child's guard")?;
                    drop(guard);
                    expect_locked(addr, 0, "the child's guard dropped")?;
                    mlock::lock(map.slice()).map_err(|e| format!("lock: {e}"))?;
                    mlock::unlock(map.slice()).map_err(|e| format!("unlock: {e}"))?;
                    expect_locked(addr, 0, "lock then unlock in the child")
                });
                barrier.wait();
                holder.join().map_err(|_| "the parent thread panicked")?;
                child.map(drop)
            })
        })
        .map(drop)
    });
}

#[test]
fn unlock_all_in_a_fork_child_locks_nothing_that_its_parent_holds() {
    run(|| {
        within(DEADLINE, || {
            let map = Anon::new(8 << 20);
            let guard = LockGuard::new(map.slice()).map_err(|e| format!("guard: {e}"))?;
            within(NESTED, || {
                ensure_eq(vm_lck_kb(), 0, "VmLck in the child at start")?;
                mlock::unlock_all().map_err(|e| format!("unlock_all: {e}"))?;
                ensure_eq(vm_lck_kb(), 0, "VmLck in the child after its unlock_all")
            })?;
            drop(guard);
            Ok(())
        })
        .map(drop)
    });
}

#[test]
fn a_fork_child_of_a_parent_holding_128_ranges_takes_128_of_its_own() {
    run(|| {
        within(DEADLINE, || {
            let page = page_size();
            let map = Anon::new(129 * page);
            let slice = map.slice();
            let mut guards = Vec::new();
            for i in 0..128 {
                guards.push(
                    LockGuard::new(&slice[i * page..(i + 1) * page])
                        .map_err(|e| format!("parent guard {i}: {e}"))?,
                );
            }
            let full = LockGuard::new(&slice[128 * page..]).map(drop);
            ensure_eq(full, Err(Error::TooManyLocks), "the parent's 129th range")?;
            within(NESTED, || {
                let own = Anon::new(129 * page);
                let own_slice = own.slice();
                let first = LockGuard::new(&own_slice[..page])
                    .map_err(|e| format!("the child's first guard: {e}"))?;
                expect_locked(own.addr as usize, kb(1), "the child's first guard")?;
                let buf =
                    LockedBuf::<32>::new().map_err(|e| format!("the child's LockedBuf: {e}"))?;
                let mut more = Vec::new();
                for i in 1..127 {
                    more.push(
                        LockGuard::new(&own_slice[i * page..(i + 1) * page])
                            .map_err(|e| format!("the child's guard {i}: {e}"))?,
                    );
                }
                let over = LockGuard::new(&own_slice[128 * page..]).map(drop);
                ensure_eq(over, Err(Error::TooManyLocks), "the child's 129th range")?;
                drop((first, buf, more));
                Ok(())
            })?;
            drop(guards);
            Ok(())
        })
        .map(drop)
    });
}

// A process with its ancestor's PID: nested PID namespaces. The test's
// child unshares a PID namespace and forks G, its PID 1; G unshares
// another and forks H, PID 1 there: H's getpid() is G's.

/// Runs `in_g` as PID 1 of a new PID namespace (G); `in_g` forks its
/// children with [`fork_with_my_pid`]. Not under QEMU user mode (the note
/// says why).
#[track_caller]
fn with_pid_reuse(in_g: impl FnOnce() -> Result<(), String>) {
    if under_qemu_user() {
        cannot_run_here(
            "QEMU user mode ignores madvise, so the crate tells a forked process from its \
             parent by getpid there, which a process with its ancestor's PID defeats",
        );
    }
    run(|| {
        // SAFETY: unshare on a single-threaded forked child; it changes
        // only which PID namespace this process's children get.
        if unsafe { libc::unshare(libc::CLONE_NEWPID) } != 0 {
            return Err(format!(
                "unshare(CLONE_NEWPID) needs root (CAP_SYS_ADMIN): {}",
                std::io::Error::last_os_error()
            ));
        }
        within(DEADLINE, || {
            // SAFETY: getpid has no preconditions.
            ensure_eq(unsafe { libc::getpid() }, 1, "G's PID in its namespace")?;
            in_g()
        })
        .map(drop)
    });
}

/// Forks `in_h` as PID 1 of a new PID namespace, so that its PID is that
/// of its parent G (PID 1 itself); returns what `in_h` wrote to stderr.
/// Each call enters G's own namespace for its children again first, so G
/// can fork several.
fn fork_with_my_pid(in_h: impl FnOnce() -> Result<(), String>) -> Result<String, String> {
    // SAFETY: plain syscalls; the path is NUL-terminated; the descriptor
    // is closed below.
    unsafe {
        let own = libc::open(
            c"/proc/self/ns/pid".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        if own < 0 || libc::setns(own, libc::CLONE_NEWPID) != 0 {
            return Err(format!(
                "entering G's own PID namespace: {}",
                std::io::Error::last_os_error()
            ));
        }
        libc::close(own);
        if libc::unshare(libc::CLONE_NEWPID) != 0 {
            return Err(format!(
                "unshare(CLONE_NEWPID) in G: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    within(NESTED, || {
        // SAFETY: as above.
        ensure_eq(unsafe { libc::getpid() }, parent, "H's PID (its parent's)")?;
        in_h()
    })
}

// Signal handlers that interrupt their thread inside the record. The
// thread drops a guard and is stopped inside that drop's munlock, holding
// the record; a signal (SA_RESTART) runs the handler on it, then the
// munlock starts again and is stopped again.

/// A value that a signal handler hands over to the thread that waits for
/// it: written before `full` is set (Release), read after (Acquire).
struct Mailbox<T> {
    value: UnsafeCell<Option<T>>,
    full: AtomicBool,
}

// SAFETY: one side writes the value, then publishes it with a Release
// store of `full`; the other reads it only after an Acquire swap of `full`
// saw it set. The tests never have two writers or two readers at once.
unsafe impl<T: Send> Sync for Mailbox<T> {}

impl<T> Mailbox<T> {
    const fn new() -> Self {
        Mailbox {
            value: UnsafeCell::new(None),
            full: AtomicBool::new(false),
        }
    }

    fn put(&self, value: T) {
        // SAFETY: `full` is clear, so no one reads the cell now (see the
        // Sync impl).
        unsafe { *self.value.get() = Some(value) };
        self.full.store(true, Ordering::Release);
    }

    fn take(&self) -> Option<T> {
        if self.full.swap(false, Ordering::Acquire) {
            // SAFETY: the writer is done (it set `full` after writing).
            unsafe { (*self.value.get()).take() }
        } else {
            None
        }
    }
}

/// What the handler does, by index into [`HANDLER_CALLS`].
static HANDLER_CALL: AtomicUsize = AtomicUsize::new(0);
/// The region the handler's calls use (address, length).
static HANDLER_ADDR: AtomicUsize = AtomicUsize::new(0);
static HANDLER_LEN: AtomicUsize = AtomicUsize::new(0);
static HANDLER_ENTERED: AtomicBool = AtomicBool::new(false);
static HANDLER_RESULT: Mailbox<Result<(), Error>> = Mailbox::new();
/// The guard the handler drops ([`DROP_GUARD`]).
static HANDLER_GUARD: Mailbox<LockGuard<'static>> = Mailbox::new();

/// The calls the handler makes, each in its own signal; each needs the
/// record. `DROP_GUARD` drops [`HANDLER_GUARD`] instead.
const HANDLER_CALLS: [&str; 6] = [
    "unlock",
    "unlock_raw",
    "LockGuard::new",
    "LockedBuf::new",
    "lock_all",
    "unlock_all",
];
const DROP_GUARD: usize = HANDLER_CALLS.len();

extern "C" fn on_signal(_: libc::c_int) {
    HANDLER_ENTERED.store(true, Ordering::SeqCst);
    let region = || -> &'static [u8] {
        let addr = HANDLER_ADDR.load(Ordering::SeqCst) as *const u8;
        // SAFETY: the tests that make these calls mapped this region (not
        // null) for the rest of the process.
        unsafe { std::slice::from_raw_parts(addr, HANDLER_LEN.load(Ordering::SeqCst)) }
    };
    // The guard is forgotten: its entry stays, and `unlock_all` must lock
    // its pages again. The buffer is made and dropped in the handler.
    let result = match HANDLER_CALL.load(Ordering::SeqCst) {
        0 => mlock::unlock(region()),
        // SAFETY: the region is the test's own mapping.
        1 => unsafe { mlock::unlock_raw(region().as_ptr(), region().len()) },
        2 => LockGuard::new(region()).map(std::mem::forget),
        3 => LockedBuf::<32>::new().map(drop),
        4 => mlock::lock_all(Flags::FUTURE),
        5 => mlock::unlock_all(),
        _ => {
            drop(HANDLER_GUARD.take());
            Ok(())
        }
    };
    HANDLER_RESULT.put(result);
}

/// Installs [`on_signal`] for `SIGUSR1`, with `SA_RESTART` (so that the
/// interrupted munlock starts again).
fn install_handler() -> Result<(), String> {
    // SAFETY: sigaction is plain data; zeroed is a valid empty mask.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
    action.sa_flags = libc::SA_RESTART;
    // SAFETY: `action` is a valid sigaction whose handler is an
    // `extern "C" fn(c_int)`.
    let rc = unsafe { libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()) };
    ensure(rc == 0, || {
        format!("sigaction: {}", std::io::Error::last_os_error())
    })
}

/// Runs handler call `which` on the thread stopped in `call`, waits for
/// the handler and for the restarted call, and returns the handler's
/// result and the new stopped call. A handler that does not return is a
/// failure at once (its thread cannot be joined).
fn signal_stopped_thread(
    listener: &Listener,
    call: notify::Call,
    which: usize,
) -> Result<(Result<(), Error>, notify::Call), String> {
    let name = HANDLER_CALLS.get(which).copied().unwrap_or("a guard drop");
    HANDLER_CALL.store(which, Ordering::SeqCst);
    HANDLER_ENTERED.store(false, Ordering::SeqCst);
    // SAFETY: tgkill to a thread of this process, with a handler installed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_tgkill,
            libc::getpid(),
            call.tid as libc::c_int,
            libc::SIGUSR1,
        )
    };
    ensure(rc == 0, || {
        format!("tgkill: {}", std::io::Error::last_os_error())
    })?;
    let deadline = Instant::now() + WAIT;
    let result = loop {
        if let Some(result) = HANDLER_RESULT.take() {
            break result;
        }
        if Instant::now() >= deadline {
            if HANDLER_ENTERED.load(Ordering::SeqCst) {
                notify::fail_now(&format!(
                    "hung: {name}, called from a signal handler that interrupted its thread \
                     inside the record, did not return within {WAIT:?}"
                ));
            }
            return Err(format!(
                "the signal handler did not run within {WAIT:?} while its thread was stopped \
                 inside the record"
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let again = listener.expect(WAIT, "the munlock restarted after the handler")?;
    ensure_eq(again.nr, call.nr, "the restarted syscall")?;
    Ok((result, again))
}

// A lock that lands while an unlock of the same pages is under way: the
// drop has looked at the record and decided to munlock, and is stopped in
// its munlock; the lock comes and goes; then the munlock runs. The drop
// must lock again what the newcomer (or lock_all) holds.

/// Runs `body` on a thread of its own whose calls that `rules` match stop
/// for the supervisor; once the first (`what`) has stopped, runs
/// `meanwhile` with it, which answers any further stops itself and returns
/// the call to let go last; then lets every call run, and returns
/// `body`'s result.
fn while_stopped<R: Send>(
    rules: &[Rule],
    what: &str,
    body: impl FnOnce() -> R + Send,
    meanwhile: impl FnOnce(&notify::Listener, notify::Call) -> Result<notify::Call, String>,
) -> Result<R, String> {
    common::thread::scope(|s| {
        let (listener, thread) = notify::spawn_filtered(s, rules, body)
            .map_err(|e| format!("seccomp user notification: {e}"))?;
        let call = listener.expect(WAIT, what)?;
        let last = meanwhile(&listener, call)?;
        listener.resume(&last)?;
        listener.serve_until_gone(WAIT)?;
        thread
            .join()
            .map_err(|_| format!("the thread stopped in {what} panicked"))?
            .ok_or_else(|| format!("the thread stopped in {what} did not run"))
    })
}

/// Drops a guard over `region` on a thread stopped inside the drop's
/// `munlock`, runs `meanwhile` while it is stopped, then lets the munlock
/// run and waits for the drop.
fn while_a_drop_is_inside_munlock(
    region: &'static [u8],
    meanwhile: impl FnOnce() -> Result<(), String>,
) -> Result<(), String> {
    let guard = LockGuard::new(region).map_err(|e| format!("the dropped guard: {e}"))?;
    while_stopped(
        &[Rule::NrArg0(libc::SYS_munlock, region.as_ptr() as usize)],
        "the guard drop's munlock",
        move || drop(guard),
        |_, call| meanwhile().map(|()| call),
    )
}

// Order: a secret buffer leaves the record before its pages are unmapped;
// a guard that fails to lock leaves nothing locked that no one holds.

/// Drops `buf` on a thread that is stopped at its first syscall after the
/// `munmap` of the buffer's data page at `data` (if it makes one before
/// its drop returns), and meanwhile maps fresh memory at `data` and takes
/// a guard over it: that guard must lock.
fn lock_where_a_buffer_was_just_unmapped<B: Send>(buf: B, data: usize) -> Result<(), String> {
    let dropped = AtomicBool::new(false);
    common::thread::scope(|s| {
        let (listener, thread) = notify::spawn_filtered(s, &[Rule::AnyButExit], || {
            drop(buf);
            dropped.store(true, Ordering::SeqCst);
        })
        .map_err(|e| format!("seccomp user notification: {e}"))?;
        // Let every call run until the munmap of the data page has run;
        // then stop the next one, if the drop is not over.
        let mut unmapped = false;
        let mut stopped = None;
        while let Some(call) = listener.recv(WAIT)? {
            let (start, len) = (call.args[0] as usize, call.args[1] as usize);
            if unmapped && !dropped.load(Ordering::SeqCst) {
                stopped = Some(call);
                break;
            }
            if call.nr == libc::SYS_munmap && start <= data && data < start + len {
                unmapped = true;
            }
            listener.resume(&call)?;
        }
        ensure(unmapped, || {
            "the buffer's drop did not munmap its data page".into()
        })?;
        // Mapped here, before the second thread exists: that thread's own
        // stacks could land in the hole the drop left.
        let fresh = fresh_page_at(data)?;
        // A second thread, so that a drop that still held the record would
        // delay it rather than deadlock the test.
        let locker = s.spawn(move || -> Result<u64, String> {
            let guard = LockGuard::new(fresh).map_err(|e| format!("guard: {e}"))?;
            let locked = vma_at(data).map_or(0, |v| v.locked_kb);
            drop(guard);
            Ok(locked)
        });
        wait_until(Duration::from_secs(2), || locker.is_finished());
        if let Some(call) = stopped {
            listener.resume(&call)?;
        }
        listener.serve_until_gone(WAIT)?;
        thread.join().map_err(|_| "the dropping thread panicked")?;
        let locked = locker
            .join()
            .map_err(|_| "the locking thread panicked".to_string())??;
        ensure(locked == kb(1), || {
            format!(
                "a guard over fresh memory mapped where a dropped buffer's pages were \
                 unmapped (its drop {}): Locked {locked} kB, wanted {} kB (the buffer's \
                 entry outlived its mapping)",
                if stopped.is_some() {
                    "stopped right after the munmap"
                } else {
                    "over"
                },
                kb(1)
            )
        })
    })
}

// Nothing waits for a drop in progress: a real-time thread pinned to the
// CPU of a SCHED_OTHER thread that is in the middle of a guard's drop
// (stopped in its munlock) unlocks at once. A spinning wait there would
// keep the CPU from the other thread until real-time throttling let it
// run.

/// Pins the calling thread to `cpu`.
fn pin_to(cpu: usize) -> Result<(), String> {
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` is below CPU_SETSIZE (it came from the affinity mask).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size given.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
    ensure(rc == 0, || {
        format!("sched_setaffinity: {}", std::io::Error::last_os_error())
    })
}

/// The first CPU this process may run on.
fn first_cpu() -> usize {
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid cpu_set_t of the size given.
    unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: every index is below CPU_SETSIZE.
        .find(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .unwrap_or(0)
}

/// Makes the calling thread `SCHED_FIFO` at priority 1, with the system
/// call itself (musl's `sched_setscheduler` is a stub that says `ENOSYS`).
fn set_fifo() -> std::io::Result<()> {
    // SAFETY: sched_param is plain data; zeroed is valid (musl's has more
    // fields than the priority).
    let mut param: libc::sched_param = unsafe { std::mem::zeroed() };
    param.sched_priority = 1;
    // SAFETY: `param` is a valid sched_param; pid 0 is the calling thread.
    match unsafe {
        libc::syscall(
            libc::SYS_sched_setscheduler,
            0,
            libc::SCHED_FIFO,
            &param as *const libc::sched_param,
        )
    } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

// An explicit unlock under lock_all is a carve-out, as in the kernel
// (tools/testing/selftests/mm/mlock2-tests.c, test_mlockall): munlock
// after mlockall unlocks those pages, and the kernel splits the mapping.

/// Fails unless pages `[from, to)` of `map` are one mapping of their own
/// with `VM_LOCKED` as `locked` says (and `Locked:` to match).
fn expect_own_mapping(
    map: &Anon,
    from: usize,
    to: usize,
    locked: bool,
    what: &str,
) -> Result<(), String> {
    let page = page_size();
    let start = map.addr as usize + from * page;
    let vma = vma_at(start).ok_or_else(|| {
        format!("{what}: no mapping starts at page {from}: the mapping was not split")
    })?;
    let end = (vma.end - map.addr as usize) / page;
    ensure(end == to, || {
        format!("{what}: the mapping at page {from} ends at page {end}, not {to}: not split")
    })?;
    ensure_eq(vma.locked(), locked, &format!("{what}: lo in VmFlags"))?;
    let want = if locked { kb(to - from) } else { 0 };
    ensure_eq(vma.locked_kb, want, &format!("{what}: Locked kB"))
}

#[test]
fn an_explicit_unlock_under_lock_all_unlocks_the_region_and_splits_its_mapping() {
    run(|| {
        let by_unlock = Anon::new(4 * page_size());
        let by_unlock_raw = Anon::new(4 * page_size());
        mlock::lock_all(Flags::CURRENT | Flags::FUTURE).map_err(|e| format!("lock_all: {e}"))?;
        let page = page_size();
        mlock::unlock(&by_unlock.slice()[page..3 * page]).map_err(|e| format!("unlock: {e}"))?;
        // SAFETY: the range is our own mapping; nothing outside the crate
        // relies on it staying locked.
        unsafe { mlock::unlock_raw(by_unlock_raw.addr.add(page), 2 * page) }
            .map_err(|e| format!("unlock_raw: {e}"))?;
        for (map, how) in [(&by_unlock, "unlock"), (&by_unlock_raw, "unlock_raw")] {
            expect_own_mapping(map, 1, 3, false, &format!("{how}: the region"))?;
            expect_own_mapping(map, 0, 1, true, &format!("{how}: the page before"))?;
            expect_own_mapping(map, 3, 4, true, &format!("{how}: the page after"))?;
        }
        // lock_all is still in force for what is mapped later.
        let later = Anon::new(page);
        expect_own_mapping(&later, 0, 1, true, "a mapping made after the unlock")
    });
}

#[test]
fn an_explicit_unlock_under_lock_all_leaves_what_guards_and_buffers_hold() {
    run(|| {
        let page = page_size();
        let map = Anon::new(4 * page);
        let buf = LockedBuf::<32>::with_backing(Backing::Anonymous)
            .map_err(|e| format!("LockedBuf: {e}"))?;
        let secret = page_of(buf.as_ref().as_ptr());
        mlock::lock_all(Flags::CURRENT | Flags::FUTURE).map_err(|e| format!("lock_all: {e}"))?;
        let guard = LockGuard::new(&map.slice()[page..2 * page]).map_err(|e| e.to_string())?;
        mlock::unlock(&map.slice()[page..3 * page]).map_err(|e| format!("unlock: {e}"))?;
        expect_own_mapping(&map, 2, 3, false, "the unguarded page of the region")?;
        expect_own_mapping(&map, 0, 2, true, "the page before and the guarded page")?;
        expect_own_mapping(&map, 3, 4, true, "the page after")?;
        // SAFETY: the secret's page is ours; the crate must leave it alone.
        unsafe { mlock::unlock_raw(secret as *const u8, page) }
            .map_err(|e| format!("unlock_raw of the secret's page: {e}"))?;
        ensure(page_locked(secret), || {
            "unlock_raw under lock_all unlocked a LockedBuf's page".into()
        })?;
        // A guard's drop is no explicit unlock: under lock_all it leaves
        // its pages locked.
        drop(guard);
        expect_own_mapping(&map, 0, 2, true, "the guarded page, its guard dropped")?;
        drop(buf);
        Ok(())
    });
}

// The bound.

#[test]
fn the_129th_distinct_range_is_too_many_locks_before_any_syscall() {
    run(|| {
        let page = page_size();
        let map = Anon::new(130 * page);
        let slice = map.slice();
        let last = &slice[128 * page..129 * page];
        if !under_qemu_user() {
            // Any mlock of the 129th range would fail with this errno.
            fail_syscall_with(
                libc::SYS_mlock,
                libc::ENOTRECOVERABLE,
                When::ArgIs(0, last.as_ptr() as usize as u32),
            );
        }
        let mut guards = Vec::new();
        for i in 0..128 {
            guards.push(
                LockGuard::new(&slice[i * page..(i + 1) * page])
                    .map_err(|e| format!("guard {i}: {e}"))?,
            );
        }
        let base = vm_lck_kb();
        ensure_eq(
            LockGuard::new(last).map(drop),
            Err(Error::TooManyLocks),
            "the 129th range",
        )?;
        ensure_eq(
            LockedBuf::<32>::new().map(drop),
            Err(Error::TooManyLocks),
            "a LockedBuf as the 129th",
        )?;
        ensure(!page_locked(last.as_ptr() as usize), || {
            "the refused range was locked".into()
        })?;
        ensure_eq(vm_lck_kb(), base, "VmLck after the refusals")?;
        // An identical range shares its entry; one dropped frees one.
        drop(LockGuard::new(&slice[5..page]).map_err(|e| format!("identical range: {e}"))?);
        guards.pop();
        let next =
            LockGuard::new(&slice[129 * page..]).map_err(|e| format!("after a drop: {e}"))?;
        drop((next, guards));
        Ok(())
    });
    if under_qemu_user() {
        note(
            "QEMU user mode has no seccomp, so that the 129th range makes no mlock is \
             checked there by its page staying unlocked only (natively and in `cargo xtask vm` \
             also by a filter that fails any mlock of it)",
        );
    }
}

// Stress.

#[test]
fn guards_taken_and_dropped_on_four_threads_keep_every_page_locked_as_the_live_guards_say() {
    const PAGES: usize = 16;
    const THREADS: usize = 4;
    const ROUNDS: usize = 20;
    const OPS: usize = 1000;
    run(|| {
        let page = page_size();
        let map = Anon::new(PAGES * page);
        let slice = map.slice();
        let held: Mutex<Vec<(usize, usize)>> = Mutex::new(Vec::new());
        let barrier = Barrier::new(THREADS + 1);
        let stop = AtomicBool::new(false);
        let ops = AtomicUsize::new(0);
        let failure: Mutex<Option<String>> = Mutex::new(None);
        let start = Instant::now();
        common::thread::scope(|s| {
            for t in 0..THREADS {
                let (held, barrier, stop, ops, failure) = (&held, &barrier, &stop, &ops, &failure);
                s.spawn(move || {
                    let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ (t as u64 + 1);
                    let mut next = move |n: usize| {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        (rng % n as u64) as usize
                    };
                    let mut mine: Vec<(usize, usize, LockGuard<'_>)> = Vec::new();
                    for _ in 0..ROUNDS {
                        if stop.load(Ordering::SeqCst) {
                            barrier.wait();
                            barrier.wait();
                            continue;
                        }
                        for _ in 0..OPS {
                            match next(8) {
                                0..=3 if mine.len() < 4 => {
                                    let from = next(PAGES);
                                    let to = from + 1 + next(PAGES - from);
                                    match LockGuard::new(&slice[from * page..to * page]) {
                                        Ok(g) => mine.push((from, to, g)),
                                        Err(e) => {
                                            *failure.lock().unwrap() =
                                                Some(format!("guard {from}..{to}: {e}"));
                                        }
                                    }
                                }
                                7 => {
                                    let from = next(PAGES);
                                    let to = from + 1 + next(PAGES - from);
                                    if let Err(e) = mlock::unlock(&slice[from * page..to * page]) {
                                        *failure.lock().unwrap() =
                                            Some(format!("unlock {from}..{to}: {e}"));
                                    }
                                }
                                _ if !mine.is_empty() => {
                                    let i = next(mine.len());
                                    drop(mine.swap_remove(i));
                                }
                                _ => {}
                            }
                        }
                        ops.fetch_add(OPS, Ordering::Relaxed);
                        held.lock()
                            .unwrap()
                            .extend(mine.iter().map(|&(from, to, _)| (from, to)));
                        barrier.wait();
                        barrier.wait();
                    }
                });
            }
            let mut result = Ok(());
            for round in 0..ROUNDS {
                barrier.wait();
                if result.is_ok() && !stop.load(Ordering::SeqCst) {
                    let ranges = std::mem::take(&mut *held.lock().unwrap());
                    for p in 0..PAGES {
                        let want = ranges.iter().any(|&(from, to)| from <= p && p < to);
                        let got = page_locked(map.addr as usize + p * page);
                        if got != want {
                            result = Err(format!(
                                "round {round}: page {p} locked {got}, but live guards \
                                 {ranges:?} say {want}"
                            ));
                            break;
                        }
                    }
                    if let Some(e) = failure.lock().unwrap().take() {
                        result = Err(format!("round {round}: {e}"));
                    }
                    // Keep the run short where the CPU is emulated.
                    if result.is_err() || start.elapsed() > Duration::from_secs(3) {
                        stop.store(true, Ordering::SeqCst);
                    }
                }
                barrier.wait();
            }
            result
        })?;
        let done = ops.load(Ordering::Relaxed);
        ensure(done >= THREADS * OPS, || format!("only {done} operations"))?;
        ensure_eq(vm_lck_kb(), 0, "VmLck after every guard was dropped")
    });
}

/// Tests where a process has its parent's PID (PID 1 of nested PID
/// namespaces): QEMU user mode ignores `madvise`, so the crate tells
/// processes apart by `getpid` there, which these defeat; they run natively
/// and in the VMs (the harness filters `pid_reuse::` out of QEMU user runs).
mod pid_reuse {
    use super::*;

    #[test]
    fn a_process_with_its_parents_pid_takes_a_guard_while_a_parent_thread_is_inside_the_record() {
        with_pid_reuse(|| {
            let held = Anon::new(page_size());
            let fresh = Anon::new(4 * page_size());
            let region = held.slice();
            common::thread::scope(|s| {
                let (listener, thread) = notify::spawn_filtered(
                    s,
                    &[Rule::NrArg0(libc::SYS_munlock, held.addr as usize)],
                    || LockGuard::new(region).map(drop),
                )
                .map_err(|e| format!("seccomp user notification: {e}"))?;
                let call = listener.expect(WAIT, "the parent thread's guard drop (munlock)")?;
                let child = fork_with_my_pid(|| {
                    let guard = LockGuard::new(fresh.slice()).map_err(|e| format!("guard: {e}"))?;
                    expect_locked(fresh.addr as usize, kb(4), "the child's guard")?;
                    drop(guard);
                    expect_locked(fresh.addr as usize, 0, "the child's guard dropped")
                });
                listener.resume(&call)?;
                let parent = thread.join().ok().flatten();
                child?;
                ensure_eq(parent, Some(Ok(())), "the parent thread's guard")
            })
        });
    }

    #[test]
    fn a_process_with_its_parents_pid_is_not_under_the_parents_lock_all() {
        with_pid_reuse(|| {
            let map = Anon::new(4 * page_size());
            let addr = map.addr as usize;
            mlock::lock_all(Flags::FUTURE).map_err(|e| format!("G's lock_all: {e}"))?;
            fork_with_my_pid(|| {
                let guard = LockGuard::new(map.slice()).map_err(|e| format!("guard: {e}"))?;
                expect_locked(addr, kb(4), "the child's guard")?;
                drop(guard);
                expect_locked(addr, 0, "the child's guard dropped")?;
                mlock::lock(map.slice()).map_err(|e| format!("lock: {e}"))?;
                mlock::unlock(map.slice()).map_err(|e| format!("unlock: {e}"))?;
                expect_locked(addr, 0, "lock then unlock in the child")
            })
            .map(drop)
        });
    }

    #[test]
    fn a_process_with_its_parents_pid_drops_inherited_secret_buffers_safely() {
        let backings = backings();
        with_pid_reuse(|| {
            let mut failures = Vec::new();
            let mut check = |what: String, stderr: Result<String, String>| {
                let failure = match stderr {
                    Ok(stderr) if stderr.is_empty() => return,
                    Ok(stderr) => format!("dropping {what} wrote {stderr:?}"),
                    Err(e) => format!("dropping {what}: {e}"),
                };
                failures.push(failure);
            };
            for backing in backings {
                let what = format!("an inherited LockedBuf ({backing:?})");
                let buf =
                    LockedBuf::<32>::with_backing(backing).map_err(|e| format!("{what}: {e}"))?;
                check(
                    what,
                    fork_with_my_pid(move || {
                        drop(buf);
                        Ok(())
                    }),
                );
                let what = format!("an inherited SealedBuf ({backing:?})");
                let buf =
                    SealedBuf::<32>::with_backing(backing).map_err(|e| format!("{what}: {e}"))?;
                check(
                    what,
                    fork_with_my_pid(move || {
                        drop(buf);
                        Ok(())
                    }),
                );
            }
            all_passed(failures)
        });
    }
}

/// Tests that make a system call fail, or stop in it, under a seccomp
/// filter: QEMU user mode implements no seccomp, so they run natively and in
/// the VMs (the harness filters `seccomp::` out of QEMU user runs).
mod seccomp {
    use super::*;

    #[test]
    fn a_thread_stopped_inside_munlock_stays_there_until_the_supervisor_lets_it_go() {
        supervised(|| {
            let map = Anon::new(page_size());
            mlock::lock(map.slice()).map_err(|e| format!("lock: {e}"))?;
            let returned = AtomicBool::new(false);
            let (addr, len) = (map.addr as usize, map.len);
            common::thread::scope(|s| {
                let (listener, thread) = notify::spawn_filtered(
                    s,
                    &[Rule::NrArg0(libc::SYS_munlock, map.addr as usize)],
                    || {
                        // SAFETY: munlock of our own mapping changes no memory.
                        let rc = unsafe { libc::munlock(addr as *const libc::c_void, len) };
                        returned.store(true, Ordering::SeqCst);
                        rc
                    },
                )
                .map_err(|e| format!("seccomp user notification: {e}"))?;
                let call = listener.expect(WAIT, "munlock")?;
                ensure_eq(call.nr, libc::SYS_munlock, "the stopped syscall")?;
                ensure_eq(call.args[0], map.addr as u64, "its address")?;
                std::thread::sleep(Duration::from_millis(50));
                ensure(!returned.load(Ordering::SeqCst), || {
                    "munlock returned while stopped".into()
                })?;
                expect_locked(map.addr as usize, kb(1), "while munlock is stopped")?;
                listener.resume(&call)?;
                ensure_eq(thread.join().ok().flatten(), Some(0), "munlock's result")?;
                expect_locked(map.addr as usize, 0, "after munlock ran")
            })
        });
    }

    #[test]
    fn a_child_forked_while_a_thread_is_inside_lock_all_is_not_under_lock_all() {
        supervised(|| {
            let map = Anon::new(4 * page_size());
            let addr = map.addr as usize;
            common::thread::scope(|s| {
                let (listener, thread) =
                    notify::spawn_filtered(s, &[Rule::Nr(libc::SYS_mlockall)], || {
                        mlock::lock_all(Flags::FUTURE)
                    })
                    .map_err(|e| format!("seccomp user notification: {e}"))?;
                let call = listener.expect(WAIT, "lock_all's mlockall")?;
                let child = within(NESTED, || {
                    let guard = LockGuard::new(map.slice()).map_err(|e| format!("guard: {e}"))?;
                    expect_locked(addr, kb(4), "the child's guard")?;
                    drop(guard);
                    expect_locked(addr, 0, "the child's guard dropped")?;
                    mlock::lock(map.slice()).map_err(|e| format!("lock: {e}"))?;
                    mlock::unlock(map.slice()).map_err(|e| format!("unlock: {e}"))?;
                    expect_locked(addr, 0, "lock then unlock in the child")?;
                    mlock::lock_all(Flags::FUTURE).map_err(|e| format!("lock_all: {e}"))?;
                    mlock::unlock_all().map_err(|e| format!("unlock_all: {e}"))?;
                    drop(LockGuard::new(map.slice()).map_err(|e| format!("guard: {e}"))?);
                    expect_locked(
                        addr,
                        0,
                        "the child's guard dropped after its own lock_all and unlock_all",
                    )
                });
                listener.resume(&call)?;
                let parent = thread.join().ok().flatten();
                child?;
                ensure_eq(parent, Some(Ok(())), "the parent's lock_all")
            })
        });
    }

    #[test]
    fn calls_from_a_signal_handler_that_interrupted_a_guard_drop_do_their_work() {
        supervised(|| {
            install_handler()?;
            let dropped = Anon::new(page_size());
            let other = leaked(page_size());
            other.touch(1);
            HANDLER_ADDR.store(other.addr as usize, Ordering::SeqCst);
            HANDLER_LEN.store(other.len, Ordering::SeqCst);
            mlock::lock(other.slice()).map_err(|e| format!("lock: {e}"))?;
            let region = dropped.slice();
            common::thread::scope(|s| {
                let (listener, thread) = notify::spawn_filtered(
                    s,
                    &[Rule::NrArg0(libc::SYS_munlock, dropped.addr as usize)],
                    || LockGuard::new(region).map(drop),
                )
                .map_err(|e| format!("seccomp user notification: {e}"))?;
                let mut call = listener.expect(WAIT, "the guard drop's munlock")?;
                let mut results = Vec::new();
                for (which, name) in HANDLER_CALLS.iter().enumerate() {
                    let (result, again) = signal_stopped_thread(&listener, call, which)?;
                    results.push((*name, result));
                    call = again;
                }
                listener.resume(&call)?;
                ensure_eq(
                    thread.join().ok().flatten(),
                    Some(Ok(())),
                    "the interrupted guard",
                )?;
                for (name, result) in results {
                    ensure_eq(result, Ok(()), name)?;
                }
                expect_locked(dropped.addr as usize, 0, "the interrupted guard's pages")?;
                // unlock and unlock_raw unlocked it, the forgotten guard locked
                // it, and unlock_all locked it again after its munlockall.
                expect_locked(
                    other.addr as usize,
                    kb(1),
                    "the region of the handler's guard",
                )?;
                // unlock_all ended the handler's lock_all: a new mapping is
                // not locked.
                let later = Anon::new(page_size());
                later.touch(1);
                expect_locked(
                    later.addr as usize,
                    0,
                    "a mapping made after the handler's calls",
                )
            })
        });
    }

    #[test]
    fn a_guard_dropped_in_a_signal_handler_that_interrupted_the_record_is_unlocked_afterwards() {
        supervised(|| {
            install_handler()?;
            let interrupted = Anon::new(page_size());
            let in_handler = leaked(page_size());
            let kept = Anon::new(page_size());
            HANDLER_ADDR.store(in_handler.addr as usize, Ordering::SeqCst);
            HANDLER_LEN.store(in_handler.len, Ordering::SeqCst);
            HANDLER_GUARD.put(
                LockGuard::new(in_handler.slice())
                    .map_err(|e| format!("the handler's guard: {e}"))?,
            );
            let live = LockGuard::new(kept.slice()).map_err(|e| format!("the kept guard: {e}"))?;
            let region = interrupted.slice();
            common::thread::scope(|s| {
                let (listener, thread) = notify::spawn_filtered(
                    s,
                    &[Rule::NrArg0(libc::SYS_munlock, interrupted.addr as usize)],
                    || LockGuard::new(region).map(drop),
                )
                .map_err(|e| format!("seccomp user notification: {e}"))?;
                let call = listener.expect(WAIT, "the guard drop's munlock")?;
                let (result, again) = signal_stopped_thread(&listener, call, DROP_GUARD)?;
                ensure_eq(result, Ok(()), "the handler")?;
                listener.resume(&again)?;
                ensure_eq(
                    thread.join().ok().flatten(),
                    Some(Ok(())),
                    "the interrupted guard",
                )?;
                expect_locked(
                    interrupted.addr as usize,
                    0,
                    "the interrupted guard's pages",
                )?;
                expect_locked(
                    in_handler.addr as usize,
                    0,
                    "the pages of the guard dropped in the handler",
                )?;
                expect_locked(kept.addr as usize, kb(1), "the pages of a live guard")?;
                drop(live);
                expect_locked(kept.addr as usize, 0, "the live guard dropped at last")
            })
        });
    }

    #[test]
    fn a_guard_taken_while_a_drop_over_its_pages_is_inside_munlock_stays_locked() {
        supervised(|| {
            let map = leaked(2 * page_size());
            map.touch(2);
            let region = map.slice();
            let mut newcomer = None;
            while_a_drop_is_inside_munlock(region, || {
                newcomer = Some(LockGuard::new(region).map_err(|e| format!("the new guard: {e}"))?);
                expect_locked(
                    map.addr as usize,
                    kb(2),
                    "the new guard, before the munlock",
                )
            })?;
            expect_locked(
                map.addr as usize,
                kb(2),
                "the new guard, after the old guard's munlock ran",
            )?;
            drop(newcomer);
            expect_locked(map.addr as usize, 0, "the new guard dropped")
        });
    }

    #[test]
    fn lock_all_while_a_drop_is_inside_munlock_leaves_the_pages_locked() {
        supervised(|| {
            let map = leaked(2 * page_size());
            map.touch(2);
            while_a_drop_is_inside_munlock(map.slice(), || {
                mlock::lock_all(Flags::CURRENT).map_err(|e| format!("lock_all: {e}"))
            })?;
            expect_locked(
                map.addr as usize,
                kb(2),
                "under lock_all(CURRENT), after a guard's munlock that began before it",
            )?;
            mlock::unlock_all().map_err(|e| format!("unlock_all: {e}"))?;
            expect_locked(map.addr as usize, 0, "after unlock_all")
        });
    }

    /// `lock_all`'s own half of the protocol, the window a drop's look at
    /// `lock_all`'s mark cannot close: `lock_all`'s `mlockall` is done, and
    /// before `lock_all` marks itself in force, a guard's drop that found no
    /// mark runs its `munlock` and looks again (still no mark). The
    /// supervisor makes that happen: it stops `lock_all`'s `mlockall`, calls
    /// `mlockall` itself (the same process-wide effect), lets the drop's
    /// `munlock` run and the drop finish, and only then answers the stopped
    /// call with success. `lock_all` must see that an unlock ran and lock
    /// again.
    #[test]
    fn lock_all_locks_again_after_an_unlock_between_its_mlockall_and_its_mark() {
        supervised(|| {
            let map = leaked(2 * page_size());
            map.touch(2);
            let region = map.slice();
            let guard = LockGuard::new(region).map_err(|e| format!("the dropped guard: {e}"))?;
            common::thread::scope(|s| {
                let (drops, dropper) = notify::spawn_filtered(
                    s,
                    &[Rule::NrArg0(libc::SYS_munlock, map.addr as usize)],
                    move || drop(guard),
                )
                .map_err(|e| format!("seccomp user notification: {e}"))?;
                let munlock = drops.expect(WAIT, "the guard drop's munlock")?;
                let (locks, locker) =
                    notify::spawn_filtered(s, &[Rule::Nr(libc::SYS_mlockall)], || {
                        mlock::lock_all(Flags::CURRENT)
                    })
                    .map_err(|e| format!("seccomp user notification: {e}"))?;
                let mlockall = locks.expect(WAIT, "lock_all's mlockall")?;
                // SAFETY: mlockall touches no memory; it is what the stopped
                // call would have done, process-wide.
                let rc = unsafe { libc::mlockall(libc::MCL_CURRENT) };
                ensure_eq(rc, 0, "the supervisor's mlockall")?;
                expect_locked(map.addr as usize, kb(2), "after the mlockall")?;
                drops.resume(&munlock)?;
                drops.serve_until_gone(WAIT)?;
                dropper.join().map_err(|_| "the dropping thread panicked")?;
                expect_locked(map.addr as usize, 0, "after the drop's munlock")?;
                locks.succeed(&mlockall)?;
                locks.serve_until_gone(WAIT)?;
                let result = locker.join().map_err(|_| "the lock_all thread panicked")?;
                ensure_eq(result, Some(Ok(())), "lock_all")?;
                expect_locked(
                    map.addr as usize,
                    kb(2),
                    "under lock_all(CURRENT), after an unlock that landed between its \
                 mlockall and its mark",
                )?;
                mlock::unlock_all().map_err(|e| format!("unlock_all: {e}"))?;
                expect_locked(map.addr as usize, 0, "after unlock_all")
            })
        });
    }

    /// A drop that unlocked part of its range locks again what the other
    /// entries in that range hold (one of them may be a newcomer whose lock
    /// the drop's `munlock` undid). If that other entry is dropped while the
    /// first drop locks its pages again, its own `munlock` may come first:
    /// the first drop must see the entry gone and unlock again, or the pages
    /// stay locked with no holder.
    #[test]
    fn a_guard_dropped_while_another_drop_locks_its_pages_again_leaves_them_unlocked() {
        supervised(|| {
            let page = page_size();
            let map = leaked(16 * page);
            map.touch(16);
            let whole = LockGuard::new(map.slice()).map_err(|e| format!("the whole guard: {e}"))?;
            let part = LockGuard::new(&map.slice()[..5 * page])
                .map_err(|e| format!("the part guard: {e}"))?;
            while_stopped(
                &[Rule::NrArg0(libc::SYS_mlock, map.addr as usize)],
                "the whole guard's drop locking the part guard's pages again",
                move || drop(whole),
                |_, call| {
                    drop(part);
                    Ok(call)
                },
            )?;
            expect_locked(
                map.addr as usize,
                0,
                "both guards dropped, one while the other's drop locked its pages again",
            )
        });
    }

    /// A drop whose `munlock` came after a `lock_all` locks its range again
    /// (`lock_all` is in force); if `unlock_all` ends `lock_all` while that
    /// lock is on its way, the drop must see it and unlock again, or its pages
    /// stay locked with no holder and no `lock_all`.
    #[test]
    fn a_drop_that_locks_again_for_lock_all_unlocks_if_unlock_all_came_meanwhile() {
        supervised(|| {
            let map = leaked(2 * page_size());
            map.touch(2);
            let guard = LockGuard::new(map.slice()).map_err(|e| format!("guard: {e}"))?;
            while_stopped(
                &[
                    Rule::NrArg0(libc::SYS_munlock, map.addr as usize),
                    Rule::NrArg0(libc::SYS_mlock, map.addr as usize),
                ],
                "the drop's munlock",
                move || drop(guard),
                |listener, munlock| {
                    mlock::lock_all(Flags::CURRENT).map_err(|e| format!("lock_all: {e}"))?;
                    listener.resume(&munlock)?;
                    let mlock =
                        listener.expect(WAIT, "the drop locking its range again for lock_all")?;
                    ensure_eq(mlock.nr, libc::SYS_mlock, "the drop's next call")?;
                    mlock::unlock_all().map_err(|e| format!("unlock_all: {e}"))?;
                    Ok(mlock)
                },
            )?;
            expect_locked(
                map.addr as usize,
                0,
                "a guard dropped across lock_all and unlock_all",
            )
        });
    }

    /// `unlock_all` locks the held ranges again after its `munlockall`; a
    /// guard dropped while `unlock_all` is inside that `mlock` of its range
    /// must not leave its pages locked.
    #[test]
    fn unlock_all_leaves_nothing_locked_for_a_guard_dropped_while_it_locks_again() {
        supervised(|| {
            let map = leaked(2 * page_size());
            map.touch(2);
            let guard = LockGuard::new(map.slice()).map_err(|e| format!("guard: {e}"))?;
            let result = while_stopped(
                &[Rule::NrArg0(libc::SYS_mlock, map.addr as usize)],
                "unlock_all's mlock of the guard's range",
                mlock::unlock_all,
                |_, call| {
                    drop(guard);
                    Ok(call)
                },
            )?;
            ensure_eq(result, Ok(()), "unlock_all")?;
            expect_locked(
                map.addr as usize,
                0,
                "a guard dropped while unlock_all locked its range again",
            )
        });
    }

    #[test]
    fn a_locked_buf_leaves_the_record_before_its_pages_are_unmapped() {
        let backings = backings();
        supervised(|| {
            let mut failures = Vec::new();
            for backing in backings {
                let buf = LockedBuf::<32>::with_backing(backing).map_err(|e| format!("{e}"))?;
                let data = page_of(buf.as_ref().as_ptr());
                let result = lock_where_a_buffer_was_just_unmapped(buf, data);
                failures.extend(
                    result
                        .err()
                        .map(|e| format!("LockedBuf ({backing:?}): {e}")),
                );
            }
            all_passed(failures)
        });
    }

    #[test]
    fn a_sealed_buf_leaves_the_record_before_its_pages_are_unmapped() {
        let backings = backings();
        supervised(|| {
            let mut failures = Vec::new();
            for backing in backings {
                let mut buf = SealedBuf::<32>::with_backing(backing).map_err(|e| format!("{e}"))?;
                let data = page_of(buf.with(|b| b.as_ptr()));
                let result = lock_where_a_buffer_was_just_unmapped(buf, data);
                failures.extend(
                    result
                        .err()
                        .map(|e| format!("SealedBuf ({backing:?}): {e}")),
                );
            }
            all_passed(failures)
        });
    }

    #[test]
    fn a_guard_whose_mlock_fails_leaves_no_page_locked_that_no_one_holds() {
        supervised(|| {
            let page = page_size();
            let map = Anon::new(4 * page);
            let addr = map.addr as usize;
            let base = vm_lck_kb();
            let first =
                LockGuard::new(&map.slice()[..page]).map_err(|e| format!("guard A: {e}"))?;
            expect_locked(addr, kb(1), "guard A over the first page")?;
            let region = map.slice();
            common::thread::scope(|s| {
                let (listener, wider) = notify::spawn_filtered(
                    s,
                    &[
                        Rule::NrArg0(libc::SYS_mlock, addr),
                        Rule::NrArg0(libc::SYS_mlock2, addr),
                    ],
                    || LockGuard::new(region).map(drop),
                )
                .map_err(|e| format!("seccomp user notification: {e}"))?;
                let call = listener.expect(WAIT, "guard B's mlock")?;
                // Guard A is dropped while B is inside its mlock: on a thread
                // of its own, in case the drop has to wait for B.
                let dropper = s.spawn(move || drop(first));
                wait_until(Duration::from_millis(500), || dropper.is_finished());
                listener.refuse(&call, libc::EAGAIN)?;
                let result = wider.join().ok().flatten();
                dropper.join().map_err(|_| "dropping guard A panicked")?;
                ensure_eq(result, Some(Err(Error::WouldBlock)), "guard B")?;
                ensure(!page_locked(addr), || {
                    "the first page is still locked after guard A was dropped and guard B failed \
                 (no one holds it)"
                        .into()
                })?;
                ensure_eq(vm_lck_kb(), base, "VmLck after both")
            })
        });
    }

    #[test]
    fn a_sched_fifo_thread_on_the_cpu_of_a_guard_drop_in_progress_is_not_held_up() {
        if let Err(e) = in_child(|| set_fifo().map_err(|e| e.to_string())) {
            cannot_run_here(&format!(
                "SCHED_FIFO is refused ({e}): it needs CAP_SYS_NICE or RLIMIT_RTPRIO"
            ));
        }
        // How long the holder is kept inside the record after the waiter
        // started waiting.
        const HOLD: Duration = Duration::from_millis(100);
        supervised(|| {
            let cpu = first_cpu();
            let held = Anon::new(page_size());
            let other = Anon::new(page_size());
            mlock::lock(other.slice()).map_err(|e| format!("lock: {e}"))?;
            let started = AtomicBool::new(false);
            let waited_us = AtomicU64::new(u64::MAX);
            let (held_region, other_region) = (held.slice(), other.slice());
            common::thread::scope(|s| {
                let (listener, holder) = notify::spawn_filtered(
                    s,
                    &[Rule::NrArg0(libc::SYS_munlock, held.addr as usize)],
                    || -> Result<(), String> {
                        pin_to(cpu)?;
                        drop(LockGuard::new(held_region).map_err(|e| format!("guard: {e}"))?);
                        Ok(())
                    },
                )
                .map_err(|e| format!("seccomp user notification: {e}"))?;
                let call = listener.expect(WAIT, "the holder's guard drop (munlock)")?;
                let waiter = s.spawn(|| -> Result<(), String> {
                    pin_to(cpu)?;
                    set_fifo().map_err(|e| format!("SCHED_FIFO: {e}"))?;
                    started.store(true, Ordering::SeqCst);
                    let start = Instant::now();
                    let result = mlock::unlock(other_region);
                    waited_us.store(start.elapsed().as_micros() as u64, Ordering::SeqCst);
                    result.map_err(|e| format!("the waiter's unlock: {e}"))
                });
                if !wait_until(WAIT, || {
                    started.load(Ordering::SeqCst) || waiter.is_finished()
                }) {
                    return Err("the waiter did not start".into());
                }
                std::thread::sleep(HOLD);
                listener.resume(&call)?;
                if !wait_until(Duration::from_secs(20), || {
                    waited_us.load(Ordering::SeqCst) != u64::MAX || waiter.is_finished()
                }) {
                    notify::fail_now(
                        "hung: a SCHED_FIFO waiter for the record, pinned to the CPU of the \
                     SCHED_OTHER holder, did not get the record within 20 s of the holder's \
                     release (it spins, and the holder cannot run)",
                    );
                }
                waiter.join().map_err(|_| "the waiter panicked")??;
                holder.join().ok().flatten().ok_or("the holder")??;
                let waited = Duration::from_micros(waited_us.load(Ordering::SeqCst));
                let slack = Duration::from_millis(400);
                ensure(waited < HOLD + slack, || {
                    format!(
                        "a SCHED_FIFO waiter pinned to the CPU of the SCHED_OTHER holder waited \
                     {waited:?} for the record, which its holder kept for {HOLD:?}: it kept the \
                     CPU from the holder (spinning) until real-time throttling let the holder \
                     run, instead of sleeping"
                    )
                })?;
                expect_locked(other.addr as usize, 0, "the waiter's unlock")?;
                expect_locked(held.addr as usize, 0, "the holder's guard dropped")
            })
        });
    }
}
