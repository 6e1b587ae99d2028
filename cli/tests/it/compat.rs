//! The MLflow client compatibility suite: drives the real `mlflow` Python client
//! (`compat/requirements.txt`) against the real `quiver server` binary by running
//! `compat/test_*.py` with pytest; `compat/test_web_ui.py` drives MLflow's web UI, served by
//! Quiver, in headless Chromium (`/usr/bin/chromium`, Debian's `chromium` package).
//!
//! The Python environment is a venv at `$QUIVER_COMPAT_VENV`, or else at
//! `<target dir>/compat-venv-<12 hex of a hash of requirements.txt and requirements-ui.txt>`;
//! it is created and filled from PyPI once (a marker file records a finished install), so
//! reruns start at once. Needs `python3` (with the `venv` module) on PATH.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::TestServer;

/// Written into the venv once `pip install` has finished.
const MARKER: &str = ".quiver-compat-installed";

/// How long pytest may run before it is killed (override: `QUIVER_COMPAT_TIMEOUT_SECS`).
const DEFAULT_SUITE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// How long the venv install may take.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(30 * 60);

#[test]
fn mlflow_client_compat_suite() {
    let root = workspace_root();
    let venv = ensure_venv(&root);
    let python = venv.join("bin").join("python");

    let server = TestServer::start();
    println!("compat: quiver server at {}", server.url);

    let mut cmd = Command::new(&python);
    cmd.args(["-m", "pytest", "compat", "-q", "-p", "no:cacheprovider"])
        .current_dir(&root)
        .env("MLFLOW_TRACKING_URI", &server.url)
        // test_parquet_interop.py runs servers and `quiver sql` of its own.
        .env("QUIVER_BIN", env!("CARGO_BIN_EXE_quiver"))
        .env("MLFLOW_DISABLE_TELEMETRY", "true")
        .env("DO_NOT_TRACK", "true")
        .env("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        .env("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
        .env("PYTHONUNBUFFERED", "1")
        // Keep compat/ free of __pycache__ (pytest's assertion rewriting honours this too).
        .env("PYTHONDONTWRITEBYTECODE", "1");
    // Settings of the developer's own MLflow that would steer the client elsewhere.
    for var in [
        "MLFLOW_EXPERIMENT_ID",
        "MLFLOW_EXPERIMENT_NAME",
        "MLFLOW_RUN_ID",
        "MLFLOW_REGISTRY_URI",
        "MLFLOW_TRACKING_TOKEN",
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
        "MLFLOW_ENABLE_ASYNC_LOGGING",
        "PYTEST_ADDOPTS",
    ] {
        cmd.env_remove(var);
    }

    let timeout = std::env::var("QUIVER_COMPAT_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_SUITE_TIMEOUT);
    let started = Instant::now();
    let status = run_streaming(cmd, "pytest", timeout);
    println!(
        "compat: pytest finished in {:.1} s with {status}",
        started.elapsed().as_secs_f64()
    );
    drop(server);
    assert!(
        status.success(),
        "the MLflow client compatibility suite failed ({status}); pytest's report is above"
    );
}

/// The workspace root: the parent of this crate's directory.
fn workspace_root() -> PathBuf {
    // Read when the test runs, not when it was compiled: a test binary built from another
    // clone sharing the target directory must still find this clone's files.
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    dir.parent()
        .expect("the cli crate lives in the workspace")
        .to_path_buf()
}

/// The venv's location: `$QUIVER_COMPAT_VENV`, else `<target>/compat-venv-<hash>`, where
/// `<target>` is `$CARGO_TARGET_DIR` or the workspace's `target/`.
fn venv_dir(root: &Path, requirements: &[u8]) -> PathBuf {
    if let Some(dir) = std::env::var_os("QUIVER_COMPAT_VENV").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    let target = match std::env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => root.join(dir), // an absolute path replaces `root`
        None => root.join("target"),
    };
    let hash = format!("{:016x}", fnv1a64(requirements));
    target.join(format!("compat-venv-{}", &hash[..12]))
}

/// 64-bit FNV-1a: a stable hash without a dependency (std's `DefaultHasher` may change
/// between Rust releases, which would move the venv).
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// `pip install [extra] -r requirements` into `venv`; panics with pip's status on failure.
fn pip_install(venv: &Path, extra: &[&str], requirements: &Path) {
    let mut install = Command::new(venv.join("bin").join("python"));
    install
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(extra)
        .arg("-r")
        .arg(requirements)
        .env("PIP_NO_INPUT", "1");
    let status = run_streaming(install, "pip install", INSTALL_TIMEOUT);
    assert!(
        status.success(),
        "`pip install {} -r {}` into {} failed ({status}); it needs PyPI to be reachable",
        extra.join(" "),
        requirements.display(),
        venv.display()
    );
}

/// Creates the venv and installs `compat/requirements.txt` into it, unless an earlier run
/// finished doing so. Returns the venv's directory.
fn ensure_venv(root: &Path) -> PathBuf {
    let req_path = root.join("compat").join("requirements.txt");
    let ui_req_path = root.join("compat").join("requirements-ui.txt");
    let read =
        |p: &Path| std::fs::read(p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
    let mut requirements = read(&req_path);
    requirements.extend(read(&ui_req_path));
    let venv = venv_dir(root, &requirements);
    let marker = venv.join(MARKER);
    if marker.exists() {
        println!("compat: using venv {}", venv.display());
        return venv;
    }

    check_python3();
    println!(
        "compat: creating venv {} and installing {} from PyPI (once; this can take minutes)",
        venv.display(),
        req_path.display()
    );
    let started = Instant::now();
    if let Some(parent) = venv.parent() {
        std::fs::create_dir_all(parent)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", parent.display()));
    }
    // --clear: a venv without the marker is a half-finished install; start it over.
    let mut create = Command::new("python3");
    create.args(["-m", "venv", "--clear"]).arg(&venv);
    let status = run_streaming(create, "python3 -m venv", INSTALL_TIMEOUT);
    assert!(
        status.success(),
        "`python3 -m venv {}` failed ({status}); on Debian/Ubuntu install the python3-venv package",
        venv.display()
    );
    pip_install(&venv, &[], &req_path);
    // Without dependencies: see the file's header.
    pip_install(&venv, &["--no-deps"], &ui_req_path);
    std::fs::write(&marker, &requirements)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", marker.display()));
    println!(
        "compat: venv ready in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    venv
}

/// Fails with a clear message when there is no usable `python3`: the suite must not be
/// skipped silently.
fn check_python3() {
    match Command::new("python3")
        .args(["-c", "import sys, venv; print(sys.version.split()[0])"])
        .output()
    {
        Ok(out) if out.status.success() => {
            println!(
                "compat: python3 {}",
                String::from_utf8_lossy(&out.stdout).trim()
            );
        }
        Ok(out) => panic!(
            "`python3` on PATH cannot run the MLflow client compatibility suite (it needs \
             Python 3.10+ with the venv module): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!(
            "python3 not found on PATH ({e}): the MLflow client compatibility suite \
             (compat/, test mlflow_client_compat_suite) needs Python 3.10+ with venv and pip; \
             or point QUIVER_COMPAT_VENV at a venv that has compat/requirements.txt installed \
             and contains a `{MARKER}` file"
        ),
    }
}

/// Runs `cmd`, copying its stdout and stderr line by line to this test's stdout/stderr
/// (so libtest shows them with --nocapture or on failure), and kills it after `timeout`.
fn run_streaming(mut cmd: Command, what: &str, timeout: Duration) -> ExitStatus {
    let mut child: Child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what} ({:?}): {e}", cmd.get_program()));
    let out = forward(child.stdout.take().expect("piped stdout"), false);
    let err = forward(child.stderr.take().expect("piped stderr"), true);
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let _ = out.join();
            let _ = err.join();
            panic!(
                "{what} did not finish within {} s; killed it",
                timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = out.join();
    let _ = err.join();
    status
}

fn forward<R: Read + Send + 'static>(stream: R, to_stderr: bool) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line);
                    let text = text.trim_end_matches(['\n', '\r']);
                    if to_stderr {
                        eprintln!("{text}");
                    } else {
                        println!("{text}");
                    }
                }
            }
        }
    })
}

#[test]
fn venv_hash_is_stable() {
    // FNV-1a test vectors: the venv location must not move between builds.
    assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
}
