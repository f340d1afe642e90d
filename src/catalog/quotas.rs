//! Per-project quota limits and usage. Usage is never stored: it is counted from the
//! records themselves in the transaction that adds one, so it always equals what exists,
//! a failed backup (status `error`) or a deleted record gives its share back by
//! existing no more, and two requests cannot both take the last unit.

use rusqlite::{Connection, params};

use super::{Catalog, CatalogError};
use crate::faults::fault;
use crate::identity::QuotaResource;
use crate::identity::quota::{self, Ask, Limits, Usage};

/// The project's limits: its own rows over the defaults.
pub(crate) fn limits_on(conn: &Connection, project: &str) -> Result<Limits, CatalogError> {
    let mut limits = Limits::default();
    let mut stmt = conn.prepare("SELECT resource, hard_limit FROM quotas WHERE project = ?1")?;
    let rows = stmt.query_map([project], |r| {
        Ok((r.get::<_, QuotaResource>(0)?, r.get::<_, i64>(1)?))
    })?;
    for row in rows {
        let (resource, limit) = row?;
        limits.set(resource, limit);
    }
    Ok(limits)
}

pub(crate) fn usage_on(conn: &Connection, project: &str) -> Result<Usage, CatalogError> {
    let (volumes, volume_bytes, delta_volumes) = conn.query_row(
        "SELECT COALESCE(SUM(kind != 'delta'), 0), COALESCE(SUM(CASE WHEN kind != 'delta' THEN size END), 0),
                COALESCE(SUM(kind = 'delta'), 0)
         FROM volumes WHERE project = ?1",
        [project],
        |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)),
    )?;
    let (backups, backup_bytes, stored_bytes) = conn.query_row(
        "SELECT COUNT(*), COALESCE(SUM(size), 0), COALESCE(SUM(stored_bytes), 0)
         FROM backups WHERE project = ?1 AND status != 'error'",
        [project],
        |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        },
    )?;
    Ok(Usage {
        volumes: volumes as u64,
        volume_bytes: volume_bytes as u64,
        backups: backups as u64,
        backup_bytes: backup_bytes as u64,
        delta_volumes: delta_volumes as u64,
        stored_bytes: stored_bytes as u64,
    })
}

/// Refuses `ask` when it would take `project` over a limit; call inside the transaction
/// that then inserts the record.
pub(crate) fn reserve_on(conn: &Connection, project: &str, ask: Ask) -> Result<(), CatalogError> {
    let limits = limits_on(conn, project)?;
    let usage = usage_on(conn, project)?;
    quota::check(project, &limits, &usage, ask)?;
    Ok(())
}

impl Catalog {
    pub fn quota_limits(&self, project: &str) -> Result<Limits, CatalogError> {
        limits_on(&self.conn(), project)
    }

    pub fn quota_usage(&self, project: &str) -> Result<Usage, CatalogError> {
        usage_on(&self.conn(), project)
    }

    /// Sets some of a project's limits in one transaction.
    pub fn set_quota(
        &self,
        project: &str,
        limits: &[(QuotaResource, i64)],
    ) -> Result<(), CatalogError> {
        fault!("catalog.set_quota", CatalogError::disk_full);
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for (resource, limit) in limits {
            tx.execute(
                "INSERT INTO quotas (project, resource, hard_limit) VALUES (?1, ?2, ?3)
                 ON CONFLICT (project, resource) DO UPDATE SET hard_limit = excluded.hard_limit",
                params![project, resource, limit],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}
