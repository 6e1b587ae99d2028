//! Integration tests that start the real `quiver` binary and speak HTTP to it.
//! One binary for all of them (link time dominates rebuilds).

mod admin;
mod artifacts;
mod compat;
mod full_disk;
mod gc;
mod graphql;
mod hardening;
mod import;
mod models;
mod parity;
mod run;
mod server;
mod sql;
mod sql_limits;
mod steps;
mod studio;
mod tracking;
mod verbs;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `quiver server` child process on a free loopback port, with its own store directory;
/// killed when dropped.
#[derive(Debug)]
pub struct TestServer {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// The store directory.
    pub store: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl TestServer {
    /// Starts a server on a fresh store.
    pub fn start() -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let mut s = TestServer::start_on(&store);
        s._dir = Some(dir);
        s
    }

    /// Starts a server on a fresh store with extra `quiver server` arguments.
    pub fn start_with(extra: &[&str]) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let mut s = TestServer::spawn(&store, extra, |_| {});
        s._dir = Some(dir);
        s
    }

    /// Starts a server on the store at `store` (kept after the server stops).
    pub fn start_on(store: &Path) -> TestServer {
        TestServer::spawn(store, &[], |_| {})
    }

    /// Starts a server on `store` with extra arguments, after `setup` adjusts the command.
    pub fn spawn(store: &Path, extra: &[&str], setup: impl FnOnce(&mut Command)) -> TestServer {
        let port = free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_quiver"));
        command
            .args([
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--store",
            ])
            .arg(store)
            .args(extra)
            .env("QUIVER_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        setup(&mut command);
        let child = command.spawn().expect("start quiver server");
        let url = format!("http://127.0.0.1:{port}");
        let server = TestServer {
            child,
            url,
            store: store.to_path_buf(),
            _dir: None,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if ureq::get(&format!("{}/health", self.url)).call().is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("quiver server did not answer /health within 60 s");
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        self.url.trim_start_matches("http://").to_string()
    }

    /// The URL of an API path (`/api/2.0/mlflow/...`).
    pub fn api(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// `POST path` with a JSON body: the status and the JSON answer (`Null` when the answer is
    /// not JSON).
    pub fn post_json(&self, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        let mut r = agent()
            .post(&self.api(path))
            .content_type("application/json")
            .send(body.to_string())
            .unwrap();
        let status = r.status().as_u16();
        (
            status,
            r.body_mut().read_json().unwrap_or(serde_json::Value::Null),
        )
    }

    /// `GET path`: the status and the JSON answer (a JSON string of the text when it is not
    /// JSON).
    pub fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let mut r = agent().get(&self.api(path)).call().unwrap();
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        )
    }

    /// Sends SIGTERM and waits for a clean exit; returns whether it exited successfully.
    pub fn stop(mut self) -> bool {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let status = self.child.wait().unwrap();
        status.success()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An HTTP agent that returns 4xx/5xx responses as values instead of errors.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}
