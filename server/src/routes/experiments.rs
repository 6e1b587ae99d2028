//! Routes of the experiments service: create, get, get-by-name, search, update (rename),
//! delete, restore, set-experiment-tag, delete-experiment-tag.

use std::cmp::Ordering;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use quiver_store::Experiment;
use serde_json::{json, Value};

use super::mlflow;
use super::runs::search::{
    self, Clause, Entity, Test, KEY_VALUE_OPS, NUMERIC_OPS, STRING_LIST_OPS,
};
use super::runs::tags_field;
use crate::error::{ApiError, ApiResult};
use crate::wire::Fields;
use crate::{blocking, json, AppState};

/// Registers this module's routes.
pub(crate) fn routes(router: Router<AppState>) -> Router<AppState> {
    let r = mlflow(router, "2.0", "/experiments/create", post(create));
    let r = mlflow(r, "2.0", "/experiments/get", get(get_experiment));
    let r = mlflow(r, "2.0", "/experiments/get-by-name", get(get_by_name));
    let r = mlflow(r, "2.0", "/experiments/search", get(search).post(search));
    let r = mlflow(r, "2.0", "/experiments/update", post(update));
    let r = mlflow(r, "2.0", "/experiments/delete", post(delete));
    let r = mlflow(r, "2.0", "/experiments/restore", post(restore));
    let r = mlflow(r, "2.0", "/experiments/set-experiment-tag", post(set_tag));
    mlflow(
        r,
        "2.0",
        "/experiments/delete-experiment-tag",
        post(delete_tag),
    )
}

fn done() -> Json<Value> {
    Json(json!({}))
}

/// `POST experiments/create {name*, artifact_location, tags}` → `{experiment_id}`.
async fn create(State(s): State<AppState>, f: Fields) -> ApiResult<Json<Value>> {
    let name = f.req_str("name")?;
    let location = f.opt_str("artifact_location")?;
    let tags = tags_field(&f, "tags")?;
    let id = blocking(move || {
        Ok(s.store
            .create_experiment(&name, location.as_deref(), &tags)?)
    })
    .await?;
    Ok(Json(json!({ "experiment_id": id })))
}

/// `GET experiments/get?experiment_id=` → `{experiment}`.
async fn get_experiment(State(s): State<AppState>, f: Fields) -> ApiResult<Json<Value>> {
    let id = f.req_str("experiment_id")?;
    let exp = blocking(move || Ok(s.store.get_experiment(&id)?)).await?;
    Ok(Json(json!({ "experiment": json::experiment(&exp) })))
}

/// `GET experiments/get-by-name?experiment_name=` → `{experiment}` (deleted ones too).
async fn get_by_name(State(s): State<AppState>, f: Fields) -> ApiResult<Json<Value>> {
    let name = f.req_str("experiment_name")?;
    let exp = blocking(move || Ok(s.store.get_experiment_by_name(&name)?)).await?;
    Ok(Json(json!({ "experiment": json::experiment(&exp) })))
}

/// `POST experiments/update {experiment_id*, new_name*}`: renames.
async fn update(State(s): State<AppState>, f: Fields) -> ApiResult<Json<Value>> {
    let id = f.req_str("experiment_id")?;
    let name = f.req_str("new_name")?;
    blocking(move || Ok(s.store.rename_experiment(&id, &name)?)).await?;
    Ok(done())
}

/// `POST experiments/delete {experiment_id*}`: the experiment and its runs go to the trash.
async fn delete(State(s): State<AppState>, f: Fields) -> ApiResult<Json<Value>> {
    let id = f.req_str("experiment_id")?;
    blocking(move || Ok(s.store.delete_experiment(&id)?)).await?;
    Ok(done())
}

/// `POST experiments/restore {experiment_id*}`.
async fn restore(State(s): State<AppState>, f: Fields) -> ApiResult<Json<Value>> {
    let id = f.req_str("experiment_id")?;
    blocking(move || Ok(s.store.restore_experiment(&id)?)).await?;
    Ok(done())
}

/// `POST experiments/set-experiment-tag {experiment_id*, key*, value}`.
async fn set_tag(State(s): State<AppState>, f: Fields) -> ApiResult<Json<Value>> {
    let id = f.req_str("experiment_id")?;
    let key = f.req_str("key")?;
    let value = f.opt_str("value")?.unwrap_or_default();
    blocking(move || Ok(s.store.set_experiment_tag(&id, &key, &value)?)).await?;
    Ok(done())
}

/// `POST experiments/delete-experiment-tag {experiment_id*, key*}`.
async fn delete_tag(State(s): State<AppState>, f: Fields) -> ApiResult<Json<Value>> {
    let id = f.req_str("experiment_id")?;
    let key = f.req_str("key")?;
    blocking(move || Ok(s.store.delete_experiment_tag(&id, &key)?)).await?;
    Ok(done())
}

/// A field of an experiment that filters and `order_by` can name.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Field {
    Name,
    Id,
    CreationTime,
    LastUpdateTime,
    Tag(String),
}

impl Field {
    fn attribute(key: &str) -> ApiResult<Field> {
        Ok(match key {
            "name" => Field::Name,
            "experiment_id" => Field::Id,
            "creation_time" => Field::CreationTime,
            "last_update_time" => Field::LastUpdateTime,
            _ => {
                return Err(ApiError::invalid(format!(
                    "Invalid attribute key '{key}' specified. Valid keys are \
                     '['name', 'experiment_id', 'creation_time', 'last_update_time']'"
                )))
            }
        })
    }

    fn time(&self, e: &Experiment) -> Option<f64> {
        match self {
            Field::CreationTime => Some(e.creation_time as f64),
            Field::LastUpdateTime => Some(e.last_update_time as f64),
            _ => None,
        }
    }
}

fn not_for_experiments(entity: Entity) -> ApiError {
    ApiError::invalid(format!(
        "Invalid entity type '{}'. Valid values are ['attribute', 'tag'] when searching \
         experiments",
        entity.name()
    ))
}

fn experiment_test(c: &Clause) -> ApiResult<(Field, Test)> {
    match c.entity {
        Entity::Tag => Ok((Field::Tag(c.key.clone()), Test::string(c, KEY_VALUE_OPS)?)),
        Entity::Attribute => {
            let field = Field::attribute(&c.key)?;
            let test = match field {
                Field::Name | Field::Id => Test::string(c, STRING_LIST_OPS)?,
                _ => Test::number(c, NUMERIC_OPS)?,
            };
            Ok((field, test))
        }
        other => Err(not_for_experiments(other)),
    }
}

fn passes(e: &Experiment, field: &Field, test: &Test) -> bool {
    match field {
        Field::Name => test.on_str(Some(&e.name)),
        Field::Id => test.on_str(Some(&e.experiment_id)),
        Field::Tag(k) => test.on_str(
            e.tags
                .iter()
                .find(|t| &t.key == k)
                .map(|t| t.value.as_str()),
        ),
        time => test.on_num(time.time(e)),
    }
}

fn numeric_id(e: &Experiment) -> u64 {
    e.experiment_id.parse().unwrap_or(u64::MAX)
}

fn compare(a: &Experiment, b: &Experiment, field: &Field) -> Ordering {
    match field {
        Field::Name => a.name.cmp(&b.name),
        Field::Id => numeric_id(a).cmp(&numeric_id(b)),
        Field::CreationTime => a.creation_time.cmp(&b.creation_time),
        Field::LastUpdateTime => a.last_update_time.cmp(&b.last_update_time),
        Field::Tag(_) => Ordering::Equal,
    }
}

/// `POST|GET experiments/search {max_results*, view_type, filter, order_by[], page_token}`
/// → `{experiments, next_page_token}`. Default order: creation time descending, then id.
async fn search(State(s): State<AppState>, f: Fields) -> ApiResult<Json<Value>> {
    let max_results = f.opt_i64("max_results")?.unwrap_or(0);
    search::check_max_results(max_results, 1)?;
    let view = search::view_type(&f, "view_type")?;
    let filter = f.opt_str("filter")?.unwrap_or_default();
    let tests = search::parse_filter(&filter)?
        .iter()
        .map(experiment_test)
        .collect::<ApiResult<Vec<_>>>()?;
    let mut order = Vec::new();
    for clause in f.str_list("order_by")? {
        let o = search::parse_order_by(&clause)?;
        if o.entity != Entity::Attribute {
            return Err(ApiError::invalid(format!(
                "Invalid order_by entity type '{}'. Experiments can only be ordered by \
                 attributes",
                o.entity.name()
            )));
        }
        order.push((Field::attribute(&o.key)?, o.ascending));
    }
    if order.is_empty() {
        order.push((Field::CreationTime, false));
    }
    if !order.iter().any(|(field, _)| *field == Field::Id) {
        order.push((Field::Id, true));
    }
    let offset = search::decode_page_token(f.opt_str("page_token")?.as_deref())?;

    let mut exps = blocking(move || Ok(s.store.list_experiments(view)?)).await?;
    exps.retain(|e| tests.iter().all(|(field, test)| passes(e, field, test)));
    exps.sort_by(|a, b| {
        order
            .iter()
            .map(|(field, asc)| {
                let o = compare(a, b, field);
                if *asc {
                    o
                } else {
                    o.reverse()
                }
            })
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    });
    let (page, next) = search::paginate(exps, offset, max_results as usize);
    let mut out = serde_json::Map::new();
    json::put_list(
        &mut out,
        "experiments",
        page.iter().map(json::experiment).collect(),
    );
    if let Some(token) = next {
        out.insert("next_page_token".into(), Value::String(token));
    }
    Ok(Json(Value::Object(out)))
}
