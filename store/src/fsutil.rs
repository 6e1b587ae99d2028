//! Small filesystem helpers with the durability contract every on-disk structure relies on.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use crate::error::{IoContext, Result};

/// Makes the entries of directory `dir` (creations, renames, removals) durable.
///
/// On Linux a rename or a new file is only durable once its parent directory is fsynced.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// Replaces `path` with `bytes` atomically and durably: temp file in the same directory, write,
/// `sync_data`, rename, then sync the directory. A crash leaves either the old or the new content.
pub(crate) fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).at(dir)?;
    tmp.write_all(bytes).at(tmp.path())?;
    tmp.as_file().sync_data().at(tmp.path())?;
    tmp.persist(path)
        .map_err(|e| crate::Error::io(path, e.error))?;
    sync_dir(dir)
}

/// Creates `dir` and its parents if needed, syncing the parent so the new directory is durable.
pub(crate) fn create_dir_durable(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).at(dir)?;
    if let Some(parent) = dir.parent() {
        if !parent.as_os_str().is_empty() {
            sync_dir(parent)?;
        }
    }
    Ok(())
}
