//! A source run's artifact files: where a file-based source keeps them, copying them into the
//! store (under the run's `<experiment>/<run>/artifacts/` path, content-addressed as any
//! artifact), and comparing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use quiver_store::Store;

use super::source::{Source, SourceFile, SourceLoggedModel, SourceRun};
use crate::admin;

/// The local directory an artifact URI names, if it exists: `mlflow-artifacts:/<path>` under
/// `root`, a `file://` or absolute path. Remote URIs (s3:// ...) have none.
pub(crate) fn local_dir(uri: &str, root: Option<&Path>) -> Option<PathBuf> {
    let dir = if let Some(rest) = uri.strip_prefix("mlflow-artifacts:") {
        // mlflow-artifacts:/1/r/artifacts or mlflow-artifacts://host:port/1/r/artifacts
        let rest = match rest.strip_prefix("//") {
            Some(hosted) => hosted.split_once('/').map_or("", |(_, p)| p),
            None => rest.trim_start_matches('/'),
        };
        root.map(|r| r.join(rest))
    } else if let Some(p) = uri.strip_prefix("file://") {
        Some(PathBuf::from(p))
    } else if uri.starts_with('/') {
        Some(PathBuf::from(uri))
    } else {
        None
    };
    dir.filter(|d| d.is_dir())
}

/// The local directory of a source run's artifacts, if it has one that exists: its artifact
/// URI's ([`local_dir`]), else, with a `root`, `<root>/<experiment>/<run>/artifacts`.
pub(crate) fn source_dir(run: &SourceRun, root: Option<&Path>) -> Option<PathBuf> {
    local_dir(&run.artifact_uri, root).or_else(|| {
        root.map(|r| r.join(&run.experiment_id).join(&run.id).join("artifacts"))
            .filter(|d| d.is_dir())
    })
}

/// The regular files under `dir` (symbolic links are not followed), by relative path.
pub(crate) fn files(dir: &Path) -> anyhow::Result<Vec<SourceFile>> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((d, prefix)) = stack.pop() {
        let entries = std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))?;
        for entry in entries {
            let entry = entry?;
            let meta = entry.file_type()?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            if meta.is_dir() {
                stack.push((entry.path(), rel));
            } else if meta.is_file() {
                let size = entry.metadata()?.len();
                out.push(SourceFile {
                    rel,
                    location: entry.path().to_string_lossy().into_owned(),
                    size,
                });
            }
        }
    }
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
}

/// The store path under which run `run_id`'s artifacts live.
fn store_root(store: &Store, run_id: &str) -> anyhow::Result<String> {
    let uri = store
        .get_run(run_id)
        .map_err(admin::store_error)?
        .info
        .artifact_uri;
    store_path(&uri)
}

/// The store path of logged model `model_id`'s files.
fn model_root(store: &Store, model_id: &str) -> anyhow::Result<String> {
    let uri = store
        .get_logged_model(model_id)
        .map_err(admin::store_error)?
        .artifact_uri;
    store_path(&uri)
}

/// The store path an artifact URI of this store names.
fn store_path(uri: &str) -> anyhow::Result<String> {
    uri.strip_prefix("mlflow-artifacts:/")
        .map(|p| p.trim_start_matches('/').to_string())
        .with_context(|| format!("the artifact location {uri} is not in this store"))
}

/// Opens a file [`files`] listed.
pub(crate) fn open_local(file: &SourceFile) -> anyhow::Result<Box<dyn std::io::Read + Send>> {
    let f = std::fs::File::open(&file.location)
        .with_context(|| format!("opening {}", file.location))?;
    Ok(Box::new(f))
}

/// Copies `files`, the source's artifact files of `run`, into the store's; returns (files,
/// bytes).
pub(crate) fn copy(
    store: &Store,
    source: &dyn Source,
    run: &SourceRun,
    files: &[SourceFile],
) -> anyhow::Result<(u64, u64)> {
    let root = store_root(store, &run.id)?;
    copy_files(store, source, &root, files)
}

/// Copies the files of a logged model; returns (files, bytes).
pub(crate) fn copy_model(
    store: &Store,
    source: &dyn Source,
    model: &SourceLoggedModel,
) -> anyhow::Result<(u64, u64)> {
    let root = model_root(store, &model.model.model_id)?;
    copy_files(store, source, &root, &source.model_artifact_files(model)?)
}

fn copy_files(
    store: &Store,
    source: &dyn Source,
    root: &str,
    files: &[SourceFile],
) -> anyhow::Result<(u64, u64)> {
    let (mut n, mut bytes) = (0, 0);
    for f in files {
        let reader = source.open_artifact(f)?;
        store
            .put_artifact(&format!("{root}/{}", f.rel), reader)
            .map_err(admin::store_error)
            .with_context(|| format!("artifact {}", f.location))?;
        n += 1;
        bytes += f.size;
    }
    Ok((n, bytes))
}

/// The files under store path `root`, by relative path, with their sizes.
fn stored(store: &Store, root: &str) -> anyhow::Result<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        let dir = if rel.is_empty() {
            root.to_string()
        } else {
            format!("{root}/{rel}")
        };
        for e in store.list_artifacts(&dir).map_err(admin::store_error)? {
            let name = e.path.rsplit('/').next().unwrap_or(&e.path).to_string();
            let child = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if e.is_dir {
                stack.push(child);
            } else {
                out.insert(child, e.size.unwrap_or(0));
            }
        }
    }
    Ok(out)
}

/// How the artifacts of `run` in the store differ from `files`, the source's.
pub(crate) fn differences(
    store: &Store,
    run: &SourceRun,
    files: Vec<SourceFile>,
) -> anyhow::Result<Vec<String>> {
    let have = stored(store, &store_root(store, &run.id)?)?;
    Ok(compare(&have, files))
}

/// How the files of a logged model in the store differ from the source's.
pub(crate) fn model_differences(
    store: &Store,
    source: &dyn Source,
    model: &SourceLoggedModel,
) -> anyhow::Result<Vec<String>> {
    let have = stored(store, &model_root(store, &model.model.model_id)?)?;
    Ok(compare(&have, source.model_artifact_files(model)?))
}

fn compare(have: &BTreeMap<String, u64>, files: Vec<SourceFile>) -> Vec<String> {
    let mut out = Vec::new();
    for f in files {
        match have.get(&f.rel) {
            Some(&size) if size == f.size => {}
            Some(&size) => out.push(format!(
                "artifact {}: {size} bytes (source {})",
                f.rel, f.size
            )),
            None => out.push(format!("artifact {}: missing", f.rel)),
        }
    }
    out
}
