//! What decides whether memory can be locked: `RLIMIT_MEMLOCK`,
//! `CAP_IPC_LOCK`, the cgroup's memory limits, and [`preflight`], which
//! puts them together the way the kernel does.
//!
//! | concern | items |
//! |---|---|
//! | `RLIMIT_MEMLOCK` | [`Limit`], [`memlock_limit`], [`set_memlock_limit`], [`raise_memlock_limit`] |
//! | `CAP_IPC_LOCK` | [`ipc_lock`], [`IpcLock`] |
//! | the cgroup | [`cgroup_memory`], [`CgroupMemory`], [`CgroupVersion`] |
//! | will it work? | [`preflight`], [`Preflight`] |

mod cgroup;
mod preflight;
mod rlimit;

pub use cgroup::{cgroup_memory, CgroupMemory, CgroupVersion};
pub use preflight::{preflight, Preflight};
pub use rlimit::{ipc_lock, memlock_limit, raise_memlock_limit, set_memlock_limit, IpcLock, Limit};
