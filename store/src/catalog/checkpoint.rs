//! Durable copies of the catalog that do not depend on sled: a base checkpoint and a delta log.
//!
//! - `base.ckpt`: every entry of every tree as of LSN `B` (header: magic, `B`; entries; trailer:
//!   count and a CRC over everything before it). Replaced atomically.
//! - `delta.log`: the catalog part of every op with LSN > `B` whose write-ahead-log file was
//!   retired (metric points reduced to the latest per series), framed like the log itself.
//!
//! Catalog state at any moment = base + delta + the ops still in the write-ahead log. The store
//! rebuilds sled from these three whenever sled was not closed cleanly or cannot be trusted.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::kv::{Kv, TREES};
use crate::error::{Error, IoContext, Result};
use crate::faults::{injected, FaultInjection, FaultPoint};
use crate::ops::Op;

const BASE_MAGIC: &[u8; 8] = b"QVCKPT\x00\x01";
/// The name of the base checkpoint file.
pub(crate) const BASE_FILE: &str = "base.ckpt";
/// The name of the delta log.
pub(crate) const DELTA_FILE: &str = "delta.log";

/// Writes a base checkpoint of `kv` as of `lsn` into `dir` (atomically, durably). The caller holds
/// writers off so that `kv` is exactly the state at `lsn`. Returns the file's size.
pub(crate) fn write_base(dir: &Path, kv: &Kv, lsn: u64) -> Result<u64> {
    let path = dir.join(BASE_FILE);
    let mut tmp = tempfile::NamedTempFile::new_in(dir).at(dir)?;
    let mut crc = crc32fast::Hasher::new();
    let mut count = 0u64;
    let mut size = 0u64;
    {
        let mut w = BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
        let mut put = |bytes: &[u8], w: &mut BufWriter<&mut File>| -> std::io::Result<()> {
            crc.update(bytes);
            size += bytes.len() as u64;
            w.write_all(bytes)
        };
        put(BASE_MAGIC, &mut w).at(&path)?;
        put(&lsn.to_le_bytes(), &mut w).at(&path)?;
        for (t, name) in TREES.iter().enumerate() {
            for entry in kv.tree(name)?.iter() {
                let (k, v) = entry?;
                let mut head = [0u8; 9];
                head[0] = t as u8;
                head[1..5].copy_from_slice(&(k.len() as u32).to_le_bytes());
                head[5..9].copy_from_slice(&(v.len() as u32).to_le_bytes());
                put(&head, &mut w).at(&path)?;
                put(&k, &mut w).at(&path)?;
                put(&v, &mut w).at(&path)?;
                count += 1;
            }
        }
        put(&[0xff], &mut w).at(&path)?;
        put(&count.to_le_bytes(), &mut w).at(&path)?;
        let sum = crc.clone().finalize();
        w.write_all(&sum.to_le_bytes()).at(&path)?;
        w.flush().at(&path)?;
    }
    tmp.as_file().sync_data().at(tmp.path())?;
    tmp.persist(&path).map_err(|e| Error::io(&path, e.error))?;
    crate::fsutil::sync_dir(dir)?;
    Ok(size + 4)
}

/// Loads the base checkpoint in `dir` into the empty database `kv`; returns its LSN (0 when there
/// is no base yet). The whole file is verified before anything is loaded.
pub(crate) fn load_base(dir: &Path, kv: &Kv) -> Result<u64> {
    let path = dir.join(BASE_FILE);
    let mut bytes = Vec::new();
    match File::open(&path) {
        Ok(mut f) => f.read_to_end(&mut bytes).at(&path)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let trees: Vec<_> = TREES.iter().map(|n| kv.tree(n)).collect::<Result<_>>()?;
    let (lsn, entries) = parse_base(&bytes).map_err(|d| Error::corruption(&path, d))?;
    for (tree, k, v) in entries {
        trees[tree].insert(k, v)?;
    }
    Ok(lsn)
}

/// One entry of a checkpoint: tree index, key, value.
type Entry<'a> = (usize, &'a [u8], &'a [u8]);

/// Parses and verifies a base checkpoint: its LSN and entries, or what is wrong with it.
/// Never panics, whatever `bytes` holds.
pub(crate) fn parse_base(bytes: &[u8]) -> std::result::Result<(u64, Vec<Entry<'_>>), String> {
    if bytes.len() < 8 + 8 + 1 + 8 + 4 || &bytes[..8] != BASE_MAGIC {
        return Err("not a catalog checkpoint".into());
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(body).to_le_bytes() != crc {
        return Err("checksum mismatch".into());
    }
    let u32_at = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
    let lsn = u64::from_le_bytes(body[8..16].try_into().expect("8 bytes"));
    let mut entries = Vec::new();
    let mut pos = 16;
    loop {
        let Some(&tag) = body.get(pos) else {
            return Err("truncated".into());
        };
        if tag == 0xff {
            let stated = body
                .get(pos + 1..pos + 9)
                .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
            if stated != Some(entries.len() as u64) || body.len() != pos + 9 {
                return Err("entry count mismatch".into());
            }
            return Ok((lsn, entries));
        }
        if tag as usize >= TREES.len() {
            return Err(format!("unknown tree {tag}"));
        }
        let head = body.get(pos..pos + 9).ok_or("truncated")?;
        let (klen, vlen) = (u32_at(&head[1..5]), u32_at(&head[5..9]));
        let kstart = pos + 9;
        let vstart = kstart.checked_add(klen).ok_or("length overflow")?;
        let end = vstart.checked_add(vlen).ok_or("length overflow")?;
        let k = body.get(kstart..vstart).ok_or("truncated")?;
        let v = body.get(vstart..end).ok_or("truncated")?;
        entries.push((tag as usize, k, v));
        pos = end;
    }
}

/// The LSN recorded in the base checkpoint header, without loading it (0 if none).
pub(crate) fn base_lsn(dir: &Path) -> Result<u64> {
    let path = dir.join(BASE_FILE);
    let mut head = [0u8; 16];
    match File::open(&path) {
        Ok(mut f) => f.read_exact(&mut head).at(&path)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io(&path, e)),
    }
    Ok(u64::from_le_bytes(head[8..16].try_into().expect("8 bytes")))
}

/// The append-only log of catalog ops carried forward from retired write-ahead-log files.
#[derive(Debug)]
pub(crate) struct DeltaLog {
    path: PathBuf,
    file: File,
    size: u64,
    /// The LSN of the last record; appends of records at or below it are skipped.
    last_lsn: u64,
    /// A failed append may have left bytes past `size` that could not be cut off yet.
    torn: bool,
    /// Failures to inject (tests).
    faults: Option<Arc<FaultInjection>>,
}

impl DeltaLog {
    /// Opens the delta log in `dir`, calling `f(lsn, op)` for each valid record with LSN >
    /// `after`, in order. A torn tail (a crash during an append) is cut off with a warning.
    pub(crate) fn open(
        dir: &Path,
        after: u64,
        mut f: impl FnMut(u64, Op) -> Result<()>,
    ) -> Result<(DeltaLog, u64)> {
        let path = dir.join(DELTA_FILE);
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .at(&path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).at(&path)?;
        let (frames, valid) = crate::wal::decode_frames_with(&bytes, false);
        let mut last = 0;
        for (lsn, payload) in frames {
            last = lsn;
            if lsn > after {
                f(lsn, Op::decode(payload)?)?;
            }
        }
        if valid < bytes.len() {
            tracing::warn!(
                file = %path.display(),
                discarded_bytes = bytes.len() - valid,
                "discarding a torn tail of the catalog delta log"
            );
            file.set_len(valid as u64).at(&path)?;
            file.sync_all().at(&path)?;
        }
        Ok((
            DeltaLog {
                path,
                file,
                size: valid as u64,
                last_lsn: last,
                torn: false,
                faults: None,
            },
            last,
        ))
    }

    /// Appends framed records and makes them durable before returning. Records at or below the
    /// last LSN already in the log are skipped: a crash between carrying a log file forward and
    /// deleting it makes the next process carry the same file again.
    ///
    /// A failed append cuts the file back to its last good length (retried by the next append
    /// if that fails too), so records appended later are never stranded behind a torn one.
    pub(crate) fn append(&mut self, records: &[(u64, Vec<u8>)]) -> Result<()> {
        if self.torn {
            self.file.set_len(self.size).at(&self.path)?;
            self.file.sync_all().at(&self.path)?;
            self.torn = false;
        }
        let mut buf = Vec::new();
        let mut last = self.last_lsn;
        for (lsn, payload) in records {
            if *lsn > last {
                crate::wal::encode_frame(*lsn, payload, &mut buf);
                last = *lsn;
            }
        }
        if buf.is_empty() {
            return Ok(());
        }
        let written = match injected(&self.faults, FaultPoint::DeltaAppend) {
            Some(e) => {
                let _ = self.file.write_all(&buf[..buf.len() / 2]);
                Err(e)
            }
            None => self
                .file
                .write_all(&buf)
                .and_then(|_| self.file.sync_data()),
        };
        if let Err(e) = written {
            self.torn = true;
            if self
                .file
                .set_len(self.size)
                .and_then(|_| self.file.sync_all())
                .is_ok()
            {
                self.torn = false;
            }
            return Err(Error::io(&self.path, e));
        }
        self.size += buf.len() as u64;
        self.last_lsn = last;
        Ok(())
    }

    /// Makes appends fail as `faults` says (tests).
    pub(crate) fn set_faults(&mut self, faults: Option<Arc<FaultInjection>>) {
        self.faults = faults;
    }

    /// Empties the log (after a new base covers it), durably.
    pub(crate) fn reset(&mut self) -> Result<()> {
        self.file.set_len(0).at(&self.path)?;
        self.file.sync_all().at(&self.path)?;
        self.size = 0;
        Ok(())
    }

    /// Bytes in the log.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample_kv(dir: &Path) -> Kv {
        let kv = Kv::open(&dir.join("sled")).unwrap();
        kv.tree("runs").unwrap().insert(b"r1", b"info").unwrap();
        kv.tree("params")
            .unwrap()
            .insert(b"r1\0lr", b"0.1")
            .unwrap();
        kv.tree("meta").unwrap().insert(b"k", []).unwrap();
        kv
    }

    #[test]
    fn base_round_trips_and_damage_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let kv = sample_kv(dir.path());
        write_base(dir.path(), &kv, 42).unwrap();
        assert_eq!(base_lsn(dir.path()).unwrap(), 42);
        let copy = Kv::open(&dir.path().join("copy")).unwrap();
        assert_eq!(load_base(dir.path(), &copy).unwrap(), 42);
        let params = copy.tree("params").unwrap();
        assert_eq!(params.get(b"r1\0lr").unwrap().as_deref(), Some(&b"0.1"[..]));
        let bytes = std::fs::read(dir.path().join(BASE_FILE)).unwrap();
        for i in [0, 9, 20, bytes.len() / 2, bytes.len() - 1] {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x40;
            assert!(parse_base(&damaged).is_err(), "flip at {i} undetected");
        }
        assert!(parse_base(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn delta_log_skips_records_it_already_has() {
        let dir = tempfile::tempdir().unwrap();
        let op = |n: u64| {
            let mut b = Vec::new();
            Op::DeleteRunTag {
                run_id: "r".into(),
                key: n.to_string(),
            }
            .encode_into(&mut b);
            b
        };
        let (mut log, last) = DeltaLog::open(dir.path(), 0, |_, _| Ok(())).unwrap();
        assert_eq!(last, 0);
        log.append(&[(3, op(3)), (4, op(4))]).unwrap();
        // A retired WAL file carried again after a crash: 3 and 4 are skipped, 5 kept.
        log.append(&[(3, op(3)), (4, op(4)), (5, op(5))]).unwrap();
        drop(log);
        let mut seen = Vec::new();
        let (_, last) = DeltaLog::open(dir.path(), 3, |lsn, _| {
            seen.push(lsn);
            Ok(())
        })
        .unwrap();
        assert_eq!((seen, last), (vec![4, 5], 5));
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_base(&bytes);
            let mut with_magic = BASE_MAGIC.to_vec();
            with_magic.extend_from_slice(&bytes);
            let _ = parse_base(&with_magic);
        }
    }
}
