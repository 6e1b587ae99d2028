//! MLflow's searches: [`Store::search_runs`] and [`Store::search_experiments`].
//!
//! Filters use MLflow's grammar (see `grammar`): comparisons on `metrics.`, `params.`, `tags.`,
//! attributes and `datasets.` joined by `AND`; anything else is an [`Error::InvalidParameter`]
//! naming the problem. Runs are searched over an in-memory columnar index per experiment
//! (`index`), built on the first search of the experiment and kept current by every write; a
//! search reads a few columns and renders only the page it returns. Page tokens resume after the
//! last row's sort key (`token`), so paging stays exact while runs are created or deleted.

mod columns;
mod experiments;
pub(crate) mod grammar;
pub(crate) mod index;
pub(crate) mod logged_models;
pub(crate) mod registry;
mod runs;
mod token;

use crate::error::{Error, Result};
use crate::store::Store;
use crate::types::{Experiment, Run, ViewType};

use experiments::ExperimentQuery;
use runs::{Hit, RunQuery};

/// The most results one search page may ask for (MLflow's limit).
pub const SEARCH_MAX_RESULTS: usize = 50_000;

/// A `runs/search` request.
#[derive(Debug, Clone, Default)]
pub struct RunSearch {
    /// Experiments to search (none: no results, as MLflow).
    pub experiment_ids: Vec<String>,
    /// MLflow filter string, e.g. `metrics.acc > 0.5 and params.lr = '0.01'` (empty: all runs).
    pub filter: String,
    /// Active runs, deleted ones, or both.
    pub view: ViewType,
    /// Page size, 1 to [`SEARCH_MAX_RESULTS`].
    pub max_results: usize,
    /// `order_by` clauses such as `metrics.loss DESC`; ties end with `start_time DESC, run_id`.
    pub order_by: Vec<String>,
    /// Token of the page to return, from a previous [`RunPage`] of the same search.
    pub page_token: Option<String>,
}

/// One page of runs.
#[derive(Debug, Clone, PartialEq)]
pub struct RunPage {
    /// The runs, in order, with their latest metrics, params, tags and inputs.
    pub runs: Vec<Run>,
    /// Token of the next page; `None` on the last page.
    pub next_page_token: Option<String>,
}

/// An `experiments/search` request.
#[derive(Debug, Clone, Default)]
pub struct ExperimentSearch {
    /// MLflow filter string on `name`, `experiment_id`, `creation_time`, `last_update_time`
    /// and `tags.<key>`.
    pub filter: String,
    /// Active experiments, deleted ones, or both.
    pub view: ViewType,
    /// Page size, 1 to [`SEARCH_MAX_RESULTS`].
    pub max_results: usize,
    /// `order_by` clauses on attributes; default `creation_time DESC`, ties by id.
    pub order_by: Vec<String>,
    /// Token of the page to return.
    pub page_token: Option<String>,
}

/// One page of experiments.
#[derive(Debug, Clone, PartialEq)]
pub struct ExperimentPage {
    /// The experiments, in order.
    pub experiments: Vec<Experiment>,
    /// Token of the next page; `None` on the last page.
    pub next_page_token: Option<String>,
}

fn check_max_results(n: usize, min: usize) -> Result<()> {
    if n < min {
        return Err(Error::InvalidParameter(format!(
            "Invalid value {n} for parameter 'max_results' supplied. It must be a positive integer"
        )));
    }
    if n > SEARCH_MAX_RESULTS {
        return Err(Error::InvalidParameter(format!(
            "Invalid value {n} for parameter 'max_results' supplied. It must be at most \
             {SEARCH_MAX_RESULTS}"
        )));
    }
    Ok(())
}

/// Whether `filter` (and the same text as an `order_by` clause) compiles as a runs search.
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_compile_runs(filter: &str, view: ViewType) -> bool {
    let _ = RunQuery::new("", &[filter.to_string()], view);
    RunQuery::new(filter, &[], view).is_ok()
}

/// Whether `filter` compiles as an experiments search.
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_compile_experiments(filter: &str) -> bool {
    let _ = ExperimentQuery::new("", &[filter.to_string()]);
    ExperimentQuery::new(filter, &[]).is_ok()
}

fn view_name(view: ViewType) -> &'static str {
    match view {
        ViewType::ActiveOnly => "active",
        ViewType::DeletedOnly => "deleted",
        ViewType::All => "all",
    }
}

impl Store {
    /// Searches runs of some experiments with MLflow's filter and order grammar, one page at a
    /// time. Served from the run index, which the store builds after opening
    /// ([`StoreOptions::index_on_open`](crate::StoreOptions::index_on_open)) or else on an
    /// experiment's first search, and keeps current with every write; a search reads columns only.
    ///
    /// ```
    /// # fn main() -> quiver_store::Result<()> {
    /// use quiver_store::{CreateRun, Metric, Param, RunSearch, Store};
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path())?;
    /// for (lr, acc) in [("0.01", 0.9), ("0.1", 0.7), ("0.01", 0.4)] {
    ///     let run = store.create_run(CreateRun::default())?;
    ///     let m = Metric::new("acc", acc, 1_700_000_000_000, 0);
    ///     store.log_batch(&run.info.run_id, &[m], &[Param::new("lr", lr)], &[])?;
    /// }
    /// let page = store.search_runs(&RunSearch {
    ///     experiment_ids: vec!["0".into()],
    ///     filter: "metrics.acc > 0.5 and params.lr = '0.01'".into(),
    ///     order_by: vec!["metrics.acc DESC".into()],
    ///     max_results: 100,
    ///     ..Default::default()
    /// })?;
    /// assert_eq!(page.runs.len(), 1);
    /// assert_eq!(page.runs[0].metrics[0].value, 0.9);
    /// # Ok(()) }
    /// ```
    pub fn search_runs(&self, req: &RunSearch) -> Result<RunPage> {
        check_max_results(req.max_results, 1)?;
        let query = RunQuery::new(&req.filter, &req.order_by, req.view)?;
        let mut ids: Vec<u64> = req
            .experiment_ids
            .iter()
            .filter_map(|id| id.parse::<u64>().ok())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let id_list: Vec<String> = ids.iter().map(u64::to_string).collect();
        let fingerprint = token::fingerprint(&[
            &id_list.join(","),
            &req.filter,
            &req.order_by.join("\u{0}"),
            view_name(req.view),
        ]);
        let after = token::decode(req.page_token.as_deref(), &fingerprint, query.order.len())?;

        let inner = self.shared();
        let catalog = inner.catalog();
        let mut guards = Vec::new();
        for id in ids {
            // Unknown experiments hold no runs; don't build (and keep) an index for them.
            if catalog.experiment(id)?.is_some() {
                guards.push(inner.run_index().experiment(catalog, id, &|| false)?);
            }
        }
        let reads: Vec<_> = guards.iter().map(|g| g.read()).collect();
        let indexes: Vec<_> = reads.iter().map(|r| r.index()).collect();
        let mut hits = Vec::new();
        for (i, index) in indexes.iter().enumerate() {
            hits.extend(query.matching_rows(index).into_iter().map(|row| Hit {
                index: i as u32,
                row,
            }));
        }
        let (page, next) =
            runs::top_page(&indexes, &query, hits, after.as_deref(), req.max_results);
        Ok(RunPage {
            runs: page
                .iter()
                .map(|h| indexes[h.index as usize].run(h.row))
                .collect(),
            next_page_token: next.map(|key| token::encode(&fingerprint, &key)),
        })
    }

    /// Searches experiments with MLflow's grammar, one page at a time.
    pub fn search_experiments(&self, req: &ExperimentSearch) -> Result<ExperimentPage> {
        check_max_results(req.max_results, 1)?;
        let query = ExperimentQuery::new(&req.filter, &req.order_by)?;
        let fingerprint = token::fingerprint(&[
            &req.filter,
            &req.order_by.join("\u{0}"),
            view_name(req.view),
        ]);
        let after = token::decode(req.page_token.as_deref(), &fingerprint, query.order.len())?;
        let directions: Vec<bool> = query.order.iter().map(|(_, asc)| *asc).collect();
        let mut found: Vec<Experiment> = self
            .shared()
            .catalog()
            .experiments(req.view)?
            .into_iter()
            .filter(|e| query.passes(e))
            .filter(|e| {
                after.as_ref().is_none_or(|a| {
                    token::compare_keys(
                        query.key(e),
                        a.iter().map(|v| v.as_ref().map(token::OwnedValue::as_sort)),
                        &directions,
                    )
                    .is_gt()
                })
            })
            .collect();
        found.sort_by(|a, b| token::compare_keys(query.key(a), query.key(b), &directions));
        let more = found.len() > req.max_results;
        found.truncate(req.max_results);
        let next_page_token = match found.last() {
            Some(last) if more => Some(token::encode(&fingerprint, &query.key(last))),
            _ => None,
        };
        Ok(ExperimentPage {
            experiments: found,
            next_page_token,
        })
    }
}
