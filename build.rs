//! Decides whether the raw-syscall backend is available for the target.
//!
//! The backend issues `mlockall(2)`, `mlock2(2)` and friends through the
//! `syscalls` crate's inline asm (or the crate's own, on riscv64,
//! powerpc64 and s390x), so it exists exactly where that asm and the Linux
//! syscall ABI are both known and tested: Linux on x86_64, aarch64,
//! riscv64, i686 (`x86`), 32-bit arm, s390x and little-endian powerpc64.
//! Everywhere else the crate compiles a stub backend whose every call
//! returns `Error::Unsupported`. `MLOCK_FORCE_UNSUPPORTED=1` selects the
//! stub on a supported target too, so that its behaviour is tested on the
//! host.
//!
//! Keep the condition in step with the target-specific `syscalls` dependency
//! in `Cargo.toml`.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(mlock_raw)");
    // Set by `cargo fuzz`: the hook of fuzz/fuzz_targets/status.rs.
    println!("cargo::rustc-check-cfg=cfg(fuzzing)");
    println!("cargo::rerun-if-changed=build.rs");
    // Builds the stub backend on a supported target, so that the host can
    // test what every unsupported target gets (see tests/unsupported.rs).
    println!("cargo::rerun-if-env-changed=MLOCK_FORCE_UNSUPPORTED");
    if std::env::var_os("MLOCK_FORCE_UNSUPPORTED").is_some_and(|v| v == "1") {
        return;
    }

    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let endian = std::env::var("CARGO_CFG_TARGET_ENDIAN").unwrap_or_default();
    let known = match arch.as_str() {
        "x86_64" | "aarch64" | "riscv64" | "x86" | "arm" | "s390x" => true,
        // Tested little-endian only (ppc64le); big-endian powerpc64 gets
        // the stub.
        "powerpc64" => endian == "little",
        _ => false,
    };
    if os == "linux" && known {
        println!("cargo::rustc-cfg=mlock_raw");
    }
}
