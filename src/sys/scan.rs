//! Finding bytes in a block: the crate's only SIMD, and its portable
//! fallback. The status parser finds the lines it records with it.
//!
//! SSE2 on x86_64 and NEON on aarch64 are part of every target of those
//! arches: 16 bytes per compare, chosen at compile time. Where the x86_64
//! CPU has AVX2 (Intel since 2013, AMD since 2015), [`search`] runs the
//! whole search compiled for it instead, 32 bytes per compare, after one
//! look at `cpuid` per process. Everywhere else (riscv64 without V, the
//! stub backend's targets) the same answer comes from integer arithmetic,
//! eight bytes at a time. Every way is compiled on every target that can
//! run it, so that the tests compare them.
//!
//! # Safety
//!
//! The `unsafe` here is the intrinsics: loads of 16 or 32 bytes from
//! inside a `&[u8; 64]` with the unaligned load instructions, register
//! arithmetic, `cpuid` and `xgetbv`; and the call of the AVX2 search, made
//! only once `cpuid` said the CPU has AVX2 and `xgetbv` that the kernel
//! saves its registers.
#![allow(unsafe_code)]

/// A search over blocks of 64 bytes, which [`search`] runs with the
/// fastest way to find bytes in a block that the CPU has.
pub(crate) trait Search {
    /// What the search answers.
    type Output;

    /// Runs the search; `find(block)` sets bit `i` exactly where
    /// `block[i]` is one of the two bytes [`search`] was given. Inlined, so
    /// that the search is compiled for the instructions `find` uses.
    fn run(&mut self, find: impl Fn(&[u8; 64]) -> u64) -> Self::Output;
}

/// Runs `search`, finding the bytes `a` and `b` in each block: with AVX2
/// where the x86_64 CPU has it, else as [`bytes_either`] does.
#[inline(always)]
pub(crate) fn search<S: Search>(search: &mut S, a: u8, b: u8) -> S::Output {
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "sse2",
        feature = "fast-status"
    ))]
    if has_avx2() {
        // SAFETY: the CPU has AVX2 and the kernel saves its registers
        // (`has_avx2`), which is all the function's target feature asks.
        return unsafe { search_avx2(search, a, b) };
    }
    search.run(|block| bytes_either(block, a, b))
}

/// [`search`] compiled for AVX2.
///
/// # Safety
/// The CPU must have AVX2, and the kernel must save its registers.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[cfg_attr(not(feature = "fast-status"), allow(dead_code))]
#[target_feature(enable = "avx2")]
unsafe fn search_avx2<S: Search>(search: &mut S, a: u8, b: u8) -> S::Output {
    // SAFETY: the caller's promise, and this function's target feature.
    search.run(|block| unsafe { bytes_either_avx2(block, a, b) })
}

/// Whether the CPU has AVX2 and the kernel saves the YMM registers (the
/// `cpuid` bits and `XCR0`, as the Intel SDM says to check them), asked
/// once per process and kept.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[cfg_attr(not(feature = "fast-status"), allow(dead_code))]
#[inline(always)]
fn has_avx2() -> bool {
    use core::sync::atomic::{AtomicU8, Ordering};
    // 0: not asked yet; 1: no; 2: yes. Racing threads ask alike.
    static AVX2: AtomicU8 = AtomicU8::new(0);
    match AVX2.load(Ordering::Relaxed) {
        0 => {
            let has = ask_avx2();
            AVX2.store(1 + u8::from(has), Ordering::Relaxed);
            has
        }
        known => known == 2,
    }
}

/// [`has_avx2`]'s question, put to the CPU.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[cfg_attr(not(feature = "fast-status"), allow(dead_code))]
#[cold]
#[inline(never)]
fn ask_avx2() -> bool {
    use core::arch::x86_64::__cpuid_count;
    // Leaf 0 says which leaves the others may ask. (`cpuid` is an unsafe
    // function before Rust 1.89, safe since.)
    // SAFETY: `cpuid` exists on every x86_64 CPU and only reads.
    #[allow(unused_unsafe)]
    let max = unsafe { __cpuid_count(0, 0) }.eax;
    if max < 7 {
        return false;
    }
    // SAFETY: as above; leaves 1 and 7 are at most `max`.
    #[allow(unused_unsafe)]
    let (features, extended) = unsafe { (__cpuid_count(1, 0), __cpuid_count(7, 0)) };
    let osxsave_and_avx = features.ecx & (1 << 27 | 1 << 28) == 1 << 27 | 1 << 28;
    if !osxsave_and_avx || extended.ebx & (1 << 5) == 0 {
        return false;
    }
    let xcr0: u32;
    // SAFETY: `xgetbv` with ECX = 0 reads XCR0, and exists when the OSXSAVE
    // bit is set (checked above); it writes only EAX and EDX.
    unsafe {
        core::arch::asm!(
            "xgetbv",
            in("ecx") 0,
            out("eax") xcr0,
            out("edx") _,
            options(nomem, nostack, preserves_flags),
        );
    }
    // The kernel saves the SSE and AVX state (bits 1 and 2).
    xcr0 & 0b110 == 0b110
}

/// Where `block` holds `a` or `b`: bit `i` of the result is set exactly
/// when `block[i]` is one of them.
#[inline(always)]
pub(crate) fn bytes_either(block: &[u8; 64], a: u8, b: u8) -> u64 {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        bytes_either_sse2(block, a, b)
    }
    #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
    {
        bytes_either_neon(block, a, b)
    }
    #[cfg(not(any(
        all(target_arch = "x86_64", target_feature = "sse2"),
        all(target_arch = "aarch64", target_feature = "neon")
    )))]
    {
        bytes_either_by_word(block, a, b)
    }
}

/// [`bytes_either`] with AVX2.
///
/// # Safety
/// The CPU must have AVX2 ([`has_avx2`]).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[cfg_attr(not(feature = "fast-status"), allow(dead_code))]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn bytes_either_avx2(block: &[u8; 64], a: u8, b: u8) -> u64 {
    use core::arch::x86_64::{
        _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_movemask_epi8, _mm256_or_si256,
        _mm256_set1_epi8,
    };
    let mut found = 0u64;
    for (i, lane) in block.chunks_exact(32).enumerate() {
        // SAFETY: the CPU has AVX2 (the caller's promise); `lane` is 32
        // readable bytes, and the unaligned load needs no alignment. The
        // other intrinsics only compute on registers.
        let mask = unsafe {
            let x = _mm256_loadu_si256(lane.as_ptr().cast());
            let hit = _mm256_or_si256(
                _mm256_cmpeq_epi8(x, _mm256_set1_epi8(a as i8)),
                _mm256_cmpeq_epi8(x, _mm256_set1_epi8(b as i8)),
            );
            _mm256_movemask_epi8(hit) as u32
        };
        found |= u64::from(mask) << (32 * i);
    }
    found
}

/// [`bytes_either`] with SSE2.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn bytes_either_sse2(block: &[u8; 64], a: u8, b: u8) -> u64 {
    use core::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    let mut found = 0u64;
    for (i, lane) in block.chunks_exact(16).enumerate() {
        // SAFETY: SSE2 is part of every x86_64 target (and checked by the
        // cfg above); `lane` is 16 readable bytes, and the unaligned load
        // needs no alignment. The other intrinsics only compute on
        // registers.
        let mask = unsafe {
            let x = _mm_loadu_si128(lane.as_ptr().cast());
            let hit = _mm_or_si128(
                _mm_cmpeq_epi8(x, _mm_set1_epi8(a as i8)),
                _mm_cmpeq_epi8(x, _mm_set1_epi8(b as i8)),
            );
            _mm_movemask_epi8(hit) as u16
        };
        found |= u64::from(mask) << (16 * i);
    }
    found
}

/// [`bytes_either`] with NEON: the block loaded de-interleaved (`ld4`:
/// register `k` holds bytes `4j + k`), compared, then the four masks
/// merged by shift-and-insert into one nibble per group of four bytes,
/// and the nibbles narrowed into the 64 bits.
#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
#[inline(always)]
fn bytes_either_neon(block: &[u8; 64], a: u8, b: u8) -> u64 {
    use core::arch::aarch64::{
        vceqq_u8, vdupq_n_u8, vget_lane_u64, vld4q_u8, vorrq_u8, vreinterpret_u64_u8,
        vreinterpretq_u16_u8, vshrn_n_u16, vsriq_n_u8,
    };
    // SAFETY: NEON is part of every aarch64 Linux target (and checked by
    // the cfg above); `vld4q_u8` reads the 64 bytes of `block`, and needs
    // no alignment. The other intrinsics only compute on registers.
    unsafe {
        let (va, vb) = (vdupq_n_u8(a), vdupq_n_u8(b));
        let x = vld4q_u8(block.as_ptr());
        let hit = |v| vorrq_u8(vceqq_u8(v, va), vceqq_u8(v, vb));
        let (h0, h1, h2, h3) = (hit(x.0), hit(x.1), hit(x.2), hit(x.3));
        // Bit 7 from h1, 6 from h0; then 7 to 4 from h3, h2, h1, h0; then
        // the same four below them: in each byte `j`, bytes 4j to 4j + 3.
        let pairs = vsriq_n_u8::<1>(h1, h0);
        let pairs_high = vsriq_n_u8::<1>(h3, h2);
        let fours = vsriq_n_u8::<2>(pairs_high, pairs);
        let fours = vsriq_n_u8::<4>(fours, fours);
        // Two nibbles per 16-bit lane, narrowed into one byte: bytes 8m
        // to 8m + 7 in byte m, the first in its lowest bit.
        let bits = vshrn_n_u16::<4>(vreinterpretq_u16_u8(fours));
        vget_lane_u64::<0>(vreinterpret_u64_u8(bits))
    }
}

/// [`bytes_either`] eight bytes at a time, in integer arithmetic: for
/// targets without SIMD (riscv64 without V, the stub backend's).
#[cfg_attr(
    any(
        all(target_arch = "x86_64", target_feature = "sse2"),
        all(target_arch = "aarch64", target_feature = "neon")
    ),
    allow(dead_code)
)]
#[inline(always)]
fn bytes_either_by_word(block: &[u8; 64], a: u8, b: u8) -> u64 {
    const LOW: u64 = splat(0x7f);
    let mut found = 0;
    for (i, word) in block.chunks_exact(8).enumerate() {
        let Ok(word) = <[u8; 8]>::try_from(word) else {
            continue;
        };
        let x = u64::from_le_bytes(word);
        // 0x80 in each byte of `v` that is zero, and only there: no borrow
        // crosses a byte, since each byte's low seven bits plus 0x7f stay
        // below 0x100.
        let zero = |v: u64| !(((v & LOW) + LOW) | v | LOW);
        let hits = zero(x ^ splat(a)) | zero(x ^ splat(b));
        // One bit per byte, gathered into the top byte by the multiply.
        let bits = (hits >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56;
        found |= bits << (8 * i);
    }
    found
}

/// `b` in each byte of a word.
const fn splat(b: u8) -> u64 {
    u64::from_ne_bytes([b; 8])
}

#[cfg(test)]
mod tests {
    use super::{bytes_either, bytes_either_by_word};

    /// splitmix64, for blocks of bytes that hit every case.
    fn next(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    #[test]
    fn simd_and_word_loop_are_exact() {
        let mut state = 16;
        for round in 0..200_000 {
            let mut block = [0u8; 64];
            for b in block.iter_mut() {
                let r = next(&mut state);
                // Mostly the bytes around the targets, sometimes any byte.
                *b = match r % 8 {
                    0 => b'V',
                    1 => b'C',
                    2 => b'W',
                    3 => b'B',
                    4 => b'\n',
                    5 => (r >> 8) as u8,
                    6 => b'V' ^ (1 << ((r >> 8) % 8)),
                    _ => b'C' ^ (1 << ((r >> 8) % 8)),
                };
            }
            let exact = block.iter().enumerate().fold(0u64, |m, (i, &b)| {
                m | (u64::from(b == b'V' || b == b'C') << i)
            });
            assert_eq!(
                bytes_either(&block, b'V', b'C'),
                exact,
                "round {round}: {block:?}"
            );
            let by_word = bytes_either_by_word(&block, b'V', b'C');
            assert_eq!(by_word, exact, "round {round}: {block:?}");
            #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
            if super::has_avx2() {
                // SAFETY: the CPU has AVX2 (`has_avx2`).
                let wide = unsafe { super::bytes_either_avx2(&block, b'V', b'C') };
                assert_eq!(wide, exact, "round {round}: {block:?}");
            }
        }
    }
}
