//! SQLite's own allocations through mimalloc, the allocator the rest of the process uses.
//! SQLite calls the system `malloc` by default: glibc's `malloc`/`free` were ~2,500
//! instructions of the ~13,000 each analytics row costs (callgrind, bench/RESULTS.md),
//! mostly the copies of the text values every insert binds.

use std::ffi::{c_int, c_void};

use libmimalloc_sys::{mi_free, mi_good_size, mi_malloc, mi_realloc, mi_usable_size};
use rusqlite::ffi;

unsafe extern "C" fn x_malloc(n: c_int) -> *mut c_void {
    // SAFETY: mimalloc's malloc takes any size; SQLite never asks for a negative one.
    unsafe { mi_malloc(usize::try_from(n).unwrap_or(0)) }
}

unsafe extern "C" fn x_free(p: *mut c_void) {
    // SAFETY: `p` came from `x_malloc`/`x_realloc` (SQLite frees only what it allocated).
    unsafe { mi_free(p) }
}

unsafe extern "C" fn x_realloc(p: *mut c_void, n: c_int) -> *mut c_void {
    // SAFETY: as in `x_free`; the size as in `x_malloc`.
    unsafe { mi_realloc(p, usize::try_from(n).unwrap_or(0)) }
}

unsafe extern "C" fn x_size(p: *mut c_void) -> c_int {
    // SAFETY: as in `x_free`.
    c_int::try_from(unsafe { mi_usable_size(p) }).unwrap_or(c_int::MAX)
}

unsafe extern "C" fn x_roundup(n: c_int) -> c_int {
    // SAFETY: a pure function of the size.
    c_int::try_from(unsafe { mi_good_size(usize::try_from(n).unwrap_or(0)) }).unwrap_or(n)
}

unsafe extern "C" fn x_init(_: *mut c_void) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_shutdown(_: *mut c_void) {}

/// Routes SQLite's allocations to mimalloc; `false` (and SQLite keeps the system
/// allocator) when SQLite is already initialized.
///
/// # Safety
/// Must run before any SQLite connection is opened and while no other thread uses
/// SQLite (`sqlite3_config` is not thread-safe): first thing in `main`.
pub unsafe fn use_mimalloc() -> bool {
    let methods = ffi::sqlite3_mem_methods {
        xMalloc: Some(x_malloc),
        xFree: Some(x_free),
        xRealloc: Some(x_realloc),
        xSize: Some(x_size),
        xRoundup: Some(x_roundup),
        xInit: Some(x_init),
        xShutdown: Some(x_shutdown),
        pAppData: std::ptr::null_mut(),
    };
    // SAFETY: SQLite copies `methods`; the caller guarantees no concurrent SQLite use.
    unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_MALLOC, &raw const methods) == ffi::SQLITE_OK }
}
