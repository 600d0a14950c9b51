//! The swap-daemon kit: what a process that serves swap or block I/O needs
//! beyond `mlockall(2)`, and [`harden_swap_daemon`], which applies it in the
//! right order.
//!
//! `mlockall(MCL_CURRENT | MCL_FUTURE)` keeps the daemon's pages from being
//! swapped out, but the daemon still allocates: a new stack page, a kernel
//! buffer for its next request. Under memory pressure such an allocation
//! enters reclaim, reclaim writes dirty pages out, and the write can be
//! queued to the very device the daemon serves: the daemon then waits for
//! itself. Pre-faulting moves the daemon's own allocations out of the
//! pressure window; `PR_SET_IO_FLUSHER` makes the kernel's allocations on
//! its behalf skip I/O-issuing reclaim; `SCHED_FIFO` gives its replies a
//! share of the memory reserve; a low `oom_score_adj` keeps the OOM killer
//! off it.
//!
//! | concern | items |
//! |---|---|
//! | the recipe | [`Hardening`], [`harden_swap_daemon`], [`Report`], [`Stage`], [`HardenError`] |
//! | the calling thread | [`set_io_flusher`], [`clear_io_flusher`], [`is_io_flusher`], [`set_realtime`], [`is_realtime`] |
//! | every thread | [`audit_threads`], [`ThreadAudit`] |
//! | the OOM killer | [`oom_score_adj`], [`set_oom_score_adj`], [`OOM_SCORE_ADJ_MIN`], [`OOM_SCORE_ADJ_MAX`] |
//! | faulting memory in | [`prefault_stack`], [`prefault`], [`touch_pages`], [`Prefault`] |

mod audit;
mod oom;
mod prefault;
mod recipe;
mod thread;

pub use audit::{audit_threads, ThreadAudit};
pub use oom::{oom_score_adj, set_oom_score_adj, OOM_SCORE_ADJ_MAX, OOM_SCORE_ADJ_MIN};
pub use prefault::{prefault, prefault_stack, touch_pages, Prefault};
pub use recipe::{
    harden_swap_daemon, HardenError, Hardening, Report, Stage, DEFAULT_STACK_PREFAULT,
};
pub use thread::{
    clear_io_flusher, is_io_flusher, is_realtime, set_io_flusher, set_realtime,
    DEFAULT_REALTIME_PRIORITY,
};
