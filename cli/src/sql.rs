//! `quiver sql`: run a read-only SQL query on a store directory, or on a running server.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use quiver_store::arrow::record_batch::RecordBatch;
use quiver_store::sql_output::{self, ARROW_STREAM};
use quiver_store::Store;

/// How to print a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// A text table.
    Table,
    /// CSV with a header row.
    Csv,
    /// A JSON array of row objects.
    Json,
    /// A Parquet file (needs --output).
    Parquet,
}

/// Runs `query` on the store at `store` (when `url` is `None`) or on the server at `url`, and
/// writes the result in `format` to `output` or standard output.
pub(crate) fn run(
    query: &str,
    store: &Path,
    url: Option<&str>,
    format: Format,
    output: Option<&PathBuf>,
) -> anyhow::Result<()> {
    if format == Format::Parquet && output.is_none() {
        bail!("--format parquet writes a binary file: give it --output FILE");
    }
    let batches = match url {
        Some(url) => remote(url, query)?,
        None => local(store, query)?,
    };
    let mut out: Box<dyn Write + Send> = match output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(std::io::stdout()),
    };
    match format {
        Format::Table => writeln!(out, "{}", sql_output::table(&batches)?)?,
        Format::Csv => sql_output::csv(&batches, &mut out)?,
        Format::Json => writeln!(out, "{}", sql_output::json_rows(&batches)?)?,
        Format::Parquet => sql_output::parquet(&batches, &mut out)?,
    }
    out.flush()?;
    Ok(())
}

fn local(store: &Path, query: &str) -> anyhow::Result<Vec<RecordBatch>> {
    if !store.join("FORMAT").exists() {
        bail!(
            "no Quiver store at {} (give --store DIR, or --url of a running server)",
            store.display()
        );
    }
    let store = Store::open(store).map_err(|e| match e {
        quiver_store::Error::Locked { .. } => {
            anyhow::anyhow!(
                "{e}\nA server has this store open: query it with --url http://HOST:PORT"
            )
        }
        other => anyhow::Error::new(other),
    })?;
    let batches = store.sql(query)?;
    store.close()?;
    Ok(batches)
}

fn remote(url: &str, query: &str) -> anyhow::Result<Vec<RecordBatch>> {
    let endpoint = format!("{}/api/2.0/quiver/sql", url.trim_end_matches('/'));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let body = serde_json::json!({ "query": query }).to_string();
    let mut resp = agent
        .post(&endpoint)
        .header("Accept", ARROW_STREAM)
        .content_type("application/json")
        .send(body)
        .with_context(|| format!("cannot reach {endpoint}"))?;
    let bytes = resp
        .body_mut()
        .with_config()
        .limit(u64::MAX)
        .read_to_vec()
        .context("reading the answer")?;
    if !resp.status().is_success() {
        let msg = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| {
                Some(format!(
                    "{}: {}",
                    v["error_code"].as_str()?,
                    v["message"].as_str()?
                ))
            })
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        bail!("the server refused the query ({}): {msg}", resp.status());
    }
    Ok(sql_output::from_arrow_ipc(&bytes)?)
}
