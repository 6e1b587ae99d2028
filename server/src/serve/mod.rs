//! The server's accept loop: HTTP/1.1 connections served by hyper with the limits a server on a
//! shared machine needs, instead of `axum::serve` (which has no connection cap, no idle timeout
//! and leaves Nagle's algorithm on).
//!
//! - **Connection cap**: at most [`ServeOptions::max_connections`] connections are served at
//!   once. A connection beyond the cap is answered `503 TEMPORARILY_UNAVAILABLE` (JSON, with
//!   `retry-after`) as soon as its request head arrives, within a short header timeout, and
//!   closed; beyond [`OVERFLOW_CONNECTIONS`] more, connections are closed at once.
//! - **Header-read timeout**: a request head must arrive within
//!   [`ServeOptions::header_read_timeout`], counted from when the connection is ready for it
//!   (its acceptance, or the end of the previous response on a kept-alive connection), so a
//!   client sending half a request line is disconnected.
//! - **Idle timeout**: a connection on which no byte moved for [`ServeOptions::idle_timeout`] is
//!   closed; a request in progress is finished first (its response says `connection: close`).
//! - **`TCP_NODELAY`** on every accepted socket: a small response written as head then body
//!   would otherwise wait for the client's delayed ACK (40 ms per request on a kept-alive
//!   connection).
//! - **JSON errors only**: oversized heads are refused by [`limits`] middleware; hyper's own
//!   error responses are rewritten on the wire by [`io`].
//! - **Graceful shutdown**: when `shutdown` completes the listener closes, idle connections
//!   close, requests in progress finish (for at most [`ServeOptions::shutdown_timeout`]).

mod io;
mod limits;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tower_service::Service;

use crate::ApiError;
use io::{ConnIo, ConnShared};
use limits::HeadLimits;

/// How many connections beyond the cap are answered 503 at once; more are closed unanswered.
pub const OVERFLOW_CONNECTIONS: usize = 64;

/// hyper's default read-buffer limit (`max_buf_size`), which bounds a request head.
const HYPER_DEFAULT_MAX_BUF: usize = 8192 + 4096 * 100;

/// Errors of the serving setup.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The open-file limit could not be read or raised.
    #[error("cannot raise the open-file limit: {0}")]
    OpenFileLimit(#[source] std::io::Error),
}

/// How connections are served. `Default` gives the values of `quiver server`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeOptions {
    /// Connections served at once; more are answered 503.
    pub max_connections: usize,
    /// Time allowed for a request head, from when the connection is ready for it.
    pub header_read_timeout: Duration,
    /// A connection with no byte read or written for this long is closed (after finishing a
    /// request in progress).
    pub idle_timeout: Duration,
    /// Longest request target (path and query), in bytes; longer is `414`.
    pub max_request_target: usize,
    /// Most bytes of header fields in a request; more is `431`.
    pub max_header_bytes: usize,
    /// Most header fields in a request; more is `431`.
    pub max_headers: usize,
    /// How long shutdown waits for requests in progress.
    pub shutdown_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_request_target: 16 * 1024,
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

/// Raises the soft limit on open files (`RLIMIT_NOFILE`) to the hard limit, so that the
/// connection cap rather than the kernel decides when connections are refused. Returns the
/// soft limit now in force.
pub fn raise_open_file_limit() -> Result<u64, ServeError> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given, which lives for the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(ServeError::OpenFileLimit(std::io::Error::last_os_error()));
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads the struct it is given, which lives for the call.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(ServeError::OpenFileLimit(std::io::Error::last_os_error()));
        }
        limit = raised;
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every platform
    Ok(limit.rlim_cur as u64)
}

/// Serves `router` on `listener` until `shutdown` completes, then shuts down gracefully (see
/// the module documentation). Returns when every connection is closed or the shutdown timeout
/// has passed.
pub async fn serve<F>(listener: TcpListener, router: Router, options: ServeOptions, shutdown: F)
where
    F: Future<Output = ()> + Send,
{
    let limits = HeadLimits {
        max_request_target: options.max_request_target,
        max_header_bytes: options.max_header_bytes,
        max_headers: options.max_headers,
    };
    let app = router.layer(axum::middleware::from_fn(move |req: Request, next| {
        limits.check(req, next)
    }));
    let busy = Router::new()
        .fallback(too_busy)
        .layer(axum::middleware::from_fn(move |req: Request, next| {
            limits.check(req, next)
        }));
    let overflow_options = ServeOptions {
        header_read_timeout: options.header_read_timeout.min(Duration::from_secs(5)),
        idle_timeout: options.idle_timeout.min(Duration::from_secs(5)),
        ..options.clone()
    };
    let max_connections = options.max_connections.max(1);
    let permits = Arc::new(Semaphore::new(max_connections));
    let overflow = Arc::new(Semaphore::new(OVERFLOW_CONNECTIONS));
    let (closing_tx, closing) = watch::channel(false);

    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of file descriptors or memory: back off instead of spinning.
                    tracing::error!(error = %e, "accept error");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        if let Ok(permit) = permits.clone().try_acquire_owned() {
            let conn = connection(
                stream,
                app.clone(),
                options.clone(),
                closing.clone(),
                permit,
            );
            tokio::spawn(conn);
        } else if let Ok(permit) = overflow.clone().try_acquire_owned() {
            tracing::warn!(max_connections, "connection limit reached; answering 503");
            let conn = connection(
                stream,
                busy.clone(),
                overflow_options.clone(),
                closing.clone(),
                permit,
            );
            tokio::spawn(conn);
        } else {
            drop(stream);
        }
    }
    drop(listener);
    let _ = closing_tx.send(true);
    let all_closed = async {
        let _a = permits.acquire_many(max_connections as u32).await;
        let _b = overflow.acquire_many(OVERFLOW_CONNECTIONS as u32).await;
    };
    if tokio::time::timeout(options.shutdown_timeout, all_closed)
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown timeout; closing them");
    }
}

/// `req` with the leading run of `/` in its path made one (`//model-versions/get-artifact` is
/// `/model-versions/get-artifact`), as MLflow's server matches it (MLflow's tests send it).
/// Slashes further in are left alone: inside an artifact path, `//etc/x` stays an absolute
/// path and is refused, not quietly re-rooted.
fn merge_leading_slashes(mut req: Request<Body>) -> Request<Body> {
    let path = req.uri().path();
    if !path.starts_with("//") {
        return req;
    }
    let mut merged = format!("/{}", path.trim_start_matches('/'));
    if let Some(q) = req.uri().query() {
        merged.push('?');
        merged.push_str(q);
    }
    let mut parts = req.uri().clone().into_parts();
    if let Ok(pq) = merged.parse() {
        parts.path_and_query = Some(pq);
        if let Ok(uri) = axum::http::Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    req
}

/// Serves one connection until it closes; `closing` turns to `true` at server shutdown.
async fn connection(
    stream: TcpStream,
    app: Router,
    options: ServeOptions,
    mut closing: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let shared = ConnShared::new();
    let io = TokioIo::new(ConnIo::new(stream, shared.clone()));
    let service_shared = shared.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        service_shared.begin();
        let guard = EndGuard(Some(service_shared.clone()));
        let response = app.clone().call(merge_leading_slashes(req.map(Body::new)));
        async move {
            let response = response.await?;
            Ok::<_, std::convert::Infallible>(response.map(|body| {
                Body::new(Tracked {
                    body,
                    _guard: guard,
                })
            }))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .max_headers(options.max_headers.saturating_mul(2).max(100))
        .max_buf_size((options.max_header_bytes.saturating_mul(4)).max(HYPER_DEFAULT_MAX_BUF));
    let conn = builder.serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    let mut closing_down = *closing.borrow();
    if closing_down {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        let idle_deadline = shared.last_io() + options.idle_timeout;
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                if let Some(socket) = shared.take_linger() {
                    io::linger(socket).await;
                }
                return;
            }
            changed = closing.changed(), if !closing_down => {
                if changed.is_err() || *closing.borrow() {
                    closing_down = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
            () = tokio::time::sleep_until(idle_deadline.into()), if !closing_down => {
                if shared.last_io() + options.idle_timeout <= std::time::Instant::now() {
                    closing_down = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Marks the end of a request on its connection when its response body is dropped.
#[derive(Debug)]
struct EndGuard(Option<Arc<ConnShared>>);

impl Drop for EndGuard {
    fn drop(&mut self) {
        if let Some(shared) = self.0.take() {
            shared.end();
        }
    }
}

/// A response body that carries its request's [`EndGuard`].
#[derive(Debug)]
struct Tracked {
    body: Body,
    _guard: EndGuard,
}

impl http_body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The answer on a connection beyond the cap.
async fn too_busy(body: Body) -> Response {
    crate::drain(body).await;
    let mut response = ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: "TEMPORARILY_UNAVAILABLE",
        message: "The server has too many open connections; retry shortly".to_string(),
    }
    .into_response();
    response.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from_static("1"),
    );
    response.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    response
}

/// A whole HTTP/1.1 response with MLflow's JSON error body, closing the connection.
fn raw_json_response(status: StatusCode, code: &str, message: &str) -> Vec<u8> {
    let body = serde_json::json!({"error_code": code, "message": message}).to_string();
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        status.as_str(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes()
}

/// Errors of one incoming connection, not of the listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

#[cfg(test)]
mod tests;
