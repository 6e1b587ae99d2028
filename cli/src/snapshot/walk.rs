//! Which files a source snapshot holds, and their digests.
//!
//! Every file under the source directory except those excluded by `.gitignore` files (also in
//! parent directories and `.git/info/exclude`, read as git reads them, whether or not the
//! directory is a git repository), `.quiverignore` files (the same syntax; they win over
//! `.gitignore`), and the built-in exclusions: `.git/`, `__pycache__/`, tool caches
//! (`.ipynb_checkpoints`, `.mypy_cache`, `.pytest_cache`, `.ruff_cache`), virtual environments
//! (a directory holding `pyvenv.cfg`) and conda environments (`conda-meta/`), and Quiver stores
//! (a directory holding `FORMAT` and `wal/`). Symbolic links to files are followed; links to
//! directories are not.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use quiver_store::ManifestFile;

/// Directory names never snapshotted.
const EXCLUDED_DIRS: &[&str] = &[
    ".git",
    "__pycache__",
    ".ipynb_checkpoints",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
];

/// How large a snapshot may be; beyond, the run does not start.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Most bytes, all files together.
    pub(crate) max_bytes: u64,
    /// Most files.
    pub(crate) max_files: usize,
}

/// A file found for a snapshot.
#[derive(Debug, Clone)]
pub(crate) struct LocalFile {
    /// Its path under the source directory, `/`-separated.
    pub(crate) rel: String,
    /// Where it is.
    pub(crate) abs: PathBuf,
    /// Its size when listed.
    pub(crate) size: u64,
    /// Its permission bits.
    pub(crate) mode: u32,
}

/// Whether `dir` is excluded by the built-in rules.
fn excluded_dir(dir: &Path) -> bool {
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
    EXCLUDED_DIRS.contains(&name)
        || dir.join("pyvenv.cfg").is_file()
        || dir.join("conda-meta").is_dir()
        || (dir.join("FORMAT").is_file() && dir.join("wal").is_dir())
}

/// The files of `root` a snapshot holds, sorted by path, leaving out the files and
/// directories `skip` names (the store the run is written to, declared inputs and outputs).
/// More than `limits` allow is an error naming the largest files and directories, so the user
/// knows what to exclude.
pub(crate) fn collect(
    root: &Path,
    skip: &[PathBuf],
    limits: Limits,
) -> anyhow::Result<Vec<LocalFile>> {
    let root = root
        .canonicalize()
        .with_context(|| format!("the source directory {}", root.display()))?;
    let skip: Vec<PathBuf> = skip.iter().filter_map(|p| p.canonicalize().ok()).collect();
    let walker = ignore::WalkBuilder::new(&root)
        .hidden(false)
        .ignore(false)
        .git_global(false)
        .require_git(false)
        .follow_links(false)
        .add_custom_ignore_filename(".quiverignore")
        .sort_by_file_name(|a, b| a.cmp(b))
        .filter_entry(move |e| {
            let is_dir = e.file_type().is_some_and(|t| t.is_dir());
            let skipped = skip.iter().any(|s| s == e.path());
            !(skipped || (is_dir && excluded_dir(e.path())))
        })
        .build();
    let mut files = Vec::new();
    for entry in walker {
        let entry = entry.context("listing the source directory")?;
        let path = entry.path();
        let Some(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            continue;
        }
        // A link is snapshotted as the file it points to; links to directories and dangling
        // links are left out.
        let Ok(meta) = std::fs::metadata(path) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let rel = path
            .strip_prefix(&root)
            .expect("the walk stays under its root")
            .to_str()
            .with_context(|| format!("{} is not UTF-8: rename it or exclude it", path.display()))?
            .replace(std::path::MAIN_SEPARATOR, "/");
        use std::os::unix::fs::PermissionsExt;
        files.push(LocalFile {
            rel,
            abs: path.to_path_buf(),
            size: meta.len(),
            mode: meta.permissions().mode() & 0o777,
        });
    }
    check_limits(&files, limits)?;
    Ok(files)
}

/// Every file under `root` (no ignore rules, no built-in exclusions), sorted by path: what a
/// declared input or output directory holds. A file `root` is itself the one entry, named by
/// its file name.
pub(crate) fn collect_all(root: &Path) -> anyhow::Result<Vec<LocalFile>> {
    let walker = ignore::WalkBuilder::new(root)
        .standard_filters(false)
        .follow_links(false)
        .sort_by_file_name(|a, b| a.cmp(b))
        .build();
    let mut files = Vec::new();
    for entry in walker {
        let entry = entry.with_context(|| format!("listing {}", root.display()))?;
        let Ok(meta) = std::fs::metadata(entry.path()) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let rel = match entry.path().strip_prefix(root) {
            Ok(r) if !r.as_os_str().is_empty() => r,
            _ => Path::new(entry.path().file_name().unwrap_or_default()),
        };
        let rel = rel
            .to_str()
            .with_context(|| format!("{} is not UTF-8", entry.path().display()))?
            .replace(std::path::MAIN_SEPARATOR, "/");
        use std::os::unix::fs::PermissionsExt;
        files.push(LocalFile {
            rel,
            abs: entry.path().to_path_buf(),
            size: meta.len(),
            mode: meta.permissions().mode() & 0o777,
        });
    }
    Ok(files)
}

/// Fails with the largest files and top-level directories when `files` exceed `limits`.
fn check_limits(files: &[LocalFile], limits: Limits) -> anyhow::Result<()> {
    let bytes: u64 = files.iter().map(|f| f.size).sum();
    if files.len() <= limits.max_files && bytes <= limits.max_bytes {
        return Ok(());
    }
    let mut by_dir: std::collections::BTreeMap<&str, (u64, usize)> = Default::default();
    for f in files {
        if let Some((top, _)) = f.rel.split_once('/') {
            let e = by_dir.entry(top).or_default();
            e.0 += f.size;
            e.1 += 1;
        }
    }
    let mut dirs: Vec<_> = by_dir.into_iter().collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.1));
    let mut largest: Vec<&LocalFile> = files.iter().collect();
    largest.sort_by_key(|f| std::cmp::Reverse(f.size));
    let mut msg = format!(
        "the source snapshot would hold {} files, {} (limits: {} files, {}).\n\
         Exclude what the run does not need in .quiverignore (the syntax of .gitignore), \
         or raise the limits with --snapshot-max-files / --snapshot-max-bytes, or give \
         --no-snapshot.\nLargest directories:",
        files.len(),
        human_bytes(bytes),
        limits.max_files,
        human_bytes(limits.max_bytes),
    );
    for (dir, (size, count)) in dirs.iter().take(5) {
        msg.push_str(&format!(
            "\n  {dir}/  {} in {count} files",
            human_bytes(*size)
        ));
    }
    msg.push_str("\nLargest files:");
    for f in largest.iter().take(10) {
        msg.push_str(&format!("\n  {}  {}", f.rel, human_bytes(f.size)));
    }
    bail!(msg)
}

/// `n` bytes the way people read them (`12.3 MB`).
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} bytes")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// The manifest entries of `files`: each file hashed (blake3) as it is now.
pub(crate) fn hash(files: &[LocalFile]) -> anyhow::Result<Vec<ManifestFile>> {
    files
        .iter()
        .map(|f| {
            let (digest, size) = hash_file(&f.abs)?;
            Ok(ManifestFile {
                path: f.rel.clone(),
                size,
                mode: f.mode,
                digest,
            })
        })
        .collect()
}

/// The blake3 (hex) and size of the file at `path`.
pub(crate) fn hash_file(path: &Path) -> anyhow::Result<(String, u64)> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hasher.finalize().to_hex().to_string(), size))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, body: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }

    const ROOMY: Limits = Limits {
        max_bytes: 1 << 30,
        max_files: 1000,
    };

    #[test]
    fn ignore_files_and_built_in_exclusions_apply() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "train.py", "print(1)");
        write(root, "data/big.bin", "xxxx");
        write(root, "data/keep.csv", "a,b");
        write(root, "notes/draft.txt", "x");
        write(root, ".gitignore", "data/\n!data/keep.csv\n*.log\n");
        write(root, ".quiverignore", "notes/\n");
        write(root, "run.log", "log");
        write(root, "pkg/__pycache__/m.pyc", "c");
        write(root, "pkg/m.py", "m");
        write(root, ".venv/pyvenv.cfg", "home = /usr");
        write(root, "myenv/pyvenv.cfg", "home = /usr");
        write(root, "myenv/lib/site.py", "s");
        write(root, ".git/HEAD", "ref");
        write(root, "store/FORMAT", "1");
        std::fs::create_dir_all(root.join("store/wal")).unwrap();
        write(root, "out/result.txt", "r");
        let files = collect(root, &[root.join("out")], ROOMY).unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.rel.as_str()).collect();
        // git does not re-include a file under an excluded directory, and neither does this.
        assert_eq!(
            names,
            [".gitignore", ".quiverignore", "pkg/m.py", "train.py"]
        );
    }

    #[test]
    fn limits_name_the_largest_entries() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "small.py", "x");
        write(dir.path(), "models/huge.bin", &"y".repeat(5000));
        let err = collect(
            dir.path(),
            &[],
            Limits {
                max_bytes: 1000,
                max_files: 10,
            },
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("2 files, 5.0 KB"), "{err}");
        assert!(err.contains("models/  5.0 KB in 1 files"), "{err}");
        assert!(err.contains("models/huge.bin  5.0 KB"), "{err}");
        let too_many = Limits {
            max_bytes: 1 << 20,
            max_files: 1,
        };
        assert!(collect(dir.path(), &[], too_many).is_err());
    }

    #[test]
    fn hashes_are_blake3_of_the_content() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.txt", "hello");
        let files = collect(dir.path(), &[], ROOMY).unwrap();
        let m = hash(&files).unwrap();
        assert_eq!(m[0].digest, blake3::hash(b"hello").to_hex().to_string());
        assert_eq!((m[0].size, m[0].path.as_str()), (5, "a.txt"));
    }
}
