//! A small client of a running MLflow tracking server's REST API (any server that speaks it:
//! `mlflow server`, a managed MLflow, or `quiver server`), as the 3.x Python client uses it.
//!
//! It is the write side of `quiver export mlflow` and the read side of `quiver import mlflow
//! --from http://host:5000`: JSON calls with MLflow's credentials
//! (`MLFLOW_TRACKING_USERNAME`/`MLFLOW_TRACKING_PASSWORD` as HTTP basic, or
//! `MLFLOW_TRACKING_TOKEN` as a bearer token), retries with backoff where a retry is safe,
//! refusals reported with the server's `error_code` and `message` ([`RestError`]), paged reads
//! (experiments, runs, metric history, registry) and artifacts streamed through the server's
//! artifact proxy (`/api/2.0/mlflow-artifacts/artifacts/<path>`).
//!
//! Bodies are `serde_json::Value`s: the wire format is MLflow's protobuf-JSON, which callers
//! build and read with [`crate::admin::json_str`] and friends.

use std::fmt;
use std::io::Read;
use std::time::Duration;

use anyhow::{anyhow, Context};
use base64::Engine as _;
use serde_json::{json, Value};

use crate::admin::percent_encode;

/// Attempts of a call that fails in a way worth retrying (connection refused, 429, 503 ...).
const ATTEMPTS: u32 = 7;
/// The first pause between attempts; it doubles each time (0.25 s ... 8 s, about 16 s in all).
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Points per page of metric history (what the Python client asks for).
pub(crate) const HISTORY_PAGE: u64 = 25_000;

/// A request the server refused: its HTTP status and MLflow's `error_code` and `message`.
#[derive(Debug, Clone)]
pub(crate) struct RestError {
    /// MLflow's error code (`RESOURCE_DOES_NOT_EXIST` ...), or one derived from the status
    /// when the body is not MLflow's error object.
    pub(crate) code: String,
    /// The server's message (or its body).
    pub(crate) message: String,
}

impl fmt::Display for RestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for RestError {}

/// Whether `e` is the server's refusal with error code `code`.
pub(crate) fn is_code(e: &anyhow::Error, code: &str) -> bool {
    e.downcast_ref::<RestError>()
        .is_some_and(|r| r.code == code)
}

/// The error code MLflow's client derives from an HTTP status when the body has none.
fn code_of_status(status: u16) -> &'static str {
    match status {
        400 => "BAD_REQUEST",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "ENDPOINT_NOT_FOUND",
        409 => "ALREADY_EXISTS",
        429 => "RESOURCE_EXHAUSTED",
        501 => "NOT_IMPLEMENTED",
        503 => "TEMPORARILY_UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL_ERROR",
    }
}

/// Whether a call may be sent again after the connection broke mid-request: reads, and writes
/// that change nothing when repeated. Creating an entity is not: the first one may have
/// happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Any failure worth retrying is retried.
    Safe,
    /// Only failures where the server certainly did nothing (no connection, 429, 503).
    NotSent,
}

/// One artifact under a directory, as the server lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ArtifactFile {
    /// Its path relative to the listed directory (the proxy lists base names).
    pub(crate) path: String,
    /// Whether it is a directory.
    pub(crate) is_dir: bool,
    /// Its size in bytes (files only).
    pub(crate) size: Option<u64>,
}

/// One point of a metric history as the server answers it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Point {
    /// The step.
    pub(crate) step: i64,
    /// Milliseconds since the epoch.
    pub(crate) timestamp: i64,
    /// The value (NaN and ±Inf decoded from MLflow's strings).
    pub(crate) value: f64,
}

/// The `Authorization` header MLflow's client sends for the credentials in the environment
/// `env`, by its rule: `MLFLOW_TRACKING_USERNAME` and `MLFLOW_TRACKING_PASSWORD` as HTTP basic
/// when both are set, else `MLFLOW_TRACKING_TOKEN` as a bearer token; none without them.
fn authorization(env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let get = |k: &str| env(k).filter(|v| !v.is_empty());
    if let (Some(user), Some(password)) = (
        get("MLFLOW_TRACKING_USERNAME"),
        get("MLFLOW_TRACKING_PASSWORD"),
    ) {
        return Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        ));
    }
    get("MLFLOW_TRACKING_TOKEN").map(|token| format!("Bearer {token}"))
}

/// `url` normalized: scheme and host in lower case, no trailing `/` (one server, one name: it
/// keys the journals of imports and exports).
pub(crate) fn normalize(url: &str) -> anyhow::Result<String> {
    let url = url.trim().trim_end_matches('/');
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| anyhow!("{url}: not an http:// URL"))?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme == "https" {
        anyhow::bail!(
            "{url}: this quiver is built without TLS; give the tracking server's http:// address"
        );
    }
    if scheme != "http" {
        anyhow::bail!("{url}: not an http:// URL");
    }
    let (host, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if host.is_empty() {
        anyhow::bail!("{url}: no host");
    }
    Ok(format!("{scheme}://{}{path}", host.to_ascii_lowercase()))
}

/// Most bytes of a JSON answer read (a page of 25,000 points is a few MB).
const MAX_JSON: u64 = 512 << 20;

/// A client of one tracking server (cheap to clone: clones share the connection pool).
#[derive(Debug, Clone)]
pub(crate) struct MlflowRest {
    agent: ureq::Agent,
    base: String,
    authorization: Option<String>,
}

impl MlflowRest {
    /// A client of the server at `url` (`http://host:port`, with a path prefix if the server
    /// has one), with the credentials of MLflow's environment variables.
    pub(crate) fn new(url: &str) -> anyhow::Result<MlflowRest> {
        let base = normalize(url)?;
        let authorization = authorization(&|k| std::env::var(k).ok());
        // No deadline on a whole call (an artifact of gigabytes streams for long); a server
        // that stops answering is given up on after minutes.
        Ok(MlflowRest {
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_connect(Some(Duration::from_secs(15)))
                .timeout_recv_response(Some(Duration::from_secs(300)))
                .timeout_per_read(Some(Duration::from_secs(300)))
                .user_agent(format!("quiver/{}", env!("CARGO_PKG_VERSION")))
                .build()
                .into(),
            base,
            authorization,
        })
    }

    /// The server's address, normalized ([`normalize`]).
    pub(crate) fn url(&self) -> &str {
        &self.base
    }

    /// `GET /api/2.0/mlflow/<path>?<query>`; the JSON answer.
    pub(crate) fn get(&self, path: &str, query: &[(&str, &str)]) -> anyhow::Result<Value> {
        let q: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{k}={}", percent_encode(v)))
            .collect();
        let url = format!("{}/api/2.0/mlflow/{path}?{}", self.base, q.join("&"));
        self.json_call("GET", &url, None, Retry::Safe)
    }

    /// `GET <path>` (a path under the server, its query encoded); the JSON answer.
    pub(crate) fn get_path(&self, path: &str) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        self.json_call("GET", &url, None, Retry::Safe)
    }

    /// `POST /api/2.0/mlflow/<path>` with a JSON body; the JSON answer.
    pub(crate) fn post(&self, path: &str, body: &Value, retry: Retry) -> anyhow::Result<Value> {
        let url = format!("{}/api/2.0/mlflow/{path}", self.base);
        self.json_call("POST", &url, Some(body), retry)
    }

    /// `PATCH /api/2.0/mlflow/<path>` with a JSON body; the JSON answer.
    pub(crate) fn patch(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let url = format!("{}/api/2.0/mlflow/{path}", self.base);
        self.json_call("PATCH", &url, Some(body), Retry::Safe)
    }

    /// `DELETE /api/2.0/mlflow/<path>` with a JSON body (as the registry's deletes take);
    /// the JSON answer.
    pub(crate) fn delete(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let url = format!("{}/api/2.0/mlflow/{path}", self.base);
        self.json_call("DELETE", &url, Some(body), Retry::Safe)
    }

    /// One JSON call, retried as `retry` allows.
    fn json_call(
        &self,
        method: &str,
        url: &str,
        body: Option<&Value>,
        retry: Retry,
    ) -> anyhow::Result<Value> {
        let text = body.map(Value::to_string);
        let answer = self.with_retries(url, retry, || {
            let req = ureq::http::Request::builder().method(method).uri(url);
            let req = match &self.authorization {
                Some(a) => req.header("Authorization", a),
                None => req,
            };
            match &text {
                Some(t) => self.agent.run(
                    req.header("Content-Type", "application/json")
                        .body(t.clone())
                        .context("building the request")?,
                ),
                None => self
                    .agent
                    .run(req.body(()).context("building the request")?),
            }
            .map_err(Into::into)
        })?;
        if answer.trim().is_empty() {
            return Ok(json!({}));
        }
        serde_json::from_str(&answer)
            .with_context(|| format!("the answer of {url} is not JSON: {}", answer.trim()))
    }

    /// Sends a request built by `send` until it succeeds, fails for good, or the attempts run
    /// out; the body of the successful answer as text.
    fn with_retries(
        &self,
        url: &str,
        retry: Retry,
        send: impl FnMut() -> anyhow::Result<ureq::http::Response<ureq::Body>>,
    ) -> anyhow::Result<String> {
        let mut resp = self.answer_with_retries(url, retry, send)?;
        resp.body_mut()
            .with_config()
            .limit(MAX_JSON)
            .read_to_string()
            .with_context(|| format!("reading the answer of {url}"))
    }

    /// Sends a request built by `send` until it succeeds, fails for good, or the attempts run
    /// out; the successful answer, its body unread.
    fn answer_with_retries(
        &self,
        url: &str,
        retry: Retry,
        mut send: impl FnMut() -> anyhow::Result<ureq::http::Response<ureq::Body>>,
    ) -> anyhow::Result<ureq::http::Response<ureq::Body>> {
        let mut pause = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            let outcome = send();
            let again = match &outcome {
                Ok(resp) => {
                    matches!(resp.status().as_u16(), 429 | 503)
                        || (retry == Retry::Safe && matches!(resp.status().as_u16(), 502 | 504))
                }
                Err(e) => match e.downcast_ref::<ureq::Error>() {
                    Some(ureq::Error::ConnectionFailed | ureq::Error::HostNotFound) => true,
                    Some(ureq::Error::Io(_) | ureq::Error::Timeout(_)) => retry == Retry::Safe,
                    _ => false,
                },
            };
            if again && attempt < ATTEMPTS {
                std::thread::sleep(pause);
                pause *= 2;
                attempt += 1;
                continue;
            }
            let mut resp = outcome.with_context(|| {
                format!(
                    "cannot reach {url} (after {attempt} attempts; is the tracking server running at that address?)"
                )
            })?;
            let status = resp.status().as_u16();
            if !(200..300).contains(&status) {
                let text = resp
                    .body_mut()
                    .with_config()
                    .limit(64 << 10)
                    .read_to_string()
                    .unwrap_or_default();
                let v = serde_json::from_str::<Value>(&text).ok();
                let field = |k: &str| v.as_ref().and_then(|v| v[k].as_str()).map(str::to_owned);
                return Err(anyhow::Error::new(RestError {
                    code: field("error_code").unwrap_or_else(|| code_of_status(status).into()),
                    message: field("message")
                        .unwrap_or_else(|| format!("{url} answered {status}: {}", text.trim())),
                })
                .context(url.to_string()));
            }
            return Ok(resp);
        }
    }

    /// `GET <path>` (a path under the server, query encoded) as a stream of bytes, retried
    /// until the answer starts.
    pub(crate) fn open(&self, path: &str) -> anyhow::Result<Box<dyn Read + Send>> {
        let url = format!("{}{path}", self.base);
        let resp = self.answer_with_retries(&url, Retry::Safe, || {
            let mut req = self.agent.get(&url);
            if let Some(a) = &self.authorization {
                req = req.header("Authorization", a);
            }
            Ok(req.call()?)
        })?;
        Ok(Box::new(resp.into_body().into_reader()))
    }

    /// What `GET /version` answers (the MLflow version a server implements), if it answers at
    /// once (asked one time: it is only shown).
    pub(crate) fn version(&self) -> Option<String> {
        let mut req = self.agent.get(format!("{}/version", self.base));
        if let Some(a) = &self.authorization {
            req = req.header("Authorization", a);
        }
        let resp = req.call().ok().filter(|r| r.status() == 200)?;
        let mut text = String::new();
        resp.into_body()
            .into_reader()
            .take(100)
            .read_to_string(&mut text)
            .ok()?;
        let v = text.trim();
        (!v.is_empty() && v.len() < 40 && !v.contains('<')).then(|| v.to_string())
    }

    /// The proxy URL of artifact `path` (relative to the artifact root).
    fn artifact_url(&self, path: &str) -> String {
        let encoded: Vec<String> = path.split('/').map(percent_encode).collect();
        format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/{}",
            self.base,
            encoded.join("/")
        )
    }

    /// Uploads the bytes `open` gives as artifact `path` (relative to the server's artifact
    /// root), streamed; on a retry `open` is called again for the bytes from the start.
    pub(crate) fn upload_with(
        &self,
        path: &str,
        open: &dyn Fn() -> anyhow::Result<Box<dyn Read>>,
    ) -> anyhow::Result<()> {
        let url = self.artifact_url(path);
        self.with_retries(&url, Retry::Safe, || {
            let mut content = open()?;
            let mut req = self
                .agent
                .put(&url)
                .content_type("application/octet-stream");
            if let Some(a) = &self.authorization {
                req = req.header("Authorization", a);
            }
            Ok(req.send(ureq::SendBody::from_reader(&mut content))?)
        })?;
        Ok(())
    }

    /// The entries directly under artifact directory `dir` (relative to the artifact root),
    /// through the proxy; a file or a missing directory lists as empty.
    pub(crate) fn list_proxied(&self, dir: &str) -> anyhow::Result<Vec<ArtifactFile>> {
        let url = format!(
            "{}/api/2.0/mlflow-artifacts/artifacts?path={}",
            self.base,
            percent_encode(dir)
        );
        let v = self.json_call("GET", &url, None, Retry::Safe)?;
        Ok(artifact_files(&v))
    }

    /// Every file under artifact directory `dir` (relative to the artifact root), recursively,
    /// as (path relative to `dir`, size).
    pub(crate) fn walk_proxied(&self, dir: &str) -> anyhow::Result<Vec<(String, u64)>> {
        let mut out = Vec::new();
        let mut stack = vec![String::new()];
        while let Some(rel) = stack.pop() {
            let full = if rel.is_empty() {
                dir.to_string()
            } else {
                format!("{dir}/{rel}")
            };
            for f in self.list_proxied(&full)? {
                let name = f.path.rsplit('/').next().unwrap_or(&f.path);
                let child = if rel.is_empty() {
                    name.to_string()
                } else {
                    format!("{rel}/{name}")
                };
                if f.is_dir {
                    stack.push(child);
                } else {
                    out.push((child, f.size.unwrap_or(0)));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// The experiment named `name` (active or deleted), if there is one.
    pub(crate) fn experiment_by_name(&self, name: &str) -> anyhow::Result<Option<Value>> {
        match self.get("experiments/get-by-name", &[("experiment_name", name)]) {
            Ok(v) => Ok(Some(v["experiment"].clone())),
            Err(e) if is_code(&e, "RESOURCE_DOES_NOT_EXIST") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Run `run_id` (`{"info", "data", "inputs", "outputs"}`).
    pub(crate) fn get_run(&self, run_id: &str) -> anyhow::Result<Value> {
        Ok(self.get("runs/get", &[("run_id", run_id)])?["run"].clone())
    }

    /// Calls `each` with every page of the history of metric `key` of run `run_id`
    /// ([`HISTORY_PAGE`] points a page), so a long series never is in memory whole.
    pub(crate) fn metric_history(
        &self,
        run_id: &str,
        key: &str,
        mut each: impl FnMut(&[Point]) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let max = HISTORY_PAGE.to_string();
        let mut token = String::new();
        loop {
            let mut q = vec![
                ("run_id", run_id),
                ("metric_key", key),
                ("max_results", &max),
            ];
            if !token.is_empty() {
                q.push(("page_token", &token));
            }
            let v = self.get("metrics/get-history", &q)?;
            let points: Vec<Point> = v["metrics"]
                .as_array()
                .map(|a| a.iter().map(point).collect::<anyhow::Result<_>>())
                .transpose()?
                .unwrap_or_default();
            each(&points)?;
            match v["next_page_token"].as_str() {
                Some(t) if !t.is_empty() => token = t.to_string(),
                _ => return Ok(()),
            }
        }
    }
}

/// The `files` of an artifact listing.
fn artifact_files(v: &Value) -> Vec<ArtifactFile> {
    v["files"]
        .as_array()
        .map(|files| {
            files
                .iter()
                .map(|f| ArtifactFile {
                    path: f["path"].as_str().unwrap_or_default().to_string(),
                    is_dir: f["is_dir"].as_bool().unwrap_or(false),
                    size: match &f["file_size"] {
                        Value::Number(n) => n.as_u64(),
                        Value::String(s) => s.parse().ok(),
                        _ => None,
                    },
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A metric value as MLflow's JSON carries it: NaN and ±Inf as strings.
pub(crate) fn value_json(v: f64) -> Value {
    if v.is_nan() {
        json!("NaN")
    } else if v == f64::INFINITY {
        json!("Infinity")
    } else if v == f64::NEG_INFINITY {
        json!("-Infinity")
    } else {
        json!(v)
    }
}

/// A metric value from MLflow's JSON (a number, or `"NaN"`, `"Infinity"`, `"-Infinity"`, or a
/// numeric string).
pub(crate) fn value_of_json(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "NaN" | "nan" => Some(f64::NAN),
            "Infinity" | "inf" => Some(f64::INFINITY),
            "-Infinity" | "-inf" => Some(f64::NEG_INFINITY),
            s => s.parse().ok(),
        },
        _ => None,
    }
}

/// A point of a history answer.
fn point(m: &Value) -> anyhow::Result<Point> {
    let int = |k: &str| match &m[k] {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        Value::Null => Some(0),
        _ => None,
    };
    Ok(Point {
        step: int("step").ok_or_else(|| anyhow!("a metric point without a step: {m}"))?,
        timestamp: int("timestamp")
            .ok_or_else(|| anyhow!("a metric point without a timestamp: {m}"))?,
        value: value_of_json(&m["value"])
            .ok_or_else(|| anyhow!("a metric point without a value: {m}"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn special_values_round_trip_through_json() {
        for v in [0.5, -2.0, f64::INFINITY, f64::NEG_INFINITY, f64::MAX] {
            assert_eq!(value_of_json(&value_json(v)), Some(v));
        }
        assert!(value_of_json(&value_json(f64::NAN)).unwrap().is_nan());
        assert_eq!(value_of_json(&json!("1.5")), Some(1.5));
        assert_eq!(value_of_json(&json!(null)), None);
    }

    #[test]
    fn history_points_accept_numbers_and_strings() {
        let p = point(&json!({"key": "m", "value": "NaN", "timestamp": "5", "step": 2})).unwrap();
        assert_eq!((p.step, p.timestamp), (2, 5));
        assert!(p.value.is_nan());
        // MLflow omits a zero step.
        let p = point(&json!({"key": "m", "value": 1, "timestamp": 5})).unwrap();
        assert_eq!(p.step, 0);
    }

    /// A server on a local port that answers the requests it gets with `answers` in turn
    /// (status, body), one connection each; returns its address and the request lines it saw.
    fn fake_server(
        answers: Vec<(u16, &'static str)>,
    ) -> (String, std::thread::JoinHandle<Vec<String>>) {
        use std::io::{BufRead, BufReader};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for (status, body) in answers {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                seen.push(line.trim().to_string());
                let mut length = 0;
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    if h.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                    if h.to_ascii_lowercase().starts_with("authorization:") {
                        seen.push(h.trim().to_string());
                    }
                }
                let mut body_in = vec![0; length];
                reader.read_exact(&mut body_in).unwrap();
                let mut stream = stream;
                write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .unwrap();
            }
            seen
        });
        (url, seen)
    }

    #[test]
    fn throttled_and_unavailable_answers_are_retried() {
        let (url, seen) = fake_server(vec![
            (503, "{}"),
            (
                429,
                r#"{"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "slow down"}"#,
            ),
            (200, r#"{"experiment_id": "7"}"#),
        ]);
        let rest = MlflowRest::new(&url).unwrap();
        let v = rest
            .post("experiments/create", &json!({"name": "x"}), Retry::NotSent)
            .unwrap();
        assert_eq!(v["experiment_id"], "7");
        let seen = seen.join().unwrap();
        assert_eq!(seen.len(), 3);
        assert!(seen
            .iter()
            .all(|l| l == "POST /api/2.0/mlflow/experiments/create HTTP/1.1"));
    }

    #[test]
    fn metric_history_follows_page_tokens() {
        let (url, seen) = fake_server(vec![
            (
                200,
                r#"{"metrics": [{"key": "m", "value": 1, "timestamp": 1, "step": 0},
                    {"key": "m", "value": "NaN", "timestamp": 2, "step": 1}],
                    "next_page_token": "t1"}"#,
            ),
            (
                200,
                r#"{"metrics": [{"key": "m", "value": "-Infinity", "timestamp": 3, "step": 2}]}"#,
            ),
        ]);
        let rest = MlflowRest::new(&url).unwrap();
        let mut got = Vec::new();
        rest.metric_history("r1", "m", |page| {
            got.push(page.len());
            Ok(())
        })
        .unwrap();
        assert_eq!(got, [2, 1]);
        assert_eq!(
            seen.join().unwrap(),
            [
                "GET /api/2.0/mlflow/metrics/get-history?run_id=r1&metric_key=m&max_results=25000 HTTP/1.1",
                "GET /api/2.0/mlflow/metrics/get-history?run_id=r1&metric_key=m&max_results=25000&page_token=t1 HTTP/1.1",
            ]
        );
    }

    #[test]
    fn refusals_are_not_retried_and_carry_the_servers_code() {
        let (url, seen) = fake_server(vec![(
            404,
            r#"{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Run 'x' not found"}"#,
        )]);
        let rest = MlflowRest::new(&url).unwrap();
        let e = rest.get("runs/get", &[("run_id", "x y")]).unwrap_err();
        assert!(is_code(&e, "RESOURCE_DOES_NOT_EXIST"), "{e:#}");
        assert_eq!(
            seen.join().unwrap(),
            ["GET /api/2.0/mlflow/runs/get?run_id=x%20y HTTP/1.1"]
        );
    }

    #[test]
    fn credentials_come_as_mlflows_client_sends_them() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(authorization(&env(&[])), None);
        assert_eq!(
            authorization(&env(&[
                ("MLFLOW_TRACKING_USERNAME", "ann"),
                ("MLFLOW_TRACKING_PASSWORD", "pw")
            ])),
            Some("Basic YW5uOnB3".into())
        );
        assert_eq!(
            authorization(&env(&[
                ("MLFLOW_TRACKING_TOKEN", "t0k"),
                ("MLFLOW_TRACKING_USERNAME", "ann")
            ])),
            Some("Bearer t0k".into())
        );
        assert_eq!(
            authorization(&env(&[
                ("MLFLOW_TRACKING_TOKEN", "t0k"),
                ("MLFLOW_TRACKING_USERNAME", "ann"),
                ("MLFLOW_TRACKING_PASSWORD", "pw")
            ])),
            Some("Basic YW5uOnB3".into()),
            "user and password first, as MLflow's client"
        );
        assert_eq!(
            authorization(&env(&[("MLFLOW_TRACKING_TOKEN", "")])),
            None,
            "empty is unset"
        );
    }

    #[test]
    fn urls_normalize() {
        assert_eq!(normalize("HTTP://Host:5000/").unwrap(), "http://host:5000");
        assert_eq!(normalize(" http://h/prefix/ ").unwrap(), "http://h/prefix");
        assert!(normalize("https://h")
            .unwrap_err()
            .to_string()
            .contains("without TLS"));
        assert!(normalize("ftp://h").is_err() && normalize("h:5000").is_err());
        assert!(normalize("http:///x").is_err());
    }

    #[test]
    fn refusals_keep_the_servers_code() {
        let e = anyhow::Error::new(RestError {
            code: "RESOURCE_DOES_NOT_EXIST".into(),
            message: "Run 'x' not found".into(),
        });
        assert!(is_code(&e, "RESOURCE_DOES_NOT_EXIST"));
        assert!(!is_code(&e, "INVALID_PARAMETER_VALUE"));
        assert_eq!(
            format!("{e:#}"),
            "RESOURCE_DOES_NOT_EXIST: Run 'x' not found"
        );
        assert_eq!(code_of_status(503), "TEMPORARILY_UNAVAILABLE");
    }
}
