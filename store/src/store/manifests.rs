//! File manifests of runs: the source snapshot a run was started from and the outputs it
//! declared, each a list of (path, size, mode, blake3) whose bytes are blobs of the store.
//!
//! A client first asks which blobs the store lacks ([`Store::missing_blobs`]), uploads those
//! ([`Store::put_blob`]), then records the manifest ([`Store::put_manifest`]). The manifest is a
//! JSON artifact of the run, `.quiver/snapshot.json` or `.quiver/outputs.json`, so it is listed,
//! downloaded and purged with the run's other artifacts, and the blob collector keeps every blob
//! a manifest names ([`referenced_by_manifest`]). An unchanged file costs nothing the second
//! time: its blob is there already, and only the manifest is new.

use std::collections::{BTreeSet, HashSet};
use std::io::Read;

use serde::{Deserialize, Serialize};

use super::Store;
use crate::artifact_path;
use crate::blobs::Digest;
use crate::error::{Error, Result};

use crate::types::Tag;

/// Most files one manifest may list.
pub const MAX_MANIFEST_FILES: usize = 1_000_000;

/// Which manifest of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// The source directory the run's command was started from.
    Snapshot,
    /// The files the run's command declared as its outputs.
    Outputs,
}

impl ManifestKind {
    /// The manifest's path in the run's artifacts.
    pub fn artifact_path(self) -> &'static str {
        match self {
            ManifestKind::Snapshot => ".quiver/snapshot.json",
            ManifestKind::Outputs => ".quiver/outputs.json",
        }
    }

    /// The prefix of the run tags that summarize the manifest (`<prefix>.root`, `.files`,
    /// `.bytes`).
    pub fn tag_prefix(self) -> &'static str {
        match self {
            ManifestKind::Snapshot => "quiver.snapshot",
            ManifestKind::Outputs => "quiver.outputs",
        }
    }

    /// The kind a name (`snapshot`, `outputs`) stands for, as the API spells it.
    pub fn parse(name: &str) -> Result<ManifestKind> {
        match name {
            "snapshot" => Ok(ManifestKind::Snapshot),
            "outputs" => Ok(ManifestKind::Outputs),
            other => Err(Error::InvalidParameter(format!(
                "Invalid manifest kind '{other}': expected 'snapshot' or 'outputs'"
            ))),
        }
    }
}

/// One file of a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// Relative path, `/`-separated, normalized as artifact paths are.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Unix permission bits (`0o644`, `0o755` ...).
    pub mode: u32,
    /// blake3 of the content, 64 hex digits: the blob that holds it.
    pub digest: String,
}

/// A run's manifest as stored: its files sorted by path, and the root hash over them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version (1).
    pub version: u32,
    /// [`root_hash`] of the files: equal trees have equal roots, whatever run recorded them.
    pub root: String,
    /// Total bytes of the files.
    pub bytes: u64,
    /// The files, sorted by path.
    pub files: Vec<ManifestFile>,
}

/// The root hash of a tree: blake3 over each file's path, mode, size and digest in path order.
/// A renamed, changed, added, removed or re-moded file changes it.
fn root_hash(files: &[ManifestFile]) -> String {
    let mut h = blake3::Hasher::new();
    for f in files {
        h.update(f.path.as_bytes());
        h.update(&[0]);
        h.update(format!("{:o}\0{}\0{}\n", f.mode, f.size, f.digest).as_bytes());
    }
    h.finalize().to_hex().to_string()
}

impl Manifest {
    /// Checks and sorts `files` into a manifest: paths normalized and distinct, no path under
    /// another's file, digests well formed.
    pub fn new(mut files: Vec<ManifestFile>) -> Result<Manifest> {
        if files.len() > MAX_MANIFEST_FILES {
            return Err(Error::InvalidParameter(format!(
                "A manifest lists at most {MAX_MANIFEST_FILES} files, this one {}",
                files.len()
            )));
        }
        for f in &mut files {
            let path = artifact_path::normalize(&f.path)?;
            if path.is_empty() {
                return Err(Error::InvalidParameter(
                    "Invalid path: a manifest file needs a name".into(),
                ));
            }
            f.path = path;
            f.digest = Digest::from_hex(&f.digest)?.to_hex();
            f.mode &= 0o7777;
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let mut dirs = BTreeSet::new();
        for pair in files.windows(2) {
            if pair[0].path == pair[1].path {
                return Err(Error::InvalidParameter(format!(
                    "Invalid manifest: '{}' is listed twice",
                    pair[0].path
                )));
            }
        }
        for f in &files {
            let mut p = f.path.as_str();
            while let Some((parent, _)) = p.rsplit_once('/') {
                dirs.insert(parent);
                p = parent;
            }
        }
        if let Some(f) = files.iter().find(|f| dirs.contains(f.path.as_str())) {
            return Err(Error::InvalidParameter(format!(
                "Invalid manifest: '{}' is both a file and a directory",
                f.path
            )));
        }
        Ok(Manifest {
            version: 1,
            root: root_hash(&files),
            bytes: files.iter().map(|f| f.size).sum(),
            files,
        })
    }

    /// The file at `path`, if the manifest lists it.
    pub fn file(&self, path: &str) -> Option<&ManifestFile> {
        self.files
            .binary_search_by(|f| f.path.as_str().cmp(path))
            .ok()
            .map(|i| &self.files[i])
    }
}

impl Store {
    /// Which of `digests` the store holds no blob for, in the order given.
    pub fn missing_blobs(&self, digests: &[Digest]) -> Vec<Digest> {
        digests
            .iter()
            .filter(|d| !self.inner.blobs.contains(d))
            .copied()
            .collect()
    }

    /// Streams `content` into the store as a blob that must hash to `expected`; returns its
    /// size. Different bytes are [`Error::InvalidParameter`] (and are collected later, as
    /// nothing refers to them). A blob no manifest or artifact names yet may be collected by
    /// the next [`Store::gc`]: [`Store::put_manifest`] then says which are missing.
    pub fn put_blob(&self, expected: &Digest, content: impl Read) -> Result<u64> {
        let _gc = self.inner.gc_lock.read().expect("gc lock");
        let (digest, size) = self.inner.blobs.put(content)?;
        if digest != *expected {
            self.inner.want_gc();
            return Err(Error::InvalidParameter(format!(
                "The uploaded bytes hash to {digest}, not to {expected}"
            )));
        }
        Ok(size)
    }

    /// Records `files` as run `run_id`'s manifest of `kind` (replacing an earlier one), and
    /// sets its summary tags (`quiver.snapshot.root`, `.files`, `.bytes`). Every file's blob
    /// must be in the store: otherwise [`Error::InvalidParameter`] names how many are missing
    /// and nothing is recorded. The run must be active and keep its artifacts in this store.
    pub fn put_manifest(
        &self,
        run_id: &str,
        kind: ManifestKind,
        files: Vec<ManifestFile>,
    ) -> Result<Manifest> {
        let manifest = Manifest::new(files)?;
        let path = self.manifest_path(run_id, kind)?;
        let json = serde_json::to_vec(&manifest)
            .map_err(|e| Error::Internal(format!("encoding a manifest: {e}")))?;
        let entry = {
            // Held until the manifest is committed: the collector cannot remove a blob it names
            // between the check and the commit.
            let _gc = self.inner.gc_lock.read().expect("gc lock");
            let mut missing = manifest
                .files
                .iter()
                .filter(|f| {
                    Digest::from_hex(&f.digest).is_ok_and(|d| !self.inner.blobs.contains(&d))
                })
                .peekable();
            if let Some(first) = missing.peek() {
                let first = first.path.clone();
                let count = missing.count();
                return Err(Error::InvalidParameter(format!(
                    "{count} file(s) of the manifest have no blob in the store (the first: \
                     '{first}'); upload them first"
                )));
            }
            let (digest, size) = self.inner.blobs.put_bytes(&json)?;
            self.inner.point_artifact(path, digest, size)?
        };
        debug_assert_eq!(entry.size, json.len() as u64);
        let prefix = kind.tag_prefix();
        let tags = [
            Tag::new(format!("{prefix}.root"), manifest.root.clone()),
            Tag::new(format!("{prefix}.files"), manifest.files.len().to_string()),
            Tag::new(format!("{prefix}.bytes"), manifest.bytes.to_string()),
        ];
        self.log_batch(run_id, &[], &[], &tags)?;
        Ok(manifest)
    }

    /// Run `run_id`'s manifest of `kind` ([`Error::NotFound`] if it has none).
    pub fn manifest(&self, run_id: &str, kind: ManifestKind) -> Result<Manifest> {
        let path = self.manifest_path(run_id, kind)?;
        let entry = self.inner.catalog.artifact(&path)?.ok_or_else(|| {
            Error::NotFound(format!(
                "Run '{run_id}' has no {} manifest",
                kind.tag_prefix().trim_start_matches("quiver.")
            ))
        })?;
        let bytes = self.inner.blobs.map(&entry.digest)?;
        serde_json::from_slice(&bytes).map_err(|e| {
            Error::InvalidParameter(format!(
                "Run '{run_id}''s manifest {path} does not parse: {e}"
            ))
        })
    }

    /// Opens the file `path` of run `run_id`'s manifest of `kind` for streaming reads.
    pub fn open_manifest_file(
        &self,
        run_id: &str,
        kind: ManifestKind,
        path: &str,
    ) -> Result<(ManifestFile, std::fs::File)> {
        let manifest = self.manifest(run_id, kind)?;
        let path = artifact_path::normalize(path)?;
        let file = manifest.file(&path).cloned().ok_or_else(|| {
            Error::NotFound(format!(
                "The manifest of run '{run_id}' has no file '{path}'"
            ))
        })?;
        let blob = self
            .inner
            .blobs
            .open_blob(&Digest::from_hex(&file.digest)?)?;
        Ok((file, blob))
    }

    /// Where run `run_id`'s manifest of `kind` is kept: under its artifact root, which must be
    /// one this store serves.
    fn manifest_path(&self, run_id: &str, kind: ManifestKind) -> Result<String> {
        let info = self.get_run(run_id)?.info;
        match artifact_path::served_root(&info.artifact_uri)? {
            Some(root) if !root.is_empty() => Ok(format!("{root}/{}", kind.artifact_path())),
            _ => Err(Error::InvalidParameter(format!(
                "Run '{run_id}' keeps its artifacts at {}, outside this store: it cannot hold \
                 a manifest",
                info.artifact_uri
            ))),
        }
    }
}

/// Whether an artifact path is where a run keeps a manifest (`.../artifacts/.quiver/*.json`).
pub(crate) fn is_manifest_path(path: &str) -> bool {
    [ManifestKind::Snapshot, ManifestKind::Outputs]
        .iter()
        .any(|k| {
            path.strip_suffix(k.artifact_path())
                .is_some_and(|head| head.ends_with("/artifacts/"))
        })
}

/// Adds the blobs `manifest_json` names to `referenced`. A manifest that does not parse names
/// none (the collector must not fail on one damaged artifact).
pub(crate) fn referenced_by_manifest(manifest_json: &[u8], referenced: &mut HashSet<Digest>) {
    #[derive(Deserialize)]
    struct Files {
        files: Vec<Digests>,
    }
    #[derive(Deserialize)]
    struct Digests {
        digest: String,
    }
    match serde_json::from_slice::<Files>(manifest_json) {
        Ok(m) => referenced.extend(
            m.files
                .iter()
                .filter_map(|f| Digest::from_hex(&f.digest).ok()),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "a run manifest does not parse; its blobs are not kept")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, content: &[u8]) -> ManifestFile {
        ManifestFile {
            path: path.into(),
            size: content.len() as u64,
            mode: 0o644,
            digest: Digest::of(content).to_hex(),
        }
    }

    #[test]
    fn manifests_sort_and_refuse_clashes() {
        let m = Manifest::new(vec![file("b.py", b"b"), file("./a/x.py", b"x")]).unwrap();
        assert_eq!(m.files[0].path, "a/x.py");
        assert_eq!(m.bytes, 2);
        assert!(m.file("b.py").is_some() && m.file("a").is_none());
        let same = Manifest::new(vec![file("a/x.py", b"x"), file("b.py", b"b")]).unwrap();
        assert_eq!(m.root, same.root);
        let mut moded = file("b.py", b"b");
        moded.mode = 0o755;
        let other = Manifest::new(vec![file("a/x.py", b"x"), moded]).unwrap();
        assert_ne!(m.root, other.root);
        assert!(Manifest::new(vec![file("a", b"1"), file("a/b", b"2")]).is_err());
        assert!(Manifest::new(vec![file("a", b"1"), file("./a", b"2")]).is_err());
        assert!(Manifest::new(vec![file("../a", b"1")]).is_err());
        let mut bad = file("a", b"1");
        bad.digest = "zz".into();
        assert!(Manifest::new(vec![bad]).is_err());
    }

    #[test]
    fn manifest_paths_are_recognized() {
        assert!(is_manifest_path("1/abc/artifacts/.quiver/snapshot.json"));
        assert!(is_manifest_path("1/abc/artifacts/.quiver/outputs.json"));
        assert!(!is_manifest_path("1/abc/artifacts/x/.quiver/other.json"));
        assert!(!is_manifest_path(".quiver/snapshot.json"));
    }
}
