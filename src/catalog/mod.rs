//! The catalog: volumes, backups and the audit log in SQLite. It holds what the
//! service says about things (names, status, progress, errors); the bytes and
//! the truth about what a backup contains live in the repository, from which
//! `recover` can rebuild this database.
//!
//! Never does I/O on volumes or the repository.

pub mod attachments;
pub mod deltas;
pub mod error;

use crate::faults::fault;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, Row, params};

pub use attachments::AttachmentRecord;
pub use deltas::DeltaSourceRecord;
pub use error::CatalogError;

/// Backup ids, as the engine makes them: `bkp-` and 16 lower-case hex digits.
pub fn well_formed_backup_id(id: &str) -> bool {
    id.strip_prefix("bkp-").is_some_and(|h| {
        h.len() == 16
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

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
text_column!(BackupKind, Status, VolumeKind);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeRecord {
    pub id: String,
    pub name: String,
    pub kind: VolumeKind,
    pub path: String,
    pub size: u64,
    pub status: Status,
    pub error: String,
    pub created_at: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct BackupRecord {
    pub id: String,
    pub volume_id: String,
    pub name: String,
    pub kind: BackupKind,
    pub parent_id: Option<String>,
    pub chain_id: String,
    pub status: Status,
    pub size: u64,
    pub compression: String,
    pub changed_blocks: u64,
    pub allocated_blocks: u64,
    pub stored_bytes: u64,
    pub content_hash: String,
    pub error: String,
    pub created_at: String,
    pub completed_at: String,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS volumes (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, path TEXT NOT NULL,
    size INTEGER NOT NULL, status TEXT NOT NULL, error TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS backups (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, volume_id TEXT NOT NULL,
    name TEXT NOT NULL, kind TEXT NOT NULL, parent_id TEXT, chain_id TEXT NOT NULL,
    status TEXT NOT NULL, size INTEGER NOT NULL, compression TEXT NOT NULL,
    changed_blocks INTEGER NOT NULL DEFAULT 0, allocated_blocks INTEGER NOT NULL DEFAULT 0,
    stored_bytes INTEGER NOT NULL DEFAULT 0, content_hash TEXT NOT NULL DEFAULT '',
    error TEXT NOT NULL DEFAULT '', created_at TEXT NOT NULL, completed_at TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS backups_volume ON backups(volume_id);
CREATE INDEX IF NOT EXISTS backups_parent ON backups(parent_id);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, event TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS delta_sources (
    volume_id TEXT PRIMARY KEY, first_backup_id TEXT NOT NULL, second_backup_id TEXT NOT NULL,
    change_block_size INTEGER NOT NULL, changed_bytes INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS delta_sources_first ON delta_sources(first_backup_id);
CREATE INDEX IF NOT EXISTS delta_sources_second ON delta_sources(second_backup_id);
CREATE TABLE IF NOT EXISTS attachments (
    volume_id TEXT PRIMARY KEY, target_name TEXT NOT NULL UNIQUE, initiator TEXT NOT NULL,
    chap_user TEXT NOT NULL, chap_secret TEXT NOT NULL, block_size INTEGER NOT NULL,
    read_only INTEGER NOT NULL, attached_at TEXT NOT NULL);
";

const BACKUP_COLUMNS: &str = "id, volume_id, name, kind, parent_id, chain_id, status, size, compression, \
     changed_blocks, allocated_blocks, stored_bytes, content_hash, error, created_at, completed_at";

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
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Catalog {
            conn: Mutex::new(conn),
        })
    }

    pub(crate) fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        crate::sync::lock(&self.conn)
    }

    pub fn insert_volume(&self, v: &VolumeRecord) -> Result<(), CatalogError> {
        fault!("catalog.insert_volume", CatalogError::disk_full);
        insert_volume_row(&self.conn(), v)
    }

    fn volume_from_row(r: &Row<'_>) -> rusqlite::Result<VolumeRecord> {
        Ok(VolumeRecord {
            id: r.get(0)?,
            name: r.get(1)?,
            kind: r.get(2)?,
            path: r.get(3)?,
            size: r.get::<_, i64>(4)? as u64,
            status: r.get(5)?,
            error: r.get(6)?,
            created_at: r.get(7)?,
        })
    }

    /// A volume by id or by name.
    pub fn find_volume(&self, id_or_name: &str) -> Result<VolumeRecord, CatalogError> {
        self.conn()
            .query_row(
                "SELECT id, name, kind, path, size, status, error, created_at FROM volumes
                 WHERE id = ?1 OR name = ?1 ORDER BY id = ?1 DESC LIMIT 1",
                [id_or_name],
                Self::volume_from_row,
            )
            .optional()?
            .ok_or_else(|| CatalogError::NotFound {
                kind: "volume",
                id: id_or_name.to_string(),
            })
    }

    pub fn list_volumes(&self) -> Result<Vec<VolumeRecord>, CatalogError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, name, kind, path, size, status, error, created_at FROM volumes ORDER BY created_at, id",
        )?;
        let rows = stmt.query_map([], Self::volume_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn set_volume_status(
        &self,
        id: &str,
        status: Status,
        error: &str,
    ) -> Result<(), CatalogError> {
        fault!("catalog.set_volume_status", CatalogError::disk_full);
        self.conn().execute(
            "UPDATE volumes SET status = ?2, error = ?3 WHERE id = ?1",
            params![id, status, error],
        )?;
        Ok(())
    }

    /// Removes a volume with its delta source and attachment, in one transaction.
    pub fn delete_volume(&self, id: &str) -> Result<(), CatalogError> {
        fault!("catalog.delete_volume", CatalogError::disk_full);
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM attachments WHERE volume_id = ?1", [id])?;
        tx.execute("DELETE FROM delta_sources WHERE volume_id = ?1", [id])?;
        tx.execute("DELETE FROM volumes WHERE id = ?1", [id])?;
        tx.commit()?;
        Ok(())
    }

    pub fn insert_backup(&self, b: &BackupRecord) -> Result<(), CatalogError> {
        fault!("catalog.insert_backup", CatalogError::disk_full);
        self.conn().execute(
            &format!("INSERT INTO backups ({BACKUP_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"),
            params![
                b.id, b.volume_id, b.name, b.kind, b.parent_id, b.chain_id, b.status, b.size as i64,
                b.compression, b.changed_blocks as i64, b.allocated_blocks as i64, b.stored_bytes as i64,
                b.content_hash, b.error, b.created_at, b.completed_at
            ],
        )?;
        Ok(())
    }

    fn backup_from_row(r: &Row<'_>) -> rusqlite::Result<BackupRecord> {
        Ok(BackupRecord {
            id: r.get(0)?,
            volume_id: r.get(1)?,
            name: r.get(2)?,
            kind: r.get(3)?,
            parent_id: r.get(4)?,
            chain_id: r.get(5)?,
            status: r.get(6)?,
            size: r.get::<_, i64>(7)? as u64,
            compression: r.get(8)?,
            changed_blocks: r.get::<_, i64>(9)? as u64,
            allocated_blocks: r.get::<_, i64>(10)? as u64,
            stored_bytes: r.get::<_, i64>(11)? as u64,
            content_hash: r.get(12)?,
            error: r.get(13)?,
            created_at: r.get(14)?,
            completed_at: r.get(15)?,
        })
    }

    pub fn get_backup(&self, id: &str) -> Result<BackupRecord, CatalogError> {
        self.conn()
            .query_row(
                &format!("SELECT {BACKUP_COLUMNS} FROM backups WHERE id = ?1"),
                [id],
                Self::backup_from_row,
            )
            .optional()?
            .ok_or_else(|| CatalogError::NotFound {
                kind: "backup",
                id: id.to_string(),
            })
    }

    /// Backups oldest first, optionally of one volume.
    pub fn list_backups(&self, volume_id: Option<&str>) -> Result<Vec<BackupRecord>, CatalogError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {BACKUP_COLUMNS} FROM backups WHERE ?1 IS NULL OR volume_id = ?1 ORDER BY seq"
        ))?;
        let rows = stmt.query_map([volume_id], Self::backup_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Backups whose parent is `id` (whatever their status).
    pub fn children(&self, id: &str) -> Result<Vec<String>, CatalogError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT id FROM backups WHERE parent_id = ?1 ORDER BY seq")?;
        let rows = stmt.query_map([id], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The parent for a new incremental: the newest available backup of the chain
    /// started by the volume's newest available full.
    pub fn incremental_parent(
        &self,
        volume_id: &str,
    ) -> Result<Option<BackupRecord>, CatalogError> {
        let conn = self.conn();
        let chain: Option<String> = conn
            .query_row(
                "SELECT chain_id FROM backups WHERE volume_id = ?1 AND kind = 'full' AND status IN ('available', 'restoring')
                 ORDER BY seq DESC LIMIT 1",
                [volume_id],
                |r| r.get(0),
            )
            .optional()?;
        let Some(chain) = chain else { return Ok(None) };
        Ok(conn
            .query_row(
                &format!(
                    "SELECT {BACKUP_COLUMNS} FROM backups WHERE chain_id = ?1 AND status IN ('available', 'restoring')
                     ORDER BY seq DESC LIMIT 1"
                ),
                [chain],
                Self::backup_from_row,
            )
            .optional()?)
    }

    pub fn set_backup_status(
        &self,
        id: &str,
        status: Status,
        error: &str,
    ) -> Result<(), CatalogError> {
        fault!("catalog.set_backup_status", CatalogError::disk_full);
        self.conn().execute(
            "UPDATE backups SET status = ?2, error = ?3 WHERE id = ?1",
            params![id, status, error],
        )?;
        Ok(())
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

    /// Records a finished backup: one statement, after the repository index is durable.
    pub fn complete_backup(&self, b: &BackupRecord) -> Result<(), CatalogError> {
        fault!("catalog.complete_backup", CatalogError::disk_full);
        self.conn().execute(
            "UPDATE backups SET status = ?2, error = '', changed_blocks = ?3, allocated_blocks = ?4,
             stored_bytes = ?5, content_hash = ?6, completed_at = ?7 WHERE id = ?1",
            params![
                b.id,
                Status::Available,
                b.changed_blocks as i64,
                b.allocated_blocks as i64,
                b.stored_bytes as i64,
                b.content_hash,
                b.completed_at
            ],
        )?;
        Ok(())
    }

    pub fn delete_backup(&self, id: &str) -> Result<(), CatalogError> {
        fault!("catalog.delete_backup", CatalogError::disk_full);
        self.conn()
            .execute("DELETE FROM backups WHERE id = ?1", [id])?;
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

    /// Appends one JSON object to the audit log, at `at`.
    pub fn audit_at(&self, at: &str, event: &serde_json::Value) -> Result<(), CatalogError> {
        fault!("catalog.audit_at", CatalogError::disk_full);
        self.conn().execute(
            "INSERT INTO audit (at, event) VALUES (?1, ?2)",
            params![at, event.to_string()],
        )?;
        Ok(())
    }

    /// Appends one JSON object to the audit log, now.
    pub fn audit(&self, event: &serde_json::Value) -> Result<(), CatalogError> {
        self.audit_at(&crate::clock::now_rfc3339(), event)
    }

    /// Whether the audit log holds nothing (a catalog rebuilt by recover).
    pub fn audit_is_empty(&self) -> Result<bool, CatalogError> {
        let n: i64 = self
            .conn()
            .query_row("SELECT COUNT(*) FROM audit", [], |r| r.get(0))?;
        Ok(n == 0)
    }

    /// The audit log as JSON lines, oldest first.
    pub fn audit_lines(&self) -> Result<Vec<String>, CatalogError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT at, event FROM audit ORDER BY seq")?;
        let rows = stmt.query_map([], |r| {
            let at: String = r.get(0)?;
            let event: String = r.get(1)?;
            Ok(format!("{{\"at\":\"{at}\",\"event\":{event}}}"))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// Inserts a volume row on `conn` (a connection or a transaction), refusing a
/// name another volume has.
pub(crate) fn insert_volume_row(conn: &Connection, v: &VolumeRecord) -> Result<(), CatalogError> {
    let taken: Option<String> = conn
        .query_row("SELECT id FROM volumes WHERE name = ?1", [&v.name], |r| {
            r.get(0)
        })
        .optional()?;
    if taken.is_some() {
        return Err(CatalogError::NameTaken {
            kind: "volume",
            name: v.name.clone(),
        });
    }
    conn.execute(
        "INSERT INTO volumes (id, name, kind, path, size, status, error, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            v.id,
            v.name,
            v.kind,
            v.path,
            v.size as i64,
            v.status,
            v.error,
            v.created_at
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backup(
        id: &str,
        kind: &str,
        parent: Option<&str>,
        chain: &str,
        status: &str,
    ) -> BackupRecord {
        BackupRecord {
            id: id.into(),
            volume_id: "vol-1".into(),
            kind: BackupKind::parse(kind).unwrap(),
            parent_id: parent.map(Into::into),
            chain_id: chain.into(),
            status: Status::parse(status).unwrap(),
            compression: "zstd".into(),
            created_at: crate::clock::now_rfc3339(),
            ..Default::default()
        }
    }

    #[test]
    fn parent_selection_and_interruption() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalog::open(&dir.path().join("c.sqlite")).unwrap();
        assert!(cat.incremental_parent("vol-1").unwrap().is_none());
        cat.insert_backup(&backup("a", "full", None, "a", "available"))
            .unwrap();
        cat.insert_backup(&backup("b", "incremental", Some("a"), "a", "available"))
            .unwrap();
        cat.insert_backup(&backup("c", "incremental", Some("b"), "a", "error"))
            .unwrap();
        assert_eq!(cat.incremental_parent("vol-1").unwrap().unwrap().id, "b");
        cat.insert_backup(&backup("d", "full", None, "d", "creating"))
            .unwrap();
        assert_eq!(cat.incremental_parent("vol-1").unwrap().unwrap().id, "b");
        assert_eq!(cat.children("a").unwrap(), vec!["b".to_string()]);
        cat.mark_interrupted().unwrap();
        let d = cat.get_backup("d").unwrap();
        assert_eq!(
            (d.status.as_str(), d.error.as_str()),
            ("error", "interrupted")
        );
        assert!(matches!(
            cat.get_backup("zz"),
            Err(CatalogError::NotFound { .. })
        ));
    }

    #[test]
    fn volume_names_are_unique() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalog::open(&dir.path().join("c.sqlite")).unwrap();
        let v = VolumeRecord {
            id: "vol-1".into(),
            name: "data".into(),
            kind: VolumeKind::Managed,
            path: "/x".into(),
            size: 4096,
            status: Status::Available,
            error: String::new(),
            created_at: crate::clock::now_rfc3339(),
        };
        cat.insert_volume(&v).unwrap();
        assert_eq!(cat.find_volume("data").unwrap(), v);
        assert!(matches!(
            cat.insert_volume(&VolumeRecord {
                id: "vol-2".into(),
                ..v
            }),
            Err(CatalogError::NameTaken { .. })
        ));
    }
}
