//! MLflow's GraphQL endpoint (`POST|GET /graphql`) against the real binary: the web UI's run
//! query with a NaN metric (answered as `null`), errors as strings, and MLflow's depth limit.

use serde_json::{json, Value};

use crate::TestServer;

/// Posts a GraphQL query with variables; the answer must be a 200.
fn graphql(server: &TestServer, query: &str, variables: Value) -> Value {
    let (status, answer) =
        server.post_json("/graphql", &json!({"query": query, "variables": variables}));
    assert_eq!(status, 200, "{answer}");
    answer
}

#[test]
fn run_page_query_with_nan_metric_and_limits() {
    let server = TestServer::start();
    let (_, exp) = server.post_json(
        "/api/2.0/mlflow/experiments/create",
        &json!({"name": "gql", "tags": [{"key": "team", "value": "ml"}]}),
    );
    let exp = exp["experiment_id"].as_str().unwrap().to_string();
    let (_, run) = server.post_json(
        "/api/2.0/mlflow/runs/create",
        &json!({"experiment_id": exp, "start_time": 1000}),
    );
    let run_id = run["run"]["info"]["run_id"].as_str().unwrap().to_string();
    for (key, value, step) in [("loss", json!(0.25), 1), ("broken", json!("NaN"), 2)] {
        let (status, _) = server.post_json(
            "/api/2.0/mlflow/runs/log-metric",
            &json!({"run_id": run_id, "key": key, "value": value, "timestamp": 5, "step": step}),
        );
        assert_eq!(status, 200);
    }

    // The web UI's operation, with its directive and a variable.
    let query = r#"query GetRun($data: MlflowGetRunInput!) @component(name: "MLflow.ExperimentRunTracking") {
        mlflowGetRun(input: $data) {
            apiError { helpUrl code message }
            run {
                info { runUuid experimentId status startTime endTime }
                experiment { name tags { key value } }
                modelVersions { version }
                data { metrics { key value step timestamp } }
            }
        }
    }"#;
    let answer = graphql(&server, query, json!({"data": {"runId": run_id}}));
    assert_eq!(answer["errors"], Value::Null, "{answer}");
    let got = &answer["data"]["mlflowGetRun"];
    assert_eq!(got["apiError"], Value::Null);
    assert_eq!(
        got["run"]["info"],
        json!({"runUuid": run_id, "experimentId": exp, "status": "RUNNING",
               "startTime": "1000", "endTime": "0"})
    );
    assert_eq!(
        got["run"]["experiment"],
        json!({"name": "gql", "tags": [{"key": "team", "value": "ml"}]})
    );
    assert_eq!(got["run"]["modelVersions"], json!([]));
    assert_eq!(
        got["run"]["data"]["metrics"],
        json!([
            {"key": "broken", "value": null, "step": "2", "timestamp": "5"},
            {"key": "loss", "value": 0.25, "step": "1", "timestamp": "5"},
        ])
    );

    // An unknown run: the field is null and the error is MLflow's message.
    let answer = graphql(
        &server,
        r#"{ mlflowGetRun(input: {runId: "nope"}) { run { info { runId } } } }"#,
        Value::Null,
    );
    assert_eq!(answer["data"], json!({"mlflowGetRun": null}));
    assert_eq!(answer["errors"], json!(["Run with id=nope not found"]));

    // Over MLflow's depth limit: refused before it is validated or run.
    let mut inner = "name".to_string();
    for _ in 0..12 {
        inner = format!("name {{ {inner} }}");
    }
    let deep = format!(
        r#"{{ mlflowGetExperiment(input: {{experimentId: "{exp}"}}) {{ experiment {{ {inner} }} }} }}"#
    );
    let answer = graphql(&server, &deep, Value::Null);
    assert_eq!(
        answer,
        json!({"data": null, "errors": ["Query exceeds maximum depth of 10"]})
    );

    // GET with the query in the query string.
    let (status, answer) =
        server.get_json("/graphql?query=%7Btest(inputString%3A%22hi%22)%7Boutput%7D%7D");
    assert_eq!(status, 200);
    assert_eq!(
        answer,
        json!({"data": {"test": {"output": "hi"}}, "errors": null})
    );
}
