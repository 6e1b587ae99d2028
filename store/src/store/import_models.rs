//! Bringing logged models (MLflow 3's `log_model`) from another tracking server: the model
//! keeps its id, name, status, times, tags and params, so `models:/<model_id>` URIs and
//! registry versions made from it still resolve. Its metrics come with the run points that
//! name it ([`crate::Metric::model_id`]); its files are artifacts under its artifact URI.

use super::Store;
use crate::catalog::models::LoggedModelRecord;
use crate::error::{Error, Result};
use crate::model_types::LoggedModelStatus;
use crate::ops::{LoggedModelChange, Op};
use crate::types::{LifecycleStage, Param, Tag};
use crate::validate;

/// A logged model as the source had it.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportLoggedModel {
    /// Its id (`m-` and 32 hex characters), kept.
    pub model_id: String,
    /// The experiment it belongs to, in this store.
    pub experiment_id: String,
    /// Its name.
    pub name: String,
    /// Upload state.
    pub status: LoggedModelStatus,
    /// Free text about the status.
    pub status_message: String,
    /// Kind of model.
    pub model_type: String,
    /// The run that produced it ("" when none).
    pub source_run_id: String,
    /// Creation time, ms since the epoch.
    pub creation_time: i64,
    /// Last change, ms since the epoch.
    pub last_updated_time: i64,
    /// Its tags.
    pub tags: Vec<Tag>,
    /// Its params.
    pub params: Vec<Param>,
}

impl Store {
    /// Creates the logged model `m` as the source had it, live (a model deleted in the source
    /// is deleted with [`Store::delete_logged_model`] once the runs that name it are in).
    /// Returns false, changing nothing, when a model of that id is here already. Its artifact
    /// URI is `<experiment artifact location>/models/<model_id>/artifacts`, as for any model.
    pub fn import_logged_model(&self, m: &ImportLoggedModel) -> Result<bool> {
        let experiment_id = validate::experiment_id(&m.experiment_id)?;
        if !is_model_id(&m.model_id) {
            return Err(Error::InvalidParameter(format!(
                "'{}' is not a logged model id (m- and 32 hex digits)",
                m.model_id
            )));
        }
        if !m.source_run_id.is_empty() {
            validate::run_id(&m.source_run_id)?;
        }
        for t in &m.tags {
            validate::entity_key("tag", &t.key)?;
        }
        for p in &m.params {
            validate::entity_key("param", &p.key)?;
        }
        self.inner.commit(|cat| {
            if cat.models.logged_model(&m.model_id)?.is_some() {
                return Ok((None, false));
            }
            let exp = cat
                .experiment(experiment_id)?
                .filter(|e| e.lifecycle_stage == LifecycleStage::Active)
                .ok_or_else(|| {
                    Error::NotFound(format!(
                        "No active experiment with id={} exists",
                        m.experiment_id
                    ))
                })?;
            let record = LoggedModelRecord {
                experiment_id,
                name: m.name.clone(),
                artifact_uri: format!(
                    "{}/models/{}/artifacts",
                    exp.artifact_location.trim_end_matches('/'),
                    m.model_id
                ),
                status: m.status,
                status_message: m.status_message.clone(),
                model_type: m.model_type.clone(),
                source_run_id: m.source_run_id.clone(),
                creation_time: m.creation_time,
                last_updated_time: m.last_updated_time,
                deleted: false,
            };
            let change = LoggedModelChange {
                model_id: m.model_id.clone(),
                record,
                set_tags: m.tags.clone(),
                delete_tags: Vec::new(),
                params: m.params.clone(),
            };
            Ok((Some(Op::LoggedModel(Box::new(change))), true))
        })
    }
}

/// Whether `id` has the form of a logged model id.
fn is_model_id(id: &str) -> bool {
    id.strip_prefix("m-")
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Metric, RunInfo, RunStatus};
    use crate::ImportExperiment;

    fn model(experiment_id: &str) -> ImportLoggedModel {
        ImportLoggedModel {
            model_id: "m-0123456789abcdef0123456789abcdef".into(),
            experiment_id: experiment_id.into(),
            name: "model".into(),
            status: LoggedModelStatus::Ready,
            status_message: String::new(),
            model_type: "pyfunc".into(),
            source_run_id: "a".repeat(32),
            creation_time: 5,
            last_updated_time: 7,
            tags: vec![Tag::new("t", "v")],
            params: vec![Param::new("lr", "0.1")],
        }
    }

    #[test]
    fn a_logged_model_keeps_its_id_and_fields_and_metrics_come_with_points() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let exp = store
            .import_experiment(&ImportExperiment {
                experiment_id: "7".into(),
                name: "e".into(),
                lifecycle_stage: LifecycleStage::Active,
                creation_time: 1,
                tags: vec![],
            })
            .unwrap()
            .experiment_id;
        let m = model(&exp);
        assert!(store.import_logged_model(&m).unwrap());
        assert!(
            !store.import_logged_model(&m).unwrap(),
            "a second time: nothing"
        );
        let got = store.get_logged_model(&m.model_id).unwrap();
        assert_eq!(
            (got.name.as_str(), got.status, got.creation_timestamp),
            ("model", LoggedModelStatus::Ready, 5)
        );
        assert_eq!(got.last_updated_timestamp, 7);
        assert_eq!(got.tags, m.tags);
        assert_eq!(got.params, m.params);
        assert!(got
            .artifact_uri
            .ends_with(&format!("/models/{}/artifacts", m.model_id)));

        let info = RunInfo {
            run_id: m.source_run_id.clone(),
            run_name: "r".into(),
            experiment_id: exp.clone(),
            user_id: "u".into(),
            status: RunStatus::Finished,
            start_time: 1,
            end_time: Some(2),
            lifecycle_stage: LifecycleStage::Active,
            artifact_uri: String::new(),
            deleted_time: None,
        };
        store.import_run(&info, &[], &[]).unwrap();
        let mut point = Metric::new("acc", 0.5, 3, 1);
        point.model_id = Some(m.model_id.clone());
        store.import_metrics(&info.run_id, &[point]).unwrap();
        let got = store.get_logged_model(&m.model_id).unwrap();
        assert_eq!(got.metrics.len(), 1);
        assert_eq!(got.metrics[0].run_id, info.run_id);
    }

    #[test]
    fn bad_models_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut m = model("0");
        m.model_id = "m-nothex".into();
        assert!(store.import_logged_model(&m).is_err());
        let m = model("12345");
        assert!(matches!(
            store.import_logged_model(&m),
            Err(Error::NotFound(_))
        ));
    }
}
