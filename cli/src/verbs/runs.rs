//! `quiver runs list|show`.

use serde_json::{json, Value};

use super::{get, text, time, Format, Listing};
use crate::runcmd::tracking::{Place, Tracking};

/// `quiver runs ...`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// List runs, newest first, optionally filtered with MLflow's search grammar.
    ///
    /// Example: quiver runs list --experiment demo --filter "metrics.acc > 0.9" --order-by "metrics.acc DESC"
    List {
        /// The experiment (name or id; repeatable; default: every active experiment).
        #[arg(long = "experiment")]
        experiments: Vec<String>,
        /// An MLflow search filter (`params.lr = '0.1' and metrics.loss < 0.5`).
        #[arg(long, default_value = "")]
        filter: String,
        /// An order (`metrics.loss ASC`, `attributes.start_time DESC`; repeatable).
        #[arg(long = "order-by")]
        order_by: Vec<String>,
        /// Most runs to list.
        #[arg(long, default_value_t = 100)]
        max: usize,
        /// Deleted runs too.
        #[arg(long)]
        all: bool,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        place: Place,
    },
    /// One run: its fields, params, tags, latest metrics, dataset inputs and artifacts.
    ///
    /// Example: quiver runs show 3f2a9c...
    Show {
        /// The run's id.
        run_id: String,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        place: Place,
    },
}

/// Runs a `quiver runs` command.
pub(crate) fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::List {
            experiments,
            filter,
            order_by,
            max,
            all,
            format,
            place,
        } => {
            let tracking = place.open()?;
            let result = list(&tracking, &experiments, &filter, &order_by, max, all)
                .and_then(|l| l.print(format));
            tracking.close()?;
            result
        }
        Command::Show {
            run_id,
            format,
            place,
        } => {
            let tracking = place.open()?;
            let result = show(&tracking, &run_id, format);
            tracking.close()?;
            result
        }
    }
}

/// The ids of the experiments named, or of every active one.
fn experiment_ids(tracking: &Tracking, named: &[String]) -> anyhow::Result<Vec<String>> {
    if !named.is_empty() {
        return named
            .iter()
            .map(|n| Ok(text(&super::experiment(tracking, n)?, "experiment_id")))
            .collect();
    }
    let found = tracking.mlflow(
        "/experiments/search",
        &json!({"max_results": 50000, "view_type": "ACTIVE_ONLY"}),
    )?;
    Ok(found["experiments"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| text(e, "experiment_id"))
        .collect())
}

fn list(
    tracking: &Tracking,
    experiments: &[String],
    filter: &str,
    order_by: &[String],
    max: usize,
    all: bool,
) -> anyhow::Result<Listing> {
    let ids = experiment_ids(tracking, experiments)?;
    let mut l = Listing::new(&[
        "run_id",
        "run_name",
        "experiment_id",
        "status",
        "start_time",
        "seconds",
    ]);
    let mut token: Option<String> = None;
    while l.rows.len() < max {
        let mut body = json!({
            "experiment_ids": ids,
            "filter": filter,
            "order_by": order_by,
            "max_results": (max - l.rows.len()).min(1000),
            "run_view_type": if all { "ALL" } else { "ACTIVE_ONLY" },
        });
        if let Some(t) = &token {
            body["page_token"] = json!(t);
        }
        let page = tracking.mlflow("/runs/search", &body)?;
        for r in page["runs"].as_array().into_iter().flatten() {
            let info = &r["info"];
            let seconds = match (
                crate::admin::json_i64(info, "start_time"),
                crate::admin::json_i64(info, "end_time"),
            ) {
                (Ok(s), Ok(e)) => format!("{:.1}", (e - s) as f64 / 1000.0),
                _ => String::new(),
            };
            l.push(
                vec![
                    text(info, "run_id"),
                    text(info, "run_name"),
                    text(info, "experiment_id"),
                    text(info, "status"),
                    time(info, "start_time"),
                    seconds,
                ],
                r.clone(),
            );
        }
        match page["next_page_token"].as_str() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => break,
        }
    }
    Ok(l)
}

fn show(tracking: &Tracking, run_id: &str, format: Format) -> anyhow::Result<()> {
    let run = get(tracking, "/runs/get", &[("run_id", run_id)])?["run"].clone();
    let artifacts = super::artifacts::listing(tracking, run_id, "", true)?;
    if format == Format::Json {
        let mut run = run;
        run["artifacts"] = Value::Array(artifacts.json);
        return crate::admin::print_json(&run);
    }
    let info = &run["info"];
    let mut l = Listing::new(&["section", "key", "value"]);
    let mut row = |section: &str, key: String, value: String| {
        l.push(vec![section.to_string(), key, value], Value::Null);
    };
    for key in [
        "run_id",
        "run_name",
        "experiment_id",
        "status",
        "lifecycle_stage",
        "user_id",
        "artifact_uri",
    ] {
        row("info", key.into(), text(info, key));
    }
    for key in ["start_time", "end_time"] {
        row("info", key.into(), time(info, key));
    }
    let data = &run["data"];
    for p in data["params"].as_array().into_iter().flatten() {
        row("param", text(p, "key"), text(p, "value"));
    }
    for m in data["metrics"].as_array().into_iter().flatten() {
        row(
            "metric",
            text(m, "key"),
            format!("{} (step {})", text(m, "value"), text(m, "step")),
        );
    }
    for t in data["tags"].as_array().into_iter().flatten() {
        row("tag", text(t, "key"), text(t, "value"));
    }
    for d in run["inputs"]["dataset_inputs"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let ds = &d["dataset"];
        row(
            "dataset",
            text(ds, "name"),
            format!(
                "digest {} ({})",
                text(ds, "digest"),
                text(ds, "source_type")
            ),
        );
    }
    for (r, _) in artifacts.rows.iter().zip(&artifacts.json) {
        row("artifact", r[0].clone(), r[2].clone());
    }
    l.print(format)
}
