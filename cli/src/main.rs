//! `quiver`: an MLflow-compatible tracking server on an embedded store, and admin commands.

mod admin;
mod deployments;
mod models;
mod server;
mod sql;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Quiver: a fast, durable, portable run-history store for machine learning.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the MLflow tracking REST API (and the artifact proxy) from a store directory.
    ///
    /// Point the unmodified mlflow client at it: MLFLOW_TRACKING_URI=http://127.0.0.1:5000
    Server {
        /// Address to listen on.
        #[arg(long, env = "QUIVER_HOST", default_value = "127.0.0.1")]
        host: String,
        /// Port to listen on (0 picks a free one; the chosen address is logged).
        #[arg(long, env = "QUIVER_PORT", default_value_t = 5000)]
        port: u16,
        /// The store directory (created if missing).
        #[arg(long, env = "QUIVER_STORE", default_value = "./quiver-data")]
        store: PathBuf,
        /// Memory each SQL query may hold (its pool: operator state, result batches in flight),
        /// e.g. 512MiB, 2GiB or a number of bytes.
        #[arg(long, env = "QUIVER_SQL_MEMORY_LIMIT", default_value = "512MiB", value_parser = server::parse_bytes)]
        sql_memory_limit: usize,
    },
    /// Run a read-only SQL query over a store (tables: experiments, runs, params, tags,
    /// latest_metrics, metrics, datasets, inputs, input_tags, metric_series, artifacts,
    /// logged_models, logged_model_params, logged_model_tags, registered_models, model_versions,
    /// model_aliases, deployments, registry_events).
    ///
    /// Example: quiver sql "SELECT key, count(*) FROM metrics GROUP BY key"
    Sql {
        /// The query (SELECT / WITH / VALUES / EXPLAIN; anything else is refused).
        query: String,
        /// The store directory (when no --url is given).
        #[arg(long, env = "QUIVER_STORE", default_value = "./quiver-data")]
        store: PathBuf,
        /// Query a running server instead (e.g. http://127.0.0.1:5000).
        #[arg(long)]
        url: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: sql::Format,
        /// Write to this file instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Record, list and remove deployments (a deployed model version cannot be deleted).
    ///
    /// Each subcommand works on a store directory (--store) or a running server (--url).
    Deployments {
        #[command(subcommand)]
        command: deployments::Command,
    },
    /// Inspect the model registry: the recorded history of a registered model.
    ///
    /// Each subcommand works on a store directory (--store) or a running server (--url).
    Models {
        #[command(subcommand)]
        command: models::Command,
    },
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("QUIVER_LOG")
                .unwrap_or_else(|_| "info,tower_http=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Server {
            host,
            port,
            store,
            sql_memory_limit,
        } => server::run(&host, port, &store, sql_memory_limit),
        Command::Sql {
            query,
            store,
            url,
            format,
            output,
        } => sql::run(&query, &store, url.as_deref(), format, output.as_ref()),
        Command::Deployments { command } => deployments::run(command),
        Command::Models { command } => models::run(command),
    }
}
