//! What `quiver run` records about where a command ran: the git commit, branch, remote and
//! uncommitted changes of the source directory (as MLflow's `mlflow.source.git.*` tags and a
//! diff), and the environment (OS, CPU, memory, GPUs, Python and its packages, an allowlist of
//! environment variables: names that carry settings, never secrets).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

/// Environment variables whose values are recorded (settings that change how code runs).
pub(crate) const ENV_ALLOWLIST: &[&str] = &[
    "CUDA_VISIBLE_DEVICES",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "PYTHONHASHSEED",
    "VIRTUAL_ENV",
    "CONDA_DEFAULT_ENV",
    "CONDA_PREFIX",
    "SLURM_JOB_ID",
    "SLURM_JOB_NAME",
    "HOSTNAME",
    "LANG",
    "TZ",
];

/// Most untracked files whose content goes into the uncommitted diff.
const MAX_UNTRACKED: usize = 200;

/// The output of a command that succeeded, trimmed; `None` when it failed or is missing.
fn output(program: &str, args: &[&str], dir: &Path) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The git state of the repository holding `dir`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Git {
    pub(crate) commit: String,
    pub(crate) branch: String,
    pub(crate) remote: String,
    pub(crate) dirty: bool,
    /// Uncommitted changes of tracked files and the content of untracked ones (not ignored),
    /// as a unified diff.
    pub(crate) diff: String,
}

impl Git {
    /// The git state of `dir`, `None` when it is not in a git work tree (or git is missing).
    pub(crate) fn of(dir: &Path) -> Option<Git> {
        let commit = output("git", &["rev-parse", "HEAD"], dir)?;
        let branch = output("git", &["rev-parse", "--abbrev-ref", "HEAD"], dir).unwrap_or_default();
        let remote =
            output("git", &["config", "--get", "remote.origin.url"], dir).unwrap_or_default();
        let mut diff = output("git", &["diff", "HEAD", "--no-color", "--no-ext-diff"], dir)
            .unwrap_or_default();
        let untracked = output(
            "git",
            &["ls-files", "--others", "--exclude-standard", "-z"],
            dir,
        )
        .unwrap_or_default();
        for file in untracked
            .split('\0')
            .filter(|f| !f.is_empty())
            .take(MAX_UNTRACKED)
        {
            // `git diff --no-index` exits 1 when the files differ, which they do.
            if let Ok(out) = Command::new("git")
                .args(["diff", "--no-color", "--no-index", "--", "/dev/null", file])
                .current_dir(dir)
                .output()
            {
                if !diff.is_empty() && !diff.ends_with('\n') {
                    diff.push('\n');
                }
                diff.push_str(&String::from_utf8_lossy(&out.stdout));
            }
        }
        let dirty = !diff.trim().is_empty();
        Some(Git {
            commit,
            branch,
            remote,
            dirty,
            diff,
        })
    }

    /// MLflow's tags for it (and Quiver's dirty flag).
    pub(crate) fn tags(&self) -> Vec<(String, String)> {
        let mut tags = vec![
            ("mlflow.source.git.commit".to_string(), self.commit.clone()),
            ("quiver.git.dirty".to_string(), self.dirty.to_string()),
        ];
        if !self.branch.is_empty() && self.branch != "HEAD" {
            tags.push(("mlflow.source.git.branch".into(), self.branch.clone()));
        }
        if !self.remote.is_empty() {
            tags.push(("mlflow.source.git.repoURL".into(), self.remote.clone()));
        }
        tags
    }
}

/// The first value of `field` in a `key: value` text such as /proc/cpuinfo.
fn proc_field(path: &str, field: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

/// The environment the command runs in, as JSON (the `environment.json` artifact), and the
/// `pip freeze` of the Python on PATH when there is one.
pub(crate) fn environment(command: &[String], dir: &Path) -> (Value, Option<String>) {
    let python = ["python3", "python"]
        .iter()
        .find_map(|p| output(p, &["--version"], dir).map(|v| (*p, v)));
    let pip = python
        .as_ref()
        .and_then(|(p, _)| output(p, &["-m", "pip", "freeze"], dir));
    let gpus: Vec<Value> = output(
        "nvidia-smi",
        &[
            "--query-gpu=name,driver_version,memory.total",
            "--format=csv,noheader",
        ],
        dir,
    )
    .map(|t| {
        t.lines()
            .map(|l| {
                let f: Vec<&str> = l.split(',').map(str::trim).collect();
                json!({"name": f.first(), "driver": f.get(1), "memory": f.get(2)})
            })
            .collect()
    })
    .unwrap_or_default();
    let vars: BTreeMap<&str, String> = ENV_ALLOWLIST
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (*k, v)))
        .collect();
    let os = output("uname", &["-srm"], dir).unwrap_or_else(|| std::env::consts::OS.to_string());
    let env = json!({
        "command": command,
        "working_directory": dir.display().to_string(),
        "os": os,
        "distribution": proc_field("/etc/os-release", "PRETTY_NAME").map(|v| v.trim_matches('"').to_string()),
        "cpu_model": proc_field("/proc/cpuinfo", "model name"),
        "cpu_count": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "memory": proc_field("/proc/meminfo", "MemTotal"),
        "python": python.map(|(_, v)| v),
        "gpus": gpus,
        "environment_variables": vars,
    });
    (env, pip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_state_of_a_repository_with_changes() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let git = |args: &[&str]| {
            assert!(
                Command::new("git")
                    .args(args)
                    .current_dir(d)
                    .output()
                    .unwrap()
                    .status
                    .success(),
                "{args:?}"
            )
        };
        assert_eq!(Git::of(d), None, "not a repository");
        git(&["init", "-q", "-b", "main"]);
        git(&["config", "user.email", "t@example.com"]);
        git(&["config", "user.name", "t"]);
        git(&["remote", "add", "origin", "https://example.com/r.git"]);
        std::fs::write(d.join("a.py"), "print(1)\n").unwrap();
        std::fs::write(d.join(".gitignore"), "ignored.txt\n").unwrap();
        git(&["add", "."]);
        git(&["commit", "-qm", "one"]);
        let clean = Git::of(d).unwrap();
        assert!(!clean.dirty && clean.diff.is_empty(), "{clean:?}");
        assert_eq!(
            (clean.branch.as_str(), clean.remote.as_str()),
            ("main", "https://example.com/r.git")
        );
        std::fs::write(d.join("a.py"), "print(2)\n").unwrap();
        std::fs::write(d.join("new.py"), "x = 1\n").unwrap();
        std::fs::write(d.join("ignored.txt"), "secret\n").unwrap();
        let dirty = Git::of(d).unwrap();
        assert!(dirty.dirty);
        assert!(
            dirty.diff.contains("+print(2)") && dirty.diff.contains("+x = 1"),
            "{}",
            dirty.diff
        );
        assert!(!dirty.diff.contains("secret"), "ignored files stay out");
        let tags = dirty.tags();
        assert!(tags.contains(&("mlflow.source.git.commit".into(), clean.commit.clone())));
        assert!(tags.contains(&("quiver.git.dirty".into(), "true".into())));
    }

    #[test]
    fn the_environment_names_the_machine_and_only_allowlisted_variables() {
        let (env, _) = environment(&["echo".into(), "hi".into()], Path::new("."));
        assert_eq!(env["command"], json!(["echo", "hi"]));
        assert!(env["cpu_count"].as_u64().unwrap() >= 1);
        let vars = env["environment_variables"].as_object().unwrap();
        assert!(vars.keys().all(|k| ENV_ALLOWLIST.contains(&k.as_str())));
    }
}
