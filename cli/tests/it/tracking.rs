//! The tracking REST API over HTTP against the real binary: experiments, runs, metrics, search,
//! and MLflow's wire conventions (content type, repeated query keys, number coercions, errors).

use serde_json::{json, Value};

use crate::{agent, TestServer};

/// A client of one test server that answers `(status, JSON body)`.
struct Api {
    server: TestServer,
    agent: ureq::Agent,
}

impl Api {
    fn start() -> Api {
        Api {
            server: TestServer::start(),
            agent: agent(),
        }
    }

    /// `POST /api/2.0/mlflow<path>` with a JSON body.
    fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.post_raw(path, &body.to_string())
    }

    fn post_raw(&self, path: &str, body: &str) -> (u16, Value) {
        let mut r = self
            .agent
            .post(&self.server.api(&format!("/api/2.0/mlflow{path}")))
            .content_type("application/json")
            .send(body)
            .unwrap();
        (r.status().as_u16(), r.body_mut().read_json().unwrap())
    }

    /// `GET <full path and query>`.
    fn get_url(&self, path_and_query: &str) -> (u16, Value) {
        let mut r = self
            .agent
            .get(&self.server.api(path_and_query))
            .call()
            .unwrap();
        (r.status().as_u16(), r.body_mut().read_json().unwrap())
    }

    /// `GET /api/2.0/mlflow<path_and_query>`.
    fn get(&self, path_and_query: &str) -> (u16, Value) {
        self.get_url(&format!("/api/2.0/mlflow{path_and_query}"))
    }

    /// A POST that must succeed; its body.
    fn ok(&self, path: &str, body: Value) -> Value {
        let (status, resp) = self.post(path, body.clone());
        assert_eq!(status, 200, "POST {path} {body}: {resp}");
        resp
    }

    fn create_experiment(&self, name: &str) -> String {
        let r = self.ok("/experiments/create", json!({ "name": name }));
        r["experiment_id"].as_str().unwrap().to_string()
    }

    fn create_run(&self, experiment_id: &str, body: Value) -> Value {
        let mut body = body;
        body["experiment_id"] = json!(experiment_id);
        self.ok("/runs/create", body)["run"].clone()
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

fn names(experiments: &Value) -> Vec<String> {
    experiments
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e["name"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn experiments_lifecycle() {
    let api = Api::start();
    let r = api.ok(
        "/experiments/create",
        json!({"name": "exp-a", "tags": [{"key": "team", "value": "ml"}]}),
    );
    let id = r["experiment_id"].as_str().unwrap().to_string();
    assert_ne!(id, "0");

    let (status, r) = api.get(&format!("/experiments/get?experiment_id={id}"));
    assert_eq!(status, 200);
    let e = &r["experiment"];
    assert_eq!(e["experiment_id"], id.as_str());
    assert_eq!(e["name"], "exp-a");
    assert_eq!(e["lifecycle_stage"], "active");
    assert_eq!(e["artifact_location"], format!("mlflow-artifacts:/{id}"));
    assert_eq!(e["tags"], json!([{"key": "team", "value": "ml"}]));
    assert!(e["creation_time"].as_i64().unwrap() > 0);

    // The same answers under /ajax-api, and by name; the Default experiment exists.
    let (status, r) =
        api.get_url("/ajax-api/2.0/mlflow/experiments/get-by-name?experiment_name=exp-a");
    assert_eq!(status, 200);
    assert_eq!(r["experiment"]["experiment_id"], id.as_str());
    let (_, r) = api.get("/experiments/get?experiment_id=0");
    assert_eq!(r["experiment"]["name"], "Default");

    assert_error(
        api.post("/experiments/create", json!({"name": "exp-a"})),
        400,
        "RESOURCE_ALREADY_EXISTS",
        "already exists",
    );
    assert_error(
        api.post("/experiments/create", json!({})),
        400,
        "INVALID_PARAMETER_VALUE",
        "Missing value for required parameter 'name'",
    );
    assert_error(
        api.get("/experiments/get?experiment_id=999"),
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "No Experiment with id=999 exists",
    );
    assert_error(
        api.get("/experiments/get?experiment_id=abc"),
        400,
        "INVALID_PARAMETER_VALUE",
        "abc",
    );
    assert_error(
        api.get("/experiments/get"),
        400,
        "INVALID_PARAMETER_VALUE",
        "Missing value for required parameter 'experiment_id'",
    );
    assert_error(
        api.get("/experiments/get-by-name?experiment_name=nope"),
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "Could not find experiment with name 'nope'",
    );

    // Rename, tags.
    api.ok(
        "/experiments/update",
        json!({"experiment_id": id, "new_name": "exp-b"}),
    );
    assert_error(
        api.post("/experiments/update", json!({"experiment_id": id})),
        400,
        "INVALID_PARAMETER_VALUE",
        "Missing value for required parameter 'new_name'",
    );
    api.ok(
        "/experiments/set-experiment-tag",
        json!({"experiment_id": id, "key": "stage", "value": "dev"}),
    );
    api.ok(
        "/experiments/delete-experiment-tag",
        json!({"experiment_id": id, "key": "team"}),
    );
    let (_, r) = api.get("/experiments/get-by-name?experiment_name=exp-b");
    assert_eq!(
        r["experiment"]["tags"],
        json!([{"key": "stage", "value": "dev"}])
    );
    assert_error(
        api.post(
            "/experiments/delete-experiment-tag",
            json!({"experiment_id": id, "key": "team"}),
        ),
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "No tag with name: team",
    );

    // Delete hides it from default searches; the name stays taken; restore brings it back.
    let run = api.create_run(&id, json!({}));
    let run_id = run["info"]["run_id"].as_str().unwrap().to_string();
    assert_eq!(
        api.ok("/experiments/delete", json!({"experiment_id": id})),
        json!({})
    );
    let (_, r) = api.get(&format!("/experiments/get?experiment_id={id}"));
    assert_eq!(r["experiment"]["lifecycle_stage"], "deleted");
    let (_, r) = api.get(&format!("/runs/get?run_id={run_id}"));
    assert_eq!(r["run"]["info"]["lifecycle_stage"], "deleted");
    let r = api.ok("/experiments/search", json!({"max_results": 10}));
    assert_eq!(names(&r["experiments"]), vec!["Default"]);
    let r = api.ok(
        "/experiments/search",
        json!({"max_results": 10, "view_type": "DELETED_ONLY"}),
    );
    assert_eq!(names(&r["experiments"]), vec!["exp-b"]);
    assert_error(
        api.post("/experiments/create", json!({"name": "exp-b"})),
        400,
        "RESOURCE_ALREADY_EXISTS",
        "exp-b",
    );
    assert_error(
        api.post("/runs/create", json!({"experiment_id": id})),
        400,
        "INVALID_PARAMETER_VALUE",
        "must be in the 'active' state",
    );
    api.ok("/experiments/restore", json!({"experiment_id": id}));
    let (_, r) = api.get(&format!("/runs/get?run_id={run_id}"));
    assert_eq!(r["run"]["info"]["lifecycle_stage"], "active");
    assert_error(
        api.post("/experiments/restore", json!({"experiment_id": id})),
        400,
        "INVALID_PARAMETER_VALUE",
        "already active",
    );
    let r = api.ok(
        "/experiments/search",
        json!({"max_results": 10, "view_type": "ALL"}),
    );
    assert_eq!(r["experiments"].as_array().unwrap().len(), 2);
}

#[test]
fn experiments_search_filters_orders_and_pages() {
    let api = Api::start();
    for name in ["alpha", "alphabet", "Alpine", "beta"] {
        api.create_experiment(name);
    }
    let beta = api.ok(
        "/experiments/search",
        json!({"max_results": 5, "filter": "name = 'beta'"}),
    )["experiments"][0]["experiment_id"]
        .clone();
    api.ok(
        "/experiments/set-experiment-tag",
        json!({"experiment_id": beta, "key": "k", "value": "vaLue"}),
    );

    let search = |filter: &str| {
        let r = api.ok(
            "/experiments/search",
            json!({"max_results": 100, "filter": filter, "order_by": ["name ASC"]}),
        );
        names(&r["experiments"])
    };
    assert_eq!(search("name = 'alpha'"), vec!["alpha"]);
    assert_eq!(search("name LIKE 'al%'"), vec!["alpha", "alphabet"]);
    assert_eq!(
        search("name ILIKE 'al%'"),
        vec!["Alpine", "alpha", "alphabet"]
    );
    assert_eq!(
        search("name != 'alpha' AND name ILIKE '%lp%'"),
        vec!["Alpine", "alphabet"]
    );
    assert_eq!(search("tags.k = 'vaLue'"), vec!["beta"]);
    assert_eq!(search("tag.`k` ILIKE '%alu%'"), vec!["beta"]);
    assert_eq!(search("tags.k != 'x'"), vec!["beta"], "no tag: != is false");
    assert_eq!(
        search("attribute.name = \"beta\" and tags.k = 'vaLue'"),
        vec!["beta"]
    );
    assert!(search("name = 'alpha' AND tags.k = 'vaLue'").is_empty());

    for bad in [
        "name = 'alpha' OR name = 'beta'",
        "metrics.x > 1",
        "owner = 'me'",
        "name > 'a'",
        "name = alpha",
        "name = 'unterminated",
    ] {
        assert_error(
            api.post(
                "/experiments/search",
                json!({"max_results": 10, "filter": bad}),
            ),
            400,
            "INVALID_PARAMETER_VALUE",
            "",
        );
    }

    // max_results is required and bounded.
    assert_error(
        api.post("/experiments/search", json!({})),
        400,
        "INVALID_PARAMETER_VALUE",
        "Invalid value 0 for parameter 'max_results' supplied",
    );
    assert_error(
        api.post("/experiments/search", json!({"max_results": 123456789})),
        400,
        "INVALID_PARAMETER_VALUE",
        "Invalid value 123456789 for parameter 'max_results' supplied",
    );

    // Default order: creation time descending, then id ascending.
    let r = api.ok("/experiments/search", json!({"max_results": 100}));
    let exps = r["experiments"].as_array().unwrap();
    assert_eq!(exps.len(), 5);
    let keys: Vec<(i64, u64)> = exps
        .iter()
        .map(|e| {
            (
                e["creation_time"].as_i64().unwrap(),
                e["experiment_id"].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    assert_eq!(keys, sorted);

    // Pages of 2 through GET with repeated order_by keys, following tokens.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let (status, r) = api.get(&format!(
            "/experiments/search?max_results=2&order_by=name+DESC&order_by=experiment_id&page_token={token}"
        ));
        assert_eq!(status, 200, "{r}");
        seen.extend(names(&r["experiments"]));
        match r["next_page_token"].as_str() {
            Some(t) => token = t.to_string(),
            None => break,
        }
    }
    assert_eq!(seen, vec!["beta", "alphabet", "alpha", "Default", "Alpine"]);
    assert_error(
        api.get("/experiments/search?max_results=2&page_token=garbage!"),
        400,
        "INVALID_PARAMETER_VALUE",
        "Invalid page token",
    );
}

#[test]
fn runs_lifecycle_tags_and_params() {
    let api = Api::start();
    let exp = api.create_experiment("runs");
    let run = api.create_run(
        &exp,
        json!({"user_id": "alice", "run_name": "r1", "start_time": 1_700_000_000_000i64,
               "tags": [{"key": "mlflow.source.type", "value": "LOCAL"}]}),
    );
    let info = &run["info"];
    let id = info["run_id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 32);
    assert_eq!(info["run_uuid"], id.as_str());
    assert_eq!(info["run_name"], "r1");
    assert_eq!(info["experiment_id"], exp.as_str());
    assert_eq!(info["user_id"], "alice");
    assert_eq!(info["status"], "RUNNING");
    assert_eq!(info["start_time"], 1_700_000_000_000i64);
    assert_eq!(info["lifecycle_stage"], "active");
    assert_eq!(
        info["artifact_uri"],
        format!("mlflow-artifacts:/{exp}/{id}/artifacts")
    );
    assert!(info.get("end_time").is_none(), "unset fields are omitted");
    assert_eq!(run["inputs"], json!({}));
    let tags = run["data"]["tags"].as_array().unwrap();
    assert!(tags.contains(&json!({"key": "mlflow.runName", "value": "r1"})));

    // Both spellings of the id; the default experiment; a generated name.
    let (_, by_uuid) = api.get(&format!("/runs/get?run_uuid={id}"));
    let (_, by_id) = api.get(&format!("/runs/get?run_id={id}&run_uuid={id}"));
    assert_eq!(by_uuid, by_id);
    let r = api.ok("/runs/create", json!({}))["run"].clone();
    assert_eq!(r["info"]["experiment_id"], "0");
    assert!(!r["info"]["run_name"].as_str().unwrap().is_empty());
    assert_error(
        api.get("/runs/get?run_id=doesnotexist"),
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "Run with id=doesnotexist not found",
    );
    assert_error(
        api.get("/runs/get"),
        400,
        "INVALID_PARAMETER_VALUE",
        "Missing value for required parameter 'run_id'",
    );

    // Update: status by name (or number), end time, name.
    let r = api.ok(
        "/runs/update",
        json!({"run_id": id, "run_uuid": id, "status": "FINISHED", "end_time": "1700000005000",
               "run_name": "r1-final"}),
    );
    let ri = &r["run_info"];
    assert_eq!(ri["status"], "FINISHED");
    assert_eq!(ri["end_time"], 1_700_000_005_000i64);
    assert_eq!(ri["run_name"], "r1-final");
    assert_eq!(ri["run_uuid"], id.as_str());
    let r = api.ok("/runs/update", json!({"run_id": id, "status": 4}));
    assert_eq!(r["run_info"]["status"], "FAILED");
    assert_error(
        api.post("/runs/update", json!({"run_id": id, "status": "DONE"})),
        400,
        "INVALID_PARAMETER_VALUE",
        "Invalid value \"DONE\" for parameter 'status' supplied",
    );

    // Tags are upserts; delete-tag needs the tag.
    api.ok(
        "/runs/set-tag",
        json!({"run_id": id, "key": "t", "value": "1"}),
    );
    api.ok(
        "/runs/set-tag",
        json!({"run_uuid": id, "key": "t", "value": "2"}),
    );
    api.ok(
        "/runs/set-tag",
        json!({"run_id": id, "key": "gone", "value": "x"}),
    );
    api.ok("/runs/delete-tag", json!({"run_id": id, "key": "gone"}));
    assert_error(
        api.post("/runs/delete-tag", json!({"run_id": id, "key": "fakeTag"})),
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "No tag with name: fakeTag",
    );
    assert_error(
        api.post("/runs/set-tag", json!({"run_id": id, "value": "x"})),
        400,
        "INVALID_PARAMETER_VALUE",
        "Missing value for required parameter 'key'",
    );

    // Params are write-once.
    api.ok(
        "/runs/log-parameter",
        json!({"run_id": id, "key": "lr", "value": "0.01"}),
    );
    api.ok(
        "/runs/log-parameter",
        json!({"run_id": id, "key": "lr", "value": "0.01"}),
    );
    assert_error(
        api.post(
            "/runs/log-parameter",
            json!({"run_id": id, "key": "lr", "value": "0.1"}),
        ),
        400,
        "INVALID_PARAMETER_VALUE",
        "Changing param values is not allowed",
    );
    assert_error(
        api.post(
            "/runs/log-parameter",
            json!({"run_id": id, "key": "x".repeat(251), "value": "v"}),
        ),
        400,
        "INVALID_PARAMETER_VALUE",
        "exceeds the maximum length of 250 characters",
    );
    let (_, r) = api.get(&format!("/runs/get?run_id={id}"));
    let data = &r["run"]["data"];
    assert_eq!(data["params"], json!([{"key": "lr", "value": "0.01"}]));
    let tags = data["tags"].as_array().unwrap();
    assert!(tags.contains(&json!({"key": "t", "value": "2"})));
    assert!(tags.contains(&json!({"key": "mlflow.runName", "value": "r1-final"})));
    assert!(!tags.iter().any(|t| t["key"] == "gone"));

    // A deleted run refuses writes but can be read and restored.
    assert_eq!(api.ok("/runs/delete", json!({"run_id": id})), json!({}));
    let (status, r) = api.get(&format!("/runs/get?run_id={id}"));
    assert_eq!(status, 200);
    assert_eq!(r["run"]["info"]["lifecycle_stage"], "deleted");
    for (path, body) in [
        (
            "/runs/set-tag",
            json!({"run_id": id, "key": "a", "value": "b"}),
        ),
        (
            "/runs/log-parameter",
            json!({"run_id": id, "key": "p", "value": "v"}),
        ),
        (
            "/runs/log-metric",
            json!({"run_id": id, "key": "m", "value": 1, "timestamp": 1}),
        ),
        ("/runs/update", json!({"run_id": id, "status": "FINISHED"})),
    ] {
        assert_error(
            api.post(path, body),
            400,
            "INVALID_PARAMETER_VALUE",
            &format!("The run {id} must be in the 'active' state. Current state is deleted."),
        );
    }
    api.ok("/runs/restore", json!({"run_id": id}));
    api.ok(
        "/runs/set-tag",
        json!({"run_id": id, "key": "a", "value": "b"}),
    );
    assert_error(
        api.post("/runs/delete", json!({"run_id": "nope"})),
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "Run with id=nope not found",
    );
}

#[test]
fn log_metric_coerces_numbers_and_special_values() {
    let api = Api::start();
    let id = api.create_run("0", json!({}))["info"]["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let log = |key: &str, value: Value, extra: Value| {
        let mut body = json!({"run_id": id, "run_uuid": id, "key": key, "value": value,
                              "timestamp": 1000});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        api.post("/runs/log-metric", body)
    };
    assert_eq!(log("nan", json!("NaN"), json!({})).0, 200);
    assert_eq!(log("inf", json!("Infinity"), json!({})).0, 200);
    assert_eq!(log("ninf", json!("-Infinity"), json!({})).0, 200);
    assert_eq!(
        log("str", json!("1.5"), json!({"timestamp": "2", "step": "3"})).0,
        200
    );
    assert_eq!(
        log(
            "ds",
            json!(0.25),
            json!({"dataset_name": "train", "dataset_digest": "abc",
                                        "model_id": "m-1"})
        )
        .0,
        200
    );
    assert_error(
        log("bad", json!("foo"), json!({})),
        400,
        "INVALID_PARAMETER_VALUE",
        "Invalid value \"foo\" for parameter 'value' supplied",
    );
    assert_error(
        log("bad", json!(1), json!({"step": "foo"})),
        400,
        "INVALID_PARAMETER_VALUE",
        "Invalid value \"foo\" for parameter 'step' supplied",
    );
    assert_error(
        api.post(
            "/runs/log-metric",
            json!({"run_id": id, "key": "m", "value": 1}),
        ),
        400,
        "INVALID_PARAMETER_VALUE",
        "Missing value for required parameter 'timestamp'",
    );
    assert_error(
        api.post(
            "/runs/log-metric",
            json!({"run_id": id, "key": "m", "timestamp": 1}),
        ),
        400,
        "INVALID_PARAMETER_VALUE",
        "Missing value for required parameter 'value'",
    );
    assert_error(
        api.post(
            "/runs/log-metric",
            json!({"key": "m", "value": 1, "timestamp": 1}),
        ),
        400,
        "INVALID_PARAMETER_VALUE",
        "Missing value for required parameter 'run_id'",
    );
    assert_error(
        log("bad", json!(1), json!({"timestamp": -1})),
        400,
        "INVALID_PARAMETER_VALUE",
        "timestamp",
    );
    assert_error(
        log("bad key!", json!(1), json!({})),
        400,
        "INVALID_PARAMETER_VALUE",
        "Names may only contain alphanumerics",
    );

    let (_, r) = api.get(&format!("/runs/get?run_id={id}"));
    let metrics = r["run"]["data"]["metrics"].as_array().unwrap();
    let value_of = |key: &str| {
        metrics
            .iter()
            .find(|m| m["key"] == key)
            .unwrap_or_else(|| panic!("{key} in {metrics:?}"))
            .clone()
    };
    assert_eq!(value_of("nan")["value"], "NaN");
    assert_eq!(value_of("inf")["value"], "Infinity");
    assert_eq!(value_of("ninf")["value"], "-Infinity");
    assert_eq!(
        value_of("str"),
        json!({"key": "str", "value": 1.5, "timestamp": 2, "step": 3})
    );
    assert_eq!(value_of("nan")["step"], 0, "step defaults to 0");

    let (_, r) = api.get(&format!("/metrics/get-history?run_id={id}&metric_key=ds"));
    assert_eq!(
        r,
        json!({"metrics": [{"key": "ds", "value": 0.25, "timestamp": 1000, "step": 0,
                            "model_id": "m-1", "dataset_name": "train",
                            "dataset_digest": "abc"}]})
    );
    let (_, r) = api.get(&format!(
        "/metrics/get-history?run_uuid={id}&metric_key=ninf"
    ));
    assert_eq!(r["metrics"][0]["value"], "-Infinity");
}

#[test]
fn log_batch_limits_and_messages() {
    let api = Api::start();
    let id = api.create_run("0", json!({}))["info"]["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = api.ok(
        "/runs/log-batch",
        json!({"run_id": id,
               "metrics": [{"key": "a", "value": 1, "timestamp": 10, "step": 1, "run_id": id},
                           {"key": "a", "value": "NaN", "timestamp": 11, "step": 2},
                           {"key": "b", "value": "2.5", "timestamp": "12",
                            "dataset_name": "d", "dataset_digest": "x"}],
               "params": [{"key": "p", "value": "1"}, {"key": "q"}],
               "tags": [{"key": "t", "value": "v"}]}),
    );
    assert_eq!(r, json!({}));
    let (_, r) = api.get(&format!("/runs/get?run_id={id}"));
    let data = &r["run"]["data"];
    assert_eq!(
        data["params"],
        json!([{"key": "p", "value": "1"}, {"key": "q", "value": ""}])
    );
    assert_eq!(data["metrics"].as_array().unwrap().len(), 2);

    assert_error(
        api.post(
            "/runs/log-batch",
            json!({"run_id": id, "metrics": [{"key": "a", "value": 1}]}),
        ),
        400,
        "INVALID_PARAMETER_VALUE",
        "Missing value for required parameter 'metrics[0].timestamp'",
    );
    assert_error(
        api.post(
            "/runs/log-batch",
            json!({"run_id": id, "metrics": [{"key": "a", "value": 1, "timestamp": 1},
                                             {"key": "a", "value": "x", "timestamp": 1}]}),
        ),
        400,
        "INVALID_PARAMETER_VALUE",
        "Invalid value \"x\" for parameter 'metrics[1].value' supplied",
    );
    assert_error(
        api.post(
            "/runs/log-batch",
            json!({"run_id": id, "tags": [{"value": "v"}]}),
        ),
        400,
        "INVALID_PARAMETER_VALUE",
        "Missing value for required parameter 'tags[0].key'",
    );
    let metrics: Vec<Value> = (0..1001)
        .map(|i| json!({"key": "m", "value": i, "timestamp": i}))
        .collect();
    assert_error(
        api.post("/runs/log-batch", json!({"run_id": id, "metrics": metrics})),
        400,
        "INVALID_PARAMETER_VALUE",
        "A batch logging request can contain at most 1000 metrics. Got 1001 metrics",
    );
    let params: Vec<Value> = (0..101)
        .map(|i| json!({"key": format!("p{i}"), "value": "v"}))
        .collect();
    assert_error(
        api.post("/runs/log-batch", json!({"run_id": id, "params": params})),
        400,
        "INVALID_PARAMETER_VALUE",
        "at most 100 params",
    );
    assert_error(
        api.post(
            "/runs/log-batch",
            json!({"run_id": id, "params": [{"key": "z", "value": "1"}, {"key": "z", "value": "2"}]}),
        ),
        400,
        "INVALID_PARAMETER_VALUE",
        "Duplicate parameter keys",
    );
    assert_error(
        api.post(
            "/runs/log-batch",
            json!({"run_id": id, "params": [{"key": "p", "value": "2"}]}),
        ),
        400,
        "INVALID_PARAMETER_VALUE",
        "Changing param values is not allowed",
    );
    // A body over 1 MB is refused whatever it holds; one just under is fine.
    let big = json!({"run_id": id, "tags": [{"key": "big", "value": "x".repeat(1_000_000)}]});
    assert_error(
        api.post("/runs/log-batch", big),
        400,
        "INVALID_PARAMETER_VALUE",
        "Batched logging API requests must be at most 1000000 bytes",
    );
    let fits = json!({"run_id": id, "tags": [{"key": "fits", "value": "x".repeat(900_000)}]});
    assert_eq!(api.post("/runs/log-batch", fits).0, 200);
    // Nothing of a refused batch was logged.
    let (_, r) = api.get(&format!("/metrics/get-history?run_id={id}&metric_key=m"));
    assert_eq!(r, json!({}));
}

#[test]
fn content_type_and_query_conventions() {
    let api = Api::start();
    let url = api.server.api("/api/2.0/mlflow/experiments/create");
    let mut r = api
        .agent
        .post(&url)
        .content_type("text/plain")
        .send(r#"{"name": "x"}"#)
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.body_mut().read_json().unwrap();
    assert_eq!(body["error_code"], "INVALID_PARAMETER_VALUE");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("Content-Type must be one of"));
    // With a charset parameter it is JSON all the same; camelCase names are accepted.
    let mut r = api
        .agent
        .post(&url)
        .content_type("application/json; charset=utf-8")
        .send(r#"{"name": "x", "artifactLocation": "file:///tmp/x"}"#)
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = r.body_mut().read_json::<Value>().unwrap()["experiment_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, r) = api.get(&format!("/experiments/get?experiment_id={id}"));
    assert_eq!(r["experiment"]["artifact_location"], "file:///tmp/x");
    // Malformed JSON is a 400, not a 500.
    let (status, body) = api.post_raw("/experiments/create", "{not json");
    assert_eq!(status, 400, "{body}");
    // A legacy client's JSON-in-a-string body.
    let (status, _) = api.post_raw(
        "/experiments/create",
        &json!(r#"{"name": "y"}"#).to_string(),
    );
    assert_eq!(status, 200);
    // Only GET on read routes.
    let r = api
        .agent
        .post(&api.server.api("/api/2.0/mlflow/runs/get"))
        .content_type("application/json")
        .send("{}")
        .unwrap();
    assert_eq!(r.status(), 405);
}

#[test]
fn log_inputs_records_datasets() {
    let api = Api::start();
    let id = api.create_run("0", json!({}))["info"]["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let dataset = json!({"name": "train_ds", "digest": "a5357541", "source_type": "code",
                         "source": "{\"tags\": {}}", "schema": "{}", "profile": "{\"n\": 3}"});
    let (_, model) = api.post("/logged-models", json!({"experiment_id": "0", "name": "m"}));
    let model_id = model["model"]["info"]["model_id"].as_str().unwrap();
    api.ok(
        "/runs/log-inputs",
        json!({"run_id": id,
               "datasets": [{"tags": [{"key": "mlflow.data.context", "value": "training"}],
                             "dataset": dataset}],
               "models": [{"model_id": model_id}]}),
    );
    let (_, r) = api.get(&format!("/runs/get?run_id={id}"));
    assert_eq!(
        r["run"]["inputs"]["dataset_inputs"],
        json!([{"tags": [{"key": "mlflow.data.context", "value": "training"}],
                "dataset": dataset}])
    );
    assert_eq!(
        r["run"]["inputs"]["model_inputs"],
        json!([{"model_id": model_id}])
    );
    // A model that does not exist is refused, and nothing of the request is recorded.
    let other = json!({"name": "other", "digest": "d2", "source_type": "code", "source": "s"});
    assert_error(
        api.post(
            "/runs/log-inputs",
            json!({"run_id": id, "datasets": [{"dataset": other}],
                   "models": [{"model_id": "m-nope"}]}),
        ),
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "Logged model with ID 'm-nope' not found",
    );
    let (_, r) = api.get(&format!("/runs/get?run_id={id}"));
    assert_eq!(
        r["run"]["inputs"]["dataset_inputs"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_error(
        api.post(
            "/runs/log-inputs",
            json!({"run_id": id, "datasets": [{"dataset": {"name": "n", "source_type": "code",
                                                           "source": "s"}}]}),
        ),
        400,
        "INVALID_PARAMETER_VALUE",
        "Missing value for required parameter 'datasets[0].dataset.digest'",
    );
    assert_error(
        api.post(
            "/runs/log-inputs",
            json!({"run_id": id, "datasets": [{"tags": []}]}),
        ),
        400,
        "INVALID_PARAMETER_VALUE",
        "Missing value for required parameter 'datasets[0].dataset'",
    );
}

#[test]
fn search_runs_filters_orders_and_pages() {
    let api = Api::start();
    let exp = api.create_experiment("search");
    let other = api.create_experiment("other");
    let mut ids = Vec::new();
    for i in 0..5i64 {
        let run = api.create_run(
            &exp,
            json!({"run_name": format!("run-{i}"), "start_time": 1000 + i}),
        );
        let id = run["info"]["run_id"].as_str().unwrap().to_string();
        api.ok(
            "/runs/log-batch",
            json!({"run_id": id,
                   "metrics": [{"key": "loss", "value": 1.0 / (i + 1) as f64, "timestamp": 1}],
                   "params": [{"key": "opt", "value": if i % 2 == 0 { "adam" } else { "sgd" }}],
                   "tags": [{"key": "mlflow.user", "value": format!("user{}", i % 3)}]}),
        );
        ids.push(id);
    }
    api.create_run(&other, json!({}));
    api.ok(
        "/runs/update",
        json!({"run_id": ids[4], "status": "FINISHED"}),
    );
    api.ok("/runs/delete", json!({"run_id": ids[3]}));

    let search = |body: Value| -> Vec<String> {
        let mut body = body;
        body["experiment_ids"] = json!([exp]);
        let r = api.ok("/runs/search", body);
        r["runs"]
            .as_array()
            .map(|runs| {
                runs.iter()
                    .map(|r| r["info"]["run_name"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    // Default: active runs, newest first.
    assert_eq!(search(json!({})), vec!["run-4", "run-2", "run-1", "run-0"]);
    assert_eq!(
        search(json!({"run_view_type": "DELETED_ONLY"})),
        vec!["run-3"]
    );
    assert_eq!(search(json!({"run_view_type": "ALL"})).len(), 5);
    assert_eq!(
        search(json!({"filter": "attributes.status = 'FINISHED'"})),
        vec!["run-4"]
    );
    assert_eq!(
        search(json!({"filter": "status != 'FINISHED'"})),
        vec!["run-2", "run-1", "run-0"]
    );
    assert_eq!(
        search(json!({"filter": "params.opt = 'adam'"})),
        vec!["run-4", "run-2", "run-0"]
    );
    assert_eq!(
        search(json!({"filter": "tags.`mlflow.user` = 'user1' and params.opt='sgd'"})),
        vec!["run-1"]
    );
    assert_eq!(
        search(json!({"filter": "metrics.loss < 0.3"})),
        vec!["run-4"]
    );
    assert_eq!(
        search(json!({"filter": "metrics.loss >= 0.5"})),
        vec!["run-1", "run-0"]
    );
    assert!(search(json!({"filter": "metrics.missing > 0"})).is_empty());
    assert_eq!(
        search(
            json!({"filter": "attributes.run_name LIKE 'run-%' AND tags.`mlflow.runName` = 'run-2'"})
        ),
        vec!["run-2"]
    );
    assert_eq!(
        search(json!({"filter": format!("attributes.run_id IN ('{}', '{}')", ids[0], ids[1])})),
        vec!["run-1", "run-0"]
    );
    assert_eq!(
        search(json!({"filter": "params.opt IS NULL"})),
        Vec::<String>::new()
    );
    assert_eq!(
        search(json!({"order_by": ["metrics.loss ASC"]})),
        vec!["run-4", "run-2", "run-1", "run-0"]
    );
    assert_eq!(
        search(json!({"order_by": ["metrics.loss DESC"]})),
        vec!["run-0", "run-1", "run-2", "run-4"]
    );
    assert_eq!(
        search(json!({"order_by": ["params.opt DESC", "start_time ASC"]})),
        vec!["run-1", "run-0", "run-2", "run-4"]
    );
    for bad in [
        "metrics.loss < 'abc'",
        "params.opt > 'a'",
        "attributes.owner = 'x'",
        "status = 'A' OR status = 'B'",
        "params.opt = adam",
    ] {
        assert_error(
            api.post(
                "/runs/search",
                json!({"experiment_ids": [exp], "filter": bad}),
            ),
            400,
            "INVALID_PARAMETER_VALUE",
            "",
        );
    }
    assert_error(
        api.post(
            "/runs/search",
            json!({"experiment_ids": [exp], "order_by": ["datasets.name"]}),
        ),
        400,
        "INVALID_PARAMETER_VALUE",
        "",
    );
    assert_error(
        api.post(
            "/runs/search",
            json!({"experiment_ids": [exp], "max_results": 50001}),
        ),
        400,
        "INVALID_PARAMETER_VALUE",
        "Invalid value 50001 for parameter 'max_results' supplied",
    );
    // No experiment ids: nothing, as an empty message.
    assert_eq!(api.ok("/runs/search", json!({})), json!({}));

    // Pages of 3 cover both experiments once each, in order.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut body = json!({"experiment_ids": [exp, other], "max_results": 3});
        if let Some(t) = &token {
            body["page_token"] = json!(t);
        }
        let r = api.ok("/runs/search", body);
        for run in r["runs"].as_array().unwrap() {
            seen.push(run["info"]["run_id"].as_str().unwrap().to_string());
        }
        match r["next_page_token"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
    assert_eq!(
        seen[1..],
        [
            ids[4].clone(),
            ids[2].clone(),
            ids[1].clone(),
            ids[0].clone()
        ]
    );
}

#[test]
fn metric_history_pages_with_tokens() {
    let api = Api::start();
    let id = api.create_run("0", json!({}))["info"]["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    // Out of order on purpose: history is in (timestamp, step, value) order.
    let metrics: Vec<Value> = (0..25)
        .rev()
        .map(|i| json!({"key": "loss", "value": i as f64 / 10.0, "timestamp": 100 + i, "step": i}))
        .collect();
    api.ok("/runs/log-batch", json!({"run_id": id, "metrics": metrics}));

    let mut steps = Vec::new();
    let mut pages = 0;
    let mut token = String::new();
    loop {
        let (status, r) = api.get(&format!(
            "/metrics/get-history?run_uuid={id}&run_id={id}&metric_key=loss&max_results=10&page_token={token}"
        ));
        assert_eq!(status, 200, "{r}");
        pages += 1;
        for m in r["metrics"].as_array().unwrap() {
            assert_eq!(m["key"], "loss");
            assert_eq!(
                m["timestamp"].as_i64().unwrap(),
                100 + m["step"].as_i64().unwrap()
            );
            steps.push(m["step"].as_i64().unwrap());
        }
        match r["next_page_token"].as_str() {
            Some(t) => token = t.to_string(),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(steps, (0..25).collect::<Vec<_>>());

    let (_, all) = api.get(&format!("/metrics/get-history?run_id={id}&metric_key=loss"));
    assert_eq!(all["metrics"].as_array().unwrap().len(), 25);
    assert!(all.get("next_page_token").is_none());
    assert_eq!(
        all["metrics"][3],
        json!({"key": "loss", "value": 0.3, "timestamp": 103, "step": 3})
    );

    // Unknown run or key: an empty answer, as MLflow.
    let (status, r) =
        api.get("/metrics/get-history?run_id=0123456789abcdef0123456789abcdef&metric_key=loss");
    assert_eq!((status, r), (200, json!({})));
    let (status, r) = api.get(&format!("/metrics/get-history?run_id={id}&metric_key=nope"));
    assert_eq!((status, r), (200, json!({})));
    assert_error(
        api.get(&format!("/metrics/get-history?run_id={id}")),
        400,
        "INVALID_PARAMETER_VALUE",
        "Missing value for required parameter 'metric_key'",
    );
    assert_error(
        api.get(&format!(
            "/metrics/get-history?run_id={id}&metric_key=loss&max_results=0"
        )),
        400,
        "INVALID_PARAMETER_VALUE",
        "max_results",
    );
    assert_error(
        api.get(&format!(
            "/metrics/get-history?run_id={id}&metric_key=loss&page_token=bogus"
        )),
        400,
        "INVALID_PARAMETER_VALUE",
        "Invalid page token",
    );
}

fn run_with_points(api: &Api, n: i64) -> String {
    let id = api.create_run("0", json!({}))["info"]["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let metrics: Vec<Value> = (0..n)
        .map(|s| json!({"key": "m", "value": s, "timestamp": 1000 + s, "step": s}))
        .collect();
    api.ok("/runs/log-batch", json!({"run_id": id, "metrics": metrics}));
    id
}

fn steps_of(r: &Value, run_id: &str) -> Vec<i64> {
    r["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["run_id"] == run_id)
        .map(|m| m["step"].as_i64().unwrap())
        .collect()
}

#[test]
fn bulk_interval_samples_each_run() {
    let api = Api::start();
    let a = run_with_points(&api, 10);
    let b = run_with_points(&api, 3);
    let (status, r) = api.get(&format!(
        "/metrics/get-history-bulk-interval?run_ids={a}&run_ids={b}&metric_key=m&max_results=5"
    ));
    assert_eq!(status, 200, "{r}");
    assert_eq!(steps_of(&r, &a), vec![0, 2, 4, 6, 9]);
    assert_eq!(steps_of(&r, &b), vec![0, 1, 2]);
    let first = &r["metrics"][0];
    assert_eq!(first.as_object().unwrap().len(), 5, "{first}");
    let run_order: Vec<&str> = r["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["run_id"].as_str().unwrap())
        .collect();
    let mut sorted = run_order.clone();
    sorted.sort();
    assert_eq!(run_order, sorted, "sorted by run");

    // Default max (2500) returns everything; a step range; the ajax prefix.
    let (_, r) = api.get_url(&format!(
        "/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval?run_ids={a}&metric_key=m"
    ));
    assert_eq!(steps_of(&r, &a), (0..10).collect::<Vec<_>>());
    let (_, r) = api.get(&format!(
        "/metrics/get-history-bulk-interval?run_ids={a}&metric_key=m&start_step=3&end_step=5"
    ));
    assert_eq!(steps_of(&r, &a), vec![3, 4, 5]);
    let (_, r) = api.get(&format!(
        "/metrics/get-history-bulk-interval?run_ids={a}&metric_key=other"
    ));
    assert_eq!(r, json!({}));

    let bad = [
        (
            format!("run_ids={a}&metric_key=m&start_step=1"),
            "both must be specified",
        ),
        (
            format!("run_ids={a}&metric_key=m&start_step=5&end_step=1"),
            "end_step must be greater than start_step",
        ),
        (
            format!("run_ids={a}&metric_key=m&max_results=2501"),
            "max_results must be between 1 and 2500",
        ),
        (
            format!("run_ids={a}&metric_key=m&max_results=0"),
            "max_results must be between 1 and 2500",
        ),
        (
            "metric_key=m".to_string(),
            "Missing value for required parameter 'run_ids'",
        ),
        (
            format!("run_ids={a}"),
            "Missing value for required parameter 'metric_key'",
        ),
        (
            (0..101)
                .map(|i| format!("run_ids=r{i}"))
                .collect::<Vec<_>>()
                .join("&")
                + "&metric_key=m",
            "at most 100 run_ids. Received 101 run_ids",
        ),
    ];
    for (query, phrase) in bad {
        assert_error(
            api.get(&format!("/metrics/get-history-bulk-interval?{query}")),
            400,
            "INVALID_PARAMETER_VALUE",
            phrase,
        );
    }
}

#[test]
fn ajax_get_history_bulk() {
    let api = Api::start();
    let a = run_with_points(&api, 4);
    let b = run_with_points(&api, 2);
    let path = "/ajax-api/2.0/mlflow/metrics/get-history-bulk";
    let (status, r) = api.get_url(&format!("{path}?run_id={a}&run_id={b}&metric_key=m"));
    assert_eq!(status, 200, "{r}");
    let metrics = r["metrics"].as_array().unwrap();
    assert_eq!(metrics.len(), 6);
    let (lo, hi) = if a < b { (&a, &b) } else { (&b, &a) };
    assert_eq!(metrics[0]["run_id"], lo.as_str());
    assert_eq!(metrics[5]["run_id"], hi.as_str());
    assert_eq!(steps_of(&r, &a), vec![0, 1, 2, 3]);
    assert_eq!(
        metrics.iter().find(|m| m["run_id"] == b.as_str()).unwrap(),
        &json!({"key": "m", "value": 0.0, "timestamp": 1000, "step": 0, "run_id": b})
    );
    // max_results caps the whole answer.
    let (_, r) = api.get_url(&format!(
        "{path}?run_id={a}&run_id={b}&metric_key=m&max_results=3"
    ));
    assert_eq!(r["metrics"].as_array().unwrap().len(), 3);
    let (_, r) = api.get_url(&format!("{path}?run_id={a}&metric_key=none"));
    assert_eq!(r, json!({"metrics": []}));
    assert_error(
        api.get_url(&format!("{path}?metric_key=m")),
        400,
        "INVALID_PARAMETER_VALUE",
        "must specify at least one run_id",
    );
    assert_error(
        api.get_url(&format!("{path}?run_id={a}")),
        400,
        "INVALID_PARAMETER_VALUE",
        "must specify a metric_key",
    );
    // Only under /ajax-api.
    let (status, r) = api.get(&format!(
        "/metrics/get-history-bulk?run_id={a}&metric_key=m"
    ));
    assert_eq!(status, 404);
    assert_eq!(r["error_code"], "ENDPOINT_NOT_FOUND");
}
