//! Importing a registered model from another server with its history as it stands: version
//! numbers, stages, sources, runs, times, users, descriptions, tags and aliases, in one logged
//! op (so a model is there whole or not at all).

use super::model_versions::{check_alias, logged_model_of_source};
use super::registry::{check_model_name, check_tag, Events};
use super::{now_ms, Store};
use crate::catalog::models::{ModelVersionRecord, RegisteredModelRecord};
use crate::error::{Error, Result};
use crate::model_types::Stage;
use crate::ops::RegistryChange;
use crate::types::Tag;

/// A model version as the source had it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ImportModelVersion {
    /// Its number (kept).
    pub version: u64,
    /// Creation time, ms.
    pub creation_time: i64,
    /// Last change, ms.
    pub last_updated_time: i64,
    /// Who created it.
    pub user_id: String,
    /// Its stage.
    pub stage: Stage,
    /// Its description.
    pub description: String,
    /// Where the model is (`runs:/...`, `models:/m-...`, a URI).
    pub source: String,
    /// The run that produced it ("" when none).
    pub run_id: String,
    /// The link to that run.
    pub run_link: String,
    /// Its tags.
    pub tags: Vec<Tag>,
}

/// A registered model as the source had it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ImportRegisteredModel {
    /// Its name (the key: a model of that name here is not imported again).
    pub name: String,
    /// Creation time, ms.
    pub creation_time: i64,
    /// Last change, ms.
    pub last_updated_time: i64,
    /// Its description.
    pub description: String,
    /// Its tags.
    pub tags: Vec<Tag>,
    /// Its versions (deleted ones left out).
    pub versions: Vec<ImportModelVersion>,
    /// Its aliases: (alias, version), each version among `versions`.
    pub aliases: Vec<(String, u64)>,
    /// The number the next version gets: above every number the source used, deleted
    /// versions' included (numbers are never reused).
    pub next_version: u64,
}

impl Store {
    /// Creates registered model `m` as it is, unless a model of its name exists (then nothing
    /// changes and the answer is false). Recorded in the model's history as one
    /// `import_registered_model` event by `user`.
    pub fn import_registered_model(&self, m: &ImportRegisteredModel, user: &str) -> Result<bool> {
        check_model_name(&m.name)?;
        m.tags.iter().try_for_each(check_tag)?;
        for v in &m.versions {
            v.tags.iter().try_for_each(check_tag)?;
            if v.version == 0 {
                return Err(Error::InvalidParameter(format!(
                    "model {}: version numbers start at 1",
                    m.name
                )));
            }
        }
        for (alias, version) in &m.aliases {
            check_alias(alias)?;
            if !m.versions.iter().any(|v| v.version == *version) {
                return Err(Error::InvalidParameter(format!(
                    "model {}: alias {alias} points at version {version}, which is not imported",
                    m.name
                )));
            }
        }
        self.inner.commit(|cat| {
            if cat.models.model_id_by_name(&m.name)?.is_some() {
                return Ok((None, false));
            }
            let id = cat.models.next_model_id()?;
            let highest = m.versions.iter().map(|v| v.version).max().unwrap_or(0);
            let record = RegisteredModelRecord {
                name: m.name.clone(),
                creation_time: m.creation_time,
                last_updated_time: m.last_updated_time,
                user_id: String::new(),
                description: m.description.clone(),
                next_version: m.next_version.max(highest + 1),
            };
            let mut changes = vec![RegistryChange::PutModel { id, record }];
            changes.extend(
                m.tags
                    .iter()
                    .map(|t| RegistryChange::PutModelTag { id, tag: t.clone() }),
            );
            for v in &m.versions {
                let record = ModelVersionRecord {
                    creation_time: v.creation_time,
                    last_updated_time: v.last_updated_time,
                    user_id: v.user_id.clone(),
                    stage: v.stage,
                    description: v.description.clone(),
                    source: v.source.clone(),
                    run_id: v.run_id.clone(),
                    run_link: v.run_link.clone(),
                    model_id: logged_model_of_source(&v.source)
                        .unwrap_or_default()
                        .to_string(),
                };
                changes.push(RegistryChange::PutVersion {
                    id,
                    version: v.version,
                    record,
                });
                changes.extend(v.tags.iter().map(|t| RegistryChange::PutVersionTag {
                    id,
                    version: v.version,
                    tag: t.clone(),
                }));
            }
            changes.extend(
                m.aliases
                    .iter()
                    .map(|(alias, version)| RegistryChange::PutAlias {
                        id,
                        alias: alias.clone(),
                        version: *version,
                    }),
            );
            let mut events = Events::new(cat, now_ms(), user)?;
            events
                .push(id, "import_registered_model", &m.name, None)
                .after(format!("{} versions", m.versions.len()));
            Ok((Some(events.into_op(changes)), true))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_comes_with_its_numbers_stages_tags_and_aliases() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path().join("store")).unwrap();
        let version = |n: u64, stage| ImportModelVersion {
            version: n,
            creation_time: 100 * n as i64,
            last_updated_time: 100 * n as i64 + 1,
            user_id: "ann".into(),
            stage,
            source: format!("runs:/r/model-{n}"),
            tags: vec![Tag::new("v", n.to_string())],
            ..Default::default()
        };
        let m = ImportRegisteredModel {
            name: "fraud".into(),
            creation_time: 50,
            last_updated_time: 60,
            description: "old model".into(),
            tags: vec![Tag::new("team", "risk")],
            // version 2 was deleted in the source: 3 comes next there, 4 here.
            versions: vec![version(1, Stage::Archived), version(3, Stage::Production)],
            aliases: vec![("champion".into(), 3)],
            next_version: 4,
        };
        assert!(s.import_registered_model(&m, "importer").unwrap());
        assert!(
            !s.import_registered_model(&m, "importer").unwrap(),
            "imported once"
        );
        let got = s.get_registered_model("fraud").unwrap();
        assert_eq!(got.description, "old model");
        assert_eq!(
            (got.creation_timestamp, got.last_updated_timestamp),
            (50, 60)
        );
        let v3 = s.get_model_version("fraud", "3").unwrap();
        assert_eq!(v3.current_stage, Stage::Production);
        assert_eq!(v3.aliases, vec!["champion".to_string()]);
        assert_eq!(v3.tags, vec![Tag::new("v", "3")]);
        assert!(s.get_model_version("fraud", "2").is_err());
        let req = crate::CreateModelVersion {
            name: "fraud".into(),
            source: "runs:/r/model-new".into(),
            ..Default::default()
        };
        assert_eq!(s.create_model_version(&req, "u").unwrap().version, "4");

        let mut bad = m.clone();
        bad.name = "other".into();
        bad.aliases = vec![("champion".into(), 2)];
        assert!(matches!(
            s.import_registered_model(&bad, "importer"),
            Err(Error::InvalidParameter(_))
        ));
    }
}
