//! MLflow's wire conventions for requests: where fields come from and how they are coerced.
//!
//! A request's fields are one JSON object: the body of a POST/PATCH/DELETE (which must be
//! `Content-Type: application/json`), or the query string of a GET (repeated keys become
//! arrays). [`Fields`] reads typed values out of it with MLflow's leniencies (int64 as numbers or
//! numeric strings, doubles as `"NaN"`/`"Infinity"`, lowerCamel aliases, `run_uuid` for
//! `run_id`, unknown fields ignored) and MLflow's error messages.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, Method};
use serde_json::{Map, Value};

use crate::error::ApiError;

/// Largest JSON request body accepted (log-batch has its own, smaller limit).
pub const MAX_JSON_BODY: usize = 16 << 20;

/// The fields of one request.
#[derive(Debug, Clone, Default)]
pub struct Fields {
    map: Map<String, Value>,
    /// Size of the JSON body in bytes (0 for GET).
    pub body_len: usize,
    /// Where these fields sit in the request (`metrics[0].`), prefixed to names in errors.
    path: String,
}

fn snake_to_camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// MLflow's error for a field of the wrong type or out of range.
fn invalid_value(name: &str, v: &Value) -> ApiError {
    ApiError::invalid(format!(
        "Invalid value {v} for parameter '{name}' supplied. See the API docs for more \
         information about request parameters."
    ))
}

/// MLflow's error for a required field that is absent or empty.
fn missing(name: &str) -> ApiError {
    ApiError::invalid(format!(
        "Missing value for required parameter '{name}'. See the API docs for more information \
         about request parameters."
    ))
}

impl Fields {
    /// Fields from a JSON object.
    pub fn from_map(map: Map<String, Value>) -> Self {
        Fields {
            map,
            body_len: 0,
            path: String::new(),
        }
    }

    fn nested(map: Map<String, Value>, path: String) -> Self {
        Fields {
            map,
            body_len: 0,
            path,
        }
    }

    /// The name of field `name` as errors spell it (`metrics[0].timestamp` in a list element).
    pub fn path_of(&self, name: &str) -> String {
        format!("{}{name}", self.path)
    }

    /// The "missing required field" error for field `name` of these fields.
    pub fn missing(&self, name: &str) -> ApiError {
        missing(&self.path_of(name))
    }

    /// The "invalid value" error for field `name` of these fields.
    pub fn invalid(&self, name: &str, v: &Value) -> ApiError {
        invalid_value(&self.path_of(name), v)
    }

    /// The raw value of field `name` (or its lowerCamel spelling); null counts as absent.
    pub fn raw(&self, name: &str) -> Option<&Value> {
        let v = self
            .map
            .get(name)
            .or_else(|| self.map.get(&snake_to_camel(name)));
        v.filter(|v| !v.is_null())
    }

    /// A string field. Like MLflow (`_assert_string`), a number or a boolean where a string
    /// belongs is an invalid value (`"run_id": 31`), not the string `"31"`.
    pub fn opt_str(&self, name: &str) -> Result<Option<String>, ApiError> {
        match self.raw(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(self.invalid(name, v)),
        }
    }

    /// A required, non-empty string field.
    pub fn req_str(&self, name: &str) -> Result<String, ApiError> {
        self.opt_str(name)?
            .filter(|s| !s.is_empty())
            .ok_or_else(|| self.missing(name))
    }

    /// The run id: `run_id`, else its deprecated alias `run_uuid`.
    pub fn run_id(&self) -> Result<String, ApiError> {
        match self.opt_str("run_id")?.filter(|s| !s.is_empty()) {
            Some(id) => Ok(id),
            None => self
                .opt_str("run_uuid")?
                .filter(|s| !s.is_empty())
                .ok_or_else(|| self.missing("run_id")),
        }
    }

    /// An int64 field, as a JSON number or a numeric string.
    pub fn opt_i64(&self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.raw(name) {
            None => Ok(None),
            Some(v) => as_i64(v).map(Some).ok_or_else(|| self.invalid(name, v)),
        }
    }

    /// A required int64 field.
    pub fn req_i64(&self, name: &str) -> Result<i64, ApiError> {
        self.opt_i64(name)?.ok_or_else(|| self.missing(name))
    }

    /// A double field: a number, a numeric string, or `"NaN"`, `"Infinity"`, `"-Infinity"`.
    pub fn opt_f64(&self, name: &str) -> Result<Option<f64>, ApiError> {
        match self.raw(name) {
            None => Ok(None),
            Some(v) => as_f64(v).map(Some).ok_or_else(|| self.invalid(name, v)),
        }
    }

    /// A required double field.
    pub fn req_f64(&self, name: &str) -> Result<f64, ApiError> {
        self.opt_f64(name)?.ok_or_else(|| self.missing(name))
    }

    /// A bool field (`true`/`false`, also as strings from a query).
    pub fn opt_bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.raw(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s == "true" => Ok(Some(true)),
            Some(Value::String(s)) if s == "false" => Ok(Some(false)),
            Some(v) => Err(self.invalid(name, v)),
        }
    }

    /// A repeated string field: an array, or one value (a query key given once).
    pub fn str_list(&self, name: &str) -> Result<Vec<String>, ApiError> {
        match self.raw(name) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    Value::Number(n) => Ok(n.to_string()),
                    other => Err(self.invalid(name, other)),
                })
                .collect(),
            Some(Value::String(s)) => Ok(vec![s.clone()]),
            Some(Value::Number(n)) => Ok(vec![n.to_string()]),
            Some(v) => Err(self.invalid(name, v)),
        }
    }

    /// A repeated message field, as the field objects of each element; `name` prefixes errors
    /// (`metrics[0].timestamp`).
    pub fn list(&self, name: &str) -> Result<Vec<Fields>, ApiError> {
        match self.raw(name) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::Object(m) => Ok(Fields::nested(
                        m.clone(),
                        format!("{}{name}[{i}].", self.path),
                    )),
                    other => Err(self.invalid(name, other)),
                })
                .collect(),
            Some(v) => Err(self.invalid(name, v)),
        }
    }

    /// A nested message field; `name` prefixes errors (`datasets[0].dataset.name`).
    pub fn object(&self, name: &str) -> Result<Option<Fields>, ApiError> {
        match self.raw(name) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(Fields::nested(
                m.clone(),
                format!("{}{name}.", self.path),
            ))),
            Some(v) => Err(self.invalid(name, v)),
        }
    }

    /// Error for a required field of a list element (`metrics[3].key`).
    pub fn missing_in(list: &str, index: usize, field: &str) -> ApiError {
        missing(&format!("{list}[{index}].{field}"))
    }
}

/// An int64 from a JSON number or numeric string.
pub fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.2e18)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A double from a JSON number, numeric string, or MLflow's special strings.
pub fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "NaN" | "nan" => Some(f64::NAN),
            "Infinity" | "inf" => Some(f64::INFINITY),
            "-Infinity" | "-inf" => Some(f64::NEG_INFINITY),
            other => other.trim().parse().ok(),
        },
        _ => None,
    }
}

/// Parses a query string into fields: a key given once is a string, repeated keys an array.
pub fn query_fields(query: &str) -> Fields {
    let mut map = Map::new();
    for (k, v) in form_urlencoded_pairs(query) {
        match map.get_mut(&k) {
            None => {
                map.insert(k, Value::String(v));
            }
            Some(Value::Array(items)) => items.push(Value::String(v)),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, Value::String(v)]);
            }
        }
    }
    Fields::from_map(map)
}

/// Decodes `application/x-www-form-urlencoded` pairs (`+` is a space, `%XX` escapes).
fn form_urlencoded_pairs(query: &str) -> Vec<(String, String)> {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push(h * 16 + l);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                },
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(pair), String::new()),
        })
        .collect()
}

/// Extracts [`Fields`] from a request following MLflow's rules: GET (and HEAD) from the query
/// string; other methods from a JSON object body with `Content-Type: application/json` (an
/// empty body is `{}`; a JSON string holding JSON is decoded twice, as MLflow does). A DELETE
/// without a body reads its query string instead (`DELETE ...?name=x`, as curl users write it;
/// the `mlflow` client sends a JSON body).
impl<S: Send + Sync> FromRequest<S> for Fields {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        if req.method() == Method::GET || req.method() == Method::HEAD {
            return Ok(query_fields(req.uri().query().unwrap_or("")));
        }
        let query = (req.method() == Method::DELETE)
            .then(|| req.uri().query().map(str::to_owned))
            .flatten();
        let body = json_body(req).await?;
        match query {
            Some(query) if body.is_empty() => Ok(query_fields(&query)),
            _ => Fields::from_json(&body),
        }
    }
}

/// Reads a request's JSON body (up to [`MAX_JSON_BODY`]) with MLflow's Content-Type rule: a
/// non-empty body must be `application/json`. An empty or blank body reads as empty.
pub async fn json_body(req: Request) -> Result<Bytes, ApiError> {
    let json_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            let essence = v.split(';').next().unwrap_or("").trim();
            essence.eq_ignore_ascii_case("application/json")
        });
    // Our own limit, not axum's default 2 MB one: a JSON body may be up to MAX_JSON_BODY.
    let bytes = axum::body::to_bytes(req.into_body(), MAX_JSON_BODY)
        .await
        .map_err(|e| {
            ApiError::invalid(format!(
                "Request body unreadable or larger than {MAX_JSON_BODY} bytes: {e}"
            ))
        })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Bytes::new());
    }
    if json_type != Some(true) {
        return Err(ApiError::invalid(
            "Bad Request. Content-Type must be one of ['application/json'].",
        ));
    }
    Ok(bytes)
}

impl Fields {
    /// The fields of a JSON body read by [`json_body`] (empty = no fields). A JSON string that
    /// holds JSON is decoded twice, as MLflow does for legacy clients.
    pub fn from_json(bytes: &[u8]) -> Result<Fields, ApiError> {
        if bytes.is_empty() {
            return Ok(Fields::default());
        }
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| ApiError::invalid(format!("Malformed JSON request body: {e}")))?;
        let value = match value {
            Value::String(inner) => serde_json::from_str(&inner)
                .map_err(|e| ApiError::invalid(format!("Malformed JSON request body: {e}")))?,
            v => v,
        };
        match value {
            Value::Object(map) => Ok(Fields {
                map,
                body_len: bytes.len(),
                path: String::new(),
            }),
            _ => Err(ApiError::invalid("The request body must be a JSON object")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coercions_follow_mlflow() {
        let f = Fields::from_map(
            serde_json::json!({
                "timestamp": "12", "step": 3, "value": "NaN", "v2": "-Infinity", "v3": 1.5,
                "runUuid": "abc", "flag": "true", "ids": ["1", 2], "bad": {"x": 1}
            })
            .as_object()
            .unwrap()
            .clone(),
        );
        assert_eq!(f.req_i64("timestamp").unwrap(), 12);
        assert_eq!(f.opt_i64("step").unwrap(), Some(3));
        assert!(f.opt_f64("value").unwrap().unwrap().is_nan());
        assert_eq!(f.opt_f64("v2").unwrap(), Some(f64::NEG_INFINITY));
        assert_eq!(f.opt_f64("v3").unwrap(), Some(1.5));
        assert_eq!(f.run_id().unwrap(), "abc");
        assert_eq!(f.opt_bool("flag").unwrap(), Some(true));
        assert_eq!(f.str_list("ids").unwrap(), vec!["1", "2"]);
        let e = f.opt_i64("bad").unwrap_err();
        assert!(
            e.message
                .contains("Invalid value {\"x\":1} for parameter 'bad' supplied"),
            "{e}"
        );
        let e = f.req_str("missing_one").unwrap_err();
        assert!(e
            .message
            .contains("Missing value for required parameter 'missing_one'"));
    }

    #[test]
    fn errors_in_list_elements_name_their_path() {
        let f = Fields::from_map(
            serde_json::json!({"metrics": [{"key": "a", "timestamp": 1}, {"key": "b"}],
                               "datasets": [{"dataset": {"name": 3, "digest": {}}}]})
            .as_object()
            .unwrap()
            .clone(),
        );
        let metrics = f.list("metrics").unwrap();
        assert_eq!(metrics[0].req_i64("timestamp").unwrap(), 1);
        let e = metrics[1].req_i64("timestamp").unwrap_err();
        assert!(e
            .message
            .contains("Missing value for required parameter 'metrics[1].timestamp'"));
        let ds = f.list("datasets").unwrap()[0]
            .object("dataset")
            .unwrap()
            .unwrap();
        let e = ds.opt_str("digest").unwrap_err();
        assert!(e
            .message
            .contains("Invalid value {} for parameter 'datasets[0].dataset.digest' supplied"));
    }

    #[tokio::test]
    async fn a_delete_without_a_body_reads_its_query() {
        let request = |body: &'static str, content_type: Option<&str>| {
            let mut b = Request::builder()
                .method(Method::DELETE)
                .uri("/x?name=from-query");
            if let Some(t) = content_type {
                b = b.header(header::CONTENT_TYPE, t);
            }
            b.body(axum::body::Body::from(body)).unwrap()
        };
        let f = Fields::from_request(request("", None), &()).await.unwrap();
        assert_eq!(f.req_str("name").unwrap(), "from-query");
        let f = Fields::from_request(
            request(r#"{"name": "from-body"}"#, Some("application/json")),
            &(),
        )
        .await
        .unwrap();
        assert_eq!(f.req_str("name").unwrap(), "from-body");
        let e = Fields::from_request(request(r#"{"name": "x"}"#, Some("text/plain")), &())
            .await
            .unwrap_err();
        assert!(e.message.contains("Content-Type must be one of"), "{e}");
        // Other methods never read the query.
        let post = Request::builder()
            .method(Method::POST)
            .uri("/x?name=q")
            .body(axum::body::Body::empty())
            .unwrap();
        let f = Fields::from_request(post, &()).await.unwrap();
        assert!(f.req_str("name").is_err());
    }

    #[test]
    fn query_strings_repeat_and_decode() {
        let f = query_fields("run_ids=a&run_ids=b&metric_key=val%2Floss&x=a+b&empty");
        assert_eq!(f.str_list("run_ids").unwrap(), vec!["a", "b"]);
        assert_eq!(f.req_str("metric_key").unwrap(), "val/loss");
        assert_eq!(f.req_str("x").unwrap(), "a b");
        assert_eq!(f.str_list("metric_key").unwrap(), vec!["val/loss"]);
        assert!(f.req_str("empty").is_err());
        // A broken escape is kept literally, never a panic.
        let f = query_fields("k=%zz&j=%4");
        assert_eq!(f.req_str("k").unwrap(), "%zz");
        assert_eq!(f.req_str("j").unwrap(), "%4");
    }
}
