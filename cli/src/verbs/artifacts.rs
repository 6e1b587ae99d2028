//! `quiver artifacts ls|get|put`: a run's artifacts through the server's artifact proxy,
//! streamed both ways, with a progress bar on a terminal.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use super::{get, text, Format, Listing};
use crate::runcmd::tracking::{Place, Tracking};

/// `quiver artifacts ...`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// List a run's artifacts (under PATH; --recursive: every file below).
    ///
    /// Example: quiver artifacts ls 3f2a9c... model --recursive
    Ls {
        /// The run's id.
        run_id: String,
        /// A directory of its artifacts (default: the root).
        #[arg(default_value = "")]
        path: String,
        /// Every file below, not only the directory's entries.
        #[arg(long, short)]
        recursive: bool,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        place: Place,
    },
    /// Download an artifact (a file, or a directory with everything below it).
    ///
    /// Example: quiver artifacts get 3f2a9c... model/weights.bin -o weights.bin
    Get {
        /// The run's id.
        run_id: String,
        /// The artifact's path in the run.
        path: String,
        /// Where to write it (default: its name, in the working directory; `-`: standard
        /// output, for a file).
        #[arg(long, short)]
        output: Option<PathBuf>,
        #[command(flatten)]
        place: Place,
    },
    /// Upload a file (or a directory, recursively) into a run's artifacts.
    ///
    /// Example: quiver artifacts put 3f2a9c... ./report.html --path reports/report.html
    Put {
        /// The run's id.
        run_id: String,
        /// The local file or directory.
        local: PathBuf,
        /// Its path in the run (default: its name, at the root).
        #[arg(long)]
        path: Option<String>,
        #[command(flatten)]
        place: Place,
    },
}

/// Runs a `quiver artifacts` command.
pub(crate) fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Ls {
            run_id,
            path,
            recursive,
            format,
            place,
        } => {
            let tracking = place.open()?;
            let result =
                listing(&tracking, &run_id, &path, recursive).and_then(|l| l.print(format));
            tracking.close()?;
            result
        }
        Command::Get {
            run_id,
            path,
            output,
            place,
        } => {
            let tracking = place.open()?;
            let result = download(&tracking, &run_id, &path, output);
            tracking.close()?;
            result
        }
        Command::Put {
            run_id,
            local,
            path,
            place,
        } => {
            let tracking = place.open()?;
            let result = upload(&tracking, &run_id, &local, path);
            tracking.close()?;
            result
        }
    }
}

/// The entries of a run's artifact directory `path` (every file below with `recursive`):
/// columns path, type, size.
pub(crate) fn listing(
    tracking: &Tracking,
    run_id: &str,
    path: &str,
    recursive: bool,
) -> anyhow::Result<Listing> {
    let mut l = Listing::new(&["path", "type", "size"]);
    let mut todo = vec![path.trim_matches('/').to_string()];
    while let Some(dir) = todo.pop() {
        let mut query = vec![("run_id", run_id)];
        if !dir.is_empty() {
            query.push(("path", dir.as_str()));
        }
        let page = get(tracking, "/artifacts/list", &query)?;
        for f in page["files"].as_array().into_iter().flatten() {
            let is_dir = f["is_dir"] == true;
            if is_dir && recursive {
                todo.push(text(f, "path"));
                continue;
            }
            l.push(
                vec![
                    text(f, "path"),
                    if is_dir { "dir" } else { "file" }.into(),
                    text(f, "file_size"),
                ],
                f.clone(),
            );
        }
    }
    if recursive {
        let mut rows: Vec<(Vec<String>, Value)> = l.rows.drain(..).zip(l.json.drain(..)).collect();
        rows.sort_by(|a, b| a.0[0].cmp(&b.0[0]));
        for (r, j) in rows {
            l.push(r, j);
        }
    }
    Ok(l)
}

/// The proxy path of run `run_id`'s artifact root (`<experiment>/<run>/artifacts`).
fn artifact_root(tracking: &Tracking, run_id: &str) -> anyhow::Result<String> {
    let run = get(tracking, "/runs/get", &[("run_id", run_id)])?;
    let uri = text(&run["run"]["info"], "artifact_uri");
    match uri.strip_prefix("mlflow-artifacts:") {
        Some(rest) => Ok(rest.trim_start_matches('/').to_string()),
        None => bail!(
            "run {run_id} keeps its artifacts at {uri}, which the server does not serve: read \
             them there"
        ),
    }
}

fn proxy_path(root: &str, path: &str) -> String {
    let encoded: Vec<String> = path
        .split('/')
        .filter(|c| !c.is_empty())
        .map(crate::admin::percent_encode)
        .collect();
    format!(
        "/api/2.0/mlflow-artifacts/artifacts/{root}/{}",
        encoded.join("/")
    )
}

/// A byte-count bar on standard error (drawn only on a terminal).
fn bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {eta}")
            .expect("a valid template"),
    );
    bar.set_message(what.to_string());
    bar
}

fn download(
    tracking: &Tracking,
    run_id: &str,
    path: &str,
    output: Option<PathBuf>,
) -> anyhow::Result<()> {
    let path = path.trim_matches('/');
    let root = artifact_root(tracking, run_id)?;
    let name = path.rsplit('/').next().unwrap_or(path);
    let files = listing(tracking, run_id, path, true)?;
    // A path that lists entries is a directory; otherwise it is (or is not) a file.
    let is_file = files.rows.len() == 1 && files.rows[0][0] == path;
    let is_dir = !files.rows.is_empty() && !is_file;
    if !is_dir {
        let target = output.unwrap_or_else(|| PathBuf::from(name));
        if target == Path::new("-") {
            let mut body = tracking.remote.get_reader(&proxy_path(&root, path))?;
            std::io::copy(&mut body, &mut std::io::stdout().lock())?;
            return Ok(());
        }
        let size = files
            .json
            .first()
            .and_then(|f| f["file_size"].as_u64())
            .unwrap_or(0);
        fetch_file(tracking, &root, path, &target, size)?;
        eprintln!("{} → {}", path, target.display());
        return Ok(());
    }
    let target =
        output.unwrap_or_else(|| PathBuf::from(if name.is_empty() { "artifacts" } else { name }));
    if target == Path::new("-") {
        bail!("{path} is a directory: give a directory with -o");
    }
    for (row, f) in files.rows.iter().zip(&files.json) {
        let rel = row[0]
            .strip_prefix(path)
            .unwrap_or(&row[0])
            .trim_start_matches('/');
        let size = f["file_size"].as_u64().unwrap_or(0);
        fetch_file(tracking, &root, &row[0], &target.join(rel), size)?;
    }
    eprintln!(
        "{} files of {path} → {}",
        files.rows.len(),
        target.display()
    );
    Ok(())
}

/// Downloads one artifact file to `target`, through a temporary file renamed into place.
fn fetch_file(
    tracking: &Tracking,
    root: &str,
    path: &str,
    target: &Path,
    size: u64,
) -> anyhow::Result<()> {
    let dir = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    let body = tracking.remote.get_reader(&proxy_path(root, path))?;
    let bar = bar(size, path);
    std::io::copy(&mut bar.wrap_read(body), tmp.as_file_mut())
        .with_context(|| format!("downloading {path}"))?;
    bar.finish_and_clear();
    tmp.persist(target)
        .with_context(|| format!("writing {}", target.display()))?;
    Ok(())
}

fn upload(
    tracking: &Tracking,
    run_id: &str,
    local: &Path,
    path: Option<String>,
) -> anyhow::Result<()> {
    let root = artifact_root(tracking, run_id)?;
    let name = local
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dest = path.unwrap_or(name);
    let dest = dest.trim_matches('/');
    let meta = std::fs::metadata(local).with_context(|| format!("reading {}", local.display()))?;
    let files = if meta.is_dir() {
        crate::snapshot::walk::collect_all(local)?
            .into_iter()
            .map(|f| (f.abs, format!("{dest}/{}", f.rel), f.size))
            .collect()
    } else {
        vec![(local.to_path_buf(), dest.to_string(), meta.len())]
    };
    for (abs, to, size) in &files {
        let file =
            std::fs::File::open(abs).with_context(|| format!("reading {}", abs.display()))?;
        let bar = bar(*size, to);
        tracking
            .remote
            .put(&proxy_path(&root, to), bar.wrap_read(file))
            .with_context(|| format!("uploading {}", abs.display()))?;
        bar.finish_and_clear();
    }
    eprintln!("{} file(s) → run {run_id}: {dest}", files.len());
    Ok(())
}
