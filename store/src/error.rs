//! Typed errors of the store.
//!
//! Every user-facing failure is one of four variants that map one-to-one onto MLflow's error codes
//! ([`ErrorCode`]); the server turns them into `{"error_code", "message"}` bodies without having to
//! inspect messages. Everything else (I/O, corruption, a locked directory) is an internal error.

use std::path::PathBuf;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error from the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The named entity does not exist (MLflow `RESOURCE_DOES_NOT_EXIST`).
    #[error("{0}")]
    NotFound(String),
    /// An entity with that identity exists already (MLflow `RESOURCE_ALREADY_EXISTS`).
    #[error("{0}")]
    AlreadyExists(String),
    /// The request is malformed or breaks a rule (MLflow `INVALID_PARAMETER_VALUE`).
    #[error("{0}")]
    InvalidParameter(String),
    /// The entity is in a state that forbids the operation (MLflow `INVALID_STATE`).
    #[error("{0}")]
    InvalidState(String),
    /// Another process holds the store directory open.
    #[error("store at {path} is locked by pid {pid}; stop that process or open another directory")]
    Locked {
        /// The store directory.
        path: PathBuf,
        /// The process that holds the lock, as recorded in the lock file (0 if unknown).
        pid: u32,
    },
    /// A file of the store does not hold what it should. Never a panic: the caller decides.
    #[error("data corruption in {path}: {detail}")]
    Corruption {
        /// The damaged file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// An I/O operation failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The store hit a write failure earlier (for example a failed fsync) and refuses further
    /// writes until it has recovered from its durable state (which it retries by itself), so
    /// that no write is acknowledged that might not be durable.
    #[error("store refuses writes after an earlier failure: {0}")]
    Poisoned(String),
    /// The disk the store writes to is full (`ENOSPC`, or a quota): the write was not made.
    /// Writes succeed again once space is freed, without restarting.
    #[error("the store's disk is full: {0}; writes resume once space is freed")]
    DiskFull(String),
    /// An internal invariant or library call failed (Parquet, the catalog engine, a format version).
    #[error("internal error: {0}")]
    Internal(String),
}

/// MLflow's error codes, as the REST API reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// `RESOURCE_DOES_NOT_EXIST` (HTTP 404).
    ResourceDoesNotExist,
    /// `RESOURCE_ALREADY_EXISTS` (HTTP 400).
    ResourceAlreadyExists,
    /// `INVALID_PARAMETER_VALUE` (HTTP 400).
    InvalidParameterValue,
    /// `INVALID_STATE` (HTTP 500 in MLflow).
    InvalidState,
    /// `RESOURCE_EXHAUSTED`: the store's disk is full (HTTP 507 here).
    ResourceExhausted,
    /// `INTERNAL_ERROR` (HTTP 500).
    InternalError,
}

impl ErrorCode {
    /// The code as MLflow spells it on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ResourceDoesNotExist => "RESOURCE_DOES_NOT_EXIST",
            ErrorCode::ResourceAlreadyExists => "RESOURCE_ALREADY_EXISTS",
            ErrorCode::InvalidParameterValue => "INVALID_PARAMETER_VALUE",
            ErrorCode::InvalidState => "INVALID_STATE",
            ErrorCode::ResourceExhausted => "RESOURCE_EXHAUSTED",
            ErrorCode::InternalError => "INTERNAL_ERROR",
        }
    }
}

impl Error {
    /// The MLflow error code this error is reported as.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::NotFound(_) => ErrorCode::ResourceDoesNotExist,
            Error::AlreadyExists(_) => ErrorCode::ResourceAlreadyExists,
            Error::InvalidParameter(_) => ErrorCode::InvalidParameterValue,
            Error::InvalidState(_) => ErrorCode::InvalidState,
            _ if self.is_disk_full() => ErrorCode::ResourceExhausted,
            _ => ErrorCode::InternalError,
        }
    }

    /// Whether this is a full disk: [`Error::DiskFull`], or an I/O error `ENOSPC`/`EDQUOT`.
    pub fn is_disk_full(&self) -> bool {
        match self {
            Error::DiskFull(_) => true,
            Error::Io { source, .. } => is_disk_full(source),
            _ => false,
        }
    }

    /// The message to show a remote client: like `Display`, but without the paths of the
    /// server's files (log the error itself for the operator).
    pub fn public_message(&self) -> String {
        match self {
            Error::Io { source, .. } if is_disk_full(source) => {
                format!("the store's disk is full ({source}); writes resume once space is freed")
            }
            Error::Io { source, .. } => format!("I/O error in the store: {source}"),
            Error::Corruption { detail, .. } => {
                format!("data corruption in a store file: {detail}")
            }
            Error::Locked { pid, .. } => format!("the store is locked by pid {pid}"),
            other => other.to_string(),
        }
    }
    /// Wraps an I/O error with the path it concerns.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A corruption error for `path`.
    pub(crate) fn corruption(path: impl Into<PathBuf>, detail: impl Into<String>) -> Self {
        Error::Corruption {
            path: path.into(),
            detail: detail.into(),
        }
    }
}

/// Whether an I/O error means the disk is full (`ENOSPC`) or a quota is exhausted (`EDQUOT`).
pub(crate) fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
        || e.kind() == std::io::ErrorKind::StorageFull
}

/// Attaches a path to `std::io::Result`s.
pub(crate) trait IoContext<T> {
    /// Maps the error to [`Error::Io`] naming `path`.
    fn at(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
