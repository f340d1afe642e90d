//! blockdelta: block-volume backups with exact 4 KiB change bitmaps.
//!
//! Layers, arrows pointing one way:
//! `api → export → engine, delta → repo, catalog` (and `delta → target-emulator`
//! through its `Lun` trait only).
//! - [`repo`]: pack/extent store, backup indexes, the chain read path.
//! - [`catalog`]: volumes, backups, delta sources, attachments, audit log (SQLite).
//! - [`engine`]: backup, restore, verify pipelines and the service logic.
//! - [`delta`]: deltas between two backups, the delta volume (a LUN).
//! - [`export`]: attachments on the built-in iSCSI target.
//! - [`api`]: tonic services (blockdelta and CSI) and the one error → `Status` mapping.
//! - [`config`]: the server's configuration (defaults, file, env, flags).

pub mod api;
pub mod catalog;
pub mod clock;
pub mod config;
pub mod delta;
pub mod engine;
pub mod export;
mod faults;
pub mod repo;
