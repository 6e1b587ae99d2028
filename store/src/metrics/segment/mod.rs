//! Parquet segments: immutable files of metric points sorted by (series, step, timestamp, value).
//!
//! Encodings are chosen for training curves: series ids and steps as delta-encoded integers
//! (a series is one run of equal ids, steps mostly +1), timestamps delta-encoded, values
//! byte-stream-split then zstd, optional model/dataset columns dictionary-encoded. Every segment
//! carries a series directory in its footer (`quiver.series`): where each series' rows start, how
//! many there are, their first and last keys and a step fence every [`FENCE`] rows, so that a read
//! of one series selects its rows (and, through the page index, its pages) and nothing else.
//! [`check`] validates that directory and the page index when a segment is opened.

mod check;
pub(crate) mod guard;

use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float64Array, Int64Array, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection,
    RowSelector,
};
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::{KeyValue, PageIndexPolicy};
use parquet::file::page_index::column_index::ColumnIndexMetaData;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use serde::{Deserialize, Serialize};

use super::points::Points;
use crate::error::{Error, IoContext, Result};
use crate::ops::PointExtras;

/// A step is recorded in the series directory every this many rows of a series.
pub(crate) const FENCE: u64 = 1024;
/// Rows per data page: small enough that a sampled read decodes little around each row it keeps.
const PAGE_ROWS: usize = 1024;
/// Rows per row group.
const ROW_GROUP_ROWS: usize = 1 << 20;
const SERIES_KEY: &str = "quiver.series";

/// Where one series lies in a segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SeriesExtent {
    pub(crate) series: u64,
    /// First row of the series in the file.
    pub(crate) start: u64,
    /// Number of rows.
    pub(crate) rows: u64,
    /// (step, timestamp, value) of the first and last rows.
    pub(crate) first: (i64, i64, f64),
    pub(crate) last: (i64, i64, f64),
    /// Whether timestamps never decrease along the rows (then storage order is history order).
    pub(crate) ts_sorted: bool,
    /// Whether any row has a model or dataset reference.
    pub(crate) has_extras: bool,
    /// The step of rows 0, FENCE, 2·FENCE ... of the series.
    pub(crate) fences: Vec<i64>,
}

/// The Arrow schema of a segment.
pub(crate) fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("series_id", DataType::UInt64, false),
        Field::new("step", DataType::Int64, false),
        Field::new("timestamp", DataType::Int64, false),
        Field::new("value", DataType::Float64, false),
        Field::new("model_id", DataType::Utf8, true),
        Field::new("dataset_name", DataType::Utf8, true),
        Field::new("dataset_digest", DataType::Utf8, true),
    ]))
}

fn writer_properties(directory: String) -> WriterProperties {
    let col = |name: &str| ColumnPath::from(name);
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("zstd level"),
        ))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_data_page_row_count_limit(PAGE_ROWS)
        .set_write_batch_size(1024)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_key_value_metadata(Some(vec![KeyValue::new(SERIES_KEY.into(), directory)]));
    for (name, enc) in [
        ("series_id", Encoding::DELTA_BINARY_PACKED),
        ("step", Encoding::DELTA_BINARY_PACKED),
        ("timestamp", Encoding::DELTA_BINARY_PACKED),
        ("value", Encoding::BYTE_STREAM_SPLIT),
    ] {
        b = b
            .set_column_dictionary_enabled(col(name), false)
            .set_column_encoding(col(name), enc);
    }
    b.build()
}

fn parquet_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("parquet segment {}: {e}", path.display()))
}

/// Writes `series` (sorted by id, each sorted into storage order without duplicates) as a new
/// segment at `path`: temp file, fsync, rename, fsync of the directory. When this returns the
/// segment is durable. Returns the number of rows written.
pub(crate) fn write(path: &Path, series: &[(u64, Points)]) -> Result<u64> {
    let mut directory = Vec::with_capacity(series.len());
    let mut row = 0u64;
    for (id, p) in series {
        if p.is_empty() {
            continue;
        }
        let n = p.len();
        directory.push(SeriesExtent {
            series: *id,
            start: row,
            rows: n as u64,
            first: p.key(0),
            last: p.key(n - 1),
            ts_sorted: p.timestamps_sorted(),
            has_extras: p.extras.iter().any(Option::is_some),
            fences: p.step.iter().step_by(FENCE as usize).copied().collect(),
        });
        row += n as u64;
    }
    write_with(path, &directory, |w| {
        let mut pending: Vec<(u64, &Points)> = Vec::new();
        let mut pending_rows = 0;
        for (id, p) in series.iter().filter(|(_, p)| !p.is_empty()) {
            pending.push((*id, p));
            pending_rows += p.len();
            if pending_rows >= BATCH_ROWS {
                w.write(&to_batch(&pending))?;
                pending.clear();
                pending_rows = 0;
            }
        }
        if !pending.is_empty() {
            w.write(&to_batch(&pending))?;
        }
        Ok(())
    })?;
    Ok(row)
}

/// Writes a new segment at `path` holding the series of `src` that `keep` accepts, unchanged,
/// and returns the number of rows written. Streams: at most [`BATCH_ROWS`] rows are in memory
/// at a time, however long a series is. Durable when this returns, as with [`write`].
pub(crate) fn write_filtered(
    path: &Path,
    src: &Segment,
    keep: impl Fn(u64) -> bool,
) -> Result<u64> {
    let mut directory = Vec::new();
    let mut row = 0u64;
    for ext in src.directory().iter().filter(|e| keep(e.series)) {
        directory.push(SeriesExtent {
            start: row,
            ..ext.clone()
        });
        row += ext.rows;
    }
    write_with(path, &directory, |w| {
        for ext in src.directory().iter().filter(|e| keep(e.series)) {
            let end = ext.start + ext.rows;
            let mut at = ext.start;
            while at < end {
                let upto = end.min(at + BATCH_ROWS as u64);
                let chunk = src.read_rows(std::slice::from_ref(&(at..upto)), ext.has_extras)?;
                w.write(&to_batch(&[(ext.series, &chunk)]))?;
                at = upto;
            }
        }
        Ok(())
    })?;
    Ok(row)
}

/// Rows per record batch handed to the Parquet writer.
const BATCH_ROWS: usize = 65536;

/// A Parquet writer into a segment's temp file, with errors that name the segment.
struct SegmentWriter<'a> {
    w: ArrowWriter<&'a mut File>,
    path: &'a Path,
}

impl SegmentWriter<'_> {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.w.write(batch).map_err(|e| parquet_err(self.path, e))
    }
}

/// Writes a segment with series directory `directory` at `path` (temp file, fsync, rename,
/// fsync of the directory); `fill` writes the rows, in directory order.
fn write_with(
    path: &Path,
    directory: &[SeriesExtent],
    fill: impl FnOnce(&mut SegmentWriter<'_>) -> Result<()>,
) -> Result<()> {
    let encoded = hex::encode(postcard::to_allocvec(directory).expect("encode directory"));
    let dir = path.parent().expect("segment path has a parent");
    let mut tmp = tempfile::NamedTempFile::new_in(dir).at(dir)?;
    {
        let w = ArrowWriter::try_new(
            tmp.as_file_mut(),
            schema(),
            Some(writer_properties(encoded)),
        )
        .map_err(|e| parquet_err(path, e))?;
        let mut writer = SegmentWriter { w, path };
        fill(&mut writer)?;
        writer.w.close().map_err(|e| parquet_err(path, e))?;
    }
    tmp.as_file().sync_data().at(tmp.path())?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    crate::fsutil::sync_dir(dir)
}

fn to_batch(series: &[(u64, &Points)]) -> RecordBatch {
    let rows: usize = series.iter().map(|(_, p)| p.len()).sum();
    let mut ids = Vec::with_capacity(rows);
    let mut step = Vec::with_capacity(rows);
    let mut ts = Vec::with_capacity(rows);
    let mut value = Vec::with_capacity(rows);
    let any_extras = series.iter().any(|(_, p)| !p.extras.is_empty());
    let mut extras: Vec<Option<&PointExtras>> = Vec::new();
    for (id, p) in series {
        ids.extend(std::iter::repeat_n(*id, p.len()));
        step.extend_from_slice(&p.step);
        ts.extend_from_slice(&p.timestamp);
        value.extend_from_slice(&p.value);
        if any_extras {
            extras.extend((0..p.len()).map(|i| p.extra(i).map(|e| &**e)));
        }
    }
    let string_col = |f: fn(&PointExtras) -> Option<&str>| -> ArrayRef {
        if any_extras {
            Arc::new(StringArray::from_iter(extras.iter().map(|e| e.and_then(f))))
        } else {
            arrow::array::new_null_array(&DataType::Utf8, rows)
        }
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from(ids)),
        Arc::new(Int64Array::from(step)),
        Arc::new(Int64Array::from(ts)),
        Arc::new(Float64Array::from(value)),
        string_col(|e| e.model_id.as_deref()),
        string_col(|e| e.dataset_name.as_deref()),
        string_col(|e| e.dataset_digest.as_deref()),
    ];
    RecordBatch::try_new(schema(), columns).expect("segment batch matches its schema")
}

/// The rows in both `a` and `b` (each ascending and disjoint).
fn intersect(a: &[Range<u64>], b: &[Range<u64>]) -> Vec<Range<u64>> {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (start, end) = (a[i].start.max(b[j].start), a[i].end.min(b[j].end));
        if start < end {
            out.push(start..end);
        }
        if a[i].end < b[j].end {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// An open segment: its bytes (memory-mapped), Parquet metadata with page index, and directory.
#[derive(Debug)]
pub(crate) struct Segment {
    /// The segment's number in the manifest.
    pub(crate) id: u64,
    pub(crate) path: PathBuf,
    bytes: Bytes,
    meta: ArrowReaderMetadata,
    directory: Vec<SeriesExtent>,
    /// First row of each row group, and the total as last element.
    row_group_starts: Vec<u64>,
}

impl Segment {
    /// Opens and checks the segment at `path` (memory-mapped).
    pub(crate) fn open(id: u64, path: &Path) -> Result<Segment> {
        let file = File::open(path).at(path)?;
        let len = file.metadata().at(path)?.len();
        let bytes = if len == 0 {
            Bytes::new()
        } else {
            // SAFETY: segment files are immutable once renamed into place; nothing writes them.
            let map = unsafe { memmap2::Mmap::map(&file) }.at(path)?;
            Bytes::from_owner(map)
        };
        Segment::from_bytes(id, path, bytes)
    }

    /// Checks `bytes`, the contents of the segment file at `path`, and opens them: the Parquet
    /// metadata and page index must load, and the series directory and page index must agree
    /// with the file ([`check`]), or this is [`Error::Corruption`].
    pub(crate) fn from_bytes(id: u64, path: &Path, bytes: Bytes) -> Result<Segment> {
        let corrupt = |e: &dyn std::fmt::Display| Error::corruption(path, e.to_string());
        // The Arrow schema comes from the Parquet schema, not from the Arrow IPC copy the writer
        // embeds (`ARROW:schema`): arrow-ipc panics on some damaged copies, and [`check`] holds
        // the derived schema to [`schema`] anyway.
        let options = ArrowReaderOptions::new()
            .with_page_index_policy(PageIndexPolicy::Required)
            .with_skip_arrow_metadata(true);
        let meta = guard::contain(path, || {
            ArrowReaderMetadata::load(&bytes, options).map_err(|e| corrupt(&e))
        })?;
        let row_group_starts =
            check::row_groups(&meta, bytes.len() as u64).map_err(|e| corrupt(&e))?;
        let kv = meta
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .and_then(|kvs| kvs.iter().find(|kv| kv.key == SERIES_KEY))
            .and_then(|kv| kv.value.clone())
            .ok_or_else(|| corrupt(&"no series directory"))?;
        let raw = hex::decode(kv).map_err(|e| corrupt(&e))?;
        let directory: Vec<SeriesExtent> = postcard::from_bytes(&raw).map_err(|e| corrupt(&e))?;
        let total = *row_group_starts.last().unwrap_or(&0);
        check::directory(&directory, total).map_err(|e| corrupt(&e))?;
        Ok(Segment {
            id,
            path: path.to_path_buf(),
            bytes,
            meta,
            directory,
            row_group_starts,
        })
    }

    /// Total rows.
    pub(crate) fn rows(&self) -> u64 {
        *self.row_group_starts.last().unwrap_or(&0)
    }

    /// Size of the file in bytes.
    pub(crate) fn size_bytes(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// The series directory.
    pub(crate) fn directory(&self) -> &[SeriesExtent] {
        &self.directory
    }

    /// Where series `id` lies, if the segment has it.
    pub(crate) fn extent(&self, id: u64) -> Option<&SeriesExtent> {
        self.directory
            .binary_search_by_key(&id, |e| e.series)
            .ok()
            .map(|i| &self.directory[i])
    }

    /// Reads the rows in `ranges` (file rows, ascending, disjoint). Extras are read when asked.
    pub(crate) fn read_rows(&self, ranges: &[Range<u64>], with_extras: bool) -> Result<Points> {
        let mut out = Points::default();
        let ranges: Vec<Range<u64>> = ranges.iter().filter(|r| r.start < r.end).cloned().collect();
        let (Some(first), Some(last)) = (ranges.first(), ranges.last()) else {
            return Ok(out);
        };
        if last.end > self.rows() {
            return Err(Error::corruption(&self.path, "read beyond the last row"));
        }
        let wanted: u64 = ranges.iter().map(|r| r.end - r.start).sum();
        let rg_of = |row: u64| self.row_group_starts.partition_point(|&s| s <= row) - 1;
        let (rg_first, rg_last) = (rg_of(first.start), rg_of(last.end - 1));
        let base = self.row_group_starts[rg_first];
        let mut selectors = Vec::with_capacity(ranges.len() * 2 + 1);
        let mut pos = base;
        for r in &ranges {
            if r.start > pos {
                selectors.push(RowSelector::skip((r.start - pos) as usize));
            }
            selectors.push(RowSelector::select((r.end - r.start) as usize));
            pos = r.end;
        }
        let columns: &[usize] = if with_extras {
            &[1, 2, 3, 4, 5, 6]
        } else {
            &[1, 2, 3]
        };
        let mask = ProjectionMask::roots(
            self.meta.metadata().file_metadata().schema_descr(),
            columns.iter().copied(),
        );
        let reader = guard::contain(&self.path, || {
            ParquetRecordBatchReaderBuilder::new_with_metadata(
                self.bytes.clone(),
                self.meta.clone(),
            )
            .with_projection(mask)
            .with_row_groups((rg_first..=rg_last).collect())
            .with_row_selection(RowSelection::from(selectors))
            .with_batch_size(64 * 1024)
            .build()
            .map_err(|e| parquet_err(&self.path, e))
        })?;
        for batch in guard::Batches::new(reader, &self.path) {
            let batch = batch?;
            let col = |i: usize| batch.column(i);
            let int = |i: usize| {
                col(i)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .map(|a| a.values().to_vec())
            };
            let step = int(0).ok_or_else(|| Error::corruption(&self.path, "step column type"))?;
            let ts =
                int(1).ok_or_else(|| Error::corruption(&self.path, "timestamp column type"))?;
            let value = col(2)
                .as_any()
                .downcast_ref::<Float64Array>()
                .ok_or_else(|| Error::corruption(&self.path, "value column type"))?;
            let mut part = Points {
                step,
                timestamp: ts,
                value: value.values().to_vec(),
                extras: Vec::new(),
            };
            if with_extras {
                let s = |i: usize| col(i).as_any().downcast_ref::<StringArray>().cloned();
                let (Some(m), Some(n), Some(d)) = (s(3), s(4), s(5)) else {
                    return Err(Error::corruption(&self.path, "extras column type"));
                };
                let get = |a: &StringArray, i: usize| a.is_valid(i).then(|| a.value(i).to_string());
                part.extras = (0..batch.num_rows())
                    .map(|i| {
                        let e = PointExtras {
                            model_id: get(&m, i),
                            dataset_name: get(&n, i),
                            dataset_digest: get(&d, i),
                        };
                        (e != PointExtras::default()).then(|| Arc::new(e))
                    })
                    .collect();
            }
            out.extend(&part);
        }
        if out.len() as u64 != wanted {
            return Err(Error::corruption(
                &self.path,
                format!("{} rows read where the file has {wanted}", out.len()),
            ));
        }
        Ok(out)
    }

    /// The row groups holding rows in `ranges` (file rows, ascending, disjoint, non-empty) and
    /// the selection of those rows within the row groups read one after another.
    fn selection(&self, ranges: &[Range<u64>]) -> (Vec<usize>, RowSelection) {
        let rg_of = |row: u64| self.row_group_starts.partition_point(|&s| s <= row) - 1;
        let mut groups: Vec<usize> = Vec::new();
        for r in ranges {
            for rg in rg_of(r.start)..=rg_of(r.end - 1) {
                if groups.last() != Some(&rg) {
                    groups.push(rg);
                }
            }
        }
        let mut selectors = Vec::with_capacity(ranges.len() * 2 + 1);
        let mut ranges = ranges.iter().peekable();
        for &rg in &groups {
            let (start, end) = (self.row_group_starts[rg], self.row_group_starts[rg + 1]);
            let mut pos = start;
            while let Some(r) = ranges.peek() {
                if r.start >= end {
                    break;
                }
                let (a, b) = (r.start.max(start), r.end.min(end));
                if a > pos {
                    selectors.push(RowSelector::skip((a - pos) as usize));
                }
                selectors.push(RowSelector::select((b - a) as usize));
                pos = b;
                if r.end <= end {
                    ranges.next();
                } else {
                    break;
                }
            }
            if end > pos {
                selectors.push(RowSelector::skip((end - pos) as usize));
            }
        }
        (groups, RowSelection::from(selectors))
    }

    /// A reader of `columns` (indexes into [`schema`], any order; batches hold them in schema
    /// order) of the rows in `ranges` (file rows, ascending, disjoint), in batches of up to
    /// `batch_rows` rows. Only those columns are decoded, and pages holding no selected row are
    /// skipped without being read (through the offset index).
    pub(crate) fn read_columns(
        &self,
        ranges: &[Range<u64>],
        columns: &[usize],
        batch_rows: usize,
    ) -> Result<guard::Batches> {
        let ranges: Vec<Range<u64>> = ranges.iter().filter(|r| r.start < r.end).cloned().collect();
        if ranges.last().is_some_and(|r| r.end > self.rows()) {
            return Err(Error::corruption(&self.path, "read beyond the last row"));
        }
        let (groups, selection) = self.selection(&ranges);
        let mask = ProjectionMask::roots(
            self.meta.metadata().file_metadata().schema_descr(),
            columns.iter().copied(),
        );
        let reader = guard::contain(&self.path, || {
            ParquetRecordBatchReaderBuilder::new_with_metadata(
                self.bytes.clone(),
                self.meta.clone(),
            )
            .with_projection(mask)
            .with_row_groups(groups)
            .with_row_selection(selection)
            .with_batch_size(batch_rows.max(1))
            .build()
            .map_err(|e| parquet_err(&self.path, e))
        })?;
        Ok(guard::Batches::new(reader, &self.path))
    }

    /// The rows of series `ext` (file rows, ascending, disjoint) that may hold a step within
    /// `steps` and a timestamp within `timestamps` (inclusive bounds; `None` is no condition).
    /// A superset, to be filtered again: the series' first and last keys may rule it out whole,
    /// its step fences narrow it to [`FENCE`]-row windows, then the page statistics of the step
    /// and timestamp columns drop every page whose values all lie outside the bounds.
    pub(crate) fn candidate_rows(
        &self,
        ext: &SeriesExtent,
        steps: Option<(i64, i64)>,
        timestamps: Option<(i64, i64)>,
    ) -> Vec<Range<u64>> {
        let (mut lo, mut hi) = (0, ext.rows);
        if let Some((a, b)) = steps {
            if a > b || ext.last.0 < a || ext.first.0 > b {
                return Vec::new();
            }
            // Fence i is the step of row i·FENCE; steps never decrease along the series.
            let f = ext.fences.partition_point(|&s| s < a);
            lo = f.saturating_sub(1) as u64 * FENCE;
            let g = ext.fences.partition_point(|&s| s <= b);
            hi = (g as u64 * FENCE).min(ext.rows);
        }
        if let Some((a, b)) = timestamps {
            let (first, last) = (ext.first.1, ext.last.1);
            if a > b || (ext.ts_sorted && (last < a || first > b)) {
                return Vec::new();
            }
        }
        let mut rows = Vec::with_capacity(1);
        if lo < hi {
            rows.push(ext.start + lo..ext.start + hi);
        }
        for (column, bounds) in [(1, steps), (2, timestamps)] {
            if let Some(bounds) = bounds {
                rows = intersect(&rows, &self.matching_pages(column, bounds, &rows));
            }
        }
        rows
    }

    /// The row ranges of the pages of `column` (an Int64 column) overlapping `span` whose
    /// statistics allow a value within `bounds`; pages without statistics are kept.
    fn matching_pages(
        &self,
        column: usize,
        bounds: (i64, i64),
        span: &[Range<u64>],
    ) -> Vec<Range<u64>> {
        let (Some(first), Some(last)) = (span.first(), span.last()) else {
            return Vec::new();
        };
        let (from, to) = (first.start, last.end);
        let meta = self.meta.metadata();
        let (Some(column_index), Some(offset_index)) = (meta.column_index(), meta.offset_index())
        else {
            return std::iter::once(from..to).collect();
        };
        let mut out: Vec<Range<u64>> = Vec::new();
        for (rg, group) in self.row_group_starts.windows(2).enumerate() {
            let (start, end) = (group[0], group[1]);
            if end <= from || start >= to {
                continue;
            }
            let pages = offset_index[rg][column].page_locations();
            let stats = match &column_index[rg][column] {
                ColumnIndexMetaData::INT64(index) => Some(index),
                _ => None,
            };
            for (p, loc) in pages.iter().enumerate() {
                let page_start = start + loc.first_row_index as u64;
                let page_end = pages
                    .get(p + 1)
                    .map_or(end, |next| start + next.first_row_index as u64);
                if page_end <= from || page_start >= to {
                    continue;
                }
                let outside = stats.is_some_and(|s| match (s.min_value(p), s.max_value(p)) {
                    (Some(&min), Some(&max)) => max < bounds.0 || min > bounds.1,
                    _ => false,
                });
                if outside {
                    continue;
                }
                match out.last_mut() {
                    Some(last) if last.end == page_start => last.end = page_end,
                    _ => out.push(page_start..page_end),
                }
            }
        }
        out
    }

    /// How many data pages of one column hold a row in `ranges` (file rows, ascending,
    /// disjoint): what a read of those rows decompresses and decodes per column (the columns'
    /// pages hold the same rows, [`PAGE_ROWS`] each).
    pub(crate) fn pages_holding(&self, ranges: &[Range<u64>]) -> u64 {
        let Some(offset_index) = self.meta.metadata().offset_index() else {
            return 0;
        };
        let mut pages = 0u64;
        let mut last_counted: Option<(usize, usize)> = None;
        for r in ranges.iter().filter(|r| r.start < r.end) {
            for (rg, (bounds, columns)) in self
                .row_group_starts
                .windows(2)
                .zip(offset_index)
                .enumerate()
            {
                let (start, end) = (bounds[0], bounds[1]);
                if end <= r.start || start >= r.end {
                    continue;
                }
                let locs = columns[1].page_locations();
                let page_of = |row: u64| {
                    locs.partition_point(|l| start + l.first_row_index as u64 <= row) - 1
                };
                let (a, b) = (page_of(r.start.max(start)), page_of(r.end.min(end) - 1));
                let mut first = a;
                if last_counted == Some((rg, a)) {
                    first += 1;
                }
                pages += (b + 1).saturating_sub(first) as u64;
                last_counted = Some((rg, b));
            }
        }
        pages
    }

    /// Every row of series `ext`.
    pub(crate) fn read_series(&self, ext: &SeriesExtent) -> Result<Points> {
        self.read_rows(
            std::slice::from_ref(&(ext.start..ext.start + ext.rows)),
            ext.has_extras,
        )
    }

    /// The number of rows of series `ext` whose step is below `step` (a lower bound), using the
    /// fences to read at most one fence window.
    pub(crate) fn rows_below_step(&self, ext: &SeriesExtent, step: i64) -> Result<u64> {
        if step <= ext.first.0 {
            return Ok(0);
        }
        if step > ext.last.0 {
            return Ok(ext.rows);
        }
        // Fence i holds the step of row i·FENCE; the answer lies in the window after the last
        // fence whose step is below `step`.
        let f = ext.fences.partition_point(|&s| s < step);
        let window_start = (f.saturating_sub(1) as u64) * FENCE;
        let window_end = (f as u64 * FENCE).min(ext.rows);
        if window_start >= window_end {
            return Ok(window_start.min(ext.rows));
        }
        let rows = self.read_rows(
            std::slice::from_ref(&(ext.start + window_start..ext.start + window_end)),
            false,
        )?;
        Ok(window_start + rows.step.partition_point(|&s| s < step) as u64)
    }
}
