//! Reading the end of a log without reading all of it: the last few complete lines and any
//! unterminated remainder (a torn write). Used by `open` (to recover the head) and `tail`.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// The last lines of a file.
#[derive(Debug, Default)]
pub(crate) struct TailBytes {
    /// Complete lines (without their `\n`), oldest first, each with its file offset.
    pub(crate) lines: Vec<(u64, Vec<u8>)>,
    /// Whether `lines` reaches back to the start of the file.
    pub(crate) from_start: bool,
    /// Where the bytes after the last `\n` start (= the length of the complete part).
    pub(crate) remainder_offset: u64,
    /// The bytes after the last `\n`: empty unless a write was torn.
    pub(crate) remainder: Vec<u8>,
}

/// Reads backwards from `len` in growing chunks until `want` complete lines (or the start of the
/// file) are in hand.
pub(crate) fn read_tail(file: &File, len: u64, want: usize) -> io::Result<TailBytes> {
    let mut start = len;
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk: u64 = 16 * 1024;
    loop {
        let newlines = buf.iter().filter(|b| **b == b'\n').count();
        // Bytes before the first newline may be the end of a longer line unless we are at 0.
        let complete = if start == 0 {
            newlines
        } else {
            newlines.saturating_sub(1)
        };
        if start == 0 || complete >= want {
            break;
        }
        let next = start.saturating_sub(chunk);
        let mut piece = vec![0u8; usize::try_from(start - next).map_err(io::Error::other)?];
        file.read_exact_at(&mut piece, next)?;
        piece.extend_from_slice(&buf);
        buf = piece;
        start = next;
        chunk = chunk.saturating_mul(2);
    }

    let mut out = TailBytes::default();
    let complete_end = buf.iter().rposition(|b| *b == b'\n').map(|i| i + 1);
    let (complete, remainder) = match complete_end {
        Some(end) => buf.split_at(end),
        // No newline at all: the loop only stops without one at the start of the file, so
        // everything is one unterminated remainder.
        None => (&buf[..0], &buf[..]),
    };
    out.remainder_offset = start + complete.len() as u64;
    out.remainder = remainder.to_vec();

    // Split the complete part into lines; the first may be partial when start > 0.
    let mut pieces: Vec<(u64, &[u8])> = Vec::new();
    let mut offset = start;
    for piece in complete.split_inclusive(|b| *b == b'\n') {
        let body = &piece[..piece.len() - 1];
        pieces.push((offset, body));
        offset += piece.len() as u64;
    }
    if start > 0 && !pieces.is_empty() {
        pieces.remove(0);
    }
    let skip = pieces.len().saturating_sub(want);
    out.from_start = start == 0 && skip == 0;
    out.lines = pieces
        .into_iter()
        .skip(skip)
        .map(|(o, b)| (o, b.to_vec()))
        .collect();
    Ok(out)
}

/// The first complete line of a file (without its `\n`), read from the start in growing
/// chunks up to [`crate::MAX_LINE`]; `None` when the file has no complete line.
pub(crate) fn read_head_line(file: &File) -> io::Result<Option<Vec<u8>>> {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = 4096usize;
    loop {
        let from = buf.len();
        buf.resize(from + chunk, 0);
        let n = file.read_at(&mut buf[from..], from as u64)?;
        buf.truncate(from + n);
        if let Some(end) = buf[from..].iter().position(|b| *b == b'\n') {
            buf.truncate(from + end);
            return Ok(Some(buf));
        }
        if n == 0 || buf.len() > crate::MAX_LINE {
            return Ok(None);
        }
        chunk = chunk.saturating_mul(2);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn file_with(bytes: &[u8]) -> (tempfile::NamedTempFile, u64) {
        let mut f = tempfile::NamedTempFile::new().expect("tmp");
        f.write_all(bytes).expect("write");
        (f, bytes.len() as u64)
    }

    #[test]
    fn last_lines_and_remainder() {
        let (f, len) = file_with(b"a\nbb\nccc\ndd");
        let t = read_tail(f.as_file(), len, 2).expect("tail");
        assert_eq!(
            t.lines,
            vec![(2, b"bb".to_vec()), (5, b"ccc".to_vec())],
            "{t:?}"
        );
        assert!(!t.from_start);
        assert_eq!(t.remainder_offset, 9);
        assert_eq!(t.remainder, b"dd");
    }

    #[test]
    fn fewer_lines_than_wanted() {
        let (f, len) = file_with(b"a\nbb\n");
        let t = read_tail(f.as_file(), len, 5).expect("tail");
        assert_eq!(t.lines, vec![(0, b"a".to_vec()), (2, b"bb".to_vec())]);
        assert!(t.from_start);
        assert!(t.remainder.is_empty());
        assert_eq!(t.remainder_offset, 5);
    }

    #[test]
    fn lines_longer_than_a_chunk() {
        let long = vec![b'x'; 40_000];
        let mut bytes = b"first\n".to_vec();
        bytes.extend_from_slice(&long);
        bytes.push(b'\n');
        bytes.extend_from_slice(&long);
        bytes.extend_from_slice(b"\ntorn");
        let (f, len) = file_with(&bytes);
        let t = read_tail(f.as_file(), len, 2).expect("tail");
        assert_eq!(t.lines.len(), 2);
        assert_eq!(t.lines[0].0, 6);
        assert_eq!(t.lines[0].1, long);
        assert_eq!(t.lines[1].1, long);
        assert_eq!(t.remainder, b"torn");
    }

    #[test]
    fn the_first_line_whatever_its_length() {
        let long = vec![b'x'; 10_000];
        let mut bytes = long.clone();
        bytes.extend_from_slice(b"\nsecond\n");
        let (f, _) = file_with(&bytes);
        assert_eq!(read_head_line(f.as_file()).expect("head"), Some(long));
        let (f, _) = file_with(b"no newline");
        assert_eq!(read_head_line(f.as_file()).expect("head"), None);
    }

    #[test]
    fn empty_and_unterminated_only() {
        let (f, len) = file_with(b"");
        let t = read_tail(f.as_file(), len, 1).expect("tail");
        assert!(t.lines.is_empty() && t.remainder.is_empty() && t.from_start);
        let (f, len) = file_with(b"{\"seq\":1");
        let t = read_tail(f.as_file(), len, 1).expect("tail");
        assert!(t.lines.is_empty());
        assert_eq!(t.remainder_offset, 0);
        assert_eq!(t.remainder, b"{\"seq\":1");
    }
}
