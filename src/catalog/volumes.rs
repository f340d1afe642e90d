//! Volume records: insert (with its quota), find by id or name within a project, list,
//! status, delete.

use super::db::{Row, Session};
use super::{Catalog, CatalogError, Quota, Status, VolumeKind, quotas};
use crate::faults::fault;
use crate::identity::quota::Ask;
use crate::kinds::QuotaResource;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
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

const VOLUME_COLUMNS: &str = "id, name, kind, path, size, status, error, created_at, project";

impl Catalog {
    /// Inserts a volume after reserving its quota (unless `Quota::Exempt`), in one
    /// transaction.
    pub fn insert_volume(&self, v: &VolumeRecord, quota: Quota) -> Result<(), CatalogError> {
        fault!("catalog.insert_volume", CatalogError::disk_full);
        self.write(|s| {
            if quota == Quota::Reserve {
                quotas::reserve_on(s, &v.project, volume_ask(v))?;
            }
            insert_volume_row(s, v)
        })
    }

    fn volume_from_row(r: &Row) -> Result<VolumeRecord, CatalogError> {
        Ok(VolumeRecord {
            id: r.get(0)?,
            name: r.get(1)?,
            kind: r.get(2)?,
            path: r.get(3)?,
            size: r.get(4)?,
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
        let found: Vec<VolumeRecord> = self
            .read(|s| {
                s.query(
                    &format!(
                        "SELECT {VOLUME_COLUMNS} FROM volumes
                         WHERE (id = ?1 OR name = ?1) AND (?2 IS NULL OR project = ?2)
                         ORDER BY CASE WHEN id = ?1 THEN 0 ELSE 1 END LIMIT 2"
                    ),
                    &[&id_or_name, &scope],
                )
            })?
            .iter()
            .map(Self::volume_from_row)
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
        self.read(|s| {
            s.query(
                &format!(
                    "SELECT {VOLUME_COLUMNS} FROM volumes WHERE ?1 IS NULL OR project = ?1 ORDER BY created_at, id"
                ),
                &[&scope],
            )
        })?
        .iter()
        .map(Self::volume_from_row)
        .collect()
    }

    pub fn set_volume_status(
        &self,
        id: &str,
        status: Status,
        error: &str,
    ) -> Result<(), CatalogError> {
        fault!("catalog.set_volume_status", CatalogError::disk_full);
        self.read(|s| {
            s.execute(
                "UPDATE volumes SET status = ?2, error = ?3 WHERE id = ?1",
                &[&id, &status, &error],
            )
        })?;
        Ok(())
    }

    /// Removes a volume with its delta source and attachment, in one transaction.
    pub fn delete_volume(&self, id: &str) -> Result<(), CatalogError> {
        fault!("catalog.delete_volume", CatalogError::disk_full);
        self.write(|s| {
            // A job claimed on another node meanwhile keeps the volume.
            if let Some(r) = s.query_opt(
                "SELECT kind, subject, node FROM jobs WHERE volume_id = ?1",
                &[&id],
            )? {
                return Err(CatalogError::VolumeBusy {
                    volume: id.to_string(),
                    job: format!(
                        "{} {} on node {}",
                        r.get::<String>(0)?,
                        r.get::<String>(1)?,
                        r.get::<String>(2)?
                    ),
                });
            }
            s.execute("DELETE FROM attachments WHERE volume_id = ?1", &[&id])?;
            s.execute("DELETE FROM delta_sources WHERE volume_id = ?1", &[&id])?;
            s.execute("DELETE FROM policy_volumes WHERE volume_id = ?1", &[&id])?;
            s.execute("DELETE FROM volumes WHERE id = ?1", &[&id])?;
            Ok(())
        })
    }
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

/// Inserts a volume row inside a transaction, refusing a name another volume of its
/// project has.
pub(crate) fn insert_volume_row(s: &mut dyn Session, v: &VolumeRecord) -> Result<(), CatalogError> {
    let taken = s.query_opt(
        "SELECT id FROM volumes WHERE name = ?1 AND project = ?2",
        &[&v.name, &v.project],
    )?;
    if taken.is_some() {
        return Err(CatalogError::NameTaken {
            kind: "volume",
            name: v.name.clone(),
        });
    }
    s.execute(
        "INSERT INTO volumes (id, name, kind, path, size, status, error, created_at, project)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        &[
            &v.id,
            &v.name,
            &v.kind,
            &v.path,
            &v.size,
            &v.status,
            &v.error,
            &v.created_at,
            &v.project,
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Catalog, Quota};

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
