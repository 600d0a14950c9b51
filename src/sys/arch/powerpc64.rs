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

/// `sc` with the number in `r0`, the arguments in `r3`-`r8`, the result in
/// `r3` (negated on failure), and `r0`, `r3`-`r12`, `cr0`, `ctr` and `xer`
/// clobbered.
///
/// # Safety
/// As for any system call: the caller guarantees that every pointer
/// argument is valid for what the call `nr` does with it.
#[inline(always)]
unsafe fn sc6(
    nr: usize,
    a0: usize,
    a1: usize,
    a2: usize,
    a3: usize,
    a4: usize,
    a5: usize,
) -> usize {
    let ret;
    // SAFETY: the caller vouches for the arguments. No `nomem`, so the
    // compiler assumes memory is read and written; every register the
    // kernel may change is declared (see the file).
    unsafe {
        core::arch::asm!(
            "sc",
            "bns 1f",
            "neg 3, 3",
            "1:",
            inlateout("r0") nr => _,
            inlateout("r3") a0 => ret,
            inlateout("r4") a1 => _,
            inlateout("r5") a2 => _,
            inlateout("r6") a3 => _,
            inlateout("r7") a4 => _,
            inlateout("r8") a5 => _,
            out("r9") _, out("r10") _, out("r11") _, out("r12") _,
            out("cr0") _, out("ctr") _, out("xer") _,
            options(nostack),
        );
    }
    ret
}

six_argument_wrappers!(sc6);
