//! Faulting memory in before pressure arrives: the stack
//! ([`prefault_stack`]) and any region ([`prefault`], [`touch_pages`]).

use crate::sys::{self, Advice};
use crate::Error;

/// How many bytes each frame of the stack walk owns. Smaller than the
/// smallest page (4 KiB) so that a frame cannot span a guard page.
const STACK_CHUNK: usize = 2048;
/// The distance between two touches on the stack: well under a page, so
/// that the walk cannot jump over a guard page.
const STACK_STEP: usize = 512;

/// Pre-faults `bytes` of the calling thread's stack, below the caller's
/// frame: the classic real-time "stack prefault".
///
/// Call it after [`lock_all`](crate::lock_all)`(CURRENT | FUTURE)`. The main
/// thread's stack grows on demand, one page fault at a time, and under
/// `MCL_FUTURE` each new page is allocated and locked at that fault, which
/// can come exactly when memory is short. Touching the stack now makes
/// those pages resident and locked before pressure arrives. (Thread stacks
/// mapped under `MCL_FUTURE`, and everything `MCL_CURRENT` locks without
/// `ONFAULT`, are populated by the kernel already; with `ONFAULT` nothing
/// is, and this matters for every thread.)
///
/// The stack is walked from the caller's frame downwards in frames of 2 KiB
/// with a touch every 512 bytes (volatile, so the compiler cannot drop
/// them), so the walk never skips a guard page. Keep `bytes` well under
/// the thread's stack size: 8 MiB for a main thread by default
/// (`RLIMIT_STACK`), 2 MiB for a `std::thread`. Asking for more than the
/// stack holds overflows it, which ends the process with `SIGSEGV` (never
/// corrupts memory). `bytes` is rounded up to a multiple of 2 KiB; 0 does
/// nothing.
///
/// # References
/// - [`mlockall(2)`](https://man7.org/linux/man-pages/man2/mlockall.2.html)
///   (notes on real-time processes and stack prefaulting)
#[inline(never)]
pub fn prefault_stack(bytes: usize) {
    if bytes > 0 {
        touch_stack(bytes.div_ceil(STACK_CHUNK));
    }
}

/// One frame of the stack walk: touches its own chunk, then recurses for
/// the rest. Using `chunk` after the call keeps it live, so the frames
/// stack up instead of being reused by a tail call.
#[inline(never)]
fn touch_stack(chunks: usize) {
    let mut chunk = [0u8; STACK_CHUNK];
    sys::touch(&mut chunk, STACK_STEP);
    if chunks > 1 {
        touch_stack(chunks - 1);
    }
    core::hint::black_box(&mut chunk);
}

/// How [`prefault`] faulted a region in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prefault {
    /// One `madvise(MADV_POPULATE_WRITE)` call (Linux 5.14+).
    Populated,
    /// A touch loop, because the kernel does not know
    /// `MADV_POPULATE_WRITE`.
    Touched,
}

/// Faults in every page of `region`, writable, without changing a byte:
/// `madvise(MADV_POPULATE_WRITE)` on Linux 5.14+, a touch loop elsewhere.
///
/// Use it for memory that must be resident before pressure arrives and that
/// [`lock_all`](crate::lock_all) did not populate: a buffer mapped after
/// `lock_all(CURRENT | ONFAULT)`, or any buffer of an unlocked program.
/// Under `MCL_FUTURE` or an `mlock` of the region, the populated pages are
/// locked too.
///
/// The kernel works in pages: the first and last page are faulted in whole.
/// The `&mut` borrow is what makes this safe: the touch loop writes back
/// each byte it read, which no other reference may observe meanwhile.
///
/// ```
/// let mut table = vec![0u8; 1 << 20];
/// mlock::daemon::prefault(&mut table)?;
/// # Ok::<(), mlock::Error>(())
/// ```
///
/// # Errors
/// - [`Error::OutOfMemory`] (`ENOMEM`): the kernel could not allocate
///   the pages.
/// - [`Error::Os`]`(EFAULT)` or `(EHWPOISON)`: a page could not be
///   populated (a file-backed page beyond the end of its file, a poisoned
///   page).
/// - [`Error::Interrupted`]: a signal interrupted the population.
///
/// Without the raw backend, the touch loop runs and the answer is
/// [`Prefault::Touched`]. QEMU user mode (7.2) accepts the advice without
/// passing it on, so there the answer is [`Prefault::Populated`] and the
/// pages arrive at their first touch as usual.
///
/// # References
/// - [`madvise(2)`](https://man7.org/linux/man-pages/man2/madvise.2.html)
#[doc(alias = "MADV_POPULATE_WRITE")]
#[allow(unsafe_code)] // One madvise, with its SAFETY note.
pub fn prefault(region: &mut [u8]) -> Result<Prefault, Error> {
    if region.is_empty() {
        return Ok(Prefault::Populated);
    }
    // madvise wants a page-aligned start: rounding down to the kernel's
    // page size (4, 16 or 64 KiB) stays in the page that holds the first
    // byte, so the call never reaches memory outside the region's pages.
    let page = sys::page_size();
    let start = region.as_ptr() as usize;
    let aligned = start & !(page - 1);
    let len = region.len() + (start - aligned);
    // SAFETY: the range lies in the pages that hold `region`, which the
    // caller lends mutably, and MADV_POPULATE_WRITE faults them in without
    // changing a byte.
    match unsafe { sys::madvise(aligned, len, Advice::PopulateWrite) } {
        Ok(()) => Ok(Prefault::Populated),
        Err(Error::InvalidArgument) | Err(Error::Unsupported) => {
            sys::touch(region, page);
            Ok(Prefault::Touched)
        }
        Err(e) => Err(e),
    }
}

/// Faults in every page of `region` by reading one byte per page (of the
/// kernel's size: 4, 16 or 64 KiB) and writing it back (volatile, so the
/// compiler keeps every access), without changing a byte. [`prefault`]
/// does this where `MADV_POPULATE_WRITE` is missing; call it directly to
/// get the same behaviour on every kernel.
pub fn touch_pages(region: &mut [u8]) {
    sys::touch(region, sys::page_size());
}
