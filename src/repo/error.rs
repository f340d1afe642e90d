//! The repository layer's errors, in the user's words, each naming the object involved.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("repository I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A stored object failed a check (magic, length, blake3). `object` names it
    /// (e.g. `pack 3fa1…@4096` or `index bkp-…`) so an operator can find it.
    #[error("damaged repository object {object}: {reason}")]
    Corrupt { object: String, reason: String },
    #[error("repository object {object} not found")]
    NotFound { object: String },
    /// The object store did not answer as it should (unreachable, refused, timed out).
    #[error("object storage {object} at {endpoint}: {reason}")]
    Remote {
        object: String,
        endpoint: String,
        reason: String,
    },
    #[error("unknown compression {0:?} (expected none, zlib, bz2 or zstd)")]
    UnknownCodec(String),
}

impl RepoError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        RepoError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(object: impl Into<String>, reason: impl Into<String>) -> Self {
        RepoError::Corrupt {
            object: object.into(),
            reason: reason.into(),
        }
    }
}
