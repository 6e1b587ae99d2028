//! The endpoint over a real store: MLflow's answers, NaN as null, errors as strings, limits.

use std::sync::Arc;

use quiver_store::{CreateRun, Metric, Store};
use serde_json::{json, Value};

use super::execute;

fn store() -> (tempfile::TempDir, Arc<Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path().join("store")).unwrap());
    (dir, store)
}

async fn run(store: &Arc<Store>, query: &str, variables: Value) -> Value {
    serde_json::from_slice(&execute(store, query, None, variables).await).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_run_answers_as_mlflow_with_nan_as_null() {
    let (_dir, store) = store();
    let r = store.create_run(CreateRun::default()).unwrap();
    let id = r.info.run_id.clone();
    store
        .log_batch(
            &id,
            &[
                Metric::new("loss", 0.5, 7, 3),
                Metric::new("nan", f64::NAN, 8, 4),
            ],
            &[],
            &[],
        )
        .unwrap();
    let q = r#"query GetRun($data: MlflowGetRunInput!) @component(name: "MLflow.ExperimentRunTracking") {
        mlflowGetRun(input: $data) {
            apiError { code message helpUrl }
            run {
                info { runUuid status startTime endTime lifecycleStage }
                experiment { experimentId name tags { key value } }
                modelVersions { version name status source }
                data { metrics { key value step timestamp } params { key } tags { key } }
                inputs { datasetInputs { dataset { name } } modelInputs { modelId } }
                outputs { modelOutputs { modelId step } }
            }
        }
    }"#;
    let answer = run(&store, q, json!({"data": {"runId": id}})).await;
    assert_eq!(answer["errors"], Value::Null, "{answer}");
    let got = &answer["data"]["mlflowGetRun"];
    assert_eq!(got["apiError"], Value::Null);
    let run = &got["run"];
    assert_eq!(run["info"]["runUuid"], json!(id));
    assert_eq!(run["info"]["status"], json!("RUNNING"));
    assert_eq!(run["info"]["endTime"], json!("0"));
    assert_eq!(run["experiment"]["name"], json!("Default"));
    assert_eq!(run["modelVersions"], json!([]));
    assert_eq!(
        run["data"]["metrics"],
        json!([
            {"key": "loss", "value": 0.5, "step": "3", "timestamp": "7"},
            {"key": "nan", "value": null, "step": "4", "timestamp": "8"},
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_messages_and_null_fields() {
    let (_dir, store) = store();
    let answer = run(
        &store,
        r#"{ mlflowGetRun(input: {runId: "nope"}) { run { info { runId } } } }"#,
        Value::Null,
    )
    .await;
    assert_eq!(answer["data"], json!({"mlflowGetRun": null}), "{answer}");
    assert_eq!(answer["errors"], json!(["Run with id=nope not found"]));

    let answer = run(&store, "{ nothing }", Value::Null).await;
    assert_eq!(answer["data"], Value::Null);
    assert!(answer["errors"][0].is_string(), "{answer}");

    let answer = run(&store, "{ unclosed", Value::Null).await;
    assert!(answer["errors"][0]
        .as_str()
        .unwrap()
        .starts_with("Syntax Error"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_come_before_validation() {
    let (_dir, store) = store();
    let mut inner = "name".to_string();
    for _ in 0..12 {
        inner = format!("name {{ {inner} }}");
    }
    let q = format!(
        r#"{{ mlflowGetExperiment(input: {{experimentId: "0"}}) {{ experiment {{ {inner} }} }} }}"#
    );
    let answer = run(&store, &q, Value::Null).await;
    assert_eq!(
        answer,
        json!({"data": null, "errors": ["Query exceeds maximum depth of 10"]})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_come_in_the_order_selected() {
    let (_dir, store) = store();
    let q = r#"{ mlflowGetExperiment(input: {experimentId: "0"}) { experiment { name experimentId artifactLocation } apiError { code } } }"#;
    let text = String::from_utf8(execute(&store, q, None, Value::Null).await).unwrap();
    assert!(
        text.starts_with(r#"{"data":{"mlflowGetExperiment":{"experiment":{"name":"Default","experimentId":"0","artifactLocation""#),
        "{text}"
    );
    assert!(
        text.ends_with(r#""apiError":null}},"errors":null}"#),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_and_searches() {
    let (_dir, store) = store();
    let answer = run(
        &store,
        r#"query testQuery { test(inputString: "abc") { output } }"#,
        Value::Null,
    )
    .await;
    assert_eq!(answer["data"], json!({"test": {"output": "abc"}}));
    let a = store.create_run(CreateRun::default()).unwrap().info.run_id;
    let answer = run(
        &store,
        r#"mutation { mlflowSearchRuns(input: {experimentIds: ["0"]}) { runs { info { runId } } nextPageToken } }"#,
        Value::Null,
    )
    .await;
    assert_eq!(
        answer["data"]["mlflowSearchRuns"],
        json!({"runs": [{"info": {"runId": a}}], "nextPageToken": ""})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_has_the_params_and_metrics_of_its_logged_model() {
    let (_dir, store) = store();
    let run_id = store.create_run(CreateRun::default()).unwrap().info.run_id;
    let model = store
        .create_logged_model(&quiver_store::CreateLoggedModel {
            experiment_id: "0".into(),
            source_run_id: Some(run_id.clone()),
            params: vec![quiver_store::Param::new("alpha", "0.5")],
            ..Default::default()
        })
        .unwrap();
    let mut point = Metric::new("rmse", 0.25, 7, 2);
    point.model_id = Some(model.model_id.clone());
    store.log_batch(&run_id, &[point], &[], &[]).unwrap();
    store.create_registered_model("m", &[], None, "u").unwrap();
    for model_id in [Some(model.model_id.clone()), None] {
        let req = quiver_store::CreateModelVersion {
            name: "m".into(),
            source: "models:/x".into(),
            model_id,
            ..Default::default()
        };
        store.create_model_version(&req, "u").unwrap();
    }
    let q = r#"{ mlflowSearchModelVersions(input: {filter: "name = 'm'", orderBy: ["version_number ASC"]}) {
        modelVersions {
            version
            modelParams { name value }
            modelMetrics { key value step timestamp modelId runId datasetName }
            deploymentJobState { jobId jobState runState currentTaskName }
        }
    } }"#;
    let answer = run(&store, q, Value::Null).await;
    assert_eq!(answer["errors"], Value::Null, "{answer}");
    let versions = &answer["data"]["mlflowSearchModelVersions"]["modelVersions"];
    assert_eq!(
        versions[0],
        json!({
            "version": "1",
            "modelParams": [{"name": "alpha", "value": "0.5"}],
            "modelMetrics": [{"key": "rmse", "value": 0.25, "step": "2", "timestamp": "7",
                              "modelId": model.model_id, "runId": run_id, "datasetName": ""}],
            "deploymentJobState": null,
        })
    );
    assert_eq!(
        versions[1],
        json!({"version": "2", "modelParams": [], "modelMetrics": [], "deploymentJobState": null})
    );
}
