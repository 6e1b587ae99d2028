//! Experiments, runs, params, tags and inputs: MLflow's rules through the library API.

use quiver_store::*;

use crate::{new_run, new_run_in, temp_store};

#[test]
fn default_experiment_exists_and_names_are_unique_including_deleted() {
    let (_d, s) = temp_store();
    let default = s.get_experiment("0").unwrap();
    assert_eq!(default.name, "Default");
    assert_eq!(default.artifact_location, "mlflow-artifacts:/0");
    let id = s
        .create_experiment("exp", None, &[Tag::new("team", "a")])
        .unwrap();
    assert_eq!(id, "1");
    assert_eq!(
        s.get_experiment_by_name("exp").unwrap().tags,
        vec![Tag::new("team", "a")]
    );
    let e = s.create_experiment("exp", None, &[]).unwrap_err();
    assert_eq!(e.code(), ErrorCode::ResourceAlreadyExists);
    s.delete_experiment(&id).unwrap();
    assert_eq!(
        s.get_experiment(&id).unwrap().lifecycle_stage,
        LifecycleStage::Deleted
    );
    assert_eq!(
        s.create_experiment("exp", None, &[]).unwrap_err().code(),
        ErrorCode::ResourceAlreadyExists
    );
    assert_eq!(s.list_experiments(ViewType::ActiveOnly).unwrap().len(), 1);
    assert_eq!(s.list_experiments(ViewType::DeletedOnly).unwrap().len(), 1);
    assert_eq!(s.list_experiments(ViewType::All).unwrap().len(), 2);
    // Renaming a deleted experiment is refused; restoring then renaming works.
    assert_eq!(
        s.rename_experiment(&id, "x").unwrap_err().code(),
        ErrorCode::InvalidState
    );
    s.restore_experiment(&id).unwrap();
    s.rename_experiment(&id, "renamed").unwrap();
    assert!(s.get_experiment_by_name("exp").is_err());
    assert_eq!(
        s.get_experiment_by_name("renamed").unwrap().experiment_id,
        id
    );
    let missing = s.get_experiment("99").unwrap_err();
    assert_eq!(missing.code(), ErrorCode::ResourceDoesNotExist);
    assert!(missing
        .to_string()
        .contains("No Experiment with id=99 exists"));
    assert_eq!(
        s.get_experiment("abc").unwrap_err().code(),
        ErrorCode::InvalidParameterValue
    );
    assert_eq!(
        s.create_experiment("  ", None, &[]).unwrap_err().code(),
        ErrorCode::InvalidParameterValue
    );
}

#[test]
fn experiment_tags_upsert_and_delete() {
    let (_d, s) = temp_store();
    let id = s.create_experiment("e", None, &[]).unwrap();
    s.set_experiment_tag(&id, "k", "v1").unwrap();
    s.set_experiment_tag(&id, "k", "v2").unwrap();
    assert_eq!(
        s.get_experiment(&id).unwrap().tags,
        vec![Tag::new("k", "v2")]
    );
    s.delete_experiment_tag(&id, "k").unwrap();
    assert!(s.get_experiment(&id).unwrap().tags.is_empty());
    assert_eq!(
        s.delete_experiment_tag(&id, "k").unwrap_err().code(),
        ErrorCode::ResourceDoesNotExist
    );
}

#[test]
fn runs_have_mlflow_identity_and_lifecycle() {
    let (_d, s) = temp_store();
    let exp = s.create_experiment("e", None, &[]).unwrap();
    let run = s
        .create_run(CreateRun {
            experiment_id: Some(exp.clone()),
            user_id: Some("alice".into()),
            run_name: Some("first".into()),
            start_time: Some(1000),
            tags: vec![Tag::new("t", "v")],
        })
        .unwrap();
    let id = run.info.run_id.clone();
    assert_eq!(id.len(), 32);
    assert!(id
        .chars()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert_eq!(
        run.info.artifact_uri,
        format!("mlflow-artifacts:/{exp}/{id}/artifacts")
    );
    assert_eq!(run.info.status, RunStatus::Running);
    assert!(run.tags.contains(&Tag::new("mlflow.runName", "first")));
    // A generated name when none is given.
    let other = s
        .create_run(CreateRun {
            experiment_id: Some(exp.clone()),
            ..Default::default()
        })
        .unwrap();
    assert!(!other.info.run_name.is_empty());
    // run_name and the mlflow.runName tag must agree.
    let conflict = s.create_run(CreateRun {
        run_name: Some("a".into()),
        tags: vec![Tag::new("mlflow.runName", "b")],
        ..Default::default()
    });
    assert_eq!(
        conflict.unwrap_err().code(),
        ErrorCode::InvalidParameterValue
    );

    let info = s
        .update_run(
            &id,
            UpdateRun {
                status: Some(RunStatus::Finished),
                end_time: Some(2000),
                run_name: Some("renamed".into()),
            },
        )
        .unwrap();
    assert_eq!(
        (info.status, info.end_time, info.run_name.as_str()),
        (RunStatus::Finished, Some(2000), "renamed")
    );
    assert_eq!(
        s.get_run(&id)
            .unwrap()
            .tags
            .iter()
            .find(|t| t.key == "mlflow.runName")
            .unwrap()
            .value,
        "renamed"
    );
    // Setting the tag renames the run too.
    s.set_tag(&id, "mlflow.runName", "via-tag").unwrap();
    assert_eq!(s.get_run(&id).unwrap().info.run_name, "via-tag");
    // Logging to a FINISHED run is allowed (status is not lifecycle).
    s.log_param(&id, "p", "1").unwrap();

    s.delete_run(&id).unwrap();
    let deleted = s.get_run(&id).unwrap();
    assert_eq!(deleted.info.lifecycle_stage, LifecycleStage::Deleted);
    assert!(deleted.info.deleted_time.is_some());
    let e = s.log_param(&id, "q", "1").unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidParameterValue);
    assert!(
        e.to_string().contains("must be in the 'active' state"),
        "{e}"
    );
    assert_eq!(s.list_runs(&[&exp], ViewType::ActiveOnly).unwrap().len(), 1);
    assert_eq!(s.list_runs(&[&exp], ViewType::All).unwrap().len(), 2);
    s.restore_run(&id).unwrap();
    s.log_param(&id, "q", "1").unwrap();

    // Deleting the experiment deletes its runs; creating runs in it is refused.
    s.delete_experiment(&exp).unwrap();
    assert_eq!(
        s.get_run(&id).unwrap().info.lifecycle_stage,
        LifecycleStage::Deleted
    );
    let e = s
        .create_run(CreateRun {
            experiment_id: Some(exp.clone()),
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidParameterValue);
    s.restore_experiment(&exp).unwrap();
    assert_eq!(
        s.get_run(&id).unwrap().info.lifecycle_stage,
        LifecycleStage::Active
    );

    let missing = s.get_run("0123456789abcdef0123456789abcdef").unwrap_err();
    assert_eq!(missing.code(), ErrorCode::ResourceDoesNotExist);
    assert!(missing
        .to_string()
        .contains("Run with id=0123456789abcdef0123456789abcdef not found"));
}

#[test]
fn params_are_write_once() {
    let (_d, s) = temp_store();
    let id = new_run(&s);
    s.log_param(&id, "lr", "0.01").unwrap();
    s.log_param(&id, "lr", "0.01").unwrap(); // same value: no-op
    let e = s.log_param(&id, "lr", "0.1").unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidParameterValue);
    assert!(
        e.to_string()
            .contains("Changing param values is not allowed"),
        "{e}"
    );
    // In a batch: duplicates are refused, and nothing of a refused batch is applied.
    let dup = s.log_batch(&id, &[], &[Param::new("a", "1"), Param::new("a", "1")], &[]);
    assert_eq!(dup.unwrap_err().code(), ErrorCode::InvalidParameterValue);
    let bad = s.log_batch(
        &id,
        &[Metric::new("m", 1.0, 1, 0)],
        &[Param::new("b", "1"), Param::new("lr", "0.2")],
        &[Tag::new("t", "x")],
    );
    assert!(bad
        .unwrap_err()
        .to_string()
        .contains("Params were already logged"));
    let run = s.get_run(&id).unwrap();
    assert_eq!(run.params, vec![Param::new("lr", "0.01")]);
    assert!(run.metrics.is_empty());
    assert!(!run.tags.iter().any(|t| t.key == "t"));
    // Long values are truncated as MLflow does.
    s.log_param(&id, "long", &"x".repeat(7000)).unwrap();
    s.set_tag(&id, "long", &"y".repeat(9000)).unwrap();
    let run = s.get_run(&id).unwrap();
    assert_eq!(
        run.params
            .iter()
            .find(|p| p.key == "long")
            .unwrap()
            .value
            .len(),
        6000
    );
    assert_eq!(
        run.tags
            .iter()
            .find(|t| t.key == "long")
            .unwrap()
            .value
            .len(),
        8000
    );
}

#[test]
fn tags_upsert_and_delete() {
    let (_d, s) = temp_store();
    let id = new_run(&s);
    s.set_tag(&id, "k", "1").unwrap();
    s.set_tag(&id, "k", "2").unwrap();
    assert!(s.get_run(&id).unwrap().tags.contains(&Tag::new("k", "2")));
    s.delete_tag(&id, "k").unwrap();
    assert!(!s.get_run(&id).unwrap().tags.iter().any(|t| t.key == "k"));
    let e = s.delete_tag(&id, "k").unwrap_err();
    assert_eq!(e.code(), ErrorCode::ResourceDoesNotExist);
    assert!(e
        .to_string()
        .contains(&format!("No tag with name: k in run with id {id}")));
}

#[test]
fn keys_and_limits_are_validated() {
    let (_d, s) = temp_store();
    let id = new_run(&s);
    for bad in ["a//b", "/abs", "../x", "a\\b", "bad!"] {
        assert_eq!(
            s.log_metric(&id, &Metric::new(bad, 1.0, 1, 0))
                .unwrap_err()
                .code(),
            ErrorCode::InvalidParameterValue,
            "{bad}"
        );
        assert!(s.log_param(&id, bad, "v").is_err());
        assert!(s.set_tag(&id, bad, "v").is_err());
    }
    assert!(s
        .log_metric(&id, &Metric::new("k".repeat(251), 1.0, 1, 0))
        .is_err());
    assert!(s
        .log_metric(&id, &Metric::new("neg_ts", 1.0, -1, 0))
        .is_err());
    let too_many: Vec<Metric> = (0..1001).map(|i| Metric::new("m", 1.0, 1, i)).collect();
    let e = s.log_batch(&id, &too_many, &[], &[]).unwrap_err();
    assert!(e.to_string().contains("at most 1000 metrics"), "{e}");
    let e = s
        .log_metric("not a run id!", &Metric::new("m", 1.0, 1, 0))
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidParameterValue);
}

#[test]
fn dataset_inputs_are_recorded_and_deduplicated_per_experiment() {
    let (_d, s) = temp_store();
    let a = new_run(&s);
    let b = new_run(&s);
    let input = DatasetInput {
        tags: vec![Tag::new("mlflow.data.context", "train")],
        dataset: Dataset {
            name: "mnist".into(),
            digest: "abc123".into(),
            source_type: "local".into(),
            source: "{\"uri\": \"/data\"}".into(),
            schema: Some("{}".into()),
            profile: None,
        },
    };
    s.log_inputs(&a, std::slice::from_ref(&input)).unwrap();
    let mut changed = input.clone();
    changed.dataset.source = "other".into();
    changed.tags = vec![Tag::new("mlflow.data.context", "eval")];
    s.log_inputs(&b, &[changed]).unwrap();
    let ra = s.get_run(&a).unwrap();
    let rb = s.get_run(&b).unwrap();
    assert_eq!(ra.dataset_inputs, vec![input.clone()]);
    // Same (name, digest) in the same experiment: the first dataset record is kept.
    assert_eq!(rb.dataset_inputs[0].dataset, input.dataset);
    assert_eq!(rb.dataset_inputs[0].tags[0].value, "eval");
    let mut bad = input;
    bad.dataset.digest = "d".repeat(37);
    assert!(s.log_inputs(&a, &[bad]).is_err());
}

#[test]
fn dataset_search_lists_distinct_uses_with_their_context() {
    let (_d, s) = temp_store();
    let exp = s.create_experiment("e", None, &[]).unwrap();
    let (a, b) = (new_run_in(&s, &exp), new_run_in(&s, &exp));
    let input = |name: &str, context: Option<&str>| DatasetInput {
        tags: context
            .map(|c| vec![Tag::new(DATASET_CONTEXT_TAG, c)])
            .unwrap_or_default(),
        dataset: Dataset {
            name: name.into(),
            digest: "1".into(),
            source_type: "local".into(),
            source: "x".into(),
            schema: None,
            profile: None,
        },
    };
    s.log_inputs(&a, &[input("train", Some("training")), input("raw", None)])
        .unwrap();
    // The same use again in another run is listed once; another context is another row.
    s.log_inputs(
        &b,
        &[input("train", Some("training")), input("raw", Some("eval"))],
    )
    .unwrap();
    let summary = |name: &str, context: Option<&str>| DatasetSummary {
        experiment_id: exp.clone(),
        name: name.into(),
        digest: "1".into(),
        context: context.map(Into::into),
    };
    assert_eq!(
        s.search_datasets(&[exp.clone(), "0".into(), "99".into()])
            .unwrap(),
        vec![
            summary("raw", None),
            summary("raw", Some("eval")),
            summary("train", Some("training")),
        ]
    );
    assert!(s.search_datasets(&["x".into()]).is_err());
}

#[test]
fn second_process_open_is_refused_with_the_holder_pid() {
    let (dir, _s) = temp_store();
    // The lock is per open file description, so a second open in this process is refused too.
    let e = Store::open(dir.path()).unwrap_err();
    match e {
        Error::Locked { pid, .. } => assert_eq!(pid, std::process::id()),
        other => panic!("expected Locked, got {other}"),
    }
}

#[test]
fn restoring_an_experiment_brings_back_only_the_runs_deleted_with_it() {
    let (_d, s) = temp_store();
    let exp = s.create_experiment("e", None, &[]).unwrap();
    let (kept, alone) = (new_run_in(&s, &exp), new_run_in(&s, &exp));
    s.delete_run(&alone).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5));
    s.delete_experiment(&exp).unwrap();
    s.restore_experiment(&exp).unwrap();
    assert_eq!(
        s.get_run(&kept).unwrap().info.lifecycle_stage,
        LifecycleStage::Active
    );
    assert_eq!(
        s.get_run(&alone).unwrap().info.lifecycle_stage,
        LifecycleStage::Deleted
    );
}
