//! blockdelta: block-volume backups with exact 4 KiB change bitmaps.
//!
//! Layers, arrows pointing one way:
//! `api → export, delta → engine → repo, catalog`, and `export → delta` for delta
//! volumes. `api` names neither the catalog, the repository nor the target. The
//! target is reached in two places: `export → target-emulator` (the exports run the
//! `Target`) and `delta → target_emulator::Lun` (a delta volume is a logical unit).
//! - [`repo`]: pack/extent store, backup indexes, the chain read path.
//! - [`catalog`]: volumes, backups, delta sources, attachments, audit log (SQLite).
//! - [`clock`]: "now", for every layer.
//! - [`identity`]: callers, roles, tokens, the RPC access rules, volume roots, quota arithmetic.
//! - [`engine`]: backup, restore, verify pipelines and the service logic.
//! - [`delta`]: the delta use case (`Deltas`): rules, map, listings, the delta volume.
//! - [`export`]: attachments on the built-in iSCSI target.
//! - [`api`]: tonic services (blockdelta and CSI) and the one error → `Status` mapping.
//! - [`config`]: the server's configuration (defaults, file, env, flags).
//! - [`scan`]: `blockdelta scan`, Oracle's GET LBA STATUS walk over the built-in initiator.

pub mod api;
mod catalog;
mod clock;
pub mod config;
mod delta;
mod engine;
mod export;
mod faults;
mod identity;
mod kinds;
mod lifecycle;
pub mod metrics;
mod repo;
pub mod scan;
mod sync;
mod tracking;

// What the server binary wires together; everything else stays inside the crate.
pub use delta::Deltas;
pub use engine::{CopyReport, EngineError, Service, copy_repository};
pub use export::{ExportConfig, Exports};
pub use repo::S3Settings;
pub use repo::store::RepositoryLocation;
