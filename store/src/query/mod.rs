//! SQL over the store, through Apache DataFusion.
//!
//! This module is the only place that names DataFusion types: DataFusion ships a major release
//! every month or two and each one breaks extension APIs, so an upgrade should touch this module
//! and nothing else. The public surface ([`Store::sql`], [`QueryOptions`]) speaks Arrow and the
//! store's own [`Error`].
//!
//! # Tables
//! Every query gets a fresh `SessionContext` whose tables read the store's state at the moment
//! they are scanned (no listing cache: a segment written after an earlier query is always seen).
//!
//! | table            | columns |
//! |------------------|---------|
//! | `experiments`    | experiment_id, name, artifact_location, lifecycle_stage, creation_time, last_update_time |
//! | `runs`           | run_id, experiment_id, run_name, user_id, status, start_time, end_time, lifecycle_stage, artifact_uri |
//! | `params`, `tags` | run_id, key, value |
//! | `latest_metrics` | run_id, key, value, timestamp, step |
//! | `datasets`       | experiment_id, name, digest, source_type, source, schema, profile |
//! | `inputs`         | run_id, experiment_id, dataset_name, dataset_digest, context |
//! | `input_tags`     | run_id, dataset_name, dataset_digest, key, value |
//! | `metric_series`  | series_id, run_id, key |
//! | `artifacts`      | path, digest, size |
//! | `logged_models`  | model_id, experiment_id, name, status, model_type, source_run_id, artifact_uri, creation_time, last_updated_time, lifecycle_stage |
//! | `logged_model_params`, `logged_model_tags` | model_id, key, value |
//! | `registered_models` | name, description, user_id, creation_time, last_updated_time |
//! | `model_versions` | name, version, stage, description, source, run_id, model_id, run_link, user_id, creation_time, last_updated_time |
//! | `model_aliases`  | name, alias, version |
//! | `deployments`    | name, model_name, version, alias, resolved_version, target, description, user_id, creation_time |
//! | `registry_events`| seq, time, user_id, action, model_name, version, key, before, after |
//! | `metrics`        | run_id, experiment_id, key, step, timestamp, value, model_id, dataset_name, dataset_digest, series_id |
//!
//! `datasets` has one row per dataset and experiment (MLflow deduplicates them by name and digest
//! within an experiment); `inputs` one row per dataset a run used, `context` being the input's
//! `mlflow.data.context` tag (`train`, `eval` ..., null without one); `input_tags` every tag of
//! every input, one row each (a table rather than a JSON column, so that tags filter and join in
//! plain SQL). Join `inputs` to `datasets` on (experiment_id, dataset_name = name,
//! dataset_digest = digest).
//!
//! `metric_series` names the id (`UInt64`) under which each run's metric is stored: the
//! `series_id` column of the Parquet segments in `<store>/metrics/`, which are standard Parquet
//! files that other tools (pyarrow, DuckDB ...) read; join on it to give their rows a run and a key.
//!
//! Times are milliseconds since the epoch (`Int64`), ids are strings as in MLflow's API
//! (`series_id` aside). Deleted
//! experiments and runs are included; filter on `lifecycle_stage`. `metrics` holds every point
//! (exact duplicates of (step, timestamp, value) once, as MLflow stores them) from the Parquet
//! segments and the in-memory buffers as one table; see [`metrics`] for its pushdown.
//!
//! # Limits
//! Only queries run (`SELECT`, `WITH`, `VALUES`, set operations, `EXPLAIN` of those): anything else
//! is refused with [`Error::InvalidParameter`] before it is planned, and the plan is checked again
//! (no DDL, DML or statements). Each query has its own memory pool ([`QueryOptions::memory_limit`];
//! operators that can spill do, the others fail the query) and a time limit
//! ([`QueryOptions::timeout`]; the query is cancelled when it expires). Everything a query holds
//! is reserved in its pool: DataFusion's operators reserve their state, each `metrics` scan
//! partition the batch it has just produced (and a series it merges, see [`metrics`]), and
//! [`Store::sql`] the result it gathers, so a query over more than its limit fails cleanly
//! instead of growing without bound.

mod metrics;
mod model_tables;
mod tables;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::dataframe::DataFrame;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::memory_pool::{FairSpillPool, MemoryConsumer};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use futures_util::StreamExt;

use crate::error::{Error, Result};
use crate::store::{Inner, Store};

/// Limits of one SQL query.
#[derive(Debug, Clone)]
pub struct QueryOptions {
    /// Bytes the query may hold at once: its operators' state (sorts, joins, aggregations), the
    /// batches the `metrics` scan is producing and the result being gathered. Beyond it,
    /// operators that can spill to disk do; otherwise the query fails with
    /// [`Error::InvalidParameter`] ("exceeds its memory limit").
    pub memory_limit: usize,
    /// Wall time after which the query is cancelled and fails with [`Error::InvalidParameter`].
    pub timeout: Duration,
}

impl Default for QueryOptions {
    fn default() -> Self {
        QueryOptions {
            memory_limit: 512 << 20,
            timeout: Duration::from_secs(60),
        }
    }
}

/// Worker threads of the query runtime (DataFusion runs on tokio; the store itself is sync).
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .clamp(2, 8);
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("quiver-sql")
            .enable_time()
            .build()
            .expect("start the SQL runtime")
    })
}

impl Store {
    /// Runs one SQL query over the store with the default [`QueryOptions`] and returns its
    /// result. Tables: `experiments`, `runs`, `params`, `tags`, `latest_metrics`, `metrics`,
    /// `metric_series`, `datasets`, `inputs`, `input_tags`, `artifacts` (columns in the README's
    /// "SQL" section).
    ///
    /// Blocks until the query is done (it runs on the store's own query threads, so this may be
    /// called from anywhere, including inside an async runtime; there, prefer `spawn_blocking`).
    ///
    /// ```
    /// # fn main() -> quiver_store::Result<()> {
    /// use quiver_store::{CreateRun, Metric, Store};
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path())?;
    /// let run = store.create_run(CreateRun::default())?;
    /// store.log_batch(&run.info.run_id, &[Metric::new("loss", 0.5, 1_700_000_000_000, 0)], &[], &[])?;
    /// let batches = store.sql("SELECT key, count(*) AS n FROM metrics GROUP BY key")?;
    /// assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    /// assert!(store.sql("DROP TABLE runs").is_err());
    /// # Ok(()) }
    /// ```
    pub fn sql(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        self.sql_with(sql, &QueryOptions::default())
    }

    /// [`Store::sql`] with explicit limits.
    pub fn sql_with(&self, sql: &str, options: &QueryOptions) -> Result<Vec<RecordBatch>> {
        Ok(run_query(self.shared().clone(), sql, options, Mode::Collect)?.1)
    }

    /// The schema of the result of `sql`, without running it.
    pub fn sql_schema(&self, sql: &str) -> Result<SchemaRef> {
        Ok(run_query(
            self.shared().clone(),
            sql,
            &QueryOptions::default(),
            Mode::Schema,
        )?
        .0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Schema,
    Collect,
}

/// Checks that `sql` is exactly one read-only query; refuses anything else with a message that
/// says what was found.
fn check_read_only(sql: &str) -> Result<()> {
    let statements = DFParser::parse_sql(sql).map_err(from_datafusion)?;
    match statements.len() {
        1 => {}
        0 => {
            return Err(Error::InvalidParameter(
                "empty SQL: expected a query".into(),
            ))
        }
        n => {
            return Err(Error::InvalidParameter(format!(
                "expected one SQL query, found {n} statements"
            )))
        }
    }
    if is_query(&statements[0]) {
        Ok(())
    } else {
        let text = statements[0].to_string();
        let head: String = text
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        Err(Error::InvalidParameter(format!(
            "only read-only queries (SELECT, WITH, VALUES, EXPLAIN) are allowed; \
             refused statement `{head} ...`"
        )))
    }
}

fn is_query(statement: &DfStatement) -> bool {
    match statement {
        DfStatement::Statement(s) => match s.as_ref() {
            SqlStatement::Query(_) => true,
            SqlStatement::Explain { statement, .. } => {
                matches!(statement.as_ref(), SqlStatement::Query(_))
            }
            _ => false,
        },
        DfStatement::Explain(e) => is_query(&e.statement),
        _ => false,
    }
}

/// Plans and (in `Collect` mode) runs `sql` on the query runtime, within `options`' limits.
fn run_query(
    inner: Arc<Inner>,
    sql: &str,
    options: &QueryOptions,
    mode: Mode,
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    check_read_only(sql)?;
    let ctx = context(inner, options)?;
    let sql = sql.to_string();
    let timeout = options.timeout;
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime().spawn(async move {
        let work = async {
            let verify = SQLOptions::new()
                .with_allow_ddl(false)
                .with_allow_dml(false)
                .with_allow_statements(false);
            let df = ctx.sql_with_options(&sql, verify).await?;
            let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
            let batches = match mode {
                Mode::Schema => Vec::new(),
                Mode::Collect => collect(df).await?,
            };
            Ok::<_, DataFusionError>((schema, batches))
        };
        let out = match tokio::time::timeout(timeout, work).await {
            Ok(r) => r.map_err(from_datafusion),
            Err(_) => Err(Error::InvalidParameter(format!(
                "SQL query cancelled: it ran longer than its time limit of {:?}",
                timeout
            ))),
        };
        let _ = tx.send(out);
    });
    rx.recv()
        .map_err(|_| Error::Internal("the SQL query task ended without a result".into()))?
}

/// Runs `df` and gathers its result, which is held in the query's memory pool like any
/// operator's state: a result larger than the limit fails the query instead of growing without
/// bound. A batch counts the bytes of its rows (the part of its buffers it refers to), so that
/// batches sliced out of one larger array count that array once in all.
async fn collect(df: DataFrame) -> Result<Vec<RecordBatch>, DataFusionError> {
    let pool = df.task_ctx().memory_pool().clone();
    let reservation = MemoryConsumer::new("SQL query result").register(&pool);
    let mut stream = df.execute_stream().await?;
    let mut batches = Vec::new();
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        let mut bytes = 0;
        for column in batch.columns() {
            bytes += column.to_data().get_slice_memory_size()?;
        }
        reservation.try_grow(bytes)?;
        batches.push(batch);
    }
    // The batches leave the pool with the result; the pool ends with the query.
    reservation.free();
    Ok(batches)
}

/// A fresh session for one query: its own memory pool, the store's tables.
fn context(inner: Arc<Inner>, options: &QueryOptions) -> Result<SessionContext> {
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(FairSpillPool::new(options.memory_limit)))
        .build_arc()
        .map_err(from_datafusion)?;
    let config = SessionConfig::new()
        .with_information_schema(true)
        .with_target_partitions(runtime_threads());
    let ctx = SessionContext::new_with_config_rt(config, runtime);
    ctx.add_optimizer_rule(Arc::new(metrics::GroupBySeries::new(inner.clone())));
    tables::register(&ctx, &inner).map_err(from_datafusion)?;
    ctx.register_table("metrics", Arc::new(metrics::MetricsTable::new(inner)))
        .map_err(from_datafusion)?;
    Ok(ctx)
}

fn runtime_threads() -> usize {
    runtime().metrics().num_workers()
}

/// Maps a DataFusion error onto the store's: the store's own errors (raised inside a scan) come
/// back as they were; a query the user got wrong, or one over its limits, is
/// [`Error::InvalidParameter`]; the rest is internal.
fn from_datafusion(e: DataFusionError) -> Error {
    match e {
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
            from_datafusion(*inner)
        }
        DataFusionError::Collection(mut errors) if !errors.is_empty() => {
            from_datafusion(errors.swap_remove(0))
        }
        DataFusionError::Shared(inner) => match Arc::try_unwrap(inner) {
            Ok(inner) => from_datafusion(inner),
            Err(inner) => classify(&inner),
        },
        DataFusionError::External(b) => match b.downcast::<Error>() {
            Ok(e) => *e,
            Err(b) => match b.downcast::<DataFusionError>() {
                Ok(e) => from_datafusion(*e),
                Err(b) => Error::Internal(format!("SQL query: {b}")),
            },
        },
        other => classify(&other),
    }
}

fn classify(e: &DataFusionError) -> Error {
    match e {
        DataFusionError::ResourcesExhausted(m) => {
            Error::InvalidParameter(format!("SQL query exceeds its memory limit: {m}"))
        }
        DataFusionError::IoError(_)
        | DataFusionError::Internal(_)
        | DataFusionError::ExecutionJoin(_) => Error::Internal(format!("SQL query: {e}")),
        _ => Error::InvalidParameter(format!("SQL query failed: {}", e.message())),
    }
}

/// Wraps a store error so that it crosses DataFusion and comes back unchanged.
fn to_datafusion(e: Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}
