//! Moving file manifests between a directory and a server (Quiver's `blobs/...` and
//! `runs/manifest` routes): only the blobs the store lacks are sent, so an unchanged tree costs
//! its manifest alone; and a recorded manifest is written back into a directory.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use quiver_store::{Manifest, ManifestFile};
use serde_json::{json, Value};

use crate::admin::{percent_encode, Remote};

/// Digests asked about per `blobs/missing` request.
const DIGESTS_PER_REQUEST: usize = 10_000;

/// What a recording sent.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Sent {
    /// Blobs uploaded (the store lacked them).
    pub(crate) blobs: usize,
    /// Their bytes.
    pub(crate) bytes: u64,
}

/// Records `files` (found under `root`) as run `run_id`'s manifest of `kind` (`snapshot` or
/// `outputs`): uploads the blobs the server lacks, then the manifest. If the server collected
/// an uploaded blob before the manifest named it, the missing ones are sent again.
pub(crate) fn record(
    remote: &Remote,
    run_id: &str,
    kind: &str,
    root: &Path,
    files: &[ManifestFile],
) -> anyhow::Result<(Value, Sent)> {
    let mut sent = Sent::default();
    let mut attempt = 0;
    loop {
        attempt += 1;
        for (digest, path) in missing(remote, files)? {
            let abs = root.join(&path);
            let body =
                std::fs::File::open(&abs).with_context(|| format!("reading {}", abs.display()))?;
            let answer = remote
                .put(&format!("/api/2.0/quiver/blobs/{digest}"), body)
                .with_context(|| {
                    format!("uploading {path} (did it change while it was being recorded?)")
                })?;
            sent.blobs += 1;
            sent.bytes += answer["size"].as_u64().unwrap_or(0);
        }
        let body = json!({ "run_id": run_id, "kind": kind, "files": files });
        match remote.post("/api/2.0/quiver/runs/manifest", &body) {
            Ok(v) => return Ok((v, sent)),
            Err(e) if attempt < 3 && e.to_string().contains("have no blob in the store") => {
                continue
            }
            Err(e) => return Err(e.context(format!("recording the {kind} of run {run_id}"))),
        }
    }
}

/// Fails unless the server keeps manifests (a Quiver server; an MLflow server does not).
pub(crate) fn check_server(remote: &Remote) -> anyhow::Result<()> {
    remote
        .post("/api/2.0/quiver/blobs/missing", &json!({ "digests": [] }))
        .map(|_| ())
}

/// The distinct digests of `files` the server lacks, each with a path that holds it.
fn missing(remote: &Remote, files: &[ManifestFile]) -> anyhow::Result<Vec<(String, String)>> {
    let mut seen = HashSet::new();
    let distinct: Vec<&ManifestFile> = files
        .iter()
        .filter(|f| seen.insert(f.digest.as_str()))
        .collect();
    let mut out = Vec::new();
    for chunk in distinct.chunks(DIGESTS_PER_REQUEST) {
        let digests: Vec<&str> = chunk.iter().map(|f| f.digest.as_str()).collect();
        let answer = remote.post(
            "/api/2.0/quiver/blobs/missing",
            &json!({ "digests": digests }),
        )?;
        let lacking: HashSet<&str> = answer["missing"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        out.extend(
            chunk
                .iter()
                .filter(|f| lacking.contains(f.digest.as_str()))
                .map(|f| (f.digest.clone(), f.path.clone())),
        );
    }
    Ok(out)
}

/// Run `run_id`'s manifest of `kind`, or `None` if it has none.
pub(crate) fn fetch(remote: &Remote, run_id: &str, kind: &str) -> anyhow::Result<Option<Manifest>> {
    let path = format!(
        "/api/2.0/quiver/runs/manifest?run_id={}&kind={kind}",
        percent_encode(run_id)
    );
    match remote.get(&path) {
        Ok(v) => Ok(Some(
            serde_json::from_value(v).context("reading a manifest")?,
        )),
        Err(e)
            if e.to_string().starts_with("RESOURCE_DOES_NOT_EXIST")
                && e.to_string().ends_with(" manifest") =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// A stream of the file `path` of run `run_id`'s manifest of `kind`.
pub(crate) fn open_file(
    remote: &Remote,
    run_id: &str,
    kind: &str,
    path: &str,
) -> anyhow::Result<impl std::io::Read> {
    remote.get_reader(&format!(
        "/api/2.0/quiver/runs/manifest/file?run_id={}&kind={kind}&path={}",
        percent_encode(run_id),
        percent_encode(path)
    ))
}

/// Writes every file of `manifest` (of run `run_id`) under `dir`, with its mode; a file that is
/// there already with the same content is left alone. Each file is written to a temporary name
/// and renamed into place. Returns the paths written.
pub(crate) fn restore(
    remote: &Remote,
    run_id: &str,
    kind: &str,
    manifest: &Manifest,
    dir: &Path,
) -> anyhow::Result<Vec<PathBuf>> {
    use std::os::unix::fs::PermissionsExt;
    let mut written = Vec::new();
    for f in &manifest.files {
        let target = dir.join(&f.path);
        if target.is_file() && super::walk::hash_file(&target).is_ok_and(|(d, _)| d == f.digest) {
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(f.mode))?;
            continue;
        }
        let parent = target.parent().expect("a file path has a parent");
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
        let mut tmp = tempfile::NamedTempFile::new_in(parent)
            .with_context(|| format!("writing into {}", parent.display()))?;
        let mut body = open_file(remote, run_id, kind, &f.path)?;
        let n = std::io::copy(&mut body, tmp.as_file_mut())
            .with_context(|| format!("downloading {}", f.path))?;
        if n != f.size {
            bail!(
                "{} arrived with {n} bytes, its manifest says {}",
                f.path,
                f.size
            );
        }
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(f.mode))?;
        tmp.persist(&target)
            .with_context(|| format!("writing {}", target.display()))?;
        written.push(target);
    }
    Ok(written)
}
