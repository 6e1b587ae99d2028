//! Source snapshots of runs (`quiver run` records one before its command starts) and the
//! `quiver snapshot` commands that read them: `ls`, `diff` between two runs, `restore` into a
//! directory. A snapshot is a manifest (path, size, mode, blake3 per file) whose bytes are
//! content-addressed blobs of the store: an unchanged file is stored once across every run.

mod diff;
pub(crate) mod transfer;
pub(crate) mod walk;

use std::path::PathBuf;

use anyhow::{bail, Context};

use crate::runcmd::tracking::{Place, Tracking};

/// Where a `quiver snapshot` command reads, and which manifest.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Source {
    #[command(flatten)]
    place: Place,
    /// Read the run's declared outputs (`quiver run --output`) instead of its source.
    #[arg(long)]
    outputs: bool,
}

impl Source {
    fn kind(&self) -> &'static str {
        if self.outputs {
            "outputs"
        } else {
            "snapshot"
        }
    }

    fn open(&self) -> anyhow::Result<Tracking> {
        self.place.open()
    }
}

/// `quiver snapshot ...`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// List the files of a run's source snapshot: mode, size, path.
    ///
    /// Example: quiver snapshot ls 3f2a...
    Ls {
        /// The run.
        run_id: String,
        #[command(flatten)]
        source: Source,
    },
    /// What changed between the sources of two runs: files added, removed and changed, with
    /// unified diffs of text files (--stat: the list only).
    ///
    /// Example: quiver snapshot diff 3f2a... 9bc1...
    Diff {
        /// The earlier run.
        run_a: String,
        /// The later run.
        run_b: String,
        /// List the changed files without their diffs.
        #[arg(long)]
        stat: bool,
        #[command(flatten)]
        source: Source,
    },
    /// Write a run's source snapshot back into a directory (created if missing; files there
    /// that the snapshot does not hold are left alone).
    ///
    /// Example: quiver snapshot restore 3f2a... ./code-of-that-run
    Restore {
        /// The run.
        run_id: String,
        /// Where to write the files.
        dir: PathBuf,
        #[command(flatten)]
        source: Source,
    },
}

/// Runs a `quiver snapshot` command.
pub(crate) fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Ls { run_id, source } => {
            let tracking = source.open()?;
            let result = ls(&tracking, &run_id, source.kind());
            tracking.close()?;
            result
        }
        Command::Diff {
            run_a,
            run_b,
            stat,
            source,
        } => {
            let tracking = source.open()?;
            let mut out = std::io::stdout().lock();
            let result = diff::diff(
                &tracking.remote,
                &run_a,
                &run_b,
                source.kind(),
                stat,
                &mut out,
            );
            tracking.close()?;
            result
        }
        Command::Restore {
            run_id,
            dir,
            source,
        } => {
            let tracking = source.open()?;
            let result = restore(&tracking, &run_id, source.kind(), &dir);
            tracking.close()?;
            result
        }
    }
}

/// The manifest of `kind` of `run_id`, or an error saying the run has none.
fn manifest_of(
    tracking: &Tracking,
    run_id: &str,
    kind: &str,
) -> anyhow::Result<quiver_store::Manifest> {
    match transfer::fetch(&tracking.remote, run_id, kind)? {
        Some(m) => Ok(m),
        None => bail!("run {run_id} has no {kind} (was it started by `quiver run`?)"),
    }
}

fn ls(tracking: &Tracking, run_id: &str, kind: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let m = manifest_of(tracking, run_id, kind)?;
    let mut out = std::io::stdout().lock();
    for f in &m.files {
        writeln!(out, "{:o} {:>12} {}", f.mode, f.size, f.path)?;
    }
    writeln!(
        out,
        "{} files, {} (root {})",
        m.files.len(),
        walk::human_bytes(m.bytes),
        m.root
    )?;
    Ok(())
}

fn restore(
    tracking: &Tracking,
    run_id: &str,
    kind: &str,
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    let m = manifest_of(tracking, run_id, kind)?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let written = transfer::restore(&tracking.remote, run_id, kind, &m, dir)?;
    eprintln!(
        "restored {} files ({} written, {} already there) of run {run_id} into {}",
        m.files.len(),
        written.len(),
        m.files.len() - written.len(),
        dir.display()
    );
    Ok(())
}
