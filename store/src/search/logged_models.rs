//! `logged-models/search`: MLflow's filter grammar over the logged models of some experiments
//! (attributes, `metrics.`, `params.`, `tags.`), with `order_by` objects and dataset scoping.
//!
//! A model's metrics are the latest point per (key, dataset, run) logged with its `model_id`. A
//! metric clause passes when any of them (on the requested datasets, if any) passes; ordering by
//! a metric uses the latest of them (by step, then timestamp). Datasets given without a metric
//! clause keep only the models with a metric on one of them.

use super::grammar::{self, Clause, Entity, Test, NUMERIC_OPS, STRING_LIST_OPS, STRING_OPS};
use super::token::{self, SortValue};
use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::model_types::{
    DatasetRef, LoggedModel, LoggedModelOrder, LoggedModelPage, LoggedModelSearch,
};
use crate::types::Metric;

/// An attribute, metric, param or tag of a logged model.
#[derive(Debug, Clone, PartialEq)]
enum Field {
    Name,
    ModelId,
    ModelType,
    Status,
    SourceRunId,
    Created,
    Updated,
    Metric(String),
    Param(String),
    Tag(String),
}

fn attribute(key: &str) -> Result<Field> {
    Ok(match key {
        "name" => Field::Name,
        "model_id" => Field::ModelId,
        "model_type" => Field::ModelType,
        "status" => Field::Status,
        "source_run_id" => Field::SourceRunId,
        "creation_timestamp" | "creation_time" => Field::Created,
        "last_updated_timestamp" | "last_updated_time" => Field::Updated,
        _ => {
            return Err(Error::InvalidParameter(format!(
                "Invalid attribute key '{key}' specified. Valid keys are 'name', 'model_id', \
                 'model_type', 'status', 'source_run_id', 'creation_timestamp', \
                 'last_updated_timestamp'"
            )))
        }
    })
}

fn clause_test(c: &Clause) -> Result<(Field, Test)> {
    Ok(match c.entity {
        Entity::Metric => (Field::Metric(c.key.clone()), Test::number(c, NUMERIC_OPS)?),
        Entity::Param => (Field::Param(c.key.clone()), Test::string(c, STRING_OPS)?),
        Entity::Tag => (Field::Tag(c.key.clone()), Test::string(c, STRING_OPS)?),
        Entity::Attribute => {
            let field = attribute(&c.key)?;
            let test = match field {
                Field::Created | Field::Updated => Test::number(c, NUMERIC_OPS)?,
                _ => Test::string(c, STRING_LIST_OPS)?,
            };
            (field, test)
        }
        Entity::Dataset => {
            return Err(Error::InvalidParameter(
                "Invalid entity type 'dataset'. Logged models are filtered on attributes, \
                 metrics, params and tags; pass datasets in the 'datasets' field"
                    .into(),
            ))
        }
    })
}

fn on_datasets(m: &Metric, datasets: &[DatasetRef]) -> bool {
    datasets.is_empty()
        || datasets.iter().any(|d| {
            m.dataset_name.as_deref() == Some(d.dataset_name.as_str())
                && d.dataset_digest
                    .as_deref()
                    .is_none_or(|g| m.dataset_digest.as_deref() == Some(g))
        })
}

/// The model's metric points named `key` on `datasets`.
fn points<'a>(
    model: &'a LoggedModel,
    key: &'a str,
    datasets: &'a [DatasetRef],
) -> impl Iterator<Item = &'a Metric> + 'a {
    model
        .metrics
        .iter()
        .map(|m| &m.metric)
        .filter(move |m| m.key == key && on_datasets(m, datasets))
}

fn attr_str(m: &LoggedModel, field: &Field) -> Option<String> {
    Some(match field {
        Field::Name => m.name.clone(),
        Field::ModelId => m.model_id.clone(),
        Field::ModelType => m.model_type.clone(),
        Field::Status => m.status.as_str().to_string(),
        Field::SourceRunId => m.source_run_id.clone(),
        _ => return None,
    })
}

fn passes(m: &LoggedModel, field: &Field, test: &Test, datasets: &[DatasetRef]) -> bool {
    match field {
        Field::Created => test.on_num(Some(m.creation_timestamp as f64)),
        Field::Updated => test.on_num(Some(m.last_updated_timestamp as f64)),
        Field::Metric(k) => points(m, k, datasets).any(|p| test.on_num(Some(p.value))),
        Field::Param(k) => test.on_str(m.params.iter().find(|p| &p.key == k).map(|p| &*p.value)),
        Field::Tag(k) => test.on_str(m.tags.iter().find(|t| &t.key == k).map(|t| &*t.value)),
        other => test.on_str(attr_str(m, other).as_deref()),
    }
}

/// One order component: the field, its direction and, for metrics, its datasets.
struct OrderPart {
    field: Field,
    ascending: bool,
    datasets: Vec<DatasetRef>,
}

fn order_part(o: &LoggedModelOrder) -> Result<OrderPart> {
    let field = match o.field_name.split_once('.') {
        Some(("metrics" | "metric", key)) if !key.is_empty() => Field::Metric(key.to_string()),
        _ => attribute(&o.field_name).map_err(|_| {
            Error::InvalidParameter(format!(
                "Invalid order_by field '{}'. Order by an attribute ('name', 'model_id', \
                 'model_type', 'status', 'source_run_id', 'creation_timestamp', \
                 'last_updated_timestamp') or 'metrics.<key>'",
                o.field_name
            ))
        })?,
    };
    let datasets = o
        .dataset_name
        .clone()
        .map(|dataset_name| DatasetRef {
            dataset_name,
            dataset_digest: o.dataset_digest.clone(),
        })
        .into_iter()
        .collect();
    Ok(OrderPart {
        field,
        ascending: o.ascending,
        datasets,
    })
}

fn sort_value<'a>(m: &'a LoggedModel, part: &OrderPart) -> Option<SortValue<'a>> {
    Some(match &part.field {
        Field::Created => SortValue::Num(m.creation_timestamp as f64),
        Field::Updated => SortValue::Num(m.last_updated_timestamp as f64),
        Field::Name => SortValue::Str(&m.name),
        Field::ModelId => SortValue::Str(&m.model_id),
        Field::ModelType => SortValue::Str(&m.model_type),
        Field::Status => SortValue::Str(m.status.as_str()),
        Field::SourceRunId => SortValue::Str(&m.source_run_id),
        Field::Metric(k) => {
            let latest = points(m, k, &part.datasets).max_by(|a, b| {
                crate::metrics::latest_order(
                    &(a.step, a.timestamp, a.value),
                    &(b.step, b.timestamp, b.value),
                )
            })?;
            SortValue::Num(latest.value)
        }
        Field::Param(_) | Field::Tag(_) => return None,
    })
}

/// Whether `filter` compiles as a logged-model search (and as an order field, not panicking).
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_compile(filter: &str) -> bool {
    let _ = order_part(&LoggedModelOrder {
        field_name: filter.to_string(),
        ..Default::default()
    });
    grammar::parse_filter(filter)
        .and_then(|clauses| clauses.iter().map(clause_test).collect::<Result<Vec<_>>>())
        .is_ok()
}

/// Searches logged models.
pub(crate) fn search(cat: &Catalog, req: &LoggedModelSearch) -> Result<LoggedModelPage> {
    if req.max_results == 0 || req.max_results > super::SEARCH_MAX_RESULTS {
        return Err(Error::InvalidParameter(format!(
            "Invalid value {} for parameter 'max_results' supplied. It must be between 1 and {}",
            req.max_results,
            super::SEARCH_MAX_RESULTS
        )));
    }
    let tests = grammar::parse_filter(&req.filter)?
        .iter()
        .map(clause_test)
        .collect::<Result<Vec<_>>>()?;
    let mut order = req
        .order_by
        .iter()
        .map(order_part)
        .collect::<Result<Vec<_>>>()?;
    for (field, ascending) in [(Field::Created, false), (Field::ModelId, true)] {
        if !order
            .iter()
            .any(|o| o.field == field && o.datasets.is_empty())
        {
            order.push(OrderPart {
                field,
                ascending,
                datasets: Vec::new(),
            });
        }
    }
    let mut ids: Vec<u64> = req
        .experiment_ids
        .iter()
        .map(|e| crate::validate::experiment_id(e))
        .collect::<Result<_>>()?;
    ids.sort_unstable();
    ids.dedup();
    let order_text: Vec<String> = req
        .order_by
        .iter()
        .map(|o| {
            format!(
                "{}:{}:{:?}:{:?}",
                o.field_name, o.ascending, o.dataset_name, o.dataset_digest
            )
        })
        .collect();
    let dataset_text: Vec<String> = req
        .datasets
        .iter()
        .map(|d| format!("{}:{:?}", d.dataset_name, d.dataset_digest))
        .collect();
    let id_text: Vec<String> = ids.iter().map(u64::to_string).collect();
    let fp = token::fingerprint(&[
        "logged_models",
        &id_text.join(","),
        &req.filter,
        &order_text.join("\u{0}"),
        &dataset_text.join("\u{0}"),
    ]);
    let after = token::decode(req.page_token.as_deref(), &fp, order.len())?;
    let datasets_alone =
        !req.datasets.is_empty() && !tests.iter().any(|(f, _)| matches!(f, Field::Metric(_)));
    let mut models = Vec::new();
    // Clauses on attributes are decided on the record alone (the client's `name = '<path>'`
    // lookups on every artifact listing); only models that pass them are read whole.
    let on_record = |f: &Field| !matches!(f, Field::Metric(_) | Field::Param(_) | Field::Tag(_));
    for exp in ids {
        for model_id in cat.models.logged_model_ids_of_experiment(exp)? {
            let Some(rec) = cat.models.logged_model(&model_id)? else {
                continue;
            };
            if rec.deleted {
                continue;
            }
            let bare = LoggedModel {
                model_id: model_id.clone(),
                experiment_id: String::new(),
                name: rec.name,
                artifact_uri: String::new(),
                status: rec.status,
                status_message: String::new(),
                model_type: rec.model_type,
                source_run_id: rec.source_run_id,
                creation_timestamp: rec.creation_time,
                last_updated_timestamp: rec.last_updated_time,
                tags: Vec::new(),
                params: Vec::new(),
                metrics: Vec::new(),
            };
            let attributes_pass = tests
                .iter()
                .filter(|(f, _)| on_record(f))
                .all(|(field, test)| passes(&bare, field, test, &req.datasets));
            if !attributes_pass {
                continue;
            }
            let Some(m) = crate::store::logged_models::load(cat, &model_id)? else {
                continue;
            };
            // Datasets without a metric clause keep the models with any metric on one of them,
            // as MLflow does.
            let on_a_dataset = !datasets_alone
                || m.metrics
                    .iter()
                    .any(|p| on_datasets(&p.metric, &req.datasets));
            if on_a_dataset
                && tests
                    .iter()
                    .all(|(field, test)| passes(&m, field, test, &req.datasets))
            {
                models.push(m);
            }
        }
    }
    let directions: Vec<bool> = order.iter().map(|o| o.ascending).collect();
    let key = token::sort_key(|m: &LoggedModel| order.iter().map(|o| sort_value(m, o)).collect());
    let (page, next) = token::keyset_page(
        models,
        key,
        &directions,
        &fp,
        after.as_deref(),
        req.max_results,
    );
    Ok(LoggedModelPage {
        models: page,
        next_page_token: next,
    })
}
