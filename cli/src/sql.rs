//! `quiver sql`: run a read-only SQL query on a store directory, or on a running server.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context};
use quiver_store::arrow::datatypes::SchemaRef;
use quiver_store::arrow::ipc::reader::StreamReader;
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
/// writes the result in `format` to `output` or standard output. The result is written batch by
/// batch as it arrives (a text table excepted, which needs every row to size its columns); if
/// the query fails midway, the command fails after what was written.
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
    let out: Box<dyn Write + Send> = match output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    match url {
        Some(url) => {
            let (reader, complete) = remote(url, query)?;
            let schema = reader.schema();
            let cut_off = || {
                anyhow::anyhow!(
                    "the server cut the answer off: the query failed after its first rows \
                     (the server log says why); what was written is incomplete"
                )
            };
            let batches = reader.map(|b| b.map_err(|_| cut_off())).chain(
                std::iter::from_fn(|| {
                    (!complete.lock().unwrap().complete()).then(|| Err(cut_off()))
                })
                .take(1),
            );
            write(schema, batches, format, out)
        }
        None => local(store, query, |schema, batches| {
            write(
                schema,
                batches.map(|b| b.map_err(anyhow::Error::from)),
                format,
                out,
            )
        }),
    }
}

/// Writes `batches` in `format`.
fn write(
    schema: SchemaRef,
    batches: impl Iterator<Item = anyhow::Result<RecordBatch>>,
    format: Format,
    mut out: Box<dyn Write + Send>,
) -> anyhow::Result<()> {
    match format {
        Format::Table => {
            let batches = batches.collect::<anyhow::Result<Vec<_>>>()?;
            writeln!(out, "{}", sql_output::table(&batches)?)?;
        }
        Format::Csv => {
            let mut w = quiver_store::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut out);
            for batch in batches {
                w.write(&batch?)?;
            }
        }
        Format::Json => {
            let mut rows = sql_output::JsonRowsEncoder::new();
            out.write_all(b"[")?;
            for batch in batches {
                out.write_all(&rows.rows(&batch?)?)?;
            }
            out.write_all(b"]\n")?;
        }
        Format::Parquet => {
            let mut w = sql_output::ParquetEncoder::new(&mut out, schema)?;
            for batch in batches {
                w.write(&batch?)?;
            }
            w.finish()?;
        }
    }
    out.flush()?;
    Ok(())
}

/// Runs `query` on the store directory `store` and hands its streamed result to `consume`.
fn local(
    store: &Path,
    query: &str,
    consume: impl FnOnce(SchemaRef, &mut quiver_store::SqlStream) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
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
    let mut stream = store.sql_stream(query)?;
    consume(stream.schema(), &mut stream)?;
    drop(stream);
    store.close()?;
    Ok(())
}

/// Sends `query` to the server at `url` and reads its answer as an Arrow IPC stream, batch by
/// batch. An answer cut off by the server (the query failed midway) is an error.
/// A remote result: its batches, and whether the stream was complete (known at its end).
type Remote = (
    StreamReader<std::io::BufReader<Box<dyn Read + Send>>>,
    Arc<Mutex<Seen>>,
);

fn remote(url: &str, query: &str) -> anyhow::Result<Remote> {
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
    if !resp.status().is_success() {
        let bytes = resp
            .body_mut()
            .read_to_vec()
            .context("reading the answer")?;
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
    let (reader, complete) = Complete::new(resp.into_body().into_reader());
    let reader: Box<dyn Read + Send> = Box::new(reader);
    let batches = StreamReader::try_new_buffered(reader, None).context("reading the answer")?;
    Ok((batches, complete))
}

/// A reader of an Arrow IPC stream that records whether what it read ended with the
/// end-of-stream marker: Arrow's reader takes a stream cut off between two messages (the server
/// stops the answer when the query fails midway) for a complete one.
struct Complete<R> {
    inner: R,
    seen: Arc<Mutex<Seen>>,
}

/// What a [`Complete`] reader saw.
#[derive(Debug, Default)]
struct Seen {
    /// The last 8 bytes read.
    tail: Vec<u8>,
    failed: bool,
}

impl Seen {
    fn complete(&self) -> bool {
        const EOS: [u8; 8] = [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];
        !self.failed && self.tail.ends_with(&EOS)
    }
}

impl<R: Read> Complete<R> {
    fn new(inner: R) -> (Complete<R>, Arc<Mutex<Seen>>) {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let reader = Complete {
            inner,
            seen: seen.clone(),
        };
        (reader, seen)
    }
}

impl<R: Read> Read for Complete<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buf);
        let mut seen = self.seen.lock().unwrap();
        match &read {
            Ok(n) => {
                seen.tail.extend_from_slice(&buf[..*n]);
                let keep = seen.tail.len().saturating_sub(8);
                seen.tail.drain(..keep);
            }
            Err(_) => seen.failed = true,
        }
        read
    }
}
