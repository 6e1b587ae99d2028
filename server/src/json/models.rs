//! The entities of models as JSON: logged models and the registry as MLflow's protobuf-JSON
//! (empty strings and lists omitted), deployments and registry events as Quiver's own API has
//! them (lists always present, absent options omitted).

use quiver_store::{
    Deployment, LoggedModel, ModelAlias, ModelVersion, RegisteredModel, RegistryEvent,
};
use serde_json::{json, Map, Value};

use super::{metric, params, put_list, tags};

/// Inserts `key: value` unless `value` is empty (protobuf-JSON omits default strings).
fn put_str(obj: &mut Map<String, Value>, key: &str, value: &str) {
    if !value.is_empty() {
        obj.insert(key.into(), json!(value));
    }
}

/// Inserts `key: value` when there is a value.
fn put_opt(obj: &mut Map<String, Value>, key: &str, value: Option<&str>) {
    if let Some(v) = value {
        obj.insert(key.into(), json!(v));
    }
}

/// A logged model: `{info: {...}, data: {params, metrics}}`. Its metrics carry `model_id` and
/// `run_id`, and their dataset when they have one.
pub fn logged_model(m: &LoggedModel) -> Value {
    let mut info = Map::new();
    info.insert("model_id".into(), json!(m.model_id));
    info.insert("experiment_id".into(), json!(m.experiment_id));
    info.insert("name".into(), json!(m.name));
    info.insert("creation_timestamp_ms".into(), json!(m.creation_timestamp));
    info.insert(
        "last_updated_timestamp_ms".into(),
        json!(m.last_updated_timestamp),
    );
    info.insert("artifact_uri".into(), json!(m.artifact_uri));
    info.insert("status".into(), json!(m.status.as_str()));
    put_str(&mut info, "model_type", &m.model_type);
    put_str(&mut info, "source_run_id", &m.source_run_id);
    put_str(&mut info, "status_message", &m.status_message);
    put_list(&mut info, "tags", tags(&m.tags));
    let mut data = Map::new();
    put_list(&mut data, "params", params(&m.params));
    let metrics = m
        .metrics
        .iter()
        .map(|mm| {
            let mut point = metric(&mm.metric, Some(&mm.run_id));
            if mm.metric.model_id.is_none() {
                point["model_id"] = json!(m.model_id);
            }
            point
        })
        .collect();
    put_list(&mut data, "metrics", metrics);
    json!({"info": info, "data": data})
}

/// An alias of a registered model: `{alias, version}`.
fn alias(a: &ModelAlias) -> Value {
    json!({"alias": a.alias, "version": a.version})
}

/// A registered model, with its latest version per stage, tags and aliases.
pub fn registered_model(m: &RegisteredModel) -> Value {
    let mut obj = Map::new();
    obj.insert("name".into(), json!(m.name));
    obj.insert("creation_timestamp".into(), json!(m.creation_timestamp));
    obj.insert(
        "last_updated_timestamp".into(),
        json!(m.last_updated_timestamp),
    );
    put_str(&mut obj, "user_id", &m.user_id);
    put_str(&mut obj, "description", &m.description);
    put_list(
        &mut obj,
        "latest_versions",
        m.latest_versions.iter().map(model_version).collect(),
    );
    put_list(&mut obj, "tags", tags(&m.tags));
    put_list(&mut obj, "aliases", m.aliases.iter().map(alias).collect());
    Value::Object(obj)
}

/// A model version; its status is always `READY` (registration is synchronous here).
pub fn model_version(v: &ModelVersion) -> Value {
    let mut obj = Map::new();
    obj.insert("name".into(), json!(v.name));
    obj.insert("version".into(), json!(v.version));
    obj.insert("creation_timestamp".into(), json!(v.creation_timestamp));
    obj.insert(
        "last_updated_timestamp".into(),
        json!(v.last_updated_timestamp),
    );
    put_str(&mut obj, "user_id", &v.user_id);
    obj.insert("current_stage".into(), json!(v.current_stage.as_str()));
    // MLflow always sends a version's description and run link, empty or not (the client
    // shows "" rather than None).
    obj.insert("description".into(), json!(v.description));
    put_str(&mut obj, "source", &v.source);
    put_str(&mut obj, "run_id", &v.run_id);
    obj.insert("status".into(), json!("READY"));
    put_list(&mut obj, "tags", tags(&v.tags));
    obj.insert("run_link".into(), json!(v.run_link));
    put_list(
        &mut obj,
        "aliases",
        v.aliases.iter().map(|a| json!(a)).collect(),
    );
    put_str(&mut obj, "model_id", &v.model_id);
    Value::Object(obj)
}

/// A deployment record (Quiver's API): `version`, `alias` and `resolved_version` only when set.
pub fn deployment(d: &Deployment) -> Value {
    let mut obj = Map::new();
    obj.insert("name".into(), json!(d.name));
    obj.insert("model_name".into(), json!(d.model_name));
    put_opt(&mut obj, "version", d.version.as_deref());
    put_opt(&mut obj, "alias", d.alias.as_deref());
    put_opt(&mut obj, "resolved_version", d.resolved_version.as_deref());
    obj.insert("target".into(), json!(d.target));
    obj.insert("description".into(), json!(d.description));
    obj.insert("user_id".into(), json!(d.user_id));
    obj.insert("creation_timestamp".into(), json!(d.creation_timestamp));
    Value::Object(obj)
}

/// One registry event (Quiver's API): `version`, `key`, `before`, `after` only when set.
pub fn registry_event(e: &RegistryEvent) -> Value {
    let mut obj = Map::new();
    obj.insert("seq".into(), json!(e.seq));
    obj.insert("time".into(), json!(e.time));
    obj.insert("user_id".into(), json!(e.user_id));
    obj.insert("action".into(), json!(e.action));
    obj.insert("model_name".into(), json!(e.model_name));
    put_opt(&mut obj, "version", e.version.as_deref());
    put_opt(&mut obj, "key", e.key.as_deref());
    put_opt(&mut obj, "before", e.before.as_deref());
    put_opt(&mut obj, "after", e.after.as_deref());
    Value::Object(obj)
}

#[cfg(test)]
mod tests {
    use super::*;
    use quiver_store::{LoggedModelStatus, Metric, ModelMetric, Param, Stage, Tag};

    fn version(n: &str) -> ModelVersion {
        ModelVersion {
            name: "rm".into(),
            version: n.into(),
            creation_timestamp: 1,
            last_updated_timestamp: 2,
            user_id: String::new(),
            current_stage: Stage::None,
            description: String::new(),
            source: "models:/m-1".into(),
            run_id: String::new(),
            run_link: String::new(),
            model_id: "m-1".into(),
            tags: vec![],
            aliases: vec![],
        }
    }

    #[test]
    fn registry_entities_omit_empty_fields_mlflow_omits() {
        let mut v = version("3");
        assert_eq!(
            model_version(&v),
            json!({"name": "rm", "version": "3", "creation_timestamp": 1,
                   "last_updated_timestamp": 2, "current_stage": "None",
                   "description": "", "run_link": "",
                   "source": "models:/m-1", "status": "READY", "model_id": "m-1"})
        );
        v.current_stage = Stage::Production;
        v.aliases = vec!["champion".into()];
        v.tags = vec![Tag::new("k", "v")];
        v.user_id = "alice".into();
        let j = model_version(&v);
        assert_eq!(j["current_stage"], "Production");
        assert_eq!(j["aliases"], json!(["champion"]));
        assert_eq!(j["tags"], json!([{"key": "k", "value": "v"}]));
        assert_eq!(j["user_id"], "alice");

        let m = RegisteredModel {
            name: "rm".into(),
            creation_timestamp: 1,
            last_updated_timestamp: 5,
            user_id: String::new(),
            description: String::new(),
            latest_versions: vec![],
            tags: vec![],
            aliases: vec![],
        };
        assert_eq!(
            registered_model(&m),
            json!({"name": "rm", "creation_timestamp": 1, "last_updated_timestamp": 5})
        );
        let m = RegisteredModel {
            description: "d".into(),
            latest_versions: vec![v],
            aliases: vec![ModelAlias {
                alias: "champion".into(),
                version: "3".into(),
            }],
            ..m
        };
        let j = registered_model(&m);
        assert_eq!(j["description"], "d");
        assert_eq!(j["latest_versions"][0]["version"], "3");
        assert_eq!(j["aliases"], json!([{"alias": "champion", "version": "3"}]));
    }

    #[test]
    fn logged_models_carry_info_and_data() {
        let mut point = Metric::new("acc", 0.5, 10, 2);
        point.dataset_name = Some("ds".into());
        let m = LoggedModel {
            model_id: "m-1".into(),
            experiment_id: "1".into(),
            name: "model".into(),
            artifact_uri: "mlflow-artifacts:/1/models/m-1/artifacts".into(),
            status: LoggedModelStatus::Ready,
            status_message: String::new(),
            model_type: String::new(),
            source_run_id: "r".into(),
            creation_timestamp: 3,
            last_updated_timestamp: 4,
            tags: vec![Tag::new("t", "v")],
            params: vec![Param::new("p", "1")],
            metrics: vec![ModelMetric {
                run_id: "r".into(),
                metric: point,
            }],
        };
        assert_eq!(
            logged_model(&m),
            json!({
                "info": {"model_id": "m-1", "experiment_id": "1", "name": "model",
                         "creation_timestamp_ms": 3, "last_updated_timestamp_ms": 4,
                         "artifact_uri": "mlflow-artifacts:/1/models/m-1/artifacts",
                         "status": "LOGGED_MODEL_READY", "source_run_id": "r",
                         "tags": [{"key": "t", "value": "v"}]},
                "data": {"params": [{"key": "p", "value": "1"}],
                         "metrics": [{"key": "acc", "value": 0.5, "timestamp": 10, "step": 2,
                                      "dataset_name": "ds", "run_id": "r",
                                      "model_id": "m-1"}]}
            })
        );
    }

    #[test]
    fn quiver_entities_keep_their_fields() {
        let d = Deployment {
            name: "prod".into(),
            model_name: "rm".into(),
            version: None,
            alias: Some("champion".into()),
            resolved_version: Some("2".into()),
            target: "k8s/prod".into(),
            description: String::new(),
            user_id: String::new(),
            creation_timestamp: 7,
        };
        assert_eq!(
            deployment(&d),
            json!({"name": "prod", "model_name": "rm", "alias": "champion",
                   "resolved_version": "2", "target": "k8s/prod", "description": "",
                   "user_id": "", "creation_timestamp": 7})
        );
        let e = RegistryEvent {
            seq: 4,
            time: 9,
            user_id: "alice".into(),
            action: "transition_stage".into(),
            model_name: "rm".into(),
            version: Some("1".into()),
            key: None,
            before: Some("None".into()),
            after: Some("Production".into()),
        };
        assert_eq!(
            registry_event(&e),
            json!({"seq": 4, "time": 9, "user_id": "alice", "action": "transition_stage",
                   "model_name": "rm", "version": "1", "before": "None",
                   "after": "Production"})
        );
    }
}
