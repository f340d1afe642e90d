//! The engine's errors: what went wrong in the user's words, with the id involved.

use crate::catalog::CatalogError;
use crate::repo::RepoError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A request that can never succeed as given (bad size, name, id, codec).
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    /// The request is valid but the state of things refuses it now.
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("interrupted")]
    Interrupted,
    /// Reading a backup hit a damaged or missing repository object.
    #[error("backup {backup_id} is damaged: {source} (stored by backup {owner_id})")]
    Damaged {
        backup_id: String,
        owner_id: String,
        #[source]
        source: RepoError,
    },
    /// Data decoded cleanly but does not match what the backup recorded.
    #[error("backup {backup_id} failed verification: {object}: {reason}")]
    VerifyFailed {
        backup_id: String,
        object: String,
        reason: String,
    },
}

impl EngineError {
    pub fn io(path: impl std::fmt::Display, source: std::io::Error) -> Self {
        EngineError::Io {
            path: path.to_string(),
            source,
        }
    }
}
