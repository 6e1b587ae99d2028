//! The artifact routes over HTTP: the `mlflow-artifacts` proxy (upload, download, list,
//! delete), the run-scoped reads (`mlflow/artifacts/list`, `/get-artifact`) and the empty
//! logged-model search the client makes around them.

use std::io::Read;

use serde_json::{json, Value};

use crate::{agent, TestServer};

const PROXY: &str = "/api/2.0/mlflow-artifacts/artifacts";

fn url(s: &TestServer, path: &str) -> String {
    s.api(&format!("{PROXY}/{path}"))
}

/// PUTs `bytes` at proxy path `path`; returns the status and the JSON body.
fn put(s: &TestServer, path: &str, bytes: &[u8]) -> (u16, Value) {
    let mut r = agent()
        .put(&url(s, path))
        .content_type("application/octet-stream")
        .send(bytes)
        .unwrap();
    let status = r.status().as_u16();
    (status, r.body_mut().read_json().unwrap())
}

/// PUTs and insists on `200 {}`.
fn put_ok(s: &TestServer, path: &str, bytes: &[u8]) {
    assert_eq!(put(s, path, bytes), (200, json!({})), "PUT {path}");
}

/// GETs a file: status, body bytes and the response.
fn get_file(full_url: &str) -> (u16, Vec<u8>, ureq::http::HeaderMap) {
    let mut r = agent().get(full_url).call().unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let mut bytes = Vec::new();
    r.body_mut().as_reader().read_to_end(&mut bytes).unwrap();
    (status, bytes, headers)
}

fn get_json(full_url: &str) -> (u16, Value) {
    let mut r = agent().get(full_url).call().unwrap();
    let status = r.status().as_u16();
    (status, r.body_mut().read_json().unwrap())
}

fn list(s: &TestServer, dir: Option<&str>) -> Value {
    let u = match dir {
        Some(d) => s.api(&format!("{PROXY}?path={d}")),
        None => s.api(PROXY),
    };
    let (status, body) = get_json(&u);
    assert_eq!(status, 200, "{body}");
    body
}

fn header<'h>(headers: &'h ureq::http::HeaderMap, name: &str) -> &'h str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

fn assert_error(status: u16, body: &Value, want_status: u16, code: &str, message: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error_code"], code, "{body}");
    let got = body["message"].as_str().unwrap();
    assert!(got.contains(message), "{got:?} lacks {message:?}");
}

#[test]
fn round_trips_text_binary_and_empty_files_with_download_headers() {
    let s = TestServer::start();
    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    put_ok(&s, "1/r/artifacts/notes/a.txt", b"hello\n");
    put_ok(&s, "1/r/artifacts/data.bin", &binary);
    put_ok(&s, "1/r/artifacts/empty", b"");
    put_ok(&s, "1/r/artifacts/model/MLmodel", b"flavors: {}\n");
    put_ok(&s, "1/r/artifacts/model/model.pkl", b"\x80\x04K\x01.");
    put_ok(&s, "1/r/artifacts/fig.png", b"\x89PNG");

    let (status, body, h) = get_file(&url(&s, "1/r/artifacts/notes/a.txt"));
    assert_eq!((status, body.as_slice()), (200, &b"hello\n"[..]));
    assert!(header(&h, "content-type").starts_with("text/plain"));
    assert_eq!(header(&h, "content-length"), "6");
    assert_eq!(
        header(&h, "content-disposition"),
        "attachment; filename=a.txt"
    );
    assert_eq!(header(&h, "x-content-type-options"), "nosniff");

    let (status, body, h) = get_file(&url(&s, "1/r/artifacts/data.bin"));
    assert_eq!(status, 200);
    assert!(body == binary, "binary content differs");
    assert_eq!(header(&h, "content-length"), "70000");
    assert_eq!(header(&h, "content-type"), "application/octet-stream");

    let (status, body, h) = get_file(&url(&s, "1/r/artifacts/empty"));
    assert_eq!((status, body.len()), (200, 0));
    assert_eq!(header(&h, "content-length"), "0");

    let (_, _, h) = get_file(&url(&s, "1/r/artifacts/model/MLmodel"));
    assert!(header(&h, "content-type").starts_with("text/plain"));
    let (_, _, h) = get_file(&url(&s, "1/r/artifacts/model/model.pkl"));
    assert_eq!(header(&h, "content-type"), "application/octet-stream");
    let (_, _, h) = get_file(&url(&s, "1/r/artifacts/fig.png"));
    assert_eq!(header(&h, "content-type"), "image/png");

    // Re-logging a file replaces it; the /ajax-api twin (web UI) serves the same files.
    put_ok(&s, "1/r/artifacts/notes/a.txt", b"v2");
    let ajax = s.api("/ajax-api/2.0/mlflow-artifacts/artifacts/1/r/artifacts/notes/a.txt");
    let (status, body, _) = get_file(&ajax);
    assert_eq!((status, body.as_slice()), (200, &b"v2"[..]));
}

/// Deterministic pseudo-random bytes, generated on the fly (never held whole in memory). Byte
/// `i` depends only on `i`, so the stream is the same whatever sizes it is read in.
struct Noise {
    pos: u64,
    len: u64,
}

impl Noise {
    fn new(len: u64) -> Noise {
        Noise { pos: 0, len }
    }
}

/// splitmix64's finalizer.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Read for Noise {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min((self.len - self.pos) as usize);
        for byte in &mut buf[..n] {
            *byte = mix(self.pos / 8).to_le_bytes()[(self.pos % 8) as usize];
            self.pos += 1;
        }
        Ok(n)
    }
}

#[test]
fn streams_a_large_body_both_ways() {
    const LEN: u64 = 40 << 20;
    let s = TestServer::start();
    // No Content-Length: the body is sent chunked, as the client streams files.
    let mut r = agent()
        .put(&url(&s, "2/big/artifacts/weights.bin"))
        .content_type("application/octet-stream")
        .send(ureq::SendBody::from_owned_reader(Noise::new(LEN)))
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.body_mut().read_json::<Value>().unwrap(), json!({}));

    assert_eq!(
        list(&s, Some("2/big/artifacts")),
        json!({"files": [{"path": "weights.bin", "is_dir": false, "file_size": LEN}]})
    );

    let mut r = agent()
        .get(&url(&s, "2/big/artifacts/weights.bin"))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(r.headers(), "content-length"), LEN.to_string());
    let mut got = r.body_mut().as_reader();
    let mut want = Noise::new(LEN);
    let (mut a, mut b) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    let mut total = 0u64;
    loop {
        let n = got.read(&mut a).unwrap();
        if n == 0 {
            break;
        }
        want.read_exact(&mut b[..n]).unwrap();
        assert!(a[..n] == b[..n], "content differs near byte {total}");
        total += n as u64;
    }
    assert_eq!(total, LEN);
}

#[test]
fn lists_directories_by_base_name() {
    let s = TestServer::start();
    assert_eq!(list(&s, None), json!({}), "empty store");
    put_ok(&s, "1/r/artifacts/a.txt", b"hello");
    put_ok(&s, "1/r/artifacts/dir/b.txt", b"0123456789");
    put_ok(&s, "1/r/artifacts/dir/sub/c.txt", b"c");
    put_ok(&s, "1/r/artifacts/dir/zero", b"");
    put_ok(&s, "1/r/artifacts/dir-x/d.txt", b"d");

    assert_eq!(
        list(&s, Some("1/r/artifacts")),
        json!({"files": [
            {"path": "a.txt", "is_dir": false, "file_size": 5},
            {"path": "dir", "is_dir": true},
            {"path": "dir-x", "is_dir": true},
        ]})
    );
    let expected_dir = json!({"files": [
        {"path": "b.txt", "is_dir": false, "file_size": 10},
        {"path": "sub", "is_dir": true},
        {"path": "zero", "is_dir": false, "file_size": 0},
    ]});
    assert_eq!(list(&s, Some("1/r/artifacts/dir")), expected_dir);
    // Trailing slashes, as the client sends for directories.
    assert_eq!(list(&s, Some("1/r/artifacts/dir/")), expected_dir);
    // The root, with and without an empty path.
    let root = json!({"files": [{"path": "1", "is_dir": true}]});
    assert_eq!(list(&s, None), root);
    assert_eq!(list(&s, Some("")), root);
    // A file, or nothing, lists as {}: the client then treats the path as a file.
    assert_eq!(list(&s, Some("1/r/artifacts/a.txt")), json!({}));
    assert_eq!(list(&s, Some("1/r/artifacts/nope")), json!({}));
    let (status, body) = get_json(&s.api(&format!("{PROXY}?path=../1")));
    assert_error(
        status,
        &body,
        400,
        "INVALID_PARAMETER_VALUE",
        "Invalid path",
    );
}

#[test]
fn missing_files_and_directories_are_not_downloads() {
    let s = TestServer::start();
    put_ok(&s, "1/r/artifacts/dir/b.txt", b"b");
    let (status, body) = get_json(&url(&s, "1/r/artifacts/nope.txt"));
    assert_error(
        status,
        &body,
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "No such artifact: '1/r/artifacts/nope.txt'",
    );
    let (status, body) = get_json(&url(&s, "1/r/artifacts/dir"));
    assert_error(status, &body, 400, "INVALID_PARAMETER_VALUE", "directory");
    // A path through a file, or a file where a directory is, is refused.
    let (status, body) = put(&s, "1/r/artifacts/dir/b.txt/x", b"x");
    assert_error(
        status,
        &body,
        400,
        "INVALID_PARAMETER_VALUE",
        "Invalid path",
    );
    let (status, body) = put(&s, "1/r/artifacts/dir", b"x");
    assert_error(status, &body, 400, "INVALID_PARAMETER_VALUE", "directory");
}

#[test]
fn rejects_paths_that_escape_and_writes_nothing_outside_the_store() {
    let s = TestServer::start();
    let outside = s.store.parent().unwrap().to_path_buf();
    for path in [
        "../x",
        "%2e%2e/x",
        "%2E%2E%2Fx",
        "1/r/artifacts/../../../x",
        "1/r/artifacts/%2e%2e/%2e%2e/%2e%2e/%2e%2e/x",
        "/etc/x",
        "%2Fetc%2Fx",
        "1/r/artifacts/a%5Cb",
        "C:/x",
        ".",
    ] {
        let (status, body) = put(&s, path, b"escaped");
        assert_error(
            status,
            &body,
            400,
            "INVALID_PARAMETER_VALUE",
            "Invalid path",
        );
        let (status, body) = get_json(&url(&s, path));
        assert_error(
            status,
            &body,
            400,
            "INVALID_PARAMETER_VALUE",
            "Invalid path",
        );
        let mut r = agent().delete(&url(&s, path)).call().unwrap();
        let body: Value = r.body_mut().read_json().unwrap();
        assert_error(
            r.status().as_u16(),
            &body,
            400,
            "INVALID_PARAMETER_VALUE",
            "Invalid path",
        );
    }
    // A directory path is no file name (DELETE of it deletes the directory, as in MLflow).
    let (status, body) = put(&s, "1/r/artifacts/dir/", b"x");
    assert_error(
        status,
        &body,
        400,
        "INVALID_PARAMETER_VALUE",
        "Invalid path",
    );
    let (status, body) = get_json(&url(&s, "1/r/artifacts/dir/"));
    assert_error(
        status,
        &body,
        400,
        "INVALID_PARAMETER_VALUE",
        "Invalid path",
    );
    // No file name at all.
    for u in [s.api(PROXY), s.api(&format!("{PROXY}/"))] {
        let mut r = agent().put(&u).send(&b"x"[..]).unwrap();
        let body: Value = r.body_mut().read_json().unwrap();
        assert_error(
            r.status().as_u16(),
            &body,
            400,
            "INVALID_PARAMETER_VALUE",
            "Invalid path",
        );
    }
    assert_eq!(list(&s, None), json!({}), "nothing was stored");
    let beside: Vec<_> = std::fs::read_dir(&outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(beside, vec!["store"], "files appeared next to the store");
    assert!(!std::path::Path::new("/etc/x").exists());
}

#[test]
fn deletes_files_and_directories() {
    let s = TestServer::start();
    put_ok(&s, "1/r/artifacts/a.txt", b"a");
    put_ok(&s, "1/r/artifacts/dir/b.txt", b"b");
    put_ok(&s, "1/r/artifacts/dir/sub/c.txt", b"c");
    put_ok(&s, "1/r/artifacts/dirx", b"kept");

    let delete = |path: &str| {
        let mut r = agent().delete(&url(&s, path)).call().unwrap();
        (
            r.status().as_u16(),
            r.body_mut().read_json::<Value>().unwrap(),
        )
    };
    assert_eq!(delete("1/r/artifacts/a.txt"), (200, json!({})));
    let (status, _) = get_json(&url(&s, "1/r/artifacts/a.txt"));
    assert_eq!(status, 404);
    assert_eq!(delete("1/r/artifacts/dir"), (200, json!({})));
    assert_eq!(list(&s, Some("1/r/artifacts/dir")), json!({}));
    assert_eq!(
        list(&s, Some("1/r/artifacts")),
        json!({"files": [{"path": "dirx", "is_dir": false, "file_size": 4}]}),
        "a sibling sharing the prefix survives"
    );
    // Deleting what is not there succeeds, as in MLflow.
    assert_eq!(delete("1/r/artifacts/never"), (200, json!({})));
    // A deleted path can be logged again.
    put_ok(&s, "1/r/artifacts/dir/b.txt", b"again");
    let (_, body, _) = get_file(&url(&s, "1/r/artifacts/dir/b.txt"));
    assert_eq!(body, b"again");
}

/// A store holding a run in the default experiment and one in an experiment whose artifacts
/// live elsewhere (`file:`), served once it is closed. Returns the server and both run ids.
fn server_with_runs() -> (TestServer, tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let store = quiver_store::Store::open(&store_dir).unwrap();
    let served = store
        .create_run(quiver_store::CreateRun::default())
        .unwrap();
    let exp = store
        .create_experiment("elsewhere", Some("file:///nonexistent/elsewhere"), &[])
        .unwrap();
    let external = store
        .create_run(quiver_store::CreateRun {
            experiment_id: Some(exp),
            ..Default::default()
        })
        .unwrap();
    store.close().unwrap();
    let s = TestServer::start_on(&store_dir);
    (s, dir, served.info.run_id, external.info.run_id)
}

fn check_run_listing(s: &TestServer, run_id: &str, root_uri: &str, store_root: &str) {
    put_ok(s, &format!("{store_root}/a.txt"), b"hello");
    put_ok(s, &format!("{store_root}/dir/b.txt"), b"0123456789");
    put_ok(s, &format!("{store_root}/dir/sub/c.txt"), b"c");
    let list_url = |query: &str| s.api(&format!("/api/2.0/mlflow/artifacts/list?{query}"));

    let (status, body) = get_json(&list_url(&format!("run_id={run_id}")));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"root_uri": root_uri, "files": [
            {"path": "a.txt", "is_dir": false, "file_size": 5},
            {"path": "dir", "is_dir": true},
        ]})
    );
    let dir = json!({"root_uri": root_uri, "files": [
        {"path": "dir/b.txt", "is_dir": false, "file_size": 10},
        {"path": "dir/sub", "is_dir": true},
    ]});
    let (_, body) = get_json(&list_url(&format!("run_id={run_id}&path=dir&page_token=")));
    assert_eq!(body, dir);
    // The deprecated alias, on the UI's prefix.
    let ajax = s.api(&format!(
        "/ajax-api/2.0/mlflow/artifacts/list?run_uuid={run_id}&path=dir"
    ));
    assert_eq!(get_json(&ajax).1, dir);
    // A file or missing path lists no files.
    let (_, body) = get_json(&list_url(&format!("run_id={run_id}&path=a.txt")));
    assert_eq!(body, json!({"root_uri": root_uri}));
    let (status, body) = get_json(&list_url(&format!("run_id={run_id}&path=../other")));
    assert_error(
        status,
        &body,
        400,
        "INVALID_PARAMETER_VALUE",
        "Invalid path",
    );
    let (status, body) = get_json(&list_url("run_id=0123456789abcdef0123456789abcdef"));
    assert_error(status, &body, 404, "RESOURCE_DOES_NOT_EXIST", "");
    let (status, body) = get_json(&list_url("path=dir"));
    assert_error(status, &body, 400, "INVALID_PARAMETER_VALUE", "run_id");

    // The UI's file endpoint.
    let (status, bytes, h) =
        get_file(&s.api(&format!("/get-artifact?run_id={run_id}&path=dir/b.txt")));
    assert_eq!((status, bytes.as_slice()), (200, &b"0123456789"[..]));
    assert_eq!(
        header(&h, "content-disposition"),
        "attachment; filename=b.txt"
    );
    let (status, bytes, _) =
        get_file(&s.api(&format!("/get-artifact?run_uuid={run_id}&path=a.txt")));
    assert_eq!((status, bytes.as_slice()), (200, &b"hello"[..]));
    let (status, body) = get_json(&s.api(&format!("/get-artifact?run_id={run_id}&path=nope")));
    assert_error(
        status,
        &body,
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "No such artifact",
    );
    let (status, body) = get_json(&s.api(&format!("/get-artifact?run_id={run_id}&path=../../x")));
    assert_error(
        status,
        &body,
        400,
        "INVALID_PARAMETER_VALUE",
        "Invalid path",
    );
}

#[test]
fn lists_the_artifacts_of_a_run() {
    let (s, _dir, run_id, external) = server_with_runs();
    check_run_listing(
        &s,
        &run_id,
        &format!("mlflow-artifacts:/0/{run_id}/artifacts"),
        &format!("0/{run_id}/artifacts"),
    );
    // Artifacts the client writes elsewhere directly: the root, and no files.
    let (status, body) =
        get_json(&s.api(&format!("/api/2.0/mlflow/artifacts/list?run_id={external}")));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"root_uri": format!("file:///nonexistent/elsewhere/{external}/artifacts")})
    );
    let (status, body) = get_json(&s.api(&format!("/get-artifact?run_id={external}&path=a.txt")));
    assert_error(
        status,
        &body,
        400,
        "INVALID_PARAMETER_VALUE",
        "does not serve",
    );
}

#[test]
fn lists_the_artifacts_of_a_run_created_over_http() {
    let s = TestServer::start();
    let mut r = agent()
        .post(&s.api("/api/2.0/mlflow/runs/create"))
        .content_type("application/json")
        .send(r#"{"experiment_id":"0"}"#)
        .unwrap();
    let body: Value = r.body_mut().read_json().unwrap();
    if body["error_code"] == "ENDPOINT_NOT_FOUND" {
        eprintln!("runs/create is not served yet: skipping the HTTP-created run listing");
        return;
    }
    assert_eq!(r.status(), 200, "{body}");
    let info = &body["run"]["info"];
    let run_id = info["run_id"].as_str().unwrap();
    let root_uri = info["artifact_uri"].as_str().unwrap();
    assert_eq!(root_uri, format!("mlflow-artifacts:/0/{run_id}/artifacts"));
    check_run_listing(&s, run_id, root_uri, &format!("0/{run_id}/artifacts"));
}

#[test]
fn logged_model_search_finds_nothing() {
    let s = TestServer::start();
    for prefix in ["/api", "/ajax-api"] {
        let u = s.api(&format!("{prefix}/2.0/mlflow/logged-models/search"));
        for body in [
            r#"{"experiment_ids":["1"],"filter":"name = 'sub'"}"#,
            r#"{"experiment_ids":["0","1"],"filter":"name = 'a.txt'","max_results":50,"order_by":[{"field_name":"creation_time"}],"page_token":""}"#,
            "{}",
            "",
        ] {
            let mut r = agent()
                .post(&u)
                .content_type("application/json")
                .send(body)
                .unwrap();
            assert_eq!(r.status(), 200, "{body}");
            assert_eq!(r.body_mut().read_json::<Value>().unwrap(), json!({}));
        }
    }
    let u = s.api("/api/2.0/mlflow/logged-models/search");
    let mut r = agent()
        .post(&u)
        .content_type("application/json")
        .send("{not json")
        .unwrap();
    let body: Value = r.body_mut().read_json().unwrap();
    assert_error(
        r.status().as_u16(),
        &body,
        400,
        "INVALID_PARAMETER_VALUE",
        "Malformed JSON",
    );
    let mut r = agent()
        .post(&u)
        .content_type("text/plain")
        .send("{}")
        .unwrap();
    let body: Value = r.body_mut().read_json().unwrap();
    assert_error(
        r.status().as_u16(),
        &body,
        400,
        "INVALID_PARAMETER_VALUE",
        "Content-Type",
    );
    let mut r = agent()
        .post(&u)
        .content_type("application/json")
        .send(r#"{"experiment_ids":{"a":1}}"#)
        .unwrap();
    let body: Value = r.body_mut().read_json().unwrap();
    assert_error(
        r.status().as_u16(),
        &body,
        400,
        "INVALID_PARAMETER_VALUE",
        "experiment_ids",
    );
}
