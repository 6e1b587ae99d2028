//! The everyday verbs: `quiver experiments`, `quiver runs`, `quiver metrics`, `quiver
//! artifacts`. Each works on a store directory (served on a loopback port for the length of the
//! command) or a running server (`--url`) through MLflow's REST API, and prints a table, JSON
//! (the REST API's shapes) or CSV.

pub(crate) mod artifacts;
pub(crate) mod experiments;
pub(crate) mod metrics;
pub(crate) mod runs;

use std::io::Write;
use std::sync::Arc;

use quiver_store::arrow::array::{ArrayRef, StringArray};
use quiver_store::arrow::datatypes::{DataType, Field, Schema};
use quiver_store::arrow::record_batch::RecordBatch;
use quiver_store::sql_output;
use serde_json::Value;

use crate::admin::percent_encode;
use crate::runcmd::tracking::Tracking;

/// How a verb prints what it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// A text table.
    Table,
    /// JSON, in the REST API's shapes.
    Json,
    /// CSV with a header row.
    Csv,
}

/// Rows of text under headers, with the JSON each row came from.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    pub(crate) headers: Vec<&'static str>,
    pub(crate) rows: Vec<Vec<String>>,
    pub(crate) json: Vec<Value>,
}

impl Listing {
    /// An empty listing with these columns.
    pub(crate) fn new(headers: &[&'static str]) -> Listing {
        Listing {
            headers: headers.to_vec(),
            ..Listing::default()
        }
    }

    /// Adds a row and the JSON it shows.
    pub(crate) fn push(&mut self, row: Vec<String>, json: Value) {
        debug_assert_eq!(row.len(), self.headers.len());
        self.rows.push(row);
        self.json.push(json);
    }

    /// Prints the listing in `format` on standard output (JSON: an array of the rows' JSON).
    pub(crate) fn print(&self, format: Format) -> anyhow::Result<()> {
        match format {
            Format::Json => crate::admin::print_json(&Value::Array(self.json.clone())),
            Format::Table => crate::admin::print_table(&self.headers, &self.rows),
            Format::Csv => {
                let batch = string_batch(&self.headers, &self.rows)?;
                let mut out = std::io::stdout().lock();
                sql_output::csv(&[batch], &mut out)?;
                out.flush()?;
                Ok(())
            }
        }
    }
}

/// A record batch of text columns.
pub(crate) fn string_batch(headers: &[&str], rows: &[Vec<String>]) -> anyhow::Result<RecordBatch> {
    let schema = Arc::new(Schema::new(
        headers
            .iter()
            .map(|h| Field::new(*h, DataType::Utf8, false))
            .collect::<Vec<_>>(),
    ));
    let columns: Vec<ArrayRef> = (0..headers.len())
        .map(|c| {
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r[c].as_str()),
            )) as ArrayRef
        })
        .collect();
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// A text field of a JSON object, numbers rendered as decimals (`""` when absent).
pub(crate) fn text(v: &Value, key: &str) -> String {
    crate::admin::json_str(v, key)
}

/// A time field (ms since the epoch, a number or a decimal string) as RFC 3339, or `""`.
pub(crate) fn time(v: &Value, key: &str) -> String {
    crate::admin::json_i64(v, key)
        .map(crate::admin::rfc3339)
        .unwrap_or_default()
}

/// `GET <path>?<name>=<value>&...` on the MLflow API (values percent-encoded).
pub(crate) fn get(
    tracking: &Tracking,
    path: &str,
    query: &[(&str, &str)],
) -> anyhow::Result<Value> {
    let query: Vec<String> = query
        .iter()
        .map(|(k, v)| format!("{k}={}", percent_encode(v)))
        .collect();
    tracking
        .remote
        .get(&format!("/api/2.0/mlflow{path}?{}", query.join("&")))
}

/// The experiment a user names: by name, or by id when no experiment has that name.
pub(crate) fn experiment(tracking: &Tracking, name_or_id: &str) -> anyhow::Result<Value> {
    match get(
        tracking,
        "/experiments/get-by-name",
        &[("experiment_name", name_or_id)],
    ) {
        Ok(v) => Ok(v["experiment"].clone()),
        Err(e) if e.to_string().starts_with("RESOURCE_DOES_NOT_EXIST") => {
            match get(
                tracking,
                "/experiments/get",
                &[("experiment_id", name_or_id)],
            ) {
                Ok(v) => Ok(v["experiment"].clone()),
                Err(_) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}
