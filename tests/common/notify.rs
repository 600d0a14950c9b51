//! Forcing an interleaving for real, and turning a hang into a failure.
//!
//! - [`spawn_filtered`] starts a thread under a seccomp filter that sends
//!   the syscalls its [`Rule`]s match to a *user-space supervisor*
//!   (`SECCOMP_RET_USER_NOTIF`, Linux 5.0+): the thread stops inside the
//!   call until the test, through the [`Listener`], lets the call run
//!   (`SECCOMP_USER_NOTIF_FLAG_CONTINUE`, Linux 5.5+) or answers it with
//!   an errno. The filter covers that thread only (and threads it starts
//!   later): the supervisor and the rest of the process run unfiltered.
//! - [`within`] runs a scenario in a forked child with a deadline: a child
//!   that is still running at the deadline is killed, and the test fails
//!   saying so, instead of hanging the test binary.
//!
//! A signal that interrupts a parked call runs its handler while the call
//! waits; the kernel drops the notification, and with `SA_RESTART` the
//! call starts again after the handler and is notified once more (a new
//! id), which the supervisor must receive and answer in its turn.
//!
//! QEMU user mode (7.2) does not implement `seccomp(2)` (`ENOSYS`):
//! [`spawn_filtered`] returns that refusal, for the caller to check and
//! report.

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Which syscalls of the filtered thread stop for the supervisor.
#[derive(Clone, Copy, Debug)]
pub enum Rule {
    /// Every call of syscall `nr`.
    Nr(libc::c_long),
    /// Calls of syscall `nr` whose first argument (an address) is `arg0`.
    NrArg0(libc::c_long, usize),
    /// Every syscall except `exit` and `exit_group` (so that the thread can
    /// always end, even once the supervisor is gone).
    AnyButExit,
}

/// One call stopped in the kernel, waiting for the supervisor's answer.
#[derive(Clone, Copy, Debug)]
pub struct Call {
    pub id: u64,
    /// The calling thread's id, as the supervisor's PID namespace sees it.
    pub tid: u32,
    pub nr: libc::c_long,
    pub args: [u64; 6],
}

/// The supervisor's end: receives the stopped calls and answers them.
/// Dropping it closes the descriptor: calls stopped then fail with
/// `ENOSYS`, and so do later ones the filter matches.
pub struct Listener {
    fd: OwnedFd,
}

impl Listener {
    /// The next stopped call, or `None` if none came within `timeout`, or
    /// if no thread uses the filter any more.
    pub fn recv(&self, timeout: Duration) -> Result<Option<Call>, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: `pfd` is one valid pollfd.
            let rc = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(60_000) as i32) };
            if rc < 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return Err(format!("poll on the seccomp listener: {e}"));
            }
            if rc == 0 {
                return Ok(None);
            }
            if pfd.revents & libc::POLLIN == 0 {
                // POLLHUP: every thread under the filter has exited.
                return Ok(None);
            }
            // SAFETY: seccomp_notif is plain data; the kernel requires it
            // zeroed before SECCOMP_IOCTL_NOTIF_RECV fills it in.
            let mut notif: libc::seccomp_notif = unsafe { std::mem::zeroed() };
            // SAFETY: the descriptor is a seccomp listener and `notif` is a
            // valid seccomp_notif (linux/seccomp.h) for the kernel to fill.
            let rc = unsafe {
                libc::ioctl(
                    self.fd.as_raw_fd(),
                    libc::SECCOMP_IOCTL_NOTIF_RECV as _,
                    &mut notif,
                )
            };
            if rc != 0 {
                let e = std::io::Error::last_os_error();
                // ENOENT: the caller was interrupted (a signal) between the
                // poll and the receive; its restart is notified anew.
                if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::EINTR)) {
                    continue;
                }
                return Err(format!("SECCOMP_IOCTL_NOTIF_RECV: {e}"));
            }
            return Ok(Some(Call {
                id: notif.id,
                tid: notif.pid,
                nr: notif.data.nr as libc::c_long,
                args: notif.data.args,
            }));
        }
    }

    /// [`recv`](Self::recv) that fails with `what` on a timeout.
    pub fn expect(&self, timeout: Duration, what: &str) -> Result<Call, String> {
        self.recv(timeout)?.ok_or_else(|| {
            format!("{what}: no call reached the seccomp supervisor within {timeout:?}")
        })
    }

    fn send(&self, call: &Call, error: i32, flags: u32) -> Result<(), String> {
        let mut resp = libc::seccomp_notif_resp {
            id: call.id,
            val: 0,
            error,
            flags,
        };
        // SAFETY: `resp` is a valid seccomp_notif_resp (linux/seccomp.h)
        // that the kernel only reads.
        let rc = unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_SEND as _,
                &mut resp,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(format!(
                "SECCOMP_IOCTL_NOTIF_SEND for syscall {}: {}",
                call.nr,
                std::io::Error::last_os_error()
            ))
        }
    }

    /// Lets the stopped call run, for real.
    pub fn resume(&self, call: &Call) -> Result<(), String> {
        // The libc crate types the flag `c_ulong`: 64 bits on some
        // targets, 32 (a `u32` already) on others.
        #[allow(clippy::unnecessary_cast)]
        let flags = libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32;
        self.send(call, 0, flags)
    }

    /// Makes the stopped call return 0, without running it (the test has
    /// done its work itself).
    pub fn succeed(&self, call: &Call) -> Result<(), String> {
        self.send(call, 0, 0)
    }

    /// Makes the stopped call fail with `errno`, without running it.
    pub fn refuse(&self, call: &Call, errno: i32) -> Result<(), String> {
        self.send(call, -errno, 0)
    }

    /// Lets every call run until no thread uses the filter any more (the
    /// filtered threads have exited), or fails at `timeout`.
    pub fn serve_until_gone(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("filtered thread still running after {timeout:?}"));
            }
            match self.recv(left.min(Duration::from_millis(50)))? {
                Some(call) => {
                    // ENOENT: the call was interrupted meanwhile.
                    let _ = self.resume(&call);
                }
                None if self.gone() => return Ok(()),
                None => {}
            }
        }
    }

    /// Whether no thread uses the filter any more (`POLLHUP`).
    fn gone(&self) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `pfd` is one valid pollfd; a zero timeout does not block.
        let rc = unsafe { libc::poll(&mut pfd, 1, 0) };
        rc > 0 && pfd.revents & libc::POLLHUP != 0
    }
}

/// Installs, in the calling thread only, a filter that stops the calls
/// `rules` match for a supervisor, and returns the supervisor's end.
/// Sets `PR_SET_NO_NEW_PRIVS` first (for this thread), as an unprivileged
/// filter requires.
pub fn listen(rules: &[Rule]) -> std::io::Result<Listener> {
    use libc::{BPF_ABS, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W};
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jeq = |k: u32, jf: u8| libc::sock_filter {
        code: (BPF_JMP | BPF_JEQ | BPF_K) as u16,
        jt: 0,
        jf,
        k,
    };
    // struct seccomp_data (linux/seccomp.h): nr at offset 0, then the
    // arguments (see `seccomp_arg_low`).
    let load = |offset: u32| stmt(BPF_LD | BPF_W | BPF_ABS, offset);
    let notify = stmt(BPF_RET | BPF_K, libc::SECCOMP_RET_USER_NOTIF);
    let allow = stmt(BPF_RET | BPF_K, libc::SECCOMP_RET_ALLOW);
    let mut program = Vec::new();
    // Each rule is a block that returns USER_NOTIF on a match and
    // otherwise falls through to the next block (its jumps skip to the
    // block's end).
    for rule in rules {
        match *rule {
            Rule::Nr(nr) => {
                program.extend([load(0), jeq(nr as u32, 1), notify]);
            }
            Rule::NrArg0(nr, addr) => {
                let addr = addr as u64;
                program.extend([
                    load(0),
                    jeq(nr as u32, 5),
                    load(super::seccomp_arg_low(0)),
                    jeq(addr as u32, 3),
                    load(super::seccomp_arg_high(0)),
                    jeq((addr >> 32) as u32, 1),
                    notify,
                ]);
            }
            Rule::AnyButExit => {
                program.extend([
                    load(0),
                    jeq(libc::SYS_exit as u32, 1),
                    allow,
                    jeq(libc::SYS_exit_group as u32, 1),
                    allow,
                    notify,
                ]);
            }
        }
    }
    program.push(allow);
    let fprog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: prctl takes integers; seccomp reads the valid program that
    // `fprog` points to (the kernel copies it) and returns a new
    // descriptor, which the OwnedFd then owns.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let fd = libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
            &fprog as *const libc::sock_fprog,
        );
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Listener {
            fd: OwnedFd::from_raw_fd(fd as RawFd),
        })
    }
}

/// Spawns a scoped thread that installs a filter for `rules` ([`listen`])
/// and then runs `body`; returns the supervisor's end and the thread.
///
/// The descriptor is handed over through an atomic, not a channel, so the
/// thread makes no syscall between the filter and `body`. If the kernel
/// (or QEMU) refuses the filter, `body` does not run and the refusal is
/// returned.
pub fn spawn_filtered<'scope, R: Send + 'scope>(
    scope: &'scope super::thread::Scope<'scope, '_>,
    rules: &[Rule],
    body: impl FnOnce() -> R + Send + 'scope,
) -> Result<(Listener, super::thread::ScopedJoinHandle<'scope, Option<R>>), std::io::Error> {
    const PENDING: i64 = i64::MIN;
    let handoff = Arc::new(AtomicI64::new(PENDING));
    let theirs = Arc::clone(&handoff);
    let rules = rules.to_vec();
    let thread = scope.spawn(move || match listen(&rules) {
        Ok(listener) => {
            let fd = std::os::fd::IntoRawFd::into_raw_fd(listener.fd);
            theirs.store(i64::from(fd), Ordering::SeqCst);
            Some(body())
        }
        Err(e) => {
            theirs.store(
                -i64::from(e.raw_os_error().unwrap_or(libc::EIO)),
                Ordering::SeqCst,
            );
            None
        }
    });
    loop {
        match handoff.load(Ordering::SeqCst) {
            PENDING => std::thread::sleep(Duration::from_millis(1)),
            fd if fd >= 0 => {
                // SAFETY: the thread gave up ownership of this descriptor
                // (into_raw_fd) and handed it over only to us.
                let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
                return Ok((Listener { fd }, thread));
            }
            errno => {
                let _ = thread.join();
                return Err(std::io::Error::from_raw_os_error(-errno as i32));
            }
        }
    }
}

/// Whether this kernel can stop a call for a supervisor and let it run
/// (user notification, Linux 5.0, with CONTINUE, Linux 5.5): the running
/// kernel's release, compared.
pub fn kernel_has_user_notif_continue() -> bool {
    // SAFETY: `uts` is a valid utsname for the kernel to fill.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return false;
    }
    // SAFETY: uname NUL-terminates the release.
    let release = unsafe { std::ffi::CStr::from_ptr(uts.release.as_ptr()) }.to_string_lossy();
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    let version = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    version >= (5, 5)
}

/// Runs `scenario` in a forked child (of this single-threaded process, or
/// of one thread of it), and fails if it fails, dies, or is still running
/// after `limit`: then the child and its process group are killed
/// (`SIGKILL`) and the error says it hung. The child's stderr is captured
/// and shown in the error; on success it is returned.
///
/// The child is the leader of a new process group and dies with its
/// parent (`PR_SET_PDEATHSIG`), so nothing it started outlives the test.
/// Use it inside [`run`](super::run): the panic hook there keeps a
/// panicking child quiet, and its message reaches the verdict.
pub fn within(
    limit: Duration,
    scenario: impl FnOnce() -> Result<(), String>,
) -> Result<String, String> {
    let verdict = Pipe::new();
    let stderr = Pipe::new();
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the child only runs `scenario` and then `_exit`s, never
    // returning into the caller.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        VERDICT.store(verdict.write, Ordering::SeqCst);
        // SAFETY: plain syscalls on integers and this child's descriptors.
        unsafe {
            libc::setpgid(0, 0);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            // The parent may have died before the prctl; in a new PID
            // namespace the parent is outside it (0).
            let ppid = libc::getppid();
            if ppid != parent && ppid != 0 {
                libc::_exit(3);
            }
            libc::close(verdict.read);
            libc::close(stderr.read);
            libc::dup2(stderr.write, 2);
        }
        let (code, message) = super::verdict(scenario);
        // SAFETY: `verdict.write` is the pipe's write end and `message` is
        // valid for its length; `_exit` skips the harness's destructors.
        unsafe {
            libc::write(verdict.write, message.as_ptr().cast(), message.len());
            libc::_exit(code);
        }
    }
    // SAFETY: the write ends belong to the child now.
    unsafe {
        libc::close(verdict.write);
        libc::close(stderr.write);
    }
    let start = Instant::now();
    let mut status = 0;
    let mut hung = false;
    loop {
        // SAFETY: `pid` is our child and `status` a valid int.
        let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if rc == pid {
            break;
        }
        if rc < 0 {
            return Err(format!("waitpid: {}", std::io::Error::last_os_error()));
        }
        if start.elapsed() >= limit {
            hung = true;
            // SAFETY: signals to our own child and its process group.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let message = verdict.drain();
    let captured = stderr.drain();
    let errors = if captured.is_empty() {
        String::new()
    } else {
        format!("; its stderr: {captured:?}")
    };
    if hung {
        return Err(format!(
            "hung: the child was still running after {limit:?} and was killed{errors}"
        ));
    }
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        return Ok(captured);
    }
    let how = if libc::WIFSIGNALED(status) {
        format!("killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("exit status {}", libc::WEXITSTATUS(status))
    };
    if message.is_empty() {
        Err(format!("the child ended with {how}{errors}"))
    } else if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 1 {
        // The scenario's own failure: its message says it all.
        Err(format!("{message}{errors}"))
    } else {
        Err(format!("{message} (child: {how}){errors}"))
    }
}

/// The write end of the verdict pipe of the [`within`] child this
/// process is, or -1.
static VERDICT: AtomicI32 = AtomicI32::new(-1);

/// Ends the [`within`] child this process is at once, with `message` as
/// its verdict: for a scenario that found a thread stuck for good (one that
/// cannot be joined, so that returning would hang).
pub fn fail_now(message: &str) -> ! {
    let fd = VERDICT.load(Ordering::SeqCst);
    assert!(fd >= 0, "fail_now outside a `within` child: {message}");
    // SAFETY: `fd` is the verdict pipe's write end and `message` is valid
    // for its length; `_exit` ends every thread of the process.
    unsafe {
        libc::write(fd, message.as_ptr().cast(), message.len());
        libc::_exit(1)
    }
}

/// A pipe whose read end is drained without blocking once the writer is
/// gone (a descendant that kept a write end open cannot stall it).
struct Pipe {
    read: RawFd,
    write: RawFd,
}

impl Pipe {
    fn new() -> Pipe {
        let mut fds = [0i32; 2];
        // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
        assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
        Pipe {
            read: fds[0],
            write: fds[1],
        }
    }

    /// Reads what is in the pipe now, and closes the read end.
    fn drain(&self) -> String {
        // SAFETY: the read end is ours; O_NONBLOCK only changes how reads
        // wait.
        unsafe { libc::fcntl(self.read, libc::F_SETFL, libc::O_NONBLOCK) };
        // SAFETY: the read end is an open descriptor that this File now
        // owns (and closes).
        let mut file = unsafe { std::fs::File::from_raw_fd(self.read) };
        let mut bytes = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = file.read(&mut buf) {
            bytes.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}
