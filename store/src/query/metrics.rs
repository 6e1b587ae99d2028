//! The `metrics` table: every point of every series, from the Parquet segments and the in-memory
//! buffers as one table.
//!
//! A scan first chooses the series it has to read, from the catalog: equality filters on
//! `run_id`, `experiment_id` and `key` (`=`, `IN`, `OR`s of `=` on one column) are pushed down as
//! `Inexact` (DataFusion applies them again), so a query for one run or one key reads only
//! those series' rows, through the segments' series directories. The chosen series are spread
//! over the scan's partitions; each partition reads its series lazily, one group at a time, as
//! its stream is polled (a series is read whole, across segments and buffers, sorted and
//! deduplicated as in [`crate::metrics`]'s history reads), and builds only the projected
//! columns.
//!
//! The view of each series is taken when its partition reaches it, so a query that runs while
//! points are logged sees every point that was there when the scan started, and maybe some more.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use arrow::array::{
    new_null_array, ArrayRef, Float64Array, Int64Array, StringArray, StringBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::Result as DfResult;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::expr::InList;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_expr::LexOrdering;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::ExecutionPlan;

use super::to_datafusion;
use crate::catalog::Catalog;
use crate::error::Result;
use crate::metrics::Points;
use crate::ops::PointExtras;
use crate::store::Inner;

/// Rows per output batch (a longer series is sliced).
const BATCH_ROWS: usize = 64 * 1024;

const RUN_ID: usize = 0;
const EXPERIMENT_ID: usize = 1;
const KEY: usize = 2;
const STEP: usize = 3;
const TIMESTAMP: usize = 4;
const VALUE: usize = 5;
const MODEL_ID: usize = 6;
const DATASET_NAME: usize = 7;
const DATASET_DIGEST: usize = 8;

/// The columns equality filters are pushed down on.
const PUSHDOWN: [&str; 3] = ["run_id", "experiment_id", "key"];

fn schema() -> SchemaRef {
    let utf8 = |name: &str, nullable| Field::new(name, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        utf8("run_id", false),
        utf8("experiment_id", false),
        utf8("key", false),
        Field::new("step", DataType::Int64, false),
        Field::new("timestamp", DataType::Int64, false),
        Field::new("value", DataType::Float64, false),
        utf8("model_id", true),
        utf8("dataset_name", true),
        utf8("dataset_digest", true),
    ]))
}

/// The `metrics` table of one query.
#[derive(Debug)]
pub(super) struct MetricsTable {
    inner: Arc<Inner>,
    schema: SchemaRef,
}

impl MetricsTable {
    pub(super) fn new(inner: Arc<Inner>) -> MetricsTable {
        MetricsTable {
            inner,
            schema: schema(),
        }
    }
}

#[async_trait]
impl TableProvider for MetricsTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| match equality(f) {
                Some(_) => TableProviderFilterPushDown::Inexact,
                None => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let mut selection = Selection::default();
        for (column, values) in filters.iter().filter_map(equality) {
            selection.restrict(column, values);
        }
        let series = select_series(self.inner.catalog(), &selection).map_err(to_datafusion)?;
        let (projected, columns) = match projection {
            Some(p) => (Arc::new(self.schema.project(p)?), p.clone()),
            None => (
                self.schema.clone(),
                (0..self.schema.fields().len()).collect(),
            ),
        };
        let n = state
            .config()
            .target_partitions()
            .clamp(1, series.len().max(1));
        let mut groups: Vec<Vec<SeriesRef>> = (0..n).map(|_| Vec::new()).collect();
        for (i, s) in series.into_iter().enumerate() {
            groups[i % n].push(s);
        }
        let partitions: Vec<Arc<dyn PartitionStream>> = groups
            .into_iter()
            .map(|series| {
                Arc::new(SeriesPartition {
                    inner: self.inner.clone(),
                    series: Arc::new(series),
                    schema: projected.clone(),
                    columns: columns.clone(),
                }) as Arc<dyn PartitionStream>
            })
            .collect();
        let exec = StreamingTableExec::try_new(
            projected,
            partitions,
            None,
            Vec::<LexOrdering>::new(),
            false,
            limit,
        )?;
        Ok(Arc::new(exec))
    }
}

/// What the pushed-down filters allow: `None` is "anything".
#[derive(Debug, Default)]
struct Selection {
    runs: Option<BTreeSet<String>>,
    experiments: Option<BTreeSet<String>>,
    keys: Option<BTreeSet<String>>,
}

impl Selection {
    /// Adds the condition `column IN values` (conditions are ANDed).
    fn restrict(&mut self, column: &str, values: BTreeSet<String>) {
        let slot = match column {
            "run_id" => &mut self.runs,
            "experiment_id" => &mut self.experiments,
            _ => &mut self.keys,
        };
        *slot = Some(match slot.take() {
            Some(old) => old.intersection(&values).cloned().collect(),
            None => values,
        });
    }
}

/// `column = 'v'`, `'v' = column`, `column IN ('a', 'b')` and ORs of those on one column, for a
/// column in [`PUSHDOWN`]: the column and the values it may take.
fn equality(expr: &Expr) -> Option<(&str, BTreeSet<String>)> {
    match expr {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) => {
            let (column, value) = match (column(left), literal(right)) {
                (Some(c), Some(v)) => (c, v),
                _ => (column(right)?, literal(left)?),
            };
            Some((column, BTreeSet::from([value])))
        }
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Or,
            right,
        }) => {
            let (a, mut values) = equality(left)?;
            let (b, more) = equality(right)?;
            (a == b).then(|| {
                values.extend(more);
                (a, values)
            })
        }
        Expr::InList(InList {
            expr,
            list,
            negated: false,
        }) => {
            let column = column(expr)?;
            let values = list.iter().map(literal).collect::<Option<BTreeSet<_>>>()?;
            Some((column, values))
        }
        _ => None,
    }
}

fn column(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Column(c) if PUSHDOWN.contains(&c.name.as_str()) => Some(c.name.as_str()),
        _ => None,
    }
}

fn literal(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Literal(v, _) => v.try_as_str().flatten().map(str::to_string),
        _ => None,
    }
}

/// One series to read, with the values of its constant columns.
#[derive(Debug)]
struct SeriesRef {
    id: u64,
    run_id: Arc<str>,
    experiment_id: Arc<str>,
    key: Arc<str>,
}

/// The series `selection` allows, by id.
fn select_series(c: &Catalog, selection: &Selection) -> Result<Vec<SeriesRef>> {
    let mut candidates: Vec<(u64, String, String)> = Vec::new();
    let of_run = |run_id: &str, out: &mut Vec<(u64, String, String)>| -> Result<()> {
        match &selection.keys {
            Some(keys) => {
                for key in keys {
                    if let Some(id) = c.series_id(run_id, key)? {
                        out.push((id, run_id.to_string(), key.clone()));
                    }
                }
            }
            None => {
                for (key, id) in c.series_of_run(run_id)? {
                    out.push((id, run_id.to_string(), key));
                }
            }
        }
        Ok(())
    };
    if let Some(runs) = &selection.runs {
        for run_id in runs {
            of_run(run_id, &mut candidates)?;
        }
    } else if let Some(experiments) = &selection.experiments {
        for id in experiments.iter().filter_map(|e| e.parse::<u64>().ok()) {
            for run_id in c.run_ids_of_experiment(id)? {
                of_run(&run_id, &mut candidates)?;
            }
        }
    } else {
        candidates = c.all_series()?;
        if let Some(keys) = &selection.keys {
            candidates.retain(|(_, _, key)| keys.contains(key));
        }
    }
    // Each run's experiment, looked up once per run.
    let mut experiment_of: HashMap<String, Option<Arc<str>>> = HashMap::new();
    let mut out = Vec::with_capacity(candidates.len());
    for (id, run_id, key) in candidates {
        let experiment = match experiment_of.get(&run_id) {
            Some(e) => e.clone(),
            None => {
                let e = c
                    .run_info(&run_id)?
                    .map(|info| Arc::<str>::from(info.experiment_id));
                experiment_of.insert(run_id.clone(), e.clone());
                e
            }
        };
        let Some(experiment_id) = experiment else {
            continue;
        };
        if selection
            .experiments
            .as_ref()
            .is_some_and(|e| !e.contains(&*experiment_id))
        {
            continue;
        }
        out.push(SeriesRef {
            id,
            run_id: run_id.into(),
            experiment_id,
            key: key.into(),
        });
    }
    out.sort_by_key(|s| s.id);
    Ok(out)
}

/// One partition of a scan: some series, read when the stream is polled.
#[derive(Debug)]
struct SeriesPartition {
    inner: Arc<Inner>,
    series: Arc<Vec<SeriesRef>>,
    /// The projected schema, and the table columns it holds.
    schema: SchemaRef,
    columns: Vec<usize>,
}

impl PartitionStream for SeriesPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let reader = BatchReader {
            inner: self.inner.clone(),
            series: self.series.clone(),
            schema: self.schema.clone(),
            columns: self.columns.clone(),
            next: 0,
            pending: Vec::new(),
        };
        Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            futures_util::stream::iter(reader),
        ))
    }
}

/// Reads series one group at a time into batches of about [`BATCH_ROWS`] rows.
struct BatchReader {
    inner: Arc<Inner>,
    series: Arc<Vec<SeriesRef>>,
    schema: SchemaRef,
    columns: Vec<usize>,
    /// The next series to read.
    next: usize,
    /// Slices of a large batch still to return, last first.
    pending: Vec<RecordBatch>,
}

impl Iterator for BatchReader {
    type Item = DfResult<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(batch) = self.pending.pop() {
            return Some(Ok(batch));
        }
        let mut group: Vec<(usize, Points)> = Vec::new();
        let mut rows = 0;
        while self.next < self.series.len() && rows < BATCH_ROWS {
            let i = self.next;
            self.next += 1;
            let points = match self.inner.metrics().series(self.series[i].id).materialize() {
                Ok(p) => p,
                Err(e) => {
                    self.next = self.series.len();
                    return Some(Err(to_datafusion(e)));
                }
            };
            if !points.is_empty() {
                rows += points.len();
                group.push((i, points));
            }
        }
        if group.is_empty() {
            return None;
        }
        let batch = match self.build(&group, rows) {
            Ok(b) => b,
            Err(e) => return Some(Err(e.into())),
        };
        if rows <= BATCH_ROWS {
            return Some(Ok(batch));
        }
        let mut slices: Vec<RecordBatch> = (0..rows)
            .step_by(BATCH_ROWS)
            .map(|start| batch.slice(start, BATCH_ROWS.min(rows - start)))
            .collect();
        slices.reverse();
        self.pending = slices;
        self.pending.pop().map(Ok)
    }
}

impl BatchReader {
    /// The projected columns of `group` (series index, its points), `rows` rows in all.
    fn build(
        &self,
        group: &[(usize, Points)],
        rows: usize,
    ) -> std::result::Result<RecordBatch, arrow::error::ArrowError> {
        let constant = |f: fn(&SeriesRef) -> &str| -> ArrayRef {
            let bytes = group
                .iter()
                .map(|(i, p)| f(&self.series[*i]).len() * p.len())
                .sum();
            let mut b = StringBuilder::with_capacity(rows, bytes);
            for (i, p) in group {
                let value = f(&self.series[*i]);
                for _ in 0..p.len() {
                    b.append_value(value);
                }
            }
            Arc::new(b.finish())
        };
        let ints = |f: fn(&Points) -> &[i64]| -> ArrayRef {
            let mut v = Vec::with_capacity(rows);
            for (_, p) in group {
                v.extend_from_slice(f(p));
            }
            Arc::new(Int64Array::from(v))
        };
        let any_extras = group.iter().any(|(_, p)| !p.extras.is_empty());
        let extra = |f: fn(&PointExtras) -> Option<&str>| -> ArrayRef {
            if !any_extras {
                return new_null_array(&DataType::Utf8, rows);
            }
            Arc::new(StringArray::from_iter(group.iter().flat_map(|(_, p)| {
                (0..p.len()).map(move |j| p.extra(j).and_then(|e| f(e)))
            })))
        };
        let columns: Vec<ArrayRef> = self
            .columns
            .iter()
            .map(|&c| match c {
                RUN_ID => constant(|s| &s.run_id),
                EXPERIMENT_ID => constant(|s| &s.experiment_id),
                KEY => constant(|s| &s.key),
                STEP => ints(|p| &p.step),
                TIMESTAMP => ints(|p| &p.timestamp),
                VALUE => {
                    let mut v = Vec::with_capacity(rows);
                    for (_, p) in group {
                        v.extend_from_slice(&p.value);
                    }
                    Arc::new(Float64Array::from(v))
                }
                MODEL_ID => extra(|e| e.model_id.as_deref()),
                DATASET_NAME => extra(|e| e.dataset_name.as_deref()),
                _ => extra(|e| e.dataset_digest.as_deref()),
            })
            .collect();
        debug_assert!(self.columns.iter().all(|&c| c <= DATASET_DIGEST));
        RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )
    }
}

#[cfg(test)]
mod tests;
