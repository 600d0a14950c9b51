//! The two programs of the swap-deadlock scenario of `cargo xtask vm`, which runs
//! them in a real kernel whose only swap is served by `nbd_swap`.
//!
//! ```text
//! vm_swap_deadlock hog <MiB>                     write <MiB> of checkable pages, read them back
//! vm_swap_deadlock watch <stall-s> <every-ms>    sample memory; crash the kernel on a stall
//! ```
//!
//! **hog** maps `<MiB>` of page-aligned memory and writes every page: its
//! index, a fixed pattern derived from the index (so the page compresses
//! well, as the daemon's store needs), and a checksum in the last word.
//! Then it reads every page back and checks all three. It prints
//! `hog: pages=<n> verified=<n> corrupt=<n>` and exits 0 only if every
//! page came back intact; its `oom_score_adj` is 1000, so that the OOM
//! killer, if it runs, picks it.
//!
//! **watch** is the scenario's evidence-taker. It locks itself
//! (`lock_all(CURRENT | FUTURE)`) and sets IO_FLUSHER, so that it runs on
//! when the swap path is stuck, and prints a sample line every `<every-ms>`:
//! `swap-deadlock-sample memfree_kb=… swapused_kb=… pswpin=… pswpout=…`.
//! When `pswpin + pswpout` (in `/proc/vmstat`) has not moved for `<stall-s>`
//! seconds, and free memory has not moved by 4 MiB either (before the first
//! swap-out, the hog filling RAM is the progress), it asks the kernel for every blocked task's stack
//! (`echo w > /proc/sysrq-trigger`) and then crashes it (`echo c`). The
//! kernel's own hung-task detector does not catch this deadlock: the
//! blocked tasks sleep in `io_schedule_timeout` inside `mempool_alloc`,
//! and their context-switch counts keep moving.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::time::{Duration, Instant};

const PAGE: usize = 4096;
const WORDS: usize = PAGE / 8;

/// One page of the hog's memory, page-aligned so that each one is one page
/// of the kernel's.
#[repr(C, align(4096))]
struct Page([u64; WORDS]);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args[..] {
        ["hog", mib] => number(mib).and_then(hog),
        ["watch", stall, every] => number(stall)
            .and_then(|s| Ok((s, number(every)?)))
            .and_then(|(s, e)| watch(Duration::from_secs(s), Duration::from_millis(e))),
        _ => Err(
            "usage: vm_swap_deadlock hog <MiB> | vm_swap_deadlock watch <stall-s> <every-ms>"
                .into(),
        ),
    };
    if let Err(e) = result {
        eprintln!("vm_swap_deadlock: {e}");
        std::process::exit(1);
    }
}

fn number(s: &str) -> Result<u64, String> {
    s.parse().map_err(|_| format!("not a number: {s:?}"))
}

/// What page `index` holds: word 0 the index, words 1..WORDS-1 a pattern
/// of the index, the last word a checksum of the others.
fn expected(index: u64, page: &mut [u64; WORDS]) {
    page[0] = index;
    let pattern = index.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    page[1..WORDS - 1].fill(pattern);
    page[WORDS - 1] = checksum(&page[..WORDS - 1]);
}

/// FNV-1a over the words.
fn checksum(words: &[u64]) -> u64 {
    words.iter().fold(0xcbf2_9ce4_8422_2325, |h, w| {
        (h ^ w).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn hog(mib: u64) -> Result<(), String> {
    let _ = mlock::daemon::set_oom_score_adj(mlock::daemon::OOM_SCORE_ADJ_MAX);
    let pages = (mib * (1 << 20) / PAGE as u64) as usize;
    let mut memory: Vec<Page> = Vec::new();
    memory
        .try_reserve_exact(pages)
        .map_err(|e| format!("reserving {mib} MiB: {e}"))?;
    let started = Instant::now();
    let report_every = pages / 8;
    for i in 0..pages {
        let mut page = Page([0; WORDS]);
        expected(i as u64, &mut page.0);
        memory.push(page);
        if report_every > 0 && (i + 1) % report_every == 0 {
            println!(
                "hog: wrote {} MiB in {:.1} s",
                ((i + 1) * PAGE) >> 20,
                started.elapsed().as_secs_f64()
            );
        }
    }
    let mut corrupt = 0u64;
    let mut want = [0u64; WORDS];
    for (i, page) in memory.iter().enumerate() {
        expected(i as u64, &mut want);
        if page.0 != want {
            if corrupt < 5 {
                println!(
                    "hog: page {i} corrupt: index word {:#x}, checksum {}",
                    page.0[0],
                    if checksum(&page.0[..WORDS - 1]) == page.0[WORDS - 1] {
                        "consistent"
                    } else {
                        "wrong"
                    }
                );
            }
            corrupt += 1;
        }
    }
    println!(
        "hog: pages={pages} verified={} corrupt={corrupt} in {:.1} s",
        pages as u64 - corrupt,
        started.elapsed().as_secs_f64()
    );
    if corrupt == 0 {
        Ok(())
    } else {
        Err(format!("{corrupt} corrupt page(s)"))
    }
}

/// The values of `keys` in a `/proc` file of `name value` or `name: value kB`
/// lines, read into `buf` from the start of `file`.
fn fields<const N: usize>(file: &mut File, buf: &mut [u8], keys: [&str; N]) -> [u64; N] {
    let mut out = [0; N];
    let n = file
        .rewind()
        .and_then(|()| file.read(buf))
        .unwrap_or_default();
    let text = std::str::from_utf8(&buf[..n]).unwrap_or_default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let (Some(name), Some(value)) = (words.next(), words.next()) else {
            continue;
        };
        let name = name.trim_end_matches(':');
        if let Some(i) = keys.iter().position(|k| *k == name) {
            out[i] = value.parse().unwrap_or_default();
        }
    }
    out
}

fn watch(stall: Duration, every: Duration) -> Result<(), String> {
    // Locked and an IO_FLUSHER, so that the sampler keeps running when the
    // swap path is stuck; the buffers and files are set up before the loop.
    mlock::lock_all(mlock::Flags::CURRENT | mlock::Flags::FUTURE)
        .map_err(|e| format!("lock_all: {e}"))?;
    mlock::daemon::set_io_flusher().map_err(|e| format!("PR_SET_IO_FLUSHER: {e}"))?;
    let _ = mlock::daemon::set_oom_score_adj(mlock::daemon::OOM_SCORE_ADJ_MIN);
    let open = |p: &str| File::open(p).map_err(|e| format!("{p}: {e}"));
    let (mut meminfo, mut vmstat) = (open("/proc/meminfo")?, open("/proc/vmstat")?);
    let mut sysrq = File::options()
        .write(true)
        .open("/proc/sysrq-trigger")
        .map_err(|e| format!("/proc/sysrq-trigger: {e}"))?;
    let mut buf = vec![0u8; 64 << 10];
    // Progress: swap I/O, or free memory moving by a few MiB (the hog
    // filling RAM before the first swap-out, which on a slow or busy host
    // takes longer than the stall limit). A deadlocked machine does
    // neither.
    const FREE_MOVES_KB: u64 = 4 << 10;
    let mut last_io = u64::MAX;
    let mut last_free = u64::MAX;
    let mut last_change = Instant::now();
    loop {
        let [free, swap_total, swap_free] =
            fields(&mut meminfo, &mut buf, ["MemFree", "SwapTotal", "SwapFree"]);
        let [pswpin, pswpout] = fields(&mut vmstat, &mut buf, ["pswpin", "pswpout"]);
        println!(
            "swap-deadlock-sample memfree_kb={free} swapused_kb={} pswpin={pswpin} pswpout={pswpout}",
            swap_total.saturating_sub(swap_free)
        );
        if pswpin + pswpout != last_io || free.abs_diff(last_free) >= FREE_MOVES_KB {
            last_io = pswpin + pswpout;
            last_free = free;
            last_change = Instant::now();
        } else if last_change.elapsed() >= stall {
            println!(
                "swap-deadlock-stall: no swap I/O for {} s (pswpin={pswpin} pswpout={pswpout}, \
                 free memory steady at {free} kB): \
                 dumping blocked tasks, then crashing the kernel",
                stall.as_secs()
            );
            // Blocked (D) tasks first, then memory, then every task: a
            // thread looping in reclaim, or asleep on a socket, is not in
            // D state, yet may be the one everything waits for. The
            // kernel prints these without allocating; reading
            // /proc/<pid>/stack would need memory at the worst moment.
            for key in [b"w", b"m", b"t"] {
                let _ = sysrq.write_all(key);
                std::thread::sleep(Duration::from_millis(500));
            }
            std::thread::sleep(Duration::from_secs(3));
            let _ = sysrq.write_all(b"c");
            std::thread::sleep(Duration::from_secs(60));
            return Err("the kernel did not crash".into());
        }
        std::thread::sleep(every);
    }
}
