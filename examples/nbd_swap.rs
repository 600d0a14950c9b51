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
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

#[path = "common/swap_store.rs"]
mod swap_store;
use swap_store::{sys::block_stop_signals, sys::wait_for_stop, Errno, Store, MIB, PAGE};

const NAME: &str = "nbd_swap";

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
}

/// `ioctl(2)`, the one raw call this program needs beyond the crate, std
/// and the shared module: one call into libc with integer arguments.
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
}

struct Options {
    device: String,
    common: swap_store::Common,
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut device = "/dev/nbd0".to_string();
    let common = swap_store::parse_args(args, |name, value| match name {
        "--device" => {
            device = value;
            Ok(true)
        }
        _ => Ok(false),
    })?;
    Ok(Options { device, common })
}

fn main() -> ExitCode {
    swap_store::main_of(NAME, USAGE, parse_args, serve)
}

/// The driver behind `--device`, for the message when it cannot be opened.
const DRIVER: swap_store::Driver = swap_store::Driver {
    module: "nbd",
    load: "run `modprobe nbd` (or `insmod nbd.ko`) as root",
    no_node: "pick one of /dev/nbd0..: `modprobe nbd nbds_max=N` makes N of them",
    needs: "the NBD ioctls need CAP_SYS_ADMIN",
};

fn serve(o: &Options) -> Result<(), String> {
    // Before any thread exists, so that all of them inherit both the
    // blocked signals and IO_FLUSHER.
    block_stop_signals();
    let c = &o.common;
    swap_store::protect(NAME, c.protect)?;

    let device = File::options()
        .read(true)
        .write(true)
        .open(&o.device)
        .map_err(|e| DRIVER.open_error(&o.device, &e))?;
    let dev = device.as_raw_fd();
    let blocks = c.size_mib * MIB / PAGE as u64;
    let store = Arc::new(Store::new(blocks as usize, c.store_mib * MIB)?);
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
    let server = {
        let store = Arc::clone(&store);
        swap_store::thread("nbd-serve")
            .spawn(move || serve_requests(server_end, &store))
            .map_err(|e| format!("spawning the server thread: {e}"))?
    };
    swap_store::spawn_stats(NAME, &store, &done, c.stats_ms)?;
    swap_store::thread("nbd-signal")
        .spawn(move || {
            let signal = wait_for_stop();
            println!("nbd_swap: signal {signal}: disconnecting");
            if let Err(e) = sys::ioctl(dev, nbd::DISCONNECT, 0) {
                eprintln!("nbd_swap: NBD_DISCONNECT: {e}");
            }
        })
        .map_err(|e| format!("spawning the signal thread: {e}"))?;

    println!(
        "nbd_swap: serving {} ({} MiB, store up to {} MiB)",
        o.device, c.size_mib, c.store_mib
    );
    // Returns once the device is disconnected (or its socket fails).
    let result = sys::ioctl(dev, nbd::DO_IT, 0);
    let _ = sys::ioctl(dev, nbd::CLEAR_SOCK, 0);
    done.store(true, Relaxed);
    drop(kernel_end);
    let served = server.join();
    store.counters.print(NAME, " final");
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
    let mut scratch = vec![0u8; swap_store::scratch_len()];
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
            nbd::CMD_READ => match store.range(req.offset, u64::from(req.len)) {
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
                let mut outcome = store.range(req.offset, u64::from(req.len));
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
                .range(req.offset, u64::from(req.len))
                .and_then(|r| store.drop_pages(r)),
            nbd::CMD_DISC => {
                c.in_flight.fetch_sub(1, Relaxed);
                return Ok(());
            }
            _ => Err(Errno(libc::EINVAL)),
        };
        match result {
            // A read's reply went out with its data.
            Ok(()) if req.command == nbd::CMD_READ => {}
            Ok(()) => reply(&mut sock, req.handle, 0)?,
            // NBD's error codes are errno values.
            Err(Errno(code)) => {
                c.errors.fetch_add(1, Relaxed);
                reply(&mut sock, req.handle, code as u32)?;
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
    use swap_store::{noise_page, page_of};

    const EINVAL: u32 = libc::EINVAL as u32;

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
        assert_eq!(c.reply(8 * 4096), EINVAL);
        c.send(nbd::CMD_WRITE, 7 * 4096, 8192, &two);
        assert_eq!(c.reply(7 * 4096), EINVAL);
        c.send(nbd::CMD_WRITE, 100, 4096, &two[..4096]);
        assert_eq!(c.reply(100), EINVAL);
        c.send(9, 0, 0, &[]);
        assert_eq!(c.reply(0), EINVAL);

        // Store full: a page of noise does not compress and does not fit.
        let noise = noise_page();
        c.send(nbd::CMD_WRITE, 0, 4096, &noise);
        assert_eq!(c.reply(0), libc::ENOSPC as u32);
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
    fn the_device_flag_is_parsed_beside_the_common_ones() {
        let args = |a: &[&str]| parse_args(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let o = args(&["--device=/dev/nbd3", "--protect", "lock"]).unwrap();
        assert_eq!(o.device, "/dev/nbd3");
        assert_eq!(o.common.protect, swap_store::Protect::Lock);
        assert!(args(&["--device-id", "1"])
            .err()
            .unwrap()
            .contains("unknown option"));
    }
}
