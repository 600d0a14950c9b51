//! The Rust-with-std baseline of `cargo xtask size`: the work of
//! examples/static_init, written with std as usual. Built by the xtask with
//! rustc for x86_64-unknown-linux-musl (opt-level z, panic abort, LTO,
//! stripped). std links the C library, which provides `mlockall`.

use std::process::ExitCode;

extern "C" {
    fn mlockall(flags: i32) -> i32;
}

/// `MCL_CURRENT | MCL_FUTURE` on x86_64.
const CURRENT_AND_FUTURE: i32 = 1 | 2;

fn main() -> ExitCode {
    // SAFETY: mlockall takes an integer and touches no memory of ours.
    if unsafe { mlockall(CURRENT_AND_FUTURE) } != 0 {
        eprintln!(
            "rust-std-baseline: mlockall: {}",
            std::io::Error::last_os_error()
        );
        return ExitCode::FAILURE;
    }
    let status = match std::fs::read_to_string("/proc/self/status") {
        Ok(s) => s,
        Err(e) => {
            eprintln!("rust-std-baseline: /proc/self/status: {e}");
            return ExitCode::FAILURE;
        }
    };
    match status.lines().find(|l| l.starts_with("VmLck:")) {
        Some(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        None => {
            eprintln!("rust-std-baseline: no VmLck line");
            ExitCode::FAILURE
        }
    }
}
