//! Every route's request decoder by name, for the `wire_request` fuzz target (only with the
//! `fuzzing` feature): the functions the handlers call to turn a request's [`Fields`] into
//! typed values, and the log-batch body path with its check that the fast and the general
//! readers agree.
//!
//! Routes whose handlers read only plain fields (`run_id`, `name`, `key`...) through the
//! [`Fields`] accessors have no decoder of their own: those accessors are exercised by the
//! decoders listed here.

use crate::error::ApiResult;
use crate::wire::Fields;

use super::runs::{self, batch};
use super::{artifacts, deployments, experiments, logged_models, metrics, registry};

/// A route's decoder, its result dropped.
pub(crate) type Decoder = fn(&Fields) -> ApiResult<()>;

/// The decoders, by route.
pub(crate) const ALL: &[(&str, Decoder)] = &[
    ("runs/create", |f| runs::create_request(f).map(drop)),
    ("runs/update", |f| runs::update_request(f).map(drop)),
    ("runs/set-tag", |f| runs::key_value_request(f).map(drop)),
    ("runs/log-metric", |f| runs::log_metric_request(f).map(drop)),
    ("runs/log-batch", |f| runs::batch_from_fields(f).map(drop)),
    ("runs/log-inputs", |f| runs::log_inputs_request(f).map(drop)),
    ("runs/outputs", |f| runs::log_outputs_request(f).map(drop)),
    ("runs/search", |f| runs::search_request(f).map(drop)),
    ("runs/get", |f| f.run_id().map(drop)),
    ("experiments/create", |f| {
        experiments::create_request(f).map(drop)
    }),
    ("experiments/search", |f| {
        experiments::search_request(f).map(drop)
    }),
    ("metrics/get-history", |f| {
        metrics::get_history_request(f).map(drop)
    }),
    ("metrics/get-history-bulk-interval", |f| {
        metrics::bulk_interval_request(f).map(drop)
    }),
    ("metrics/get-history-bulk", |f| {
        metrics::bulk_request(f).map(drop)
    }),
    ("logged-models (create)", |f| {
        logged_models::create_request(f).map(drop)
    }),
    ("logged-models (finalize)", |f| {
        logged_models::status_field(f).map(drop)
    }),
    ("logged-models/params", |f| {
        logged_models::params_field(f).map(drop)
    }),
    ("logged-models/tags", |f| {
        runs::tags_field(f, "tags").map(drop)
    }),
    ("logged-models/search", |f| {
        logged_models::search_request(f).map(drop)
    }),
    ("logged-models/artifacts/directories", |f| {
        logged_models::list_artifacts_request(f).map(drop)
    }),
    ("registered-models/search", |f| {
        registry::models::search_request(f).map(drop)
    }),
    ("model-versions/create", |f| {
        registry::versions::create_request(f).map(drop)
    }),
    ("model-versions/search", |f| {
        registry::versions::search_request(f).map(drop)
    }),
    ("deployments (create)", |f| {
        deployments::create_request(f).map(drop)
    }),
    ("mlflow-artifacts/artifacts", |f| {
        artifacts::directory_request(f).map(drop)
    }),
    ("artifacts/list", |f| {
        artifacts::list_run_artifacts_request(f).map(drop)
    }),
    ("get-artifact", |f| {
        artifacts::get_run_artifact_request(f).map(drop)
    }),
    ("upload-artifact", |f| {
        artifacts::upload_run_artifact_request(f).map(drop)
    }),
    ("experiments/search-datasets", |f| {
        experiments::search_datasets_request(f).map(drop)
    }),
];

/// Reads `body` as the log-batch route does ([`runs::log_batch_request`]); first checks that
/// whatever the fast reader ([`batch::parse`]) accepts, the general one accepts too and reads
/// the same (the fast path's promise: both accept the same valid requests). Returns whether the
/// request decoded.
pub(crate) fn log_batch_body(body: &[u8]) -> bool {
    if let Some(fast) = batch::parse(body) {
        let general = Fields::from_json(body)
            .and_then(|f| runs::batch_from_fields(&f))
            .unwrap_or_else(|e| {
                panic!("the fast log-batch reader accepts what the general one refuses: {e}")
            });
        assert_eq!(fast.run_id, general.run_id);
        assert_eq!((&fast.params, &fast.tags), (&general.params, &general.tags));
        assert_eq!(fast.metrics.len(), general.metrics.len());
        for (a, b) in fast.metrics.iter().zip(&general.metrics) {
            // Values by bits: NaN is unequal to itself.
            assert_eq!(a.value.to_bits(), b.value.to_bits());
            assert_eq!((&a.key, a.timestamp, a.step), (&b.key, b.timestamp, b.step));
            assert_eq!(
                (&a.model_id, &a.dataset_name, &a.dataset_digest),
                (&b.model_id, &b.dataset_name, &b.dataset_digest)
            );
        }
    }
    runs::log_batch_request(body).is_ok()
}
