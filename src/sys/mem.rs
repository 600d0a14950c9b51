//! Memory the crate writes without a system call: zeroing that the
//! compiler may not elide, and touching pages so that they are faulted in.
//! Shared by both backends.
#![allow(unsafe_code)]

/// Overwrites `buf` with zeros through volatile stores, which the compiler
/// may not remove even when `buf` is never read again.
#[inline]
pub(crate) fn zeroize(buf: &mut [u8]) {
    for byte in buf.iter_mut() {
        // SAFETY: `byte` is a valid, aligned, exclusive reference.
        unsafe { core::ptr::write_volatile(byte, 0) };
    }
    core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
}

/// Reads one byte every `step` bytes of `buf` (`step` of 0 counts as 1) and
/// writes the same value back, through volatile accesses the compiler may
/// not remove or merge. Every page the buffer spans is write-faulted in and
/// no byte changes. The walk goes from the last byte down to the first, so
/// that on a stack (which grows down) consecutive touches are never more
/// than `step` bytes apart and cannot jump over a guard page smaller than
/// `step`.
#[inline]
pub(crate) fn touch(buf: &mut [u8], step: usize) {
    let step = if step == 0 { 1 } else { step };
    let Some(mut i) = buf.len().checked_sub(1) else {
        return;
    };
    loop {
        let byte: *mut u8 = &mut buf[i];
        // SAFETY: `byte` comes from a valid, aligned, exclusive reference into
        // `buf`, and `u8` has no invalid values; writing back what was read
        // changes nothing another reference could observe.
        unsafe { byte.write_volatile(byte.read_volatile()) };
        if i == 0 {
            break;
        }
        i = i.saturating_sub(step);
    }
    core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
}
