//! The physical scan of `metrics`: which rows to read, spread over partitions, read lazily.
//!
//! # Planning
//! When the query is planned the scan takes one view of every chosen series (under one lock of
//! the metric store, so a point being flushed is seen exactly once) and turns it into work:
//! - a series whose parts do not overlap (the usual case) is read part by part: its rows in each
//!   segment, narrowed to the pages that can hold the `step`/`timestamp` bounds
//!   ([`Segment::candidate_rows`]), and its buffered chunks, narrowed to the step bounds by
//!   binary search (a chunk is sorted by step);
//! - a series whose parts overlap (the same points logged again after a flush) is read whole,
//!   merged and deduplicated when its partition reaches it, then cut to the step bounds.
//!
//! The segment rows of all series are grouped by segment, in file order, and the work is cut
//! into partitions of about equal row counts (cuts fall on page boundaries), so that a full
//! scan reads each segment front to back in few large reads, and a narrow one reads only its
//! pages. Every read decodes only the projected columns; a query that needs none (`count(*)`,
//! only `run_id`/`key`) decodes nothing and counts rows. Rows are not filtered here: the pushed
//! filters are `Inexact` and DataFusion applies them to what the scan returns.
//!
//! # Memory
//! Each partition stream has a [`MemoryReservation`] in the query's pool that covers what the
//! stream itself holds: the batch it has just returned, until it is polled again (then the
//! consumer has taken the batch, and an operator that keeps it, such as a sort, a join's build
//! side or the result collector of [`crate::query`], reserves it itself), plus a merged series
//! it is working through, reserved before it is read. A batch or a merged series that does not
//! fit fails the query with DataFusion's "resources exhausted" error, which [`crate::query`]
//! reports as [`crate::Error::InvalidParameter`]. The reservation is freed when the stream ends
//! or is dropped.
//!
//! # Metrics
//! `EXPLAIN ANALYZE` shows, per scan: `segment_rows` (rows selected in segments, so read),
//! `segment_pages` (data pages per decoded column holding them: what is decompressed),
//! `segment_values` (values decoded: rows × decoded columns), `memory_rows` (rows taken from the
//! buffers, merged series included) and `pruned_rows` (rows of the chosen series in segments
//! that the step/timestamp bounds ruled out without reading them).

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use arrow::array::{new_null_array, ArrayRef, Float64Array, Int64Array, StringArray, UInt64Array};
use arrow::buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{
    BaselineMetrics, Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};

use super::{SeriesRef, DATASET_DIGEST, EXPERIMENT_ID, KEY, RUN_ID, SERIES_ID, STEP};
use crate::metrics::read::{Part, SeriesView};
use crate::metrics::segment::guard::Batches;
use crate::metrics::segment::Segment;
use crate::metrics::Points;
use crate::ops::PointExtras;
use crate::query::to_datafusion;
use crate::store::Inner;

/// Rows of a segment cut where a partition's share ends are rounded up to a multiple of this
/// (the segments' page size), so that no page is decoded by two partitions.
const CUT_ALIGN: u64 = 1024;

/// What a scan reads.
#[derive(Debug)]
pub(super) struct Request {
    /// The chosen series.
    pub(super) series: Vec<SeriesRef>,
    /// Inclusive bounds on `step` and `timestamp` that rows may be read under (a superset).
    pub(super) steps: Option<(i64, i64)>,
    pub(super) timestamps: Option<(i64, i64)>,
    /// The projected schema, and the table columns it holds.
    pub(super) schema: SchemaRef,
    pub(super) columns: Vec<usize>,
    /// Rows each partition may stop after (a hint: a limit above the scan remains).
    pub(super) limit: Option<usize>,
    /// Partitions wanted, and rows per output batch.
    pub(super) partitions: usize,
    pub(super) batch_rows: usize,
}

/// Ranges of file rows of a segment, each with the series it holds (an index into the scan's
/// series).
type SeriesRows = Vec<(Range<u64>, usize)>;

/// A piece of a scan partition's work.
#[derive(Debug)]
enum Unit {
    /// Rows of one segment: ascending, disjoint ranges of file rows, each of one series (an
    /// index into the scan's series).
    Segment {
        segment: Arc<Segment>,
        ranges: Vec<(Range<u64>, usize)>,
    },
    /// Rows `range` of a series' points held in memory.
    Memory {
        series: usize,
        points: Arc<Points>,
        range: Range<usize>,
    },
    /// A series whose parts overlap: materialized (merged, deduplicated) when reached.
    Merged { series: usize, view: SeriesView },
}

impl Unit {
    fn rows(&self) -> u64 {
        match self {
            Unit::Segment { ranges, .. } => ranges.iter().map(|(r, _)| r.end - r.start).sum(),
            Unit::Memory { range, .. } => range.len() as u64,
            Unit::Merged { view, .. } => view.total(),
        }
    }
}

/// What is shared by the partitions of one scan.
#[derive(Debug)]
struct Shared {
    series: Vec<SeriesRef>,
    steps: Option<(i64, i64)>,
    schema: SchemaRef,
    /// Table columns of the output, in order.
    columns: Vec<usize>,
    /// Segment columns to decode (ascending), and for each output column its position among
    /// them (`None` for the constant columns).
    decode: Vec<usize>,
    decoded_at: Vec<Option<usize>>,
    limit: Option<usize>,
    batch_rows: usize,
}

/// The `metrics` scan (see the module documentation).
#[derive(Debug)]
pub(super) struct MetricsScanExec {
    shared: Arc<Shared>,
    partitions: Vec<Arc<Vec<Unit>>>,
    timestamps: Option<(i64, i64)>,
    /// Rows of the chosen series' segment parts ruled out when planning.
    pruned: u64,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

/// Whether table column `c` is stored in the segments (the others are constant per series).
fn is_stored(c: usize) -> bool {
    (STEP..=DATASET_DIGEST).contains(&c)
}

/// The segment column holding table column `c` (see [`is_stored`]), in
/// [`crate::metrics::segment::schema`].
fn segment_column(c: usize) -> usize {
    c - STEP + 1
}

impl MetricsScanExec {
    pub(super) fn new(inner: &Inner, request: Request) -> MetricsScanExec {
        let ids: Vec<u64> = request.series.iter().map(|s| s.id).collect();
        let views = inner.metrics().views(&ids);
        let (steps, timestamps) = (request.steps, request.timestamps);

        // Segment rows by segment, memory chunks, merged series.
        let mut by_segment: Vec<(Arc<Segment>, SeriesRows)> = Vec::new();
        let mut memory: Vec<Unit> = Vec::new();
        let mut merged: Vec<Unit> = Vec::new();
        let mut pruned = 0u64;
        for (series, view) in views.into_iter().enumerate() {
            if !view.is_disjoint() {
                merged.push(Unit::Merged { series, view });
                continue;
            }
            for part in view.parts() {
                match part {
                    Part::Segment(segment, ext) => {
                        let rows = segment.candidate_rows(ext, steps, timestamps);
                        let read: u64 = rows.iter().map(|r| r.end - r.start).sum();
                        pruned += ext.rows - read;
                        if rows.is_empty() {
                            continue;
                        }
                        let slot = match by_segment.iter().position(|(s, _)| s.id == segment.id) {
                            Some(i) => i,
                            None => {
                                by_segment.push((segment.clone(), Vec::new()));
                                by_segment.len() - 1
                            }
                        };
                        by_segment[slot]
                            .1
                            .extend(rows.into_iter().map(|r| (r, series)));
                    }
                    Part::Memory(points) => {
                        let range = step_range(points, steps);
                        if !range.is_empty() {
                            memory.push(Unit::Memory {
                                series,
                                points: points.clone(),
                                range,
                            });
                        }
                    }
                }
            }
        }
        by_segment.sort_by_key(|(s, _)| s.id);
        let mut work: Vec<Unit> = Vec::new();
        for (segment, mut ranges) in by_segment {
            ranges.sort_by_key(|(r, _)| r.start);
            work.push(Unit::Segment { segment, ranges });
        }
        work.extend(memory);
        work.extend(merged);
        let partitions = split(work, request.partitions.max(1));

        let mut decode: Vec<usize> = request
            .columns
            .iter()
            .filter(|&&c| is_stored(c))
            .map(|&c| segment_column(c))
            .collect();
        decode.sort_unstable();
        decode.dedup();
        let decoded_at = request
            .columns
            .iter()
            .map(|&c| is_stored(c).then(|| decode.binary_search(&segment_column(c)).ok())?)
            .collect();
        let properties = PlanProperties::new(
            EquivalenceProperties::new(request.schema.clone()),
            Partitioning::UnknownPartitioning(partitions.len()),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        MetricsScanExec {
            shared: Arc::new(Shared {
                series: request.series,
                steps,
                schema: request.schema,
                columns: request.columns,
                decode,
                decoded_at,
                limit: request.limit,
                batch_rows: request.batch_rows.max(1),
            }),
            partitions: partitions.into_iter().map(Arc::new).collect(),
            timestamps,
            pruned,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }
}

/// The rows of sorted `points` whose step may lie within `steps`.
fn step_range(points: &Points, steps: Option<(i64, i64)>) -> Range<usize> {
    match steps {
        None => 0..points.len(),
        Some((a, b)) if a > b => 0..0,
        Some((a, b)) => {
            let lo = points.step.partition_point(|&s| s < a);
            let hi = points.step.partition_point(|&s| s <= b);
            lo..hi.max(lo)
        }
    }
}

/// Cuts `work` into `n` partitions of about equal row counts (fewer when there is little), in
/// order; segment units are cut at page-aligned rows, the others are kept whole.
fn split(work: Vec<Unit>, n: usize) -> Vec<Vec<Unit>> {
    let total: u64 = work.iter().map(Unit::rows).sum();
    let n = n.min(total.div_ceil(CUT_ALIGN).max(1) as usize);
    let share = total.div_ceil(n as u64).max(1);
    let mut out: Vec<Vec<Unit>> = (0..n).map(|_| Vec::new()).collect();
    let (mut p, mut filled) = (0usize, 0u64);
    for unit in work {
        match unit {
            Unit::Segment { segment, ranges } => {
                let mut current: Vec<(Range<u64>, usize)> = Vec::new();
                for (mut r, series) in ranges {
                    while r.start < r.end {
                        let room = if p + 1 == n { u64::MAX } else { share - filled };
                        let mut take = (r.end - r.start).min(room);
                        if take < r.end - r.start {
                            let cut = (r.start + take).next_multiple_of(CUT_ALIGN).min(r.end);
                            take = cut - r.start;
                        }
                        current.push((r.start..r.start + take, series));
                        r.start += take;
                        filled += take;
                        if filled >= share && p + 1 < n {
                            out[p].push(Unit::Segment {
                                segment: segment.clone(),
                                ranges: std::mem::take(&mut current),
                            });
                            p += 1;
                            filled = 0;
                        }
                    }
                }
                if !current.is_empty() {
                    out[p].push(Unit::Segment {
                        segment,
                        ranges: current,
                    });
                }
            }
            other => {
                filled += other.rows();
                out[p].push(other);
                if filled >= share && p + 1 < n {
                    p += 1;
                    filled = 0;
                }
            }
        }
    }
    out
}

impl DisplayAs for MetricsScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let names: Vec<&str> = self
            .shared
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        write!(
            f,
            "MetricsScanExec: series={}, partitions={}, projection=[{}]",
            self.shared.series.len(),
            self.partitions.len(),
            names.join(", ")
        )?;
        if let Some((a, b)) = self.shared.steps {
            write!(f, ", steps=[{a}, {b}]")?;
        }
        if let Some((a, b)) = self.timestamps {
            write!(f, ", timestamps=[{a}, {b}]")?;
        }
        if let Some(limit) = self.shared.limit {
            write!(f, ", limit={limit}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for MetricsScanExec {
    fn name(&self) -> &str {
        "MetricsScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal(
                "MetricsScanExec has no children".into(),
            ))
        }
    }

    fn execute(
        &self,
        partition: usize,
        ctx: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let units = self.partitions.get(partition).cloned().ok_or_else(|| {
            DataFusionError::Internal(format!("MetricsScanExec has no partition {partition}"))
        })?;
        let counter =
            |name: &'static str| MetricBuilder::new(&self.metrics).counter(name, partition);
        let metrics = ScanMetrics {
            baseline: BaselineMetrics::new(&self.metrics, partition),
            segment_rows: counter("segment_rows"),
            segment_pages: counter("segment_pages"),
            segment_values: counter("segment_values"),
            memory_rows: counter("memory_rows"),
        };
        if partition == 0 {
            counter("pruned_rows").add(self.pruned as usize);
        }
        let reservation = MemoryConsumer::new(format!("MetricsScanExec[{partition}]"))
            .register(ctx.memory_pool());
        let stream = ScanStream {
            shared: self.shared.clone(),
            units,
            next_unit: 0,
            current: None,
            reservation,
            held: 0,
            remaining: self.shared.limit,
            metrics,
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.shared.schema.clone(),
            futures_util::stream::iter(stream),
        )))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

#[derive(Debug)]
struct ScanMetrics {
    baseline: BaselineMetrics,
    segment_rows: Count,
    segment_pages: Count,
    segment_values: Count,
    memory_rows: Count,
}

/// The unit a stream is reading.
enum Reading {
    Segment {
        /// `None` when no segment column is needed: rows are only counted.
        reader: Option<Batches>,
        ranges: Vec<(Range<u64>, usize)>,
        /// The range being read, and how many of its rows were returned.
        at: usize,
        done: u64,
    },
    Points {
        series: usize,
        points: Arc<Points>,
        next: usize,
        end: usize,
    },
}

/// One partition's stream: its units one after another, a batch at a time.
struct ScanStream {
    shared: Arc<Shared>,
    units: Arc<Vec<Unit>>,
    next_unit: usize,
    current: Option<Reading>,
    reservation: MemoryReservation,
    /// Bytes of a merged series being read (reserved while it is held).
    held: usize,
    remaining: Option<usize>,
    metrics: ScanMetrics,
}

impl Iterator for ScanStream {
    type Item = DfResult<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        // The batch returned last has been taken by the consumer.
        self.reservation.resize(self.held);
        if self.remaining == Some(0) {
            return self.finish();
        }
        let elapsed = self.metrics.baseline.elapsed_compute().clone();
        let timer = elapsed.timer();
        let out = self.next_batch();
        timer.done();
        match out {
            Ok(Some(mut batch)) => {
                if let Some(remaining) = &mut self.remaining {
                    if batch.num_rows() > *remaining {
                        batch = batch.slice(0, *remaining);
                    }
                    *remaining -= batch.num_rows();
                }
                let size = batch.get_array_memory_size();
                if let Err(e) = self.reservation.try_resize(self.held + size) {
                    self.stop();
                    return Some(Err(e));
                }
                self.metrics.baseline.record_output(batch.num_rows());
                Some(Ok(batch))
            }
            Ok(None) => self.finish(),
            Err(e) => {
                self.stop();
                Some(Err(e))
            }
        }
    }
}

impl ScanStream {
    /// Ends the stream: nothing more is read, the reservation is freed.
    fn stop(&mut self) {
        self.next_unit = self.units.len();
        self.current = None;
        self.held = 0;
        self.reservation.free();
    }

    fn finish(&mut self) -> Option<DfResult<RecordBatch>> {
        self.stop();
        self.metrics.baseline.done();
        None
    }

    /// The next batch of this partition, `None` at the end.
    fn next_batch(&mut self) -> DfResult<Option<RecordBatch>> {
        loop {
            if self.current.is_none() {
                let units = self.units.clone();
                let Some(unit) = units.get(self.next_unit) else {
                    return Ok(None);
                };
                self.next_unit += 1;
                self.current = Some(self.start(unit)?);
            }
            let batch = match self.current.as_mut().expect("a unit is being read") {
                Reading::Segment {
                    reader,
                    ranges,
                    at,
                    done,
                } => {
                    let (rows, decoded) = match reader {
                        Some(reader) => match reader.next() {
                            Some(b) => {
                                let b = b.map_err(to_datafusion)?;
                                (b.num_rows(), Some(b))
                            }
                            None => (0, None),
                        },
                        None => {
                            let left: u64 = ranges[*at..]
                                .iter()
                                .map(|(r, _)| r.end - r.start)
                                .sum::<u64>()
                                - *done;
                            (left.min(self.shared.batch_rows as u64) as usize, None)
                        }
                    };
                    if rows == 0 {
                        None
                    } else {
                        let runs = advance(ranges, at, done, rows);
                        Some(self.shared.build(rows, &runs, |i| {
                            decoded.as_ref().map(|b| b.column(i).clone())
                        })?)
                    }
                }
                Reading::Points {
                    series,
                    points,
                    next,
                    end,
                } => {
                    if next == end {
                        None
                    } else {
                        let rows = (*end - *next).min(self.shared.batch_rows);
                        let range = *next..*next + rows;
                        *next += rows;
                        let batch = self.shared.build(rows, &[(*series, rows)], |i| {
                            Some(points_column(points, range.clone(), self.shared.decode[i]))
                        })?;
                        Some(batch)
                    }
                }
            };
            match batch {
                Some(b) => return Ok(Some(b)),
                None => {
                    self.current = None;
                    self.held = 0;
                    self.reservation.resize(0);
                }
            }
        }
    }

    /// Starts reading `unit`.
    fn start(&mut self, unit: &Unit) -> DfResult<Reading> {
        match unit {
            Unit::Segment { segment, ranges } => {
                let rows: Vec<Range<u64>> = ranges.iter().map(|(r, _)| r.clone()).collect();
                let count: u64 = rows.iter().map(|r| r.end - r.start).sum();
                self.metrics.segment_rows.add(count as usize);
                let reader = if self.shared.decode.is_empty() {
                    None
                } else {
                    self.metrics
                        .segment_pages
                        .add(segment.pages_holding(&rows) as usize);
                    self.metrics
                        .segment_values
                        .add(count as usize * self.shared.decode.len());
                    Some(
                        segment
                            .read_columns(&rows, &self.shared.decode, self.shared.batch_rows)
                            .map_err(to_datafusion)?,
                    )
                };
                Ok(Reading::Segment {
                    reader,
                    ranges: ranges.clone(),
                    at: 0,
                    done: 0,
                })
            }
            Unit::Memory {
                series,
                points,
                range,
            } => {
                self.metrics.memory_rows.add(range.len());
                Ok(Reading::Points {
                    series: *series,
                    points: points.clone(),
                    next: range.start,
                    end: range.end,
                })
            }
            Unit::Merged { series, view } => {
                // Reserve the merged copy before making it (each part read, then the sort).
                let estimate = view.total() as usize * MERGED_BYTES_PER_POINT;
                self.reservation.try_grow(estimate)?;
                self.held = estimate;
                let points = view.materialize().map_err(to_datafusion)?;
                let range = step_range(&points, self.shared.steps);
                self.metrics.memory_rows.add(range.len());
                Ok(Reading::Points {
                    series: *series,
                    points: Arc::new(points),
                    next: range.start,
                    end: range.end,
                })
            }
        }
    }
}

/// Bytes per point of a merged series' [`Points`]: three 8-byte columns and the slot of its
/// model/dataset references.
const MERGED_BYTES_PER_POINT: usize = 32;

/// Moves the cursor (`at`, `done`) of `ranges` forward by `rows` rows; returns the series of
/// those rows as runs of (series, rows).
fn advance(
    ranges: &[(Range<u64>, usize)],
    at: &mut usize,
    done: &mut u64,
    mut rows: usize,
) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    while rows > 0 && *at < ranges.len() {
        let (r, series) = &ranges[*at];
        let take = ((r.end - r.start - *done) as usize).min(rows);
        match runs.last_mut() {
            Some((s, n)) if s == series => *n += take,
            _ => runs.push((*series, take)),
        }
        rows -= take;
        *done += take as u64;
        if *done == r.end - r.start {
            *at += 1;
            *done = 0;
        }
    }
    runs
}

/// Segment column `column` of `points`' rows `range`.
fn points_column(points: &Points, range: Range<usize>, column: usize) -> ArrayRef {
    let extra = |f: fn(&PointExtras) -> Option<&str>| -> ArrayRef {
        if points.extras.is_empty() {
            return new_null_array(&DataType::Utf8, range.len());
        }
        Arc::new(StringArray::from_iter(
            range.clone().map(|j| points.extra(j).and_then(|e| f(e))),
        ))
    };
    match column {
        1 => Arc::new(Int64Array::from(points.step[range.clone()].to_vec())),
        2 => Arc::new(Int64Array::from(points.timestamp[range.clone()].to_vec())),
        3 => Arc::new(Float64Array::from(points.value[range.clone()].to_vec())),
        4 => extra(|e| e.model_id.as_deref()),
        5 => extra(|e| e.dataset_name.as_deref()),
        _ => extra(|e| e.dataset_digest.as_deref()),
    }
}

impl Shared {
    /// An output batch of `rows` rows belonging to `runs` (series, rows); `decoded(i)` gives
    /// the `i`-th decoded segment column.
    fn build(
        &self,
        rows: usize,
        runs: &[(usize, usize)],
        decoded: impl Fn(usize) -> Option<ArrayRef>,
    ) -> DfResult<RecordBatch> {
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.columns.len());
        for (&c, at) in self.columns.iter().zip(&self.decoded_at) {
            let column = match c {
                RUN_ID => constant(runs, |i| &self.series[i].run_id),
                EXPERIMENT_ID => constant(runs, |i| &self.series[i].experiment_id),
                KEY => constant(runs, |i| &self.series[i].key),
                SERIES_ID => {
                    let mut ids: Vec<u64> = Vec::with_capacity(rows);
                    for &(s, n) in runs {
                        ids.extend(std::iter::repeat_n(self.series[s].id, n));
                    }
                    Arc::new(UInt64Array::from(ids))
                }
                _ => {
                    debug_assert!(is_stored(c));
                    let i = at.ok_or_else(|| {
                        DataFusionError::Internal(format!("metrics column {c} not decoded"))
                    })?;
                    decoded(i).ok_or_else(|| {
                        DataFusionError::Internal(format!("metrics column {c} missing"))
                    })?
                }
            };
            columns.push(column);
        }
        Ok(RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )?)
    }
}

/// A string column holding, for each run (series, rows), `value(series)` `rows` times.
fn constant<'a>(runs: &[(usize, usize)], value: impl Fn(usize) -> &'a str) -> ArrayRef {
    let rows: usize = runs.iter().map(|(_, n)| n).sum();
    let bytes: usize = runs.iter().map(|&(s, n)| value(s).len() * n).sum();
    let mut offsets: Vec<i32> = Vec::with_capacity(rows + 1);
    let mut data: Vec<u8> = Vec::with_capacity(bytes);
    offsets.push(0);
    for &(s, n) in runs.iter().filter(|(_, n)| *n > 0) {
        let v = value(s).as_bytes();
        let start = data.len();
        // The value once, then the bytes written so far doubled until there are n copies.
        data.extend_from_slice(v);
        while data.len() - start < v.len() * n {
            let have = data.len() - start;
            let more = have.min(v.len() * n - have);
            data.extend_from_within(start..start + more);
        }
        offsets.extend((1..=n).map(|i| (start + i * v.len()) as i32));
    }
    // Offsets are monotonic and end at data.len(); data is copies of `&str`s (checked anyway).
    Arc::new(StringArray::new(
        OffsetBuffer::new(ScalarBuffer::from(offsets)),
        Buffer::from_vec(data),
        None,
    ))
}
