//! `experiments/search`: name, id, times and tags, over the catalog's experiment list (experiments
//! number in the thousands at most; runs are what needs an index).

use crate::error::{Error, Result};
use crate::search::grammar::{
    self, Clause, Comparator, Entity, Test, KEY_VALUE_OPS, NUMERIC_OPS, STRING_LIST_OPS, STRING_OPS,
};
use crate::search::token::SortValue;
use crate::types::Experiment;

/// A field of an experiment that filters and `order_by` can name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ExperimentField {
    Name,
    Id,
    CreationTime,
    LastUpdateTime,
    Tag(String),
}

impl ExperimentField {
    fn attribute(key: &str) -> Result<ExperimentField> {
        Ok(match key {
            "name" => ExperimentField::Name,
            "experiment_id" => ExperimentField::Id,
            "creation_time" => ExperimentField::CreationTime,
            "last_update_time" => ExperimentField::LastUpdateTime,
            _ => {
                return Err(Error::InvalidParameter(format!(
                    "Invalid attribute key '{key}' specified. Valid keys are \
                     '['name', 'experiment_id', 'creation_time', 'last_update_time']'"
                )))
            }
        })
    }
}

fn not_for_experiments(entity: Entity) -> Error {
    Error::InvalidParameter(format!(
        "Invalid entity type '{}'. Valid values are ['attribute', 'tag'] when searching \
         experiments",
        entity.name()
    ))
}

/// Turns a filter clause into the field it names and its test.
fn experiment_test(c: &Clause) -> Result<(ExperimentField, Test)> {
    // MLflow's experiment search knows fewer spellings than the runs search.
    if let Some(p) = c
        .prefix
        .as_deref()
        .filter(|p| !["attribute", "tag", "tags"].contains(p))
    {
        return Err(Error::InvalidParameter(format!(
            "Invalid entity type '{p}'. Valid entity types are ('attribute', 'tag', 'tags')"
        )));
    }
    match c.entity {
        Entity::Tag => Ok((
            ExperimentField::Tag(c.key.clone()),
            Test::string(c, KEY_VALUE_OPS)?,
        )),
        Entity::Attribute => {
            let field = ExperimentField::attribute(&c.key)?;
            if field == ExperimentField::Name
                && matches!(c.comparator, Comparator::In | Comparator::NotIn)
            {
                return Err(Error::InvalidParameter(
                    "Only ['experiment_id'] attributes support comparison with a list of quoted \
                     string values."
                        .into(),
                ));
            }
            let test = match field {
                ExperimentField::Name => Test::string(c, STRING_OPS)?,
                ExperimentField::Id => Test::string(c, STRING_LIST_OPS)?,
                _ => Test::number(c, NUMERIC_OPS)?,
            };
            Ok((field, test))
        }
        other => Err(not_for_experiments(other)),
    }
}

/// A compiled experiments search.
pub(crate) struct ExperimentQuery {
    tests: Vec<(ExperimentField, Test)>,
    /// Fields and directions, ending with the `experiment_id` tie-breaker.
    pub(crate) order: Vec<(ExperimentField, bool)>,
}

impl ExperimentQuery {
    /// Compiles a filter and `order_by` list (default order: creation time, newest first).
    pub(crate) fn new(filter: &str, order_by: &[String]) -> Result<ExperimentQuery> {
        let tests = grammar::parse_filter(filter)?
            .iter()
            .map(experiment_test)
            .collect::<Result<Vec<_>>>()?;
        let mut order = Vec::new();
        for clause in order_by {
            let o = grammar::parse_order_by(clause)?;
            if o.entity != Entity::Attribute {
                return Err(Error::InvalidParameter(format!(
                    "Invalid order_by entity type '{}'. Experiments can only be ordered by \
                     attributes",
                    o.entity.name()
                )));
            }
            order.push((ExperimentField::attribute(&o.key)?, o.ascending));
        }
        if order.is_empty() {
            order.push((ExperimentField::CreationTime, false));
        }
        if !order.iter().any(|(f, _)| *f == ExperimentField::Id) {
            order.push((ExperimentField::Id, true));
        }
        Ok(ExperimentQuery { tests, order })
    }

    /// Whether `e` passes every test.
    pub(crate) fn passes(&self, e: &Experiment) -> bool {
        self.tests.iter().all(|(field, test)| match field {
            ExperimentField::Name => test.on_str(Some(&e.name)),
            ExperimentField::Id => test.on_str(Some(&e.experiment_id)),
            ExperimentField::Tag(k) => test.on_str(
                e.tags
                    .iter()
                    .find(|t| &t.key == k)
                    .map(|t| t.value.as_str()),
            ),
            ExperimentField::CreationTime => test.on_num(Some(e.creation_time as f64)),
            ExperimentField::LastUpdateTime => test.on_num(Some(e.last_update_time as f64)),
        })
    }

    /// The sort key of `e`.
    pub(crate) fn key<'a>(&self, e: &'a Experiment) -> Vec<Option<SortValue<'a>>> {
        self.order
            .iter()
            .map(|(field, _)| match field {
                ExperimentField::Name => Some(SortValue::Str(&e.name)),
                // Ids are decimal: order them as numbers ("10" after "9").
                ExperimentField::Id => e
                    .experiment_id
                    .parse::<u64>()
                    .ok()
                    .map(|n| SortValue::Num(n as f64)),
                ExperimentField::CreationTime => Some(SortValue::Num(e.creation_time as f64)),
                ExperimentField::LastUpdateTime => Some(SortValue::Num(e.last_update_time as f64)),
                ExperimentField::Tag(k) => e
                    .tags
                    .iter()
                    .find(|t| &t.key == k)
                    .map(|t| SortValue::Str(&t.value)),
            })
            .collect()
    }
}
