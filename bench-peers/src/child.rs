//! The counting child: a fresh process (this program, executed again)
//! that sets `RLIMIT_MEMLOCK` to 8 MiB, becomes uid and gid 65534 (so it
//! has no `CAP_IPC_LOCK`), and allocates 32-byte secrets until the first
//! failure.
//!
//! It reports on its standard output, a pipe the parent reads, one line
//! at a time, each written with one `write(2)`, so that what was written
//! survives the process dying of a signal:
//!
//! - `before\t<lines of /proc/self/maps>` once, before the first secret;
//! - `n\t<secrets alive>` after every success;
//! - `end\t<how>\t<detail>\t<secrets alive>\t<VmLck kB>\t<lines of
//!   /proc/self/maps>` once, with every secret still alive. `<how>` is
//!   `reached`, `error` (detail: the error's name), `panic` (detail: the
//!   message; written by the panic hook, before the process aborts) or
//!   `signal` (detail: the signal's name; written by a handler on an
//!   alternate stack, after which the signal kills the process as it would
//!   have).
//!
//! What the handler and the hook run reads `/proc` with `open`, `read` and
//! `close` into buffers on the stack, and formats without allocating:
//! async-signal-safe, and it works when no mapping can be added any more.

use core::ffi::{c_int, c_void, CStr};
use core::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::peers::{self, Ending, Peer};

/// The `RLIMIT_MEMLOCK` the child runs under, soft and hard: 8 MiB.
pub const LIMIT: u64 = 8 << 20;

/// The unprivileged user and group the child becomes (`nobody`, `nogroup`).
pub const NOBODY: u32 = 65534;

/// Secrets alive, for the signal handler.
static ALIVE: AtomicUsize = AtomicUsize::new(0);

/// Whether the `end` line was written (by the loop, the hook or a handler).
static ENDED: AtomicBool = AtomicBool::new(false);

/// The fatal signals the handler reports.
const FATAL: [(c_int, &str); 6] = [
    (libc::SIGSEGV, "SIGSEGV"),
    (libc::SIGBUS, "SIGBUS"),
    (libc::SIGABRT, "SIGABRT"),
    (libc::SIGILL, "SIGILL"),
    (libc::SIGFPE, "SIGFPE"),
    (libc::SIGTRAP, "SIGTRAP"),
];

/// The counting child's main: never returns.
pub fn main(peer: Peer, max: usize) -> ! {
    if let Err(e) = limit_and_drop_privileges() {
        eprintln!("bench-peers child: {e}");
        std::process::exit(2);
    }
    if peer.uses_sodium() {
        if let Err(e) = crate::sodium::init() {
            eprintln!("bench-peers child: {e}");
            std::process::exit(2);
        }
    }
    install_reporters();
    peers::count(
        peer,
        max,
        &mut || {
            let mut line = Line::new();
            let _ = writeln!(line, "before\t{}", maps_lines().unwrap_or(0));
            line.send();
        },
        &mut |alive| {
            ALIVE.store(alive, Ordering::Relaxed);
            let mut line = Line::new();
            let _ = writeln!(line, "n\t{alive}");
            line.send();
        },
        &mut |ending, alive| {
            match ending {
                Ending::Reached => end("reached", "", alive),
                Ending::Error(e) => end("error", &e, alive),
            }
            // The secrets are never dropped: the process ends here.
            // SAFETY: _exit ends the process at once; nothing after it runs.
            unsafe { libc::_exit(0) }
        },
    );
    unreachable!("the end callback exits");
}

/// `RLIMIT_MEMLOCK` soft = hard = 8 MiB, then uid and gid 65534 with no
/// supplementary groups (as root), and a check that `CAP_IPC_LOCK` is gone.
fn limit_and_drop_privileges() -> Result<(), String> {
    let os = |what: &str| format!("{what}: {}", std::io::Error::last_os_error());
    let limit = libc::rlimit {
        rlim_cur: LIMIT,
        rlim_max: LIMIT,
    };
    // SAFETY: setrlimit reads the rlimit struct, which lives across the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) } != 0 {
        return Err(os(
            "setrlimit(RLIMIT_MEMLOCK, 8 MiB) (raising the hard limit needs CAP_SYS_RESOURCE)",
        ));
    }
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } == 0 {
        // SAFETY: setgroups with a count of 0 reads no list; setgid and
        // setuid take plain integers. The process is single-threaded here,
        // so every thread changes credentials.
        unsafe {
            if libc::setgroups(0, core::ptr::null()) != 0 {
                return Err(os("setgroups([])"));
            }
            if libc::setgid(NOBODY) != 0 {
                return Err(os("setgid(65534)"));
            }
            if libc::setuid(NOBODY) != 0 {
                return Err(os("setuid(65534)"));
            }
        }
    }
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
    let caps = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .ok_or("no CapEff in /proc/self/status")?;
    /// The capability's number (linux/capability.h).
    const CAP_IPC_LOCK: u32 = 14;
    if caps & (1 << CAP_IPC_LOCK) != 0 {
        return Err("CAP_IPC_LOCK is still effective after dropping privileges".into());
    }
    Ok(())
}

/// The panic hook and the fatal-signal handlers, on an alternate stack.
fn install_reporters() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload_as_str()
            .unwrap_or("(a payload that is not text)");
        end("panic", message, ALIVE.load(Ordering::Relaxed));
    }));
    const STACK: usize = 256 << 10;
    // Leaked: the handlers may run until the process ends.
    let stack: &'static mut [u8] = Vec::leak(vec![0u8; STACK]);
    let alt = libc::stack_t {
        ss_sp: stack.as_mut_ptr().cast::<c_void>(),
        ss_flags: 0,
        ss_size: STACK,
    };
    // SAFETY: the stack is STACK writable bytes that are never freed.
    if unsafe { libc::sigaltstack(&alt, core::ptr::null_mut()) } != 0 {
        eprintln!(
            "bench-peers child: sigaltstack: {}",
            std::io::Error::last_os_error()
        );
    }
    for (signal, _) in FATAL {
        // SAFETY: an all-zero sigaction is a valid start (empty mask, no
        // flags); the handler is an extern "C" fn(c_int) that stays valid
        // for the life of the process.
        unsafe {
            let mut action: libc::sigaction = core::mem::zeroed();
            action.sa_sigaction = on_fatal as extern "C" fn(c_int) as usize;
            action.sa_flags = libc::SA_ONSTACK | libc::SA_RESETHAND;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, core::ptr::null_mut());
        }
    }
}

/// A fatal signal: writes the `end` line (unless the panic hook did), then
/// returns with the default action restored (`SA_RESETHAND`), so the fault
/// happens again, or `abort` raises again, and the signal ends the process.
extern "C" fn on_fatal(signal: c_int) {
    let name = FATAL
        .iter()
        .find(|(s, _)| *s == signal)
        .map_or("a signal", |(_, n)| n);
    end("signal", name, ALIVE.load(Ordering::Relaxed));
}

/// Writes the `end` line once: how it ended, the secrets alive, `VmLck`
/// and the lines of `/proc/self/maps`, all read now. Async-signal-safe.
fn end(how: &str, detail: &str, alive: usize) {
    if ENDED.swap(true, Ordering::SeqCst) {
        return;
    }
    let vmlck = vmlck_kb();
    let maps = maps_lines();
    let mut line = Line::new();
    let _ = write!(line, "end\t{how}\t");
    line.push_field(detail);
    let _ = write!(line, "\t{alive}\t");
    let _ = match vmlck {
        Some(kb) => write!(line, "{kb}"),
        None => write!(line, "-"),
    };
    let _ = match maps {
        Some(n) => writeln!(line, "\t{n}"),
        None => writeln!(line, "\t-"),
    };
    line.send();
}

/// One line of the report, formatted on the stack and sent with one
/// `write(2)` to the standard output.
struct Line {
    buf: [u8; 512],
    len: usize,
}

impl Line {
    fn new() -> Line {
        Line {
            buf: [0; 512],
            len: 0,
        }
    }

    /// Text that may hold tabs or newlines, with those made spaces; cut
    /// where the line is full, leaving room for its newline.
    fn push_field(&mut self, text: &str) {
        for &b in text.as_bytes() {
            if self.len + 1 >= self.buf.len() {
                return;
            }
            self.buf[self.len] = if b == b'\t' || b == b'\n' { b' ' } else { b };
            self.len += 1;
        }
    }

    /// Writes the line whole to fd 1, retrying short writes.
    fn send(&self) {
        let mut sent = 0;
        while sent < self.len {
            // SAFETY: the range sent..len lies within self.buf.
            let n = unsafe {
                libc::write(
                    1,
                    self.buf[sent..self.len].as_ptr().cast::<c_void>(),
                    self.len - sent,
                )
            };
            if n <= 0 {
                if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return;
            }
            sent += n as usize;
        }
    }
}

impl core::fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        // Keep room for the final newline: cut the text, not the line.
        let room = (self.buf.len() - 1).saturating_sub(self.len);
        let take = s.len().min(room);
        self.buf[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        if take < s.len() && s.ends_with('\n') && self.len < self.buf.len() {
            self.buf[self.len] = b'\n';
            self.len += 1;
        }
        Ok(())
    }
}

/// Calls `chunk` with what `read(2)` returns from `path`, chunk by chunk,
/// into a buffer on the stack. Async-signal-safe.
fn read_proc(path: &CStr, mut chunk: impl FnMut(&[u8])) -> Option<()> {
    // SAFETY: path is NUL-terminated; open returns -1 or a descriptor
    // this function owns and closes.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    let mut buf = [0u8; 8192];
    let ok = loop {
        // SAFETY: buf is buf.len() writable bytes on this stack.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast::<c_void>(), buf.len()) };
        if n < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            break false;
        }
        if n == 0 {
            break true;
        }
        chunk(&buf[..n as usize]);
    };
    // SAFETY: fd was opened above and is closed once.
    unsafe { libc::close(fd) };
    ok.then_some(())
}

/// Lines of `/proc/self/maps`: one per mapping.
fn maps_lines() -> Option<u64> {
    let mut lines = 0u64;
    read_proc(c"/proc/self/maps", |chunk| {
        lines += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
    })?;
    Some(lines)
}

/// `VmLck` of `/proc/self/status`, in kB.
fn vmlck_kb() -> Option<u64> {
    // The status text (about 1.5 KB) whole, on the stack.
    let mut text = [0u8; 16384];
    let mut len = 0;
    read_proc(c"/proc/self/status", |chunk| {
        let take = chunk.len().min(text.len() - len);
        text[len..len + take].copy_from_slice(&chunk[..take]);
        len += take;
    })?;
    vmlck_of(&text[..len])
}

/// The `VmLck:` value of a status text, in kB.
fn vmlck_of(text: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\nVmLck:";
    let at = text.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let digits = text[at..]
        .iter()
        .skip_while(|b| b.is_ascii_whitespace())
        .take_while(|b| b.is_ascii_digit());
    let mut value = 0u64;
    let mut any = false;
    for &d in digits {
        value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        any = true;
    }
    any.then_some(value)
}

#[cfg(test)]
mod tests {
    use super::{vmlck_of, Line};
    use core::fmt::Write as _;

    #[test]
    fn vmlck_is_read_from_a_status_text() {
        let text = b"Name:\tx\nVmPin:\t       0 kB\nVmLck:\t    8192 kB\nVmHWM:\t 1 kB\n";
        assert_eq!(vmlck_of(text), Some(8192));
        assert_eq!(vmlck_of(b"Name:\tx\n"), None);
    }

    #[test]
    fn a_line_keeps_its_newline_when_cut() {
        let mut line = Line::new();
        let long = "x".repeat(600) + "\n";
        let _ = write!(line, "{long}");
        assert_eq!(line.len, 512);
        assert_eq!(line.buf[511], b'\n');
        let mut line = Line::new();
        line.push_field("a\tb\nc");
        assert_eq!(&line.buf[..line.len], b"a b c");
    }
}
