//! The model tables: logged models (with their params and tags), the registry (registered
//! models, versions, aliases), deployments and the registry's history (`registry_events`).
//!
//! `registry_events` answers questions about the past, e.g. which version of `fraud` was in
//! Production at time `T`: the last `transition_stage` event into or out of Production per version
//! before `T`:
//! ```sql
//! SELECT version FROM (
//!   SELECT version, after, row_number() OVER (PARTITION BY version ORDER BY seq DESC) AS r
//!   FROM registry_events
//!   WHERE model_name = 'fraud' AND action = 'transition_stage' AND time <= T)
//! WHERE r = 1 AND after = 'Production'
//! ```
//! Versions are `Int64` here (they are decimal strings in MLflow's API) so they sort as numbers.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array};
use arrow::datatypes::Field;

use super::tables::{int64, ints, optional_strings, strings, utf8, Build};
use crate::catalog::Catalog;
use crate::error::Result;
use crate::types::{Param, Tag};

fn nullable(name: &str) -> Field {
    Field::new(name, arrow::datatypes::DataType::Utf8, true)
}

fn optional_ints(values: impl Iterator<Item = Option<i64>>) -> ArrayRef {
    Arc::new(Int64Array::from_iter(values))
}

/// The model tables as (name, columns, builder).
pub(super) fn tables() -> Vec<(&'static str, Vec<Field>, Build)> {
    vec![
        (
            "logged_models",
            vec![
                utf8("model_id"),
                utf8("experiment_id"),
                utf8("name"),
                utf8("status"),
                utf8("model_type"),
                utf8("source_run_id"),
                utf8("artifact_uri"),
                int64("creation_time", false),
                int64("last_updated_time", false),
                utf8("lifecycle_stage"),
            ],
            logged_models,
        ),
        (
            "logged_model_params",
            vec![utf8("model_id"), utf8("key"), utf8("value")],
            logged_model_params,
        ),
        (
            "logged_model_tags",
            vec![utf8("model_id"), utf8("key"), utf8("value")],
            logged_model_tags,
        ),
        (
            "registered_models",
            vec![
                utf8("name"),
                utf8("description"),
                utf8("user_id"),
                int64("creation_time", false),
                int64("last_updated_time", false),
            ],
            registered_models,
        ),
        (
            "model_versions",
            vec![
                utf8("name"),
                int64("version", false),
                utf8("stage"),
                utf8("description"),
                utf8("source"),
                utf8("run_id"),
                utf8("model_id"),
                utf8("run_link"),
                utf8("user_id"),
                int64("creation_time", false),
                int64("last_updated_time", false),
            ],
            model_versions,
        ),
        (
            "model_aliases",
            vec![utf8("name"), utf8("alias"), int64("version", false)],
            model_aliases,
        ),
        (
            "deployments",
            vec![
                utf8("name"),
                utf8("model_name"),
                int64("version", true),
                nullable("alias"),
                int64("resolved_version", true),
                utf8("target"),
                utf8("description"),
                utf8("user_id"),
                int64("creation_time", false),
            ],
            deployments,
        ),
        (
            "registry_events",
            vec![
                int64("seq", false),
                int64("time", false),
                utf8("user_id"),
                utf8("action"),
                utf8("model_name"),
                int64("version", true),
                nullable("key"),
                nullable("before"),
                nullable("after"),
            ],
            registry_events,
        ),
    ]
}

fn logged_models(c: &Catalog) -> Result<Vec<ArrayRef>> {
    let mut rows = Vec::new();
    for id in c.models.all_logged_model_ids()? {
        if let Some(r) = c.models.logged_model(&id)? {
            rows.push((id, r));
        }
    }
    Ok(vec![
        strings(rows.iter().map(|(id, _)| id.as_str())),
        Arc::new(arrow::array::StringArray::from_iter_values(
            rows.iter().map(|(_, r)| r.experiment_id.to_string()),
        )),
        strings(rows.iter().map(|(_, r)| r.name.as_str())),
        strings(rows.iter().map(|(_, r)| r.status.as_str())),
        strings(rows.iter().map(|(_, r)| r.model_type.as_str())),
        strings(rows.iter().map(|(_, r)| r.source_run_id.as_str())),
        strings(rows.iter().map(|(_, r)| r.artifact_uri.as_str())),
        ints(rows.iter().map(|(_, r)| r.creation_time)),
        ints(rows.iter().map(|(_, r)| r.last_updated_time)),
        strings(
            rows.iter()
                .map(|(_, r)| if r.deleted { "deleted" } else { "active" }),
        ),
    ])
}

fn model_key_values(rows: &[(String, String, String)]) -> Vec<ArrayRef> {
    vec![
        strings(rows.iter().map(|r| r.0.as_str())),
        strings(rows.iter().map(|r| r.1.as_str())),
        strings(rows.iter().map(|r| r.2.as_str())),
    ]
}

fn logged_model_params(c: &Catalog) -> Result<Vec<ArrayRef>> {
    let mut rows = Vec::new();
    for id in c.models.all_logged_model_ids()? {
        for Param { key, value } in c.models.logged_model_params(&id)? {
            rows.push((id.clone(), key, value));
        }
    }
    Ok(model_key_values(&rows))
}

fn logged_model_tags(c: &Catalog) -> Result<Vec<ArrayRef>> {
    let mut rows = Vec::new();
    for id in c.models.all_logged_model_ids()? {
        for Tag { key, value } in c.models.logged_model_tags(&id)? {
            rows.push((id.clone(), key, value));
        }
    }
    Ok(model_key_values(&rows))
}

fn registered_models(c: &Catalog) -> Result<Vec<ArrayRef>> {
    let m = c.models.registered_models()?;
    Ok(vec![
        strings(m.iter().map(|(_, r)| r.name.as_str())),
        strings(m.iter().map(|(_, r)| r.description.as_str())),
        strings(m.iter().map(|(_, r)| r.user_id.as_str())),
        ints(m.iter().map(|(_, r)| r.creation_time)),
        ints(m.iter().map(|(_, r)| r.last_updated_time)),
    ])
}

/// Internal model id → current name.
fn model_names(c: &Catalog) -> Result<std::collections::HashMap<u64, String>> {
    Ok(c.models
        .registered_models()?
        .into_iter()
        .map(|(id, r)| (id, r.name))
        .collect())
}

fn model_versions(c: &Catalog) -> Result<Vec<ArrayRef>> {
    let names = model_names(c)?;
    let v = c.models.all_versions()?;
    let name = |id: &u64| names.get(id).map(String::as_str).unwrap_or_default();
    Ok(vec![
        strings(v.iter().map(|(id, _, _)| name(id))),
        ints(v.iter().map(|(_, n, _)| *n as i64)),
        strings(v.iter().map(|(_, _, r)| r.stage.as_str())),
        strings(v.iter().map(|(_, _, r)| r.description.as_str())),
        strings(v.iter().map(|(_, _, r)| r.source.as_str())),
        strings(v.iter().map(|(_, _, r)| r.run_id.as_str())),
        strings(v.iter().map(|(_, _, r)| r.model_id.as_str())),
        strings(v.iter().map(|(_, _, r)| r.run_link.as_str())),
        strings(v.iter().map(|(_, _, r)| r.user_id.as_str())),
        ints(v.iter().map(|(_, _, r)| r.creation_time)),
        ints(v.iter().map(|(_, _, r)| r.last_updated_time)),
    ])
}

fn model_aliases(c: &Catalog) -> Result<Vec<ArrayRef>> {
    let mut rows = Vec::new();
    for (id, rec) in c.models.registered_models()? {
        for (alias, v) in c.models.aliases(id)? {
            rows.push((rec.name.clone(), alias, v as i64));
        }
    }
    Ok(vec![
        strings(rows.iter().map(|r| r.0.as_str())),
        strings(rows.iter().map(|r| r.1.as_str())),
        ints(rows.iter().map(|r| r.2)),
    ])
}

fn deployments(c: &Catalog) -> Result<Vec<ArrayRef>> {
    let names = model_names(c)?;
    let d = c.models.deployments()?;
    let mut resolved = Vec::with_capacity(d.len());
    for (_, r) in &d {
        resolved.push(match (&r.version, &r.alias) {
            (Some(v), _) => Some(*v as i64),
            (None, Some(a)) => c.models.alias(r.model, a)?.map(|v| v as i64),
            (None, None) => None,
        });
    }
    Ok(vec![
        strings(d.iter().map(|(n, _)| n.as_str())),
        strings(
            d.iter()
                .map(|(_, r)| names.get(&r.model).map(String::as_str).unwrap_or_default()),
        ),
        optional_ints(d.iter().map(|(_, r)| r.version.map(|v| v as i64))),
        optional_strings(d.iter().map(|(_, r)| r.alias.as_deref())),
        optional_ints(resolved.into_iter()),
        strings(d.iter().map(|(_, r)| r.target.as_str())),
        strings(d.iter().map(|(_, r)| r.description.as_str())),
        strings(d.iter().map(|(_, r)| r.user_id.as_str())),
        ints(d.iter().map(|(_, r)| r.creation_time)),
    ])
}

fn registry_events(c: &Catalog) -> Result<Vec<ArrayRef>> {
    let e: Vec<_> = c.models.events()?.into_iter().map(|r| r.event).collect();
    Ok(vec![
        ints(e.iter().map(|e| e.seq as i64)),
        ints(e.iter().map(|e| e.time)),
        strings(e.iter().map(|e| e.user_id.as_str())),
        strings(e.iter().map(|e| e.action.as_str())),
        strings(e.iter().map(|e| e.model_name.as_str())),
        optional_ints(
            e.iter()
                .map(|e| e.version.as_deref().and_then(|v| v.parse::<i64>().ok())),
        ),
        optional_strings(e.iter().map(|e| e.key.as_deref())),
        optional_strings(e.iter().map(|e| e.before.as_deref())),
        optional_strings(e.iter().map(|e| e.after.as_deref())),
    ])
}
