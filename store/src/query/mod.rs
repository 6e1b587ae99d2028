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
//! [`Store::sql`] the result it gathers (a [`SqlStream`] the batches waiting for its reader), so
//! a query over more than its limit fails cleanly instead of growing without bound. Values
//! computed by scalar functions are not operator state; the functions that can amplify their
//! input (`repeat`, `lpad`, `rpad`, `replace`, `regexp_replace`, `concat`, `encode`,
//! `array_repeat`, `array_resize`, `range`, `generate_series`) are wrapped (`amplify`) to refuse a
//! call producing more than 1/16 of the limit, judged from the arguments before the call.
//!
//! # Deep queries
//! Parsing, dropping the syntax tree, planning, optimizing and evaluating all recurse over the
//! query. They run on the module's runtime threads (64 MiB stacks, whatever thread called), and a
//! query whose estimated depth (from its tokens, see `nesting`) is over 1000 is refused with
//! [`Error::InvalidParameter`] ("too deeply nested") before it is parsed.

mod amplify;
mod errors;
mod metrics;
mod model_tables;
mod nesting;
mod stream;
mod tables;

use std::sync::{mpsc, Arc, OnceLock};
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::memory_pool::{FairSpillPool, MemoryConsumer};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::{DFParserBuilder, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use futures_util::StreamExt;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::store::{Inner, Store};

use stream::Produced;
pub use stream::SqlStream;

/// Limits of one SQL query.
#[derive(Debug, Clone)]
pub struct QueryOptions {
    /// Bytes the query may hold at once: its operators' state (sorts, joins, aggregations), the
    /// batches the `metrics` scan is producing, the batches waiting for the reader of a
    /// [`SqlStream`] (or the whole result [`Store::sql`] gathers), and, per call, the output of
    /// a function that can amplify its input (`repeat`, `lpad`, `range` ..., at most 1/16 of
    /// the limit). Beyond it, operators that can spill to disk do; otherwise the query fails
    /// with [`Error::InvalidParameter`] ("exceeds its memory limit").
    pub memory_limit: usize,
    /// Wall time after which the query is cancelled and fails with [`Error::InvalidParameter`]
    /// (for a [`SqlStream`], counted until its last batch is read).
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

/// The stack of a query thread. Everything that recurses over a query (parsing, dropping its
/// syntax tree, planning, optimizing, evaluating expressions) runs on these threads; with the
/// nesting bound ([`nesting::MAX_NESTING`]) a query needs a few MiB of it in a debug build.
/// Only the pages a query touches are ever resident.
const QUERY_STACK_BYTES: usize = 64 << 20;

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
            .thread_stack_size(QUERY_STACK_BYTES)
            .enable_time()
            .build()
            .expect("start the SQL runtime")
    })
}

impl Store {
    /// Runs one SQL query over the store with the store's [`QueryOptions`]
    /// ([`StoreOptions::sql`](crate::StoreOptions::sql)) and returns its whole result.
    /// Tables: `experiments`, `runs`, `params`, `tags`, `latest_metrics`, `metrics`,
    /// `metric_series`, `datasets`, `inputs`, `input_tags`, `artifacts` (columns in the README's
    /// "SQL" section). The result is held in the query's memory pool while it is gathered, so a
    /// result larger than the memory limit fails; read large results with
    /// [`Store::sql_stream`].
    ///
    /// Blocks until the query is done (it runs on the store's own query threads, whose stacks
    /// are sized for deep queries, so this may be called from any thread, including inside an
    /// async runtime; there, prefer `spawn_blocking`). A query nested deeper than the store
    /// handles (a chain of more than about a thousand operators, set operations or joins) is
    /// refused with [`Error::InvalidParameter`] ("too deeply nested").
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
        self.sql_with(sql, &self.options().sql)
    }

    /// [`Store::sql`] with explicit limits.
    pub fn sql_with(&self, sql: &str, options: &QueryOptions) -> Result<Vec<RecordBatch>> {
        start(self.shared().clone(), sql, options, true)?.collect_all()
    }

    /// Runs one SQL query and returns its result as a stream of batches, produced while they
    /// are read (see [`SqlStream`]), with the store's [`QueryOptions`]. Returns once the query is
    /// planned: errors in the query itself (syntax, unknown tables, not read-only, too deeply
    /// nested) come back here; errors while it runs (memory limit, time limit) end the stream.
    ///
    /// ```
    /// # fn main() -> quiver_store::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = quiver_store::Store::open(dir.path())?;
    /// let stream = store.sql_stream("SELECT * FROM generate_series(1, 100000)")?;
    /// assert_eq!(stream.schema().fields().len(), 1);
    /// let mut rows = 0;
    /// for batch in stream {
    ///     rows += batch?.num_rows();
    /// }
    /// assert_eq!(rows, 100_000);
    /// # Ok(()) }
    /// ```
    pub fn sql_stream(&self, sql: &str) -> Result<SqlStream> {
        self.sql_stream_with(sql, &self.options().sql)
    }

    /// [`Store::sql_stream`] with explicit limits.
    pub fn sql_stream_with(&self, sql: &str, options: &QueryOptions) -> Result<SqlStream> {
        start(self.shared().clone(), sql, options, true)
    }

    /// The schema of the result of `sql`, without running it.
    pub fn sql_schema(&self, sql: &str) -> Result<SchemaRef> {
        Ok(start(self.shared().clone(), sql, &self.options().sql, false)?.schema())
    }
}

/// Parses `sql` and checks that it is exactly one read-only query; refuses anything else with a
/// message that says what was found.
fn parse_read_only(sql: &str) -> Result<DfStatement> {
    let mut statements = DFParserBuilder::new(sql)
        .build()
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| explained(e, sql, &[]))?;
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
    let statement = statements.pop_front().expect("one statement");
    if is_query(&statement) {
        Ok(statement)
    } else {
        let text = statement.to_string();
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

/// Starts `sql` on the query runtime within `options`' limits and returns its stream once it is
/// planned (without running it unless `execute`). Everything that touches the query's text or
/// plan, parsing included, runs on the query threads; the caller only waits.
fn start(inner: Arc<Inner>, sql: &str, options: &QueryOptions, execute: bool) -> Result<SqlStream> {
    let sql = sql.to_string();
    let options = options.clone();
    let (schema_tx, schema_rx) = mpsc::sync_channel(1);
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    runtime().spawn(async move {
        let deadline = Instant::now() + options.timeout;
        let timed_out = || {
            Error::InvalidParameter(format!(
                "SQL query cancelled: it ran longer than its time limit of {:?}",
                options.timeout
            ))
        };
        let planned = match tokio::time::timeout_at(deadline, plan(inner, &sql, &options)).await {
            Ok(planned) => planned,
            Err(_) => Err(timed_out()),
        };
        let (schema, ctx, stream) = match planned {
            Ok(p) => p,
            Err(e) => {
                let _ = schema_tx.send(Err(e));
                return;
            }
        };
        let _ = schema_tx.send(Ok(schema));
        let Some(stream) = stream.filter(|_| execute) else {
            return;
        };
        let produce = produce(&ctx, stream, &tx);
        let end = match tokio::time::timeout_at(deadline, produce).await {
            Ok(end) => end,
            Err(_) => Err(timed_out()),
        };
        if let Err(e) = end {
            let _ = tx.send(Err(e)).await;
        }
        drop(ctx);
        crate::memory::release_free_memory();
    });
    let schema = stream::wait_schema(schema_rx)?;
    Ok(SqlStream::new(schema, rx))
}

/// Plans `sql`: the nesting bound, parsing, the read-only checks, the plan, and (unless it is
/// only asked for its schema) the stream that executes it.
async fn plan(
    inner: Arc<Inner>,
    sql: &str,
    options: &QueryOptions,
) -> Result<(SchemaRef, SessionContext, Option<SendableRecordBatchStream>)> {
    nesting::check(sql)?;
    let statement = parse_read_only(sql)?;
    let ctx = context(inner, options)?;
    let work = async {
        let plan = ctx.state().statement_to_plan(statement).await?;
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)?;
        let df = ctx.execute_logical_plan(plan).await?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let stream = df.execute_stream().await?;
        Ok::<_, DataFusionError>((schema, stream))
    };
    let (schema, stream) = work
        .await
        .map_err(|e| explained(e, sql, &table_names(&ctx)))?;
    Ok((schema, ctx, Some(stream)))
}

/// The tables a query can use (the store's, not the information schema's).
fn table_names(ctx: &SessionContext) -> Vec<String> {
    ctx.catalog("datafusion")
        .and_then(|c| c.schema("public"))
        .map(|s| s.table_names())
        .unwrap_or_default()
}

/// `e` as the store's error, with a message a person can act on where there is one
/// ([`errors::explain`]).
fn explained(e: DataFusionError, sql: &str, tables: &[String]) -> Error {
    match errors::explain(&e, sql, tables) {
        Some(message) => Error::InvalidParameter(message),
        None => from_datafusion(e),
    }
}

/// Runs `stream` and sends its batches to the reader, each reserved in the query's memory pool
/// (released by the reader, see [`SqlStream`]). A batch counts the bytes of its rows (the part
/// of its buffers it refers to), so that batches sliced out of one larger array count that
/// array once in all. Ends early, without an error, when the reader is gone.
async fn produce(
    ctx: &SessionContext,
    mut stream: SendableRecordBatchStream,
    tx: &tokio::sync::mpsc::Sender<Result<Produced>>,
) -> Result<()> {
    let pool = ctx.runtime_env().memory_pool.clone();
    let reservation = MemoryConsumer::new("SQL query result").register(&pool);
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(from_datafusion)?;
        let mut bytes = 0;
        for column in batch.columns() {
            bytes += column
                .to_data()
                .get_slice_memory_size()
                .map_err(|e| from_datafusion(e.into()))?;
        }
        reservation.try_grow(bytes).map_err(from_datafusion)?;
        let reservation = reservation.split(bytes);
        if tx.send(Ok(Produced { batch, reservation })).await.is_err() {
            return Ok(());
        }
    }
    Ok(())
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
    amplify::register(&ctx, amplify::call_limit(options.memory_limit));
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
