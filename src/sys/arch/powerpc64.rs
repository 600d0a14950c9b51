//! powerpc64: the `sc` instruction with every register the kernel may
//! change declared. The kernel's "Power Architecture 64-bit Linux system
//! call ABI" (Documentation/arch/powerpc/syscall64-abi.rst) keeps the ELF
//! ABI's rules for `sc` except where it lists otherwise: `r0` and `r3`-`r12`,
//! `cr0`, `ctr` and `xer` are volatile. The `syscalls` crate's asm declares
//! the general registers and `cr0` but not `ctr` and `xer`, and LLVM keeps
//! loop counts in `ctr` (`mtctr`/`bdnz`), so a system call inside a counted
//! loop could end the loop early or run it on. These functions declare both.
//!
//! The error convention differs from the other arches: the kernel sets
//! `cr0.SO` on failure and returns the positive errno in `r3`. The asm
//! negates `r3` when `SO` is set (`bns` skips the `neg` otherwise), so the
//! callers see `-errno` as on every other arch and one `check` serves all.
#![allow(unsafe_code)]

/// Defines `syscall1` to `syscall6` (the `syscalls` crate's `raw`
/// signatures), one `sc` each: the number in `r0`, the arguments from
/// `r3`, the result in `r3` (negated on failure), and `r0`, `r3`-`r12`,
/// `cr0`, `ctr` and `xer` clobbered. An argument register a call does not
/// use is declared clobbered rather than loaded with 0: the kernel may
/// change it either way, and a call site then sets only what it passes.
macro_rules! sc {
    ($($name:ident($($arg:ident in $reg:tt),*) clobbers($($free:tt),*);)*) => {$(
        /// The system call with every register it changes declared (see
        /// the file).
        ///
        /// # Safety
        /// As for any system call: every pointer argument is valid for
        /// what the call `nr` does with it.
        #[inline(always)]
        #[allow(dead_code)]
        pub(super) unsafe fn $name(nr: usize, a0: usize $(, $arg: usize)*) -> usize {
            let ret;
            // SAFETY: the caller vouches for the arguments. No `nomem`, so
            // the compiler assumes memory is read and written; every
            // register the kernel may change is declared (see the file).
            unsafe {
                core::arch::asm!(
                    "sc",
                    "bns 1f",
                    "neg 3, 3",
                    "1:",
                    inlateout("r0") nr => _,
                    inlateout("r3") a0 => ret,
                    $(inlateout($reg) $arg => _,)*
                    $(out($free) _,)*
                    out("r9") _, out("r10") _, out("r11") _, out("r12") _,
                    out("cr0") _, out("ctr") _, out("xer") _,
                    options(nostack),
                );
            }
            ret
        }
    )*};
}

sc! {
    syscall1() clobbers("r4", "r5", "r6", "r7", "r8");
    syscall2(a1 in "r4") clobbers("r5", "r6", "r7", "r8");
    syscall3(a1 in "r4", a2 in "r5") clobbers("r6", "r7", "r8");
    syscall4(a1 in "r4", a2 in "r5", a3 in "r6") clobbers("r7", "r8");
    syscall5(a1 in "r4", a2 in "r5", a3 in "r6", a4 in "r7") clobbers("r8");
    syscall6(a1 in "r4", a2 in "r5", a3 in "r6", a4 in "r7", a5 in "r8") clobbers();
}

/// A system call without arguments, as `syscall1` with 0 in `r3`.
///
/// # Safety
/// As for any system call.
#[inline(always)]
#[allow(dead_code)]
pub(super) unsafe fn syscall0(nr: usize) -> usize {
    // SAFETY: no arguments; the kernel ignores `r3` for such a call.
    unsafe { syscall1(nr, 0) }
}
