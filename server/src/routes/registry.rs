//! Routes of the model registry service (MLflow's `ModelRegistryService`): registered models
//! ([`models`]) and model versions ([`versions`]). Every write names the user making it (the
//! [`crate::user::User`] of the request), which the store records in the registry's history.

pub(crate) mod models;
pub(crate) mod versions;

use axum::Router;
use quiver_store::RegistrySearch;

use super::runs::search;
use crate::error::ApiResult;
use crate::wire::Fields;
use crate::AppState;

/// Registers this module's routes.
pub(crate) fn routes(router: Router<AppState>) -> Router<AppState> {
    let router = models::routes(router);
    versions::routes(router)
}

/// A registry search request: `filter`, `max_results` (`default` when absent, 1 to `max`),
/// `order_by[]`, `page_token`.
pub(crate) fn search_fields(f: &Fields, default: i64, max: i64) -> ApiResult<RegistrySearch> {
    let n = f.opt_i64("max_results")?.unwrap_or(default);
    if n < 1 {
        return Err(search::invalid_max_results(
            n,
            "It must be a positive integer",
        ));
    }
    if n > max {
        return Err(search::invalid_max_results(
            n,
            &format!("It must be at most {max}"),
        ));
    }
    Ok(RegistrySearch {
        filter: f.opt_str("filter")?.unwrap_or_default(),
        max_results: usize::try_from(n).unwrap_or(usize::MAX),
        order_by: f.str_list("order_by")?,
        page_token: f.opt_str("page_token")?.filter(|t| !t.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn fields(v: Value) -> Fields {
        Fields::from_map(v.as_object().unwrap().clone())
    }

    #[test]
    fn search_requests_check_max_results() {
        let req = search_fields(&fields(json!({})), 100, 1000).unwrap();
        assert_eq!(req.max_results, 100);
        assert!(req.filter.is_empty() && req.order_by.is_empty() && req.page_token.is_none());
        let req = search_fields(
            &fields(json!({"max_results": "1000", "filter": "name = 'a'",
                           "order_by": "name DESC", "page_token": ""})),
            100,
            1000,
        )
        .unwrap();
        assert_eq!(req.max_results, 1000);
        assert_eq!(req.filter, "name = 'a'");
        assert_eq!(req.order_by, vec!["name DESC"]);
        assert_eq!(req.page_token, None);
        for (bad, phrase) in [
            (json!(1001), "It must be at most 1000"),
            (json!(0), "positive"),
            (json!(-5), "positive"),
            (json!("x"), "Invalid value \"x\""),
        ] {
            let e = search_fields(&fields(json!({ "max_results": bad })), 100, 1000).unwrap_err();
            assert_eq!(e.code, "INVALID_PARAMETER_VALUE");
            assert!(e.message.contains(phrase), "{e}");
        }
    }
}
