//! `PoolPages`: the memory behind a pool of small secrets (`Pool`), one
//! [`Region`] cut into 16-byte granules, with a bitmap of the granules in
//! use at its start and a canary on each side of every secret.
#![allow(unsafe_code)]

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::linux::page_size;
use super::mem::zeroize;
use super::pool_layout::{
    header_len, slot_granules, words, CANARY_LEN, GRANULE, KEY_LEN, WORD_BITS,
};
use super::secret_pages::{fatal, fill_random, mix, Region};
use super::Backing;
use crate::Error;

/// Mixed into a canary: which side of the secret it guards.
const FRONT: u64 = 0x9e37_79b9_7f4a_7c15;
const BACK: u64 = 0xc2b2_ae3d_27d4_eb4f;

/// The data pages of a pool, between guards (see `pool_layout`):
///
/// ```text
/// | guard | key (16) | bitmap (8 per 64 granules) | granules ... | guard |
/// ```
///
/// A slot of a secret of `len` bytes is `ceil((len + 32) / 16)` granules:
/// a canary of 16 bytes, the secret (16-byte aligned), a canary of 16
/// bytes right after its last byte, and padding. Both canaries are derived
/// from the pool's random key and the slot's address, so no two slots'
/// canaries are alike. A bit set in the bitmap is a granule in use (the
/// bits past the last granule are set once, for good). Granules not in use
/// are zero: a slot is zeroed when it is given back.
pub(crate) struct PoolPages {
    region: Region,
    /// The word the last successful search ended in: where the next one
    /// starts.
    hint: AtomicUsize,
}

/// One slot of a [`PoolPages`], owned by whoever took it: its bits are set
/// in the bitmap until its drop gives it back, so no other slot overlaps
/// it meanwhile.
pub(crate) struct Slot<'a> {
    pool: &'a PoolPages,
    /// The slot's first granule (the front canary).
    addr: usize,
    len: usize,
    /// Set by [`Slot::disown`] in a forked child: the drop leaves the
    /// memory alone.
    disowned: bool,
}

impl PoolPages {
    /// Maps `bytes` (rounded up to pages) of locked memory between guard
    /// pages and lays the pool out in it.
    pub(crate) fn new(bytes: usize, want: Option<Backing>) -> Result<PoolPages, Error> {
        let data_len = bytes
            .max(1)
            .checked_next_multiple_of(page_size())
            .ok_or(Error::InvalidArgument)?;
        let region = Region::new(data_len, want, true)?;
        let data = region.data_addr();
        let granules = (data_len - header_len(data_len)) / GRANULE;
        let pool = PoolPages {
            region,
            hint: AtomicUsize::new(0),
        };
        // SAFETY: the key's 16 bytes start the data pages, which are
        // mapped read-write, zeroed and owned by `pool`; nothing refers to
        // them yet.
        fill_random(
            unsafe { core::slice::from_raw_parts_mut(data as *mut u8, KEY_LEN) },
            data,
        );
        // The granules past the last one are never handed out.
        let bitmap = pool.bitmap();
        for (i, word) in bitmap.iter().enumerate() {
            let first = i * WORD_BITS;
            if first + WORD_BITS > granules {
                // Fewer than 64 real granules here: the shift is in range.
                word.store(!0u64 << granules.saturating_sub(first), Ordering::Relaxed);
            }
        }
        Ok(pool)
    }

    /// The mapping: backing, guards, fork advice, sealing.
    pub(crate) fn region(&self) -> &Region {
        &self.region
    }

    /// The mapping, to disown or seal.
    pub(crate) fn region_mut(&mut self) -> &mut Region {
        &mut self.region
    }

    /// Where the granules start: after the key and the bitmap.
    fn granules_at(&self) -> usize {
        self.region.data_addr() + header_len(self.region.data_len())
    }

    /// The bitmap, in the data pages after the key.
    fn bitmap(&self) -> &[AtomicU64] {
        // SAFETY: `words(data_len)` 8-byte words follow the 16-byte key at the start
        // of the page-aligned data pages, which are mapped read-write for
        // the life of `self` and which nothing else refers to as bytes (the
        // key and the granules lie apart); an `AtomicU64` has the size and
        // alignment of a `u64`, and any bit pattern is valid.
        unsafe {
            core::slice::from_raw_parts(
                (self.region.data_addr() + KEY_LEN) as *const AtomicU64,
                words(self.region.data_len()),
            )
        }
    }

    /// The canary of the slot at `addr` on side `side` (`FRONT`, `BACK`):
    /// the pool's key mixed with both.
    fn canary(&self, addr: usize, side: u64) -> [u8; CANARY_LEN] {
        // SAFETY: the key's 16 bytes start the page-aligned data pages, are
        // read-only after `new` and mapped for the life of `self`; any bit
        // pattern is a valid `[u64; 2]`.
        let [k0, k1] = unsafe { (self.region.data_addr() as *const [u64; 2]).read() };
        let word = |k: u64, salt: u64| mix(k ^ (addr as u64).rotate_left(17) ^ salt);
        let mut canary = [0u8; CANARY_LEN];
        canary[..8].copy_from_slice(&word(k0, side).to_ne_bytes());
        canary[8..].copy_from_slice(&word(k1, side.rotate_left(32)).to_ne_bytes());
        canary
    }

    /// Takes a zeroed slot for `len` bytes (`1..=MAX_LEN`), its canaries
    /// written, or `None` if no run of free granules is long enough. Any
    /// thread may call it at any time: a slot is taken by one
    /// compare-and-swap on its bitmap word.
    pub(crate) fn take(&self, len: usize) -> Option<Slot<'_>> {
        let need = slot_granules(len);
        let bitmap = self.bitmap();
        let start = self.hint.load(Ordering::Relaxed) % bitmap.len();
        for w in (start..bitmap.len()).chain(0..start) {
            let word = &bitmap[w];
            let mut seen = word.load(Ordering::Relaxed);
            while let Some(bit) = free_run(seen, need) {
                let taken = seen | run_mask(need, bit);
                // Acquire: the slot's zeroing by its last owner (Release in
                // `give_back`) happens before our use of it.
                match word.compare_exchange_weak(seen, taken, Ordering::Acquire, Ordering::Relaxed)
                {
                    Ok(_) => {
                        self.hint.store(w, Ordering::Relaxed);
                        let addr = self.granules_at() + (w * WORD_BITS + bit as usize) * GRANULE;
                        return Some(self.fill(addr, len));
                    }
                    Err(now) => seen = now,
                }
            }
        }
        None
    }

    /// Writes the canaries of the slot at `addr` and zeroes its secret.
    fn fill(&self, addr: usize, len: usize) -> Slot<'_> {
        let front = self.canary(addr, FRONT);
        let back = self.canary(addr, BACK);
        // SAFETY: the slot's granules are mapped read-write and ours alone
        // since their bits were set; the canaries and the secret lie inside
        // them (`slot_granules`).
        unsafe {
            let at = addr as *mut u8;
            core::ptr::copy_nonoverlapping(front.as_ptr(), at, CANARY_LEN);
            core::ptr::write_bytes(at.add(CANARY_LEN), 0, len);
            core::ptr::copy_nonoverlapping(back.as_ptr(), at.add(CANARY_LEN + len), CANARY_LEN);
        }
        Slot {
            pool: self,
            addr,
            len,
            disowned: false,
        }
    }

    /// Gives a slot back (its drop): checks both canaries, zeroes the
    /// slot, and clears its bits. A changed canary zeroes the slot, writes
    /// one line to stderr and ends the process with `SIGABRT`.
    fn give_back(&self, slot: &Slot<'_>) {
        let need = slot_granules(slot.len);
        let front = self.canary(slot.addr, FRONT);
        let back = self.canary(slot.addr, BACK);
        // SAFETY: the slot's granules are mapped read-write and its owner's
        // alone, and the owner is being dropped: no reference into them
        // survives (every slice borrowed it).
        let bytes =
            unsafe { core::slice::from_raw_parts_mut(slot.addr as *mut u8, need * GRANULE) };
        let intact =
            bytes[..CANARY_LEN] == front && bytes[CANARY_LEN + slot.len..][..CANARY_LEN] == back;
        zeroize(bytes);
        if !intact {
            fatal(
                b"mlock: a canary beside a secret in a Pool was overwritten \
                  (a write past its end or before its start); aborting\n",
            );
        }
        let first = (slot.addr - self.granules_at()) / GRANULE;
        let (w, bit) = (first / WORD_BITS, first % WORD_BITS);
        // Release: the zeroing above happens before the next owner's use.
        self.bitmap()[w].fetch_and(!run_mask(need, bit as u32), Ordering::Release);
    }
}

impl Slot<'_> {
    /// Marks a slot inherited through `fork(2)`: the pool's pages are not
    /// this process's to check or zero (they may not even be mapped).
    pub(crate) fn disown(&mut self) {
        self.disowned = true;
    }

    /// The secret's bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: the slot's granules are mapped read-write while the pool
        // lives (the lifetime), and ours alone; the secret's `len` bytes
        // follow the front canary inside them, and the borrow of `self`
        // stops `bytes_mut` and the slot's return while the slice lives.
        unsafe { core::slice::from_raw_parts((self.addr + CANARY_LEN) as *const u8, self.len) }
    }

    /// The secret's bytes, writable.
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, and the unique borrow of `self` makes this
        // the only reference to the bytes.
        unsafe { core::slice::from_raw_parts_mut((self.addr + CANARY_LEN) as *mut u8, self.len) }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if !self.disowned {
            self.pool.give_back(self);
        }
    }
}

/// The lowest bit at which `need` clear bits of `word` start, if any.
fn free_run(word: u64, need: usize) -> Option<u32> {
    let free = !word;
    let mut run = free;
    for shift in 1..need {
        // A bit survives if the `shift` bits above it are free too; bits
        // shifted in from the top are 0, so no run crosses the word's end.
        run &= free >> shift;
    }
    (run != 0).then(|| run.trailing_zeros())
}

/// The bits of a run of `need` granules (`1..=64`) that starts at `bit`.
fn run_mask(need: usize, bit: u32) -> u64 {
    (u64::MAX >> (WORD_BITS - need)) << bit
}
