//! Keeping secrets out of swap, core dumps and forked children.
//!
//! | concern | items |
//! |---|---|
//! | one secret | [`LockedBuf`], [`SealedBuf`] (no access outside a borrow: [`SealedRef`], [`SealedMut`]), [`Backing`], [`Guards`] |
//! | many small secrets | [`Pool`], [`PoolBuf`] |
//! | core dumps | [`disable_core_dumps`], [`disable_core_dumps_with_guard`], [`CoreDumpGuard`], [`is_dumpable`], [`exclude_from_dump`], [`include_in_dump`] |
//!
//! `docs/secrets.md` of the repository compares them with libsodium's
//! `sodium_malloc`, memsec and the `secrets` crate.

mod buf;
mod dump;
mod pool;

pub use buf::{Backing, Guards, LockedBuf, SealedBuf, SealedMut, SealedRef};
pub use dump::{
    disable_core_dumps, disable_core_dumps_with_guard, exclude_from_dump, include_in_dump,
    is_dumpable, CoreDumpGuard,
};
pub use pool::{Pool, PoolBuf};
