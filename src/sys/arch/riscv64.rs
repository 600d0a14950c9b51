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
//! nothing. Each function passes six arguments; unused ones are 0, which
//! the kernel ignores.
#![allow(unsafe_code)]

/// `ecall` with the number in `a7`, the arguments in `a0`-`a5`, the
/// result in `a0`, and `v0`-`v31` clobbered.
///
/// # Safety
/// As for any system call: the caller guarantees that every pointer
/// argument is valid for what the call `nr` does with it.
#[inline(always)]
unsafe fn ecall6(
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
    // compiler assumes memory is read and written (as for the
    // `syscalls` crate's asm); the registers the kernel may change
    // (`a0`, the vector registers) are declared.
    unsafe {
        core::arch::asm!(
            "ecall",
            in("a7") nr,
            inlateout("a0") a0 => ret,
            in("a1") a1,
            in("a2") a2,
            in("a3") a3,
            in("a4") a4,
            in("a5") a5,
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

six_argument_wrappers!(ecall6);
