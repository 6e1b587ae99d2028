//! The catalog's tables (`experiments`, `runs`, `params`, `tags`, `latest_metrics`, `datasets`,
//! `inputs`, `input_tags`, `metric_series`, `artifacts`): each one built from a catalog scan when
//! a query scans it, then handed to DataFusion as an in-memory table. A query pays only for the
//! tables it reads.
//!
//! A run's dataset inputs are two tables: `inputs` (one row per run and dataset, with the input's
//! `mlflow.data.context` tag as a column, since it is the one tag MLflow itself sets) and
//! `input_tags` (every tag of every input, context included, one row each), rather than the tags
//! as a JSON string in `inputs`: rows join and filter with plain SQL, where JSON would need
//! functions DataFusion does not ship.

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;

use super::to_datafusion;
use crate::catalog::Catalog;
use crate::error::Result;
use crate::store::Inner;
use crate::types::{DatasetInput, ViewType};

/// Builds a table's columns from the catalog.
pub(super) type Build = fn(&Catalog) -> Result<Vec<ArrayRef>>;

/// A table read from the catalog when scanned.
#[derive(Debug)]
struct CatalogTable {
    schema: SchemaRef,
    build: Build,
    inner: Arc<Inner>,
}

#[async_trait]
impl TableProvider for CatalogTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let columns = (self.build)(self.inner.catalog()).map_err(to_datafusion)?;
        let batch = RecordBatch::try_new(self.schema.clone(), columns)?;
        MemTable::try_new(self.schema.clone(), vec![vec![batch]])?
            .scan(state, projection, filters, limit)
            .await
    }
}

pub(super) fn utf8(name: &str) -> Field {
    Field::new(name, DataType::Utf8, false)
}

pub(super) fn int64(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Int64, nullable)
}

pub(super) fn strings<'a>(values: impl Iterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

pub(super) fn ints(values: impl Iterator<Item = i64>) -> ArrayRef {
    Arc::new(Int64Array::from_iter_values(values))
}

pub(super) fn optional_strings<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(StringArray::from_iter(values))
}

/// The input tag through which MLflow records what a dataset was used for (`train`, `eval` ...).
const CONTEXT_TAG: &str = "mlflow.data.context";

/// Registers the catalog tables in `ctx`.
pub(super) fn register(ctx: &SessionContext, inner: &Arc<Inner>) -> DfResult<()> {
    let nullable = |name: &str| Field::new(name, DataType::Utf8, true);
    let tables: [(&str, Vec<Field>, Build); 10] = [
        (
            "experiments",
            vec![
                utf8("experiment_id"),
                utf8("name"),
                utf8("artifact_location"),
                utf8("lifecycle_stage"),
                int64("creation_time", false),
                int64("last_update_time", false),
            ],
            experiments,
        ),
        (
            "runs",
            vec![
                utf8("run_id"),
                utf8("experiment_id"),
                utf8("run_name"),
                utf8("user_id"),
                utf8("status"),
                int64("start_time", false),
                int64("end_time", true),
                utf8("lifecycle_stage"),
                utf8("artifact_uri"),
            ],
            runs,
        ),
        (
            "params",
            vec![utf8("run_id"), utf8("key"), utf8("value")],
            params,
        ),
        (
            "tags",
            vec![utf8("run_id"), utf8("key"), utf8("value")],
            tags,
        ),
        (
            "latest_metrics",
            vec![
                utf8("run_id"),
                utf8("key"),
                Field::new("value", DataType::Float64, false),
                int64("timestamp", false),
                int64("step", false),
            ],
            latest_metrics,
        ),
        (
            "datasets",
            vec![
                utf8("experiment_id"),
                utf8("name"),
                utf8("digest"),
                utf8("source_type"),
                utf8("source"),
                nullable("schema"),
                nullable("profile"),
            ],
            datasets,
        ),
        (
            "inputs",
            vec![
                utf8("run_id"),
                utf8("experiment_id"),
                utf8("dataset_name"),
                utf8("dataset_digest"),
                nullable("context"),
            ],
            inputs,
        ),
        (
            "input_tags",
            vec![
                utf8("run_id"),
                utf8("dataset_name"),
                utf8("dataset_digest"),
                utf8("key"),
                utf8("value"),
            ],
            input_tags,
        ),
        (
            "metric_series",
            vec![
                Field::new("series_id", DataType::UInt64, false),
                utf8("run_id"),
                utf8("key"),
            ],
            metric_series,
        ),
        (
            "artifacts",
            vec![utf8("path"), utf8("digest"), int64("size", false)],
            artifacts,
        ),
    ];
    for (name, fields, build) in tables.into_iter().chain(super::model_tables::tables()) {
        let table = CatalogTable {
            schema: Arc::new(Schema::new(fields)),
            build,
            inner: inner.clone(),
        };
        ctx.register_table(name, Arc::new(table))?;
    }
    Ok(())
}

fn experiments(c: &Catalog) -> Result<Vec<ArrayRef>> {
    let e = c.experiments(ViewType::All)?;
    Ok(vec![
        strings(e.iter().map(|e| e.experiment_id.as_str())),
        strings(e.iter().map(|e| e.name.as_str())),
        strings(e.iter().map(|e| e.artifact_location.as_str())),
        strings(e.iter().map(|e| e.lifecycle_stage.as_str())),
        ints(e.iter().map(|e| e.creation_time)),
        ints(e.iter().map(|e| e.last_update_time)),
    ])
}

fn runs(c: &Catalog) -> Result<Vec<ArrayRef>> {
    let r = c.all_run_infos()?;
    Ok(vec![
        strings(r.iter().map(|r| r.run_id.as_str())),
        strings(r.iter().map(|r| r.experiment_id.as_str())),
        strings(r.iter().map(|r| r.run_name.as_str())),
        strings(r.iter().map(|r| r.user_id.as_str())),
        strings(r.iter().map(|r| r.status.as_str())),
        ints(r.iter().map(|r| r.start_time)),
        Arc::new(Int64Array::from_iter(r.iter().map(|r| r.end_time))),
        strings(r.iter().map(|r| r.lifecycle_stage.as_str())),
        strings(r.iter().map(|r| r.artifact_uri.as_str())),
    ])
}

fn key_values(rows: &[(String, String, String)]) -> Vec<ArrayRef> {
    vec![
        strings(rows.iter().map(|r| r.0.as_str())),
        strings(rows.iter().map(|r| r.1.as_str())),
        strings(rows.iter().map(|r| r.2.as_str())),
    ]
}

fn params(c: &Catalog) -> Result<Vec<ArrayRef>> {
    Ok(key_values(&c.all_params()?))
}

fn tags(c: &Catalog) -> Result<Vec<ArrayRef>> {
    Ok(key_values(&c.all_tags()?))
}

fn latest_metrics(c: &Catalog) -> Result<Vec<ArrayRef>> {
    let m = c.all_latest_metrics()?;
    Ok(vec![
        strings(m.iter().map(|m| m.0.as_str())),
        strings(m.iter().map(|m| m.1.as_str())),
        Arc::new(Float64Array::from_iter_values(m.iter().map(|m| m.2.value))),
        ints(m.iter().map(|m| m.2.timestamp)),
        ints(m.iter().map(|m| m.2.step)),
    ])
}

fn datasets(c: &Catalog) -> Result<Vec<ArrayRef>> {
    let d = c.all_datasets()?;
    let ids: Vec<String> = d.iter().map(|(e, _)| e.to_string()).collect();
    Ok(vec![
        strings(ids.iter().map(String::as_str)),
        strings(d.iter().map(|(_, d)| d.name.as_str())),
        strings(d.iter().map(|(_, d)| d.digest.as_str())),
        strings(d.iter().map(|(_, d)| d.source_type.as_str())),
        strings(d.iter().map(|(_, d)| d.source.as_str())),
        optional_strings(d.iter().map(|(_, d)| d.schema.as_deref())),
        optional_strings(d.iter().map(|(_, d)| d.profile.as_deref())),
    ])
}

fn inputs(c: &Catalog) -> Result<Vec<ArrayRef>> {
    let i = c.all_run_inputs()?;
    let ids: Vec<String> = i.iter().map(|(_, e, _)| e.to_string()).collect();
    fn context(input: &DatasetInput) -> Option<&str> {
        input
            .tags
            .iter()
            .find(|t| t.key == CONTEXT_TAG)
            .map(|t| t.value.as_str())
    }
    Ok(vec![
        strings(i.iter().map(|(r, _, _)| r.as_str())),
        strings(ids.iter().map(String::as_str)),
        strings(i.iter().map(|(_, _, d)| d.dataset.name.as_str())),
        strings(i.iter().map(|(_, _, d)| d.dataset.digest.as_str())),
        optional_strings(i.iter().map(|(_, _, d)| context(d))),
    ])
}

fn input_tags(c: &Catalog) -> Result<Vec<ArrayRef>> {
    let i = c.all_run_inputs()?;
    let rows: Vec<(&str, &DatasetInput, &str, &str)> = i
        .iter()
        .flat_map(|(r, _, d)| {
            d.tags
                .iter()
                .map(move |t| (r.as_str(), d, t.key.as_str(), t.value.as_str()))
        })
        .collect();
    Ok(vec![
        strings(rows.iter().map(|r| r.0)),
        strings(rows.iter().map(|r| r.1.dataset.name.as_str())),
        strings(rows.iter().map(|r| r.1.dataset.digest.as_str())),
        strings(rows.iter().map(|r| r.2)),
        strings(rows.iter().map(|r| r.3)),
    ])
}

fn metric_series(c: &Catalog) -> Result<Vec<ArrayRef>> {
    let s = c.all_series()?;
    Ok(vec![
        Arc::new(UInt64Array::from_iter_values(s.iter().map(|s| s.0))),
        strings(s.iter().map(|s| s.1.as_str())),
        strings(s.iter().map(|s| s.2.as_str())),
    ])
}

fn artifacts(c: &Catalog) -> Result<Vec<ArrayRef>> {
    let a = c.artifacts_with_prefix("").collect::<Result<Vec<_>>>()?;
    Ok(vec![
        strings(a.iter().map(|a| a.path.as_str())),
        Arc::new(StringArray::from_iter_values(
            a.iter().map(|a| a.digest.to_hex()),
        )),
        ints(a.iter().map(|a| a.size as i64)),
    ])
}
