//! [`LockedBytes`]: a secret's buffer on pages of its own, kept out of swap and dumps.
//!
//! The pages come straight from `mmap` (never shared with another allocation, so unlocking
//! them cannot unlock someone else's secret), are locked in memory (`mlock`) and marked
//! `MADV_DONTDUMP`; the buffer never grows (so never leaves a copy behind) and is cleared,
//! unlocked and unmapped when dropped. Where the kernel refuses the lock (a small
//! `RLIMIT_MEMLOCK` for an unprivileged user), the buffer still works and is still cleared:
//! [`LockedBytes::is_locked`] says which.

use std::fmt;
use std::ptr::NonNull;

use crate::alloc::clear;

/// Bytes of a secret, on locked pages, cleared on drop. Fixed capacity: a value that does
/// not fit is refused rather than moved.
pub struct LockedBytes {
    pages: NonNull<u8>,
    mapped: usize,
    len: usize,
    locked: bool,
}

// SAFETY: the pages are owned by this value alone (no aliasing pointer is handed out beyond
// borrows of `self`), like a `Vec<u8>`.
unsafe impl Send for LockedBytes {}
// SAFETY: shared access only reads, like `&Vec<u8>`.
unsafe impl Sync for LockedBytes {}

/// A value longer than the buffer's capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLong;

impl LockedBytes {
    /// A buffer for up to `capacity` bytes (rounded up to whole pages).
    ///
    /// Panics only if the system has no memory for one page, as any allocation would.
    pub fn with_capacity(capacity: usize) -> LockedBytes {
        let page = page_size();
        let mapped = capacity.max(1).div_ceil(page) * page;
        // SAFETY: an anonymous private mapping, no address hint; checked for MAP_FAILED.
        let pages = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mapped,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        let Some(pages) = NonNull::new(pages.cast::<u8>()).filter(|_| pages != libc::MAP_FAILED)
        else {
            std::alloc::handle_alloc_error(
                std::alloc::Layout::from_size_align(mapped, page)
                    .unwrap_or(std::alloc::Layout::new::<u8>()),
            );
        };
        // SAFETY: `pages..pages+mapped` is the mapping just made. Both calls only change how
        // the kernel treats it; a refusal leaves an ordinary mapping.
        let locked = unsafe {
            libc::madvise(pages.as_ptr().cast(), mapped, libc::MADV_DONTDUMP);
            libc::mlock(pages.as_ptr().cast(), mapped) == 0
        };
        LockedBytes {
            pages,
            mapped,
            len: 0,
            locked,
        }
    }

    /// A locked copy of `bytes`.
    pub fn from_slice(bytes: &[u8]) -> LockedBytes {
        let mut buffer = LockedBytes::with_capacity(bytes.len());
        // Cannot fail: the capacity is at least `bytes.len()`.
        let _ = buffer.extend_from_slice(bytes);
        buffer
    }

    /// Appends `bytes`, or refuses if they do not fit (nothing is moved, so nothing is left
    /// behind).
    pub fn extend_from_slice(&mut self, bytes: &[u8]) -> Result<(), TooLong> {
        let end = self.len.checked_add(bytes.len()).ok_or(TooLong)?;
        if end > self.mapped {
            return Err(TooLong);
        }
        // SAFETY: `len..end` is inside the mapping (checked above) and `bytes` is another
        // object, so the ranges cannot overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.pages.as_ptr().add(self.len),
                bytes.len(),
            );
        }
        self.len = end;
        Ok(())
    }

    /// The bytes held.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the first `len` bytes of the mapping were written by `extend_from_slice`.
        unsafe { std::slice::from_raw_parts(self.pages.as_ptr(), self.len) }
    }

    /// How many bytes it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the kernel locked the pages (out of swap). They are out of dumps either way.
    pub fn is_locked(&self) -> bool {
        self.locked
    }
}

impl Clone for LockedBytes {
    fn clone(&self) -> LockedBytes {
        let mut copy = LockedBytes::with_capacity(self.mapped);
        let _ = copy.extend_from_slice(self.as_slice());
        copy
    }
}

impl Drop for LockedBytes {
    fn drop(&mut self) {
        // SAFETY: the mapping is ours until `munmap`; it is cleared first, then handed back.
        unsafe {
            clear(self.pages.as_ptr(), self.mapped);
            if self.locked {
                libc::munlock(self.pages.as_ptr().cast(), self.mapped);
            }
            libc::munmap(self.pages.as_ptr().cast(), self.mapped);
        }
    }
}

impl fmt::Debug for LockedBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LockedBytes(<{} bytes redacted>)", self.len)
    }
}

/// The text of a secret (a passcode as typed) on [`LockedBytes`]: for the programs that
/// must hold one for a moment as `&str` (to send it over D-Bus).
#[derive(Clone)]
pub struct LockedString(LockedBytes);

impl LockedString {
    /// A locked copy of `text`.
    pub fn copy_of(text: &str) -> LockedString {
        LockedString(LockedBytes::from_slice(text.as_bytes()))
    }

    /// Moves `text` onto locked pages: copied, then its own buffer cleared.
    pub fn take(text: String) -> LockedString {
        let locked = LockedString::copy_of(&text);
        let mut bytes = text.into_bytes();
        // SAFETY: the vector's first `len` bytes are initialised memory it owns.
        unsafe { clear(bytes.as_mut_ptr(), bytes.len()) };
        drop(bytes);
        locked
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Always UTF-8: built only from `&str`.
        std::str::from_utf8(self.0.as_slice()).unwrap_or_default()
    }

    /// Whether the pages are locked (see [`LockedBytes::is_locked`]).
    pub fn is_locked(&self) -> bool {
        self.0.is_locked()
    }
}

impl std::ops::Deref for LockedString {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for LockedString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LockedString(<redacted>)")
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size)
        .ok()
        .filter(|s| *s > 0)
        .unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mapping's line in /proc/self/smaps: its flags say `lo` (locked) and `dd` (do not
    /// dump).
    fn vm_flags(address: usize) -> String {
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        let mut inside = false;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ')
                && let Some((start, end)) = range.split_once('-')
                && let (Ok(start), Ok(end)) = (
                    usize::from_str_radix(start, 16),
                    usize::from_str_radix(end, 16),
                )
            {
                inside = (start..end).contains(&address);
                continue;
            }
            if inside && let Some(flags) = line.strip_prefix("VmFlags:") {
                return flags.to_owned();
            }
        }
        panic!("no mapping holds {address:x}");
    }

    #[test]
    fn the_pages_are_out_of_dumps_and_locked_and_the_bytes_are_kept() {
        let secret = LockedBytes::from_slice(b"k2468m");
        assert_eq!(secret.as_slice(), b"k2468m");
        let flags = vm_flags(secret.as_slice().as_ptr() as usize);
        assert!(flags.contains(" dd"), "not MADV_DONTDUMP: {flags}");
        // Tests run as root here (the lab needs it), so the lock is granted.
        assert!(
            secret.is_locked() && flags.contains(" lo"),
            "not locked: {flags}"
        );
    }

    #[test]
    fn a_value_that_does_not_fit_is_refused_not_moved() {
        let mut buffer = LockedBytes::with_capacity(8);
        let page = buffer.mapped;
        assert!(buffer.extend_from_slice(&vec![1u8; page]).is_ok());
        assert_eq!(buffer.extend_from_slice(b"x"), Err(TooLong));
        assert_eq!(buffer.len(), page);
    }

    #[test]
    fn a_taken_string_is_kept_as_text_on_protected_pages() {
        let text = LockedString::take(String::from("Ss7t2w"));
        assert_eq!(text.as_str(), "Ss7t2w");
        let flags = vm_flags(text.as_str().as_ptr() as usize);
        assert!(flags.contains(" dd") && flags.contains(" lo"), "{flags}");
        assert_eq!(format!("{text:?}"), "LockedString(<redacted>)");
    }

    #[test]
    fn debug_never_shows_the_bytes() {
        let secret = LockedBytes::from_slice(b"80264513");
        assert_eq!(format!("{secret:?}"), "LockedBytes(<8 bytes redacted>)");
    }
}
