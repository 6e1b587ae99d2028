//! `quiver metrics history RUN KEY`: a metric's points, streamed page by page (a series of
//! millions of points is never held whole), or `--sampled N` of them spread over the steps; on
//! a terminal, a sparkline of the series follows the table.

use std::io::{IsTerminal, Write};

use serde_json::Value;

use super::{get, text, Format};
use crate::runcmd::tracking::{Place, Tracking};

/// Points per page of `metrics/get-history`.
const PAGE: usize = 25_000;

/// Width of the sparkline, in characters.
const SPARK_WIDTH: usize = 60;

/// `quiver metrics ...`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// The points of one metric of a run (step, timestamp, value), in step order.
    ///
    /// Example: quiver metrics history 3f2a9c... train/loss --sampled 500
    History {
        /// The run's id.
        run_id: String,
        /// The metric's key.
        key: String,
        /// At most this many points, spread over the steps (first and last kept).
        #[arg(long)]
        sampled: Option<usize>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        place: Place,
    },
}

/// Runs a `quiver metrics` command.
pub(crate) fn run(command: Command) -> anyhow::Result<()> {
    let Command::History {
        run_id,
        key,
        sampled,
        format,
        place,
    } = command;
    let tracking = place.open()?;
    let result = history(&tracking, &run_id, &key, sampled, format);
    tracking.close()?;
    result
}

/// Writes points as they come, in one of the formats.
struct PointWriter<W: Write> {
    out: W,
    format: Format,
    written: usize,
}

impl<W: Write> PointWriter<W> {
    fn start(mut out: W, format: Format) -> anyhow::Result<Self> {
        match format {
            Format::Table => writeln!(out, "{:>12}  {:<24}  value", "step", "timestamp")?,
            Format::Csv => writeln!(out, "step,timestamp,value")?,
            Format::Json => write!(out, "[")?,
        }
        Ok(PointWriter {
            out,
            format,
            written: 0,
        })
    }

    fn point(&mut self, p: &Value) -> anyhow::Result<()> {
        let (step, value) = (text(p, "step"), text(p, "value"));
        match self.format {
            Format::Table => writeln!(
                self.out,
                "{step:>12}  {:<24}  {value}",
                super::time(p, "timestamp")
            )?,
            Format::Csv => writeln!(self.out, "{step},{},{value}", text(p, "timestamp"))?,
            Format::Json => {
                let sep = if self.written == 0 { "" } else { "," };
                write!(self.out, "{sep}\n  {p}")?;
            }
        }
        self.written += 1;
        Ok(())
    }

    fn finish(mut self) -> anyhow::Result<W> {
        if self.format == Format::Json {
            writeln!(self.out, "\n]")?;
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

fn history(
    tracking: &Tracking,
    run_id: &str,
    key: &str,
    sampled: Option<usize>,
    format: Format,
) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let terminal = stdout.is_terminal();
    let mut w = PointWriter::start(stdout.lock(), format)?;
    match sampled {
        Some(n) => {
            for p in sample(tracking, run_id, key, n)? {
                w.point(&p)?;
            }
        }
        None => {
            let mut token: Option<String> = None;
            loop {
                let page_size = PAGE.to_string();
                let mut query = vec![
                    ("run_id", run_id),
                    ("metric_key", key),
                    ("max_results", page_size.as_str()),
                ];
                if let Some(t) = &token {
                    query.push(("page_token", t));
                }
                let page = get(tracking, "/metrics/get-history", &query)?;
                for p in page["metrics"].as_array().into_iter().flatten() {
                    w.point(p)?;
                }
                match page["next_page_token"].as_str() {
                    Some(t) if !t.is_empty() => token = Some(t.to_string()),
                    _ => break,
                }
            }
        }
    }
    let written = w.written;
    let mut out = w.finish()?;
    if written == 0 {
        // MLflow answers an unknown key with no points; say so rather than print nothing.
        let run = get(tracking, "/runs/get", &[("run_id", run_id)])?;
        let keys: Vec<String> = run["run"]["data"]["metrics"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| text(m, "key"))
            .collect();
        anyhow::bail!(
            "run {run_id} has no metric '{key}' (its metrics: {})",
            if keys.is_empty() {
                "none".into()
            } else {
                keys.join(", ")
            }
        );
    }
    if terminal && format == Format::Table {
        let points = sample(tracking, run_id, key, SPARK_WIDTH)?;
        let values: Vec<f64> = points.iter().filter_map(|p| p["value"].as_f64()).collect();
        writeln!(out, "{}", sparkline(&values))?;
    }
    Ok(())
}

/// At most `n` points of the series, spread over its steps.
fn sample(tracking: &Tracking, run_id: &str, key: &str, n: usize) -> anyhow::Result<Vec<Value>> {
    let n = n.to_string();
    let page = get(
        tracking,
        "/metrics/get-history-bulk-interval",
        &[
            ("run_ids", run_id),
            ("metric_key", key),
            ("max_results", &n),
        ],
    )?;
    Ok(page["metrics"].as_array().cloned().unwrap_or_default())
}

/// One character per value, from `▁` (the least) to `█` (the greatest); a space for NaN and
/// infinities.
pub(crate) fn sparkline(values: &[f64]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let finite = values.iter().copied().filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    values
        .iter()
        .map(|&v| {
            if !v.is_finite() {
                ' '
            } else if hi > lo {
                BARS[(((v - lo) / (hi - lo)) * 7.0).round() as usize]
            } else {
                BARS[3]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sparklines_span_the_range() {
        assert_eq!(sparkline(&[0.0, 0.5, 1.0]), "▁▅█");
        assert_eq!(sparkline(&[2.0, 2.0]), "▄▄");
        assert_eq!(sparkline(&[1.0, f64::NAN, 3.0]), "▁ █");
        assert_eq!(sparkline(&[]), "");
    }

    #[test]
    fn points_are_written_in_each_format() {
        let p = json!({"key": "loss", "value": 0.5, "timestamp": 1000, "step": 3});
        let write = |format| {
            let mut w = PointWriter::start(Vec::new(), format).unwrap();
            w.point(&p).unwrap();
            w.point(&p).unwrap();
            String::from_utf8(w.finish().unwrap()).unwrap()
        };
        assert_eq!(
            write(Format::Csv),
            "step,timestamp,value\n3,1000,0.5\n3,1000,0.5\n"
        );
        let json: Value = serde_json::from_str(&write(Format::Json)).unwrap();
        assert_eq!(json, json!([p, p]));
        assert!(write(Format::Table).contains("1970-01-01T00:00:01.000Z  0.5"));
    }
}
