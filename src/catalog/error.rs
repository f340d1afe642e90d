//! The catalog layer's errors.

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("catalog database: {code}: {message}")]
    Postgres { code: String, message: String },
    /// The catalog cannot be reached (a PostgreSQL server down or not answering).
    #[error("{0}")]
    Unavailable(String),
    /// A new incremental's parent was deleted or failed meanwhile.
    #[error("parent backup {parent} is no longer available")]
    ParentNotAvailable { parent: String },
    /// A job holds the volume.
    #[error("volume {volume} is busy ({job})")]
    VolumeBusy { volume: String, job: String },
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    #[error("{kind} named {name:?} already exists")]
    NameTaken { kind: &'static str, name: String },
    #[error(
        "{kind} name {name:?} is used in projects {projects:?}: give its id, or act for one project"
    )]
    Ambiguous {
        kind: &'static str,
        name: String,
        projects: Vec<String>,
    },
    #[error(transparent)]
    QuotaExceeded(#[from] crate::identity::quota::QuotaExceeded),
    /// The records contradict each other (a parent loop, say).
    #[error("catalog is inconsistent: {0}")]
    Corrupt(String),
    #[error("catalog directory {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl CatalogError {
    /// What SQLite answers when the catalog's disk is full (`SQLITE_FULL`), carrying
    /// `cause`: the form an injected catalog fault takes.
    #[cfg_attr(not(any(test, feature = "failpoints")), allow(dead_code))]
    pub(crate) fn disk_full(cause: std::io::Error) -> Self {
        CatalogError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            Some(cause.to_string()),
        ))
    }

    /// The catalog's disk is full: the caller may free space and try again.
    pub fn is_disk_full(&self) -> bool {
        matches!(
            self,
            CatalogError::Sqlite(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DiskFull
        )
    }
}
