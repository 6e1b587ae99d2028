//! Model versions of the registry: create (status READY at once), describe, stage transitions,
//! tags, aliases, download URIs, delete (refused while deployed).

use super::deployments::guard;
use super::registry::{
    check_model_name, check_tag, latest_versions, model_by_name, parse_version, render_version,
    version_of, Events,
};
use super::{now_ms, Store};
use crate::catalog::models::{ModelVersionRecord, RegisteredModelRecord};
use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::model_types::{
    CreateModelVersion, ModelVersion, ModelVersionPage, RegistrySearch, Stage,
};
use crate::ops::RegistryChange;
use crate::types::Tag;
use crate::validate;

/// Longest alias.
const MAX_ALIAS_LENGTH: usize = 255;

/// Checks an alias: `^[\w\-]*$`, non-empty, at most 255 characters, not `latest` or `v<digits>`
/// (those already mean something in `models:/` URIs).
pub(super) fn check_alias(alias: &str) -> Result<()> {
    if alias.is_empty() {
        return Err(Error::InvalidParameter(
            "Registered model alias name cannot be empty.".into(),
        ));
    }
    if !alias
        .chars()
        .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
    {
        return Err(Error::InvalidParameter(format!(
            "Invalid alias name: '{alias}'. Names may only contain alphanumerics, underscores \
             (_) and dashes (-)."
        )));
    }
    if alias.chars().count() > MAX_ALIAS_LENGTH {
        return Err(Error::InvalidParameter(format!(
            "Registered model alias name '{alias}' exceeds the maximum length of \
             {MAX_ALIAS_LENGTH} characters"
        )));
    }
    let lower = alias.to_lowercase();
    if lower == "latest" {
        return Err(Error::InvalidParameter(
            "'latest' alias name (case insensitive) is reserved.".into(),
        ));
    }
    if lower.len() > 1 && lower.starts_with('v') && lower[1..].chars().all(|c| c.is_ascii_digit()) {
        return Err(Error::InvalidParameter(format!(
            "Version alias name '{alias}' is reserved."
        )));
    }
    Ok(())
}

/// MLflow answers an unknown alias with `INVALID_PARAMETER_VALUE` (not a 404).
pub(super) fn alias_not_found(alias: &str) -> Error {
    Error::InvalidParameter(format!("Registered model alias {alias} not found."))
}

fn parse_stage(stage: &str) -> Result<Stage> {
    Stage::parse(stage).ok_or_else(|| {
        Error::InvalidParameter(format!(
            "Invalid Model Version stage: {stage}. Value must be one of None, Staging, \
             Production, Archived."
        ))
    })
}

/// The model and version a write is about: `(model id, model record, version, version record)`.
fn target(
    cat: &Catalog,
    name: &str,
    version: u64,
) -> Result<(u64, RegisteredModelRecord, ModelVersionRecord)> {
    let (id, model) = model_by_name(cat, name)?;
    let rec = version_of(cat, id, name, version)?;
    Ok((id, model, rec))
}

/// The model id a `models:/<model_id>` source names (MLflow 3 logged models are `m-<hex>`).
pub(super) fn logged_model_of_source(source: &str) -> Option<&str> {
    let rest = source.strip_prefix("models:/")?;
    (rest.starts_with("m-") && !rest.contains('/')).then_some(rest)
}

impl Store {
    /// The newest version of `name` in each of `stages` (every stage when empty), in stage order.
    pub fn get_latest_versions(&self, name: &str, stages: &[String]) -> Result<Vec<ModelVersion>> {
        check_model_name(name)?;
        let stages: Vec<Stage> = stages
            .iter()
            .map(|s| parse_stage(s))
            .collect::<Result<_>>()?;
        let cat = &self.inner.catalog;
        let (id, rec) = model_by_name(cat, name)?;
        latest_versions(cat, id, &rec.name, &stages)
    }

    /// Creates the next version of a registered model, status READY. A version of a logged model
    /// (`model_id`, or a `models:/<model_id>` source) takes the model's source run as its run
    /// when none is given, and is listed in the logged model's `mlflow.modelVersions` tag.
    pub fn create_model_version(
        &self,
        req: &CreateModelVersion,
        user: &str,
    ) -> Result<ModelVersion> {
        check_model_name(&req.name)?;
        if req.source.is_empty() {
            return Err(Error::InvalidParameter(
                "Missing value for required parameter 'source'.".into(),
            ));
        }
        for t in &req.tags {
            check_tag(t)?;
        }
        let time = now_ms();
        let (version, model_id) = self.inner.commit(|cat| {
            let (id, mut model) = model_by_name(cat, &req.name)?;
            let model_id = req
                .model_id
                .clone()
                .filter(|m| !m.is_empty())
                .or_else(|| logged_model_of_source(&req.source).map(str::to_string))
                .unwrap_or_default();
            let mut run_id = req.run_id.clone().unwrap_or_default();
            if !model_id.is_empty() {
                let logged = super::logged_models::load(cat, &model_id)?
                    .ok_or_else(|| super::logged_models::model_not_found(&model_id))?;
                if run_id.is_empty() {
                    run_id = logged.source_run_id;
                }
            }
            if !run_id.is_empty() {
                validate::run_id(&run_id)?;
            }
            let version = model.next_version.max(1);
            let record = ModelVersionRecord {
                creation_time: time,
                last_updated_time: time,
                user_id: user.to_string(),
                stage: Stage::None,
                description: req.description.clone().unwrap_or_default(),
                source: req.source.clone(),
                run_id,
                run_link: req.run_link.clone().unwrap_or_default(),
                model_id: model_id.clone(),
            };
            let mut events = Events::new(cat, time, user)?;
            events
                .push(id, "create_model_version", &model.name, Some(version))
                .after(req.source.clone());
            let mut changes = vec![RegistryChange::PutVersion {
                id,
                version,
                record,
            }];
            for t in &req.tags {
                changes.push(RegistryChange::PutVersionTag {
                    id,
                    version,
                    tag: t.clone(),
                });
            }
            model.next_version = version + 1;
            model.last_updated_time = time;
            changes.push(RegistryChange::PutModel { id, record: model });
            Ok((Some(events.into_op(changes)), (version, model_id)))
        })?;
        if !model_id.is_empty() {
            self.note_model_version(&model_id, &req.name, version)?;
        }
        self.get_model_version(&req.name, &version.to_string())
    }

    /// Version `version` of `name`.
    pub fn get_model_version(&self, name: &str, version: &str) -> Result<ModelVersion> {
        check_model_name(name)?;
        let v = parse_version(version)?;
        let cat = &self.inner.catalog;
        let (id, _, rec) = target(cat, name, v)?;
        render_version(cat, id, name, v, rec)
    }

    /// Sets the description of a model version.
    pub fn update_model_version(
        &self,
        name: &str,
        version: &str,
        description: &str,
        user: &str,
    ) -> Result<ModelVersion> {
        check_model_name(name)?;
        let v = parse_version(version)?;
        let time = now_ms();
        self.inner.commit(|cat| {
            let (id, mut model, mut rec) = target(cat, name, v)?;
            let mut events = Events::new(cat, time, user)?;
            events
                .push(id, "update_model_version", name, Some(v))
                .before(rec.description.clone())
                .after(description);
            rec.description = description.to_string();
            rec.last_updated_time = time;
            model.last_updated_time = time;
            let changes = vec![
                RegistryChange::PutVersion {
                    id,
                    version: v,
                    record: rec,
                },
                RegistryChange::PutModel { id, record: model },
            ];
            Ok((Some(events.into_op(changes)), ()))
        })?;
        self.get_model_version(name, version)
    }

    /// Moves a version to `stage` (case-insensitive). With `archive_existing` (only for Staging
    /// and Production), the other versions in that stage move to Archived, each recorded.
    pub fn transition_model_version_stage(
        &self,
        name: &str,
        version: &str,
        stage: &str,
        archive_existing: bool,
        user: &str,
    ) -> Result<ModelVersion> {
        check_model_name(name)?;
        let v = parse_version(version)?;
        let stage = parse_stage(stage)?;
        if archive_existing && !matches!(stage, Stage::Staging | Stage::Production) {
            return Err(Error::InvalidParameter(format!(
                "Model version transition cannot archive existing model versions because \
                 '{}' is not an Active stage. Valid stages are Staging, Production.",
                stage.as_str()
            )));
        }
        let time = now_ms();
        self.inner.commit(|cat| {
            let (id, mut model, mut rec) = target(cat, name, v)?;
            let mut events = Events::new(cat, time, user)?;
            let mut changes = Vec::new();
            events
                .push(id, "transition_stage", name, Some(v))
                .before(rec.stage.as_str())
                .after(stage.as_str());
            if archive_existing {
                for (other, mut o) in cat.models.versions(id)? {
                    if other != v && o.stage == stage {
                        events
                            .push(id, "transition_stage", name, Some(other))
                            .before(o.stage.as_str())
                            .after(Stage::Archived.as_str());
                        o.stage = Stage::Archived;
                        o.last_updated_time = time;
                        changes.push(RegistryChange::PutVersion {
                            id,
                            version: other,
                            record: o,
                        });
                    }
                }
            }
            rec.stage = stage;
            rec.last_updated_time = time;
            model.last_updated_time = time;
            changes.push(RegistryChange::PutVersion {
                id,
                version: v,
                record: rec,
            });
            changes.push(RegistryChange::PutModel { id, record: model });
            Ok((Some(events.into_op(changes)), ()))
        })?;
        self.get_model_version(name, version)
    }

    /// Deletes a model version with its tags and aliases; its number is not reused. Refused while
    /// a deployment serves it.
    pub fn delete_model_version(&self, name: &str, version: &str, user: &str) -> Result<()> {
        check_model_name(name)?;
        let v = parse_version(version)?;
        let time = now_ms();
        self.inner.commit(|cat| {
            let (id, mut model, rec) = target(cat, name, v)?;
            guard(
                cat,
                |m, served| m == id && served.is_some_and(|(sv, _)| sv == v),
                || format!("model version '{name}' version {v}"),
            )?;
            let mut events = Events::new(cat, time, user)?;
            events
                .push(id, "delete_model_version", name, Some(v))
                .before(rec.stage.as_str());
            model.last_updated_time = time;
            let changes = vec![
                RegistryChange::DeleteVersion { id, version: v },
                RegistryChange::PutModel { id, record: model },
            ];
            Ok((Some(events.into_op(changes)), ()))
        })
    }

    /// Searches model versions (`name`, `run_id`, `source_path`, `version_number`,
    /// `tags.<key>`; by default most recently changed first, then by name and newest version).
    pub fn search_model_versions(&self, req: &RegistrySearch) -> Result<ModelVersionPage> {
        crate::search::registry::search_versions(&self.inner.catalog, req)
    }

    /// Where a version's files are: the logged model's artifact URI for a `models:/<model_id>`
    /// source, else the source as registered (as MLflow answers; the client resolves `runs:/`
    /// URIs itself).
    pub fn model_version_download_uri(&self, name: &str, version: &str) -> Result<String> {
        let mv = self.get_model_version(name, version)?;
        if let Some(model_id) = logged_model_of_source(&mv.source) {
            if let Some(m) = super::logged_models::load(&self.inner.catalog, model_id)? {
                return Ok(m.artifact_uri);
            }
        }
        Ok(mv.source)
    }

    /// Upserts a tag of a model version.
    pub fn set_model_version_tag(
        &self,
        name: &str,
        version: &str,
        tag: &Tag,
        user: &str,
    ) -> Result<()> {
        check_model_name(name)?;
        let v = parse_version(version)?;
        check_tag(tag)?;
        let time = now_ms();
        self.inner.commit(|cat| {
            let (id, _, _) = target(cat, name, v)?;
            let old = cat
                .models
                .version_tags(id, v)?
                .into_iter()
                .find(|t| t.key == tag.key);
            let mut events = Events::new(cat, time, user)?;
            let e = events
                .push(id, "set_model_version_tag", name, Some(v))
                .key(&tag.key)
                .after(tag.value.clone());
            if let Some(old) = old {
                e.before(old.value);
            }
            let change = RegistryChange::PutVersionTag {
                id,
                version: v,
                tag: tag.clone(),
            };
            Ok((Some(events.into_op(vec![change])), ()))
        })
    }

    /// Removes a tag of a model version (nothing happens if it has none such).
    pub fn delete_model_version_tag(
        &self,
        name: &str,
        version: &str,
        key: &str,
        user: &str,
    ) -> Result<()> {
        check_model_name(name)?;
        let v = parse_version(version)?;
        validate::entity_key("tag", key)?;
        let time = now_ms();
        self.inner.commit(|cat| {
            let (id, _, _) = target(cat, name, v)?;
            let Some(old) = cat
                .models
                .version_tags(id, v)?
                .into_iter()
                .find(|t| t.key == key)
            else {
                return Ok((None, ()));
            };
            let mut events = Events::new(cat, time, user)?;
            events
                .push(id, "delete_model_version_tag", name, Some(v))
                .key(key)
                .before(old.value);
            let change = RegistryChange::DeleteVersionTag {
                id,
                version: v,
                key: key.to_string(),
            };
            Ok((Some(events.into_op(vec![change])), ()))
        })
    }

    /// Points alias `alias` of `name` at `version` (moving it if it pointed elsewhere).
    pub fn set_registered_model_alias(
        &self,
        name: &str,
        alias: &str,
        version: &str,
        user: &str,
    ) -> Result<()> {
        check_model_name(name)?;
        check_alias(alias)?;
        let v = parse_version(version)?;
        let time = now_ms();
        self.inner.commit(|cat| {
            let (id, _, _) = target(cat, name, v)?;
            let old = cat.models.alias(id, alias)?;
            if old == Some(v) {
                return Ok((None, ()));
            }
            let mut events = Events::new(cat, time, user)?;
            let e = events
                .push(id, "set_alias", name, Some(v))
                .key(alias)
                .after(v.to_string());
            if let Some(old) = old {
                e.before(old.to_string());
            }
            let change = RegistryChange::PutAlias {
                id,
                alias: alias.to_string(),
                version: v,
            };
            Ok((Some(events.into_op(vec![change])), ()))
        })
    }

    /// Removes an alias (nothing happens if it does not exist). Refused while a deployment names
    /// the alias.
    pub fn delete_registered_model_alias(&self, name: &str, alias: &str, user: &str) -> Result<()> {
        check_model_name(name)?;
        check_alias(alias)?;
        let time = now_ms();
        self.inner.commit(|cat| {
            let (id, _) = model_by_name(cat, name)?;
            let Some(old) = cat.models.alias(id, alias)? else {
                return Ok((None, ()));
            };
            for (dep, d) in cat.models.deployments()? {
                if d.model == id && d.alias.as_deref() == Some(alias) {
                    return Err(Error::InvalidState(format!(
                        "Cannot delete alias '{alias}' of registered model '{name}': deployment \
                         '{dep}' serves it at target '{}'. Delete the deployment first.",
                        d.target
                    )));
                }
            }
            let mut events = Events::new(cat, time, user)?;
            events
                .push(id, "delete_alias", name, Some(old))
                .key(alias)
                .before(old.to_string());
            let change = RegistryChange::DeleteAlias {
                id,
                alias: alias.to_string(),
            };
            Ok((Some(events.into_op(vec![change])), ()))
        })
    }

    /// The version alias `alias` of `name` points to.
    pub fn get_model_version_by_alias(&self, name: &str, alias: &str) -> Result<ModelVersion> {
        check_model_name(name)?;
        let cat = &self.inner.catalog;
        let (id, _) = model_by_name(cat, name)?;
        let v = cat
            .models
            .alias(id, alias)?
            .ok_or_else(|| alias_not_found(alias))?;
        let rec = version_of(cat, id, name, v)?;
        render_version(cat, id, name, v, rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_follow_mlflow_rules() {
        assert!(check_alias("champion").is_ok());
        assert!(check_alias("a-b_c9").is_ok());
        assert!(check_alias("v").is_ok());
        assert!(check_alias("v1x").is_ok());
        for bad in [
            "",
            "latest",
            "LATEST",
            "v1",
            "V12",
            "a b",
            "a/b",
            &"a".repeat(256),
        ] {
            assert!(check_alias(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn logged_model_sources() {
        assert_eq!(logged_model_of_source("models:/m-abc"), Some("m-abc"));
        assert_eq!(logged_model_of_source("models:/name/1"), None);
        assert_eq!(logged_model_of_source("runs:/r/model"), None);
    }
}
