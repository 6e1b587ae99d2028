//! Step keys (`quiver run --reuse`): what decides that a run would do the same work as an
//! earlier one. The key is the blake3 of a canonical JSON record of the command line, the
//! step's code (the root hash of the source snapshot, or of the `--code` paths in it), each
//! declared input (a file's blake3, a directory's root hash over its files), the params, and,
//! with `--reuse-env`, the environment (Python version, installed packages, OS, machine).
//!
//! The parts are also kept as tags (`quiver.step.code`, `quiver.step.inputs`,
//! `quiver.step.params`, `quiver.step.command`), so that `quiver pipeline status` can say
//! which one changed.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context};
use quiver_store::{Manifest, ManifestFile};
use serde::{Deserialize, Serialize};

use crate::snapshot::walk;

/// Tags that hold the parts of a step key.
pub(crate) const CODE_TAG: &str = "quiver.step.code";
pub(crate) const INPUTS_TAG: &str = "quiver.step.inputs";
pub(crate) const PARAMS_TAG: &str = "quiver.step.params";
pub(crate) const COMMAND_TAG: &str = "quiver.step.command";
/// The tag naming the run a reused run took its outputs from.
pub(crate) const REUSED_FROM_TAG: &str = "quiver.reused_from";

/// What a step key is made of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Parts {
    /// The command line, word by word.
    pub(crate) command: Vec<String>,
    /// The root hash of the step's code (`None`: no snapshot).
    pub(crate) code: Option<String>,
    /// Each input path as given, with its content hash.
    pub(crate) inputs: BTreeMap<String, String>,
    /// The params.
    pub(crate) params: BTreeMap<String, String>,
    /// A hash of the environment, with `--reuse-env`.
    pub(crate) env: Option<String>,
}

impl Parts {
    /// The step key: blake3 over the canonical JSON of the parts (maps are sorted).
    pub(crate) fn key(&self) -> String {
        let json = serde_json::to_vec(self).expect("parts encode");
        blake3::hash(&json).to_hex().to_string()
    }

    /// The tags that record the parts (and the key).
    pub(crate) fn tags(&self) -> Vec<(String, String)> {
        let mut tags = vec![
            (quiver_store::STEP_KEY_TAG.to_string(), self.key()),
            (INPUTS_TAG.to_string(), json(&self.inputs)),
            (PARAMS_TAG.to_string(), json(&self.params)),
            (COMMAND_TAG.to_string(), json(&self.command)),
        ];
        if let Some(code) = &self.code {
            tags.push((CODE_TAG.to_string(), code.clone()));
        }
        tags
    }
}

/// JSON text of a part, for a tag.
fn json(v: &impl Serialize) -> String {
    serde_json::to_string(v).expect("tags encode")
}

/// The root hash of the files of `snapshot` that are the step's code: those at or under one of
/// `code` (paths relative to the source directory), or all of them when `code` is empty.
pub(crate) fn code_root(snapshot: &[ManifestFile], code: &[String]) -> anyhow::Result<String> {
    let code: Vec<String> = code
        .iter()
        .map(|c| c.trim_matches('/').trim_start_matches("./").to_string())
        .collect();
    let picked: Vec<ManifestFile> = snapshot
        .iter()
        .filter(|f| {
            code.is_empty()
                || code
                    .iter()
                    .any(|c| f.path == *c || f.path.starts_with(&format!("{c}/")))
        })
        .cloned()
        .collect();
    if let Some(c) = code.iter().find(|c| {
        !picked
            .iter()
            .any(|f| f.path == **c || f.path.starts_with(&format!("{c}/")))
    }) {
        bail!("--code {c}: no file of the source snapshot is there");
    }
    Ok(Manifest::new(picked)?.root)
}

/// The content hash of an input: a file's blake3, or a directory's root hash over every file
/// under it (no ignore rules apply: data directories are often git-ignored).
pub(crate) fn input_hash(path: &Path) -> anyhow::Result<String> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("the input {} is not there", path.display()))?;
    if meta.is_file() {
        return Ok(walk::hash_file(path)?.0);
    }
    let files = walk::collect_all(path)?;
    Ok(Manifest::new(walk::hash(&files)?)?.root)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts() -> Parts {
        Parts {
            command: vec!["python".into(), "train.py".into()],
            code: Some("c".into()),
            inputs: BTreeMap::from([("data.csv".into(), "d".into())]),
            params: BTreeMap::from([("lr".into(), "0.1".into())]),
            env: None,
        }
    }

    #[test]
    fn every_part_changes_the_key() {
        let base = parts().key();
        assert_eq!(base, parts().key());
        let mut p = parts();
        p.command.push("--fast".into());
        assert_ne!(p.key(), base);
        let mut p = parts();
        p.code = Some("c2".into());
        assert_ne!(p.key(), base);
        let mut p = parts();
        p.inputs.insert("data.csv".into(), "d2".into());
        assert_ne!(p.key(), base);
        let mut p = parts();
        p.params.insert("lr".into(), "0.2".into());
        assert_ne!(p.key(), base);
        let mut p = parts();
        p.env = Some("e".into());
        assert_ne!(p.key(), base);
        let tags = parts().tags();
        assert!(tags.contains(&(quiver_store::STEP_KEY_TAG.into(), base)));
        assert!(tags.contains(&(PARAMS_TAG.into(), r#"{"lr":"0.1"}"#.into())));
    }

    #[test]
    fn code_roots_cover_the_named_paths_only() {
        let f = |path: &str, d: &str| ManifestFile {
            path: path.into(),
            size: 1,
            mode: 0o644,
            digest: blake3::hash(d.as_bytes()).to_hex().to_string(),
        };
        let a = [f("train.py", "1"), f("lib/u.py", "2"), f("eval.py", "3")];
        let b = [
            f("train.py", "1"),
            f("lib/u.py", "2"),
            f("eval.py", "changed"),
        ];
        let code = ["train.py".to_string(), "lib/".to_string()];
        assert_eq!(code_root(&a, &code).unwrap(), code_root(&b, &code).unwrap());
        assert_ne!(code_root(&a, &[]).unwrap(), code_root(&b, &[]).unwrap());
        assert!(code_root(&a, &["nothere.py".to_string()]).is_err());
    }

    #[test]
    fn inputs_hash_files_and_trees() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/a"), "1").unwrap();
        std::fs::write(dir.path().join("f"), "1").unwrap();
        let before = input_hash(&dir.path().join("d")).unwrap();
        assert_eq!(
            input_hash(&dir.path().join("f")).unwrap(),
            blake3::hash(b"1").to_hex().to_string()
        );
        std::fs::write(dir.path().join("d/b"), "2").unwrap();
        assert_ne!(input_hash(&dir.path().join("d")).unwrap(), before);
        assert!(input_hash(&dir.path().join("missing")).is_err());
    }
}
