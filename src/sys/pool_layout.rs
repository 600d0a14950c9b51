//! The layout of a pool's data pages, shared by both backends: sizes and
//! offsets only, no memory touched.
//!
//! ```text
//! | key (16) | bitmap (8 per 64 granules) | granules ... |
//! ```
//!
//! The bitmap has one bit for every 16-byte granule of the data pages
//! (a few more than there are granules after the key and the bitmap); a
//! slot never crosses a bitmap word, so a word holds `64 / g` slots of `g`
//! granules.

/// The unit of the pool: every slot starts on a multiple of it.
pub(crate) const GRANULE: usize = 16;
/// Bytes of canary on each side of a secret.
pub(crate) const CANARY_LEN: usize = 16;
/// Granules per bitmap word, and so the most one slot may take.
pub(crate) const WORD_BITS: usize = 64;
/// The largest secret a slot holds: one word of granules less the two
/// canaries.
pub(crate) const MAX_LEN: usize = WORD_BITS * GRANULE - 2 * CANARY_LEN;
/// Bytes at the start of the data pages before the bitmap: the pool's
/// canary key.
pub(crate) const KEY_LEN: usize = 16;

/// Granules of a slot for a secret of `len` bytes: two canaries, the
/// secret, rounded up.
pub(crate) const fn slot_granules(len: usize) -> usize {
    (len + 2 * CANARY_LEN).div_ceil(GRANULE)
}

/// Bitmap words for data pages of `data_len` bytes: a bit per granule.
pub(crate) const fn words(data_len: usize) -> usize {
    (data_len / GRANULE).div_ceil(WORD_BITS)
}

/// Where the granules start in data pages of `data_len` bytes: after the
/// key and the bitmap, on a granule.
pub(crate) const fn header_len(data_len: usize) -> usize {
    (KEY_LEN + words(data_len) * 8).next_multiple_of(GRANULE)
}

/// The data bytes in which `count` secrets of `len` bytes (`1..=MAX_LEN`)
/// fit at once: whole bitmap words of slots after the header that those
/// bytes need. Saturates instead of overflowing.
pub(crate) const fn size_for(len: usize, count: usize) -> usize {
    let per_word = WORD_BITS / slot_granules(if len > MAX_LEN { MAX_LEN } else { len });
    let slots = count.div_ceil(per_word).saturating_mul(WORD_BITS * GRANULE);
    // The header grows with the bytes it describes: settle it.
    let mut bytes = slots.saturating_add(header_len(slots));
    while bytes < usize::MAX && slots.saturating_add(header_len(bytes)) > bytes {
        bytes = slots.saturating_add(header_len(bytes));
    }
    bytes
}
