//! Searches: random runs and random filters checked against a straightforward reference
//! evaluator over `get_run`; paging; the index kept current by writes; grammar errors.

use std::cmp::Ordering;

use proptest::prelude::*;
use quiver_store::*;

use crate::temp_store;

// ----- the world -----

const METRIC_KEYS: &[&str] = &["acc", "loss", "val.loss", "my metric"];
const PARAM_KEYS: &[&str] = &["lr", "opt name", "seed"];
const PARAM_VALUES: &[&str] = &["0.01", "0.1", "Adam", "adam", "a_b", "100%"];
const TAG_KEYS: &[&str] = &["team", "mlflow.note"];
const TAG_VALUES: &[&str] = &["x", "X", "xy", "", "a'b"];
const NAMES: &[&str] = &["a", "ab", "Abc", "b_1", "zz"];
const USERS: &[&str] = &["", "alice", "bob"];
const DATASETS: &[&str] = &["mnist", "cifar"];
const CONTEXTS: &[&str] = &["train", "eval"];
const NUMBERS: &[f64] = &[-1.0, 0.0, 0.5, 1.0, 2.0];

#[derive(Debug, Clone)]
struct RunSpec {
    experiment: usize,
    name: usize,
    user: usize,
    start: i64,
    /// Metric key index, (step, value) points.
    metrics: Vec<(usize, i64, f64)>,
    params: Vec<(usize, usize)>,
    tags: Vec<(usize, usize)>,
    finished: Option<i64>,
    deleted: bool,
    inputs: Vec<(usize, usize, usize)>,
}

fn metric_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => prop::sample::select(NUMBERS.to_vec()),
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => -3.0f64..3.0,
    ]
}

fn run_spec() -> impl Strategy<Value = RunSpec> {
    (
        (0usize..2, 0..NAMES.len(), 0..USERS.len(), 1000i64..1004),
        prop::collection::vec((0..METRIC_KEYS.len(), 0i64..3, metric_value()), 0..6),
        prop::collection::vec((0..PARAM_KEYS.len(), 0..PARAM_VALUES.len()), 0..3),
        prop::collection::vec((0..TAG_KEYS.len(), 0..TAG_VALUES.len()), 0..3),
        prop::option::of(1004i64..1010),
        prop::bool::weighted(0.2),
        prop::collection::vec((0..DATASETS.len(), 0usize..2, 0..CONTEXTS.len()), 0..3),
    )
        .prop_map(
            |(
                (experiment, name, user, start),
                metrics,
                params,
                tags,
                finished,
                deleted,
                inputs,
            )| {
                RunSpec {
                    experiment,
                    name,
                    user,
                    start,
                    metrics,
                    params,
                    tags,
                    finished,
                    deleted,
                    inputs,
                }
            },
        )
}

/// Creates the run; returns its id.
fn create(store: &Store, exps: &[String], spec: &RunSpec) -> String {
    let run = store
        .create_run(CreateRun {
            experiment_id: Some(exps[spec.experiment].clone()),
            user_id: Some(USERS[spec.user].into()),
            run_name: Some(NAMES[spec.name].into()),
            start_time: Some(spec.start),
            tags: vec![],
        })
        .unwrap();
    run.info.run_id
}

/// Logs everything else of the run.
fn fill(store: &Store, id: &str, spec: &RunSpec) {
    let metrics: Vec<Metric> = spec
        .metrics
        .iter()
        .map(|&(k, step, v)| Metric::new(METRIC_KEYS[k], v, 5, step))
        .collect();
    let mut params: Vec<Param> = Vec::new();
    for &(k, v) in &spec.params {
        if !params.iter().any(|p| p.key == PARAM_KEYS[k]) {
            params.push(Param::new(PARAM_KEYS[k], PARAM_VALUES[v]));
        }
    }
    let tags: Vec<Tag> = spec
        .tags
        .iter()
        .map(|&(k, v)| Tag::new(TAG_KEYS[k], TAG_VALUES[v]))
        .collect();
    store.log_batch(id, &metrics, &params, &tags).unwrap();
    let inputs: Vec<DatasetInput> = spec
        .inputs
        .iter()
        .map(|&(name, digest, context)| DatasetInput {
            tags: vec![Tag::new(DATASET_CONTEXT_TAG, CONTEXTS[context])],
            dataset: Dataset {
                name: DATASETS[name].into(),
                digest: format!("d{digest}"),
                source_type: "local".into(),
                source: "{}".into(),
                schema: None,
                profile: None,
            },
        })
        .collect();
    if !inputs.is_empty() {
        store.log_inputs(id, &inputs).unwrap();
    }
    if let Some(end) = spec.finished {
        store
            .update_run(
                id,
                UpdateRun {
                    status: Some(RunStatus::Finished),
                    end_time: Some(end),
                    run_name: None,
                },
            )
            .unwrap();
    }
    if spec.deleted {
        store.delete_run(id).unwrap();
    }
}

// ----- filters, as data and as text -----

#[derive(Debug, Clone)]
enum Clause {
    Metric(usize, &'static str, f64),
    /// Param (true) or tag (false), key, comparator, value pattern.
    KeyValue(bool, usize, &'static str, String),
    Attr(&'static str, &'static str, String),
    Time(&'static str, &'static str, i64),
    /// Run ids by index into the created runs, IN (true) or NOT IN.
    RunIds(bool, Vec<usize>),
    Dataset(&'static str, &'static str, Vec<String>),
}

const NUM_OPS: &[&str] = &["=", "!=", "<", "<=", ">", ">="];
const KV_OPS: &[&str] = &["=", "!=", "LIKE", "ILIKE", "IS NULL", "IS NOT NULL"];
const STR_OPS: &[&str] = &["=", "!=", "LIKE", "ILIKE"];

fn pattern() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(PARAM_VALUES.to_vec()).prop_map(String::from),
        prop::sample::select(TAG_VALUES.to_vec()).prop_map(String::from),
        prop::sample::select(NAMES.to_vec()).prop_map(String::from),
        prop::sample::select(vec![
            "a%", "%b%", "_", "%", "A%", "x_", "%1", "0.%", "a\\_b"
        ])
        .prop_map(String::from),
    ]
}

fn clause() -> impl Strategy<Value = Clause> {
    prop_oneof![
        (
            0..METRIC_KEYS.len(),
            prop::sample::select(NUM_OPS),
            prop::sample::select(NUMBERS.to_vec())
        )
            .prop_map(|(k, op, v)| Clause::Metric(k, op, v)),
        (
            any::<bool>(),
            0..3usize,
            prop::sample::select(KV_OPS),
            pattern()
        )
            .prop_map(|(p, k, op, v)| Clause::KeyValue(p, k, op, v)),
        (
            prop::sample::select(vec!["run_name", "status", "user_id", "artifact_uri"]),
            prop::sample::select(STR_OPS),
            prop_oneof![
                pattern(),
                Just("FINISHED".to_string()),
                Just("RUNNING".to_string())
            ]
        )
            .prop_map(|(a, op, v)| Clause::Attr(a, op, v)),
        (
            prop::sample::select(vec!["start_time", "end_time"]),
            prop::sample::select(NUM_OPS),
            1000i64..1010
        )
            .prop_map(|(a, op, v)| Clause::Time(a, op, v)),
        (any::<bool>(), prop::collection::vec(0usize..30, 1..4))
            .prop_map(|(inside, ids)| Clause::RunIds(inside, ids)),
        (
            prop::sample::select(vec!["name", "digest", "context"]),
            prop::sample::select(vec!["=", "!=", "LIKE", "ILIKE", "IN", "NOT IN"]),
            prop::collection::vec(
                prop::sample::select(vec![
                    "mnist", "cifar", "d0", "d1", "train", "eval", "%a%", "M%"
                ]),
                1..3
            )
            .prop_map(|v| v.into_iter().map(String::from).collect())
        )
            .prop_map(|(k, op, v)| Clause::Dataset(k, op, v)),
    ]
}

/// Writes a key the way a user might: plain when it can be, else backticks or double quotes.
fn quote_key(prefix: &str, key: &str, style: u8) -> String {
    let plain_ok = !key.contains(' ');
    match style % 3 {
        0 if plain_ok => format!("{prefix}{key}"),
        1 => format!("{prefix}\"{key}\""),
        _ => format!("{prefix}`{key}`"),
    }
}

/// Quotes a value. As in MLflow, a quoted value is the text between the quotes as written (no
/// unescaping), so a value holding one kind of quote is written in the other.
fn quote_value(v: &str, style: u8) -> String {
    if (style.is_multiple_of(2) || v.contains('"')) && !v.contains('\'') {
        format!("'{v}'")
    } else {
        format!("\"{v}\"")
    }
}

fn case(keyword: &str, style: u8) -> String {
    if style.is_multiple_of(2) {
        keyword.to_string()
    } else {
        keyword.to_lowercase()
    }
}

fn render(c: &Clause, ids: &[String], style: u8) -> String {
    let prefix = |names: &[&str]| format!("{}.", names[style as usize % names.len()]);
    match c {
        Clause::Metric(k, op, v) => format!(
            "{} {op} {v}",
            quote_key(&prefix(&["metrics", "metric"]), METRIC_KEYS[*k], style)
        ),
        Clause::KeyValue(is_param, k, op, v) => {
            let key = if *is_param {
                quote_key(
                    &prefix(&["params", "param", "parameter", "parameters"]),
                    PARAM_KEYS[*k],
                    style,
                )
            } else {
                quote_key(
                    &prefix(&["tags", "tag"]),
                    TAG_KEYS[*k % TAG_KEYS.len()],
                    style,
                )
            };
            if op.starts_with("IS") {
                format!("{key} {}", case(op, style))
            } else {
                format!("{key} {} {}", case(op, style), quote_value(v, style))
            }
        }
        Clause::Attr(a, op, v) => {
            let p = ["", "attributes.", "attr.", "run."][style as usize % 4];
            format!("{p}{a} {} {}", case(op, style), quote_value(v, style))
        }
        Clause::Time(a, op, v) => format!("attributes.{a} {op} {v}"),
        Clause::RunIds(inside, which) => {
            let list: Vec<String> = which
                .iter()
                .map(|&i| {
                    let id = ids
                        .get(i)
                        .map(String::as_str)
                        .unwrap_or("0123456789abcdef0123456789abcdef");
                    quote_value(id, style)
                })
                .collect();
            let op = if *inside { "IN" } else { "NOT IN" };
            format!("run_id {} ({})", case(op, style), list.join(", "))
        }
        Clause::Dataset(k, op, values) => {
            let key = format!("{}{k}", prefix(&["datasets", "dataset"]));
            if op.contains("IN") {
                let list: Vec<String> = values.iter().map(|v| quote_value(v, style)).collect();
                format!("{key} {op} ({})", list.join(","))
            } else {
                format!("{key} {op} {}", quote_value(&values[0], style))
            }
        }
    }
}

// ----- the reference evaluator -----

/// SQL LIKE by plain recursion (the store uses an iterative matcher).
fn like_ref(p: &[char], t: &[char]) -> bool {
    match p.first() {
        None => t.is_empty(),
        Some('%') => (0..=t.len()).any(|i| like_ref(&p[1..], &t[i..])),
        Some('_') => !t.is_empty() && like_ref(&p[1..], &t[1..]),
        Some(c) => t.first() == Some(c) && like_ref(&p[1..], &t[1..]),
    }
}

pub(crate) fn str_ref(op: &str, actual: Option<&str>, expected: &str) -> bool {
    let Some(a) = actual else {
        return op == "IS NULL";
    };
    let chars = |s: &str| s.chars().collect::<Vec<_>>();
    match op {
        "=" => a == expected,
        "!=" => a != expected,
        "LIKE" => like_ref(&chars(expected), &chars(a)),
        "ILIKE" => like_ref(&chars(&expected.to_lowercase()), &chars(&a.to_lowercase())),
        "IS NULL" => false,
        "IS NOT NULL" => true,
        _ => unreachable!(),
    }
}

pub(crate) fn num_ref(op: &str, actual: Option<f64>, expected: f64) -> bool {
    let Some(a) = actual else { return false };
    match op {
        "=" => a == expected,
        "!=" => a != expected,
        "<" => a < expected,
        "<=" => a <= expected,
        ">" => a > expected,
        ">=" => a >= expected,
        _ => unreachable!(),
    }
}

fn reference_passes(run: &Run, c: &Clause, ids: &[String]) -> bool {
    let tag = |k: &str| {
        run.tags
            .iter()
            .find(|t| t.key == k)
            .map(|t| t.value.as_str())
    };
    match c {
        Clause::Metric(k, op, v) => num_ref(
            op,
            run.metrics
                .iter()
                .find(|m| m.key == METRIC_KEYS[*k])
                .map(|m| m.value),
            *v,
        ),
        Clause::KeyValue(true, k, op, v) => str_ref(
            op,
            run.params
                .iter()
                .find(|p| p.key == PARAM_KEYS[*k])
                .map(|p| p.value.as_str()),
            v,
        ),
        Clause::KeyValue(false, k, op, v) => str_ref(op, tag(TAG_KEYS[*k % TAG_KEYS.len()]), v),
        Clause::Attr(a, op, v) => {
            let i = &run.info;
            let actual = match *a {
                "run_name" => i.run_name.as_str(),
                "status" => i.status.as_str(),
                "user_id" => i.user_id.as_str(),
                _ => i.artifact_uri.as_str(),
            };
            str_ref(op, Some(actual), v)
        }
        Clause::Time(a, op, v) => {
            let actual = if *a == "start_time" {
                Some(run.info.start_time)
            } else {
                run.info.end_time
            };
            num_ref(op, actual.map(|t| t as f64), *v as f64)
        }
        Clause::RunIds(inside, which) => {
            let listed = which.iter().any(|&i| ids.get(i) == Some(&run.info.run_id));
            listed == *inside
        }
        Clause::Dataset(k, op, values) => run.dataset_inputs.iter().any(|d| {
            let actual = match *k {
                "name" => Some(d.dataset.name.as_str()),
                "digest" => Some(d.dataset.digest.as_str()),
                _ => d
                    .tags
                    .iter()
                    .find(|t| t.key == DATASET_CONTEXT_TAG)
                    .map(|t| t.value.as_str()),
            };
            match (*op, actual) {
                (_, None) => false,
                ("IN", Some(a)) => values.iter().any(|v| v == a),
                ("NOT IN", Some(a)) => !values.iter().any(|v| v == a),
                (op, a) => str_ref(op, a, &values[0]),
            }
        }),
    }
}

#[derive(Debug, Clone)]
enum OrderField {
    Metric(usize),
    Param(usize),
    Tag(usize),
    Attr(&'static str),
}

fn order_clause() -> impl Strategy<Value = (OrderField, Option<bool>)> {
    (
        prop_oneof![
            (0..METRIC_KEYS.len()).prop_map(OrderField::Metric),
            (0..PARAM_KEYS.len()).prop_map(OrderField::Param),
            (0..TAG_KEYS.len()).prop_map(OrderField::Tag),
            prop::sample::select(vec![
                "run_name",
                "status",
                "user_id",
                "start_time",
                "end_time",
                "run_id"
            ])
            .prop_map(OrderField::Attr),
        ],
        prop::option::of(any::<bool>()),
    )
}

fn render_order((f, dir): &(OrderField, Option<bool>)) -> String {
    let field = match f {
        OrderField::Metric(k) => quote_key("metrics.", METRIC_KEYS[*k], 2),
        OrderField::Param(k) => quote_key("params.", PARAM_KEYS[*k], 2),
        OrderField::Tag(k) => quote_key("tags.", TAG_KEYS[*k], 2),
        OrderField::Attr(a) => format!("attributes.{a}"),
    };
    match dir {
        None => field,
        Some(true) => format!("{field} ASC"),
        Some(false) => format!("{field} DESC"),
    }
}

#[derive(Debug, Clone, PartialEq, PartialOrd)]
enum Key {
    Num(f64),
    Str(String),
}

fn key_of(run: &Run, f: &OrderField) -> Option<Key> {
    let i = &run.info;
    match f {
        OrderField::Metric(k) => run
            .metrics
            .iter()
            .find(|m| m.key == METRIC_KEYS[*k])
            .map(|m| m.value)
            .map(Key::Num),
        OrderField::Param(k) => run
            .params
            .iter()
            .find(|p| p.key == PARAM_KEYS[*k])
            .map(|p| Key::Str(p.value.clone())),
        OrderField::Tag(k) => run
            .tags
            .iter()
            .find(|t| t.key == TAG_KEYS[*k])
            .map(|t| Key::Str(t.value.clone())),
        OrderField::Attr(a) => match *a {
            "run_name" => Some(Key::Str(i.run_name.clone())),
            "status" => Some(Key::Str(i.status.as_str().into())),
            "user_id" => Some(Key::Str(i.user_id.clone())),
            "start_time" => Some(Key::Num(i.start_time as f64)),
            "end_time" => i.end_time.map(|t| Key::Num(t as f64)),
            _ => Some(Key::Str(i.run_id.clone())),
        },
    }
}

fn reference_order(a: &Run, b: &Run, order: &[(OrderField, Option<bool>)]) -> Ordering {
    let mut fields: Vec<(OrderField, bool)> = order
        .iter()
        .map(|(f, d)| (f.clone(), d.unwrap_or(true)))
        .collect();
    if !fields
        .iter()
        .any(|(f, _)| matches!(f, OrderField::Attr("start_time")))
    {
        fields.push((OrderField::Attr("start_time"), false));
    }
    fields.push((OrderField::Attr("run_id"), true));
    for (f, asc) in fields {
        let o = match (key_of(a, &f), key_of(b, &f)) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            // NaN after every number, before missing values, in either direction.
            (Some(Key::Num(x)), Some(Key::Num(y))) if x.is_nan() || y.is_nan() => {
                x.is_nan().cmp(&y.is_nan())
            }
            (Some(x), Some(y)) => {
                let o = x.partial_cmp(&y).unwrap();
                if asc {
                    o
                } else {
                    o.reverse()
                }
            }
        };
        if o.is_ne() {
            return o;
        }
    }
    Ordering::Equal
}

/// Every page of a search, concatenated.
fn all_pages(store: &Store, req: &RunSearch) -> Result<Vec<Run>> {
    let mut req = req.clone();
    let mut out = Vec::new();
    loop {
        let page = store.search_runs(&req)?;
        assert!(page.runs.len() <= req.max_results);
        out.extend(page.runs);
        match page.next_page_token {
            Some(t) => req.page_token = Some(t),
            None => return Ok(out),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Search results equal a reference evaluation over `get_run`, page after page, whether the
    /// index was built before the writes (and kept current by them) or after.
    #[test]
    fn search_matches_the_reference(
        specs in prop::collection::vec(run_spec(), 1..25),
        build_early in any::<bool>(),
        filters in prop::collection::vec((prop::collection::vec(clause(), 0..4), 0u8..12), 1..5),
        orders in prop::collection::vec(prop::collection::vec(order_clause(), 0..3), 1..4),
        page in 1usize..8,
        view in prop::sample::select(vec![ViewType::ActiveOnly, ViewType::DeletedOnly, ViewType::All]),
    ) {
        let (dir, store) = temp_store();
        let e1 = store.create_experiment("e1", None, &[]).unwrap();
        let exps = vec!["0".to_string(), e1];
        let all_exps = RunSearch {
            experiment_ids: exps.clone(),
            max_results: 1000,
            view: ViewType::All,
            ..Default::default()
        };
        let ids: Vec<String> = specs.iter().map(|s| create(&store, &exps, s)).collect();
        if build_early {
            prop_assert_eq!(store.search_runs(&all_exps).unwrap().runs.len(), ids.len());
        }
        for (id, spec) in ids.iter().zip(&specs) {
            fill(&store, id, spec);
        }
        let runs: Vec<Run> = ids.iter().map(|id| store.get_run(id).unwrap()).collect();
        // The index renders runs exactly as the catalog does.
        let mut indexed = store.search_runs(&all_exps).unwrap().runs;
        indexed.sort_by(|a, b| a.info.run_id.cmp(&b.info.run_id));
        let mut expected_all = runs.clone();
        expected_all.sort_by(|a, b| a.info.run_id.cmp(&b.info.run_id));
        prop_assert_eq!(format!("{indexed:?}"), format!("{expected_all:?}"));

        for ((clauses, style), order) in filters.iter().zip(orders.iter().cycle()) {
            let filter: Vec<String> = clauses.iter().map(|c| render(c, &ids, *style)).collect();
            let filter = filter.join(if style.is_multiple_of(2) { " AND " } else { " and " });
            let order_by: Vec<String> = order.iter().map(render_order).collect();
            let mut expected: Vec<&Run> = runs
                .iter()
                .filter(|r| view.includes(r.info.lifecycle_stage))
                .filter(|r| clauses.iter().all(|c| reference_passes(r, c, &ids)))
                .collect();
            expected.sort_by(|a, b| reference_order(a, b, order));
            let got = all_pages(&store, &RunSearch {
                experiment_ids: exps.clone(),
                filter: filter.clone(),
                view,
                max_results: page,
                order_by: order_by.clone(),
                page_token: None,
            });
            let got = match got {
                Ok(g) => g,
                Err(e) => return Err(TestCaseError::fail(format!("{filter:?} {order_by:?}: {e}"))),
            };
            let got_ids: Vec<&str> = got.iter().map(|r| r.info.run_id.as_str()).collect();
            let want_ids: Vec<&str> = expected.iter().map(|r| r.info.run_id.as_str()).collect();
            prop_assert_eq!(got_ids, want_ids, "filter {:?} order {:?}", filter, order_by);
        }

        // After a restart the index is built from the catalog (on open, in the background).
        store.close().unwrap();
        let store = Store::open_with(dir.path(), crate::manual_options()).unwrap();
        let mut rebuilt = store.search_runs(&all_exps).unwrap().runs;
        rebuilt.sort_by(|a, b| a.info.run_id.cmp(&b.info.run_id));
        prop_assert_eq!(format!("{rebuilt:?}"), format!("{expected_all:?}"));
    }
}

// ----- examples -----

fn run_with(store: &Store, exp: &str, start: i64, acc: Option<f64>, lr: &str) -> String {
    let run = store
        .create_run(CreateRun {
            experiment_id: Some(exp.into()),
            start_time: Some(start),
            ..Default::default()
        })
        .unwrap();
    let id = run.info.run_id;
    let metrics: Vec<Metric> = acc
        .map(|a| Metric::new("acc", a, 1, 0))
        .into_iter()
        .collect();
    store
        .log_batch(&id, &metrics, &[Param::new("lr", lr)], &[])
        .unwrap();
    id
}

fn search(store: &Store, exp: &str, filter: &str, order: &[&str], max: usize) -> Result<RunPage> {
    store.search_runs(&RunSearch {
        experiment_ids: vec![exp.into()],
        filter: filter.into(),
        max_results: max,
        order_by: order.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    })
}

#[test]
fn paging_is_exact_while_runs_are_created() {
    let (_dir, store) = temp_store();
    let exp = store.create_experiment("paging", None, &[]).unwrap();
    let first: Vec<String> = (0..10)
        .map(|i| run_with(&store, &exp, 1000 + i, None, "1"))
        .collect();
    let page = search(&store, &exp, "", &[], 4).unwrap();
    // Newer runs come first by default; new runs created now must not shift later pages.
    for i in 0..5 {
        run_with(&store, &exp, 5000 + i, None, "1");
    }
    let mut seen: Vec<String> = page.runs.iter().map(|r| r.info.run_id.clone()).collect();
    let mut token = page.next_page_token;
    while let Some(t) = token {
        let page = store
            .search_runs(&RunSearch {
                experiment_ids: vec![exp.clone()],
                max_results: 4,
                page_token: Some(t),
                ..Default::default()
            })
            .unwrap();
        seen.extend(page.runs.iter().map(|r| r.info.run_id.clone()));
        token = page.next_page_token;
    }
    let mut expected = first.clone();
    expected.reverse();
    assert_eq!(
        seen, expected,
        "the ten original runs, newest first, once each"
    );
}

#[test]
fn index_follows_writes_after_it_is_built() {
    let (_dir, store) = temp_store();
    let exp = store.create_experiment("live", None, &[]).unwrap();
    let a = run_with(&store, &exp, 1, Some(0.9), "0.01");
    let b = run_with(&store, &exp, 2, Some(0.2), "0.1");
    let ids = |p: RunPage| -> Vec<String> { p.runs.into_iter().map(|r| r.info.run_id).collect() };
    let q = "metrics.acc > 0.5 and params.lr = '0.01'";
    assert_eq!(
        ids(search(&store, &exp, q, &[], 10).unwrap()),
        vec![a.clone()]
    );
    // A later, greater step replaces the latest value; an earlier step does not.
    store
        .log_metric(&b, &Metric::new("acc", 0.95, 3, 5))
        .unwrap();
    store
        .log_metric(&a, &Metric::new("acc", 0.1, 3, -1))
        .unwrap();
    let c = run_with(&store, &exp, 3, Some(0.7), "0.01");
    assert_eq!(
        ids(search(&store, &exp, q, &[], 10).unwrap()),
        vec![c.clone(), a.clone()]
    );
    assert_eq!(
        ids(search(&store, &exp, "metrics.acc > 0.5", &["metrics.acc DESC"], 10).unwrap()),
        vec![b.clone(), a.clone(), c.clone()]
    );
    store.set_tag(&a, "team", "vision").unwrap();
    assert_eq!(
        ids(search(&store, &exp, "tags.team = 'vision'", &[], 10).unwrap()),
        vec![a.clone()]
    );
    store.delete_tag(&a, "team").unwrap();
    assert!(search(&store, &exp, "tags.team = 'vision'", &[], 10)
        .unwrap()
        .runs
        .is_empty());
    store.set_tag(&c, "mlflow.runName", "renamed").unwrap();
    assert_eq!(
        ids(search(&store, &exp, "run_name = 'renamed'", &[], 10).unwrap()),
        vec![c.clone()]
    );
    store.delete_run(&c).unwrap();
    assert_eq!(
        ids(search(&store, &exp, q, &[], 10).unwrap()),
        vec![a.clone()]
    );
    // Runs deleted with the experiment are told apart by deletion time (as in MLflow), in ms.
    std::thread::sleep(std::time::Duration::from_millis(5));
    store.delete_experiment(&exp).unwrap();
    let deleted = |filter: &str| {
        store
            .search_runs(&RunSearch {
                experiment_ids: vec![exp.clone()],
                filter: filter.into(),
                view: ViewType::DeletedOnly,
                max_results: 10,
                ..Default::default()
            })
            .unwrap()
            .runs
            .len()
    };
    assert_eq!(deleted(""), 3);
    store.restore_experiment(&exp).unwrap();
    // The run deleted on its own stays deleted.
    assert_eq!(deleted(""), 1);
    for r in search(&store, &exp, "", &[], 10).unwrap().runs {
        assert_eq!(r, store.get_run(&r.info.run_id).unwrap());
    }
}

#[test]
fn index_built_during_writes_catches_up() {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(Store::open_with(dir.path(), crate::manual_options()).unwrap());
    let exp = store.create_experiment("busy", None, &[]).unwrap();
    let runs: Vec<String> = (0..1500)
        .map(|i| run_with(&store, &exp, i, Some(0.0), "x"))
        .collect();
    let done = std::sync::Arc::new(AtomicUsize::new(0));
    // One write-once param per run, in a sweep: a write lost while the index was being built
    // would never be overwritten.
    let writer = {
        let (store, runs, done) = (store.clone(), runs.clone(), done.clone());
        std::thread::spawn(move || {
            for (i, r) in runs.iter().enumerate() {
                let m = Metric::new("acc", i as f64, 10, 1);
                store
                    .log_batch(r, &[m], &[Param::new("p", i.to_string())], &[])
                    .unwrap();
                if i % 100 == 0 {
                    store.delete_run(r).unwrap();
                }
                done.store(i + 1, SeqCst);
            }
        })
    };
    while done.load(SeqCst) < 300 {
        std::thread::yield_now();
    }
    let during = done.load(SeqCst);
    search(&store, &exp, "metrics.acc >= 0", &[], 100).unwrap();
    let after = done.load(SeqCst);
    writer.join().unwrap();
    let page = search(
        &store,
        &exp,
        "params.p IS NOT NULL and metrics.acc >= 0",
        &[],
        2000,
    )
    .unwrap();
    assert_eq!(
        page.runs.len(),
        1500 - 15,
        "writes {during}..{after} happened during the build"
    );
    for r in page.runs {
        assert_eq!(r, store.get_run(&r.info.run_id).unwrap());
    }
}

#[test]
fn grammar_errors_name_the_problem() {
    let (_dir, store) = temp_store();
    let cases = [
        (
            "metrics.acc > 0.5 OR params.lr = '1'",
            "Only 'AND' is supported",
        ),
        (
            "metrics.acc > 'abc'",
            "Expected numeric value type for metric",
        ),
        ("params.lr > '1'", "Invalid comparator '>'"),
        ("params.lr = 1", "not quoted"),
        ("foo.bar = 'x'", "Invalid entity type 'foo'"),
        (
            "attributes.colour = 'red'",
            "Invalid attribute key 'colour'",
        ),
        ("datasets.size = 'x'", "Invalid dataset key 'size'"),
        ("status IN ('RUNNING')", "Invalid comparator 'IN'"),
        ("metrics.acc IS NULL", "Invalid comparator 'IS NULL'"),
        ("params.lr = 'a", "unterminated"),
        ("params.lr = 'a' AND", "nothing after AND"),
        ("run_id IN 'a'", "expected '('"),
        ("(params.lr = 'a')", "Error on parsing filter"),
        ("metrics.loss <> 0.3", "Invalid comparator '<>'"),
        ("metrics.loss == 0.3", "Invalid comparator '=='"),
        ("METRICS.loss > 0", "Invalid entity type 'METRICS'"),
        ("Params.lr = '1'", "Invalid entity type 'Params'"),
    ];
    for (filter, message) in cases {
        let e = search(&store, "0", filter, &[], 10).unwrap_err();
        assert!(matches!(e, Error::InvalidParameter(_)), "{filter}: {e:?}");
        assert!(e.to_string().contains(message), "{filter}: {e}");
    }
    for (order, message) in [
        ("metrics.acc sideways", "Invalid order_by clause"),
        ("datasets.name", "cannot be ordered by datasets"),
        ("attributes.nope", "Invalid attribute key"),
        ("`Run name` ASC", "Invalid attribute key 'Run name'"),
    ] {
        let e = search(&store, "0", "", &[order], 10).unwrap_err();
        assert!(e.to_string().contains(message), "{order}: {e}");
    }
    let e = search(&store, "0", "", &[], 0).unwrap_err();
    assert!(
        e.to_string().contains("It must be a positive integer"),
        "{e}"
    );
    let e = search(&store, "0", "", &[], 50_001).unwrap_err();
    assert!(e.to_string().contains("It must be at most 50000"), "{e}");
    // A token is tied to its search.
    for i in 0..3 {
        run_with(&store, "0", i, None, "1");
    }
    let t = search(&store, "0", "", &[], 1)
        .unwrap()
        .next_page_token
        .unwrap();
    let e = store
        .search_runs(&RunSearch {
            experiment_ids: vec!["0".into()],
            filter: "params.lr = '1'".into(),
            max_results: 1,
            page_token: Some(t),
            ..Default::default()
        })
        .unwrap_err();
    assert!(e.to_string().contains("Invalid page token"), "{e}");
    // Unknown experiments hold no runs.
    assert!(search(&store, "999", "", &[], 10).unwrap().runs.is_empty());
}

#[test]
fn experiments_search_filters_orders_and_pages() {
    let (_dir, store) = temp_store();
    for (name, tag) in [("a", "value"), ("ab", "vaLue"), ("Abc", "other")] {
        store
            .create_experiment(name, None, &[Tag::new("key", tag)])
            .unwrap();
    }
    let find = |filter: &str, order: &[&str], max: usize| -> Vec<String> {
        let mut req = ExperimentSearch {
            filter: filter.into(),
            max_results: max,
            order_by: order.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let mut names = Vec::new();
        loop {
            let page = store.search_experiments(&req).unwrap();
            names.extend(page.experiments.into_iter().map(|e| e.name));
            match page.next_page_token {
                Some(t) => req.page_token = Some(t),
                None => return names,
            }
        }
    };
    assert_eq!(find("name LIKE 'a%'", &["name"], 1), ["a", "ab"]);
    assert_eq!(
        find("tags.key ILIKE '%alu%'", &["name DESC"], 1),
        ["ab", "a"]
    );
    assert_eq!(
        find("attribute.name != 'a'", &["experiment_id"], 2),
        ["Default", "ab", "Abc"]
    );
    assert_eq!(
        find("experiment_id IN ('0', '3')", &["name"], 10),
        ["Abc", "Default"]
    );
    assert_eq!(find("tags.key IS NULL", &[], 10), ["Default"]);
    assert_eq!(
        find("creation_time >= 0", &["experiment_id DESC"], 3),
        ["Abc", "ab", "a", "Default"]
    );
    let e = store
        .search_experiments(&ExperimentSearch {
            filter: "metrics.x > 1".into(),
            max_results: 10,
            ..Default::default()
        })
        .unwrap_err();
    assert!(
        e.to_string().contains("Invalid entity type 'metrics'"),
        "{e}"
    );
    for (filter, message) in [
        ("attributes.name = 'x'", "Invalid entity type 'attributes'"),
        (
            "name IN ('a')",
            "Only ['experiment_id'] attributes support comparison with a list",
        ),
        ("name <> 'a'", "Invalid comparator '<>'"),
    ] {
        let e = store
            .search_experiments(&ExperimentSearch {
                filter: filter.into(),
                max_results: 10,
                ..Default::default()
            })
            .unwrap_err();
        assert!(e.to_string().contains(message), "{filter}: {e}");
    }
    assert_eq!(find("\"name\" = 'ab'", &["\"name\" DESC"], 10), ["ab"]);
    let e = store
        .search_experiments(&ExperimentSearch {
            max_results: 0,
            ..Default::default()
        })
        .unwrap_err();
    assert!(e.to_string().contains("max_results"), "{e}");
}

#[test]
fn quoting_follows_mlflow() {
    let (_dir, store) = temp_store();
    let exp = store.create_experiment("quotes", None, &[]).unwrap();
    let a = run_with(&store, &exp, 1, Some(f64::NAN), "1");
    let b = run_with(&store, &exp, 2, Some(3.0), "1");
    let c = run_with(&store, &exp, 3, None, "1");
    let d = run_with(&store, &exp, 4, Some(-1.0), "1");
    store.set_tag(&a, "v", "it''s").unwrap();
    store.set_tag(&b, "v", "it's").unwrap();
    store.set_tag(&c, "v", r#"say \"hi\""#).unwrap();
    let ids = |filter: &str, order: &[&str]| -> Vec<String> {
        search(&store, &exp, filter, order, 10)
            .unwrap()
            .runs
            .into_iter()
            .map(|r| r.info.run_id)
            .collect()
    };
    // The value is the text between the quotes, as written.
    assert_eq!(ids("tags.v = 'it''s'", &[]), vec![a.clone()]);
    assert_eq!(ids(r#"tags.v = "it's""#, &[]), vec![b.clone()]);
    assert_eq!(ids(r#"tags.v = "say \"hi\"""#, &[]), vec![c.clone()]);
    // A quoted name without prefix is an attribute.
    let name = store.get_run(&d).unwrap().info.run_name;
    assert_eq!(
        ids(&format!("\"run_name\" = '{name}'"), &["\"start_time\" ASC"]),
        vec![d.clone()]
    );
    // NaN after numbers, then missing, both ways.
    assert_eq!(
        ids("", &["metrics.acc ASC"]),
        [d.clone(), b.clone(), a.clone(), c.clone()]
    );
    assert_eq!(ids("", &["metrics.acc DESC"]), [b, d, a, c]);
}
