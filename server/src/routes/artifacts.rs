//! Routes of the artifacts services: the proxied artifact store (`mlflow-artifacts`, which the
//! client uses to upload, download, list and delete files), and the run-scoped reads of the
//! tracking service (`mlflow/artifacts/list`, `/get-artifact`) that the web UI uses.
//!
//! Bodies are streamed both ways, never buffered: an upload goes from the socket through a
//! blocking reader into [`quiver_store::Store::put_artifact`], a download from the blob file to
//! the socket. Memory stays bounded whatever the size, and the upload route has no body limit.
//!
//! Store paths are those of MLflow's `--artifacts-destination`: `<exp>/<run>/artifacts/<file>`
//! for a run whose `artifact_uri` is `mlflow-artifacts:/<exp>/<run>/artifacts`.

use std::io::{self, Read};

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use axum::{Json, Router};
use bytes::{Buf, Bytes};
use futures_util::StreamExt;
use quiver_store::artifact_path;
use quiver_store::{ArtifactListEntry, Store};
use serde_json::{json, Map, Value};
use tokio_util::io::ReaderStream;

use super::mlflow;
use crate::wire::Fields;
use crate::{blocking, ApiError, ApiResult, AppState};

/// Read size when streaming a file to a client.
const DOWNLOAD_CHUNK: usize = 256 << 10;

/// Files up to this size are read whole by the blocking task that opens them and sent as one
/// body: one hop to the blocking pool per download instead of three (open, read, the read that
/// finds the end), no stream buffer of [`DOWNLOAD_CHUNK`] for a 4 KiB file, and the head and
/// body leave in one write.
const WHOLE_DOWNLOAD: u64 = 64 << 10;

/// A file to send: read already, or to stream.
enum Download {
    Whole(Bytes),
    Stream(std::fs::File),
}

/// Registers this module's routes.
pub(crate) fn routes(router: Router<AppState>) -> Router<AppState> {
    let file = get(download)
        .put(upload)
        .delete(delete)
        // Uploads are streamed into the store: no size limit (the extractors used here do not
        // buffer, this makes that explicit).
        .layer(DefaultBodyLimit::disable());
    let dir = get(list).put(no_file_name).delete(no_file_name);
    let router = proxied(router, "/artifacts/{*path}", file);
    let router = proxied(router, "/artifacts", dir.clone());
    let router = proxied(router, "/artifacts/", dir);
    let router = mlflow(router, "2.0", "/artifacts/list", get(list_run_artifacts));
    let router = mlflow(
        router,
        "2.0",
        "/upload-artifact",
        axum::routing::post(upload_run_artifact).layer(DefaultBodyLimit::disable()),
    );
    router.route("/get-artifact", get(get_run_artifact))
}

/// Registers `route` at `/api/2.0/mlflow-artifacts<path>` and its `/ajax-api` twin.
fn proxied(
    router: Router<AppState>,
    path: &str,
    route: MethodRouter<AppState>,
) -> Router<AppState> {
    router
        .route(&format!("/api/2.0/mlflow-artifacts{path}"), route.clone())
        .route(&format!("/ajax-api/2.0/mlflow-artifacts{path}"), route)
}

/// `raw` normalized ([`artifact_path::normalize`]). A path that could escape the store is
/// MLflow's `400 INVALID_PARAMETER_VALUE` with the message `Invalid path`, word for word, as
/// MLflow's tests compare the whole message; the reason goes to the log at debug level.
pub(crate) fn safe_path(raw: &str) -> ApiResult<String> {
    artifact_path::normalize(raw).map_err(|e| {
        tracing::debug!(path = raw, "rejected artifact path: {e}");
        ApiError::invalid("Invalid path")
    })
}

/// The store path of a file named in a request: normalized, and naming a file (not the root,
/// not a directory with a trailing slash).
pub(crate) fn file_path(raw: &str) -> ApiResult<String> {
    let path = safe_path(raw)?;
    if path.is_empty() || raw.ends_with('/') {
        return Err(ApiError::invalid(format!(
            "Invalid path {raw:?}: an artifact path must end with a file name"
        )));
    }
    Ok(path)
}

/// The path captured by a `{*path}` route (percent-decoded), or a 400 if it does not decode.
fn captured(path: Result<Path<String>, PathRejection>) -> ApiResult<String> {
    path.map(|Path(p)| p)
        .map_err(|e| ApiError::invalid(format!("Invalid path: {e}")))
}

/// `PUT`/`DELETE` on the artifact root: there is no file name.
async fn no_file_name() -> ApiError {
    ApiError::invalid("Invalid path: an artifact path must end with a file name")
}

/// A reader that remembers why it failed, so that a broken request body is told apart from a
/// failure of the store.
pub(crate) struct BodyReader<R> {
    inner: R,
    error: Option<String>,
}

impl<R> BodyReader<R> {
    /// A reader over `inner` that has not failed yet.
    pub(crate) fn new(inner: R) -> Self {
        BodyReader { inner, error: None }
    }

    /// The 400 to answer when reading the body failed (then the store's error is a
    /// consequence, not the cause).
    pub(crate) fn failure(&self) -> Option<ApiError> {
        self.error
            .as_ref()
            .map(|cause| ApiError::invalid(format!("Reading the request body failed: {cause}")))
    }
}

impl<R: Read> Read for BodyReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner
            .read(buf)
            .inspect_err(|e| self.error = Some(e.to_string()))
    }
}

/// Body chunks read ahead of the blocking writer, at most this many in flight (bounded memory).
const READ_AHEAD_CHUNKS: usize = 64;

/// A blocking reader over body chunks that a task on the runtime reads ahead into a bounded
/// channel, so receiving overlaps with hashing and writing (a sync bridge over the stream keeps
/// one chunk in flight: 0.77 against 1.17 GiB/s measured for 64 MiB uploads with the writer's
/// early writeback).
pub(crate) struct ChunkReader {
    rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl ChunkReader {
    /// Starts reading `body` ahead on the runtime; the reader is then used on a blocking thread.
    pub(crate) fn spawn(body: Body) -> ChunkReader {
        let (tx, rx) = tokio::sync::mpsc::channel(READ_AHEAD_CHUNKS);
        let mut stream = body.into_data_stream();
        tokio::spawn(async move {
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(io::Error::other);
                let failed = chunk.is_err();
                if tx.send(chunk).await.is_err() || failed {
                    break;
                }
            }
        });
        ChunkReader {
            rx,
            current: Bytes::new(),
        }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(chunk) => self.current = chunk?,
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

/// `PUT /api/2.0/mlflow-artifacts/artifacts/<path>`: streams the body into the store.
async fn upload(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Body,
) -> ApiResult<Json<Value>> {
    let path = file_path(&captured(path)?)?;
    store_body(state.store.clone(), path, body).await?;
    Ok(Json(json!({})))
}

/// Streams `body` into the store as the file `path`; a body that breaks off is a 400.
async fn store_body(store: std::sync::Arc<Store>, path: String, body: Body) -> ApiResult<()> {
    // Created here, on the runtime, and read on a blocking thread.
    let inner = ChunkReader::spawn(body);
    blocking(move || {
        let mut reader = BodyReader::new(inner);
        match store.put_artifact(&path, &mut reader) {
            Ok(_) => Ok(()),
            Err(e) => match reader.failure() {
                Some(failure) => {
                    tracing::debug!(%path, cause = %failure.message, "upload interrupted");
                    Err(failure)
                }
                None => Err(e.into()),
            },
        }
    })
    .await
}

/// The query of the web UI's `upload-artifact`: run id (`run_uuid`, or `run_id`) and the
/// file's path in the run's artifacts, with MLflow's messages.
pub(crate) fn upload_run_artifact_request(fields: &Fields) -> ApiResult<(String, String)> {
    let run_id = match fields.opt_str("run_uuid")?.filter(|s| !s.is_empty()) {
        Some(id) => id,
        None => fields
            .opt_str("run_id")?
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ApiError::invalid("Request must specify run_uuid."))?,
    };
    let raw = fields
        .opt_str("path")?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::invalid("Request must specify path."))?;
    Ok((run_id, file_path(&raw)?))
}

/// `POST /ajax-api/2.0/mlflow/upload-artifact?run_uuid=R&path=p` with the file as the body
/// (the web UI's upload): streams it into run `R`'s artifacts as `p`. An empty body is MLflow's
/// "Request must specify data."
async fn upload_run_artifact(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    let fields = crate::wire::query_fields(query.as_deref().unwrap_or(""));
    let (run_id, rel) = upload_run_artifact_request(&fields)?;
    let empty = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == "0")
        || axum::body::HttpBody::size_hint(&body).exact() == Some(0);
    if empty {
        return Err(ApiError::invalid("Request must specify data."));
    }
    let store = state.store.clone();
    let path = blocking(move || {
        let uri = store.get_run(&run_id)?.info.artifact_uri;
        match served_root(&uri)? {
            Some(root) => Ok(artifact_path::join(&root, &rel)),
            None => Err(not_served(&run_id, &uri)),
        }
    })
    .await?;
    store_body(state.store.clone(), path, body).await?;
    Ok(Json(json!({})))
}

/// `GET /api/2.0/mlflow-artifacts/artifacts/<path>`: streams the file.
async fn download(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let path = file_path(&captured(path)?)?;
    send_file(state.store.clone(), path).await
}

/// `DELETE /api/2.0/mlflow-artifacts/artifacts/<path>`: the file, or everything under a
/// directory. A path that does not exist is not an error.
async fn delete(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<Value>> {
    let raw = captured(path)?;
    let path = safe_path(&raw)?;
    if path.is_empty() {
        // Never "delete everything" through a path that normalizes to the root ("." or "./").
        return Err(ApiError::invalid(format!(
            "Invalid path {raw:?}: refusing to delete the artifact root"
        )));
    }
    let store = state.store.clone();
    blocking(move || Ok(store.delete_artifacts(&path)?)).await?;
    Ok(Json(json!({})))
}

/// The `path` of an artifact listing, normalized (the root when absent).
pub(crate) fn directory_request(fields: &Fields) -> ApiResult<String> {
    safe_path(&fields.opt_str("path")?.unwrap_or_default())
}

/// The query of `artifacts/list`: run id and directory.
pub(crate) fn list_run_artifacts_request(fields: &Fields) -> ApiResult<(String, String)> {
    let run_id = fields.run_id()?;
    let dir = directory_request(fields)?;
    // `page_token` is accepted and ignored: a listing is one page.
    fields.opt_str("page_token")?;
    Ok((run_id, dir))
}

/// The query of `/get-artifact`: run id and file path.
pub(crate) fn get_run_artifact_request(fields: &Fields) -> ApiResult<(String, String)> {
    Ok((fields.run_id()?, file_path(&fields.req_str("path")?)?))
}

/// `GET /api/2.0/mlflow-artifacts/artifacts?path=<dir>`: the entries directly under `dir` (the
/// root if absent) by base name; a file or a missing directory lists as `{}`.
async fn list(State(state): State<AppState>, fields: Fields) -> ApiResult<Json<Value>> {
    let dir = directory_request(&fields)?;
    let store = state.store.clone();
    let entries = blocking(move || Ok(store.list_artifacts(&dir)?)).await?;
    let files = entries.iter().map(|e| file_info(&e.path, e)).collect();
    let mut obj = Map::new();
    crate::json::put_list(&mut obj, "files", files);
    Ok(Json(Value::Object(obj)))
}

/// `GET /api/2.0/mlflow/artifacts/list?run_id=R&path=p`: the run's artifact root and the entries
/// directly under `p` in it, with paths relative to that root (`dir/b.txt`).
async fn list_run_artifacts(
    State(state): State<AppState>,
    fields: Fields,
) -> ApiResult<Json<Value>> {
    let (run_id, dir) = list_run_artifacts_request(&fields)?;
    let store = state.store.clone();
    let (root_uri, entries) = blocking(move || run_artifacts(&store, &run_id, &dir)).await?;
    let files = entries.iter().map(|(path, e)| file_info(path, e)).collect();
    let mut obj = Map::new();
    obj.insert("root_uri".into(), json!(root_uri));
    crate::json::put_list(&mut obj, "files", files);
    Ok(Json(Value::Object(obj)))
}

/// The listing of `artifacts/list` (REST and GraphQL): run `run_id`'s artifact root URI and the
/// entries directly under `dir` in it, each with its path relative to that root (`dir/b.txt`).
/// A run whose artifacts this server does not serve lists as empty.
pub(crate) fn run_artifacts(
    store: &Store,
    run_id: &str,
    dir: &str,
) -> ApiResult<(String, Vec<(String, ArtifactListEntry)>)> {
    let uri = store.get_run(run_id)?.info.artifact_uri;
    let entries = match served_root(&uri)? {
        Some(root) => store.list_artifacts(&artifact_path::join(&root, dir))?,
        None => Vec::new(),
    };
    let entries = entries
        .into_iter()
        .map(|e| (artifact_path::join(dir, &e.path), e))
        .collect();
    Ok((uri, entries))
}

/// `GET /get-artifact?run_id=R&path=p` (the web UI's previews): the file `p` of run `R`.
async fn get_run_artifact(State(state): State<AppState>, fields: Fields) -> ApiResult<Response> {
    let (run_id, rel) = get_run_artifact_request(&fields)?;
    let store = state.store.clone();
    let path = {
        let store = store.clone();
        blocking(move || {
            let uri = store.get_run(&run_id)?.info.artifact_uri;
            match served_root(&uri)? {
                Some(root) => Ok(artifact_path::join(&root, &rel)),
                None => Err(not_served(&run_id, &uri)),
            }
        })
        .await?
    };
    send_file(store, path).await
}

fn not_served(run_id: &str, uri: &str) -> ApiError {
    ApiError::invalid(format!(
        "The artifacts of run {run_id} are at '{uri}', which this server does not serve"
    ))
}

/// The store directory of an artifact URI this server serves (see
/// [`artifact_path::served_root`]); `None` for other schemes.
pub(crate) fn served_root(uri: &str) -> ApiResult<Option<String>> {
    Ok(artifact_path::served_root(uri)?)
}

/// A `FileInfo`: `path`, `is_dir`, and `file_size` for files only.
pub(crate) fn file_info(path: &str, entry: &ArtifactListEntry) -> Value {
    let mut obj = Map::new();
    obj.insert("path".into(), json!(path));
    obj.insert("is_dir".into(), json!(entry.is_dir));
    if let Some(size) = entry.size {
        obj.insert("file_size".into(), json!(size));
    }
    Value::Object(obj)
}

/// Sends the file at store path `path` as an attachment (streamed if it is over
/// [`WHOLE_DOWNLOAD`]). A directory is a 400, a missing file a 404 `No such artifact`.
pub(crate) async fn send_file(store: std::sync::Arc<Store>, path: String) -> ApiResult<Response> {
    let (entry, file) = blocking(move || match store.open_artifact(&path) {
        Ok((entry, file)) if entry.size <= WHOLE_DOWNLOAD => {
            let mut bytes = Vec::with_capacity(entry.size as usize);
            file.take(entry.size + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| ApiError::internal(format!("reading the artifact failed: {e}")))?;
            if bytes.len() as u64 != entry.size {
                return Err(ApiError::internal(format!(
                    "the artifact's content holds {} bytes, its record says {}",
                    bytes.len(),
                    entry.size
                )));
            }
            Ok((entry, Download::Whole(Bytes::from(bytes))))
        }
        Ok((entry, file)) => Ok((entry, Download::Stream(file))),
        Err(quiver_store::Error::NotFound(_)) => {
            if store.list_artifacts(&path)?.is_empty() {
                Err(ApiError::not_found(format!("No such artifact: '{path}'")))
            } else {
                Err(ApiError::invalid(format!(
                    "Artifact path refers to a directory, not a file: '{path}'"
                )))
            }
        }
        Err(e) => Err(e.into()),
    })
    .await?;
    let name = artifact_path::split_last(&entry.path).1;
    let body = match file {
        Download::Whole(bytes) => Body::from(bytes),
        Download::Stream(file) => Body::from_stream(ReaderStream::with_capacity(
            tokio::fs::File::from_std(file),
            DOWNLOAD_CHUNK,
        )),
    };
    let mut response = body.into_response();
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&content_type(name)).expect("mime types are header-safe"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(entry.size));
    headers.insert(header::CONTENT_DISPOSITION, content_disposition(name));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}

/// Files MLflow serves as `text/plain` whatever their type, by extension (or whole name for
/// files without one) — `mlflow/utils/mime_type_utils.py`.
const TEXT_EXTENSIONS: &[&str] = &[
    "txt",
    "log",
    "err",
    "cfg",
    "conf",
    "cnf",
    "cf",
    "ini",
    "properties",
    "prop",
    "hocon",
    "toml",
    "yaml",
    "yml",
    "xml",
    "json",
    "js",
    "py",
    "py3",
    "csv",
    "tsv",
    "md",
    "rst",
    "ipynb",
    "MLmodel",
    "mlproject",
];

/// The `Content-Type` of a downloaded file named `name`, as MLflow's `_guess_mime_type`: the
/// text extensions above are `text/plain`, others are guessed from the extension, and what
/// cannot be guessed is `application/octet-stream`. No `charset` is added, as MLflow 3.17's
/// server adds none (its tests compare the whole header).
fn content_type(name: &str) -> String {
    // As Python's os.path.splitext: leading dots belong to the name (".bashrc" has none).
    let stem_start = name.len() - name.trim_start_matches('.').len();
    let ext = match name[stem_start..].rfind('.') {
        Some(i) => &name[stem_start + i + 1..],
        None => "",
    };
    let ext = if ext.is_empty() { name } else { ext };
    if TEXT_EXTENSIONS.contains(&ext) {
        "text/plain".to_string()
    } else {
        mime_guess::from_path(name)
            .first()
            .map_or_else(|| "application/octet-stream".into(), |m| m.to_string())
    }
}

/// `attachment; filename="<name>"`, with an RFC 5987 `filename*` when the name is not plain
/// printable ASCII (the plain `filename` then gets a sanitized fallback).
fn content_disposition(name: &str) -> HeaderValue {
    let plain = name
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\');
    // An HTTP token goes unquoted, as Werkzeug (MLflow's server) sends it; MLflow's tests look
    // for `filename=dog+step+20...` without quotes.
    let token = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    let value = if token {
        format!("attachment; filename={name}")
    } else if plain {
        format!("attachment; filename=\"{name}\"")
    } else {
        let fallback: String = name
            .chars()
            .map(|c| {
                if c.is_ascii() && !c.is_ascii_control() && c != '"' && c != '\\' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let mut encoded = String::with_capacity(name.len() * 3);
        for b in name.bytes() {
            if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                encoded.push(b as char);
            } else {
                encoded.push_str(&format!("%{b:02X}"));
            }
        }
        format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
    };
    HeaderValue::from_str(&value).expect("only printable ASCII is left")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_follow_mlflow() {
        assert_eq!(content_type("MLmodel"), "text/plain");
        assert_eq!(content_type("mlproject"), "text/plain");
        assert_eq!(content_type("a.txt"), "text/plain");
        assert_eq!(content_type("conf.json"), "text/plain");
        assert_eq!(content_type("a.tar.yaml"), "text/plain");
        assert_eq!(content_type("nb.ipynb"), "text/plain");
        assert_eq!(content_type("model.pkl"), "application/octet-stream");
        assert_eq!(content_type("noext"), "application/octet-stream");
        assert_eq!(content_type(".bashrc"), "application/octet-stream");
        assert_eq!(content_type("fig.png"), "image/png");
        assert_eq!(content_type("page.html"), "text/html");
    }

    #[test]
    fn content_disposition_is_always_a_valid_header() {
        assert_eq!(
            content_disposition("dog+step+20.webp"),
            "attachment; filename=dog+step+20.webp"
        );
        assert_eq!(
            content_disposition("a b.txt"),
            "attachment; filename=\"a b.txt\""
        );
        let v = content_disposition("日本\"x\".txt");
        let v = v.to_str().unwrap();
        assert!(v.starts_with("attachment; filename=\"___x_.txt\";"), "{v}");
        assert!(
            v.contains("filename*=UTF-8''%E6%97%A5%E6%9C%AC%22x%22.txt"),
            "{v}"
        );
        content_disposition("a\r\nb\u{7f}");
    }

    #[test]
    fn served_roots() {
        assert_eq!(
            served_root("mlflow-artifacts:/1/r/artifacts").unwrap(),
            Some("1/r/artifacts".into())
        );
        assert_eq!(
            served_root("mlflow-artifacts://host:5000/1/r/artifacts").unwrap(),
            Some("1/r/artifacts".into())
        );
        assert_eq!(served_root("file:///tmp/x").unwrap(), None);
        assert!(served_root("mlflow-artifacts:/../x").is_err());
    }

    #[test]
    fn file_paths_need_a_name() {
        assert_eq!(
            file_path("1/r/artifacts/a.txt").unwrap(),
            "1/r/artifacts/a.txt"
        );
        for bad in ["", ".", "a/", "../x", "/etc/passwd", "a\\b"] {
            let e = file_path(bad).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad:?}");
            assert!(e.message.starts_with("Invalid path"), "{e}");
        }
    }
}
