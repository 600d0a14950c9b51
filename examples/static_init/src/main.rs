//! An initramfs helper: a static `#![no_std]` program that locks itself
//! into RAM and says so in one line.
//!
//! It runs as `/init` (PID 1) or as an ordinary early-boot program:
//!
//! 1. mounts `/proc` if it is not mounted ([`mlock::boot::mount_proc`]);
//! 2. locks itself with `CURRENT | FUTURE` ([`mlock::lock_all`]);
//! 3. prints exactly one line to standard output (the console, for PID 1):
//!    `mlock-init: locked VmLck=<n> kB` on success, or
//!    `mlock-init: failed: <reason>` (the text of
//!    [`mlock::Error::as_str`]) on failure;
//! 4. as PID 1 powers the machine off; otherwise exits 0, or 1 on failure.
//!
//! No heap, no `core::fmt` (numbers are formatted by hand), no libc
//! calls: every system call goes through `mlock`.
//!
//! # Entry point
//!
//! The target's own C runtime object (`crt1.o`, or `rcrt1.o` for a
//! static PIE) provides `_start`: correct for each arch (stack alignment,
//! the riscv64 global pointer, self-relocation), and linked by rustc as
//! for any static binary, with no linker flags. That `_start` calls
//! `__libc_start_main(main, argc, argv, ...)`, whose interface the Linux
//! Standard Base fixes (but for powerpc64's, see below); this program
//! defines that function itself, so the C library's initialisation
//! (thread-local storage, stdio, `atexit`, which it never uses) stays
//! out, and at most `memcpy` and `memset` come from `libc.a` (see
//! `build.rs`; today only `memset`, which s390x inlines and powerpc64
//! defines below). On x86_64 that saves about 1.5 KiB over musl's own
//! start-up, and with glibc about 500 KiB. The few glibc symbols whose
//! archive members would bring that start-up back in are defined at the
//! end of this file. Since nothing runs constructors, the other start
//! files gcc links (`crti.o`, `crtn.o`, `crtbeginT.o`, `crtend.o`) are
//! dead code, which `cargo xtask size` leaves out: it links `crt1.o`
//! alone (`-nostartfiles`).
//!
//! # Building
//!
//! It is its own package, outside the workspace (see `Cargo.toml` for
//! why), so build it by its manifest:
//!
//! ```text
//! CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld \
//!     cargo build --release --target x86_64-unknown-linux-musl \
//!     --manifest-path examples/static_init/Cargo.toml
//! ```
//!
//! `cargo xtask size` builds it for every arch, non-PIE
//! (`-C relocation-model=static`, which saves the relocation tables), and
//! measures it.
#![no_std]
#![no_main]

use mlock::{boot, Error, Flags};

/// The line printed on success: the prefix, then `VmLck` in kB.
const LOCKED: &[u8] = b"mlock-init: locked VmLck=";
/// The line printed on failure: the prefix, then [`Error::as_str`].
const FAILED: &[u8] = b"mlock-init: failed: ";
/// Room for the longest line: the failure prefix, the longest
/// `Error::as_str` text (under 200 bytes) and the newline.
const LINE: usize = 256;

/// A line assembled on the stack, so that it reaches the console in one
/// `write(2)`: as PID 1 the program powers the machine off right after,
/// and a console can lose the output of a later write to the power-off.
/// Text beyond its capacity is cut off.
struct Line {
    buf: [u8; LINE],
    len: usize,
}

impl Line {
    /// Appends what fits of each piece.
    fn push(&mut self, pieces: &[&[u8]]) {
        for &b in pieces.iter().flat_map(|p| p.iter()) {
            if let Some(slot) = self.buf.get_mut(self.len) {
                *slot = b;
                self.len += 1;
            }
        }
    }

    /// Writes the line to standard output. Nothing useful is left to do
    /// if standard output is closed.
    fn say(&self) {
        let text = self.buf.get(..self.len).unwrap_or_default();
        let _ = boot::write_all(boot::Output::STDOUT, text);
    }
}

/// `n` in decimal, without `core::fmt`, in the tail of `digits`. A
/// `usize`, not a `u64`: on the 32-bit arches a `u64` division is a call
/// into compiler-builtins' long division (about 1.4 KiB on armv7), a
/// `usize` one a multiplication.
fn decimal(mut n: usize, digits: &mut [u8; 20]) -> &[u8] {
    // usize::MAX has at most 20 digits. Filled from the end, with no
    // index that could panic.
    let mut used = 0;
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (n % 10) as u8;
        used += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    digits.get(digits.len() - used..).unwrap_or_default()
}

/// Mounts `/proc` if needed, locks, and reads back `VmLck` in bytes.
fn lock_and_measure() -> Result<u64, Error> {
    // Locking does not need /proc; reading VmLck back does. A failed mount
    // shows up below as ProcUnavailable.
    let _ = boot::mount_proc();
    mlock::lock_all(Flags::CURRENT | Flags::FUTURE)?;
    mlock::locked_bytes()
}

/// Does the work and returns the exit code.
fn run() -> i32 {
    let mut line = Line {
        buf: [0; LINE],
        len: 0,
    };
    let code = match lock_and_measure() {
        Ok(bytes) => {
            // In kB, the count fits a usize on every arch: a 32-bit
            // process (or the 64-bit emulator running one) would need
            // 4 TiB locked to overflow it, so saturating never happens.
            let kb = usize::try_from(bytes / 1024).unwrap_or(usize::MAX);
            let mut digits = [0u8; 20];
            line.push(&[LOCKED, decimal(kb, &mut digits), b" kB\n"]);
            0
        }
        Err(e) => {
            line.push(&[FAILED, e.as_str().as_bytes(), b"\n"]);
            1
        }
    };
    line.say();
    code
}

/// The C runtime's entry point: `crt1.o`'s `_start` hands it to
/// `__libc_start_main` below, which calls it.
#[no_mangle]
extern "C" fn main(_argc: i32, _argv: *const *const u8) -> i32 {
    run()
}

/// Stands in for the C library's start-up routine, which `crt1.o`'s
/// `_start` calls with `main`, `argc` and `argv` (the Linux Standard Base
/// fixes this interface). Defining it here keeps the C library's
/// initialisation (thread-local storage, stdio, `atexit`), which this
/// program never uses, out of the binary: all it may take from the C
/// library is `memcpy` and `memset`.
///
/// Not on powerpc64, whose `crt1.o` passes other arguments (see the one
/// below).
#[cfg(not(target_arch = "powerpc64"))]
#[no_mangle]
extern "C" fn __libc_start_main(
    main: extern "C" fn(i32, *const *const u8) -> i32,
    argc: i32,
    argv: *const *const u8,
) -> ! {
    finish(main(argc, argv))
}

/// powerpc64's stand-in for the C library's start-up routine. glibc's
/// `crt1.o` there (`sysdeps/powerpc/powerpc64/start.S`) passes no `main`
/// first: it passes `argc, argv, envp, auxv, rtld_fini` as the kernel's
/// registers left them (meaningless in a static program), then a pointer
/// to a `{ sda_base, main, init, fini }` block and the stack pointer at
/// entry, where the real `argc` and `argv` are. This program reads none
/// of them: `main` is the one above, called directly, and it ignores its
/// arguments. (A C function may ignore arguments passed in registers, so
/// it declares none.)
#[cfg(target_arch = "powerpc64")]
#[no_mangle]
extern "C" fn __libc_start_main() -> ! {
    finish(main(0, core::ptr::null()))
}

/// Ends the program with `code`, as `main` returned it: powers the machine
/// off as PID 1, which must not exit (the kernel would panic); otherwise,
/// or if the power-off itself fails, exits.
fn finish(code: i32) -> ! {
    if boot::pid() == 1 {
        let _ = boot::power_off();
    }
    boot::exit(code)
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    let _ = boot::write_all(boot::Output::STDOUT, b"mlock-init: failed: panic\n");
    finish(101)
}

/// The precompiled `core` is built to unwind, and its unoptimised code
/// refers to this symbol. With `panic = "abort"` nothing ever unwinds, so
/// it is never called; release builds (LTO) drop the reference altogether.
#[no_mangle]
extern "C" fn rust_eh_personality() {}

/// arm's unwind tables (`.ARM.exidx`, `.ARM.extab`) name one of the three
/// EHABI personality routines for each function, and that reference would
/// link libgcc's unwinder (and, through it, glibc's `memcpy`): about
/// 6 KiB. With `panic = "abort"` nothing unwinds, so, like
/// `rust_eh_personality` above, none is ever called. Which of the three
/// the tables name depends on the code generated: all three are here.
#[cfg(target_arch = "arm")]
#[no_mangle]
extern "C" fn __aeabi_unwind_cpp_pr0() {}

/// The second EHABI personality routine: see `__aeabi_unwind_cpp_pr0`.
#[cfg(target_arch = "arm")]
#[no_mangle]
extern "C" fn __aeabi_unwind_cpp_pr1() {}

/// The third EHABI personality routine: see `__aeabi_unwind_cpp_pr0`.
#[cfg(target_arch = "arm")]
#[no_mangle]
extern "C" fn __aeabi_unwind_cpp_pr2() {}

/// arm's `crt1.o` calls `abort` should `__libc_start_main` return, which
/// the one above never does. The C library's `abort` would bring its
/// whole start-up code back in (about 350 KiB): its stack-protector guard
/// lives there.
#[cfg(target_arch = "arm")]
#[no_mangle]
extern "C" fn abort() -> ! {
    boot::exit(134)
}

/// powerpc64's `memset`, in place of glibc's (620 bytes of code that
/// clears whole cache lines with `dcbz`). The compiler calls it to zero
/// this program's few hundred bytes of locals once; a byte loop does
/// that. The stores are volatile so that the compiler does not recognise
/// the loop as a `memset` and call this function from itself.
#[cfg(target_arch = "powerpc64")]
#[no_mangle]
unsafe extern "C" fn memset(dest: *mut u8, byte: i32, len: usize) -> *mut u8 {
    for i in 0..len {
        // SAFETY: the caller passes `len` writable bytes at `dest`, as
        // memset(3) requires; `i < len`.
        unsafe { dest.add(i).write_volatile(byte as u8) };
    }
    dest
}
