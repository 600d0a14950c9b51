//! A userspace swap device served through the kernel's ublk driver: the
//! twin of `examples/nbd_swap.rs` over a transport built for it, with the
//! same compressed page store (`examples/common/swap_store.rs`), the same
//! `--protect` modes and the same counters line.
//!
//! ```text
//! ublk_swap [--device-id auto|N] [--queue-depth 64] [--size-mib 512]
//!           [--store-mib 64] [--protect none|lock|harden] [--stats-ms 500]
//! ```
//!
//! ublk (Linux 6.0 and later, `CONFIG_BLK_DEV_UBLK`, module `ublk_drv`)
//! is driven through io_uring only: control commands are
//! `IORING_OP_URING_CMD`s in 128-byte SQEs on `/dev/ublk-control`, and
//! requests are fetched and completed by `URING_CMD`s on `/dev/ublkcN`.
//! Set-up, as ublksrv does it:
//!
//! 1. `UBLK_U_CMD_ADD_DEV`: one queue of `--queue-depth` tags, each with a
//!    buffer of [`IO_BUF_BYTES`];
//! 2. `UBLK_U_CMD_SET_PARAMS`: 4096-byte logical and physical blocks,
//!    `--size-mib` of sectors, discard and write-zeroes;
//! 3. the queue thread opens `/dev/ublkcN`, maps its array of request
//!    descriptors and queues `UBLK_U_IO_FETCH_REQ` for every tag;
//! 4. only then `UBLK_U_CMD_START_DEV` with this process's id: the kernel
//!    waits for every tag's fetch before it adds the disk `/dev/ublkbN`,
//!    and reads its partition table through the queue thread.
//!
//! Each completed fetch is a request: the thread reads its descriptor,
//! serves it against the store with the tag's buffer (read, write, flush,
//! discard, write zeroes; anything else gets `-EOPNOTSUPP`) and sends the
//! result back with `UBLK_U_IO_COMMIT_AND_FETCH_REQ`, which also fetches
//! the tag's next request. Every buffer is allocated before the first
//! request: serving never allocates.
//!
//! `SIGTERM` or `SIGINT`: `UBLK_U_CMD_STOP_DEV` (the kernel removes the
//! disk and ends the pending fetches with `UBLK_IO_RES_ABORT`), then
//! `UBLK_U_CMD_DEL_DEV`. Run `swapoff` before you stop it.
//!
//! What a request the kernel never sends gets (out of the device, or not
//! whole 4096-byte pages, which the block size rules out): `-EINVAL`; a
//! write the full store cannot take: `-ENOSPC`; a page that fails to
//! decompress: `-EIO`.
//!
//! The ioctl-encoded command numbers (`UBLK_U_*`) are used throughout:
//! every kernel since 6.0 accepts them, and a kernel built without
//! `CONFIG_BLKDEV_UBLK_LEGACY_OPCODES` accepts nothing else.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types, IoUring};

#[path = "common/swap_store.rs"]
mod swap_store;
use swap_store::{sys::block_stop_signals, sys::wait_for_stop, Errno, Store, MIB, PAGE};

const NAME: &str = "ublk_swap";

const USAGE: &str = "usage: ublk_swap [--device-id auto|N] [--queue-depth 64] [--size-mib 512] \
                     [--store-mib 64] [--protect none|lock|harden] [--stats-ms 500]";

const CONTROL: &str = "/dev/ublk-control";

/// Each tag's buffer, and so the largest request (`max_sectors`): 128 KiB,
/// a quarter of ublksrv's 512 KiB, because every buffer is locked with
/// the rest of the daemon, and 64 tags of 512 KiB would be 32 MiB of a
/// 256 MiB test machine.
const IO_BUF_BYTES: usize = 128 << 10;
const IO_BUF_PAGES: usize = IO_BUF_BYTES / PAGE;

/// How long a control command may take (`START_DEV` waits for the queue
/// and reads the partition table through it) before the daemon gives up.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(30);

/// What `include/uapi/linux/ublk_cmd.h` defines, written out in Rust
/// (the header's names, in `CamelCase` for the structs). Only what this
/// daemon uses; each size is checked against the header's at compile time.
mod ublk {
    /// `_IOWR('u', nr, size)` in the generic ioctl encoding of
    /// `include/uapi/asm-generic/ioctl.h`, which x86_64, aarch64 and
    /// riscv64 use: direction (read | write = 3) in bits 30-31, the size
    /// in bits 16-29, the type in bits 8-15, the number in bits 0-7.
    pub const fn iowr(nr: u8, size: usize) -> u32 {
        (3 << 30) | ((size as u32) << 16) | ((b'u' as u32) << 8) | nr as u32
    }

    const CTRL: usize = size_of::<CtrlCmd>();
    const IO: usize = size_of::<IoCmd>();

    // Control commands (`UBLK_CMD_*` numbers, `struct ublksrv_ctrl_cmd`).
    pub const U_CMD_ADD_DEV: u32 = iowr(0x04, CTRL);
    pub const U_CMD_DEL_DEV: u32 = iowr(0x05, CTRL);
    pub const U_CMD_START_DEV: u32 = iowr(0x06, CTRL);
    pub const U_CMD_STOP_DEV: u32 = iowr(0x07, CTRL);
    pub const U_CMD_SET_PARAMS: u32 = iowr(0x08, CTRL);
    // I/O commands (`UBLK_IO_*` numbers, `struct ublksrv_io_cmd`).
    pub const U_IO_FETCH_REQ: u32 = iowr(0x20, IO);
    pub const U_IO_COMMIT_AND_FETCH_REQ: u32 = iowr(0x21, IO);

    /// `UBLK_IO_RES_ABORT` (`-ENODEV`): the device is stopping; the tag is
    /// not fetched again.
    pub const IO_RES_ABORT: i32 = -libc::ENODEV;

    pub const F_CMD_IOCTL_ENCODE: u64 = 1 << 6;

    pub const IO_OP_READ: u8 = 0;
    pub const IO_OP_WRITE: u8 = 1;
    pub const IO_OP_FLUSH: u8 = 2;
    pub const IO_OP_DISCARD: u8 = 3;
    pub const IO_OP_WRITE_ZEROES: u8 = 5;

    pub const PARAM_TYPE_BASIC: u32 = 1 << 0;
    pub const PARAM_TYPE_DISCARD: u32 = 1 << 1;

    /// `UBLK_MAX_QUEUE_DEPTH`.
    pub const MAX_QUEUE_DEPTH: u16 = 4096;

    /// `fields` one after the other (a `repr(C)` struct without padding,
    /// byte for byte), then zeros up to `N`.
    fn concat<const N: usize>(fields: &[&[u8]]) -> [u8; N] {
        let mut b = [0u8; N];
        let mut at = 0;
        for f in fields {
            b[at..at + f.len()].copy_from_slice(f);
            at += f.len();
        }
        b
    }

    /// `struct ublksrv_ctrl_cmd`: the first 32 of the 80 command bytes of
    /// a 128-byte SQE on `/dev/ublk-control`.
    #[repr(C)]
    #[derive(Clone, Copy, Default, Debug, PartialEq)]
    pub struct CtrlCmd {
        pub dev_id: u32,
        /// -1 (`u16::MAX`): not a queue's command.
        pub queue_id: u16,
        pub len: u16,
        pub addr: u64,
        pub data: [u64; 1],
        pub dev_path_len: u16,
        pub pad: u16,
        pub reserved: u32,
    }

    impl CtrlCmd {
        /// The bytes of the SQE's command area, in the order of the
        /// struct (native endianness, as the kernel reads it).
        pub fn encode(&self) -> [u8; 80] {
            let fields: [&[u8]; 8] = [
                &self.dev_id.to_ne_bytes(),
                &self.queue_id.to_ne_bytes(),
                &self.len.to_ne_bytes(),
                &self.addr.to_ne_bytes(),
                &self.data[0].to_ne_bytes(),
                &self.dev_path_len.to_ne_bytes(),
                &self.pad.to_ne_bytes(),
                &self.reserved.to_ne_bytes(),
            ];
            concat(&fields)
        }
    }

    /// `struct ublksrv_ctrl_dev_info`: what `ADD_DEV` reads, and writes
    /// back with the device id the kernel chose.
    #[repr(C)]
    #[derive(Clone, Copy, Default, Debug)]
    pub struct DevInfo {
        pub nr_hw_queues: u16,
        pub queue_depth: u16,
        pub state: u16,
        pub pad0: u16,
        pub max_io_buf_bytes: u32,
        pub dev_id: u32,
        pub ublksrv_pid: i32,
        pub pad1: u32,
        pub flags: u64,
        pub ublksrv_flags: u64,
        pub owner_uid: u32,
        pub owner_gid: u32,
        pub reserved1: u64,
        pub reserved2: u64,
    }

    /// `struct ublksrv_io_desc`: one request, in the array the kernel
    /// shares through `mmap` of `/dev/ublkcN`, indexed by tag.
    #[repr(C)]
    #[derive(Clone, Copy, Default, Debug)]
    pub struct IoDesc {
        /// The operation in bits 0-7, flags above.
        pub op_flags: u32,
        /// A union with `nr_zones`, which only zoned devices use.
        pub nr_sectors: u32,
        pub start_sector: u64,
        pub addr: u64,
    }

    impl IoDesc {
        pub fn op(&self) -> u8 {
            self.op_flags as u8
        }
    }

    /// `struct ublksrv_io_cmd`: the 16 command bytes of a 64-byte SQE on
    /// `/dev/ublkcN`.
    #[repr(C)]
    #[derive(Clone, Copy, Default, Debug, PartialEq)]
    pub struct IoCmd {
        pub q_id: u16,
        pub tag: u16,
        /// For a commit: bytes done, or -errno.
        pub result: i32,
        /// The tag's buffer (a union with `zone_append_lba`).
        pub addr: u64,
    }

    impl IoCmd {
        pub fn encode(&self) -> [u8; 16] {
            let fields: [&[u8]; 4] = [
                &self.q_id.to_ne_bytes(),
                &self.tag.to_ne_bytes(),
                &self.result.to_ne_bytes(),
                &self.addr.to_ne_bytes(),
            ];
            concat(&fields)
        }
    }

    /// `struct ublk_param_basic`.
    #[repr(C)]
    #[derive(Clone, Copy, Default, Debug)]
    pub struct ParamBasic {
        pub attrs: u32,
        pub logical_bs_shift: u8,
        pub physical_bs_shift: u8,
        pub io_opt_shift: u8,
        pub io_min_shift: u8,
        pub max_sectors: u32,
        pub chunk_sectors: u32,
        pub dev_sectors: u64,
        pub virt_boundary_mask: u64,
    }

    /// `struct ublk_param_discard`.
    #[repr(C)]
    #[derive(Clone, Copy, Default, Debug)]
    pub struct ParamDiscard {
        pub discard_alignment: u32,
        pub discard_granularity: u32,
        pub max_discard_sectors: u32,
        pub max_write_zeroes_sectors: u32,
        pub max_discard_segments: u16,
        pub reserved0: u16,
    }

    /// `struct ublk_param_devt` (read-only: the kernel fills it).
    #[repr(C)]
    #[derive(Clone, Copy, Default, Debug)]
    pub struct ParamDevt {
        pub char_major: u32,
        pub char_minor: u32,
        pub disk_major: u32,
        pub disk_minor: u32,
    }

    /// `struct ublk_param_zoned`.
    #[repr(C)]
    #[derive(Clone, Copy, Default, Debug)]
    pub struct ParamZoned {
        pub max_open_zones: u32,
        pub max_active_zones: u32,
        pub max_zone_append_sectors: u32,
        pub reserved: [u8; 20],
    }

    /// `struct ublk_params` as far as `zoned`, the layout of Linux 6.12.
    /// Later kernels append more (`dma`, `seg`, `integrity`); `len` tells
    /// the kernel how much is here, and it leaves the rest unset.
    #[repr(C)]
    #[derive(Clone, Copy, Default, Debug)]
    pub struct Params {
        pub len: u32,
        pub types: u32,
        pub basic: ParamBasic,
        pub discard: ParamDiscard,
        pub devt: ParamDevt,
        pub zoned: ParamZoned,
    }

    // The header's sizes: a layout that drifted from it fails the build.
    const _: () = assert!(size_of::<CtrlCmd>() == 32);
    const _: () = assert!(size_of::<DevInfo>() == 64);
    const _: () = assert!(size_of::<IoDesc>() == 24);
    const _: () = assert!(size_of::<IoCmd>() == 16);
    const _: () = assert!(size_of::<ParamBasic>() == 32);
    const _: () = assert!(size_of::<ParamDiscard>() == 20);
    const _: () = assert!(size_of::<ParamDevt>() == 16);
    const _: () = assert!(size_of::<ParamZoned>() == 32);
    // 108 bytes of fields, padded to the alignment of `basic`'s `u64`s:
    // 112 where a `u64` is 8-aligned, 108 on i686, where it is 4-aligned
    // (in the kernel's own layout too).
    const _: () = assert!(size_of::<Params>() == 108usize.next_multiple_of(align_of::<u64>()));
}

use ublk::{CtrlCmd, DevInfo, IoCmd, IoDesc, Params};

struct Options {
    /// `u32::MAX`: the kernel picks.
    device_id: u32,
    queue_depth: u16,
    common: swap_store::Common,
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let (mut device_id, mut queue_depth) = (u32::MAX, 64);
    let common = swap_store::parse_args(args, |name, value| {
        match name {
            "--device-id" if value == "auto" => device_id = u32::MAX,
            "--device-id" => {
                device_id = swap_store::number(name, &value)?
                    .try_into()
                    .ok()
                    .filter(|&id| id < i32::MAX as u32)
                    .ok_or("--device-id must be `auto` or below 2147483647")?
            }
            "--queue-depth" => {
                queue_depth = swap_store::number(name, &value)?
                    .try_into()
                    .ok()
                    .filter(|&d| (1..=ublk::MAX_QUEUE_DEPTH).contains(&d))
                    .ok_or("--queue-depth must be between 1 and 4096")?
            }
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(Options {
        device_id,
        queue_depth,
        common,
    })
}

fn main() -> ExitCode {
    swap_store::main_of(NAME, USAGE, parse_args, serve)
}

/// The driver behind `/dev/ublk-control`, for the message when it cannot
/// be opened.
const DRIVER: swap_store::Driver = swap_store::Driver {
    module: "ublk_drv",
    load: "run `modprobe ublk_drv` as root (ublk needs Linux 6.0 or later built with \
           CONFIG_BLK_DEV_UBLK)",
    no_node: "mount devtmpfs on /dev, or let udev create the node",
    needs: "adding a ublk device needs CAP_SYS_ADMIN",
};

/// Why an io_uring could not be set up, with the fix.
fn ring_error(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ENOSYS | libc::EPERM | libc::EACCES) => format!(
            "io_uring_setup: {e}; io_uring is refused here, and ublk works only through it: \
             check `sysctl kernel.io_uring_disabled` (0 allows it) and any seccomp filter \
             (container runtimes often block io_uring)"
        ),
        Some(libc::ENOMEM) => format!(
            "io_uring_setup: {e}; kernels before 5.12 charge rings to RLIMIT_MEMLOCK: raise it"
        ),
        _ => format!("io_uring_setup: {e}"),
    }
}

/// Why a control command failed, with the fix where there is one.
fn command_error(what: &str, e: &io::Error) -> String {
    let fix = match e.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => "; run as root (needs CAP_SYS_ADMIN)",
        Some(libc::EEXIST) => "; that --device-id is taken: pick another, or `auto`",
        Some(libc::EOPNOTSUPP | libc::EINVAL) => {
            "; does this kernel's ublk_drv take ioctl-encoded commands (6.0 or later)?"
        }
        _ => "",
    };
    format!("{what}: {e}{fix}")
}

/// `/dev/ublk-control` and a ring of 128-byte SQEs for its commands.
struct Control {
    file: File,
    ring: IoUring<squeue::Entry128, cqueue::Entry>,
    next: u64,
}

impl Control {
    fn open(path: &str) -> Result<File, String> {
        File::options()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| DRIVER.open_error(path, &e))
    }

    fn new(file: File) -> Result<Control, String> {
        let ring = IoUring::<squeue::Entry128, cqueue::Entry>::builder()
            .build(4)
            .map_err(|e| ring_error(&e))?;
        Ok(Control {
            file,
            ring,
            next: 0,
        })
    }

    /// Sends one control command for device `dev_id` and waits for its
    /// result. `payload` is the buffer `addr` points to (dev info,
    /// params); a command with one is waited for without a limit, since
    /// the kernel may write it until it completes. Others give up after
    /// `CONTROL_TIMEOUT`.
    fn command<T>(
        &mut self,
        op: u32,
        dev_id: u32,
        data: u64,
        payload: Option<&mut T>,
    ) -> io::Result<i32> {
        let (addr, len, limit) = match payload {
            Some(p) => (p as *mut T as u64, size_of::<T>() as u16, None),
            None => (0, 0, Some(Instant::now() + CONTROL_TIMEOUT)),
        };
        let cmd = CtrlCmd {
            dev_id,
            queue_id: u16::MAX,
            len,
            addr,
            data: [data],
            ..CtrlCmd::default()
        };
        self.next += 1;
        let id = self.next;
        let sqe = opcode::UringCmd80::new(types::Fd(self.file.as_raw_fd()), op)
            .cmd(cmd.encode())
            .build()
            .user_data(id);
        // SAFETY: the SQE's only pointer is `addr`, to `payload`, which the
        // caller keeps borrowed for this whole call; a command with a
        // payload is waited for until it completes (no time limit), so
        // the kernel is done with the buffer before the borrow ends. The
        // descriptor is `self.file`, open for as long as the ring.
        unsafe { self.ring.submission().push(&sqe) }
            .map_err(|_| io::Error::other("the control ring is full"))?;
        self.ring.submit()?;
        loop {
            // Completions of earlier commands that timed out are skipped.
            if let Some(cqe) = self.ring.completion().find(|c| c.user_data() == id) {
                return match cqe.result() {
                    r if r < 0 => Err(io::Error::from_raw_os_error(-r)),
                    r => Ok(r),
                };
            }
            let wait = match limit {
                None => self.ring.submit_and_wait(1),
                Some(at) => {
                    let left = at.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("no answer in {} s", CONTROL_TIMEOUT.as_secs()),
                        ));
                    }
                    let ts = types::Timespec::from(left);
                    let args = types::SubmitArgs::new().timespec(&ts);
                    self.ring.submitter().submit_with_args(1, &args)
                }
            };
            match wait {
                Err(e) if !matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR)) => {
                    return Err(e)
                }
                _ => {}
            }
        }
    }
}

/// One page of a tag's buffer, page-aligned as ublksrv aligns its
/// buffers.
#[derive(Clone, Copy)]
#[repr(C, align(4096))]
struct Page([u8; PAGE]);

/// Serves one request against `store`, through `buf` (the tag's buffer,
/// which the kernel filled for a write and copies out after a read).
/// Returns what the commit carries: the bytes done, or -errno.
fn handle(store: &Store, iod: &IoDesc, buf: &mut [Page], scratch: &mut [u8]) -> i32 {
    let c = &store.counters;
    c.requests.fetch_add(1, Relaxed);
    let offset = iod.start_sector.checked_mul(512);
    let len = u64::from(iod.nr_sectors) * 512;
    let range = || {
        offset
            .ok_or(Errno(libc::EINVAL))
            .and_then(|o| store.range(o, len))
    };
    let result = match iod.op() {
        ublk::IO_OP_READ | ublk::IO_OP_WRITE => range().and_then(|r| {
            let pages = buf.get_mut(..r.len()).ok_or(Errno(libc::EINVAL))?;
            for (i, page) in r.zip(pages) {
                if iod.op() == ublk::IO_OP_READ {
                    store.get(i, &mut page.0)?;
                } else {
                    store.put(i, &page.0, scratch)?;
                }
            }
            let counter = if iod.op() == ublk::IO_OP_READ {
                &c.read
            } else {
                &c.written
            };
            counter.fetch_add(len, Relaxed);
            // At most IO_BUF_BYTES.
            Ok(len as i32)
        }),
        ublk::IO_OP_FLUSH => Ok(0),
        ublk::IO_OP_DISCARD | ublk::IO_OP_WRITE_ZEROES => {
            range().and_then(|r| store.drop_pages(r)).map(|()| 0)
        }
        _ => Err(Errno(libc::EOPNOTSUPP)),
    };
    result.unwrap_or_else(|Errno(e)| {
        c.errors.fetch_add(1, Relaxed);
        -e
    })
}

/// The request descriptors of queue 0, mapped read-only from
/// `/dev/ublkcN`.
struct Descs {
    base: *const IoDesc,
    len: usize,
    depth: u16,
}

impl Descs {
    fn map(dev: RawFd, depth: u16) -> io::Result<Descs> {
        // The driver's size for queue 0's array, at offset 0
        // (UBLKSRV_CMD_BUF_OFFSET): the descriptors rounded up to pages.
        let len = (usize::from(depth) * size_of::<IoDesc>()).next_multiple_of(PAGE);
        // SAFETY: a new shared read-only mapping of the device at offset 0
        // with the length the driver requires (it refuses any other);
        // nothing else in the process is mapped or changed by it.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                dev,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Descs {
            base: base.cast(),
            len,
            depth,
        })
    }

    /// The descriptor of `tag`, as the kernel wrote it before completing
    /// the tag's fetch.
    fn get(&self, tag: u16) -> IoDesc {
        assert!(tag < self.depth);
        // SAFETY: `tag < depth`, so the entry lies inside the live mapping
        // (`depth` entries of 24 bytes, page-aligned base, so each is
        // 8-aligned). The kernel writes an entry only while the tag is
        // with it, and the tag's completion came first: this copy sees a
        // whole descriptor. Volatile, because the kernel writes the page.
        unsafe { self.base.add(usize::from(tag)).read_volatile() }
    }
}

impl Drop for Descs {
    fn drop(&mut self) {
        // SAFETY: `base` and `len` are the mapping made in `map`, unmapped
        // once, here; no reference into it outlives `get`.
        unsafe { libc::munmap(self.base.cast_mut().cast(), self.len) };
    }
}

/// The queue: `/dev/ublkcN`, its descriptors, a ring of 64-byte SQEs, and
/// every tag's buffer. Field order is drop order: the ring goes first, so
/// nothing in flight can name a buffer or the file after they are freed.
struct Queue {
    ring: IoUring,
    descs: Descs,
    bufs: Vec<Page>,
    scratch: Vec<u8>,
    /// `/dev/ublkcN`, held open for the ring (fixed file 0) and the
    /// mapping; closing it lets `DEL_DEV` complete.
    _dev: File,
}

impl Queue {
    /// Opens `/dev/ublkc{id}` (waiting up to 5 s for devtmpfs or udev to
    /// create it), maps the descriptors, allocates and touches every
    /// buffer, and sets up the ring with the device as fixed file 0.
    fn new(id: u32, depth: u16) -> Result<Queue, String> {
        let path = format!("/dev/ublkc{id}");
        let deadline = Instant::now() + Duration::from_secs(5);
        let dev = loop {
            match File::options().read(true).write(true).open(&path) {
                Ok(f) => break f,
                Err(e) if e.kind() == io::ErrorKind::NotFound && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => return Err(format!("cannot open {path}: {e}")),
            }
        };
        let descs = Descs::map(dev.as_raw_fd(), depth)
            .map_err(|e| format!("mapping the descriptors of {path}: {e}"))?;
        let pages = usize::from(depth) * IO_BUF_PAGES;
        let mut bufs = Vec::new();
        bufs.try_reserve_exact(pages)
            .map_err(|e| format!("allocating {depth} buffers of {IO_BUF_BYTES} bytes: {e}"))?;
        // Written, so faulted in, before the first request.
        bufs.resize(pages, Page([0; PAGE]));
        let ring = IoUring::builder()
            .build(u32::from(depth))
            .map_err(|e| ring_error(&e))?;
        ring.submitter()
            .register_files(&[dev.as_raw_fd()])
            .map_err(|e| format!("registering {path} with the ring: {e}"))?;
        Ok(Queue {
            ring,
            descs,
            bufs,
            scratch: vec![0; swap_store::scratch_len()],
            _dev: dev,
        })
    }

    /// Queues `op` (fetch, or commit `result` and fetch) for `tag`.
    fn push(&mut self, op: u32, tag: u16, result: i32) -> io::Result<()> {
        let buf = &mut self.bufs[usize::from(tag) * IO_BUF_PAGES..][..IO_BUF_PAGES];
        let cmd = IoCmd {
            q_id: 0,
            tag,
            result,
            addr: buf.as_mut_ptr() as u64,
        };
        let sqe = opcode::UringCmd16::new(types::Fixed(0), op)
            .cmd(cmd.encode())
            .build()
            .user_data(u64::from(tag));
        // SAFETY: `addr` is the tag's own IO_BUF_BYTES of `bufs`, which
        // lives as long as the ring (the ring is dropped first). The
        // kernel writes it (a write's data) before completing this
        // command and reads it (a read's data) after the next commit;
        // this thread touches it only between the two, in `handle`.
        // Fixed file 0 is `dev`, registered in `new`.
        unsafe { self.ring.submission().push(&sqe) }
            .map_err(|_| io::Error::other("the queue ring is full"))
    }

    /// Fetches every tag; returns once the kernel has them all, so that
    /// `START_DEV` can follow.
    fn fetch_all(&mut self) -> io::Result<()> {
        for tag in 0..self.descs.depth {
            self.push(ublk::U_IO_FETCH_REQ, tag, 0)?;
        }
        self.ring.submit().map(drop)
    }

    /// Serves requests until every tag is aborted (the device stopped),
    /// or `stop` has been set for two seconds without that.
    fn serve(&mut self, store: &Store, stop: &AtomicBool) -> io::Result<()> {
        let mut live = self.descs.depth;
        let mut quiet = 0;
        let c = &store.counters;
        while live > 0 {
            let ts = types::Timespec::new().sec(1);
            let args = types::SubmitArgs::new().timespec(&ts);
            match self.ring.submitter().submit_with_args(1, &args) {
                Ok(_) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR)) => {}
                Err(e) => return Err(e),
            }
            let mut any = false;
            loop {
                // One at a time: a commit is queued before the next is read.
                let Some(cqe) = self.ring.completion().next() else {
                    break;
                };
                any = true;
                let tag = cqe.user_data() as u16;
                match cqe.result() {
                    0 => {
                        c.in_flight.fetch_add(1, Relaxed);
                        let iod = self.descs.get(tag);
                        let buf = &mut self.bufs[usize::from(tag) * IO_BUF_PAGES..][..IO_BUF_PAGES];
                        let result = handle(store, &iod, buf, &mut self.scratch);
                        self.push(ublk::U_IO_COMMIT_AND_FETCH_REQ, tag, result)?;
                        c.in_flight.fetch_sub(1, Relaxed);
                    }
                    ublk::IO_RES_ABORT => live -= 1,
                    r => {
                        return Err(io::Error::other(format!(
                            "tag {tag}: the kernel refused the command: {}",
                            io::Error::from_raw_os_error(-r)
                        )))
                    }
                }
            }
            quiet = if any || !stop.load(Relaxed) {
                0
            } else {
                quiet + 1
            };
            if quiet > 2 {
                break;
            }
        }
        Ok(())
    }
}

/// Raises SIGTERM when the queue thread ends before it was told to stop,
/// so that the main thread (in `sigwait`) stops and deletes the device.
struct WakeMain<'a>(&'a AtomicBool);

impl Drop for WakeMain<'_> {
    fn drop(&mut self) {
        if !self.0.load(Relaxed) {
            // SAFETY: kill(2) on this process with a signal every thread
            // blocks; it touches no memory.
            unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
        }
    }
}

fn serve(o: &Options) -> Result<(), String> {
    // Before any thread exists, so that all of them inherit both the
    // blocked signals and IO_FLUSHER.
    block_stop_signals();
    let control = Control::open(CONTROL)?;
    let c = &o.common;
    swap_store::protect(NAME, c.protect)?;
    let mut control = Control::new(control)?;
    let blocks = c.size_mib * MIB / PAGE as u64;
    let store = Arc::new(Store::new(blocks as usize, c.store_mib * MIB)?);

    let mut info = DevInfo {
        nr_hw_queues: 1,
        queue_depth: o.queue_depth,
        max_io_buf_bytes: IO_BUF_BYTES as u32,
        dev_id: o.device_id,
        ublksrv_pid: std::process::id() as i32,
        flags: ublk::F_CMD_IOCTL_ENCODE,
        ..DevInfo::default()
    };
    control
        .command(ublk::U_CMD_ADD_DEV, o.device_id, 0, Some(&mut info))
        .map_err(|e| command_error("UBLK_U_CMD_ADD_DEV", &e))?;
    let id = info.dev_id;
    println!(
        "{NAME}: added ublk device {id} (queue depth {}, {} KiB buffers)",
        info.queue_depth,
        info.max_io_buf_bytes >> 10
    );
    let result = serve_device(o, &mut control, id, info.queue_depth, &store);
    // Whatever happened, the device goes: a stopped device that is not
    // deleted keeps its id.
    let deleted = control
        .command::<()>(ublk::U_CMD_DEL_DEV, id, 0, None)
        .map_err(|e| command_error("UBLK_U_CMD_DEL_DEV", &e));
    store.counters.print(NAME, " final");
    result.and(deleted.map(drop))
}

/// From `SET_PARAMS` to `STOP_DEV`: the device `id` exists, and is
/// deleted by the caller whatever this returns.
fn serve_device(
    o: &Options,
    control: &mut Control,
    id: u32,
    depth: u16,
    store: &Arc<Store>,
) -> Result<(), String> {
    let c = &o.common;
    let sectors = c.size_mib * MIB / 512;
    let mut params = Params {
        len: size_of::<Params>() as u32,
        types: ublk::PARAM_TYPE_BASIC | ublk::PARAM_TYPE_DISCARD,
        basic: ublk::ParamBasic {
            logical_bs_shift: 12,
            physical_bs_shift: 12,
            io_opt_shift: 12,
            io_min_shift: 12,
            max_sectors: (IO_BUF_BYTES / 512) as u32,
            dev_sectors: sectors,
            ..Default::default()
        },
        discard: ublk::ParamDiscard {
            discard_granularity: PAGE as u32,
            max_discard_sectors: u32::MAX >> 9,
            max_write_zeroes_sectors: u32::MAX >> 9,
            max_discard_segments: 1,
            ..Default::default()
        },
        ..Default::default()
    };
    control
        .command(ublk::U_CMD_SET_PARAMS, id, 0, Some(&mut params))
        .map_err(|e| command_error("UBLK_U_CMD_SET_PARAMS", &e))?;

    // The queue thread opens the device and fetches every tag; START_DEV
    // waits for those fetches, so it is sent only once they are queued.
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<(), String>>(1);
    let queue = {
        let (store, stop) = (Arc::clone(store), Arc::clone(&stop));
        swap_store::thread("ublk-queue")
            .spawn(move || -> Result<(), String> {
                let _wake = WakeMain(&stop);
                let mut q = match Queue::new(id, depth) {
                    Ok(q) => q,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return Ok(());
                    }
                };
                let fetched = q
                    .fetch_all()
                    .map_err(|e| format!("UBLK_U_IO_FETCH_REQ: {e}"));
                let _ = ready_tx.send(fetched.clone());
                fetched?;
                drop(ready_tx);
                q.serve(&store, &stop).map_err(|e| format!("serving: {e}"))
            })
            .map_err(|e| format!("spawning the queue thread: {e}"))?
    };
    let finish = |queue: std::thread::JoinHandle<Result<(), String>>| {
        stop.store(true, Relaxed);
        queue
            .join()
            .unwrap_or_else(|_| Err("the queue thread panicked".into()))
    };
    let started = match ready_rx.recv() {
        Ok(Ok(())) => control
            .command::<()>(
                ublk::U_CMD_START_DEV,
                id,
                u64::from(std::process::id()),
                None,
            )
            .map_err(|e| command_error("UBLK_U_CMD_START_DEV", &e)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("the queue thread ended before it was ready".into()),
    };
    if let Err(e) = started {
        // A device never started is stopped all the same, which ends the
        // queued fetches.
        let _ = control.command::<()>(ublk::U_CMD_STOP_DEV, id, 0, None);
        let _ = finish(queue);
        return Err(e);
    }

    let done = Arc::new(AtomicBool::new(false));
    println!(
        "{NAME}: serving /dev/ublkb{id} ({} MiB, store up to {} MiB)",
        c.size_mib, c.store_mib
    );
    swap_store::spawn_stats(NAME, store, &done, c.stats_ms)?;
    let signal = wait_for_stop();
    println!("{NAME}: signal {signal}: stopping /dev/ublkb{id}");
    done.store(true, Relaxed);
    let stopped = control
        .command::<()>(ublk::U_CMD_STOP_DEV, id, 0, None)
        .map_err(|e| command_error("UBLK_U_CMD_STOP_DEV", &e));
    let served = finish(queue);
    served.and(stopped.map(drop))
}

/// The protocol as far as it runs without the driver: the layout and
/// command numbers against the header, the request handling against the
/// store (the kernel never sends the misaligned, out-of-range or unknown
/// requests tried here), the options, and what the daemon says on a
/// machine without ublk.
#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::offset_of;
    use swap_store::{noise_page, page_of};

    #[test]
    fn the_layouts_match_the_header() {
        assert_eq!(offset_of!(CtrlCmd, addr), 8);
        assert_eq!(offset_of!(CtrlCmd, data), 16);
        assert_eq!(offset_of!(CtrlCmd, dev_path_len), 24);
        assert_eq!(offset_of!(DevInfo, max_io_buf_bytes), 8);
        assert_eq!(offset_of!(DevInfo, ublksrv_pid), 16);
        assert_eq!(offset_of!(DevInfo, flags), 24);
        assert_eq!(offset_of!(DevInfo, owner_uid), 40);
        assert_eq!(offset_of!(IoDesc, start_sector), 8);
        assert_eq!(offset_of!(IoDesc, addr), 16);
        assert_eq!(offset_of!(IoCmd, result), 4);
        assert_eq!(offset_of!(IoCmd, addr), 8);
        assert_eq!(offset_of!(ublk::ParamBasic, max_sectors), 8);
        assert_eq!(offset_of!(ublk::ParamBasic, dev_sectors), 16);
        assert_eq!(offset_of!(Params, basic), 8);
        assert_eq!(offset_of!(Params, discard), 40);
        assert_eq!(offset_of!(Params, devt), 60);
        assert_eq!(offset_of!(Params, zoned), 76);
    }

    #[test]
    fn the_commands_are_ioctl_encoded() {
        // _IOWR('u', nr, 32 or 16 bytes), as libublk and ublksrv have them.
        assert_eq!(ublk::U_CMD_ADD_DEV, 0xc020_7504);
        assert_eq!(ublk::U_CMD_DEL_DEV, 0xc020_7505);
        assert_eq!(ublk::U_CMD_START_DEV, 0xc020_7506);
        assert_eq!(ublk::U_CMD_STOP_DEV, 0xc020_7507);
        assert_eq!(ublk::U_CMD_SET_PARAMS, 0xc020_7508);
        assert_eq!(ublk::U_IO_FETCH_REQ, 0xc010_7520);
        assert_eq!(ublk::U_IO_COMMIT_AND_FETCH_REQ, 0xc010_7521);
    }

    #[test]
    fn commands_encode_field_by_field() {
        let c = CtrlCmd {
            dev_id: 3,
            queue_id: u16::MAX,
            len: 64,
            addr: 0x1122_3344_5566_7788,
            data: [42],
            ..CtrlCmd::default()
        };
        let b = c.encode();
        assert_eq!(b[0..4], 3u32.to_ne_bytes());
        assert_eq!(b[4..6], [0xff, 0xff]);
        assert_eq!(b[6..8], 64u16.to_ne_bytes());
        assert_eq!(b[8..16], 0x1122_3344_5566_7788u64.to_ne_bytes());
        assert_eq!(b[16..24], 42u64.to_ne_bytes());
        assert!(b[24..].iter().all(|&x| x == 0));
        let io = IoCmd {
            q_id: 0,
            tag: 7,
            result: -28,
            addr: 0x1000,
        };
        let b = io.encode();
        assert_eq!(b[2..4], 7u16.to_ne_bytes());
        assert_eq!(b[4..8], (-28i32).to_ne_bytes());
        assert_eq!(b[8..16], 0x1000u64.to_ne_bytes());
    }

    fn req(op: u8, sector: u64, sectors: u32) -> IoDesc {
        IoDesc {
            op_flags: u32::from(op),
            nr_sectors: sectors,
            start_sector: sector,
            addr: 0,
        }
    }

    fn buffer() -> Vec<Page> {
        vec![Page([0; PAGE]); IO_BUF_PAGES]
    }

    #[test]
    fn requests_are_served_against_the_store() {
        // 8 pages; 200 bytes of store: two compressible pages fit, and an
        // incompressible one does not.
        let store = Store::new(8, 200).unwrap();
        let mut buf = buffer();
        let mut scratch = vec![0; swap_store::scratch_len()];
        let mut run = |iod: IoDesc, buf: &mut [Page]| handle(&store, &iod, buf, &mut scratch);

        // A page never written reads as zeros.
        buf[0].0.fill(0xee);
        assert_eq!(run(req(ublk::IO_OP_READ, 0, 8), &mut buf), 4096);
        assert!(buf[0].0.iter().all(|&b| b == 0));

        // Write two pages at sector 8 (page 1), read them back.
        buf[0].0.copy_from_slice(&page_of(1));
        buf[1].0.copy_from_slice(&page_of(2));
        assert_eq!(run(req(ublk::IO_OP_WRITE, 8, 16), &mut buf), 8192);
        let mut back = buffer();
        assert_eq!(run(req(ublk::IO_OP_READ, 8, 16), &mut back), 8192);
        assert_eq!(back[0].0[..], page_of(1)[..]);
        assert_eq!(back[1].0[..], page_of(2)[..]);

        // Out of range, misaligned (not whole 4096-byte pages), longer
        // than the buffer, unknown: refused, the store unchanged.
        let einval = -libc::EINVAL;
        assert_eq!(run(req(ublk::IO_OP_READ, 64, 8), &mut buf), einval);
        assert_eq!(run(req(ublk::IO_OP_WRITE, 56, 16), &mut buf), einval);
        assert_eq!(run(req(ublk::IO_OP_WRITE, 1, 8), &mut buf), einval);
        assert_eq!(run(req(ublk::IO_OP_READ, 0, 4), &mut buf), einval);
        assert_eq!(run(req(ublk::IO_OP_READ, u64::MAX, 8), &mut buf), einval);
        assert_eq!(run(req(ublk::IO_OP_READ, 0, 8), &mut buf[..0]), einval);
        assert_eq!(run(req(4, 0, 8), &mut buf), -libc::EOPNOTSUPP);
        assert_eq!(store.counters.pages.load(Relaxed), 2);

        // Store full: a page of noise does not compress and does not fit.
        buf[0].0.copy_from_slice(&noise_page());
        assert_eq!(run(req(ublk::IO_OP_WRITE, 0, 8), &mut buf), -libc::ENOSPC);
        assert_eq!(store.counters.pages.load(Relaxed), 2);

        // Flush; discard and write zeroes free pages, which read as zeros.
        assert_eq!(run(req(ublk::IO_OP_FLUSH, 0, 0), &mut buf), 0);
        assert_eq!(run(req(ublk::IO_OP_DISCARD, 8, 8), &mut buf), 0);
        assert_eq!(store.counters.pages.load(Relaxed), 1);
        assert_eq!(run(req(ublk::IO_OP_WRITE_ZEROES, 16, 8), &mut buf), 0);
        assert_eq!(store.counters.pages.load(Relaxed), 0);
        assert_eq!(store.counters.compressed.load(Relaxed), 0);
        assert_eq!(run(req(ublk::IO_OP_READ, 8, 16), &mut back), 8192);
        assert!(back[..2].iter().all(|p| p.0.iter().all(|&b| b == 0)));

        let c = &store.counters;
        assert_eq!(c.written.load(Relaxed), 8192);
        assert_eq!(c.read.load(Relaxed), 4096 + 8192 + 8192);
        assert_eq!(c.errors.load(Relaxed), 8);
        assert_eq!(c.requests.load(Relaxed), 15);
    }

    fn args(a: &[&str]) -> Result<Options, String> {
        parse_args(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn the_ublk_flags_are_parsed_beside_the_common_ones() {
        let o = args(&[]).unwrap();
        assert_eq!((o.device_id, o.queue_depth), (u32::MAX, 64));
        let o = args(&["--device-id=3", "--queue-depth", "128", "--protect", "lock"]).unwrap();
        assert_eq!((o.device_id, o.queue_depth), (3, 128));
        assert_eq!(o.common.protect, swap_store::Protect::Lock);
        assert_eq!(args(&["--device-id", "auto"]).unwrap().device_id, u32::MAX);
        let err = |a: &[&str]| args(a).err().unwrap();
        assert!(err(&["--queue-depth", "0"]).contains("between 1 and 4096"));
        assert!(err(&["--queue-depth", "4097"]).contains("between 1 and 4096"));
        assert!(err(&["--device-id", "x"]).contains("not a number"));
        assert!(err(&["--device-id", "4294967295"]).contains("`auto`"));
        assert!(err(&["--device", "/dev/nbd0"]).contains("unknown option"));
    }

    #[test]
    fn a_missing_control_device_names_the_module_and_the_kernel() {
        let e = Control::open("/nonexistent/ublk-control").err().unwrap();
        assert!(e.contains("No such file"), "{e}");
        if !std::path::Path::new("/sys/module/ublk_drv").exists() {
            assert!(e.contains("`modprobe ublk_drv`"), "{e}");
            assert!(e.contains("CONFIG_BLK_DEV_UBLK"), "{e}");
        }
        let denied = DRIVER.open_error(CONTROL, &io::Error::from_raw_os_error(libc::EACCES));
        assert!(denied.contains("CAP_SYS_ADMIN"), "{denied}");
        let refused = ring_error(&io::Error::from_raw_os_error(libc::EPERM));
        assert!(refused.contains("kernel.io_uring_disabled"), "{refused}");
        assert!(refused.contains("seccomp"), "{refused}");
    }

    /// The set-up path of the real program: on a machine without
    /// `/dev/ublk-control` it must fail at once, with the fix, and a
    /// non-zero exit (the binary's `main` exits 1 on any `Err`).
    #[test]
    fn without_the_driver_the_daemon_fails_with_the_fix() {
        if std::path::Path::new(CONTROL).exists() {
            eprintln!("skipped: {CONTROL} exists here, and the set-up would add a device");
            return;
        }
        let o = args(&["--protect", "none", "--size-mib", "8", "--store-mib", "1"]).unwrap();
        let e = serve(&o).err().unwrap();
        assert!(e.starts_with("cannot open /dev/ublk-control"), "{e}");
        assert!(
            e.contains("modprobe ublk_drv") || e.contains("devtmpfs"),
            "{e}"
        );
        let exit = swap_store::main_of(NAME, USAGE, |_| Ok(o), serve);
        assert_eq!(exit, ExitCode::FAILURE);
    }

    /// A bad flag exits 2, as documented.
    #[test]
    fn a_bad_flag_exits_2() {
        let exit = swap_store::main_of(NAME, USAGE, |_| args(&["--queue-depth", "0"]), serve);
        assert_eq!(exit, ExitCode::from(2));
    }
}
