//! Behaviours where MLflow's own live-server tests found Quiver answering differently from
//! `mlflow server` 3.17, each checked here against the real binary: strict string fields,
//! relative artifact locations, the web UI's upload and dataset routes, MLflow's exact
//! `Invalid path`, and the logged-model/registry links.

use serde_json::{json, Value};

use crate::{agent, TestServer};

fn run_in_new_experiment(s: &TestServer, name: &str) -> (String, String) {
    let (_, exp) = s.post_json("/api/2.0/mlflow/experiments/create", &json!({"name": name}));
    let exp = exp["experiment_id"].as_str().unwrap().to_string();
    let (_, run) = s.post_json(
        "/api/2.0/mlflow/runs/create",
        &json!({"experiment_id": exp}),
    );
    (
        exp,
        run["run"]["info"]["run_id"].as_str().unwrap().to_string(),
    )
}

#[test]
fn a_number_where_a_string_belongs_is_an_invalid_value() {
    let s = TestServer::start();
    let (_, run) = run_in_new_experiment(&s, "strict");
    for (path, body, field) in [
        (
            "/api/2.0/mlflow/runs/log-metric",
            json!({"run_id": 31, "key": "m", "value": 1, "timestamp": 1, "step": 0}),
            "run_id",
        ),
        (
            "/api/2.0/mlflow/runs/log-parameter",
            json!({"run_id": run, "key": 31, "value": "v"}),
            "key",
        ),
        (
            "/api/2.0/mlflow/runs/set-tag",
            json!({"run_id": run, "key": "k", "value": 31}),
            "value",
        ),
        (
            "/api/2.0/mlflow/experiments/create",
            json!({"name": 123}),
            "name",
        ),
    ] {
        let (status, answer) = s.post_json(path, &body);
        assert_eq!(status, 400, "{path}: {answer}");
        assert_eq!(answer["error_code"], "INVALID_PARAMETER_VALUE");
        let message = answer["message"].as_str().unwrap();
        let value = &body[field];
        assert!(
            message.contains(&format!(
                "Invalid value {value} for parameter '{field}' supplied"
            )),
            "{path}: {message}"
        );
    }
    // Nothing was logged under the number's spelling.
    let (status, _) = s.get_json("/api/2.0/mlflow/runs/get?run_id=31");
    assert_eq!(status, 404);
}

#[test]
fn a_relative_artifact_location_is_made_absolute_against_the_server_directory() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().canonicalize().unwrap();
    let s = TestServer::spawn(&dir.path().join("store"), &[], |c| {
        c.current_dir(&cwd);
    });
    let (_, exp) = s.post_json(
        "/api/2.0/mlflow/experiments/create",
        &json!({"name": "rel", "artifact_location": "my_location/../here"}),
    );
    let id = exp["experiment_id"].as_str().unwrap();
    let (_, got) = s.get_json(&format!(
        "/api/2.0/mlflow/experiments/get?experiment_id={id}"
    ));
    assert_eq!(
        got["experiment"]["artifact_location"],
        cwd.join("here").display().to_string()
    );
}

#[test]
fn the_web_ui_uploads_into_a_run_and_reads_it_back() {
    let s = TestServer::start();
    let (_, run) = run_in_new_experiment(&s, "upload");
    let upload = |query: &str, body: &[u8]| {
        let mut r = agent()
            .post(&s.api(&format!("/ajax-api/2.0/mlflow/upload-artifact?{query}")))
            .send(body)
            .unwrap();
        let status = r.status().as_u16();
        let v: Value = r.body_mut().read_json().unwrap();
        (status, v)
    };
    for (query, body, message) in [
        (String::new(), &b"x"[..], "Request must specify run_uuid."),
        (
            format!("run_uuid={run}"),
            b"x",
            "Request must specify path.",
        ),
        (
            format!("run_uuid={run}&path="),
            b"x",
            "Request must specify path.",
        ),
        (
            format!("run_uuid={run}&path=../t.txt"),
            b"x",
            "Invalid path",
        ),
        (
            format!("run_uuid={run}&path=t.txt"),
            b"",
            "Request must specify data.",
        ),
    ] {
        let (status, answer) = upload(&query, body);
        assert_eq!(status, 400, "{query}: {answer}");
        assert_eq!(answer["message"], message, "{query}");
    }
    let (status, _) = upload(&format!("run_uuid={run}&path=dir/t.txt"), b"hello world");
    assert_eq!(status, 200);
    let mut r = agent()
        .get(&s.api(&format!("/get-artifact?run_uuid={run}&path=dir/t.txt")))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "text/plain");
    assert_eq!(
        r.headers()["content-disposition"],
        "attachment; filename=t.txt"
    );
    assert_eq!(r.body_mut().read_to_string().unwrap(), "hello world");
}

#[test]
fn escaping_paths_get_mlflows_exact_message_on_every_read_route() {
    let s = TestServer::start();
    let (_, run) = run_in_new_experiment(&s, "paths");
    for path in [
        format!("/api/2.0/mlflow/artifacts/list?run_id={run}&path=../path"),
        format!("/get-artifact?run_id={run}&path=../path"),
        // MLflow's own test sends the doubled slash.
        "//model-versions/get-artifact?name=model&version=1&path=../path".to_string(),
    ] {
        let (status, answer) = s.get_json(&path);
        assert_eq!(status, 400, "{path}: {answer}");
        assert_eq!(answer["error_code"], "INVALID_PARAMETER_VALUE");
        assert_eq!(answer["message"], "Invalid path", "{path}");
    }
}

#[test]
fn search_datasets_lists_what_the_runs_used_with_their_context() {
    let s = TestServer::start();
    let (exp, run) = run_in_new_experiment(&s, "datasets");
    let dataset =
        |name: &str| json!({"name": name, "digest": "d1", "source_type": "local", "source": "{}"});
    let (status, _) = s.post_json(
        "/api/2.0/mlflow/runs/log-inputs",
        &json!({"run_id": run, "datasets": [
            {"dataset": dataset("train-set"),
             "tags": [{"key": "mlflow.data.context", "value": "training"}]},
            {"dataset": dataset("plain"), "tags": []},
        ]}),
    );
    assert_eq!(status, 200);
    let (status, answer) = s.post_json(
        "/ajax-api/2.0/mlflow/experiments/search-datasets",
        &json!({"experiment_ids": [exp]}),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["dataset_summaries"],
        json!([
            {"experiment_id": exp, "name": "plain", "digest": "d1"},
            {"experiment_id": exp, "name": "train-set", "digest": "d1", "context": "training"},
        ])
    );
    for (body, message) in [
        (
            json!({}),
            "SearchDatasets request must specify at least one experiment_id.",
        ),
        (
            json!({"experiment_ids": (0..21).map(|i| i.to_string()).collect::<Vec<_>>()}),
            "SearchDatasets request cannot specify more than 20 experiment_ids. Received 21",
        ),
    ] {
        let (status, answer) =
            s.post_json("/ajax-api/2.0/mlflow/experiments/search-datasets", &body);
        assert_eq!(status, 400);
        assert!(
            answer["message"].as_str().unwrap().contains(message),
            "{answer}"
        );
    }
}

#[test]
fn a_logged_model_lists_its_registered_versions_and_may_name_any_source_run() {
    let s = TestServer::start();
    let (exp, _) = run_in_new_experiment(&s, "links");
    let (status, model) = s.post_json(
        "/api/2.0/mlflow/logged-models",
        &json!({"experiment_id": exp, "source_run_id": "123"}),
    );
    assert_eq!(status, 200, "{model}");
    assert_eq!(model["model"]["info"]["source_run_id"], "123");
    let model_id = model["model"]["info"]["model_id"].as_str().unwrap();
    let source = model["model"]["info"]["artifact_uri"].as_str().unwrap();
    s.post_json(
        "/api/2.0/mlflow/registered-models/create",
        &json!({"name": "model"}),
    );
    let tag_after = |n: usize| {
        for _ in 0..n {
            let (status, v) = s.post_json(
                "/api/2.0/mlflow/model-versions/create",
                &json!({"name": "model", "source": source, "model_id": model_id}),
            );
            assert_eq!(status, 200, "{v}");
        }
        let (_, m) = s.get_json(&format!("/api/2.0/mlflow/logged-models/{model_id}"));
        m["model"]["info"]["tags"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["key"] == "mlflow.modelVersions")
            .map(|t| t["value"].as_str().unwrap().to_string())
    };
    assert_eq!(
        tag_after(1).as_deref(),
        Some(r#"[{"name": "model", "version": 1}]"#)
    );
    assert_eq!(
        tag_after(1).as_deref(),
        Some(r#"[{"name": "model", "version": 1}, {"name": "model", "version": 2}]"#)
    );
}

#[test]
fn a_registered_model_tag_may_be_empty() {
    let s = TestServer::start();
    s.post_json(
        "/api/2.0/mlflow/registered-models/create",
        &json!({"name": "m"}),
    );
    let (status, answer) = s.post_json(
        "/api/2.0/mlflow/registered-models/set-tag",
        &json!({"name": "m", "key": "k", "value": ""}),
    );
    assert_eq!(status, 200, "{answer}");
    let (_, got) = s.get_json("/api/2.0/mlflow/registered-models/get?name=m");
    assert_eq!(
        got["registered_model"]["tags"],
        json!([{"key": "k", "value": ""}])
    );
}

#[test]
fn logged_model_search_by_dataset_keeps_models_with_metrics_on_it() {
    let s = TestServer::start();
    let (exp, run) = run_in_new_experiment(&s, "by dataset");
    let create = || {
        let (_, m) = s.post_json(
            "/api/2.0/mlflow/logged-models",
            &json!({"experiment_id": exp}),
        );
        m["model"]["info"]["model_id"].as_str().unwrap().to_string()
    };
    let (scored, _other) = (create(), create());
    let (status, _) = s.post_json(
        "/api/2.0/mlflow/runs/log-metric",
        &json!({"run_id": run, "key": "acc", "value": 1.0, "timestamp": 1, "step": 0,
                "model_id": scored, "dataset_name": "ds", "dataset_digest": "123"}),
    );
    assert_eq!(status, 200);
    let found = |datasets: Value| {
        let (status, page) = s.post_json(
            "/api/2.0/mlflow/logged-models/search",
            &json!({"experiment_ids": [exp], "datasets": datasets}),
        );
        assert_eq!(status, 200, "{page}");
        page["models"]
            .as_array()
            .map(|ms| {
                ms.iter()
                    .map(|m| m["info"]["model_id"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_else(Vec::new)
    };
    assert_eq!(
        found(json!([{"dataset_name": "ds", "dataset_digest": "123"}])),
        vec![scored.clone()]
    );
    assert_eq!(found(json!([{"dataset_name": "ds"}])), vec![scored]);
    assert!(found(json!([{"dataset_name": "other"}])).is_empty());
    assert_eq!(found(json!([])).len(), 2);
}
