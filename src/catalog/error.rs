//! The catalog layer's errors.

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    #[error("{kind} named {name:?} already exists")]
    NameTaken { kind: &'static str, name: String },
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
