//! `quiver snapshot diff RUN_A RUN_B`: the files added, removed and changed between two runs'
//! snapshots, then a unified diff (as `git diff` prints it) of each text file that differs.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use quiver_store::{Manifest, ManifestFile};

use super::transfer;
use crate::admin::Remote;

/// Files larger than this are reported as changed without a diff.
const MAX_DIFF_BYTES: u64 = 1 << 20;

/// How a path differs between two manifests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change<'a> {
    /// Only in the second.
    Added(&'a ManifestFile),
    /// Only in the first.
    Removed(&'a ManifestFile),
    /// In both, with other content (and maybe another mode).
    Modified(&'a ManifestFile, &'a ManifestFile),
    /// In both, same content, another mode.
    ModeChanged(&'a ManifestFile, &'a ManifestFile),
}

/// The changes from `a` to `b`, by path.
pub(crate) fn changes<'a>(a: &'a Manifest, b: &'a Manifest) -> Vec<(&'a str, Change<'a>)> {
    let mut paths: BTreeMap<&str, (Option<&ManifestFile>, Option<&ManifestFile>)> = BTreeMap::new();
    for f in &a.files {
        paths.entry(&f.path).or_default().0 = Some(f);
    }
    for f in &b.files {
        paths.entry(&f.path).or_default().1 = Some(f);
    }
    paths
        .into_iter()
        .filter_map(|(path, pair)| {
            let change = match pair {
                (None, Some(n)) => Change::Added(n),
                (Some(o), None) => Change::Removed(o),
                (Some(o), Some(n)) if o.digest != n.digest => Change::Modified(o, n),
                (Some(o), Some(n)) if o.mode != n.mode => Change::ModeChanged(o, n),
                _ => return None,
            };
            Some((path, change))
        })
        .collect()
}

/// Prints the changes between the manifests of `kind` of runs `run_a` and `run_b`.
pub(crate) fn diff(
    remote: &Remote,
    run_a: &str,
    run_b: &str,
    kind: &str,
    stat: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let fetch = |run: &str| -> anyhow::Result<Manifest> {
        transfer::fetch(remote, run, kind)?.ok_or_else(|| {
            anyhow::anyhow!("run {run} has no {kind} (was it started by `quiver run`?)")
        })
    };
    let (a, b) = (fetch(run_a)?, fetch(run_b)?);
    if a.root == b.root {
        writeln!(
            out,
            "the {kind}s of the two runs are identical (root {})",
            a.root
        )?;
        return Ok(());
    }
    let changes = changes(&a, &b);
    for (path, change) in &changes {
        let line = match change {
            Change::Added(_) => format!("added     {path}"),
            Change::Removed(_) => format!("removed   {path}"),
            Change::Modified(..) => format!("modified  {path}"),
            Change::ModeChanged(o, n) => format!("mode      {path} ({:o} → {:o})", o.mode, n.mode),
        };
        writeln!(out, "{line}")?;
    }
    writeln!(out, "{} file(s) differ", changes.len())?;
    if stat {
        return Ok(());
    }
    let text = |run: &str, f: &ManifestFile| -> anyhow::Result<Option<String>> {
        if f.size > MAX_DIFF_BYTES {
            return Ok(None);
        }
        let mut bytes = Vec::with_capacity(f.size as usize);
        transfer::open_file(remote, run, kind, &f.path)?.read_to_end(&mut bytes)?;
        Ok(text_of(bytes))
    };
    for (path, change) in &changes {
        let (old, new) = match change {
            Change::Added(n) => (Some(String::new()), text(run_b, n)?),
            Change::Removed(o) => (text(run_a, o)?, Some(String::new())),
            Change::Modified(o, n) => (text(run_a, o)?, text(run_b, n)?),
            Change::ModeChanged(..) => continue,
        };
        writeln!(out)?;
        match (old, new) {
            (Some(old), Some(new)) => {
                let (from, to) = match change {
                    Change::Added(_) => ("/dev/null".to_string(), format!("b/{path}")),
                    Change::Removed(_) => (format!("a/{path}"), "/dev/null".to_string()),
                    _ => (format!("a/{path}"), format!("b/{path}")),
                };
                let diff = similar::TextDiff::from_lines(&old, &new);
                write!(
                    out,
                    "{}",
                    diff.unified_diff().context_radius(3).header(&from, &to)
                )?;
            }
            _ => writeln!(out, "Binary or large files a/{path} and b/{path} differ")?,
        }
    }
    Ok(())
}

/// `bytes` as text, if they are UTF-8 without NUL bytes (what git calls text).
fn text_of(bytes: Vec<u8>) -> Option<String> {
    if bytes.contains(&0) {
        return None;
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, content: &str, mode: u32) -> ManifestFile {
        ManifestFile {
            path: path.into(),
            size: content.len() as u64,
            mode,
            digest: blake3::hash(content.as_bytes()).to_hex().to_string(),
        }
    }

    #[test]
    fn changes_are_classified_by_path() {
        let a = Manifest::new(vec![
            file("same.py", "s", 0o644),
            file("gone.py", "g", 0o644),
            file("edit.py", "1", 0o644),
            file("run.sh", "r", 0o644),
        ])
        .unwrap();
        let b = Manifest::new(vec![
            file("same.py", "s", 0o644),
            file("new.py", "n", 0o644),
            file("edit.py", "2", 0o644),
            file("run.sh", "r", 0o755),
        ])
        .unwrap();
        let c = changes(&a, &b);
        let kinds: Vec<(&str, &str)> = c
            .iter()
            .map(|(p, ch)| {
                let k = match ch {
                    Change::Added(_) => "added",
                    Change::Removed(_) => "removed",
                    Change::Modified(..) => "modified",
                    Change::ModeChanged(..) => "mode",
                };
                (*p, k)
            })
            .collect();
        assert_eq!(
            kinds,
            [
                ("edit.py", "modified"),
                ("gone.py", "removed"),
                ("new.py", "added"),
                ("run.sh", "mode")
            ]
        );
    }

    #[test]
    fn text_is_utf8_without_nul() {
        assert_eq!(text_of(b"a\nb".to_vec()).as_deref(), Some("a\nb"));
        assert!(text_of(vec![0, 1]).is_none() && text_of(vec![0xff]).is_none());
    }
}
