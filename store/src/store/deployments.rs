//! Deployment records (Azure ML's model-management rule): a deployment names a model version or
//! alias and a target; while it exists, the version it serves, its registered model, the run that
//! produced it and the logged model it registers cannot be deleted.

use super::registry::{model_by_name, parse_version, version_of, Events};
use super::{now_ms, Store};
use crate::catalog::models::{DeploymentRecord, ModelVersionRecord};
use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::model_types::{CreateDeployment, Deployment};
use crate::ops::RegistryChange;

/// Longest deployment name.
const MAX_DEPLOYMENT_NAME: usize = 250;

fn not_found(name: &str) -> Error {
    Error::NotFound(format!("Deployment '{name}' not found."))
}

/// Checks a deployment name: letters, digits, `_`, `-`, `.`; at most 250 characters (it
/// appears in REST paths).
fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.chars().count() <= MAX_DEPLOYMENT_NAME
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && name != "."
        && name != "..";
    if !ok {
        return Err(Error::InvalidParameter(format!(
            "Invalid deployment name '{name}': use 1 to {MAX_DEPLOYMENT_NAME} letters, digits, \
             '_', '-' or '.'."
        )));
    }
    Ok(())
}

/// The version a deployment serves now: its version, or its alias's target.
fn resolved(cat: &Catalog, d: &DeploymentRecord) -> Result<Option<u64>> {
    match (&d.version, &d.alias) {
        (Some(v), _) => Ok(Some(*v)),
        (None, Some(a)) => cat.models.alias(d.model, a),
        (None, None) => Ok(None),
    }
}

/// Refuses a deletion while a deployment serves something it would remove: `hits` is asked
/// about each deployment's model (internal id) and the version it serves (when it resolves);
/// `what` names the thing being deleted for the message.
pub(super) fn guard(
    cat: &Catalog,
    hits: impl Fn(u64, Option<(u64, &ModelVersionRecord)>) -> bool,
    what: impl Fn() -> String,
) -> Result<()> {
    for (name, d) in cat.models.deployments()? {
        let version = resolved(cat, &d)?;
        let record = match version {
            Some(v) => cat.models.version(d.model, v)?,
            None => None,
        };
        let served = version.zip(record.as_ref());
        if hits(d.model, served) {
            let model = cat
                .models
                .registered_model(d.model)?
                .map(|m| m.name)
                .unwrap_or_default();
            let version = version.map(|v| format!(" version {v}")).unwrap_or_default();
            return Err(Error::InvalidState(format!(
                "Cannot delete {}: deployment '{name}' serves model '{model}'{version} at target \
                 '{}'. Delete the deployment first.",
                what(),
                d.target
            )));
        }
    }
    Ok(())
}

fn render(cat: &Catalog, name: &str, d: &DeploymentRecord) -> Result<Deployment> {
    let model_name = cat
        .models
        .registered_model(d.model)?
        .map(|m| m.name)
        .unwrap_or_default();
    Ok(Deployment {
        name: name.to_string(),
        model_name,
        version: d.version.map(|v| v.to_string()),
        alias: d.alias.clone(),
        resolved_version: resolved(cat, d)?.map(|v| v.to_string()),
        target: d.target.clone(),
        description: d.description.clone(),
        user_id: d.user_id.clone(),
        creation_timestamp: d.creation_time,
    })
}

impl Store {
    /// Records a deployment of an existing model version, or of whatever version an existing
    /// alias points to (followed as the alias moves).
    pub fn create_deployment(&self, req: &CreateDeployment, user: &str) -> Result<Deployment> {
        check_name(&req.name)?;
        if req.target.trim().is_empty() {
            return Err(Error::InvalidParameter(
                "Missing value for required parameter 'target'.".into(),
            ));
        }
        let version = match (&req.version, &req.alias) {
            (Some(v), None) => Some(parse_version(v)?),
            (None, Some(_)) => None,
            _ => {
                return Err(Error::InvalidParameter(
                    "A deployment names exactly one of 'version' and 'alias'.".into(),
                ))
            }
        };
        let time = now_ms();
        self.inner.commit(|cat| {
            if cat.models.deployment(&req.name)?.is_some() {
                return Err(Error::AlreadyExists(format!(
                    "Deployment '{}' already exists.",
                    req.name
                )));
            }
            let (id, model) = model_by_name(cat, &req.model_name)?;
            let served = match (&version, &req.alias) {
                (Some(v), _) => {
                    version_of(cat, id, &model.name, *v)?;
                    *v
                }
                (None, Some(a)) => cat
                    .models
                    .alias(id, a)?
                    .ok_or_else(|| super::model_versions::alias_not_found(a))?,
                (None, None) => unreachable!("checked above"),
            };
            let record = DeploymentRecord {
                model: id,
                version,
                alias: req.alias.clone(),
                target: req.target.clone(),
                description: req.description.clone().unwrap_or_default(),
                user_id: user.to_string(),
                creation_time: time,
            };
            let mut events = Events::new(cat, time, user)?;
            events
                .push(id, "create_deployment", &model.name, Some(served))
                .key(&req.name)
                .after(req.target.clone());
            let changes = vec![RegistryChange::PutDeployment {
                name: req.name.clone(),
                record,
            }];
            Ok((Some(events.into_op(changes)), ()))
        })?;
        self.get_deployment(&req.name)
    }

    /// Every deployment, by name.
    pub fn deployments(&self) -> Result<Vec<Deployment>> {
        let cat = &self.inner.catalog;
        cat.models
            .deployments()?
            .iter()
            .map(|(name, d)| render(cat, name, d))
            .collect()
    }

    /// The deployment `name`.
    pub fn get_deployment(&self, name: &str) -> Result<Deployment> {
        let cat = &self.inner.catalog;
        let d = cat
            .models
            .deployment(name)?
            .ok_or_else(|| not_found(name))?;
        render(cat, name, &d)
    }

    /// Removes a deployment record (its history stays in the registry events).
    pub fn delete_deployment(&self, name: &str, user: &str) -> Result<()> {
        let time = now_ms();
        self.inner.commit(|cat| {
            let d = cat
                .models
                .deployment(name)?
                .ok_or_else(|| not_found(name))?;
            let model = cat
                .models
                .registered_model(d.model)?
                .map(|m| m.name)
                .unwrap_or_default();
            let mut events = Events::new(cat, time, user)?;
            events
                .push(d.model, "delete_deployment", &model, resolved(cat, &d)?)
                .key(name)
                .before(d.target.clone());
            let changes = vec![RegistryChange::DeleteDeployment {
                name: name.to_string(),
            }];
            Ok((Some(events.into_op(changes)), ()))
        })
    }
}
