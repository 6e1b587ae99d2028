//! Artifacts: a path index over content-addressed blobs.
//!
//! Paths are store-relative (`<exp>/<run>/artifacts/<relative path>`, later model roots too) and
//! normalized so they can never escape the store. The bytes go to the blob store first (streamed,
//! hashed, fsynced); then one logged op points the path at the blob. The same bytes logged under
//! any number of paths are stored once.

use std::io::Read;

use super::Store;
use crate::artifact_path;
use crate::blobs::BlobBytes;
use crate::error::{Error, Result};
use crate::ops::Op;
use crate::types::{ArtifactEntry, ArtifactListEntry};

impl Store {
    /// Streams `content` into the store as the file at `path` (replacing an existing file).
    /// Memory stays bounded whatever the size. A path that is a directory, or that goes through
    /// an existing file, is [`Error::InvalidParameter`].
    pub fn put_artifact(&self, path: &str, content: impl Read) -> Result<ArtifactEntry> {
        let path = artifact_path::normalize(path)?;
        if path.is_empty() {
            return Err(Error::InvalidParameter(
                "Invalid path: an artifact needs a file name".into(),
            ));
        }
        let _gc = self.inner.gc_lock.read().expect("gc lock");
        let (digest, size) = self.inner.blobs.put(content)?;
        self.inner.point_artifact(path, digest, size)
    }

    /// The file at `path`.
    pub fn artifact(&self, path: &str) -> Result<ArtifactEntry> {
        let path = artifact_path::normalize(path)?;
        self.inner
            .catalog
            .artifact(&path)?
            .ok_or_else(|| Error::NotFound(format!("Artifact '{path}' not found")))
    }

    /// Opens the file at `path` for streaming reads.
    pub fn open_artifact(&self, path: &str) -> Result<(ArtifactEntry, std::fs::File)> {
        let entry = self.artifact(path)?;
        let file = self.inner.blobs.open_blob(&entry.digest)?;
        Ok((entry, file))
    }

    /// Memory-maps the file at `path`.
    pub fn map_artifact(&self, path: &str) -> Result<(ArtifactEntry, BlobBytes)> {
        let entry = self.artifact(path)?;
        let bytes = self.inner.blobs.map(&entry.digest)?;
        Ok((entry, bytes))
    }

    /// The entries directly under directory `dir` ("" for the root): files with their sizes and
    /// subdirectories, in name order. Paths are relative to `dir`. A file or a missing
    /// directory lists as empty.
    pub fn list_artifacts(&self, dir: &str) -> Result<Vec<ArtifactListEntry>> {
        let dir = artifact_path::normalize(dir)?;
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let mut out = Vec::new();
        let mut from = prefix.clone();
        'scan: loop {
            for entry in self.inner.catalog.artifacts_from(&from) {
                let entry = entry?;
                let Some(rest) = entry.path.strip_prefix(&prefix) else {
                    break 'scan;
                };
                match rest.split_once('/') {
                    None => out.push(ArtifactListEntry {
                        path: rest.to_string(),
                        is_dir: false,
                        size: Some(entry.size),
                    }),
                    Some((child, _)) => {
                        out.push(ArtifactListEntry {
                            path: child.to_string(),
                            is_dir: true,
                            size: None,
                        });
                        // Skip the whole subdirectory: '0' is the character after '/'.
                        from = format!("{prefix}{child}0");
                        continue 'scan;
                    }
                }
            }
            break;
        }
        // Byte order puts "a-b" before "a/..."; listings are by name.
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Deletes the file at `path`, or every file under it if it is a directory.
    pub fn delete_artifacts(&self, path: &str) -> Result<()> {
        let path = artifact_path::normalize(path)?;
        self.inner
            .commit(|_| Ok((Some(Op::DeleteArtifacts { path: path.clone() }), ())))?;
        self.inner.want_gc();
        Ok(())
    }
}

impl super::Inner {
    /// Points the (normalized, non-empty) artifact `path` at a stored blob, replacing the file
    /// there. A path that is a directory, or that goes through an existing file, is
    /// [`Error::InvalidParameter`]. The caller holds the collector's lock (read) from the blob's
    /// put to here, so that the blob cannot be collected in between.
    pub(super) fn point_artifact(
        &self,
        path: String,
        digest: crate::blobs::Digest,
        size: u64,
    ) -> Result<ArtifactEntry> {
        let entry = ArtifactEntry {
            path: path.clone(),
            digest,
            size,
        };
        let replaced = self.commit(|cat| {
            let mut ancestor = path.as_str();
            while let Some((parent, _)) = ancestor.rsplit_once('/') {
                if cat.artifact(parent)?.is_some() {
                    return Err(Error::InvalidParameter(format!(
                        "Invalid path '{path}': '{parent}' is a file"
                    )));
                }
                ancestor = parent;
            }
            if cat
                .artifacts_with_prefix(&format!("{path}/"))
                .next()
                .is_some()
            {
                return Err(Error::InvalidParameter(format!(
                    "Invalid path '{path}': it is a directory"
                )));
            }
            let replaces = cat
                .artifact(&path)?
                .is_some_and(|old| old.digest != entry.digest);
            Ok((Some(Op::PutArtifact(entry.clone())), replaces))
        })?;
        if replaced {
            self.want_gc();
        }
        Ok(entry)
    }
}
