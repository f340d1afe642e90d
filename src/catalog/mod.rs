//! The catalog: volumes, backups, projects, tokens, quotas and the audit log in SQLite. It holds what the
//! service says about things (names, status, progress, errors); the bytes and
//! the truth about what a backup contains live in the repository, from which
//! `recover` can rebuild this database.
//!
//! Never does I/O on volumes or the repository. This file: opening it, the column forms of
//! the kinds, and what spans volumes and backups at once (a restore's start, a restart's
//! interrupted jobs); [`volumes`], [`backups`], [`audit`], [`identity`], [`quotas`],
//! [`attachments`] and [`deltas`] hold the rest, one table family each.

pub mod attachments;
mod audit;
mod backups;
pub mod deltas;
pub mod error;
pub mod identity;
mod migrations;
mod quotas;
mod volumes;

use crate::faults::fault;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, params};

pub use attachments::AttachmentRecord;
pub use audit::audit_line;
pub use backups::{BackupRecord, well_formed_backup_id};
pub use deltas::DeltaSourceRecord;
pub use error::CatalogError;
pub use identity::{ProjectRecord, TokenRecord};
pub use volumes::VolumeRecord;
pub(crate) use volumes::{insert_volume_row, volume_ask};

pub use crate::kinds::{BackupKind, Status, VolumeKind};

/// The one place the kinds and states meet their column text.
macro_rules! text_column {
    ($($t:ty),+) => {$(
        impl rusqlite::types::ToSql for $t {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(self.as_str().into())
            }
        }

        impl rusqlite::types::FromSql for $t {
            fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
                let text = v.as_str()?;
                <$t>::parse(text).ok_or_else(|| {
                    rusqlite::types::FromSqlError::Other(
                        format!("unknown {} {text:?}", stringify!($t)).into(),
                    )
                })
            }
        }
    )+};
}
text_column!(BackupKind, Status, VolumeKind, Role, QuotaResource);
use crate::kinds::{QuotaResource, Role};

pub struct Catalog {
    conn: Mutex<Connection>,
}

impl Catalog {
    pub fn open(path: &Path) -> Result<Catalog, CatalogError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| CatalogError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        migrations::migrate(&mut conn)?;
        Ok(Catalog {
            conn: Mutex::new(conn),
        })
    }

    pub(crate) fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        crate::sync::lock(&self.conn)
    }

    /// Starts a restore in one transaction, so no failure (or panic) between two writes can
    /// leave a volume `restoring` with no job behind it: the fresh target volume is
    /// inserted as `restoring` (an existing one marked so), and the backup `restoring`.
    pub fn begin_restore(
        &self,
        volume: &VolumeRecord,
        fresh: bool,
        backup_id: &str,
    ) -> Result<(), CatalogError> {
        fault!("catalog.begin_restore", CatalogError::disk_full);
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        if fresh {
            quotas::reserve_on(&tx, &volume.project, volume_ask(volume))?;
            insert_volume_row(&tx, volume)?;
        } else {
            tx.execute(
                "UPDATE volumes SET status = ?2, error = '' WHERE id = ?1",
                params![volume.id, Status::Restoring],
            )?;
        }
        tx.execute(
            "UPDATE backups SET status = ?2, error = '' WHERE id = ?1",
            params![backup_id, Status::Restoring],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// After a restart nothing is running: whatever was in flight ended then.
    /// Returns how many records were changed.
    pub fn mark_interrupted(&self) -> Result<usize, CatalogError> {
        fault!("catalog.mark_interrupted", CatalogError::disk_full);
        let conn = self.conn();
        let mut n = conn.execute(
            "UPDATE backups SET status = 'error', error = 'interrupted' WHERE status IN ('creating', 'deleting')",
            [],
        )?;
        n += conn.execute(
            "UPDATE backups SET status = 'available' WHERE status = 'restoring'",
            [],
        )?;
        n += conn.execute(
            "UPDATE volumes SET status = 'error', error = 'interrupted' WHERE status IN ('creating', 'restoring')",
            [],
        )?;
        Ok(n)
    }
}

/// Whether an insert counts against its project's quotas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quota {
    /// A new record: refused (creating nothing) when over a limit.
    Reserve,
    /// A record that existed before (recover brings it back): never refused.
    Exempt,
}
