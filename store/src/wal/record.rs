//! The on-disk format: segment file names, the segment header and record frames.
//!
//! A segment is `MAGIC` followed by frames `[len: u32 LE][crc32: u32 LE][lsn: u64 LE][payload]`,
//! where the crc covers the eight lsn bytes followed by the payload.

use std::path::{Path, PathBuf};

use super::Lsn;

/// The first eight bytes of every segment file (format version 1).
pub(crate) const MAGIC: &[u8; 8] = b"QVWAL\0\0\x01";

/// Bytes in front of every payload: len, crc and lsn.
pub(crate) const FRAME_HEADER: usize = 16;

/// The largest payload a record may carry; a larger `len` on disk marks a torn or corrupt frame.
pub(crate) const MAX_PAYLOAD: usize = 64 << 20;

/// The file name of the segment whose first record has `first_lsn`: `{first_lsn:020}.wal`.
pub(crate) fn segment_path(dir: &Path, first_lsn: Lsn) -> PathBuf {
    dir.join(format!("{first_lsn:020}.wal"))
}

/// The first LSN encoded in a segment file name, or `None` if `name` is not a segment name.
pub(crate) fn parse_segment_name(name: &str) -> Option<Lsn> {
    let digits = name.strip_suffix(".wal")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Reserves room for a frame header at the end of `buf`; returns where the frame starts.
/// The payload is then appended to `buf` and the frame completed with [`finish_frame`].
pub(crate) fn begin_frame(buf: &mut Vec<u8>) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&[0; FRAME_HEADER]);
    start
}

/// Fills in the header of the frame begun at `start` (everything after the header is its
/// payload) for record `lsn`. Returns the payload length; on `Err` (payload too large) the
/// frame has been removed from `buf` again.
pub(crate) fn finish_frame(buf: &mut Vec<u8>, start: usize, lsn: Lsn) -> Result<usize, usize> {
    assert!(
        buf.len() >= start + FRAME_HEADER,
        "a WAL payload encoder must only append to the buffer"
    );
    let len = buf.len() - start - FRAME_HEADER;
    if len > MAX_PAYLOAD {
        buf.truncate(start);
        return Err(len);
    }
    buf[start + 8..start + FRAME_HEADER].copy_from_slice(&lsn.to_le_bytes());
    let crc = crc32fast::hash(&buf[start + 8..]);
    buf[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(len)
}

/// Decodes the frames at the start of `bytes` (a segment without its header).
///
/// Returns the records of the longest valid prefix and that prefix's length in bytes. Decoding
/// stops at the first short frame, `len` above [`MAX_PAYLOAD`], crc mismatch or LSN that is not
/// the previous one plus one. Never panics, whatever `bytes` holds.
pub(crate) fn decode_frames(bytes: &[u8]) -> (Vec<(Lsn, &[u8])>, usize) {
    decode_frames_with(bytes, true)
}

/// Like [`decode_frames`], for logs whose LSNs only increase (the catalog's delta log keeps a
/// subset of the write-ahead log's records): with `consecutive` false, decoding stops at an LSN
/// that is not above the previous one instead.
pub(crate) fn decode_frames_with(bytes: &[u8], consecutive: bool) -> (Vec<(Lsn, &[u8])>, usize) {
    let mut records: Vec<(Lsn, &[u8])> = Vec::new();
    let mut pos = 0;
    while let Some((lsn, payload, next)) = decode_frame(bytes, pos) {
        if let Some(&(prev, _)) = records.last() {
            let follows = if consecutive {
                prev.checked_add(1) == Some(lsn)
            } else {
                lsn > prev
            };
            if !follows {
                break;
            }
        }
        records.push((lsn, payload));
        pos = next;
    }
    (records, pos)
}

/// Appends the frame of record `lsn` carrying `payload` to `buf`.
pub(crate) fn encode_frame(lsn: Lsn, payload: &[u8], buf: &mut Vec<u8>) {
    let start = begin_frame(buf);
    buf.extend_from_slice(payload);
    finish_frame(buf, start, lsn).expect("payload within the frame size limit");
}

/// Decodes the frame at `pos`: its lsn, payload and the offset just after it, if valid.
fn decode_frame(bytes: &[u8], pos: usize) -> Option<(Lsn, &[u8], usize)> {
    let header = bytes.get(pos..pos.checked_add(8)?)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len > MAX_PAYLOAD {
        return None;
    }
    let end = pos + FRAME_HEADER + len;
    let body = bytes.get(pos + 8..end)?; // lsn + payload
    if crc32fast::hash(body) != crc {
        return None;
    }
    let (lsn, payload) = body.split_at(8);
    let lsn = u64::from_le_bytes(lsn.try_into().ok()?);
    Some((lsn, payload, end))
}
