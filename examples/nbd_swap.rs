//! A userspace swap device: a block device served through the kernel's NBD
//! driver, whose pages live compressed in this process's own memory, as
//! zram and trueno-ublk keep theirs.
//!
//! ```text
//! nbd_swap [--device /dev/nbd0] [--size-mib 512] [--store-mib 64]
//!          [--protect none|lock|harden] [--stats-ms 500]
//! ```
//!
//! It is the process a swap deadlock is about: put swap on its
//! device and the kernel, short of memory, writes pages to it; each write is
//! a request this process must serve. If serving it needs memory, and the
//! memory it needs went to swap, or reclaiming memory for it queues more
//! writes to this same device, nothing moves any more. `--protect` chooses
//! what the process does about it before it serves anything:
//!
//! - `none`: nothing;
//! - `lock`: `lock_all(CURRENT | FUTURE)` only;
//! - `harden`: `harden_swap_daemon` with the recipe the README recommends
//!   (raise `RLIMIT_MEMLOCK`, lock `CURRENT | FUTURE`, pre-fault the stack,
//!   `PR_SET_IO_FLUSHER`, `oom_score_adj` -1000, `SCHED_FIFO`), before any
//!   thread is spawned, so that every thread inherits IO_FLUSHER and the
//!   real-time policy.
//!
//! `harden-without-io-flusher` and `harden-without-realtime` leave step 4
//! or step 6 of the recipe out, to test whether each is needed.
//!
//! In every mode it sets `oom_score_adj` to -1000, so that the OOM killer
//! cannot end an experiment by killing the device's server.
//!
//! Set-up: `NBD_CLEAR_SOCK`, `NBD_SET_BLKSIZE` 4096, `NBD_SET_SIZE_BLOCKS`,
//! `NBD_SET_FLAGS` (flush and trim), `NBD_SET_SOCK` with one end of a
//! `socketpair(2)`, then `NBD_DO_IT` on the main thread, which returns when
//! the device is disconnected. One thread serves the requests (read, write,
//! flush, trim; anything it cannot serve gets an NBD error reply), one
//! prints the counters, and one waits for `SIGTERM` or `SIGINT` and
//! disconnects. Run `swapoff` before you stop it.
//!
//! The store is LZ4 (the `lz4_flex` crate, pure Rust, no unsafe code in the
//! build used here); a page that does not compress is kept as it is.
//! When the store reaches `--store-mib` of compressed data, writes get
//! `ENOSPC`.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use mlock::daemon::{Hardening, Stage, DEFAULT_REALTIME_PRIORITY, OOM_SCORE_ADJ_MIN};
use mlock::{Config, Flags, Requirement};

const PAGE: usize = 4096;
const MIB: u64 = 1 << 20;

const USAGE: &str = "usage: nbd_swap [--device /dev/nbd0] [--size-mib 512] [--store-mib 64] \
                     [--protect none|lock|harden] [--stats-ms 500]";

/// What `include/uapi/linux/nbd.h` defines, for the ioctl set-up and the
/// wire protocol (all big-endian on the wire).
mod nbd {
    // _IO(0xab, n): no direction and no size bits on x86_64, aarch64 and riscv64.
    pub const SET_SOCK: u64 = 0xab00;
    pub const SET_BLKSIZE: u64 = 0xab01;
    pub const DO_IT: u64 = 0xab03;
    pub const CLEAR_SOCK: u64 = 0xab04;
    pub const SET_SIZE_BLOCKS: u64 = 0xab07;
    pub const DISCONNECT: u64 = 0xab08;
    pub const SET_FLAGS: u64 = 0xab0a;

    pub const FLAG_HAS_FLAGS: u64 = 1 << 0;
    pub const FLAG_SEND_FLUSH: u64 = 1 << 2;
    pub const FLAG_SEND_TRIM: u64 = 1 << 5;

    pub const REQUEST_MAGIC: u32 = 0x2560_9513;
    pub const REPLY_MAGIC: u32 = 0x6744_6698;
    /// magic (4), type (4: command in the low 16 bits, flags above),
    /// handle (8), offset (8), length (4).
    pub const REQUEST_LEN: usize = 28;

    pub const CMD_READ: u32 = 0;
    pub const CMD_WRITE: u32 = 1;
    pub const CMD_DISC: u32 = 2;
    pub const CMD_FLUSH: u32 = 3;
    pub const CMD_TRIM: u32 = 4;

    /// Error codes of the reply: the kernel fails the request on any
    /// non-zero value.
    pub const EIO: u32 = 5;
    pub const EINVAL: u32 = 22;
    pub const ENOSPC: u32 = 28;
}

/// The raw calls this program needs beyond the crate and std: `ioctl(2)`,
/// the signal mask and `sigwait(3)`, and `CLOCK_MONOTONIC`. Each is one
/// call into libc with plain integer arguments.
mod sys {
    use std::io;
    use std::os::fd::RawFd;

    /// `ioctl(fd, request, arg)` with an integer argument.
    pub fn ioctl(fd: RawFd, request: u64, arg: u64) -> io::Result<i32> {
        // SAFETY: every NBD ioctl used here takes its argument by value (a
        // size, a flag word or a descriptor number), never as a pointer, so
        // no memory is read or written through it; an invalid `fd` gives
        // EBADF.
        let ret = unsafe { libc::ioctl(fd, request as _, arg as libc::c_ulong) };
        if ret < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(ret)
        }
    }

    /// The set {SIGTERM, SIGINT}.
    fn stop_signals() -> libc::sigset_t {
        // SAFETY: sigemptyset and sigaddset only write the set they are
        // given, a local owned here, and cannot fail for valid signals.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGINT);
            set
        }
    }

    /// Blocks SIGTERM and SIGINT in the calling thread and in every
    /// thread it creates later, so that only [`wait_for_stop`] sees them.
    pub fn block_stop_signals() {
        let set = stop_signals();
        // SAFETY: `set` is a valid, initialised signal set; the old mask is
        // not asked for (null).
        unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    }

    /// Waits until SIGTERM or SIGINT arrives; returns its number.
    pub fn wait_for_stop() -> i32 {
        let set = stop_signals();
        let mut signal = 0;
        // SAFETY: `set` is valid and blocked in every thread
        // (block_stop_signals ran before any thread was spawned); `signal`
        // is a live local the call writes.
        unsafe { libc::sigwait(&set, &mut signal) };
        signal
    }

    /// Milliseconds of `CLOCK_MONOTONIC`: the clock the kernel's console
    /// timestamps and the VM's other samplers use, so lines from
    /// different processes line up.
    pub fn monotonic_ms() -> u64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a live local the call writes; CLOCK_MONOTONIC
        // always exists.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Protect {
    None,
    Lock,
    /// The recipe; the two switches leave step 4 or step 6 out, for the
    /// experiment that asks whether each is needed.
    Harden {
        io_flusher: bool,
        realtime: bool,
    },
}

impl Protect {
    const HARDEN: Protect = Protect::Harden {
        io_flusher: true,
        realtime: true,
    };
}

struct Options {
    device: String,
    size_mib: u64,
    store_mib: u64,
    protect: Protect,
    stats_ms: u64,
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        device: "/dev/nbd0".into(),
        size_mib: 512,
        store_mib: 64,
        protect: Protect::HARDEN,
        stats_ms: 500,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (flag.as_str(), None),
        };
        if name == "-h" || name == "--help" {
            return Err(String::new());
        }
        let value = match inline.or_else(|| it.next().cloned()) {
            Some(v) => v,
            None => return Err(format!("{name} needs a value")),
        };
        let number = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("{name}: not a number: {v:?}"))
        };
        match name {
            "--device" => o.device = value,
            "--size-mib" => o.size_mib = number(&value)?,
            "--store-mib" => o.store_mib = number(&value)?,
            "--stats-ms" => o.stats_ms = number(&value)?,
            "--protect" => {
                o.protect = match value.as_str() {
                    "none" => Protect::None,
                    "lock" => Protect::Lock,
                    "harden" => Protect::HARDEN,
                    "harden-without-io-flusher" => Protect::Harden {
                        io_flusher: false,
                        realtime: true,
                    },
                    "harden-without-realtime" => Protect::Harden {
                        io_flusher: true,
                        realtime: false,
                    },
                    other => {
                        return Err(format!(
                            "--protect: {other:?} is not one of none, lock, harden \
                             (or harden-without-io-flusher, harden-without-realtime)"
                        ))
                    }
                }
            }
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    if o.size_mib == 0 || o.size_mib > 1 << 20 {
        return Err("--size-mib must be between 1 and 1048576".into());
    }
    if o.store_mib == 0 {
        return Err("--store-mib must be at least 1".into());
    }
    Ok(o)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse_args(&args) {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("nbd_swap: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match serve(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nbd_swap: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Applies `--protect`, and `oom_score_adj` -1000 in every mode.
fn protect(mode: Protect) -> Result<(), String> {
    match mode {
        Protect::None => {}
        Protect::Lock => mlock::lock_all(Flags::CURRENT | Flags::FUTURE)
            .map_err(|e| format!("--protect lock: lock_all(CURRENT | FUTURE) failed: {e}"))?,
        Protect::Harden {
            io_flusher,
            realtime,
        } => {
            // The README's recipe: locking required, the rest best-effort.
            let mut recipe =
                Hardening::new(Config::SWAP_DAEMON.with_requirement(Requirement::Required))
                    .with_oom_score_adj(OOM_SCORE_ADJ_MIN, Requirement::BestEffort)
                    .with_realtime(DEFAULT_REALTIME_PRIORITY, Requirement::BestEffort);
            if !io_flusher {
                recipe = recipe.without(Stage::IoFlusher);
            }
            if !realtime {
                recipe = recipe.without(Stage::Realtime);
            }
            let report = mlock::daemon::harden_swap_daemon(&recipe)
                .map_err(|e| format!("--protect harden: {e}\n{}", e.report))?;
            for line in report.to_string().lines() {
                println!("nbd_swap: harden: {line}");
            }
        }
    }
    if let Err(e) = mlock::daemon::set_oom_score_adj(OOM_SCORE_ADJ_MIN) {
        eprintln!("nbd_swap: warning: oom_score_adj -1000: {e}");
    }
    println!(
        "nbd_swap: protect={:?} VmLck={} kB oom_score_adj={} io_flusher={} realtime={}",
        mode,
        mlock::locked_bytes().map_or(0, |b| b / 1024),
        mlock::daemon::oom_score_adj().map_or("?".into(), |v| v.to_string()),
        mlock::daemon::is_io_flusher().unwrap_or(false),
        mlock::daemon::is_realtime().unwrap_or(false),
    );
    Ok(())
}

/// Why the device cannot be opened, with the fix.
fn open_error(device: &str, e: &io::Error) -> String {
    let loaded = std::path::Path::new("/sys/module/nbd").exists();
    match e.raw_os_error() {
        Some(libc::ENOENT | libc::ENXIO | libc::ENODEV) if !loaded => format!(
            "cannot open {device}: {e}; the nbd module is not loaded: run `modprobe nbd` \
             (or `insmod nbd.ko`) as root"
        ),
        Some(libc::ENOENT) => format!(
            "cannot open {device}: no such device; the nbd module is loaded, so pick one of \
             /dev/nbd0..: `modprobe nbd nbds_max=N` makes N of them"
        ),
        Some(libc::EACCES | libc::EPERM) => {
            format!("cannot open {device}: {e}; run as root (the NBD ioctls need CAP_SYS_ADMIN)")
        }
        _ => format!("cannot open {device}: {e}"),
    }
}

fn serve(o: &Options) -> Result<(), String> {
    // Before any thread exists, so that all of them inherit both the
    // blocked signals and IO_FLUSHER.
    sys::block_stop_signals();
    protect(o.protect)?;

    let device = File::options()
        .read(true)
        .write(true)
        .open(&o.device)
        .map_err(|e| open_error(&o.device, &e))?;
    let dev = device.as_raw_fd();
    let blocks = o.size_mib * MIB / PAGE as u64;
    let store = Arc::new(Store::new(blocks as usize, o.store_mib * MIB)?);
    let (kernel_end, server_end) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;

    let setup = |what: &str, request: u64, arg: u64| {
        sys::ioctl(dev, request, arg).map(drop).map_err(|e| {
            let fix = match e.raw_os_error() {
                Some(libc::EPERM | libc::EACCES) => "; run as root (needs CAP_SYS_ADMIN)",
                Some(libc::EBUSY) => "; the device is in use: `nbd-client -d` it or pick another",
                Some(libc::ENOTTY | libc::EINVAL) => "; is it an NBD device?",
                _ => "",
            };
            format!("{what} on {}: {e}{fix}", o.device)
        })
    };
    // A device left configured by an earlier run refuses NBD_SET_SOCK.
    let _ = sys::ioctl(dev, nbd::CLEAR_SOCK, 0);
    setup("NBD_SET_BLKSIZE", nbd::SET_BLKSIZE, PAGE as u64)?;
    setup("NBD_SET_SIZE_BLOCKS", nbd::SET_SIZE_BLOCKS, blocks)?;
    setup(
        "NBD_SET_FLAGS",
        nbd::SET_FLAGS,
        nbd::FLAG_HAS_FLAGS | nbd::FLAG_SEND_FLUSH | nbd::FLAG_SEND_TRIM,
    )?;
    setup("NBD_SET_SOCK", nbd::SET_SOCK, kernel_end.as_raw_fd() as u64)?;

    let done = Arc::new(AtomicBool::new(false));
    let spawn = |name: &str| {
        std::thread::Builder::new()
            .name(name.into())
            .stack_size(256 << 10)
    };
    let server = {
        let store = Arc::clone(&store);
        spawn("nbd-serve")
            .spawn(move || serve_requests(server_end, &store))
            .map_err(|e| format!("spawning the server thread: {e}"))?
    };
    if o.stats_ms > 0 {
        let (store, done, every) = (Arc::clone(&store), Arc::clone(&done), o.stats_ms);
        spawn("nbd-stats")
            .spawn(move || {
                while !done.load(Relaxed) {
                    store.counters.print("");
                    std::thread::sleep(Duration::from_millis(every));
                }
            })
            .map_err(|e| format!("spawning the stats thread: {e}"))?;
    }
    spawn("nbd-signal")
        .spawn(move || {
            let signal = sys::wait_for_stop();
            println!("nbd_swap: signal {signal}: disconnecting");
            if let Err(e) = sys::ioctl(dev, nbd::DISCONNECT, 0) {
                eprintln!("nbd_swap: NBD_DISCONNECT: {e}");
            }
        })
        .map_err(|e| format!("spawning the signal thread: {e}"))?;

    println!(
        "nbd_swap: serving {} ({} MiB, store up to {} MiB)",
        o.device, o.size_mib, o.store_mib
    );
    // Returns once the device is disconnected (or its socket fails).
    let result = sys::ioctl(dev, nbd::DO_IT, 0);
    let _ = sys::ioctl(dev, nbd::CLEAR_SOCK, 0);
    done.store(true, Relaxed);
    drop(kernel_end);
    let served = server.join();
    store.counters.print(" final");
    match (result, served) {
        (_, Err(_)) => Err("the server thread panicked".into()),
        (_, Ok(Err(e))) => Err(format!("serving: {e}")),
        // A disconnect ends NBD_DO_IT with EPIPE or success, depending on
        // the kernel version.
        (Ok(_), Ok(Ok(()))) => Ok(()),
        (Err(e), Ok(Ok(()))) if e.raw_os_error() == Some(libc::EPIPE) => Ok(()),
        (Err(e), Ok(Ok(()))) => Err(format!("NBD_DO_IT: {e}")),
    }
}

/// What the daemon reports: everything the kernel sent and got back.
#[derive(Default)]
struct Counters {
    written: AtomicU64,
    read: AtomicU64,
    pages: AtomicU64,
    compressed: AtomicU64,
    in_flight: AtomicU64,
    requests: AtomicU64,
    errors: AtomicU64,
}

impl Counters {
    /// One line of counters, formatted into `buf` (no allocation: the
    /// stats thread runs while memory is short).
    fn line<'a>(&self, t_ms: u64, buf: &'a mut [u8; 256]) -> &'a [u8] {
        let mut cursor = io::Cursor::new(&mut buf[..]);
        let _ = writeln!(
            cursor,
            "nbd_swap: t_ms={t_ms} written={} read={} pages={} compressed={} in_flight={} \
             requests={} errors={}",
            self.written.load(Relaxed),
            self.read.load(Relaxed),
            self.pages.load(Relaxed),
            self.compressed.load(Relaxed),
            self.in_flight.load(Relaxed),
            self.requests.load(Relaxed),
            self.errors.load(Relaxed),
        );
        let n = cursor.position() as usize;
        &buf[..n]
    }

    fn print(&self, suffix: &str) {
        let mut buf = [0u8; 256];
        let line = self.line(sys::monotonic_ms(), &mut buf);
        let mut out = io::stdout().lock();
        let _ = out.write_all(line.strip_suffix(b"\n").unwrap_or(line));
        let _ = writeln!(out, "{suffix}");
    }
}

/// Compressed pages are kept in slots of a multiple of this many bytes.
const SLOT: usize = 64;
const CLASSES: usize = PAGE / SLOT;
/// No slot: an empty free list, or a page never written.
const NONE: u32 = u32::MAX;

/// Where a page is kept: its slot's offset in the arena and its length
/// (`PAGE` for a page kept whole). `len` 0: never written, or trimmed.
#[derive(Clone, Copy)]
struct Entry {
    offset: u32,
    len: u16,
}

/// The device's pages, each LZ4-compressed on its own (or kept whole when
/// it does not compress), in one arena allocated and pre-faulted at start.
/// Serving a request never allocates: a daemon on the swap path must not
/// need new memory to make memory free.
struct Slots {
    arena: Vec<u8>,
    /// The first byte of the arena never handed out.
    bump: usize,
    /// Per size class, the first free slot; each free slot holds the
    /// offset of the next one in its first four bytes.
    free: [u32; CLASSES],
    table: Vec<Entry>,
}

struct Store {
    slots: std::sync::Mutex<Slots>,
    /// The device's size in pages (the table's length, which never changes).
    blocks: usize,
    counters: Counters,
}

/// Why a request failed, as an NBD error code.
#[derive(Clone, Copy, Debug, PartialEq)]
struct NbdError(u32);

impl Slots {
    fn class(len: usize) -> usize {
        (len.max(1) - 1) / SLOT
    }

    /// A slot for `len` bytes: a freed one of its class, or a new one.
    fn alloc(&mut self, len: usize) -> Result<u32, NbdError> {
        let class = Self::class(len);
        let head = self.free[class];
        if head != NONE {
            let at = head as usize;
            let next = self.arena[at..at + 4].try_into().expect("4 bytes");
            self.free[class] = u32::from_ne_bytes(next);
            return Ok(head);
        }
        let size = (class + 1) * SLOT;
        if self.bump + size > self.arena.len() {
            return Err(NbdError(nbd::ENOSPC));
        }
        self.bump += size;
        Ok((self.bump - size) as u32)
    }

    fn release(&mut self, e: Entry) {
        let class = Self::class(e.len.into());
        let at = e.offset as usize;
        self.arena[at..at + 4].copy_from_slice(&self.free[class].to_ne_bytes());
        self.free[class] = e.offset;
    }
}

impl Store {
    /// A store for `blocks` pages of the device holding at most `capacity`
    /// bytes of compressed data (at most 4 GiB), all of it allocated now
    /// and written once (`resize` writes every byte), so that every page
    /// is faulted in before the first request.
    fn new(blocks: usize, capacity: u64) -> Result<Store, String> {
        let capacity = usize::try_from(capacity.min(u64::from(u32::MAX)))
            .map_err(|_| "--store-mib: too large for this machine".to_string())?;
        let mut arena = Vec::new();
        arena
            .try_reserve_exact(capacity)
            .map_err(|e| format!("allocating the {capacity}-byte store: {e}"))?;
        arena.resize(capacity, 0);
        let mut table = Vec::new();
        table
            .try_reserve_exact(blocks)
            .map_err(|e| format!("allocating the page table: {e}"))?;
        table.resize(
            blocks,
            Entry {
                offset: NONE,
                len: 0,
            },
        );
        Ok(Store {
            slots: std::sync::Mutex::new(Slots {
                arena,
                bump: 0,
                free: [NONE; CLASSES],
                table,
            }),
            blocks,
            counters: Counters::default(),
        })
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Slots>, NbdError> {
        self.slots.lock().map_err(|_| NbdError(nbd::EIO))
    }

    /// The pages `offset..offset + len` covers, or EINVAL when the range is
    /// not whole pages or not on the device.
    fn range(&self, offset: u64, len: u32) -> Result<std::ops::Range<usize>, NbdError> {
        let blocks = self.blocks as u64;
        let end = offset
            .checked_add(u64::from(len))
            .ok_or(NbdError(nbd::EINVAL))?;
        if !offset.is_multiple_of(PAGE as u64)
            || u64::from(len) % PAGE as u64 != 0
            || end > blocks * PAGE as u64
        {
            return Err(NbdError(nbd::EINVAL));
        }
        Ok((offset / PAGE as u64) as usize..(end / PAGE as u64) as usize)
    }

    /// Stores one page, compressed into `scratch` first. The old copy is
    /// released only once the new one has a slot.
    fn put(&self, index: usize, page: &[u8; PAGE], scratch: &mut [u8]) -> Result<(), NbdError> {
        let kept: &[u8] = match lz4_flex::block::compress_into(page, scratch) {
            Ok(n) if n < PAGE => &scratch[..n],
            _ => page,
        };
        let mut slots = self.lock()?;
        let old = *slots.table.get(index).ok_or(NbdError(nbd::EINVAL))?;
        let at = slots.alloc(kept.len())?;
        slots.arena[at as usize..at as usize + kept.len()].copy_from_slice(kept);
        slots.table[index] = Entry {
            offset: at,
            len: kept.len() as u16,
        };
        let c = &self.counters;
        if old.len == 0 {
            c.pages.fetch_add(1, Relaxed);
        } else {
            slots.release(old);
            c.compressed.fetch_sub(old.len.into(), Relaxed);
        }
        c.compressed.fetch_add(kept.len() as u64, Relaxed);
        Ok(())
    }

    /// The page at `index` into `page` (zeros if never written).
    fn get(&self, index: usize, page: &mut [u8; PAGE]) -> Result<(), NbdError> {
        let slots = self.lock()?;
        let e = *slots.table.get(index).ok_or(NbdError(nbd::EINVAL))?;
        if e.len == 0 {
            page.fill(0);
            return Ok(());
        }
        let kept = &slots.arena[e.offset as usize..][..usize::from(e.len)];
        if kept.len() == PAGE {
            page.copy_from_slice(kept);
            return Ok(());
        }
        match lz4_flex::block::decompress_into(kept, page) {
            Ok(PAGE) => Ok(()),
            _ => Err(NbdError(nbd::EIO)),
        }
    }

    /// Forgets the pages in `range` (trim).
    fn drop_pages(&self, range: std::ops::Range<usize>) -> Result<(), NbdError> {
        let mut slots = self.lock()?;
        for i in range {
            let e = slots.table[i];
            if e.len != 0 {
                slots.release(e);
                slots.table[i] = Entry {
                    offset: NONE,
                    len: 0,
                };
                self.counters.pages.fetch_sub(1, Relaxed);
                self.counters.compressed.fetch_sub(e.len.into(), Relaxed);
            }
        }
        Ok(())
    }
}

/// One request off the wire.
struct Request {
    command: u32,
    handle: [u8; 8],
    offset: u64,
    len: u32,
}

impl Request {
    fn parse(b: &[u8; nbd::REQUEST_LEN]) -> io::Result<Request> {
        let u32_at = |i: usize| u32::from_be_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        if u32_at(0) != nbd::REQUEST_MAGIC {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad request magic {:#x}", u32_at(0)),
            ));
        }
        Ok(Request {
            command: u32_at(4) & 0xffff,
            handle: b[8..16].try_into().expect("8 bytes"),
            offset: u64::from_be_bytes(b[16..24].try_into().expect("8 bytes")),
            len: u32_at(24),
        })
    }
}

fn reply(sock: &mut UnixStream, handle: [u8; 8], error: u32) -> io::Result<()> {
    let mut r = [0u8; 16];
    r[0..4].copy_from_slice(&nbd::REPLY_MAGIC.to_be_bytes());
    r[4..8].copy_from_slice(&error.to_be_bytes());
    r[8..16].copy_from_slice(&handle);
    sock.write_all(&r)
}

/// Reads and throws away `len` bytes: the payload of a write that is
/// refused, so that the next request starts where it should.
fn drain(sock: &mut UnixStream, mut len: u64, page: &mut [u8; PAGE]) -> io::Result<()> {
    while len > 0 {
        let n = len.min(PAGE as u64) as usize;
        sock.read_exact(&mut page[..n])?;
        len -= n as u64;
    }
    Ok(())
}

/// Serves requests until the kernel disconnects. Buffers are allocated
/// once, before the first request.
fn serve_requests(mut sock: UnixStream, store: &Store) -> io::Result<()> {
    let mut header = [0u8; nbd::REQUEST_LEN];
    let mut page = Box::new([0u8; PAGE]);
    let mut scratch = vec![0u8; lz4_flex::block::get_maximum_output_size(PAGE)];
    let c = &store.counters;
    loop {
        match sock.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let req = Request::parse(&header)?;
        c.requests.fetch_add(1, Relaxed);
        c.in_flight.fetch_add(1, Relaxed);
        let result = match req.command {
            nbd::CMD_READ => match store.range(req.offset, req.len) {
                Ok(range) => {
                    // Decompress every page before the reply header goes
                    // out: a failure must be an error reply, not a short
                    // read.
                    let mut ok = Ok(());
                    for i in range.clone() {
                        if let Err(e) = store.get(i, &mut page) {
                            ok = Err(e);
                            break;
                        }
                    }
                    match ok {
                        Ok(()) => {
                            reply(&mut sock, req.handle, 0)?;
                            for i in range {
                                store
                                    .get(i, &mut page)
                                    .map_err(|_| io::Error::other("page vanished"))?;
                                sock.write_all(&page[..])?;
                            }
                            c.read.fetch_add(u64::from(req.len), Relaxed);
                            Ok(())
                        }
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            },
            nbd::CMD_WRITE => {
                let mut outcome = store.range(req.offset, req.len);
                let mut left = u64::from(req.len);
                if let Ok(range) = outcome.clone() {
                    for i in range {
                        sock.read_exact(&mut page[..])?;
                        left -= PAGE as u64;
                        if let Err(e) = store.put(i, &page, &mut scratch) {
                            outcome = Err(e);
                            break;
                        }
                    }
                }
                drain(&mut sock, left, &mut page)?;
                outcome.map(|_| {
                    c.written.fetch_add(u64::from(req.len), Relaxed);
                })
            }
            nbd::CMD_FLUSH => Ok(()),
            nbd::CMD_TRIM => store
                .range(req.offset, req.len)
                .and_then(|r| store.drop_pages(r)),
            nbd::CMD_DISC => {
                c.in_flight.fetch_sub(1, Relaxed);
                return Ok(());
            }
            _ => Err(NbdError(nbd::EINVAL)),
        };
        match result {
            // A read's reply went out with its data.
            Ok(()) if req.command == nbd::CMD_READ => {}
            Ok(()) => reply(&mut sock, req.handle, 0)?,
            Err(NbdError(code)) => {
                c.errors.fetch_add(1, Relaxed);
                reply(&mut sock, req.handle, code)?;
            }
        }
        c.in_flight.fetch_sub(1, Relaxed);
    }
}

/// The server's side of the protocol, driven over a real socket pair by a
/// client that speaks NBD as the kernel does. The kernel itself serves as
/// the client in the swap-deadlock scenario of `cargo xtask vm`; here are the
/// requests it never sends: out of range, misaligned, unknown, store full.
#[cfg(test)]
mod tests {
    use super::*;

    struct Client(UnixStream);

    impl Client {
        fn send(&mut self, command: u32, offset: u64, len: u32, payload: &[u8]) {
            let mut b = [0u8; nbd::REQUEST_LEN];
            b[0..4].copy_from_slice(&nbd::REQUEST_MAGIC.to_be_bytes());
            b[4..8].copy_from_slice(&command.to_be_bytes());
            b[8..16].copy_from_slice(&offset.to_le_bytes()); // any handle
            b[16..24].copy_from_slice(&offset.to_be_bytes());
            b[24..28].copy_from_slice(&len.to_be_bytes());
            self.0.write_all(&b).unwrap();
            self.0.write_all(payload).unwrap();
        }

        /// The reply's error code, after checking magic and handle.
        fn reply(&mut self, offset: u64) -> u32 {
            let mut r = [0u8; 16];
            self.0.read_exact(&mut r).unwrap();
            assert_eq!(r[0..4], nbd::REPLY_MAGIC.to_be_bytes());
            assert_eq!(r[8..16], offset.to_le_bytes());
            u32::from_be_bytes(r[4..8].try_into().unwrap())
        }
    }

    fn page_of(byte: u8) -> Vec<u8> {
        let mut p = vec![byte; PAGE];
        p[0] = 0x42; // not all one value
        p
    }

    #[test]
    fn serves_reads_writes_trims_and_refuses_what_it_cannot_serve() {
        // 8 pages; 200 bytes of store: two compressible pages fit, and
        // an incompressible one does not.
        let store = Arc::new(Store::new(8, 200).unwrap());
        let (client, server) = UnixStream::pair().unwrap();
        let served = {
            let store = Arc::clone(&store);
            std::thread::spawn(move || serve_requests(server, &store))
        };
        let mut c = Client(client);
        let two: Vec<u8> = [page_of(1), page_of(2)].concat();

        c.send(nbd::CMD_WRITE, 4096, 8192, &two);
        assert_eq!(c.reply(4096), 0);
        c.send(nbd::CMD_READ, 4096, 8192, &[]);
        assert_eq!(c.reply(4096), 0);
        let mut back = vec![0u8; 8192];
        c.0.read_exact(&mut back).unwrap();
        assert_eq!(back, two);
        // A page never written reads as zeros.
        c.send(nbd::CMD_READ, 0, 4096, &[]);
        assert_eq!(c.reply(0), 0);
        c.0.read_exact(&mut back[..4096]).unwrap();
        assert!(back[..4096].iter().all(|&b| b == 0));

        // Out of range, misaligned, unknown: EINVAL, and a refused write's
        // payload is consumed so that the next request parses.
        c.send(nbd::CMD_READ, 8 * 4096, 4096, &[]);
        assert_eq!(c.reply(8 * 4096), nbd::EINVAL);
        c.send(nbd::CMD_WRITE, 7 * 4096, 8192, &two);
        assert_eq!(c.reply(7 * 4096), nbd::EINVAL);
        c.send(nbd::CMD_WRITE, 100, 4096, &two[..4096]);
        assert_eq!(c.reply(100), nbd::EINVAL);
        c.send(9, 0, 0, &[]);
        assert_eq!(c.reply(0), nbd::EINVAL);

        // Store full: a page of noise does not compress and does not fit.
        let mut noise = vec![0u8; PAGE];
        let mut x = 0x1234_5678_9abc_def0u64;
        for b in &mut noise {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        c.send(nbd::CMD_WRITE, 0, 4096, &noise);
        assert_eq!(c.reply(0), nbd::ENOSPC);
        assert_eq!(store.counters.pages.load(Relaxed), 2);

        c.send(nbd::CMD_FLUSH, 0, 0, &[]);
        assert_eq!(c.reply(0), 0);
        c.send(nbd::CMD_TRIM, 4096, 4096, &[]);
        assert_eq!(c.reply(4096), 0);
        assert_eq!(store.counters.pages.load(Relaxed), 1);

        let counters = &store.counters;
        assert_eq!(counters.written.load(Relaxed), 8192);
        assert_eq!(counters.read.load(Relaxed), 8192 + 4096);
        assert_eq!(counters.errors.load(Relaxed), 5);
        c.send(nbd::CMD_DISC, 0, 0, &[]);
        served.join().unwrap().unwrap();
        assert_eq!(counters.in_flight.load(Relaxed), 0);
    }

    #[test]
    fn a_bad_magic_ends_the_session_with_an_error() {
        let store = Store::new(1, 1 << 20).unwrap();
        let (mut client, server) = UnixStream::pair().unwrap();
        client.write_all(&[0u8; nbd::REQUEST_LEN]).unwrap();
        let e = serve_requests(server, &store).unwrap_err();
        assert!(e.to_string().contains("bad request magic"), "{e}");
    }

    #[test]
    fn bad_options_are_refused_with_the_reason() {
        let args = |a: &[&str]| parse_args(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(args(&["--protect", "all"])
            .err()
            .unwrap()
            .contains("none, lock, harden"));
        assert!(args(&["--size-mib", "x"])
            .err()
            .unwrap()
            .contains("not a number"));
        assert!(args(&["--size-mib"])
            .err()
            .unwrap()
            .contains("needs a value"));
        assert!(args(&["--bogus", "1"])
            .err()
            .unwrap()
            .contains("unknown option"));
        let o = args(&["--protect=lock", "--size-mib", "64"]).unwrap();
        assert_eq!((o.protect, o.size_mib), (Protect::Lock, 64));
        let o = args(&["--protect", "harden-without-realtime"]).unwrap();
        assert_eq!(
            o.protect,
            Protect::Harden {
                io_flusher: true,
                realtime: false
            }
        );
    }
}
