//! Logged models, the registry, deployments and registry history through the library API.

use quiver_store::*;

use crate::{manual_options, new_run, temp_store};

const ALICE: &str = "alice";

fn logged_model(s: &Store, run: &str, name: &str) -> LoggedModel {
    s.create_logged_model(&CreateLoggedModel {
        experiment_id: "0".into(),
        name: Some(name.into()),
        source_run_id: Some(run.into()),
        params: vec![Param::new("alpha", "0.5")],
        tags: vec![Tag::new("team", "risk")],
        ..Default::default()
    })
    .unwrap()
}

fn version(s: &Store, name: &str, source: &str, run: Option<&str>) -> ModelVersion {
    s.create_model_version(
        &CreateModelVersion {
            name: name.into(),
            source: source.into(),
            run_id: run.map(str::to_string),
            ..Default::default()
        },
        ALICE,
    )
    .unwrap()
}

fn search(filter: &str) -> RegistrySearch {
    RegistrySearch {
        filter: filter.into(),
        max_results: 100,
        ..Default::default()
    }
}

fn to_csv(batches: &[arrow::record_batch::RecordBatch]) -> String {
    let mut out = Vec::new();
    quiver_store::sql_output::csv(batches, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

/// (user, action, version, before, after) of an event.
type EventRow = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn code(r: Result<impl std::fmt::Debug>) -> ErrorCode {
    r.unwrap_err().code()
}

#[test]
fn logged_model_lifecycle_metrics_and_search() {
    let (_d, s) = temp_store();
    let run = new_run(&s);
    let m = logged_model(&s, &run, "clf");
    assert!(m.model_id.starts_with("m-") && m.model_id.len() == 34);
    assert_eq!(m.status, LoggedModelStatus::Pending);
    assert_eq!(
        m.artifact_uri,
        format!("mlflow-artifacts:/0/models/{}/artifacts", m.model_id)
    );
    let id = m.model_id.clone();
    let m = s
        .finalize_logged_model(&id, LoggedModelStatus::Ready)
        .unwrap();
    assert_eq!(m.status, LoggedModelStatus::Ready);

    // Params are write-once; tags upsert and delete.
    s.log_logged_model_params(&id, &[Param::new("alpha", "0.5"), Param::new("beta", "2")])
        .unwrap();
    let e = s
        .log_logged_model_params(&id, &[Param::new("alpha", "9")])
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("Changing param values is not allowed"),
        "{e}"
    );
    s.set_logged_model_tags(&id, &[Tag::new("team", "fraud"), Tag::new("x", "1")])
        .unwrap();
    s.delete_logged_model_tag(&id, "x").unwrap();
    assert_eq!(
        code(s.delete_logged_model_tag(&id, "x")),
        ErrorCode::ResourceDoesNotExist
    );
    let m = s.get_logged_model(&id).unwrap();
    assert_eq!(m.tags, vec![Tag::new("team", "fraud")]);
    assert_eq!(m.params.len(), 2);

    // Metric points with the model's id update its metrics (latest per key and dataset).
    let point = |v: f64, step: i64, ds: Option<&str>| {
        let mut p = Metric::new("acc", v, 1_700_000_000_000 + step, step);
        p.model_id = Some(id.clone());
        p.dataset_name = ds.map(str::to_string);
        p.dataset_digest = ds.map(|_| "d1".to_string());
        p
    };
    let points = [
        point(0.5, 1, None),
        point(0.9, 2, None),
        point(0.7, 1, Some("eval")),
    ];
    s.log_batch(&run, &points, &[], &[]).unwrap();
    let m = s.get_logged_model(&id).unwrap();
    let values: Vec<f64> = m.metrics.iter().map(|m| m.metric.value).collect();
    assert_eq!(values, vec![0.9, 0.7]);
    assert!(m.metrics.iter().all(|x| x.run_id == run));

    let other = logged_model(&s, &run, "other").model_id;
    let find = |filter: &str, datasets: Vec<DatasetRef>| -> Vec<String> {
        s.search_logged_models(&LoggedModelSearch {
            experiment_ids: vec!["0".into()],
            filter: filter.into(),
            datasets,
            max_results: 50,
            ..Default::default()
        })
        .unwrap()
        .models
        .into_iter()
        .map(|m| m.model_id)
        .collect()
    };
    assert_eq!(
        find("", vec![]),
        vec![other.clone(), id.clone()],
        "newest first"
    );
    assert_eq!(find("name = 'clf'", vec![]), vec![id.clone()]);
    assert_eq!(
        find("params.beta = '2' AND tags.team LIKE 'fr%'", vec![]),
        vec![id.clone()]
    );
    assert_eq!(find("metrics.acc > 0.8", vec![]), vec![id.clone()]);
    let eval = DatasetRef {
        dataset_name: "eval".into(),
        dataset_digest: None,
    };
    assert!(find("metrics.acc > 0.8", vec![eval.clone()]).is_empty());
    assert_eq!(find("metrics.acc < 0.8", vec![eval]), vec![id.clone()]);
    assert_eq!(
        find("status = 'LOGGED_MODEL_PENDING'", vec![]),
        vec![other.clone()]
    );
    assert_eq!(
        code(s.search_logged_models(&LoggedModelSearch {
            experiment_ids: vec!["0".into()],
            filter: "metrics.acc > 'x'".into(),
            max_results: 5,
            ..Default::default()
        })),
        ErrorCode::InvalidParameterValue
    );

    // Ordered by a metric, paged one at a time.
    let mut token = None;
    let mut seen = Vec::new();
    loop {
        let page = s
            .search_logged_models(&LoggedModelSearch {
                experiment_ids: vec!["0".into()],
                order_by: vec![LoggedModelOrder {
                    field_name: "metrics.acc".into(),
                    ascending: false,
                    ..Default::default()
                }],
                max_results: 1,
                page_token: token.clone(),
                ..Default::default()
            })
            .unwrap();
        seen.extend(page.models.into_iter().map(|m| m.model_id));
        token = page.next_page_token;
        if token.is_none() {
            break;
        }
    }
    assert_eq!(
        seen,
        vec![id.clone(), other.clone()],
        "models without the metric last"
    );

    s.delete_logged_model(&other).unwrap();
    assert_eq!(
        code(s.get_logged_model(&other)),
        ErrorCode::ResourceDoesNotExist
    );
    assert_eq!(find("", vec![]), vec![id.clone()]);
}

#[test]
fn runs_record_model_inputs_and_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open_with(dir.path(), manual_options()).unwrap();
    let run = new_run(&s);
    let m = logged_model(&s, &run, "m").model_id;
    s.log_run_outputs(
        &run,
        &[ModelOutput {
            model_id: m.clone(),
            step: 3,
        }],
    )
    .unwrap();
    let consumer = new_run(&s);
    s.log_model_inputs(&consumer, std::slice::from_ref(&m))
        .unwrap();
    assert_eq!(
        code(s.log_model_inputs(&consumer, &["m-nope".into()])),
        ErrorCode::ResourceDoesNotExist
    );
    let check = |s: &Store| {
        let r = s.get_run(&run).unwrap();
        assert_eq!(
            r.model_outputs,
            vec![ModelOutput {
                model_id: m.clone(),
                step: 3
            }]
        );
        assert_eq!(s.get_run(&consumer).unwrap().model_inputs, vec![m.clone()]);
        // Searches render runs from the index: the same models.
        let page = s
            .search_runs(&RunSearch {
                experiment_ids: vec!["0".into()],
                max_results: 10,
                ..Default::default()
            })
            .unwrap();
        let found = page.runs.iter().find(|r| r.info.run_id == run).unwrap();
        assert_eq!(found.model_outputs, r.model_outputs);
        let found = page
            .runs
            .iter()
            .find(|r| r.info.run_id == consumer)
            .unwrap();
        assert_eq!(found.model_inputs, vec![m.clone()]);
    };
    check(&s);
    s.close().unwrap();
    let s = Store::open_with(dir.path(), manual_options()).unwrap();
    check(&s);
}

#[test]
fn registry_versions_stages_and_aliases() {
    let (_d, s) = temp_store();
    let run = new_run(&s);
    let rm = s
        .create_registered_model("fraud", &[Tag::new("team", "risk")], Some("d"), ALICE)
        .unwrap();
    assert_eq!((rm.name.as_str(), rm.description.as_str()), ("fraud", "d"));
    assert_eq!(
        code(s.create_registered_model("fraud", &[], None, ALICE)),
        ErrorCode::ResourceAlreadyExists
    );
    for bad in ["", "a/b", "a:b"] {
        assert_eq!(
            code(s.create_registered_model(bad, &[], None, ALICE)),
            ErrorCode::InvalidParameterValue
        );
    }
    let lm = logged_model(&s, &run, "m").model_id;
    let v1 = version(&s, "fraud", &format!("models:/{lm}"), None);
    assert_eq!(
        (v1.version.as_str(), v1.model_id.as_str()),
        ("1", lm.as_str())
    );
    assert_eq!(v1.run_id, run, "the logged model's run");
    assert_eq!(v1.current_stage, Stage::None);
    let v2 = version(&s, "fraud", &format!("runs:/{run}/model"), Some(&run));
    let v3 = version(&s, "fraud", "s3://bucket/m", None);
    assert_eq!((v2.version.as_str(), v3.version.as_str()), ("2", "3"));
    s.delete_model_version("fraud", "3", ALICE).unwrap();
    assert_eq!(
        version(&s, "fraud", "s3://x", None).version,
        "4",
        "numbers not reused"
    );
    assert_eq!(
        code(s.get_model_version("fraud", "3")),
        ErrorCode::ResourceDoesNotExist
    );
    assert_eq!(
        code(s.get_model_version("fraud", "x")),
        ErrorCode::InvalidParameterValue
    );

    // Download URIs resolve logged models and runs.
    assert_eq!(
        s.model_version_download_uri("fraud", "1").unwrap(),
        format!("mlflow-artifacts:/0/models/{lm}/artifacts")
    );
    assert_eq!(
        s.model_version_download_uri("fraud", "2").unwrap(),
        format!("runs:/{run}/model"),
        "as MLflow: only logged-model sources resolve"
    );
    assert_eq!(
        s.model_version_download_uri("fraud", "4").unwrap(),
        "s3://x"
    );

    // Stages: archive_existing moves the previous Production version to Archived.
    s.transition_model_version_stage("fraud", "1", "production", false, ALICE)
        .unwrap();
    let v2 = s
        .transition_model_version_stage("fraud", "2", "Production", true, ALICE)
        .unwrap();
    assert_eq!(v2.current_stage, Stage::Production);
    assert_eq!(
        s.get_model_version("fraud", "1").unwrap().current_stage,
        Stage::Archived
    );
    assert_eq!(
        code(s.transition_model_version_stage("fraud", "1", "Live", false, ALICE)),
        ErrorCode::InvalidParameterValue
    );
    assert_eq!(
        code(s.transition_model_version_stage("fraud", "1", "None", true, ALICE)),
        ErrorCode::InvalidParameterValue
    );
    let latest = s.get_latest_versions("fraud", &[]).unwrap();
    let pairs: Vec<(String, Stage)> = latest
        .iter()
        .map(|v| (v.version.clone(), v.current_stage))
        .collect();
    assert_eq!(
        pairs,
        vec![
            ("4".into(), Stage::None),
            ("2".into(), Stage::Production),
            ("1".into(), Stage::Archived)
        ]
    );
    let prod = s
        .get_latest_versions("fraud", &["PRODUCTION".into()])
        .unwrap();
    assert_eq!(prod.len(), 1);
    assert_eq!(
        s.get_registered_model("fraud").unwrap().latest_versions,
        latest
    );

    // Aliases: set, move, read, delete; reserved names refused.
    s.set_registered_model_alias("fraud", "champion", "1", ALICE)
        .unwrap();
    s.set_registered_model_alias("fraud", "champion", "2", ALICE)
        .unwrap();
    assert_eq!(
        s.get_model_version_by_alias("fraud", "champion")
            .unwrap()
            .version,
        "2"
    );
    assert_eq!(
        s.get_model_version("fraud", "2").unwrap().aliases,
        vec!["champion"]
    );
    assert!(s
        .get_model_version("fraud", "1")
        .unwrap()
        .aliases
        .is_empty());
    for bad in ["latest", "v3", "a b"] {
        assert_eq!(
            code(s.set_registered_model_alias("fraud", bad, "2", ALICE)),
            ErrorCode::InvalidParameterValue
        );
    }
    let rm = s.get_registered_model("fraud").unwrap();
    assert_eq!(
        rm.aliases,
        vec![ModelAlias {
            alias: "champion".into(),
            version: "2".into()
        }]
    );
    s.delete_registered_model_alias("fraud", "champion", ALICE)
        .unwrap();
    assert_eq!(
        code(s.get_model_version_by_alias("fraud", "champion")),
        ErrorCode::InvalidParameterValue,
        "as MLflow"
    );

    // Tags on versions; rename carries everything along.
    s.set_model_version_tag("fraud", "2", &Tag::new("validated", "yes"), ALICE)
        .unwrap();
    s.set_registered_model_alias("fraud", "prod", "2", ALICE)
        .unwrap();
    s.rename_registered_model("fraud", "fraud-v2", ALICE)
        .unwrap();
    assert_eq!(
        code(s.get_registered_model("fraud")),
        ErrorCode::ResourceDoesNotExist
    );
    let v = s.get_model_version_by_alias("fraud-v2", "prod").unwrap();
    assert_eq!(
        (v.name.as_str(), v.tags[0].key.as_str()),
        ("fraud-v2", "validated")
    );
    s.delete_registered_model("fraud-v2", ALICE).unwrap();
    assert_eq!(
        code(s.get_model_version("fraud-v2", "2")),
        ErrorCode::ResourceDoesNotExist
    );
}

#[test]
fn registry_searches_follow_mlflow() {
    let (_d, s) = temp_store();
    for (name, tag) in [("alpha", Some("a")), ("beta", None), ("Gamma", Some("g"))] {
        let tags: Vec<Tag> = tag.map(|v| Tag::new("team", v)).into_iter().collect();
        s.create_registered_model(name, &tags, None, ALICE).unwrap();
        for _ in 0..2 {
            version(&s, name, &format!("s3://{name}"), None);
        }
    }
    s.create_registered_model(
        "prompt",
        &[Tag::new("mlflow.prompt.is_prompt", "true")],
        None,
        ALICE,
    )
    .unwrap();
    let names = |filter: &str, order: &[&str]| -> Vec<String> {
        let mut req = search(filter);
        req.order_by = order.iter().map(|o| o.to_string()).collect();
        s.search_registered_models(&req)
            .unwrap()
            .registered_models
            .into_iter()
            .map(|m| m.name)
            .collect()
    };
    let prompt_clause = "tag.`mlflow.prompt.is_prompt` != 'true'";
    assert_eq!(names(prompt_clause, &[]), vec!["Gamma", "alpha", "beta"]);
    assert_eq!(
        names(
            &format!("name LIKE '%a' AND {prompt_clause}"),
            &["name DESC"]
        ),
        vec!["beta", "alpha", "Gamma"]
    );
    assert_eq!(names("name ILIKE 'g%'", &[]), vec!["Gamma"]);
    assert_eq!(
        names("tags.team != 'a'", &[]),
        vec!["Gamma"],
        "other tags need the tag"
    );
    assert_eq!(
        names("name IN ('beta', 'alpha')", &[]),
        vec!["alpha", "beta"]
    );
    for bad in ["metrics.x > 1", "run_id = 'x'", "name = 'a' OR name = 'b'"] {
        assert_eq!(
            code(s.search_registered_models(&search(bad))),
            ErrorCode::InvalidParameterValue,
            "{bad}"
        );
    }
    let mut req = search("");
    req.max_results = 1001;
    assert_eq!(
        code(s.search_registered_models(&req)),
        ErrorCode::InvalidParameterValue
    );

    // Paging.
    let mut req = search("");
    req.max_results = 2;
    let mut all = Vec::new();
    loop {
        let page = s.search_registered_models(&req).unwrap();
        all.extend(page.registered_models.into_iter().map(|m| m.name));
        match page.next_page_token {
            Some(t) => req.page_token = Some(t),
            None => break,
        }
    }
    assert_eq!(
        all,
        vec!["Gamma", "alpha", "beta"],
        "prompts left out by default"
    );
    assert_eq!(
        names("tags.`mlflow.prompt.is_prompt` = 'true'", &[]),
        vec!["prompt"]
    );

    let versions = |filter: &str, order: &[&str]| -> Vec<(String, String)> {
        let mut req = search(filter);
        req.order_by = order.iter().map(|o| o.to_string()).collect();
        s.search_model_versions(&req)
            .unwrap()
            .model_versions
            .into_iter()
            .map(|v| (v.name, v.version))
            .collect()
    };
    let pair = |n: &str, v: &str| (n.to_string(), v.to_string());
    assert_eq!(
        versions("name = 'alpha'", &[]),
        vec![pair("alpha", "2"), pair("alpha", "1")]
    );
    assert_eq!(
        versions(
            "version_number > 1 AND name != 'beta'",
            &["version_number DESC", "name ASC"]
        ),
        vec![pair("Gamma", "2"), pair("alpha", "2")]
    );
    assert_eq!(versions("source_path = 's3://beta'", &[]).len(), 2);
    assert_eq!(
        code(s.search_model_versions(&search("version_number > 'x'"))),
        ErrorCode::InvalidParameterValue
    );
}

#[test]
fn deployments_guard_what_they_serve() {
    let (_d, s) = temp_store();
    let run = new_run(&s);
    let lm = logged_model(&s, &run, "m").model_id;
    s.create_registered_model("fraud", &[], None, ALICE)
        .unwrap();
    version(&s, "fraud", &format!("models:/{lm}"), None);
    version(&s, "fraud", "s3://two", None);
    let d = s
        .create_deployment(
            &CreateDeployment {
                name: "prod-eu".into(),
                model_name: "fraud".into(),
                version: Some("1".into()),
                target: "k8s/eu".into(),
                ..Default::default()
            },
            ALICE,
        )
        .unwrap();
    assert_eq!(d.resolved_version.as_deref(), Some("1"));
    let refused_by = |deployment: &str, r: Result<()>| {
        let e = r.unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidState);
        assert!(e.to_string().contains(deployment), "{e}");
    };
    let refused = |r: Result<()>| refused_by("prod-eu", r);
    refused(s.delete_model_version("fraud", "1", ALICE));
    refused(s.delete_registered_model("fraud", ALICE));
    refused(s.delete_run(&run));
    refused(s.delete_experiment("0"));
    refused(s.delete_logged_model(&lm));
    s.delete_model_version("fraud", "2", ALICE).unwrap();

    // Duplicate names, unknown versions and bad requests.
    let req = |name: &str, version: Option<&str>, alias: Option<&str>| CreateDeployment {
        name: name.into(),
        model_name: "fraud".into(),
        version: version.map(str::to_string),
        alias: alias.map(str::to_string),
        target: "t".into(),
        ..Default::default()
    };
    assert_eq!(
        code(s.create_deployment(&req("prod-eu", Some("1"), None), ALICE)),
        ErrorCode::ResourceAlreadyExists
    );
    assert_eq!(
        code(s.create_deployment(&req("x", Some("9"), None), ALICE)),
        ErrorCode::ResourceDoesNotExist
    );
    assert_eq!(
        code(s.create_deployment(&req("x", Some("1"), Some("a")), ALICE)),
        ErrorCode::InvalidParameterValue
    );
    assert_eq!(
        code(s.create_deployment(&req("a/b", Some("1"), None), ALICE)),
        ErrorCode::InvalidParameterValue
    );
    assert_eq!(
        code(s.create_deployment(&req("x", None, Some("nope")), ALICE)),
        ErrorCode::InvalidParameterValue
    );

    // Once the deployment is gone, deletes go through.
    s.delete_deployment("prod-eu", ALICE).unwrap();
    assert_eq!(
        code(s.get_deployment("prod-eu")),
        ErrorCode::ResourceDoesNotExist
    );
    s.delete_run(&run).unwrap();
    s.restore_run(&run).unwrap();

    // An alias deployment follows the alias and protects the alias itself.
    let v3 = version(&s, "fraud", "s3://three", None).version;
    s.set_registered_model_alias("fraud", "live", &v3, ALICE)
        .unwrap();
    s.create_deployment(&req("canary", None, Some("live")), ALICE)
        .unwrap();
    refused_by("canary", s.delete_model_version("fraud", &v3, ALICE));
    refused_by(
        "canary",
        s.delete_registered_model_alias("fraud", "live", ALICE),
    );
    s.set_registered_model_alias("fraud", "live", "1", ALICE)
        .unwrap();
    assert_eq!(
        s.get_deployment("canary")
            .unwrap()
            .resolved_version
            .as_deref(),
        Some("1")
    );
    s.delete_model_version("fraud", &v3, ALICE).unwrap();
    refused_by("canary", s.delete_model_version("fraud", "1", ALICE));
    // Renaming the model keeps the deployment attached.
    s.rename_registered_model("fraud", "fraud2", ALICE).unwrap();
    assert_eq!(s.deployments().unwrap()[0].model_name, "fraud2");
    refused_by("canary", s.delete_registered_model("fraud2", ALICE));
}

#[test]
fn registry_history_is_recorded_queryable_and_durable() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open_with(dir.path(), manual_options()).unwrap();
    s.create_registered_model("churn", &[], None, "alice")
        .unwrap();
    version(&s, "churn", "s3://1", None);
    version(&s, "churn", "s3://2", None);
    s.transition_model_version_stage("churn", "1", "Production", false, "bob")
        .unwrap();
    s.transition_model_version_stage("churn", "2", "Production", true, "carol")
        .unwrap();
    s.update_registered_model("churn", "new desc", "dave")
        .unwrap();
    s.close().unwrap();
    // The catalog index is derived state: rebuild it from the checkpoint and the log.
    std::fs::remove_dir_all(dir.path().join("catalog/sled")).unwrap();
    let s = Store::open_with(dir.path(), manual_options()).unwrap();
    let events = s.registry_events(Some("churn")).unwrap();
    let summary: Vec<EventRow> = events
        .iter()
        .map(|e| {
            (
                e.user_id.clone(),
                e.action.clone(),
                e.version.clone(),
                e.before.clone(),
                e.after.clone(),
            )
        })
        .collect();
    let row = |u: &str, a: &str, v: Option<&str>, b: Option<&str>, af: Option<&str>| {
        (
            u.to_string(),
            a.to_string(),
            v.map(str::to_string),
            b.map(str::to_string),
            af.map(str::to_string),
        )
    };
    assert_eq!(
        summary,
        vec![
            row("alice", "create_registered_model", None, None, None),
            row(
                "alice",
                "create_model_version",
                Some("1"),
                None,
                Some("s3://1")
            ),
            row(
                "alice",
                "create_model_version",
                Some("2"),
                None,
                Some("s3://2")
            ),
            row(
                "bob",
                "transition_stage",
                Some("1"),
                Some("None"),
                Some("Production")
            ),
            row(
                "carol",
                "transition_stage",
                Some("2"),
                Some("None"),
                Some("Production")
            ),
            row(
                "carol",
                "transition_stage",
                Some("1"),
                Some("Production"),
                Some("Archived")
            ),
            row(
                "dave",
                "update_registered_model",
                None,
                Some(""),
                Some("new desc")
            ),
        ]
    );
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=7).collect::<Vec<_>>());

    // "Which version was in production" after the 4th event: version 1; now: version 2.
    let in_production = |upto: u64| -> String {
        let sql = format!(
            "SELECT CAST(version AS VARCHAR) AS v FROM (SELECT version, after, row_number() \
             OVER (PARTITION BY version ORDER BY seq DESC) AS r FROM registry_events WHERE \
             model_name = 'churn' AND action = 'transition_stage' AND seq <= {upto}) WHERE r = 1 \
             AND after = 'Production'"
        );
        to_csv(&s.sql(&sql).unwrap())
    };
    assert!(in_production(4).ends_with("\n1\n"), "{}", in_production(4));
    assert!(in_production(7).ends_with("\n2\n"), "{}", in_production(7));

    // The model tables.
    let csv = |q: &str| to_csv(&s.sql(q).unwrap());
    assert_eq!(
        csv("SELECT name, version, stage FROM model_versions ORDER BY version"),
        "name,version,stage\nchurn,1,Archived\nchurn,2,Production\n"
    );
    assert_eq!(
        csv("SELECT name, description FROM registered_models"),
        "name,description\nchurn,new desc\n"
    );
    for table in [
        "logged_models",
        "logged_model_params",
        "logged_model_tags",
        "model_aliases",
        "deployments",
    ] {
        assert_eq!(
            csv(&format!("SELECT count(*) AS n FROM {table}")),
            "n\n0\n",
            "{table}"
        );
    }
}

// ----- registry searches against a reference evaluator -----

mod props {
    use proptest::prelude::*;
    use quiver_store::*;

    use crate::search::{num_ref, str_ref};
    use crate::temp_store;

    const NAMES: &[&str] = &["alpha", "Alpha", "beta", "a_b", "a%b", "gamma2"];
    const TAG_KEYS: &[&str] = &["team", "mlflow.prompt.is_prompt"];
    const VALUES: &[&str] = &["true", "risk", "Risk", "r%"];
    const OPS: &[&str] = &["=", "!=", "LIKE", "ILIKE"];

    /// One clause: (field, op, value), field = "name", "tag:<key>" or "version".
    type Clause = (String, String, String);

    fn clause() -> impl Strategy<Value = Clause> {
        let text = prop::sample::select(
            ["alpha", "%a%", "A%", "_eta", "r%", "true", "risk", "a\\_b"].to_vec(),
        );
        prop_oneof![
            (prop::sample::select(OPS.to_vec()), text.clone()).prop_map(|(op, v)| (
                "name".to_string(),
                op.to_string(),
                v.to_string()
            )),
            (
                prop::sample::select(TAG_KEYS.to_vec()),
                prop::sample::select(OPS.to_vec()),
                text
            )
                .prop_map(|(k, op, v)| (
                    format!("tag:{k}"),
                    op.to_string(),
                    v.to_string()
                )),
            (
                prop::sample::select(vec!["=", "!=", "<", "<=", ">", ">="]),
                0..4u32
            )
                .prop_map(|(op, v)| (
                    "version".to_string(),
                    op.to_string(),
                    v.to_string()
                )),
        ]
    }

    fn filter_text(clauses: &[Clause]) -> String {
        clauses
            .iter()
            .map(|(f, op, v)| match f.strip_prefix("tag:") {
                Some(k) => format!("tags.`{k}` {op} '{v}'"),
                None if f == "version" => format!("version_number {op} {v}"),
                None => format!("name {op} '{v}'"),
            })
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    /// MLflow's semantics: a missing tag fails every comparison, except `!=` on the prompt tag.
    fn passes(c: &Clause, name: &str, tags: &[Tag], version: Option<u64>) -> bool {
        let (f, op, v) = c;
        if let Some(k) = f.strip_prefix("tag:") {
            let value = tags.iter().find(|t| t.key == k).map(|t| t.value.as_str());
            if value.is_none() && op == "!=" && k == "mlflow.prompt.is_prompt" {
                return true;
            }
            return str_ref(op, value, v);
        }
        if f == "version" {
            return num_ref(op, version.map(|v| v as f64), v.parse().unwrap());
        }
        str_ref(op, Some(name), v)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

        #[test]
        fn registry_searches_match_the_reference(
            models in prop::collection::vec(
                (
                    prop::collection::btree_map(
                        prop::sample::select(TAG_KEYS.to_vec()),
                        prop::sample::select(VALUES.to_vec()),
                        0..3,
                    ),
                    0..3u64,
                ),
                NAMES.len(),
            ),
            clauses in prop::collection::vec(clause(), 0..3),
            page in 1..4usize,
            descending in any::<bool>(),
        ) {
            let (_d, s) = temp_store();
            let mut expected_models = Vec::new();
            let mut expected_versions = Vec::new();
            for (name, (tags, versions)) in NAMES.iter().zip(&models) {
                let tags: Vec<Tag> = tags.iter().map(|(k, v)| Tag::new(*k, *v)).collect();
                s.create_registered_model(name, &tags, None, "u").unwrap();
                for v in 1..=*versions {
                    let req = CreateModelVersion {
                        name: name.to_string(),
                        source: format!("s3://{name}/{v}"),
                        ..Default::default()
                    };
                    s.create_model_version(&req, "u").unwrap();
                }
                let model_clauses: Vec<&Clause> =
                    clauses.iter().filter(|c| c.0 != "version").collect();
                // Without a clause on the prompt tag, prompts are left out.
                let names_prompt = model_clauses.iter().any(|c| c.0 == "tag:mlflow.prompt.is_prompt");
                let is_prompt = tags.iter().any(|t| t.key == "mlflow.prompt.is_prompt" && t.value == "true");
                if model_clauses.iter().all(|c| passes(c, name, &tags, None))
                    && (names_prompt || !is_prompt)
                {
                    expected_models.push(name.to_string());
                }
                // Versions carry no tags here: a tag clause fails them (unless it is the prompt
                // tag's `!=`).
                for v in 1..=*versions {
                    if clauses.iter().all(|c| passes(c, name, &[], Some(v))) {
                        expected_versions.push((name.to_string(), v));
                    }
                }
            }
            expected_models.sort();
            if descending {
                expected_models.reverse();
            }
            let model_filter: Vec<Clause> =
                clauses.iter().filter(|c| c.0 != "version").cloned().collect();
            let mut req = RegistrySearch {
                filter: filter_text(&model_filter),
                max_results: page,
                order_by: vec![format!("name {}", if descending { "DESC" } else { "ASC" })],
                page_token: None,
            };
            let mut got = Vec::new();
            loop {
                let p = s.search_registered_models(&req).unwrap();
                prop_assert!(p.registered_models.len() <= page);
                got.extend(p.registered_models.into_iter().map(|m| m.name));
                match p.next_page_token {
                    Some(t) => req.page_token = Some(t),
                    None => break,
                }
            }
            prop_assert_eq!(got, expected_models);

            // Versions: by default most recently changed first, then by name, newest first.
            let updated = |(n, v): &(String, u64)| {
                s.get_model_version(n, &v.to_string()).unwrap().last_updated_timestamp
            };
            expected_versions.sort_by(|a, b| {
                updated(b).cmp(&updated(a)).then(a.0.cmp(&b.0)).then(b.1.cmp(&a.1))
            });
            let mut req = RegistrySearch {
                filter: filter_text(&clauses),
                max_results: page,
                ..Default::default()
            };
            let mut got = Vec::new();
            loop {
                let p = s.search_model_versions(&req).unwrap();
                got.extend(
                    p.model_versions
                        .into_iter()
                        .map(|v| (v.name, v.version.parse::<u64>().unwrap())),
                );
                match p.next_page_token {
                    Some(t) => req.page_token = Some(t),
                    None => break,
                }
            }
            prop_assert_eq!(got, expected_versions);
        }
    }
}

/// The catalog keeps a logged model's latest point per key *and dataset*: rebuilding the catalog
/// from its durable copies (where each batch's points are reduced to what the catalog keeps)
/// must keep every dataset's point, not only each series' latest.
#[test]
fn model_metrics_survive_a_catalog_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open_with(dir.path(), manual_options()).unwrap();
    let run = new_run(&s);
    let id = logged_model(&s, &run, "m").model_id;
    let point = |v: f64, step: i64, ds: &str| {
        let mut p = Metric::new("acc", v, 1_700_000_000_000, step);
        p.model_id = Some(id.clone());
        p.dataset_name = Some(ds.into());
        p.dataset_digest = Some("d".into());
        p
    };
    // One batch, one series, two datasets: the series' latest point is on "test".
    let batch = [
        point(0.7, 1, "val"),
        point(0.6, 0, "val"),
        point(0.8, 2, "test"),
    ];
    s.log_batch(&run, &batch, &[], &[]).unwrap();
    let before = s.get_logged_model(&id).unwrap().metrics;
    assert_eq!(before.len(), 2);
    s.flush().unwrap(); // the log is retired into the catalog's delta log
    s.close().unwrap();
    std::fs::remove_dir_all(dir.path().join("catalog/sled")).unwrap();
    let s = Store::open_with(dir.path(), manual_options()).unwrap();
    assert_eq!(s.get_logged_model(&id).unwrap().metrics, before);
    assert_eq!(s.get_run(&run).unwrap().metrics[0].value, 0.8);
}
