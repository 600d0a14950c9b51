//! Helpers shared by the integration tests: run a scenario in a forked child
//! (locking is process-wide state, so a scenario must not race the harness's
//! other threads), drop privileges for real, and read what the kernel says.
//!
//! Each test binary includes this with `mod common;` and uses what it needs.
#![allow(dead_code)]

pub mod cgroup;
pub mod contract;
pub mod notify;
pub mod thread;

use std::io::Read;
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether the tests run under QEMU user mode. `cargo xtask test` sets
/// `MLOCK_TEST_QEMU_USER=1` for foreign targets; the check is confirmed
/// against the process itself (the emulator's command name), so a stray
/// variable cannot turn real-kernel expectations off.
///
/// The answer is settled once per test binary, and [`in_child`] settles it
/// before it forks: in a forked child `/proc/self/status` names the test
/// thread that forked, not the emulator.
pub fn under_qemu_user() -> bool {
    static QEMU: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *QEMU.get_or_init(|| {
        let declared = std::env::var_os(contract::QEMU_USER_ENV).is_some_and(|v| v == "1");
        if declared {
            assert!(
                emulator_detected(),
                "MLOCK_TEST_QEMU_USER=1 is set, but this process is not running under QEMU user mode"
            );
        }
        declared
    })
}

/// Looks for QEMU in what the host kernel reports about this process. QEMU
/// fakes `/proc/self/maps`, `exe` and `auxv` for its guest, but passes
/// `/proc/self/status` through: its `Name:` is the emulator's command name.
fn emulator_detected() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Name:") && l.contains("qemu-"))
        })
        .unwrap_or(false)
}

/// Runs `scenario` in a forked child and returns its verdict. The child
/// reports a failure (an `Err` or a panic message) through a pipe, so the
/// parent's assertion shows it.
///
/// The child is a copy of this single thread: it must not wait on locks
/// held by other threads of the harness. The crate's calls take none; the
/// threads a scenario starts come from [`thread`], not `std::thread`.
pub fn in_child(scenario: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    let (status, message) = fork_piped(|pipe| {
        let (code, message) = verdict(scenario);
        // SAFETY: `pipe` is the pipe's write end and `message` is valid for
        // its length.
        unsafe { libc::write(pipe, message.as_ptr().cast(), message.len()) };
        code
    });
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(())
    } else if message.is_empty() {
        Err(format!("child ended with wait status {status:#x}"))
    } else {
        Err(message)
    }
}

/// Runs `scenario`, catching a panic, and returns the exit code a child
/// reports it with (0 passed, 1 failed, 2 panicked) and the message.
pub fn verdict(scenario: impl FnOnce() -> Result<(), String>) -> (i32, String) {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(scenario)) {
        Ok(Ok(())) => (0, String::new()),
        Ok(Err(message)) => (1, message),
        Err(panic) => (
            2,
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into()),
        ),
    }
}

/// Runs `scenario` in a forked child ([`in_child`]) and fails the test
/// with the child's message if it failed.
#[track_caller]
pub fn run(scenario: impl FnOnce() -> Result<(), String>) {
    if let Err(message) = in_child(scenario) {
        panic!("{message}");
    }
}

/// Forks; the child runs `child` with the write end of a pipe and
/// `_exit`s with the code it returns. The parent reads the pipe to its end
/// and returns the child's wait status and what it wrote.
fn fork_piped(child: impl FnOnce(i32) -> i32) -> (i32, String) {
    under_qemu_user();
    quiet_panics_in_children();
    let mut fds = [0i32; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: fork has no memory-safety preconditions; the child only runs
    // `child` and then `_exit`s, never returning into the harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed: {}", std::io::Error::last_os_error());
    if pid == 0 {
        IN_CHILD.store(true, Ordering::Relaxed);
        // SAFETY: fds[0] is the read end, unused in the child.
        unsafe { libc::close(fds[0]) };
        let code = child(fds[1]);
        // SAFETY: `_exit` ends the child without running the harness's
        // atexit handlers or destructors twice.
        unsafe { libc::_exit(code) };
    }
    // SAFETY: fds[1] is the write end, unused in the parent.
    unsafe { libc::close(fds[1]) };
    // SAFETY: fds[0] is an open pipe end that this File now owns.
    let mut reader = unsafe { std::fs::File::from_raw_fd(fds[0]) };
    let mut output = String::new();
    let _ = reader.read_to_string(&mut output);
    let mut status = 0;
    // SAFETY: `pid` is our child and `status` is a valid int.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    (status, output)
}

/// Set in a forked child (each child has its own copy of this static).
static IN_CHILD: AtomicBool = AtomicBool::new(false);

/// Keeps a panic in a forked child away from std's default panic hook.
///
/// The child is a copy of one thread of a multi-threaded harness: a lock
/// that another thread held at `fork` stays locked in the child forever.
/// The default hook takes the backtrace lock (with `RUST_BACKTRACE` set),
/// so a panicking child could hang. In a child the hook does nothing: the
/// panic's message reaches the parent through `catch_unwind` and the pipe.
/// Everywhere else the previous hook runs as before.
fn quiet_panics_in_children() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_CHILD.load(Ordering::Relaxed) {
                previous(info);
            }
        }));
    });
}

/// Moves this (forked, single-threaded) child into its own mount
/// namespace whose mounts do not propagate back to the host.
pub fn private_mount_namespace() -> Result<(), String> {
    // SAFETY: plain syscalls with valid NUL-terminated strings or NULL.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return Err(format!(
                "unshare(CLONE_NEWNS) needs root (CAP_SYS_ADMIN): {}",
                std::io::Error::last_os_error()
            ));
        }
        let rc = libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        );
        if rc != 0 {
            return Err(format!(
                "making mounts private: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

/// Detaches every mount at `/proc` (a host may stack several).
pub fn unmount_proc() -> Result<(), String> {
    // SAFETY: the path is NUL-terminated.
    while unsafe { libc::umount2(c"/proc".as_ptr(), libc::MNT_DETACH) } == 0 {}
    // SAFETY: as above.
    let gone = unsafe { libc::access(c"/proc/self/status".as_ptr(), libc::F_OK) } != 0;
    ensure(gone, || {
        "/proc/self/status still exists after umount".into()
    })
}

/// Sets `RLIMIT_MEMLOCK` (bytes; `u64::MAX` for unlimited).
pub fn set_memlock(soft: u64, hard: u64) {
    let lim = libc::rlimit {
        rlim_cur: soft as libc::rlim_t,
        rlim_max: hard as libc::rlim_t,
    };
    // SAFETY: `lim` is a valid rlimit.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) };
    assert_eq!(rc, 0, "setrlimit: {}", std::io::Error::last_os_error());
}

pub use contract::CAP_SYS_RESOURCE;

/// The effective capability set (`CapEff:` of `/proc/self/status`, read
/// with std, independently of the crate's own parser).
pub fn effective_capabilities() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .expect("a hexadecimal CapEff in /proc/self/status")
}

/// Whether this process has `CAP_SYS_RESOURCE` (effective), which raising
/// the hard `RLIMIT_MEMLOCK`, IO_FLUSHER and an `oom_score_adj` below the
/// floor need. Root in a container or sandbox may lack it (its bounding
/// set drops it); root in the VMs of `cargo xtask vm` has it.
pub fn cap_sys_resource() -> bool {
    effective_capabilities() & (1 << CAP_SYS_RESOURCE) != 0
}

/// Fails the running test unless this process has `CAP_SYS_RESOURCE`: for
/// the tests `#[ignore = "needs CAP_SYS_RESOURCE"]`, should they be run
/// where it is missing.
#[track_caller]
pub fn require_cap_sys_resource() {
    if !cap_sys_resource() {
        cannot_run_here("it needs CAP_SYS_RESOURCE, which this process lacks");
    }
}

/// Sets the effective, permitted and inheritable capability sets of this
/// thread to `caps` (a bit mask of the first 32 capabilities), with
/// `capset(2)`: a process can only drop capabilities this way.
pub fn set_capabilities(caps: u32) -> std::io::Result<()> {
    // The v3 capset structures (linux/capability.h).
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut header = Header {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let data = [
        Data {
            effective: caps,
            permitted: caps,
            inheritable: caps,
        },
        Data {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        },
    ];
    // SAFETY: capset reads the header and the two data structs, valid for
    // the call.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) };
    match rc {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// Drops `CAP_SYS_RESOURCE` from this (forked, single-threaded) process,
/// keeping its other capabilities among the first 32: root in a container
/// that drops it.
pub fn drop_cap_sys_resource() {
    let caps = effective_capabilities() as u32 & !(1 << CAP_SYS_RESOURCE);
    set_capabilities(caps).expect("capset without CAP_SYS_RESOURCE");
    assert!(!cap_sys_resource(), "CAP_SYS_RESOURCE is still effective");
}

/// The unprivileged uid the tests drop to.
pub const NOBODY: u32 = 65534;

/// Drops to `NOBODY` (uid and gid): every capability goes with it.
/// Requires root; fails the test with the reason otherwise.
pub fn drop_to_nobody() {
    // SAFETY: plain syscalls on integers.
    unsafe {
        assert_eq!(
            libc::setgroups(0, std::ptr::null()),
            0,
            "setgroups: the tests must run as root to drop privileges ({})",
            std::io::Error::last_os_error()
        );
        assert_eq!(libc::setgid(NOBODY), 0, "setgid");
        assert_eq!(libc::setuid(NOBODY), 0, "setuid");
    }
}

/// A field of `/proc/self/status`, in kB, read with std (independently of
/// the crate's own parser).
pub fn status_kb(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// `VmLck` in kB.
pub fn vm_lck_kb() -> u64 {
    status_kb("VmLck")
}

/// The resident and the locked-resident size, in kB, of the mapping that
/// starts at `addr`, from `/proc/self/smaps` (`Rss:` and `Locked:`).
pub fn smaps_rss_locked_kb(addr: usize) -> (u64, u64) {
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("read /proc/self/smaps");
    let mut in_mapping = false;
    let (mut rss, mut locked) = (None, None);
    for line in smaps.lines() {
        if let Some((range, _)) = line.split_once(' ') {
            if let Some((start, _)) = range.split_once('-') {
                if let Ok(start) = usize::from_str_radix(start, 16) {
                    if in_mapping {
                        break;
                    }
                    in_mapping = start == addr;
                    continue;
                }
            }
        }
        if !in_mapping {
            continue;
        }
        let kb = |l: &str| l.split_whitespace().nth(1).and_then(|v| v.parse().ok());
        if line.starts_with("Rss:") {
            rss = kb(line);
        } else if line.starts_with("Locked:") {
            locked = kb(line);
        }
    }
    (
        rss.expect("mapping or its Rss in smaps"),
        locked.expect("Locked in smaps"),
    )
}

/// An anonymous private mapping, untouched, unmapped on drop.
pub struct Anon {
    pub addr: *mut u8,
    pub len: usize,
}

impl Anon {
    /// Maps `len` bytes between two `PROT_NONE` guard pages. The guards keep
    /// the kernel from merging the mapping with a neighbour once both are
    /// locked, so its smaps entry starts at `addr` and covers only it.
    pub fn new(len: usize) -> Anon {
        let page = page_size();
        // SAFETY: a fresh private anonymous mapping cannot alias anything.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len + 2 * page,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED, "mmap");
        // SAFETY: the range lies inside the reservation just made.
        let addr = unsafe { base.cast::<u8>().add(page) };
        // SAFETY: as above; it only changes the protection of our pages.
        let rc = unsafe { libc::mprotect(addr.cast(), len, libc::PROT_READ | libc::PROT_WRITE) };
        assert_eq!(rc, 0, "mprotect");
        // Keep transparent huge pages out of the residency checks: with THP
        // set to "always" (as in the VM tier's kernels) one touch faults in
        // 2 MiB. Where THP is compiled out this fails with EINVAL, harmlessly.
        // SAFETY: advice on our own fresh mapping; it changes no contents.
        unsafe { libc::madvise(addr.cast(), len, libc::MADV_NOHUGEPAGE) };
        Anon { addr, len }
    }

    pub fn slice(&self) -> &[u8] {
        // SAFETY: the mapping is live, readable and `len` bytes long.
        unsafe { std::slice::from_raw_parts(self.addr, self.len) }
    }

    /// Writes one byte in each of the first `pages` pages.
    pub fn touch(&self, pages: usize) {
        for page in 0..pages {
            // SAFETY: the offset is within the writable mapping.
            unsafe { self.addr.add(page * page_size()).write_volatile(1) };
        }
    }
}

impl Drop for Anon {
    fn drop(&mut self) {
        let page = page_size();
        // SAFETY: we own the reservation, guards included, and no slice of
        // it outlives `self`.
        unsafe { libc::munmap(self.addr.sub(page).cast(), self.len + 2 * page) };
    }
}

pub fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

/// Turns a boolean check into a scenario result with a message.
pub fn ensure(ok: bool, message: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(message())
    }
}

/// [`ensure`] for an equality: the message shows both sides.
pub fn ensure_eq<T: PartialEq + std::fmt::Debug>(
    got: T,
    want: T,
    what: &str,
) -> Result<(), String> {
    ensure(got == want, || format!("{what}: {got:?}, wanted {want:?}"))
}

/// Which calls of a syscall [`fail_syscall_with`] makes fail.
#[derive(Clone, Copy)]
pub enum When {
    /// Every call.
    Always,
    /// Calls whose argument `index` (0-based) has any of `bits` set in its
    /// low 32 bits.
    ArgHasBits(u32, u32),
    /// Calls whose argument `index` equals `value` in its low 32 bits.
    ArgIs(u32, u32),
}

/// Installs a seccomp filter in this process that makes syscall `nr` fail
/// with `errno` when `when` holds. The kernel itself then answers as an
/// older kernel would (no `mlock2`: `ENOSYS`; no `MCL_ONFAULT` or
/// `PR_SET_IO_FLUSHER`: `EINVAL`), for real.
///
/// QEMU user mode refuses to install seccomp filters; callers check
/// [`under_qemu_user`] first and test what the emulator does instead, or
/// use [`run_with_seccomp`].
pub fn fail_syscall_with(nr: libc::c_long, errno: i32, when: When) {
    if let Err(e) = try_fail_syscall_with(nr, errno, when) {
        panic!("installing a seccomp filter failed: {e}");
    }
}

/// One rule of [`run_with_seccomp`]: syscall `nr` fails with `errno` when
/// `when` holds.
pub type Rule = (libc::c_long, i32, When);

/// Runs `scenario` in a forked child under seccomp filters that make a
/// syscall fail as an older kernel's would ([`fail_syscall_with`]).
///
/// QEMU user mode cannot run it: it refuses `PR_SET_SECCOMP` (EINVAL), so
/// that a guest cannot filter the syscalls the emulator itself makes. The
/// tests that call this live in modules named `seccomp`, which the harness
/// filters out of QEMU user runs; run there anyway, the test fails saying
/// why.
#[track_caller]
pub fn run_with_seccomp(rules: &[Rule], scenario: impl FnOnce() -> Result<(), String>) {
    if under_qemu_user() {
        cannot_run_here(
            "QEMU user mode refuses seccomp filters (PR_SET_SECCOMP is EINVAL), and this test \
             makes a system call fail as an older kernel's would through one",
        );
    }
    run(|| {
        for &(nr, errno, when) in rules {
            fail_syscall_with(nr, errno, when);
        }
        scenario()
    });
}

/// Fails the running test because it cannot run here, saying why: never
/// a pass. Where the harness knows in advance that a test cannot run (QEMU
/// user mode and the modules `seccomp` and `pid_reuse`; a machine without
/// `CAP_SYS_RESOURCE` and the tests `#[ignore]`d for it), it does not run
/// it, and libtest counts it as filtered out or ignored.
#[track_caller]
pub fn cannot_run_here(why: &str) -> ! {
    panic!("this test cannot run here: {why}");
}

/// Says on stderr (uncaptured, so it shows in every run) what the running
/// test checks less of here, and where it is checked in full. libtest
/// names each test's thread after the test.
pub fn note(text: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    let line = format!("note: {test}: {text}\n");
    // One write(2), not std's stderr: a forked child may find its lock held
    // for good (see [`thread`]), and a line written whole is not cut into
    // by another test's.
    // SAFETY: `line` is valid for its length; fd 2 is this process's stderr.
    let _ = unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
}

/// Where a BPF filter finds the low 32 bits of system-call argument
/// `index` in `struct seccomp_data` (linux/seccomp.h): `nr` at offset 0,
/// `args[i]` (a `u64`) at 16 + 8 * i, whose low half comes first on a
/// little-endian arch and second on a big-endian one (s390x).
pub fn seccomp_arg_low(index: u32) -> u32 {
    16 + 8 * index + if cfg!(target_endian = "big") { 4 } else { 0 }
}

/// Where the high 32 bits of argument `index` are: the other half of
/// [`seccomp_arg_low`]'s word.
pub fn seccomp_arg_high(index: u32) -> u32 {
    16 + 8 * index + if cfg!(target_endian = "big") { 0 } else { 4 }
}

/// [`fail_syscall_with`], returning the kernel's (or the emulator's)
/// refusal instead of failing the test.
pub fn try_fail_syscall_with(nr: libc::c_long, errno: i32, when: When) -> std::io::Result<()> {
    use libc::{BPF_ABS, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W};
    const BPF_JSET: u32 = 0x40; // linux/bpf_common.h
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |code: u32, k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    let load = |offset: u32| stmt(BPF_LD | BPF_W | BPF_ABS, offset);
    let arg = seccomp_arg_low;
    let (test_load, test) = match when {
        // Two no-ops keep the jump offsets below the same.
        When::Always => (load(0), load(0)),
        When::ArgHasBits(index, bits) => (
            load(arg(index)),
            jump(BPF_JMP | BPF_JSET | BPF_K, bits, 0, 1),
        ),
        When::ArgIs(index, value) => (
            load(arg(index)),
            jump(BPF_JMP | BPF_JEQ | BPF_K, value, 0, 1),
        ),
    };
    let mut program = [
        load(0),
        jump(BPF_JMP | BPF_JEQ | BPF_K, nr as u32, 0, 3),
        test_load,
        test,
        stmt(BPF_RET | BPF_K, libc::SECCOMP_RET_ERRNO | (errno as u32)),
        stmt(BPF_RET | BPF_K, libc::SECCOMP_RET_ALLOW),
    ];
    let fprog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: plain prctl calls; `fprog` points to a valid filter program
    // that outlives the call (the kernel copies it).
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        let rc = libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &fprog as *const libc::sock_fprog,
        );
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// How a forked child of [`run_forked`] ended, and what it wrote to stderr.
pub struct Forked {
    /// The raw wait status.
    pub status: i32,
    pub stderr: String,
}

impl Forked {
    /// The signal that killed the child, if one did.
    pub fn signal(&self) -> Option<i32> {
        libc::WIFSIGNALED(self.status).then(|| libc::WTERMSIG(self.status))
    }

    /// `Ok` if the child was killed by `signal`, else what happened.
    pub fn killed_by(&self, signal: i32, what: &str) -> Result<(), String> {
        ensure(self.signal() == Some(signal), || {
            format!(
                "{what}: expected death by signal {signal}, got wait status {:#x} \
                 (signal {:?}, exit {:?}); stderr: {:?}",
                self.status,
                self.signal(),
                libc::WIFEXITED(self.status).then(|| libc::WEXITSTATUS(self.status)),
                self.stderr
            )
        })
    }
}

/// Runs `body` in a forked child that is expected to die (a fault, an
/// abort): core dumps are off in the child (`RLIMIT_CORE` 0, not
/// dumpable), its stderr goes to a pipe, and it exits 0 if `body` returns.
pub fn run_forked(body: impl FnOnce()) -> Forked {
    let (status, stderr) = fork_piped(|pipe| {
        let none = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: plain syscalls on integers and a valid rlimit; dup2 makes
        // the pipe's write end this child's stderr.
        unsafe {
            libc::setrlimit(libc::RLIMIT_CORE, &none);
            libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
            libc::dup2(pipe, 2);
        }
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
            Ok(()) => 0,
            Err(_) => 101,
        }
    });
    Forked { status, stderr }
}
