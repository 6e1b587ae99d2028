//! `quiver`: an MLflow-compatible tracking server on an embedded store, and admin commands.

mod admin;
mod deployments;
mod export;
mod gc;
mod import;
mod line_log;
mod mlflow_rest;
mod models;
mod pipeline;
mod runcmd;
mod server;
mod snapshot;
mod sql;
mod verbs;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Quiver: a fast, durable, portable run-history store for machine learning.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
#[command(
    after_help = "Exit codes: 0 success; 1 an error (a refused request, bad input, a failed \
command); 2 wrong usage; 3 the store is damaged; 4 the store is locked by another process \
(use --url to talk to the server that holds it). `quiver run` exits with its command's code."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// More log output on standard error: -v info, -vv debug (QUIVER_LOG, a tracing filter,
    /// says otherwise).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a command as a tracked run: its mlflow client logs into that run, and its console
    /// output, git state and environment are recorded with it.
    ///
    /// Example: quiver run --experiment demo --param lr=0.1 -- python train.py
    Run(runcmd::RunArgs),
    /// List and show experiments.
    ///
    /// Example: quiver experiments list
    Experiments {
        #[command(subcommand)]
        command: verbs::experiments::Command,
    },
    /// List runs (MLflow's search grammar) and show one: params, tags, metrics, artifacts.
    ///
    /// Example: quiver runs list --experiment demo --filter "metrics.acc > 0.9"
    Runs {
        #[command(subcommand)]
        command: verbs::runs::Command,
    },
    /// A metric's history (streamed, or --sampled), with a sparkline on a terminal.
    ///
    /// Example: quiver metrics history RUN_ID loss
    Metrics {
        #[command(subcommand)]
        command: verbs::metrics::Command,
    },
    /// List, download and upload a run's artifacts.
    ///
    /// Example: quiver artifacts get RUN_ID model/weights.bin
    Artifacts {
        #[command(subcommand)]
        command: verbs::artifacts::Command,
    },
    /// Print a shell completion script.
    ///
    /// Example: quiver completions bash > ~/.local/share/bash-completion/completions/quiver
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Run a pipeline file's steps as child runs of one run, in dependency order, re-running
    /// only the steps whose code, inputs or params changed (and those after them); or say
    /// which would run and why (status).
    ///
    /// Example: quiver pipeline run pipeline.toml
    Pipeline {
        #[command(subcommand)]
        command: pipeline::Command,
    },
    /// Read the source snapshots `quiver run` records: list one, diff two runs' sources,
    /// restore one into a directory.
    ///
    /// Example: quiver snapshot diff RUN_A RUN_B
    Snapshot {
        #[command(subcommand)]
        command: snapshot::Command,
    },
    /// Serve the MLflow tracking REST API (and the artifact proxy) from a store directory.
    ///
    /// Point the unmodified mlflow client at it: MLFLOW_TRACKING_URI=http://127.0.0.1:5000
    Server(server::Args),
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
    /// Delete deleted runs and experiments for good (as `mlflow gc` does: their metrics, params,
    /// tags and artifacts go too) and free the space of deleted and overwritten artifacts.
    ///
    /// Works on a store directory (--store) or a running server (--url). A running server also
    /// frees unreferenced space by itself in the background; it never purges deleted runs.
    ///
    /// Example: quiver gc --older-than 30d
    Gc(gc::Args),
    /// Bring history from another tracking server into a store directory, checked point by
    /// point (MLflow's database file today).
    ///
    /// Example: quiver import mlflow --from sqlite:///mlflow.db --artifacts ./mlartifacts
    Import {
        #[command(subcommand)]
        command: import::Command,
    },
    /// Write a store's history into another tracking server through its REST API, checked
    /// point by point (a running MLflow server today): leaving Quiver is as easy as arriving.
    ///
    /// Example: quiver export mlflow --to http://127.0.0.1:5000
    Export {
        #[command(subcommand)]
        command: export::Command,
    },
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(exit_code(&e));
    }
}

/// The exit code of a failed command (see the help text): 3 for a damaged store, 4 for a
/// locked one, 1 otherwise (clap exits with 2 on wrong usage by itself).
fn exit_code(e: &anyhow::Error) -> i32 {
    for cause in e.chain() {
        match cause.downcast_ref::<quiver_store::Error>() {
            Some(quiver_store::Error::Corruption { .. }) => return 3,
            Some(quiver_store::Error::Locked { .. }) => return 4,
            _ => {}
        }
    }
    1
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The server logs what it does; one-shot commands (and `quiver run`, which shares the
    // terminal with its command) only warnings, so their output stands alone. `QUIVER_LOG`
    // (a tracing filter such as `info` or `debug`) says otherwise.
    let default_filter = match (&cli.command, cli.verbose) {
        (_, 2..) => "debug",
        (Command::Server(_), _) | (_, 1) => "info,tower_http=warn",
        _ => "warn",
    };
    // Colour only on a terminal, and never with NO_COLOR set (https://no-color.org).
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("QUIVER_LOG")
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_ansi(colour)
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Run(args) => {
            let code = runcmd::run(args)?;
            std::process::exit(code);
        }
        Command::Pipeline { command } => {
            let code = pipeline::run(command)?;
            std::process::exit(code);
        }
        Command::Server(args) => server::run(args),
        Command::Experiments { command } => verbs::experiments::run(command),
        Command::Runs { command } => verbs::runs::run(command),
        Command::Metrics { command } => verbs::metrics::run(command),
        Command::Artifacts { command } => verbs::artifacts::run(command),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "quiver", &mut std::io::stdout());
            Ok(())
        }
        Command::Snapshot { command } => snapshot::run(command),
        Command::Sql {
            query,
            store,
            url,
            format,
            output,
        } => sql::run(&query, &store, url.as_deref(), format, output.as_ref()),
        Command::Deployments { command } => deployments::run(command),
        Command::Models { command } => models::run(command),
        Command::Gc(args) => gc::run(args),
        Command::Import { command } => import::run(command),
        Command::Export { command } => export::run(command),
    }
}
