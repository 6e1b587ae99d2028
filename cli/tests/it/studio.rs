//! Quiver Studio (`/studio/`): the page and every asset it references are served with their
//! content types, and the CSV download the page offers round-trips through the SQL route.

use serde_json::json;

use crate::{agent, TestServer};

/// GET `path`: status, content type, body.
fn get(s: &TestServer, path: &str) -> (u16, String, String) {
    let mut r = agent().get(&s.api(path)).call().unwrap();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (
        r.status().as_u16(),
        ct,
        r.body_mut().read_to_string().unwrap(),
    )
}

/// The values of `attr="..."` in `html`.
fn attr_values<'a>(html: &'a str, attr: &str) -> Vec<&'a str> {
    let needle = format!("{attr}=\"");
    html.match_indices(&needle)
        .map(|(i, _)| {
            let rest = &html[i + needle.len()..];
            &rest[..rest.find('"').unwrap()]
        })
        .collect()
}

#[test]
fn studio_serves_its_page_and_every_asset_it_references() {
    let s = TestServer::start();
    let no_redirects: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let r = no_redirects.get(&s.api("/studio?x=1")).call().unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(r.headers()["location"], "/studio/?x=1");

    let (status, ct, html) = get(&s, "/studio");
    assert_eq!((status, ct.as_str()), (200, "text/html; charset=utf-8"));
    assert!(html.contains("Quiver Studio"));
    let mut assets: Vec<String> = attr_values(&html, "src")
        .into_iter()
        .chain(attr_values(&html, "href"))
        .filter(|a| !a.starts_with("data:") && !a.starts_with('#'))
        .map(String::from)
        .collect();
    assert!(assets.len() >= 2, "{assets:?}");
    let mut seen = std::collections::HashSet::new();
    while let Some(asset) = assets.pop() {
        if !seen.insert(asset.clone()) {
            continue;
        }
        let (status, ct, body) = get(&s, &format!("/studio/{asset}"));
        // The modules a module imports (`from "./x.js"`) are assets too.
        assets.extend(
            body.match_indices("from \"./")
                .map(|(i, m)| &body[i + m.len()..])
                .map(|rest| rest[..rest.find('"').unwrap()].to_string()),
        );
        assert_eq!(status, 200, "{asset}");
        assert!(!body.is_empty(), "{asset}");
        let want = match asset.rsplit('.').next() {
            Some("js") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            other => panic!("unexpected asset {asset} ({other:?})"),
        };
        assert_eq!(ct, want, "{asset}");
    }
    assert!(seen.len() >= 6, "{seen:?}");

    // Without an MLflow UI bundle, / links to Studio.
    let (_, _, root) = get(&s, "/");
    assert!(root.contains("href=\"studio/\""), "{root}");
}

#[test]
fn the_sql_route_answers_csv_on_request() {
    let s = TestServer::start();
    let mut r = agent()
        .post(&s.api("/api/2.0/quiver/sql"))
        .header("Accept", "text/csv")
        .content_type("application/json")
        .send(
            json!({"query": "SELECT * FROM (VALUES (1, 'a,b'), (2, NULL)) AS t(n, s) ORDER BY n"})
                .to_string(),
        )
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    assert_eq!(
        r.body_mut().read_to_string().unwrap(),
        "n,s\n1,\"a,b\"\n2,\n"
    );

    // Errors stay MLflow JSON errors.
    let mut r = agent()
        .post(&s.api("/api/2.0/quiver/sql"))
        .header("Accept", "text/csv")
        .content_type("application/json")
        .send(json!({"query": "SELEC 1"}).to_string())
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value =
        serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(body["error_code"], "INVALID_PARAMETER_VALUE");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("line 1, column 1"));
}

#[test]
fn the_sql_route_answers_parquet_on_request() {
    let s = TestServer::start();
    let parquet_of = |query: &str| {
        let mut r = agent()
            .post(&s.api("/api/2.0/quiver/sql"))
            .header("Accept", "application/vnd.apache.parquet")
            .content_type("application/json")
            .send(json!({ "query": query }).to_string())
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["content-type"],
            "application/vnd.apache.parquet"
        );
        let bytes = r
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("result.parquet");
        std::fs::write(&path, &bytes).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(&path).unwrap(),
        )
        .unwrap()
        .build()
        .unwrap();
        let batches: Vec<_> = reader.map(|b| b.unwrap()).collect();
        (
            batches.iter().map(|b| b.num_rows()).sum::<usize>(),
            batches.first().map(|b| b.schema().field(0).name().clone()),
        )
    };
    assert_eq!(
        parquet_of("SELECT value AS n FROM generate_series(1, 100000) AS t(value)"),
        (100_000, Some("n".to_string()))
    );
    // An empty result is still a Parquet file (with its schema, no rows).
    assert_eq!(parquet_of("SELECT run_id FROM runs"), (0, None));
}

#[test]
fn sampled_series_are_columns_of_the_bulk_interval_sample() {
    let s = TestServer::start();
    let (_, exp) = s.post_json(
        "/api/2.0/mlflow/experiments/create",
        &json!({"name": "charts"}),
    );
    let exp = exp["experiment_id"].as_str().unwrap().to_string();
    let new_run = |n: i64| {
        let (_, r) = s.post_json(
            "/api/2.0/mlflow/runs/create",
            &json!({"experiment_id": exp, "start_time": 1}),
        );
        let id = r["run"]["info"]["run_id"].as_str().unwrap().to_string();
        let metrics: Vec<_> = (0..n)
            .map(|i| {
                let value = if i == 1 {
                    json!("NaN")
                } else {
                    json!(i as f64 / 2.0)
                };
                json!({"key": "m", "value": value, "timestamp": 1000 + i, "step": i})
            })
            .collect();
        let (status, body) = s.post_json(
            "/api/2.0/mlflow/runs/log-batch",
            &json!({"run_id": id, "metrics": metrics}),
        );
        assert_eq!(status, 200, "{body}");
        id
    };
    let a = new_run(10);
    let b = new_run(3);
    let (status, body) = s.get_json(&format!(
        "/api/2.0/quiver/metrics/sampled?run_ids={a}&run_ids={b}&metric_key=m&max_results=5"
    ));
    assert_eq!(status, 200, "{body}");
    let series = body["series"].as_array().unwrap();
    assert_eq!(body["key"], "m");
    let of = |id: &str| series.iter().find(|x| x["run_id"] == id).unwrap().clone();
    // The same points as get-history-bulk-interval picks; NaN is null (a gap in the chart).
    assert_eq!(of(&a)["steps"], json!([0, 2, 4, 6, 9]));
    assert_eq!(of(&a)["values"], json!([0.0, 1.0, 2.0, 3.0, 4.5]));
    assert_eq!(of(&b)["steps"], json!([0, 1, 2]));
    assert_eq!(of(&b)["values"], json!([0.0, null, 1.0]));

    // A step range, from the ajax prefix the page uses.
    let (_, body) = s.get_json(&format!(
        "/ajax-api/2.0/quiver/metrics/sampled?run_ids={a}&metric_key=m&start_step=3&end_step=5"
    ));
    assert_eq!(body["series"][0]["steps"], json!([3, 4, 5]));
    // A metric no run has: no series.
    let (_, body) = s.get_json(&format!(
        "/api/2.0/quiver/metrics/sampled?run_ids={a}&metric_key=none"
    ));
    assert_eq!(body, json!({"key": "none", "series": []}));
    // Bad requests are MLflow errors.
    let (status, body) = s.get_json(&format!(
        "/api/2.0/quiver/metrics/sampled?run_ids={a}&metric_key=m&max_results=0"
    ));
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error_code"], "INVALID_PARAMETER_VALUE");
    let (status, _) = s.get_json("/api/2.0/quiver/metrics/sampled?metric_key=m");
    assert_eq!(status, 400);
}
