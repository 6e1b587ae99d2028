//! `quiver server`: open the store, serve the API, shut down cleanly on Ctrl-C or SIGTERM.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use quiver_store::{Store, StoreOptions};

/// Runs the server until Ctrl-C or SIGTERM, then closes the store (flushing it). Each SQL query
/// gets a memory pool of `sql_memory_limit` bytes.
pub(crate) fn run(
    host: &str,
    port: u16,
    store_dir: &Path,
    sql_memory_limit: usize,
) -> anyhow::Result<()> {
    let mut options = StoreOptions::default();
    options.sql.memory_limit = sql_memory_limit;
    let store = match Store::open_with(store_dir, options) {
        Ok(s) => Arc::new(s),
        Err(e @ quiver_store::Error::Locked { .. }) => {
            anyhow::bail!("{e}")
        }
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot open the store at {}", store_dir.display()))
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(host, port, store.clone(), store_dir))?;
    drop(runtime);
    let store = Arc::try_unwrap(store)
        .map_err(|_| anyhow::anyhow!("the store is still in use at shutdown"))?;
    store.close().context("closing the store")?;
    tracing::info!("store closed cleanly");
    Ok(())
}

async fn serve(host: &str, port: u16, store: Arc<Store>, dir: &Path) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind((host, port))
        .await
        .with_context(|| {
            format!(
                "cannot listen on {host}:{port} (is another server using that port? try --port)"
            )
        })?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, store = %dir.display(), "quiver server listening; MLFLOW_TRACKING_URI=http://{addr}");
    let app = quiver_server::router(store);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("server error")?;
    tracing::info!("shutting down");
    Ok(())
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
