//! The socket of one connection as hyper sees it: records when bytes last moved (for the idle
//! timeout) and turns hyper's own empty error responses into MLflow JSON ones.
//!
//! # Why rewrite hyper's bytes
//!
//! When hyper 1.x cannot parse a request head (`proto/h1/conn.rs`, `on_parse_error`), it writes
//! a canned response itself, without calling the service: `400` for a malformed request line
//! or header, `414` for a request target over its fixed 65,534-byte limit, `431` for a head
//! over `max_buf_size` or with more than `max_headers` fields; each with `content-length: 0`,
//! then it closes the connection. hyper offers no hook for that response (hyperium/hyper#3844
//! asks for one), and no middleware sees the request. Quiver's own limits
//! (`super::limits`) sit well below hyper's, so ordinary oversized requests are refused by
//! middleware with a JSON body; for what still reaches hyper's limits (or is malformed), this
//! wrapper replaces the canned response on its way to the socket.
//!
//! Telling hyper's response apart from the service's is exact, not a guess on the bytes: hyper
//! writes its canned response only when no request is in progress, and the service marks a
//! request in progress ([`ConnShared::begin`]) from the moment hyper hands it over until its
//! response body is dropped *and* the socket has been flushed after that. Bytes written while
//! nothing is in progress can only be hyper's own response, which is replaced by the same
//! status with `{"error_code", "message"}` and `connection: close`. (If a canned response were
//! ever written in the same flush as the tail of the previous response, which needs a client
//! pipelining a malformed request behind a good one, it would pass through unchanged: never
//! the other way round.)

use std::io;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// State shared by a connection's socket wrapper, its service and its task.
#[derive(Debug)]
pub(super) struct ConnShared {
    /// Requests handed to the service whose response body is not yet dropped.
    busy: AtomicUsize,
    /// A response body was dropped and the socket has not been flushed since.
    flush_pending: AtomicBool,
    /// Milliseconds after `start` when a byte was last read or written.
    last_io_ms: AtomicU64,
    start: Instant,
    /// A second handle on the socket, taken when a canned response is replaced, so that the
    /// connection can be closed lingering ([`linger`]) instead of reset with unread input.
    linger: Mutex<Option<std::net::TcpStream>>,
}

impl ConnShared {
    pub(super) fn new() -> Arc<ConnShared> {
        Arc::new(ConnShared {
            busy: AtomicUsize::new(0),
            flush_pending: AtomicBool::new(false),
            last_io_ms: AtomicU64::new(0),
            start: Instant::now(),
            linger: Mutex::new(None),
        })
    }

    /// A request was handed to the service.
    pub(super) fn begin(&self) {
        self.busy.fetch_add(1, Ordering::SeqCst);
    }

    /// The response body of a request was dropped (hyper has encoded all of it).
    pub(super) fn end(&self) {
        self.flush_pending.store(true, Ordering::SeqCst);
        self.busy.fetch_sub(1, Ordering::SeqCst);
    }

    /// The socket to close lingering, if a canned response was replaced.
    pub(super) fn take_linger(&self) -> Option<std::net::TcpStream> {
        self.linger.lock().ok()?.take()
    }

    /// When bytes last moved on the socket (the connection's start if never).
    pub(super) fn last_io(&self) -> Instant {
        self.start + Duration::from_millis(self.last_io_ms.load(Ordering::Relaxed))
    }

    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_io_ms.store(ms, Ordering::Relaxed);
    }

    /// No request in progress and nothing of a response left unflushed.
    fn quiet(&self) -> bool {
        self.busy.load(Ordering::SeqCst) == 0 && !self.flush_pending.load(Ordering::SeqCst)
    }
}

/// A TCP stream that records activity and rewrites hyper's canned error responses.
#[derive(Debug)]
pub(super) struct ConnIo {
    inner: TcpStream,
    shared: Arc<ConnShared>,
    /// Bytes hyper wrote while no request was in progress (its canned response).
    canned: Option<Vec<u8>>,
    /// The replacement being written, and how much of it is out.
    replacement: Option<(Vec<u8>, usize)>,
}

impl ConnIo {
    pub(super) fn new(inner: TcpStream, shared: Arc<ConnShared>) -> ConnIo {
        ConnIo {
            inner,
            shared,
            canned: None,
            replacement: None,
        }
    }

    /// Whether writes now go to `canned` instead of the socket.
    fn capturing(&mut self) -> bool {
        if self.canned.is_none() && self.replacement.is_none() && self.shared.quiet() {
            self.canned = Some(Vec::new());
        }
        self.canned.is_some() || self.replacement.is_some()
    }

    /// Writes out the replacement of a captured canned response, once hyper flushes it.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(canned) = self.canned.take() {
            if !canned.is_empty() {
                self.replacement = Some((json_replacement(&canned).unwrap_or(canned), 0));
                if let Ok(fd) = self.inner.as_fd().try_clone_to_owned() {
                    if let Ok(mut slot) = self.shared.linger.lock() {
                        *slot = Some(std::net::TcpStream::from(fd));
                    }
                }
            }
        }
        while let Some((bytes, written)) = &mut self.replacement {
            if *written == bytes.len() {
                break;
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
            self.shared.touch();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for ConnIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            this.shared.touch();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.capturing() {
            if let Some(canned) = &mut this.canned {
                canned.extend_from_slice(buf);
            }
            return Poll::Ready(Ok(buf.len()));
        }
        let n = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        if n > 0 {
            this.shared.touch();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.capturing() {
            let mut n = 0;
            if let Some(canned) = &mut this.canned {
                for b in bufs {
                    canned.extend_from_slice(b);
                    n += b.len();
                }
            } else {
                n = bufs.iter().map(|b| b.len()).sum();
            }
            return Poll::Ready(Ok(n));
        }
        let n = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, bufs))?;
        if n > 0 {
            this.shared.touch();
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_replacement(cx))?;
        ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
        if this.shared.busy.load(Ordering::SeqCst) == 0 {
            this.shared.flush_pending.store(false, Ordering::SeqCst);
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_replacement(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// Closes a connection whose error response was written while request bytes may still be
/// unread: the write side is shut (the response is followed by FIN), then input is read and
/// dropped for at most a second or 4 MiB, so that closing with unread data does not send a
/// reset that could destroy the response before the client reads it.
pub(super) async fn linger(socket: std::net::TcpStream) {
    let _ = socket.shutdown(std::net::Shutdown::Write);
    let _ = socket.set_nonblocking(true);
    let Ok(mut socket) = TcpStream::from_std(socket) else {
        return;
    };
    let drain = async {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 16 * 1024];
        let mut total = 0usize;
        while total < 4 << 20 {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}

/// The JSON response that replaces hyper's canned `HTTP/1.1 <status> ...` head, or `None` when
/// `canned` is not a response head (then it is written as it is).
fn json_replacement(canned: &[u8]) -> Option<Vec<u8>> {
    let line = canned.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split_whitespace();
    if !words.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status = StatusCode::from_bytes(words.next()?.as_bytes()).ok()?;
    let (code, message) = match status {
        StatusCode::URI_TOO_LONG => (
            "INVALID_PARAMETER_VALUE",
            "Request line too long".to_string(),
        ),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => (
            "INVALID_PARAMETER_VALUE",
            "Request header fields too large".to_string(),
        ),
        StatusCode::BAD_REQUEST => ("BAD_REQUEST", "Malformed HTTP request".to_string()),
        other => (
            "INTERNAL_ERROR",
            other.canonical_reason().unwrap_or("HTTP error").to_string(),
        ),
    };
    Some(super::raw_json_response(status, code, &message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canned_heads_become_json() {
        let out = json_replacement(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n",
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(text.contains("content-type: application/json\r\n"));
        assert!(text.ends_with(
            r#"{"error_code":"INVALID_PARAMETER_VALUE","message":"Request header fields too large"}"#
        ));
        assert!(json_replacement(b"not a response").is_none());
    }
}
