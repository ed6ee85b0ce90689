//! A hex view of byte slices for `Debug` output, so APDU logs read like card transcripts.

use std::fmt;

/// Formats bytes as upper-case hex without separators (`00A40400`).
pub(crate) struct Hex<'a>(pub(crate) &'a [u8]);

impl fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02X}")?;
        }
        Ok(())
    }
}
