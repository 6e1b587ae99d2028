//! `runs/search` over the run index: filters compiled into per-row checks on columns, then a
//! top-k selection in the requested order, resuming after the page token's key.

use std::cmp::Ordering;

use crate::error::{Error, Result};
use crate::search::grammar::{
    self, Clause, Entity, Test, KEY_VALUE_OPS, NUMERIC_OPS, STRING_LIST_OPS, STRING_OPS,
};
use crate::search::index::ExperimentIndex;
use crate::search::token::{self, OwnedValue, SortValue};
use crate::types::ViewType;

/// An attribute of a run that filters and `order_by` can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attr {
    RunId,
    RunName,
    Status,
    UserId,
    ArtifactUri,
    StartTime,
    EndTime,
}

impl Attr {
    /// The attribute an identifier names, with MLflow's aliases.
    pub(crate) fn parse(key: &str) -> Result<Attr> {
        Ok(match key {
            "run_id" => Attr::RunId,
            "run_name" | "run name" | "Run name" | "Run Name" => Attr::RunName,
            "status" => Attr::Status,
            "user_id" => Attr::UserId,
            "artifact_uri" => Attr::ArtifactUri,
            "start_time" | "created" | "Created" => Attr::StartTime,
            "end_time" => Attr::EndTime,
            _ => {
                return Err(Error::InvalidParameter(format!(
                    "Invalid attribute key '{key}' specified. Valid keys are '['run_id', \
                     'run_name', 'status', 'user_id', 'artifact_uri', 'start_time', 'end_time']'"
                )))
            }
        })
    }

    fn is_numeric(self) -> bool {
        matches!(self, Attr::StartTime | Attr::EndTime)
    }
}

/// A field of a run that filters and `order_by` can name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RunField {
    Metric(String),
    Param(String),
    Tag(String),
    Attr(Attr),
    DatasetName,
    DatasetDigest,
    DatasetContext,
}

/// Turns a filter clause into the field it names and the test its value must pass.
pub(crate) fn run_test(c: &Clause) -> Result<(RunField, Test)> {
    Ok(match c.entity {
        Entity::Metric => (
            RunField::Metric(c.key.clone()),
            Test::number(c, NUMERIC_OPS)?,
        ),
        Entity::Param => (
            RunField::Param(c.key.clone()),
            Test::string(c, KEY_VALUE_OPS)?,
        ),
        Entity::Tag => (
            RunField::Tag(c.key.clone()),
            Test::string(c, KEY_VALUE_OPS)?,
        ),
        Entity::Attribute => {
            let attr = Attr::parse(&c.key)?;
            let test = match attr {
                a if a.is_numeric() => Test::number(c, NUMERIC_OPS)?,
                Attr::RunId => Test::string(c, STRING_LIST_OPS)?,
                _ => Test::string(c, STRING_OPS)?,
            };
            (RunField::Attr(attr), test)
        }
        Entity::Dataset => {
            let field = match c.key.as_str() {
                "name" => RunField::DatasetName,
                "digest" => RunField::DatasetDigest,
                "context" => RunField::DatasetContext,
                other => {
                    return Err(Error::InvalidParameter(format!(
                        "Invalid dataset key '{other}' specified. Valid keys are '['name', \
                         'digest', 'context']'"
                    )))
                }
            };
            (field, Test::string(c, STRING_LIST_OPS)?)
        }
    })
}

/// Parses one `order_by` clause of `runs/search`.
pub(crate) fn order_field(clause: &str) -> Result<(RunField, bool)> {
    let o = grammar::parse_order_by(clause)?;
    let field = match o.entity {
        Entity::Metric => RunField::Metric(o.key),
        Entity::Param => RunField::Param(o.key),
        Entity::Tag => RunField::Tag(o.key),
        // The spaced aliases (`Run name`) are for filters only, as in MLflow.
        Entity::Attribute if o.key.contains(' ') => {
            return Err(Error::InvalidParameter(format!(
                "Invalid attribute key '{}' specified. Valid keys are '['run_id', 'run_name', \
                 'status', 'user_id', 'artifact_uri', 'start_time', 'end_time']'",
                o.key
            )))
        }
        Entity::Attribute => RunField::Attr(Attr::parse(&o.key)?),
        Entity::Dataset => {
            return Err(Error::InvalidParameter(format!(
                "Invalid order_by clause '{clause}': runs cannot be ordered by datasets"
            )))
        }
    };
    Ok((field, o.ascending))
}

/// A compiled search: which rows pass, and their order.
pub(crate) struct RunQuery {
    pub(crate) tests: Vec<(RunField, Test)>,
    /// Order fields with their direction, ending with `start_time DESC, run_id ASC` tie-breakers.
    pub(crate) order: Vec<(RunField, bool)>,
    pub(crate) view: ViewType,
}

impl RunQuery {
    /// Compiles a filter and `order_by` list.
    pub(crate) fn new(filter: &str, order_by: &[String], view: ViewType) -> Result<RunQuery> {
        let tests = grammar::parse_filter(filter)?
            .iter()
            .map(run_test)
            .collect::<Result<Vec<_>>>()?;
        let mut order = order_by
            .iter()
            .map(|c| order_field(c))
            .collect::<Result<Vec<_>>>()?;
        if !order
            .iter()
            .any(|(f, _)| *f == RunField::Attr(Attr::StartTime))
        {
            order.push((RunField::Attr(Attr::StartTime), false));
        }
        order.push((RunField::Attr(Attr::RunId), true));
        Ok(RunQuery { tests, order, view })
    }

    /// The directions of the sort key's components.
    pub(crate) fn directions(&self) -> Vec<bool> {
        self.order.iter().map(|(_, asc)| *asc).collect()
    }

    /// The rows of `index` that pass every test, in row order.
    pub(crate) fn matching_rows(&self, index: &ExperimentIndex) -> Vec<u32> {
        let mut rows: Vec<u32> = (0..index.rows() as u32)
            .filter(|&r| self.view.includes(index.stage[r as usize]))
            .collect();
        for (field, test) in &self.tests {
            let check = row_check(index, field, test);
            rows.retain(|&r| check(r));
            if rows.is_empty() {
                break;
            }
        }
        rows
    }
}

/// A test compiled against one index: resolves the column once, then checks rows.
fn row_check<'a>(
    index: &'a ExperimentIndex,
    field: &'a RunField,
    test: &'a Test,
) -> Box<dyn Fn(u32) -> bool + 'a> {
    match field {
        RunField::Metric(key) => match index.metrics.get(key.as_str()) {
            Some(col) => Box::new(move |r| test.on_num(col.value(r))),
            None => {
                let absent = test.on_num(None);
                Box::new(move |_| absent)
            }
        },
        RunField::Param(key) | RunField::Tag(key) => {
            let columns = if matches!(field, RunField::Param(_)) {
                &index.params
            } else {
                &index.tags
            };
            let absent = test.on_str(None);
            match columns.get(key.as_str()) {
                Some(col) => {
                    // Decide each distinct value once; rows then compare integer codes.
                    let passes = col.matching(|v| test.on_str(Some(v)));
                    Box::new(move |r| match col.code(r) {
                        Some(c) => passes[c as usize],
                        None => absent,
                    })
                }
                None => Box::new(move |_| absent),
            }
        }
        RunField::Attr(attr) => {
            let attr = *attr;
            match attr {
                Attr::StartTime => {
                    Box::new(move |r| test.on_num(Some(index.start_time[r as usize] as f64)))
                }
                Attr::EndTime => {
                    Box::new(move |r| test.on_num(index.end_time[r as usize].map(|t| t as f64)))
                }
                Attr::UserId => {
                    let passes = index.user_id.matching(|v| test.on_str(Some(v)));
                    let absent = test.on_str(Some(""));
                    Box::new(move |r| match index.user_id.code(r) {
                        Some(c) => passes[c as usize],
                        None => absent,
                    })
                }
                Attr::RunId => Box::new(move |r| test.on_str(Some(&index.run_id[r as usize]))),
                Attr::RunName => Box::new(move |r| test.on_str(Some(&index.run_name[r as usize]))),
                Attr::Status => {
                    Box::new(move |r| test.on_str(Some(index.status[r as usize].as_str())))
                }
                Attr::ArtifactUri => {
                    Box::new(move |r| test.on_str(Some(&index.artifact_uri[r as usize])))
                }
            }
        }
        RunField::DatasetName | RunField::DatasetDigest | RunField::DatasetContext => {
            let which = field.clone();
            Box::new(move |r| {
                index.inputs_of(r).any(|(name, digest, context)| {
                    test.on_str(match which {
                        RunField::DatasetName => Some(name),
                        RunField::DatasetDigest => Some(digest),
                        _ => context,
                    })
                })
            })
        }
    }
}

/// The sort key component of `field` for `row`.
pub(crate) fn sort_value<'a>(
    index: &'a ExperimentIndex,
    field: &RunField,
    row: u32,
) -> Option<SortValue<'a>> {
    let r = row as usize;
    match field {
        // NaN stays: it sorts after every number and before missing values (see `token`).
        RunField::Metric(key) => index
            .metrics
            .get(key.as_str())?
            .value(row)
            .map(SortValue::Num),
        RunField::Param(key) => index.params.get(key.as_str())?.get(row).map(SortValue::Str),
        RunField::Tag(key) => index.tags.get(key.as_str())?.get(row).map(SortValue::Str),
        RunField::Attr(a) => match a {
            Attr::StartTime => Some(SortValue::Num(index.start_time[r] as f64)),
            Attr::EndTime => index.end_time[r].map(|t| SortValue::Num(t as f64)),
            Attr::RunId => Some(SortValue::Str(&index.run_id[r])),
            Attr::RunName => Some(SortValue::Str(&index.run_name[r])),
            Attr::Status => Some(SortValue::Str(index.status[r].as_str())),
            Attr::UserId => Some(SortValue::Str(index.user_id.get(row).unwrap_or(""))),
            Attr::ArtifactUri => Some(SortValue::Str(&index.artifact_uri[r])),
        },
        RunField::DatasetName | RunField::DatasetDigest | RunField::DatasetContext => None,
    }
}

/// A matching run: which index (of the searched experiments) and which row.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hit {
    pub(crate) index: u32,
    pub(crate) row: u32,
}

/// Picks the page of `hits` after `after` (a token's key), at most `max` of them, in order.
/// Returns the page and the key of its last row when more rows follow.
pub(crate) fn top_page<'a>(
    indexes: &[&'a ExperimentIndex],
    query: &RunQuery,
    hits: Vec<Hit>,
    after: Option<&[Option<OwnedValue>]>,
    max: usize,
) -> (Vec<Hit>, Option<Vec<Option<SortValue<'a>>>>) {
    let width = query.order.len();
    let directions = query.directions();
    // Sort keys, flat: hit i owns keys[i * width .. (i + 1) * width].
    let mut keys: Vec<Option<SortValue<'a>>> = Vec::with_capacity(hits.len() * width);
    let mut kept: Vec<(Hit, usize)> = Vec::with_capacity(hits.len());
    for hit in hits {
        let ix = indexes[hit.index as usize];
        let start = keys.len();
        keys.extend(query.order.iter().map(|(f, _)| sort_value(ix, f, hit.row)));
        let past_token = after.is_none_or(|a| {
            token::compare_keys(
                keys[start..].iter().copied(),
                a.iter().map(|v| v.as_ref().map(OwnedValue::as_sort)),
                &directions,
            )
            .is_gt()
        });
        if past_token {
            kept.push((hit, start));
        } else {
            keys.truncate(start);
        }
    }
    let cmp = |a: &(Hit, usize), b: &(Hit, usize)| -> Ordering {
        token::compare_keys(
            keys[a.1..a.1 + width].iter().copied(),
            keys[b.1..b.1 + width].iter().copied(),
            &directions,
        )
    };
    let more = kept.len() > max;
    if more && max > 0 {
        kept.select_nth_unstable_by(max - 1, cmp);
    }
    kept.truncate(max);
    kept.sort_unstable_by(cmp);
    let next = match kept.last() {
        Some((_, start)) if more => Some(keys[*start..*start + width].to_vec()),
        _ => None,
    };
    (kept.into_iter().map(|(h, _)| h).collect(), next)
}
