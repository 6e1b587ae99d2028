//! A real full disk under the real binary: the store on a small tmpfs, filled until a log-batch
//! fails, then grown. The failure is `507 RESOURCE_EXHAUSTED` without server paths, `/health`
//! says 503 with the reason, the failed batch is seen by no read path, writes resume without a
//! restart once there is room, and a restart shows exactly what was acknowledged.
//! (`quiver-store`'s `faults` tests inject the same failures in process.)
//!
//! Mounting needs root (`CAP_SYS_ADMIN`): elsewhere the test says it is skipped and passes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{agent, TestServer};

/// Size of the tmpfs the store lives on at first, then after it is grown.
const SMALL: &str = "24m";
const GROWN: &str = "64m";
/// Free bytes left after the ballast artifact: less than the 4 MiB the write-ahead log claims
/// ahead of its data (`wal::writer::ZERO_AHEAD_BYTES`), so that its next claim, made by a
/// log-batch, fails; more than the few hundred bytes a log record of the artifact takes.
const MARGIN: u64 = 2 << 20;
/// Keys of each batch, and steps per key: 10 × 100 = 1000 metrics, MLflow's maximum.
const KEYS: usize = 10;
const STEPS: i64 = 100;
/// At most this many batches before one must have failed (~140 fill the log's claim).
const MAX_BATCHES: i64 = 2_000;

/// A tmpfs mounted on a new temporary directory; unmounted (then the directory removed) when
/// dropped.
#[derive(Debug)]
struct Tmpfs {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`mount -o size=`), or says why it cannot.
    fn mount(size: &str) -> Result<Tmpfs, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not root".into());
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let path = dir.path().to_path_buf();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs {
            dir: Some(dir),
            path,
        })
    }

    /// `mount -o remount,size=<size>`.
    fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.path)
            .status()
            .expect("run mount");
        assert!(status.success(), "remount with size={size}: {status}");
    }

    /// Bytes an unprivileged writer can still write.
    fn free(&self) -> u64 {
        let path = std::ffi::CString::new(self.path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: an all-zero statvfs is a valid value to be overwritten.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `path` is NUL-terminated and `st` a valid statvfs to write to.
        let rc = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
        assert_eq!(rc, 0, "statvfs {}", self.path.display());
        st.f_bavail as u64 * st.f_frsize as u64
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Something still holds it open: detach it now, the kernel frees it when released.
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
        drop(self.dir.take());
    }
}

fn post(s: &TestServer, path: &str, body: &Value) -> (u16, Value) {
    s.post_json(path, body)
}

fn get(s: &TestServer, path: &str) -> (u16, Value) {
    s.get_json(path)
}

/// The log-batch body of batch `b`: keys `k0`..`k9`, steps `b*100 .. b*100+99`.
fn batch(run: &str, b: i64) -> Value {
    let metrics: Vec<Value> = (b * STEPS..(b + 1) * STEPS)
        .flat_map(|step| {
            (0..KEYS).map(move |k| {
                json!({
                    "key": format!("k{k}"),
                    "value": step as f64 * 0.001 + k as f64,
                    "timestamp": 1_700_000_000_000i64 + step,
                    "step": step,
                })
            })
        })
        .collect();
    json!({"run_id": run, "metrics": metrics})
}

/// What the server shows of `run`: the steps of `k0`'s history (in order), the latest step of
/// each key (runs/get) and `SELECT count(*) FROM metrics`.
fn observe(s: &TestServer, run: &str) -> (Vec<i64>, Vec<i64>, i64) {
    let (status, h) = get(
        s,
        &format!("/api/2.0/mlflow/metrics/get-history?run_id={run}&metric_key=k0"),
    );
    assert_eq!(status, 200, "{h}");
    let steps: Vec<i64> = h["metrics"]
        .as_array()
        .map(|a| a.iter().map(|m| m["step"].as_i64().unwrap()).collect())
        .unwrap_or_default();
    let (status, r) = get(s, &format!("/api/2.0/mlflow/runs/get?run_id={run}"));
    assert_eq!(status, 200, "{r}");
    let mut latest: Vec<(String, i64)> = r["run"]["data"]["metrics"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| {
                    (
                        m["key"].as_str().unwrap().to_string(),
                        m["step"].as_i64().unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    latest.sort();
    let (status, q) = post(
        s,
        "/api/2.0/quiver/sql",
        &json!({"query": "SELECT count(*) AS n FROM metrics"}),
    );
    assert_eq!(status, 200, "{q}");
    let count = q["rows"][0]["n"].as_i64().unwrap();
    (steps, latest.into_iter().map(|(_, s)| s).collect(), count)
}

/// What [`observe`] must show when exactly the batches `acked` were acknowledged.
fn expected(acked: &[i64]) -> (Vec<i64>, Vec<i64>, i64) {
    let steps: Vec<i64> = acked
        .iter()
        .flat_map(|b| b * STEPS..(b + 1) * STEPS)
        .collect();
    let last = *steps.last().unwrap();
    (steps, vec![last; KEYS], (acked.len() * KEYS) as i64 * STEPS)
}

/// Asserts that `message` names no file of the server (no path under the tmpfs, nothing
/// absolute that looks like one).
fn assert_no_paths(message: &str, mount: &Path) {
    let mount = mount.to_string_lossy();
    assert!(!message.contains(&*mount), "server path in {message:?}");
    assert!(!message.contains("/wal/"), "server path in {message:?}");
    assert!(!message.contains(".wal"), "server path in {message:?}");
}

/// Polls `/health` until it answers 200, for at most `deadline`.
fn wait_healthy(s: &TestServer, deadline: Duration) -> Value {
    let start = Instant::now();
    loop {
        let (status, body) = get(s, "/health");
        if status == 200 {
            return body;
        }
        assert!(
            start.elapsed() < deadline,
            "/health still {status} {body} after {deadline:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_full_disk_is_507_then_writes_resume_once_it_grows_and_a_restart_shows_what_was_acked() {
    let fs = match Tmpfs::mount(SMALL) {
        Ok(fs) => fs,
        Err(why) => {
            println!("skipped: needs root for tmpfs ({why})");
            return;
        }
    };
    let store = fs.path.join("store");
    let s = TestServer::start_on(&store);
    let (status, e) = post(
        &s,
        "/api/2.0/mlflow/experiments/create",
        &json!({"name": "full-disk"}),
    );
    assert_eq!(status, 200, "{e}");
    let exp = e["experiment_id"].as_str().unwrap().to_string();
    let (status, r) = post(
        &s,
        "/api/2.0/mlflow/runs/create",
        &json!({"experiment_id": exp, "start_time": 1_700_000_000_000i64}),
    );
    assert_eq!(status, 200, "{r}");
    let run = r["run"]["info"]["run_id"].as_str().unwrap().to_string();

    // Fill the disk with an artifact, up to MARGIN.
    let free = fs.free();
    assert!(free > 8 * MARGIN, "only {free} bytes free on a fresh store");
    let ballast: Vec<u8> = (0..free - MARGIN).map(|i| (i % 251) as u8).collect();
    let mut resp = agent()
        .put(&s.api(&format!(
            "/api/2.0/mlflow-artifacts/artifacts/{exp}/{run}/artifacts/ballast.bin"
        )))
        .content_type("application/octet-stream")
        .send(&ballast[..])
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string().unwrap();
    assert_eq!(status, 200, "the ballast upload failed: {body}");
    drop(ballast);

    // Log batches until one fails: it is the log's next claim of room that fails.
    let mut acked = Vec::new();
    let failed = loop {
        let b = acked.len() as i64;
        assert!(b < MAX_BATCHES, "{b} batches logged and none failed");
        let (status, body) = post(&s, "/api/2.0/mlflow/runs/log-batch", &batch(&run, b));
        match status {
            200 => acked.push(b),
            _ => break (b, status, body),
        }
    };
    let (failed_batch, status, body) = failed;
    assert!(!acked.is_empty(), "the very first batch failed: {body}");
    assert_eq!(status, 507, "batch {failed_batch}: {body}");
    assert_eq!(body["error_code"], "RESOURCE_EXHAUSTED", "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("disk is full"), "{message}");
    assert_eq!(
        message.matches("disk is full").count(),
        1,
        "said twice: {message}"
    );
    assert_no_paths(message, &fs.path);

    // While full: /health says why, in JSON; writes are refused the same way; no read path
    // shows the failed batch.
    let (status, health) = get(&s, "/health");
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["error_code"], "RESOURCE_EXHAUSTED", "{health}");
    let reason = health["message"].as_str().unwrap();
    assert!(reason.contains("disk is full"), "{reason}");
    assert_no_paths(reason, &fs.path);
    let (status, body) = post(
        &s,
        "/api/2.0/mlflow/runs/log-batch",
        &batch(&run, failed_batch + 1),
    );
    assert_eq!(status, 507, "{body}");
    assert_eq!(
        observe(&s, &run),
        expected(&acked),
        "while the disk is full"
    );

    // Grow the disk: the store recovers by itself (it retries at most once a second).
    fs.resize(GROWN);
    let health = wait_healthy(&s, Duration::from_secs(60));
    assert_eq!(health, Value::String("OK".into()));
    // The two refused batches' steps are never sent again.
    for b in failed_batch + 2..failed_batch + 7 {
        let (status, body) = post(&s, "/api/2.0/mlflow/runs/log-batch", &batch(&run, b));
        assert_eq!(status, 200, "batch {b} after the disk grew: {body}");
        acked.push(b);
    }
    let want = expected(&acked);
    assert_eq!(observe(&s, &run), want, "after the disk grew");

    // A restart on the same store shows exactly what was acknowledged.
    assert!(s.stop(), "clean exit on SIGTERM");
    let s = TestServer::start_on(&store);
    assert_eq!(observe(&s, &run), want, "after a restart");
    let (status, list) = get(
        &s,
        &format!("/api/2.0/mlflow-artifacts/artifacts?path={exp}/{run}/artifacts"),
    );
    assert_eq!(status, 200, "{list}");
    assert_eq!(
        list["files"][0]["file_size"].as_u64(),
        Some(free - MARGIN),
        "{list}"
    );
    assert!(s.stop(), "clean exit on SIGTERM after the restart");
}
