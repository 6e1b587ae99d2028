//! The web UI: MLflow's own, served from the built bundle that the `mlflow` Python package
//! ships (`mlflow/server/js/build/`), as `mlflow server` serves it: `/` is its `index.html` and
//! `/static-files/*` its files, with long cache lifetimes (their names carry content hashes).
//! The bundle is never copied into Quiver: [`MlflowUi::find`] locates it in a Python
//! environment, or the operator names the directory ([`MlflowUi::open`]).
//!
//! Without a bundle, `/` is a short page that says how to get one.

use std::path::{Path, PathBuf};
use std::process::Command;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;

/// How long browsers may keep `/static-files/*` (MLflow's `max_age`, 28 days).
const STATIC_MAX_AGE: &str = "public, max-age=2419200";

/// Why no MLflow UI bundle could be used.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    /// The directory has no `index.html`.
    #[error("{0} has no index.html: not a built MLflow UI (mlflow/server/js/build)")]
    NotABundle(PathBuf),
    /// The Python interpreter could not be run.
    #[error("cannot run {python}: {source}")]
    Python {
        /// The interpreter asked for.
        python: String,
        /// Why it did not run.
        source: std::io::Error,
    },
    /// The interpreter ran, but has no `mlflow` package.
    #[error("{0} has no mlflow package (pip install mlflow, not mlflow-skinny)")]
    NoMlflow(String),
}

/// A built MLflow UI on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MlflowUi {
    dir: PathBuf,
}

impl MlflowUi {
    /// The bundle in `dir` (a directory holding `index.html` and `static/`).
    pub fn open(dir: &Path) -> Result<MlflowUi, UiError> {
        if !dir.join("index.html").is_file() {
            return Err(UiError::NotABundle(dir.to_path_buf()));
        }
        Ok(MlflowUi {
            dir: dir.to_path_buf(),
        })
    }

    /// The bundle of the `mlflow` package that `python` imports. The package is located with
    /// `importlib.util.find_spec`, which does not import it, so this takes milliseconds.
    /// `mlflow-skinny` has no bundle: that is [`UiError::NotABundle`].
    pub fn find(python: &str) -> Result<MlflowUi, UiError> {
        const SCRIPT: &str = "import importlib.util as u, os\n\
            s = u.find_spec('mlflow')\n\
            print(os.path.join(os.path.dirname(s.origin), 'server', 'js', 'build') if s and s.origin else '')";
        let out = Command::new(python)
            .args(["-c", SCRIPT])
            .output()
            .map_err(|source| UiError::Python {
                python: python.to_string(),
                source,
            })?;
        let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !out.status.success() || dir.is_empty() {
            return Err(UiError::NoMlflow(python.to_string()));
        }
        MlflowUi::open(Path::new(&dir))
    }

    /// The bundle's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `/` (index.html, revalidated on every load so that an upgraded bundle is picked up) and
    /// `/static-files/*` (cached for 28 days).
    fn routes<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        let index = self.dir.join("index.html");
        let files = ServeDir::new(&self.dir).append_index_html_on_directories(false);
        let static_files = Router::new().nest_service("/static-files", files).layer(
            SetResponseHeaderLayer::overriding(
                header::CACHE_CONTROL,
                HeaderValue::from_static(STATIC_MAX_AGE),
            ),
        );
        Router::new()
            .route(
                "/",
                get(move || {
                    let index = index.clone();
                    async move { index_page(&index).await }
                }),
            )
            .merge(static_files)
    }
}

/// `index.html`, read on each request (it is small, and a reinstalled package takes effect
/// without a restart).
async fn index_page(path: &Path) -> Response {
    match tokio::fs::read(path).await {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            bytes,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot read the MLflow UI at {}: {e}", path.display()),
        )
            .into_response(),
    }
}

/// The page `/` shows when no MLflow UI bundle is served.
const NO_UI_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Quiver</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:42rem;margin:4rem auto;padding:0 1rem}
code{background:#f3f3f3;padding:.1rem .3rem;border-radius:3px}</style></head>
<body><h1>Quiver</h1>
<p>This Quiver server answers the MLflow REST API: point the client at it with
<code>MLFLOW_TRACKING_URI=&lt;this address&gt;</code>.</p>
<p>To browse runs here with MLflow's web UI, install the <code>mlflow</code> package in the
Python environment the server starts from (<code>pip install mlflow</code>) and restart it, or
start it with <code>--ui-dir &lt;site-packages&gt;/mlflow/server/js/build</code>.</p>
<p>To query the store with SQL in the browser, open <a href="studio/">Quiver Studio</a>.</p>
</body></html>
"#;

/// The web UI's routes for the given bundle, or the page that says how to get one, plus
/// Quiver Studio ([`crate::studio`]), to be merged into the API router.
pub fn routes<S: Clone + Send + Sync + 'static>(ui: Option<&MlflowUi>) -> Router<S> {
    let ui = match ui {
        Some(ui) => ui.routes(),
        None => Router::new().route("/", get(|| async { Html(NO_UI_PAGE) })),
    };
    ui.merge(crate::studio::routes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_without_index_html_is_not_a_bundle() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            MlflowUi::open(dir.path()),
            Err(UiError::NotABundle(_))
        ));
        std::fs::write(dir.path().join("index.html"), "<html>").unwrap();
        assert_eq!(MlflowUi::open(dir.path()).unwrap().dir(), dir.path());
    }

    #[test]
    fn a_missing_interpreter_is_an_error() {
        assert!(matches!(
            MlflowUi::find("/nonexistent/python3"),
            Err(UiError::Python { .. })
        ));
    }
}
