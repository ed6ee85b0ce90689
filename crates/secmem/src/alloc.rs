//! [`ZeroOnFree`]: the system allocator, clearing each block as it is freed.
//!
//! The clearing is `explicit_bzero`, which the compiler may not remove as a dead store
//! before `free` (a plain `memset` it may). A reallocation is an allocation, a copy and a
//! free, never `realloc` in place: the C `realloc` may move a block and leave the old bytes
//! behind. The cost is measured in the daemon benchmark (docs/performance.md).

use std::alloc::{GlobalAlloc, Layout, System};
#[cfg(feature = "measure")]
use std::sync::atomic::{AtomicBool, Ordering};

/// The global allocator of the programs that handle secrets (installed by this crate).
#[derive(Debug, Clone, Copy, Default)]
pub struct ZeroOnFree;

#[cfg(feature = "measure")]
static ZEROING: AtomicBool = AtomicBool::new(true);

impl ZeroOnFree {
    /// Turns the clearing off or on for this process (see [`crate::set_enabled`]).
    #[cfg(feature = "measure")]
    pub(crate) fn set_zeroing(on: bool) {
        ZEROING.store(on, Ordering::SeqCst);
    }

    /// Whether freed blocks are cleared (always, unless a benchmark turned it off).
    pub fn is_zeroing() -> bool {
        #[cfg(feature = "measure")]
        {
            ZEROING.load(Ordering::Relaxed)
        }
        #[cfg(not(feature = "measure"))]
        {
            true
        }
    }
}

/// Clears `len` bytes at `ptr` in a way the optimiser keeps.
///
/// # Safety
/// `ptr` must be valid for writes of `len` bytes.
pub(crate) unsafe fn clear(ptr: *mut u8, len: usize) {
    if len > 0 {
        // SAFETY: the caller guarantees `ptr..ptr+len` is writable memory it owns.
        unsafe { libc::explicit_bzero(ptr.cast(), len) };
    }
}

// SAFETY: every call is forwarded to `System` with the same layout; the only addition is
// clearing a block the caller is giving up, before `System` takes it back, and a
// reallocation done as allocate-copy-free with `System`'s own calls.
unsafe impl GlobalAlloc for ZeroOnFree {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's (non-zero-sized) layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ZeroOnFree::is_zeroing() {
            // SAFETY: `ptr` was allocated with `layout`, so `layout.size()` bytes are ours
            // until `System.dealloc` below.
            unsafe { clear(ptr, layout.size()) };
        }
        // SAFETY: forwarded with the layout it was allocated with.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !ZeroOnFree::is_zeroing() {
            // SAFETY: forwarded as given (benchmark baseline only).
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: the caller guarantees `new_size`, rounded to `layout.align()`, does not
        // overflow, so this layout is valid.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: `new_layout` is non-zero-sized (the caller's contract for `realloc`).
        let new_ptr = unsafe { System.alloc(new_layout) };
        if !new_ptr.is_null() {
            // SAFETY: both blocks are valid for the smaller size and do not overlap (the
            // new one was just allocated); the old one is then cleared and freed as in
            // `dealloc`.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new_ptr, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new_ptr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_freed_block_is_cleared_before_the_system_gets_it_back() {
        let layout = Layout::from_size_align(64, 8).expect("layout");
        // SAFETY: a block allocated and written here, inspected after `clear` only.
        unsafe {
            let block = System.alloc(layout);
            assert!(!block.is_null());
            std::ptr::write_bytes(block, 0xA5, 64);
            clear(block, 64);
            assert!(
                std::slice::from_raw_parts(block, 64)
                    .iter()
                    .all(|b| *b == 0)
            );
            System.dealloc(block, layout);
        }
    }
}
