//! Holds two random markers and aborts, for the core-dump scenario of
//! `cargo xtask vm`: one marker in a [`mlock::secret::LockedBuf`] (locked and
//! excluded from core dumps), one in ordinary heap memory.
//!
//! `vm_secret [secretmem|anonymous]` requires that backing for the
//! `LockedBuf` (without an argument, `LockedBuf::new` chooses) and writes
//! the backing it got to `/tmp/backing.marker`. `vm_secret backing` prints
//! the backing `LockedBuf::new` chooses in this kernel and exits;
//! `vm_secret page-size` prints the page size the kernel gave the process
//! (`AT_PAGESZ` of `/proc/self/auxv`) and exits.
//!
//! It writes each marker to a file (`/tmp/protected.marker`,
//! `/tmp/control.marker`) and never prints them, so the only copies in its
//! memory are the buffers themselves. The harness then searches the core
//! file with `vm_secret find <core> <marker file>` (busybox `grep` stops at
//! the first NUL of a line, so it cannot search a core): the protected
//! marker must be absent and the control marker present, or the test
//! proved nothing.

use std::io::Read;

const LEN: usize = 32;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [cmd, haystack, needle] = &args[..] {
        if cmd == "find" {
            find(haystack, needle);
        }
    }
    let backing = match args.first().map(String::as_str) {
        None => None,
        Some("secretmem") => Some(mlock::secret::Backing::SecretMem),
        Some("anonymous") => Some(mlock::secret::Backing::Anonymous),
        Some("page-size") => {
            println!("{}", page_size());
            std::process::exit(0);
        }
        Some("backing") => {
            match mlock::secret::LockedBuf::<LEN>::new() {
                Ok(buf) => println!("{}", name(buf.backing())),
                Err(e) => println!("error: {e}"),
            }
            std::process::exit(0);
        }
        Some(other) => {
            eprintln!("vm_secret: unknown argument {other:?}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(backing) {
        eprintln!("vm_secret: failed: {e}");
        std::process::exit(1);
    }
    eprintln!("vm_secret: aborting to dump core");
    std::process::abort();
}

/// `AT_PAGESZ` from this process's auxiliary vector: pairs of native
/// words (type, value), ended by `AT_NULL`.
fn page_size() -> usize {
    const AT_PAGESZ: usize = 6;
    let auxv = std::fs::read("/proc/self/auxv").expect("reading /proc/self/auxv");
    let word = std::mem::size_of::<usize>();
    let words: Vec<usize> = auxv
        .chunks_exact(word)
        .map(|w| usize::from_ne_bytes(w.try_into().expect("a whole word")))
        .collect();
    words
        .chunks_exact(2)
        .find(|pair| pair[0] == AT_PAGESZ)
        .map(|pair| pair[1])
        .expect("AT_PAGESZ in the auxiliary vector")
}

/// The word for a backing in the summary lines.
fn name(backing: mlock::secret::Backing) -> &'static str {
    match backing {
        mlock::secret::Backing::SecretMem => "secretmem",
        _ => "anonymous",
    }
}

fn run(backing: Option<mlock::secret::Backing>) -> Result<(), String> {
    let mut protected = match backing {
        None => mlock::secret::LockedBuf::<LEN>::new(),
        Some(b) => mlock::secret::LockedBuf::<LEN>::with_backing(b),
    }
    .map_err(|e| format!("LockedBuf: {e}"))?;
    std::fs::write("/tmp/backing.marker", name(protected.backing()))
        .map_err(|e| format!("writing /tmp/backing.marker: {e}"))?;
    let mut control = vec![0_u8; LEN];
    // Random bytes straight into the buffers, then into letters in place:
    // no copy of a marker lands anywhere else.
    let mut random =
        std::fs::File::open("/dev/urandom").map_err(|e| format!("/dev/urandom: {e}"))?;
    random
        .read_exact(protected.as_bytes_mut())
        .map_err(|e| format!("reading /dev/urandom: {e}"))?;
    random
        .read_exact(&mut control)
        .map_err(|e| format!("reading /dev/urandom: {e}"))?;
    to_letters(protected.as_bytes_mut());
    // Done second, so that registers last hold the control marker, which
    // may be in the dump anyway.
    to_letters(&mut control);
    std::fs::write("/tmp/protected.marker", protected.as_bytes())
        .map_err(|e| format!("writing /tmp/protected.marker: {e}"))?;
    std::fs::write("/tmp/control.marker", &control)
        .map_err(|e| format!("writing /tmp/control.marker: {e}"))?;
    let dumpable = mlock::secret::is_dumpable().map_err(|e| format!("is_dumpable: {e}"))?;
    if !dumpable {
        return Err("the process is not dumpable, so no core would be written".into());
    }
    // Both buffers stay alive through the abort.
    std::mem::forget(protected);
    std::mem::forget(control);
    Ok(())
}

fn to_letters(bytes: &mut [u8]) {
    for byte in bytes {
        *byte = b'a' + *byte % 26;
    }
}

/// `vm_secret find <file> <needle file>`: prints `present` or `absent` and
/// exits 0, or exits 2 on an I/O error or an empty needle.
fn find(haystack: &str, needle: &str) -> ! {
    let read = |path: &str| {
        std::fs::read(path).unwrap_or_else(|e| {
            eprintln!("vm_secret: reading {path}: {e}");
            std::process::exit(2)
        })
    };
    let (haystack, needle) = (read(haystack), read(needle));
    if needle.is_empty() {
        eprintln!("vm_secret: empty marker");
        std::process::exit(2);
    }
    let found = haystack
        .windows(needle.len())
        .any(|w| w == needle.as_slice());
    println!("{}", if found { "present" } else { "absent" });
    std::process::exit(0)
}
