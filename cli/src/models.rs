//! `quiver models`: the model registry from the command line (for now, the history of a
//! registered model), on a store directory or through a running server.

use clap::Subcommand;
use quiver_store::RegistryEvent;
use serde_json::{json, Value};

use crate::admin::{self, Backend, Connection, Format};

/// The `quiver models` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Show every recorded change of a registered model, oldest first: who changed what, when,
    /// and the value before and after (creation, renames, descriptions, tags, versions, stage
    /// transitions, aliases, deployments, deletes).
    ///
    /// Example: quiver models history fraud --url http://127.0.0.1:5000
    History {
        /// The registered model (any name it has had; a deleted model's history stays).
        name: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        conn: Connection,
    },
}

/// Runs a `quiver models` subcommand.
pub(crate) fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::History { name, format, conn } => {
            let events = history(&conn, &name)?;
            if events.is_empty() {
                anyhow::bail!("no recorded changes of a registered model named '{name}'");
            }
            match format {
                Format::Json => {
                    admin::print_json(&Value::Array(events.iter().map(to_json).collect()))
                }
                Format::Table => {
                    let rows: Vec<Vec<String>> = events
                        .iter()
                        .map(|e| {
                            vec![
                                e.seq.to_string(),
                                admin::rfc3339(e.time),
                                e.time.to_string(),
                                e.user_id.clone(),
                                e.action.clone(),
                                e.version.clone().unwrap_or_default(),
                                e.key.clone().unwrap_or_default(),
                                change(e),
                            ]
                        })
                        .collect();
                    admin::print_table(
                        &[
                            "seq", "time", "ms", "user", "action", "version", "key", "change",
                        ],
                        &rows,
                    )
                }
            }
        }
    }
}

fn history(conn: &Connection, name: &str) -> anyhow::Result<Vec<RegistryEvent>> {
    match Backend::open(conn)? {
        Backend::Local(store) => {
            let events = store
                .registry_events(Some(name))
                .map_err(admin::store_error)?;
            admin::close(store)?;
            Ok(events)
        }
        Backend::Remote(remote) => {
            let path = format!(
                "/api/2.0/quiver/registry-events?name={}",
                admin::percent_encode(name)
            );
            match &remote.get(&path)?["events"] {
                Value::Array(all) => all.iter().map(from_json).collect(),
                Value::Null => Ok(Vec::new()), // an empty list may be left out
                other => anyhow::bail!("the server's event list is not a list: {other}"),
            }
        }
    }
}

/// `before → after`, with an empty side left blank (`"" → "Staging"` reads as `→ Staging`).
fn change(e: &RegistryEvent) -> String {
    match (&e.before, &e.after) {
        (None, None) => String::new(),
        (before, after) => format!(
            "{} → {}",
            before.as_deref().unwrap_or(""),
            after.as_deref().unwrap_or("")
        )
        .trim()
        .to_string(),
    }
}

/// An event as the REST API answers it, plus `time_utc` (RFC 3339).
fn to_json(e: &RegistryEvent) -> Value {
    let mut v = json!({
        "seq": e.seq,
        "time": e.time,
        "time_utc": admin::rfc3339(e.time),
        "user_id": e.user_id,
        "action": e.action,
        "model_name": e.model_name,
    });
    for (key, value) in [
        ("version", &e.version),
        ("key", &e.key),
        ("before", &e.before),
        ("after", &e.after),
    ] {
        if let Some(value) = value {
            v[key] = json!(value);
        }
    }
    v
}

/// Reads an event from the REST API's JSON.
fn from_json(v: &Value) -> anyhow::Result<RegistryEvent> {
    Ok(RegistryEvent {
        seq: u64::try_from(admin::json_i64(v, "seq")?)?,
        time: admin::json_i64(v, "time")?,
        user_id: admin::json_str(v, "user_id"),
        action: admin::json_str(v, "action"),
        model_name: admin::json_str(v, "model_name"),
        version: admin::json_opt_str(v, "version"),
        key: admin::json_opt_str(v, "key"),
        before: admin::json_opt_str(v, "before"),
        after: admin::json_opt_str(v, "after"),
    })
}
