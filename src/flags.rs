//! [`Flags`]: which memory `mlockall(2)` locks, and when.

/// The `MCL_*` values, from `linux-raw-sys` on Linux (they differ per
/// arch: powerpc and sparc use other numbers). Elsewhere no call is ever
/// made, so the asm-generic values stand in.
mod mcl {
    #[cfg(target_os = "linux")]
    pub(super) use linux_raw_sys::general::{MCL_CURRENT, MCL_FUTURE, MCL_ONFAULT};

    #[cfg(not(target_os = "linux"))]
    pub(super) const MCL_CURRENT: u32 = 1;
    #[cfg(not(target_os = "linux"))]
    pub(super) const MCL_FUTURE: u32 = 2;
    #[cfg(not(target_os = "linux"))]
    pub(super) const MCL_ONFAULT: u32 = 4;
}

bitflags::bitflags! {
    /// The flags of `mlockall(2)`: what to lock, and when.
    ///
    /// A set is built in `const` context, so a configuration can live in a
    /// `static`:
    ///
    /// ```
    /// use mlock::Flags;
    ///
    /// static SWAP_DAEMON: Flags = Flags::CURRENT.union(Flags::FUTURE);
    /// const _: () = assert!(SWAP_DAEMON.contains(Flags::FUTURE));
    /// assert_eq!(SWAP_DAEMON, Flags::CURRENT | Flags::FUTURE);
    /// ```
    ///
    /// A valid set for [`lock_all`](crate::lock_all) holds `CURRENT`,
    /// `FUTURE` or both, optionally with `ONFAULT`; see
    /// [`Flags::is_valid`].
    ///
    /// # References
    /// - [`mlockall(2)`](https://man7.org/linux/man-pages/man2/mlockall.2.html)
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct Flags: u32 {
        /// `MCL_CURRENT`: lock every page mapped now. Without `ONFAULT` the
        /// kernel faults all of them in first, so the call takes time and
        /// RSS in proportion to the mapped size.
        const CURRENT = mcl::MCL_CURRENT;
        /// `MCL_FUTURE`: lock every mapping created later (heap growth,
        /// thread stacks, `mmap`). Once `RLIMIT_MEMLOCK` is reached, those
        /// later mappings fail with `EAGAIN` or `ENOMEM`.
        const FUTURE = mcl::MCL_FUTURE;
        /// `MCL_ONFAULT` (Linux 4.4+): with `CURRENT` or `FUTURE`, lock pages
        /// only when they are first touched, instead of faulting them all in.
        const ONFAULT = mcl::MCL_ONFAULT;
    }
}

impl Flags {
    /// Whether `lock_all` accepts this set: `CURRENT` or `FUTURE` is present,
    /// and no unknown bit is. An empty set, or `ONFAULT` alone, is invalid
    /// (the kernel answers `EINVAL` to both).
    ///
    /// ```
    /// use mlock::Flags;
    /// const _: () = assert!(!Flags::empty().is_valid());
    /// const _: () = assert!(!Flags::ONFAULT.is_valid());
    /// const _: () = assert!(Flags::FUTURE.union(Flags::ONFAULT).is_valid());
    /// ```
    #[must_use]
    pub const fn is_valid(self) -> bool {
        self.intersects(Flags::CURRENT.union(Flags::FUTURE))
            && Flags::all().contains(Flags::from_bits_retain(self.bits()))
    }
}
