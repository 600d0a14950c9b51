//! s390x: `svc 0` with the number in `r1`. The `syscalls` crate has this
//! asm too, but turns on a nightly-only feature for it on s390x, so the
//! crate carries its own. The kernel's convention (arch/s390's entry code,
//! and glibc's `INTERNAL_SYSCALL` for s390): arguments in `r2`-`r7`, the
//! result in `r2` (`-4095..=-1` for an error, as on x86_64), every other
//! register preserved.
#![allow(unsafe_code)]

/// Defines `syscall1` to `syscall6` (the `syscalls` crate's `raw`
/// signatures), one `svc 0` each: the number in `r1`, the arguments from
/// `r2`, the result in `r2`. A call sets only the registers it passes.
macro_rules! svc {
    ($($name:ident($($arg:ident in $reg:tt),*);)*) => {$(
        /// The system call (see the file).
        ///
        /// # Safety
        /// As for any system call: every pointer argument is valid for
        /// what the call `nr` does with it.
        #[inline(always)]
        #[allow(dead_code)]
        pub(super) unsafe fn $name(nr: usize, a0: usize $(, $arg: usize)*) -> usize {
            let ret;
            // SAFETY: the caller vouches for the arguments. No `nomem`, so
            // the compiler assumes memory is read and written; the kernel
            // changes only `r2`.
            unsafe {
                core::arch::asm!(
                    "svc 0",
                    in("r1") nr,
                    inlateout("r2") a0 => ret,
                    $(in($reg) $arg,)*
                    options(nostack),
                );
            }
            ret
        }
    )*};
}

svc! {
    syscall1();
    syscall2(a1 in "r3");
    syscall3(a1 in "r3", a2 in "r4");
    syscall4(a1 in "r3", a2 in "r4", a3 in "r5");
    syscall5(a1 in "r3", a2 in "r4", a3 in "r5", a4 in "r6");
    syscall6(a1 in "r3", a2 in "r4", a3 in "r5", a4 in "r6", a5 in "r7");
}

/// A system call without arguments, as `syscall1` with 0 in `r2`.
///
/// # Safety
/// As for any system call.
#[inline(always)]
#[allow(dead_code)]
pub(super) unsafe fn syscall0(nr: usize) -> usize {
    // SAFETY: no arguments; the kernel ignores `r2` for such a call.
    unsafe { syscall1(nr, 0) }
}
