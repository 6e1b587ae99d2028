//! `POST /api/2.0/quiver/import {from, artifacts, dry_run, on_error}`: an import into this
//! server's store, run by the [`crate::import::Importer`] the server was started with. The
//! answer is `text/plain`, streamed: the import's report line by line, then a last line
//! `quiver-import: ok` or `quiver-import: failed: <why>`.
//!
//! The server reads the source from its own disk (or network), so the route is open only when
//! the server listens on a loopback address (the importer is not given otherwise), and one
//! import runs at a time. A client that goes away stops the import at its next report (within
//! seconds); the same import resumes it.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;

use super::quiver;
use crate::error::ApiResult;
use crate::import::{ImportRequest, IMPORT_FAILED, IMPORT_OK};
use crate::wire::Fields;
use crate::{ApiError, AppState};

/// Registers the route.
pub(crate) fn routes(router: Router<AppState>) -> Router<AppState> {
    quiver(router, "/import", post(import))
}

/// Held while an import runs.
static RUNNING: Mutex<()> = Mutex::new(());

async fn import(State(s): State<AppState>, f: Fields) -> ApiResult<Response> {
    let Some(importer) = s.importer.clone() else {
        return Err(ApiError {
            status: StatusCode::FORBIDDEN,
            code: "PERMISSION_DENIED",
            message: "This server does not import: it reads the source from its own disk, \
                      so imports are accepted only by a server listening on a loopback \
                      address. Stop it and run `quiver import` on its store directory."
                .into(),
        });
    };
    let skip_errors = match f.opt_str("on_error")?.as_deref() {
        None | Some("stop") => false,
        Some("skip") => true,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "Invalid value '{other}' for parameter 'on_error': use 'stop' or 'skip'"
            )))
        }
    };
    let request = ImportRequest {
        from: f.req_str("from")?,
        artifacts: f.opt_str("artifacts")?,
        dry_run: f.opt_bool("dry_run")?.unwrap_or(false),
        skip_errors,
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    let store = Arc::clone(&s.store);
    if RUNNING.try_lock().is_err() {
        return Err(ApiError {
            status: StatusCode::CONFLICT,
            code: "RESOURCE_CONFLICT",
            message: "An import is running in this server; wait for it to end.".into(),
        });
    }
    tokio::task::spawn_blocking(move || {
        let Ok(_running) = RUNNING.try_lock() else {
            let _ = tx.blocking_send(Bytes::from(format!(
                "{IMPORT_FAILED}an import is running in this server\n"
            )));
            return;
        };
        let mut report = |line: String| tx.blocking_send(Bytes::from(line + "\n")).is_ok();
        let last = match importer.import(&store, &request, &mut report) {
            Ok(()) => IMPORT_OK.to_string(),
            Err(e) => format!("{IMPORT_FAILED}{}", e.replace('\n', " ")),
        };
        let _ = tx.blocking_send(Bytes::from(last + "\n"));
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, std::io::Error>(chunk), rx))
    });
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from_stream(body),
    )
        .into_response())
}
