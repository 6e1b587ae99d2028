//! What the admin commands (`quiver deployments`, `quiver models`) share: where to act (a store
//! directory opened directly, or a running server over HTTP), who acts, how failures are reported
//! and how results are printed.
//!
//! Both ways report a refused request the same way, `<ERROR_CODE>: <message>` (the store's
//! error code, or the server's `{"error_code", "message"}` body), so a script sees the same
//! failure whichever way it talks to the store.

use base64::Engine as _;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use quiver_store::{sql_output, ErrorCode, Store};
use serde_json::Value;

/// Where an admin command acts and who it records as the user making the change.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Connection {
    /// The store directory, opened directly (when no --url is given). A store a server has open
    /// is locked: use --url then.
    #[arg(long, env = "QUIVER_STORE", default_value = "./quiver-data")]
    pub(crate) store: PathBuf,
    /// Talk to a running server instead (e.g. http://127.0.0.1:5000).
    #[arg(long)]
    pub(crate) url: Option<String>,
    /// The user recorded for changes (default: $USER; sent to a server as HTTP basic auth).
    #[arg(long, env = "USER", default_value = "")]
    pub(crate) user: String,
}

/// How an admin command prints a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// A text table.
    Table,
    /// A JSON array of objects (the REST API's shapes).
    Json,
}

/// An open connection: the store itself, or a server.
#[derive(Debug)]
pub(crate) enum Backend {
    /// The store directory, opened (and locked) by this process.
    Local(Store),
    /// A running `quiver server`.
    Remote(Remote),
}

impl Backend {
    /// Opens the store at `conn.store`, or prepares to talk to the server at `conn.url`.
    ///
    /// A store that does not exist is not created; a store a server holds is refused with a
    /// message that says to pass --url.
    pub(crate) fn open(conn: &Connection) -> anyhow::Result<Backend> {
        if let Some(url) = &conn.url {
            return Ok(Backend::Remote(Remote::new(url, &conn.user)));
        }
        let dir = &conn.store;
        if !dir.join("FORMAT").exists() {
            bail!(
                "no Quiver store at {} (give --store DIR, or --url of a running server)",
                dir.display()
            );
        }
        match Store::open(dir) {
            Ok(store) => Ok(Backend::Local(store)),
            Err(e @ quiver_store::Error::Locked { .. }) => Err(anyhow!(
                "{e}\nA server has this store open: pass --url http://HOST:PORT of that server"
            )),
            Err(e) => Err(anyhow::Error::new(e))
                .with_context(|| format!("cannot open the store at {}", dir.display())),
        }
    }
}

/// Closes a store opened by [`Backend::open`] (flushing it and releasing its lock).
pub(crate) fn close(store: Store) -> anyhow::Result<()> {
    store.close().context("closing the store")
}

/// Reports a store error as the server would: user errors as `<ERROR_CODE>: <message>`, internal
/// ones (I/O, corruption ...) as they are.
pub(crate) fn store_error(e: quiver_store::Error) -> anyhow::Error {
    match e.code() {
        ErrorCode::InternalError => anyhow::Error::new(e),
        code => anyhow!("{}: {e}", code.as_str()),
    }
}

/// A client of a running server's JSON API.
#[derive(Debug)]
pub(crate) struct Remote {
    agent: ureq::Agent,
    base: String,
    authorization: Option<String>,
}

impl Remote {
    /// A client of the server at `url` that acts as `user` (anonymous when empty).
    pub(crate) fn new(url: &str, user: &str) -> Remote {
        Remote {
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into(),
            // `127.0.0.1:5000` means the server there, as MLFLOW_TRACKING_URI users write it.
            base: if url.contains("://") {
                url.trim_end_matches('/').to_string()
            } else {
                format!("http://{}", url.trim_end_matches('/'))
            },
            authorization: (!user.is_empty()).then(|| {
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:"))
                )
            }),
        }
    }

    /// The server's base URL (`http://host:port`, no trailing slash).
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// `GET path` (path and query already encoded); the JSON answer.
    pub(crate) fn get(&self, path: &str) -> anyhow::Result<Value> {
        let url = self.url(path);
        let mut req = self.agent.get(&url);
        if let Some(auth) = &self.authorization {
            req = req.header("Authorization", auth);
        }
        Self::answer(&url, req.call())
    }

    /// `POST path` with a JSON body; the JSON answer.
    pub(crate) fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let url = self.url(path);
        let mut req = self.agent.post(&url).content_type("application/json");
        if let Some(auth) = &self.authorization {
            req = req.header("Authorization", auth);
        }
        Self::answer(&url, req.send(body.to_string()))
    }

    /// `PUT path` with a body streamed from `body` (an artifact upload through the proxy);
    /// the JSON answer.
    pub(crate) fn put(&self, path: &str, mut body: impl std::io::Read) -> anyhow::Result<Value> {
        let url = self.url(path);
        let mut req = self
            .agent
            .put(&url)
            .content_type("application/octet-stream");
        if let Some(auth) = &self.authorization {
            req = req.header("Authorization", auth);
        }
        Self::answer(&url, req.send(ureq::SendBody::from_reader(&mut body)))
    }

    /// `GET path`; the body as a stream (a download). A refusal is an error as for
    /// [`Remote::get`].
    pub(crate) fn get_reader(&self, path: &str) -> anyhow::Result<ureq::BodyReader<'static>> {
        let url = self.url(path);
        let mut req = self.agent.get(&url);
        if let Some(auth) = &self.authorization {
            req = req.header("Authorization", auth);
        }
        let resp = req.call().with_context(|| {
            format!("cannot reach {url} (is `quiver server` running at that address?)")
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp.into_body().into_reader());
        }
        Err(Self::answer(&url, Ok(resp))
            .err()
            .unwrap_or_else(|| anyhow!("the server answered {status}")))
    }

    /// `DELETE path`; the JSON answer.
    pub(crate) fn delete(&self, path: &str) -> anyhow::Result<Value> {
        let url = self.url(path);
        let mut req = self.agent.delete(&url);
        if let Some(auth) = &self.authorization {
            req = req.header("Authorization", auth);
        }
        Self::answer(&url, req.call())
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The JSON body of a successful answer; a refusal as `<ERROR_CODE>: <message>`.
    fn answer(
        url: &str,
        resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<Value> {
        let mut resp = resp.with_context(|| {
            format!("cannot reach {url} (is `quiver server` running at that address?)")
        })?;
        let status = resp.status();
        let text = resp
            .body_mut()
            .with_config()
            .limit(u64::MAX)
            .read_to_string()
            .with_context(|| format!("reading the answer of {url}"))?;
        let json = serde_json::from_str::<Value>(&text).ok();
        if !status.is_success() {
            let refusal = json.as_ref().and_then(|v| {
                Some(format!(
                    "{}: {}",
                    v["error_code"].as_str()?,
                    v["message"].as_str()?
                ))
            });
            return Err(match refusal {
                Some(msg) => anyhow!("{msg}"),
                None => anyhow!("the server answered {status}: {}", text.trim()),
            });
        }
        if text.trim().is_empty() {
            // MLflow answers an artifact upload with an empty 200.
            return Ok(Value::Null);
        }
        json.ok_or_else(|| anyhow!("the server's answer to {url} is not JSON: {}", text.trim()))
    }
}

/// Percent-encodes `s` for a URL path segment or query value (everything but RFC 3986's
/// unreserved characters).
pub(crate) fn percent_encode(s: &str) -> String {
    const RESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, RESERVED).to_string()
}

/// `ms` since the epoch as RFC 3339 in UTC with milliseconds (`2025-11-27T15:44:01.123Z`).
pub(crate) fn rfc3339(ms: i64) -> String {
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        None => ms.to_string(),
    }
}

/// Prints `rows` under `headers` as a text table (the same look as `quiver sql`).
pub(crate) fn print_table(headers: &[&str], rows: &[Vec<String>]) -> anyhow::Result<()> {
    let batch = crate::verbs::string_batch(headers, rows)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", sql_output::table(&[batch])?)?;
    Ok(())
}

/// Prints a JSON value, pretty.
pub(crate) fn print_json(value: &Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string_pretty(value)?)?;
    Ok(())
}

/// A string field of a JSON object (`""` when absent).
pub(crate) fn json_str(v: &Value, key: &str) -> String {
    json_opt_str(v, key).unwrap_or_default()
}

/// An optional string field of a JSON object (numbers are accepted and rendered as decimals).
pub(crate) fn json_opt_str(v: &Value, key: &str) -> Option<String> {
    match &v[key] {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// An integer field of a JSON object, as a number or a decimal string (MLflow's int64s).
pub(crate) fn json_i64(v: &Value, key: &str) -> anyhow::Result<i64> {
    match &v[key] {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| anyhow!("the server's answer lacks an integer `{key}`: {v}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_is_utc_with_millis() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_001), "2000-02-29T00:00:00.001Z");
        assert_eq!(rfc3339(1_764_258_241_123), "2025-11-27T15:44:01.123Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn percent_encoding_keeps_only_unreserved() {
        assert_eq!(percent_encode("prod-eu_1.x~"), "prod-eu_1.x~");
        assert_eq!(percent_encode("a b/c%é"), "a%20b%2Fc%25%C3%A9");
    }
}
