//! The engine: backup, restore and verify as streaming pipelines over volumes and
//! the repository, and the service logic that runs them as background jobs and
//! keeps the catalog in step. It never speaks gRPC: `api` adapts it.

pub mod backup;
mod copy;
pub mod error;
pub mod restore;
pub mod service;
pub mod source;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// What the service hands its callers: records as the catalog keeps them, and the
/// storage errors inside its own (the API turns them into messages and codes).
/// Callers take them from here, not from the storage layers.
pub use crate::catalog::{
    AttachmentRecord, BackupRecord, CatalogError, PolicyRecord, RunRecord, Status, VolumeRecord,
};
pub use crate::repo::RepoError;
pub use copy::{CopyReport, copy_repository};
pub use error::{Denial, EngineError, InvalidRequest, Refusal};
pub use service::cluster::{ClusterSettings, DEFAULT_LEASE, check_node_name, default_node_name};
pub use service::{PolicyView, ReportView, Service};

/// Shared between a running job and whoever watches or cancels it.
#[derive(Debug, Default)]
pub struct JobControl {
    cancelled: AtomicBool,
    done: AtomicU64,
    total: AtomicU64,
}

impl JobControl {
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    pub fn set_total(&self, total: u64) {
        self.total.store(total, Ordering::Relaxed);
    }

    pub fn add_done(&self, bytes: u64) {
        self.done.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn set_done(&self, bytes: u64) {
        self.done.store(bytes, Ordering::Relaxed);
    }

    /// (bytes done, bytes total).
    pub fn progress(&self) -> (u64, u64) {
        (
            self.done.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
        )
    }
}

/// Worker threads for hashing/compression and for restore: every core.
pub fn worker_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 16)
}
