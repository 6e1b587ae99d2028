//! `quiver experiments list|show`.

use serde_json::{json, Value};

use super::{text, time, Format, Listing};
use crate::runcmd::tracking::Place;

/// `quiver experiments ...`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// List the experiments (active ones; --all: deleted ones too).
    ///
    /// Example: quiver experiments list --format csv
    List {
        /// Deleted experiments too.
        #[arg(long)]
        all: bool,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        place: Place,
    },
    /// One experiment, by name or id: its fields and tags.
    ///
    /// Example: quiver experiments show demo
    Show {
        /// Its name (or id).
        experiment: String,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        place: Place,
    },
}

/// Runs a `quiver experiments` command.
pub(crate) fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::List { all, format, place } => {
            let tracking = place.open()?;
            let result = list(&tracking, all).and_then(|l| l.print(format));
            tracking.close()?;
            result
        }
        Command::Show {
            experiment,
            format,
            place,
        } => {
            let tracking = place.open()?;
            let result = super::experiment(&tracking, &experiment).and_then(|e| {
                if format == Format::Json {
                    return crate::admin::print_json(&e);
                }
                let mut l = Listing::new(&["field", "value"]);
                for key in [
                    "experiment_id",
                    "name",
                    "lifecycle_stage",
                    "artifact_location",
                ] {
                    l.push(vec![key.into(), text(&e, key)], Value::Null);
                }
                for key in ["creation_time", "last_update_time"] {
                    l.push(vec![key.into(), time(&e, key)], Value::Null);
                }
                for t in e["tags"].as_array().into_iter().flatten() {
                    l.push(
                        vec![format!("tag {}", text(t, "key")), text(t, "value")],
                        Value::Null,
                    );
                }
                l.print(format)
            });
            tracking.close()?;
            result
        }
    }
}

/// Every experiment, page by page.
fn list(tracking: &crate::runcmd::tracking::Tracking, all: bool) -> anyhow::Result<Listing> {
    let mut l = Listing::new(&["experiment_id", "name", "lifecycle_stage", "creation_time"]);
    let mut token: Option<String> = None;
    loop {
        let mut body = json!({
            "max_results": 1000,
            "view_type": if all { "ALL" } else { "ACTIVE_ONLY" },
            "order_by": ["creation_time ASC"],
        });
        if let Some(t) = &token {
            body["page_token"] = json!(t);
        }
        let page = tracking.mlflow("/experiments/search", &body)?;
        for e in page["experiments"].as_array().into_iter().flatten() {
            l.push(
                vec![
                    text(e, "experiment_id"),
                    text(e, "name"),
                    text(e, "lifecycle_stage"),
                    time(e, "creation_time"),
                ],
                e.clone(),
            );
        }
        match page["next_page_token"].as_str() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => return Ok(l),
        }
    }
}
