//! Response encoding: store entities as MLflow's protobuf-JSON (snake_case names, enums by name,
//! int64 as numbers, unset fields and empty lists omitted, doubles that JSON cannot spell as
//! `"NaN"`, `"Infinity"`, `"-Infinity"`).

use axum::http::header;
use axum::response::{IntoResponse, Response};
use quiver_store::{DatasetInput, Experiment, Metric, Param, Run, RunInfo, Tag};
use serde_json::{json, Map, Value};

mod models;

pub use models::{deployment, logged_model, model_version, registered_model, registry_event};

/// A response of already encoded JSON.
pub fn json_response(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Appends `v` as JSON (strings escaped, numbers in their shortest round-trip form).
pub fn put<T: serde::Serialize + ?Sized>(buf: &mut Vec<u8>, v: &T) {
    serde_json::to_writer(&mut *buf, v).expect("serializing into a Vec cannot fail");
}

/// Appends a double as protobuf-JSON spells it (`"NaN"`, `"Infinity"`, `"-Infinity"`).
pub fn put_double(buf: &mut Vec<u8>, v: f64) {
    if v.is_nan() {
        buf.extend_from_slice(b"\"NaN\"");
    } else if v == f64::INFINITY {
        buf.extend_from_slice(b"\"Infinity\"");
    } else if v == f64::NEG_INFINITY {
        buf.extend_from_slice(b"\"-Infinity\"");
    } else {
        put(buf, &v);
    }
}

/// Writes one JSON object straight into a buffer, field by field: for large answers, where
/// building a `Value` tree first would cost more than the search behind it.
#[derive(Debug)]
pub struct ObjectWriter<'a> {
    buf: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> ObjectWriter<'a> {
    /// Opens an object.
    pub fn new(buf: &'a mut Vec<u8>) -> Self {
        buf.push(b'{');
        ObjectWriter { buf, first: true }
    }

    /// Writes `"key":` and returns the buffer for the value.
    pub fn key(&mut self, key: &str) -> &mut Vec<u8> {
        if !self.first {
            self.buf.push(b',');
        }
        self.first = false;
        put(self.buf, key);
        self.buf.push(b':');
        self.buf
    }

    /// Writes a field with a serializable value.
    pub fn field<T: serde::Serialize + ?Sized>(&mut self, key: &str, value: &T) {
        let buf = self.key(key);
        put(buf, value);
    }

    /// Writes a list field from `items` unless it is empty (protobuf-JSON omits those).
    pub fn list<T>(&mut self, key: &str, items: &[T], write: impl Fn(&mut Vec<u8>, &T)) {
        if items.is_empty() {
            return;
        }
        let buf = self.key(key);
        buf.push(b'[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            write(buf, item);
        }
        buf.push(b']');
    }

    /// Closes the object.
    pub fn end(self) {
        self.buf.push(b'}');
    }
}

fn write_key_value(buf: &mut Vec<u8>, key: &str, value: &str) {
    let mut o = ObjectWriter::new(buf);
    o.field("key", key);
    o.field("value", value);
    o.end();
}

/// Writes a whole run, as [`run`] builds it.
pub fn write_run(buf: &mut Vec<u8>, r: &Run) {
    let mut o = ObjectWriter::new(buf);
    {
        let i = &r.info;
        let mut info = ObjectWriter::new(o.key("info"));
        info.field("run_id", &i.run_id);
        info.field("run_uuid", &i.run_id);
        info.field("run_name", &i.run_name);
        info.field("experiment_id", &i.experiment_id);
        info.field("user_id", &i.user_id);
        info.field("status", i.status.as_str());
        info.field("start_time", &i.start_time);
        if let Some(t) = i.end_time {
            info.field("end_time", &t);
        }
        info.field("artifact_uri", &i.artifact_uri);
        info.field("lifecycle_stage", i.lifecycle_stage.as_str());
        info.end();
    }
    {
        let mut data = ObjectWriter::new(o.key("data"));
        data.list("metrics", &r.metrics, |buf, m| {
            let mut o = ObjectWriter::new(buf);
            o.field("key", &m.key);
            put_double(o.key("value"), m.value);
            o.field("timestamp", &m.timestamp);
            o.field("step", &m.step);
            for (k, v) in [
                ("model_id", &m.model_id),
                ("dataset_name", &m.dataset_name),
                ("dataset_digest", &m.dataset_digest),
            ] {
                if let Some(v) = v {
                    o.field(k, v);
                }
            }
            o.end();
        });
        data.list("params", &r.params, |buf, p| {
            write_key_value(buf, &p.key, &p.value)
        });
        data.list("tags", &r.tags, |buf, t| {
            write_key_value(buf, &t.key, &t.value)
        });
        data.end();
    }
    {
        let mut inputs = ObjectWriter::new(o.key("inputs"));
        inputs.list("dataset_inputs", &r.dataset_inputs, |buf, d| {
            let mut o = ObjectWriter::new(buf);
            o.list("tags", &d.tags, |buf, t| {
                write_key_value(buf, &t.key, &t.value)
            });
            let ds = &d.dataset;
            let mut dataset = ObjectWriter::new(o.key("dataset"));
            dataset.field("name", &ds.name);
            dataset.field("digest", &ds.digest);
            dataset.field("source_type", &ds.source_type);
            dataset.field("source", &ds.source);
            if let Some(s) = &ds.schema {
                dataset.field("schema", s);
            }
            if let Some(p) = &ds.profile {
                dataset.field("profile", p);
            }
            dataset.end();
            o.end();
        });
        inputs.list("model_inputs", &r.model_inputs, |buf, id| {
            let mut o = ObjectWriter::new(buf);
            o.field("model_id", id);
            o.end();
        });
        inputs.end();
    }
    if !r.model_outputs.is_empty() {
        let mut outputs = ObjectWriter::new(o.key("outputs"));
        outputs.list("model_outputs", &r.model_outputs, |buf, m| {
            let mut o = ObjectWriter::new(buf);
            o.field("model_id", &m.model_id);
            o.field("step", &m.step);
            o.end();
        });
        outputs.end();
    }
    o.end();
}

/// A double as protobuf-JSON writes it.
pub fn double(v: f64) -> Value {
    if v.is_nan() {
        Value::String("NaN".into())
    } else if v == f64::INFINITY {
        Value::String("Infinity".into())
    } else if v == f64::NEG_INFINITY {
        Value::String("-Infinity".into())
    } else {
        json!(v)
    }
}

/// Inserts `key: list` unless the list is empty (protobuf-JSON omits empty repeated fields).
pub fn put_list(obj: &mut Map<String, Value>, key: &str, list: Vec<Value>) {
    if !list.is_empty() {
        obj.insert(key.into(), Value::Array(list));
    }
}

/// One page of a search as MLflow answers it: `{<key>: [...], "next_page_token": ...}`, the
/// list omitted when empty and the token when there is no next page.
pub fn page(key: &str, items: Vec<Value>, next_page_token: Option<String>) -> Value {
    let mut out = Map::new();
    put_list(&mut out, key, items);
    if let Some(token) = next_page_token {
        out.insert("next_page_token".into(), Value::String(token));
    }
    Value::Object(out)
}

/// `{key, value}` pairs.
pub fn tags(tags: &[Tag]) -> Vec<Value> {
    tags.iter()
        .map(|t| json!({"key": t.key, "value": t.value}))
        .collect()
}

/// `{key, value}` pairs of params.
pub fn params(params: &[Param]) -> Vec<Value> {
    params
        .iter()
        .map(|p| json!({"key": p.key, "value": p.value}))
        .collect()
}

/// An experiment.
pub fn experiment(e: &Experiment) -> Value {
    let mut obj = Map::new();
    obj.insert("experiment_id".into(), json!(e.experiment_id));
    obj.insert("name".into(), json!(e.name));
    obj.insert("artifact_location".into(), json!(e.artifact_location));
    obj.insert("lifecycle_stage".into(), json!(e.lifecycle_stage.as_str()));
    obj.insert("last_update_time".into(), json!(e.last_update_time));
    obj.insert("creation_time".into(), json!(e.creation_time));
    put_list(&mut obj, "tags", tags(&e.tags));
    Value::Object(obj)
}

/// A metric point (`run_id` added when given, as bulk reads do).
pub fn metric(m: &Metric, run_id: Option<&str>) -> Value {
    let mut obj = Map::new();
    obj.insert("key".into(), json!(m.key));
    obj.insert("value".into(), double(m.value));
    obj.insert("timestamp".into(), json!(m.timestamp));
    obj.insert("step".into(), json!(m.step));
    if let Some(id) = &m.model_id {
        obj.insert("model_id".into(), json!(id));
    }
    if let Some(n) = &m.dataset_name {
        obj.insert("dataset_name".into(), json!(n));
    }
    if let Some(d) = &m.dataset_digest {
        obj.insert("dataset_digest".into(), json!(d));
    }
    if let Some(r) = run_id {
        obj.insert("run_id".into(), json!(r));
    }
    Value::Object(obj)
}

/// A run's info, with both `run_id` and its deprecated alias `run_uuid`.
pub fn run_info(i: &RunInfo) -> Value {
    let mut obj = Map::new();
    obj.insert("run_id".into(), json!(i.run_id));
    obj.insert("run_uuid".into(), json!(i.run_id));
    obj.insert("run_name".into(), json!(i.run_name));
    obj.insert("experiment_id".into(), json!(i.experiment_id));
    obj.insert("user_id".into(), json!(i.user_id));
    obj.insert("status".into(), json!(i.status.as_str()));
    obj.insert("start_time".into(), json!(i.start_time));
    if let Some(t) = i.end_time {
        obj.insert("end_time".into(), json!(t));
    }
    obj.insert("artifact_uri".into(), json!(i.artifact_uri));
    obj.insert("lifecycle_stage".into(), json!(i.lifecycle_stage.as_str()));
    Value::Object(obj)
}

/// A dataset input.
pub fn dataset_input(d: &DatasetInput) -> Value {
    let ds = &d.dataset;
    let mut dataset = Map::new();
    dataset.insert("name".into(), json!(ds.name));
    dataset.insert("digest".into(), json!(ds.digest));
    dataset.insert("source_type".into(), json!(ds.source_type));
    dataset.insert("source".into(), json!(ds.source));
    if let Some(s) = &ds.schema {
        dataset.insert("schema".into(), json!(s));
    }
    if let Some(p) = &ds.profile {
        dataset.insert("profile".into(), json!(p));
    }
    let mut obj = Map::new();
    put_list(&mut obj, "tags", tags(&d.tags));
    obj.insert("dataset".into(), Value::Object(dataset));
    Value::Object(obj)
}

/// A whole run: info, data (latest metrics, params, tags), inputs (datasets, models), and
/// outputs (models) when it has any.
pub fn run(r: &Run) -> Value {
    let mut data = Map::new();
    put_list(
        &mut data,
        "metrics",
        r.metrics.iter().map(|m| metric(m, None)).collect(),
    );
    put_list(&mut data, "params", params(&r.params));
    put_list(&mut data, "tags", tags(&r.tags));
    let mut inputs = Map::new();
    put_list(
        &mut inputs,
        "dataset_inputs",
        r.dataset_inputs.iter().map(dataset_input).collect(),
    );
    put_list(
        &mut inputs,
        "model_inputs",
        r.model_inputs
            .iter()
            .map(|id| json!({ "model_id": id }))
            .collect(),
    );
    let mut run = json!({"info": run_info(&r.info), "data": data, "inputs": inputs});
    if !r.model_outputs.is_empty() {
        let outputs: Vec<Value> = r
            .model_outputs
            .iter()
            .map(|m| json!({"model_id": m.model_id, "step": m.step}))
            .collect();
        run["outputs"] = json!({ "model_outputs": outputs });
    }
    run
}

#[cfg(test)]
mod tests {
    use super::*;
    use quiver_store::{Dataset, LifecycleStage, ModelOutput, RunStatus};

    #[test]
    fn written_runs_equal_built_ones() {
        let mut m = Metric::new("loss \"x\"", f64::NAN, 5, -2);
        m.model_id = Some("m-1".into());
        let full = Run {
            info: RunInfo {
                run_id: "ab".repeat(16),
                run_name: "n\u{e9}\n".into(),
                experiment_id: "3".into(),
                user_id: String::new(),
                status: RunStatus::Finished,
                start_time: 1,
                end_time: Some(9),
                lifecycle_stage: LifecycleStage::Deleted,
                artifact_uri: "mlflow-artifacts:/3/x/artifacts".into(),
                deleted_time: Some(9),
            },
            metrics: vec![
                m,
                Metric::new("acc", f64::NEG_INFINITY, 1, 2),
                Metric::new("b", 0.1, 1, 2),
            ],
            params: vec![Param::new("lr", "0.01")],
            tags: vec![Tag::new("t", ""), Tag::new("u", "v")],
            dataset_inputs: vec![DatasetInput {
                tags: vec![Tag::new("mlflow.data.context", "train")],
                dataset: Dataset {
                    name: "d".into(),
                    digest: "12".into(),
                    source_type: "local".into(),
                    source: "{}".into(),
                    schema: Some("{\"a\": 1}".into()),
                    profile: None,
                },
            }],
            model_inputs: vec!["m-in".into()],
            model_outputs: vec![ModelOutput {
                model_id: "m-out".into(),
                step: 3,
            }],
        };
        let mut bare = full.clone();
        bare.info.end_time = None;
        bare.metrics.clear();
        bare.params.clear();
        bare.tags.clear();
        bare.dataset_inputs.clear();
        bare.model_inputs.clear();
        bare.model_outputs.clear();
        let built = run(&full);
        assert_eq!(
            built["inputs"]["model_inputs"],
            json!([{"model_id": "m-in"}])
        );
        assert_eq!(
            built["outputs"],
            json!({"model_outputs": [{"model_id": "m-out", "step": 3}]})
        );
        let built = run(&bare);
        assert_eq!(built["inputs"], json!({}));
        assert!(built.get("outputs").is_none(), "{built}");
        for r in [full, bare] {
            let mut buf = Vec::new();
            write_run(&mut buf, &r);
            let written: Value = serde_json::from_slice(&buf).unwrap();
            assert_eq!(written, run(&r));
        }
    }
}
