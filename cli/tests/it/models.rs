//! Models over HTTP against the real binary: logged models (MLflow 3's `log_model`), the model
//! registry, Quiver's deployment records and registry history, and the error formats of all
//! of them (a 400 or 404 in MLflow's format for bad input, never a 5xx).

use serde_json::{json, Value};

use crate::{agent, TestServer};

/// `alice:pw` and `bob:secret`, as `Authorization: Basic` carries them.
const ALICE: &str = "Basic YWxpY2U6cHc=";
const BOB: &str = "Basic Ym9iOnNlY3JldA==";

/// A client of one test server that answers `(status, JSON body)`, sending requests as the
/// `mlflow` client does: GET fields in the query string, other methods as a JSON body.
struct Api {
    server: TestServer,
    agent: ureq::Agent,
}

/// Percent-encodes a query component.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The query string of a GET: each field once, arrays as repeated keys.
fn query(fields: &Value) -> String {
    let mut pairs = Vec::new();
    for (k, v) in fields.as_object().into_iter().flatten() {
        let values = match v {
            Value::Array(items) => items.clone(),
            other => vec![other.clone()],
        };
        for v in values {
            let text = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            pairs.push(format!("{}={}", encode(k), encode(&text)));
        }
    }
    pairs.join("&")
}

impl Api {
    fn start() -> Api {
        Api {
            server: TestServer::start(),
            agent: agent(),
        }
    }

    /// `method url` with `fields`, as `auth` (an `Authorization` header) when given.
    fn send(&self, auth: Option<&str>, method: &str, url: &str, fields: Value) -> (u16, Value) {
        let result = match method {
            "GET" => {
                let q = query(&fields);
                let mut r = self.agent.get(&format!("{url}?{q}"));
                if let Some(a) = auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            _ => {
                let mut r = match method {
                    "POST" => self.agent.post(url),
                    "PATCH" => self.agent.patch(url),
                    "DELETE" => self.agent.delete(url).force_send_body(),
                    other => panic!("no method {other}"),
                };
                if let Some(a) = auth {
                    r = r.header("Authorization", a);
                }
                r.content_type("application/json").send(fields.to_string())
            }
        };
        let mut r = result.unwrap();
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    /// `method /api/2.0/mlflow<path>` with `fields`.
    fn call(&self, method: &str, path: &str, fields: Value) -> (u16, Value) {
        self.call_as(None, method, path, fields)
    }

    /// `method /api/2.0/mlflow<path>` with `fields`, as user `auth`.
    fn call_as(&self, auth: Option<&str>, method: &str, path: &str, fields: Value) -> (u16, Value) {
        let url = self.server.api(&format!("/api/2.0/mlflow{path}"));
        self.send(auth, method, &url, fields)
    }

    /// A call that must succeed; its body.
    #[track_caller]
    fn ok(&self, method: &str, path: &str, fields: Value) -> Value {
        self.ok_as(None, method, path, fields)
    }

    /// A call as user `auth` that must succeed; its body.
    #[track_caller]
    fn ok_as(&self, auth: Option<&str>, method: &str, path: &str, fields: Value) -> Value {
        let (status, body) = self.call_as(auth, method, path, fields.clone());
        assert_eq!(status, 200, "{method} {path} {fields}: {body}");
        body
    }

    /// `method /api/2.0/quiver<path>` with `fields`, as user `auth`.
    fn quiver(&self, auth: Option<&str>, method: &str, path: &str, fields: Value) -> (u16, Value) {
        let url = self.server.api(&format!("/api/2.0/quiver{path}"));
        self.send(auth, method, &url, fields)
    }

    /// Raw bytes of a GET (status, body).
    fn get_bytes(&self, path_and_query: &str) -> (u16, Vec<u8>) {
        let mut r = self
            .agent
            .get(&self.server.api(path_and_query))
            .call()
            .unwrap();
        let status = r.status().as_u16();
        (status, r.body_mut().read_to_vec().unwrap())
    }

    /// Uploads a file to the artifact proxy.
    fn put_artifact(&self, path: &str, bytes: &[u8]) {
        let r = self
            .agent
            .put(
                &self
                    .server
                    .api(&format!("/api/2.0/mlflow-artifacts/artifacts/{path}")),
            )
            .send(bytes)
            .unwrap();
        assert_eq!(r.status(), 200, "PUT {path}");
    }

    fn create_experiment(&self, name: &str) -> String {
        let r = self.ok("POST", "/experiments/create", json!({ "name": name }));
        r["experiment_id"].as_str().unwrap().to_string()
    }

    fn create_run(&self, experiment_id: &str) -> String {
        let r = self.ok(
            "POST",
            "/runs/create",
            json!({ "experiment_id": experiment_id }),
        );
        r["run"]["info"]["run_id"].as_str().unwrap().to_string()
    }

    /// Creates a logged model; its `info`.
    fn create_model(&self, body: Value) -> Value {
        self.ok("POST", "/logged-models", body)["model"]["info"].clone()
    }
}

/// Asserts an error answer: status, error code, and a phrase of the message.
#[track_caller]
fn assert_error(answer: (u16, Value), status: u16, code: &str, phrase: &str) {
    let (got, body) = answer;
    assert_eq!(got, status, "{body}");
    assert_eq!(body["error_code"], code, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains(phrase), "{message:?} lacks {phrase:?}");
}

/// The values of field `field` of the objects in list `list` (empty when the list is absent).
fn column(list: &Value, field: &str) -> Vec<String> {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .map(|i| match &i[field] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The value of tag `key` in a `[{key, value}]` list.
fn tag<'a>(tags: &'a Value, key: &str) -> Option<&'a str> {
    tags.as_array()?
        .iter()
        .find(|t| t["key"] == key)
        .and_then(|t| t["value"].as_str())
}

#[test]
fn logged_models_create_finalize_tag_and_search() {
    let api = Api::start();
    let exp = api.create_experiment("logged-models");
    let run = api.create_run(&exp);

    // Created as `log_model` does: pending, with an artifact directory under the experiment's.
    let info = api.create_model(json!({
        "experiment_id": exp, "name": "model", "source_run_id": run, "model_type": "sklearn",
        "tags": [{"key": "mlflow.user", "value": "alice"}],
        "params": [{"key": "alpha", "value": "0.5"}],
    }));
    let id = info["model_id"].as_str().unwrap().to_string();
    assert!(id.starts_with("m-") && id.len() == 34, "{id}");
    assert_eq!(info["experiment_id"], exp.as_str());
    assert_eq!(info["name"], "model");
    assert_eq!(info["status"], "LOGGED_MODEL_PENDING");
    assert_eq!(info["source_run_id"], run.as_str());
    assert_eq!(info["model_type"], "sklearn");
    assert_eq!(tag(&info["tags"], "mlflow.user"), Some("alice"));
    assert!(info["creation_timestamp_ms"].as_i64().unwrap() > 0);
    assert!(info["last_updated_timestamp_ms"].as_i64().is_some());
    let uri = info["artifact_uri"].as_str().unwrap().to_string();
    assert_eq!(
        uri,
        format!("mlflow-artifacts:/{exp}/models/{id}/artifacts")
    );

    // The run's outputs, and another run's inputs, name it.
    api.ok(
        "POST",
        "/runs/outputs",
        json!({"run_id": run, "models": [{"model_id": id, "step": 0}]}),
    );
    let r = api.ok("GET", "/runs/get", json!({ "run_id": run }));
    assert_eq!(
        r["run"]["outputs"],
        json!({"model_outputs": [{"model_id": id, "step": 0}]})
    );
    let user = api.create_run(&exp);
    api.ok(
        "POST",
        "/runs/log-inputs",
        json!({"run_id": user, "models": [{"model_id": id}]}),
    );
    let r = api.ok("GET", "/runs/get", json!({ "run_id": user }));
    assert_eq!(
        r["run"]["inputs"]["model_inputs"],
        json!([{"model_id": id}])
    );
    assert!(r["run"].get("outputs").is_none(), "{r}");

    // Files uploaded through the artifact proxy list and download as the model's.
    let root = format!("{exp}/models/{id}/artifacts");
    api.put_artifact(&format!("{root}/MLmodel"), b"flavors: {}\n");
    api.put_artifact(&format!("{root}/sub/x.txt"), b"hello");
    let listing = api.ok(
        "GET",
        &format!("/logged-models/{id}/artifacts/directories"),
        json!({}),
    );
    assert_eq!(listing["root_uri"], uri.as_str());
    let files = listing["files"].as_array().unwrap();
    assert!(
        files.contains(&json!({"path": "MLmodel", "is_dir": false, "file_size": 12})),
        "{listing}"
    );
    assert!(
        files.contains(&json!({"path": "sub", "is_dir": true})),
        "{listing}"
    );
    let listing = api.ok(
        "GET",
        &format!("/logged-models/{id}/artifacts/directories"),
        json!({"artifact_directory_path": "sub"}),
    );
    assert_eq!(
        listing["files"],
        json!([{"path": "sub/x.txt", "is_dir": false, "file_size": 5}])
    );
    let (status, bytes) = api.get_bytes(&format!(
        "/ajax-api/2.0/mlflow/logged-models/{id}/artifacts/files?artifact_file_path=sub%2Fx.txt"
    ));
    assert_eq!((status, bytes.as_slice()), (200, &b"hello"[..]));
    let (status, _) = api.get_bytes(&format!(
        "/ajax-api/2.0/mlflow/logged-models/{id}/artifacts/files?artifact_file_path=nope.txt"
    ));
    assert_eq!(status, 404);

    // Finalized, tagged, given params; metrics logged with its id are the model's.
    let m = api.ok(
        "PATCH",
        &format!("/logged-models/{id}"),
        json!({"model_id": id, "status": "LOGGED_MODEL_READY"}),
    );
    assert_eq!(m["model"]["info"]["status"], "LOGGED_MODEL_READY");
    let m = api.ok(
        "PATCH",
        &format!("/logged-models/{id}/tags"),
        json!({"tags": [{"key": "team", "value": "risk"},
                        {"key": "mlflow.modelVersions", "value": "[]"}]}),
    );
    assert_eq!(tag(&m["model"]["info"]["tags"], "team"), Some("risk"));
    api.ok(
        "DELETE",
        &format!("/logged-models/{id}/tags/team"),
        json!({}),
    );
    api.ok(
        "POST",
        &format!("/logged-models/{id}/params"),
        json!({"params": [{"key": "beta", "value": "1"}]}),
    );
    api.ok(
        "POST",
        "/runs/log-metric",
        json!({"run_id": run, "key": "acc", "value": 0.9, "timestamp": 1000, "step": 0,
               "model_id": id}),
    );
    let m = api.ok("GET", &format!("/logged-models/{id}"), json!({}))["model"].clone();
    assert_eq!(tag(&m["info"]["tags"], "team"), None, "{m}");
    assert_eq!(tag(&m["info"]["tags"], "mlflow.modelVersions"), Some("[]"));
    assert_eq!(column(&m["data"]["params"], "key"), vec!["alpha", "beta"]);
    let metric = &m["data"]["metrics"][0];
    assert_eq!(metric["key"], "acc", "{m}");
    assert_eq!(metric["value"], 0.9);
    assert_eq!(metric["model_id"], id.as_str());
    assert_eq!(metric["run_id"], run.as_str());

    // A second model, whose upload failed (status by number).
    let other = api.create_model(json!({"experiment_id": exp, "name": "other"}));
    let other_id = other["model_id"].as_str().unwrap().to_string();
    let m = api.ok(
        "PATCH",
        &format!("/logged-models/{other_id}"),
        json!({"status": 3}),
    );
    assert_eq!(m["model"]["info"]["status"], "LOGGED_MODEL_UPLOAD_FAILED");

    // Searches: a filter, an order, pages.
    let found = api.ok(
        "POST",
        "/logged-models/search",
        json!({"experiment_ids": [exp], "filter": "name = 'model'"}),
    );
    assert_eq!(column(&found["models"], "info").len(), 1, "{found}");
    assert_eq!(found["models"][0]["info"]["model_id"], id.as_str());
    let ordered = api.ok(
        "POST",
        "/logged-models/search",
        json!({"experiment_ids": [exp],
               "order_by": [{"field_name": "name", "ascending": false}]}),
    );
    let names: Vec<&str> = ordered["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["info"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["other", "model"]);
    let first = api.ok(
        "POST",
        "/logged-models/search",
        json!({"experiment_ids": [exp], "max_results": 1,
               "order_by": [{"field_name": "name"}]}),
    );
    assert_eq!(first["models"][0]["info"]["name"], "model");
    let token = first["next_page_token"].as_str().expect("a next page");
    let second = api.ok(
        "POST",
        "/logged-models/search",
        json!({"experiment_ids": [exp], "max_results": 1, "page_token": token,
               "order_by": [{"field_name": "name"}]}),
    );
    assert_eq!(second["models"][0]["info"]["name"], "other");
    let empty_exp = api.create_experiment("no-models");
    let none = api.ok(
        "POST",
        "/logged-models/search",
        json!({"experiment_ids": [empty_exp], "filter": "name = 'model'"}),
    );
    assert_eq!(none, json!({}));

    // Deleted models are gone.
    api.ok("DELETE", &format!("/logged-models/{other_id}"), json!({}));
    assert_error(
        api.call("GET", &format!("/logged-models/{other_id}"), json!({})),
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "",
    );
}

/// Creates registered model `name` with one version per entry of `sources`; the versions.
fn register(api: &Api, name: &str, sources: &[Value]) -> Vec<Value> {
    api.ok_as(
        Some(ALICE),
        "POST",
        "/registered-models/create",
        json!({ "name": name }),
    );
    sources
        .iter()
        .map(|body| {
            let mut body = body.clone();
            body["name"] = json!(name);
            api.ok_as(Some(ALICE), "POST", "/model-versions/create", body)["model_version"].clone()
        })
        .collect()
}

#[test]
fn registry_models_versions_stages_aliases_and_search() {
    let api = Api::start();
    let exp = api.create_experiment("registry");
    let run = api.create_run(&exp);
    let info = api.create_model(json!({"experiment_id": exp, "name": "model",
                                       "source_run_id": run}));
    let id = info["model_id"].as_str().unwrap().to_string();

    // Create, as alice; a duplicate name is refused.
    let m = api.ok_as(
        Some(ALICE),
        "POST",
        "/registered-models/create",
        json!({"name": "fraud", "description": "catches fraud",
               "tags": [{"key": "team", "value": "risk"}]}),
    )["registered_model"]
        .clone();
    assert_eq!(m["name"], "fraud");
    assert_eq!(m["description"], "catches fraud");
    assert_eq!(m["user_id"], "alice");
    assert_eq!(tag(&m["tags"], "team"), Some("risk"));
    assert!(m["creation_timestamp"].as_i64().unwrap() > 0);
    assert_error(
        api.call(
            "POST",
            "/registered-models/create",
            json!({"name": "fraud"}),
        ),
        400,
        "RESOURCE_ALREADY_EXISTS",
        "fraud",
    );

    // Two versions of the logged model, READY at once.
    let source = json!({"source": format!("models:/{id}"), "run_id": run, "model_id": id});
    let versions = [source.clone(), source.clone()]
        .iter()
        .map(|body| {
            let mut body = body.clone();
            body["name"] = json!("fraud");
            api.ok_as(Some(ALICE), "POST", "/model-versions/create", body)["model_version"].clone()
        })
        .collect::<Vec<_>>();
    assert_eq!(
        column(&Value::from(versions.clone()), "version"),
        ["1", "2"]
    );
    let v1 = &versions[0];
    assert_eq!(v1["status"], "READY");
    assert_eq!(v1["current_stage"], "None");
    assert_eq!(v1["source"], format!("models:/{id}"));
    assert_eq!(v1["run_id"], run.as_str());
    assert_eq!(v1["model_id"], id.as_str());
    let got = api.ok(
        "GET",
        "/model-versions/get",
        json!({"name": "fraud", "version": "1"}),
    );
    assert_eq!(got["model_version"]["model_id"], id.as_str());
    let uri = api.ok(
        "GET",
        "/model-versions/get-download-uri",
        json!({"name": "fraud", "version": "1"}),
    );
    assert_eq!(uri["artifact_uri"], info["artifact_uri"]);
    api.put_artifact(&format!("{exp}/models/{id}/artifacts/MLmodel"), b"x: 1\n");
    let (status, bytes) =
        api.get_bytes("/model-versions/get-artifact?name=fraud&version=1&path=MLmodel");
    assert_eq!((status, bytes.as_slice()), (200, &b"x: 1\n"[..]));

    // Stages: 1 to Production (the stage's case does not matter), then 2 to Production,
    // archiving 1.
    let v = api.ok_as(
        Some(ALICE),
        "POST",
        "/model-versions/transition-stage",
        json!({"name": "fraud", "version": "1", "stage": "production",
               "archive_existing_versions": false}),
    );
    assert_eq!(v["model_version"]["current_stage"], "Production");
    let v = api.ok_as(
        Some(ALICE),
        "POST",
        "/model-versions/transition-stage",
        json!({"name": "fraud", "version": "2", "stage": "Production",
               "archive_existing_versions": true}),
    );
    assert_eq!(v["model_version"]["current_stage"], "Production");
    let v1 = api.ok(
        "GET",
        "/model-versions/get",
        json!({"name": "fraud", "version": "1"}),
    );
    assert_eq!(v1["model_version"]["current_stage"], "Archived");
    let m = api.ok("GET", "/registered-models/get", json!({"name": "fraud"}));
    let latest: Vec<(String, String)> = m["registered_model"]["latest_versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["current_stage"].as_str().unwrap().to_string(),
                v["version"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(latest.contains(&("Production".into(), "2".into())), "{m}");
    assert!(latest.contains(&("Archived".into(), "1".into())), "{m}");
    let lv = api.ok(
        "POST",
        "/registered-models/get-latest-versions",
        json!({"name": "fraud", "stages": ["Production"]}),
    );
    assert_eq!(column(&lv["model_versions"], "version"), ["2"]);
    let lv = api.ok(
        "GET",
        "/registered-models/get-latest-versions",
        json!({"name": "fraud", "stages": ["Archived"]}),
    );
    assert_eq!(column(&lv["model_versions"], "version"), ["1"]);

    // Aliases: set, read through the version and the model, delete.
    api.ok_as(
        Some(ALICE),
        "POST",
        "/registered-models/alias",
        json!({"name": "fraud", "alias": "champion", "version": "1"}),
    );
    let v = api.ok(
        "GET",
        "/registered-models/alias",
        json!({"name": "fraud", "alias": "champion"}),
    );
    assert_eq!(v["model_version"]["version"], "1");
    assert_eq!(v["model_version"]["aliases"], json!(["champion"]));
    let m = api.ok("GET", "/registered-models/get", json!({"name": "fraud"}));
    assert_eq!(
        m["registered_model"]["aliases"],
        json!([{"alias": "champion", "version": "1"}])
    );
    api.ok_as(
        Some(ALICE),
        "DELETE",
        "/registered-models/alias",
        json!({"name": "fraud", "alias": "champion"}),
    );
    assert_error(
        api.call(
            "GET",
            "/registered-models/alias",
            json!({"name": "fraud", "alias": "champion"}),
        ),
        400,
        "INVALID_PARAMETER_VALUE",
        "",
    );

    // Tags and descriptions of versions and models.
    api.ok(
        "POST",
        "/model-versions/set-tag",
        json!({"name": "fraud", "version": "2", "key": "validated", "value": "yes"}),
    );
    let v = api.ok(
        "PATCH",
        "/model-versions/update",
        json!({"name": "fraud", "version": "2", "description": "second"}),
    );
    assert_eq!(v["model_version"]["description"], "second");
    assert_eq!(tag(&v["model_version"]["tags"], "validated"), Some("yes"));
    api.ok(
        "DELETE",
        "/model-versions/delete-tag",
        json!({"name": "fraud", "version": "2", "key": "validated"}),
    );
    let v = api.ok(
        "GET",
        "/model-versions/get",
        json!({"name": "fraud", "version": "2"}),
    );
    assert_eq!(tag(&v["model_version"]["tags"], "validated"), None);
    api.ok(
        "POST",
        "/registered-models/set-tag",
        json!({"name": "fraud", "key": "tier", "value": "1"}),
    );
    api.ok(
        "DELETE",
        "/registered-models/delete-tag",
        json!({"name": "fraud", "key": "team"}),
    );
    let m = api.ok(
        "PATCH",
        "/registered-models/update",
        json!({"name": "fraud", "description": "new"}),
    )["registered_model"]
        .clone();
    assert_eq!(m["description"], "new");
    assert_eq!(tag(&m["tags"], "tier"), Some("1"));
    assert_eq!(tag(&m["tags"], "team"), None);

    // Search: the client's prompt clause keeps models without the tag and drops prompts.
    register(&api, "churn", &[]);
    api.ok(
        "POST",
        "/registered-models/create",
        json!({"name": "my-prompt",
               "tags": [{"key": "mlflow.prompt.is_prompt", "value": "true"}]}),
    );
    let prompt_clause = "tag.`mlflow.prompt.is_prompt` != 'true'";
    let found = api.ok(
        "GET",
        "/registered-models/search",
        json!({ "filter": prompt_clause, "max_results": 100 }),
    );
    assert_eq!(
        column(&found["registered_models"], "name"),
        ["churn", "fraud"]
    );
    let found = api.ok(
        "GET",
        "/registered-models/search",
        json!({ "filter": format!("name LIKE 'fr%' AND {prompt_clause}") }),
    );
    assert_eq!(column(&found["registered_models"], "name"), ["fraud"]);
    let page = api.ok(
        "GET",
        "/registered-models/search",
        json!({ "filter": prompt_clause, "max_results": 1 }),
    );
    assert_eq!(column(&page["registered_models"], "name"), ["churn"]);
    let token = page["next_page_token"].as_str().expect("a next page");
    let page = api.ok(
        "POST",
        "/registered-models/search",
        json!({ "filter": prompt_clause, "max_results": 1, "page_token": token }),
    );
    assert_eq!(column(&page["registered_models"], "name"), ["fraud"]);
    let versions = api.ok(
        "GET",
        "/model-versions/search",
        json!({"filter": "name='fraud'", "max_results": 10000}),
    );
    let mut numbers = column(&versions["model_versions"], "version");
    numbers.sort();
    assert_eq!(numbers, ["1", "2"]);

    // Rename: versions follow; the old name is gone.
    let m = api.ok_as(
        Some(ALICE),
        "POST",
        "/registered-models/rename",
        json!({"name": "fraud", "new_name": "fraud-v2"}),
    );
    assert_eq!(m["registered_model"]["name"], "fraud-v2");
    let v = api.ok(
        "GET",
        "/model-versions/get",
        json!({"name": "fraud-v2", "version": "1"}),
    );
    assert_eq!(v["model_version"]["name"], "fraud-v2");
    assert_error(
        api.call("GET", "/registered-models/get", json!({"name": "fraud"})),
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "fraud",
    );

    // The history of the model, under both names, says who did what.
    let (status, events) = api.quiver(None, "GET", "/registry-events", json!({"name": "fraud-v2"}));
    assert_eq!(status, 200, "{events}");
    let actions = column(&events["events"], "action");
    for action in [
        "create_registered_model",
        "create_model_version",
        "transition_stage",
        "set_alias",
        "delete_alias",
        "rename_registered_model",
    ] {
        assert!(actions.iter().any(|a| a == action), "{action}: {events}");
    }
    let first = &events["events"][0];
    assert_eq!(first["action"], "create_registered_model");
    assert_eq!(first["user_id"], "alice");
    assert_eq!(first["model_name"], "fraud");
    let seqs: Vec<i64> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");

    // Deletes: a version, then the model.
    api.ok(
        "DELETE",
        "/model-versions/delete",
        json!({"name": "fraud-v2", "version": "2"}),
    );
    assert_error(
        api.call(
            "GET",
            "/model-versions/get",
            json!({"name": "fraud-v2", "version": "2"}),
        ),
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "",
    );
    api.ok(
        "DELETE",
        "/registered-models/delete",
        json!({"name": "fraud-v2"}),
    );
    assert_error(
        api.call("GET", "/registered-models/get", json!({"name": "fraud-v2"})),
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "",
    );
}

#[test]
fn deployments_guard_what_they_serve() {
    let api = Api::start();
    let run = api.create_run("0");
    register(
        &api,
        "svc",
        &[
            json!({"source": format!("runs:/{run}/model"), "run_id": run}),
            json!({"source": format!("runs:/{run}/model"), "run_id": run}),
        ],
    );

    // A deployment of version 1, as bob.
    let (status, d) = api.quiver(
        Some(BOB),
        "POST",
        "/deployments",
        json!({"name": "prod-eu", "model_name": "svc", "version": "1",
               "target": "k8s/prod-eu", "description": "EU traffic"}),
    );
    assert_eq!(status, 200, "{d}");
    let d = &d["deployment"];
    assert_eq!(d["name"], "prod-eu");
    assert_eq!(d["model_name"], "svc");
    assert_eq!(d["version"], "1");
    assert_eq!(d["resolved_version"], "1");
    assert_eq!(d["target"], "k8s/prod-eu");
    assert_eq!(d["description"], "EU traffic");
    assert_eq!(d["user_id"], "bob");
    assert!(d.get("alias").is_none(), "{d}");
    assert!(d["creation_timestamp"].as_i64().unwrap() > 0);
    let (status, one) = api.quiver(None, "GET", "/deployments/prod-eu", json!({}));
    assert_eq!(status, 200, "{one}");
    assert_eq!(&one["deployment"], d);

    // The version, its model and the run that produced it cannot be deleted while deployed.
    assert_error(
        api.call(
            "DELETE",
            "/model-versions/delete",
            json!({"name": "svc", "version": "1"}),
        ),
        400,
        "INVALID_STATE",
        "prod-eu",
    );
    assert_error(
        api.call(
            "DELETE",
            "/registered-models/delete",
            json!({"name": "svc"}),
        ),
        400,
        "INVALID_STATE",
        "prod-eu",
    );
    // Another version can go.
    api.ok(
        "DELETE",
        "/model-versions/delete",
        json!({"name": "svc", "version": "2"}),
    );

    // A deployment of an alias follows it; the alias cannot be deleted while deployed.
    api.ok(
        "POST",
        "/registered-models/alias",
        json!({"name": "svc", "alias": "champion", "version": "1"}),
    );
    let (status, canary) = api.quiver(
        Some(BOB),
        "POST",
        "/deployments",
        json!({"name": "canary", "model_name": "svc", "alias": "champion",
               "target": "sagemaker:svc"}),
    );
    assert_eq!(status, 200, "{canary}");
    assert_eq!(canary["deployment"]["alias"], "champion");
    assert_eq!(canary["deployment"]["resolved_version"], "1");
    assert!(canary["deployment"].get("version").is_none(), "{canary}");
    assert_error(
        api.call(
            "DELETE",
            "/registered-models/alias",
            json!({"name": "svc", "alias": "champion"}),
        ),
        400,
        "INVALID_STATE",
        "canary",
    );
    let (status, all) = api.quiver(None, "GET", "/deployments", json!({}));
    assert_eq!(status, 200, "{all}");
    assert_eq!(column(&all["deployments"], "name"), ["canary", "prod-eu"]);

    // Bad deployments.
    let deploy = |body: Value| api.quiver(None, "POST", "/deployments", body);
    assert_error(
        deploy(json!({"name": "x", "model_name": "svc", "version": "1"})),
        400,
        "INVALID_PARAMETER_VALUE",
        "Missing value for required parameter 'target'",
    );
    assert_error(
        deploy(json!({"model_name": "svc", "version": "1", "target": "t"})),
        400,
        "INVALID_PARAMETER_VALUE",
        "Missing value for required parameter 'name'",
    );
    assert_error(
        deploy(
            json!({"name": "x", "model_name": "svc", "version": "1", "alias": "champion",
                      "target": "t"}),
        ),
        400,
        "INVALID_PARAMETER_VALUE",
        "",
    );
    assert_error(
        deploy(json!({"name": "x", "model_name": "nope", "version": "1", "target": "t"})),
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "",
    );
    assert_error(
        deploy(json!({"name": "prod-eu", "model_name": "svc", "version": "1", "target": "t"})),
        400,
        "RESOURCE_ALREADY_EXISTS",
        "prod-eu",
    );
    assert_error(
        api.quiver(None, "GET", "/deployments/nope", json!({})),
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "",
    );

    // Once the deployments are gone, so can the version be.
    for name in ["prod-eu", "canary"] {
        let (status, body) = api.quiver(
            Some(BOB),
            "DELETE",
            &format!("/deployments/{name}"),
            json!({}),
        );
        assert_eq!((status, body), (200, json!({})));
    }
    let (status, all) = api.quiver(None, "GET", "/deployments", json!({}));
    assert_eq!((status, all), (200, json!({"deployments": []})));
    api.ok(
        "DELETE",
        "/model-versions/delete",
        json!({"name": "svc", "version": "1"}),
    );

    // The history keeps the deployments and who made them.
    let (status, events) = api.quiver(None, "GET", "/registry-events", json!({}));
    assert_eq!(status, 200, "{events}");
    let by_bob: Vec<(String, String)> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["user_id"] == "bob")
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["key"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    for expected in [
        ("create_deployment", "prod-eu"),
        ("create_deployment", "canary"),
        ("delete_deployment", "prod-eu"),
        ("delete_deployment", "canary"),
    ] {
        assert!(
            by_bob
                .iter()
                .any(|(a, k)| a == expected.0 && k == expected.1),
            "{expected:?}: {events}"
        );
    }
}

#[test]
fn bad_model_requests_are_400s_in_mlflow_format() {
    let api = Api::start();
    let exp = api.create_experiment("errors");
    let run = api.create_run(&exp);
    register(
        &api,
        "good",
        &[json!({"source": format!("runs:/{run}/model")})],
    );
    let missing = "Missing value for required parameter";
    let cases: Vec<(&str, &str, Value, u16, &str, String)> = vec![
        // Registry: required fields, ranges, values the store refuses.
        (
            "POST",
            "/registered-models/create",
            json!({}),
            400,
            "INVALID_PARAMETER_VALUE",
            format!("{missing} 'name'"),
        ),
        (
            "GET",
            "/registered-models/get",
            json!({}),
            400,
            "INVALID_PARAMETER_VALUE",
            format!("{missing} 'name'"),
        ),
        (
            "GET",
            "/registered-models/get",
            json!({"name": "nope"}),
            404,
            "RESOURCE_DOES_NOT_EXIST",
            String::new(),
        ),
        (
            "POST",
            "/registered-models/create",
            json!({"name": "a/b"}),
            400,
            "INVALID_PARAMETER_VALUE",
            String::new(),
        ),
        (
            "POST",
            "/registered-models/rename",
            json!({"name": "good"}),
            400,
            "INVALID_PARAMETER_VALUE",
            format!("{missing} 'new_name'"),
        ),
        (
            "DELETE",
            "/registered-models/delete",
            json!({}),
            400,
            "INVALID_PARAMETER_VALUE",
            format!("{missing} 'name'"),
        ),
        (
            "POST",
            "/registered-models/set-tag",
            json!({"name": "good", "key": "k", "value": 5}),
            400,
            "INVALID_PARAMETER_VALUE",
            "Invalid value 5 for parameter 'value' supplied".to_string(),
        ),
        (
            "GET",
            "/registered-models/search",
            json!({"max_results": 1001}),
            400,
            "INVALID_PARAMETER_VALUE",
            "1001".into(),
        ),
        (
            "GET",
            "/registered-models/search",
            json!({"max_results": "many"}),
            400,
            "INVALID_PARAMETER_VALUE",
            "max_results".into(),
        ),
        (
            "GET",
            "/registered-models/search",
            json!({"filter": "name = 'a' OR name = 'b'"}),
            400,
            "INVALID_PARAMETER_VALUE",
            String::new(),
        ),
        (
            "GET",
            "/model-versions/search",
            json!({"max_results": 200_001}),
            400,
            "INVALID_PARAMETER_VALUE",
            "200001".into(),
        ),
        (
            "POST",
            "/model-versions/create",
            json!({"name": "good"}),
            400,
            "INVALID_PARAMETER_VALUE",
            format!("{missing} 'source'"),
        ),
        (
            "POST",
            "/model-versions/create",
            json!({"name": "nope", "source": "s3://b/m"}),
            404,
            "RESOURCE_DOES_NOT_EXIST",
            String::new(),
        ),
        (
            "GET",
            "/model-versions/get",
            json!({"name": "good"}),
            400,
            "INVALID_PARAMETER_VALUE",
            format!("{missing} 'version'"),
        ),
        (
            "GET",
            "/model-versions/get",
            json!({"name": "good", "version": "9"}),
            404,
            "RESOURCE_DOES_NOT_EXIST",
            String::new(),
        ),
        (
            "POST",
            "/model-versions/transition-stage",
            json!({"name": "good", "version": "1", "stage": "Bogus",
                "archive_existing_versions": false}),
            400,
            "INVALID_PARAMETER_VALUE",
            String::new(),
        ),
        (
            "POST",
            "/model-versions/transition-stage",
            json!({"name": "good", "version": "1", "stage": "Staging",
                "archive_existing_versions": "maybe"}),
            400,
            "INVALID_PARAMETER_VALUE",
            "archive_existing_versions".into(),
        ),
        (
            "POST",
            "/registered-models/alias",
            json!({"name": "good", "alias": "latest", "version": "1"}),
            400,
            "INVALID_PARAMETER_VALUE",
            String::new(),
        ),
        (
            "POST",
            "/registered-models/alias",
            json!({"name": "good", "alias": "a"}),
            400,
            "INVALID_PARAMETER_VALUE",
            format!("{missing} 'version'"),
        ),
        // Logged models and run outputs.
        (
            "POST",
            "/logged-models",
            json!({"name": "m"}),
            400,
            "INVALID_PARAMETER_VALUE",
            format!("{missing} 'experiment_id'"),
        ),
        (
            "POST",
            "/logged-models",
            json!({"experiment_id": "424242"}),
            404,
            "RESOURCE_DOES_NOT_EXIST",
            String::new(),
        ),
        (
            "GET",
            "/logged-models/m-00000000000000000000000000000000",
            json!({}),
            404,
            "RESOURCE_DOES_NOT_EXIST",
            String::new(),
        ),
        (
            "POST",
            "/logged-models/search",
            json!({"experiment_ids": [exp], "order_by": ["name DESC"]}),
            400,
            "INVALID_PARAMETER_VALUE",
            "order_by".into(),
        ),
        (
            "POST",
            "/logged-models/search",
            json!({"experiment_ids": [exp], "order_by": [{"ascending": true}]}),
            400,
            "INVALID_PARAMETER_VALUE",
            format!("{missing} 'order_by[0].field_name'"),
        ),
        (
            "POST",
            "/runs/outputs",
            json!({"run_id": run}),
            400,
            "INVALID_PARAMETER_VALUE",
            format!("{missing} 'models'"),
        ),
        (
            "POST",
            "/runs/outputs",
            json!({"run_id": run, "models": [{"step": 1}]}),
            400,
            "INVALID_PARAMETER_VALUE",
            format!("{missing} 'models[0].model_id'"),
        ),
        (
            "POST",
            "/runs/log-inputs",
            json!({"run_id": run, "models": [{}]}),
            400,
            "INVALID_PARAMETER_VALUE",
            format!("{missing} 'models[0].model_id'"),
        ),
    ];
    for (method, path, body, status, code, phrase) in cases {
        let answer = api.call(method, path, body.clone());
        assert!(answer.0 < 500, "{method} {path} {body}: {answer:?}");
        let (got, resp) = answer;
        assert_eq!(
            (got, resp["error_code"].as_str()),
            (status, Some(code)),
            "{method} {path} {body}: {resp}"
        );
        let message = resp["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&phrase),
            "{method} {path}: {message:?} lacks {phrase:?}"
        );
    }

    // A logged model being finalized with a status that is not one.
    let info = api.create_model(json!({"experiment_id": exp}));
    let id = info["model_id"].as_str().unwrap();
    for status in [json!("READY"), json!(0), json!({})] {
        assert_error(
            api.call(
                "PATCH",
                &format!("/logged-models/{id}"),
                json!({ "status": status }),
            ),
            400,
            "INVALID_PARAMETER_VALUE",
            "status",
        );
    }

    // A DELETE body must be JSON; without a body its fields may come in the query string.
    let url = api
        .server
        .api("/api/2.0/mlflow/registered-models/delete-tag");
    let mut r = api
        .agent
        .delete(&url)
        .force_send_body()
        .content_type("text/plain")
        .send(r#"{"name": "good", "key": "k"}"#)
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.body_mut().read_json().unwrap();
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("Content-Type must be one of"));
    let mut r = api
        .agent
        .delete(&format!("{url}?name=good&key=nope"))
        .call()
        .unwrap();
    let body: Value = r.body_mut().read_json().unwrap();
    assert!(r.status() == 200 || r.status() == 404, "{body}");

    // Wrong methods and unknown routes answer in MLflow's format too.
    let (status, body) = api.call("POST", "/registered-models/get", json!({"name": "good"}));
    assert_eq!(
        (status, body["error_code"].as_str()),
        (405, Some("ENDPOINT_NOT_FOUND"))
    );
    let (status, body) = api.call("GET", "/logged-models/search", json!({}));
    assert_eq!(
        (status, body["error_code"].as_str()),
        (405, Some("ENDPOINT_NOT_FOUND"))
    );
}
