//! Tests of the write-ahead log.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use proptest::prelude::*;

use super::record::{begin_frame, finish_frame, segment_path, FRAME_HEADER, MAGIC};
use super::*;

/// Records as replayed: (lsn, payload).
type Records = Vec<(Lsn, Vec<u8>)>;

/// Opens the log in `dir`, collecting what it replays.
fn open_collect(
    dir: &Path,
    opts: WalOptions,
    floor: Lsn,
    after: Lsn,
) -> Result<(Wal, ReplayReport, Records)> {
    let mut seen = Vec::new();
    let (wal, report) = Wal::open(dir, opts, floor, after, |lsn, p| {
        seen.push((lsn, p.to_vec()));
        Ok(())
    })?;
    Ok((wal, report, seen))
}

/// Opens with default options, floor 1, replaying everything.
fn open_all(dir: &Path) -> (Wal, ReplayReport, Records) {
    open_collect(dir, WalOptions::default(), 1, 0).expect("open")
}

/// Segment files in `dir`, oldest first.
fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    files.sort();
    files
}

/// The frames of `records`, encoded as the log writes them.
fn encode(records: &[(Lsn, Vec<u8>)]) -> Vec<u8> {
    let mut buf = Vec::new();
    for (lsn, payload) in records {
        let start = begin_frame(&mut buf);
        buf.extend_from_slice(payload);
        finish_frame(&mut buf, start, *lsn).unwrap();
    }
    buf
}

/// A payload of `len` bytes derived from `seed`.
fn payload(seed: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seed.wrapping_mul(31).wrapping_add(i as u64 * 7)) as u8)
        .collect()
}

/// Asserts the LSNs of `records` run consecutively from `first`.
fn assert_consecutive(records: &Records, first: Lsn) {
    for (i, (lsn, _)) in records.iter().enumerate() {
        assert_eq!(*lsn, first + i as u64, "lsn at index {i}");
    }
}

#[test]
fn wal_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Wal>();
}

#[test]
fn round_trip_various_sizes_and_replay_after() {
    let dir = tempfile::tempdir().unwrap();
    let sizes = [0usize, 1, 1 << 20, 17, 0, 4096, 3];
    let mut written = Vec::new();
    {
        let (wal, report, seen) = open_all(dir.path());
        assert!(seen.is_empty());
        assert_eq!(report.last_lsn, None);
        assert_eq!(wal.next_lsn(), 1);
        assert_eq!(wal.durable_lsn(), 0);
        for (i, &len) in sizes.iter().enumerate() {
            let p = payload(i as u64, len);
            let lsn = if i % 2 == 0 {
                wal.append(&p).unwrap()
            } else {
                wal.append_with(|buf| buf.extend_from_slice(&p)).unwrap()
            };
            written.push((lsn, p));
        }
        let last = written.last().unwrap().0;
        wal.sync_to(last).unwrap();
        assert_eq!(wal.durable_lsn(), last);
        assert!(wal.size_bytes() > 1 << 20);
    }
    let (wal, report, seen) = open_all(dir.path());
    assert_eq!(seen, written);
    assert_consecutive(&seen, 1);
    assert_eq!(report.records, sizes.len() as u64);
    assert_eq!(report.last_lsn, Some(sizes.len() as u64));
    assert_eq!(report.discarded_tail_bytes, 0);
    assert_eq!(wal.next_lsn(), sizes.len() as u64 + 1);
    drop(wal);

    let (_wal, report, seen) = open_collect(dir.path(), WalOptions::default(), 1, 4).unwrap();
    assert_eq!(seen, written[4..].to_vec());
    assert_eq!(report.records, 3);
    assert_eq!(report.last_lsn, Some(7));
}

#[test]
fn unsynced_records_are_not_durable_and_bad_arguments_fail() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _, _) = open_all(dir.path());
    let lsn = wal.append(b"a").unwrap();
    assert_eq!(wal.durable_lsn(), 0);
    wal.sync_to(0).unwrap(); // nothing to do
    assert!(matches!(
        wal.sync_to(lsn + 1),
        Err(Error::InvalidParameter(_))
    ));
    let too_big = wal.append_with(|buf| buf.resize(buf.len() + record::MAX_PAYLOAD + 1, 0));
    assert!(matches!(too_big, Err(Error::InvalidParameter(_))));
    let next = wal.append(b"b").unwrap();
    assert_eq!(next, lsn + 1, "a rejected record takes no lsn");
    wal.sync_to(next).unwrap();
    drop(wal);
    let (_wal, _, seen) = open_all(dir.path());
    assert_eq!(seen, vec![(1, b"a".to_vec()), (2, b"b".to_vec())]);
}

#[test]
fn group_commit_shares_fsyncs() {
    const THREADS: u64 = 8;
    const PER_THREAD: u64 = 2000;
    let dir = tempfile::tempdir().unwrap();
    let (wal, _, _) = open_all(dir.path());
    let wal = Arc::new(wal);
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let wal = Arc::clone(&wal);
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                for i in 0..PER_THREAD {
                    let p = format!("{t}:{i}").into_bytes();
                    let lsn = wal.append(&p).unwrap();
                    wal.sync_to(lsn).unwrap();
                    assert!(wal.durable_lsn() >= lsn);
                    acked.push((lsn, p));
                }
                acked
            })
        })
        .collect();
    let mut acked: Vec<(Lsn, Vec<u8>)> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    acked.sort();
    let syncs = THREADS * PER_THREAD;
    let fsyncs = wal.fsync_count();
    assert!(fsyncs < syncs, "{fsyncs} fsyncs for {syncs} sync_to calls");
    drop(wal);

    let (_wal, _, seen) = open_all(dir.path());
    assert_eq!(seen.len() as u64, syncs);
    assert_consecutive(&seen, 1);
    assert_eq!(seen, acked);
    let distinct: HashSet<&Vec<u8>> = seen.iter().map(|(_, p)| p).collect();
    assert_eq!(distinct.len() as u64, syncs);
}

/// Writes records 1..=5 (the last one 40 bytes) into one segment; returns its path, its bytes
/// and the offset where the last frame starts.
fn log_with_five_records(dir: &Path) -> (PathBuf, Vec<u8>, usize, Records) {
    let (wal, _, _) = open_all(dir);
    let records: Records = (1..=5u64)
        .map(|i| (i, payload(i, if i == 5 { 40 } else { i as usize * 3 })))
        .collect();
    for (_, p) in &records {
        wal.append(p).unwrap();
    }
    wal.sync_to(5).unwrap();
    drop(wal);
    let file = segment_files(dir).pop().unwrap();
    let mut bytes = fs::read(&file).unwrap();
    let last_start = MAGIC.len() + encode(&records[..4]).len();
    // The active segment is zero-filled ahead of its data.
    let end = last_start + FRAME_HEADER + 40;
    assert!(bytes.len() > end && bytes[end..].iter().all(|&b| b == 0));
    bytes.truncate(end);
    (file, bytes, last_start, records)
}

/// Reopens a log whose last record was damaged: records 1..=4 survive, the tail is discarded,
/// and appends continue at lsn 5 and survive another reopen.
fn assert_recovers(dir: &Path, records: &Records, expect_discarded: Option<u64>) {
    let (wal, report, seen) = open_all(dir);
    assert_eq!(seen, records[..4].to_vec());
    assert!(report.discarded_tail_bytes > 0);
    if let Some(d) = expect_discarded {
        assert_eq!(report.discarded_tail_bytes, d);
    }
    assert_eq!(report.last_lsn, Some(4));
    assert_eq!(wal.next_lsn(), 5);
    assert_eq!(wal.append(b"after-1").unwrap(), 5);
    assert_eq!(wal.append(b"after-2").unwrap(), 6);
    wal.sync_to(6).unwrap();
    drop(wal);
    let (_wal, report, seen) = open_all(dir);
    assert_eq!(report.discarded_tail_bytes, 0);
    assert_consecutive(&seen, 1);
    assert_eq!(seen.len(), 6);
    assert_eq!(seen[4].1, b"after-1");
    assert_eq!(seen[5].1, b"after-2");
}

#[test]
fn torn_tail_at_every_offset_is_truncated() {
    let template = tempfile::tempdir().unwrap();
    let (file, bytes, last_start, records) = log_with_five_records(template.path());
    let name = file.file_name().unwrap().to_owned();
    for cut in last_start + 1..bytes.len() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(&name), &bytes[..cut]).unwrap();
        assert_recovers(dir.path(), &records, Some((cut - last_start) as u64));
    }
}

#[test]
fn corrupt_tail_variants_are_truncated() {
    let template = tempfile::tempdir().unwrap();
    let (file, bytes, last_start, records) = log_with_five_records(template.path());
    let name = file.file_name().unwrap().to_owned();
    let mut variants: Vec<Vec<u8>> = Vec::new();
    // Garbage over the last record.
    let mut v = bytes.clone();
    v[last_start..].fill(0xAB);
    variants.push(v);
    // Garbage where the last record should be.
    let mut v = bytes[..last_start].to_vec();
    v.extend_from_slice(&[0x5A; 100]);
    variants.push(v);
    // A flipped crc byte.
    let mut v = bytes.clone();
    v[last_start + 5] ^= 0x01;
    variants.push(v);
    // A flipped payload byte.
    let mut v = bytes.clone();
    *v.last_mut().unwrap() ^= 0x80;
    variants.push(v);
    // A valid frame whose lsn is not consecutive.
    let mut v = bytes[..last_start].to_vec();
    v.extend_from_slice(&encode(&[(9, records[4].1.clone())]));
    variants.push(v);
    // A len above the maximum.
    let mut v = bytes.clone();
    v[last_start..last_start + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    variants.push(v);
    for (i, v) in variants.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(&name), v).unwrap();
        let expected = (v.len() - last_start) as u64;
        eprintln!("variant {i}");
        assert_recovers(dir.path(), &records, Some(expected));
    }
}

#[test]
fn torn_header_of_last_segment_is_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _, _) = open_all(dir.path());
    wal.append(b"x").unwrap();
    wal.rotate().unwrap();
    drop(wal);
    // A crash while creating segment 2: only part of its header reached the disk.
    fs::write(segment_path(dir.path(), 2), &MAGIC[..3]).unwrap();
    let (wal, report, seen) = open_all(dir.path());
    assert_eq!(seen, vec![(1, b"x".to_vec())]);
    assert_eq!(report.discarded_tail_bytes, 3);
    assert_eq!(wal.append(b"y").unwrap(), 2);
}

/// Three closed segments holding lsns 1..=3, 4..=6, 7..=9 and an active one.
fn three_segments(dir: &Path) -> Vec<SegmentInfo> {
    let (wal, _, _) = open_all(dir);
    for i in 1..=9u64 {
        wal.append(&payload(i, 10)).unwrap();
        if i % 3 == 0 {
            assert_eq!(wal.rotate().unwrap(), i);
        }
    }
    wal.closed_segments()
}

#[test]
fn corruption_in_a_closed_segment_is_an_error() {
    type Damage = fn(&[SegmentInfo]);
    let damages: [(&str, Damage); 5] = [
        ("bit flip", |s| {
            let mut b = fs::read(&s[1].path).unwrap();
            b[MAGIC.len() + FRAME_HEADER + 2] ^= 1;
            fs::write(&s[1].path, b).unwrap();
        }),
        ("torn", |s| {
            let b = fs::read(&s[0].path).unwrap();
            fs::write(&s[0].path, &b[..b.len() - 3]).unwrap();
        }),
        ("bad magic", |s| {
            let mut b = fs::read(&s[2].path).unwrap();
            b[0] = b'X';
            fs::write(&s[2].path, b).unwrap();
        }),
        ("missing middle segment", |s| {
            fs::remove_file(&s[1].path).unwrap()
        }),
        ("garbage appended", |s| {
            let mut b = fs::read(&s[0].path).unwrap();
            b.extend_from_slice(&[0x11; 20]);
            fs::write(&s[0].path, b).unwrap();
        }),
    ];
    for (what, damage) in damages {
        let dir = tempfile::tempdir().unwrap();
        let segments = three_segments(dir.path());
        assert_eq!(segments.len(), 3);
        damage(&segments);
        let err = open_collect(dir.path(), WalOptions::default(), 1, 0).unwrap_err();
        assert!(matches!(err, Error::Corruption { .. }), "{what}: {err:?}");
    }
}

#[test]
fn bad_magic_in_last_segment_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(segment_path(dir.path(), 1), b"NOTAWAL!rest").unwrap();
    let err = open_collect(dir.path(), WalOptions::default(), 1, 0).unwrap_err();
    assert!(matches!(err, Error::Corruption { .. }), "{err:?}");
}

#[test]
fn rotate_closes_segments_and_read_segment_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let segments = three_segments(dir.path());
    let ranges: Vec<(Lsn, Lsn)> = segments.iter().map(|s| (s.first_lsn, s.last_lsn)).collect();
    assert_eq!(ranges, vec![(1, 3), (4, 6), (7, 9)]);
    for seg in &segments {
        let mut seen = Vec::new();
        Wal::read_segment(&seg.path, |lsn, p| {
            seen.push((lsn, p.to_vec()));
            Ok(())
        })
        .unwrap();
        let expected: Records = (seg.first_lsn..=seg.last_lsn)
            .map(|i| (i, payload(i, 10)))
            .collect();
        assert_eq!(seen, expected);
        assert_eq!(fs::metadata(&seg.path).unwrap().len(), seg.bytes);
    }
    // Rotating an empty active segment changes nothing.
    let (wal, _, seen) = open_all(dir.path());
    assert_eq!(seen.len(), 9);
    assert_eq!(wal.closed_segments(), segments);
    assert_eq!(wal.rotate().unwrap(), 9);
    assert_eq!(wal.closed_segments(), segments);
    wal.append(b"ten").unwrap();
    assert_eq!(wal.rotate().unwrap(), 10);
    assert_eq!(wal.durable_lsn(), 10);
    assert_eq!(wal.closed_segments().len(), 4);
    let before = wal.size_bytes();
    wal.truncate_through(6).unwrap();
    assert_eq!(wal.closed_segments().len(), 2);
    assert_eq!(wal.closed_segments()[0].first_lsn, 7);
    assert_eq!(
        before - wal.size_bytes(),
        segments[0].bytes + segments[1].bytes
    );
    wal.truncate_through(8).unwrap(); // 7..=9 is still needed
    assert_eq!(wal.closed_segments().len(), 2);
    drop(wal);
    let (_wal, _, seen) = open_all(dir.path());
    assert_eq!(seen.first().unwrap().0, 7);
    assert_eq!(seen.last().unwrap().0, 10);
}

#[test]
fn rotation_by_size_keeps_segments_near_the_limit() {
    const LIMIT: u64 = 200;
    let opts = WalOptions {
        segment_bytes: LIMIT,
        ..WalOptions::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let (wal, _, _) = open_collect(dir.path(), opts.clone(), 1, 0).unwrap();
    let mut written = Vec::new();
    // Record by record, then one big batch that spans several segments in one flush.
    for i in 1..=40u64 {
        let p = payload(i, (i % 7) as usize * 9);
        let lsn = wal.append(&p).unwrap();
        written.push((lsn, p));
        if i <= 20 {
            wal.sync_to(lsn).unwrap();
        }
    }
    wal.sync_to(40).unwrap();
    let closed = wal.closed_segments();
    assert!(closed.len() >= 4, "{closed:?}");
    for pair in closed.windows(2) {
        assert_eq!(pair[0].last_lsn + 1, pair[1].first_lsn);
    }
    for seg in &closed {
        let len = fs::metadata(&seg.path).unwrap().len();
        assert_eq!(len, seg.bytes);
        let last_frame = FRAME_HEADER as u64 + (seg.last_lsn % 7) * 9;
        assert!(len >= LIMIT, "{seg:?} closed early");
        assert!(len - last_frame < LIMIT, "{seg:?} closed late");
    }
    // Closed segments are trimmed to their data; the active one is zero-filled ahead.
    let closed_bytes: u64 = closed.iter().map(|s| s.bytes).sum();
    assert!(wal.size_bytes() > closed_bytes);

    let cut = closed[1].last_lsn;
    wal.truncate_through(cut).unwrap();
    assert_eq!(wal.closed_segments(), closed[2..].to_vec());
    drop(wal);
    let (_wal, report, seen) = open_collect(dir.path(), opts, 1, 0).unwrap();
    assert_eq!(seen, written[cut as usize..].to_vec());
    assert_eq!(report.last_lsn, Some(40));
}

#[test]
fn next_lsn_floor_applies_when_the_log_is_empty_or_behind() {
    // Every file removed.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wal");
    {
        let (wal, _, _) = open_all(&path);
        wal.append(b"a").unwrap();
        wal.sync_to(1).unwrap();
    }
    fs::remove_dir_all(&path).unwrap();
    let (wal, report, seen) = open_collect(&path, WalOptions::default(), 42, 41).unwrap();
    assert!(seen.is_empty());
    assert_eq!(report.last_lsn, None);
    assert_eq!(wal.next_lsn(), 42);
    assert_eq!(wal.durable_lsn(), 41);
    assert_eq!(wal.append(b"b").unwrap(), 42);
    wal.rotate().unwrap();
    wal.truncate_through(42).unwrap(); // only the empty active segment is left
    drop(wal);
    let (wal, _, seen) = open_collect(&path, WalOptions::default(), 43, 42).unwrap();
    assert!(seen.is_empty());
    assert_eq!(wal.append(b"c").unwrap(), 43);
    wal.sync_to(43).unwrap();
    drop(wal);

    // A floor beyond the last record: the old records are obsolete and go away.
    let (wal, report, seen) = open_collect(&path, WalOptions::default(), 100, 99).unwrap();
    assert!(seen.is_empty());
    assert_eq!(report.last_lsn, Some(43));
    assert_eq!(wal.append(b"d").unwrap(), 100);
    wal.sync_to(100).unwrap();
    drop(wal);
    let (wal, _, seen) = open_collect(&path, WalOptions::default(), 1, 0).unwrap();
    assert_eq!(seen, vec![(100, b"d".to_vec())]);
    assert_eq!(wal.next_lsn(), 101);
}

#[test]
fn concurrent_rotate_and_truncate_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions {
        segment_bytes: 512,
        ..WalOptions::default()
    };
    let (wal, _, _) = open_collect(dir.path(), opts.clone(), 1, 0).unwrap();
    let wal = Arc::new(wal);
    let writers: Vec<_> = (0..3u64)
        .map(|t| {
            let wal = Arc::clone(&wal);
            std::thread::spawn(move || {
                for i in 0..300u64 {
                    let lsn = wal.append(&payload(t * 1000 + i, 20)).unwrap();
                    if i % 3 == 0 {
                        wal.sync_to(lsn).unwrap();
                    }
                }
            })
        })
        .collect();
    let rotator = {
        let wal = Arc::clone(&wal);
        std::thread::spawn(move || {
            for _ in 0..50 {
                let last = wal.rotate().unwrap();
                assert!(wal.durable_lsn() >= last);
                // Keep everything from `last - 100` on.
                wal.truncate_through(last.saturating_sub(100)).unwrap();
            }
        })
    };
    for h in writers {
        h.join().unwrap();
    }
    rotator.join().unwrap();
    let last = wal.next_lsn() - 1;
    assert_eq!(last, 900);
    wal.sync_to(last).unwrap();
    let closed = wal.closed_segments();
    for pair in closed.windows(2) {
        assert_eq!(pair[0].last_lsn + 1, pair[1].first_lsn);
    }
    let first_kept = closed.first().map(|s| s.first_lsn);
    drop(wal);
    let (_wal, report, seen) = open_collect(dir.path(), opts, 1, 0).unwrap();
    assert_eq!(report.last_lsn, Some(900));
    let first = seen.first().unwrap().0;
    assert!(first_kept.is_none_or(|f| f == first));
    assert_consecutive(&seen, first);
}

#[test]
fn a_failed_write_poisons_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _, _) = open_all(dir.path());
    let lsn = wal.append(b"a").unwrap();
    wal.sync_to(lsn).unwrap();
    wal.break_active_file_for_test();
    let lsn = wal.append(b"b").unwrap();
    assert!(matches!(wal.sync_to(lsn), Err(Error::Poisoned(_))));
    assert!(matches!(wal.sync_to(lsn), Err(Error::Poisoned(_))));
    assert!(matches!(wal.append(b"c"), Err(Error::Poisoned(_))));
    assert!(matches!(wal.rotate(), Err(Error::Poisoned(_))));
    assert_eq!(wal.durable_lsn(), 1);
    drop(wal);
    let (_wal, _, seen) = open_all(dir.path());
    assert_eq!(seen, vec![(1, b"a".to_vec())]);
}

#[test]
fn a_recovered_log_forgets_what_was_not_durable_and_appends_again() {
    let dir = tempfile::tempdir().unwrap();
    let faults = std::sync::Arc::new(crate::FaultInjection::default());
    let opts = WalOptions {
        segment_bytes: 256,
        faults: Some(faults.clone()),
    };
    let (wal, _, _) = open_collect(dir.path(), opts.clone(), 1, 0).unwrap();
    for p in [b"a", b"b"] {
        let lsn = wal.append(p).unwrap();
        wal.sync_to(lsn).unwrap();
    }
    // Half of the next write reaches the file, then the disk is full.
    faults.fail_wal_writes(1);
    let lsn = wal.append(&[7u8; 100]).unwrap();
    let err = wal.sync_to(lsn).unwrap_err();
    assert!(matches!(err, Error::DiskFull(_)), "{err}");
    assert!(wal.refusal().is_some());
    // Still full: recovery fails and the log keeps refusing.
    faults.fail_wal_writes(1);
    assert!(wal.recover().is_err());
    assert!(matches!(wal.append(b"x"), Err(Error::DiskFull(_))));
    // Space is back.
    assert_eq!(wal.recover().unwrap(), 2);
    assert!(wal.refusal().is_none());
    // A failed fsync: the data was written, yet is forgotten too.
    faults.fail_wal_syncs(1);
    let lsn = wal.append(b"lost").unwrap();
    assert_eq!(lsn, 3);
    assert!(wal.sync_to(lsn).is_err());
    assert_eq!(wal.recover().unwrap(), 2);
    // Appends go on from the last durable record, across segment rotations.
    for i in 0..20u8 {
        let lsn = wal.append(&[i; 40]).unwrap();
        wal.sync_to(lsn).unwrap();
    }
    drop(wal);
    let (_wal, report, seen) = open_collect(dir.path(), opts, 1, 0).unwrap();
    assert_eq!(report.discarded_tail_bytes, 0);
    assert_eq!(seen.len(), 22);
    assert_eq!(&seen[..2], &[(1, b"a".to_vec()), (2, b"b".to_vec())]);
    assert_consecutive(&seen, 1);
    assert_eq!(seen[2].1, vec![0u8; 40]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn decode_returns_the_intact_prefix(
        payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..20),
        first in 0u64..u64::MAX / 2,
        cut in any::<prop::sample::Index>(),
    ) {
        let records: Records = payloads
            .into_iter()
            .enumerate()
            .map(|(i, p)| (first + i as u64, p))
            .collect();
        let bytes = encode(&records);
        let cut = cut.index(bytes.len() + 1);
        let (decoded, valid) = decode_frames(&bytes[..cut]);
        // Exactly the records wholly before the cut.
        let mut end = 0;
        let mut whole = 0;
        for (_, p) in &records {
            if end + FRAME_HEADER + p.len() > cut {
                break;
            }
            end += FRAME_HEADER + p.len();
            whole += 1;
        }
        prop_assert_eq!(valid, end);
        let decoded: Records = decoded.into_iter().map(|(l, p)| (l, p.to_vec())).collect();
        prop_assert_eq!(&decoded[..], &records[..whole]);
    }

    #[test]
    fn decode_never_panics_and_returns_only_verified_records(
        bytes in prop::collection::vec(any::<u8>(), 0..2000),
        valid_prefix in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..50), 0..4),
    ) {
        // Arbitrary bytes, sometimes behind a few valid frames.
        let prefix: Records = valid_prefix.into_iter().enumerate().map(|(i, p)| (7 + i as u64, p)).collect();
        let mut input = encode(&prefix);
        input.extend_from_slice(&bytes);
        let (decoded, valid) = decode_frames(&input);
        prop_assert!(valid <= input.len());
        prop_assert!(decoded.len() >= prefix.len());
        // Re-encoding what was returned (which recomputes every crc) gives back the valid prefix.
        let owned: Records = decoded.into_iter().map(|(l, p)| (l, p.to_vec())).collect();
        prop_assert_eq!(encode(&owned), input[..valid].to_vec());
        prop_assert_eq!(&owned[..prefix.len()], &prefix[..]);
    }
}

#[test]
fn zero_fill_after_the_last_record_is_a_clean_end() {
    let dir = tempfile::tempdir().unwrap();
    let segments = three_segments(dir.path());
    // A crash between writing a segment's last record and trimming its fill-ahead leaves zeros
    // after it: in a closed segment as in the last one, that is no damage.
    for seg in &segments[..2] {
        let mut b = fs::read(&seg.path).unwrap();
        b.extend_from_slice(&[0; 4096]);
        fs::write(&seg.path, b).unwrap();
    }
    let (wal, report, seen) = open_collect(dir.path(), WalOptions::default(), 1, 0).unwrap();
    assert_eq!(report.discarded_tail_bytes, 0);
    assert_eq!(seen.len(), 9);
    for seg in &segments[..2] {
        let mut n = 0;
        Wal::read_segment(&seg.path, |_, _| {
            n += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 3);
    }
    // The log keeps working, and its own fill-ahead reads back cleanly.
    let lsn = wal.append(b"more").unwrap();
    wal.sync_to(lsn).unwrap();
    drop(wal);
    let (_wal, report, seen) = open_collect(dir.path(), WalOptions::default(), 1, 0).unwrap();
    assert_eq!((report.discarded_tail_bytes, seen.len()), (0, 10));
}
