//! The read side: validating and replaying segments at open, reading closed segments.

use std::fs::{self, OpenOptions};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::decode_frames;
use super::record::{parse_segment_name, MAGIC};
use super::{Lsn, SegmentInfo};
use crate::error::{Error, IoContext, Result};
use crate::fsutil::sync_dir;

/// What [`scan`] found.
#[derive(Debug)]
pub(super) struct Scan {
    /// The segments kept, all holding at least one valid record, oldest first.
    pub(super) segments: Vec<SegmentInfo>,
    /// Records passed to the replay callback.
    pub(super) replayed: u64,
    /// Bytes truncated off the last segment.
    pub(super) discarded_tail_bytes: u64,
}

/// The valid part of one segment file's bytes.
struct Parsed<'a> {
    /// Its valid records.
    records: Vec<(Lsn, &'a [u8])>,
    /// Length of the valid prefix of the file, header included (0 if the header is torn).
    valid_len: usize,
    /// Whether everything after the valid prefix is zeros (the writer's fill-ahead).
    zero_tail: bool,
}

/// Validates every segment in `dir`, replays the records with lsn > `replay_after`, truncates a
/// torn tail off the last segment and deletes segments left without records (all durably).
pub(super) fn scan(
    dir: &Path,
    replay_after: Lsn,
    mut replay: impl FnMut(Lsn, &[u8]) -> Result<()>,
) -> Result<Scan> {
    let files = list_segments(dir)?;
    let mut scan = Scan {
        segments: Vec::new(),
        replayed: 0,
        discarded_tail_bytes: 0,
    };
    let mut expected: Option<Lsn> = None; // first lsn the next segment must have
    let mut removed_any = false;
    for (i, (first_lsn, path)) in files.iter().enumerate() {
        let is_last = i + 1 == files.len();
        let bytes = fs::read(path).at(path)?;
        let parsed = parse_segment(path, *first_lsn, &bytes)?;
        if let Some(exp) = expected.filter(|&e| e != *first_lsn) {
            return Err(Error::corruption(
                path,
                format!(
                    "segment starts at lsn {first_lsn} but the previous one ends at lsn {}",
                    exp - 1
                ),
            ));
        }
        let tail = bytes.len() - parsed.valid_len;
        let discarded = if parsed.zero_tail { 0 } else { tail };
        if discarded > 0 {
            if !is_last {
                return Err(Error::corruption(
                    path,
                    format!(
                        "invalid record at byte {} of {} in a closed segment",
                        parsed.valid_len,
                        bytes.len()
                    ),
                ));
            }
            tracing::warn!(
                file = %path.display(),
                discarded_bytes = discarded,
                kept_records = parsed.records.len(),
                "truncating torn or corrupt tail of the last WAL segment"
            );
            scan.discarded_tail_bytes = discarded as u64;
        }
        for &(lsn, payload) in &parsed.records {
            if lsn > replay_after {
                replay(lsn, payload)?;
                scan.replayed += 1;
            }
        }
        let Some(&(last_lsn, _)) = parsed.records.last() else {
            remove_segment(path)?;
            removed_any = true;
            continue;
        };
        if is_last {
            // Truncate a torn tail; fsync even an intact one, whose last writes a crashed
            // process may have left in the page cache only.
            let file = OpenOptions::new().write(true).open(path).at(path)?;
            if tail > 0 {
                file.set_len(parsed.valid_len as u64).at(path)?;
            }
            file.sync_all().at(path)?;
        }
        expected = Some(last_lsn + 1);
        scan.segments.push(SegmentInfo {
            first_lsn: *first_lsn,
            last_lsn,
            path: path.clone(),
            bytes: parsed.valid_len as u64,
        });
    }
    if removed_any {
        sync_dir(dir)?;
    }
    Ok(scan)
}

/// Reads an intact closed segment, calling `f` for each record in order.
pub(super) fn read_closed_segment(
    path: &Path,
    mut f: impl FnMut(Lsn, &[u8]) -> Result<()>,
) -> Result<()> {
    let first_lsn = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(parse_segment_name)
        .ok_or_else(|| Error::corruption(path, "not a WAL segment file name"))?;
    let bytes = fs::read(path).at(path)?;
    let parsed = parse_segment(path, first_lsn, &bytes)?;
    if parsed.valid_len != bytes.len() && !parsed.zero_tail {
        return Err(Error::corruption(
            path,
            format!(
                "invalid record at byte {} of {}",
                parsed.valid_len,
                bytes.len()
            ),
        ));
    }
    for (lsn, payload) in parsed.records {
        f(lsn, payload)?;
    }
    Ok(())
}

/// Deletes a segment file; one already gone is fine.
pub(super) fn remove_segment(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}

/// The segment files in `dir` by first LSN, oldest first. Other files are ignored.
fn list_segments(dir: &Path) -> Result<Vec<(Lsn, PathBuf)>> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        let name = entry.file_name();
        if let Some(lsn) = name.to_str().and_then(parse_segment_name) {
            segments.push((lsn, entry.path()));
        }
    }
    segments.sort_unstable_by_key(|(lsn, _)| *lsn);
    Ok(segments)
}

/// Checks the header of a segment's `bytes` and decodes its valid records, which must start at
/// `first_lsn` (a first record with another LSN makes the valid part empty). A header cut short
/// (a crash while creating the file) yields `valid_len` 0; a wrong magic is corruption.
fn parse_segment<'a>(path: &Path, first_lsn: Lsn, bytes: &'a [u8]) -> Result<Parsed<'a>> {
    if bytes.len() < MAGIC.len() && MAGIC.starts_with(bytes) {
        return Ok(Parsed {
            records: Vec::new(),
            valid_len: 0,
            zero_tail: false,
        });
    }
    if !bytes.starts_with(MAGIC) {
        return Err(Error::corruption(path, "not a WAL segment (bad magic)"));
    }
    let body = &bytes[MAGIC.len()..];
    let (mut records, mut valid) = decode_frames(body);
    if records.first().is_some_and(|&(lsn, _)| lsn != first_lsn) {
        records.clear();
        valid = 0;
    }
    // Zeros after the last record are the writer's fill-ahead, not damage.
    let zero_tail = body[valid..].iter().all(|&b| b == 0);
    Ok(Parsed {
        records,
        valid_len: MAGIC.len() + valid,
        zero_tail,
    })
}
