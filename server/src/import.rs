//! Importing into a running server (`quiver import mlflow --url`): the store is the server's,
//! open and locked, so the import runs in the server process. The import itself (reading
//! MLflow's formats) belongs to the `quiver` binary, which hands this crate an [`Importer`]
//! when it starts the server; the route `POST /api/2.0/quiver/import` runs it and streams what
//! it reports back as lines of text.

use quiver_store::Store;

/// The last line of the answer to a successful import.
pub const IMPORT_OK: &str = "quiver-import: ok";
/// How the last line of the answer to a failed import starts (the reason follows).
pub const IMPORT_FAILED: &str = "quiver-import: failed: ";

/// What an import into the server is asked to do (the body of `POST /api/2.0/quiver/import`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRequest {
    /// The source, as the server's own filesystem or network sees it (a `sqlite:///` database,
    /// an `mlruns/` directory, an MLflow server URL).
    pub from: String,
    /// The artifact root of a database source.
    pub artifacts: Option<String>,
    /// Only say what would be imported.
    pub dry_run: bool,
    /// Skip what cannot be imported instead of stopping.
    pub skip_errors: bool,
}

/// Runs imports into the server's store; given by the binary that starts the server.
pub trait Importer: Send + Sync + std::fmt::Debug {
    /// Imports what `request` names into `store`, calling `report` with each line it has to
    /// say (progress, the summary, the verification); `Err` is why it failed. `report`
    /// answers false once nobody listens (the client went away): the import should then stop
    /// where it can resume.
    fn import(
        &self,
        store: &Store,
        request: &ImportRequest,
        report: &mut dyn FnMut(String) -> bool,
    ) -> Result<(), String>;
}
