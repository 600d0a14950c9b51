//! Holds memory for the swap-pressure scenario of `cargo xtask vm`, which
//! runs it inside a real kernel with zram swap.
//!
//! ```text
//! vm_hold locked <MiB>     lock_all(CURRENT | FUTURE), then hold <MiB>
//! vm_hold unlocked <MiB>   hold <MiB>, the twin that may be swapped out
//! vm_hold hog              touch as much memory as the machine has, then exit
//! ```
//!
//! A holder touches every page, creates `/tmp/<mode>.ready`, and waits
//! (without touching its memory again) until `/tmp/report` exists; then it
//! prints its own `VmLck` and `VmSwap` as the crate reads them and exits.
//! The harness reads `/proc/<pid>/status` itself as well.
//!
//! The hog never outlives the holders in the OOM killer's eyes: holders set
//! `oom_score_adj` to -1000, the hog to 1000.

use std::time::Duration;

const MIB: usize = 1 << 20;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["locked", mib] => hold(true, parse_mib(mib)),
        ["unlocked", mib] => hold(false, parse_mib(mib)),
        ["hog"] => hog(),
        _ => Err("usage: vm_hold locked|unlocked <MiB> | vm_hold hog".to_string()),
    };
    if let Err(e) = result {
        eprintln!("vm_hold: failed: {e}");
        std::process::exit(1);
    }
}

fn parse_mib(text: &str) -> usize {
    text.parse().unwrap_or_else(|_| {
        eprintln!("vm_hold: not a number of MiB: {text}");
        std::process::exit(2)
    })
}

fn hold(locked: bool, mib: usize) -> Result<(), String> {
    let mode = if locked { "locked" } else { "unlocked" };
    set_oom_score_adj(-1000)?;
    if locked {
        // FUTURE covers the buffer allocated below; CURRENT covers the
        // program itself.
        mlock::lock_all(mlock::Flags::CURRENT | mlock::Flags::FUTURE)
            .map_err(|e| format!("lock_all: {e}"))?;
    }
    // A byte other than zero, so that every page is really written.
    let memory = vec![0x5a_u8; mib * MIB];
    std::hint::black_box(&memory);
    report(mode, "holding")?;
    let ready = format!("/tmp/{mode}.ready");
    std::fs::write(&ready, b"").map_err(|e| format!("creating {ready}: {e}"))?;
    while !std::path::Path::new("/tmp/report").exists() {
        std::thread::sleep(Duration::from_millis(100));
    }
    report(mode, "after pressure")?;
    // Keep the memory alive until here without reading it back in.
    std::mem::forget(memory);
    Ok(())
}

fn hog() -> Result<(), String> {
    set_oom_score_adj(1000)?;
    let meminfo =
        std::fs::read_to_string("/proc/meminfo").map_err(|e| format!("/proc/meminfo: {e}"))?;
    let total_kb: usize = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or("no MemTotal in /proc/meminfo")?;
    let chunks = total_kb / 1024;
    let mut held: Vec<Vec<u8>> = Vec::with_capacity(chunks);
    for _ in 0..chunks {
        held.push(vec![0xa5_u8; MIB]);
    }
    std::hint::black_box(&held);
    println!("vm_hold hog: touched {chunks} MiB");
    Ok(())
}

fn report(mode: &str, when: &str) -> Result<(), String> {
    let status = mlock::status().map_err(|e| format!("status: {e}"))?;
    let kb = |v: Option<u64>| v.map_or("?".to_string(), |b| (b / 1024).to_string());
    println!(
        "vm_hold {mode}: {when}: VmLck={} kB VmSwap={} kB VmRSS={} kB",
        kb(status.locked_bytes()),
        kb(status.swap_bytes()),
        kb(status.rss_bytes()),
    );
    Ok(())
}

fn set_oom_score_adj(value: i32) -> Result<(), String> {
    std::fs::write("/proc/self/oom_score_adj", value.to_string())
        .map_err(|e| format!("writing /proc/self/oom_score_adj: {e}"))
}
