//! Issue 10's server defects, over raw loopback sockets against the real binary: DNS rebinding
//! and cross-origin writes (3), connection exhaustion (6), JSON bodies for oversized heads (9),
//! validated user names (10). TCP_NODELAY (8) is tested in `quiver-server` (`serve::tests`),
//! where the accepted socket can be inspected.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::TestServer;

/// A response read from a raw socket.
#[derive(Debug)]
struct Raw {
    status: u16,
    head: String,
    body: String,
}

impl Raw {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
}

/// Sends `request` as it is on a new connection and reads until the server closes it.
fn raw(addr: &str, request: &[u8]) -> Raw {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no response: {text:?}"));
    Raw {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

/// A request with `Connection: close`, the given extra header lines and a JSON body.
fn request(method: &str, path: &str, host: &str, headers: &[&str], body: &str) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for h in headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    if !body.is_empty() || method != "GET" {
        r.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    r.push_str("\r\n");
    r.push_str(body);
    r.into_bytes()
}

const SQL: &str = r#"{"query": "select count(*) from runs"}"#;

#[test]
fn a_host_that_is_not_allowed_is_refused_as_mlflow_does() {
    let s = TestServer::start();
    let addr = s.addr();
    let port = addr.rsplit(':').next().unwrap().to_string();
    // The DNS-rebinding request of the issue: a page at attacker.example reads the store.
    let r = raw(
        &addr,
        &request(
            "POST",
            "/api/2.0/quiver/sql",
            "attacker.example",
            &["Origin: http://attacker.example"],
            SQL,
        ),
    );
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.json()["error_code"], "PERMISSION_DENIED");
    assert_eq!(
        r.json()["message"],
        "Invalid Host header - possible DNS rebinding attack detected"
    );
    // Reads are refused too (the page could read what it likes otherwise).
    let r = raw(
        &addr,
        &request(
            "GET",
            "/api/2.0/mlflow/experiments/get?experiment_id=0",
            &format!("attacker.example:{port}"),
            &[],
            "",
        ),
    );
    assert_eq!(r.status, 403, "{r:?}");
    // Health and version answer whatever the Host, as in MLflow.
    let r = raw(
        &addr,
        &request("GET", "/health", "attacker.example", &[], ""),
    );
    assert_eq!(r.status, 200, "{r:?}");
    // Loopback names, with or without the port, are answered.
    for host in [
        format!("localhost:{port}"),
        "localhost".to_string(),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ] {
        let r = raw(
            &addr,
            &request("POST", "/api/2.0/quiver/sql", &host, &[], SQL),
        );
        assert_eq!(r.status, 200, "{host}: {r:?}");
    }
    // A request without Host at all (HTTP/1.0) is refused.
    let r = raw(
        &addr,
        b"GET /api/2.0/mlflow/experiments/get?experiment_id=0 HTTP/1.0\r\n\r\n",
    );
    assert_eq!(r.status, 403, "{r:?}");
}

#[test]
fn allowed_hosts_replace_the_defaults_and_star_allows_any() {
    let s = TestServer::start_with(&["--allowed-hosts", "mlflow.internal, *.corp.example"]);
    let addr = s.addr();
    let get = |host: &str| {
        raw(
            &addr,
            &request(
                "GET",
                "/api/2.0/mlflow/experiments/get?experiment_id=0",
                host,
                &[],
                "",
            ),
        )
        .status
    };
    assert_eq!(get("mlflow.internal:5000"), 200);
    assert_eq!(get("a.corp.example"), 200);
    assert_eq!(get("127.0.0.1"), 403);
    drop(s);
    let s = TestServer::start_with(&["--allowed-hosts", "*"]);
    let r = raw(
        &s.addr(),
        &request("POST", "/api/2.0/quiver/sql", "attacker.example", &[], SQL),
    );
    assert_eq!(r.status, 200, "{r:?}");
}

#[test]
fn cross_origin_writes_are_refused_unless_the_origin_is_allowed() {
    let s = TestServer::start_with(&["--cors-allowed-origins", "https://app.example"]);
    let addr = s.addr();
    let create = |origin: Option<&str>, name: &str| {
        let origin_header = origin.map(|o| format!("Origin: {o}"));
        let headers: Vec<&str> = origin_header.iter().map(String::as_str).collect();
        raw(
            &addr,
            &request(
                "POST",
                "/api/2.0/mlflow/experiments/create",
                &addr,
                &headers,
                &format!(r#"{{"name": "{name}"}}"#),
            ),
        )
    };
    let r = create(Some("http://attacker.example"), "evil");
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.json()["error_code"], "PERMISSION_DENIED");
    assert_eq!(r.json()["message"], "Cross-origin request blocked");
    assert_eq!(create(Some("null"), "evil2").status, 403);
    // Localhost origins (any port), allowed origins and requests without Origin go through.
    assert_eq!(create(Some("http://localhost:3000"), "a").status, 200);
    assert_eq!(create(Some("http://127.0.0.1:5173"), "b").status, 200);
    assert_eq!(create(Some("https://app.example"), "c").status, 200);
    assert_eq!(create(None, "d").status, 200);
    // Reads are not state-changing: answered (the browser withholds them without CORS headers).
    let r = raw(
        &addr,
        &request(
            "GET",
            "/api/2.0/mlflow/experiments/get-by-name?experiment_name=evil",
            &addr,
            &["Origin: http://attacker.example"],
            "",
        ),
    );
    assert_eq!(r.status, 404, "{r:?}"); // the blocked create never happened
    assert_eq!(r.header("access-control-allow-origin"), None);

    // Preflight: an allowed origin gets 204 with the CORS headers, another gets none.
    let preflight = |origin: &str| {
        raw(
            &addr,
            &request(
                "OPTIONS",
                "/api/2.0/mlflow/experiments/create",
                &addr,
                &[
                    &format!("Origin: {origin}"),
                    "Access-Control-Request-Method: POST",
                    "Access-Control-Request-Headers: content-type",
                ],
                "",
            ),
        )
    };
    let r = preflight("https://app.example");
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(
        r.header("access-control-allow-origin").as_deref(),
        Some("https://app.example")
    );
    assert_eq!(
        r.header("access-control-allow-credentials").as_deref(),
        Some("true")
    );
    let methods = r.header("access-control-allow-methods").unwrap();
    assert!(
        methods.contains("POST") && methods.contains("DELETE"),
        "{methods}"
    );
    assert!(r
        .header("access-control-allow-headers")
        .unwrap()
        .contains("content-type"));
    let r = preflight("http://localhost:3000");
    assert_eq!(
        r.header("access-control-allow-origin").as_deref(),
        Some("http://localhost:3000")
    );
    let r = preflight("http://attacker.example");
    assert_eq!(r.header("access-control-allow-origin"), None, "{r:?}");
}

#[test]
fn connections_beyond_the_cap_get_a_fast_503_and_slow_clients_are_cut_off() {
    let s = TestServer::start_with(&["--max-connections", "4", "--header-read-timeout", "6"]);
    let addr = s.addr();
    // Slow clients, each with half a request line, take every slot. The connection that waited
    // for the server to be ready may still hold a slot when they connect (one of them then
    // waits in the overflow); once it is released, a free slot serves a request: add another
    // slow client until none is left.
    let slow_client = || {
        let mut c = TcpStream::connect(&addr).unwrap();
        c.write_all(b"GET /hea").unwrap();
        c
    };
    let mut slow: Vec<TcpStream> = (0..4).map(|_| slow_client()).collect();
    let r = loop {
        std::thread::sleep(Duration::from_millis(200));
        let r = raw(&addr, &request("GET", "/health", &addr, &[], ""));
        if r.status == 503 || slow.len() >= 8 {
            break r;
        }
        slow.push(slow_client());
    };
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.json()["error_code"], "TEMPORARILY_UNAVAILABLE");
    assert_eq!(r.header("retry-after").as_deref(), Some("1"));
    // The slow clients are disconnected after the header-read timeout (6 s).
    for mut c in slow {
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut rest = Vec::new();
        match c.read_to_end(&mut rest) {
            Ok(_) => {} // EOF: closed by the server
            Err(e) => assert!(
                !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "still open after 20 s: {e}"
            ),
        }
    }
    // Then everyone is served again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = raw(&addr, &request("GET", "/health", &addr, &[], ""));
        if r.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "never served again: {r:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(s.stop(), "clean exit on SIGTERM");
}

#[test]
fn idle_kept_alive_connections_are_closed() {
    let s = TestServer::start_with(&["--idle-timeout", "1"]);
    let addr = s.addr();
    let mut c = TcpStream::connect(&addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(format!("GET /health HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"OK") {
        let n = c.read(&mut buf).unwrap();
        assert!(n > 0, "closed before answering");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 200"));
    // Kept alive, then idle: the server closes it (well before the 30 s header timeout).
    match c.read(&mut buf) {
        Ok(n) => assert_eq!(n, 0, "unexpected bytes"),
        Err(e) => panic!("the idle connection was not closed within 10 s: {e}"),
    }
}

#[test]
fn the_open_file_soft_limit_is_raised_to_the_hard_limit() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::spawn(&dir.path().join("store"), &[], |command| {
        // SAFETY: only async-signal-safe calls (getrlimit, setrlimit) in the child before exec.
        unsafe {
            command.pre_exec(|| {
                let mut l = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                libc::getrlimit(libc::RLIMIT_NOFILE, &mut l);
                l.rlim_cur = l.rlim_max.min(512);
                libc::setrlimit(libc::RLIMIT_NOFILE, &l);
                Ok(())
            });
        }
    });
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", s.pid())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let numbers: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers[0], numbers[1], "soft = hard: {line}");
}

#[test]
fn oversized_and_malformed_heads_answer_in_mlflow_json() {
    let s = TestServer::start();
    let addr = s.addr();
    let check = |request: Vec<u8>, status: u16, code: &str| {
        let r = raw(&addr, &request);
        assert_eq!(r.status, status, "{}", r.head);
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/json")
        );
        assert_eq!(r.json()["error_code"], code, "{r:?}");
    };
    let get = |path: &str, extra: &[&str]| request("GET", path, &addr, extra, "");
    // Over Quiver's limits (16 KiB target, 100 fields, 64 KiB of fields): middleware.
    check(
        get(&format!("/health?{}", "a".repeat(20_000)), &[]),
        414,
        "INVALID_PARAMETER_VALUE",
    );
    let many: Vec<String> = (0..150).map(|i| format!("x-h{i}: v")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    check(get("/health", &many), 431, "INVALID_PARAMETER_VALUE");
    let big = format!("x-big: {}", "b".repeat(100_000));
    check(get("/health", &[&big]), 431, "INVALID_PARAMETER_VALUE");
    // Over hyper's own limits (65,534-byte target, 200 fields, ~400 KiB head): its canned
    // responses, rewritten.
    check(
        get(&format!("/health?{}", "a".repeat(70_000)), &[]),
        414,
        "INVALID_PARAMETER_VALUE",
    );
    let lots: Vec<String> = (0..300).map(|i| format!("x-h{i}: v")).collect();
    let lots: Vec<&str> = lots.iter().map(String::as_str).collect();
    check(get("/health", &lots), 431, "INVALID_PARAMETER_VALUE");
    let huge = format!("x-huge: {}", "h".repeat(600_000));
    check(get("/health", &[&huge]), 431, "INVALID_PARAMETER_VALUE");
    // Malformed: hyper's 400, rewritten.
    check(b"G\x01T / HTTP/1.1\r\n\r\n".to_vec(), 400, "BAD_REQUEST");
    // The server is fine afterwards.
    assert_eq!(raw(&addr, &get("/health", &[])).status, 200);
}

#[test]
fn user_names_are_validated_before_they_enter_the_registry_history() {
    use base64::Engine;
    let s = TestServer::start();
    let addr = s.addr();
    let create = |user: &str, model: &str| {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:pw"));
        raw(
            &addr,
            &request(
                "POST",
                "/api/2.0/mlflow/registered-models/create",
                &addr,
                &[&format!("Authorization: Basic {auth}")],
                &format!(r#"{{"name": "{model}"}}"#),
            ),
        )
    };
    for (bad, model) in [
        ("ad\nmin", "m1"),
        ("nul\0", "m2"),
        (&"x".repeat(5_000) as &str, "m3"),
        ("esc\u{1b}[2J", "m4"),
    ] {
        let r = create(bad, model);
        assert_eq!(r.status, 400, "{r:?}");
        assert_eq!(r.json()["error_code"], "INVALID_PARAMETER_VALUE");
    }
    let r = create("d\u{e9}j\u{e0} vu", "ok");
    assert_eq!(r.status, 200, "{r:?}");
    let r = raw(
        &addr,
        &request(
            "GET",
            "/api/2.0/quiver/registry-events?name=ok",
            &addr,
            &[],
            "",
        ),
    );
    assert!(r.body.contains("d\u{e9}j\u{e0} vu"), "{r:?}");
    for model in ["m1", "m2", "m3", "m4"] {
        let r = raw(
            &addr,
            &request(
                "GET",
                &format!("/api/2.0/mlflow/registered-models/get?name={model}"),
                &addr,
                &[],
                "",
            ),
        );
        assert_eq!(r.status, 404, "{model} was created: {r:?}");
    }
}
