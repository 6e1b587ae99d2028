//! SQL requests that once took the server down or past its memory: deep queries (stack
//! overflow), amplifying functions and large results (issue 10, defects 1 and 2).

use std::io::Read;
use std::process::Command;

use serde_json::{json, Value};

use crate::{agent, TestServer};

fn sql(s: &TestServer, query: &str) -> (u16, Value) {
    let mut r = agent()
        .post(&s.api("/api/2.0/quiver/sql"))
        .content_type("application/json")
        .send(json!({ "query": query }).to_string())
        .unwrap();
    let status = r.status().as_u16();
    let body = r
        .body_mut()
        .with_config()
        .limit(u64::MAX)
        .read_json()
        .unwrap_or(Value::Null);
    (status, body)
}

fn chain(n: usize, term: &str, op: &str) -> String {
    vec![term; n].join(op)
}

/// The deep queries of the report: each one overflowed the stack of a query thread and aborted
/// the process.
fn deep_queries() -> Vec<String> {
    vec![
        format!("SELECT {}", chain(3000, "1", "+")),
        format!("SELECT 1 WHERE {}", chain(2000, "1 = 1", " OR ")),
        format!("SELECT 1 WHERE {}", chain(2000, "1 = 1", " AND ")),
        chain(3000, "SELECT 1", " UNION ALL "),
        format!("SELECT {}", chain(20_000, "'a'", " || ")),
        format!("SELECT 1 FROM {}", chain(3000, "runs", ", ")),
        format!("SELECT {}", chain(200_000, "1", "+")),
    ]
}

#[test]
fn deep_queries_are_refused_and_the_server_lives_on() {
    let mut s = TestServer::start();
    for query in deep_queries() {
        let (status, body) = sql(&s, &query);
        assert_eq!(status, 400, "{}...: {body}", &query[..60]);
        assert_eq!(body["error_code"], "INVALID_PARAMETER_VALUE");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("too deeply nested"),
            "{body}"
        );
        assert!(s.is_running(), "the server died on {}...", &query[..60]);
    }
    // Just within the bound, every kind of chain is answered.
    let within = [
        (
            format!("SELECT {} AS n", chain(1000, "1", "+")),
            json!(1000),
        ),
        (
            format!(
                "SELECT count(*) AS n FROM (SELECT 1 AS x WHERE {})",
                chain(450, "1 = 1", " OR ")
            ),
            json!(1),
        ),
        (
            format!(
                "SELECT count(*) AS n FROM ({})",
                chain(990, "SELECT 1", " UNION ALL ")
            ),
            json!(990),
        ),
    ];
    for (query, n) in within {
        let (status, body) = sql(&s, &query);
        assert_eq!(status, 200, "{}...: {body}", &query[..60]);
        assert_eq!(body["rows"][0]["n"], n);
    }
    assert!(s.is_running());
}

#[test]
fn the_sql_command_refuses_deep_queries_on_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    assert!(TestServer::start_on(&store).stop());
    for query in deep_queries().into_iter().take(4) {
        let out = Command::new(env!("CARGO_BIN_EXE_quiver"))
            .args(["sql", &query, "--store"])
            .arg(&store)
            .env("QUIVER_LOG", "warn")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("too deeply nested"), "{stderr}");
    }
}

/// `VmHWM` (peak resident set) and `VmRSS` of a process, in bytes.
fn memory_of(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap()
            * 1024
    };
    (field("VmHWM:"), field("VmRSS:"))
}

const POOL_MIB: u64 = 16;
const RUNS: usize = 10;

/// A server with a `pool_mib` SQL memory pool and `RUNS` × `points_per_run` metric points.
fn loaded_server(pool_mib: u64, points_per_run: usize) -> TestServer {
    let pool = format!("{pool_mib}MiB");
    let s = TestServer::start_with(&["--sql-memory-limit", &pool]);
    let a = agent();
    for r in 0..RUNS {
        let mut resp = a
            .post(&s.api("/api/2.0/mlflow/runs/create"))
            .content_type("application/json")
            .send(json!({"experiment_id": "0"}).to_string())
            .unwrap();
        let run: Value = resp.body_mut().read_json().unwrap();
        let run_id = run["run"]["info"]["run_id"].as_str().unwrap().to_string();
        for chunk in 0..points_per_run / 1000 {
            let metrics: Vec<Value> = (0..1000)
                .map(|i| {
                    let step = chunk * 1000 + i;
                    json!({"key": format!("loss_{}", r % 3), "value": step as f64 * 0.5,
                           "timestamp": 1_700_000_000_000i64 + step as i64, "step": step})
                })
                .collect();
            let resp = a
                .post(&s.api("/api/2.0/mlflow/runs/log-batch"))
                .content_type("application/json")
                .send(json!({"run_id": run_id, "metrics": metrics}).to_string())
                .unwrap();
            assert_eq!(resp.status(), 200);
        }
    }
    s
}

/// Reads a streamed answer to the end; the error if it was cut off.
fn read_all(query: &str, s: &TestServer, arrow: bool) -> (u16, Result<Vec<u8>, String>) {
    let mut req = agent()
        .post(&s.api("/api/2.0/quiver/sql"))
        .content_type("application/json");
    if arrow {
        req = req.header("Accept", "application/vnd.apache.arrow.stream");
    }
    let resp = req.send(json!({ "query": query }).to_string()).unwrap();
    let status = resp.status().as_u16();
    let mut bytes = Vec::new();
    let read = resp
        .into_body()
        .into_reader()
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string());
    (status, read.map(|_| bytes))
}

#[test]
fn one_query_stays_within_its_memory_pool_and_large_results_stream() {
    // `SELECT * FROM metrics` is several times the pool.
    let s = loaded_server(POOL_MIB, 60_000);
    let points = RUNS * 60_000;
    let (hwm_loaded, rss_loaded) = memory_of(s.pid());

    // Amplifying functions are refused before they allocate.
    for query in [
        "SELECT length(repeat('a', 2000000000))",
        "SELECT length(lpad('a', 2000000000))",
        "SELECT length(rpad('a', 2000000000, 'xy'))",
        "SELECT cardinality(range(0, 2000000000))",
        "SELECT length(array_repeat('abc', 2000000000))",
        "SELECT length(replace(repeat('a', 1000000), 'a', repeat('b', 1000)))",
        "SELECT length(repeat(run_id, 100000)) FROM metrics",
    ] {
        let (status, body) = sql(&s, query);
        assert_eq!(status, 400, "{query}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains("memory limit"),
            "{body}"
        );
    }

    // The whole table, several times the pool, streams as JSON rows ...
    let (status, body) = read_all("SELECT * FROM metrics", &s, false);
    assert_eq!(
        status,
        200,
        "{}",
        String::from_utf8_lossy(&body.clone().unwrap_or_default())
    );
    let body = body.expect("a complete answer");
    let total = body.len();
    let v: Value = serde_json::from_slice(&body).expect("valid JSON");
    drop(body);
    assert_eq!(v["rows"].as_array().unwrap().len(), points);
    assert_eq!(v["columns"][0], json!({"name": "run_id", "type": "Utf8"}));
    assert!(
        total as u64 > 4 * (POOL_MIB << 20),
        "the result ({total} bytes) should be larger than the pool"
    );
    drop(v);
    // ... and as Arrow IPC.
    let (status, body) = read_all("SELECT * FROM metrics", &s, true);
    assert_eq!(status, 200);
    let batches = quiver_store::sql_output::from_arrow_ipc(&body.unwrap()).unwrap();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), points);
    drop(batches);

    let (hwm, rss) = memory_of(s.pid());
    eprintln!(
        "server memory: loaded hwm {} MiB rss {} MiB; after the queries hwm {} MiB rss {} MiB",
        hwm_loaded >> 20,
        rss_loaded >> 20,
        hwm >> 20,
        rss >> 20
    );
    assert!(
        hwm < (POOL_MIB + 256) << 20,
        "peak RSS {} MiB over the pool ({POOL_MIB} MiB) + 256 MiB",
        hwm >> 20
    );
    // Memory is given back after the queries.
    assert!(
        rss < rss_loaded + (64 << 20),
        "RSS {} MiB after the queries, {} MiB before",
        rss >> 20,
        rss_loaded >> 20
    );
}

#[test]
fn a_query_failing_midway_never_looks_complete() {
    let s = loaded_server(512, 3000);
    let points = RUNS * 3000;
    // The cast fails on the last rows only, after many batches were sent.
    let query = format!(
        "SELECT CAST(CASE WHEN r < {} THEN '1' ELSE 'x' END AS INT) AS v \
         FROM (SELECT row_number() OVER (ORDER BY run_id, step) AS r FROM metrics)",
        points - 10
    );
    for arrow in [false, true] {
        let (status, body) = read_all(&query, &s, arrow);
        assert_eq!(status, 200);
        match body {
            Err(_) => {}
            Ok(bytes) => {
                // Whatever arrived must not parse as a whole answer.
                if arrow {
                    assert!(
                        quiver_store::sql_output::from_arrow_ipc(&bytes).is_err()
                            || !bytes.ends_with(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0])
                    );
                } else {
                    assert!(serde_json::from_slice::<Value>(&bytes).is_err());
                }
            }
        }
    }
    // The CLI through the server reports the failure.
    let out = Command::new(env!("CARGO_BIN_EXE_quiver"))
        .args(["sql", &query, "--url", &s.url, "--format", "csv"])
        .env("QUIVER_LOG", "warn")
        .output()
        .unwrap();
    assert!(!out.status.success());
}
