//! Protection against DNS rebinding and cross-site requests, as MLflow 3.17's security middleware
//! does it (`mlflow/server/security_utils.py`, `fastapi_security.py`):
//!
//! - **Host allowlist**: a request whose `Host` header is not allowed answers
//!   `403 PERMISSION_DENIED` "Invalid Host header - possible DNS rebinding attack detected"
//!   (`/health` and `/version` are exempt, as in MLflow). A web page that rebinds its own name
//!   to 127.0.0.1 still sends its own name as `Host`, so it cannot reach the API.
//! - **Cross-origin writes**: a `POST`, `PUT`, `DELETE` or `PATCH` under `/api/` or `/ajax-api/`
//!   whose `Origin` is neither a localhost origin (`localhost`, `127.0.0.1`, `[::1]`, any scheme
//!   and port) nor an allowed origin answers `403 PERMISSION_DENIED` "Cross-origin request
//!   blocked". Requests without `Origin` (every non-browser client) and reads are not affected.
//! - **CORS preflight**: `OPTIONS` with `Access-Control-Request-Method` from an allowed origin
//!   (or a localhost `http://` origin) is answered `204` with the CORS headers (methods `GET`,
//!   `POST`, `PUT`, `DELETE`, `OPTIONS`, `PATCH`, credentials allowed, requested headers
//!   mirrored); from any other origin it is answered without them, so the browser refuses.
//!
//! Patterns in both lists may hold `*` wildcards (`*.example.com`, `192.168.*`); a list holding
//! `*` alone turns its check off. Unlike MLflow, the default Host allowlist holds no private
//! address ranges: only loopback names and the address the server listens on.

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{HOST, ORIGIN};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer};

use crate::ApiError;

/// MLflow's message for a request refused by the Host allowlist.
pub const INVALID_HOST_MESSAGE: &str =
    "Invalid Host header - possible DNS rebinding attack detected";
/// MLflow's message for a refused cross-origin state-changing request.
pub const CORS_BLOCKED_MESSAGE: &str = "Cross-origin request blocked";

/// Paths answered whatever the `Host` (load balancers and probes use arbitrary names).
const HOST_EXEMPT_PATHS: [&str; 2] = ["/health", "/version"];
/// Host names every server accepts.
const LOCALHOST_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// Which hosts and origins the server answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityOptions {
    /// Allowed `Host` header values: a name or address (`localhost`, `[::1]`), optionally with a
    /// port (`mlflow.internal:8080`), with `*` wildcards; an entry without a port allows any
    /// port. `*` alone allows every host.
    pub allowed_hosts: Vec<String>,
    /// Origins allowed to make state-changing requests and CORS requests
    /// (`https://app.example.com`, `https://*.example.com`); `*` alone allows every origin.
    /// Localhost origins are always allowed.
    pub cors_allowed_origins: Vec<String>,
}

impl SecurityOptions {
    /// The defaults for a server listening on `bind_host`: `localhost`, `127.0.0.1`, `[::1]`
    /// and `bind_host` (an IPv6 address is bracketed), each with any port; no extra origins.
    pub fn for_bind_host(bind_host: &str) -> SecurityOptions {
        let mut allowed_hosts: Vec<String> =
            LOCALHOST_NAMES.iter().map(|h| h.to_string()).collect();
        let bind = if bind_host.contains(':') && !bind_host.starts_with('[') {
            format!("[{bind_host}]")
        } else {
            bind_host.to_string()
        };
        if !allowed_hosts.iter().any(|h| h.eq_ignore_ascii_case(&bind)) {
            allowed_hosts.push(bind);
        }
        SecurityOptions {
            allowed_hosts,
            cors_allowed_origins: Vec::new(),
        }
    }

    /// Whether a `Host` header value is allowed.
    pub fn host_allowed(&self, host: &str) -> bool {
        if self.allowed_hosts.iter().any(|p| p == "*") {
            return true;
        }
        let host = host.trim().to_ascii_lowercase();
        if host.is_empty() {
            return false;
        }
        let name = split_port(&host).0;
        self.allowed_hosts.iter().any(|pattern| {
            let pattern = pattern.trim().to_ascii_lowercase();
            glob(&pattern, &host) || (split_port(&pattern).1.is_none() && glob(&pattern, name))
        })
    }

    /// Whether `origin` may make state-changing and CORS requests: a localhost origin, or one
    /// matching `cors_allowed_origins`.
    pub fn origin_allowed(&self, origin: &str) -> bool {
        is_localhost_origin(origin) || self.origin_listed(origin)
    }

    fn origin_listed(&self, origin: &str) -> bool {
        self.cors_allowed_origins
            .iter()
            .any(|p| p == "*" || glob(p.trim(), origin))
    }

    fn allows_every_origin(&self) -> bool {
        self.cors_allowed_origins.iter().any(|p| p == "*")
    }

    /// Wraps `router` in the checks: Host allowlist outermost, then CORS (preflight answers),
    /// then the refusal of cross-origin state-changing requests.
    pub fn protect(self, router: Router) -> Router {
        let cors = self.cors_layer();
        let options = std::sync::Arc::new(self);
        let for_origin = options.clone();
        let router = if options.allows_every_origin() {
            router
        } else {
            router.layer(axum::middleware::from_fn(
                move |req: Request, next: Next| {
                    let options = for_origin.clone();
                    async move { options.check_origin(req, next).await }
                },
            ))
        };
        router
            .layer(cors)
            .layer(axum::middleware::from_fn(preflight_no_content))
            .layer(axum::middleware::from_fn(
                move |req: Request, next: Next| {
                    let options = options.clone();
                    async move { options.check_host(req, next).await }
                },
            ))
    }

    fn cors_layer(&self) -> CorsLayer {
        let allow_origin = if self.allows_every_origin() {
            AllowOrigin::mirror_request()
        } else {
            let options = self.clone();
            AllowOrigin::predicate(move |origin: &HeaderValue, _| {
                origin
                    .to_str()
                    .is_ok_and(|o| options.origin_listed(o) || is_localhost_http_origin(o))
            })
        };
        CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods(AllowMethods::list([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::DELETE,
                Method::OPTIONS,
                Method::PATCH,
            ]))
            .allow_headers(AllowHeaders::mirror_request())
            .allow_credentials(true)
    }

    async fn check_host(&self, req: Request, next: Next) -> Response {
        if HOST_EXEMPT_PATHS.contains(&req.uri().path()) {
            return next.run(req).await;
        }
        let host = req
            .headers()
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
            .or_else(|| req.uri().authority().map(|a| a.to_string()))
            .unwrap_or_default();
        if self.host_allowed(&host) {
            return next.run(req).await;
        }
        tracing::warn!(host = %host.escape_debug(), "refused a request with a Host that is not allowed");
        refuse(req, INVALID_HOST_MESSAGE).await
    }

    async fn check_origin(&self, req: Request, next: Next) -> Response {
        let state_changing = matches!(
            *req.method(),
            Method::POST | Method::PUT | Method::DELETE | Method::PATCH
        );
        let path = req.uri().path();
        let api = path.starts_with("/api/") || path.starts_with("/ajax-api/");
        let origin = req
            .headers()
            .get(ORIGIN)
            .map(|o| String::from_utf8_lossy(o.as_bytes()).into_owned())
            .unwrap_or_default();
        if !state_changing || !api || origin.is_empty() || self.origin_allowed(&origin) {
            return next.run(req).await;
        }
        tracing::warn!(origin = %origin.escape_debug(), "blocked a cross-origin request");
        refuse(req, CORS_BLOCKED_MESSAGE).await
    }
}

/// `403 PERMISSION_DENIED` with `message`, after reading the body (so the connection stays
/// usable).
async fn refuse(req: Request, message: &str) -> Response {
    crate::drain(req.into_body()).await;
    ApiError {
        status: StatusCode::FORBIDDEN,
        code: "PERMISSION_DENIED",
        message: message.to_string(),
    }
    .into_response()
}

/// A preflight answered by the CORS layer (200, empty) becomes `204 No Content`, as MLflow
/// answers it for API paths.
async fn preflight_no_content(req: Request, next: Next) -> Response {
    let options = req.method() == Method::OPTIONS;
    let mut response = next.run(req).await;
    if options && response.status() == StatusCode::OK {
        *response.status_mut() = StatusCode::NO_CONTENT;
        *response.body_mut() = Body::empty();
    }
    response
}

/// `host[:port]` → (`host`, port); an IPv6 address keeps its brackets.
fn split_port(host: &str) -> (&str, Option<&str>) {
    if let Some(end) = host.strip_prefix('[').and_then(|_| host.find(']')) {
        let (name, rest) = host.split_at(end + 1);
        return (name, rest.strip_prefix(':'));
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => (name, Some(port)),
        _ => (host, None),
    }
}

/// The host name of an origin (`scheme://host[:port]`), brackets kept for IPv6.
fn origin_host(origin: &str) -> Option<String> {
    let (_, rest) = origin.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    Some(split_port(authority).0.to_ascii_lowercase())
}

/// MLflow's `is_localhost_origin`: any scheme and port on `localhost`, `127.0.0.1` or `[::1]`.
fn is_localhost_origin(origin: &str) -> bool {
    origin_host(origin).is_some_and(|h| LOCALHOST_NAMES.contains(&h.as_str()))
}

/// MLflow's CORS origin patterns for localhost: `http://` only.
fn is_localhost_http_origin(origin: &str) -> bool {
    origin.starts_with("http://") && is_localhost_origin(origin) && !origin[7..].contains('/')
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters (fnmatch's `*`).
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_hosts_are_loopback_and_the_bind_address_with_any_port() {
        let o = SecurityOptions::for_bind_host("10.1.2.3");
        for ok in [
            "localhost",
            "LOCALHOST:5000",
            "127.0.0.1:5000",
            "[::1]",
            "[::1]:5000",
            "10.1.2.3:5000",
        ] {
            assert!(o.host_allowed(ok), "{ok}");
        }
        for bad in [
            "",
            "attacker.example",
            "attacker.example:5000",
            "localhost.evil",
            "10.1.2.4",
        ] {
            assert!(!o.host_allowed(bad), "{bad}");
        }
        let v6 = SecurityOptions::for_bind_host("::");
        assert!(v6.host_allowed("[::]:5000"));
    }

    #[test]
    fn host_patterns_take_ports_and_wildcards() {
        let o = SecurityOptions {
            allowed_hosts: vec!["mlflow.internal:8080".into(), "*.example.com".into()],
            cors_allowed_origins: vec![],
        };
        assert!(o.host_allowed("mlflow.internal:8080"));
        assert!(!o.host_allowed("mlflow.internal:9090"));
        assert!(o.host_allowed("a.example.com:5000"));
        assert!(!o.host_allowed("example.com"));
        let all = SecurityOptions {
            allowed_hosts: vec!["*".into()],
            cors_allowed_origins: vec![],
        };
        assert!(all.host_allowed("anything"));
    }

    #[test]
    fn origins() {
        let o = SecurityOptions {
            allowed_hosts: vec![],
            cors_allowed_origins: vec![
                "https://app.example".into(),
                "https://*.corp.example".into(),
            ],
        };
        for ok in [
            "http://localhost:3000",
            "https://127.0.0.1",
            "http://[::1]:8080",
            "https://app.example",
            "https://ui.corp.example",
        ] {
            assert!(o.origin_allowed(ok), "{ok}");
        }
        for bad in [
            "http://attacker.example",
            "null",
            "https://app.example.evil",
            "http://localhost.evil",
        ] {
            assert!(!o.origin_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn glob_matches_like_fnmatch_star() {
        assert!(glob("*", ""));
        assert!(glob("a*c", "abbbc"));
        assert!(glob("192.168.*", "192.168.1.5:5000"));
        assert!(!glob("a*c", "abd"));
        assert!(glob("**x", "yx"));
    }
}
