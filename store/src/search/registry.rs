//! `registered-models/search` and `model-versions/search`: MLflow's filter grammar over the
//! registry, which holds thousands of models at most, so a search reads them all.
//!
//! Prompts are stored as registered models tagged `mlflow.prompt.is_prompt = 'true'`. MLflow's
//! client adds `` tag.`mlflow.prompt.is_prompt` != 'true' `` to every registered-model search, and
//! its server leaves prompts out of a search whose filter does not mention that tag at all. MLflow
//! evaluates a `!=` on that tag as an anti-join, so it matches models without the tag. Here too:
//! `!=` on that tag passes when the tag is missing, while `!=` on other tags needs the tag.

use super::grammar::{self, Clause, Comparator, Entity, Test, NUMERIC_OPS, STRING_LIST_OPS};
use super::token::{self, SortValue};
use crate::catalog::models::{ModelVersionRecord, RegisteredModelRecord};
use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::model_types::{ModelVersionPage, RegisteredModelPage, RegistrySearch};
use crate::store::registry::{render_model, render_version};
use crate::types::Tag;

/// The tag that marks a registered model as a prompt.
const PROMPT_TAG: &str = "mlflow.prompt.is_prompt";
/// Most registered models one page may hold.
pub(crate) const MAX_MODELS_PER_PAGE: usize = 1000;
/// Most model versions one page may hold.
pub(crate) const MAX_VERSIONS_PER_PAGE: usize = 200_000;

const TAG_OPS: &[Comparator] = &[
    Comparator::Eq,
    Comparator::Ne,
    Comparator::Like,
    Comparator::ILike,
];

/// A field of a registered model or model version that filters and orders name.
#[derive(Debug, Clone, PartialEq)]
enum Field {
    Name,
    RunId,
    Source,
    Version,
    Created,
    Updated,
    Tag(String),
}

fn check_max_results(n: usize, max: usize) -> Result<()> {
    if n == 0 || n > max {
        return Err(Error::InvalidParameter(format!(
            "Invalid value {n} for parameter 'max_results' supplied. It must be between 1 and \
             {max}."
        )));
    }
    Ok(())
}

fn check_prefix(c: &Clause) -> Result<()> {
    match c.prefix.as_deref() {
        None | Some("attribute" | "attributes" | "tag" | "tags") => Ok(()),
        Some(p) => Err(Error::InvalidParameter(format!(
            "Invalid entity type '{p}'. Valid entity types are ('attribute', 'tag', 'tags')"
        ))),
    }
}

/// A compiled filter and order of one of the two searches.
struct Query {
    tests: Vec<(Field, Test)>,
    order: Vec<(Field, bool)>,
}

impl Query {
    fn new(
        filter: &str,
        order_by: &[String],
        attribute: impl Fn(&Clause) -> Result<(Field, Test)>,
        order_field: impl Fn(&str) -> Result<Field>,
        default_order: &[(Field, bool)],
        tie_break: &[(Field, bool)],
    ) -> Result<Query> {
        let mut tests = Vec::new();
        for c in grammar::parse_filter(filter)? {
            check_prefix(&c)?;
            tests.push(match c.entity {
                Entity::Tag => (Field::Tag(c.key.clone()), Test::string(&c, TAG_OPS)?),
                Entity::Attribute => attribute(&c)?,
                other => {
                    return Err(Error::InvalidParameter(format!(
                        "Invalid entity type '{}'. Valid values are ['attribute', 'tag']",
                        other.name()
                    )))
                }
            });
        }
        let mut order = Vec::new();
        for clause in order_by {
            let o = grammar::parse_order_by(clause)?;
            if o.entity != Entity::Attribute {
                return Err(Error::InvalidParameter(format!(
                    "Invalid order_by entity type '{}'. Only attributes can be ordered by",
                    o.entity.name()
                )));
            }
            order.push((order_field(&o.key)?, o.ascending));
        }
        if order.is_empty() {
            order.extend(default_order.iter().cloned());
        }
        for (field, asc) in tie_break {
            if !order.iter().any(|(f, _)| f == field) {
                order.push((field.clone(), *asc));
            }
        }
        Ok(Query { tests, order })
    }

    fn directions(&self) -> Vec<bool> {
        self.order.iter().map(|(_, asc)| *asc).collect()
    }
}

fn tag_passes(test: &Test, key: &str, tags: &[Tag]) -> bool {
    let value = tags.iter().find(|t| t.key == key).map(|t| t.value.as_str());
    match (value, test) {
        (None, Test::Str(Comparator::Ne, _)) if key == PROMPT_TAG => true,
        _ => test.on_str(value),
    }
}

fn timestamp_field(key: &str) -> Option<Field> {
    match key {
        "creation_timestamp" => Some(Field::Created),
        "last_updated_timestamp" | "timestamp" => Some(Field::Updated),
        _ => None,
    }
}

fn fingerprint(kind: &str, req: &RegistrySearch) -> String {
    token::fingerprint(&[kind, &req.filter, &req.order_by.join("\u{0}")])
}

/// Whether `filter` compiles as a registered-model search (and `filter` as an order_by clause
/// does not panic).
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_compile(filter: &str) -> bool {
    let cat_free = |f: &str, order: &[String]| {
        Query::new(
            f,
            order,
            |c| Ok((Field::Name, Test::string(c, STRING_LIST_OPS)?)),
            |k| timestamp_field(k).ok_or_else(|| Error::InvalidParameter(k.to_string())),
            &[],
            &[(Field::Name, true)],
        )
        .is_ok()
    };
    let _ = cat_free("", &[filter.to_string()]);
    cat_free(filter, &[])
}

/// Searches registered models.
pub(crate) fn search_models(cat: &Catalog, req: &RegistrySearch) -> Result<RegisteredModelPage> {
    check_max_results(req.max_results, MAX_MODELS_PER_PAGE)?;
    let attribute = |c: &Clause| -> Result<(Field, Test)> {
        if c.key != "name" {
            return Err(Error::InvalidParameter(format!(
                "Invalid attribute key '{}' specified. Valid keys are '{{'name'}}'",
                c.key
            )));
        }
        Ok((Field::Name, Test::string(c, STRING_LIST_OPS)?))
    };
    let order_field = |key: &str| -> Result<Field> {
        match key {
            "name" => Ok(Field::Name),
            k => timestamp_field(k).ok_or_else(|| {
                Error::InvalidParameter(format!(
                    "Invalid order by key '{k}' specified. Valid keys are 'name', \
                     'creation_timestamp', 'last_updated_timestamp', 'timestamp'"
                ))
            }),
        }
    };
    let mut query = Query::new(
        &req.filter,
        &req.order_by,
        attribute,
        order_field,
        &[],
        &[(Field::Name, true)],
    )?;
    let prompt = Field::Tag(PROMPT_TAG.to_string());
    if !query.tests.iter().any(|(f, _)| *f == prompt) {
        query
            .tests
            .push((prompt, Test::Str(Comparator::Ne, "true".into())));
    }
    let fp = fingerprint("registered_models", req);
    let after = token::decode(req.page_token.as_deref(), &fp, query.order.len())?;
    // Filter and page on the records (tags read only when a clause needs them), then render
    // only the page's models with their versions, tags and aliases.
    let needs_tags = query.tests.iter().any(|(f, _)| matches!(f, Field::Tag(_)));
    let mut found: Vec<(u64, RegisteredModelRecord)> = Vec::new();
    for (id, rec) in cat.models.registered_models()? {
        let names_pass = query
            .tests
            .iter()
            .all(|(field, test)| *field != Field::Name || test.on_str(Some(&rec.name)));
        if !names_pass {
            continue;
        }
        let tags = if needs_tags {
            cat.models.registered_model_tags(id)?
        } else {
            Vec::new()
        };
        let tags_pass = query.tests.iter().all(|(field, test)| match field {
            Field::Tag(k) => tag_passes(test, k, &tags),
            _ => true,
        });
        if tags_pass {
            found.push((id, rec));
        }
    }
    let key = token::sort_key(|(_, m): &(u64, RegisteredModelRecord)| {
        query
            .order
            .iter()
            .map(|(f, _)| match f {
                Field::Created => Some(SortValue::Num(m.creation_time as f64)),
                Field::Updated => Some(SortValue::Num(m.last_updated_time as f64)),
                _ => Some(SortValue::Str(&m.name)),
            })
            .collect()
    });
    let (page, next) = token::keyset_page(
        found,
        key,
        &query.directions(),
        &fp,
        after.as_deref(),
        req.max_results,
    );
    Ok(RegisteredModelPage {
        registered_models: page
            .into_iter()
            .map(|(id, rec)| render_model(cat, id, rec))
            .collect::<Result<_>>()?,
        next_page_token: next,
    })
}

/// A model version that passed the filter, before rendering.
struct Candidate {
    id: u64,
    name: std::sync::Arc<str>,
    version: u64,
    rec: ModelVersionRecord,
}

/// Searches model versions.
pub(crate) fn search_versions(cat: &Catalog, req: &RegistrySearch) -> Result<ModelVersionPage> {
    check_max_results(req.max_results, MAX_VERSIONS_PER_PAGE)?;
    let attribute = |c: &Clause| -> Result<(Field, Test)> {
        Ok(match c.key.as_str() {
            "name" => (Field::Name, Test::string(c, STRING_LIST_OPS)?),
            "run_id" => (Field::RunId, Test::string(c, STRING_LIST_OPS)?),
            "source_path" => (Field::Source, Test::string(c, STRING_LIST_OPS)?),
            "version_number" => (Field::Version, Test::number(c, NUMERIC_OPS)?),
            k => {
                return Err(Error::InvalidParameter(format!(
                    "Invalid attribute key '{k}' specified. Valid keys are '{{'name', \
                     'run_id', 'source_path', 'version_number'}}'"
                )))
            }
        })
    };
    let order_field = |key: &str| -> Result<Field> {
        match key {
            "name" => Ok(Field::Name),
            "version_number" => Ok(Field::Version),
            k => timestamp_field(k).ok_or_else(|| {
                Error::InvalidParameter(format!(
                    "Invalid order by key '{k}' specified. Valid keys are 'name', \
                     'version_number', 'creation_timestamp', 'last_updated_timestamp', \
                     'timestamp'"
                ))
            }),
        }
    };
    let query = Query::new(
        &req.filter,
        &req.order_by,
        attribute,
        order_field,
        &[(Field::Updated, false)],
        &[(Field::Name, true), (Field::Version, false)],
    )?;
    let fp = fingerprint("model_versions", req);
    let after = token::decode(req.page_token.as_deref(), &fp, query.order.len())?;
    // Name clauses are decided once per model, so versions of other models are never read;
    // tags are read only when a clause needs them; only the page is rendered.
    let needs_tags = query.tests.iter().any(|(f, _)| matches!(f, Field::Tag(_)));
    let mut found: Vec<Candidate> = Vec::new();
    // `name = '<n>'` (what the client sends for one model's versions) is one lookup.
    let exact_name = query.tests.iter().find_map(|(f, t)| match (f, t) {
        (Field::Name, Test::Str(Comparator::Eq, n)) => Some(n.as_str()),
        _ => None,
    });
    let models = match exact_name {
        Some(n) => match cat.models.model_id_by_name(n)? {
            Some(id) => cat
                .models
                .registered_model(id)?
                .map(|rec| (id, rec))
                .into_iter()
                .collect(),
            None => Vec::new(),
        },
        None => cat.models.registered_models()?,
    };
    for (id, model) in models {
        let name_passes = query
            .tests
            .iter()
            .all(|(field, test)| *field != Field::Name || test.on_str(Some(&model.name)));
        if !name_passes {
            continue;
        }
        let name: std::sync::Arc<str> = model.name.into();
        for (v, rec) in cat.models.versions(id)? {
            let tags = if needs_tags {
                cat.models.version_tags(id, v)?
            } else {
                Vec::new()
            };
            let passes = query.tests.iter().all(|(field, test)| match field {
                Field::RunId => test.on_str(Some(&rec.run_id)),
                Field::Source => test.on_str(Some(&rec.source)),
                Field::Version => test.on_num(Some(v as f64)),
                Field::Tag(k) => tag_passes(test, k, &tags),
                _ => true,
            });
            if passes {
                found.push(Candidate {
                    id,
                    name: name.clone(),
                    version: v,
                    rec,
                });
            }
        }
    }
    let key = token::sort_key(|c: &Candidate| {
        query
            .order
            .iter()
            .map(|(f, _)| match f {
                Field::Version => Some(SortValue::Num(c.version as f64)),
                Field::Created => Some(SortValue::Num(c.rec.creation_time as f64)),
                Field::Updated => Some(SortValue::Num(c.rec.last_updated_time as f64)),
                _ => Some(SortValue::Str(&c.name)),
            })
            .collect()
    });
    let (page, next) = token::keyset_page(
        found,
        key,
        &query.directions(),
        &fp,
        after.as_deref(),
        req.max_results,
    );
    let model_versions = page
        .into_iter()
        .map(|c| render_version(cat, c.id, &c.name, c.version, c.rec))
        .collect::<Result<_>>()?;
    Ok(ModelVersionPage {
        model_versions,
        next_page_token: next,
    })
}
