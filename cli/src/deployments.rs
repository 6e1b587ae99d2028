//! `quiver deployments`: record, list and remove deployments, on a store directory or through a
//! running server. While a deployment exists, the store refuses to delete the model version it
//! serves, its registered model and the run that produced it.

use clap::Subcommand;
use quiver_store::{CreateDeployment, Deployment};
use serde_json::{json, Value};

use crate::admin::{self, Backend, Connection, Format};

const DEPLOYMENTS: &str = "/api/2.0/quiver/deployments";

/// The `quiver deployments` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Record a deployment: a model version (or whatever version an alias points to) serving at
    /// a target. While it exists, that version, its model and its run cannot be deleted.
    ///
    /// Example: quiver deployments create fraud-prod --model fraud --alias champion
    /// --target k8s/prod-eu
    #[command(group(clap::ArgGroup::new("what").required(true).args(["version", "alias"])))]
    Create {
        /// Unique name of the deployment.
        name: String,
        /// The registered model deployed.
        #[arg(long)]
        model: String,
        /// The version deployed (or give --alias).
        #[arg(long)]
        version: Option<String>,
        /// The alias deployed: the deployment follows whatever version it points to.
        #[arg(long)]
        alias: Option<String>,
        /// Where it runs (free text: k8s/prod-eu, sagemaker:fraud ...).
        #[arg(long)]
        target: String,
        /// What the deployment is for.
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        conn: Connection,
    },
    /// List every deployment, by name, with the version each one serves now.
    List {
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        conn: Connection,
    },
    /// Remove a deployment record (its versions become deletable again; its history stays in
    /// `quiver models history`).
    Delete {
        /// The deployment's name.
        name: String,
        #[command(flatten)]
        conn: Connection,
    },
}

/// Runs a `quiver deployments` subcommand.
pub(crate) fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Create {
            name,
            model,
            version,
            alias,
            target,
            description,
            conn,
        } => {
            let req = CreateDeployment {
                name,
                model_name: model,
                version,
                alias,
                target,
                description,
            };
            let d = create(&conn, &req)?;
            let what = match (&d.alias, &d.version, &d.resolved_version) {
                (Some(alias), _, Some(v)) => format!("alias {alias} (version {v})"),
                (Some(alias), _, None) => format!("alias {alias}"),
                (None, Some(v), _) => format!("version {v}"),
                (None, None, _) => String::new(),
            };
            println!(
                "created deployment {}: {} {what} on {}",
                d.name, d.model_name, d.target
            );
            Ok(())
        }
        Command::List { format, conn } => {
            let deployments = list(&conn)?;
            match format {
                Format::Json => {
                    admin::print_json(&Value::Array(deployments.iter().map(to_json).collect()))
                }
                Format::Table => {
                    let rows: Vec<Vec<String>> = deployments
                        .iter()
                        .map(|d| {
                            vec![
                                d.name.clone(),
                                d.model_name.clone(),
                                d.version.clone().unwrap_or_default(),
                                d.alias.clone().unwrap_or_default(),
                                d.resolved_version.clone().unwrap_or_default(),
                                d.target.clone(),
                                d.user_id.clone(),
                                admin::rfc3339(d.creation_timestamp),
                                d.description.clone(),
                            ]
                        })
                        .collect();
                    admin::print_table(
                        &[
                            "name",
                            "model",
                            "version",
                            "alias",
                            "serving",
                            "target",
                            "user",
                            "created",
                            "description",
                        ],
                        &rows,
                    )
                }
            }
        }
        Command::Delete { name, conn } => {
            delete(&conn, &name)?;
            println!("deleted deployment {name}");
            Ok(())
        }
    }
}

fn create(conn: &Connection, req: &CreateDeployment) -> anyhow::Result<Deployment> {
    match Backend::open(conn)? {
        Backend::Local(store) => {
            let d = store
                .create_deployment(req, &conn.user)
                .map_err(admin::store_error)?;
            admin::close(store)?;
            Ok(d)
        }
        Backend::Remote(remote) => {
            let mut body = json!({
                "name": req.name,
                "model_name": req.model_name,
                "target": req.target,
            });
            for (key, value) in [
                ("version", &req.version),
                ("alias", &req.alias),
                ("description", &req.description),
            ] {
                if let Some(value) = value {
                    body[key] = json!(value);
                }
            }
            from_json(&remote.post(DEPLOYMENTS, &body)?["deployment"])
        }
    }
}

fn list(conn: &Connection) -> anyhow::Result<Vec<Deployment>> {
    match Backend::open(conn)? {
        Backend::Local(store) => {
            let all = store.deployments().map_err(admin::store_error)?;
            admin::close(store)?;
            Ok(all)
        }
        Backend::Remote(remote) => match &remote.get(DEPLOYMENTS)?["deployments"] {
            Value::Array(all) => all.iter().map(from_json).collect(),
            Value::Null => Ok(Vec::new()), // an empty list may be left out
            other => anyhow::bail!("the server's deployment list is not a list: {other}"),
        },
    }
}

fn delete(conn: &Connection, name: &str) -> anyhow::Result<()> {
    match Backend::open(conn)? {
        Backend::Local(store) => {
            store
                .delete_deployment(name, &conn.user)
                .map_err(admin::store_error)?;
            admin::close(store)
        }
        Backend::Remote(remote) => {
            remote.delete(&format!("{DEPLOYMENTS}/{}", admin::percent_encode(name)))?;
            Ok(())
        }
    }
}

/// A deployment as the REST API answers it (absent optional fields left out).
fn to_json(d: &Deployment) -> Value {
    let mut v = json!({
        "name": d.name,
        "model_name": d.model_name,
        "target": d.target,
        "description": d.description,
        "user_id": d.user_id,
        "creation_timestamp": d.creation_timestamp,
    });
    for (key, value) in [
        ("version", &d.version),
        ("alias", &d.alias),
        ("resolved_version", &d.resolved_version),
    ] {
        if let Some(value) = value {
            v[key] = json!(value);
        }
    }
    v
}

/// Reads a deployment from the REST API's JSON.
fn from_json(v: &Value) -> anyhow::Result<Deployment> {
    if !v.is_object() {
        anyhow::bail!("the server's answer holds no deployment: {v}");
    }
    Ok(Deployment {
        name: admin::json_str(v, "name"),
        model_name: admin::json_str(v, "model_name"),
        version: admin::json_opt_str(v, "version"),
        alias: admin::json_opt_str(v, "alias"),
        resolved_version: admin::json_opt_str(v, "resolved_version"),
        target: admin::json_str(v, "target"),
        description: admin::json_str(v, "description"),
        user_id: admin::json_str(v, "user_id"),
        creation_timestamp: admin::json_i64(v, "creation_timestamp")?,
    })
}
