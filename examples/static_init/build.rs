//! Links the C library's static archive for `memcpy` and `memset`, which
//! `core` leaves to it: rustc passes no `-lc` for a `#![no_std]` binary.
//! (The C runtime's `crt1.o` is linked as usual; `src/main.rs` supplies the
//! `__libc_start_main` it calls.)
fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let crt_static = features.split(',').any(|f| f == "crt-static");
    if os != "linux" {
        return;
    }
    if env == "gnu" {
        // rustc drives gcc with -nodefaultlibs and ends its own arguments
        // with -Bdynamic; say static again, and name libgcc, which glibc's
        // archive needs.
        let args: &[&str] = if crt_static {
            &[
                "-Wl,-Bstatic",
                "-Wl,--start-group",
                "-lc",
                "-lgcc",
                "-lgcc_eh",
                "-Wl,--end-group",
            ]
        } else {
            &["-lc"]
        };
        for arg in args {
            println!("cargo::rustc-link-arg-bins={arg}");
        }
    } else {
        println!("cargo::rustc-link-arg-bins=-lc");
    }
}
