//! Where `quiver run` records its run: a running server (`--url`), or a store directory served
//! for the duration of the command by a server of its own on a loopback port, so that the
//! command's mlflow client and `quiver run` itself both talk MLflow's REST API.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{anyhow, Context};
use quiver_server::serve::ServeOptions;
use quiver_store::Store;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::admin::{self, percent_encode, Remote};

/// Where a command that talks to a tracking server finds it: a running server, or a store
/// directory served on a loopback port for the length of the command.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Place {
    /// A running server (e.g. http://127.0.0.1:5000).
    #[arg(long)]
    url: Option<String>,
    /// The store directory (when no --url is given).
    #[arg(long, env = "QUIVER_STORE", default_value = "./quiver-data")]
    store: PathBuf,
}

impl Place {
    /// The server at `--url`, or the store directory served.
    pub(crate) fn open(&self) -> anyhow::Result<Tracking> {
        match &self.url {
            Some(url) => Ok(Tracking::remote(url)),
            None => Tracking::embedded(&self.store),
        }
    }
}

/// A tracking server for the length of a `quiver run`.
#[derive(Debug)]
pub(crate) struct Tracking {
    /// Its base URL (what `MLFLOW_TRACKING_URI` is set to).
    pub(crate) url: String,
    pub(crate) remote: Remote,
    embedded: Option<Embedded>,
}

/// A server of our own on a store directory.
#[derive(Debug)]
struct Embedded {
    stop: oneshot::Sender<()>,
    thread: JoinHandle<anyhow::Result<()>>,
}

impl Tracking {
    /// The server at `url`.
    pub(crate) fn remote(url: &str) -> Tracking {
        let remote = Remote::new(url, "");
        Tracking {
            url: remote.base().to_string(),
            remote,
            embedded: None,
        }
    }

    /// Opens the store at `dir` and serves it on a free loopback port until [`Tracking::close`].
    pub(crate) fn embedded(dir: &Path) -> anyhow::Result<Tracking> {
        let store = Arc::new(
            Store::open(dir)
                .map_err(admin::store_error)
                .with_context(|| {
                    format!(
                        "opening the store {} (a server has it open? use --url)",
                        dir.display()
                    )
                })?,
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let url = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = oneshot::channel::<()>();
        let dir: PathBuf = dir.to_path_buf();
        let thread = std::thread::spawn(move || -> anyhow::Result<()> {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                let app = quiver_server::router(Arc::clone(&store));
                quiver_server::serve::serve(listener, app, ServeOptions::default(), async {
                    let _ = stopped.await;
                })
                .await;
                anyhow::Ok(())
            })?;
            drop(runtime);
            let store = Arc::try_unwrap(store)
                .map_err(|_| anyhow!("the store {} is still in use", dir.display()))?;
            store.close().context("closing the store")?;
            Ok(())
        });
        Ok(Tracking {
            remote: Remote::new(&url, ""),
            url,
            embedded: Some(Embedded { stop, thread }),
        })
    }

    /// Stops the server of our own, if any, and closes its store.
    pub(crate) fn close(self) -> anyhow::Result<()> {
        if let Some(e) = self.embedded {
            let _ = e.stop.send(());
            e.thread
                .join()
                .map_err(|_| anyhow!("the embedded server panicked"))??;
        }
        Ok(())
    }

    /// The id of experiment `name`, created when missing.
    pub(crate) fn experiment_id(&self, name: &str) -> anyhow::Result<String> {
        if let Some(id) = self.experiment_id_if_exists(name)? {
            return Ok(id);
        }
        let v = self.remote.post(
            "/api/2.0/mlflow/experiments/create",
            &json!({ "name": name }),
        )?;
        text(&v["experiment_id"])
    }

    /// The id of experiment `name`, if it exists.
    pub(crate) fn experiment_id_if_exists(&self, name: &str) -> anyhow::Result<Option<String>> {
        let path = format!(
            "/api/2.0/mlflow/experiments/get-by-name?experiment_name={}",
            percent_encode(name)
        );
        match self.remote.get(&path) {
            Ok(v) => text(&v["experiment"]["experiment_id"]).map(Some),
            Err(e) if e.to_string().starts_with("RESOURCE_DOES_NOT_EXIST") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST /api/2.0/mlflow<path>` with `body`.
    pub(crate) fn mlflow(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.remote.post(&format!("/api/2.0/mlflow{path}"), body)
    }
}

fn text(v: &Value) -> anyhow::Result<String> {
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("the server's answer lacks a field: {v}"))
}
