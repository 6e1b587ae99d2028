//! Response encoding: store entities as MLflow's protobuf-JSON (snake_case names, enums by name,
//! int64 as numbers, unset fields and empty lists omitted, doubles that JSON cannot spell as
//! `"NaN"`, `"Infinity"`, `"-Infinity"`).

use quiver_store::{DatasetInput, Experiment, Metric, Param, Run, RunInfo, Tag};
use serde_json::{json, Map, Value};

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

/// A whole run: info, data (latest metrics, params, tags), inputs.
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
    json!({"info": run_info(&r.info), "data": data, "inputs": inputs})
}
