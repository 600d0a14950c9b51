//! What the two swap daemons share (`examples/nbd_swap.rs` over NBD,
//! `examples/ublk_swap.rs` over ublk): the compressed page store, the
//! `--protect` modes, the common flags, the counters line, the stop
//! signals and the clock. Each example includes this file with
//! `#[path = "common/swap_store.rs"] mod swap_store;`; only the transport
//! differs between them.

use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use mlock::daemon::{Hardening, Stage, DEFAULT_REALTIME_PRIORITY, OOM_SCORE_ADJ_MIN};
use mlock::{Config, Flags, Requirement};

pub const PAGE: usize = 4096;
pub const MIB: u64 = 1 << 20;

/// The raw calls beyond the crate and std: the signal mask and
/// `sigwait(3)`, and `CLOCK_MONOTONIC`. Each is one call into libc with
/// plain arguments.
pub mod sys {
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
pub enum Protect {
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
    pub const HARDEN: Protect = Protect::Harden {
        io_flusher: true,
        realtime: true,
    };

    fn parse(value: &str) -> Result<Protect, String> {
        Ok(match value {
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
        })
    }
}

/// The options both daemons take.
pub struct Common {
    pub size_mib: u64,
    pub store_mib: u64,
    pub protect: Protect,
    pub stats_ms: u64,
}

/// A flag's value as a number, or why not.
pub fn number(name: &str, v: &str) -> Result<u64, String> {
    v.parse::<u64>()
        .map_err(|_| format!("{name}: not a number: {v:?}"))
}

/// Parses `args` (`--flag value` or `--flag=value`): the common flags
/// here, every other one through `own(name, value)`, which returns
/// `Ok(false)` for a flag it does not know. `Err("")` asks for the usage
/// (`-h`, `--help`).
pub fn parse_args(
    args: &[String],
    mut own: impl FnMut(&str, String) -> Result<bool, String>,
) -> Result<Common, String> {
    let mut o = Common {
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
        match name {
            "--size-mib" => o.size_mib = number(name, &value)?,
            "--store-mib" => o.store_mib = number(name, &value)?,
            "--stats-ms" => o.stats_ms = number(name, &value)?,
            "--protect" => o.protect = Protect::parse(&value)?,
            other => {
                if !own(other, value)? {
                    return Err(format!("unknown option {other:?}"));
                }
            }
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

/// The `main` of a daemon called `name`: parse, then serve. A bad flag
/// prints the reason and `usage` and exits 2; a failure to serve prints
/// its message (which names the fix) and exits 1.
pub fn main_of<O>(
    name: &str,
    usage: &str,
    parse: impl FnOnce(&[String]) -> Result<O, String>,
    serve: impl FnOnce(&O) -> Result<(), String>,
) -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse(&args) {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("{name}: {e}");
            }
            eprintln!("{usage}");
            return ExitCode::from(2);
        }
    };
    match serve(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Applies `--protect`, and `oom_score_adj` -1000 in every mode (so that
/// the OOM killer cannot end an experiment by killing the device's
/// server). Call it before any thread is spawned, so that every thread
/// inherits IO_FLUSHER and the real-time policy.
pub fn protect(name: &str, mode: Protect) -> Result<(), String> {
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
                println!("{name}: harden: {line}");
            }
        }
    }
    if let Err(e) = mlock::daemon::set_oom_score_adj(OOM_SCORE_ADJ_MIN) {
        eprintln!("{name}: warning: oom_score_adj -1000: {e}");
    }
    println!(
        "{name}: protect={:?} VmLck={} kB oom_score_adj={} io_flusher={} realtime={}",
        mode,
        mlock::locked_bytes().map_or(0, |b| b / 1024),
        mlock::daemon::oom_score_adj().map_or("?".into(), |v| v.to_string()),
        mlock::daemon::is_io_flusher().unwrap_or(false),
        mlock::daemon::is_realtime().unwrap_or(false),
    );
    Ok(())
}

/// The kernel driver behind a daemon's device node, for the message that
/// says why the node cannot be opened and what fixes it.
pub struct Driver {
    /// Its module's name in /sys/module.
    pub module: &'static str,
    /// How to load it.
    pub load: &'static str,
    /// What to do when it is loaded but the node is missing.
    pub no_node: &'static str,
    /// What needs privilege.
    pub needs: &'static str,
}

impl Driver {
    /// Why `path` cannot be opened, with the fix.
    pub fn open_error(&self, path: &str, e: &io::Error) -> String {
        let loaded = std::path::Path::new("/sys/module")
            .join(self.module)
            .exists();
        let fix = match e.raw_os_error() {
            Some(libc::ENOENT | libc::ENXIO | libc::ENODEV) if !loaded => {
                format!("the {} module is not loaded: {}", self.module, self.load)
            }
            Some(libc::ENOENT) => format!("the {} module is loaded: {}", self.module, self.no_node),
            Some(libc::EACCES | libc::EPERM) => format!("run as root ({})", self.needs),
            _ => return format!("cannot open {path}: {e}"),
        };
        format!("cannot open {path}: {e}; {fix}")
    }
}

/// A thread builder with the daemons' small stack (it is locked too).
pub fn thread(name: &str) -> std::thread::Builder {
    std::thread::Builder::new()
        .name(name.into())
        .stack_size(256 << 10)
}

/// Starts the thread that prints `store`'s counters every `every_ms`
/// until `done` is set (none when `every_ms` is 0), and, whenever it
/// changes, which of the process's threads carry IO_FLUSHER and a
/// real-time policy ([`print_threads`]).
pub fn spawn_stats(
    name: &'static str,
    store: &Arc<Store>,
    done: &Arc<AtomicBool>,
    every_ms: u64,
) -> Result<(), String> {
    if every_ms == 0 {
        return Ok(());
    }
    let (store, done) = (Arc::clone(store), Arc::clone(done));
    thread(&format!("{}-stats", name.split('_').next().unwrap_or(name)))
        .spawn(move || {
            let mut last = None;
            while !done.load(Relaxed) {
                store.counters.print(name, "");
                let audit = mlock::daemon::audit_threads().ok();
                if audit != last {
                    if let Some(audit) = &audit {
                        print_threads(name, audit);
                    }
                    last = audit;
                }
                std::thread::sleep(Duration::from_millis(every_ms));
            }
        })
        .map(drop)
        .map_err(|e| format!("spawning the stats thread: {e}"))
}

/// Prints `<name>: threads=N io_flusher=M realtime=K`, and the first
/// thread without each setting by ID and name (`iou-wrk-...` would be one
/// of io_uring's workers), without allocating: the line shows whether
/// threads the kernel starts for the daemon inherit its settings.
pub fn print_threads(name: &str, audit: &mlock::daemon::ThreadAudit) {
    let mut buf = [0u8; 256];
    let mut cursor = io::Cursor::new(&mut buf[..]);
    let _ = write!(
        cursor,
        "{name}: threads={} io_flusher={} realtime={}",
        audit.threads, audit.io_flusher, audit.realtime
    );
    for (what, tid) in [
        ("without-io-flusher", audit.first_without_io_flusher),
        ("not-realtime", audit.first_not_realtime),
    ] {
        if let Some(tid) = tid {
            let mut comm = [0u8; 16];
            let comm = thread_name(tid, &mut comm);
            let _ = write!(cursor, " {what}={tid}:{comm}");
        }
    }
    let _ = writeln!(cursor);
    let n = cursor.position() as usize;
    let _ = io::stdout().lock().write_all(&buf[..n]);
}

/// The name of thread `tid` of this process (`/proc/self/task/<tid>/comm`),
/// read into `buf`; `?` when it cannot be read. std opens a path this
/// short from a stack copy, so nothing is allocated.
fn thread_name(tid: u32, buf: &mut [u8; 16]) -> &str {
    use std::io::Read;
    let mut path = [0u8; 48];
    let mut cursor = io::Cursor::new(&mut path[..]);
    let _ = write!(cursor, "/proc/self/task/{tid}/comm");
    let len = cursor.position() as usize;
    let Ok(path) = std::str::from_utf8(&path[..len]) else {
        return "?";
    };
    let n = std::fs::File::open(path).and_then(|mut f| f.read(&mut buf[..]));
    match n {
        Ok(n) => std::str::from_utf8(&buf[..n]).map_or("?", str::trim_end),
        Err(_) => "?",
    }
}

/// What the daemon reports: everything the kernel sent and got back.
#[derive(Default)]
pub struct Counters {
    pub written: AtomicU64,
    pub read: AtomicU64,
    pub pages: AtomicU64,
    pub compressed: AtomicU64,
    pub in_flight: AtomicU64,
    pub requests: AtomicU64,
    pub errors: AtomicU64,
}

impl Counters {
    /// One line of counters, formatted into `buf` (no allocation: the
    /// stats thread runs while memory is short).
    pub fn line<'a>(&self, name: &str, t_ms: u64, buf: &'a mut [u8; 256]) -> &'a [u8] {
        let mut cursor = io::Cursor::new(&mut buf[..]);
        let _ = writeln!(
            cursor,
            "{name}: t_ms={t_ms} written={} read={} pages={} compressed={} in_flight={} \
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

    pub fn print(&self, name: &str, suffix: &str) {
        let mut buf = [0u8; 256];
        let line = self.line(name, sys::monotonic_ms(), &mut buf);
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

pub struct Store {
    slots: std::sync::Mutex<Slots>,
    /// The device's size in pages (the table's length, which never changes).
    blocks: usize,
    pub counters: Counters,
}

/// Why a request failed, as a positive `errno` value (`EINVAL`, `EIO`,
/// `ENOSPC`): NBD replies carry it as it is, ublk negated.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Errno(pub i32);

impl Slots {
    fn class(len: usize) -> usize {
        (len.max(1) - 1) / SLOT
    }

    /// A slot for `len` bytes: a freed one of its class, or a new one.
    fn alloc(&mut self, len: usize) -> Result<u32, Errno> {
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
            return Err(Errno(libc::ENOSPC));
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
    pub fn new(blocks: usize, capacity: u64) -> Result<Store, String> {
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

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Slots>, Errno> {
        self.slots.lock().map_err(|_| Errno(libc::EIO))
    }

    /// The pages `offset..offset + len` bytes cover, or EINVAL when the
    /// range is not whole pages or not on the device.
    pub fn range(&self, offset: u64, len: u64) -> Result<std::ops::Range<usize>, Errno> {
        let blocks = self.blocks as u64;
        let end = offset.checked_add(len).ok_or(Errno(libc::EINVAL))?;
        if !offset.is_multiple_of(PAGE as u64)
            || !len.is_multiple_of(PAGE as u64)
            || end > blocks * PAGE as u64
        {
            return Err(Errno(libc::EINVAL));
        }
        Ok((offset / PAGE as u64) as usize..(end / PAGE as u64) as usize)
    }

    /// Stores one page, compressed into `scratch` first (at least
    /// [`scratch_len`] bytes). The old copy is released only once the new
    /// one has a slot.
    pub fn put(&self, index: usize, page: &[u8; PAGE], scratch: &mut [u8]) -> Result<(), Errno> {
        let kept: &[u8] = match lz4_flex::block::compress_into(page, scratch) {
            Ok(n) if n < PAGE => &scratch[..n],
            _ => page,
        };
        let mut slots = self.lock()?;
        let old = *slots.table.get(index).ok_or(Errno(libc::EINVAL))?;
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
    pub fn get(&self, index: usize, page: &mut [u8; PAGE]) -> Result<(), Errno> {
        let slots = self.lock()?;
        let e = *slots.table.get(index).ok_or(Errno(libc::EINVAL))?;
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
            _ => Err(Errno(libc::EIO)),
        }
    }

    /// Forgets the pages in `range` (trim, discard, write zeroes: a page
    /// never written reads as zeros).
    pub fn drop_pages(&self, range: std::ops::Range<usize>) -> Result<(), Errno> {
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

/// The size of the scratch buffer [`Store::put`] compresses into.
pub fn scratch_len() -> usize {
    lz4_flex::block::get_maximum_output_size(PAGE)
}

/// A page of noise: it does not compress, so it fills a store fast.
#[cfg(test)]
pub fn noise_page() -> Vec<u8> {
    let mut noise = vec![0u8; PAGE];
    let mut x = 0x1234_5678_9abc_def0u64;
    for b in &mut noise {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    noise
}

/// A page that compresses well and is not all one value.
#[cfg(test)]
pub fn page_of(byte: u8) -> Vec<u8> {
    let mut p = vec![byte; PAGE];
    p[0] = 0x42;
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Result<Common, String> {
        let a: Vec<String> = a.iter().map(|s| s.to_string()).collect();
        parse_args(&a, |name, _| Ok(name == "--own"))
    }

    #[test]
    fn bad_options_are_refused_with_the_reason() {
        let err = |a: &[&str]| args(a).err().unwrap();
        assert!(err(&["--protect", "all"]).contains("none, lock, harden"));
        assert!(err(&["--size-mib", "x"]).contains("not a number"));
        assert!(err(&["--size-mib"]).contains("needs a value"));
        assert!(err(&["--bogus", "1"]).contains("unknown option"));
        assert!(err(&["--size-mib", "0"]).contains("between 1 and"));
        assert!(err(&["--store-mib", "0"]).contains("at least 1"));
        assert_eq!(err(&["--help"]), "");
        let o = args(&["--protect=lock", "--size-mib", "64", "--own", "x"]).unwrap();
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

    #[test]
    fn the_counters_line_names_the_daemon() {
        let c = Counters::default();
        c.written.store(8192, Relaxed);
        let mut buf = [0u8; 256];
        let line = std::str::from_utf8(c.line("x_swap", 7, &mut buf)).unwrap();
        assert_eq!(
            line,
            "x_swap: t_ms=7 written=8192 read=0 pages=0 compressed=0 in_flight=0 \
             requests=0 errors=0\n"
        );
    }
}
