//! `quiver import mlflow --url`: an import into a running `quiver server`, whose store is open
//! and locked. The server runs the import itself ([`ServerImporter`], handed to it at start)
//! and streams its report back; this side sends the request and prints the lines. The server
//! reads the source from its own disk, so local paths are sent absolute.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use quiver_server::import::{ImportRequest, Importer, IMPORT_FAILED, IMPORT_OK};
use quiver_store::Store;
use serde_json::{json, Value};

use super::{import_with, MlflowArgs, OnError, Report};

/// Asks the server at `url` to import what `args` names, printing its report as it comes.
pub(crate) fn import(url: &str, args: &MlflowArgs) -> anyhow::Result<()> {
    let artifacts = match &args.artifacts {
        Some(p) => Some(std::path::absolute(p)?.display().to_string()),
        None => None,
    };
    let body = json!({
        "from": absolute_source(&args.from)?,
        "artifacts": artifacts,
        "dry_run": args.dry_run,
        "on_error": if args.on_error == OnError::Skip { "skip" } else { "stop" },
    });
    let endpoint = format!("{}/api/2.0/quiver/import", url.trim_end_matches('/'));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let resp = agent
        .post(&endpoint)
        .content_type("application/json")
        .send(body.to_string())
        .with_context(|| format!("cannot reach {endpoint} (is `quiver server` running there?)"))?;
    if !resp.status().is_success() {
        let status = resp.status();
        let text = resp
            .into_body()
            .read_to_string()
            .unwrap_or_else(|e| e.to_string());
        let refusal = serde_json::from_str::<Value>(&text).ok().and_then(|v| {
            Some(format!(
                "{}: {}",
                v["error_code"].as_str()?,
                v["message"].as_str()?
            ))
        });
        bail!(refusal.unwrap_or_else(|| format!("the server answered {status}: {}", text.trim())));
    }
    let lines = BufReader::new(resp.into_body().into_reader()).lines();
    for line in lines {
        let line = line.context("reading the server's report")?;
        if line == IMPORT_OK {
            return Ok(());
        }
        if let Some(why) = line.strip_prefix(IMPORT_FAILED) {
            return Err(anyhow!("{why}"));
        }
        println!("{line}");
    }
    bail!("the server stopped answering before the import ended (see its log)")
}

/// `from` with a local path made absolute (`sqlite:///` URIs keep their form); URLs as given.
fn absolute_source(from: &str) -> anyhow::Result<String> {
    if from.starts_with("http://") || from.starts_with("https://") || from.starts_with("file://") {
        return Ok(from.to_string());
    }
    if let Some(path) = from.strip_prefix("sqlite:///") {
        let absolute = std::path::absolute(PathBuf::from(path))?;
        return Ok(format!("sqlite:///{}", absolute.display()));
    }
    Ok(std::path::absolute(from)?.display().to_string())
}

/// What runs the imports a server is asked for, into its store at `store_dir`.
#[derive(Debug)]
pub(crate) struct ServerImporter {
    /// The store's directory (the import's journal lives under it).
    pub(crate) store_dir: PathBuf,
}

impl Importer for ServerImporter {
    fn import(
        &self,
        store: &Store,
        request: &ImportRequest,
        report: &mut dyn FnMut(String) -> bool,
    ) -> Result<(), String> {
        let args = MlflowArgs {
            from: request.from.clone(),
            artifacts: request.artifacts.as_ref().map(PathBuf::from),
            store: self.store_dir.clone(),
            url: None,
            dry_run: request.dry_run,
            on_error: if request.skip_errors {
                OnError::Skip
            } else {
                OnError::Stop
            },
        };
        let report = Report::lines(report);
        import_with(store, &args, &report).map_err(|e| format!("{e:#}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_sources_are_sent_absolute() {
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            absolute_source("sqlite:///m.db").unwrap(),
            format!("sqlite:///{}/m.db", cwd.display())
        );
        assert_eq!(
            absolute_source("sqlite:////abs/m.db").unwrap(),
            "sqlite:////abs/m.db"
        );
        assert_eq!(
            absolute_source("mlruns").unwrap(),
            format!("{}/mlruns", cwd.display())
        );
        assert_eq!(absolute_source("http://h:5000").unwrap(), "http://h:5000");
    }
}
