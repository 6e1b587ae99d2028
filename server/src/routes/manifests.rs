//! Quiver's own routes for runs' file manifests (source snapshots and declared outputs, see
//! `quiver run`): content-addressed uploads that send only the bytes the store lacks.
//!
//! - `POST /api/2.0/quiver/blobs/missing {digests: [hex]}` → `{missing: [hex]}`
//! - `PUT /api/2.0/quiver/blobs/<digest>` with the bytes as the body (streamed, no size limit;
//!   bytes that do not hash to `<digest>` are a 400) → `{size}`
//! - `POST /api/2.0/quiver/runs/manifest {run_id, kind, files: [{path, size, mode, digest}]}`
//!   → `{root, files, bytes}`; a 400 if a file's blob is missing (upload it, then retry)
//! - `GET /api/2.0/quiver/runs/manifest?run_id=&kind=` → the manifest
//! - `GET /api/2.0/quiver/runs/manifest/file?run_id=&kind=&path=` → one file's bytes
//!
//! `kind` is `snapshot` or `outputs`.

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use quiver_store::{Digest, ManifestFile, ManifestKind};
use serde_json::{json, Value};
use tokio_util::io::ReaderStream;

use super::artifacts::{BodyReader, ChunkReader};
use super::quiver;
use crate::wire::Fields;
use crate::{blocking, ApiError, ApiResult, AppState};

/// Most digests one `blobs/missing` request may ask about.
const MAX_DIGESTS_PER_REQUEST: usize = 100_000;

/// Registers the routes.
pub(crate) fn routes(router: Router<AppState>) -> Router<AppState> {
    let router = quiver(router, "/blobs/missing", post(missing));
    let router = quiver(
        router,
        "/blobs/{digest}",
        put(upload).layer(DefaultBodyLimit::disable()),
    );
    let router = quiver(router, "/runs/manifest", get(manifest).post(record));
    quiver(router, "/runs/manifest/file", get(file))
}

/// `POST blobs/missing {digests}` → `{missing}`.
async fn missing(State(s): State<AppState>, f: Fields) -> ApiResult<Json<Value>> {
    let hex = f.str_list("digests")?;
    if hex.len() > MAX_DIGESTS_PER_REQUEST {
        return Err(ApiError::invalid(format!(
            "At most {MAX_DIGESTS_PER_REQUEST} digests per request, got {}",
            hex.len()
        )));
    }
    let digests = hex
        .iter()
        .map(|h| Digest::from_hex(h))
        .collect::<Result<Vec<_>, _>>()?;
    let missing = blocking(move || Ok(s.store.missing_blobs(&digests))).await?;
    let missing: Vec<String> = missing.iter().map(Digest::to_hex).collect();
    Ok(Json(json!({ "missing": missing })))
}

/// `PUT blobs/<digest>`: streams the body into the store.
async fn upload(
    State(s): State<AppState>,
    digest: Result<Path<String>, PathRejection>,
    body: Body,
) -> ApiResult<Json<Value>> {
    let Path(digest) = digest.map_err(|e| ApiError::invalid(format!("Invalid digest: {e}")))?;
    let digest = Digest::from_hex(&digest)?;
    let inner = ChunkReader::spawn(body);
    let size = blocking(move || {
        let mut reader = BodyReader::new(inner);
        match s.store.put_blob(&digest, &mut reader) {
            Ok(size) => Ok(size),
            Err(e) => Err(reader.failure().unwrap_or_else(|| e.into())),
        }
    })
    .await?;
    Ok(Json(json!({ "size": size })))
}

/// The run and manifest kind a request names.
fn run_and_kind(f: &Fields) -> ApiResult<(String, ManifestKind)> {
    let kind = f.opt_str("kind")?.unwrap_or_else(|| "snapshot".into());
    Ok((f.run_id()?, ManifestKind::parse(&kind)?))
}

/// `POST runs/manifest {run_id, kind, files}` → `{root, files, bytes}`.
async fn record(State(s): State<AppState>, f: Fields) -> ApiResult<Json<Value>> {
    let (run_id, kind) = run_and_kind(&f)?;
    let files: Vec<ManifestFile> = match f.raw("files") {
        None => Vec::new(),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| ApiError::invalid(format!("Invalid value for parameter 'files': {e}")))?,
    };
    let m = blocking(move || Ok(s.store.put_manifest(&run_id, kind, files)?)).await?;
    Ok(Json(
        json!({ "root": m.root, "files": m.files.len(), "bytes": m.bytes }),
    ))
}

/// `GET runs/manifest?run_id=&kind=` → the manifest.
async fn manifest(State(s): State<AppState>, f: Fields) -> ApiResult<Json<Value>> {
    let (run_id, kind) = run_and_kind(&f)?;
    let m = blocking(move || Ok(s.store.manifest(&run_id, kind)?)).await?;
    serde_json::to_value(m)
        .map(Json)
        .map_err(|e| ApiError::internal(format!("encoding a manifest: {e}")))
}

/// `GET runs/manifest/file?run_id=&kind=&path=` → the file's bytes, streamed.
async fn file(State(s): State<AppState>, f: Fields) -> ApiResult<Response> {
    let (run_id, kind) = run_and_kind(&f)?;
    let path = f.req_str("path")?;
    let (entry, blob) =
        blocking(move || Ok(s.store.open_manifest_file(&run_id, kind, &path)?)).await?;
    let mut response =
        Body::from_stream(ReaderStream::new(tokio::fs::File::from_std(blob))).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(entry.size));
    Ok(response)
}
