//! The `metrics` table: every point of every series, from the Parquet segments and the in-memory
//! buffers as one table.
//!
//! A scan first chooses the series it has to read, from the catalog: equality filters on
//! `run_id`, `experiment_id` and `key` (`=`, `IN`, `OR`s of `=` on one column) are pushed down as
//! `Inexact` (DataFusion applies them again), so a query for one run or one key reads only
//! those series' rows, through the segments' series directories. Range and equality filters on
//! `step` and `timestamp` (`<`, `<=`, `>`, `>=`, `=`, `BETWEEN`, `IN`, and `AND`/`OR` of those on
//! one column) are pushed down as `Inexact` too: within each chosen series only the pages that
//! can hold matching rows are read (see [`scan`]). Only the projected columns are decoded.
//!
//! The scan takes one view of all its series when it is planned, so a query that runs while
//! points are logged sees every point that was there when it was planned, each exactly once.
//!
//! `series_id` is the id the segment files store the series under (see `metric_series`); a
//! grouping by `run_id` and `key` is planned as a grouping by it ([`GroupBySeries`]).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::TableType;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::expr::{Between, InList};
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;

use super::to_datafusion;
use crate::catalog::Catalog;
use crate::error::Result;
use crate::store::Inner;

mod group_by_series;
mod scan;

pub(super) use group_by_series::GroupBySeries;

const RUN_ID: usize = 0;
const EXPERIMENT_ID: usize = 1;
const KEY: usize = 2;
const STEP: usize = 3;
const DATASET_DIGEST: usize = 8;
const SERIES_ID: usize = 9;

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
        Field::new("series_id", DataType::UInt64, false),
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
            .map(|f| {
                if equality(f).is_some() || range(f).is_some() {
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
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
        for f in filters {
            if let Some((column, values)) = equality(f) {
                selection.restrict(column, values);
            } else if let Some((column, bounds)) = range(f) {
                selection.restrict_range(column, bounds);
            }
        }
        let series = select_series(self.inner.catalog(), &selection).map_err(to_datafusion)?;
        let columns = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        let projected = Arc::new(self.schema.project(&columns)?);
        let exec = scan::MetricsScanExec::new(
            &self.inner,
            scan::Request {
                series,
                steps: selection.steps,
                timestamps: selection.timestamps,
                schema: projected,
                columns,
                limit,
                partitions: state.config().target_partitions(),
                batch_rows: state.config().batch_size(),
            },
        );
        Ok(Arc::new(exec))
    }
}

/// What the pushed-down filters allow: `None` is "anything".
#[derive(Debug, Default)]
struct Selection {
    runs: Option<BTreeSet<String>>,
    experiments: Option<BTreeSet<String>>,
    keys: Option<BTreeSet<String>>,
    /// Inclusive bounds on `step`, `timestamp` and `series_id` (empty when low > high).
    steps: Option<(i64, i64)>,
    timestamps: Option<(i64, i64)>,
    series: Option<(i64, i64)>,
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

    /// Adds the condition `column BETWEEN bounds.0 AND bounds.1` (conditions are ANDed).
    fn restrict_range(&mut self, column: &str, bounds: (i64, i64)) {
        let slot = match column {
            "step" => &mut self.steps,
            "timestamp" => &mut self.timestamps,
            _ => &mut self.series,
        };
        *slot = Some(match slot.take() {
            Some(old) => (old.0.max(bounds.0), old.1.min(bounds.1)),
            None => bounds,
        });
    }
}

/// Bounds that no value satisfies.
const EMPTY: (i64, i64) = (i64::MAX, i64::MIN);

/// A condition on `step`, `timestamp` or `series_id` as the inclusive bounds it allows (a superset for `IN`
/// lists and `OR`s, which become the smallest range holding every value they allow): `column op
/// integer` for the comparisons, `BETWEEN`, `IN`, and `AND`/`OR` of those on one column.
fn range(expr: &Expr) -> Option<(&str, (i64, i64))> {
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
            Operator::And | Operator::Or => {
                let (a, x) = range(left)?;
                let (b, y) = range(right)?;
                if a != b {
                    return None;
                }
                let bounds = if *op == Operator::And {
                    (x.0.max(y.0), x.1.min(y.1))
                } else if x.0 > x.1 {
                    y
                } else if y.0 > y.1 {
                    x
                } else {
                    (x.0.min(y.0), x.1.max(y.1))
                };
                Some((a, bounds))
            }
            _ => {
                let (column, op, v) = match (ranged(left), integer(right)) {
                    (Some(c), Some(v)) => (c, *op, v),
                    _ => (ranged(right)?, op.swap()?, integer(left)?),
                };
                let bounds = match op {
                    Operator::Eq => (v, v),
                    Operator::Lt => v.checked_sub(1).map_or(EMPTY, |v| (i64::MIN, v)),
                    Operator::LtEq => (i64::MIN, v),
                    Operator::Gt => v.checked_add(1).map_or(EMPTY, |v| (v, i64::MAX)),
                    Operator::GtEq => (v, i64::MAX),
                    _ => return None,
                };
                Some((column, bounds))
            }
        },
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) => Some((ranged(expr)?, (integer(low)?, integer(high)?))),
        Expr::InList(InList {
            expr,
            list,
            negated: false,
        }) => {
            let column = ranged(expr)?;
            let values = list.iter().map(integer).collect::<Option<Vec<i64>>>()?;
            let bounds = match (values.iter().min(), values.iter().max()) {
                (Some(&lo), Some(&hi)) => (lo, hi),
                _ => EMPTY,
            };
            Some((column, bounds))
        }
        _ => None,
    }
}

/// `step`, `timestamp` or `series_id`.
fn ranged(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Column(c) if ["step", "timestamp", "series_id"].contains(&c.name.as_str()) => {
            Some(c.name.as_str())
        }
        _ => None,
    }
}

/// An integer literal that fits an `i64`.
fn integer(expr: &Expr) -> Option<i64> {
    match expr {
        Expr::Literal(v, _) => match v {
            ScalarValue::Int8(Some(v)) => Some(i64::from(*v)),
            ScalarValue::Int16(Some(v)) => Some(i64::from(*v)),
            ScalarValue::Int32(Some(v)) => Some(i64::from(*v)),
            ScalarValue::Int64(Some(v)) => Some(*v),
            ScalarValue::UInt8(Some(v)) => Some(i64::from(*v)),
            ScalarValue::UInt16(Some(v)) => Some(i64::from(*v)),
            ScalarValue::UInt32(Some(v)) => Some(i64::from(*v)),
            ScalarValue::UInt64(Some(v)) => i64::try_from(*v).ok(),
            _ => None,
        },
        _ => None,
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
    if let Some((lo, hi)) = selection.series {
        candidates.retain(|(id, _, _)| i64::try_from(*id).is_ok_and(|id| lo <= id && id <= hi));
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

#[cfg(test)]
mod tests;
