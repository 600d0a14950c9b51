//! riscv64: the `syscalls` crate's `ecall` asm declares no vector
//! registers, but Linux does not preserve `v0`-`v31` across a system call
//! (the kernel's RISC-V vector ABI document, "Vector Register State Across
//! System Calls"), so code built with the vector extension (`-C
//! target-feature=+v`, RVA23 profiles) could keep a live vector value in a
//! register the kernel then clobbers. These functions issue the same
//! `ecall` with every vector register declared clobbered.
//!
//! They are used on every riscv64 build, not only under
//! `cfg(target_feature = "v")`: stable rustc passes an unstable `+v` on to
//! code generation without setting that cfg, so a cfg would miss exactly
//! the builds that need it. Without the extension the clobbers cost
//! nothing.
#![allow(unsafe_code)]

/// Defines `syscall1` to `syscall6` (the `syscalls` crate's `raw`
/// signatures), one `ecall` each: the number in `a7`, the arguments from
/// `a0`, the result in `a0`, and `v0`-`v31` clobbered. A call sets only
/// the registers it passes.
macro_rules! ecall {
    ($($name:ident($($arg:ident in $reg:tt),*);)*) => {$(
        /// The system call with the vector registers declared clobbered
        /// (see the file).
        ///
        /// # Safety
        /// As for any system call: every pointer argument is valid for
        /// what the call `nr` does with it.
        #[inline(always)]
        #[allow(dead_code)]
        pub(super) unsafe fn $name(nr: usize, a0: usize $(, $arg: usize)*) -> usize {
            let ret;
            // SAFETY: the caller vouches for the arguments. No `nomem`, so
            // the compiler assumes memory is read and written (as for the
            // `syscalls` crate's asm); the registers the kernel may change
            // are declared: `a0` and the vector registers (see the file).
            unsafe {
                core::arch::asm!(
                    "ecall",
                    in("a7") nr,
                    inlateout("a0") a0 => ret,
                    $(in($reg) $arg,)*
                    out("v0") _, out("v1") _, out("v2") _, out("v3") _,
                    out("v4") _, out("v5") _, out("v6") _, out("v7") _,
                    out("v8") _, out("v9") _, out("v10") _, out("v11") _,
                    out("v12") _, out("v13") _, out("v14") _, out("v15") _,
                    out("v16") _, out("v17") _, out("v18") _, out("v19") _,
                    out("v20") _, out("v21") _, out("v22") _, out("v23") _,
                    out("v24") _, out("v25") _, out("v26") _, out("v27") _,
                    out("v28") _, out("v29") _, out("v30") _, out("v31") _,
                    options(nostack),
                );
            }
            ret
        }
    )*};
}

ecall! {
    syscall1();
    syscall2(a1 in "a1");
    syscall3(a1 in "a1", a2 in "a2");
    syscall4(a1 in "a1", a2 in "a2", a3 in "a3");
    syscall5(a1 in "a1", a2 in "a2", a3 in "a3", a4 in "a4");
    syscall6(a1 in "a1", a2 in "a2", a3 in "a3", a4 in "a4", a5 in "a5");
}

/// A system call without arguments, as `syscall1` with 0 in `a0`.
///
/// # Safety
/// As for any system call.
#[inline(always)]
#[allow(dead_code)]
pub(super) unsafe fn syscall0(nr: usize) -> usize {
    // SAFETY: no arguments; the kernel ignores `a0` for such a call.
    unsafe { syscall1(nr, 0) }
}
