//! What decides whether memory can be locked: `RLIMIT_MEMLOCK`,
//! `CAP_IPC_LOCK`, the cgroup's memory limits, and [`preflight`], which
//! puts them together the way the kernel does.
//!
//! | concern | items |
//! |---|---|
//! | `RLIMIT_MEMLOCK` | [`Limit`], [`memlock_limit`], [`set_memlock_limit`], [`raise_memlock_limit`] |
//! | `CAP_IPC_LOCK` | [`has_ipc_lock`] (as the kernel checks it), [`ipc_lock_in_effective_set`] (the bit alone) |
//! | the cgroup | [`cgroup_memory`], [`CgroupMemory`], [`CgroupVersion`] |
//! | will it work? | [`preflight`], [`Preflight`] |

mod cgroup;
mod preflight;
mod rlimit;

pub use cgroup::{cgroup_memory, CgroupMemory, CgroupVersion};
pub use preflight::{preflight, Preflight};
pub(crate) use rlimit::CAP_IPC_LOCK;
pub use rlimit::{
    has_ipc_lock, ipc_lock_in_effective_set, memlock_limit, raise_memlock_limit, set_memlock_limit,
    Limit,
};
