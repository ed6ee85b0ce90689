//! [`scrub_stack`]: clearing the stack a finished piece of secret work used.
//!
//! Zeroizing types clear their final resting place, but a value moved on the stack leaves
//! its earlier copies behind, and libraries keep working state there (a SHA-256 context's
//! pending block holds the passcode being hashed). Those bytes sit below the frame of
//! whoever called the work until something deeper overwrites them. The card actor calls this
//! after every job, and the runtime's workers each time they park.

use crate::alloc::clear;

#[cfg(feature = "measure")]
pub(crate) static SCRUBBING: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(true);

/// How much stack below the caller is cleared: deeper than the card layer's deepest call
/// chain (a PIV exchange through pcsc-lite, ring's hashing and signing) and the D-Bus
/// method handlers, and small enough to clear in a few microseconds.
pub const SCRUBBED_STACK: usize = 64 * 1024;

/// Clears [`SCRUBBED_STACK`] bytes of this thread's stack below the caller's frame. Call it
/// where the stack is shallow again after the work that handled a secret (thread stacks are
/// far larger than this).
#[inline(never)]
pub fn scrub_stack() {
    #[cfg(feature = "measure")]
    if !SCRUBBING.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    let mut area = std::mem::MaybeUninit::<[u8; SCRUBBED_STACK]>::uninit();
    // SAFETY: `area` is this frame's own writable stack memory of that size.
    unsafe { clear(area.as_mut_ptr().cast(), SCRUBBED_STACK) };
    std::hint::black_box(&mut area);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn leave_a_value_on_the_stack() -> usize {
        let mut marker = [0x5Au8; 256];
        std::hint::black_box(&mut marker);
        marker.as_ptr() as usize
    }

    #[inline(never)]
    fn read_stack_at(address: usize) -> u8 {
        // SAFETY: `address` is inside this thread's stack (below the live frames, within the
        // region the test just used), readable memory.
        unsafe { std::ptr::read_volatile(address as *const u8) }
    }

    #[test]
    fn what_a_returned_call_left_on_the_stack_is_gone_after_a_scrub() {
        std::thread::spawn(|| {
            let at = leave_a_value_on_the_stack();
            assert_eq!(
                read_stack_at(at + 128),
                0x5A,
                "the marker did not stay (test moot)"
            );
            leave_a_value_on_the_stack();
            scrub_stack();
            assert_eq!(read_stack_at(at + 128), 0, "the marker survived the scrub");
        })
        .join()
        .expect("thread");
    }
}
