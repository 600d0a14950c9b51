//! The swap-daemon kit on the real kernel: IO_FLUSHER (checked in the
//! thread's PF_* flags), stack and region pre-faulting (checked with
//! `mincore(2)` and smaps), `oom_score_adj` (checked in the file), and
//! `harden_swap_daemon`, each in a forked child. Old kernels are made for
//! real with seccomp (the kernel answers EINVAL as a kernel without the
//! option would), unprivileged processes with setuid.

mod common;

use common::*;
use mlock::daemon::{harden_swap_daemon, HardenError, Hardening, Prefault, Stage, ThreadAudit};
use mlock::limits::Limit;
use mlock::{Config, Error, Flags, Outcome, Requirement};

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

/// `PF_MEMALLOC_NOIO | PF_LOCAL_THROTTLE` (include/linux/sched.h): what
/// `PR_SET_IO_FLUSHER` sets in the thread's flags.
const PR_IO_FLUSHER_BITS: u64 = 0x0008_0000 | 0x0010_0000;
const PR_SET_IO_FLUSHER: u32 = 57;
const PR_GET_IO_FLUSHER: u32 = 58;
const MADV_POPULATE_WRITE: u32 = 23;

/// The hard `RLIMIT_MEMLOCK`: what a process without `CAP_SYS_RESOURCE`
/// may set at most.
fn memlock_hard() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit to fill.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) },
        0
    );
    // `rlim_t` is 32 bits with 32-bit glibc, where its all-ones is
    // RLIM_INFINITY; the cast widens it there and does nothing elsewhere.
    #[allow(clippy::unnecessary_cast)]
    match lim.rlim_max {
        libc::RLIM_INFINITY => u64::MAX,
        max => max as u64,
    }
}

/// The kernel's PF_* flags of the calling thread: field 9 of
/// `/proc/thread-self/stat`.
fn thread_pf_flags() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("read stat");
    // The command name (field 2) is in parentheses and may hold spaces.
    let after = &stat[stat.rfind(')').expect("comm") + 1..];
    after
        .split_whitespace()
        .nth(6)
        .and_then(|v| v.parse().ok())
        .expect("flags field")
}

/// How many of the pages of `[addr, addr + len)` are resident
/// (`mincore(2)`), and how many pages the range spans.
fn resident_pages(addr: usize, len: usize) -> (usize, usize) {
    let page = page_size();
    let start = addr & !(page - 1);
    let pages = (addr + len - start).div_ceil(page);
    let mut vec = vec![0u8; pages];
    // SAFETY: `start` is page-aligned, the range is mapped (the callers pass
    // memory they own), and `vec` has one byte per page.
    let rc = unsafe { libc::mincore(start as *mut _, pages * page, vec.as_mut_ptr()) };
    assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
    (vec.iter().filter(|&&b| b & 1 != 0).count(), pages)
}

/// The start of the mapping that holds `addr`, from `/proc/self/maps`.
fn mapping_start(addr: usize) -> usize {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("read maps");
    for line in maps.lines() {
        let range = line.split(' ').next().unwrap();
        let (lo, hi) = range.split_once('-').unwrap();
        let lo = usize::from_str_radix(lo, 16).unwrap();
        let hi = usize::from_str_radix(hi, 16).unwrap();
        if (lo..hi).contains(&addr) {
            return lo;
        }
    }
    panic!("{addr:#x} is in no mapping");
}

/// The stack pointer, give or take a frame.
#[inline(never)]
fn stack_address() -> usize {
    let marker = 0u8;
    std::hint::black_box(&marker) as *const u8 as usize
}

// ---- IO_FLUSHER ----------------------------------------------------------

#[test]
#[ignore = "needs CAP_SYS_RESOURCE"]
fn io_flusher_sets_and_clears_the_threads_flags() {
    require_cap_sys_resource();
    run(|| {
        expect_io_flusher(false, "at start")?;
        mlock::daemon::set_io_flusher().map_err(|e| format!("set: {e}"))?;
        expect_io_flusher(true, "after set")?;
        // Setting twice keeps it set (the crate always passes 1).
        mlock::daemon::set_io_flusher().map_err(|e| format!("set again: {e}"))?;
        expect_io_flusher(true, "after setting twice")?;
        mlock::daemon::clear_io_flusher().map_err(|e| format!("clear: {e}"))?;
        expect_io_flusher(false, "after clear")
    });
}

/// Fails unless the calling thread's IO_FLUSHER is `set`, as the getter
/// says and, on a real kernel, as its PF_* flags say (QEMU fakes
/// `/proc/self/stat`).
fn expect_io_flusher(set: bool, when: &str) -> Result<(), String> {
    let got = mlock::daemon::is_io_flusher();
    ensure(got == Ok(set), || {
        format!("{when}: the getter says {got:?}")
    })?;
    if !under_qemu_user() {
        let flags = thread_pf_flags();
        let want = if set { PR_IO_FLUSHER_BITS } else { 0 };
        ensure(flags & PR_IO_FLUSHER_BITS == want, || {
            format!("{when}: PF flags {flags:#x}, wanted PF_MEMALLOC_NOIO|PF_LOCAL_THROTTLE {set}")
        })?;
    }
    Ok(())
}

#[test]
#[ignore = "needs CAP_SYS_RESOURCE"]
fn io_flusher_is_per_thread_and_inherited_by_threads_spawned_after() {
    require_cap_sys_resource();
    run(|| {
        // A thread that exists before the call keeps its own, unset, flag.
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let existing = common::thread::spawn(move || {
            wait.recv().unwrap();
            mlock::daemon::is_io_flusher()
        });
        mlock::daemon::set_io_flusher().map_err(|e| format!("set: {e}"))?;
        let spawned_after = common::thread::spawn(mlock::daemon::is_io_flusher)
            .join()
            .unwrap();
        ensure(spawned_after == Ok(true), || {
            format!("a thread spawned after the call: {spawned_after:?}")
        })?;
        go.send(()).unwrap();
        let existing = existing.join().unwrap();
        ensure(existing == Ok(false), || {
            format!("a thread that existed before: {existing:?}")
        })
    });
}

#[test]
fn io_flusher_of_root_without_cap_sys_resource_is_refused() {
    run(|| {
        if cap_sys_resource() {
            drop_cap_sys_resource();
        }
        for (what, got) in [
            ("set", mlock::daemon::set_io_flusher().map(|()| false)),
            ("clear", mlock::daemon::clear_io_flusher().map(|()| false)),
            ("get", mlock::daemon::is_io_flusher()),
        ] {
            ensure(got == Err(Error::NeedsCapSysResource), || {
                format!("{what} without CAP_SYS_RESOURCE: {got:?}")
            })?;
        }
        Ok(())
    });
}

#[test]
fn io_flusher_without_cap_sys_resource_is_permission_denied_with_the_fix() {
    run(|| {
        drop_to_nobody();
        let err = mlock::daemon::set_io_flusher().unwrap_err();
        ensure(err == Error::NeedsCapSysResource, || {
            format!("set: {err:?}")
        })?;
        ensure(err.as_str().contains("CAP_SYS_RESOURCE"), || {
            format!("the fix does not name CAP_SYS_RESOURCE: {err}")
        })?;
        // The kernel guards the getter with the same capability.
        let get = mlock::daemon::is_io_flusher();
        ensure(get == Err(Error::NeedsCapSysResource), || {
            format!("get: {get:?}")
        })
    });
}

// ---- Real-time scheduling ------------------------------------------------

/// The calling thread's policy as the kernel shows it: field 41 of
/// `/proc/thread-self/stat` (proc_pid_stat(5)), 1 for SCHED_FIFO.
fn policy_in_stat() -> u32 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    let after_name = stat.rsplit_once(") ").unwrap().1;
    // Fields from 3 on; `policy` is field 41.
    after_name
        .split_whitespace()
        .nth(41 - 3)
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn realtime_sets_sched_fifo_and_threads_spawned_after_inherit_it() {
    run(|| {
        ensure(mlock::daemon::is_realtime() == Ok(false), || {
            "starts real-time".into()
        })?;
        let range = [0u8, 100].map(mlock::daemon::set_realtime);
        ensure(range == [Err(Error::InvalidArgument); 2], || {
            format!("priority 0 and 100: {range:?}")
        })?;
        mlock::daemon::set_realtime(mlock::daemon::DEFAULT_REALTIME_PRIORITY)
            .map_err(|e| format!("set: {e}"))?;
        ensure(mlock::daemon::is_realtime() == Ok(true), || {
            "is_realtime".into()
        })?;
        // The kernel's own record: policy 1 (SCHED_FIFO) and the priority.
        // QEMU user mode passes the call to the host kernel, for the
        // emulator's thread: /proc/thread-self is the same thread there.
        ensure(policy_in_stat() == 1, || {
            format!("policy {}", policy_in_stat())
        })?;
        let spawned = common::thread::spawn(|| (mlock::daemon::is_realtime(), policy_in_stat()))
            .join()
            .unwrap();
        ensure(spawned == (Ok(true), 1), || {
            format!("spawned after: {spawned:?}")
        })
    });
}

/// Sets `RLIMIT_RTPRIO` (soft and hard) to `priority`.
fn set_rtprio(priority: u64) -> Result<(), String> {
    let limit = libc::rlimit {
        rlim_cur: priority as libc::rlim_t,
        rlim_max: priority as libc::rlim_t,
    };
    // SAFETY: a valid rlimit for this process.
    match unsafe { libc::setrlimit(libc::RLIMIT_RTPRIO, &limit) } {
        0 => Ok(()),
        _ => Err(format!(
            "setrlimit(RLIMIT_RTPRIO, {priority}): {}",
            std::io::Error::last_os_error()
        )),
    }
}

#[test]
fn realtime_without_cap_sys_nice_or_rlimit_rtprio_needs_cap_sys_nice() {
    run(|| {
        // RLIMIT_RTPRIO 0, then no capabilities: the kernel refuses.
        set_rtprio(0)?;
        drop_to_nobody();
        let err = mlock::daemon::set_realtime(10);
        ensure(err == Err(Error::NeedsCapSysNice), || format!("{err:?}"))?;
        // As a best-effort step of the recipe, it is reported, not fatal.
        let recipe = Hardening::SWAP_DAEMON
            .with_lock(Config::new(Flags::FUTURE))
            .without(Stage::MemlockLimit)
            .without(Stage::IoFlusher)
            .with_realtime(10, Requirement::BestEffort);
        let report = harden_swap_daemon(&recipe).map_err(|e| e.to_string())?;
        ensure_eq(
            report.realtime,
            Outcome::Failed(Error::NeedsCapSysNice),
            "report.realtime",
        )?;
        let required = recipe.with_realtime(10, Requirement::Required);
        let err = harden_swap_daemon(&required).unwrap_err();
        ensure(
            err.stage == Stage::Realtime && err.error == Error::NeedsCapSysNice,
            || format!("{err:?}"),
        )
    });
}

#[test]
fn harden_with_realtime_runs_the_daemon_under_sched_fifo() {
    run(|| {
        let recipe = Hardening::SWAP_DAEMON
            .with_lock(Config::new(Flags::FUTURE))
            .without(Stage::MemlockLimit)
            .without(Stage::IoFlusher)
            .with_realtime(
                mlock::daemon::DEFAULT_REALTIME_PRIORITY,
                Requirement::Required,
            );
        ensure(
            recipe.realtime_priority() == 10
                && recipe.requirement(Stage::Realtime) == Some(Requirement::Required),
            || "setting".into(),
        )?;
        let report = harden_swap_daemon(&recipe).map_err(|e| e.to_string())?;
        ensure_eq(report.realtime, Outcome::Done(10), "report.realtime")?;
        ensure(report.to_string().contains("SCHED_FIFO: done"), || {
            report.to_string()
        })?;
        ensure(policy_in_stat() == 1, || {
            format!("policy {}", policy_in_stat())
        })
    });
}

#[test]
#[ignore = "needs CAP_SYS_RESOURCE"]
fn harden_caps_the_real_time_priority_at_rlimit_rtprio_without_cap_sys_nice() {
    // Raising RLIMIT_RTPRIO's hard limit (0 by default) needs it.
    require_cap_sys_resource();
    run(|| {
        // RLIMIT_RTPRIO 5, then no capabilities: 5 is the most the kernel
        // allows, and the recipe asks for 10.
        set_rtprio(5)?;
        drop_to_nobody();
        let recipe = Hardening::SWAP_DAEMON
            .with_lock(Config::new(Flags::FUTURE))
            .without(Stage::MemlockLimit)
            .without(Stage::IoFlusher)
            .without(Stage::OomScoreAdj)
            .with_realtime(10, Requirement::Required);
        let report = harden_swap_daemon(&recipe).map_err(|e| e.to_string())?;
        ensure_eq(report.realtime, Outcome::Done(5), "report.realtime")?;
        // The system call itself: musl's sched_getparam is a stub that
        // answers ENOSYS. The kernel's sched_param is one int.
        let mut priority: libc::c_int = 0;
        // SAFETY: `priority` is valid and writable for the call.
        let rc = unsafe { libc::syscall(libc::SYS_sched_getparam, 0, &mut priority) };
        ensure_eq(rc, 0, "sched_getparam")?;
        ensure_eq(priority, 5, "the kernel's priority")?;
        ensure_eq(policy_in_stat(), 1, "the policy in /proc/self/stat")
    });
}

/// Runs `audit` with three threads: this one, one spawned before `set`
/// and one spawned after it; returns the audit and the first one's ID.
fn audit_around(set: impl FnOnce() -> Result<(), String>) -> Result<(ThreadAudit, u32), String> {
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let (tid_of, tid) = std::sync::mpsc::channel();
    let before = common::thread::spawn(move || {
        // SAFETY: gettid takes no arguments.
        tid_of.send(unsafe { libc::gettid() } as u32).unwrap();
        wait.recv().unwrap();
    });
    let before_tid = tid.recv().unwrap();
    set()?;
    let (go_after, wait_after) = std::sync::mpsc::channel::<()>();
    let after = common::thread::spawn(move || wait_after.recv().unwrap());
    let audit = mlock::daemon::audit_threads().map_err(|e| format!("audit: {e}"));
    go.send(()).unwrap();
    go_after.send(()).unwrap();
    before.join().unwrap();
    after.join().unwrap();
    Ok((audit?, before_tid))
}

#[test]
fn audit_threads_finds_the_thread_spawned_before_sched_fifo() {
    run(|| {
        let (audit, before) = audit_around(|| {
            mlock::daemon::set_realtime(10).map_err(|e| format!("set_realtime: {e}"))
        })?;
        ensure_eq(audit.realtime, 2, "threads under SCHED_FIFO")?;
        ensure(!audit.all_hardened(), || format!("{audit:?}"))?;
        if under_qemu_user() {
            // The emulator's own threads are in /proc/self/task too.
            return ensure(audit.threads >= 3, || format!("{audit:?}"));
        }
        ensure_eq(audit.threads, 3, "threads")?;
        ensure_eq(
            audit.first_not_realtime,
            Some(before),
            "the thread left out",
        )?;
        ensure_eq(audit.io_flusher, 0, "threads with IO_FLUSHER")
    });
}

#[test]
#[ignore = "needs CAP_SYS_RESOURCE"]
fn audit_threads_finds_the_thread_spawned_before_io_flusher() {
    require_cap_sys_resource();
    run(|| {
        let (audit, before) = audit_around(|| {
            mlock::daemon::set_io_flusher().map_err(|e| format!("set_io_flusher: {e}"))
        })?;
        ensure_eq(audit.io_flusher, 2, "threads with IO_FLUSHER")?;
        if !under_qemu_user() {
            ensure_eq(audit.threads, 3, "threads")?;
            ensure_eq(
                audit.first_without_io_flusher,
                Some(before),
                "the thread left out",
            )?;
        }
        Ok(())
    });
}

/// The names of this process's threads (`/proc/self/task/*/comm`).
fn thread_names() -> Vec<String> {
    let tasks = std::fs::read_dir("/proc/self/task").expect("/proc/self/task");
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|c| c.trim_end().to_string())
        .collect()
}

/// io_uring runs a request it cannot complete inline (here a NOP forced
/// with `IOSQE_ASYNC`) on a worker thread the kernel starts in the
/// process (`iou-wrk-<tid>`), cloned from the thread that submitted it:
/// the worker carries that thread's IO_FLUSHER and SCHED_FIFO, so a
/// ublk server hardened before it sets up its rings covers its workers
/// too.
#[test]
#[ignore = "needs CAP_SYS_RESOURCE"]
fn io_uring_workers_inherit_io_flusher_and_sched_fifo() {
    require_cap_sys_resource();
    if under_qemu_user() {
        cannot_run_here("QEMU user mode has no io_uring");
    }
    run(|| {
        mlock::daemon::set_io_flusher().map_err(|e| format!("set_io_flusher: {e}"))?;
        mlock::daemon::set_realtime(10).map_err(|e| format!("set_realtime: {e}"))?;
        let mut ring = io_uring::IoUring::new(4).map_err(|e| format!("io_uring_setup: {e}"))?;
        let nop = io_uring::opcode::Nop::new()
            .build()
            .flags(io_uring::squeue::Flags::ASYNC)
            .user_data(7);
        // SAFETY: a NOP refers to no memory.
        unsafe { ring.submission().push(&nop) }.map_err(|e| format!("push: {e}"))?;
        ring.submit_and_wait(1)
            .map_err(|e| format!("io_uring_enter: {e}"))?;
        let done = ring
            .completion()
            .next()
            .map(|c| (c.user_data(), c.result()));
        ensure_eq(done, Some((7, 0)), "the NOP's completion")?;
        // An idle worker lives on for seconds (WORKER_IDLE_TIMEOUT).
        let names = thread_names();
        ensure(names.iter().any(|n| n.starts_with("iou-wrk-")), || {
            format!("no io_uring worker was started, so this proves nothing: {names:?}")
        })?;
        let audit = mlock::daemon::audit_threads().map_err(|e| format!("audit: {e}"))?;
        ensure_eq(audit.threads, 2, "threads (this one and the worker)")?;
        ensure(audit.all_hardened(), || {
            format!("the worker lacks a setting: {audit:?} (threads {names:?})")
        })
    });
}

// ---- Pre-faulting ----------------------------------------------------------

#[test]
fn prefault_stack_makes_the_pages_below_the_caller_resident_and_locked() {
    run(|| {
        let (lo, hi) = unlocked_stack_below()?;
        mlock::daemon::prefault_stack(512 * KIB);
        let (after, pages) = resident_pages(lo, hi - lo);
        ensure(after == pages, || format!("{after}/{pages} resident after"))?;
        if !under_qemu_user() {
            // smaps' Locked is proportional (a page still shared with the
            // parent after fork counts half), so it can be a little under
            // Rss; the pages just faulted in are the child's own and count
            // whole.
            let (rss, locked) = smaps_rss_locked_kb(mapping_start(lo));
            ensure(locked >= ((hi - lo) / KIB) as u64, || {
                format!("stack mapping: Rss {rss} kB, Locked {locked} kB")
            })?;
        }
        Ok(())
    });
}

#[test]
fn prefault_stack_of_zero_bytes_does_nothing() {
    run(|| {
        let (lo, hi) = unlocked_stack_below()?;
        mlock::daemon::prefault_stack(0);
        // Not one page of the range prefault_stack(512 KiB) fills (see the
        // test above) was faulted in, and so locked. (VmLck cannot tell:
        // it counts the whole locked stack mapping, resident or not.)
        let (after, pages) = resident_pages(lo, hi - lo);
        ensure(after == 0, || {
            format!("prefault_stack(0) faulted in {after}/{pages} pages")
        })
    });
}

/// In a forked child: returns a range of this thread's stack, from 64 KiB
/// below the caller's frame (room for the calls in between) to 448 KiB
/// below it, made non-resident, under `lock_all(CURRENT | FUTURE |
/// ONFAULT)`, which leaves the pages alone (as a thread stack under
/// `MCL_FUTURE | MCL_ONFAULT` would be) and locks each page when it is
/// faulted in.
#[inline(never)]
fn unlocked_stack_below() -> Result<(usize, usize), String> {
    let sp = stack_address() & !(page_size() - 1);
    let (lo, hi) = (sp - 448 * KIB, sp - 64 * KIB);
    // Start from non-resident pages whatever this (possibly reused) thread
    // stack held: nothing lives this far below the stack pointer.
    // SAFETY: the range is part of this thread's stack mapping (2 MiB),
    // below every live frame.
    let rc = unsafe { libc::madvise(lo as *mut _, hi - lo, libc::MADV_DONTNEED) };
    ensure(rc == 0, || "madvise(DONTNEED) below the stack".into())?;
    let (before, pages) = resident_pages(lo, hi - lo);
    ensure(before == 0, || {
        format!("{before}/{pages} resident at start")
    })?;
    mlock::lock_all(Flags::CURRENT | Flags::FUTURE | Flags::ONFAULT)
        .map_err(|e| format!("lock_all: {e}"))?;
    let (still, _) = resident_pages(lo, hi - lo);
    ensure(still == 0, || {
        format!("{still} pages resident before prefault")
    })?;
    Ok((lo, hi))
}

/// A writable view of a test mapping.
fn slice_mut(map: &mut Anon) -> &mut [u8] {
    // SAFETY: the mapping is live, writable, `len` bytes long, and the test
    // holds no other reference to it while this one is used.
    unsafe { std::slice::from_raw_parts_mut(map.addr, map.len) }
}

/// Writes a recognisable byte to a few pages, to check that pre-faulting
/// changes nothing.
fn mark(buf: &mut [u8]) -> Vec<(usize, u8)> {
    let marks = vec![(0, 0xa5), (5 * 4096 + 17, 0x5a), (buf.len() - 1, 0x3c)];
    for &(i, v) in &marks {
        buf[i] = v;
    }
    marks
}

fn check_marks(buf: &[u8], marks: &[(usize, u8)]) -> Result<(), String> {
    for (i, byte) in buf.iter().enumerate() {
        let want = marks.iter().find(|m| m.0 == i).map_or(0, |m| m.1);
        ensure(*byte == want, || {
            format!("byte {i} is {byte:#x}, was {want:#x}")
        })?;
    }
    Ok(())
}

#[test]
fn prefault_populates_a_region_without_changing_it() {
    run(|| {
        let mut map = Anon::new(4 * MIB);
        let (addr, len) = (map.addr as usize, map.len);
        let buf = slice_mut(&mut map);
        let marks = mark(buf);
        let (before, pages) = resident_pages(addr, len);
        ensure(before < pages, || {
            "the mapping was resident at start".into()
        })?;
        let how = mlock::daemon::prefault(buf).map_err(|e| format!("prefault: {e}"))?;
        // Linux 5.14+ (this kernel) knows MADV_POPULATE_WRITE.
        ensure(how == Prefault::Populated, || format!("{how:?}"))?;
        let (after, pages) = resident_pages(addr, len);
        if !under_qemu_user() {
            // QEMU user mode answers madvise without passing it on.
            ensure(after == pages, || format!("{after}/{pages} resident"))?;
            let (rss, _) = smaps_rss_locked_kb(addr);
            ensure(rss == 4096, || format!("Rss {rss} kB"))?;
        }
        check_marks(buf, &marks)
    });
}

#[test]
fn prefault_of_a_region_that_does_not_start_on_a_page() {
    run(|| {
        let mut map = Anon::new(4 * page_size());
        let (addr, len) = (map.addr as usize, map.len);
        let buf = &mut slice_mut(&mut map)[100..3 * page_size()];
        let how = mlock::daemon::prefault(buf).map_err(|e| format!("prefault: {e}"))?;
        ensure(how == Prefault::Populated, || format!("{how:?}"))?;
        if !under_qemu_user() {
            let (resident, _) = resident_pages(addr, len);
            ensure(resident == 3, || {
                format!("{resident} pages resident, want 3")
            })?;
        }
        ensure(
            mlock::daemon::prefault(&mut []) == Ok(Prefault::Populated),
            || "empty region".into(),
        )
    });
}

/// A seccomp rule: `madvise(MADV_POPULATE_WRITE)` fails with `errno`.
fn populate_write_fails_with(errno: i32) -> [Rule; 1] {
    [(
        libc::SYS_madvise,
        errno,
        When::ArgIs(2, MADV_POPULATE_WRITE),
    )]
}

#[test]
fn touch_pages_faults_in_every_page() {
    run(|| {
        let mut map = Anon::new(MIB + 100);
        let (addr, len) = (map.addr as usize, map.len);
        let buf = slice_mut(&mut map);
        let marks = mark(buf);
        mlock::daemon::touch_pages(buf);
        let (after, pages) = resident_pages(addr, len);
        ensure(after == pages, || format!("{after}/{pages} resident"))?;
        check_marks(buf, &marks)
    });
}

// ---- oom_score_adj ---------------------------------------------------------

fn oom_file() -> i32 {
    std::fs::read_to_string("/proc/self/oom_score_adj")
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn oom_score_adj_reads_and_writes_the_proc_file() {
    run(|| {
        if cap_sys_resource() {
            drop_cap_sys_resource();
        }
        // Without CAP_SYS_RESOURCE the floor (0) holds.
        let err = mlock::daemon::set_oom_score_adj(-1000).unwrap_err();
        ensure(err == Error::NeedsCapSysResource, || {
            format!("-1000: {err:?}")
        })?;
        write_and_read_oom_score_adj(&[500, 0, 1000, 7])
    });
}

#[test]
#[ignore = "needs CAP_SYS_RESOURCE"]
fn oom_score_adj_below_the_floor_with_cap_sys_resource() {
    require_cap_sys_resource();
    run(|| write_and_read_oom_score_adj(&[500, -1000, 0, 1000, -1, 7]));
}

/// Sets each value, then checks the file and the crate's reading of it.
fn write_and_read_oom_score_adj(values: &[i32]) -> Result<(), String> {
    ensure(mlock::daemon::oom_score_adj() == Ok(oom_file()), || {
        "read".into()
    })?;
    for &value in values {
        mlock::daemon::set_oom_score_adj(value).map_err(|e| format!("set {value}: {e}"))?;
        ensure(oom_file() == value, || format!("file after {value}"))?;
        let read = mlock::daemon::oom_score_adj();
        ensure(read == Ok(value), || {
            format!("read after {value}: {read:?}")
        })?;
    }
    Ok(())
}

#[test]
fn oom_score_adj_out_of_range_is_rejected_before_the_kernel() {
    run(|| {
        mlock::daemon::set_oom_score_adj(3).map_err(|e| e.to_string())?;
        for value in [1001, -1001, i32::MIN, i32::MAX] {
            let got = mlock::daemon::set_oom_score_adj(value);
            ensure(got == Err(Error::InvalidArgument), || {
                format!("{value}: {got:?}")
            })?;
            ensure(oom_file() == 3, || format!("{value} changed the file"))?;
        }
        Ok(())
    });
}

/// Drops to nobody and stays dumpable, so that `/proc/self` files keep
/// belonging to the process (a setuid makes it non-dumpable, and procfs then
/// hands its files to root).
fn drop_to_nobody_dumpable() {
    drop_to_nobody();
    // SAFETY: plain prctl on integers.
    assert_eq!(unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) }, 0);
}

#[test]
fn lowering_oom_score_adj_below_the_floor_needs_cap_sys_resource() {
    run(|| {
        // As root, set the floor to 0 (a privileged write sets it).
        mlock::daemon::set_oom_score_adj(0).map_err(|e| e.to_string())?;
        drop_to_nobody_dumpable();
        // Raising, and lowering back to the floor, need nothing.
        mlock::daemon::set_oom_score_adj(300).map_err(|e| format!("raise: {e}"))?;
        mlock::daemon::set_oom_score_adj(0).map_err(|e| format!("back to 0: {e}"))?;
        let err = mlock::daemon::set_oom_score_adj(-1).unwrap_err();
        ensure(err == Error::NeedsCapSysResource, || format!("{err:?}"))?;
        ensure(err.as_str().contains("CAP_SYS_RESOURCE"), || {
            format!("the fix does not name CAP_SYS_RESOURCE: {err}")
        })?;
        ensure(oom_file() == 0, || {
            "the refused write changed the file".into()
        })
    });
}

#[test]
fn oom_score_adj_of_a_non_dumpable_process_says_not_dumpable() {
    run(|| {
        drop_to_nobody(); // Not dumpable: /proc/self/oom_score_adj is root's.
        let err = mlock::daemon::set_oom_score_adj(100).unwrap_err();
        ensure(err == Error::NotDumpable, || format!("{err:?}"))?;
        // Reading is open to everyone.
        ensure_eq(mlock::daemon::oom_score_adj(), Ok(oom_file()), "read")
    });
}

/// Hides procfs in a private mount namespace: an empty tmpfs on `/proc`,
/// optionally holding a fake `self/oom_score_adj`.
fn hide_proc(fake_file: bool) {
    // SAFETY: plain syscalls with valid NUL-terminated strings.
    unsafe {
        assert_eq!(
            libc::unshare(libc::CLONE_NEWNS),
            0,
            "unshare(CLONE_NEWNS): the tests must run as root"
        );
        assert_eq!(
            libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null()
            ),
            0
        );
        assert_eq!(
            libc::mount(
                c"none".as_ptr(),
                c"/proc".as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                std::ptr::null()
            ),
            0,
            "mount tmpfs on /proc: {}",
            std::io::Error::last_os_error()
        );
    }
    if fake_file {
        std::fs::create_dir("/proc/self").unwrap();
        std::fs::write("/proc/self/oom_score_adj", "0\n").unwrap();
    }
}

#[test]
fn oom_score_adj_without_procfs_is_proc_unavailable() {
    for fake in [false, true] {
        run(|| {
            hide_proc(fake);
            let read = mlock::daemon::oom_score_adj();
            ensure(read == Err(Error::ProcUnavailable), || {
                format!("read (fake file: {fake}): {read:?}")
            })?;
            let write = mlock::daemon::set_oom_score_adj(-1000);
            ensure(write == Err(Error::ProcUnavailable), || {
                format!("write (fake file: {fake}): {write:?}")
            })?;
            if fake {
                let text = std::fs::read_to_string("/proc/self/oom_score_adj").unwrap();
                ensure(text == "0\n", || {
                    "wrote to a file that is not procfs".into()
                })?;
            }
            Ok(())
        });
    }
}

// ---- harden_swap_daemon ----------------------------------------------------

#[test]
#[ignore = "needs CAP_SYS_RESOURCE"]
fn harden_as_root_does_every_step() {
    require_cap_sys_resource();
    harden_as_root(true);
}

#[test]
fn harden_as_root_without_cap_sys_resource_reports_the_two_steps_that_need_it() {
    harden_as_root(false);
}

/// The swap-daemon recipe as root, with `CAP_SYS_RESOURCE` (`privileged`)
/// or without it (dropped here if the process has it), in a child.
fn harden_as_root(privileged: bool) {
    run(|| {
        if !privileged && cap_sys_resource() {
            drop_cap_sys_resource();
        }
        // Without CAP_SYS_RESOURCE, steps 4 and 5 can only fail: make them
        // best-effort and check that they do, with the fix.
        let needs_sys_resource = if privileged {
            Requirement::Required
        } else {
            Requirement::BestEffort
        };
        let recipe =
            Hardening::new(Config::SWAP_DAEMON.with_requirement(mlock::Requirement::Required))
                .with_io_flusher(needs_sys_resource)
                .with_oom_score_adj(-1000, needs_sys_resource);
        let hard = memlock_hard();
        let report = harden_swap_daemon(&recipe).map_err(|e| format!("{e}"))?;
        let raised = if privileged {
            Limit {
                soft: None,
                hard: None,
            }
        } else {
            // Soft up to hard is all that needs no privilege.
            let hard = (hard != u64::MAX).then_some(hard);
            Limit { soft: hard, hard }
        };
        ensure_eq(
            report.memlock_limit,
            Outcome::Done(raised),
            "report.memlock_limit",
        )?;
        ensure(mlock::limits::memlock_limit() == Ok(raised), || {
            "limit".into()
        })?;
        ensure_eq(
            report.lock,
            Outcome::Done(Flags::CURRENT | Flags::FUTURE),
            "report.lock",
        )?;
        ensure_eq(
            report.stack,
            Outcome::Done(mlock::daemon::DEFAULT_STACK_PREFAULT),
            "report.stack",
        )?;
        if privileged {
            ensure(report.io_flusher == Outcome::Done(()), || {
                "io_flusher".into()
            })?;
            ensure(mlock::daemon::is_io_flusher() == Ok(true), || "flag".into())?;
            ensure(report.oom_score_adj == Outcome::Done(-1000), || {
                "oom".into()
            })?;
            ensure(oom_file() == -1000, || "oom file".into())?;
            ensure(report.is_complete(), || format!("{report}"))?;
            ensure(report.failures().count() == 0, || format!("{report}"))?;
        } else {
            let failed: Vec<_> = report.failures().collect();
            ensure(
                failed
                    == [
                        (Stage::IoFlusher, Error::NeedsCapSysResource),
                        (Stage::OomScoreAdj, Error::NeedsCapSysResource),
                    ],
                || format!("{report}"),
            )?;
            ensure(!report.is_complete(), || format!("{report}"))?;
            ensure(oom_file() == 0, || "oom file".into())?;
        }
        let lck = vm_lck_kb();
        // Under QEMU user mode VmLck is the emulator's, and its own
        // allocations after the report (a new 132 KiB malloc arena chunk,
        // say) are locked too under MCL_FUTURE: it can only grow.
        let matches = match report.locked_bytes {
            Some(reported) if under_qemu_user() => reported <= lck * 1024,
            reported => reported == Some(lck * 1024),
        };
        ensure(matches, || {
            format!("report says {:?}, VmLck {lck} kB", report.locked_bytes)
        })?;
        ensure(lck * 10 >= status_kb("VmSize") * 9, || {
            format!("VmLck {lck} kB of VmSize {} kB", status_kb("VmSize"))
        })?;
        let text = report.to_string();
        ensure(
            text.lines().count() == 6 && text.contains("mlockall: done"),
            || text.clone(),
        )
    });
}

#[test]
fn harden_unprivileged_best_effort_reports_what_it_could_not_do() {
    run(|| {
        set_memlock(0, 0);
        drop_to_nobody_dumpable();
        let recipe = Hardening::SWAP_DAEMON.with_oom_score_adj(-500, Requirement::BestEffort);
        let report = harden_swap_daemon(&recipe).map_err(|e| format!("{e}"))?;
        // Unlimited needs CAP_SYS_RESOURCE; soft up to hard (0) is all it
        // could do.
        let zero = Limit {
            soft: Some(0),
            hard: Some(0),
        };
        ensure_eq(
            report.memlock_limit,
            Outcome::Done(zero),
            "report.memlock_limit",
        )?;
        ensure(report.stack.is_done(), || "stack".into())?;
        let denied = [Stage::Lock, Stage::IoFlusher, Stage::OomScoreAdj].map(|s| report.step(s));
        ensure_eq(
            denied,
            [
                Outcome::Failed(Error::PermissionDenied),
                Outcome::Failed(Error::NeedsCapSysResource),
                Outcome::Failed(Error::NeedsCapSysResource),
            ],
            "lock, io_flusher, oom_score_adj",
        )?;
        ensure(report.locked_bytes.is_none(), || "locked bytes".into())?;
        let failed: Vec<Stage> = report.failures().map(|(s, _)| s).collect();
        ensure(
            failed == [Stage::Lock, Stage::IoFlusher, Stage::OomScoreAdj],
            || format!("{failed:?}"),
        )?;
        ensure(!report.is_complete(), || "complete?".into())?;
        ensure(vm_lck_kb() == 0, || "locked".into())?;
        let text = report.to_string();
        ensure(text.contains("mlockall: failed: permission denied"), || {
            text.clone()
        })
    });
}

#[test]
fn harden_stops_at_a_required_step_that_fails() {
    run(|| {
        set_memlock(0, 0);
        drop_to_nobody();
        let recipe =
            Hardening::new(Config::SWAP_DAEMON.with_requirement(mlock::Requirement::Required));
        let err: HardenError = harden_swap_daemon(&recipe).unwrap_err();
        ensure(
            err.stage == Stage::Lock && err.error == Error::PermissionDenied,
            || format!("{err:?}"),
        )?;
        ensure(err.report.memlock_limit.is_done(), || "limit step".into())?;
        for stage in [Stage::Lock, Stage::Stack, Stage::IoFlusher] {
            ensure(err.report.step(stage) == Outcome::NotReached, || {
                format!("{stage}: {:?}", err.report.step(stage))
            })?;
        }
        ensure(
            err.to_string().starts_with("mlockall: permission denied"),
            || err.to_string(),
        )?;
        ensure(Error::from(err) == Error::PermissionDenied, || {
            "From".into()
        })
    });
    run(|| {
        // Locking works (FUTURE alone fits any nonzero limit), IO_FLUSHER
        // is required and cannot be had.
        drop_to_nobody();
        let recipe =
            Hardening::new(Config::new(Flags::FUTURE)).with_io_flusher(Requirement::Required);
        let err = harden_swap_daemon(&recipe).unwrap_err();
        ensure(
            err.stage == Stage::IoFlusher && err.error == Error::NeedsCapSysResource,
            || format!("{err:?}"),
        )?;
        ensure(
            err.report.lock.is_done() && err.report.stack.is_done(),
            || format!("{:?}", err.report),
        )?;
        ensure(err.report.lock == Outcome::Done(Flags::FUTURE), || {
            "lock".into()
        })?;
        ensure(err.report.oom_score_adj == Outcome::NotReached, || {
            "oom".into()
        })
    });
}

#[test]
fn harden_rejects_a_bad_recipe_before_changing_anything() {
    run(|| {
        set_memlock(64 * 1024, memlock_hard());
        let bad = [
            (Hardening::new(Config::new(Flags::empty())), Stage::Lock),
            (Hardening::new(Config::new(Flags::ONFAULT)), Stage::Lock),
            (
                Hardening::SWAP_DAEMON.with_oom_score_adj(-1001, Requirement::BestEffort),
                Stage::OomScoreAdj,
            ),
            (
                Hardening::SWAP_DAEMON.with_realtime(0, Requirement::BestEffort),
                Stage::Realtime,
            ),
            (
                Hardening::SWAP_DAEMON.with_realtime(100, Requirement::Required),
                Stage::Realtime,
            ),
        ];
        for (recipe, stage) in bad {
            let err = harden_swap_daemon(&recipe).unwrap_err();
            ensure(
                err.stage == stage && err.error == Error::InvalidArgument,
                || format!("{err:?}"),
            )?;
            ensure(
                err.report.step(Stage::MemlockLimit) == Outcome::NotReached,
                || "a step ran".into(),
            )?;
        }
        // Out of range but skipped is fine: the value is not used.
        let skipped = Hardening::SWAP_DAEMON
            .with_oom_score_adj(5000, Requirement::BestEffort)
            .without(Stage::OomScoreAdj)
            .without(Stage::MemlockLimit)
            .with_lock(Config::new(Flags::FUTURE));
        let report = harden_swap_daemon(&skipped).map_err(|e| e.to_string())?;
        ensure(report.memlock_limit == Outcome::Skipped, || "limit".into())?;
        ensure(report.oom_score_adj == Outcome::Skipped, || "oom".into())?;
        let limit = mlock::limits::memlock_limit().unwrap();
        ensure(limit.soft == Some(64 * 1024), || format!("{limit:?}"))
    });
}

/// Tests that make a system call fail, or stop in it, under a seccomp
/// filter: QEMU user mode implements no seccomp, so they run natively and in
/// the VMs (the harness filters `seccomp::` out of QEMU user runs).
mod seccomp {
    use super::*;

    /// Steps whose system call a seccomp filter answers with success
    /// (`SECCOMP_RET_ERRNO` with 0) without running it: the read-back
    /// finds no effect, and the report says `NotHonoured`, never `Done`.
    #[test]
    fn steps_the_kernel_did_not_apply_are_not_honoured() {
        let rules = [
            (libc::SYS_mlockall, 0, When::Always),
            (libc::SYS_sched_setscheduler, 0, When::Always),
        ];
        run_with_seccomp(&rules, || {
            // One page locked already: VmLck is not 0, and what shows that
            // mlockall did nothing is the stack's mapping, not marked `lo`.
            let page: &'static [u8] = Box::leak(vec![1u8; page_size()].into_boxed_slice());
            mlock::lock(page).map_err(|e| format!("lock: {e}"))?;
            let recipe = Hardening::new(Config::SWAP_DAEMON)
                .without(Stage::MemlockLimit)
                .without(Stage::IoFlusher)
                .without(Stage::OomScoreAdj)
                .with_realtime(10, Requirement::BestEffort);
            let report = harden_swap_daemon(&recipe).map_err(|e| e.to_string())?;
            ensure_eq(report.lock, Outcome::Failed(Error::NotHonoured), "lock")?;
            ensure_eq(
                report.realtime,
                Outcome::Failed(Error::NotHonoured),
                "realtime",
            )?;
            // The one page, which a 4 KiB buffer may straddle: two at most.
            let two_pages = 2 * page_size() as u64 / 1024;
            ensure(vm_lck_kb() <= two_pages, || {
                format!("VmLck {} kB", vm_lck_kb())
            })?;
            ensure_eq(policy_in_stat(), 0, "the policy in /proc/self/stat")?;
            // Required, the lock that did not happen ends the recipe.
            let required =
                Hardening::new(Config::SWAP_DAEMON.with_requirement(Requirement::Required));
            let err = harden_swap_daemon(&required).unwrap_err();
            ensure(
                err.stage == Stage::Lock && err.error == Error::NotHonoured,
                || format!("{err:?}"),
            )
        });
    }

    /// The same for `PR_SET_IO_FLUSHER`, whose read-back needs
    /// `CAP_SYS_RESOURCE` too.
    #[test]
    #[ignore = "needs CAP_SYS_RESOURCE"]
    fn io_flusher_the_kernel_did_not_set_is_not_honoured() {
        require_cap_sys_resource();
        let rules = [(libc::SYS_prctl, 0, When::ArgIs(0, PR_SET_IO_FLUSHER))];
        run_with_seccomp(&rules, || {
            let recipe = Hardening::new(Config::new(Flags::FUTURE))
                .without(Stage::MemlockLimit)
                .with_io_flusher(Requirement::BestEffort)
                .without(Stage::OomScoreAdj);
            let report = harden_swap_daemon(&recipe).map_err(|e| e.to_string())?;
            ensure_eq(
                report.io_flusher,
                Outcome::Failed(Error::NotHonoured),
                "io_flusher",
            )
        });
    }

    #[test]
    fn io_flusher_on_a_kernel_before_5_6_is_unsupported() {
        // Before 5.6 the kernel does not know the options: EINVAL. (What QEMU
        // user mode does with the options is covered by the tests above.)
        let rules = [
            (
                libc::SYS_prctl,
                libc::EINVAL,
                When::ArgIs(0, PR_SET_IO_FLUSHER),
            ),
            (
                libc::SYS_prctl,
                libc::EINVAL,
                When::ArgIs(0, PR_GET_IO_FLUSHER),
            ),
        ];
        run_with_seccomp(&rules, || {
            let set = mlock::daemon::set_io_flusher();
            ensure(set == Err(Error::Unsupported), || format!("set: {set:?}"))?;
            let get = mlock::daemon::is_io_flusher();
            ensure(get == Err(Error::Unsupported), || format!("get: {get:?}"))
        });
    }

    #[test]
    fn prefault_falls_back_to_touching_on_a_kernel_before_5_14() {
        // Under QEMU the touch loop itself is tested in touch_pages_faults_in_every_page.
        run_with_seccomp(&populate_write_fails_with(libc::EINVAL), || {
            let mut map = Anon::new(2 * MIB);
            let (addr, len) = (map.addr as usize, map.len);
            let buf = slice_mut(&mut map);
            let marks = mark(buf);
            let how = mlock::daemon::prefault(buf).map_err(|e| format!("prefault: {e}"))?;
            ensure(how == Prefault::Touched, || format!("{how:?}"))?;
            let (after, pages) = resident_pages(addr, len);
            ensure(after == pages, || format!("{after}/{pages} resident"))?;
            check_marks(buf, &marks)
        });
    }

    #[test]
    fn prefault_reports_the_kernels_other_errors() {
        run_with_seccomp(&populate_write_fails_with(libc::ENOMEM), || {
            let mut map = Anon::new(64 * KIB);
            let got = mlock::daemon::prefault(slice_mut(&mut map));
            ensure(got == Err(Error::OutOfMemory), || format!("{got:?}"))?;
            // Population's ENOMEM is the kernel out of memory: the fix must not
            // be a bigger RLIMIT_MEMLOCK.
            let text = Error::OutOfMemory.to_string();
            ensure(!text.contains("ulimit"), || text.clone())
        });
    }
}
