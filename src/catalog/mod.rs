//! The catalog: volumes, backups and the audit log in SQLite. It holds what the
//! service says about things (names, status, progress, errors); the bytes and
//! the truth about what a backup contains live in the repository, from which
//! `recover` can rebuild this database.
//!
//! Never does I/O on volumes or the repository.

pub mod attachments;
pub mod deltas;
pub mod error;
pub mod identity;
mod migrations;
mod quotas;

use crate::faults::fault;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, Row, params};

pub use attachments::AttachmentRecord;
pub use deltas::DeltaSourceRecord;
pub use error::CatalogError;
pub use identity::{ProjectRecord, TokenRecord};

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
text_column!(BackupKind, Status, VolumeKind, Role, QuotaResource);
use crate::identity::quota::Ask;
use crate::kinds::{QuotaResource, Role};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeRecord {
    pub id: String,
    /// The project that owns it (and its backups, attachment and delta sources).
    pub project: String,
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
    /// Its volume's project.
    pub project: String,
}

const BACKUP_COLUMNS: &str = "id, volume_id, name, kind, parent_id, chain_id, status, size, compression, \
     changed_blocks, allocated_blocks, stored_bytes, content_hash, error, created_at, completed_at, project";

const VOLUME_COLUMNS: &str = "id, name, kind, path, size, status, error, created_at, project";

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

    /// Inserts a volume after reserving its quota (unless `Quota::Exempt`), in one
    /// transaction.
    pub fn insert_volume(&self, v: &VolumeRecord, quota: Quota) -> Result<(), CatalogError> {
        fault!("catalog.insert_volume", CatalogError::disk_full);
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        if quota == Quota::Reserve {
            quotas::reserve_on(&tx, &v.project, volume_ask(v))?;
        }
        insert_volume_row(&tx, v)?;
        tx.commit()?;
        Ok(())
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
            project: r.get(8)?,
        })
    }

    /// A volume by id, or by name within the projects `scope` admits (`None`: every
    /// project; a name two projects use is then ambiguous and must be given as an id).
    /// Another project's volume is not found, exactly as one that does not exist.
    pub fn find_volume(
        &self,
        id_or_name: &str,
        scope: Option<&str>,
    ) -> Result<VolumeRecord, CatalogError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {VOLUME_COLUMNS} FROM volumes
             WHERE (id = ?1 OR name = ?1) AND (?2 IS NULL OR project = ?2)
             ORDER BY id = ?1 DESC LIMIT 2"
        ))?;
        let found: Vec<VolumeRecord> = stmt
            .query_map(params![id_or_name, scope], Self::volume_from_row)?
            .collect::<Result<_, _>>()?;
        match found.as_slice() {
            [] => Err(CatalogError::NotFound {
                kind: "volume",
                id: id_or_name.to_string(),
            }),
            [one, ..] if one.id == id_or_name => Ok(one.clone()),
            [one] => Ok(one.clone()),
            [a, b] => Err(CatalogError::Ambiguous {
                kind: "volume",
                name: id_or_name.to_string(),
                projects: vec![a.project.clone(), b.project.clone()],
            }),
            _ => unreachable!("LIMIT 2"),
        }
    }

    /// Volumes of the projects `scope` admits, oldest first.
    pub fn list_volumes(&self, scope: Option<&str>) -> Result<Vec<VolumeRecord>, CatalogError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {VOLUME_COLUMNS} FROM volumes WHERE ?1 IS NULL OR project = ?1 ORDER BY created_at, id"
        ))?;
        let rows = stmt.query_map([scope], Self::volume_from_row)?;
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

    /// Inserts a backup after reserving its quota (unless `Quota::Exempt`, or it is
    /// recorded as `error` already), in one transaction.
    pub fn insert_backup(&self, b: &BackupRecord, quota: Quota) -> Result<(), CatalogError> {
        fault!("catalog.insert_backup", CatalogError::disk_full);
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        if quota == Quota::Reserve && b.status != Status::Error {
            quotas::reserve_on(
                &tx,
                &b.project,
                Ask {
                    count: QuotaResource::Backups,
                    size: Some((QuotaResource::BackupGigabytes, b.size)),
                },
            )?;
        }
        tx.execute(
            &format!("INSERT INTO backups ({BACKUP_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"),
            params![
                b.id, b.volume_id, b.name, b.kind, b.parent_id, b.chain_id, b.status, b.size as i64,
                b.compression, b.changed_blocks as i64, b.allocated_blocks as i64, b.stored_bytes as i64,
                b.content_hash, b.error, b.created_at, b.completed_at, b.project
            ],
        )?;
        tx.commit()?;
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
            project: r.get(16)?,
        })
    }

    /// A backup of a project `scope` admits (`None`: any).
    pub fn get_backup(&self, id: &str, scope: Option<&str>) -> Result<BackupRecord, CatalogError> {
        self.conn()
            .query_row(
                &format!("SELECT {BACKUP_COLUMNS} FROM backups WHERE id = ?1 AND (?2 IS NULL OR project = ?2)"),
                params![id, scope],
                Self::backup_from_row,
            )
            .optional()?
            .ok_or_else(|| CatalogError::NotFound {
                kind: "backup",
                id: id.to_string(),
            })
    }

    /// Backups oldest first, optionally of one volume, of the projects `scope` admits.
    pub fn list_backups(
        &self,
        volume_id: Option<&str>,
        scope: Option<&str>,
    ) -> Result<Vec<BackupRecord>, CatalogError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {BACKUP_COLUMNS} FROM backups WHERE (?1 IS NULL OR volume_id = ?1)
             AND (?2 IS NULL OR project = ?2) ORDER BY seq"
        ))?;
        let rows = stmt.query_map(params![volume_id, scope], Self::backup_from_row)?;
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

    /// Appends one JSON object to `project`'s audit log, at `at`.
    pub fn audit_at(
        &self,
        at: &str,
        project: &str,
        event: &serde_json::Value,
    ) -> Result<(), CatalogError> {
        fault!("catalog.audit_at", CatalogError::disk_full);
        self.conn().execute(
            "INSERT INTO audit (at, event, project) VALUES (?1, ?2, ?3)",
            params![at, event.to_string(), project],
        )?;
        Ok(())
    }

    /// The audit log of the projects `scope` admits as JSON lines, oldest first.
    pub fn audit_lines(&self, scope: Option<&str>) -> Result<Vec<String>, CatalogError> {
        let conn = self.conn();
        // By time: recover appends older history after what a rebuilt catalog has.
        let mut stmt = conn.prepare(
            "SELECT at, event FROM audit WHERE ?1 IS NULL OR project = ?1 ORDER BY at, seq",
        )?;
        let rows = stmt.query_map([scope], |r| {
            let at: String = r.get(0)?;
            let event: String = r.get(1)?;
            Ok(audit_line(&at, &event))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// An audit log line as the API shows it: `{"at": …, "event": …}`.
pub fn audit_line(at: &str, event: &str) -> String {
    format!("{{\"at\":\"{at}\",\"event\":{event}}}")
}

/// Whether an insert counts against its project's quotas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quota {
    /// A new record: refused (creating nothing) when over a limit.
    Reserve,
    /// A record that existed before (recover brings it back): never refused.
    Exempt,
}

/// What a new volume takes of its project's quotas.
pub(crate) fn volume_ask(v: &VolumeRecord) -> Ask {
    match v.kind {
        VolumeKind::Delta => Ask {
            count: QuotaResource::DeltaVolumes,
            size: None,
        },
        _ => Ask {
            count: QuotaResource::Volumes,
            size: Some((QuotaResource::Gigabytes, v.size)),
        },
    }
}

/// Inserts a volume row on `conn` (a connection or a transaction), refusing a
/// name another volume of its project has.
pub(crate) fn insert_volume_row(conn: &Connection, v: &VolumeRecord) -> Result<(), CatalogError> {
    let taken: Option<String> = conn
        .query_row(
            "SELECT id FROM volumes WHERE name = ?1 AND project = ?2",
            [&v.name, &v.project],
            |r| r.get(0),
        )
        .optional()?;
    if taken.is_some() {
        return Err(CatalogError::NameTaken {
            kind: "volume",
            name: v.name.clone(),
        });
    }
    conn.execute(
        "INSERT INTO volumes (id, name, kind, path, size, status, error, created_at, project)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            v.id,
            v.name,
            v.kind,
            v.path,
            v.size as i64,
            v.status,
            v.error,
            v.created_at,
            v.project
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
            project: "admin".into(),
            ..Default::default()
        }
    }

    #[test]
    fn parent_selection_and_interruption() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalog::open(&dir.path().join("c.sqlite")).unwrap();
        assert!(cat.incremental_parent("vol-1").unwrap().is_none());
        cat.insert_backup(&backup("a", "full", None, "a", "available"), Quota::Reserve)
            .unwrap();
        cat.insert_backup(
            &backup("b", "incremental", Some("a"), "a", "available"),
            Quota::Reserve,
        )
        .unwrap();
        cat.insert_backup(
            &backup("c", "incremental", Some("b"), "a", "error"),
            Quota::Reserve,
        )
        .unwrap();
        assert_eq!(cat.incremental_parent("vol-1").unwrap().unwrap().id, "b");
        cat.insert_backup(&backup("d", "full", None, "d", "creating"), Quota::Reserve)
            .unwrap();
        assert_eq!(cat.incremental_parent("vol-1").unwrap().unwrap().id, "b");
        assert_eq!(cat.children("a").unwrap(), vec!["b".to_string()]);
        cat.mark_interrupted().unwrap();
        let d = cat.get_backup("d", None).unwrap();
        assert_eq!(
            (d.status.as_str(), d.error.as_str()),
            ("error", "interrupted")
        );
        assert!(matches!(
            cat.get_backup("zz", None),
            Err(CatalogError::NotFound { .. })
        ));
    }

    #[test]
    fn volume_names_are_unique() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalog::open(&dir.path().join("c.sqlite")).unwrap();
        let v = VolumeRecord {
            id: "vol-1".into(),
            project: "admin".into(),
            name: "data".into(),
            kind: VolumeKind::Managed,
            path: "/x".into(),
            size: 4096,
            status: Status::Available,
            error: String::new(),
            created_at: crate::clock::now_rfc3339(),
        };
        cat.insert_volume(&v, Quota::Reserve).unwrap();
        assert_eq!(cat.find_volume("data", None).unwrap(), v);
        assert!(matches!(
            cat.insert_volume(
                &VolumeRecord {
                    id: "vol-2".into(),
                    ..v
                },
                Quota::Reserve
            ),
            Err(CatalogError::NameTaken { .. })
        ));
    }
}
