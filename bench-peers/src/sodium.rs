//! The four functions of the system libsodium this program calls.
//!
//! Declared here rather than taken from a `-sys` crate: `libsodium-sys-stable`
//! compiles its bundled copy of libsodium unless told through environment
//! variables to use the system one, and generates bindings for the whole
//! library; the `secrets` crate already links the system libsodium (found
//! with pkg-config), so these declarations resolve against that same
//! library, one copy in the process.

use core::ffi::{c_char, c_int, c_void, CStr};

#[link(name = "sodium")]
extern "C" {
    fn sodium_init() -> c_int;
    fn sodium_malloc(size: usize) -> *mut c_void;
    fn sodium_free(ptr: *mut c_void);
    fn sodium_version_string() -> *const c_char;
}

/// Initializes libsodium (its canary and page size), as every program
/// must before `sodium_malloc`. Idempotent.
pub fn init() -> Result<(), String> {
    // SAFETY: sodium_init takes no arguments, may be called more than
    // once and from any thread; it returns -1 only on failure.
    match unsafe { sodium_init() } {
        -1 => Err("sodium_init failed".into()),
        _ => Ok(()),
    }
}

/// The version of the libsodium linked at run time, e.g. `1.0.18`.
pub fn version() -> String {
    // SAFETY: sodium_version_string returns a pointer to a static,
    // NUL-terminated string that lives as long as the process.
    unsafe { CStr::from_ptr(sodium_version_string()) }
        .to_string_lossy()
        .into_owned()
}

/// One `sodium_malloc` allocation, freed (`sodium_free`) on drop.
pub struct SodiumBuf(*mut c_void);

impl SodiumBuf {
    /// `sodium_malloc(size)`; on NULL, the errno it left.
    pub fn new(size: usize) -> Result<SodiumBuf, std::io::Error> {
        // SAFETY: init() ran before (every caller does); sodium_malloc
        // returns NULL or a pointer to `size` writable bytes that only
        // sodium_free may release.
        let ptr = unsafe { sodium_malloc(size) };
        if ptr.is_null() {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(SodiumBuf(ptr))
        }
    }
}

impl Drop for SodiumBuf {
    fn drop(&mut self) {
        // SAFETY: self.0 came from sodium_malloc and is freed exactly
        // once, here.
        unsafe { sodium_free(self.0) }
    }
}
