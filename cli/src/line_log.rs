//! A file of lines appended durably, the storage of the import and export journals: each
//! line is fsynced before `append` returns, and at open only whole lines count. A last line
//! without its newline (a write cut off by kill -9 or power loss) is dropped, and cut off the
//! file before the next append so that it cannot run into the next line.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// An open line log.
#[derive(Debug)]
pub(crate) struct LineLog {
    path: PathBuf,
    /// Opened at the first append (a log that is only read is not created).
    file: Option<File>,
    /// The length of the whole lines, when a torn line follows them.
    torn: Option<u64>,
}

impl LineLog {
    /// Opens the log at `path` (empty when missing); returns it and its whole lines.
    pub(crate) fn open(path: &Path) -> anyhow::Result<(LineLog, Vec<String>)> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let mut lines = Vec::new();
        let mut torn = None;
        for line in text.split_inclusive('\n') {
            match line.strip_suffix('\n') {
                Some(l) => lines.push(l.to_string()),
                None => torn = Some((text.len() - line.len()) as u64),
            }
        }
        let log = LineLog {
            path: path.to_path_buf(),
            file: None,
            torn,
        };
        Ok((log, lines))
    }

    /// Appends `line` (without its newline) and syncs it to disk.
    pub(crate) fn append(&mut self, line: &str) -> anyhow::Result<()> {
        if self.file.is_none() {
            let dir = self.path.parent().expect("a log is in a directory");
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .with_context(|| format!("opening {}", self.path.display()))?;
            if let Some(len) = self.torn.take() {
                f.set_len(len)
                    .with_context(|| format!("cutting a torn line off {}", self.path.display()))?;
            }
            self.file = Some(f);
        }
        let f = self.file.as_mut().expect("opened above");
        f.write_all(format!("{line}\n").as_bytes())
            .with_context(|| format!("writing {}", self.path.display()))?;
        f.sync_data()
            .with_context(|| format!("syncing {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_lines_survive_and_a_torn_one_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("log");
        let (mut log, lines) = LineLog::open(&path).unwrap();
        assert!(
            lines.is_empty() && !path.exists(),
            "reading creates nothing"
        );
        log.append("a").unwrap();
        log.append("b\tc").unwrap();
        drop(log);
        // A write cut off half-way.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"hal")
            .unwrap();
        let (mut log, lines) = LineLog::open(&path).unwrap();
        assert_eq!(lines, ["a", "b\tc"]);
        log.append("d").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nb\tc\nd\n");
    }
}
