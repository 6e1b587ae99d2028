//! MLflow's GraphQL endpoint, `GET|POST /graphql` (`{query, operationName, variables}`), which
//! the web UI's run page uses: MLflow's schema ([`types`], [`inputs`]) and resolvers
//! ([`resolvers`]) on async-graphql, behind MLflow's limits on a query's shape ([`limits`]).
//!
//! The answer is MLflow's, not the GraphQL spec's: always `200` with
//! `{"data": ..., "errors": null}`, or `"errors"` as a list of messages (strings). A query that
//! breaks a limit or does not parse is answered `{"data": null, "errors": [message]}` without
//! being run; a resolver's failure (an unknown run ...) makes its field `null` and adds the
//! store's message (`Run with id=nope not found`).

mod directive;
mod inputs;
mod limits;
mod resolvers;
mod types;

use std::sync::{Arc, OnceLock};

use async_graphql::{EmptySubscription, Schema, Variables};
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use quiver_store::Store;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::json::json_response;
use crate::wire::Fields;
use crate::AppState;

/// MLflow's GraphQL schema.
type MlflowSchema = Schema<resolvers::Query, resolvers::Mutation, EmptySubscription>;

/// The schema, built once (it holds no state: the store comes with each request).
fn schema() -> &'static MlflowSchema {
    static SCHEMA: OnceLock<MlflowSchema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        Schema::build(resolvers::Query, resolvers::Mutation, EmptySubscription)
            .directive(directive::Component)
            .finish()
    })
}

/// Registers `GET|POST /graphql`, the one path MLflow serves it at.
pub(crate) fn routes(router: Router<AppState>) -> Router<AppState> {
    router.route("/graphql", get(graphql).post(graphql))
}

/// MLflow's answer: `data` as the executor built it (fields in the order they were selected),
/// `errors` as a list of messages or `null`.
#[derive(serde::Serialize)]
struct Answer<'a> {
    data: &'a async_graphql::Value,
    errors: Option<Vec<&'a str>>,
}

impl Answer<'_> {
    fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a GraphQL value is always valid JSON")
    }
}

/// MLflow's answer to a query that was not run: no data, one error.
fn refused(message: &str) -> Vec<u8> {
    Answer {
        data: &async_graphql::Value::Null,
        errors: Some(vec![message]),
    }
    .to_json()
}

/// `GET|POST /graphql`: the fields come from the JSON body of a POST or the query string of a
/// GET (`variables` as a JSON object, or as a string holding one).
async fn graphql(State(s): State<AppState>, f: Fields) -> ApiResult<Response> {
    let query = f
        .opt_str("query")?
        .ok_or_else(|| ApiError::invalid("Must provide query string."))?;
    let operation = f.opt_str("operation_name")?.filter(|o| !o.is_empty());
    let variables = match f.raw("variables") {
        None => Value::Null,
        Some(Value::String(text)) if text.trim().is_empty() => Value::Null,
        Some(Value::String(text)) => serde_json::from_str(text)
            .map_err(|e| ApiError::invalid(format!("Variables are invalid JSON: {e}")))?,
        Some(v) => v.clone(),
    };
    Ok(json_response(
        execute(&s.store, &query, operation, variables).await,
    ))
}

/// Runs `query` against `store`, with MLflow's checks first: MLflow's answer, as JSON.
async fn execute(
    store: &Arc<Store>,
    query: &str,
    operation: Option<String>,
    variables: Value,
) -> Vec<u8> {
    let doc = match async_graphql::parser::parse_query(query) {
        Ok(doc) => doc,
        Err(e) => return refused(&format!("Syntax Error: {e}")),
    };
    if let Err(message) = limits::check(&doc) {
        return refused(&message);
    }
    let mut request = async_graphql::Request::new(query)
        .variables(Variables::from_json(variables))
        .data(store.clone());
    if let Some(op) = operation {
        request = request.operation_name(op);
    }
    let response = schema().execute(request).await;
    Answer {
        data: &response.data,
        errors: (!response.errors.is_empty())
            .then(|| response.errors.iter().map(|e| e.message.as_str()).collect()),
    }
    .to_json()
}

#[cfg(test)]
mod tests;
