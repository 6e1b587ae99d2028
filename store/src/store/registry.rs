//! The model registry's registered models, and what the registry's writes share: name and
//! version checks, rendering, and the [`Events`] every write records (who, when, what, before
//! and after), queryable through [`Store::registry_events`] and the `registry_events` table.
//! Versions, stages and aliases are in `model_versions`.

use super::{now_ms, Store};
use crate::catalog::models::{ModelVersionRecord, RegisteredModelRecord};
use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::model_types::{
    ModelAlias, ModelVersion, RegisteredModel, RegisteredModelPage, RegistryEvent, RegistrySearch,
    Stage,
};
use crate::ops::{EventRecord, Op, RegistryChange};
use crate::types::Tag;
use crate::validate;

/// Longest registry tag value (MLflow's limit; longer is an error).
pub(super) const MAX_REGISTRY_TAG_VALUE: usize = 100_000;

/// Checks a registered model name: non-empty, no `/` or `:` (they delimit `models:/` URIs).
pub(super) fn check_model_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::InvalidParameter(
            "Missing value for required parameter 'name'.".into(),
        ));
    }
    if name.contains('/') || name.contains(':') {
        return Err(Error::InvalidParameter(format!(
            "Invalid model name: '{name}'. Registered model names cannot contain '/' or ':'."
        )));
    }
    Ok(())
}

/// Parses a version number as MLflow accepts it (a decimal integer).
pub(crate) fn parse_version(version: &str) -> Result<u64> {
    version.trim().parse::<u64>().map_err(|_| {
        Error::InvalidParameter(format!(
            "Parameter 'version' must be an integer, got '{version}'."
        ))
    })
}

/// Checks a registry tag (MLflow's key rules; values up to 100,000 characters).
pub(super) fn check_tag(tag: &Tag) -> Result<()> {
    validate::entity_key("tag", &tag.key)?;
    if tag.value.chars().count() > MAX_REGISTRY_TAG_VALUE {
        return Err(Error::InvalidParameter(format!(
            "'tag value' exceeds the maximum length of {MAX_REGISTRY_TAG_VALUE} characters"
        )));
    }
    Ok(())
}

/// The registered model called `name` as `(id, record)`, or MLflow's not-found error.
pub(crate) fn model_by_name(cat: &Catalog, name: &str) -> Result<(u64, RegisteredModelRecord)> {
    let not_found = || Error::NotFound(format!("Registered Model with name={name} not found"));
    let id = cat.models.model_id_by_name(name)?.ok_or_else(not_found)?;
    let rec = cat.models.registered_model(id)?.ok_or_else(not_found)?;
    Ok((id, rec))
}

/// Version `version` of model `id` (called `name`), or MLflow's not-found error.
pub(crate) fn version_of(
    cat: &Catalog,
    id: u64,
    name: &str,
    version: u64,
) -> Result<ModelVersionRecord> {
    cat.models.version(id, version)?.ok_or_else(|| {
        Error::NotFound(format!(
            "Model Version (name={name}, version={version}) not found"
        ))
    })
}

/// A model version as the API returns it.
pub(crate) fn render_version(
    cat: &Catalog,
    id: u64,
    name: &str,
    version: u64,
    rec: ModelVersionRecord,
) -> Result<ModelVersion> {
    let aliases = cat
        .models
        .aliases(id)?
        .into_iter()
        .filter(|(_, v)| *v == version)
        .map(|(a, _)| a)
        .collect();
    Ok(ModelVersion {
        name: name.to_string(),
        version: version.to_string(),
        creation_timestamp: rec.creation_time,
        last_updated_timestamp: rec.last_updated_time,
        user_id: rec.user_id,
        current_stage: rec.stage,
        description: rec.description,
        source: rec.source,
        run_id: rec.run_id,
        run_link: rec.run_link,
        model_id: rec.model_id,
        tags: cat.models.version_tags(id, version)?,
        aliases,
    })
}

/// The newest version of model `id` in each stage that has one (only `stages` when given), in
/// stage order.
pub(crate) fn latest_versions(
    cat: &Catalog,
    id: u64,
    name: &str,
    stages: &[Stage],
) -> Result<Vec<ModelVersion>> {
    let mut newest: Vec<Option<(u64, ModelVersionRecord)>> = vec![None; Stage::ALL.len()];
    for (v, rec) in cat.models.versions(id)? {
        let slot = Stage::ALL.iter().position(|s| *s == rec.stage).unwrap_or(0);
        newest[slot] = Some((v, rec));
    }
    newest
        .into_iter()
        .zip(Stage::ALL)
        .filter(|(_, stage)| stages.is_empty() || stages.contains(stage))
        .filter_map(|(slot, _)| slot)
        .map(|(v, rec)| render_version(cat, id, name, v, rec))
        .collect()
}

/// A registered model as the API returns it.
pub(crate) fn render_model(
    cat: &Catalog,
    id: u64,
    rec: RegisteredModelRecord,
) -> Result<RegisteredModel> {
    let aliases = cat
        .models
        .aliases(id)?
        .into_iter()
        .map(|(alias, v)| ModelAlias {
            alias,
            version: v.to_string(),
        })
        .collect();
    Ok(RegisteredModel {
        latest_versions: latest_versions(cat, id, &rec.name, &[])?,
        tags: cat.models.registered_model_tags(id)?,
        aliases,
        name: rec.name,
        creation_timestamp: rec.creation_time,
        last_updated_timestamp: rec.last_updated_time,
        user_id: rec.user_id,
        description: rec.description,
    })
}

/// The events one registry write records, numbered from the catalog's next sequence number.
pub(crate) struct Events {
    next_seq: u64,
    time: i64,
    user: String,
    records: Vec<EventRecord>,
}

/// Fills in the optional fields of an event just pushed.
pub(crate) struct EventFields<'a>(&'a mut RegistryEvent);

impl EventFields<'_> {
    /// The tag key, alias or deployment name concerned.
    pub(crate) fn key(self, key: &str) -> Self {
        self.0.key = Some(key.to_string());
        self
    }

    /// The value before the change.
    pub(crate) fn before(self, value: impl Into<String>) -> Self {
        self.0.before = Some(value.into());
        self
    }

    /// The value after the change.
    pub(crate) fn after(self, value: impl Into<String>) -> Self {
        self.0.after = Some(value.into());
        self
    }
}

impl Events {
    /// Events of a write at `time` by `user`.
    pub(crate) fn new(cat: &Catalog, time: i64, user: &str) -> Result<Events> {
        Ok(Events {
            next_seq: cat.models.next_event_seq()?,
            time,
            user: user.to_string(),
            records: Vec::new(),
        })
    }

    /// Records `action` on model `model` (internal id, called `name`), optionally on a version.
    pub(crate) fn push(
        &mut self,
        model: u64,
        action: &str,
        name: &str,
        version: Option<u64>,
    ) -> EventFields<'_> {
        self.records.push(EventRecord {
            model,
            event: RegistryEvent {
                seq: self.next_seq,
                time: self.time,
                user_id: self.user.clone(),
                action: action.to_string(),
                model_name: name.to_string(),
                version: version.map(|v| v.to_string()),
                key: None,
                before: None,
                after: None,
            },
        });
        self.next_seq += 1;
        EventFields(&mut self.records.last_mut().expect("just pushed").event)
    }

    /// The op that applies `changes` and records these events.
    pub(crate) fn into_op(self, changes: Vec<RegistryChange>) -> Op {
        Op::Registry {
            changes,
            events: self.records,
        }
    }
}

impl Store {
    /// Creates a registered model ([`Error::AlreadyExists`] if the name is taken).
    pub fn create_registered_model(
        &self,
        name: &str,
        tags: &[Tag],
        description: Option<&str>,
        user: &str,
    ) -> Result<RegisteredModel> {
        check_model_name(name)?;
        for t in tags {
            check_tag(t)?;
        }
        let time = now_ms();
        self.inner.commit(|cat| {
            if cat.models.model_id_by_name(name)?.is_some() {
                return Err(Error::AlreadyExists(format!(
                    "Registered Model (name={name}) already exists."
                )));
            }
            let id = cat.models.next_model_id()?;
            let record = RegisteredModelRecord {
                name: name.to_string(),
                creation_time: time,
                last_updated_time: time,
                user_id: user.to_string(),
                description: description.unwrap_or_default().to_string(),
                next_version: 1,
            };
            let mut changes = vec![RegistryChange::PutModel { id, record }];
            let mut events = Events::new(cat, time, user)?;
            let e = events.push(id, "create_registered_model", name, None);
            if let Some(d) = description.filter(|d| !d.is_empty()) {
                e.after(d);
            }
            for t in tags {
                changes.push(RegistryChange::PutModelTag { id, tag: t.clone() });
                events
                    .push(id, "set_registered_model_tag", name, None)
                    .key(&t.key)
                    .after(t.value.clone());
            }
            Ok((Some(events.into_op(changes)), ()))
        })?;
        self.get_registered_model(name)
    }

    /// The registered model `name`, with its latest version per stage, tags and aliases.
    pub fn get_registered_model(&self, name: &str) -> Result<RegisteredModel> {
        check_model_name(name)?;
        let cat = &self.inner.catalog;
        let (id, rec) = model_by_name(cat, name)?;
        render_model(cat, id, rec)
    }

    /// Renames a registered model; its versions, aliases, deployments and history follow.
    pub fn rename_registered_model(
        &self,
        name: &str,
        new_name: &str,
        user: &str,
    ) -> Result<RegisteredModel> {
        check_model_name(name)?;
        check_model_name(new_name)?;
        let time = now_ms();
        self.inner.commit(|cat| {
            let (id, mut record) = model_by_name(cat, name)?;
            if name == new_name {
                return Ok((None, ()));
            }
            if cat.models.model_id_by_name(new_name)?.is_some() {
                return Err(Error::AlreadyExists(format!(
                    "Registered Model (name={new_name}) already exists."
                )));
            }
            record.name = new_name.to_string();
            record.last_updated_time = time;
            let mut events = Events::new(cat, time, user)?;
            events
                .push(id, "rename_registered_model", new_name, None)
                .before(name)
                .after(new_name);
            Ok((
                Some(events.into_op(vec![RegistryChange::PutModel { id, record }])),
                (),
            ))
        })?;
        self.get_registered_model(new_name)
    }

    /// Sets the description of a registered model.
    pub fn update_registered_model(
        &self,
        name: &str,
        description: &str,
        user: &str,
    ) -> Result<RegisteredModel> {
        check_model_name(name)?;
        let time = now_ms();
        self.inner.commit(|cat| {
            let (id, mut record) = model_by_name(cat, name)?;
            let mut events = Events::new(cat, time, user)?;
            events
                .push(id, "update_registered_model", name, None)
                .before(record.description.clone())
                .after(description);
            record.description = description.to_string();
            record.last_updated_time = time;
            Ok((
                Some(events.into_op(vec![RegistryChange::PutModel { id, record }])),
                (),
            ))
        })?;
        self.get_registered_model(name)
    }

    /// Deletes a registered model with all its versions, tags and aliases. Refused while a
    /// deployment serves one of its versions.
    pub fn delete_registered_model(&self, name: &str, user: &str) -> Result<()> {
        check_model_name(name)?;
        let time = now_ms();
        self.inner.commit(|cat| {
            let (id, _) = model_by_name(cat, name)?;
            super::deployments::guard(
                cat,
                |model, _| model == id,
                || format!("registered model '{name}'"),
            )?;
            let mut events = Events::new(cat, time, user)?;
            events.push(id, "delete_registered_model", name, None);
            Ok((
                Some(events.into_op(vec![RegistryChange::DeleteModel { id }])),
                (),
            ))
        })
    }

    /// Upserts a tag of a registered model.
    pub fn set_registered_model_tag(&self, name: &str, tag: &Tag, user: &str) -> Result<()> {
        check_model_name(name)?;
        check_tag(tag)?;
        let time = now_ms();
        self.inner.commit(|cat| {
            let (id, _) = model_by_name(cat, name)?;
            let old = cat
                .models
                .registered_model_tags(id)?
                .into_iter()
                .find(|t| t.key == tag.key);
            let mut events = Events::new(cat, time, user)?;
            let e = events
                .push(id, "set_registered_model_tag", name, None)
                .key(&tag.key)
                .after(tag.value.clone());
            if let Some(old) = old {
                e.before(old.value);
            }
            let change = RegistryChange::PutModelTag {
                id,
                tag: tag.clone(),
            };
            Ok((Some(events.into_op(vec![change])), ()))
        })
    }

    /// Removes a tag of a registered model (nothing happens if it has none such, as in MLflow).
    pub fn delete_registered_model_tag(&self, name: &str, key: &str, user: &str) -> Result<()> {
        check_model_name(name)?;
        validate::entity_key("tag", key)?;
        let time = now_ms();
        self.inner.commit(|cat| {
            let (id, _) = model_by_name(cat, name)?;
            let Some(old) = cat
                .models
                .registered_model_tags(id)?
                .into_iter()
                .find(|t| t.key == key)
            else {
                return Ok((None, ()));
            };
            let mut events = Events::new(cat, time, user)?;
            events
                .push(id, "delete_registered_model_tag", name, None)
                .key(key)
                .before(old.value);
            let change = RegistryChange::DeleteModelTag {
                id,
                key: key.to_string(),
            };
            Ok((Some(events.into_op(vec![change])), ()))
        })
    }

    /// Searches registered models (`name`, `tags.<key>`; order by `name`, `creation_timestamp`,
    /// `last_updated_timestamp`; default by name).
    pub fn search_registered_models(&self, req: &RegistrySearch) -> Result<RegisteredModelPage> {
        crate::search::registry::search_models(&self.inner.catalog, req)
    }

    /// The recorded registry and deployment changes, oldest first; only those of registered
    /// model `name` (under any name it had, and after its deletion) when given.
    pub fn registry_events(&self, name: Option<&str>) -> Result<Vec<RegistryEvent>> {
        let cat = &self.inner.catalog;
        let all = cat.models.events()?;
        let Some(name) = name else {
            return Ok(all.into_iter().map(|e| e.event).collect());
        };
        let mut ids: Vec<u64> = all
            .iter()
            .filter(|e| e.event.model_name == name)
            .map(|e| e.model)
            .collect();
        ids.extend(cat.models.model_id_by_name(name)?);
        Ok(all
            .into_iter()
            .filter(|e| ids.contains(&e.model))
            .map(|e| e.event)
            .collect())
    }
}
