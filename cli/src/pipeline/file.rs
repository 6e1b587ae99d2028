//! The pipeline file: a small TOML document of steps.
//!
//! ```toml
//! name = "demo"                      # the pipeline run's name (default: the file's stem)
//! experiment = "demo"                # where its runs go (default: the name)
//!
//! [steps.prepare]
//! cmd = "python prepare.py"          # run by `sh -c`; or an argument list ["python", "x.py"]
//! inputs = ["data/raw.csv"]          # files or directories it reads (their content is hashed)
//! outputs = ["data/clean.csv"]       # what it writes: stored, and restored when reused
//! code = ["prepare.py", "lib/"]      # its code in the source (default: the whole source)
//! params = { seed = 1 }              # passed as params of its run (and part of its key)
//! depends_on = []                    # steps to finish first (besides those whose outputs
//!                                    # it reads, which it always waits for)
//! source = "."                       # its source directory (default: the file's directory)
//! reuse_env = false                  # make the environment part of its key
//! ```
//!
//! Paths are relative to the directory of the pipeline file, where steps also run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Deserialize;

/// A pipeline file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PipelineFile {
    name: Option<String>,
    experiment: Option<String>,
    #[serde(default)]
    steps: BTreeMap<String, StepFile>,
}

/// A step as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepFile {
    cmd: Cmd,
    #[serde(default)]
    inputs: Vec<String>,
    #[serde(default)]
    outputs: Vec<String>,
    #[serde(default)]
    code: Vec<String>,
    #[serde(default)]
    params: BTreeMap<String, toml::Value>,
    #[serde(default)]
    depends_on: Vec<String>,
    source: Option<String>,
    #[serde(default)]
    reuse_env: bool,
}

/// A step's command: a shell line or an argument list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Cmd {
    Shell(String),
    Argv(Vec<String>),
}

/// A checked pipeline.
#[derive(Debug, Clone)]
pub(crate) struct Pipeline {
    /// Its name.
    pub(crate) name: String,
    /// The experiment its runs go to.
    pub(crate) experiment: String,
    /// The directory of the file: where steps run and paths start.
    pub(crate) dir: PathBuf,
    /// The file.
    pub(crate) file: PathBuf,
    /// The steps in an order where each comes after those it depends on.
    pub(crate) steps: Vec<Step>,
}

/// A checked step.
#[derive(Debug, Clone)]
pub(crate) struct Step {
    /// Its name (its run's name).
    pub(crate) name: String,
    /// The command, as an argument list.
    pub(crate) command: Vec<String>,
    pub(crate) inputs: Vec<String>,
    pub(crate) outputs: Vec<String>,
    pub(crate) code: Vec<String>,
    pub(crate) params: BTreeMap<String, String>,
    /// Every step it waits for: those named in `depends_on` and those whose outputs it reads.
    pub(crate) after: BTreeSet<String>,
    pub(crate) source: Option<PathBuf>,
    pub(crate) reuse_env: bool,
}

/// Whether path `a` is `b` or lies under it (or the other way round).
fn overlaps(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim_end_matches('/'), b.trim_end_matches('/'));
    a == b || a.starts_with(&format!("{b}/")) || b.starts_with(&format!("{a}/"))
}

/// Reads and checks the pipeline file at `path`.
pub(crate) fn load(path: &Path) -> anyhow::Result<Pipeline> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file: PipelineFile = toml::from_str(&text)
        .with_context(|| format!("{} is not a valid pipeline", path.display()))?;
    let file_path = path
        .canonicalize()
        .with_context(|| format!("reading {}", path.display()))?;
    let dir = file_path
        .parent()
        .expect("a file has a directory")
        .to_path_buf();
    let name = file.name.unwrap_or_else(|| {
        path.file_stem()
            .map_or("pipeline".into(), |s| s.to_string_lossy().into_owned())
    });
    if file.steps.is_empty() {
        bail!(
            "{}: the pipeline has no steps ([steps.<name>])",
            path.display()
        );
    }
    let mut steps = Vec::new();
    for (step_name, s) in &file.steps {
        if step_name.is_empty()
            || !step_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            bail!("step name '{step_name}': use letters, digits, '-', '_' and '.'");
        }
        for d in &s.depends_on {
            if !file.steps.contains_key(d) {
                bail!("step {step_name} depends on '{d}', which is not a step of the pipeline");
            }
        }
        let command = match &s.cmd {
            Cmd::Shell(line) => vec!["sh".into(), "-c".into(), line.clone()],
            Cmd::Argv(words) if !words.is_empty() => words.clone(),
            Cmd::Argv(_) => bail!("step {step_name}: cmd is empty"),
        };
        let params = s
            .params
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Float(f) => f.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    other => bail!(
                        "step {step_name}: param {k} must be a string, number or boolean, not {}",
                        other.type_str()
                    ),
                };
                Ok((k.clone(), v))
            })
            .collect::<anyhow::Result<_>>()?;
        let mut after: BTreeSet<String> = s.depends_on.iter().cloned().collect();
        for (other, o) in &file.steps {
            if other != step_name
                && s.inputs
                    .iter()
                    .any(|i| o.outputs.iter().any(|out| overlaps(i, out)))
            {
                after.insert(other.clone());
            }
        }
        steps.push(Step {
            name: step_name.clone(),
            command,
            inputs: s.inputs.clone(),
            outputs: s.outputs.clone(),
            code: s.code.clone(),
            params,
            after,
            source: s.source.as_ref().map(|p| dir.join(p)),
            reuse_env: s.reuse_env,
        });
    }
    for (i, a) in steps.iter().enumerate() {
        for b in &steps[i + 1..] {
            if let Some(o) = a
                .outputs
                .iter()
                .find(|o| b.outputs.iter().any(|p| overlaps(o, p)))
            {
                bail!("steps {} and {} both write {o}", a.name, b.name);
            }
        }
    }
    Ok(Pipeline {
        experiment: file.experiment.unwrap_or_else(|| name.clone()),
        name,
        dir,
        file: file_path,
        steps: in_order(steps)?,
    })
}

/// `steps` ordered so that each comes after those it waits for (by name among equals); a
/// cycle is an error naming its steps.
fn in_order(mut steps: Vec<Step>) -> anyhow::Result<Vec<Step>> {
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut ordered = Vec::new();
    while !steps.is_empty() {
        let (ready, waiting): (Vec<Step>, Vec<Step>) = steps
            .into_iter()
            .partition(|s| s.after.iter().all(|d| done.contains(d)));
        if ready.is_empty() {
            let names: Vec<&str> = waiting.iter().map(|s| s.name.as_str()).collect();
            bail!(
                "the steps {} wait for each other in a cycle",
                names.join(", ")
            );
        }
        done.extend(ready.iter().map(|s| s.name.clone()));
        ordered.extend(ready);
        steps = waiting;
    }
    Ok(ordered)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> anyhow::Result<Pipeline> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flow.toml");
        std::fs::write(&path, text).unwrap();
        load(&path)
    }

    #[test]
    fn steps_are_ordered_by_declared_and_data_dependencies() {
        let p = load_text(
            r#"
            [steps.train]
            cmd = "python train.py"
            inputs = ["data/clean.csv"]
            outputs = ["model/"]
            params = { lr = 0.1, epochs = 3, tag = "x" }
            [steps.prepare]
            cmd = ["python", "prepare.py"]
            outputs = ["data/clean.csv"]
            [steps.report]
            cmd = "echo done"
            depends_on = ["train"]
            "#,
        )
        .unwrap();
        let names: Vec<&str> = p.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["prepare", "train", "report"]);
        assert_eq!(p.name, "flow");
        assert_eq!(p.experiment, "flow");
        let train = &p.steps[1];
        assert!(train.after.contains("prepare"));
        assert_eq!(train.command, ["sh", "-c", "python train.py"]);
        assert_eq!(train.params["lr"], "0.1");
        assert_eq!(train.params["epochs"], "3");
    }

    #[test]
    fn mistakes_are_named() {
        let err = |t: &str| load_text(t).unwrap_err().to_string();
        assert!(
            err("[steps.a]\ncmd = 'x'\ndepends_on = ['b']").contains("'b', which is not a step")
        );
        assert!(err(
            "[steps.a]\ncmd = 'x'\ndepends_on = ['b']\n[steps.b]\ncmd = 'y'\ndepends_on = ['a']"
        )
        .contains("cycle"));
        assert!(err("[steps.a]\ncmd = 'x'\nouputs = []").contains("not a valid pipeline"));
        assert!(err("name = 'x'").contains("no steps"));
        assert!(err(
            "[steps.a]\ncmd = 'x'\noutputs = ['o']\n[steps.b]\ncmd = 'y'\noutputs = ['o/p']"
        )
        .contains("both write"));
        assert!(err("[steps.a]\ncmd = []").contains("cmd is empty"));
    }
}
