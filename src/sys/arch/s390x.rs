//! s390x: `svc 0` with the number in `r1`. The `syscalls` crate has this
//! asm too, but turns on a nightly-only feature for it on s390x, so the
//! crate carries its own. The kernel's convention (arch/s390's entry code,
//! and glibc's `INTERNAL_SYSCALL` for s390): arguments in `r2`-`r7`, the
//! result in `r2` (`-4095..=-1` for an error, as on x86_64), every other
//! register preserved.
#![allow(unsafe_code)]

/// `svc 0` with the number in `r1`, the arguments in `r2`-`r7` and the
/// result in `r2`.
///
/// # Safety
/// As for any system call: the caller guarantees that every pointer
/// argument is valid for what the call `nr` does with it.
#[inline(always)]
unsafe fn svc6(
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
    // compiler assumes memory is read and written; the kernel changes
    // only `r2`.
    unsafe {
        core::arch::asm!(
            "svc 0",
            in("r1") nr,
            inlateout("r2") a0 => ret,
            in("r3") a1,
            in("r4") a2,
            in("r5") a3,
            in("r6") a4,
            in("r7") a5,
            options(nostack),
        );
    }
    ret
}

six_argument_wrappers!(svc6);
