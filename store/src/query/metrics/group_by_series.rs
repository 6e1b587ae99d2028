//! A rewrite: grouping `metrics` by `run_id` and `key` is grouping it by `series_id`.
//!
//! A series is one (run, key), and a run is in one experiment, so grouping the rows of `metrics`
//! by `run_id` and `key` (with or without `experiment_id`) forms exactly the groups that
//! grouping them by `series_id` forms. The integer is far cheaper to group by than two strings
//! (and the scan does not have to repeat the strings on every row), so this rule rewrites
//!
//! ```text
//! Aggregate: groupBy=[run_id, key, <others>], aggr=[A]
//!   <Filter / SubqueryAlias / Projection of columns>* -> TableScan: metrics
//! ```
//!
//! into
//!
//! ```text
//! Projection: names.run_id, names.key, <others>, A     (the same schema as before)
//!   Inner Join: series_id = names.series_id
//!     Aggregate: groupBy=[series_id, <others>], aggr=[A]
//!       <the same, with series_id>* -> TableScan: metrics (+ series_id, series_id <= M)
//!     TableScan: names (series_id, run_id, experiment_id, key of every series <= M)
//! ```
//!
//! The names are read from the catalog when the rule runs and the scan is restricted to the
//! series they cover (series ids only grow), so no group goes unnamed even if a series is
//! created meanwhile. Any aggregate gives the same result over the same groups, so the
//! aggregates and the other grouping expressions are kept as they are.

use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, TableReference};
use datafusion::datasource::{provider_as_source, source_as_provider, MemTable};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{
    col, lit, Aggregate, Expr, Filter, JoinType, LogicalPlan, LogicalPlanBuilder, Projection,
    SubqueryAlias, TableScan, TableScanBuilder,
};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

use super::{select_series, MetricsTable, Selection, SERIES_ID};
use crate::query::to_datafusion;
use crate::store::Inner;

/// The columns a series determines.
const NAMES: [&str; 3] = ["run_id", "experiment_id", "key"];
/// The table the names are read from in the rewritten plan.
const NAMES_TABLE: &str = "quiver_series_names";

/// The rule (see the module documentation).
#[derive(Debug)]
pub(in crate::query) struct GroupBySeries {
    inner: Arc<Inner>,
}

impl GroupBySeries {
    pub(in crate::query) fn new(inner: Arc<Inner>) -> GroupBySeries {
        GroupBySeries { inner }
    }
}

impl OptimizerRule for GroupBySeries {
    fn name(&self) -> &str {
        "quiver_group_by_series"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> DfResult<Transformed<LogicalPlan>> {
        let LogicalPlan::Aggregate(aggregate) = &plan else {
            return Ok(Transformed::no(plan));
        };
        match self.rewritten(aggregate)? {
            Some(new) => Ok(Transformed::yes(new)),
            None => Ok(Transformed::no(plan)),
        }
    }
}

/// A node between the aggregate and the scan that the rewrite passes through.
enum Step {
    Filter(Expr),
    Alias(TableReference),
    /// A projection of plain columns (which gets `series_id` too).
    Columns(Vec<Expr>),
}

impl GroupBySeries {
    /// The rewritten plan, or `None` when `aggregate` is not of the form the rule rewrites.
    fn rewritten(&self, aggregate: &Aggregate) -> DfResult<Option<LogicalPlan>> {
        // Down to the scan, through filters, aliases and projections of columns only.
        let mut steps: Vec<Step> = Vec::new();
        let mut node = aggregate.input.as_ref();
        let scan = loop {
            match node {
                LogicalPlan::Filter(f) => {
                    steps.push(Step::Filter(f.predicate.clone()));
                    node = f.input.as_ref();
                }
                LogicalPlan::SubqueryAlias(a) => {
                    steps.push(Step::Alias(a.alias.clone()));
                    node = a.input.as_ref();
                }
                LogicalPlan::Projection(p)
                    if p.expr.iter().all(|e| matches!(e, Expr::Column(_))) =>
                {
                    steps.push(Step::Columns(p.expr.clone()));
                    node = p.input.as_ref();
                }
                LogicalPlan::TableScan(scan) => break scan,
                _ => return Ok(None),
            }
        };
        let is_metrics = source_as_provider(&scan.source)
            .is_ok_and(|p| p.as_ref().downcast_ref::<MetricsTable>().is_some());
        if !is_metrics || scan.fetch.is_some() {
            return Ok(None);
        }
        // Which grouping expressions are names of the series (plain columns of the scan).
        let input_schema = aggregate.input.schema();
        let is_name = |e: &Expr| match e {
            Expr::Column(c) => NAMES.contains(&c.name.as_str()) && input_schema.has_column(c),
            _ => false,
        };
        let named: Vec<&str> = aggregate
            .group_expr
            .iter()
            .filter(|e| is_name(e))
            .filter_map(|e| match e {
                Expr::Column(c) => Some(c.name.as_str()),
                _ => None,
            })
            .collect();
        if !(named.contains(&"run_id") && named.contains(&"key")) {
            return Ok(None);
        }
        if aggregate
            .group_expr
            .iter()
            .any(|e| matches!(e, Expr::GroupingSet(_)))
        {
            return Ok(None);
        }

        // The names of every series there is now; the scan keeps to those.
        let series =
            select_series(self.inner.catalog(), &Selection::default()).map_err(to_datafusion)?;
        let Some(max) = series.iter().map(|s| s.id).max() else {
            return Ok(None);
        };
        let names = names_table(&series)?;

        // The scan, with `series_id`, restricted to the named series.
        let mut projection = scan
            .projection
            .clone()
            .unwrap_or_else(|| (0..scan.source.schema().fields().len()).collect());
        if !projection.contains(&SERIES_ID) {
            projection.push(SERIES_ID);
        }
        let mut filters = scan.filters.clone();
        filters.push(col("series_id").lt_eq(lit(max)));
        let new_scan = TableScanBuilder::from(TableScan::clone(scan))
            .with_projection(Some(projection))
            .with_filters(filters)
            .build()?;
        let mut input = LogicalPlan::TableScan(new_scan);
        for step in steps.into_iter().rev() {
            input = match step {
                Step::Filter(predicate) => {
                    LogicalPlan::Filter(Filter::try_new(predicate, Arc::new(input))?)
                }
                Step::Alias(alias) => {
                    LogicalPlan::SubqueryAlias(SubqueryAlias::try_new(Arc::new(input), alias)?)
                }
                Step::Columns(mut exprs) => {
                    let (qualifier, _) = input
                        .schema()
                        .qualified_field_with_unqualified_name("series_id")?;
                    exprs.push(Expr::Column(Column::new(qualifier.cloned(), "series_id")));
                    LogicalPlan::Projection(Projection::try_new(exprs, Arc::new(input))?)
                }
            };
        }
        let (qualifier, _) = input
            .schema()
            .qualified_field_with_unqualified_name("series_id")?;
        let series_id = Column::new(qualifier.cloned(), "series_id");

        // Group by series_id and the other expressions; the aggregates as they were.
        let mut group_expr = vec![Expr::Column(series_id.clone())];
        group_expr.extend(aggregate.group_expr.iter().filter(|e| !is_name(e)).cloned());
        let grouped = LogicalPlan::Aggregate(Aggregate::try_new(
            Arc::new(input),
            group_expr,
            aggregate.aggr_expr.clone(),
        )?);
        let joined = LogicalPlanBuilder::from(grouped)
            .join(
                names,
                JoinType::Inner,
                (
                    vec![series_id],
                    vec![Column::new(Some(NAMES_TABLE), "series_id")],
                ),
                None,
            )?
            .build()?;

        // The aggregate's schema again: names from the names table, the rest as computed.
        let mut exprs = Vec::with_capacity(aggregate.schema.fields().len());
        for (i, (qualifier, field)) in aggregate.schema.iter().enumerate() {
            let from_names = aggregate.group_expr.get(i).is_some_and(&is_name);
            let source = if from_names {
                Column::new(Some(NAMES_TABLE), field.name())
            } else {
                Column::new(qualifier.cloned(), field.name())
            };
            exprs.push(Expr::Column(source).alias_qualified(qualifier.cloned(), field.name()));
        }
        let projection =
            Projection::try_new_with_schema(exprs, Arc::new(joined), aggregate.schema.clone())?;
        Ok(Some(LogicalPlan::Projection(projection)))
    }
}

/// A scan of the names of `series`: series_id, run_id, experiment_id, key.
fn names_table(series: &[super::SeriesRef]) -> DfResult<LogicalPlan> {
    let utf8 = |name: &str| Field::new(name, DataType::Utf8, false);
    let schema = Arc::new(Schema::new(vec![
        Field::new("series_id", DataType::UInt64, false),
        utf8("run_id"),
        utf8("experiment_id"),
        utf8("key"),
    ]));
    let strings = |f: fn(&super::SeriesRef) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(series.iter().map(f)))
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from_iter_values(series.iter().map(|s| s.id))),
        strings(|s| &s.run_id),
        strings(|s| &s.experiment_id),
        strings(|s| &s.key),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    let table = MemTable::try_new(schema, vec![vec![batch]])?;
    LogicalPlanBuilder::scan(NAMES_TABLE, provider_as_source(Arc::new(table)), None)?.build()
}
