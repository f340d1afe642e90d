//! The last state change of a job (`error`, `available`) must reach the user even when the
//! catalog cannot take it right now: the catalog shares the disk that just filled up, or
//! SQLite is busy. Such a change is kept here, shown by every read of its record, and
//! retried on each read until the catalog takes it, so a job never stays `creating` or
//! `restoring` because its final write failed. A server that stops with changes still
//! pending loses nothing either: the next start marks what was running as interrupted.

use crate::kinds::Status;
use std::collections::HashMap;
use std::sync::Mutex;

use crate::catalog::{BackupRecord, Catalog, VolumeRecord};

use super::lock;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Record {
    Backup(String),
    Volume(String),
}

#[derive(Debug, Clone)]
struct Change {
    status: Status,
    reason: String,
}

#[derive(Default)]
pub(super) struct PendingStates {
    changes: Mutex<HashMap<Record, Change>>,
}

/// One attempt to write a change. A panic in the catalog counts as a failed attempt: the
/// change stays pending rather than being lost with the thread.
fn write(catalog: &Catalog, record: &Record, change: &Change) -> Result<(), String> {
    let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match record {
        Record::Backup(id) => catalog.set_backup_status(id, change.status, &change.reason),
        Record::Volume(id) => catalog.set_volume_status(id, change.status, &change.reason),
    }));
    match attempt {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the catalog panicked".to_string()),
    }
}

impl PendingStates {
    /// Sets a record's status, or keeps the change for later when the catalog refuses it
    /// (logged: the operator should know the catalog's disk is full).
    pub(super) fn set(&self, catalog: &Catalog, record: Record, status: Status, reason: &str) {
        let change = Change {
            status,
            reason: reason.to_string(),
        };
        let mut changes = lock(&self.changes);
        match write(catalog, &record, &change) {
            Ok(()) => {
                changes.remove(&record);
            }
            Err(e) => {
                tracing::error!(?record, %status, error = %e, "catalog refused a state change; kept in memory and retried");
                changes.insert(record, change);
            }
        }
    }

    /// Tries every kept change again; those the catalog takes are forgotten.
    pub(super) fn retry(&self, catalog: &Catalog) {
        let mut changes = lock(&self.changes);
        if changes.is_empty() {
            return;
        }
        changes.retain(|record, change| write(catalog, record, change).is_err());
    }

    pub(super) fn overlay_backup(&self, b: &mut BackupRecord) {
        if let Some(c) = lock(&self.changes).get(&Record::Backup(b.id.clone())) {
            b.status = c.status;
            b.error.clone_from(&c.reason);
        }
    }

    pub(super) fn overlay_volume(&self, v: &mut VolumeRecord) {
        if let Some(c) = lock(&self.changes).get(&Record::Volume(v.id.clone())) {
            v.status = c.status;
            v.error.clone_from(&c.reason);
        }
    }

    /// A record deleted meanwhile has nothing left to change.
    pub(super) fn forget(&self, record: &Record) {
        lock(&self.changes).remove(record);
    }
}
