//! `quiver gc`: deletes deleted runs and experiments for good (as `mlflow gc` does) and frees
//! the disk space of what nothing references any more (deleted or overwritten artifacts, metric
//! points of purged runs), on a store directory or through a running server.

use std::time::Duration;

use anyhow::Context;
use quiver_store::{PurgeReport, PurgeRequest};
use serde_json::{json, Value};

use crate::admin::{self, Backend, Connection};

const GC: &str = "/api/2.0/quiver/gc";

/// The arguments of `quiver gc`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Only runs deleted, and experiments last changed, at least this long ago
    /// (e.g. 30d, 1d2h3m4s, 90min).
    #[arg(long, value_parser = humantime::parse_duration)]
    older_than: Option<Duration>,
    /// Purge these deleted runs only (comma-separated ids).
    #[arg(long, value_delimiter = ',')]
    run_ids: Vec<String>,
    /// Purge these deleted experiments, with all their runs (comma-separated ids).
    #[arg(long, value_delimiter = ',')]
    experiment_ids: Vec<String>,
    /// Purge nothing: only free what nothing references (deleted and overwritten artifacts,
    /// points of runs purged earlier). Deleted runs stay restorable.
    #[arg(long, conflicts_with_all = ["run_ids", "experiment_ids", "older_than"])]
    unreferenced_only: bool,
    #[command(flatten)]
    conn: Connection,
}

/// Runs `quiver gc`.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let req = PurgeRequest {
        older_than: args.older_than,
        run_ids: args.run_ids,
        experiment_ids: args.experiment_ids,
    };
    let report = match Backend::open(&args.conn)? {
        Backend::Local(store) => {
            let report = if args.unreferenced_only {
                store.gc()
            } else {
                store.purge(&req)
            }
            .map_err(admin::store_error)?;
            admin::close(store)?;
            report
        }
        Backend::Remote(remote) => {
            let mut body = json!({
                "run_ids": req.run_ids,
                "experiment_ids": req.experiment_ids,
                "unreferenced_only": args.unreferenced_only,
            });
            if let Some(d) = req.older_than {
                body["older_than_ms"] = json!(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            }
            from_json(&remote.post(GC, &body)?)?
        }
    };
    println!(
        "purged {} runs and {} experiments; removed {} metric points and {} blobs ({}); {} blobs in use",
        report.runs_purged,
        report.experiments_purged,
        report.metric_points_removed,
        report.blobs.blobs_removed,
        human_bytes(report.blobs.bytes_freed),
        report.blobs.blobs_kept,
    );
    Ok(())
}

/// A report from the server's JSON answer.
fn from_json(v: &Value) -> anyhow::Result<PurgeReport> {
    let n = |key: &str| {
        v[key]
            .as_u64()
            .with_context(|| format!("the server's gc answer has no '{key}': {v}"))
    };
    Ok(PurgeReport {
        runs_purged: n("runs_purged")?,
        experiments_purged: n("experiments_purged")?,
        metric_points_removed: n("metric_points_removed")?,
        blobs: quiver_store::GcReport {
            blobs_removed: n("blobs_removed")?,
            bytes_freed: n("bytes_freed")?,
            blobs_kept: n("blobs_kept")?,
        },
    })
}

/// `bytes` for people: `512 B`, `1.5 MiB`, `2.0 GiB`.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_read_as_people_write_them() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(513 << 20), "513.0 MiB");
    }

    #[test]
    fn durations_in_mlflow_gc_style_parse() {
        let d = humantime::parse_duration("1d2h3m4s").unwrap();
        assert_eq!(d.as_secs(), 86_400 + 2 * 3600 + 3 * 60 + 4);
        assert!(humantime::parse_duration("soon").is_err());
    }
}
