//! The columnar metric store: a buffer of recent points and immutable Parquet segments.
//!
//! Points arrive through [`MetricsStore::apply`] (after their op is in the write-ahead log), are
//! held in a per-series [`Buffer`], and are persisted by [`MetricsStore::freeze`] +
//! [`MetricsStore::persist_frozen`] as a sorted segment. The manifest (`MANIFEST`, replaced
//! atomically) lists the live segments and the LSN up to which every point is in one of them; the
//! write-ahead log may be truncated up to that LSN. Files not named in the manifest are leftovers of
//! a crash and are deleted on open.
//!
//! Ordering invariant: a frozen buffer is dropped only in the same state update that makes its
//! segment visible, so a reader never misses points in between.

mod buffer;
mod points;
pub(crate) mod read;
pub(crate) mod segment;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::ops::LogBatch;
pub(crate) use buffer::Buffer;
pub(crate) use points::{latest_order, Points};
use read::{Part, SeriesView};
use segment::Segment;

const MANIFEST: &str = "MANIFEST";
/// Most rows one compaction merges (they are held in memory while merging).
pub(crate) const MERGE_BUDGET_ROWS: u64 = 8_000_000;
const MANIFEST_MAGIC: &[u8; 8] = b"QVMANI\x00\x01";

/// Which segments are live and what they cover.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Manifest {
    /// Every metric point of an op with LSN ≤ this is in a listed segment.
    persisted_lsn: u64,
    /// The number the next segment file gets.
    next_segment: u64,
    /// Live segments, oldest first.
    segments: Vec<u64>,
}

impl Manifest {
    fn load(path: &Path) -> Result<Option<Manifest>> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(path, e)),
        };
        let body = bytes
            .strip_prefix(MANIFEST_MAGIC)
            .filter(|b| b.len() >= 4)
            .ok_or_else(|| Error::corruption(path, "not a metrics manifest"))?;
        let (payload, crc) = body.split_at(body.len() - 4);
        if crc32fast::hash(payload).to_le_bytes() != crc {
            return Err(Error::corruption(path, "manifest checksum mismatch"));
        }
        postcard::from_bytes(payload)
            .map(Some)
            .map_err(|e| Error::corruption(path, e.to_string()))
    }

    fn store(&self, path: &Path) -> Result<()> {
        let payload = postcard::to_allocvec(self).expect("encode manifest");
        let mut bytes = MANIFEST_MAGIC.to_vec();
        bytes.extend_from_slice(&payload);
        bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        crate::fsutil::atomic_write(path, &bytes)
    }
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("seg-{id:010}.parquet"))
}

/// A buffer that no longer takes points and waits to become a segment.
#[derive(Debug)]
struct Frozen {
    buffer: Arc<Buffer>,
    /// Every op up to this LSN is in this buffer, an older one, or a segment.
    upto: u64,
}

#[derive(Debug, Default)]
struct State {
    active: Buffer,
    frozen: Vec<Frozen>,
    segments: Vec<Arc<Segment>>,
}

/// Figures about the metric store, for flushing decisions and reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetricsStats {
    /// Points held in memory (active and frozen buffers).
    pub buffered_points: u64,
    /// Live Parquet segments.
    pub segments: u64,
    /// Rows in those segments.
    pub segment_rows: u64,
    /// Bytes in those segments.
    pub segment_bytes: u64,
}

/// The metric store of one store directory.
#[derive(Debug)]
pub(crate) struct MetricsStore {
    dir: PathBuf,
    state: RwLock<State>,
    /// Held while segments are written or compacted; guards the manifest.
    manifest: Mutex<Manifest>,
}

impl MetricsStore {
    /// Opens the segments in `dir` (creating it), deleting files the manifest does not name.
    pub(crate) fn open(dir: &Path) -> Result<MetricsStore> {
        crate::fsutil::create_dir_durable(dir)?;
        let manifest = Manifest::load(&dir.join(MANIFEST))?.unwrap_or_default();
        let mut segments = Vec::new();
        for id in &manifest.segments {
            segments.push(Arc::new(Segment::open(*id, &segment_path(dir, *id))?));
        }
        let live: std::collections::HashSet<PathBuf> = manifest
            .segments
            .iter()
            .map(|id| segment_path(dir, *id))
            .collect();
        for entry in std::fs::read_dir(dir).at(dir)? {
            let path = entry.at(dir)?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name != MANIFEST && !live.contains(&path) {
                tracing::info!(file = %path.display(), "removing leftover metrics file");
                std::fs::remove_file(&path).at(&path)?;
            }
        }
        Ok(MetricsStore {
            dir: dir.to_path_buf(),
            state: RwLock::new(State {
                segments,
                ..State::default()
            }),
            manifest: Mutex::new(manifest),
        })
    }

    /// Every metric point of ops up to this LSN is in a segment.
    pub(crate) fn persisted_lsn(&self) -> u64 {
        self.manifest.lock().expect("manifest lock").persisted_lsn
    }

    /// Adds the points of a logged batch to the active buffer.
    pub(crate) fn apply(&self, lsn: u64, batch: &LogBatch) {
        if batch.points.is_empty() {
            return;
        }
        self.state
            .write()
            .expect("metrics state")
            .active
            .append(lsn, batch);
    }

    /// Figures about buffers and segments.
    pub(crate) fn stats(&self) -> MetricsStats {
        let s = self.state.read().expect("metrics state");
        MetricsStats {
            buffered_points: (s.active.len()
                + s.frozen.iter().map(|f| f.buffer.len()).sum::<usize>())
                as u64,
            segments: s.segments.len() as u64,
            segment_rows: s.segments.iter().map(|s| s.rows()).sum(),
            segment_bytes: s.segments.iter().map(|s| s.size_bytes()).sum(),
        }
    }

    /// Moves the active buffer aside to be persisted; `upto` is the last LSN whose points it may
    /// hold. Call with writers held off, so no op ≤ `upto` lands in the new active buffer.
    pub(crate) fn freeze(&self, upto: u64) {
        let mut s = self.state.write().expect("metrics state");
        let buffer = std::mem::take(&mut s.active);
        s.frozen.push(Frozen {
            buffer: Arc::new(buffer),
            upto,
        });
    }

    /// Writes every frozen buffer as a segment and records it in the manifest. When this returns,
    /// every point of ops up to the last frozen `upto` is durable in segments.
    pub(crate) fn persist_frozen(&self) -> Result<()> {
        let mut manifest = self.manifest.lock().expect("manifest lock");
        loop {
            let next = {
                let s = self.state.read().expect("metrics state");
                s.frozen.first().map(|f| (f.buffer.clone(), f.upto))
            };
            let Some((buffer, upto)) = next else {
                return Ok(());
            };
            let mut segment = None;
            let mut updated = manifest.clone();
            if !buffer.is_empty() {
                let id = updated.next_segment;
                let path = segment_path(&self.dir, id);
                segment::write(&path, &buffer.sorted_copy())?;
                segment = Some(Arc::new(Segment::open(id, &path)?));
                updated.next_segment += 1;
                updated.segments.push(id);
            }
            updated.persisted_lsn = updated.persisted_lsn.max(upto);
            updated.store(&self.dir.join(MANIFEST))?;
            *manifest = updated;
            let mut s = self.state.write().expect("metrics state");
            s.segments.extend(segment);
            s.frozen.remove(0);
        }
    }

    /// Merges small segments into one when there are more than `max_small` of them, so that reads
    /// open few files. Returns whether a compaction happened. Memory: the merged segments are
    /// read whole, so only segments under `small_rows` rows are merged, oldest first, at most
    /// [`MERGE_BUDGET_ROWS`] rows at a time.
    pub(crate) fn compact(&self, max_small: usize, small_rows: u64) -> Result<bool> {
        let mut manifest = self.manifest.lock().expect("manifest lock");
        let small: Vec<Arc<Segment>> = {
            let s = self.state.read().expect("metrics state");
            let mut small: Vec<Arc<Segment>> = s
                .segments
                .iter()
                .filter(|seg| seg.rows() < small_rows)
                .cloned()
                .collect();
            small.sort_by_key(|seg| seg.id);
            small
        };
        if small.len() <= max_small {
            return Ok(false);
        }
        let mut budget = MERGE_BUDGET_ROWS;
        let victims: Vec<Arc<Segment>> = small
            .into_iter()
            .take_while(|seg| {
                let fits = seg.rows() <= budget;
                budget = budget.saturating_sub(seg.rows());
                fits
            })
            .collect();
        if victims.len() < 2 {
            return Ok(false);
        }
        let mut merged: std::collections::BTreeMap<u64, Points> = Default::default();
        for seg in &victims {
            for ext in seg.directory() {
                let points = seg.read_series(ext)?;
                merged.entry(ext.series).or_default().extend(&points);
            }
        }
        let mut series: Vec<(u64, Points)> = merged.into_iter().collect();
        for (_, p) in &mut series {
            p.sort_storage_order();
        }
        let id = manifest.next_segment;
        let path = segment_path(&self.dir, id);
        segment::write(&path, &series)?;
        let new_segment = Arc::new(Segment::open(id, &path)?);
        let gone: std::collections::HashSet<u64> = victims.iter().map(|s| s.id).collect();
        let mut updated = manifest.clone();
        updated.next_segment += 1;
        // The merged segment takes the place of the oldest victim, keeping manifest order stable.
        let mut placed = false;
        updated.segments = updated
            .segments
            .iter()
            .filter_map(|s| {
                if gone.contains(s) {
                    (!std::mem::replace(&mut placed, true)).then_some(id)
                } else {
                    Some(*s)
                }
            })
            .collect();
        updated.store(&self.dir.join(MANIFEST))?;
        *manifest = updated;
        {
            let mut s = self.state.write().expect("metrics state");
            s.segments.retain(|seg| !gone.contains(&seg.id));
            s.segments.push(new_segment);
        }
        for seg in victims {
            // Readers holding the old segment keep their mapping; the file goes when they drop it.
            std::fs::remove_file(&seg.path).at(&seg.path)?;
        }
        crate::fsutil::sync_dir(&self.dir)?;
        Ok(true)
    }

    /// Rewrites every segment that holds a series `keep` rejects (the series of purged runs)
    /// without those rows, one segment at a time; a segment left with nothing is dropped.
    /// Returns the number of rows removed. Streams (see [`segment::write_filtered`]). Points
    /// still in buffers are not touched: flush first to reach them. Each step is crash-safe: the
    /// new segment is durable before the manifest names it, and the old file is deleted after.
    pub(crate) fn drop_series(&self, keep: impl Fn(u64) -> Result<bool>) -> Result<u64> {
        let mut manifest = self.manifest.lock().expect("manifest lock");
        let segments: Vec<Arc<Segment>> =
            self.state.read().expect("metrics state").segments.clone();
        let mut removed = 0u64;
        for seg in segments {
            let mut dead = std::collections::HashSet::new();
            for ext in seg.directory() {
                if !keep(ext.series)? {
                    dead.insert(ext.series);
                }
            }
            if dead.is_empty() {
                continue;
            }
            let mut updated = manifest.clone();
            let replacement = if dead.len() == seg.directory().len() {
                None
            } else {
                let id = updated.next_segment;
                updated.next_segment += 1;
                let path = segment_path(&self.dir, id);
                segment::write_filtered(&path, &seg, |s| !dead.contains(&s))?;
                Some(Arc::new(Segment::open(id, &path)?))
            };
            updated.segments = updated
                .segments
                .iter()
                .filter_map(|&s| {
                    if s == seg.id {
                        replacement.as_ref().map(|r| r.id)
                    } else {
                        Some(s)
                    }
                })
                .collect();
            updated.store(&self.dir.join(MANIFEST))?;
            *manifest = updated;
            removed += seg.rows() - replacement.as_ref().map_or(0, |r| r.rows());
            {
                let mut s = self.state.write().expect("metrics state");
                let at = s.segments.iter().position(|x| x.id == seg.id);
                match (at, replacement) {
                    (Some(i), Some(r)) => s.segments[i] = r,
                    (Some(i), None) => {
                        s.segments.remove(i);
                    }
                    (None, _) => {}
                }
            }
            // Readers holding the old segment keep their mapping; the file goes when they drop it.
            std::fs::remove_file(&seg.path).at(&seg.path)?;
            crate::fsutil::sync_dir(&self.dir)?;
        }
        Ok(removed)
    }

    /// A consistent view of series `id` across segments and buffers.
    pub(crate) fn series(&self, id: u64) -> SeriesView {
        self.views(&[id]).pop().expect("one view per id")
    }

    /// Views of the series `ids`, in that order, all taken at one moment (under one read lock):
    /// a point moving from a buffer into a segment meanwhile is in exactly one of them.
    pub(crate) fn views(&self, ids: &[u64]) -> Vec<SeriesView> {
        let s = self.state.read().expect("metrics state");
        let buffers: Vec<&Buffer> = s
            .frozen
            .iter()
            .map(|f| &*f.buffer)
            .chain([&s.active])
            .collect();
        let taken: Vec<(Vec<Part>, Vec<_>)> = ids
            .iter()
            .map(|&id| {
                let parts = s
                    .segments
                    .iter()
                    .filter_map(|seg| {
                        seg.extent(id)
                            .map(|ext| Part::Segment(seg.clone(), ext.clone()))
                    })
                    .collect();
                let snapshots = buffers
                    .iter()
                    .filter_map(|b| b.series(id))
                    .map(|b| b.snapshot())
                    .collect();
                (parts, snapshots)
            })
            .collect();
        drop(buffers);
        drop(s);
        taken
            .into_iter()
            .map(|(mut parts, snapshots)| {
                for snap in snapshots {
                    if snap.sorted {
                        parts.extend(snap.chunks.into_iter().map(Part::Memory));
                    } else {
                        parts.push(Part::Memory(Arc::new(snap.merged_sorted())));
                    }
                }
                SeriesView::new(parts)
            })
            .collect()
    }
}
