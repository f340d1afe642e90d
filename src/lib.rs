//! blockdelta: block-volume backups with exact 4 KiB change bitmaps.
//!
//! Layers, arrows pointing one way: `api → engine → repo, catalog`.
//! - [`repo`]: pack/extent store, backup indexes, the chain read path.
//! - [`catalog`]: volumes, backups, audit log (SQLite).
//! - [`engine`]: backup, restore, verify pipelines and the service logic.
//! - [`api`]: tonic services and the one error → `Status` mapping.
//! - [`config`]: the server's configuration (defaults, file, env, flags).

pub mod api;
pub mod catalog;
pub mod config;
pub mod engine;
pub mod repo;
