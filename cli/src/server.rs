//! `quiver server`: open the store, serve the API, shut down cleanly on Ctrl-C or SIGTERM.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use quiver_server::security::SecurityOptions;
use quiver_server::serve::ServeOptions;
use quiver_server::ui::MlflowUi;
use quiver_store::{Store, StoreOptions};

/// File descriptors kept for the store (WAL, segments, blobs, sled) and for the 503 answers
/// beyond the connection cap, out of the open-file limit.
const RESERVED_FILES: u64 = 256 + quiver_server::serve::OVERFLOW_CONNECTIONS as u64;

/// The options of `quiver server`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Address to listen on.
    #[arg(long, env = "QUIVER_HOST", default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0 picks a free one; the chosen address is logged).
    #[arg(long, env = "QUIVER_PORT", default_value_t = 5000)]
    port: u16,
    /// The store directory (created if missing).
    #[arg(long, env = "QUIVER_STORE", default_value = "./quiver-data")]
    store: PathBuf,
    /// Host header values to answer, comma-separated (`name`, `name:port`, `*.example.com`);
    /// `*` answers any. Default: localhost, 127.0.0.1, [::1] and --host, any port. Guards
    /// against DNS rebinding: other hosts get 403.
    #[arg(long, env = "QUIVER_ALLOWED_HOSTS", value_delimiter = ',')]
    allowed_hosts: Vec<String>,
    /// Origins allowed to make cross-origin state-changing and CORS requests, comma-separated
    /// (`https://app.example.com`, `https://*.example.com`; `*` allows any). Localhost origins
    /// are always allowed; a POST/PUT/DELETE/PATCH from any other origin gets 403.
    #[arg(long, env = "QUIVER_CORS_ALLOWED_ORIGINS", value_delimiter = ',')]
    cors_allowed_origins: Vec<String>,
    /// Connections served at once; more are answered 503 (lowered to fit the open-file limit).
    #[arg(long, env = "QUIVER_MAX_CONNECTIONS", default_value_t = 1024)]
    max_connections: usize,
    /// Seconds a client has to send a request's head (from connecting, or from the end of the
    /// previous response); slower clients are disconnected.
    #[arg(long, env = "QUIVER_HEADER_READ_TIMEOUT", default_value_t = 30)]
    header_read_timeout: u64,
    /// Seconds without any byte read or written after which a connection is closed.
    #[arg(long, env = "QUIVER_IDLE_TIMEOUT", default_value_t = 60)]
    idle_timeout: u64,
    /// Memory each SQL query may hold (its pool: operator state, result batches in flight),
    /// e.g. 512MiB, 2GiB or a number of bytes.
    #[arg(long, env = "QUIVER_SQL_MEMORY_LIMIT", default_value = "512MiB", value_parser = parse_bytes)]
    sql_memory_limit: usize,
    /// How soon after an artifact is deleted or overwritten (and after start) the server frees
    /// the disk space nothing references any more, at most once per this interval
    /// (e.g. 60s, 5min). Deleted runs are purged only by `quiver gc`.
    #[arg(long, env = "QUIVER_GC_INTERVAL", default_value = "60s", value_parser = humantime::parse_duration)]
    gc_interval: std::time::Duration,
    /// The built MLflow web UI to serve at `/` (`<site-packages>/mlflow/server/js/build`).
    /// Default: the one of the `mlflow` package of --python, if it has one.
    #[arg(long, env = "QUIVER_UI_DIR")]
    ui_dir: Option<PathBuf>,
    /// The Python interpreter whose `mlflow` package provides the web UI when --ui-dir is not
    /// given.
    #[arg(long, env = "QUIVER_PYTHON", default_value = "python3")]
    python: String,
}

/// The MLflow web UI to serve: --ui-dir (an error if it is no bundle), else the one of
/// --python's `mlflow` package, else none (then `/` says how to get it).
fn web_ui(args: &Args) -> anyhow::Result<Option<MlflowUi>> {
    if let Some(dir) = &args.ui_dir {
        return Ok(Some(MlflowUi::open(dir)?));
    }
    match MlflowUi::find(&args.python) {
        Ok(ui) => Ok(Some(ui)),
        Err(e) => {
            tracing::info!("no MLflow web UI: {e}");
            Ok(None)
        }
    }
}

/// Runs the server until Ctrl-C or SIGTERM, then closes the store (flushing it).
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let mut options = StoreOptions::default();
    options.sql.memory_limit = args.sql_memory_limit;
    options.gc_interval = args.gc_interval;
    let store = match Store::open_with(&args.store, options) {
        Ok(s) => Arc::new(s),
        Err(e @ quiver_store::Error::Locked { .. }) => {
            anyhow::bail!("{e}")
        }
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot open the store at {}", args.store.display()))
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(&args, store.clone()))?;
    drop(runtime);
    let store = Arc::try_unwrap(store)
        .map_err(|_| anyhow::anyhow!("the store is still in use at shutdown"))?;
    store.close().context("closing the store")?;
    tracing::info!("store closed cleanly");
    Ok(())
}

async fn serve(args: &Args, store: Arc<Store>) -> anyhow::Result<()> {
    let (host, port) = (args.host.as_str(), args.port);
    let listener = tokio::net::TcpListener::bind((host, port))
        .await
        .with_context(|| {
            format!(
                "cannot listen on {host}:{port} (is another server using that port? try --port)"
            )
        })?;
    let addr = listener.local_addr()?;
    let options = serve_options(args);
    let mut security = SecurityOptions::for_bind_host(host);
    if !args.allowed_hosts.is_empty() {
        security.allowed_hosts = trimmed(&args.allowed_hosts);
    }
    security.cors_allowed_origins = trimmed(&args.cors_allowed_origins);
    tracing::info!(%addr, store = %args.store.display(), "quiver server listening; MLFLOW_TRACKING_URI=http://{addr}");
    tracing::debug!(?security, ?options, "serving");
    let ui = web_ui(args)?;
    match &ui {
        Some(ui) => {
            tracing::info!(dir = %ui.dir().display(), "serving the MLflow web UI at http://{addr}/")
        }
        None => tracing::info!(
            "not serving the MLflow web UI: / says how to get it (install mlflow, or --ui-dir)"
        ),
    }
    // The server reads an import's source from its own disk: only for clients on this host.
    let importer: Option<Arc<dyn quiver_server::import::Importer>> = if is_loopback(host) {
        Some(Arc::new(crate::import::ServerImporter {
            store_dir: args.store.clone(),
        }))
    } else {
        None
    };
    let app = quiver_server::router_with_importer(store, importer)
        .merge(quiver_server::ui::routes(ui.as_ref()));
    let app = security.protect(app);
    quiver_server::serve::serve(listener, app, options, shutdown_signal()).await;
    tracing::info!("shutting down");
    Ok(())
}

/// The serving options from the flags, with the connection cap lowered to what the open-file
/// limit (raised to its hard limit first) leaves room for.
fn serve_options(args: &Args) -> ServeOptions {
    let mut max_connections = args.max_connections.max(1);
    match quiver_server::serve::raise_open_file_limit() {
        Ok(files) => {
            let room = files.saturating_sub(RESERVED_FILES).max(16) as usize;
            if max_connections > room {
                tracing::warn!(
                    requested = max_connections,
                    open_file_limit = files,
                    "lowering --max-connections to {room} to fit the open-file limit"
                );
                max_connections = room;
            }
        }
        Err(e) => tracing::warn!(error = %e, "keeping the open-file limit as it is"),
    }
    ServeOptions {
        max_connections,
        header_read_timeout: Duration::from_secs(args.header_read_timeout.max(1)),
        idle_timeout: Duration::from_secs(args.idle_timeout.max(1)),
        ..ServeOptions::default()
    }
}

fn trimmed(list: &[String]) -> Vec<String> {
    list.iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Parses a byte count: a number with an optional unit (`B`, `KiB`, `MiB`, `GiB`, or `K`, `M`,
/// `G` meaning the same powers of 1024), e.g. `512MiB`.
pub(crate) fn parse_bytes(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: usize = number
        .parse()
        .map_err(|_| format!("expected a size such as 512MiB, got {text:?}"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(format!("unknown unit in {text:?} (use B, KiB, MiB or GiB)")),
    };
    number
        .checked_mul(1 << shift)
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{text:?} is not a usable size"))
}

/// Whether `host` (a bind address) is reachable from this machine only.
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::is_loopback;

    #[test]
    fn only_loopback_binds_import() {
        for host in ["127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"] {
            assert!(is_loopback(host), "{host}");
        }
        for host in ["0.0.0.0", "::", "10.0.0.1", "example.com"] {
            assert!(!is_loopback(host), "{host}");
        }
    }
}
