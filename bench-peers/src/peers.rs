//! The implementations compared, and the two things done with each:
//! create + drop one 32-byte secret (timed), and allocate 32-byte secrets,
//! keeping every one alive, until the first failure (counted).

use std::hint::black_box;
use std::ptr::NonNull;
use std::time::Instant;

use mlock::secret::{Backing, LockedBuf, Pool};

use crate::sodium::SodiumBuf;

/// The size of every secret, in bytes.
pub const SECRET: usize = 32;

/// The size of the crate's pool: 7 MiB, under the 8 MiB `RLIMIT_MEMLOCK`
/// of the counting child with room for what else the process locks.
pub const POOL_BYTES: usize = 7 << 20;

/// One implementation of a secret allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// `mlock::secret::Pool::new(7 MiB)`, then `pool.alloc::<32>()`.
    Pool,
    /// `LockedBuf::<32>::with_backing(Backing::Anonymous)`.
    LockedAnonymous,
    /// `LockedBuf::<32>::with_backing(Backing::SecretMem)`.
    LockedSecretMem,
    /// libsodium's `sodium_malloc(32)` / `sodium_free`.
    Sodium,
    /// `memsec::malloc::<[u8; 32]>()` / `memsec::free`.
    Memsec,
    /// `secrets::SecretBox::<[u8; 32]>::zero()`.
    Secrets,
}

impl Peer {
    /// Every implementation, the crate's `Pool` (the baseline) first.
    pub const ALL: [Peer; 6] = [
        Peer::Pool,
        Peer::LockedAnonymous,
        Peer::LockedSecretMem,
        Peer::Sodium,
        Peer::Memsec,
        Peer::Secrets,
    ];

    /// The name in the machine-readable lines and on the command line.
    pub fn id(self) -> &'static str {
        match self {
            Peer::Pool => "pool",
            Peer::LockedAnonymous => "lockedbuf-anonymous",
            Peer::LockedSecretMem => "lockedbuf-secretmem",
            Peer::Sodium => "libsodium",
            Peer::Memsec => "memsec",
            Peer::Secrets => "secrets",
        }
    }

    /// The implementation named `id`.
    pub fn from_id(id: &str) -> Option<Peer> {
        Peer::ALL.into_iter().find(|p| p.id() == id)
    }

    /// What is called, for the human table.
    pub fn label(self) -> &'static str {
        match self {
            Peer::Pool => "mlock Pool (7 MiB), alloc::<32>",
            Peer::LockedAnonymous => "mlock LockedBuf<32>, Anonymous",
            Peer::LockedSecretMem => "mlock LockedBuf<32>, SecretMem",
            Peer::Sodium => "libsodium sodium_malloc(32)",
            Peer::Memsec => "memsec malloc::<[u8; 32]>",
            Peer::Secrets => "secrets SecretBox<[u8; 32]>",
        }
    }

    /// Whether it calls libsodium (which needs `sodium_init` first).
    pub fn uses_sodium(self) -> bool {
        matches!(self, Peer::Sodium | Peer::Secrets)
    }
}

/// The name of an errno value that allocators leave, or its number.
fn errno_name(err: &std::io::Error) -> String {
    match err.raw_os_error() {
        Some(libc::ENOMEM) => "ENOMEM".into(),
        Some(libc::EAGAIN) => "EAGAIN".into(),
        Some(libc::EPERM) => "EPERM".into(),
        Some(libc::EINVAL) => "EINVAL".into(),
        Some(n) => format!("errno {n}"),
        None => "no errno".into(),
    }
}

/// A live `memsec::malloc` allocation, freed on drop.
struct MemsecBuf(NonNull<[u8; SECRET]>);

impl MemsecBuf {
    fn new() -> Option<MemsecBuf> {
        // SAFETY: memsec::malloc returns None or a pointer to a
        // `[u8; 32]` between its guard pages, which only memsec::free may
        // release; `[u8; 32]` has no invalid bit patterns.
        unsafe { memsec::malloc::<[u8; SECRET]>() }.map(MemsecBuf)
    }
}

impl Drop for MemsecBuf {
    fn drop(&mut self) {
        // SAFETY: the pointer came from memsec::malloc and is freed
        // exactly once, here.
        unsafe { memsec::free(self.0) }
    }
}

/// What the timing keeps from one run to the next: the crate's pool, made
/// once (its creation is not what is timed).
pub struct Timing {
    pool: Pool,
}

impl Timing {
    /// Makes the pool and initializes libsodium.
    pub fn new() -> Result<Timing, String> {
        crate::sodium::init()?;
        let pool = Pool::new(POOL_BYTES).map_err(|e| format!("Pool::new: {e:?}"))?;
        Ok(Timing { pool })
    }

    /// Nanoseconds per create + drop of one 32-byte secret through `peer`,
    /// over `pairs` pairs; the first error ends the run and is returned.
    pub fn pairs(&self, peer: Peer, pairs: u32) -> Result<f64, String> {
        let start = Instant::now();
        match peer {
            Peer::Pool => {
                for _ in 0..pairs {
                    let key = self.pool.alloc::<SECRET>().map_err(|e| format!("{e:?}"))?;
                    black_box(key.as_bytes());
                }
            }
            Peer::LockedAnonymous | Peer::LockedSecretMem => {
                let backing = if peer == Peer::LockedAnonymous {
                    Backing::Anonymous
                } else {
                    Backing::SecretMem
                };
                for _ in 0..pairs {
                    let key =
                        LockedBuf::<SECRET>::with_backing(backing).map_err(|e| format!("{e:?}"))?;
                    black_box(key.as_bytes());
                }
            }
            Peer::Sodium => {
                for _ in 0..pairs {
                    black_box(SodiumBuf::new(SECRET).map_err(|e| errno_name(&e))?);
                }
            }
            Peer::Memsec => {
                for _ in 0..pairs {
                    black_box(MemsecBuf::new().ok_or("None")?);
                }
            }
            Peer::Secrets => {
                for _ in 0..pairs {
                    black_box(secrets::SecretBox::<[u8; SECRET]>::zero());
                }
            }
        }
        Ok(start.elapsed().as_nanos() as f64 / f64::from(pairs.max(1)))
    }
}

/// How a count ended without a panic or a signal.
pub enum Ending {
    /// `max` secrets are alive.
    Reached,
    /// The allocation failed and said so: the error's name.
    Error(String),
}

/// Allocates 32-byte secrets through `peer` and keeps each alive, up to
/// `max`. `start` runs once the room to keep them is made and before
/// anything else (the crate's pool included) is allocated; `progress` hears
/// the number alive after every success; `end` hears how it ended while
/// every secret is still alive (it may end the process there).
pub fn count(
    peer: Peer,
    max: usize,
    start: &mut dyn FnMut(),
    progress: &mut dyn FnMut(usize),
    end: &mut dyn FnMut(Ending, usize),
) {
    match peer {
        Peer::Pool => {
            let kept = room(max, start);
            // Left alive until the process exits, as every secret is.
            let pool: &'static Pool = match Pool::new(POOL_BYTES) {
                Ok(pool) => Box::leak(Box::new(pool)),
                Err(e) => return end(Ending::Error(format!("Pool::new: {e:?}")), 0),
            };
            keep(kept, max, progress, end, || {
                pool.alloc::<SECRET>().map_err(|e| format!("{e:?}"))
            })
        }
        Peer::LockedAnonymous => keep(room(max, start), max, progress, end, || {
            LockedBuf::<SECRET>::with_backing(Backing::Anonymous).map_err(|e| format!("{e:?}"))
        }),
        Peer::LockedSecretMem => keep(room(max, start), max, progress, end, || {
            LockedBuf::<SECRET>::with_backing(Backing::SecretMem).map_err(|e| format!("{e:?}"))
        }),
        Peer::Sodium => keep(room(max, start), max, progress, end, || {
            SodiumBuf::new(SECRET).map_err(|e| format!("NULL ({})", errno_name(&e)))
        }),
        Peer::Memsec => keep(room(max, start), max, progress, end, || {
            MemsecBuf::new().ok_or_else(|| "None".to_string())
        }),
        Peer::Secrets => keep(room(max, start), max, progress, end, || {
            Ok::<_, String>(secrets::SecretBox::<[u8; SECRET]>::zero())
        }),
    }
}

/// Room for `max` secrets, made before `start` runs: the vector adds no
/// mapping while secrets are counted (its pages fault in, which maps
/// nothing new).
fn room<T>(max: usize, start: &mut dyn FnMut()) -> Vec<T> {
    let kept = Vec::with_capacity(max);
    start();
    kept
}

/// The counting loop for one kind of secret.
fn keep<T>(
    mut kept: Vec<T>,
    max: usize,
    progress: &mut dyn FnMut(usize),
    end: &mut dyn FnMut(Ending, usize),
    mut alloc: impl FnMut() -> Result<T, String>,
) {
    while kept.len() < max {
        match alloc() {
            Ok(secret) => {
                kept.push(secret);
                progress(kept.len());
            }
            Err(e) => return end(Ending::Error(e), kept.len()),
        }
    }
    end(Ending::Reached, kept.len());
}
